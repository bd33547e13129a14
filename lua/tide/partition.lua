--- Kafka's default partitioner in pure Lua: murmur2 (seed 0x9747b28c) of
--- the key bytes, then (h & 0x7fffffff) % n. Places keys exactly like the
--- C core (tide_partition_get) and Kafka's Java client, for systems that
--- run without the C library (mem).
local bit = require("bit")

local band, bxor, rshift, lshift, tobit = bit.band, bit.bxor, bit.rshift,
                                          bit.lshift, bit.tobit
local byte, type, error = string.byte, type, error

local _M = {}

local SEED = tobit(0x9747b28c)
local M = 0x5bd1e995

-- Returns a * M modulo 2^32 as a signed 32-bit number. a*M does not fit a
-- double exactly, so the product is taken in two 16-bit halves of a: each
-- partial product stays below 2^47, and lshift keeps the low 16 bits of
-- the high one.
local function mulm(a)
    return tobit(band(a, 0xffff) * M + lshift(rshift(a, 16) * M, 16))
end

--- Returns Kafka's murmur2 hash of `key` as an unsigned 32-bit number.
---@param key string
---@return integer
function _M.murmur2(key)
    local len = #key
    local h = bxor(SEED, len)
    local i = 1
    local stop = len - len % 4
    while i <= stop do
        local b1, b2, b3, b4 = byte(key, i, i + 3)
        local k = b1 + lshift(b2, 8) + lshift(b3, 16) + lshift(b4, 24)
        k = mulm(tobit(k))
        k = bxor(k, rshift(k, 24))
        k = mulm(k)
        h = bxor(mulm(h), k)
        i = i + 4
    end
    local rest = len - stop
    if rest > 0 then
        if rest == 3 then
            h = bxor(h, lshift(byte(key, i + 2), 16))
        end
        if rest >= 2 then
            h = bxor(h, lshift(byte(key, i + 1), 8))
        end
        h = bxor(h, byte(key, i))
        h = mulm(h)
    end
    h = bxor(h, rshift(h, 13))
    h = mulm(h)
    h = bxor(h, rshift(h, 15))
    return h % 4294967296
end

local murmur2 = _M.murmur2

--- Returns the partition (0 .. n-1) Kafka's default partitioner gives
--- `key` among `n` partitions.
---@param key string
---@param n integer number of partitions, >= 1
---@return integer
function _M.get(key, n)
    if type(key) ~= "string" then
        error("bad key: string expected, got " .. type(key), 2)
    end
    if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then
        error("bad partition count: positive integer expected", 2)
    end
    return band(murmur2(key), 0x7fffffff) % n
end

return _M
