-- Specs for lua/tide/partition.lua: Kafka's murmur2 partitioner in Lua,
-- checked against the C core's (tide_murmur2, tide_partition_get).
local base = require("tide.base")
local partition = require("tide.partition")

local lib = base.lib

describe("tide.partition", function()
    describe("murmur2()", function()
        it("matches known values of Kafka's murmur2", function()
            -- From Kafka's UtilsTest.testMurmur2 (as signed ints there).
            local cases = {
                ["21"] = -973932308,
                ["foobar"] = -790332482,
                ["a-little-bit-long-string"] = -985981536,
                ["a-little-bit-longer-string"] = -1486304829,
                ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"] =
                    -58897971,
                ["abc"] = 479470107,
            }
            for key, want in pairs(cases) do
                assert.equals(want % 4294967296, partition.murmur2(key))
            end
        end)

        it("matches the C core on many keys of every tail length", function()
            math.randomseed(42)
            for _ = 1, 5000 do
                local n = math.random(0, 64)
                local t = {}
                for j = 1, n do
                    t[j] = string.char(math.random(0, 255))
                end
                local key = table.concat(t)
                assert.equals(tonumber(lib.tide_murmur2(key, #key)),
                              partition.murmur2(key))
            end
        end)
    end)

    describe("get()", function()
        it("places keys like tide_partition_get", function()
            for i = 1, 3000 do
                local key = "user-" .. i
                local n = i % 37 + 1
                assert.equals(lib.tide_partition_get(key, #key, n),
                              partition.get(key, n))
            end
            assert.equals(lib.tide_partition_get("", 0, 7),
                          partition.get("", 7))
            assert.equals(lib.tide_partition_get("\0\0\0", 3, 5),
                          partition.get("\0\0\0", 5))
        end)

        it("raises on a bad key or partition count", function()
            assert.has_error(function() partition.get(nil, 3) end,
                             "bad key: string expected, got nil")
            assert.has_error(function() partition.get("k", 0) end,
                             "bad partition count: positive integer expected")
            assert.has_error(function() partition.get("k", 1.5) end)
        end)
    end)
end)
