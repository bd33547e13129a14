local testing = require("tide.testing")

local JOB = "jobs/profile_join.lua"

describe("jobs/profile_join.lua", function()
    it("joins page views with the latest profile of their user", function()
        local res = assert(testing.run(JOB, { partitions = 3, inputs = {
            profiles = {
                { key = "u1", value = { name = "Ann", country = "NO" } },
                { key = "u2", value = { name = "Bo", country = "SE" } },
                { key = "u1", value = { name = "Ann", country = "DK" } },
            },
            pageviews = {
                { key = "u1", value = { user = "u1", url = "/a" } },
                { key = "u2", value = { user = "u2", url = "/b" } },
                { key = "u3", value = { user = "u3", url = "/c" } },
            },
        } }))
        local by = {}
        for _, o in ipairs(res.outputs["pageviews-enriched"]) do
            by[o.key] = o.value
        end
        assert.same({ name = "Ann", country = "DK" }, by.u1.profile)
        assert.same({ name = "Bo", country = "SE" }, by.u2.profile)
        assert.equals("unknown", by.u3.profile)
        assert.equals("/c", by.u3.url)
        assert.same({ u1 = { name = "Ann", country = "DK" },
                      u2 = { name = "Bo", country = "SE" } },
                    res.stores.profiles)
    end)

    it("forgets a profile on a tombstone", function()
        local res = assert(testing.run(JOB, { inputs = {
            profiles = { { key = "u1", value = { name = "Ann" } },
                         { key = "u1", value = nil } },
            pageviews = { { key = "u1", value = { url = "/x" } } },
        } }))
        assert.same({}, res.stores.profiles)
        assert.equals("unknown",
                      res.outputs["pageviews-enriched"][1].value.profile)
    end)

    it("dead-letters a broken profile and keeps joining", function()
        local res = assert(testing.run(JOB, { inputs = {
            profiles = { { key = "u1", value = "{broken" } },
            pageviews = { { key = "u1", value = { url = "/x" } } },
        } }))
        assert.equals(1, #res.dead_letters)
        assert.equals(1, #res.outputs["pageviews-enriched"])
    end)
end)
