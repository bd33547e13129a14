--- Thin wrapper over tide_file_set and tide_lock_*: the durable, atomic
--- replace of a file, and the process lock that keeps one `tide run` per
--- job and data dir.
---
--- Caller bugs (wrong argument types) raise errors; runtime failures
--- return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib                          -- cache the namespace, not functions
local ffi_gc, ffi_new = ffi.gc, ffi.new
local type, error, setmetatable = type, error, setmetatable
local OK = base.OK
local get_errbuf, errbuf_msg = base.get_errbuf, base.errbuf_msg

local _M = {}

local Lock = {}
local lock_mt = { __index = Lock }

local plock = ffi_new("tide_lock_t *[1]")     -- reused out-param

--- Replaces the file at `path` with `data`, atomically and durably
--- (temporary file, fsync, rename, fsync of the folder), creating missing
--- parent folders. After a crash the file holds the old or the new data,
--- never a mix.
---@param path string
---@param data string
---@return true|nil ok, string|nil err, integer|nil code
function _M.write_atomic(path, data)
    if type(path) ~= "string" then
        error("bad path: string expected, got " .. type(path), 2)
    end
    if type(data) ~= "string" then
        error("bad data: string expected, got " .. type(data), 2)
    end
    local err, errlen = get_errbuf()
    local rc = lib.tide_file_set(path, data, #data, err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return true
end

--- Takes the exclusive process lock on the file at `path` (created, with
--- its folders, when missing) and writes this process's pid into it. The
--- lock lasts until lock:close(), garbage collection or the end of the
--- process. Fails with code EBUSY ("... held by pid N") when another
--- holder has it, in this process or another.
---@param path string
---@return table|nil lock, string|nil err, integer|nil code
function _M.lock(path)
    if type(path) ~= "string" then
        error("bad path: string expected, got " .. type(path), 2)
    end
    local err, errlen = get_errbuf()
    local rc = lib.tide_lock_new(plock, path, err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return setmetatable({ cdata = ffi_gc(plock[0], lib.tide_lock_free),
                          path = path }, lock_mt)
end

--- Returns the lock's descriptor: a worker given it (proc.spawn's keep_fd)
--- holds the lock too, until it exits.
---@return integer
function Lock:fd()
    if not self.cdata then
        error("lock is closed", 2)
    end
    return lib.tide_lock_fd(self.cdata)
end

--- Releases the lock. Safe to call twice.
function Lock:close()
    if self.cdata then
        lib.tide_lock_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

-- ---- small file-system helpers (libc) --------------------------------------

pcall(ffi.cdef, [[
int symlink(const char *target, const char *linkpath);
int access(const char *path, int mode);
int mkdir(const char *path, unsigned int mode);
int poll(void *fds, unsigned long nfds, int timeout);
int isatty(int fd);
char *strerror(int errnum);
int setenv(const char *name, const char *value, int overwrite);
]])
local C = ffi.C

local function errno_text()
    return ffi.string(C.strerror(ffi.errno()))
end

--- Returns true when `path` exists (a broken link does not).
---@param path string
---@return boolean
function _M.exists(path)
    return C.access(path, 0) == 0
end

--- Makes folder `path` and its missing parents with `mode` (default
--- 0700). Returns true, or nil and an error.
function _M.mkdir_p(path, mode)
    mode = mode or 448
    local cur = path:sub(1, 1) == "/" and "" or "."
    for part in path:gmatch("[^/]+") do
        cur = cur .. "/" .. part
        if C.mkdir(cur, mode) ~= 0 and ffi.errno() ~= 17 then   -- EEXIST
            return nil, "cannot make folder " .. cur .. ": " .. errno_text()
        end
    end
    return true
end

--- Makes a symbolic link at `link` to `target`. Returns true, or nil and
--- an error.
function _M.symlink(target, link)
    if C.symlink(target, link) ~= 0 then
        return nil, "cannot link " .. link .. ": " .. errno_text()
    end
    return true
end

--- Returns true when descriptor `fd` is a terminal.
function _M.isatty(fd)
    return C.isatty(fd) == 1
end

--- Sleeps `ms` milliseconds.
function _M.sleep_ms(ms)
    C.poll(nil, 0, ms)
end

--- Sets environment variable `name` to `value` for this process and the
--- processes it starts. Returns true, or nil and the error.
---@param name string
---@param value string
---@return boolean|nil ok, string|nil err
function _M.setenv(name, value)
    if C.setenv(name, value, 1) ~= 0 then
        return nil, errno_text()
    end
    return true
end

return _M
