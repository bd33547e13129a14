-- The crash loop (make crash-loop): kills `tide run` of scripts/crash_job.lua
-- with SIGKILL at random moments, over and over, and checks after every
-- kill that both stores hold exactly the counts of the input up to the
-- checkpoint, and after every round that the final state and outputs are
-- exact. The mix: kills during startup and restore, mid-run with 50 ms and
-- 1 ms commits, SIGSTOP then SIGKILL, SIGSTOP and SIGCONT then SIGKILL;
-- between runs, snapshot slots deleted and whole local stores wiped; the
-- changelogs are compacted streams with 16 KiB segments, so compaction
-- runs all the time.
--
-- Usage: TIDE_BIN=build/tide luajit scripts/crash_loop.lua
--          [--minutes M] [--kills N] [--seed S] [--keep]
-- Stops after M minutes (default 10) or N kills, whichever comes first.
-- Exit 0 when every check held; otherwise 1, with the seed, the round's
-- data dir (kept) and the first wrong keys.
local SRC = arg[0]:match("^(.*)/scripts/[^/]*$") or "."
package.path = SRC .. "/spec/?.lua;" .. package.path
local h = require("cli.helper")
local cjson = require("cjson")

local fmt = string.format
local JOB = SRC .. "/scripts/crash_job.lua"
local NAME = "crashloop"
local PARTS = 4
local KEYS = 3000
local BATCH = 20000            -- events appended when the job has caught up
local KILLS_PER_ROUND = 60

local opts = { minutes = 10, kills = math.huge }
do
    local i = 1
    while arg[i] do
        local a = arg[i]
        if a == "--minutes" then opts.minutes = tonumber(arg[i + 1]); i = i + 1
        elseif a == "--kills" then opts.kills = tonumber(arg[i + 1]); i = i + 1
        elseif a == "--seed" then opts.seed = tonumber(arg[i + 1]); i = i + 1
        elseif a == "--keep" then opts.keep = true
        else
            io.stderr:write("crash_loop: unknown argument '" .. a .. "'; use "
                            .. "--minutes M, --kills N, --seed S, --keep\n")
            os.exit(2)
        end
        i = i + 1
    end
    if not opts.minutes or not opts.kills then
        io.stderr:write("crash_loop: --minutes and --kills take a number\n")
        os.exit(2)
    end
end
local SEED = opts.seed or (os.time() * 1000 + math.floor(os.clock() * 1e6) % 1000)
math.randomseed(SEED)
local rand = math.random

local function now()
    local p = io.popen("date +%s.%N")
    local t = tonumber(p:read("*l"))
    p:close()
    return t
end

local T0 = now()
local DEADLINE = T0 + opts.minutes * 60

local function log(...)
    io.stderr:write(fmt(...), "\n")
end

-- ---- checks ------------------------------------------------------------------

local failed
local function fail(round, what)
    failed = fmt("crash_loop: FAILED in round %d (seed %d, data dir %s): %s",
                 round.n, SEED, round.dir, what)
    error(failed, 0)
end

local function dump(round, store)
    local r = h.tide({ "state", "dump", JOB, store }, { dir = round.dir })
    if r.code ~= 0 then
        fail(round, fmt("tide state dump %s exited %d: %s", store, r.code, r.err))
    end
    local t = {}
    for k, v in r.out:gmatch("([^\t\n]*)\t([^\n]*)\n") do
        if t[k] then fail(round, "key " .. k .. " dumped twice") end
        t[k] = tonumber(v)
    end
    return t
end

local function compare(round, want, got, what)
    local bad = {}
    for k, n in pairs(want) do
        if got[k] ~= n then
            bad[#bad + 1] = fmt("%s=%s want %d", k, tostring(got[k]), n)
        end
    end
    for k, g in pairs(got) do
        if want[k] == nil then bad[#bad + 1] = fmt("%s=%s want none", k, g) end
    end
    if #bad > 0 then
        table.sort(bad)
        fail(round, fmt("%s: %d wrong keys, e.g. %s", what, #bad,
                        table.concat(bad, ", ", 1, math.min(#bad, 6))))
    end
end

local function read_ckpt(round)
    local text = h.read_file(round.dir .. "/jobs/" .. NAME .. "/checkpoint.json")
    if not text then return nil end
    local ok, doc = pcall(cjson.decode, text)
    if not ok then fail(round, "checkpoint.json does not parse: " .. text) end
    return doc
end

-- The counts the input makes up to the checkpoint's offsets.
local function committed_truth(round, doc)
    local want = {}
    for p = 0, PARTS - 1 do
        local t = doc and doc.tasks[tostring(p)]
        local upto = t and t.inputs["local:events"] or 0
        local keys = round.keys[p]
        if upto > #keys then
            fail(round, fmt("checkpoint of task %d is at %d, past the %d "
                            .. "events", p, upto, #keys))
        end
        for i = 1, upto do
            local k = keys[i]
            want[k] = (want[k] or 0) + 1
        end
    end
    return want
end

local function check_state(round, what)
    local doc = read_ckpt(round)
    if not doc then
        return 0    -- never committed: the next run starts empty
    end
    local want = committed_truth(round, doc)
    compare(round, want, dump(round, "counts"), what .. ": store 'counts'")
    compare(round, want, dump(round, "mem"), what .. ": store 'mem'")
    local done = 0
    for p = 0, PARTS - 1 do
        local t = doc and doc.tasks[tostring(p)]
        done = done + (t and t.inputs["local:events"] or 0)
    end
    return done
end

-- Every count 1..n of a key appears in counts-out, none above n (outputs
-- are at-least-once: a count may appear more than once).
local function check_outputs(round, truth)
    local r = h.tide({ "consume", "counts-out", "-e", "-f", "%k\\t%s\\n" },
                     { dir = round.dir })
    if r.code ~= 0 then
        fail(round, "tide consume counts-out exited " .. r.code .. ": " .. r.err)
    end
    local seen = {}
    for k, v in r.out:gmatch("([^\t\n]*)\t([^\n]*)\n") do
        local n = tonumber(v)
        if not truth[k] or n > truth[k] or n < 1 then
            fail(round, fmt("counts-out has %s=%s, the input makes %s", k, v,
                            tostring(truth[k])))
        end
        seen[k] = seen[k] or {}
        seen[k][n] = true
    end
    for k, n in pairs(truth) do
        for i = 1, n do
            if not (seen[k] and seen[k][i]) then
                fail(round, fmt("counts-out lacks %s=%d (count %d)", k, i, n))
            end
        end
    end
end

-- ---- input ---------------------------------------------------------------------

local function append_events(round, n)
    local path = round.work .. "/events.txt"
    h.write_lines(path, n, function(i)
        local k = "k" .. rand(0, KEYS - 1)
        round.truth[k] = (round.truth[k] or 0) + 1
        return k .. ":" .. (round.produced + i)
    end)
    h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
         { dir = round.dir, stdin_file = path })
    os.remove(path)
    round.produced = round.produced + n
    -- the keys of each partition in offset order
    for p = 0, PARTS - 1 do round.keys[p] = {} end
    local out = h.ok({ "consume", "events", "-e", "-f", "%p\\t%k\\n" },
                     { dir = round.dir })
    for p, k in out:gmatch("(%d+)\t([^\n]*)\n") do
        local t = round.keys[tonumber(p)]
        t[#t + 1] = k
    end
end

-- ---- one kill ------------------------------------------------------------------

local function wait_rc(job, secs)
    for _ = 1, secs * 100 do
        local rc = tonumber(h.read_file(job.base .. ".rc") or "")
        if rc then return rc end
        h.sleep(0.01)
    end
end

local function started(job)
    return h.tide_stderr(job):find("job '" .. NAME .. "' started", 1, true)
end

local MODES = { "early", "mid", "mid1ms", "stopkill", "stopcont" }

local function one_kill(round, stats)
    local mode = MODES[rand(1, #MODES)]
    local args = { "run", JOB }
    if mode == "mid1ms" or rand() < 0.2 then
        args[#args + 1] = "-c"
        args[#args + 1] = "commit_interval=1ms"
    end
    local job = h.start_tide(round.dir, round.work, args)
    if mode ~= "early" then
        for _ = 1, 3000 do
            if started(job) or h.read_file(job.base .. ".rc") then break end
            h.sleep(0.005)
        end
    end
    h.sleep(rand() * (mode == "early" and 0.4 or 0.25))
    if mode == "stopkill" or mode == "stopcont" then
        os.execute("kill -STOP " .. job.pid .. " 2>/dev/null")
        h.sleep(0.02 + rand() * 0.08)
        if mode == "stopcont" then
            os.execute("kill -CONT " .. job.pid .. " 2>/dev/null")
            h.sleep(rand() * 0.1)
        end
    end
    os.execute("kill -9 " .. job.pid .. " 2>/dev/null")
    local rc = wait_rc(job, 60)
    if rc ~= 137 then
        fail(round, fmt("tide run ended with %s before its SIGKILL; stderr:\n%s",
                        tostring(rc), h.tide_stderr(job)))
    end
    stats.kills = stats.kills + 1
    stats[mode] = (stats[mode] or 0) + 1
    local done = check_state(round, fmt("after kill %d (%s)", stats.kills, mode))
    -- between runs: lose a snapshot slot, or the whole local stores
    local r = rand()
    if r < 0.1 then
        local slot = fmt("%s/jobs/%s/stores/%s/%d/snap.%s", round.dir, NAME,
                         rand() < 0.5 and "counts" or "mem", rand(0, PARTS - 1),
                         rand() < 0.5 and "a" or "b")
        h.sh("rm -rf " .. h.q(slot))
        stats.slots = stats.slots + 1
    elseif r < 0.13 then
        h.sh("rm -rf " .. h.q(fmt("%s/jobs/%s/stores", round.dir, NAME)))
        stats.wipes = stats.wipes + 1
    end
    if done >= round.produced then
        append_events(round, BATCH)
    end
    os.remove(job.base .. ".out")
    os.remove(job.base .. ".err")
end

-- ---- rounds --------------------------------------------------------------------

local stats = { kills = 0, rounds = 0, slots = 0, wipes = 0 }

local function changelogs(round)
    for _, store in ipairs({ "counts", "mem" }) do
        h.ok({ "streams", "create", NAME .. "-" .. store .. "-changelog",
               "--partitions", tostring(PARTS), "--compact",
               "--segment-bytes", "16384" }, { dir = round.dir })
    end
end

local function one_round(n)
    local round = { n = n, dir = h.tmpdir(), work = h.tmpdir(), truth = {},
                    produced = 0, keys = {} }
    local ok, err = pcall(function()
        changelogs(round)
        append_events(round, BATCH)
        for _ = 1, KILLS_PER_ROUND do
            if stats.kills >= opts.kills or now() >= DEADLINE then break end
            one_kill(round, stats)
        end
        local r = h.tide({ "run", JOB, "--drain" }, { dir = round.dir })
        if r.code ~= 0 then
            fail(round, "the final --drain exited " .. r.code .. ": " .. r.err)
        end
        local done = check_state(round, "after the final drain")
        if done ~= round.produced then
            fail(round, fmt("%d of %d events processed after --drain", done,
                            round.produced))
        end
        compare(round, round.truth, dump(round, "counts"), "final 'counts'")
        check_outputs(round, round.truth)
    end)
    h.kill_started(round.work)
    h.rmdir(round.work)
    if ok then
        if not opts.keep then h.rmdir(round.dir) end
        stats.rounds = stats.rounds + 1
        log("crash_loop: round %d exact: %d events, %d kills so far "
            .. "(%.0f s)", n, round.produced, stats.kills, now() - T0)
        return true
    end
    io.stderr:write(tostring(err), "\n")
    return false
end

log("crash_loop: seed %d, up to %.1f minutes%s", SEED, opts.minutes,
    opts.kills < math.huge and fmt(" or %d kills", opts.kills) or "")
local n = 0
while stats.kills < opts.kills and now() < DEADLINE do
    n = n + 1
    if not one_round(n) then
        os.exit(1)
    end
end
local modes = {}
for _, m in ipairs(MODES) do modes[#modes + 1] = fmt("%s %d", m, stats[m] or 0) end
print(fmt("crash_loop: %d rounds, %d SIGKILLs (%s), %d snapshot slots "
          .. "deleted, %d stores wiped, in %.0f s: state and outputs exact "
          .. "after every kill (seed %d)", stats.rounds, stats.kills,
          table.concat(modes, ", "), stats.slots, stats.wipes, now() - T0,
          SEED))
