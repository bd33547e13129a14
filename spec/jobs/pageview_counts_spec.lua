local testing = require("tide.testing")

local JOB = "jobs/pageview_counts.lua"

local function views(list)
    local t = {}
    for i, url in ipairs(list) do
        t[i] = { key = "u" .. (i % 5), value = { user = "u" .. (i % 5),
                                                 url = url, ts = i } }
    end
    return t
end

describe("jobs/pageview_counts.lua", function()
    it("counts views per URL in its store, over re-keyed partitions", function()
        local input = {}
        for i = 1, 60 do
            input[#input + 1] = "/a"
        end
        for i = 1, 25 do
            input[#input + 1] = "/b"
        end
        input[#input + 1] = "/c"
        local res = assert(testing.run(JOB, { partitions = 4,
                                              inputs = { pageviews = views(input) } }))
        assert.same({ ["/a"] = 60, ["/b"] = 25, ["/c"] = 1 }, res.stores.counts)
        -- The newest count sent per URL is its total.
        local last = {}
        for _, o in ipairs(res.outputs["pageview-counts"]) do
            last[o.key] = math.max(last[o.key] or 0, o.value)
        end
        assert.same({ ["/a"] = 60, ["/b"] = 25, ["/c"] = 1 }, last)
        assert.equals(86, #res.outputs["pageview-urls"])
    end)

    it("sends each task's top N from window", function()
        local input = {}
        for i = 1, 30 do
            input[#input + 1] = "/p" .. (i % 4)
        end
        local res = assert(testing.run(JOB, {
            overrides = { "config.top_n=2" }, window = true,
            inputs = { pageviews = views(input) } }))
        local tops = res.outputs["top-urls"]
        assert.is_true(#tops >= 1)
        local top = tops[#tops].value
        assert.equals(2, #top)
        assert.is_true(top[1].views >= top[2].views)
    end)

    it("stops on a view without a url, counting nothing for it", function()
        local res, err = testing.run(JOB, { inputs = { pageviews = {
            { key = "u1", value = { user = "u1" } } } } })
        assert.is_nil(res)
        assert.matches("page view without a url", err)
    end)
end)
