--- Small helpers every bench/*.lua driver uses: a monotonic clock, shell
--- commands and quoting.
local ffi = require("ffi")

ffi.cdef [[
struct bench_timespec { long tv_sec; long tv_nsec; };
int clock_gettime(int clk, struct bench_timespec *ts);
]]

local tonumber, os_execute = tonumber, os.execute

local _M = {}

local ts = ffi.new("struct bench_timespec")

--- Seconds on the monotonic clock (CLOCK_MONOTONIC), as a number.
function _M.now()
    ffi.C.clock_gettime(1, ts)
    return tonumber(ts.tv_sec) + tonumber(ts.tv_nsec) / 1e9
end

--- Runs `cmd` with the shell; true when it exited 0.
function _M.sh(cmd)
    local ok = os_execute(cmd)
    return ok == 0 or ok == true
end

--- `s` quoted for the shell.
function _M.quote(s)
    return "'" .. s:gsub("'", "'\\''") .. "'"
end

return _M
