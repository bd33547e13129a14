-- Exactly-once on Kafka (issue 13, "Exactly-once"), against a real
-- broker, as a new user would check it: two `tide run` processes of one
-- job count keys while kcat produces; the processes are SIGKILLed 10
-- times in all, each started again at once on its data dir. kcat with
-- isolation.level=read_committed must then read exactly one output per
-- input, none missing and none doubled, and each key's last output must
-- be its true count. The same run in the default at-least-once mode
-- shows duplicates: the check can tell the two apart.
local h = require("cli.helper")
local broker = require("kafka.broker")
local u = require("kafka.group_util")

local fmt, concat = string.format, table.concat

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local JOBFILE = SRC .. "/spec/kafka/jobs/eos.lua"
local KILLS = 10

-- Reads `topic` with kcat at isolation level `iso`: { [number] = times
-- seen }, the newest count per key, and the number of records.
local function outputs(c, topic, iso)
    local r = c.kcat({ "-C", "-t", topic, "-e", "-q",
                       "-X", "isolation.level=" .. iso, "-f", "%k %s\\n" })
    assert(r.code == 0, "kcat -C " .. topic .. ": " .. r.err)
    local seen, last, n = {}, {}, 0
    for k, i, cnt in r.out:gmatch("(%S+) (%d+) (%d+)\n") do
        i = tonumber(i)
        seen[i] = (seen[i] or 0) + 1
        last[k] = tonumber(cnt)
        n = n + 1
    end
    return seen, last, n
end

describe("exactly-once on kafka (processing = \"exactly_once\")", function()
    local c, work, pids

    setup(function()
        -- Sessions down to 2 s (the broker allows 1 s): the tasks of a
        -- SIGKILLed process move soon.
        c = broker.start({ nodes = 1, config = {
            ["group.min.session.timeout.ms"] = 1000 } })
    end)

    teardown(function()
        if c then c.stop() end
    end)

    before_each(function()
        work = h.tmpdir()
        pids = {}
    end)

    after_each(function()
        h.kill_ours(pids, work)
    end)

    -- Starts process i on data dir work/<name>-<i>; returns it once its
    -- log says the job started.
    local function start(i, args, name)
        return u.start_process(work .. "/" .. name .. "-" .. i, work, args,
                               pids, name, i)
    end

    -- The run: kcat produces to a new 4-partition topic; two processes
    -- (2 workers each) count; KILLS SIGKILLs alternate between them, each
    -- started again at once; then the input stops, the group reaches lag
    -- 0 and both stop on SIGTERM. Returns what read_committed and
    -- read_uncommitted readers see of the output, and the inputs.
    local function run(name, mode)
        local inp, out = name .. "-in", name .. "-out"
        c.create_topic(inp, 4)
        local args = { "run", JOBFILE, "-c", "name=" .. name,
                       "-c", "inputs.1=kafka:" .. inp,
                       "-c", "outputs.1=kafka:" .. out,
                       "-c", "config.out=kafka:" .. out,
                       "-c", "processing=" .. mode,
                       "-c", "kafka.bootstrap.servers=" .. c.bootstrap,
                       "-c", "kafka.session.timeout.ms=2000",
                       "-c", "kafka.heartbeat.interval.ms=500",
                       "--workers", "2", "--create" }
        u.start_producer(c, work, inp, 100, 0.1, 20)
        local p = { start(1, args, name), start(2, args, name) }
        local seed = os.time()
        math.randomseed(seed)
        for k = 1, KILLS do
            h.sleep(1 + math.random() * 1.5)
            local i = k % 2 + 1
            u.kill_run(p[i])
            p[i] = start(i, args, name)
        end
        h.sleep(2)
        local sent = u.stop_producer(work)
        local ok, err = pcall(u.wait_lag0, c, name, inp, 4, sent, 120, p)
        local stopped = u.stop_all(p)
        assert(ok, err)
        for i, s in pairs(stopped) do
            local why = u.unclean(s, name)
            assert(why == nil, fmt("process %d %s; log:\n%s", i,
                                   tostring(why), s.log))
        end
        local r = { sent = sent, truth = u.true_counts(c, inp, sent),
                    logs = stopped, seed = seed }
        r.seen, r.last, r.n = outputs(c, out, "read_committed")
        local _, _, raw = outputs(c, out, "read_uncommitted")
        r.raw = raw
        print(fmt("eos_spec %s: seed %d; %d inputs; %d outputs "
                  .. "read_committed, %d read_uncommitted", mode, seed, sent,
                  r.n, raw))
        return r
    end

    -- The inputs with no output, and those with more than one, as text.
    local function misses(r)
        local missing, doubled = {}, {}
        for i = 0, r.sent - 1 do
            local times = r.seen[i] or 0
            if times == 0 then
                missing[#missing + 1] = tostring(i)
            elseif times > 1 then
                doubled[#doubled + 1] = fmt("%d (%d times)", i, times)
            end
        end
        return missing, doubled
    end

    it("with exactly_once, read_committed sees one output per input "
       .. "through 10 SIGKILLs, and exact counts", function()
        local r = run("eos", "exactly_once")
        local missing, doubled = misses(r)
        assert(#missing == 0 and #doubled == 0, fmt(
            "%d inputs without an output (e.g. %s), %d with more than one "
            .. "(e.g. %s); seed %d", #missing,
            concat(missing, ", ", 1, math.min(#missing, 5)), #doubled,
            concat(doubled, ", ", 1, math.min(#doubled, 5)), r.seed))
        assert.equal(r.sent, r.n)
        u.assert_counts(r.truth, r.last)
        -- The kills did land mid-transaction: a read_uncommitted reader
        -- sees records of aborted transactions that read_committed skips.
        assert.is_true(r.raw > r.n, fmt("read_uncommitted sees %d records, "
                                        .. "read_committed %d: no aborted "
                                        .. "transaction", r.raw, r.n))
    end)

    it("with at_least_once, the same run shows duplicates (so the check "
       .. "above can fail), and exact counts", function()
        local r = run("alo", "at_least_once")
        local missing, doubled = misses(r)
        assert.equal(0, #missing)
        assert.is_true(#doubled > 0, "no input had two outputs after "
                       .. KILLS .. " SIGKILLs (seed " .. r.seed .. ")")
        u.assert_counts(r.truth, r.last)
    end)
end)
