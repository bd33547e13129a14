-- End to end: the operator's commands (issue 15, "Operator tools"):
-- tide jobs list|describe, tide offsets reset, tide streams delete and
-- tide produce's -Z, -H, -D and FILE. The real `tide` binary runs real
-- jobs (spec/cli/jobs/counter.lua, ops_poison.lua, pass.lua) over
-- fresh data dirs; running jobs are stopped with SIGTERM.
local h = require("cli.helper")
local cjson = require("cjson")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local COUNTER = SRC .. "/spec/cli/jobs/counter.lua"
local POISON = SRC .. "/spec/cli/jobs/ops_poison.lua"
local PASS = SRC .. "/spec/cli/jobs/pass.lua"
local PARTS = 4

local fmt = string.format

-- ---- helpers -----------------------------------------------------------------

-- Writes n lines "k<i % nkeys>:<first + i>" to a file in `work`, feeds
-- them to `tide produce events`, and returns { [key] = count }.
local function produce_events(dir, work, n, nkeys, first)
  local path = work .. "/events.txt"
  local truth = {}
  h.write_lines(path, n, function(i)
    local k = "k" .. (i % nkeys)
    truth[k] = (truth[k] or 0) + 1
    return k .. ":" .. ((first or 0) + i)
  end)
  h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
       { dir = dir, stdin_file = path })
  return truth
end

local function add_into(total, t)
  for k, n in pairs(t) do total[k] = (total[k] or 0) + n end
  return total
end

-- Runs a job with --drain; fails unless it exits 0. Returns its stderr.
local function drain(dir, job)
  local _, r = h.ok({ "run", job, "--drain" }, { dir = dir, stderr_ok = true })
  return r.err
end

-- Writes n events (produce_events) and runs the counter over them to
-- their end. Returns { [key] = count }.
local function counted(dir, work, n, nkeys)
  local truth = produce_events(dir, work, n, nkeys)
  drain(dir, COUNTER)
  return truth
end

-- A fresh scratch dir per test of the enclosing describe, and nothing a
-- test started outlives it. Returns a function giving work, dir.
local function scratch_each()
  local cur = {}
  before_each(function() cur.work, cur.dir = h.scratch() end)
  after_each(function()
    h.kill_started(cur.work)
    h.rmdir(cur.work)
  end)
  return cur
end

-- `tide state dump JOB counts` as { [key] = number }.
local function counts(dir, job)
  local t = {}
  local out = h.ok({ "state", "dump", job or COUNTER, "counts" }, { dir = dir })
  for k, v in out:gmatch("([^\t\n]*)\t([^\n]*)\n") do t[k] = tonumber(v) end
  return t
end

local function assert_counts(want, got, what)
  for k, n in pairs(want) do
    assert(got[k] == n, fmt("%s: key '%s' is %s, want %d", what, k,
                            tostring(got[k]), n))
  end
  for k, g in pairs(got) do
    assert(want[k] ~= nil, fmt("%s: unexpected key '%s' = %s", what, k, g))
  end
end

local function checkpoint(dir, job)
  return h.read_file(fmt("%s/jobs/%s/checkpoint.json", dir, job))
end

-- The checkpoint's offset of input `key` in task p.
local function ckpt_offset(dir, job, p, key)
  local doc = cjson.decode((assert(checkpoint(dir, job))))
  local t = doc.tasks[tostring(p)]
  return t and t.inputs[key or "local:events"]
end

-- Every file under `d` with its size and content hash: what "nothing
-- changed" compares.
local function snapshot_of(d)
  -- run.lock is left out: taking the lock writes the holder's pid in it.
  return h.sh("cd " .. h.q(d) .. " && find . -type f ! -name run.lock "
              .. "-printf '%P %s\\n' | sort && find . -type f ! -name "
              .. "run.lock -exec md5sum {} + | sort")
end

-- The end offset of each partition of stream `name`: { [p] = end }.
local function ends(dir, name)
  local out = h.ok({ "streams", "describe", name }, { dir = dir })
  local t = {}
  for p, e in out:gmatch("\n%s+(%d+)%s+%d+%s+(%d+)") do
    t[tonumber(p)] = tonumber(e)
  end
  return t
end

local function records(dir, name)
  local out = h.ok({ "consume", name, "-e", "-f", "%p %o %k %s\\n" },
                   { dir = dir })
  return h.lines(out)
end

-- Asserts that a failed command printed one line naming `pat`.
local function one_line(r, code, pat)
  assert(r.code == code, fmt("exit %s, want %d; stderr: %s", tostring(r.code),
                             code, r.err))
  assert(#h.lines(r.err) == 1, "not one line: " .. r.err)
  assert(r.err:find(pat, 1, true), fmt("'%s' not in: %s", pat, r.err))
end

-- ---- tide jobs -------------------------------------------------------------------

describe("tide jobs", function()
  local work, dir
  before_each(function() work, dir = h.scratch() end)
  after_each(function()
    h.kill_started(work)
    h.rmdir(work)
  end)

  it("list shows a running job with its pid, and a stopped one with its lag, "
     .. "stores and last commit", function()
    counted(dir, work, 2000, 50)
    h.ok({ "produce", "pings", "--partitions", "2" },
         { dir = dir, stdin = "a\nb\n" })
    local job = h.start_tide(dir, work, { "run", PASS })
    h.wait_log(job, "job 'pass' started")
    produce_events(dir, work, 300, 50, 2000)     -- 300 not processed yet

    local out = h.ok({ "jobs", "list" }, { dir = dir })
    local l = h.lines(out)
    assert.matches("^JOB%s+STATUS%s+TASKS%s+LAG%s+STORES%s+LAST COMMIT$", l[1])
    assert.equals(3, #l, out)
    assert.matches("^counter%s+stopped%s+4%s+300%s+[%d.]+ [KM]i?B%s+%d%d%d%d%-",
                   l[2])
    assert.matches(fmt("^pass%%s+running %%(pid %d%%)%%s+2%%s+%%d+%%s+%%-",
                       job.pid), l[3])
    h.stop(job)
    out = h.ok({ "jobs", "list" }, { dir = dir })
    assert.matches("\npass%s+stopped%s+2%s+0%s", out)
  end)

  it("describe shows offsets, lag and store sizes per task, stopped and "
     .. "running", function()
    counted(dir, work, 2000, 50)
    local e = ends(dir, "events")
    local out = h.ok({ "jobs", "describe", "counter" }, { dir = dir })
    assert.matches("^job counter: stopped\n", out)
    assert.matches("\n  last commit %d%d%d%d%-%d%d%-%d%dT", out)
    assert.matches("\n  store       counts: [%d.]+ [KM]i?B on disk, changelog "
                   .. "counter%-counts%-changelog\n", out)
    local cl = ends(dir, "counter-counts-changelog")
    for p = 0, PARTS - 1 do
      assert.truthy(out:find(fmt("\ntask %d: lag 0\n  input local:events "
                                 .. "partition %d: committed %d, end %d, lag 0"
                                 .. "\n  store counts: ", p, p, e[p], e[p]),
                             1, true), out)
      assert.truthy(out:find(fmt("changelog offset %d\n", cl[p]), 1, true),
                    out)
    end
    -- Running: the job answers; its file and the positions show.
    produce_events(dir, work, 100, 50, 2000)
    local job = h.start_tide(dir, work, { "run", COUNTER })
    h.wait_log(job, "job 'counter' started")
    local e2 = ends(dir, "events")
    local deadline = h.now() + 30
    repeat
      out = h.ok({ "jobs", "describe", COUNTER }, { dir = dir })
      local caught_up = true
      for p = 0, PARTS - 1 do
        if not out:find(fmt("partition %d: committed %%d+, position %d, end "
                            .. "%d, lag 0", p, e2[p], e2[p])) then
          caught_up = false
        end
      end
      if caught_up then break end
      h.sleep(0.05)
    until h.now() > deadline
    assert.matches(fmt("^job counter: running %%(pid %d%%)\n", job.pid), out)
    assert.truthy(out:find("\n  file        " .. COUNTER .. "\n", 1, true), out)
    assert.matches("\ntask 0 RUNNING %(worker %d+%): lag 0\n", out)
    for p = 0, PARTS - 1 do
      assert.truthy(out:find(fmt("partition %d: committed %%d+, position %d, "
                                 .. "end %d, lag 0", p, e2[p], e2[p])), out)
    end
    h.stop(job)
  end)

  it("names what is wrong in one line", function()
    one_line(h.tide({ "jobs", "list" }, { dir = work .. "/nope" }), 1,
             "data dir '" .. work .. "/nope' does not exist")
    counted(dir, work, 10, 5)
    one_line(h.tide({ "jobs", "describe", "countr" }, { dir = dir }), 1,
             "no job 'countr' in data dir '" .. dir .. "' (jobs: counter)")
    one_line(h.tide({ "jobs", "show" }, { dir = dir }), 2,
             "expected 'jobs list' or 'jobs describe JOB'")
    one_line(h.tide({ "jobs", "list", "--fast" }, { dir = dir }), 2,
             "unknown option '--fast'")
  end)
end)

-- ---- tide offsets reset ------------------------------------------------------------

describe("tide offsets reset", function()
  local work, dir
  before_each(function() work, dir = h.scratch() end)
  after_each(function()
    h.kill_started(work)
    h.rmdir(work)
  end)

  it("refuses while the job runs, and changes nothing", function()
    local truth = produce_events(dir, work, 500, 20)
    local job = h.start_tide(dir, work, { "run", COUNTER })
    h.wait_log(job, "job 'counter' started")
    local r = h.tide({ "offsets", "reset", "counter", "--to", "earliest",
                       "--reset-state" }, { dir = dir })
    one_line(r, 1, "job 'counter' is running")
    assert.matches("stop it first", r.err)
    assert.equals("", r.out)
    assert.is_true(h.alive(job.pid))
    h.stop(job)
    -- Its state and offsets went on as if nothing was asked.
    assert_counts(truth, counts(dir), "after the refused reset")
    local e = ends(dir, "events")
    for p = 0, PARTS - 1 do
      assert.equals(e[p], ckpt_offset(dir, "counter", p) or 0)
    end
  end)

  it("--dry-run prints old -> new per partition and changes nothing",
     function()
    counted(dir, work, 2000, 50)
    local e = ends(dir, "events")
    local before = snapshot_of(dir)
    local out = h.ok({ "offsets", "reset", "counter", "--to", "earliest",
                       "--reset-state", "--dry-run" }, { dir = dir })
    assert.matches("^job 'counter': plan %(dry run: nothing is changed%)\n",
                   out)
    for p = 0, PARTS - 1 do
      assert.truthy(out:find(fmt("task %d  local:events partition %d: %d -> 0 "
                                 .. "(reads %d messages again)", p, p, e[p],
                                 e[p]), 1, true), out)
    end
    assert.matches("store counts, tasks 0,1,2,3: emptied", out)
    assert.equals(before, snapshot_of(dir))
  end)

  it("refuses a job with stores without --reset-state or --keep-state",
     function()
    counted(dir, work, 400, 40)
    local before = snapshot_of(dir)
    local r = h.tide({ "offsets", "reset", "counter", "--to", "earliest" },
                     { dir = dir })
    one_line(r, 2, "job 'counter' has stores (counts) whose state matches "
                   .. "the old offsets of tasks 0,1,2,3: add --reset-state")
    assert.equals("", r.out)
    assert.equals(before, snapshot_of(dir))
  end)

  it("--to latest: the job starts at the end, with its state", function()
    local truth = counted(dir, work, 1000, 30)
    produce_events(dir, work, 700, 30, 1000)      -- to be skipped
    local e = ends(dir, "events")
    local out = h.ok({ "offsets", "reset", "counter", "--to", "latest",
                       "--keep-state" }, { dir = dir })
    assert.matches("store counts, tasks 0,1,2,3: kept as it is\n", out)
    assert.matches("\n  done: ", out)
    for p = 0, PARTS - 1 do
      assert.equals(e[p], ckpt_offset(dir, "counter", p))
    end
    local out_before = #records(dir, "counts-out")
    truth = add_into(truth, produce_events(dir, work, 300, 30, 1700))
    drain(dir, COUNTER)
    -- Only the 300 written after the reset were processed.
    assert.equals(out_before + 300, #records(dir, "counts-out"))
    assert_counts(truth, counts(dir), "after --to latest")
  end)

  it("--to earliest --reset-state rebuilds the state from the inputs, "
     .. "also when restored from the changelog", function()
    local truth = counted(dir, work, 3000, 40)
    assert_counts(truth, counts(dir), "first run")
    h.ok({ "offsets", "reset", "counter", "--to", "earliest",
           "--reset-state" }, { dir = dir })
    for p = 0, PARTS - 1 do
      assert.equals(0, ckpt_offset(dir, "counter", p))
      assert.is_nil(h.read_file(fmt("%s/jobs/counter/stores/counts/%d/"
                                    .. "snap.a/TIDE_OFFSET", dir, p)))
      -- Compaction may pass nothing until the next commit.
      assert.equals("0\n", h.read_file(fmt("%s/streams/counter-counts-"
                                           .. "changelog/%d/stable", dir, p)))
    end
    drain(dir, COUNTER)
    -- Counted once, not on top of the old state.
    assert_counts(truth, counts(dir), "after the reset")
    -- The changelog agrees: without local stores, a start restores the
    -- same state from it alone.
    os.execute("rm -rf " .. h.q(dir .. "/jobs/counter/stores"))
    local log = drain(dir, COUNTER)
    assert.matches("rebuilt from the changelog", log)
    assert_counts(truth, counts(dir), "restored from the changelog")
  end)

  it("gets past a poison message under on_error = fail, with --input, "
     .. "--partition and --keep-state", function()
    -- Partition 0 holds a poison message at offset 5; the others are clean.
    h.ok({ "streams", "create", "events", "--partitions", "2" }, { dir = dir })
    local lines = {}
    for i = 0, 9 do lines[#lines + 1] = "a:" .. (i == 5 and "POISON" or i) end
    h.ok({ "produce", "events", "-K", ":", "-p", "0" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    h.ok({ "produce", "events", "-K", ":", "-p", "1" },
         { dir = dir, stdin = "b:1\nb:2\n" })
    local r = h.tide({ "run", POISON, "--drain" }, { dir = dir })
    assert.equals(1, r.code)
    assert.matches("partition 0 offset 5: .*poison message", r.err)
    -- The error line says how to skip it.
    assert.matches("to skip it: tide offsets reset ops_poison --input "
                   .. "events --partition 0 --to 6 --keep-state", r.err,
                   1, true)
    local p1 = ckpt_offset(dir, "ops_poison", 1)
    local out = h.ok({ "offsets", "reset", "ops_poison", "--to", "6",
                       "--input", "events", "--partition", "0",
                       "--keep-state" }, { dir = dir })
    assert.matches("task 0  local:events partition 0: %d+[^\n]* %-> 6 %(skips",
                   out)
    assert.not_matches("partition 1", out)
    assert.equals(6, ckpt_offset(dir, "ops_poison", 0))
    assert.equals(p1, ckpt_offset(dir, "ops_poison", 1))
    drain(dir, POISON)
    -- The messages after the poison one went through; the poison did not.
    local seen = table.concat(records(dir, "seen"), "\n")
    for i = 6, 9 do assert.matches("a " .. i .. "\n", seen .. "\n") end
    assert.not_matches("POISON", seen)
  end)

  it("--to @TIME starts at the first record stamped at or after it",
     function()
    counted(dir, work, 400, 10)
    local first = ends(dir, "events")
    -- The newest timestamp so far, plus 1 ms; later records are newer.
    local ts = 0
    for t in h.ok({ "consume", "events", "-e", "-f", "%T\\n" }, { dir = dir })
      :gmatch("(%d+)\n") do
      ts = math.max(ts, tonumber(t))
    end
    h.sleep(0.01)
    produce_events(dir, work, 200, 10, 400)
    h.ok({ "offsets", "reset", "counter", "--to", "earliest",
           "--keep-state" }, { dir = dir })
    local out = h.ok({ "offsets", "reset", "counter", "--to",
                       "@" .. (ts + 1), "--keep-state" }, { dir = dir })
    assert.matches("\n  done: ", out)
    for p = 0, PARTS - 1 do
      assert.equals(first[p], ckpt_offset(dir, "counter", p))
    end
    -- A UTC date works too: 1970 is before every record.
    h.ok({ "offsets", "reset", "counter", "--to", "@1970-01-01T00:00:00Z",
           "--keep-state" }, { dir = dir })
    for p = 0, PARTS - 1 do
      assert.equals(0, ckpt_offset(dir, "counter", p))
    end
  end)

  it("a job without stores needs no state flag; a job file works as JOB",
     function()
    h.ok({ "produce", "pings", "--partitions", "2" },
         { dir = dir, stdin = "a\nb\nc\nd\n" })
    -- Never run: no checkpoint. Its name alone is not enough; its file is.
    one_line(h.tide({ "offsets", "reset", "pass", "--to", "latest" },
                    { dir = dir }), 1, "no job 'pass' in data dir")
    local out = h.ok({ "offsets", "reset", PASS, "--to", "latest" },
                     { dir = dir })
    assert.matches("task 0  local:pings partition 0: 0 %(none saved: the "
                   .. "start%) %-> 2 %(skips 2 messages%)", out)
    drain(dir, PASS)
    assert.equals(0, #records(dir, "pongs"))
  end)

  it("names each bad argument in one line, exit 2", function()
    counted(dir, work, 100, 10)
    local before = snapshot_of(dir)
    local cases = {
      { { "offsets", "reset", "counter" }, "--to is missing" },
      { { "offsets", "reset", "counter", "--to", "soon" },
        "bad --to 'soon': earliest, latest, an offset or @TIME expected" },
      { { "offsets", "reset", "counter", "--to", "@yesterday" },
        "bad time 'yesterday'" },
      { { "offsets", "reset", "counter", "--to", "99999", "--keep-state" },
        "--to 99999: input 'local:events' partition 0 holds offsets 0 to" },
      { { "offsets", "reset", "counter", "--to", "0", "--input", "evnts" },
        "--input 'evnts': job 'counter' has no such input (inputs: "
        .. "local:events)" },
      { { "offsets", "reset", "counter", "--to", "0", "--partition", "9" },
        "--partition '9': the input has partitions 0 to 3" },
      { { "offsets", "reset", "counter", "--to", "0", "--reset-state",
          "--keep-state" }, "contradict" },
      { { "offsets", "move", "counter" }, "expected 'offsets reset JOB" },
      { { "offsets", "reset", "counter", "--to", "0", "--force" },
        "unknown option '--force'" },
    }
    for _, c in ipairs(cases) do
      local r = h.tide(c[1], { dir = dir })
      one_line(r, 2, c[2])
      assert.matches("^tide offsets: ", r.err)
    end
    -- (Without --data-dir after it: the data dir comes from the env.)
    one_line(h.tide({ "offsets", "reset", "counter", "--to" },
                    { env = { TIDE_DATA_DIR = dir } }), 2,
             "--to needs a value")
    one_line(h.tide({ "offsets", "reset", "nojob", "--to", "0" },
                    { dir = dir }), 1,
             "no job 'nojob' in data dir '" .. dir .. "' (jobs: counter)")
    assert.equals(before, snapshot_of(dir))
  end)
end)

-- ---- tide streams delete -------------------------------------------------------------

describe("tide streams delete", function()
  local work, dir
  before_each(function() work, dir = h.scratch() end)
  after_each(function()
    h.kill_started(work)
    h.rmdir(work)
  end)

  it("refuses while a running job uses the stream", function()
    h.ok({ "produce", "pings", "--partitions", "2" },
         { dir = dir, stdin = "a\n" })
    local job = h.start_tide(dir, work, { "run", PASS })
    h.wait_log(job, "job 'pass' started")
    for _, name in ipairs({ "pings", "pongs" }) do
      one_line(h.tide({ "streams", "delete", name }, { dir = dir }), 1,
               fmt("stream '%s' is an %s of running job 'pass' (pid %d): "
                   .. "stop the job first", name,
                   name == "pings" and "input" or "output", job.pid))
    end
    assert.equals("pings\npongs\n", h.ok({ "streams", "list" }, { dir = dir }))
    h.stop(job)
  end)

  it("deletes a stream no job uses; its name is free again", function()
    h.ok({ "produce", "logs", "--partitions", "3" },
         { dir = dir, stdin = "x\ny\nz\n" })
    h.ok({ "produce", "other", "--partitions", "1" },
         { dir = dir, stdin = "o\n" })
    assert.equals("deleted stream 'logs'\n",
                  h.ok({ "streams", "delete", "logs" }, { dir = dir }))
    assert.equals("other\n", h.ok({ "streams", "list" }, { dir = dir }))
    assert.is_nil(h.read_file(dir .. "/streams/logs/stream.conf"))
    h.ok({ "produce", "logs", "--partitions", "1" },
         { dir = dir, stdin = "new\n" })
    assert.same({ "0 0  new" }, records(dir, "logs"))
    one_line(h.tide({ "streams", "delete", "logs2" }, { dir = dir }), 1,
             "no stream 'logs2' in data dir '" .. dir
             .. "' (streams: logs, other)")
  end)

  it("refuses a stopped job's input or changelog without --force", function()
    counted(dir, work, 100, 10)
    one_line(h.tide({ "streams", "delete", "events" }, { dir = dir }), 1,
             "stream 'events' is an input of stopped job 'counter'")
    one_line(h.tide({ "streams", "delete", "counter-counts-changelog" },
                    { dir = dir }), 1,
             "stream 'counter-counts-changelog' is the changelog of store "
             .. "'counts' of stopped job 'counter'")
    -- Its output is not in its checkpoint: no --force needed.
    h.ok({ "streams", "delete", "counts-out" }, { dir = dir })
    h.ok({ "streams", "delete", "events", "--force" }, { dir = dir })
    assert.equals("counter-counts-changelog\n",
                  h.ok({ "streams", "list" }, { dir = dir }))
  end)
end)

-- ---- tide produce -Z -H -D FILE ----------------------------------------------------------

describe("tide produce", function()
  local work, dir
  before_each(function() work, dir = h.scratch() end)
  after_each(function() h.rmdir(work) end)

  local function show(name)
    return h.ok({ "consume", name, "-e", "-f", "%o|%k|%s|%S|%h\\n" },
                { dir = dir })
  end

  it("-Z makes an empty value a tombstone", function()
    h.ok({ "produce", "t", "-K", ":", "-Z", "--partitions", "1" },
         { dir = dir, stdin = "a:1\nb:\nc:3\n" })
    h.ok({ "produce", "t", "-K", ":" }, { dir = dir, stdin = "d:\n" })
    assert.equals("0|a|1|1|\n1|b||-1|\n2|c|3|1|\n3|d||0|\n", show("t"))
  end)

  it("-H adds headers to every record", function()
    h.ok({ "produce", "t", "-H", "src=test", "-H", "eq=a=b", "-H", "empty=",
           "--partitions", "1" }, { dir = dir, stdin = "x\ny\n" })
    local out = h.ok({ "consume", "t", "-e", "-f", "%h\\n" }, { dir = dir })
    local l = h.lines(out)
    assert.equals(2, #l)
    for _, hs in ipairs(l) do
      local set = {}
      for kv in hs:gmatch("[^,]+") do set[kv] = true end
      assert.same({ ["src=test"] = true, ["eq=a=b"] = true,
                    ["empty="] = true }, set)
    end
  end)

  it("-D splits records at a delimiter, with escapes", function()
    h.write_file(work .. "/nul", "k1;one\0k2;two\0last")
    h.ok({ "produce", "t", "-D", "\\0", "-K", ";", "--partitions", "1",
           work .. "/nul" }, { dir = dir })
    h.ok({ "produce", "t", "-D", "||" }, { dir = dir, stdin = "a\nb||c||" })
    assert.equals("0|k1|one|3|\n1|k2|two|3|\n2||last|4|\n3||a\nb|3|\n"
                  .. "4||c|1|\n", show("t"))
  end)

  it("reads a FILE argument, '-' for stdin", function()
    h.write_file(work .. "/in.txt", "f1\nf2\n")
    h.ok({ "produce", "t", work .. "/in.txt", "--partitions", "1" },
         { dir = dir, stdin = "not read\n" })
    h.ok({ "produce", "t", "-" }, { dir = dir, stdin = "s1\n" })
    assert.equals("0||f1|2|\n1||f2|2|\n2||s1|2|\n", show("t"))
  end)

  it("names each bad argument in one line", function()
    h.ok({ "streams", "create", "t", "--partitions", "1" }, { dir = dir })
    local cases = {
      { { "produce", "t", "-D", "\\q" }, 2, "-D '\\q': bad escape" },
      { { "produce", "t", "-D", "" }, 2, "-D '': the delimiter is empty" },
      { { "produce", "t", "-H", "novalue" }, 2,
        "-H 'novalue': NAME=VALUE expected" },
      { { "produce", "t", "-H", "=v" }, 2, "-H '=v': NAME=VALUE expected" },
      { { "produce", "t", "a.txt", "b.txt" }, 2,
        "one STREAM and at most one FILE expected" },
      { { "produce", "t", work .. "/missing" }, 1,
        "cannot read '" .. work .. "/missing': No such file or directory" },
    }
    for _, c in ipairs(cases) do
      local r = h.tide(c[1], { dir = dir, stdin = "x\n" })
      one_line(r, c[2], c[3])
      assert.matches("^tide produce: ", r.err)
    end
    assert.equals("", show("t"))
  end)
end)
