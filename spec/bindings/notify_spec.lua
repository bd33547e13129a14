-- Specs for bindings/tide/notify.lua (a reader woken by another process's
-- append) and Log:publish() of bindings/tide/log.lua (records readable by
-- another process before the flush). The other process is the tide
-- binary: `tide produce` and `tide consume -e`.
local base = require("tide.base")
local log = require("tide.log")
local notify = require("tide.notify")
local h = require("helper")

local TIDE_BIN = os.getenv("TIDE_BIN") or "build/tide"

-- Runs `tide --data-dir DIR ARGS` with `input` on stdin (or none);
-- returns its stdout.
local function tide(dir, args, input)
    local cmd = "'" .. TIDE_BIN .. "' --data-dir '" .. dir .. "' " .. args
    if input then
        local f = assert(io.open(dir .. "/.in", "w"))
        f:write(input)
        f:close()
        cmd = cmd .. " < '" .. dir .. "/.in'"
    end
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    p:close()
    return out
end

describe("tide.log", function()
    describe("publish()", function()
        local dir
        before_each(function() dir = h.tmpdir(true) end)
        after_each(function() h.rmrf(dir) end)

        it("makes records readable by another process before the flush",
           function()
            local l = assert(log.open(dir, "s", { mode = "create",
                                                  partitions = 1 }))
            assert(l:push("k", "v\0one", 0))
            assert.equals("", tide(dir, "consume s -e -f '%s\\n'"))
            assert.is_true(l:publish())
            assert.equals("v\0one\n", tide(dir, "consume s -e -f '%s\\n'"))
            assert.is_true(l:publish())            -- nothing buffered
            assert.is_true(l:flush())
            assert.equals("v\0one\n", tide(dir, "consume s -e -f '%s\\n'"))
            local _, last = l:range(0)
            assert.equals(1, last)
            l:close()
        end)

        it("raises on a closed stream", function()
            local l = assert(log.open(dir, "s", { mode = "create" }))
            l:close()
            assert.has_error(function() l:publish() end)
        end)
    end)
end)

describe("tide.notify", function()
    local dir, l
    before_each(function()
        dir = h.tmpdir(true)
        l = assert(log.open(dir, "s", { mode = "create", partitions = 2 }))
    end)
    after_each(function()
        l:close()
        h.rmrf(dir)
    end)

    it("wakes on another process's append, and times out otherwise",
       function()
        local n = assert(notify.new())
        local id = assert(n:add(l, 0))
        assert.is_number(id)
        assert.is_number(n:fd())
        assert.is_false(n:wait(50))
        tide(dir, "produce s -p 1", "elsewhere\n")   -- not watched
        assert.is_false(n:wait(50))
        tide(dir, "produce s -p 0", "here\n")
        assert.is_true(n:wait(10000))
        assert.equals(0, n:drain())
        assert.is_true(n:remove(id))
        local ok, err, code = n:remove(id)
        assert.is_nil(ok)
        assert.matches("no notify watch", err)
        assert.equals(base.ENOENT, code)
        n:close()
        n:close()
    end)

    it("counts pending events with drain()", function()
        local n = assert(notify.new())
        assert(n:add(l, 1))
        tide(dir, "produce s -p 1", "a\nb\n")
        assert.is_true(n:drain() > 0)
        assert.equals(0, n:drain())
        n:close()
    end)

    it("returns ERANGE for a partition the stream does not have", function()
        local n = assert(notify.new())
        local id, err, code = n:add(l, 2)
        assert.is_nil(id)
        assert.matches("partition 2", err)
        assert.equals(base.ERANGE, code)
        n:close()
    end)

    it("raises on bad arguments and a closed notifier", function()
        local n = assert(notify.new())
        assert.has_error(function() n:add({}, 0) end)
        assert.has_error(function() n:add(l, 0.5) end)
        assert.has_error(function() n:wait(-1) end)
        n:close()
        assert.has_error(function() n:drain() end)
    end)

    it("frees 1000 dropped notifiers", function()
        collectgarbage()
        collectgarbage()
        local before = h.open_fd_count()
        for i = 1, 1000 do
            local n = assert(notify.new())
            assert(n:add(l, 0))
            if i % 50 == 0 then
                collectgarbage()      -- 128 inotify instances per user
            end
        end
        collectgarbage()
        collectgarbage()
        assert.equals(before, h.open_fd_count())
    end)
end)
