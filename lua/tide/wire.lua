--- Messages between the supervisor and its workers: Lua tables as JSON
--- text, one per frame of the channel (docs/container.md "Messages").
--- Whole numbers are written with all their digits (offsets reach 2^53;
--- cjson would keep 14).
local cjson = require("cjson.safe")

local type, pairs, tostring, tonumber = type, pairs, tostring, tonumber
local str_format, concat = string.format, table.concat
local huge = math.huge

local _M = {}

local encode_string = cjson.encode

local function encode(v, out, depth)
    local t = type(v)
    if t == "string" then
        out[#out + 1] = encode_string(v)
    elseif t == "number" then
        if v ~= v or v == huge or v == -huge then
            out[#out + 1] = "null"
        elseif v % 1 == 0 and v >= -2^53 and v <= 2^53 then
            out[#out + 1] = str_format("%.0f", v)
        else
            out[#out + 1] = str_format("%.17g", v)
        end
    elseif t == "boolean" then
        out[#out + 1] = v and "true" or "false"
    elseif t == "table" then
        if depth > 32 then
            error("wire: table nested too deep", 0)
        end
        -- Keys are written as strings: numbers come back as strings, and
        -- the receiver converts where it expects them (task numbers).
        out[#out + 1] = "{"
        local first = true
        for k, x in pairs(v) do
            if not first then
                out[#out + 1] = ","
            end
            first = false
            out[#out + 1] = encode_string(tostring(k))
            out[#out + 1] = ":"
            encode(x, out, depth + 1)
        end
        out[#out + 1] = "}"
    else
        out[#out + 1] = "null"
    end
end

--- Returns the text of message `msg` (a table whose keys are strings or
--- numbers; lists become objects keyed "1", "2", ...).
---@param msg table
---@return string
function _M.encode(msg)
    local out = {}
    encode(msg, out, 0)
    return concat(out)
end

--- Returns the message in `text`, or nil and an error.
---@param text string
---@return table|nil msg, string|nil err
function _M.decode(text)
    local msg, err = cjson.decode(text)
    if type(msg) ~= "table" then
        return nil, "bad message from the other side: " .. tostring(err)
    end
    return msg
end

--- Turns an object keyed by numbers written as strings ("0", "1", ...:
--- task numbers, or the places of a list) back into one keyed by numbers.
function _M.by_task(t)
    local out = {}
    for k, v in pairs(t or {}) do
        out[tonumber(k)] = v
    end
    return out
end

--- Turns an object keyed "1", "2", ... back into a list.
_M.list = _M.by_task

--- Bytes as hex text, for binary values in a message (and back).
function _M.hex(bytes)
    return (bytes:gsub(".", function(c)
        return string.format("%02x", c:byte())
    end))
end

function _M.unhex(text)
    return (text:gsub("%x%x", function(h)
        return string.char(tonumber(h, 16))
    end))
end

return _M
