--- Loads libtide once and holds what every binding shares: the ABI check,
--- error codes, strerror and the scratch buffers (after lua-resty-core's
--- base.lua). The only module that calls ffi.cdef or ffi.load.
local ffi = require("ffi")

local ffi_new, ffi_string, ffi_typeof = ffi.new, ffi.string, ffi.typeof
local error, pcall, tostring, type = error, pcall, tostring, type
local os_getenv = os.getenv
local package_searchpath, package_cpath = package.searchpath, package.cpath
local str_format = string.format

local _M = {}

--- ABI version of tide.h these bindings were written for.
_M.ABI_VERSION = 14

-- Declare the C surface once, even when this module is loaded again
-- (package.loaded cleared): a second ffi.cdef of the structs would raise.
if not pcall(ffi_typeof, "tide_log_params_t") then
    ffi.cdef(require("tide.cdef"))
end

-- Where the library comes from, in this order: the tide binary itself
-- (linked with -Wl,-E, so the symbols are already global), $TIDE_LIB, the
-- C module 'tide.libtide' on package.cpath (how the rockspec installs
-- it), then the system library path.
local lib
if pcall(function() return ffi.C.tide_abi_version end) then
    lib = ffi.C
else
    local name = os_getenv("TIDE_LIB")
    if name == nil or name == "" then
        name = package_searchpath("tide.libtide", package_cpath) or "tide"
    end
    local ok, clib = pcall(ffi.load, name)
    if not ok then
        error(str_format("tide: cannot load the C library '%s': %s; build it "
                         .. "(cmake --build build) and set TIDE_LIB to the "
                         .. "path of libtide.so, or install the rock",
                         name, tostring(clib)), 2)
    end
    lib = clib
    -- The same file for package.loadlib (Lua C modules inside libtide,
    -- see json.lua), named as ffi.load resolved it.
    if not name:find("/", 1, true) and not name:find("%.so") then
        name = "lib" .. name .. ".so"
    end
    _M.lib_path = name
end
_M.lib = lib

--- Returns an error message when a library reporting ABI version `got`
--- cannot be used by these bindings, else nil.
---@param got integer
---@return string|nil
function _M.check_abi(got)
    if got ~= _M.ABI_VERSION then
        return str_format("tide: the bindings are written for ABI version %d "
                          .. "but the C library reports ABI version %d; "
                          .. "rebuild libtide and the bindings from one "
                          .. "checkout (or point TIDE_LIB at the matching "
                          .. "library)", _M.ABI_VERSION, got)
    end
    return nil
end

do
    local msg = _M.check_abi(lib.tide_abi_version())
    if msg then
        error(msg, 2)
    end
end

-- Error codes, read from the cdef so that they cannot drift from tide.h.
_M.OK       = lib.TIDE_OK
_M.EINVAL   = lib.TIDE_EINVAL
_M.ENOMEM   = lib.TIDE_ENOMEM
_M.EIO      = lib.TIDE_EIO
_M.ENOENT   = lib.TIDE_ENOENT
_M.EEXIST   = lib.TIDE_EEXIST
_M.ECORRUPT = lib.TIDE_ECORRUPT
_M.EAGAIN   = lib.TIDE_EAGAIN
_M.ENOBUFS  = lib.TIDE_ENOBUFS
_M.EBUSY    = lib.TIDE_EBUSY
_M.ERANGE   = lib.TIDE_ERANGE
_M.ECLOSED  = lib.TIDE_ECLOSED

--- Returns the static text for a TIDE_E* code ("unknown error" otherwise).
---@param rc integer
---@return string
function _M.strerror(rc)
    return ffi_string(lib.tide_strerror(rc))
end

--- Returns nil, a handle's error detail and `rc`: `msg` is what the
--- handle's tide_*_errmsg returned, replaced by strerror(rc) when the
--- handle has no detail. The common failure return of every binding.
---@param msg ffi.cdata*
---@param rc integer
---@return nil, string, integer
function _M.fail(msg, rc)
    msg = ffi_string(msg)
    if msg == "no error" then
        msg = _M.strerror(rc)
    end
    return nil, msg, rc
end

--- Returns whether `v` is an integral number.
---@param v any
---@return boolean
function _M.is_int(v)
    return type(v) == "number" and v % 1 == 0
end

--- Returns the library's release version, e.g. "0.1.0".
---@return string
function _M.version()
    return ffi_string(lib.tide_version())
end

-- Scratch space shared by every binding. It is only valid until the next
-- call that may use it: copy out (ffi.string) before running user code.
local str_buf_size = 4096
local str_buf                             -- allocated on first use
local size_ptr = ffi_new("size_t[1]")

--- Returns the shared scratch buffer (char[?]) and its capacity. The
--- buffer grows (to a power of two) when `size` exceeds the capacity;
--- its contents are then lost.
---@param size integer|nil bytes needed; nil keeps the current capacity
---@return ffi.cdata*, integer
function _M.get_string_buf(size)
    if size and size > str_buf_size then
        local cap = str_buf_size
        while cap < size do
            cap = cap * 2
        end
        str_buf = nil
        str_buf_size = cap
    end
    if not str_buf then
        str_buf = ffi_new("char[?]", str_buf_size)
    end
    return str_buf, str_buf_size
end

--- Returns the shared size_t[1] used for in/out lengths.
---@return ffi.cdata*
function _M.get_size_ptr()
    return size_ptr
end

-- The 'char *err, size_t errlen' convention of calls made before a handle
-- exists (tide_log_new). Separate from the string buffer so that both can
-- be passed to one call.
local ERRBUF_SIZE = 512
local errbuf = ffi_new("char[?]", ERRBUF_SIZE)

--- Returns the shared error buffer, emptied, and its size, for a call that
--- takes `char *err, size_t errlen`.
---@return ffi.cdata*, integer
function _M.get_errbuf()
    errbuf[0] = 0
    return errbuf, ERRBUF_SIZE
end

--- Returns the text the last call left in the error buffer, or
--- strerror(rc) when it left none.
---@param rc integer
---@return string
function _M.errbuf_msg(rc)
    if errbuf[0] ~= 0 then
        return ffi_string(errbuf)
    end
    return _M.strerror(rc)
end

return _M
