--- Encodes and decodes the record header block (docs/runtime.md): u32
--- count, then per header u32 name length, name, i32 value length (-1:
--- nil value), value; all little-endian. Names and values are raw bytes.
---
--- In Lua a header set is a table `{ name = value }` with string values;
--- `false` stands for a nil value (a table cannot hold nil). encode()
--- writes names in sorted order, so equal tables give equal bytes. When a
--- block repeats a name, decode() keeps the last value.
local byte, char, sub = string.byte, string.char, string.sub
local str_format = string.format
local concat, sort = table.concat, table.sort
local type, error, pairs, tostring = type, error, pairs, tostring
local floor = math.floor

local _M = {}

local function u32(n)
    return char(n % 256, floor(n / 256) % 256, floor(n / 65536) % 256,
                floor(n / 16777216) % 256)
end

local NIL_LEN = char(255, 255, 255, 255)    -- i32 -1

--- Returns the encoded header block of `t` ({ name = string|false }).
--- Raises on a name that is not a string or a value that is not a string
--- or false.
---@param t table
---@return string
function _M.encode(t)
    if type(t) ~= "table" then
        error("bad headers: table expected, got " .. type(t), 2)
    end
    local names, n = {}, 0
    for k, v in pairs(t) do
        if type(k) ~= "string" then
            error("bad header name " .. tostring(k) .. ": string expected, got "
                  .. type(k), 2)
        end
        if type(v) ~= "string" and v ~= false then
            error("bad header '" .. k .. "': string or false (nil value) "
                  .. "expected, got " .. type(v), 2)
        end
        n = n + 1
        names[n] = k
    end
    sort(names)
    local parts = { u32(n) }
    for i = 1, n do
        local k = names[i]
        local v = t[k]
        parts[#parts + 1] = u32(#k)
        parts[#parts + 1] = k
        if v == false then
            parts[#parts + 1] = NIL_LEN
        else
            parts[#parts + 1] = u32(#v)
            parts[#parts + 1] = v
        end
    end
    return concat(parts)
end

-- Reads a little-endian u32 at byte `i` of `s`; nil when s is too short.
local function read_u32(s, i)
    local b1, b2, b3, b4 = byte(s, i, i + 3)
    if not b4 then
        return nil
    end
    return b1 + b2 * 256 + b3 * 65536 + b4 * 16777216
end

local function malformed(s, what, at)
    error(str_format("malformed header block (%d bytes): %s at byte %d",
                     #s, what, at - 1), 3)
end

--- Returns the table ({ name = string|false }) of the header block `s`.
--- Raises on a malformed block: too short, lengths running past its end,
--- a value length below -1, or bytes left over.
---@param s string
---@return table
function _M.decode(s)
    if type(s) ~= "string" then
        error("bad header block: string expected, got " .. type(s), 2)
    end
    local len = #s
    local count = read_u32(s, 1)
    if not count then
        malformed(s, "no header count", 1)
    end
    -- Every header takes at least 8 bytes: a bound that keeps a corrupt
    -- count from looping for long.
    if count > (len - 4) / 8 then
        malformed(s, str_format("count %d does not fit", count), 1)
    end
    local t = {}
    local i = 5
    for _ = 1, count do
        local nlen = read_u32(s, i)
        if not nlen then
            malformed(s, "truncated name length", i)
        end
        if i + 4 + nlen > len + 1 then
            malformed(s, str_format("name of %d bytes runs past the end",
                                    nlen), i)
        end
        local name = sub(s, i + 4, i + 3 + nlen)
        i = i + 4 + nlen
        local vlen = read_u32(s, i)
        if not vlen then
            malformed(s, "truncated value length", i)
        end
        if vlen == 4294967295 then
            t[name] = false
            i = i + 4
        elseif vlen >= 2147483648 then
            malformed(s, str_format("negative value length %d",
                                    vlen - 4294967296), i)
        elseif i + 4 + vlen > len + 1 then
            malformed(s, str_format("value of %d bytes runs past the end",
                                    vlen), i)
        else
            t[name] = sub(s, i + 4, i + 3 + vlen)
            i = i + 4 + vlen
        end
    end
    if i ~= len + 1 then
        malformed(s, str_format("%d bytes left over", len + 1 - i), i)
    end
    return t
end

return _M
