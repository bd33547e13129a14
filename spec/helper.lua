-- Shared helpers of the specs under spec/bindings and spec/lua: scratch
-- folders, whole-file reads and a count of this process's descriptors.
local ffi = require("ffi")

pcall(ffi.cdef, [[
int fcntl(int fd, int cmd, ...);
]])                                           -- only for the tests

local M = {}

-- A fresh path under /tmp per call; with `create`, the folder is made.
function M.tmpdir(create)
    local d = os.tmpname()
    os.remove(d)
    if create then
        assert(os.execute("mkdir -p '" .. d .. "'") == 0)
    end
    return d
end

function M.rmrf(path)
    assert(path:match("^/tmp/"), "refusing to remove " .. path)
    os.execute("rm -rf '" .. path .. "'")
end

function M.read_file(path)
    local f = assert(io.open(path, "rb"))
    local s = f:read("*a")
    f:close()
    return s
end

-- Counts open descriptors with fcntl rather than by listing
-- /proc/<pid>/fd from a child: the child can run before the parent has
-- closed its end of the pipe to it, and count one too many.
function M.open_fd_count()
    local n = 0
    for fd = 0, 65535 do
        if ffi.C.fcntl(fd, 1) ~= -1 then          -- F_GETFD
            n = n + 1
        end
    end
    return n
end

return M
