-- Specs for lua/tide/headers.lua: the record header block.
local headers = require("tide.headers")

local ALL = {}
for i = 0, 255 do
    ALL[#ALL + 1] = string.char(i)
end
ALL = table.concat(ALL)

local function u32(n)
    return string.char(n % 256, math.floor(n / 256) % 256,
                       math.floor(n / 65536) % 256,
                       math.floor(n / 16777216) % 256)
end

local function malformed(block, pattern)
    local ok, err = pcall(headers.decode, block)
    assert.is_false(ok)
    assert.matches("malformed header block", err, 1, true)
    if pattern then
        assert.matches(pattern, err, 1, true)
    end
end

describe("tide.headers", function()
    describe("encode()", function()
        it("writes the documented little-endian layout", function()
            assert.equals(u32(2) .. u32(1) .. "a" .. u32(2) .. "xy"
                          .. u32(1) .. "b" .. "\255\255\255\255",
                          headers.encode({ a = "xy", b = false }))
        end)

        it("writes an empty table as a zero count", function()
            assert.equals("\0\0\0\0", headers.encode({}))
        end)

        it("gives equal tables equal bytes (names sorted)", function()
            local a = { z = "1", a = "2", m = "3" }
            local b = {}
            b.m, b.a, b.z = "3", "2", "1"
            assert.equals(headers.encode(a), headers.encode(b))
        end)

        it("raises on names or values of the wrong type", function()
            assert.has_error(function() headers.encode("x") end,
                             "bad headers: table expected, got string")
            assert.is_false(pcall(headers.encode, { [1] = "v" }))
            assert.is_false(pcall(headers.encode, { a = 1 }))
            assert.is_false(pcall(headers.encode, { a = true }))
            local ok, err = pcall(headers.encode, { a = {} })
            assert.is_false(ok)
            assert.matches("bad header 'a'", err, 1, true)
        end)
    end)

    describe("decode()", function()
        it("round-trips names and values, binary ones included", function()
            local cases = {
                {},
                { ["content-type"] = "application/json" },
                { a = "", b = "x", [""] = "empty name" },
                { ["bin\0name"] = ALL, [ALL] = "\0", nul = "\0\0\0" },
                { big = string.rep("v", 100000) },
            }
            for _, t in ipairs(cases) do
                assert.same(t, headers.decode(headers.encode(t)))
            end
        end)

        it("round-trips nil values as false", function()
            local t = { gone = false, here = "1" }
            assert.same(t, headers.decode(headers.encode(t)))
            assert.same({ x = false },
                        headers.decode(u32(1) .. u32(1) .. "x"
                                       .. "\255\255\255\255"))
        end)

        it("keeps the last value of a repeated name", function()
            local block = u32(2) .. u32(1) .. "k" .. u32(1) .. "1"
                          .. u32(1) .. "k" .. u32(1) .. "2"
            assert.same({ k = "2" }, headers.decode(block))
        end)

        it("raises on a block shorter than its count", function()
            malformed("", "no header count")
            malformed("\1\0\0", "no header count")
        end)

        it("raises on a count that cannot fit", function()
            malformed(u32(1), "count 1 does not fit")
            malformed("\255\255\255\255" .. string.rep("\0", 8),
                      "does not fit")
        end)

        it("raises on lengths running past the end", function()
            local good = headers.encode({ name = "value" })
            for cut = 5, #good - 1 do
                malformed(good:sub(1, cut))
            end
            malformed(u32(1) .. u32(100) .. "abcd", "runs past the end")
            malformed(u32(1) .. u32(1) .. "a" .. u32(9) .. "abc",
                      "value of 9 bytes runs past the end")
        end)

        it("raises on a value length below -1", function()
            malformed(u32(1) .. u32(1) .. "a" .. "\254\255\255\255",
                      "negative value length -2")
        end)

        it("raises on bytes left over", function()
            malformed(headers.encode({ a = "b" }) .. "\0", "1 bytes left over")
        end)

        it("raises on something that is not a string", function()
            assert.has_error(function() headers.decode(nil) end,
                             "bad header block: string expected, got nil")
        end)
    end)
end)
