-- Specs for lua/tide/system.lua and the systems behind it: one contract
-- suite (docs/runtime.md, "System interface") run over `local` and `mem`.
local headers = require("tide.headers")
local partition = require("tide.partition")
local system = require("tide.system")
local h = require("helper")
local tmpdir = h.tmpdir
local rmrf = h.rmrf

local ALL = {}
for i = 0, 255 do
    ALL[#ALL + 1] = string.char(i)
end
ALL = table.concat(ALL)

-- Reads every record available now, polling `max` at a time.
local function drain(r, max)
    local all = {}
    while true do
        local out = {}
        local n = assert(r:poll(max or 100, out))
        assert.is_true(n <= (max or 100))
        if n == 0 then
            return all
        end
        for i = 1, n do
            all[#all + 1] = out[i]
        end
    end
end

describe("tide.system", function()
    describe("parse()", function()
        it("defaults to the local system", function()
            assert.same({ "local", "pageviews" },
                        { system.parse("pageviews") })
        end)

        it("splits at the first colon", function()
            assert.same({ "mem", "a" }, { system.parse("mem:a") })
            assert.same({ "local", "b" }, { system.parse("local:b") })
            assert.same({ "mem", "a:b" }, { system.parse("mem:a:b") })
        end)

        it("parses kafka streams", function()
            assert.same({ "kafka", "pageviews" },
                        { system.parse("kafka:pageviews") })
        end)

        it("names the known systems for an unknown one", function()
            local s, err = system.parse("redis:x")
            assert.is_nil(s)
            assert.equals("unknown system 'redis' in stream 'redis:x' "
                          .. "(known: local, mem, kafka)", err)
        end)

        it("refuses an empty name or a non-string", function()
            assert.is_nil((system.parse("")))
            assert.is_nil((system.parse("mem:")))
            local s, err = system.parse(42)
            assert.is_nil(s)
            assert.matches("bad stream '42'", err, 1, true)
        end)
    end)

    describe("open()", function()
        it("returns the parse error", function()
            local s, err = system.open({ mem = {} }, "redis:x", { create = true })
            assert.is_nil(s)
            assert.matches("unknown system 'redis'", err, 1, true)
        end)

        it("says how to name a Kafka cluster when none is given", function()
            local s, err = system.open({ mem = {} }, "kafka:x", { create = true })
            assert.is_nil(s)
            assert.matches("-c kafka.bootstrap.servers=HOST:PORT", err, 1, true)
        end)

        it("raises on a bad env or options", function()
            assert.has_error(function() system.open(nil, "mem:x") end)
            assert.has_error(function() system.open({ mem = {} }, "mem:x", 1) end)
            assert.has_error(function() system.open({}, "mem:x") end)
            assert.has_error(function() system.open({}, "x") end)
        end)
    end)
end)

-- The contract, for a system whose streams are opened by spec prefix
-- `prefix` in a fresh env from `new_env` (cleaned by `free_env`).
local function contract(name, prefix, new_env, free_env)
    describe("system " .. name, function()
        local env

        before_each(function()
            env = new_env()
        end)

        after_each(function()
            free_env(env)
            env = nil
        end)

        local function open(stream, opts)
            return system.open(env, prefix .. stream, opts)
        end

        local function create(stream, partitions)
            return assert(open(stream, { create = true,
                                         partitions = partitions }))
        end

        describe("open()", function()
            it("fails with a one-line error for a missing stream", function()
                create("other"):close()
                local s, err = open("missing")
                assert.is_nil(s)
                assert.matches("no stream ", err, 1, true)
                assert.matches("missing", err, 1, true)
                assert.not_matches("\n", err)
            end)

            it("creates a stream with the partitions asked for", function()
                local s = create("s", 3)
                assert.equals(3, s:count())
                assert.equals(name, s.system)
                assert.equals("s", s.name)
                s:close()
            end)

            it("creates one partition by default", function()
                local s = create("s")
                assert.equals(1, s:count())
                s:close()
            end)

            it("opens an existing stream with its own count", function()
                create("s", 3):close()
                local s = assert(open("s"))
                assert.equals(3, s:count())
                s:close()
                s = assert(open("s", { create = true, partitions = 5 }))
                assert.equals(3, s:count())
                s:close()
            end)

            it("refuses bad names and partition counts", function()
                local s, err = open("bad/name", { create = true })
                assert.is_nil(s)
                assert.matches("bad stream name", err, 1, true)
                s, err = open(".hidden", { create = true })
                assert.is_nil(s)
                assert.matches("bad stream name", err, 1, true)
                s, err = open("s", { create = true, partitions = 5000 })
                assert.is_nil(s)
                assert.matches("partitions must be 1..4096", err, 1, true)
                assert.has_error(function()
                    open("s", { create = true, partitions = 1.5 })
                end)
            end)
        end)

        describe("range()", function()
            it("starts at 0, 0 and grows with each flushed record", function()
                local s = create("s", 2)
                assert.same({ 0, 0 }, { s:range(0) })
                assert.same({ 0, 0 }, { s:range(1) })
                s:push("k", "v", 1)
                s:push("k", "v", 1)
                assert.same({ 0, 0 }, { s:range(1) })   -- not flushed yet
                assert.is_true(s:flush())
                assert.same({ 0, 0 }, { s:range(0) })
                assert.same({ 0, 2 }, { s:range(1) })
                s:close()
            end)

            it("returns nil and an error for a partition out of range",
               function()
                local s = create("s", 2)
                local a, err = s:range(2)
                assert.is_nil(a)
                assert.equals("partition 2 out of range: stream 's' has 2",
                              err)
                assert.has_error(function() s:range(-1) end)
                s:close()
            end)
        end)

        describe("push()", function()
            it("places keyed records by Kafka's murmur2", function()
                local s = create("s", 7)
                for i = 1, 200 do
                    local key = "user-" .. i
                    assert.equals(partition.get(key, 7), s:push(key, "v"))
                end
                assert.is_true(s:flush())
                for p = 0, 6 do
                    local r = assert(s:reader(p, "beginning"))
                    for _, rec in ipairs(drain(r)) do
                        assert.equals(p, partition.get(rec.key, 7))
                        assert.equals(p, rec.partition)
                    end
                    r:close()
                end
                s:close()
            end)

            it("places unkeyed records round-robin", function()
                local s = create("s", 4)
                local got = {}
                for i = 1, 12 do
                    got[i] = s:push(nil, "v" .. i)
                end
                assert.same({ 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3 }, got)
                assert.is_true(s:flush())
                for p = 0, 3 do
                    assert.same({ 0, 3 }, { s:range(p) })
                end
                s:close()
            end)

            it("uses the partition given", function()
                local s = create("s", 3)
                assert.equals(2, s:push("any", "v", 2))
                assert.equals(0, s:push(nil, "v", 0))
                s:close()
            end)

            it("returns nil and an error for a partition out of range",
               function()
                local s = create("s", 3)
                local p, err = s:push("k", "v", 3)
                assert.is_nil(p)
                assert.equals("partition 3 out of range: stream 's' has 3",
                              err)
                s:close()
            end)

            it("raises on arguments of the wrong type", function()
                local s = create("s", 1)
                assert.has_error(function() s:push(1, "v") end,
                                 "bad key: string or nil expected, got number")
                assert.has_error(function() s:push("k", {}) end,
                                 "bad value: string or nil expected, got table")
                assert.has_error(function() s:push("k", "v", -1) end)
                assert.has_error(function() s:push("k", "v", nil, 1.5) end)
                assert.has_error(function() s:push("k", "v", nil, nil, 1) end)
                s:close()
            end)
        end)

        describe("reader()", function()
            local function fill(s, n, p)
                for i = 0, n - 1 do
                    s:push("k" .. i, "v" .. i, p or 0)
                end
                assert.is_true(s:flush())
            end

            it("reads every field back", function()
                local s = create("s", 2)
                local hdrs = headers.encode({ trace = "abc", gone = false })
                s:push("key", "value", 1, 1700000000123, hdrs)
                s:flush()
                local r = assert(s:reader(1, "beginning"))
                local out = {}
                assert.equals(1, r:poll(10, out))
                assert.same({ key = "key", value = "value", offset = 0,
                              timestamp = 1700000000123, partition = 1,
                              stream = "s", headers = hdrs }, out[1])
                assert.same({ trace = "abc", gone = false },
                            headers.decode(out[1].headers))
                r:close()
                s:close()
            end)

            it("keeps nil keys, tombstones and empty strings apart",
               function()
                local s = create("s", 1)
                s:push(nil, "v")
                s:push("k", nil)
                s:push("", "")
                s:push(nil, nil, nil, nil, "")      -- empty headers: none
                s:flush()
                local recs = drain(assert(s:reader(0, 0)))
                assert.equals(4, #recs)
                assert.is_nil(recs[1].key)
                assert.equals("v", recs[1].value)
                assert.equals("k", recs[2].key)
                assert.is_nil(recs[2].value)
                assert.equals("", recs[3].key)
                assert.equals("", recs[3].value)
                assert.is_nil(recs[4].key)
                assert.is_nil(recs[4].value)
                assert.is_nil(recs[4].headers)
                s:close()
            end)

            it("is binary-safe", function()
                local s = create("s", 1)
                local big = string.rep(ALL, 64)
                s:push("\0key\0", "\0" .. ALL .. "\0", 0, nil,
                       headers.encode({ ["\0"] = ALL }))
                s:push(ALL, big, 0)
                s:flush()
                local recs = drain(assert(s:reader(0, "beginning")))
                assert.equals("\0key\0", recs[1].key)
                assert.equals("\0" .. ALL .. "\0", recs[1].value)
                assert.same({ ["\0"] = ALL }, headers.decode(recs[1].headers))
                assert.equals(ALL, recs[2].key)
                assert.equals(big, recs[2].value)
                s:close()
            end)

            it("stamps records pushed without a time with now", function()
                local s = create("s", 1)
                local before = os.time() * 1000
                s:push("k", "v")
                s:push("k", "v", nil, 0)
                s:flush()
                local after = (os.time() + 1) * 1000
                for _, rec in ipairs(drain(assert(s:reader(0, 0)))) do
                    assert.is_true(rec.timestamp >= before - 1000)
                    assert.is_true(rec.timestamp <= after)
                end
                s:close()
            end)

            it("reads from a given offset", function()
                local s = create("s", 1)
                fill(s, 10)
                local r = assert(s:reader(0, 4))
                assert.equals(4, r:offset())
                local recs = drain(r)
                assert.equals(6, #recs)
                for i, rec in ipairs(recs) do
                    assert.equals(i + 3, rec.offset)
                    assert.equals("v" .. (i + 3), rec.value)
                end
                assert.equals(10, r:offset())
                s:close()
            end)

            it("reads only later records from \"end\"", function()
                local s = create("s", 1)
                fill(s, 5)
                local r = assert(s:reader(0, "end"))
                assert.equals(5, r:offset())
                assert.equals(0, r:poll(10, {}))
                s:push("new", "record")
                s:flush()
                local recs = drain(r)
                assert.equals(1, #recs)
                assert.equals(5, recs[1].offset)
                assert.equals("new", recs[1].key)
                s:close()
            end)

            it("waits at an offset past the end until it is written",
               function()
                local s = create("s", 1)
                fill(s, 2)
                local r = assert(s:reader(0, 4))
                assert.equals(0, r:poll(10, {}))
                assert.equals(4, r:offset())
                fill(s, 5)
                local recs = drain(r)
                assert.equals(3, #recs)
                assert.equals(4, recs[1].offset)
                assert.equals(6, recs[3].offset)
                s:close()
            end)

            it("returns nil and an error for a partition out of range",
               function()
                local s = create("s", 2)
                local r, err = s:reader(2, 0)
                assert.is_nil(r)
                assert.equals("partition 2 out of range: stream 's' has 2",
                              err)
                assert.has_error(function() s:reader(0, -1) end)
                assert.has_error(function() s:reader(0, "middle") end)
                assert.has_error(function() s:reader(-1, 0) end)
                s:close()
            end)

            it("polls in batches of at most max", function()
                local s = create("s", 1)
                fill(s, 2500)
                local r = assert(s:reader(0, "beginning"))
                local out = {}
                assert.equals(1, r:poll(1, out))
                assert.equals(0, out[1].offset)
                assert.equals(7, r:poll(7, out))
                assert.equals(1, out[1].offset)
                assert.equals(2000, r:poll(2000, out))   -- several C batches
                for i = 1, 2000 do
                    assert.equals(i + 7, out[i].offset)
                end
                assert.equals(492, r:poll(2000, out))
                assert.equals(2499, out[492].offset)
                assert.equals(0, r:poll(2000, out))
                assert.equals(2500, r:offset())
                s:close()
            end)

            it("returns fresh tables that belong to the caller", function()
                local s = create("s", 1)
                fill(s, 3)
                local r1 = assert(s:reader(0, 0))
                local a = {}
                r1:poll(3, a)
                a[1].value = "changed"
                a[2].extra = true
                local r2 = assert(s:reader(0, 0))
                local b = {}
                r2:poll(3, b)
                assert.equals("v0", b[1].value)
                assert.is_nil(b[2].extra)
                assert.are_not.equal(a[3], b[3])
                s:close()
            end)

            it("keeps working after its stream is closed", function()
                local s = create("s", 1)
                fill(s, 3)
                local r = assert(s:reader(0, 0))
                s:close()
                assert.equals(3, #drain(r))
                r:close()
            end)

            it("raises after close; close is safe twice", function()
                local s = create("s", 1)
                local r = assert(s:reader(0, 0))
                r:close()
                r:close()
                assert.has_error(function() r:poll(1, {}) end,
                                 "reader is closed")
                assert.has_error(function() r:offset() end,
                                 "reader is closed")
                s:close()
            end)

            it("raises on a bad max", function()
                local s = create("s", 1)
                local r = assert(s:reader(0, 0))
                assert.has_error(function() r:poll(0, {}) end)
                assert.has_error(function() r:poll(nil, {}) end)
                s:close()
            end)
        end)

        describe("flush()", function()
            it("makes pushed records visible to other handles only then",
               function()
                local s = create("s", 2)
                local other = assert(open("s"))
                local r = assert(other:reader(1, "beginning"))
                s:push("a", "1", 1)
                s:push(nil, "2", 1)
                assert.equals(0, r:poll(10, {}))
                assert.same({ 0, 0 }, { other:range(1) })
                assert.is_true(s:flush())
                assert.same({ 0, 2 }, { other:range(1) })
                local recs = drain(r)
                assert.equals(2, #recs)
                assert.equals("1", recs[1].value)
                assert.equals("2", recs[2].value)
                assert.is_true(s:flush())               -- nothing to do
                s:close()
                other:close()
            end)

            it("keeps records of a stream reopened after flush", function()
                local s = create("s", 1)
                s:push("k", "durable")
                assert.is_true(s:flush())
                s:close()
                s = assert(open("s"))
                local recs = drain(assert(s:reader(0, 0)))
                assert.equals(1, #recs)
                assert.equals("durable", recs[1].value)
                s:close()
            end)

            it("gives dense offsets per partition across handles", function()
                local a = create("s", 2)
                local b = assert(open("s"))
                a:push(nil, "a0", 0)
                a:flush()
                b:push(nil, "b0", 0)
                b:push(nil, "b1", 1)
                b:flush()
                a:push(nil, "a1", 0)
                a:flush()
                local recs = drain(assert(a:reader(0, 0)))
                assert.same({ "a0", "b0", "a1" },
                            { recs[1].value, recs[2].value, recs[3].value })
                assert.same({ 0, 1, 2 },
                            { recs[1].offset, recs[2].offset, recs[3].offset })
                assert.same({ 0, 1 }, { a:range(1) })
                a:close()
                b:close()
            end)
        end)

        describe("close()", function()
            it("flushes what was pushed", function()
                local s = create("s", 1)
                s:push("k", "v")
                s:close()
                s = assert(open("s"))
                assert.same({ 0, 1 }, { s:range(0) })
                s:close()
            end)

            it("is safe twice, and later calls raise", function()
                local s = create("s", 1)
                s:close()
                s:close()
                assert.has_error(function() s:count() end,
                                 "stream 's' is closed")
                assert.has_error(function() s:push("k", "v") end,
                                 "stream 's' is closed")
                assert.has_error(function() s:flush() end,
                                 "stream 's' is closed")
                assert.has_error(function() s:range(0) end,
                                 "stream 's' is closed")
                assert.has_error(function() s:reader(0, 0) end,
                                 "stream 's' is closed")
            end)
        end)
    end)
end

contract("local", "",
    function()
        return { data_dir = tmpdir() }
    end,
    function(env)
        collectgarbage()
        collectgarbage()
        rmrf(env.data_dir)
    end)

contract("mem", "mem:",
    function()
        return { mem = {} }
    end,
    function() end)

describe("system mem", function()
    it("holds its streams in the env.mem registry", function()
        local env = { mem = {} }
        local s = assert(system.open(env, "mem:s", { create = true,
                                                     partitions = 2 }))
        s:push("k", "v", 1, 5)
        s:flush()
        local reg = env.mem.s
        assert.equals("s", reg.name)
        assert.equals(2, #reg.partitions)
        assert.same({ key = "k", value = "v", offset = 0, timestamp = 5,
                      partition = 1 }, reg.partitions[2][1])
        -- Another env is another world.
        assert.is_nil((system.open({ mem = {} }, "mem:s")))
    end)
end)

describe("system local reader:poll()", function()
    it("compiles to traces without NYI", function()
        local dir = tmpdir()
        local s = assert(system.open({ data_dir = dir }, "hot",
                                     { create = true }))
        local N = 20000
        local value = string.rep("v", 100)
        for i = 1, N do
            s:push("key-" .. (i % 100), value, 0)
        end
        assert.is_true(s:flush())
        local r = assert(s:reader(0, "beginning"))
        local out = {}

        local v = require("jit.v")
        local logfile = os.tmpname()
        jit.flush()             -- earlier specs compiled poll() already
        v.on(logfile)
        local count, bytes = 0, 0
        while true do
            local n = r:poll(256, out)
            if n == 0 then
                break
            end
            for i = 1, n do
                bytes = bytes + #out[i].value
            end
            count = count + n
        end
        v.off()
        local f = assert(io.open(logfile, "rb"))
        local log = f:read("*a")
        f:close()
        os.remove(logfile)

        assert.equals(N, count)
        assert.equals(N * 100, bytes)
        assert.matches("TRACE%s+%d+ [^\n]*local%.lua:%d+ loop", log)
        assert.not_matches("NYI", log)
        r:close()
        s:close()
        collectgarbage()
        rmrf(dir)
    end)
end)
