--- Fuzz check for lua/tide/headers.lua decode() (run by fuzz_headers.c).
--- Contract (the module's comments): decode(s) returns a table
--- { name = string|false }, or raises a string "malformed header block
--- (N bytes): what at byte M". What decodes encodes again, and that
--- decodes to the same table. Anything else raises "FINDING: ...".
local headers = require("tide.headers")

local type, pairs, pcall, tostring = type, pairs, pcall, tostring
local str_format, find = string.format, string.find

local function finding(fmt, ...)
    error("FINDING: " .. str_format(fmt, ...), 0)
end

local function check_table(t)
    if type(t) ~= "table" then
        finding("decode returned a %s", type(t))
    end
    for k, v in pairs(t) do
        if type(k) ~= "string" then
            finding("decode returned a %s name", type(k))
        end
        if type(v) ~= "string" and v ~= false then
            finding("decode returned a %s value for '%s'", type(v), k)
        end
    end
end

return function(data)
    local ok, t = pcall(headers.decode, data)
    if not ok then
        if type(t) ~= "string" then
            finding("decode raised a %s, not a message", type(t))
        end
        local prefix = str_format("malformed header block (%d bytes): ",
                                  #data)
        if not find(t, prefix, 1, true) or not find(t, " at byte %d+$") then
            finding("decode raised an unexpected error: %s", t)
        end
        return
    end
    check_table(t)
    local ok2, s = pcall(headers.encode, t)
    if not ok2 or type(s) ~= "string" then
        finding("encode of a decoded block failed: %s", tostring(s))
    end
    local ok3, t2 = pcall(headers.decode, s)
    if not ok3 then
        finding("decode of a re-encoded block failed: %s", tostring(t2))
    end
    check_table(t2)
    for k, v in pairs(t) do
        if t2[k] ~= v then
            finding("round trip changed header '%s'", k)
        end
    end
    for k in pairs(t2) do
        if t[k] == nil then
            finding("round trip added header '%s'", k)
        end
    end
    if headers.encode(t2) ~= s then
        finding("encode is not stable over a round trip")
    end
end
