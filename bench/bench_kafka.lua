--- Kafka -> Kafka pass-through (issue 13, "Speed"), tide beside three
--- baselines measured in the same run on the same broker and input:
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
--- Usage: luajit bench/bench_kafka.lua TIDE_BIN BENCH_KAFKA_BIN DIR
---        [MESSAGES]
--- (bench/run.sh sets package.path). Needs Java 17+, the Kafka jars
--- (fetched through Maven by scripts/kafka.lua) and kcat; without Java
--- it prints one line saying so and exits 0. BENCH_RUNS rounds (default
--- 3 here: a round of 1 M messages is about 40 s on two busy cores, most
--- of it Kafka Streams); each figure is the median of its runs with their
--- spread (min-max), ratios taken run by run (bench/stats.lua).
local bench_dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path

local stats = require("stats")
local util = require("util")

local str_format, concat = string.format, table.concat
local tonumber, ipairs = tonumber, ipairs
local sh, quote = util.sh, util.quote

local tide_bin, kbin, base = arg[1], arg[2], arg[3]
local n = tonumber(arg[4] or 1000000)
if not tide_bin or not kbin or not base or not n or n < 1 then
    io.stderr:write("usage: luajit bench/bench_kafka.lua TIDE_BIN "
                    .. "BENCH_KAFKA_BIN DIR [MESSAGES]\n")
    os.exit(2)
end
if (os.getenv("BENCH_RUNS") or "") == "" then
    -- A round is five passes over the input (four with no Maven); 3
    -- keeps the bench within a few minutes on a loaded machine.
    require("ffi").cdef("int setenv(const char *, const char *, int);")
    require("ffi").C.setenv("BENCH_RUNS", "3", 1)
end
local RUNS = stats.runs("bench_kafka")
local NPARTS = 4
local SRC = bench_dir .. "/.."
local JOB = bench_dir .. "/jobs/kpass.lua"

local function die(fmt, ...)
    error(str_format("bench_kafka: " .. fmt, ...), 0)
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

local function cleanup()
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

-- Runs the shell command `cmd` under `bench_kafka time`; returns wall,
-- cpu (the tree's user+sys) and the broker's CPU seconds meanwhile.
local function timed(cmd, log)
    local b0 = broker_cpu()
    local out = run(str_format("%s time sh -c %s", quote(kbin),
                               quote("{ " .. cmd .. "; } 2>" .. quote(log))))
    local b1 = broker_cpu()
    local rc, wall, user, sys = out:match(
        "time rc (%d+) wall (%S+) user (%S+) sys (%S+)")
    if rc ~= "0" then
        die("%s exited %s; its log:\n%s", cmd, tostring(rc),
            read_file(log) or "")
    end
    return tonumber(wall), tonumber(user) + tonumber(sys), b1 - b0
end

local function count(topic)
    return tonumber(kafka_cmd("count", cluster.bootstrap, topic)
                    :match("count (%d+)"))
end

local IN, EMPTY = "bench-kafka-in", "bench-kafka-empty"

-- The three sides: each returns the shell command for output topic
-- `out` of round `r` reading `inp`.
local function tide_cmd(inp, out, r)
    -- Short: the control socket's path holds the name twice.
    local name = str_format("bkp-%s%d", inp == IN and "" or "e", r)
    return str_format("%s run %s --drain --workers 1 --data-dir %s "
                      .. "-c name=%s -c inputs.1=kafka:%s "
                      .. "-c outputs.1=kafka:%s -c config.out=kafka:%s "
                      .. "-c kafka.bootstrap.servers=%s",
                      quote(tide_bin), quote(JOB),
                      quote(dir .. "/" .. name), name, inp, out, out,
                      cluster.bootstrap)
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

-- The Kafka Streams app (bench/kafka/), built by buildks().
local KS_OUT = dir .. "/kstreams"
local function ks_cmd(inp, out, r)
    local id = str_format("bks-%s%d", inp == IN and "" or "e", r)
    return str_format("java -cp %s tide.bench.PassThrough %s %s %s %d %s %s",
                      quote(KS_OUT .. "/tide-bench-kstreams-1.jar:" .. KS_OUT
                            .. "/libs/*"), cluster.bootstrap, inp, out,
                      inp == IN and n or 0, id, quote(dir .. "/" .. id))
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

local SIDES = {
    { id = "tide", label = "tide", cmd = tide_cmd },
    { id = "raw", label = "raw C loop", cmd = raw_cmd },
    { id = "kcat", label = "kcat | kcat", cmd = kcat_cmd },
    { id = "core", label = "tide C path", cmd = function(inp, out)
        return str_format("%s core %s %s %s", quote(kbin), cluster.bootstrap,
                          inp, out)
    end },
}

-- Runs one side into a fresh output; returns wall, cpu, broker cpu.
local function side(s, inp, expect, r)
    local out = str_format("bench-kafka-out-%s-%s-%d", s.id, inp, r)
    kafka_cmd("create", cluster.bootstrap, out, tostring(NPARTS))
    local wall, cpu, bcpu = timed(s.cmd(inp, out, r),
                                  dir .. "/" .. s.id .. ".log")
    local got = count(out)
    if got ~= expect then
        die("%s wrote %s messages to %s, %d expected; its log:\n%s",
            s.label, tostring(got), out, expect,
            read_file(dir .. "/" .. s.id .. ".log") or "")
    end
    kafka_cmd("delete", cluster.bootstrap, out)
    return wall, cpu, bcpu
end

local function main()
    sh("rm -rf " .. quote(dir) .. " && mkdir -p " .. quote(dir))
    cluster = kafka.start({ nodes = 1 })
    kafka_cmd("create", cluster.bootstrap, IN, tostring(NPARTS))
    kafka_cmd("create", cluster.bootstrap, EMPTY, tostring(NPARTS))
    kafka_cmd("produce", cluster.bootstrap, IN, tostring(n))
    local ks, kswhy = buildks()
    if ks then
        SIDES[#SIDES + 1] = { id = "ks", label = "Kafka Streams",
                              cmd = ks_cmd }
    end
    if count(IN) ~= n then
        die("the input holds %s messages, %d expected", tostring(count(IN)),
            n)
    end

    local res = {}
    for _, s in ipairs(SIDES) do
        res[s.id] = { rate = {}, wrate = {}, cpu = {}, bcpu = {} }
    end
    local fixed_wall, fixed_cpu, ks_wall, ks_cpu = {}, {}, {}, {}
    local ratio, wratio, kratio, cratio, sratio = {}, {}, {}, {}, {}
    local loads = {}
    for r = 1, RUNS do
        loads[r] = (read_file("/proc/loadavg") or "?"):match("^(%S+)")
        local w, c = side(SIDES[1], EMPTY, 0, r)
        fixed_wall[r], fixed_cpu[r] = w * 1000, c
        if ks then
            w, c = side(SIDES[#SIDES], EMPTY, 0, r)
            ks_wall[r], ks_cpu[r] = w * 1000, c
        end
        for i = 1, #SIDES do
            local s = SIDES[r % 2 == 1 and i or #SIDES + 1 - i]
            local wall, cpu, bcpu = side(s, IN, n, r)
            local t = res[s.id]
            t.rate[r], t.wrate[r] = n / cpu / 1e3, n / wall / 1e3
            t.cpu[r], t.bcpu[r] = cpu, bcpu
        end
        ratio[r] = res.tide.rate[r] / res.raw.rate[r]
        wratio[r] = res.tide.wrate[r] / res.raw.wrate[r]
        kratio[r] = res.tide.rate[r] / res.kcat.rate[r]
        cratio[r] = res.core.rate[r] / res.raw.rate[r]
        if ks then
            sratio[r] = res.tide.rate[r] / res.ks.rate[r]
        end
    end

    print(str_format("kafka pass-through: %d messages over %d partitions, "
                     .. "10-byte keys, 100-byte values; one Kafka %s broker "
                     .. "on loopback; runs: %d, the sides alternating; "
                     .. "load average at each round's start: %s", n, NPARTS,
                     kafka.VERSION, RUNS, concat(loads, " ")))
    print("  msgs per CPU-second of the processing processes (user+sys of "
          .. "the tree: tide's supervisor and worker; both kcat), beside")
    print("  msgs per wall second and the broker's CPU seconds during the "
          .. "side; tide includes its start")
    for _, s in ipairs(SIDES) do
        local t = res[s.id]
        print(str_format("  %-13s %s   wall %s   cpu %s   broker %s",
                         s.label, stats.fmt(t.rate, 0, "k msg/CPU-s"),
                         stats.fmt(t.wrate, 0, "k msg/s"),
                         stats.fmt(t.cpu, 2, "s"), stats.fmt(t.bcpu, 2, "s")))
    end
    print(str_format("  tide on an empty input (its fixed cost): wall %s, "
                     .. "cpu %s", stats.fmt(fixed_wall, 0, "ms"),
                     stats.fmt(fixed_cpu, 2, "s")))
    print(str_format("  ratio tide/raw C per CPU-second %s (target >= 0.80);"
                     .. " per wall second %s; tide/kcat per CPU-second %s",
                     stats.fmt_ratio(ratio, 2), stats.fmt_ratio(wratio, 2),
                     stats.fmt_ratio(kratio, 2)))
    print(str_format("  ratio tide C path (no Lua)/raw C per CPU-second %s",
                     stats.fmt_ratio(cratio, 2)))
    if ks then
        print(str_format("  Kafka Streams on an empty input (its fixed cost: "
                         .. "JVM, group join): wall %s, cpu %s",
                         stats.fmt(ks_wall, 0, "ms"),
                         stats.fmt(ks_cpu, 2, "s")))
        print(str_format("  ratio tide/Kafka Streams per CPU-second %s "
                         .. "(target >= 2)", stats.fmt_ratio(sratio, 2)))
    else
        print("  Kafka Streams: skipped: " .. kswhy)
    end
end

local ok, err = pcall(main)
cleanup()
if not ok then
    io.stderr:write(tostring(err), "\n")
    os.exit(1)
end
