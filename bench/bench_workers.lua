--- Job throughput of `tide run --drain --workers 2` beside `--workers 1`
--- on the same input in the same run (issue 11, "Speed"): 4 partitions,
--- so 4 tasks, for three jobs:
---
---   pass-through: bench/jobs/pass.lua (string serde, ctx:send unchanged);
---   json:         bench/jobs/json.lua (json serde in and out);
---   incr:         bench/jobs/incr.lua (one store counter per key,
---                 changelogged; nothing sent).
---
--- Each figure is the wall time of the whole `tide run --drain` process
--- (start, workers spawned, reading, process(), outputs, commit, exit)
--- over MESSAGES messages; the job's outputs, checkpoint, stores and
--- changelog are deleted before every run. The ratio is workers 2 /
--- workers 1, run by run; the target is >= 1.7. Not pinned: the workers
--- are meant to take both cores.
---
--- With a fourth argument `http`, the two sides are instead `--workers 2`
--- with `--http` on and a scraper fetching /metrics every second (curl,
--- as Prometheus would), and the same without either (issue 15, "Speed":
--- less than 2 % lower); the ratio is with / without, run by run.
---
--- Usage: luajit bench/bench_workers.lua TIDE_BIN DIR [MESSAGES [http]]
--- (bench/run.sh sets package.path and TIDE_LIB). A temporary folder is
--- made in DIR and removed after. Each side runs BENCH_RUNS times
--- (default 5), the two alternating; figures are medians with their
--- spread (bench/stats.lua).
local bench_dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path

local ffi = require("ffi")
local tlog = require("tide.log")
local stats = require("stats")

local str_format, str_rep = string.format, string.rep

ffi.cdef [[
char *mkdtemp(char *template);
]]

local RUNS = stats.runs("bench_workers")
local NPARTS = 4
local KEYS = 10000
local VAL_LEN = 100

local tide_bin, base = arg[1], arg[2]
local n = tonumber(arg[3] or 2000000)
local http_mode = arg[4] == "http"
if not tide_bin or not base or not n or n < 1
    or (arg[4] ~= nil and not http_mode) then
    io.stderr:write("usage: luajit bench/bench_workers.lua TIDE_BIN DIR "
                    .. "[MESSAGES [http]]\n")
    os.exit(2)
end
-- The --http port of http mode.
local HTTP_PORT = 20000 + (tonumber(tostring({}):match("0x(%x+)"), 16) or 0)
                  % 20000
local jobs_dir = bench_dir .. "/jobs"

local util = require("util")
local now, sh, quote = util.now, util.sh, util.quote



local tmpl = ffi.new("char[?]", #base + 32)
ffi.copy(tmpl, base .. "/tide-bench-workers-XXXXXX")
if ffi.C.mkdtemp(tmpl) == nil then
    io.stderr:write("bench_workers: cannot make a folder in ", base, "\n")
    os.exit(1)
end
local dir = ffi.string(tmpl)

local function die(fmt, ...)
    io.stderr:write("bench_workers: ", str_format(fmt, ...), "\n")
    sh("rm -rf " .. quote(dir))
    os.exit(1)
end

local function read_file(path)
    local f = io.open(path, "rb")
    if not f then return "" end
    local s = f:read("*a")
    f:close()
    return s
end

-- ---- the messages ------------------------------------------------------------

local function key(i)
    return str_format("user-%05d", i % KEYS)
end

local function pass_value(i)
    local head = str_format("%010d ", i)
    return head .. str_rep("x", VAL_LEN - #head)
end

local function json_value(i)
    local v = str_format('{"user":"u%05d","url":"/products/%06d","ts":%d,'
                         .. '"bot":false,"ua":"', i % KEYS, (i * 7) % 100000,
                         1700000000000 + i)
    return v .. str_rep("M", VAL_LEN - #v - 2) .. '"}'
end

local function make_input(name, value_of)
    local log, err = tlog.open(dir, name, { mode = "create",
                                            partitions = NPARTS,
                                            fsync = "none" })
    if not log then
        die("%s", err)
    end
    for i = 0, n - 1 do
        local ok, perr = log:push(key(i), value_of(i))
        if not ok then
            die("%s", perr)
        end
    end
    assert(log:flush())
    log:close()
end

-- ---- tide run ----------------------------------------------------------------

local short = {}        -- runs whose --drain stopped before the end

-- Starts a shell loop that fetches /metrics every second; returns its
-- pid.
local function start_scraper()
    local f = assert(io.popen(str_format(
        "(while :; do curl -s -o /dev/null http://127.0.0.1:%d/metrics; "
        .. "sleep 1; done) >/dev/null 2>&1 & echo $!", HTTP_PORT)))
    local pid = tonumber(f:read("*a"):match("%d+"))
    f:close()
    return pid
end

-- Runs bench job `job` ("pass", "json", "incr") with `workers` workers
-- from scratch (with `http`: --http on and a scraper polling it); returns
-- the wall time. Checks the count of messages the job says it processed,
-- and of those in its output stream `out` (nil: none, for incr).
local function tide_run(job, workers, out, http)
    local name = "bench-" .. job
    sh(str_format("rm -rf %s %s %s", quote(dir .. "/jobs/" .. name),
                  quote(dir .. "/streams/" .. name .. "-out"),
                  quote(dir .. "/streams/" .. name .. "-counts-changelog")))
    local logf = dir .. "/run.log"
    local cmd = str_format("%s run %s --drain --workers %d --data-dir %s "
                           .. "%s2>%s", quote(tide_bin),
                           quote(jobs_dir .. "/" .. job .. ".lua"), workers,
                           quote(dir), http and str_format("--http %d ",
                                                           HTTP_PORT) or "",
                           quote(logf))
    local scraper = http and start_scraper()
    local t0 = now()
    local ok = sh(cmd)
    local t = now() - t0
    if scraper then
        sh(str_format("kill %d 2>/dev/null", scraper))
    end
    local text = read_file(logf)
    if not ok then
        die("%s failed:\n%s", cmd, text)
    end
    local done = tonumber(text:match("job '" .. name:gsub("%-", "%%-")
                                     .. "': (%d+) messages processed"))
    if done ~= n then
        -- A drain that stopped early is a bug of the container, not a
        -- figure: it is counted, printed, and the run done again.
        short[#short + 1] = str_format("%s --workers %d stopped after %s of "
                                       .. "%d messages", job, workers,
                                       tostring(done), n)
        if #short > 20 then
            die("%s", table.concat(short, "\n"))
        end
        return tide_run(job, workers, out, http)
    end
    if out then
        local log = assert(tlog.open(dir, out))
        local got = 0
        for p = 0, log:count() - 1 do
            local s, e = log:range(p)
            got = got + (e - s)
        end
        log:close()
        if got ~= n then
            die("%s --workers %d wrote %d messages, %d expected", job,
                workers, got, n)
        end
    end
    return t
end

-- Side 1 and side 2 of a round: --workers 1 and 2, or in http mode
-- --workers 2 without and with --http.
local function side(job, which, out)
    if http_mode then
        return tide_run(job, 2, out, which == 2)
    end
    return tide_run(job, which, out)
end

local function compare(job, out)
    local r1, r2, ratio = {}, {}, {}
    for round = 1, RUNS do
        local t1, t2
        if round % 2 == 1 then
            t1 = side(job, 1, out)
            t2 = side(job, 2, out)
        else
            t2 = side(job, 2, out)
            t1 = side(job, 1, out)
        end
        r1[round], r2[round], ratio[round] = n / t1 / 1e6, n / t2 / 1e6,
                                             t1 / t2
    end
    return r1, r2, ratio
end

make_input("bench-pass-in", pass_value)
local p1, p2, pr = compare("pass", "bench-pass-out")
sh("rm -rf " .. quote(dir .. "/streams/bench-pass-in"))
make_input("bench-json-in", json_value)
local j1, j2, jr = compare("json", "bench-json-out")
sh("rm -rf " .. quote(dir .. "/streams/bench-json-in"))
make_input("bench-incr-in", pass_value)
local i1, i2, ir = compare("incr", nil)
sh("rm -rf " .. quote(dir))

print(str_format("workers: %d messages over %d partitions (%d tasks), "
                 .. "10-byte keys (%d distinct), %d-byte values, not pinned, "
                 .. "%s cores; runs: %d, the sides alternating",
                 n, NPARTS, NPARTS, KEYS, VAL_LEN,
                 (read_file("/proc/cpuinfo"):gsub("[^\n]*\n", function(l)
                     return l:match("^processor") and "x" or ""
                 end)):len(), RUNS))
if http_mode then
    print("  whole `tide run --drain --workers 2` wall time, with --http and "
          .. "a curl of /metrics every second, and without; ratio = with / "
          .. "without, run by run; target >= 0.98")
else
    print("  whole `tide run --drain` wall time; ratio = workers 2 / "
          .. "workers 1, run by run; target >= 1.7")
end
for _, line in ipairs(short) do
    print("  run done again: `tide run --drain` " .. line)
end
local with, without = "--workers 2", "--workers 1"
if http_mode then
    with, without = "--http on ", "--http off"
end
for _, row in ipairs({ { "pass-through", p1, p2, pr },
                       { "json", j1, j2, jr },
                       { "incr", i1, i2, ir } }) do
    print(str_format("%-13s %s %s   %s %s   ratio %s", row[1], with,
                     stats.fmt(row[3], 2, "M msg/s"), without,
                     stats.fmt(row[2], 2, "M msg/s"),
                     stats.fmt_ratio(row[4], 2)))
end
