--- The median and spread of a bench's runs, for bench/*.lua
--- (bench_stats.h is the same for the C benches).
---
--- A figure is printed as "41.2 M msg/s (median of 5, 38.9-43.0)": the
--- median of the runs and their lowest and highest value, so that a
--- reader sees how far one run of their own may land from it. A ratio is
--- taken run by run (tide and its baseline of the same round), then
--- summarised the same way. The number of runs is BENCH_RUNS (default 5).
local tonumber, os_getenv, sort = tonumber, os.getenv, table.sort
local str_format = string.format

local _M = {}

local RUNS_DEFAULT, RUNS_MAX = 5, 99

--- Returns BENCH_RUNS from the environment, or 5; exits with a one-line
--- message when it is not a number from 1 to 99.
---@param prog string the bench's name, for the message
---@return integer
function _M.runs(prog)
    local s = os_getenv("BENCH_RUNS")
    if s == nil or s == "" then
        return RUNS_DEFAULT
    end
    local n = tonumber(s)
    if not n or n ~= math.floor(n) or n < 1 or n > RUNS_MAX then
        io.stderr:write(str_format("%s: BENCH_RUNS=%s: give a number of "
                                   .. "runs from 1 to %d (5 or more for "
                                   .. "figures to publish)\n", prog, s,
                                   RUNS_MAX))
        os.exit(2)
    end
    return n
end

--- Returns the median, lowest and highest of the values in `v` and their
--- count; `v` is not changed. The median of an even count is the mean of
--- the middle two.
---@param v number[]
---@return number med, number min, number max, integer n
function _M.of(v)
    local s = {}
    for i = 1, #v do
        s[i] = v[i]
    end
    sort(s)
    local n = #s
    if n == 0 then
        return 0, 0, 0, 0
    end
    local med = n % 2 == 1 and s[(n + 1) / 2]
                or (s[n / 2] + s[n / 2 + 1]) / 2
    return med, s[1], s[n], n
end

--- Returns "<median> <unit> (median of <n>, <min>-<max>)" with `prec`
--- decimals.
---@param v number[]
---@param prec integer
---@param unit string
---@return string
function _M.fmt(v, prec, unit)
    local med, lo, hi, n = _M.of(v)
    local f = "%." .. prec .. "f"
    return str_format(f .. " %s (median of %d, " .. f .. "-" .. f .. ")",
                      med, unit, n, lo, hi)
end

--- Returns "<median> (<min>-<max>)" for a ratio, with `prec` decimals.
---@param v number[]
---@param prec integer
---@return string
function _M.fmt_ratio(v, prec)
    local med, lo, hi = _M.of(v)
    local f = "%." .. prec .. "f"
    return str_format(f .. " (" .. f .. "-" .. f .. ")", med, lo, hi)
end

--- Returns the median of `v`.
---@param v number[]
---@return number
function _M.median(v)
    return (_M.of(v))
end

return _M
