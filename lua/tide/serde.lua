--- Serdes: turn message bytes into Lua values and back. `json`, `string`
--- and `bytes`.
---
--- get(name) returns `{ name = ..., encode = f, decode = f }`, shared by
--- every caller (do not modify it). decode(bytes) returns a value or
--- raises; encode(value) returns bytes or raises. nil is never passed to
--- either: a nil value is a tombstone and the runner keeps it nil.
---
--- json is tide's own codec (core/src/serde/json.c, through
--- bindings/tide/json.lua), which gives the values lua-cjson gives, about
--- twice as fast:
--- - JSON `null` decodes to `serde.null` (lightuserdata NULL, equal to
---   cjson.null), also inside arrays and objects; encoding `serde.null`
---   writes `null`.
--- - Numbers are doubles: integers are exact up to 2^53 both ways, and any
---   number of magnitude >= 1e14 is written so that it reads back exactly
---   (integers below 2^63 in full, others with up to 17 significant
---   digits). Smaller non-integers are written with 14 significant
---   digits, as cjson writes them. The `string` serde writes numbers the
---   same way.
--- - NaN and infinities raise; so do functions, userdata and cycles
---   (nesting deeper than 1000).
--- - An empty table encodes as `{}`. A table with keys 1..n is an array;
---   an array with many holes (more than half nil and past index 10) is
---   written as an object with string keys rather than raising.
--- - Strings are written with `"`, backslash and control bytes escaped, and
---   nothing else (`/` stays as it is, UTF-8 passes through).
--- - Decoding is strict JSON (no nan, inf, hex numbers or trailing
---   commas, nothing after the value), with what cjson allowed: numbers
---   with a "+", leading zeros (decimal) or a bare "." ("1.", "-.5"), raw
---   control bytes inside strings, and no check of UTF-8.
local codec = require("tide.json")

local type, error, tostring = type, error, tostring
local str_format, str_sub, str_gsub = string.format, string.sub, string.gsub

local _M = {}

local codec_encode, codec_decode = codec.encode, codec.decode

--- The value JSON null decodes to (lightuserdata NULL, == cjson.null).
_M.null = codec.null

local KNOWN = "json, string, bytes"
local EXCERPT = 40                      -- bytes of bad input shown in errors

-- Returns a short, printable excerpt of `s` around byte `at` (1-based).
local function excerpt(s, at)
    local from = 1
    if at and at > 10 then
        from = at - 10
    end
    local part = str_sub(s, from, from + EXCERPT - 1)
    local q = str_format("%q", part)
    q = str_gsub(q, "\\\n", "\\n")
    if from > 1 then
        q = "..." .. q
    end
    if from + EXCERPT - 1 < #s then
        q = q .. "..."
    end
    return q
end

-- json ---------------------------------------------------------------

local function json_decode_fail(s, err, at)
    error(str_format("json: cannot decode %s (%d bytes): %s",
                     excerpt(s, at), #s, tostring(err)), 0)
end

local function json_decode(s)
    local v, err, at = codec_decode(s)
    if v == nil then
        json_decode_fail(s, err, at)
    end
    return v
end

local function json_encode_fail(v, err)
    error(str_format("json: cannot encode %s: %s", type(v), tostring(err)), 0)
end

local function json_encode(v)
    local s, err = codec_encode(v)
    if s == nil then
        json_encode_fail(v, err)
    end
    return s
end

-- Numbers of the string serde, written like json's.
local BIG = 1e14

local function is_big(v)
    return (v >= BIG or v <= -BIG) and v == v and v ~= 1 / 0 and v ~= -1 / 0
end

-- string -------------------------------------------------------------

local function identity(s)
    return s
end

local function string_encode(v)
    local tv = type(v)
    if tv == "string" then
        return v
    elseif tv == "number" then
        if is_big(v) then
            return json_encode(v)
        end
        return tostring(v)
    elseif tv == "boolean" then
        return tostring(v)
    end
    error("string: cannot encode a " .. tv
          .. " (string, number or boolean expected)", 0)
end

-- bytes --------------------------------------------------------------

local function bytes_encode(v)
    if type(v) ~= "string" then
        error("bytes: cannot encode a " .. type(v) .. " (string expected)", 0)
    end
    return v
end

local SERDES = {
    json   = { name = "json",   encode = json_encode,   decode = json_decode },
    string = { name = "string", encode = string_encode, decode = identity },
    bytes  = { name = "bytes",  encode = bytes_encode,  decode = identity },
}

--- Returns the serde called `name`, or nil and an error naming the known
--- ones.
---@param name string
---@return table|nil serde, string|nil err
function _M.get(name)
    local s = SERDES[name]
    if not s then
        return nil, "unknown serde '" .. tostring(name) .. "' (known: "
                    .. KNOWN .. ")"
    end
    return s
end

return _M
