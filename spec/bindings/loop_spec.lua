-- Specs for bindings/tide/loop.lua: the container loop (signals as
-- events, waiting with a timeout) and the clocks, through the FFI.
local ffi  = require("ffi")
local base = require("tide.base")
local loop = require("tide.loop")

-- Only for the tests: this process's pid (to signal it) and its file
-- limit (to make the loop's set-up fail).
pcall(ffi.cdef, [[
int getpid(void);
int fcntl(int fd, int cmd, ...);
struct tide_spec_rlimit { unsigned long cur, max; };
int getrlimit(int resource, struct tide_spec_rlimit *rl);
int setrlimit(int resource, const struct tide_spec_rlimit *rl);
]])
local RLIMIT_NOFILE = 7                       -- Linux

local PID = ffi.C.getpid()

local function read_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- Counts open descriptors with fcntl rather than by listing
-- /proc/<pid>/fd from a child: the child can run before the parent has
-- closed its end of the pipe to it, and count one too many.
local function open_fd_count()
    local n = 0
    for fd = 0, 65535 do
        if ffi.C.fcntl(fd, 1) ~= -1 then          -- F_GETFD
            n = n + 1
        end
    end
    return n
end

-- Through io.popen, not os.execute: system() ignores SIGINT in the caller
-- while its child runs, so a SIGINT sent from there would be lost.
local function kill(sig)
    local p = assert(io.popen("kill -" .. sig .. " " .. PID))
    p:read("*a")
    p:close()
end

-- Polls until every bit of `want` was seen, or for at most ~10 s; returns
-- the bits seen.
local function poll_for(l, want)
    local seen = 0
    local deadline = loop.now() + 10000
    while bit.band(seen, want) ~= want and loop.now() < deadline do
        seen = bit.bor(seen, l:poll(1000))
    end
    return seen
end

describe("tide.loop", function()
    after_each(function()
        collectgarbage()
        collectgarbage()
    end)

    describe("new()", function()
        it("returns a loop with nothing to report", function()
            local l = assert(loop.new())
            assert.equals(0, l:poll())
            assert.equals(0, l:poll(0))
            l:close()
        end)

        it("exposes the event bits", function()
            assert.equals(1, loop.STOP)
            assert.equals(2, loop.RELOAD)
        end)

        it("fails with EIO when libuv cannot set up", function()
            local rl = ffi.new("struct tide_spec_rlimit")
            assert.equals(0, ffi.C.getrlimit(RLIMIT_NOFILE, rl))
            local saved = rl.cur
            -- No new descriptor: the loop's epoll and pipes cannot open.
            rl.cur = 0
            assert.equals(0, ffi.C.setrlimit(RLIMIT_NOFILE, rl))
            local l, err, code = loop.new()
            rl.cur = saved
            assert.equals(0, ffi.C.setrlimit(RLIMIT_NOFILE, rl))
            assert.is_nil(l)
            assert.equals(base.EIO, code)
            assert.matches("cannot make the event loop", err, 1, true)
        end)
    end)

    describe("poll()", function()
        local l

        before_each(function()
            l = assert(loop.new())
        end)

        after_each(function()
            l:close()
        end)

        it("returns after about the timeout when nothing happens", function()
            local t0 = loop.now()
            assert.equals(0, l:poll(50))
            -- A bound loose enough for a busy machine; only a poll that
            -- returned at once or hung would fail.
            local dt = loop.now() - t0
            assert.is_true(dt >= 40, "returned after " .. dt .. " ms")
            assert.is_true(dt < 10000, "returned after " .. dt .. " ms")
        end)

        it("accepts a fractional timeout", function()
            assert.equals(0, l:poll(0.5))
        end)

        it("reports SIGHUP as RELOAD", function()
            kill("HUP")
            assert.equals(loop.RELOAD, poll_for(l, loop.RELOAD))
            assert.equals(0, l:poll(0))           -- reported once
        end)

        it("reports SIGTERM and SIGINT as STOP", function()
            kill("TERM")
            assert.equals(loop.STOP, poll_for(l, loop.STOP))
            kill("INT")
            assert.equals(loop.STOP, poll_for(l, loop.STOP))
            assert.equals(0, l:poll(0))
        end)

        it("returns early when a signal arrives during the wait", function()
            os.execute("(sleep 0.2; kill -HUP " .. PID .. ") &")
            local t0 = loop.now()
            local ev = l:poll(30000)
            local dt = loop.now() - t0
            assert.equals(loop.RELOAD, ev)
            assert.is_true(dt < 20000, "returned after " .. dt .. " ms")
        end)

        it("reports to every open loop", function()
            local other = assert(loop.new())
            kill("HUP")
            assert.equals(loop.RELOAD, poll_for(l, loop.RELOAD))
            assert.equals(loop.RELOAD, poll_for(other, loop.RELOAD))
            other:close()
        end)

        it("raises on a bad timeout", function()
            assert.has_error(function() l:poll(-1) end,
                             "bad timeout: milliseconds >= 0 expected")
            assert.has_error(function() l:poll("10") end)
            assert.has_error(function() l:poll(2 ^ 31) end)
        end)

        it("stays fast in compiled code", function()
            local v = require("jit.v")
            local logfile = os.tmpname()
            v.on(logfile)
            local seen, t = 0, 0
            for _ = 1, 2000 do
                seen = seen + l:poll(0)
                t = loop.now()
            end
            v.off()
            local out = read_file(logfile)
            os.remove(logfile)
            assert.equals(0, seen)
            assert.is_true(t > 0)
            assert.matches("TRACE%s+%d+ [^\n]*loop_spec%.lua:%d+ loop", out)
            assert.not_matches("NYI", out)
        end)
    end)

    describe("close()", function()
        it("can be called twice", function()
            local l = assert(loop.new())
            l:close()
            l:close()
        end)

        it("makes poll() raise", function()
            local l = assert(loop.new())
            l:close()
            assert.has_error(function() l:poll(0) end, "loop is closed")
        end)
    end)

    describe("garbage collection", function()
        it("frees 1000 dropped loops", function()
            collectgarbage()
            collectgarbage()
            local fds = open_fd_count()
            for i = 1, 1000 do
                local l = assert(loop.new())
                if i % 3 == 0 then
                    l:poll(0)
                end
            end
            collectgarbage()
            collectgarbage()
            assert.equals(fds, open_fd_count())
            -- A new loop still sees signals.
            local l = assert(loop.new())
            kill("HUP")
            assert.equals(loop.RELOAD, poll_for(l, loop.RELOAD))
            l:close()
        end)
    end)

    describe("now()", function()
        it("returns monotonic milliseconds", function()
            local a = loop.now()
            os.execute("sleep 0.05")
            local b = loop.now()
            assert.is_true(b >= a + 40, (b - a) .. " ms")
            assert.is_true(b - a < 10000)
            assert.equals(math.floor(b), b)
        end)
    end)

    describe("realtime()", function()
        it("returns milliseconds since the epoch", function()
            local t = loop.realtime()
            assert.equals(math.floor(t), t)
            assert.is_true(math.abs(t - os.time() * 1000) < 2000)
        end)
    end)
end)
