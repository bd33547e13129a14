--- Fuzz check for the json codec, core/src/serde/json.c (run by
--- fuzz_json.c). Contract (json.c's header comment): decode(s) never
--- raises on a string; it returns a value, or nil, "what at character N",
--- N. A decoded value encodes (unless it holds a number that overflowed to
--- an infinity), and the text decodes to the same value: strings, booleans
--- and null exactly, numbers exactly or to the 14 significant digits the
--- encoder writes below 1e14 (within half a unit of the 14th digit).
--- And where lua-cjson (the codec's reference, which accepts more: nan,
--- inf, hex) decodes the text too, both give the same value, exactly. Anything else raises "FINDING: ...".
local codec = require("tide.json.codec")
local cjson = require("cjson")

local type, pairs, pcall, tostring = type, pairs, pcall, tostring
local str_format, find, match = string.format, string.find, string.match
local huge, abs = math.huge, math.abs

local null = codec.null

local function finding(fmt, ...)
    error("FINDING: " .. str_format(fmt, ...), 0)
end

local function has_inf(v)
    if type(v) == "number" then
        return v == huge or v == -huge
    end
    if type(v) == "table" then
        for k, x in pairs(v) do
            if has_inf(k) or has_inf(x) then
                return true
            end
        end
    end
    return false
end

-- 14 significant digits are within half a unit of the 14th digit: a
-- relative 5e-14 (plus the spacing of subnormals). Not string.format's
-- "%.14g": LuaJIT rounds ties away from zero, C (and the codec) to even.
local function same_number(a, b)
    return a == b or abs(a - b) <= abs(a) * 5.0000001e-14 + 5e-324
end

local function same(a, b, where)
    if type(a) ~= type(b) then
        finding("round trip changed a %s into a %s at %s", type(a), type(b),
                where)
    end
    if type(a) == "number" then
        if not same_number(a, b) then
            finding("round trip changed %.17g into %.17g at %s", a, b, where)
        end
    elseif type(a) == "table" then
        for k, v in pairs(a) do
            local w = where .. "/" .. tostring(k)
            if b[k] == nil then
                finding("round trip lost %s", w)
            end
            same(v, b[k], w)
        end
        for k in pairs(b) do
            if a[k] == nil then
                finding("round trip added %s/%s", where, tostring(k))
            end
        end
    elseif a ~= b then
        finding("round trip changed the %s at %s", type(a), where)
    end
end

-- Exact comparison with lua-cjson's value (both read numbers with strtod
-- or exactly; both take null as lightuserdata NULL).
local function same_exact(a, b, where)
    if type(a) ~= type(b) then
        finding("codec and cjson differ at %s: a %s and a %s", where,
                type(a), type(b))
    end
    if type(a) == "table" then
        for k, v in pairs(a) do
            same_exact(v, b[k], where .. "/" .. tostring(k))
        end
        for k in pairs(b) do
            if a[k] == nil then
                finding("cjson has %s/%s, the codec not", where,
                        tostring(k))
            end
        end
    elseif a ~= b then
        finding("codec and cjson differ at %s: %s and %s", where,
                type(a) == "number" and str_format("%.17g", a) or tostring(a),
                type(b) == "number" and str_format("%.17g", b) or tostring(b))
    end
end

local function check_value(v, where)
    local t = type(v)
    if t == "table" then
        for k, x in pairs(v) do
            if type(k) ~= "string" and type(k) ~= "number" then
                finding("decode made a %s key at %s", type(k), where)
            end
            check_value(x, where .. "/" .. tostring(k))
        end
    elseif t == "userdata" then
        if v ~= null then
            finding("decode made a userdata other than null at %s", where)
        end
    elseif t ~= "string" and t ~= "number" and t ~= "boolean" then
        finding("decode made a %s at %s", t, where)
    end
end

return function(data)
    local ok, v, err, pos = pcall(codec.decode, data)
    if not ok then
        finding("decode raised: %s", tostring(v))
    end
    if v == nil then
        if type(err) ~= "string" or type(pos) ~= "number" then
            finding("decode returned nil, a %s and a %s", type(err),
                    type(pos))
        end
        if pos < 1 or pos > #data + 1 or pos % 1 ~= 0 then
            finding("decode failed at character %s of %d", tostring(pos),
                    #data)
        end
        if match(err, " at character (%d+)$") ~= tostring(pos) then
            finding("the error does not end with the place %d: %s", pos, err)
        end
        return
    end
    check_value(v, "")
    local okc, cv = pcall(cjson.decode, data)
    if okc then
        same_exact(v, cv, "")
    end
    local ok2, s, eerr = pcall(codec.encode, v)
    if not ok2 then
        finding("encode raised: %s", tostring(s))
    end
    if s == nil then
        if has_inf(v) and find(eerr, "infinities", 1, true) then
            return
        end
        finding("a decoded value does not encode: %s", tostring(eerr))
    end
    local v2, err2 = codec.decode(s)
    if v2 == nil then
        finding("the encoder's text does not decode: %s", tostring(err2))
    end
    same(v, v2, "")
    -- The text of a round-tripped value decodes to it again.
    local s2 = codec.encode(v2)
    if s2 == nil or #s2 ~= #s then
        finding("encode of the round-tripped value differs in length: %d, %s",
                #s, tostring(s2 and #s2))
    end
end
