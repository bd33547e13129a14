-- Specs for the peer check of the control socket (bindings/tide/loop.lua,
-- core/src/container/loop.c and control.c): a user other than the job's
-- cannot send it commands. The job is this process (root, as in CI); the
-- other user is 'nobody', a real second process started through setpriv.
-- First the socket's mode keeps it out (the client's connect fails with
-- EACCES); with the mode opened up, the job's SO_PEERCRED check does.
local ffi  = require("ffi")
local base = require("tide.base")
local loop = require("tide.loop")
local h = require("helper")

pcall(ffi.cdef, [[
unsigned int geteuid(void);
]])                                           -- only for the tests

local NOBODY = 65534

-- A shell word.
local function q(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

local function sh_ok(cmd)
    local r = os.execute(cmd)
    return r == 0 or r == true
end

-- The file's text, or nil when it is not there (yet).
local function file_text(path)
    local ok, s = pcall(h.read_file, path)
    return ok and s or nil
end

-- The client, as user nobody: a copy of the bindings and of libtide in
-- `dir`, so that the checkout and the build may sit where that user
-- cannot read (that must not be what keeps it out).
local CLIENT = [[
package.path = %q
local loop = require("tide.loop")
local r, err, code = loop.send(%q, "reload", 5000)
io.write(r and ("OK " .. r) or ("ERR " .. tostring(code) .. " " .. err))
]]

-- Runs the client as nobody in the background while `l` is polled, and
-- returns what it wrote, and every command `l` received meanwhile.
local function run_as_nobody(l, dir, path)
    local script = dir .. "/client.lua"
    local f = assert(io.open(script, "wb"))
    f:write(CLIENT:format(dir .. "/bindings/?.lua", path))
    f:close()
    os.remove(dir .. "/out")
    os.remove(dir .. "/rc")
    assert(sh_ok(string.format(
        "(TIDE_LIB=%s setpriv --reuid=%d --regid=%d --clear-groups "
        .. "luajit %s > %s 2>&1; echo $? > %s.tmp; mv %s.tmp %s) &",
        q(dir .. "/libtide.so"), NOBODY, NOBODY, q(script), q(dir .. "/out"),
        q(dir .. "/rc"), q(dir .. "/rc"), q(dir .. "/rc"))))
    local commands = {}
    local deadline = loop.now() + 20000
    while loop.now() < deadline do
        l:poll(50)
        local cmd = l:pop_command()
        while cmd do
            commands[#commands + 1] = cmd
            l:reply("ok: answered\n")         -- what the job would do
            cmd = l:pop_command()
        end
        if file_text(dir .. "/rc") then
            break
        end
    end
    -- A little longer: anything still in flight would show up now.
    for _ = 1, 5 do
        l:poll(20)
        local cmd = l:pop_command()
        if cmd then
            commands[#commands + 1] = cmd
        end
    end
    assert(file_text(dir .. "/rc"), "the client did not end")
    return file_text(dir .. "/out"), commands
end

describe("tide.loop control socket", function()
    local dir, path, l

    -- Skips (pending) unless root with setpriv; else makes the job's loop
    -- and the copy of the bindings. Called first in each test: busted
    -- has no pending() in before_each.
    local function setup()
        if ffi.C.geteuid() ~= 0 then
            pending("needs root: the other user is 'nobody', through setpriv")
            return
        end
        if not sh_ok("command -v setpriv > /dev/null") then
            pending("needs setpriv (util-linux) to run a client as nobody")
            return
        end
        dir = h.tmpdir()
        assert(sh_ok("mkdir -m 0755 " .. q(dir)))
        local lib = assert(base.lib_path or os.getenv("TIDE_LIB"),
                           "no library path: run with TIDE_LIB set")
        assert(sh_ok(string.format("cp -R %s %s/ && cp %s %s/libtide.so "
                                   .. "&& chmod -R a+rX %s",
                                   q((os.getenv("TIDE_SOURCE_DIR") or ".")
                                     .. "/bindings"), q(dir), q(lib), q(dir),
                                   q(dir))))
        path = dir .. "/control.sock"
        l = assert(loop.new())
        assert(l:control(path))
    end

    after_each(function()
        if l then
            l:close()
            l = nil
        end
        if dir then
            h.rmrf(dir)
            dir = nil
        end
    end)

    it("keeps another user out by its mode, with a clear error", function()
        setup()
        local p = assert(io.popen("stat -c %a " .. q(path)))
        assert.equals("600", p:read("*l"))
        p:close()
        local out, commands = run_as_nobody(l, dir, path)
        assert.equals("ERR " .. base.EIO .. " permission denied on control "
                      .. "socket " .. path .. ": the job runs as another "
                      .. "user; run this as the job's user", out)
        assert.same({}, commands)
    end)

    it("refuses another user by its uid when the mode lets it in", function()
        setup()
        assert(sh_ok("chmod 0666 " .. q(path)))
        local out, commands = run_as_nobody(l, dir, path)
        assert.equals("OK error: permission denied: this job runs as uid 0 "
                      .. "(root); connect as that user\n", out)
        assert.same({}, commands)
        -- The job's own user is still served.
        local body = string.format(
            "return loop.send(%q, 'status', 5000)", path)
        local child = dir .. "/own.lua"
        local f = assert(io.open(child, "wb"))
        f:write(string.format("package.path = %q\nlocal loop = "
                              .. "require('tide.loop')\nio.write((function() "
                              .. "%s end)())\n", package.path, body))
        f:close()
        assert(sh_ok(string.format("luajit %s > %s 2>&1 &", q(child),
                                   q(dir .. "/own.out"))))
        local got
        local deadline = loop.now() + 20000
        while not got and loop.now() < deadline do
            l:poll(50)
            got = l:pop_command()
        end
        assert.equals("status", got)
        assert.is_true(l:reply("ok: fine\n"))
        deadline = loop.now() + 20000
        while file_text(dir .. "/own.out") ~= "ok: fine\n"
              and loop.now() < deadline do
            l:poll(50)
        end
        assert.equals("ok: fine\n", file_text(dir .. "/own.out"))
    end)
end)
