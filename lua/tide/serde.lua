--- Serdes: turn message bytes into Lua values and back. `json` (lua-cjson),
--- `string` and `bytes`.
---
--- get(name) returns `{ name = ..., encode = f, decode = f }`, shared by
--- every caller (do not modify it). decode(bytes) returns a value or
--- raises; encode(value) returns bytes or raises. nil is never passed to
--- either: a nil value is a tombstone and the runner keeps it nil.
---
--- json notes:
--- - JSON `null` decodes to `serde.null` (cjson.null, a lightuserdata),
---   also inside arrays and objects; encoding `serde.null` writes `null`.
--- - Numbers are doubles: integers are exact up to 2^53 both ways (cjson
---   alone would write 1234567890123456 as 1.2345678901235e+15; here any
---   number of magnitude >= 1e14 is written so that it reads back exactly:
---   integers below 2^63 in full, others with up to 17 significant
---   digits). Smaller non-integers keep cjson's 14 significant digits.
---   The `string` serde writes numbers the same way.
--- - NaN and infinities raise; so do functions, userdata and cycles
---   (nesting deeper than 1000).
--- - An empty table encodes as `{}`. A table with keys 1..n is an array;
---   an array with many holes (more than half nil and past index 10) is
---   written as an object with string keys rather than raising.
--- - Decoding is strict JSON (no nan, inf or hex numbers).
local cjson_mod = require("cjson")

local type, error, tostring, pairs, tonumber = type, error, tostring,
                                               pairs, tonumber
local str_find, str_format, str_sub, str_gsub = string.find, string.format,
                                                string.sub, string.gsub
local str_match = string.match

local _M = {}

-- A private instance: settings made here do not leak to other users of
-- cjson in the same Lua state, and theirs do not reach us.
local cjson = cjson_mod.new()
cjson.encode_sparse_array(true)         -- convert, do not raise
cjson.encode_invalid_numbers(false)     -- NaN, inf raise
cjson.decode_invalid_numbers(false)     -- strict JSON numbers
cjson.encode_number_precision(14)       -- the most this cjson allows
cjson.encode_max_depth(1000)
cjson.decode_max_depth(1000)

local cjson_encode, cjson_decode = cjson.encode, cjson.decode

--- The value JSON null decodes to (cjson.null).
_M.null = cjson.null

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

local function json_decode_fail(s, err)
    err = tostring(err)
    local at = tonumber(str_match(err, "at character (%d+)"))
    error(str_format("json: cannot decode %s (%d bytes): %s",
                     excerpt(s, at), #s, err), 0)
end

local function json_decode(s)
    local ok, v = pcall(cjson_decode, s)
    if not ok then
        json_decode_fail(s, v)
    end
    return v
end

-- Slow path of encode, taken only when cjson wrote an exponent ("e+"):
-- numbers of magnitude >= 1e14 are replaced by placeholder strings, the
-- copy is encoded, and the placeholders are swapped for the numbers with
-- 17 significant digits.
local BIG = 1e14
local TOKEN = "\1tide-num:"
local TOKEN_PATTERN = '"\\u0001tide%-num:(%d+)\\u0001"'

local function is_big(v)
    return (v >= BIG or v <= -BIG) and v == v and v ~= 1 / 0 and v ~= -1 / 0
end

-- Returns the shortest text that reads back as `v`: integers below 2^63
-- in full, others with 15 to 17 significant digits.
local function format_big(v)
    if v % 1 == 0 and v < 2 ^ 63 and v > -2 ^ 63 then
        return str_format("%d", v)
    end
    for digits = 15, 16 do
        local s = str_format("%." .. digits .. "g", v)
        if tonumber(s) == v then
            return s
        end
    end
    return str_format("%.17g", v)
end

local function copy_big(v, nums, depth)
    if depth > 1000 then
        error("json: cannot encode: nesting deeper than 1000 (a cycle?)", 0)
    end
    local c = {}
    for k, x in pairs(v) do
        local tx = type(x)
        if tx == "number" and is_big(x) then
            nums[#nums + 1] = x
            x = TOKEN .. #nums .. "\1"
        elseif tx == "table" then
            x = copy_big(x, nums, depth + 1)
        end
        c[k] = x
    end
    return c
end

local function json_encode_big(v)
    if type(v) == "number" then
        return format_big(v)
    end
    local nums = {}
    local s = cjson_encode(copy_big(v, nums, 1))
    local n
    s, n = str_gsub(s, TOKEN_PATTERN, function(i)
        return format_big(nums[tonumber(i)])
    end)
    if n ~= #nums then
        -- A string of the value looked like a placeholder: give up on
        -- precision rather than corrupt the string.
        return cjson_encode(v)
    end
    return s
end

local function json_encode_fail(v, err)
    error(str_format("json: cannot encode %s: %s", type(v), tostring(err)), 0)
end

local function json_encode(v)
    local ok, s = pcall(cjson_encode, v)
    if not ok then
        json_encode_fail(v, s)
    end
    if str_find(s, "e+", 1, true) then
        local tv = type(v)
        if tv == "table" or (tv == "number" and is_big(v)) then
            return json_encode_big(v)
        end
    end
    return s
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
            return format_big(v)
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
