-- The runner's contract, through the test kit (mem: streams).
local testing = require("tide.testing")

local function msgs(n, f)
    local t = {}
    for i = 1, n do
        t[i] = f(i)
    end
    return t
end

describe("tide.runner", function()
    it("calls process once per message, in order per partition", function()
        local res = assert(testing.run({
            name = "echo", inputs = { "in" }, outputs = { "out" },
            process = function(msg, ctx)
                ctx:send("out", msg.key, msg.value .. "@" .. msg.partition
                         .. ":" .. msg.offset .. ":" .. msg.stream)
            end,
        }, { partitions = 3, inputs = { ["in"] = msgs(90, function(i)
            return { key = "k" .. (i % 10), value = "v" .. i }
        end) } }))
        assert.equals(90, #res.outputs.out)
        local seen = {}
        for _, o in ipairs(res.outputs.out) do
            local v, p, off, s = o.value:match("^(v%d+)@(%d+):(%d+):(.*)$")
            assert.equals("in", s)
            assert.equals(tonumber(p), o.partition)  -- key placement agrees
            seen[v] = (seen[v] or 0) + 1
            assert.is_not_nil(off)
        end
        for i = 1, 90 do
            assert.equals(1, seen["v" .. i])
        end
    end)

    it("runs with a bigger GC step and gives the old one back", function()
        local function stepmul()
            local v = collectgarbage("setstepmul", 200)
            collectgarbage("setstepmul", v)
            return v
        end
        local before = collectgarbage("setstepmul", 321)
        local inside
        local res = testing.run({
            name = "gc", inputs = { "in" },
            process = function()
                inside = stepmul()
            end,
        }, { inputs = { ["in"] = { { value = "a" } } } })
        local after = collectgarbage("setstepmul", before)
        assert.is_table(res)
        assert.equals(1000, inside)
        assert.equals(321, after)
    end)

    it("discards the sends of a message that raises (skip)", function()
        local res = assert(testing.run({
            name = "atomic", inputs = { "in" }, outputs = { "out" },
            on_error = "skip",
            process = function(msg, ctx)
                ctx:send("out", nil, "before-" .. msg.value)
                if msg.value == "bad" then
                    error("boom")
                end
                ctx:send("out", nil, "after-" .. msg.value)
            end,
        }, { inputs = { ["in"] = { { value = "a" }, { value = "bad" },
                                    { value = "b" } } } }))
        local vals = {}
        for _, o in ipairs(res.outputs.out) do
            vals[#vals + 1] = o.value
        end
        assert.same({ "before-a", "after-a", "before-b", "after-b" }, vals)
        assert.equals(1, res.stats.skipped)
        assert.matches("skipped stream 'mem:in' partition 0 offset 1: .*boom",
                       res.logs[1])
    end)

    it("stops under on_error = fail with stream, partition, offset and "
       .. "traceback", function()
        local res, err, partial = testing.run({
            name = "strict", inputs = { "in" }, outputs = { "out" },
            process = function(msg, ctx)
                if msg.value == "bad" then
                    error("cannot handle " .. msg.value)
                end
                ctx:send("out", nil, msg.value)
            end,
        }, { inputs = { ["in"] = { { value = "a" }, { value = "bad" },
                                    { value = "c" } } } })
        assert.is_nil(res)
        assert.matches("job 'strict' failed on stream 'mem:in' partition 0 "
                       .. "offset 1: .*cannot handle bad", err)
        assert.matches("stack traceback", err, 1, true)
        assert.equals(1, #partial.outputs.out)    -- nothing past the bad one
    end)

    it("names the stores there are when process() asks for one that is "
       .. "not", function()
        local res, err = testing.run({
            name = "typo", inputs = { "in" }, outputs = { "out" },
            stores = { counts = {} },
            process = function(msg, ctx)
                ctx.stores.count:incr(msg.value, 1)
            end,
        }, { inputs = { ["in"] = { { value = "a" } } } })
        assert.is_nil(res)
        assert.matches("no store 'count' (stores: counts)", err, 1, true)
    end)

    it("treats a decode failure like an error of process", function()
        local res = assert(testing.run({
            name = "dec", inputs = { "in" }, outputs = { "out" },
            serde = "json", on_error = "dead_letter",
            process = function(msg, ctx)
                ctx:send("out", nil, msg.value)
            end,
        }, { inputs = { ["in"] = { { value = { a = 1 } }, { value = "{oops" },
                                    { key = "k", value = { a = 2 } } } } }))
        assert.equals(2, #res.outputs.out)
        assert.same({ a = 2 }, res.outputs.out[2].value)
        assert.equals(1, #res.dead_letters)
        assert.equals("{oops", res.dead_letters[1].value)
        assert.equals("mem:in", res.dead_letters[1].stream)
        assert.equals(1, res.dead_letters[1].offset)
    end)

    it("rejects a send to an undeclared stream", function()
        local res, err = testing.run({
            name = "undeclared", inputs = { "in" }, outputs = { "out" },
            process = function(_, ctx)
                ctx:send("elsewhere", nil, "x")
            end,
        }, { inputs = { ["in"] = { { value = "a" } } } })
        assert.is_nil(res)
        assert.matches("'elsewhere' is not an output of job 'undeclared'", err)
    end)

    it("runs init and close once per task and window on its interval", function()
        local calls = {}
        local res = assert(testing.run({
            name = "hooks", inputs = { "in" }, outputs = { "out" },
            window_interval = "1ms",
            init = function(ctx)
                calls[#calls + 1] = "init" .. ctx.partition
            end,
            process = function() end,
            window = function(ctx)
                ctx:send("out", nil, "w" .. ctx.partition)
            end,
            close = function(ctx)
                calls[#calls + 1] = "close" .. ctx.partition
                ctx:send("out", nil, "bye" .. ctx.partition)
            end,
        }, { partitions = 2, inputs = { ["in"] = msgs(5000, function(i)
            return { value = tostring(i) }
        end) } }))
        table.sort(calls)
        assert.same({ "close0", "close1", "init0", "init1" }, calls)
        local byes = 0
        for _, o in ipairs(res.outputs.out) do
            if o.value:match("^bye") then
                byes = byes + 1
            end
        end
        assert.equals(2, byes)
    end)

    it("gives process the job's config and the task's partition", function()
        local res = assert(testing.run({
            name = "cfg", inputs = { "in" }, outputs = { "out" },
            config = { prefix = "p" },
            process = function(msg, ctx)
                ctx:send("out", nil, ctx.config.prefix .. ctx.partition
                         .. msg.value)
            end,
        }, { overrides = { "config.prefix=q" },
             inputs = { ["in"] = { { value = "x", partition = 0 } } } }))
        assert.equals("q0x", res.outputs.out[1].value)
    end)
end)
