--- A real Apache Kafka (KRaft) for tests, benches and development: fetches
--- the broker's jars once through kafka/pom.xml, starts single-node or
--- 3-node clusters on loopback in temp dirs, and runs Kafka's tools.
---
--- As a command (the jars come from the cache; `deps` fetches them):
---   luajit scripts/kafka.lua deps             fetch the jars if missing
---   luajit scripts/kafka.lua run [--nodes N] [--set key=value ...]
---        start a cluster in the foreground, print its bootstrap address;
---        Ctrl-C stops it and removes its temp dir
---   luajit scripts/kafka.lua kafka-topics ARGS...      (also
---        kafka-consumer-groups, kafka-console-consumer,
---        kafka-console-producer, kafka-storage, kafka-run-class CLASS)
---   luajit scripts/kafka.lua classpath        print the jars' classpath
---
--- As a library: `loadfile("scripts/kafka.lua")("--as-module")` returns
--- the module (spec/kafka/broker.lua does this).
---
--- Environment: TIDE_CACHE (default ~/.cache/tide) holds kafka-VERSION/;
--- JAVA (default java), MVN (default mvn), KCAT (default kcat).
---
--- Every broker is watched by a small sh loop that SIGTERMs, then
--- SIGKILLs it and removes its temp dir once the Lua process that started
--- it is gone, so a crashed or timed-out test leaves no broker behind.
local ffi = require("ffi")

local fmt, concat = string.format, table.concat
local tostring, tonumber, ipairs, pairs, error, type =
      tostring, tonumber, ipairs, pairs, error, type

local _M = {}

_M.VERSION = "4.4.0"                  -- keep equal to kafka/pom.xml

-- Tool name -> main class in the 4.4 jars (the distribution's bin/*.sh
-- are not in Maven; these are the classes those scripts run).
_M.TOOLS = {
    ["kafka-topics"] = "org.apache.kafka.tools.TopicCommand",
    ["kafka-consumer-groups"] =
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    ["kafka-console-consumer"] =
        "org.apache.kafka.tools.consumer.ConsoleConsumer",
    ["kafka-console-producer"] = "org.apache.kafka.tools.ConsoleProducer",
    ["kafka-storage"] = "kafka.tools.StorageTool",
}

local BROKER_CLASS = "kafka.Kafka"
local BROKER_JVM = "-Xms128m -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 "
                   .. "-XX:InitiatingHeapOccupancyPercent=35 "
                   .. "-XX:+ExplicitGCInvokesConcurrent "
                   .. "-Djava.awt.headless=true"
-- The tools are short-lived: the C1 compiler and the serial GC start
-- them in about half the time.
local TOOL_JVM = "-Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 "
                 .. "-Djava.awt.headless=true"

pcall(ffi.cdef, "int getpid(void);")
pcall(ffi.cdef, "int socket(int domain, int type, int protocol);")
pcall(ffi.cdef, "int bind(int fd, const void *addr, unsigned int len);")
pcall(ffi.cdef, "int close(int fd);")
pcall(ffi.cdef, [[
struct tide_kafka_sockaddr_in {
    uint16_t family; uint8_t port[2]; uint8_t addr[4]; uint8_t zero[8];
};]])

-- ---- shell ------------------------------------------------------------------

-- Quotes one word for sh.
local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
_M.q = q

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return nil end
    local s = f:read("*a")
    f:close()
    return s
end

local function write_file(path, data)
    local f = assert(io.open(path, "wb"))
    assert(f:write(data))
    assert(f:close())
end

local function sh_out(cmd)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    return out
end

-- Runs a command line with stdin from /dev/null (or opts.stdin, a string);
-- returns { code =, out =, err = }.
local function run(cmdline, stdin)
    local tmp = os.tmpname()
    local input = "/dev/null"
    if stdin then
        input = tmp .. ".in"
        write_file(input, stdin)
    end
    local out = sh_out(fmt("%s <%s >%s 2>%s; echo $?", cmdline, q(input),
                           q(tmp .. ".out"), q(tmp .. ".err")))
    local r = { code = tonumber(out:match("(%d+)%s*$")),
                out = read_file(tmp .. ".out") or "",
                err = read_file(tmp .. ".err") or "" }
    os.remove(tmp)
    os.remove(tmp .. ".in")
    os.remove(tmp .. ".out")
    os.remove(tmp .. ".err")
    return r
end
_M.run = run

local function sleep(s)
    os.execute(fmt("sleep %.3f", s))
end

local function now()
    return tonumber(sh_out("date +%s.%N")) or os.time()
end

local function exists(path)
    return os.execute("test -e " .. q(path)) == 0
end

-- Whether pid runs (a zombie counts as gone).
local function alive(pid)
    local s = pid and read_file("/proc/" .. pid .. "/stat")
    local st = s and s:match("^%d+ %b() (%a)")
    return st ~= nil and st ~= "Z" and st ~= "X"
end
_M.alive = alive

-- Last n lines of a file, or a note that it is missing.
local function tail(path, n)
    if not exists(path) then return "(no " .. path .. ")" end
    return sh_out(fmt("tail -n %d %s", n, q(path)))
end

-- This file's folder, then the repository root above it.
local SCRIPT_DIR = (debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
                    or ".")
_M.SOURCE_DIR = os.getenv("TIDE_SOURCE_DIR")
                or sh_out("cd " .. q(SCRIPT_DIR .. "/..") .. " && pwd")
                   :gsub("%s+$", "")

-- Commands run with LD_PRELOAD removed: the ASan specs preload libasan
-- into luajit, and neither the JVM nor kcat must inherit it.
local ENV = "env -u LD_PRELOAD "
local function java() return os.getenv("JAVA") or "java" end
local function kcat_bin() return os.getenv("KCAT") or "kcat" end

-- ---- the jars ---------------------------------------------------------------

--- Returns the folder holding this version's jars and configs.
---@return string
function _M.home()
    local cache = os.getenv("TIDE_CACHE")
    if not cache or cache == "" then
        cache = (os.getenv("HOME") or "/tmp") .. "/.cache/tide"
    end
    return cache .. "/kafka-" .. _M.VERSION
end

local function libs() return _M.home() .. "/libs" end

--- Returns the java classpath of the fetched jars.
function _M.classpath() return libs() .. "/*" end

-- Checks that a Java 17+ runs; returns nil and one line otherwise.
local function check_java()
    local r = run(ENV .. java() .. " -version")
    local major = r.err:match('version "(%d+)')
    _M.java_version = r.err:match('version "([^"]+)"')
    if r.code ~= 0 or not major then
        return nil, fmt("kafka: no Java found ('%s -version' exited %s): "
                        .. "install openjdk-17-jdk-headless (make deps)",
                        java(), tostring(r.code))
    end
    if tonumber(major) < 17 then
        return nil, fmt("kafka: Kafka %s needs Java 17 or newer, '%s' is "
                        .. "Java %s: install openjdk-17-jdk-headless or set "
                        .. "JAVA", _M.VERSION, java(), major)
    end
    return true
end

local fetched = false

-- Marks the jars as there, with the time they were fetched (archive()).
local function have_jars()
    fetched = true
    _M.libs_time = sh_out("stat -c %Y " .. q(libs() .. "/.complete"))
                   :gsub("%s+", "")
    return true
end

--- Fetches the Kafka jars through Maven into home()/libs unless they are
--- there already (a '.complete' stamp). Safe to run from several
--- processes at once. Returns true, or nil and one line saying what failed.
---@return boolean|nil ok
---@return string|nil err
function _M.fetch()
    if fetched then return true end
    local ok, err = check_java()
    if not ok then return nil, err end
    if exists(libs() .. "/.complete") then
        return have_jars()
    end
    local home = _M.home()
    os.execute("mkdir -p " .. q(home))
    local mvn = os.getenv("MVN") or "mvn"
    if run("command -v " .. mvn:match("^%S+")).code ~= 0 then
        return nil, "kafka: Maven (mvn) is missing, and the Kafka jars are "
                    .. "not in " .. libs() .. ": install maven (make deps)"
    end
    local pom = _M.SOURCE_DIR .. "/kafka/pom.xml"
    local tmp = libs() .. ".tmp"
    -- One fetch at a time; a second waits, then finds the stamp.
    local script = fmt([[
test -f %s/.complete && exit 0
rm -rf %s
%s%s -q -B -Dstyle.color=never -f %s \
  dependency:copy-dependencies -DoutputDirectory=%s || exit 1
touch %s/.complete && rm -rf %s && mv %s %s]],
        q(libs()), q(tmp), ENV, mvn, q(pom), q(tmp),
        q(tmp), q(libs()), q(tmp), q(libs()))
    local r = run(fmt("flock %s sh -c %s", q(home .. "/.fetch.lock"),
                      q(script)))
    if r.code ~= 0 or not exists(libs() .. "/.complete") then
        local why = (r.out .. r.err):gsub("\27%[[%d;]*m", "")  -- colours
                                    :gsub("%s+$", "")
        why = why:match("([^\n]*ERROR[^\n]*)") or why:match("([^\n]+)$") or ""
        return nil, fmt("kafka: fetching Kafka %s with Maven (%s) failed: %s",
                        _M.VERSION, pom, why)
    end
    return have_jars()
end

-- Fetches or raises the one line of fetch().
local function need_jars()
    local ok, err = _M.fetch()
    if not ok then error(err, 0) end
end

local function urandom(n)
    local f = assert(io.open("/dev/urandom", "rb"))
    local s = f:read(n)
    f:close()
    return s
end

-- 16 random bytes in URL-safe base64, no padding.
local function random_id()
    local abc = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                .. "0123456789-_"
    local b = { urandom(16):byte(1, 16) }
    local out = {}
    for i = 1, 16, 3 do
        local n = b[i] * 65536 + (b[i + 1] or 0) * 256 + (b[i + 2] or 0)
        local c = (i + 2 <= 16) and 4 or 2
        for j = 1, c do
            local v = math.floor(n / 2 ^ (18 - 6 * (j - 1))) % 64
            out[#out + 1] = abc:sub(v + 1, v + 1)
        end
    end
    return concat(out)
end

-- The class data sharing archive of `what` ("broker", "tools") for this
-- JDK and these jars: a JVM cannot use an archive made from other ones
-- (it warns on standard output, hence CDS_QUIET, and starts slowly).
local function archive(what)
    local v = (_M.java_version or "unknown"):gsub("[^%w.]", "_")
    return fmt("%s/%s-java%s-%s.jsa", _M.home(), what, v,
               _M.libs_time or "0")
end
local CDS_QUIET = "-Xlog:cds=off -Xlog:cds+dynamic=off"


local TOOLS_LOG4J = [[
status = error
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.err.ref = err
]]

--- Returns the sh command line (without arguments) that runs a Kafka
--- class from the fetched jars with the tools' small JVM.
---@param class string
---@return string
function _M.class_cmd(class)
    need_jars()
    local conf = _M.home() .. "/tools-log4j2.properties"
    if not exists(conf) then
        write_file(conf .. ".tmp" .. ffi.C.getpid(), TOOLS_LOG4J)
        os.rename(conf .. ".tmp" .. ffi.C.getpid(), conf)
    end
    local cmd = fmt("%s%s %s -Dlog4j2.configurationFile=%s -cp %s", ENV,
                    java(), TOOL_JVM, q(conf), q(_M.classpath()))
    -- Class data sharing, as for the brokers (launch): the first tool run
    -- dumps its classes at exit, and the later ones start about a third
    -- faster. The dump goes to a temp name and is renamed when complete.
    local jsa = archive("tools")
    if exists(jsa) then
        return fmt("%s %s -XX:SharedArchiveFile=%s %s", cmd, CDS_QUIET,
                   q(jsa), class)
    end
    local tmp = fmt("%s.tmp%d.%s", jsa, ffi.C.getpid(), random_id())
    local script = fmt('%s %s -XX:ArchiveClassesAtExit=%s %s "$@"; rc=$?; '
                       .. '[ $rc = 0 ] && [ -s %s ] && mv %s %s; rm -f %s; '
                       .. 'exit $rc', cmd, CDS_QUIET, q(tmp), class,
                       q(tmp), q(tmp), q(jsa), q(tmp))
    return "sh -c " .. q(script) .. " sh"
end

--- Returns the sh command line (without arguments) of a Kafka tool, e.g.
--- tool_cmd("kafka-topics").
---@param name string a key of TOOLS
---@return string
function _M.tool_cmd(name)
    local class = _M.TOOLS[name]
    if not class then
        error("unknown Kafka tool '" .. tostring(name) .. "'", 2)
    end
    return _M.class_cmd(class)
end

--- Runs a Kafka tool with a list of argument words; returns
--- { code =, out =, err = }.
---@param name string
---@param args string[]
---@param stdin string|nil fed on standard input
function _M.tool(name, args, stdin)
    local words = { _M.tool_cmd(name) }
    for _, a in ipairs(args or {}) do words[#words + 1] = q(a) end
    return run(concat(words, " "), stdin)
end

--- Returns the sh command line of kcat (LD_PRELOAD removed).
function _M.kcat_cmd()
    return ENV .. kcat_bin()
end

-- ---- ports, ids -------------------------------------------------------------

-- A random cluster id: 16 random bytes in URL-safe base64, no padding,
-- never starting with '-', which the tools would take for an option (as
-- Kafka's Uuid.randomUuid does).
local function cluster_id()
    local id
    repeat id = random_id() until id:sub(1, 1) ~= "-"
    return id
end
_M.cluster_id = cluster_id

-- Tries to bind 127.0.0.1:port; returns the socket (keep it until all
-- ports are chosen, so that they differ) or nil when the port is taken.
local function try_port(port)
    local fd = ffi.C.socket(2, 1, 0)          -- AF_INET, SOCK_STREAM
    if fd < 0 then return nil end
    local sa = ffi.new("struct tide_kafka_sockaddr_in")
    sa.family = 2
    sa.port[0], sa.port[1] = math.floor(port / 256), port % 256
    sa.addr[0], sa.addr[3] = 127, 1
    if ffi.C.bind(fd, sa, ffi.sizeof(sa)) ~= 0 then
        ffi.C.close(fd)
        return nil
    end
    return fd
end

-- n free loopback ports, below the kernel's ephemeral range, so that no
-- client connection takes one while a broker is down for a restart.
local function free_ports(n)
    local lo = tonumber((read_file("/proc/sys/net/ipv4/ip_local_port_range")
                         or ""):match("^(%d+)")) or 32768
    local base, span = 10000, math.max(lo - 10000, 1000)
    local r = { urandom(4):byte(1, 4) }
    local seed = ((r[1] * 256 + r[2]) * 256 + r[3]) * 256 + r[4]
    local ports, fds = {}, {}
    for i = 0, 10 * span do
        local port = base + (seed + i * 7919) % span
        local fd = try_port(port)
        if fd then
            ports[#ports + 1], fds[#fds + 1] = port, fd
            if #ports == n then break end
        end
    end
    for _, fd in ipairs(fds) do ffi.C.close(fd) end
    if #ports < n then error("kafka: no free loopback port found", 0) end
    return ports
end

-- ---- clusters ---------------------------------------------------------------

local BROKER_LOG4J = [[
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:tide.kafka.log}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = WARN
]]

-- Broker settings for one cluster of n combined nodes; `extra` overrides.
-- Internal topics get small partition counts and the cluster's
-- replication; brokers are fenced 3 s after they die, so that a lost
-- broker leaves the ISR quickly; topics are never created by a produce
-- or a metadata request, so that an unknown topic is an error.
local function settings(n, extra)
    local rf = math.min(n, 3)
    local isr = n >= 3 and 2 or 1
    local s = {
        ["process.roles"] = "broker,controller",
        ["controller.listener.names"] = "CONTROLLER",
        ["inter.broker.listener.name"] = "PLAINTEXT",
        ["listener.security.protocol.map"] =
            "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ["num.partitions"] = "1",
        ["default.replication.factor"] = tostring(rf),
        ["min.insync.replicas"] = tostring(isr),
        ["offsets.topic.replication.factor"] = tostring(rf),
        ["offsets.topic.num.partitions"] = "4",
        ["transaction.state.log.replication.factor"] = tostring(rf),
        ["transaction.state.log.min.isr"] = tostring(isr),
        ["transaction.state.log.num.partitions"] = "4",
        ["share.coordinator.state.topic.replication.factor"] = tostring(rf),
        ["share.coordinator.state.topic.min.isr"] = tostring(isr),
        ["group.initial.rebalance.delay.ms"] = "0",
        ["auto.create.topics.enable"] = "false",
        ["broker.heartbeat.interval.ms"] = "500",
        ["broker.session.timeout.ms"] = "3000",
        ["log.cleaner.dedupe.buffer.size"] = "16777216",
        ["num.network.threads"] = "2",
        ["num.io.threads"] = "4",
    }
    for k, v in pairs(extra or {}) do s[k] = tostring(v) end
    return s
end

local function node_props(c, node)
    local voters = {}
    for i, nd in ipairs(c.nodes) do
        voters[i] = fmt("%d@127.0.0.1:%d", nd.id, nd.cport)
    end
    local s = settings(#c.nodes, c.config)
    s["node.id"] = tostring(node.id)
    s["controller.quorum.voters"] = concat(voters, ",")
    s["listeners"] = fmt("PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d",
                         node.port, node.cport)
    s["advertised.listeners"] = fmt("PLAINTEXT://127.0.0.1:%d", node.port)
    s["log.dirs"] = node.dir .. "/data"
    local keys = {}
    for k in pairs(s) do keys[#keys + 1] = k end
    table.sort(keys)
    local lines = {}
    for i, k in ipairs(keys) do lines[i] = k .. "=" .. s[k] end
    return concat(lines, "\n") .. "\n"
end

-- The watchdog: once the owner (this Lua process) is gone or the cluster
-- dir is removed, SIGTERM every broker whose pid file names a running
-- kafka.Kafka, SIGKILL the ones left after 5 s, and remove the dir.
local WATCHDOG = [[
owner=$1 dir=$2
while kill -0 "$owner" 2>/dev/null && [ -d "$dir" ]; do sleep 0.5; done
pids=""
for f in "$dir"/node*/pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f")
  grep -qa kafka.Kafka "/proc/$p/cmdline" 2>/dev/null && pids="$pids $p"
done
[ -n "$pids" ] && kill -TERM $pids 2>/dev/null
for _ in 1 2 3 4 5 6 7 8 9 10; do
  left=""
  for p in $pids; do kill -0 "$p" 2>/dev/null && left="$left $p"; done
  [ -z "$left" ] && break
  sleep 0.5
done
[ -n "$left" ] && kill -KILL $left 2>/dev/null
case "$dir" in /*/tide-kafka.*) rm -rf "$dir" ;; esac
]]

local function launch(c, node)
    if exists(node.dir .. "/server.log") then        -- keep the old log
        node.runs = (node.runs or 1) + 1
        os.rename(node.dir .. "/server.log",
                  node.dir .. "/server.log." .. (node.runs - 1))
    end
    -- Class data sharing: the first broker of a cache dumps the classes
    -- it loaded when it stops (see stop), and later brokers map them,
    -- which saves about a third of their start. A JDK whose version
    -- differs gets its own archive.
    local jsa, cds = archive("broker"), ""
    if exists(jsa) then
        cds = " " .. CDS_QUIET .. " -XX:SharedArchiveFile=" .. q(jsa)
    elseif not c.dumper or c.dumper == node then
        c.dumper = node
        cds = " " .. CDS_QUIET .. " -XX:ArchiveClassesAtExit="
              .. q(node.dir .. "/broker.jsa")
    end
    local cmd = fmt("echo $$ >%s; exec %s%s %s%s -Dlog4j2.configurationFile=%s "
                    .. "-Dtide.kafka.log=%s -cp %s %s %s",
                    q(node.dir .. "/pid"), ENV, java(), c.jvm, cds,
                    q(c.dir .. "/log4j2.properties"),
                    q(node.dir .. "/server.log"), q(_M.classpath()),
                    BROKER_CLASS, q(node.dir .. "/server.properties"))
    os.remove(node.dir .. "/pid")
    os.execute(fmt("setsid sh -c %s >%s 2>&1 </dev/null &", q(cmd),
                   q(node.dir .. "/stdout.log")))
    for _ = 1, 500 do
        local pid = tonumber(read_file(node.dir .. "/pid") or "")
        if pid then node.pid = pid; return end
        sleep(0.01)
    end
    error("kafka: could not start node " .. node.id .. " in " .. node.dir, 0)
end

local stop

-- Stops the cluster and raises one error line for a node that is not
-- up, followed by the last lines of its log and of its JVM's output.
local function fail(c, node, what)
    local log = node.dir .. "/server.log"
    local msg = fmt("kafka: %s (node %d of %d, %s, Kafka %s); last lines "
                    .. "of its log:\n%s\n%s", what, node.id, #c.nodes,
                    alive(node.pid) and "running" or "not running",
                    _M.VERSION, tail(log, 15),
                    tail(node.dir .. "/stdout.log", 5))
    stop(c)
    error(msg, 0)
end

-- Number of brokers kcat sees through node's listener, or nil.
local function brokers_seen(node)
    local r = run(fmt("%s -L -b 127.0.0.1:%d -m 2", _M.kcat_cmd(), node.port))
    return r.code == 0 and tonumber(r.out:match("(%d+) brokers:")) or nil
end

-- Waits until every node in `which` logged its start and answers kcat
-- with all n brokers in its metadata.
local function wait(c, which)
    local deadline = now() + c.timeout
    for _, node in ipairs(which) do
        while true do
            if not alive(node.pid) then
                fail(c, node, "the broker exited while starting")
            end
            local log = read_file(node.dir .. "/server.log") or ""
            if log:find("Kafka Server started", 1, true)
               and brokers_seen(node) == #c.nodes then
                break
            end
            if now() > deadline then
                fail(c, node, fmt("the broker did not answer within %d s",
                                  c.timeout))
            end
            sleep(0.2)
        end
    end
end

--- Starts a KRaft cluster of `nodes` combined broker+controller nodes on
--- loopback, each in a temp dir, and waits until all answer. Raises one
--- error line (with the failing node's log tail) when it cannot.
---@param opts table|nil { nodes = 1|3, config = { key = value },
---   heap = "512m", timeout = seconds to answer (60), grace = seconds
---   between SIGTERM and SIGKILL on stop (5), jvm = extra JVM flags }
---@return table cluster { bootstrap =, dir =, nodes = { {id, port,
---   cport, dir, pid} }, stop(), kill(i, sig), restart(i), log(i) }: plain
---   functions, called as c.stop(); log(i) is node i's broker log
function _M.start(opts)
    opts = opts or {}
    local n = opts.nodes or 1
    if n < 1 or n % 1 ~= 0 then
        error("bad nodes: positive integer expected", 2)
    end
    need_jars()
    if run("command -v " .. kcat_bin()).code ~= 0 then
        error("kafka: kcat is missing (it checks that brokers answer): "
              .. "install kcat (make deps)", 0)
    end
    local base = os.getenv("TMPDIR") or "/tmp"
    local dir = sh_out("mktemp -d " .. q(base .. "/tide-kafka.XXXXXX"))
                :gsub("%s+$", "")
    if dir == "" then error("kafka: mktemp -d failed in " .. base, 0) end
    local c = { dir = dir, nodes = {}, config = opts.config,
                timeout = opts.timeout or 60, grace = opts.grace or 5 }
    c.stop = function() stop(c) end
    c.kill = function(i, sig) _M.kill(c, i, sig) end
    c.restart = function(i) _M.restart(c, i) end
    c.log = function(i) return c.nodes[i].dir .. "/server.log" end
    c.jvm = BROKER_JVM:gsub("-Xmx%S+", "-Xmx" .. (opts.heap or "512m"))
            .. (opts.jvm and (" " .. opts.jvm) or "")
    local ports = free_ports(2 * n)
    for i = 1, n do
        c.nodes[i] = { id = i, port = ports[2 * i - 1], cport = ports[2 * i],
                       dir = fmt("%s/node%d", dir, i) }
    end
    local bs = {}
    for i, node in ipairs(c.nodes) do
        bs[i] = "127.0.0.1:" .. node.port
    end
    c.bootstrap = concat(bs, ",")
    write_file(dir .. "/log4j2.properties", BROKER_LOG4J)
    os.execute(fmt("setsid sh -c %s watchdog %d %s >/dev/null 2>&1 "
                   .. "</dev/null &", q(WATCHDOG), ffi.C.getpid(), q(dir)))
    -- Format every node's storage (one JVM each, in parallel).
    local id = cluster_id()
    local fmts = {}
    for i, node in ipairs(c.nodes) do
        os.execute("mkdir -p " .. q(node.dir .. "/data"))
        write_file(node.dir .. "/server.properties", node_props(c, node))
        fmts[i] = fmt("(%s format -t %s -c %s >%s 2>&1 || echo failed >%s) &",
                      _M.tool_cmd("kafka-storage"), id,
                      q(node.dir .. "/server.properties"),
                      q(node.dir .. "/format.log"),
                      q(node.dir .. "/format.failed"))
    end
    os.execute(concat(fmts, " ") .. " wait")
    for _, node in ipairs(c.nodes) do
        if exists(node.dir .. "/format.failed") then
            local log = tail(node.dir .. "/format.log", 10)
            stop(c)
            error(fmt("kafka: 'kafka-storage format' failed for node %d:\n%s",
                      node.id, log), 0)
        end
    end
    for _, node in ipairs(c.nodes) do launch(c, node) end
    wait(c, c.nodes)
    return c
end

local function signal_and_wait(pids, sig, seconds)
    if #pids == 0 then return {} end
    os.execute(fmt("kill -%s %s 2>/dev/null", sig, concat(pids, " ")))
    local deadline = now() + seconds
    while true do
        local left = {}
        for _, p in ipairs(pids) do
            if alive(p) then left[#left + 1] = p end
        end
        if #left == 0 or now() > deadline then return left end
        sleep(0.05)
    end
end

--- Kills node i of cluster c with SIGKILL (default) or another signal,
--- and waits until it is gone (SIGKILL follows after 10 s for another
--- signal). Also c.kill(i, sig).
---@param c table a cluster from start()
---@param i integer
---@param sig string|nil "KILL" or "TERM"
function _M.kill(c, i, sig)
    local node = assert(c.nodes[i], "no such node")
    local left = signal_and_wait({ node.pid }, sig or "KILL", 10)
    if #left > 0 then signal_and_wait(left, "KILL", 10) end
end

--- Starts node i of cluster c again (after kill) on its ports and data,
--- and waits until it answers with all brokers in its metadata. Also
--- c.restart(i).
---@param c table a cluster from start()
---@param i integer
function _M.restart(c, i)
    local node = assert(c.nodes[i], "no such node")
    if alive(node.pid) then _M.kill(c, i) end
    launch(c, node)
    wait(c, { node })
end

-- Stops every node of c: SIGTERM, then SIGKILL after opts.grace s;
-- removes the temp dir. Safe to call twice. Callers use c.stop().
stop = function(c)
    if c.stopped then return end
    c.stopped = true
    local pids = {}
    for _, node in ipairs(c.nodes) do
        if alive(node.pid) then pids[#pids + 1] = node.pid end
    end
    -- A broker dumping its class archive needs a few seconds more.
    local d = c.dumper
    local dumping = d and alive(d.pid)
    local left = signal_and_wait(pids, "TERM", dumping and 20 or c.grace)
    signal_and_wait(left, "KILL", 10)
    if dumping and not exists(archive("broker")) then
        local killed = false
        for _, p in ipairs(left) do killed = killed or p == d.pid end
        if not killed and exists(d.dir .. "/broker.jsa") then
            local tmp = archive("broker") .. ".tmp" .. ffi.C.getpid()
            os.execute(fmt("cp %s %s && mv %s %s", q(d.dir .. "/broker.jsa"),
                           q(tmp), q(tmp), q(archive("broker"))))
            os.remove(tmp)
        end
    end
    if c.dir:match("/tide%-kafka%.[%w]+$") then
        os.execute("rm -rf " .. q(c.dir))
    end
end

-- ---- command line -----------------------------------------------------------

local USAGE = [[
usage: luajit scripts/kafka.lua deps
       luajit scripts/kafka.lua run [--nodes N] [--set key=value ...]
       luajit scripts/kafka.lua classpath
       luajit scripts/kafka.lua TOOL [args...]
TOOL: kafka-topics, kafka-consumer-groups, kafka-console-consumer,
      kafka-console-producer, kafka-storage, kafka-run-class CLASS]]

local function main(argv)
    local cmd = argv[1]
    if cmd == "deps" then
        local ok, err = _M.fetch()
        if not ok then
            io.stderr:write(err, "\n")
            return 1
        end
        return 0
    elseif cmd == "classpath" then
        need_jars()
        print(_M.classpath())
        return 0
    elseif cmd == "run" then
        local opts = { nodes = 1, config = {} }
        local i = 2
        while argv[i] do
            if argv[i] == "--nodes" then
                opts.nodes = tonumber(argv[i + 1])
                i = i + 2
            elseif argv[i] == "--set" and argv[i + 1]
                   and argv[i + 1]:find("=") then
                local k, v = argv[i + 1]:match("^([^=]+)=(.*)$")
                opts.config[k] = v
                i = i + 2
            else
                io.stderr:write(USAGE, "\n")
                return 2
            end
        end
        if not opts.nodes or opts.nodes < 1 then
            io.stderr:write("kafka: --nodes wants a positive number\n")
            return 2
        end
        local t0 = now()
        local c = _M.start(opts)
        print(fmt("kafka: %d-node Kafka %s cluster up in %.1f s; logs in %s",
                  #c.nodes, _M.VERSION, now() - t0, c.dir))
        print("kafka: bootstrap " .. c.bootstrap)
        print("kafka: Ctrl-C stops it")
        io.stdout:flush()
        -- Wait for Ctrl-C: luajit turns SIGINT into an "interrupted!"
        -- error, and a `sleep` killed by it returns non-zero.
        local ok, err = pcall(function()
            while true do
                if os.execute("sleep 1") ~= 0 then return end
                for _, node in ipairs(c.nodes) do
                    if not alive(node.pid) then
                        error(fmt("kafka: node %d exited; last lines of "
                                  .. "its log:\n%s", node.id,
                                  tail(node.dir .. "/server.log", 15)), 0)
                    end
                end
            end
        end)
        print("kafka: stopping")
        c.stop()
        if not ok and not tostring(err):find("interrupted") then
            io.stderr:write(tostring(err), "\n")
            return 1
        end
        return 0
    elseif cmd == "kafka-run-class" and argv[2] then
        local words = { _M.class_cmd(argv[2]) }
        for j = 3, #argv do words[#words + 1] = q(argv[j]) end
        return os.execute(concat(words, " ")) == 0 and 0 or 1
    elseif cmd and _M.TOOLS[cmd] then
        local words = { _M.tool_cmd(cmd) }
        for j = 2, #argv do words[#words + 1] = q(argv[j]) end
        local rc = os.execute(concat(words, " "))
        return rc == 0 and 0 or (rc >= 256 and rc / 256 or 1)
    end
    io.stderr:write(USAGE, "\n")
    return 2
end

if ... == "--as-module" then
    return _M
end
local ok, rc = pcall(main, { ... })
if not ok then
    io.stderr:write(tostring(rc), "\n")
    os.exit(1)
end
os.exit(rc)
