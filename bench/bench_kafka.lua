--- The Kafka benches of issue 13 ("Speed"): a kafka -> kafka pass-through
--- and a keyed count, at-least-once and exactly-once, the restore of a
--- changelog topic and the move of a killed process's tasks. The
--- pass-through runs tide beside these baselines, measured in the same run
--- on the same broker and input:
---
---   tide:     `tide run bench/jobs/kpass.lua --drain --workers 1`, string
---             serde, ctx:send(out, msg.key, msg.value);
---   raw C:    `bench_kafka pass` (bench/bench_kafka.c): a librdkafka
---             consumer assigned every partition from the beginning, an
---             idempotent acks=all producer (tide's settings), key and
---             value produced unchanged, one flush at the end;
---   kcat:     `kcat -C -e | kcat -P` (idempotent, murmur2_random), keys
---             and values as tab-separated lines;
---   tide C:   `bench_kafka core`: the same loop through tide's C core
---             alone (tide_kreader_poll_batch, tide_kafka_produce), no
---             Lua; it splits tide's gap to raw C into its C path and
---             its Lua runtime;
---   Kafka Streams: bench/kafka/ (org.apache.kafka:kafka-streams, built
---             here with Maven into DIR), String serdes, mapValues(v ->
---             v), one stream thread, at-least-once; it has no drain
---             mode, so it closes (flush, commit) once it counted N
---             messages. Its JVM start and JIT are in its figure, as
---             tide's start is in tide's; its run on an empty input (it
---             closes once running) is printed as its fixed cost.
---             Skipped, with a line saying why, when Maven is missing
---             or the build fails.
---
--- One broker (scripts/kafka.lua, Kafka's own JIT settings) on loopback,
--- started here and stopped at the end. The input topic has 4 partitions
--- and MESSAGES messages (10-byte keys, 100-byte values), produced once
--- with `bench_kafka produce`. Each round runs the sides, in turns
--- forward and backward, each to a fresh output topic of 4 partitions
--- made before it starts; the output's message count is checked (its
--- watermarks) and the topic deleted after.
---
--- Every side is run under `bench_kafka time`, which prints the wall
--- time and the user+sys CPU seconds of the whole process tree it waited
--- for: tide's supervisor and its worker, both kcat, the JVM. The main
--- figure is
--- messages per CPU-second of those processes (the issue's "per core");
--- messages per wall second is printed beside it, and the broker's CPU
--- seconds during each side (/proc of the broker) show the load each
--- side put on it. Nothing is subtracted: tide's start (LuaJIT, the
--- worker process, the topics' metadata) is in its figure; the same run
--- on an empty input is printed as tide's fixed cost.
---
--- The keyed count (bench/kafka/kcount.lua beside Kafka Streams'
--- groupByKey().count(), bench/kafka/.../Count.java) runs over the same
--- input in the same rounds: a RocksDB store with its changelog topic on
--- the broker, each key's new count sent to a 4-partition output. Kafka
--- Streams runs with its record cache off (statestore.cache.max.bytes=0),
--- so that it sends every new count, as tide's job does (with its cache
--- it would send one update per key per commit: another job's output).
---
--- Exactly-once: the same rounds run Kafka Streams' pass-through and count
--- with processing.guarantee=exactly_once_v2, and tide's two jobs with -c
--- processing=exactly_once. A build that refuses the field (non-zero exit,
--- "processing" in its error) or accepts it without writing transactions
--- (its output holds no transaction markers: its watermarks count exactly
--- its messages) is reported as such, once, and not measured. Outputs
--- written in transactions are counted by reading them (read_committed).
---
--- Restore: RESTORE_KEYS messages of distinct keys (100-byte values) are
--- run once through bench/kafka/klast.lua (each key's last value in a
--- RocksDB store), which fills its changelog topic with one record a key;
--- then each run deletes the data dir and runs the job again, which
--- rebuilds its 4 stores from the changelog and stops (no new input). The
--- replay time is the sum of the tasks' "replayed N changelog records (X
--- MB, Y MB/s)" log lines (X / Y); the bytes are the topic's keys and
--- values as `bench_kafka read` counts them, the raw side: a librdkafka
--- consumer reading the same topic to its end.
---
--- Rebalance: one `tide run` (not --drain) of kcount.lua runs throughout
--- (process A); each run starts a second process B of the same job (its
--- own data dir), waits until the group gave B half the tasks, then
--- `bench_kafka probe` SIGKILLs B, sends one message to each of B's
--- partitions and times until each has a new output: the tasks process
--- again in A. B runs with tide's default session.timeout.ms (10 s) and,
--- in turns, with -c kafka.session.timeout.ms=6000 (the broker's least).
--- A's "kafka group: tasks ... assigned in N ms" line for the moved tasks
--- is printed beside it.
---
--- Usage: luajit bench/bench_kafka.lua TIDE_BIN BENCH_KAFKA_BIN DIR
---        [MESSAGES [RESTORE_KEYS [REBALANCE_MSGS]]]
--- (bench/run.sh sets package.path). KAFKA_PARTS (comma list of pass,
--- count, eos, restore, rebalance; default all) runs only some parts:
--- count and eos run inside pass's rounds, and need it. Needs Java 17+,
--- the Kafka jars (fetched through Maven by scripts/kafka.lua) and kcat;
--- without Java it prints one line saying so and exits 0. BENCH_RUNS
--- rounds (default 3 here; run.sh sets 5); each figure is the median of
--- its runs with their spread (min-max), ratios taken run by run
--- (bench/stats.lua). docs/bench.md ("Kafka") has the sizes and times.
local bench_dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path


local ffi = require("ffi")
local stats = require("stats")
local util = require("util")

local str_format, concat = string.format, table.concat
local tonumber, tostring, ipairs = tonumber, tostring, ipairs
local sh, quote, now = util.sh, util.quote, util.now

local tide_bin, kbin, base = arg[1], arg[2], arg[3]
local n = tonumber(arg[4] or 500000)
local rkeys = tonumber(arg[5] or 1000000)
local rb_msgs = tonumber(arg[6] or 20000)
if not tide_bin or not kbin or not base or not n or n < 1 or not rkeys
    or rkeys < 1 or not rb_msgs or rb_msgs < 1 then
    io.stderr:write("usage: luajit bench/bench_kafka.lua TIDE_BIN "
                    .. "BENCH_KAFKA_BIN DIR [MESSAGES [RESTORE_KEYS "
                    .. "[REBALANCE_MSGS]]]\n")
    os.exit(2)
end
pcall(ffi.cdef, "int setenv(const char *, const char *, int);")
pcall(ffi.cdef, "int poll(void *fds, unsigned long nfds, int timeout);")
if (os.getenv("BENCH_RUNS") or "") == "" then
    -- A round is nine passes over the input; 3 keeps the bench within a
    -- few minutes on a loaded machine.
    ffi.C.setenv("BENCH_RUNS", "3", 1)
end
local RUNS = stats.runs("bench_kafka")
local NPARTS = 4
local SRC = bench_dir .. "/.."
local JOB = bench_dir .. "/jobs/kpass.lua"
local KCOUNT = bench_dir .. "/kafka/kcount.lua"
local KLAST = bench_dir .. "/kafka/klast.lua"

local PARTS = {}
for w in (os.getenv("KAFKA_PARTS") or "pass,count,eos,restore,rebalance")
        :gmatch("[^,%s]+") do
    PARTS[w] = true
end
PARTS.count = PARTS.count and PARTS.pass
PARTS.eos = PARTS.eos and PARTS.pass

local function die(fmt, ...)
    error(str_format("bench_kafka: " .. fmt, ...), 0)
end

local function sleep(secs)
    ffi.C.poll(nil, 0, secs * 1000)
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

if not sh("command -v java >/dev/null 2>&1") then
    print("kafka: skipped: no java (make deps installs a JDK)")
    os.exit(0)
end
if not sh("command -v kcat >/dev/null 2>&1") then
    print("kafka: skipped: no kcat (make deps installs it)")
    os.exit(0)
end

local kafka = assert(loadfile(SRC .. "/scripts/kafka.lua"))("--as-module")
local dir = base .. "/tide-bench-kafka"
local cluster
local started = {}          -- pids of the tide runs started in background

-- True while process `pid` runs (a zombie is not running).
local function alive(pid)
    local st = read_file("/proc/" .. pid .. "/stat")
    return st ~= nil and st:match("^%d+ %b() (%a)") ~= "Z"
end

local function cleanup()
    for _, pid in ipairs(started) do
        if alive(pid) then
            sh("kill -9 " .. pid .. " 2>/dev/null")
        end
    end
    if cluster then
        cluster.stop()
    end
    sh("rm -rf " .. quote(dir))
end

-- Runs a shell command; returns its standard output, or raises with its
-- standard error.
local function run(cmd)
    local errf = dir .. "/cmd.err"
    local p = assert(io.popen(cmd .. " 2>" .. quote(errf), "r"))
    local out = p:read("*a")
    local ok = p:close()
    if not (ok == true or ok == 0) then
        die("%s failed:\n%s%s", cmd, out, read_file(errf) or "")
    end
    return out
end

local function kafka_cmd(...)
    local w = { quote(kbin) }
    for _, a in ipairs({ ... }) do w[#w + 1] = quote(a) end
    return run(concat(w, " "))
end

-- The broker's user+sys CPU seconds so far (/proc/PID/stat).
local clk_tck = tonumber((io.popen("getconf CLK_TCK"):read("*l"))) or 100
local function broker_cpu()
    local s = read_file("/proc/" .. cluster.nodes[1].pid .. "/stat") or ""
    local rest = s:match("^%d+ %b() (.*)$")
    if not rest then return 0 end
    local f = {}
    for w in rest:gmatch("%S+") do f[#f + 1] = w end
    -- Fields 14 and 15 of stat are the 12th and 13th after the name.
    return (tonumber(f[12]) + tonumber(f[13])) / clk_tck
end

-- Runs the shell command `cmd` under `bench_kafka time`, its standard
-- error to `log`; returns its exit status, wall, cpu (the tree's
-- user+sys) and the broker's CPU seconds meanwhile.
local function timed(cmd, log)
    local b0 = broker_cpu()
    local out = run(str_format("%s time sh -c %s", quote(kbin),
                               quote("{ " .. cmd .. "; } 2>" .. quote(log))))
    local b1 = broker_cpu()
    local rc, wall, user, sys = out:match(
        "time rc (%d+) wall (%S+) user (%S+) sys (%S+)")
    return tonumber(rc), tonumber(wall), tonumber(user) + tonumber(sys),
           b1 - b0
end

-- The sum of `topic`'s watermark ranges: its message count when no
-- transaction wrote to it (a commit or abort marker takes an offset).
local function count(topic)
    return tonumber(kafka_cmd("count", cluster.bootstrap, topic)
                    :match("count (%d+)"))
end

-- `bench_kafka read` of `topic`: its committed messages, key+value bytes
-- and the read's wall seconds.
local function read_topic(topic)
    local out = kafka_cmd("read", cluster.bootstrap, topic)
    local msgs, bytes, wall = out:match("read msgs (%d+) bytes (%d+) wall "
                                        .. "(%S+)")
    return tonumber(msgs), tonumber(bytes), tonumber(wall)
end

local IN, EMPTY = "bench-kafka-in", "bench-kafka-empty"

-- A side's command for output topic `out` of round `r` reading `inp`.
-- tide: job file `job`, names `prefix`..., extra -c words `extra`.
local function tide_cmd(job, prefix, extra)
    return function(inp, out, r)
        -- Short: the control socket's path holds the name twice.
        local name = str_format("%s-%s%d", prefix, inp == IN and "" or "e", r)
        return str_format("%s run %s --drain --workers 1 --create "
                          .. "--data-dir %s "
                          .. "-c name=%s -c inputs.1=kafka:%s "
                          .. "-c outputs.1=kafka:%s -c config.out=kafka:%s "
                          .. "-c kafka.bootstrap.servers=%s%s",
                          quote(tide_bin), quote(job),
                          quote(dir .. "/" .. name), name, inp, out, out,
                          cluster.bootstrap, extra or ""), name
    end
end

local function raw_cmd(inp, out)
    return str_format("%s pass %s %s %s", quote(kbin), cluster.bootstrap,
                      inp, out)
end

local function kcat_cmd(inp, out)
    local k = kafka.kcat_cmd() .. " -b " .. cluster.bootstrap
    return str_format("%s -C -t %s -o beginning -e -q -K '\t' | %s -P -t %s "
                      .. "-K '\t' -X enable.idempotence=true -X acks=all "
                      .. "-X partitioner=murmur2_random", k, inp, k, out)
end

-- The Kafka Streams apps (bench/kafka/), built by buildks(): class
-- `class`, application ids `prefix`..., processing.guarantee `g`.
local KS_OUT = dir .. "/kstreams"
local function ks_cmd(class, prefix, g)
    return function(inp, out, r)
        local id = str_format("%s-%s%d", prefix, inp == IN and "" or "e", r)
        return str_format("java -cp %s tide.bench.%s %s %s %s %d %s %s %s",
                          quote(KS_OUT .. "/tide-bench-kstreams-1.jar:"
                                .. KS_OUT .. "/libs/*"), class,
                          cluster.bootstrap, inp, out,
                          inp == IN and n or 0, id, quote(dir .. "/" .. id),
                          g), id
    end
end

-- Builds the Kafka Streams app; returns true, or nil and why not.
local function buildks()
    if not sh("command -v mvn >/dev/null 2>&1") then
        return nil, "no mvn (make deps installs Maven)"
    end
    local log = dir .. "/mvn.log"
    if not sh(str_format("mvn -q -B -Dstyle.color=never -f %s "
                         .. "-Dbench.out=%s package "
                         .. "dependency:copy-dependencies >%s 2>&1",
                         quote(bench_dir .. "/kafka/pom.xml"), quote(KS_OUT),
                         quote(log))) then
        local text = read_file(log) or ""
        return nil, "the Maven build failed: "
                    .. (text:match("([^\n]*ERROR[^\n]*)") or text)
    end
    return true
end

local ALOS, EOS = "at_least_once", "exactly_once_v2"
local TIDE_EOS = " -c processing=exactly_once"

-- Every side of a round. `part`: the block it is printed in; `eos`: its
-- output is written in transactions (counted by reading it); `tide_eos`:
-- tide's exactly-once, which this build may not have; `changelog`: the
-- store whose changelog topic (<name>-<store>-changelog) is deleted
-- after the run.
local SIDES = {
    { id = "tide", part = "pass", label = "tide",
      cmd = tide_cmd(JOB, "bkp") },
    { id = "raw", part = "pass", label = "raw C loop", cmd = raw_cmd },
    { id = "kcat", part = "pass", label = "kcat | kcat", cmd = kcat_cmd },
    { id = "core", part = "pass", label = "tide C path",
      cmd = function(inp, out)
          return str_format("%s core %s %s %s", quote(kbin),
                            cluster.bootstrap, inp, out)
      end },
    { id = "ks", part = "pass", label = "Kafka Streams", ks = true,
      cmd = ks_cmd("PassThrough", "bks", ALOS) },
    { id = "tcount", part = "count", label = "tide",
      cmd = tide_cmd(KCOUNT, "bkc"), changelog = "counts" },
    { id = "kcount", part = "count", label = "Kafka Streams", ks = true,
      cmd = ks_cmd("Count", "bksc", ALOS), changelog = "counts" },
    { id = "tpass_eos", part = "eos", label = "tide pass-through",
      cmd = tide_cmd(JOB, "bkpx", TIDE_EOS), eos = true, tide_eos = true },
    { id = "tcount_eos", part = "eos", label = "tide count",
      cmd = tide_cmd(KCOUNT, "bkcx", TIDE_EOS), eos = true,
      tide_eos = true, changelog = "counts" },
    { id = "kpass_eos", part = "eos", label = "Kafka Streams pass-through",
      ks = true, cmd = ks_cmd("PassThrough", "bksx", EOS), eos = true },
    { id = "kcount_eos", part = "eos", label = "Kafka Streams count",
      ks = true, cmd = ks_cmd("Count", "bkscx", EOS), eos = true,
      changelog = "counts" },
}
local BY_ID = {}
for _, s in ipairs(SIDES) do BY_ID[s.id] = s end

-- Why tide's exactly-once was not measured (set by side()), or nil.
local tide_eos_why

-- Runs one side into a fresh output; returns wall, cpu, broker cpu, or
-- nil when it is a tide exactly-once side that this build refused or
-- ignored (tide_eos_why says which).
local function side(s, inp, expect, r)
    local out = str_format("bench-kafka-out-%s-%s-%d", s.id, inp, r)
    local log = dir .. "/" .. s.id .. ".log"
    kafka_cmd("create", cluster.bootstrap, out, tostring(NPARTS))
    local cmd, name = s.cmd(inp, out, r)
    local rc, wall, cpu, bcpu = timed(cmd, log)
    local text = read_file(log) or ""
    local skip
    if rc ~= 0 then
        local line = s.tide_eos and text:match("[^\n]*processing[^\n]*")
        if not line then
            die("%s exited %s; its log:\n%s", cmd, tostring(rc), text)
        end
        tide_eos_why = "the job was refused: " .. line
        skip = true
    else
        local got = s.eos and read_topic(out) or count(out)
        if got ~= expect then
            die("%s wrote %s messages to %s, %d expected; its log:\n%s",
                s.label, tostring(got), out, expect, text)
        end
        if s.tide_eos and expect > 0 and count(out) == got then
            tide_eos_why = "processing = \"exactly_once\" was accepted "
                           .. "but ignored: the output holds no "
                           .. "transaction markers"
            skip = true
        end
    end
    local gone = { out }
    if s.changelog and name then
        gone[#gone + 1] = name .. "-" .. s.changelog .. "-changelog"
    end
    kafka_cmd("delete", cluster.bootstrap, unpack(gone))
    if name then
        sh("rm -rf " .. quote(dir .. "/" .. name))
    end
    if skip then
        return nil
    end
    return wall, cpu, bcpu
end

-- One line per side of block `part`: msgs per CPU-second, per wall
-- second, cpu and broker cpu.
local function print_sides(res, part, width)
    for _, s in ipairs(SIDES) do
        local t = res[s.id]
        if s.part == part and t and #t.rate > 0 then
            print(str_format("  %-" .. width .. "s %s   wall %s   cpu %s   "
                             .. "broker %s", s.label,
                             stats.fmt(t.rate, 0, "k msg/CPU-s"),
                             stats.fmt(t.wrate, 0, "k msg/s"),
                             stats.fmt(t.cpu, 2, "s"),
                             stats.fmt(t.bcpu, 2, "s")))
        end
    end
end

-- Ratios a / b of the sides' per-CPU-second rates, run by run, as
-- stats.fmt_ratio prints them ("n/a" when a side did not run).
local function ratio_of(res, a, b)
    local v = {}
    local ra, rb = res[a] and res[a].rate, res[b] and res[b].rate
    for r = 1, RUNS do
        if ra and rb and ra[r] and rb[r] then v[#v + 1] = ra[r] / rb[r] end
    end
    return #v > 0 and stats.fmt_ratio(v, 2) or "n/a"
end

local function throughput()
    kafka_cmd("create", cluster.bootstrap, IN, tostring(NPARTS))
    kafka_cmd("create", cluster.bootstrap, EMPTY, tostring(NPARTS))
    kafka_cmd("produce", cluster.bootstrap, IN, tostring(n))
    local ks, kswhy = buildks()
    local sides = {}
    for _, s in ipairs(SIDES) do
        if PARTS[s.part] and (ks or not s.ks) then
            sides[#sides + 1] = s
        end
    end
    if count(IN) ~= n then
        die("the input holds %s messages, %d expected", tostring(count(IN)),
            n)
    end

    local res = {}
    for _, s in ipairs(sides) do
        res[s.id] = { rate = {}, wrate = {}, cpu = {}, bcpu = {} }
    end
    local fixed_wall, fixed_cpu, ks_wall, ks_cpu = {}, {}, {}, {}
    local wratio = {}
    local loads = {}
    for r = 1, RUNS do
        loads[r] = (read_file("/proc/loadavg") or "?"):match("^(%S+)")
        local w, c = side(BY_ID.tide, EMPTY, 0, r)
        fixed_wall[r], fixed_cpu[r] = w * 1000, c
        if ks then
            w, c = side(BY_ID.ks, EMPTY, 0, r)
            ks_wall[r], ks_cpu[r] = w * 1000, c
        end
        local i, nsides = 1, #sides
        while i <= nsides do
            local s = sides[r % 2 == 1 and i or nsides + 1 - i]
            local wall, cpu, bcpu = side(s, IN, n, r)
            if wall then
                local t = res[s.id]
                t.rate[r], t.wrate[r] = n / cpu / 1e3, n / wall / 1e3
                t.cpu[r], t.bcpu[r] = cpu, bcpu
            end
            i = i + 1
        end
        -- Sides that this build cannot run are not run again.
        local left = {}
        for _, s in ipairs(sides) do
            if not (s.tide_eos and tide_eos_why) then left[#left + 1] = s end
        end
        sides = left
        wratio[r] = res.tide.wrate[r] / res.raw.wrate[r]
    end

    print(str_format("kafka pass-through: %d messages over %d partitions, "
                     .. "10-byte keys (10,000 of them), 100-byte values; one "
                     .. "Kafka %s broker on loopback; runs: %d, the sides "
                     .. "alternating; load average at each round's start: "
                     .. "%s", n, NPARTS, kafka.VERSION, RUNS,
                     concat(loads, " ")))
    print("  msgs per CPU-second of the processing processes (user+sys of "
          .. "the tree: tide's supervisor and worker; both kcat; the JVM), "
          .. "beside")
    print("  msgs per wall second and the broker's CPU seconds during the "
          .. "side; tide includes its start")
    print_sides(res, "pass", 13)
    print(str_format("  tide on an empty input (its fixed cost): wall %s, "
                     .. "cpu %s", stats.fmt(fixed_wall, 0, "ms"),
                     stats.fmt(fixed_cpu, 2, "s")))
    print(str_format("  ratio tide/raw C per CPU-second %s (target >= 0.80);"
                     .. " per wall second %s; tide/kcat per CPU-second %s",
                     ratio_of(res, "tide", "raw"),
                     stats.fmt_ratio(wratio, 2),
                     ratio_of(res, "tide", "kcat")))
    print(str_format("  ratio tide C path (no Lua)/raw C per CPU-second %s",
                     ratio_of(res, "core", "raw")))
    if ks then
        print(str_format("  Kafka Streams on an empty input (its fixed cost: "
                         .. "JVM, group join): wall %s, cpu %s",
                         stats.fmt(ks_wall, 0, "ms"),
                         stats.fmt(ks_cpu, 2, "s")))
        print(str_format("  ratio tide/Kafka Streams per CPU-second %s "
                         .. "(target >= 2)",
                         ratio_of(res, "tide", "ks")))
    else
        print("  Kafka Streams: skipped: " .. kswhy)
    end

    if PARTS.count then
        print(str_format("kafka count per key: the same input and rounds; "
                         .. "each message adds one to its key's count in a "
                         .. "RocksDB store with a changelog topic, and the "
                         .. "new count (a decimal string) goes to a "
                         .. "%d-partition output", NPARTS))
        print("  tide: bench/kafka/kcount.lua, --workers 1; Kafka Streams: "
              .. "groupByKey().count(), one thread, record cache off (it "
              .. "sends every count)")
        print_sides(res, "count", 13)
        if ks then
            print(str_format("  ratio tide/Kafka Streams per CPU-second %s "
                             .. "(target >= 2)",
                             ratio_of(res, "tcount", "kcount")))
        else
            print("  Kafka Streams: skipped: " .. kswhy)
        end
    end

    if PARTS.eos then
        print("kafka exactly-once: the same jobs, input and rounds; tide "
              .. "with processing = \"exactly_once\" (a transaction a "
              .. "commit, its default commit_interval),")
        print("  Kafka Streams with processing.guarantee=exactly_once_v2 "
              .. "(its default commit.interval.ms under it: 100 ms; 30 s "
              .. "at-least-once)")
        print_sides(res, "eos", 26)
        if tide_eos_why then
            print("  tide exactly_once: not available in this build ("
                  .. tide_eos_why .. ")")
        else
            print(str_format("  tide's cost: exactly-once/at-least-once per "
                             .. "CPU-second, pass-through %s, count %s",
                             ratio_of(res, "tpass_eos", "tide"),
                             ratio_of(res, "tcount_eos", "tcount")))
        end
        if ks then
            print(str_format("  Kafka Streams' cost: exactly-once/"
                             .. "at-least-once per CPU-second, pass-through "
                             .. "%s, count %s",
                             ratio_of(res, "kpass_eos", "ks"),
                             ratio_of(res, "kcount_eos", "kcount")))
            if not tide_eos_why then
                print(str_format("  ratio tide/Kafka Streams exactly-once "
                                 .. "per CPU-second, pass-through %s, count "
                                 .. "%s (target >= 2)",
                                 ratio_of(res, "tpass_eos", "kpass_eos"),
                                 ratio_of(res, "tcount_eos", "kcount_eos")))
            end
        else
            print("  Kafka Streams: skipped: " .. kswhy)
        end
    end
end

-- Restore: fills klast's changelog once, then times rebuilds of its
-- stores from it beside raw reads of the topic.
local function restore()
    local rin, name = "bench-kafka-rin", "bkl"
    local cl = name .. "-last-changelog"
    kafka_cmd("create", cluster.bootstrap, rin, tostring(NPARTS))
    kafka_cmd("produce", cluster.bootstrap, rin, tostring(rkeys),
              tostring(rkeys))
    local function cmd(data)
        return str_format("%s run %s --drain --workers 1 --create "
                          .. "--data-dir %s "
                          .. "-c name=%s -c inputs.1=kafka:%s "
                          .. "-c kafka.bootstrap.servers=%s",
                          quote(tide_bin), quote(KLAST), quote(data), name,
                          rin, cluster.bootstrap)
    end
    local data, log = dir .. "/" .. name, dir .. "/restore.log"
    local rc = timed(cmd(data), log)
    if rc ~= 0 then
        die("filling the changelog: %s exited %d; its log:\n%s", cmd(data),
            rc, read_file(log) or "")
    end
    local recs, bytes = read_topic(cl)
    if recs ~= rkeys then
        die("changelog %s holds %s records, %d (one a key) expected", cl,
            tostring(recs), rkeys)
    end

    local trate, lrate, twall, rrate, ratio, loads = {}, {}, {}, {}, {}, {}
    for r = 1, RUNS do
        loads[r] = (read_file("/proc/loadavg") or "?"):match("^(%S+)")
        local function tide_side()
            sh("rm -rf " .. quote(data))
            local wall
            rc, wall = timed(cmd(data), log)
            local text = read_file(log) or ""
            if rc ~= 0 then
                die("%s exited %d; its log:\n%s", cmd(data), rc, text)
            end
            local n_, mb, secs = 0, 0, 0
            for nr, x, y in text:gmatch("replayed (%d+) changelog records "
                                        .. "%(([%d.]+) MB, (%d+) MB/s%)") do
                n_, mb = n_ + tonumber(nr), mb + tonumber(x)
                secs = secs + tonumber(x) / tonumber(y)
            end
            if n_ ~= rkeys or secs <= 0 then
                die("the restore replayed %d records, %d expected; its "
                    .. "log:\n%s", n_, rkeys, text)
            end
            trate[r], lrate[r] = bytes / 1e6 / secs, mb / secs
            twall[r] = wall
        end
        local function raw_side()
            local m, b, wall = read_topic(cl)
            if m ~= rkeys or b ~= bytes then
                die("read %s: %s records, %s bytes; %d, %d expected", cl,
                    tostring(m), tostring(b), rkeys, bytes)
            end
            rrate[r] = bytes / 1e6 / wall
        end
        if r % 2 == 1 then
            tide_side(); raw_side()
        else
            raw_side(); tide_side()
        end
        ratio[r] = trate[r] / rrate[r]
    end
    sh("rm -rf " .. quote(data))
    kafka_cmd("delete", cluster.bootstrap, rin, cl)

    print(str_format("kafka restore: changelog topic of %d keys (%d "
                     .. "partitions, %.1f MB of keys and values, 100-byte "
                     .. "values) into empty stores: `tide run --drain` of "
                     .. "bench/kafka/klast.lua, data dir deleted; runs: %d; "
                     .. "load average at each run's start: %s", rkeys,
                     NPARTS, bytes / 1e6, RUNS, concat(loads, " ")))
    print(str_format("  tide             %s   (replay time from its "
                     .. "\"replayed\" lines; in its own count, record "
                     .. "headers included: %s)",
                     stats.fmt(trate, 0, "MB/s"), stats.fmt(lrate, 0, "MB/s")))
    print(str_format("  raw librdkafka   %s   (bench_kafka read: one "
                     .. "consumer, every partition to its end)",
                     stats.fmt(rrate, 0, "MB/s")))
    print(str_format("  tide's whole restore run (start, 4 stores, stop) "
                     .. "wall %s", stats.fmt(twall, 2, "s")))
    print(str_format("  ratio tide/raw %s; target: tide >= 100 MB/s",
                     stats.fmt_ratio(ratio, 2)))
end

-- Starts `cmd` in the background, its standard error to `log`; returns
-- its pid (tide's own: the shell execs it).
local function start_bg(cmd, log)
    local p = assert(io.popen(str_format("%s </dev/null >/dev/null 2>%s & "
                                         .. "echo $!", cmd, quote(log))))
    local pid = tonumber(p:read("*l"))
    p:close()
    started[#started + 1] = pid
    return pid
end

-- Waits up to `secs` until pred() returns a true value; returns it, or
-- raises saying `what`, with the log `log`.
local function wait_for(secs, what, log, pred)
    local deadline = now() + secs
    repeat
        local v = pred()
        if v then return v end
        sleep(0.05)
    until now() > deadline
    die("%s: not within %d s; log %s:\n%s", what, secs, log,
        (read_file(log) or ""):sub(-3000))
end

-- From a tide log, the tasks its group member holds now ("kafka group:
-- tasks 1,2 assigned|revoked|lost in N ms" lines): a sorted list, and the
-- number of "assigned" lines with the last one's N.
local function held(text)
    local set, nassigned, last_ms = {}, 0, nil
    for tasks, what, ms in text:gmatch("kafka group: tasks ([%d,]+) (%a+) "
                                       .. "in (%d+) ms") do
        for t in tasks:gmatch("%d+") do
            set[tonumber(t)] = what == "assigned" or nil
        end
        if what == "assigned" then
            nassigned, last_ms = nassigned + 1, tonumber(ms)
        end
    end
    local list = {}
    for t in pairs(set) do list[#list + 1] = t end
    table.sort(list)
    return list, nassigned, last_ms
end

-- The changelog records A replayed to restore tasks `parts` in its log
-- `text` after byte `from` ("store 'counts' task P: ..., replayed N").
local function replayed(text, from, parts)
    local want, n = {}, 0
    for _, p in ipairs(parts) do want[p] = true end
    for p, nr in text:sub(from + 1):gmatch("store 'counts' task (%d+): "
                                           .. "[^\n]-replayed (%d+) "
                                           .. "changelog records") do
        if want[tonumber(p)] then n = n + tonumber(nr) end
    end
    return n
end

-- Rebalance: process A runs throughout; each run kills a second process
-- B once it holds half the tasks, and times until they process in A.
-- With `standby`, both run with standby_replicas = 1, and B is killed
-- once A's copies of B's tasks caught up.
local function rebalance(standby)
    local name = standby and "bkrs" or "bkr"
    local rin = "bench-kafka-" .. name .. "-in"
    local rout = "bench-kafka-" .. name .. "-out"
    local sb = standby and " -c standby_replicas=1" or ""
    kafka_cmd("create", cluster.bootstrap, rin, tostring(NPARTS))
    kafka_cmd("create", cluster.bootstrap, rout, tostring(NPARTS))
    kafka_cmd("produce", cluster.bootstrap, rin, tostring(rb_msgs))
    local function cmd(data, extra)
        return str_format("exec %s run %s --workers 1 --create "
                          .. "--data-dir %s "
                          .. "-c name=%s -c inputs.1=kafka:%s "
                          .. "-c outputs.1=kafka:%s -c config.out=kafka:%s "
                          .. "-c kafka.bootstrap.servers=%s%s",
                          quote(tide_bin), quote(KCOUNT), quote(data), name,
                          rin, rout, rout, cluster.bootstrap, sb .. (extra
                                                                   or ""))
    end
    local alog = dir .. "/rb-a.log"
    local a = start_bg(cmd(dir .. "/rb-a"), alog)
    wait_for(90, "process A to start", alog, function()
        return (read_file(alog) or ""):find("job '" .. name .. "' started",
                                            1, true)
    end)
    wait_for(60, "process A to count the input", alog, function()
        return count(rout) >= rb_msgs
    end)

    local SETTINGS = {
        { label = "session.timeout.ms 10000 (tide's default)", extra = "" },
        { label = "session.timeout.ms 6000 (the broker's least)",
          extra = " -c kafka.session.timeout.ms=6000" },
    }
    if standby then
        SETTINGS = { { label = "standby, session.timeout.ms 6000",
                       extra = " -c kafka.session.timeout.ms=6000" } }
    end
    local res, loads = {}, {}
    for i = 1, #SETTINGS do res[i] = { ms = {}, assign = {}, n = {} } end
    for r = 1, RUNS do
        loads[r] = (read_file("/proc/loadavg") or "?"):match("^(%S+)")
        for j = 1, #SETTINGS do
            local i = r % 2 == 1 and j or #SETTINGS + 1 - j
            local blog = str_format("%s/rb-b%d-%d.log", dir, r, i)
            local a_from = #(read_file(alog) or "")     -- A's log before B
            local b = start_bg(cmd(str_format("%s/rb-b%d-%d", dir, r, i),
                                   SETTINGS[i].extra), blog)
            local parts = wait_for(90, "process B to hold half the tasks",
                                   blog, function()
                local l = held(read_file(blog) or "")
                return #l == NPARTS / 2 and l
            end)
            -- A settled group: A holds the other half.
            wait_for(30, "process A to hold the other half", alog,
                     function()
                return #held(read_file(alog) or "") == NPARTS / 2
            end)
            -- B changes the state of its tasks: every key once more,
            -- then a commit (5 s), so that A's old copy of them (from
            -- before B came) is behind by half the keys, and a standby
            -- has had the time to follow.
            local out_before = count(rout)
            kafka_cmd("produce", cluster.bootstrap, rin, tostring(rb_msgs))
            wait_for(120, "both processes to count the new input", blog,
                     function()
                return count(rout) >= out_before + rb_msgs
            end)
            sleep(7)
            if standby then
                -- Each of A's copies of B's tasks caught up since B came.
                local from = a_from
                wait_for(60, "process A's standby copies to catch up", alog,
                         function()
                    local t = (read_file(alog) or ""):sub(from + 1)
                    for _, p in ipairs(parts) do
                        if not t:find("standby of task " .. p
                                      .. ": caught up", 1, true) then
                            return false
                        end
                    end
                    return true
                end)
            end
            sleep(1)
            local _, before = held(read_file(alog) or "")
            local alog_at = #(read_file(alog) or "")
            local out = kafka_cmd("probe", cluster.bootstrap, rin, rout,
                                  concat(parts, ","), tostring(b), "120")
            local ms = tonumber(out:match("probe ms (%d+)"))
            wait_for(10, "process B to end after its SIGKILL", blog,
                     function() return not alive(b) end)
            local assign_ms = wait_for(30, "process A to log the "
                                       .. "assignment", alog, function()
                local l, na, last = held(read_file(alog) or "")
                return na > before and #l == NPARTS and last
            end)
            res[i].ms[r], res[i].assign[r] = ms, assign_ms
            res[i].n[r] = replayed(read_file(alog) or "", alog_at, parts)
            sh("rm -rf " .. quote(str_format("%s/rb-b%d-%d", dir, r, i)))
        end
    end
    sh("kill -TERM " .. a .. " 2>/dev/null")
    wait_for(30, "process A to stop after SIGTERM", alog, function()
        return not alive(a)
    end)
    kafka_cmd("delete", cluster.bootstrap, rin, rout,
              name .. "-counts-changelog")

    if not standby then
        print(str_format("kafka rebalance: two `tide run` of bench/kafka/"
                         .. "kcount.lua (--workers 1, own data dirs) in one "
                         .. "group, %d partitions, %d messages (keys) "
                         .. "before and as many again once the second holds "
                         .. "%d tasks, which is then SIGKILLed; runs: %d; "
                         .. "load average at each run's "
                         .. "start: %s", NPARTS, rb_msgs, NPARTS / 2, RUNS,
                         concat(loads, " ")))
        print("  time from the SIGKILL to a new output in each of its "
              .. "partitions (a message sent to each at the SIGKILL), "
              .. "beside the survivor's")
        print("  \"kafka group: tasks ... assigned in N ms\" for them, "
              .. "and the changelog records it replayed to restore them")
    end
    for i, st in ipairs(SETTINGS) do
        print(str_format("  %-45s %s   assign %s   replayed %s", st.label,
                         stats.fmt(res[i].ms, 0, "ms"),
                         stats.fmt(res[i].assign, 0, "ms"),
                         stats.fmt(res[i].n, 0, "records")))
    end
end

local function main()
    sh("rm -rf " .. quote(dir) .. " && mkdir -p " .. quote(dir))
    cluster = kafka.start({ nodes = 1 })
    if PARTS.pass then throughput() end
    if PARTS.restore then restore() end
    if PARTS.rebalance then
        rebalance(false)
        rebalance(true)
    end
end

local ok, err = pcall(main)
cleanup()
if not ok then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
end
