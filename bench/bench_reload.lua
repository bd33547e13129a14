--- Hot reload figures (issue 5, "Speed"): the longest pause in processing
--- around a reload, and the time from a file save to the new code being
--- live, for a small job under steady input.
---
--- Usage: luajit bench/bench_reload.lua TIDE_BIN SCRATCH_DIR [RELOADS]
---
--- The job (written here) sends one output per input; each version has a
--- SAVED_AT constant, the wall-clock time at which the bench renamed it
--- into place, and its on_reload(ctx) sends now - SAVED_AT: save to live,
--- as the job itself sees it. The pause is the job's own "swapped in X ms"
--- log line: processing stops for exactly the reload (between batches).
--- Baseline, measured in the same run: loadfile() + running the chunk of
--- the same job file in this process (what any reload must pay at least).
---
--- Each reload is a run: the figures are the median of the RELOADS
--- reloads with their spread (min-max); the baseline is the median of
--- BENCH_RUNS (default 5) batches of 2000 loads (bench/stats.lua).
local bench_dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = bench_dir .. "/?.lua;" .. package.path

local tlog = require("tide.log")
local loop = require("tide.loop")
local stats = require("stats")

local tide, dir = arg[1], arg[2]
local reloads = tonumber(arg[3] or 10)
assert(tide and dir, "usage: bench_reload.lua TIDE_BIN SCRATCH_DIR [RELOADS]")

local data = dir .. "/reload-data"
local jobdir = dir .. "/reload-job"
local jobfile = jobdir .. "/job.lua"
local logfile = dir .. "/reload.log"
os.execute("rm -rf '" .. data .. "' '" .. jobdir .. "' && mkdir -p '"
           .. jobdir .. "'")

local function job_text(tag, saved_at)
    return ([[
local realtime = require("tide").loop.realtime
local SAVED_AT = %.0f
return {
    name = "bench-reload", inputs = { "in" }, outputs = { "out" },
    commit_interval = "20ms",
    process = function(msg, ctx)
        ctx:send("out", msg.key, "%s")
    end,
    on_reload = function(ctx)
        ctx:send("out", "live", tostring(realtime() - SAVED_AT))
    end,
}
]]):format(saved_at, tag)
end

local function write_job(tag)
    local tmp = jobdir .. "/.job.lua.tmp"
    local f = assert(io.open(tmp, "w"))
    f:write(job_text(tag, loop.realtime()))
    f:close()
    assert(os.rename(tmp, jobfile))          -- a save through a rename
end

local function sh(cmd)
    assert(os.execute(cmd) == 0, cmd)
end

local function sleep_ms(ms)
    local t = loop.now() + ms
    while loop.now() < t do
        os.execute("sleep 0.005")
    end
end

local function count(text, pat)
    local n = 0
    for _ in text:gmatch(pat) do
        n = n + 1
    end
    return n
end

local function read(path)
    local f = io.open(path)
    if not f then
        return ""
    end
    local s = f:read("*a")
    f:close()
    return s
end

-- Steady input: a writer appending 50 records every 10 ms.
write_job("v0")
sh(("seq 1 1000 | '%s' produce in --partitions 2 -K : --data-dir '%s' "
    .. ">/dev/null"):format(tide, data))
local writer = io.popen(("sh -c 'echo $$; while :; do seq 1 50 | sed "
    .. "s/^/k/ | %s produce in -K : --data-dir %s; sleep 0.01; done' "
    .. ">%s/writer.pid 2>/dev/null & echo started"):format(tide, data, dir))
writer:read("*a")
writer:close()
local runner = io.popen(("sh -c '%s run %s --data-dir %s 2>%s & echo $!'")
                        :format(tide, jobfile, data, logfile))
local run_pid = runner:read("*l")
runner:close()

local deadline = loop.now() + 10000
while not read(logfile):find("started", 1, true) do
    assert(loop.now() < deadline, "tide run did not start: " .. read(logfile))
    sleep_ms(10)
end
sleep_ms(200)

for i = 1, reloads do
    write_job("v" .. i)
    deadline = loop.now() + 10000
    while count(read(logfile), "reloaded ") < i do
        assert(loop.now() < deadline, "no reload seen: " .. read(logfile))
        sleep_ms(5)
    end
    sleep_ms(100)
end

sh("kill $(cat '" .. dir .. "/writer.pid') 2>/dev/null; true")
sh("kill -TERM " .. run_pid)
deadline = loop.now() + 20000
while not read(logfile):find("stopped", 1, true) do
    assert(loop.now() < deadline, "tide run did not stop: " .. read(logfile))
    sleep_ms(10)
end

local log = read(logfile)
local pauses = {}
for ms in log:gmatch("swapped in ([%d%.]+) ms") do
    pauses[#pauses + 1] = tonumber(ms)
end
local lives = {}
local s = assert(tlog.open(data, "out"))
for p = 0, s:count() - 1 do
    local r = s:reader(p, "beginning")
    while true do
        local rec = r:poll()
        if not rec then
            break
        end
        if rec.key == "live" then
            lives[#lives + 1] = tonumber(rec.value)
        end
    end
    r:close()
end
s:close()

-- Baseline: what loading the file costs by itself.
local base = {}
for round = 1, stats.runs("bench_reload") do
    local t0, n = loop.now(), 2000
    for _ = 1, n do
        local chunk = assert(loadfile(jobfile))
        setfenv(chunk, setmetatable({}, { __index = _G }))
        chunk()
    end
    base[round] = (loop.now() - t0) / n
end

print(("reload: %d saves (rename) of a small job under steady input, "
       .. "2 tasks"):format(reloads))
print(("  pause around a reload   %s (one per swap)   baseline: loadfile + "
       .. "run of the job file %s"):format(stats.fmt(pauses, 1, "ms"),
                                         stats.fmt(base, 3, "ms")))
print(("  save to live            %s (one per task marker; 50 ms of it is "
       .. "the wait for writes to settle)"):format(stats.fmt(lives, 1, "ms")))
print("  targets: pause <= 5 ms, save to live <= 100 ms")
os.execute("rm -rf '" .. data .. "' '" .. jobdir .. "' '" .. logfile
           .. "' '" .. dir .. "/writer.pid'")
