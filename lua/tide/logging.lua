--- tide's log lines (docs/operate.md "Logs"): one line per event on
--- stderr. As text: its UTC time, level and what happened, then any
--- key=value fields; with `--log-format json`, one JSON object per line
--- with "time", "level", "msg" and the same fields. Levels, lowest first:
--- debug, info, warn, error; `--log-level L` shows L and above, `-q`
--- is `--log-level warn`. The choice travels to the job's worker
--- processes in the environment (TIDE_LOG_FORMAT, TIDE_LOG_LEVEL), which
--- they inherit.
local fs = require("tide.fs")
local cjson = require("cjson.safe")

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local str_format, concat, sort = string.format, table.concat, table.sort
local os_date, getenv, floor = os.date, os.getenv, math.floor

local _M = {}

_M.LEVELS = { debug = 1, info = 2, warn = 3, error = 4 }
_M.FORMATS = { text = true, json = true }

-- The process's choice; read once from the environment.
local conf = {
    format = _M.FORMATS[getenv("TIDE_LOG_FORMAT") or ""]
             and getenv("TIDE_LOG_FORMAT") or "text",
    level = _M.LEVELS[getenv("TIDE_LOG_LEVEL") or ""] or _M.LEVELS.info,
}

--- Sets the format ("text" or "json") and the lowest level shown, for
--- this process and the workers it starts. Returns nil and an error line
--- for a bad value.
---@param format string|nil
---@param level string|nil
---@return boolean|nil ok, string|nil err
function _M.configure(format, level)
    if format and not _M.FORMATS[format] then
        return nil, str_format("--log-format: 'text' or 'json' expected, "
                               .. "got '%s'", tostring(format))
    end
    if level and not _M.LEVELS[level] then
        return nil, str_format("--log-level: debug, info, warn or error "
                               .. "expected, got '%s'", tostring(level))
    end
    if format then
        conf.format = format
        fs.setenv("TIDE_LOG_FORMAT", format)
    end
    if level then
        conf.level = _M.LEVELS[level]
        fs.setenv("TIDE_LOG_LEVEL", level)
    end
    return true
end

--- True when lines of `level` are shown.
---@param level string
---@return boolean
function _M.enabled(level)
    return (_M.LEVELS[level] or 2) >= conf.level
end

local function now_text()
    local ok, loop = pcall(require, "tide.loop")
    local ms = ok and loop.realtime()
    if ms then
        return os_date("!%Y-%m-%dT%H:%M:%S", floor(ms / 1000))
               .. str_format(".%03dZ", ms % 1000)
    end
    return os_date("!%Y-%m-%dT%H:%M:%SZ")
end

-- A field's value as text: bare when it has no space, quote or '=';
-- else quoted with Go's (and logfmt's) escapes.
local function field_text(v)
    if type(v) == "number" then
        if v % 1 == 0 and v > -2^53 and v < 2^53 then
            return str_format("%.0f", v)
        end
        return str_format("%.6g", v)
    end
    v = tostring(v)
    if v ~= "" and not v:find('[%s"=\\]') then
        return v
    end
    return '"' .. v:gsub('[\\"]', "\\%0"):gsub("\n", "\\n") .. '"'
end

local function sorted_keys(t)
    local keys = {}
    for k in pairs(t) do
        keys[#keys + 1] = k
    end
    sort(keys)
    return keys
end

--- Formats one line (without its newline), or nil when `level` is not
--- shown. `fields` (optional) holds key=value pairs; `base` (optional)
--- fields every line of this logger carries (a worker's id).
---@return string|nil
function _M.format(level, msg, fields, base)
    if not _M.enabled(level) then
        return nil
    end
    if conf.format == "json" then
        local o = { time = now_text(), level = level, msg = tostring(msg) }
        for k, v in pairs(base or {}) do
            o[k] = v
        end
        for k, v in pairs(fields or {}) do
            if k ~= "time" and k ~= "level" and k ~= "msg" then
                o[k] = v
            end
        end
        return (cjson.encode(o))
    end
    local parts = { now_text(), level, tostring(msg) }
    for _, t in ipairs({ fields or {}, base or {} }) do
        for _, k in ipairs(sorted_keys(t)) do
            parts[#parts + 1] = k .. "=" .. field_text(t[k])
        end
    end
    return concat(parts, " ")
end

--- Returns a log function(level, msg, fields) that writes to stderr;
--- `base` fields go on each of its lines (as text, after the event's
--- own fields).
---@param base table|nil
---@return function
function _M.logger(base)
    return function(level, msg, fields)
        local line = _M.format(level, msg, fields, base)
        if line then
            io.stderr:write(line, "\n")
        end
    end
end

return _M
