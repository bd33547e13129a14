-- Keyed timers (tide.timers, ctx:timer, on_timer) through the test kit:
-- mem: streams, stores in memory, one process.
local testing = require("tide.testing")
local timers = require("tide.timers")

-- Messages of one input: { key, event time } pairs, the time as the
-- record timestamp.
local function msgs(list)
    local t = {}
    for i, e in ipairs(list) do
        t[i] = { key = e[1], value = tostring(e[2]), timestamp = e[2] }
    end
    return t
end

-- A job that registers an event timer at the message's time + `after`
-- and sends, when one fires, "key@time wm=watermark".
local function job(after, extra)
    local j = {
        name = "timers", inputs = { "in" }, outputs = { "fired" },
        process = function(msg, ctx)
            ctx:timer(msg.key, msg.timestamp + after)
        end,
        on_timer = function(key, at, ctx, kind)
            ctx:send("fired", key, ("%s@%d %s wm=%s"):format(
                key, at, kind, tostring(ctx.watermark)))
        end,
    }
    for k, v in pairs(extra or {}) do
        j[k] = v
    end
    return j
end

local function values(res)
    local t = {}
    for i, o in ipairs(res.outputs.fired) do
        t[i] = o.value
    end
    return t
end

describe("tide.timers", function()
    it("keeps times in key order through its 8-byte encoding", function()
        local times = { 0, 1, 255, 256, 65535, 2 ^ 32 - 1, 2 ^ 32,
                        1733300000123, 2 ^ 53 - 1 }
        for i, n in ipairs(times) do
            assert.equals(n, timers.read_be64(timers.be64(n), 1))
            if i > 1 then
                assert.is_true(timers.be64(times[i - 1]) < timers.be64(n))
            end
        end
    end)

    it("fires a burst of due timers in time order with few store looks",
       function()
        -- A real store (in memory) behind the timers, counting the looks
        -- (iterators) they make: one per due timer made firing n timers
        -- cost n looks, each stepping over the deletes of those before.
        local s = assert(require("tide.store").open(nil,
                                                    { engine = "memory" }))
        local looks = 0
        local counted = setmetatable({}, { __index = function(_, name)
            local f = s[name]
            return function(_, ...)
                if name == "iter" or name == "first" then
                    looks = looks + 1
                end
                return f(s, ...)
            end
        end })
        local st = { s = counted, put = function(_, k, v)
            assert(s:set(k, v))
        end }
        local tm = timers.new(st, tostring, tostring)
        for i = 1, 2000 do
            tm:set("k" .. i, 1000 + (i * 7919) % 2000)
        end
        local last, n = -1, 0
        while true do
            local kind, at, _, raw = tm:due(5000, 0)
            if not kind then break end
            assert.equals("event", kind)
            assert.is_true(at >= last)
            last, n = at, n + 1
            tm:remove(raw)
            if n == 1000 then
                -- One registered among those read ahead fires in order.
                tm:set("late", at)
            end
        end
        assert.equals(2001, n)
        assert.is_nil(s:first("e", "f"))
        assert.is_true(looks <= 40, looks .. " looks for 2001 timers")
        s:close()
    end)

    it("fires an event timer once the watermark passes its time", function()
        local res = assert(testing.run(job(1500), { inputs = { ["in"] = msgs({
            { "a", 1000 }, { "b", 2000 }, { "c", 5000 } }) } }))
        -- a@2500 and b@3500 fire once c (5000) moves the watermark past
        -- them; c@6500 is still pending: nothing came after it
        assert.same({ "a@2500 event wm=5000", "b@3500 event wm=5000" },
                    values(res))
        assert.same({ { kind = "event", at = 6500, key = "c" } }, res.timers)
        -- sends of a timer carry its time
        assert.equals(2500, res.outputs.fired[1].timestamp)
    end)

    it("fires a timer at the watermark only once the watermark passes it",
       function()
        local res = assert(testing.run(job(1000), { inputs = { ["in"] = msgs({
            { "a", 1000 }, { "b", 2000 } }) } }))
        -- a@2000: the watermark is 2000, and a message at 2000 may still
        -- come: not yet
        assert.same({}, values(res))
        assert.equals(2, #res.timers)
    end)

    it("fires every event timer with final, as --drain --final", function()
        local res = assert(testing.run(job(1500), { final = true,
            inputs = { ["in"] = msgs({ { "a", 1000 }, { "c", 5000 } }) } }))
        assert.same({ "a@2500 event wm=5000", "c@6500 event wm=5000" },
                    values(res))
        assert.same({}, res.timers)
    end)

    it("keeps one timer per key and time, and deletes them", function()
        local j = job(0, {
            process = function(msg, ctx)
                if msg.value == "del" then
                    ctx:delete_timer(msg.key, 9000)
                else
                    ctx:timer(msg.key, 9000)
                    ctx:timer(msg.key, 9000)       -- again: still one
                end
            end,
        })
        local input = msgs({ { "a", 1000 }, { "a", 1100 }, { "b", 1200 },
                             { "c", 1300 } })
        input[3].value = "del"                     -- b: delete a timer
        input[4].value = "del"                     -- never registered
        input[3].key, input[4].key = "a", "zz"
        local res = assert(testing.run(j, { final = true,
                                            inputs = { ["in"] = input } }))
        assert.same({}, values(res))
        -- and a timer registered after its delete is there
        input[4] = { key = "a", value = "x", timestamp = 1400 }
        res = assert(testing.run(j, { final = true,
                                      inputs = { ["in"] = input } }))
        assert.same({ "a@9000 event wm=1400" }, values(res))
    end)

    it("lets on_timer register timers, which fire in time order", function()
        local j = job(100, {
            on_timer = function(key, at, ctx)
                ctx:send("fired", key, tostring(at))
                if at < 1400 then
                    ctx:timer(key, at + 100)
                end
            end,
        })
        local res = assert(testing.run(j, { inputs = { ["in"] = msgs({
            { "a", 1000 }, { "b", 5000 } }) } }))
        assert.same({ "1100", "1200", "1300", "1400" }, values(res))
    end)

    it("leaves no timer behind a message that raised", function()
        local j = job(100, {
            on_error = "skip",
            process = function(msg, ctx)
                ctx:timer(msg.key, 100)
                if msg.key == "bad" then
                    error("boom")
                end
            end,
        })
        local res = assert(testing.run(j, { inputs = { ["in"] = msgs({
            { "bad", 1000 } }) } }))
        assert.same({}, res.timers)
    end)

    it("fires processing timers by the wall clock", function()
        local now = require("tide.loop").realtime()
        local j = job(0, {
            process = function(msg, ctx)
                ctx:timer(msg.key, now - 1, "processing")
                ctx:timer(msg.key .. "-later", now + 3600000, "processing")
            end,
        })
        local res = assert(testing.run(j, { final = true,
            inputs = { ["in"] = msgs({ { "a", 1000 } }) } }))
        local v = values(res)
        assert.equals(1, #v)
        assert.matches("^a@%d+ processing", v[1])
        -- final fires event timers only
        assert.equals("a-later", res.timers[1].key)
        assert.equals("processing", res.timers[1].kind)
    end)

    it("follows on_error when on_timer raises", function()
        local j = job(100, {
            on_timer = function(key)
                if key == "bad" then
                    error("no such thing")
                end
            end,
        })
        local input = { inputs = { ["in"] = msgs({ { "bad", 1000 },
                                                   { "x", 5000 } }) } }
        local ok, err = testing.run(j, input)
        assert.is_nil(ok)
        assert.matches("job 'timers' failed in on_timer%(%) of task 0 %(event "
                       .. "timer of key \"bad\" at 1100%): .*no such thing",
                       err)
        j.on_error = "skip"
        local res = assert(testing.run(j, input))
        assert.same({ { kind = "event", at = 5100, key = "x" } }, res.timers)
        assert.equals(1, res.stats.skipped)
    end)

    it("refuses bad timer arguments and a job without on_timer", function()
        local function try(fn, no_timer)
            local j = job(0)
            j.process = fn
            if no_timer then
                j.on_timer = nil
            end
            local ok, err = testing.run(j, { inputs = { ["in"] = msgs({
                { "a", 1000 } }) } })
            assert.is_nil(ok)
            return err
        end
        assert.matches("ctx:timer: time must be a whole number of "
                       .. "milliseconds", try(function(_, ctx)
            ctx:timer("k", 1.5)
        end))
        assert.matches('kind must be "event" or "processing", not "wall"',
                       try(function(_, ctx)
            ctx:timer("k", 5, "wall")
        end))
        assert.matches("ctx:timer: key is nil", try(function(_, ctx)
            ctx:timer(nil, 5)
        end))
        assert.matches("job 'timers' has no on_timer", try(function(_, ctx)
            ctx:timer("k", 5)
        end, true))
    end)

    it("keeps tide's timer store out of ctx.stores and user names", function()
        local seen
        local j = job(0, { stores = { counts = {} },
            process = function(_, ctx)
                seen = {}
                for name in pairs(ctx.stores) do
                    seen[#seen + 1] = name
                end
            end })
        assert(testing.run(j, { inputs = { ["in"] = msgs({ { "a", 1 } }) } }))
        assert.same({ "counts" }, seen)
        local ok, err = testing.run(job(0, { stores = { _mine = {} } }), {})
        assert.is_nil(ok)
        assert.matches("store name '_mine' starts with '_'", err)
    end)
end)
