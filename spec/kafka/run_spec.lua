-- End to end: `tide run` on the kafka: system (issue 13) against a real
-- Apache Kafka broker, as a new user would drive it: input produced with
-- kcat, jobs from spec/kafka/jobs/ run by the tide binary, output read
-- with kcat, the group's offsets read with kafka-consumer-groups. One
-- single-node broker serves the whole file; each test has its own topics
-- and job name (so its own consumer group).
local h = require("cli.helper")
local broker = require("kafka.broker")

local fmt, concat = string.format, table.concat

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local JOBS = SRC .. "/spec/kafka/jobs/"

-- Fails unless kcat run `r` went well, naming `what`.
local function kcat_ok(r, what)
    if r.code ~= 0 or r.err:lower():find("fail") then
        error(fmt("%s: kcat exited %s: %s", what, tostring(r.code), r.err), 2)
    end
    return r.out
end

-- Produces "key:value" lines to `topic` with kcat (murmur2_random, as
-- the Java client and tide place keys); `extra` are more kcat words.
local function produce(c, topic, lines, extra)
    local args = { "-P", "-t", topic, "-K", ":",
                   "-X", "partitioner=murmur2_random",
                   "-X", "acks=all", "-X", "message.timeout.ms=60000" }
    for _, a in ipairs(extra or {}) do args[#args + 1] = a end
    kcat_ok(c.kcat(args, concat(lines, "\n") .. "\n"), "producing to " .. topic)
end

-- Reads all of `topic` with kcat format `f` (each record one line);
-- returns the lines.
local function consume(c, topic, f)
    return h.lines(kcat_ok(c.kcat({ "-C", "-t", topic, "-e", "-q", "-f", f }),
                           "reading " .. topic))
end

-- The newest value per key of a topic whose values are counts, and the
-- number of records.
local function last_counts(c, topic)
    local last, n = {}, 0
    for _, l in ipairs(consume(c, topic, "%k\t%s\\n")) do
        local k, v = l:match("^([^\t]*)\t(.*)$")
        last[k] = tonumber(v)
        n = n + 1
    end
    return last, n
end

-- "key:value" lines i = first..last, keyed k<i % nkeys>; adds each to
-- `truth` (key -> count).
local function keyed_lines(first, last, nkeys, truth)
    local lines = {}
    for i = first, last do
        local k = "k" .. (i % nkeys)
        lines[#lines + 1] = k .. ":" .. i
        truth[k] = (truth[k] or 0) + 1
    end
    return lines
end

-- Fails, listing a few, unless every key of `truth` has newest output
-- truth[k] and no other key has an output.
local function assert_counts(truth, last, what)
    local bad = {}
    for k, n in pairs(truth) do
        if last[k] ~= n then
            bad[#bad + 1] = fmt("key %s: newest output %s, true count %d", k,
                                tostring(last[k]), n)
        end
    end
    for k, v in pairs(last) do
        if truth[k] == nil then
            bad[#bad + 1] = fmt("key %s: output %s, never input", k,
                                tostring(v))
        end
    end
    table.sort(bad)
    assert(#bad == 0, fmt("%s: %d keys wrong, e.g.\n  %s", what, #bad,
                          concat(bad, "\n  ", 1, math.min(#bad, 8))))
end

-- The rows of `kafka-consumer-groups --describe --group g`:
-- { { topic =, partition =, current =, log_end =, lag = } } (a "-"
-- becomes nil), and the text.
local function group_rows(c, g)
    local r = c.groups_cmd({ "--describe", "--group", g })
    assert(r.code == 0, fmt("kafka-consumer-groups --describe --group %s "
                            .. "exited %s: %s%s", g, tostring(r.code), r.out,
                            r.err))
    local rows = {}
    for l in r.out:gmatch("[^\n]+") do
        local grp, topic, p, cur, fin, lag = l:match(
            "^(%S+)%s+(%S+)%s+(%d+)%s+(%S+)%s+(%S+)%s+(%S+)")
        if grp == g then
            rows[#rows + 1] = { topic = topic, partition = tonumber(p),
                                current = tonumber(cur),
                                log_end = tonumber(fin), lag = tonumber(lag) }
        end
    end
    return rows, r.out
end

describe("tide run on kafka: streams (a real broker)", function()
    local c, work, dir, pids

    setup(function()
        -- Sessions down to 1 s (Kafka's least is 6 s), so that the
        -- tasks of a SIGKILLed run are free again soon (run_args).
        c = broker.start({ nodes = 1, config = {
            ["group.min.session.timeout.ms"] = 1000 } })
    end)

    teardown(function()
        if c then c.stop() end
    end)

    before_each(function()
        work, dir = h.scratch()
        pids = {}
    end)

    after_each(function()
        h.kill_ours(pids, work)
    end)

    -- The words of `tide run JOBFILE` for job `name` reading topic `inp`
    -- and writing `out` (-c overrides, see spec/kafka/jobs/count.lua),
    -- on this file's broker with 2 workers, then the words of `extra`.
    local function run_args(jobfile, name, inp, out, extra)
        local a = { "run", JOBS .. jobfile, "-c", "name=" .. name,
                    "-c", "inputs.1=kafka:" .. inp,
                    "-c", "outputs.1=kafka:" .. out,
                    "-c", "config.out=kafka:" .. out,
                    "-c", "kafka.bootstrap.servers=" .. c.bootstrap,
                    -- A SIGKILLed run's tasks are free again after it.
                    "-c", "kafka.session.timeout.ms=2000",
                    "-c", "kafka.heartbeat.interval.ms=500",
                    "--workers", "2", "--create" }
        for _, w in ipairs(extra or {}) do a[#a + 1] = w end
        return a
    end

    -- Runs `tide ARGS --drain` in the background (hang guard 60 s) and
    -- fails unless it exits 0; returns its log.
    local function drain(args)
        local a = {}
        for i, w in ipairs(args) do a[i] = w end
        a[#a + 1] = "--drain"
        local job = h.start_tide(dir, work, a, pids)
        local rc = h.wait_exit(job)
        local log = h.tide_stderr(job)
        assert(rc == 0, fmt("tide run --drain exited %d; log:\n%s", rc, log))
        return log
    end

    -- Waits (hang guard: 60 s) until the log of tide run `job` says n
    -- tasks were assigned to its workers (so that they run).
    local function wait_assigned(job, n, what)
        h.wait_log(job, "task %d+ assigned to worker", n, what)
    end

    -- Waits (hang guard: 90 s) until kafka-consumer-groups shows group g
    -- at offset `total` in all of `topic` with lag 0, while tide run
    -- `job` runs; fails if it ends first.
    local function wait_lag0(job, g, topic, total)
        local text
        local ok = broker.wait_for(90, function()
            assert(not h.exited(job), "tide run ended; log:\n"
                                      .. h.tide_stderr(job))
            local rows
            rows, text = group_rows(c, g)
            local cur, lag = 0, 0
            for _, r in ipairs(rows) do
                if r.topic == topic then
                    cur = cur + (r.current or 0)
                    lag = lag + (r.lag or 1)
                end
            end
            return cur == total and lag == 0
        end)
        assert(ok, fmt("group %s did not reach offset %d with lag 0 in 90 "
                       .. "s:\n%s\nlog:\n%s", g, total, tostring(text),
                       h.tide_stderr(job)))
    end

    -- Waits (hang guard: 10 s) until pid is gone; returns whether it is.
    local function wait_gone(pid)
        return broker.wait_for(10, function() return not h.alive(pid) end)
    end

    -- SIGKILLs tide run `job` (the supervisor) and waits until its
    -- workers are gone too (they get SIGKILL when it dies).
    local function kill_run(job)
        -- (From /proc, not pgrep: under the ASan build's LD_PRELOAD,
        -- pgrep hangs.)
        local kids = h.read_file(fmt("/proc/%d/task/%d/children", job.pid,
                                     job.pid)) or ""
        h.kill9(job.pid)
        for kid in kids:gmatch("%d+") do
            assert(wait_gone(tonumber(kid)), "worker " .. kid
                   .. " outlived its supervisor's SIGKILL")
        end
        h.wait_exit(job)
    end

    it("counts exactly through 5 SIGKILLs of tide run: the newest output "
       .. "per key, read with kcat, is the key's true count", function()
        c.create_topic("crash-in", 4)
        local truth = {}

        local args = run_args("count.lua", "kc-crash", "crash-in",
                              "crash-out")
        local seed = os.time()
        math.randomseed(seed)
        local seen = {}
        -- 10,000 more inputs before each run, so that each has some to
        -- be killed in the middle of (20,000 in all before the last run:
        -- 10,000 more come with it). A SIGKILL sooner after the tasks are
        -- assigned is the test after this one.
        for i = 1, 5 do
            produce(c, "crash-in", keyed_lines(i * 10000 - 9999, i * 10000,
                                               50, truth))
            local job = h.start_tide(dir, work, args, pids)
            wait_assigned(job, 4, "start " .. i .. " (seed " .. seed .. ")")
            h.sleep(0.5 + math.random() * 0.7)
            kill_run(job)
            local _, n = last_counts(c, "crash-out")
            seen[i] = n
        end
        -- How far each run had got (outputs, duplicates included).
        print(fmt("run_spec: seed %d; outputs after each SIGKILL: %s", seed,
                  concat(seen, ", ")))
        -- The last run: until the group has committed every input.
        local job = h.start_tide(dir, work, args, pids)
        wait_lag0(job, "kc-crash", "crash-in", 50000)
        h.stop(job)
        assert.equal(50000, #consume(c, "crash-in", "%k\\n"))

        local last, n = last_counts(c, "crash-out")
        assert.is_true(n >= 50000, n .. " outputs for 50000 inputs")
        assert_counts(truth, last, "after 5 SIGKILLs")
        local keys = 0
        for _ in pairs(last) do keys = keys + 1 end
        assert.equal(50, keys)
    end)

    -- Regression test (fixed: restart refused after a SIGKILL before the first
    -- commit): a run SIGKILLed while its tasks are being assigned (some
    -- committed, some not yet) leaves a checkpoint.json with entries
    -- "inputs":{} for the others, and every later start refuses with
    -- "task 3 is missing, but job ... has 4 tasks: the partition count
    -- of its inputs changed since the checkpoint", which is not what
    -- happened; the job cannot start until the user deletes files.
    it("starts again after a SIGKILL while its tasks were being assigned",
       function()
        c.create_topic("early-in", 4)
        local truth = {}
        produce(c, "early-in", keyed_lines(1, 20000, 50, truth))
        local args = run_args("count.lua", "kc-early", "early-in",
                              "early-out")
        local job = h.start_tide(dir, work, args, pids)
        h.wait_log(job, "task 3 assigned to worker", 1, "task 3 assigned")
        kill_run(job)
        job = h.start_tide(dir, work, args, pids)
        wait_lag0(job, "kc-early", "early-in", 20000)
        h.stop(job)
        assert_counts(truth, (last_counts(c, "early-out")),
                      "after a SIGKILL at the start")
    end)

    -- Regression test (fixed: --drain after a SIGKILL: Unknown member): a --drain
    -- run does not join the group (supervisor's in_group), and its
    -- commits are refused ("Broker: Unknown member") while the group
    -- still has a member: here the SIGKILLed run's, until its session
    -- times out. tide run --drain then exits 1 with "cannot commit the
    -- checkpoint to Kafka group".
    it("drains right after a SIGKILLed run", function()
        c.create_topic("dk-in", 4)
        local truth = {}
        produce(c, "dk-in", keyed_lines(1, 4000, 50, truth))
        -- With tide's session.timeout.ms (10 s), not this file's 2 s,
        -- which a drain's start may outlast.
        local args = run_args("count.lua", "kc-dk", "dk-in", "dk-out",
                              { "-c", "kafka.session.timeout.ms=10000",
                                "-c", "kafka.heartbeat.interval.ms=3000" })
        local job = h.start_tide(dir, work, args, pids)
        wait_assigned(job, 4, "the first run's tasks")
        h.sleep(0.5)
        kill_run(job)
        drain(args)
        assert_counts(truth, (last_counts(c, "dk-out")),
                      "after a SIGKILL and a drain")
    end)

    it("continues the counts after the data dir is deleted: the stores are "
       .. "rebuilt from the changelog topics", function()
        c.create_topic("full-in", 4)
        local truth = {}
        produce(c, "full-in", keyed_lines(1, 2000, 50, truth))
        local args = run_args("count.lua", "kc-full", "full-in", "full-out")
        drain(args)
        assert_counts(truth, (last_counts(c, "full-out")), "first run")

        h.rmdir(work)                          -- the data dir is inside
        work, dir = h.scratch()
        produce(c, "full-in", keyed_lines(2001, 3000, 50, truth))
        local log = drain(args)
        assert_counts(truth, (last_counts(c, "full-out")),
                      "after the data dir was deleted")
        -- Each task's store came from its changelog topic, up to the
        -- checkpoint kept in the consumer group.
        local replayed = 0
        for p = 0, 3 do
            local n = log:match("store 'counts' task " .. p .. ": rebuilt "
                                .. "from the changelog to checkpoint offset "
                                .. "%d+, replayed (%d+) changelog records")
            assert(n, "no restore line of task " .. p .. " in the log:\n"
                      .. log)
            replayed = replayed + tonumber(n)
        end
        assert.is_true(replayed > 0, "replayed " .. replayed)
        local cl = c.partitions("kc-full-counts-changelog")
        for p = 0, 3 do
            assert(cl[p], "changelog topic has no partition " .. p)
        end
        assert.is_nil(cl[4])
    end)

    describe("round trip with kcat", function()
        -- Records in, by key: value (nil: tombstone), headers (kcat's
        -- %h text).
        local function produce_mixed()
            c.create_topic("rt-in", 2)
            produce(c, "rt-in", { "a:hello", "b:wor:ld" },
                    { "-H", "h1=v1", "-H", "h2=v2" })
            produce(c, "rt-in", { "c:plain value" })
            produce(c, "rt-in", { "t:" }, { "-Z" })     -- null value
        end

        -- { [key] = { size =, value =, headers =, ts = } } of a topic.
        local function by_key(topic)
            local t = {}
            for _, l in ipairs(consume(c, topic, "%k|%S|%s|%h|%T\\n")) do
                local k, size, v, hd, ts = l:match(
                    "^([^|]*)|(%-?%d+)|(.*)|([^|]*)|(%d+)$")
                assert(k, "bad kcat line: " .. l)
                t[k] = { size = tonumber(size), value = v, headers = hd,
                         ts = tonumber(ts) }
            end
            return t
        end

        -- Runs the job once for both tests; returns the input and the
        -- output (by_key).
        local ran
        local function run_pass()
            if ran then return ran[1], ran[2] end
            produce_mixed()
            local args = run_args("pass.lua", "kc-rt", "rt-in", "rt-out",
                                  { "-c", "outputs.2=kafka:rt-hdrs",
                                    "-c", "config.hdrs=kafka:rt-hdrs" })
            drain(args)
            ran = { by_key("rt-in"), by_key("rt-out") }
            return ran[1], ran[2]
        end

        it("keeps keys, values, tombstones and timestamps", function()
            local inp, out = run_pass()
            assert.equal(-1, inp.t.size)              -- kcat -Z: a tombstone
            assert.equal("v1", inp.a.headers:match("h1=(%w+)"))
            for _, k in ipairs({ "a", "b", "c", "t" }) do
                assert(out[k], "no output for key " .. k)
                assert.equal(inp[k].size, out[k].size, "size of " .. k)
                assert.equal(inp[k].value, out[k].value, "value of " .. k)
                assert.equal(inp[k].ts, out[k].ts, "timestamp of " .. k)
            end
            assert.equal("wor:ld", out.b.value)
            assert.equal(-1, out.t.size)              -- still a tombstone
            -- What tide read as msg.headers (the job sends it on).
            local hd = by_key("rt-hdrs")
            assert.equal("h1=v1,h2=v2", hd.a and hd.a.value)
            assert.equal("h1=v1,h2=v2", hd.b and hd.b.value)
            assert.is_nil(hd.c)
        end)

        -- Headers round-trip unchanged (issue 13): the job passes
        -- msg.headers to ctx:send.
        it("keeps headers through a pass-through job", function()
            local inp, out = run_pass()
            assert.equal("h1=v1,h2=v2", inp.a.headers)
            assert.equal(inp.a.headers, out.a.headers, "headers of a")
            assert.equal(inp.b.headers, out.b.headers, "headers of b")
        end)
    end)

    it("shows its offsets and lag in kafka-consumer-groups --describe",
       function()
        c.create_topic("lag-in", 4)
        local truth = {}
        produce(c, "lag-in", keyed_lines(1, 400, 20, truth))
        drain(run_args("count.lua", "kc-lag", "lag-in", "lag-out"))

        local rows, text = group_rows(c, "kc-lag")
        local parts, total = {}, 0
        for _, r in ipairs(rows) do
            if r.topic == "lag-in" then
                parts[r.partition] = true
                assert.equal(r.log_end, r.current, text)
                assert.equal(0, r.lag, text)
                total = total + r.current
            end
        end
        for p = 0, 3 do assert(parts[p], "no row of partition " .. p
                                         .. ":\n" .. text) end
        assert.equal(400, total, text)

        produce(c, "lag-in", keyed_lines(401, 500, 20, truth))
        rows, text = group_rows(c, "kc-lag")
        local lag = 0
        for _, r in ipairs(rows) do
            if r.topic == "lag-in" then lag = lag + r.lag end
        end
        assert.equal(100, lag, text)
    end)

    describe("refuses bad setups with one clear line", function()
        -- Runs `tide ARGS` (hang guard: `timeout 60`); returns { code,
        -- out, err, lines = the lines of stderr }.
        local function run_bad(args)
            local words = { "timeout", "60", h.q(h.bin) }
            for _, a in ipairs(args) do words[#words + 1] = h.q(a) end
            words[#words + 1] = "--data-dir " .. h.q(dir)
            local r = h.run(concat(words, " "))
            assert(r.code ~= 124, "tide run still ran after 60 s:\n" .. r.err)
            r.lines = h.lines(r.err)
            return r
        end

        local function assert_one_line(r, ...)
            assert(r.code ~= 0, "tide run exited 0")
            assert(#r.lines == 1, "stderr is not one line:\n" .. r.err)
            for _, pat in ipairs({ ... }) do
                assert.matches(pat, r.lines[1])
            end
        end

        it("without bootstrap servers: names kafka.bootstrap.servers",
           function()
            local a = run_args("count.lua", "kc-bad-a", "bad-a", "bad-a-out")
            local words = {}
            for _, w in ipairs(a) do
                if not w:find("^kafka%.bootstrap") then
                    words[#words + 1] = w
                elseif words[#words] == "-c" then
                    words[#words] = nil
                end
            end
            assert_one_line(run_bad(words), "kafka%.bootstrap%.servers=")
        end)

        it("with an input topic that does not exist: names it and how to "
           .. "create it", function()
            local r = run_bad(run_args("count.lua", "kc-bad-b", "no-such-in",
                                       "bad-b-out"))
            assert_one_line(r, "'no%-such%-in'", "kafka%-topics %-%-create")
        end)

        it("with inputs of different partition counts: refuses "
           .. "(co-partitioning)", function()
            c.create_topic("bad-c4", 4)
            c.create_topic("bad-c2", 2)
            local r = run_bad(run_args("count.lua", "kc-bad-c", "bad-c4",
                                       "bad-c-out",
                                       { "-c", "inputs.2=kafka:bad-c2" }))
            assert_one_line(r, "partition counts", "'kafka:bad%-c4' has 4",
                            "'kafka:bad%-c2' has 2")
        end)

        it("with an unknown librdkafka property: names it", function()
            local r = run_bad(run_args("count.lua", "kc-bad-d", "bad-d",
                                       "bad-d-out",
                                       { "-c", "kafka.no.such.thing=1" }))
            assert_one_line(r, "no%.such%.thing")
        end)

        -- (docs/kafka.md "Faults": a cluster down at start is waited for.)
        it("with a broker address where nothing listens: waits with one "
           .. "line naming it, and stops on SIGTERM", function()
            local a = run_args("count.lua", "kc-bad-e", "bad-e", "bad-e-out")
            for i, w in ipairs(a) do
                if w:find("^kafka%.bootstrap%.servers=") then
                    a[i] = "kafka.bootstrap.servers=127.0.0.1:1"
                end
            end
            local job = h.start_tide(dir, work, a, pids)
            h.wait_log(job, "warn kafka: no broker at 127%.0%.0%.1:1 "
                            .. "answers", 1, "the warning", 30)
            h.sleep(1)
            h.signal(job, "TERM")
            local rc = h.wait_exit(job)
            local log = h.tide_stderr(job)
            assert(rc ~= 0, "exited 0 without ever running; log:\n" .. log)
            local lines = h.lines(log)
            assert.equal(2, #lines, log)
            assert.matches("kafka%.bootstrap%.servers", lines[1])
            assert.matches("^tide run: .*stopped while waiting for the Kafka "
                           .. "cluster", lines[2])
        end)
    end)
end)
