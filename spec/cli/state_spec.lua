-- End to end: job state as a user sees it (docs/design.md section 4: "State is
-- exactly-once", "Commit order", "Restore"; issue 4 "Must show"). The real
-- `tide` binary runs spec/cli/jobs/counter.lua (a keyed incr job) and
-- jobs/pageview_counts.lua over fresh data dirs; background runs are killed
-- with SIGKILL at random moments. The random seed is printed; rerun with
-- TIDE_STATE_SEED=<seed> to repeat the same input and kill delays.
local h = require("cli.helper")
local cjson = require("cjson")

local ASAN = (os.getenv("TIDE_BUILD_DIR") or ""):find("asan") ~= nil
local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local COUNTER = SRC .. "/spec/cli/jobs/counter.lua"
local PAGEVIEWS = SRC .. "/jobs/pageview_counts.lua"
local GEN = SRC .. "/scripts/gen_pageviews.lua"

-- The "Must show" sizes; smaller under ASan so the file stays well under
-- 90 s there too.
local N_MATRIX = ASAN and 60000 or 300000
local KEYS = 5000
local N_BIG = ASAN and 60000 or 200000      -- distinct keys, crash in restore
local N_STATE = ASAN and 40000 or 100000    -- full restore, host affinity
local N_VIEWS = ASAN and 10000 or 50000
local PARTS = 4

local fmt = string.format

local SEED = tonumber(os.getenv("TIDE_STATE_SEED") or "")
if not SEED then
  -- time plus some bits of the clock, so that two runs in a second differ
  SEED = os.time() * 1000 + math.floor((os.clock() * 1e6) % 1000)
end
io.stderr:write(fmt("state_spec: seed %d (rerun with TIDE_STATE_SEED=%d)\n",
                    SEED, SEED))
math.randomseed(SEED)
local rand = math.random

-- ---- helpers -----------------------------------------------------------------

-- Writes lines "<key>:<n>" for the given list of keys to path and returns
-- { [key] = count }.
local function write_events(path, keys, first)
  local truth = {}
  h.write_lines(path, #keys, function(i)
    local k = keys[i]
    truth[k] = (truth[k] or 0) + 1
    return k .. ":" .. ((first or 0) + i)
  end)
  return truth
end

-- n keys drawn at random from k0..k<nkeys-1>.
local function random_keys(n, nkeys)
  local t = {}
  for i = 1, n do t[i] = "k" .. rand(0, nkeys - 1) end
  return t
end

local function add_into(total, t)
  for k, n in pairs(t) do total[k] = (total[k] or 0) + n end
  return total
end

local function produce(dir, path)
  h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
       { dir = dir, stdin_file = path })
end

-- `tide state dump JOB STORE`: returns { [key] = value } and the raw text.
-- Fails on a non-zero exit, any stderr, or a key printed twice.
local function dump(dir, job, store)
  local out = h.ok({ "state", "dump", job or COUNTER, store or "counts" },
                   { dir = dir })
  local t, dup = {}, nil
  for _, l in ipairs(h.lines(out)) do
    local k, v = l:match("^([^\t]*)\t(.*)$")
    assert(k, "bad dump line: " .. l)
    if t[k] ~= nil then dup = dup or k end
    t[k] = v
  end
  assert(dup == nil, "key '" .. tostring(dup) .. "' dumped twice")
  return t, out
end

-- Sorted dump text (the order over tasks is not part of the contract).
local function sorted_dump(dir)
  local _, out = dump(dir)
  local l = h.lines(out)
  table.sort(l)
  return table.concat(l, "\n")
end

-- Asserts that got[k] == want[k] for every key of both (values compared
-- as numbers), naming the first few keys that are doubled, short, lost or
-- unexpected.
local function assert_counts(want, got, what)
  local bad, nbad = {}, 0
  local function note(s)
    nbad = nbad + 1
    if #bad < 8 then bad[#bad + 1] = s end
  end
  for k, n in pairs(want) do
    local g = got[k]
    if g == nil then
      note(fmt("key '%s' lost (want %d)", k, n))
    elseif tonumber(g) ~= n then
      note(fmt("key '%s' is %s, want %d%s", k, tostring(g), n,
               (tonumber(g) or 0) > n and " (counted twice?)" or " (lost)"))
    end
  end
  for k, g in pairs(got) do
    if want[k] == nil then note(fmt("unexpected key '%s' = %s", k, g)) end
  end
  assert(nbad == 0, fmt("%s: %d wrong keys, e.g.\n  %s", what, nbad,
                        table.concat(bad, "\n  ")))
end

-- The last record per key of stream `name` ({ [key] = value }), checking
-- that each partition's offsets follow each other and that every key is
-- in one partition only.
local function last_per_key(dir, name)
  local out = h.ok({ "consume", name, "-e", "-f", "%p\\t%o\\t%k\\t%s\\n" },
                   { dir = dir })
  local last, part, next_off, bad = {}, {}, {}, nil
  for p, o, k, v in out:gmatch("(%d+)\t(%d+)\t([^\t]*)\t([^\n]*)\n") do
    p, o = tonumber(p), tonumber(o)
    if o ~= (next_off[p] or 0) then
      bad = bad or fmt("%s partition %d: offset %d where %d was due", name, p,
                       o, next_off[p] or 0)
    end
    next_off[p] = o + 1
    if part[k] and part[k] ~= p then
      bad = bad or fmt("%s: key '%s' in partitions %d and %d", name, k,
                       part[k], p)
    end
    part[k], last[k] = p, v
  end
  assert(bad == nil, bad)
  return last
end

local function ckpt_path(dir, job)
  return fmt("%s/jobs/%s/checkpoint.json", dir, job or "counter")
end

local function read_ckpt(dir, job)
  local text = h.read_file(ckpt_path(dir, job))
  return text and cjson.decode(text)
end

-- Sum over tasks of the checkpointed offsets of input "local:events".
local function done_of(dir)
  local doc = read_ckpt(dir)
  local s = 0
  for _, t in pairs(doc and doc.tasks or {}) do
    s = s + (t.inputs["local:events"] or 0)
  end
  return s
end

local function store_dir(dir, p)
  return fmt("%s/jobs/counter/stores/counts/%d", dir, p)
end

-- md5 of every file under the given paths: a fingerprint of bytes on disk.
local function fingerprint(...)
  local words = {}
  for _, p in ipairs({ ... }) do words[#words + 1] = h.q(p) end
  return h.sh("find " .. table.concat(words, " ")
              .. " -type f -not -name LOCK -not -name run.lock "
              .. "-exec md5sum {} + 2>/dev/null | sort -k 2")
end

local start = h.start_tide

local stderr_of = h.tide_stderr

-- Waits (a 60 s hang guard, not a timing assertion) until job's stderr
-- contains plain string s; false if the job exited first.
local function wait_log(job, s)
  for _ = 1, 6000 do
    if stderr_of(job):find(s, 1, true) then return true end
    if h.read_file(job.base .. ".rc") then return false end
    h.sleep(0.01)
  end
  error(fmt("no '%s' in the log of pid %d within 60 s; stderr:\n%s", s,
            job.pid, stderr_of(job)), 2)
end

local wait_exit = h.wait_exit

-- SIGKILLs a background run that must still be running; returns its
-- stderr.
local function kill9(job)
  assert(h.alive(job.pid), "tide exited before the SIGKILL; stderr:\n"
         .. stderr_of(job))
  os.execute("kill -9 " .. job.pid .. " 2>/dev/null")
  local rc = wait_exit(job)
  assert.are.equal(137, rc, stderr_of(job))
  return stderr_of(job)
end

-- `tide run JOB --drain`, which must exit 0; returns its stderr.
local function drain(dir, job, extra)
  local args = { "run", job or COUNTER }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  args[#args + 1] = "--drain"
  args[#args + 1] = "--log-level=debug"   -- restore lines of empty replays
  local r = h.tide(args, { dir = dir })
  assert.are.equal(0, r.code, r.err)
  assert.matches("stopped cleanly", r.err, 1, true)
  return r.err
end

-- The restore log lines of a run: { [task] = line }.
local function restore_lines(err)
  local t = {}
  for p, l in err:gmatch("store 'counts' task (%d+): ([^\n]*)") do
    t[tonumber(p)] = l
  end
  return t
end

-- Asserts that stderr `err` holds exactly one line starting "tide CMD:",
-- holding every plain string of `patterns`, and no traceback; returns it.
local function assert_error_line(r, cmd, patterns)
  assert.are_not.equal(0, r.code, "exit 0; stderr: " .. r.err)
  assert.is_true(r.code < 128, "killed by a signal? exit " .. r.code
                 .. "\n" .. r.err)
  local found
  for _, l in ipairs(h.lines(r.err)) do
    if l:find("^tide " .. cmd .. ": ") then
      assert.is_nil(found, "two error lines:\n" .. r.err)
      found = l
    end
  end
  assert.is_not_nil(found, "no 'tide " .. cmd .. ":' line:\n" .. r.err)
  for _, bad in ipairs({ "traceback", "AddressSanitizer", "runtime error",
                         "Segmentation", "assertion" }) do
    assert.is_nil(r.err:find(bad, 1, true), bad .. " in:\n" .. r.err)
  end
  for _, p in ipairs(patterns) do
    assert.matches(p, found, 1, true)
  end
  return found
end

-- ---- specs ---------------------------------------------------------------------

describe("job state", function()
  local dir, work

  before_each(function() dir, work = h.tmpdir(), h.tmpdir() end)
  after_each(function() h.kill_ours(nil, work, dir) end)

  -- A clean run over `n` random events of KEYS keys; returns the truth.
  local function counted(n)
    local input = work .. "/events.txt"
    local truth = write_events(input, random_keys(n, KEYS))
    produce(dir, input)
    os.remove(input)
    return truth
  end

  describe("killed with SIGKILL at random moments", function()
    it("ends with exactly the true count of every key, in the store and in "
       .. "the last output per key", function()
      local input = work .. "/events.txt"
      local truth = write_events(input, random_keys(N_MATRIX, KEYS))
      produce(dir, input)
      os.remove(input)
      -- the keys of each input partition in offset order, for the state
      -- due at a checkpoint
      local in_keys = {}
      for p = 0, PARTS - 1 do in_keys[p] = {} end
      local ev = h.ok({ "consume", "events", "-e", "-f", "%p\\t%o\\t%k\\n" },
                      { dir = dir })
      for p, o, k in ev:gmatch("(%d+)\t(%d+)\t([^\n]*)\n") do
        local t = in_keys[tonumber(p)]
        assert(tonumber(o) == #t, "events partition " .. p .. " offset " .. o)
        t[#t + 1] = k
      end
      ev = nil
      local function committed_truth(doc)
        local want = {}
        for p = 0, PARTS - 1 do
          local task = doc.tasks[tostring(p)]
          for i = 1, task and task.inputs["local:events"] or 0 do
            local k = in_keys[p][i]
            want[k] = (want[k] or 0) + 1
          end
        end
        return want
      end

      -- the kill plan: early (from the spawn: startup, restore and the
      -- roll-back of keys written after the checkpoint), and from the
      -- "started" line: mid-run with the job's 50 ms commits, and with 1 ms
      -- commits so that kills land in commits
      local plan = {}
      for _ = 1, 4 do plan[#plan + 1] = { delay = rand() * 0.05 } end
      for _ = 1, 5 do
        plan[#plan + 1] = { delay = 0.01 + rand() * 0.15, commit = "1ms",
                            after_start = true }
      end
      for _ = 1, 5 do
        plan[#plan + 1] = { delay = 0.02 + rand() * 0.15, after_start = true }
      end
      for i = #plan, 2, -1 do
        local j = rand(1, i)
        plan[i], plan[j] = plan[j], plan[i]
      end
      -- after three of the kills the local stores are lost too (a new
      -- host): the next start rebuilds them from the changelog, whose tail
      -- holds writes made after the checkpoint
      for _ = 1, 3 do plan[rand(1, #plan)].wipe = true end

      local stats = { startup = 0, mid = 0, in_commit = 0, rolled_back = 0 }
      local delays, snaps = {}, {}
      for _, k in ipairs(plan) do
        local args = { "run", COUNTER }
        if k.commit then
          args[#args + 1] = "-c"
          args[#args + 1] = "commit_interval=" .. k.commit
        end
        local job = start(dir, work, args)
        if k.after_start then
          wait_log(job, "job 'counter' started")
        end
        h.sleep(k.delay)
        local err = kill9(job)
        delays[#delays + 1] = fmt("%s%.0fms%s", k.after_start and "+" or "",
                                  k.delay * 1000, k.commit and "/c1ms" or "")
        delays[#delays] = delays[#delays] .. "@" .. done_of(dir)
        if not err:find("job 'counter' started", 1, true) then
          stats.startup = stats.startup + 1
        elseif done_of(dir) < N_MATRIX then
          stats.mid = stats.mid + 1
        end
        if err:find("rolled back", 1, true) then
          stats.rolled_back = stats.rolled_back + 1
        end
        -- a snapshot written by this run and newer than the checkpoint:
        -- the kill came between commit steps 3 and 4
        local doc, ahead = read_ckpt(dir), false
        for p = 0, PARTS - 1 do
          local want = doc and doc.tasks[tostring(p)]
          want = want and want.changelogs.counts or 0
          for _, slot in ipairs({ "snap.a", "snap.b" }) do
            local path = store_dir(dir, p) .. "/" .. slot .. "/TIDE_OFFSET"
            local off = tonumber(h.read_file(path) or "")
            if off and off > want and snaps[path] ~= off then ahead = true end
            snaps[path] = off
          end
        end
        if ahead then stats.in_commit = stats.in_commit + 1 end
        -- the state of a killed job is that of its checkpoint's input
        if doc then
          assert_counts(committed_truth(doc), dump(dir), fmt(
            "tide state dump after kill %d (%s)", #delays, delays[#delays]))
        end
        if k.wipe then
          snaps = {}
          h.sh("rm -rf " .. h.q(dir .. "/jobs/counter/stores"))
          delays[#delays] = delays[#delays] .. "/wipe"
        end
      end
      local err = drain(dir)
      if err:find("rolled back", 1, true) then
        stats.rolled_back = stats.rolled_back + 1
      end
      io.stderr:write(fmt("\n  crash matrix (seed %d): %d kills at %s (+: after "
                          .. "'started'; @: messages committed); %d in "
                          .. "startup/restore, %d mid-run, %d between a "
                          .. "snapshot and its checkpoint, %d restarts rolled "
                          .. "back keys\n", SEED, #plan,
                          table.concat(delays, " "), stats.startup, stats.mid,
                          stats.in_commit, stats.rolled_back))
      assert.is_true(stats.mid > 0, "no SIGKILL landed in the middle of the "
                     .. "work (seed " .. SEED .. ")")

      assert.are.equal(N_MATRIX, done_of(dir))
      assert_counts(truth, dump(dir), "tide state dump after the crashes")
      assert_counts(truth, last_per_key(dir, "counts-out"),
                    "last counts-out record per key")
    end)
  end)

  describe("killed during a restore from the changelog", function()
    it("restores again and keeps the state exact", function()
      -- a large state: N_BIG distinct keys, then more events on them
      local keys = {}
      for i = 1, N_BIG do keys[i] = "big" .. i end
      local input = work .. "/events.txt"
      local truth = write_events(input, keys)
      produce(dir, input)
      drain(dir)
      local more = {}
      for i = 1, 20000 do more[i] = "big" .. rand(1, N_BIG) end
      add_into(truth, write_events(input, more, N_BIG))
      produce(dir, input)
      os.remove(input)

      -- no local stores: every start rebuilds every task from the
      -- changelog; kill it once the first task is restored
      h.sh("rm -rf " .. h.q(dir .. "/jobs/counter/stores"))
      local in_restore = 0
      for _ = 1, 3 do
        local job = start(dir, work, { "run", COUNTER })
        -- (any task: a worker that restored its tasks may commit, and
        -- snapshot them, while another worker still restores)
        wait_log(job, "rebuilt from the changelog")
        local err = kill9(job)
        if not err:find("job 'counter' started", 1, true) then
          in_restore = in_restore + 1
        end
      end
      assert.is_true(in_restore > 0, "no SIGKILL landed during the restore")

      drain(dir)
      assert_counts(truth, dump(dir), "tide state dump")
      assert_counts(truth, last_per_key(dir, "counts-out"),
                    "last counts-out record per key")
    end)
  end)

  describe("with the local stores deleted", function()
    it("rebuilds exactly the same state from the changelog", function()
      local truth = counted(N_STATE)
      drain(dir)
      local before = sorted_dump(dir)
      assert_counts(truth, dump(dir), "tide state dump")
      local doc = read_ckpt(dir)

      h.sh("rm -rf " .. h.q(dir .. "/jobs/counter/stores"))
      local err = drain(dir)
      assert.matches(" 0 messages processed", err, 1, true)
      local lines = restore_lines(err)
      for p = 0, PARTS - 1 do
        local off = doc.tasks[tostring(p)].changelogs.counts
        local l = lines[p]
        assert.is_not_nil(l, "no restore line for task " .. p .. ":\n" .. err)
        assert.matches("rebuilt from the changelog to checkpoint offset "
                       .. off, l, 1, true)
        local n = tonumber(l:match("replayed (%d+) changelog records"))
        assert.is_not_nil(n, l)
        -- every key of the task at least once; no more than the changelog
        -- holds up to the checkpoint
        assert.is_true(n > 0 and n <= off, l)
      end
      assert.are.equal(before, sorted_dump(dir))
      -- and the rebuilt stores are the new local ones
      err = drain(dir)
      for p = 0, PARTS - 1 do
        assert.matches("from local snapshot", restore_lines(err)[p], 1, true)
      end
      assert.are.equal(before, sorted_dump(dir))
    end)
  end)

  describe("restarted with its local stores", function()
    it("replays nothing after a clean stop", function()
      counted(N_STATE)
      drain(dir)
      local doc = read_ckpt(dir)
      local err = drain(dir)
      local lines = restore_lines(err)
      for p = 0, PARTS - 1 do
        local off = doc.tasks[tostring(p)].changelogs.counts
        assert.are.equal(fmt("from local snapshot at offset %d to checkpoint "
                             .. "offset %d, replayed 0 changelog records",
                             off, off),
                         ((lines[p] or ""):match("^[^(]*"):gsub("%s+$", "")),
                         err)
      end
    end)

    it("replays only the tail after a snapshot left behind, ignoring a "
       .. "slot without its offset file", function()
      local truth = counted(N_STATE / 2)
      drain(dir)
      -- keep task 0's snapshot of this point
      local sd = store_dir(dir, 0)
      local old = tonumber(h.read_file(sd .. "/snap.a/TIDE_OFFSET"))
      assert.are.equal(read_ckpt(dir).tasks["0"].changelogs.counts, old)
      h.sh(fmt("cp -a %s %s", h.q(sd .. "/snap.a"), h.q(work .. "/old-snap")))

      add_into(truth, counted(N_STATE / 2))
      drain(dir)
      local new = read_ckpt(dir).tasks["0"].changelogs.counts
      assert.is_true(new > old, fmt("changelog offsets %d then %d", old, new))
      -- task 0: the old snapshot in one slot, the other slot without its
      -- offset file (as after a crash while writing it)
      h.sh(fmt("rm -rf %s && cp -a %s %s && rm -f %s",
               h.q(sd .. "/snap.a"), h.q(work .. "/old-snap"),
               h.q(sd .. "/snap.a"), h.q(sd .. "/snap.b/TIDE_OFFSET")))

      local err = drain(dir)
      assert.matches(" 0 messages processed", err, 1, true)
      local l = restore_lines(err)[0] or ""
      assert.matches(fmt("from local snapshot at offset %d to checkpoint "
                         .. "offset %d, replayed %d changelog records", old,
                         new, new - old), l, 1, true)
      for p = 1, PARTS - 1 do
        assert.matches("replayed 0 changelog records", restore_lines(err)[p],
                       1, true)
      end
      assert_counts(truth, dump(dir), "tide state dump")
    end)

    it("rolls a store that is ahead of the checkpoint back to it",
       function()
      local truth = counted(N_STATE / 2)
      drain(dir)
      local saved = h.read_file(ckpt_path(dir))
      add_into(truth, counted(N_STATE / 2))
      drain(dir)
      -- the stores and changelogs are at the end, the checkpoint halfway:
      -- as after a crash between the snapshot and the checkpoint
      h.write_file(ckpt_path(dir), saved)
      local err = drain(dir)
      assert.matches(" " .. (N_STATE / 2) .. " messages processed", err, 1,
                     true)
      assert.matches("rolled back %d+ keys written after the checkpoint", err)
      assert_counts(truth, dump(dir), "tide state dump")
      assert_counts(truth, last_per_key(dir, "counts-out"),
                    "last counts-out record per key")
    end)
  end)

  describe("with a bad checkpoint", function()
    local truth
    before_each(function()
      truth = counted(N_STATE / 4)
      drain(dir)
    end)

    it("fails with one line naming a corrupt checkpoint.json, touching "
       .. "nothing", function()
      local path = ckpt_path(dir)
      local good = h.read_file(path)
      local garbage = "\0\1{\"version\":1,garbage" .. good:sub(20, 60)
      h.write_file(path, garbage)
      local before = fingerprint(dir .. "/jobs", dir .. "/streams")
      local r = h.tide({ "run", COUNTER, "--drain" }, { dir = dir })
      assert_error_line(r, "run", { path, "corrupt checkpoint" })
      assert.are.equal(1, #h.lines(r.err), r.err)
      r = h.tide({ "state", "dump", COUNTER, "counts" }, { dir = dir })
      assert_error_line(r, "state", { path, "corrupt checkpoint" })
      assert.are.equal("", r.out)
      assert.are.equal(before, fingerprint(dir .. "/jobs", dir .. "/streams"))
      assert.are.equal(garbage, h.read_file(path))
      -- the good file back: the state is as it was
      h.write_file(path, good)
      assert.matches(" 0 messages processed", drain(dir), 1, true)
      assert_counts(truth, dump(dir), "tide state dump")
    end)

    it("fails clearly when a changelog offset is beyond the changelog's "
       .. "end", function()
      local path = ckpt_path(dir)
      local good = h.read_file(path)
      local doc = cjson.decode(good)
      local task = doc.tasks["2"]
      local off = task.changelogs.counts
      task.changelogs.counts = off + 1000
      local bad = cjson.encode(doc)
      h.write_file(path, bad)
      local streams = fingerprint(dir .. "/streams")
      local cl = "counter-counts-changelog"
      for _, args in ipairs({ { "run", COUNTER, "--drain" },
                              { "state", "dump", COUNTER, "counts" } }) do
        local r = h.tide(args, { dir = dir })
        assert_error_line(r, args[1], { "truncated or replaced", cl,
                                        "partition 2", tostring(off),
                                        tostring(off + 1000) })
        assert.are.equal("", r.out)
      end
      assert.are.equal(streams, fingerprint(dir .. "/streams"))
      assert.are.equal(bad, h.read_file(path))
      h.write_file(path, good)
      assert.matches(" 0 messages processed", drain(dir), 1, true)
      assert_counts(truth, dump(dir), "tide state dump")

      -- the changelog replaced by an empty one
      h.sh("rm -rf " .. h.q(dir .. "/streams/" .. cl))
      local r = h.tide({ "run", COUNTER, "--drain" }, { dir = dir })
      assert_error_line(r, "run", { "truncated or replaced", cl })
    end)
  end)

  describe("tide state dump", function()
    it("refuses a running job, naming its pid, and an unknown store, "
       .. "naming the stores", function()
      counted(1000)
      local job = start(dir, work, { "run", COUNTER })
      assert.is_true(wait_log(job, "job 'counter' started"), stderr_of(job))
      local r = h.tide({ "state", "dump", COUNTER, "counts" }, { dir = dir })
      assert_error_line(r, "state", { "'counter'", "running",
                                      "pid " .. job.pid })
      assert.are.equal(1, #h.lines(r.err), r.err)
      assert.are.equal("", r.out)
      assert.is_true(h.alive(job.pid))
      os.execute("kill -TERM " .. job.pid)
      assert.are.equal(0, wait_exit(job), stderr_of(job))

      r = h.tide({ "state", "dump", COUNTER, "nope" }, { dir = dir })
      assert_error_line(r, "state", { "no store 'nope'", "stores: counts" })
      assert.are.equal(1, #h.lines(r.err), r.err)
      assert.are.equal("", r.out)
      -- and now it works
      local t = dump(dir)
      assert.is_not_nil(next(t))
    end)

    it("prints the page views per URL of jobs/pageview_counts.lua",
       function()
      local input = work .. "/views.txt"
      h.sh(fmt("luajit %s %d %d >%s", h.q(GEN), N_VIEWS, SEED % 100000,
               h.q(input)))
      local want, n = {}, 0
      for _, l in ipairs(h.lines(h.read_file(input))) do
        local ev = cjson.decode(l:match("^[^\t]*\t(.*)$"))
        want[ev.url] = (want[ev.url] or 0) + 1
        n = n + 1
      end
      assert.are.equal(N_VIEWS, n)
      h.ok({ "produce", "pageviews", "--partitions", tostring(PARTS), "-K",
             "\t" }, { dir = dir, stdin_file = input })
      drain(dir, PAGEVIEWS)
      local got = dump(dir, PAGEVIEWS, "counts")
      assert_counts(want, got, "pageview counts per URL")
      -- The same views in another stream, counted by the job with its
      -- input overridden (as make demo does): state dump takes the same
      -- -c, and checks the checkpoint against the job they make.
      local other = h.tmpdir()
      h.ok({ "produce", "pv-other", "--partitions", tostring(PARTS), "-K",
             "\t" }, { dir = other, stdin_file = input })
      drain(other, PAGEVIEWS, { "-c", "inputs.1=pv-other" })
      local r = h.tide({ "state", "dump", PAGEVIEWS, "counts" },
                       { dir = other })
      assert.are_not.equal(0, r.code)
      assert.matches("does not read", r.err, 1, true)
      local out = h.ok({ "state", "dump", PAGEVIEWS, "counts", "-c",
                         "inputs.1=pv-other" }, { dir = other })
      local over = {}
      for k, v in out:gmatch("([^\t\n]*)\t([^\n]*)\n") do over[k] = v end
      -- By the job's name: the file and the -c its last run used.
      assert.are.equal(out, h.ok({ "state", "dump", "pageview-counts",
                                   "counts" }, { dir = other }))
      local r2 = h.tide({ "state", "dump", "never-ran", "counts" },
                        { dir = other })
      assert_error_line(r2, "state", { "job 'never-ran' has not run",
                                       "give its job file" })
      -- A damaged record: one line naming it, and what to do instead.
      h.write_file(other .. "/jobs/pageview-counts/job.json", "{not json")
      local r3 = h.tide({ "state", "dump", "pageview-counts", "counts" },
                        { dir = other })
      assert_error_line(r3, "state", { "job.json' is damaged",
                                       "give the job file" })
      h.rmdir(other)
      assert_counts(want, over, "pageview counts per URL, input overridden")
      local sum = 0
      for _, v in pairs(got) do sum = sum + tonumber(v) end
      assert.are.equal(N_VIEWS, sum)
    end)
  end)
end)
