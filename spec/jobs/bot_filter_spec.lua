local testing = require("tide.testing")

local JOB = "jobs/bot_filter.lua"

local function view(user, url, ua)
    return { key = user, value = { user = user, url = url, ua = ua, ts = 1 } }
end

local FIREFOX = "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0"
local IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Safari/604.1"
local GOOGLEBOT = "Googlebot/2.1 (+http://www.google.com/bot.html)"

describe("jobs/bot_filter.lua", function()
    it("drops bots and routes people by device, with derived fields", function()
        local res = assert(testing.run(JOB, { inputs = { pageviews = {
            view("u1", "/news/article-1", FIREFOX),
            view("u2", "/sport/article-9?x=1", IPHONE),
            view("u3", "/news/article-1", GOOGLEBOT),
            view("u4", "/", "python-requests/2.31"),
        } } }))
        local desk = res.outputs["pageviews-desktop"]
        local mob = res.outputs["pageviews-mobile"]
        assert.equals(1, #desk)
        assert.equals(1, #mob)
        assert.equals("u1", desk[1].key)
        assert.same({ user = "u1", url = "/news/article-1", ua = FIREFOX, ts = 1,
                      device = "desktop", section = "news" }, desk[1].value)
        assert.equals("u2", mob[1].key)
        assert.equals("mobile", mob[1].value.device)
        assert.equals("sport", mob[1].value.section)
        assert.equals(4, res.stats.processed)
    end)

    it("keeps each user's events in order across partitions", function()
        local input = {}
        for i = 1, 300 do
            input[i] = view("u" .. (i % 7), "/news/a" .. i, FIREFOX)
        end
        local res = assert(testing.run(JOB, { partitions = 4,
                                              inputs = { pageviews = input } }))
        local out = res.outputs["pageviews-desktop"]
        assert.equals(300, #out)
        local last = {}
        for _, o in ipairs(out) do
            local n = tonumber(o.value.url:match("%d+$"))
            assert.is_true(n > (last[o.key] or 0))
            last[o.key] = n
        end
    end)

    it("dead-letters malformed events and goes on", function()
        local res = assert(testing.run(JOB, { inputs = { pageviews = {
            view("u1", "/a", FIREFOX),
            { key = "u2", value = "{not json" },
            view("u3", "/b", FIREFOX),
        } } }))
        assert.equals(2, #res.outputs["pageviews-desktop"])
        assert.equals(1, #res.dead_letters)
        assert.equals("{not json", res.dead_letters[1].value)
        assert.equals("u2", res.dead_letters[1].key)
        assert.matches("json", res.dead_letters[1].error)
        assert.equals(1, res.dead_letters[1].offset)
    end)

    it("takes bot patterns from config overrides", function()
        local res = assert(testing.run(JOB, {
            overrides = { "config.bot_patterns.1=firefox" },
            inputs = { pageviews = { view("u1", "/a", FIREFOX) } },
        }))
        assert.equals(0, #res.outputs["pageviews-desktop"])
    end)
end)
