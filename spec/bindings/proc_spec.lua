-- Specs for bindings/tide/proc.lua: worker processes of the tide binary,
-- their channels and watch slots, and the loop's INPUT and CHILD bits
-- (bindings/tide/loop.lua). The worker runs a stand-in for the Lua
-- runtime's "worker" command: a tide/cli.lua written to a scratch folder
-- and put first on TIDE_LUA_PATH.
local ffi  = require("ffi")
local base = require("tide.base")
local loop = require("tide.loop")
local proc = require("tide.proc")
local h = require("helper")

local TIDE_BIN = os.getenv("TIDE_BIN") or "build/tide"
local SRC = os.getenv("TIDE_SOURCE_DIR") or "."

-- The stand-in: echoes frames; "shm" writes watch slot 0, "exit" exits
-- with 3, "env" reports TIDE_WORKER.
local WORKER_CLI = [[
local ffi = require("ffi")
local proc = require("tide.proc")
return { main = function(cmd)
    if cmd ~= "worker" then return 2 end
    local chan = assert(proc.worker_chan())
    local slots, count = proc.worker_shm()
    while true do
        chan:wait(1000)
        local msg, _, code = chan:recv()
        if code then return 0 end
        if msg == "shm" then
            slots[0].task = 5
            slots[0].offset = 1234567890123
            ffi.copy(slots[0].version, "v7")
            slots[0].seq = slots[0].seq + 1
            assert(chan:send("ok " .. count))
        elseif msg == "exit" then
            return 3
        elseif msg == "env" then
            assert(chan:send(tostring(os.getenv("TIDE_WORKER"))))
        elseif msg then
            assert(chan:send(msg))
        end
    end
end }
]]

local function recv_wait(chan)
    for _ = 1, 100 do
        local msg, err, code = chan:recv()
        if msg or code then
            return msg, err, code
        end
        chan:wait(100)
    end
    error("no frame within 10 s")
end

local function reap_wait(p)
    for _ = 1, 1000 do
        local st = p:reap()
        if st then
            return st
        end
        os.execute("sleep 0.01")
    end
    error("worker still running after 10 s")
end

describe("tide.proc", function()
    local dir, lua_path
    setup(function()
        dir = h.tmpdir(true)
        os.execute("mkdir -p '" .. dir .. "/tide'")
        local f = assert(io.open(dir .. "/tide/cli.lua", "w"))
        f:write(WORKER_CLI)
        f:close()
        lua_path = dir .. "/?.lua;" .. SRC .. "/bindings/?.lua;;"
    end)
    teardown(function() h.rmrf(dir) end)

    local function spawn(title, extra)
        local o = { title = title, path = TIDE_BIN,
                    env = { TIDE_LUA_PATH = lua_path } }
        for k, v in pairs(extra or {}) do
            o[k] = v
        end
        return assert(proc.spawn(o))
    end

    describe("spawn()", function()
        it("starts the tide binary as a worker named 'tide' with its title",
           function()
            local p = spawn("tide: spec job worker 1")
            local pid = p:pid()
            assert.is_true(pid > 0)
            assert.equals("tide\n", h.read_file("/proc/" .. pid .. "/comm"))
            assert.equals("tide: spec job worker 1\0",
                          h.read_file("/proc/" .. pid .. "/cmdline"))
            -- Without the ASan runtime the specs preload: pgrep hangs in it.
            local pg = io.popen("env -u LD_PRELOAD pgrep -f 'tide: spec job "
                                .. "worker 1'")
            assert.equals(tostring(pid), pg:read("*l"))
            pg:close()
            -- The worker took TIDE_WORKER out of its environment.
            assert.is_true(p.chan:send("env"))
            assert.equals("nil", recv_wait(p.chan))
            assert.is_true(p:kill("TERM"))
            assert.equals(-15, reap_wait(p))
            p:close()
            p:close()
        end)

        it("returns ENOENT for a program that does not exist", function()
            local p, err, code = proc.spawn({ title = "x",
                                              path = "/nonexistent/tide" })
            assert.is_nil(p)
            assert.matches("/nonexistent/tide", err, 1, true)
            assert.equals(base.ENOENT, code)
        end)

        it("raises on bad options", function()
            assert.has_error(function() proc.spawn() end)
            assert.has_error(function() proc.spawn({ title = "" }) end)
            assert.has_error(function()
                proc.spawn({ title = "x", shm_bytes = -1 })
            end)
            assert.has_error(function()
                proc.spawn({ title = "x", env = { "NOEQUALS" } })
            end)
        end)
    end)

    describe("chan", function()
        it("carries frames both ways, binary and 1 MiB ones", function()
            local p = spawn("tide: spec job worker 2")
            assert.is_nil(p.chan:recv())
            local big = string.rep("0123456789abcdef", 65536)
            for _, msg in ipairs({ "a\0b", "", big, "end" }) do
                assert.is_true(p.chan:send(msg))
            end
            for _, msg in ipairs({ "a\0b", "", big, "end" }) do
                assert.equals(msg, recv_wait(p.chan))
            end
            assert.has_error(function() p.chan:send(42) end)
            assert.is_true(p.chan:flush(0))
            assert.is_number(p:fd())
            assert.equals(p:fd(), p.chan:fd())
            assert.is_true(p:rss() > 0)
            assert.is_true(p.chan:send("exit"))
            assert.equals(3, reap_wait(p))
            local msg, err, code = recv_wait(p.chan)
            assert.is_nil(msg)
            assert.matches("closed", err)
            assert.equals(proc.ECLOSED, code)
            local ok
            ok, err, code = p.chan:send("x")
            assert.is_nil(ok)
            assert.equals(proc.ECLOSED, code)
            ok, err, code = p:kill("KILL")
            assert.is_nil(ok)
            assert.equals(base.ENOENT, code)
            ok, err, code = p:rss()
            assert.is_nil(ok)
            assert.equals(base.ENOENT, code)
            p:close()
            assert.has_error(function() p.chan:recv() end)
            assert.has_error(function() p:pid() end)
        end)

        it("stays fast in compiled code", function()
            local p = spawn("tide: spec job worker 6", { shm_bytes = 4096 })
            local slots = p:watch()
            local chan = p.chan
            local v = require("jit.v")
            local logfile = os.tmpname()
            jit.flush()
            v.on(logfile)
            local got = 0
            for i = 1, 2000 do
                slots[1].seq = slots[1].seq + 1
                slots[1].offset = i
                chan:send("ping")
                local msg = chan:recv()
                while not msg do
                    chan:wait(1000)
                    msg = chan:recv()
                end
                got = got + #msg
            end
            v.off()
            local out = h.read_file(logfile)
            os.remove(logfile)
            assert.equals(8000, got)
            assert.equals(2000, tonumber(slots[1].seq))
            assert.matches("TRACE%s+%d+ [^\n]*proc_spec%.lua:%d+ loop", out)
            assert.not_matches("NYI", out)
            p:kill("KILL")
            reap_wait(p)
            p:close()
        end)

        it("frees dropped procs", function()
            collectgarbage()
            collectgarbage()
            local before = h.open_fd_count()
            for _ = 1, 50 do
                assert(proc.spawn({ title = "tide: spec dropped",
                                    path = "/bin/true", shm_bytes = 64 }))
            end
            collectgarbage()
            collectgarbage()
            assert.equals(before, h.open_fd_count())
        end)

        it("is nil for a process that is no worker", function()
            local c, err = proc.worker_chan()
            assert.is_nil(c)
            assert.matches("not a worker", err)
            assert.is_nil(proc.worker_shm())
        end)
    end)

    describe("watch()", function()
        it("shows the slots a worker writes", function()
            local p = spawn("tide: spec job worker 3", { shm_bytes = 4096 })
            local slots, count = p:watch()
            assert.equals(64, count)
            assert.equals(64, ffi.sizeof(slots[0]))
            assert.is_true(p.chan:send("shm"))
            assert.equals("ok 64", recv_wait(p.chan))
            assert.equals(1, tonumber(slots[0].seq))
            assert.equals(5, slots[0].task)
            assert.equals(1234567890123, tonumber(slots[0].offset))
            assert.equals("v7", ffi.string(slots[0].version))
            assert(p:kill(9))
            assert.equals(-9, reap_wait(p))
            p:close()
        end)

        it("is nil without a region", function()
            local p = spawn("tide: spec job worker 4")
            assert.is_nil(p:watch())
            p:kill("KILL")
            reap_wait(p)
            p:close()
        end)
    end)

    describe("with a loop", function()
        it("raises INPUT for a frame and CHILD for an end", function()
            local l = assert(loop.new())
            assert.is_true(l:watch_children())
            local p = spawn("tide: spec job worker 5")
            local id = assert(l:watch_fd(p:fd()))
            local _, _, code = l:watch_fd(p:fd())
            assert.equals(base.EINVAL, code)
            assert.is_true(p.chan:send("ping"))
            local seen = 0
            for _ = 1, 100 do
                seen = bit.bor(seen, l:poll(100))
                if bit.band(seen, loop.INPUT) ~= 0 then break end
            end
            assert.is_true(bit.band(seen, loop.INPUT) ~= 0)
            assert.equals("ping", recv_wait(p.chan))
            assert.is_true(p.chan:send("exit"))
            seen = 0
            for _ = 1, 100 do
                local ev = l:poll(100)
                if bit.band(ev, loop.INPUT) ~= 0 and id then
                    local _, _, c = p.chan:recv()
                    if c == proc.ECLOSED then
                        assert.is_true(l:unwatch_fd(id))
                        id = nil
                    end
                end
                seen = bit.bor(seen, ev)
                if bit.band(seen, loop.CHILD) ~= 0 and not id then break end
            end
            assert.is_true(bit.band(seen, loop.CHILD) ~= 0)
            assert.equals(3, reap_wait(p))
            local ok, _, c = l:unwatch_fd(12345)
            assert.is_nil(ok)
            assert.equals(base.ENOENT, c)
            p:close()
            l:close()
        end)
    end)

    describe("a worker whose supervisor is SIGKILLed", function()
        it("is gone too", function()
            -- The supervisor: a luajit that spawns a worker, prints its
            -- pid and sleeps.
            local script = dir .. "/sup.lua"
            local f = assert(io.open(script, "w"))
            f:write(([[
package.path = %q .. package.path
local proc = require("tide.proc")
local p = assert(proc.spawn({ title = "tide: spec orphan worker",
    path = %q, env = { TIDE_LUA_PATH = %q } }))
io.stdout:write(p:pid(), "\n")
io.stdout:flush()
local ffi = require("ffi")
ffi.cdef("int poll(void *fds, unsigned long n, int timeout)")
ffi.C.poll(nil, 0, 60000)
]]):format(SRC .. "/bindings/?.lua;", TIDE_BIN, lua_path))
            f:close()
            local out = dir .. "/sup.out"
            assert(os.execute("luajit '" .. script .. "' > '" .. out
                              .. "' 2>&1 & echo $! > '" .. dir
                              .. "/sup.pid'") == 0)
            local worker
            for _ = 1, 1000 do
                local o = io.open(out)         -- made by the background job
                worker = o and tonumber((o:read("*a")):match("^(%d+)\n"))
                if o then o:close() end
                if worker then break end
                os.execute("sleep 0.01")
            end
            assert.is_number(worker)
            local sup = tonumber(h.read_file(dir .. "/sup.pid"))
            assert.equals(0, os.execute("kill -0 " .. worker))
            assert.equals(0, os.execute("kill -9 " .. sup))
            -- Gone, or a zombie for whoever adopted it to reap.
            local gone = false
            for _ = 1, 1000 do
                local st = io.open("/proc/" .. worker .. "/stat")
                local s = st and st:read("*a")
                if st then st:close() end
                if not s or s:match("^%d+ %b() Z") then
                    gone = true
                    break
                end
                os.execute("sleep 0.01")
            end
            assert.is_true(gone)
        end)
    end)

    describe("'tide run'", function()
        it("executes itself again for huge pages under the name 'tide'",
           function()
            if os.getenv("GLIBC_TUNABLES") then
                pending("GLIBC_TUNABLES is set around the specs")
                return
            end
            -- The job file is a FIFO: 'tide run' waits in its open, after
            -- the re-exec, while we look at it.
            local fifo = dir .. "/job.lua"
            assert.equals(0, os.execute("mkfifo '" .. fifo .. "'"))
            assert.equals(0, os.execute("'" .. TIDE_BIN .. "' --data-dir '"
                .. dir .. "/data' run --create '" .. fifo .. "' >/dev/null 2>&1 & "
                .. "echo $! > '" .. dir .. "/run.pid'"))
            local pid = tonumber(h.read_file(dir .. "/run.pid"))
            local env
            for _ = 1, 1000 do
                local f = io.open("/proc/" .. pid .. "/environ")
                env = f and f:read("*a") or ""
                if f then f:close() end
                if env:find("GLIBC_TUNABLES=", 1, true) then break end
                os.execute("sleep 0.01")
            end
            assert.truthy(env:find("GLIBC_TUNABLES=", 1, true))
            local comm = h.read_file("/proc/" .. pid .. "/comm")
            local f = assert(io.open(fifo, "w"))     -- let it go on
            f:write("return nil\n")
            f:close()
            os.execute("wait " .. pid .. " 2>/dev/null; sleep 0.1")
            assert.equals("tide\n", comm)
        end)
    end)
end)
