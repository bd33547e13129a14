--- Task move time (issue 11, "Speed"): a task with KEYS keys in its
--- store, moved between the two workers of a running job with `tide
--- move`, beside the time to bring up the same task with no local store.
---
---   move (host-affinity snapshot): bench/jobs/incr.lua, 4 partitions,
---        KEYS distinct keys all on partition 0 (one message on each
---        other partition), `tide run --workers 2` running; `tide move
---        bench-incr 0 W` to the other worker, BENCH_RUNS times, with
---        1,000 new keys processed between moves. Each time is the job
---        log's "task 0 moved ... in X ms (revoke R ms, assign S ms)":
---        from the revoke being sent (finish the batch, commit, close the
---        stores) to the task assigned and reading again on the other
---        worker (stores opened from the local snapshot, changelog tail
---        replayed, inputs seeked). The wall time of the `tide move`
---        command (a process start and a control-socket round trip more)
---        is printed beside it. Same data dir, so the snapshot is always
---        there: that is the host-affinity case.
---   without a snapshot: a store that must be rebuilt from the changelog
---        alone (a new host, or the local store lost). Deleting a running
---        task's store dirs is not safe, so this is measured as a cold
---        start instead: the job stopped, jobs/bench-incr/stores deleted,
---        `tide run --drain` again; the figure is task 0's assign time
---        from the log ("task 0 assigned ... in X ms"), beside the same
---        start with the stores left in place (a warm start).
---
--- Usage: luajit bench/bench_move.lua TIDE_BIN DIR [KEYS] (default
--- 1,000,000). A temporary folder is made in DIR and removed after.
local bench_dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path

local ffi = require("ffi")
local tlog = require("tide.log")
local stats = require("stats")

local str_format = string.format

ffi.cdef [[
char *mkdtemp(char *template);
int usleep(unsigned int usec);
]]

local RUNS = stats.runs("bench_move")
local NPARTS = 4
local JOB = "bench-incr"
local IN = "bench-incr-in"
local MORE = 1000               -- new keys processed between two moves

local tide_bin, base = arg[1], arg[2]
local keys = tonumber(arg[3] or 1000000)
if not tide_bin or not base or not keys or keys < 1 then
    io.stderr:write("usage: luajit bench/bench_move.lua TIDE_BIN DIR "
                    .. "[KEYS]\n")
    os.exit(2)
end
local job_file = bench_dir .. "/jobs/incr.lua"

local util = require("util")
local now, sh, quote = util.now, util.sh, util.quote



local function sh_out(cmd)
    local p = assert(io.popen(cmd, "r"))
    local out = p:read("*a")
    p:close()
    return out
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end

local tmpl = ffi.new("char[?]", #base + 32)
ffi.copy(tmpl, base .. "/tide-bench-move-XXXXXX")
if ffi.C.mkdtemp(tmpl) == nil then
    io.stderr:write("bench_move: cannot make a folder in ", base, "\n")
    os.exit(1)
end
local dir = ffi.string(tmpl)
local logf = dir .. "/run.log"
local job_pid

local function die(fmt, ...)
    io.stderr:write("bench_move: ", str_format(fmt, ...), "\n")
    if job_pid then
        sh("kill -9 " .. job_pid .. " 2>/dev/null")
    end
    sh("rm -rf " .. quote(dir))
    os.exit(1)
end

local function tide(args)
    return sh_out(str_format("%s %s --data-dir %s 2>&1", quote(tide_bin),
                             args, quote(dir)))
end

-- Appends `count` keys "k<first>".."k<first+count-1>" to partition 0.
local function add_keys(first, count)
    local log, err = tlog.open(dir, IN, { mode = "create",
                                          partitions = NPARTS,
                                          fsync = "none" })
    if not log then
        die("%s", err)
    end
    for i = first, first + count - 1 do
        assert(log:push(str_format("k%08d", i), "1", 0))
    end
    assert(log:flush())
    log:close()
end

-- Waits (up to 600 s) until task 0's input offset is `want` with no lag
-- (its processed count starts again on each worker); returns the `tide
-- tasks` line of task 0.
local function wait_processed(want)
    local deadline = now() + 600
    local line
    repeat
        line = tide("tasks " .. JOB):match("(task 0 [^\n]*)")
        if line and tonumber(line:match(IN:gsub("%-", "%%-") .. "=(%d+)")) == want and
           line:match("lag=0") and line:match("RUNNING")
        then
            return line
        end
        ffi.C.usleep(200000)
    until now() > deadline
    die("task 0 did not process %d messages: %s\n%s", want,
        tostring(line), read_file(logf))
end

local function alive(pid)
    local s = read_file("/proc/" .. pid .. "/stat")
    local st = s:match("^%d+ %b() (%a)")
    return st ~= nil and st ~= "Z" and st ~= "X"
end

-- ---- moves under a running job ---------------------------------------------------

add_keys(0, keys)
do
    local log = assert(tlog.open(dir, IN))
    for p = 1, NPARTS - 1 do
        assert(log:push("x" .. p, "1", p))
    end
    assert(log:flush())
    log:close()
end

job_pid = tonumber(sh_out(str_format(
    "%s run %s --workers 2 --data-dir %s >/dev/null 2>%s & echo $!",
    quote(tide_bin), quote(job_file), quote(dir), quote(logf))))
local processed = keys
wait_processed(processed)

local mv, rv, as, cmd = {}, {}, {}, {}
local replayed = {}
for round = 1, RUNS do
    local w = tonumber(wait_processed(processed):match("worker=(%d+)"))
    local to = w == 1 and 2 or 1
    local t0 = now()
    local out = tide(str_format("move %s 0 %d", JOB, to))
    cmd[round] = (now() - t0) * 1000
    if not out:match("^task 0 moved") then
        die("tide move: %s", out)
    end
    -- The supervisor logs the move line just before it replies.
    local line, rline
    for _ = 1, 500 do
        local text = read_file(logf)
        local n = 0
        for l in text:gmatch("[^\n]*task 0 moved from worker %d+ to worker "
                             .. "%d+ in [^\n]*") do
            n = n + 1
            line = l
        end
        for l in text:gmatch("[^\n]*store 'counts' task 0: from[^\n]*") do
            rline = l
        end
        if n == round then break end
        line = nil
        ffi.C.usleep(10000)
    end
    if not line then
        die("no move line in the job log:\n%s", read_file(logf))
    end
    local total, r, a = line:match("in (%d+) ms %(revoke (%d+) ms, assign "
                                   .. "(%d+) ms%)")
    mv[round], rv[round], as[round] = tonumber(total), tonumber(r),
                                      tonumber(a)
    replayed[round] = rline and rline:match("replayed (%d+) changelog") or "?"
    add_keys(keys + (round - 1) * MORE, MORE)
    processed = processed + MORE
end
wait_processed(processed)

sh("kill -TERM " .. job_pid)
for _ = 1, 6000 do
    if not alive(job_pid) then break end
    ffi.C.usleep(10000)
end
if alive(job_pid) then
    die("the job did not stop on SIGTERM")
end
job_pid = nil

-- ---- starts with and without the local stores ------------------------------------

-- Runs the job with --drain; returns task 0's assign time (ms) and its
-- store line.
local function start(cold)
    if cold then
        sh("rm -rf " .. quote(dir .. "/jobs/" .. JOB .. "/stores"))
    end
    local ok = sh(str_format("%s run %s --drain --workers 2 --data-dir %s "
                             .. ">/dev/null 2>%s", quote(tide_bin),
                             quote(job_file), quote(dir), quote(logf)))
    local text = read_file(logf)
    if not ok then
        die("tide run --drain failed:\n%s", text)
    end
    local ms = text:match("task 0 assigned to worker %d+ %(pid %d+%) in "
                          .. "(%d+) ms")
    local store = text:match("store 'counts' task 0: ([^\n]*)") or "?"
    if not ms then
        die("no assign line for task 0:\n%s", text)
    end
    return tonumber(ms), store
end

local cold, warm = {}, {}
local cold_line, warm_line
for round = 1, RUNS do
    if round % 2 == 1 then
        cold[round], cold_line = start(true)
        warm[round], warm_line = start(false)
    else
        warm[round], warm_line = start(false)
        cold[round], cold_line = start(true)
    end
end
sh("rm -rf " .. quote(dir))

print(str_format("move: task 0 of bench-incr with %d keys in its store "
                 .. "(RocksDB + changelog), 2 workers, same data dir; "
                 .. "runs: %d", keys, RUNS))
print(str_format("  moved (host-affinity snapshot)  %s   revoke %s   "
                 .. "assign %s", stats.fmt(mv, 0, "ms"),
                 stats.fmt(rv, 0, "ms"), stats.fmt(as, 0, "ms")))
print(str_format("  `tide move` command wall time   %s; changelog records "
                 .. "replayed at the assign: %s", stats.fmt(cmd, 0, "ms"),
                 table.concat(replayed, ",")))
print(str_format("  start, no local store (changelog restore)  task 0 "
                 .. "assign %s", stats.fmt(cold, 0, "ms")))
print("      " .. tostring(cold_line))
print(str_format("  start, local store kept (warm)             task 0 "
                 .. "assign %s", stats.fmt(warm, 0, "ms")))
print("      " .. tostring(warm_line))
