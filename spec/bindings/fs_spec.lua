-- Specs for bindings/tide/fs.lua: the atomic, durable file replace and
-- the process lock, through the FFI.
local ffi  = require("ffi")
local base = require("tide.base")
local fs   = require("tide.fs")
local h = require("helper")
local rmrf = h.rmrf
local read_file = h.read_file
local open_fd_count = h.open_fd_count

pcall(ffi.cdef, [[
int getpid(void);
]])                                           -- only for the tests
local PID = ffi.C.getpid()

local function tmpdir()
    return h.tmpdir(true)
end

local function ls(dir)
    local p = io.popen("ls -1A '" .. dir .. "'")
    local out = {}
    for line in p:lines() do
        out[#out + 1] = line
    end
    p:close()
    table.sort(out)
    return out
end

describe("tide.fs", function()
    local dir

    before_each(function()
        dir = tmpdir()
    end)

    after_each(function()
        collectgarbage()
        collectgarbage()
        rmrf(dir)
    end)

    describe("write_atomic()", function()
        it("creates the file and its missing folders", function()
            local path = dir .. "/jobs/counter/checkpoint.json"
            assert.is_true(fs.write_atomic(path, '{"version":1}'))
            assert.equals('{"version":1}', read_file(path))
            assert.same({ "checkpoint.json" }, ls(dir .. "/jobs/counter"))
        end)

        it("replaces the whole content and leaves no temporary file",
           function()
            local path = dir .. "/f"
            assert(fs.write_atomic(path, string.rep("old ", 1000)))
            assert(fs.write_atomic(path, "new"))
            assert.equals("new", read_file(path))
            assert(fs.write_atomic(path, ""))
            assert.equals("", read_file(path))
            assert.same({ "f" }, ls(dir))
        end)

        it("keeps binary data containing \\0", function()
            local data = "a\0b\0\0c" .. string.rep("\0", 5000) .. "\255"
            assert(fs.write_atomic(dir .. "/bin", data))
            assert.equals(data, read_file(dir .. "/bin"))
        end)

        it("fails with EINVAL for a path that names no file", function()
            for _, path in ipairs({ "", dir .. "/", dir .. "/.." }) do
                local ok, err, code = fs.write_atomic(path, "x")
                assert.is_nil(ok)
                assert.equals(base.EINVAL, code)
                assert.matches("bad file path", err, 1, true)
            end
        end)

        it("fails with EIO and leaves the old content", function()
            assert(fs.write_atomic(dir .. "/file", "old"))
            local ok, err, code = fs.write_atomic(dir .. "/file/below", "x")
            assert.is_nil(ok)
            assert.equals(base.EIO, code)
            assert.matches(dir .. "/file", err, 1, true)

            assert(os.execute("mkdir '" .. dir .. "/folder'") == 0)
            ok, err, code = fs.write_atomic(dir .. "/folder", "x")
            assert.is_nil(ok)
            assert.equals(base.EIO, code)
            assert.matches("cannot rename", err, 1, true)
            assert.same({ "file", "folder" }, ls(dir))
            assert.equals("old", read_file(dir .. "/file"))
        end)

        it("raises on arguments of the wrong type", function()
            assert.has_error(function() fs.write_atomic(nil, "x") end,
                             "bad path: string expected, got nil")
            assert.has_error(function() fs.write_atomic(dir .. "/f", 1) end,
                             "bad data: string expected, got number")
        end)
    end)

    describe("lock()", function()
        local function path()
            return dir .. "/jobs/counter/run.lock"
        end

        it("takes the lock and writes this process's pid", function()
            local lk = assert(fs.lock(path()))
            assert.equals(PID .. "\n", read_file(path()))
            lk:close()
            assert.equals("", read_file(path()))   -- released and emptied
            lk = assert(fs.lock(path()))
            lk:close()
        end)

        it("fails with EBUSY naming the holder's pid", function()
            local lk = assert(fs.lock(path()))
            local again, err, code = fs.lock(path())
            assert.is_nil(again)
            assert.equals(base.EBUSY, code)
            assert.matches("held by pid " .. PID, err, 1, true)
            lk:close()
        end)

        it("fails with EBUSY while another process holds it", function()
            local mark = dir .. "/locked"
            -- flock(1) holds an exclusive lock on the file as we do.
            os.execute("mkdir -p '" .. dir .. "/jobs/counter' && flock -x '"
                       .. path() .. "' sh -c 'echo $$ > \"" .. path()
                       .. "\"; touch \"" .. mark .. "\"; sleep 1' "
                       .. ">/dev/null 2>&1 &")
            for _ = 1, 500 do
                if io.open(mark) then
                    break
                end
                os.execute("sleep 0.01")
            end
            local holder = tonumber(read_file(path()))
            local lk, err, code = fs.lock(path())
            assert.is_nil(lk)
            assert.equals(base.EBUSY, code)
            assert.matches("held by pid " .. holder, err, 1, true)
        end)

        it("fails with EINVAL for a path that names no file", function()
            local lk, err, code = fs.lock("")
            assert.is_nil(lk)
            assert.equals(base.EINVAL, code)
            assert.matches("bad lock path", err, 1, true)
        end)

        it("fails with EIO when the path is a folder", function()
            local lk, err, code = fs.lock(dir)
            assert.is_nil(lk)
            assert.equals(base.EIO, code)
            assert.matches("cannot open lock", err, 1, true)
        end)

        it("raises on a path of the wrong type", function()
            assert.has_error(function() fs.lock(42) end,
                             "bad path: string expected, got number")
        end)

        it("can be closed twice", function()
            local lk = assert(fs.lock(path()))
            lk:close()
            lk:close()
        end)

        it("is released when the lock is garbage collected", function()
            assert(fs.lock(path()))               -- dropped at once
            collectgarbage()
            collectgarbage()
            local lk = assert(fs.lock(path()))
            lk:close()
        end)

        it("frees 1000 dropped locks", function()
            collectgarbage()
            collectgarbage()
            local fds = open_fd_count()
            for i = 1, 1000 do
                local lk = assert(fs.lock(dir .. "/l" .. i))
                if i % 2 == 0 then
                    lk:close()
                end
            end
            collectgarbage()
            collectgarbage()
            assert.equals(fds, open_fd_count())
            for _, i in ipairs({ 1, 2, 999, 1000 }) do  -- released
                assert(fs.lock(dir .. "/l" .. i)):close()
            end
        end)
    end)
end)
