-- The Kafka test infrastructure (scripts/kafka.lua, spec/kafka/broker.lua)
-- against a real Apache Kafka in KRaft mode (issue 13): a single node
-- takes keyed records from kcat into the partitions murmur2 names, and a
-- 3-node cluster keeps taking acks=all writes with one broker lost.
-- Every later Kafka spec stands on these; each test stops its brokers.
local broker = require("kafka.broker")
local partition = require("tide.partition")

local fmt = string.format

-- Reads a whole topic with kcat: a list of { key =, p =, value = }.
local function read_all(c, topic)
    local r = c.kcat({ "-C", "-t", topic, "-e", "-q", "-f", "%k %p %s\\n" })
    assert(r.code == 0, "kcat -C exited " .. tostring(r.code) .. ": " .. r.err)
    local recs = {}
    for k, p, v in r.out:gmatch("(%S+) (%d+) ([^\n]*)\n") do
        recs[#recs + 1] = { key = k, p = tonumber(p), value = v }
    end
    return recs
end

-- Produces "key:value" lines with kcat: murmur2 partitioner, acks=all.
local function produce(c, topic, lines)
    local r = c.kcat({ "-P", "-t", topic, "-K", ":",
                       "-X", "partitioner=murmur2_random",
                       "-X", "acks=all", "-X", "message.timeout.ms=60000" },
                     table.concat(lines, "\n") .. "\n")
    assert(r.code == 0 and not r.err:lower():find("delivery failed"),
           "kcat -P exited " .. tostring(r.code) .. ": " .. r.err)
end

local function count(t)
    local n = 0
    for _ in pairs(t) do n = n + 1 end
    return n
end

describe("kafka test broker", function()
    describe("murmur2 (tide.partition)", function()
        it("matches Kafka's Utils.murmur2 on its own test vectors", function()
            -- From Kafka's UtilsTest, checked against kafka-clients 4.4.0.
            local cases = {
                ["21"] = -973932308, foobar = -790332482,
                ["a-little-bit-long-string"] = -985981536,
                ["a-little-bit-longer-string"] = -1486304829,
                ["lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"] =
                    -58897971,
                abc = 479470107,
            }
            for key, want in pairs(cases) do
                local h = partition.murmur2(key)
                if h >= 2 ^ 31 then h = h - 2 ^ 32 end
                assert.equal(want, h, key)
            end
        end)
    end)

    describe("one node", function()
        it("puts 1000 keyed records from kcat where murmur2 says, and gives "
           .. "them back", function()
            local c = broker.start({ nodes = 1 })
            finally(c.stop)
            c.create_topic("keys", 4)
            local d = c.topics_cmd({ "--describe", "--topic", "keys" })
            assert.equal(0, d.code, d.err)
            assert.matches("PartitionCount: 4", d.out)

            local lines, sent = {}, {}
            for i = 1, 1000 do
                local k = "k" .. i
                lines[i] = k .. ":v" .. i
                sent[k] = "v" .. i
            end
            produce(c, "keys", lines)

            local recs = read_all(c, "keys")
            assert.equal(1000, #recs)
            local seen, per_p = {}, { [0] = 0, 0, 0, 0 }
            for _, r in ipairs(recs) do
                assert.equal(sent[r.key], r.value, r.key)
                assert.is_nil(seen[r.key], "twice: " .. r.key)
                seen[r.key] = true
                local want = partition.get(r.key, 4)
                if r.p ~= want then
                    error(fmt("key %s is in partition %d, murmur2 says %d",
                              r.key, r.p, want))
                end
                per_p[r.p] = per_p[r.p] + 1
            end
            assert.equal(1000, count(seen))
            for p = 0, 3 do
                assert.is_true(per_p[p] > 150, "partition " .. p)
            end
        end)

        it("shows a consumer group's committed offsets in "
           .. "kafka-consumer-groups", function()
            local c = broker.start({ nodes = 1 })
            finally(c.stop)
            c.create_topic("in", 2)
            produce(c, "in", { "a:1", "b:2", "c:3", "d:4" })
            local r = c.kcat({ "-G", "grp", "-X", "auto.offset.reset=earliest",
                               "-X", "enable.auto.commit=true", "-e", "-q",
                               "in" })
            assert.equal(0, r.code, r.err)
            local g = c.groups_cmd({ "--describe", "--group", "grp" })
            assert.equal(0, g.code, g.err)
            local total = 0
            local row = "grp%s+in%s+%d+%s+(%d+)%s+%d+%s+(%d+)"
            for off, lag in g.out:gmatch(row) do
                total = total + tonumber(off)
                assert.equal("0", lag)
            end
            assert.equal(4, total)
        end)

        it("fails with one line and the broker's output when a broker "
           .. "cannot start", function()
            local ok, err = pcall(broker.start,
                                  { nodes = 1, jvm = "-XX:+NoSuchOption" })
            assert.is_false(ok)
            assert.matches("^kafka: the broker exited while starting", err)
            assert.matches("NoSuchOption", err)
        end)

        it("says what to install when Java is missing", function()
            local r = broker.run("JAVA=/nonexistent/java luajit "
                                 .. broker.q(broker.kafka.SOURCE_DIR
                                             .. "/scripts/kafka.lua")
                                 .. " run")
            assert.equal(1, r.code)
            assert.matches("^kafka: no Java found.*openjdk%-17%-jdk%-headless",
                           r.err)
        end)
    end)

    describe("three nodes", function()
        it("keeps taking acks=all writes with one broker lost, and takes it "
           .. "back", function()
            local c = broker.start({ nodes = 3 })
            finally(c.stop)
            c.create_topic("rf3", 3)            -- the cluster's defaults
            local d = c.topics_cmd({ "--describe", "--topic", "rf3" })
            assert.equal(0, d.code, d.err)
            assert.matches("ReplicationFactor: 3", d.out)
            assert.matches("min.insync.replicas=2", d.out, 1, true)
            local parts = c.partitions("rf3")
            assert.equal(3, count(parts))
            for p = 0, 2 do
                assert.equal(3, #parts[p].replicas, "replicas of " .. p)
            end
            local lines = {}
            for i = 1, 100 do lines[i] = "k" .. i .. ":before" end
            produce(c, "rf3", lines)

            -- Lose the leader of partition 0.
            local lost = parts[0].leader
            c.kill(lost)
            assert.is_false(broker.kafka.alive(c.nodes[lost].pid))
            lines = {}
            for i = 1, 300 do lines[i] = "k" .. i .. ":down" end
            produce(c, "rf3", lines)
            -- The controller fenced the lost broker: it leads nothing and
            -- is in no ISR (as the brokers' metadata soon shows).
            assert.is_true(broker.wait_for(15, function()
                local ps = c.partitions("rf3")
                for p = 0, 2 do
                    if not ps[p] or ps[p].leader == lost or #ps[p].isr ~= 2
                    then
                        return false
                    end
                end
                return true
            end), "node " .. lost .. " out of every ISR")

            c.restart(lost)
            assert.is_true(broker.wait_for(30, function()
                local ps = c.partitions("rf3")
                for p = 0, 2 do
                    if not ps[p] or #ps[p].isr ~= 3 then return false end
                end
                return true
            end), "node " .. lost .. " back in every ISR")
            lines = {}
            for i = 1, 100 do lines[i] = "k" .. i .. ":after" end
            produce(c, "rf3", lines)

            local recs = read_all(c, "rf3")
            local by = { before = 0, down = 0, after = 0 }
            for _, r in ipairs(recs) do
                by[r.value] = by[r.value] + 1
                assert.equal(partition.get(r.key, 3), r.p, r.key)
            end
            assert.same({ before = 100, down = 300, after = 100 }, by)
        end)
    end)
end)
