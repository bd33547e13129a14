--- Thin wrapper over tide_loop_* and tide_time_get: the container's libuv
--- loop, which turns SIGINT/SIGTERM (STOP) and SIGHUP (RELOAD) into event
--- bits and waits with a timeout, and the clocks.
---
--- Caller bugs (wrong argument types, a closed loop) raise errors;
--- runtime failures return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib                          -- cache the namespace, not functions
local ffi_gc, ffi_new = ffi.gc, ffi.new
local type, error, setmetatable, tonumber = type, error, setmetatable, tonumber
local math_ceil = math.ceil
local OK = base.OK

local _M = {
    STOP   = lib.TIDE_LOOP_STOP,              -- SIGINT or SIGTERM arrived
    RELOAD = lib.TIDE_LOOP_RELOAD,            -- SIGHUP arrived
}

local Loop = {}
local loop_mt = { __index = Loop }

local ploop = ffi_new("tide_loop_t *[1]")     -- reused out-param
local TIME_MONO, TIME_REAL = lib.TIDE_TIME_MONO, lib.TIDE_TIME_REAL
local MAX_TIMEOUT = 2147483647

--- Returns a monotonic time in milliseconds (from an arbitrary point), for
--- intervals and deadlines.
---@return integer
function _M.now()
    return tonumber(lib.tide_time_get(TIME_MONO))
end

--- Returns the wall-clock time in milliseconds since the epoch.
---@return integer
function _M.realtime()
    return tonumber(lib.tide_time_get(TIME_REAL))
end

--- Returns a new loop watching SIGINT, SIGTERM and SIGHUP. While a loop
--- exists these signals no longer end the process; they show up in
--- poll() instead.
---@return table|nil loop, string|nil err, integer|nil code
function _M.new()
    local rc = lib.tide_loop_new(ploop)
    if rc ~= OK then
        return nil, "cannot make the event loop: " .. base.strerror(rc), rc
    end
    return setmetatable({ cdata = ffi_gc(ploop[0], lib.tide_loop_free) },
                        loop_mt)
end

--- Runs the loop once and returns the event bits (STOP, RELOAD; 0 for
--- none) seen since the previous poll. With `timeout_ms` 0 (the default)
--- it does not wait; otherwise it returns when an event arrives or after
--- `timeout_ms` milliseconds.
---@param timeout_ms integer|nil
---@return integer events
function Loop:poll(timeout_ms)
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    if timeout_ms == nil then
        timeout_ms = 0
    elseif type(timeout_ms) ~= "number" or timeout_ms < 0
           or timeout_ms > MAX_TIMEOUT then
        error("bad timeout: milliseconds >= 0 expected", 2)
    end
    -- Fractions of a millisecond round up, so a short wait still waits.
    return lib.tide_loop_poll(cdata, math_ceil(timeout_ms))
end

--- Closes the loop; once the last loop is closed, the signals take their
--- default action again. Safe to call twice.
function Loop:close()
    if self.cdata then
        lib.tide_loop_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

return _M
