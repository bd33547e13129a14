-- Specs for bindings/tide/loop.lua: the container loop (signals as
-- events, waiting with a timeout, the folder watch, the control socket
-- and its client) and the clocks, through the FFI.
local ffi  = require("ffi")
local base = require("tide.base")
local loop = require("tide.loop")
local h = require("helper")
local read_file = h.read_file
local open_fd_count = h.open_fd_count

-- Only for the tests: this process's pid (to signal it) and its file
-- limit (to make the loop's set-up fail); sockets, to leave a stale
-- socket file behind; the user id, to test another user's socket.
pcall(ffi.cdef, [[
int getpid(void);
struct tide_spec_rlimit { unsigned long cur, max; };
int getrlimit(int resource, struct tide_spec_rlimit *rl);
int setrlimit(int resource, const struct tide_spec_rlimit *rl);
]])
pcall(ffi.cdef, [[
struct tide_spec_sockaddr_un { unsigned short family; char path[108]; };
int socket(int domain, int type, int protocol);
int bind(int fd, const struct tide_spec_sockaddr_un *sa, unsigned int len);
int close(int fd);
unsigned int geteuid(void);
]])
local RLIMIT_NOFILE = 7                       -- Linux

local PID = ffi.C.getpid()

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

-- A fresh folder; removed by rm_rf.
local function tmpdir()
    local name = os.tmpname()
    os.remove(name)
    assert(os.execute("mkdir -m 0755 '" .. name .. "'") == 0)
    return name
end

local function rm_rf(dir)
    os.execute("rm -rf '" .. dir .. "'")
end

local function write_file(path, s)
    local f = assert(io.open(path, "wb"))
    f:write(s)
    f:close()
end

local function exists(path)
    return os.execute("test -e '" .. path .. "'") == 0
end

-- Leaves a socket file nobody listens on at `path`, as a job that died
-- would.
local function stale_socket(path)
    local sa = ffi.new("struct tide_spec_sockaddr_un")
    sa.family = 1                             -- AF_UNIX
    ffi.copy(sa.path, path)
    local fd = ffi.C.socket(1, 1, 0)          -- AF_UNIX, SOCK_STREAM
    assert(fd >= 0)
    assert(ffi.C.bind(fd, sa, ffi.sizeof(sa)) == 0)
    ffi.C.close(fd)
end

-- Runs `body` (Lua source) in a child luajit in the background, with
-- `tide.loop` loaded as `loop`; what it returns is written to a file.
-- Returns a function that waits (up to ~20 s) for that result.
local function spawn(body)
    local dir = tmpdir()
    -- Writable by all: some children drop to another user.
    assert(os.execute("chmod 0777 '" .. dir .. "'") == 0)
    local script, out = dir .. "/child.lua", dir .. "/out"
    write_file(script, string.format([[
package.path = %q
local loop = require("tide.loop")
local result = (function() %s end)()
local f = assert(io.open(%q, "wb"))
f:write(result)
f:close()
os.rename(%q, %q)
]], package.path, body, out .. ".tmp", out .. ".tmp", out))
    os.execute("luajit '" .. script .. "' > '" .. dir .. "/log' 2>&1 &")
    return function()
        for _ = 1, 400 do
            local f = io.open(out, "rb")
            if f then
                local s = f:read("*a")
                f:close()
                rm_rf(dir)
                return s
            end
            os.execute("sleep 0.05")
        end
        local log = read_file(dir .. "/log")
        rm_rf(dir)
        error("the child gave no result; its output: " .. log)
    end
end

-- The child's side of a round trip: send `cmd`, return the reply or
-- "ERR <code> <message>".
local function send_body(path, cmd)
    return string.format([[
local r, err, code = loop.send(%q, %q, 15000)
return r and ("OK " .. r) or ("ERR " .. code .. " " .. err)]], path, cmd)
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
            assert.equals(4, loop.CHANGE)
            assert.equals(8, loop.COMMAND)
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
            -- Traces of earlier tests can have side exits inside poll()
            -- that grow side traces ending in "NYI: return to lower
            -- frame", depending on what ran before: start from none.
            jit.flush()
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

    describe("watch()", function()
        local l, dir

        before_each(function()
            l = assert(loop.new())
            dir = tmpdir()
        end)

        after_each(function()
            l:close()
            rm_rf(dir)
        end)

        it("raises CHANGE for a new file and for a save by rename", function()
            assert.is_true(l:watch(dir))
            assert.equals(0, l:poll(0))
            write_file(dir .. "/job.lua", "return 1")
            assert.equals(loop.CHANGE, poll_for(l, loop.CHANGE))
            l:poll(50)
            -- What vim and many editors do: write aside, rename over.
            write_file(dir .. "/.job.lua.swp", "return 2")
            assert(os.rename(dir .. "/.job.lua.swp", dir .. "/job.lua"))
            assert.equals(loop.CHANGE, poll_for(l, loop.CHANGE))
        end)

        it("replaces the watch when called again", function()
            local other = tmpdir()
            assert.is_true(l:watch(dir))
            assert.is_true(l:watch(other))
            write_file(dir .. "/a.lua", "x")
            assert.equals(0, l:poll(200))
            write_file(other .. "/b.lua", "x")
            assert.equals(loop.CHANGE, poll_for(l, loop.CHANGE))
            rm_rf(other)
        end)

        it("returns ENOENT for a missing folder", function()
            local ok, err, code = l:watch(dir .. "/missing")
            assert.is_nil(ok)
            assert.equals(base.ENOENT, code)
            assert.matches("cannot watch folder '" .. dir .. "/missing'",
                           err, 1, true)
        end)

        it("returns EINVAL for a file", function()
            write_file(dir .. "/f", "x")
            local ok, _, code = l:watch(dir .. "/f")
            assert.is_nil(ok)
            assert.equals(base.EINVAL, code)
            assert.is_nil(select(1, l:watch("")))
        end)

        it("returns EIO for a folder it may not look into", function()
            assert(os.execute("mkdir -p '" .. dir .. "/closed/inner'") == 0)
            assert(os.execute("chmod 0 '" .. dir .. "/closed'") == 0)
            -- As root, only another user is kept out: ask a child.
            local wait = spawn(string.format([[
local ffi = require("ffi")
ffi.cdef("int setuid(unsigned int uid); unsigned int geteuid(void);")
if ffi.C.geteuid() == 0 then assert(ffi.C.setuid(65534) == 0) end
local l = assert(loop.new())
local ok, err, code = l:watch(%q)
return tostring(code) .. " " .. tostring(err)]], dir .. "/closed/inner"))
            local result = wait()
            os.execute("chmod 0755 '" .. dir .. "/closed'")
            assert.matches("^" .. base.EIO .. " cannot watch folder", result)
        end)

        it("raises on bad arguments and on a closed loop", function()
            assert.has_error(function() l:watch(nil) end,
                             "bad folder: string expected")
            local c = assert(loop.new())
            c:close()
            assert.has_error(function() c:watch(dir) end, "loop is closed")
        end)
    end)

    describe("control()", function()
        local l, dir, path

        before_each(function()
            l = assert(loop.new())
            dir = tmpdir()
            path = dir .. "/control.sock"
        end)

        after_each(function()
            l:close()
            rm_rf(dir)
        end)

        it("answers a client in another process", function()
            assert.is_true(l:control(path))
            local p = assert(io.popen("stat -c %a '" .. path .. "'"))
            assert.equals("600", p:read("*l"))
            p:close()
            local wait = spawn(send_body(path, "reload"))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            assert.equals("reload", l:pop_command())
            assert.is_nil(l:pop_command())
            assert.is_true(l:reply("ok: reloaded\n"))
            assert.equals("OK ok: reloaded\n", wait())
            -- Answered once only.
            local ok, err, code = l:reply("again")
            assert.is_nil(ok)
            assert.equals("no command to reply to", err)
            assert.equals(base.EINVAL, code)
        end)

        it("carries binary replies and the longest command", function()
            assert.is_true(l:control(path))
            local long = string.rep("x", 4095)
            local wait = spawn(send_body(path, long))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            assert.equals(long, l:pop_command())
            assert.is_true(l:reply("a\0b"))
            assert.equals("OK a\0b", wait())
        end)

        it("queues clients in order", function()
            assert.is_true(l:control(path))
            local first = spawn(send_body(path, "first"))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            local second = spawn(send_body(path, "second"))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            assert.equals("first", l:pop_command())
            assert.is_true(l:reply("1"))
            assert.equals("second", l:pop_command())
            assert.is_true(l:reply("2"))
            assert.equals("OK 1", first())
            assert.equals("OK 2", second())
        end)

        it("replaces a stale socket file", function()
            stale_socket(path)
            assert.is_true(l:control(path))
            local wait = spawn(send_body(path, "ping"))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            assert.equals("ping", l:pop_command())
            l:reply("pong")
            assert.equals("OK pong", wait())
        end)

        it("returns EBUSY when a live process serves the path", function()
            assert.is_true(l:control(path))
            local other = assert(loop.new())
            local ok, err, code = other:control(path)
            assert.is_nil(ok)
            assert.equals(base.EBUSY, code)
            assert.equals("another process serves " .. path, err)
            other:close()
            assert.is_true(exists(path))
        end)

        it("returns EINVAL when the loop serves a socket already", function()
            assert.is_true(l:control(path))
            local ok, err, code = l:control(dir .. "/other.sock")
            assert.is_nil(ok)
            assert.equals(base.EINVAL, code)
            assert.matches("already", err, 1, true)
            ok, err, code = assert(loop.new()):control("/" .. ("a"):rep(200))
            assert.is_nil(ok)
            assert.equals(base.EINVAL, code)
            assert.matches("too long", err, 1, true)
        end)

        it("returns EIO when the path is not a socket", function()
            write_file(path, "keep me")
            local ok, err, code = l:control(path)
            assert.is_nil(ok)
            assert.equals(base.EIO, code)
            assert.matches("not a socket", err, 1, true)
            assert.equals("keep me", read_file(path))
        end)

        it("removes the socket file on close, and closes twice", function()
            assert.is_true(l:control(path))
            assert.is_true(exists(path))
            l:close()
            assert.is_false(exists(path))
            l:close()
            assert.has_error(function() l:pop_command() end,
                             "loop is closed")
            assert.has_error(function() l:reply("x") end, "loop is closed")
            assert.has_error(function() l:control(path) end,
                             "loop is closed")
        end)

        it("raises on bad arguments", function()
            assert.has_error(function() l:control(1) end,
                             "bad socket path: string expected")
            assert.has_error(function() l:reply(nil) end,
                             "bad reply: string expected")
        end)
    end)

    describe("send()", function()
        local dir, path

        before_each(function()
            dir = tmpdir()
            path = dir .. "/control.sock"
        end)

        after_each(function()
            rm_rf(dir)
        end)

        it("returns ENOENT when no job listens", function()
            local r, err, code = loop.send(path, "reload", 1000)
            assert.is_nil(r)
            assert.equals(base.ENOENT, code)
            assert.equals("no job is listening on " .. path
                          .. " (is it running?)", err)
            stale_socket(path)
            r, err, code = loop.send(path, "reload", 1000)
            assert.is_nil(r)
            assert.equals(base.ENOENT, code)
            assert.matches("no job is listening", err, 1, true)
        end)

        it("returns EAGAIN when the job does not answer in time", function()
            local l = assert(loop.new())
            assert.is_true(l:control(path))
            local r, err, code = loop.send(path, "reload", 100)
            assert.is_nil(r)
            assert.equals(base.EAGAIN, code)
            assert.matches("within 100 ms", err, 1, true)
            l:close()
        end)

        it("returns a reply of 3 MiB whole, to a command of 900 KiB",
           function()
            local l = assert(loop.new())
            assert.is_true(l:control(path))
            local cmd = string.rep("0123456789", 92160)   -- 900 KiB
            local t = {}
            for i = 1, 3 * 1024 do
                t[i] = string.char(i % 256):rep(1023) .. "\0"
            end
            local reply = table.concat(t)                 -- 3 MiB
            local wait = spawn(string.format([[
local r, err, code = loop.send(%q, string.rep("0123456789", 92160), 30000)
return r and ("OK " .. r) or ("ERR " .. code .. " " .. err)]], path))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            assert.equals(cmd, l:pop_command())
            assert.is_true(l:reply(reply))
            local got = wait()
            assert.equals(#reply + 3, #got)
            assert.is_true("OK " .. reply == got)
            l:close()
        end)

        it("returns ENOBUFS for a reply longer than max_reply", function()
            local l = assert(loop.new())
            assert.is_true(l:control(path))
            local wait = spawn(string.format([[
local r, err, code = loop.send(%q, "big", 15000, 10)
return r and ("OK " .. r) or ("ERR " .. code .. " " .. err)]], path))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            assert.equals("big", l:pop_command())
            assert.is_true(l:reply("0123456789A"))
            assert.equals("ERR " .. base.ENOBUFS .. " the reply from " .. path
                          .. " is longer than 10 bytes", wait())
            -- Exactly the limit is whole.
            wait = spawn(string.format([[
local r, err, code = loop.send(%q, "big", 15000, 10)
return r and ("OK " .. r) or ("ERR " .. code .. " " .. err)]], path))
            assert.equals(loop.COMMAND, poll_for(l, loop.COMMAND))
            assert.equals("big", l:pop_command())
            assert.is_true(l:reply("0123456789"))
            assert.equals("OK 0123456789", wait())
            l:close()
        end)

        it("returns EIO for another user's socket", function()
            local l = assert(loop.new())
            assert.is_true(l:control(path))
            local as_root = ffi.C.geteuid() == 0
            if not as_root then
                assert(os.execute("chmod 0 '" .. path .. "'") == 0)
            end
            local wait = spawn(string.format([[
local ffi = require("ffi")
ffi.cdef("int setuid(unsigned int uid); unsigned int geteuid(void);")
if %s then assert(ffi.C.setuid(65534) == 0) end
]], tostring(as_root)) .. send_body(path, "reload"))
            assert.equals("ERR " .. base.EIO .. " permission denied on "
                          .. "control socket " .. path .. ": the job runs as "
                          .. "another user; run this as the job's user",
                          wait())
            l:close()
        end)

        it("raises on bad arguments", function()
            assert.has_error(function() loop.send(nil, "x") end,
                             "bad socket path: string expected")
            assert.has_error(function() loop.send(path, "a\nb") end)
            assert.has_error(function() loop.send(path, "a\0b") end)
            assert.has_error(function()
                loop.send(path, ("x"):rep(1048577))
            end, "bad command: one line of at most 1048576 bytes expected")
            assert.has_error(function() loop.send(path, "x", 10, -1) end,
                             "bad reply limit: bytes from 0 to 1 GiB expected")
            assert.has_error(function() loop.send(path, "x", -1) end,
                             "bad timeout: milliseconds >= 0 expected")
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
            -- Loops that serve a control socket (and some that watch a
            -- folder: each watching loop holds an inotify instance, of
            -- which a user has only 128 by default): every descriptor
            -- and socket file goes with them.
            local dir = tmpdir()
            for i = 1, 1000 do
                local l = assert(loop.new())
                assert(l:control(dir .. "/c" .. i .. ".sock"))
                if i % 50 == 0 then
                    assert(l:watch(dir))
                end
            end
            collectgarbage()
            collectgarbage()
            assert.equals(fds, open_fd_count())
            local p = assert(io.popen("ls -A '" .. dir .. "' | wc -l"))
            assert.equals("0", p:read("*l"))
            p:close()
            rm_rf(dir)
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
