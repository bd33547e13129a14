-- Real Apache Kafka clusters for the specs (scripts/kafka.lua): one or
-- three KRaft nodes on loopback, Kafka's own tools and kcat against them.
-- Each test stops its cluster, also when it fails:
--   local c = broker.start({ nodes = 3 })
--   finally(c.stop)
-- A cluster that cannot start (no Java, no jars, a broker that dies)
-- raises one error line with the failing node's log tail.
local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local kafka = assert(loadfile(SRC .. "/scripts/kafka.lua"))("--as-module")

local fmt, concat = string.format, table.concat
local ipairs, pairs, tonumber, tostring, error =
      ipairs, pairs, tonumber, tostring, error

local M = { kafka = kafka, q = kafka.q, run = kafka.run }

-- Runs a command line of words (each quoted); returns { code, out, err }.
local function run_words(words, stdin)
    return kafka.run(concat(words, " "), stdin)
end

--- Starts a cluster: kafka.start(opts) plus
---   c.topics_cmd(args), c.groups_cmd(args): kafka-topics and
---     kafka-consumer-groups with --bootstrap-server added; return
---     { code =, out =, err = }
---   c.kcat(args, stdin): kcat -b BOOTSTRAP args; { code =, out =, err = }
---   c.create_topic(name, partitions, extra_args): raises unless created
---   c.partitions(topic): { [p] = { leader =, replicas = {}, isr = {} } }
---     from kcat's metadata (no JVM)
---@param opts table|nil as kafka.start's, and quick = false for Kafka's
---   own JIT settings
---@return table
function M.start(opts)
    opts = opts or {}
    local o = {}
    for k, v in pairs(opts) do o[k] = v end
    -- Tests want brokers up fast more than fast brokers: the C1 compiler
    -- alone starts them in about half the time on two busy cores
    -- (quick = false keeps Kafka's JIT). Their data is thrown away, so
    -- a stop waits 2 s for SIGTERM before SIGKILL.
    if opts.quick ~= false then
        o.jvm = "-XX:TieredStopAtLevel=1"
                .. (opts.jvm and (" " .. opts.jvm) or "")
    end
    o.grace = opts.grace or 2
    local c = kafka.start(o)
    local function tool(name, args)
        local words = { kafka.tool_cmd(name), "--bootstrap-server",
                        c.bootstrap }
        for _, a in ipairs(args or {}) do words[#words + 1] = kafka.q(a) end
        return run_words(words)
    end
    c.topics_cmd = function(args) return tool("kafka-topics", args) end
    c.groups_cmd = function(args)
        return tool("kafka-consumer-groups", args)
    end
    c.kcat = function(args, stdin)
        local words = { kafka.kcat_cmd(), "-b", c.bootstrap }
        for _, a in ipairs(args or {}) do words[#words + 1] = kafka.q(a) end
        return run_words(words, stdin)
    end
    c.create_topic = function(name, partitions, extra)
        local args = { "--create", "--topic", name, "--partitions",
                       tostring(partitions) }
        for _, a in ipairs(extra or {}) do args[#args + 1] = a end
        local r = c.topics_cmd(args)
        if r.code ~= 0 then
            error(fmt("kafka-topics --create --topic %s exited %s: %s%s",
                      name, tostring(r.code), r.out, r.err), 2)
        end
        return r
    end
    c.partitions = function(topic)
        local r = c.kcat({ "-L", "-t", topic, "-m", "5" })
        local t = {}
        for p, leader, reps, isrs in r.out:gmatch(
                "partition (%d+), leader (%-?%d+), replicas: ([%d,]*), "
                .. "isrs: ([%d,]*)") do
            local function list(s)
                local l = {}
                for n in s:gmatch("%d+") do l[#l + 1] = tonumber(n) end
                return l
            end
            t[tonumber(p)] = { leader = tonumber(leader),
                               replicas = list(reps), isr = list(isrs) }
        end
        return t
    end
    return c
end

--- Waits up to `seconds` until pred() returns true; returns whether it did.
function M.wait_for(seconds, pred)
    local deadline = os.time() + seconds
    repeat
        if pred() then return true end
        os.execute("sleep 0.2")
    until os.time() > deadline
    return pred()
end

return M
