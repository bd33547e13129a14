-- End to end: `tide repl --attach` and `tide state get|scan` on a running
-- job, as a new user drives them (issue 12 "Must show": attach under load,
-- live queries, security; docs/repl.md). The real binary runs
-- spec/cli/jobs/repl_count.lua (a keyed counting job that sends one output
-- per input, naming the input and the key's new count) on 4 partitions
-- and 2 workers, under steady input from a background `tide produce`
-- loop; the spec attaches with piped stdin. Waits are hang guards; no
-- time is asserted. At the end of each test under load, every input has
-- exactly one output and the counts are exact.
local h = require("cli.helper")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local JOB = SRC .. "/spec/cli/jobs/repl_count.lua"
local NAME = "repl-count"

local PARTS = 4
local NKEYS = 53
local BATCH = 50                          -- lines per `tide produce` call
local MAX_BATCHES = 3000                  -- writer hang guard

local fmt = string.format

-- ---- helpers -----------------------------------------------------------------

local procs = {}     -- pids this test started: killed in after_each
local exited, stop = h.exited, h.stop

local function start(dir, work, args)
  return h.start_tide(dir, work, args, procs)
end

-- Runs `tide repl --attach JOB` with the lines of `lines` on stdin;
-- returns { code =, out =, err = }.
local function attach(dir, lines, env)
  return h.tide({ "repl", "--attach", JOB },
                { dir = dir, stdin = table.concat(lines, "\n") .. "\n",
                  env = env })
end

-- Like attach, but fails unless it exits 0 with nothing on stderr.
local function attach_ok(dir, lines)
  return h.clean_exit(attach(dir, lines), "tide repl --attach")
end

-- The number a REPL line printed ("12" or 12), or nil for nil.
local function number_of(line)
  if line == "nil" then return nil end
  local n = tonumber(line:match('^"?(%-?%d+)"?$'))
  assert(n, "not a number: '" .. tostring(line) .. "'")
  return n
end

-- `tasks()` through attach: { [task] = { lag =, processed =, state =,
-- offset = } }, from the aligned table it prints (header words, a line of
-- dashes, one row per task).
local function attached_tasks(dir)
  local out = attach_ok(dir, { "tasks()" })
  local l = h.lines(out)
  assert(l[2] and l[2]:match("^[%- ]+$"), "no table in:\n" .. out)
  local names = {}
  for w in l[1]:gmatch("%S+") do names[#names + 1] = w end
  local t = {}
  for i = 3, #l do
    local row, j = {}, 0
    for w in l[i]:gmatch("%S+") do j = j + 1; row[names[j]] = w end
    assert(j == #names, fmt("row '%s' has %d cells for %d columns", l[i], j,
                            #names))
    t[tonumber(row.task)] = {
      lag = tonumber(row.lag), processed = tonumber(row.processed),
      state = row.state,
      offset = tonumber(row.offsets:match("events=(%d+)")),
    }
  end
  for p = 0, PARTS - 1 do
    assert(t[p], fmt("task %d is not in:\n%s", p, out))
  end
  return t, out
end

-- Waits (hang guard: 60 s) until every task runs with lag 0.
local function wait_caught_up(dir, job)
  h.wait_caught_up(dir, NAME, PARTS, job)
end

-- The input stream "events": { [p] = { { key, value }, ... } } in offset
-- order, and { [key] = { value, ... } } in the order of its partition.
local function read_inputs(dir)
  local out = h.ok({ "consume", "events", "-e", "-f", "%p\t%k\t%s\\n" },
                   { dir = dir })
  local parts, by_key, n = {}, {}, 0
  for p = 0, PARTS - 1 do parts[p] = {} end
  for p, k, v in out:gmatch("(%d+)\t([^\t\n]*)\t([^\n]*)\n") do
    local list = parts[tonumber(p)]
    list[#list + 1] = { k, v }
    by_key[k] = by_key[k] or {}
    by_key[k][#by_key[k] + 1] = v
    n = n + 1
  end
  return parts, by_key, n
end

-- The outputs: { [key] = { count, ... } } in the order of their partition.
local function read_outputs(dir)
  local out = h.ok({ "consume", "echo-out", "-e", "-f", "%k\t%s\\n" },
                   { dir = dir })
  local t = {}
  for k, c in out:gmatch("([^\t\n]*)\t%S+ (%d+)\n") do
    t[k] = t[k] or {}
    t[k][#t[k] + 1] = tonumber(c)
  end
  return t
end

-- `tide state dump JOB counts` (the job stopped): { [key] = count }.
local function dump(dir)
  return h.dump_numbers(dir, JOB, "counts")
end

-- `tide state get JOB counts KEY`: the value (a number, or nil when the
-- key is not there), stderr, the task that answered and its input offset.
local function state_get(dir, key, job_arg)
  local r = h.tide({ "state", "get", job_arg or NAME, "counts", key },
                   { dir = dir })
  if r.code == 1 and r.out == "" then return nil, r.err end
  assert(r.code == 0, fmt("tide state get exited %s: %s", tostring(r.code),
                          r.err))
  local task = tonumber(r.err:match("^task (%d+)"))
  local off = tonumber(r.err:match("events=(%d+)"))
  return number_of(r.out:match("^([^\n]*)\n$")), r.err, task, off
end

-- ---- the tests -------------------------------------------------------------------

describe("tide repl --attach and tide state on a running job", function()
  local work, dir

  before_each(function() work, dir = h.scratch() end)
  after_each(function() h.kill_ours(procs, work) end)

  -- Starts the counting job with 2 workers (under the writer when `load`);
  -- returns it once every task has processed something.
  local function start_counting(load)
    -- one message per partition first, so that every task has work
    local first = {}
    for i = 0, NKEYS - 1 do first[#first + 1] = "k" .. i .. ":first" .. i end
    h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
         { dir = dir, stdin = table.concat(first, "\n") .. "\n" })
    if load then
      procs[#procs + 1] = h.start_writer(dir, work, {
        batch = BATCH, nkeys = NKEYS, parts = PARTS,
        max_batches = MAX_BATCHES })
    end
    local job = start(dir, work, { "run", JOB, "--workers", "2" })
    h.wait_log(job, "job 'repl%-count' started", 1, "the start")
    for _ = 1, 600 do
      local t = attached_tasks(dir)
      local ok = true
      for p = 0, PARTS - 1 do ok = ok and t[p].processed > 0 end
      if ok then return job end
      h.sleep(0.1)
    end
    error("the tasks did not all process something within 60 s")
  end

  -- Stops the writer, waits until the job has read everything, stops it
  -- (SIGTERM) and checks exactness; returns the job's log.
  local function finish(job)
    local sent = h.stop_writer(work)
    wait_caught_up(dir, job)
    local log = stop(job)
    assert.are.equal(sent + NKEYS, (h.assert_exact(dir, JOB, true)))
    return log
  end

  -- 5 -----------------------------------------------------------------------

  it("reads a store value under load that equals state get and state dump "
     .. "once the input stops", function()
    local job = start_counting(true)
    local key = "k7"
    local p = h.partition_of(key, PARTS)
    -- under load: the value read is the key's count at some moment
    local out = attach_ok(dir, { fmt('store(%d, "counts"):get(%q)', p, key),
                                 fmt("task(%d)", p),
                                 fmt('stores.counts:get(%q)', key) })
    local l = h.lines(out)
    assert.are.equal(2, #l, out)
    local v0, v0b = number_of(l[1]), number_of(l[2])
    assert(v0 and v0 >= 1 and v0b >= v0, out)
    -- the other tasks do not hold it
    local q = (p + 1) % PARTS
    assert.are.equal("nil\n", attach_ok(dir, {
      fmt('store(%d, "counts"):get(%q)', q, key) }))
    -- the input stops: the attached read, state get and, after the stop,
    -- state dump agree
    local sent = h.stop_writer(work)
    wait_caught_up(dir, job)
    local v1 = number_of(attach_ok(dir, {
      fmt('store(%d, "counts"):get(%q)', p, key) }):match("^([^\n]*)\n$"))
    assert(v1 >= v0b, fmt("the count of %s went from %d to %d", key, v0b, v1))
    local v2, err, task = state_get(dir, key)
    assert.are.equal(v1, v2)
    assert.are.equal(p, task, err)
    local _, by_key = read_inputs(dir)
    assert.are.equal(#by_key[key], v1)
    stop(job)
    assert.are.equal(v1, dump(dir)[key])
    assert.are.equal(sent + NKEYS, (h.assert_exact(dir, JOB, true)))
  end)

  it("under load: pause shows a task's lag growing while the others go on, "
     .. "resume catches it up, tap and trace show new messages, a runaway "
     .. "evaluation is stopped and the job goes on", function()
    local job = start_counting(true)
    -- tap: the next 5 messages sent to the output
    local before = {}
    local desc = h.ok({ "streams", "describe", "echo-out" }, { dir = dir })
    for p, e in desc:gmatch("\n%s+(%d+)%s+%d+%s+(%d+)") do
      before[tonumber(p)] = tonumber(e)
    end
    assert(before[PARTS - 1], desc)
    local out = attach_ok(dir, { 'tap("echo-out", 5)' })
    local tapped = {}
    for p, o, k, v in out:gmatch('echo%-out (%d+)@(%d+)%s+"([^"]*)"%s+"([^"]*)"') do
      tapped[#tapped + 1] = { p = tonumber(p), o = tonumber(o), k = k, v = v }
    end
    assert.are.equal(5, #tapped, out)
    for _, m in ipairs(tapped) do
      assert(m.o >= before[m.p], fmt("tapped %d@%d, which was there before "
                                     .. "(end %d)", m.p, m.o, before[m.p]))
    end
    -- trace: the next 3 messages task 0 processes, with their sends and
    -- state writes
    out = attach_ok(dir, { "trace(0, 3)" })
    local traced = {}
    local cur
    for line in out:gmatch("[^\n]+") do
      local o, k, v = line:match('^task 0 events 0@(%d+)%s+key="([^"]*)"%s+'
                                 .. 'value="([^"]*)"')
      if o then
        cur = { o = tonumber(o), k = k, v = v }
        traced[#traced + 1] = cur
      elseif line:match("^%s+%->") then
        assert(cur, out)
        local sk, sv = line:match('%->%s+echo%-out%s+key="([^"]*)"%s+'
                                  .. 'value="([^"]*)"')
        assert(sk, "bad send line: " .. line)
        cur.sends = (cur.sends or 0) + 1
        cur.send_k, cur.send_v = sk, sv
      elseif line:match("^%s+state") then
        assert(cur, out)
        local wk, wv = line:match('state counts%["([^"]*)"%] = "?(%d+)"?')
        assert(wk, "bad state line: " .. line)
        cur.writes = (cur.writes or 0) + 1
        cur.write_k, cur.write_v = wk, wv
      end
    end
    assert.are.equal(3, #traced, out)
    for _, m in ipairs(traced) do
      assert.are.equal(1, m.sends, out)
      assert.are.equal(1, m.writes, out)
      assert.are.equal(m.k, m.send_k)
      assert.are.equal(m.k, m.write_k)
      assert.are.equal(m.v .. " " .. m.write_v, m.send_v)
    end
    -- pause task 2: its lag grows, its processed count stays, the other
    -- tasks go on
    out = attach_ok(dir, { "pause(2)" })
    assert.matches("task 2 paused", out)
    local a = attached_tasks(dir)
    assert.are.equal("PAUSED", a[2].state)
    local b
    for _ = 1, 300 do
      h.sleep(0.1)
      b = attached_tasks(dir)
      if b[2].lag > a[2].lag + 2 * BATCH and b[0].processed > a[0].processed
         and b[1].processed > a[1].processed then
        break
      end
    end
    assert(b[2].lag > a[2].lag, fmt("the lag of paused task 2 went from %d "
                                    .. "to %d", a[2].lag, b[2].lag))
    assert.are.equal(a[2].processed, b[2].processed)
    assert.are.equal("PAUSED", b[2].state)
    for _, p in ipairs({ 0, 1, 3 }) do
      assert(b[p].processed > a[p].processed,
             fmt("task %d did not go on while task 2 was paused", p))
    end
    -- resume: it catches up (its lag falls below the paused one)
    out = attach_ok(dir, { "resume(2)" })
    assert.matches("task 2 resumed", out)
    local c
    for _ = 1, 300 do
      c = attached_tasks(dir)
      if c[2].state == "RUNNING" and c[2].lag < b[2].lag then break end
      h.sleep(0.1)
    end
    assert.are.equal("RUNNING", c[2].state)
    assert(c[2].processed > b[2].processed and c[2].lag < b[2].lag,
           fmt("task 2 did not catch up: lag %d, then %d", b[2].lag,
               c[2].lag))
    -- a runaway evaluation: stopped with an error line, the session and
    -- the job go on
    local d = attached_tasks(dir)
    local r = attach(dir, { "while true do end", "1 + 1" })
    assert.are.equal(1, r.code, r.err)
    assert.are.equal("2\n", r.out)
    local errs = h.lines(r.err)
    assert.are.equal(1, #errs, r.err)
    assert.matches("^error: ", errs[1])
    assert.matches("stopped", errs[1])
    local e
    for _ = 1, 300 do
      e = attached_tasks(dir)
      if e[0].processed > d[0].processed then break end
      h.sleep(0.1)
    end
    for p = 0, PARTS - 1 do
      assert(e[p].processed > d[p].processed,
             fmt("task %d did not go on after the runaway evaluation", p))
    end
    local log = finish(job)
    -- the worker was not restarted: the evaluation was stopped inside it
    assert.is_nil(log:find("(restart)", 1, true), log)
    -- the tapped and traced messages are the stream's own
    local parts = read_inputs(dir)
    for _, m in ipairs(traced) do
      local rec = parts[0][m.o + 1]
      assert.are.same({ m.k, m.v }, rec)
    end
    for _, m in ipairs(tapped) do
      local rec = h.ok({ "consume", "echo-out", "-p", tostring(m.p), "-o",
                         tostring(m.o), "-c", "1", "-f", "%k\t%s" },
                       { dir = dir })
      assert.are.equal(m.k .. "\t" .. m.v, rec)
    end
  end)

  -- 6 -----------------------------------------------------------------------

  it("tide state get answers while the job runs, agreeing with its inputs "
     .. "and outputs, and reads the checkpoint once it stops", function()
    local job = start_counting(true)
    local answers = {}
    for i, key in ipairs({ "k0", "k13", "k26", "k39", "k52", "k0" }) do
      local v, err, task, off = state_get(dir, key)
      assert(v and task and off, "state get " .. key .. ": " .. tostring(err))
      assert.matches("running job 'repl%-count'", err)
      answers[i] = { key = key, v = v, task = task, off = off }
      h.sleep(0.3)
    end
    local log = finish(job)
    assert(log ~= "")
    -- each answer is the key's count at the input offset it names: the
    -- inputs of the key in its partition before that offset, and a count
    -- the job sent for that key
    local parts = read_inputs(dir)
    local outs = read_outputs(dir)
    for _, a in ipairs(answers) do
      assert.are.equal(h.partition_of(a.key, PARTS), a.task)
      local n = 0
      for o = 1, a.off do
        if parts[a.task][o][1] == a.key then n = n + 1 end
      end
      assert.are.equal(n, a.v, fmt("state get %s answered %d at offset %d "
                                   .. "of partition %d", a.key, a.v, a.off,
                                   a.task))
      local sent = false
      for _, c in ipairs(outs[a.key]) do sent = sent or c == a.v end
      assert(sent, fmt("the job never sent count %d for %s", a.v, a.key))
    end
    -- stopped: get reads the checkpoint, which is the last output
    local state = dump(dir)
    for _, key in ipairs({ "k0", "k13", "k52" }) do
      local v, err = state_get(dir, key, JOB)
      assert.matches("last checkpoint", err)
      assert.are.equal(state[key], v)
      assert.are.equal(outs[key][#outs[key]], v)
    end
    assert.is_nil((state_get(dir, "nokey", JOB)))
  end)

  it("tide state scan lists keys in key order with --limit, while the job "
     .. "runs and from the checkpoint", function()
    -- Regression test (scan-order, fixed): scan prints task 0's keys, then task 1's,
    -- and so on ("in key order per task"): --limit 5 gives task 0's first
    -- 5 keys and --from k2 --to k4 prints k3 before k2, though --help says
    -- "keys in order".
    local job = start_counting(false)
    wait_caught_up(dir, job)
    local keys = {}
    for i = 0, NKEYS - 1 do keys[#keys + 1] = "k" .. i end
    table.sort(keys)
    local function expect(args, from, to, limit)
      local want = {}
      for _, k in ipairs(keys) do
        if (not from or k >= from) and (not to or k < to)
           and #want < (limit or 1000) then
          want[#want + 1] = k .. "\t1"
        end
      end
      return table.concat(want, "\n") .. "\n", args
    end
    local cases = {
      { expect({ "--limit", "5" }, nil, nil, 5) },
      { expect({ "--from", "k2", "--to", "k4" }, "k2", "k4") },
      { expect({ "--from", "k3", "--limit", "3" }, "k3", nil, 3) },
      { expect({}) },
    }
    local live, stopped = {}, {}
    local function scan(target, args)
      local words = { "state", "scan", target, "counts" }
      for _, a in ipairs(args) do words[#words + 1] = a end
      return h.ok(words, { dir = dir })
    end
    for i, c in ipairs(cases) do live[i] = scan(NAME, c[2]) end
    stop(job)
    for i, c in ipairs(cases) do stopped[i] = scan(JOB, c[2]) end
    for i, c in ipairs(cases) do
      assert.are.equal(c[1], live[i], "live scan " .. table.concat(c[2], " "))
      assert.are.equal(c[1], stopped[i],
                       "stopped scan " .. table.concat(c[2], " "))
    end
  end)

  it("keeps the globals a line sets for the next lines of the same REPL "
     .. "only", function()
    -- Regression test (attach-session-id, fixed): the session id is os.time() and
    -- math.random(), which LuaJIT does not seed: two REPLs attached in the
    -- same second share one session, and the second sees the first's
    -- globals.
    local job = start_counting(false)
    local out = attach_ok(dir, { "mine = 41", "mine + 1" })
    assert.are.equal("42\n", out)
    -- two REPLs one after the other, within one second (tried until a pair
    -- is, at most 10 times)
    local same
    for i = 1, 10 do
      local t0 = os.time()
      attach_ok(dir, { fmt("secret = %d", i) })
      local seen = attach_ok(dir, { "secret" })
      if os.time() == t0 then
        same = seen
        break
      end
    end
    assert(same, "no two REPLs ran within one second in 10 tries")
    assert.are.equal("nil\n", same)
    stop(job)
  end)

  it("keeps a REPL's globals per worker: tasks of one worker share them",
     function()
    -- docs/repl.md: globals stay for the next lines that run in the same
    -- worker process; a task on another worker has its own set.
    local job = start_counting(false)
    local w = {}
    for line in h.ok({ "tasks", NAME }, { dir = dir }):gmatch("[^\n]+") do
      w[tonumber(line:match("^task (%d+)"))] = line:match("worker=(%d+)")
    end
    local other, same
    for p = 1, PARTS - 1 do
      if w[p] ~= w[0] then other = other or p else same = same or p end
    end
    assert(other, "every task is on the worker of task 0")
    local out = attach_ok(dir, { "kept = 7", "kept", fmt("task(%d)", other),
                                 "kept", "task(0)", "kept" })
    assert.are.equal("7\nnil\n7\n", out)
    if same then
      out = attach_ok(dir, { "kept = 8", fmt("task(%d)", same), "kept" })
      assert.are.equal("8\n", out)
    end
    stop(job)
  end)

  it("prints job values with print() inside the job", function()
    -- Regression test (attach-print-local, fixed): attach runs every line that calls
    -- print( in the REPL itself (print is in attach.lua's LOCAL list), so
    -- print(stores.counts:get("k0")) says "attempt to index global
    -- 'stores' (a nil value)".
    local job = start_counting(false)
    wait_caught_up(dir, job)
    local p = h.partition_of("k0", PARTS)
    local out = attach_ok(dir, { fmt("task(%d)", p),
                                 'stores.counts:get("k0")',
                                 'print(stores.counts:get("k0"))',
                                 "print(ctx ~= nil, task)" })
    assert.are.equal(fmt('"1"\n1\ntrue\t%d\n', p), out)
    stop(job)
  end)

  -- 7 -----------------------------------------------------------------------

  -- As user nobody, with the data dir open to others.
  -- Runs tide ARGS as user nobody. The binary, its Lua modules and the
  -- job file are copied into the scratch dir first (readable by all):
  -- the checkout itself may be in a folder only its owner can read, as
  -- a clean clone for CI is. `job_arg` in args is replaced by the copy.
  local function as_nobody(args)
    local pub = work .. "/pub"
    if not h.read_file(pub .. "/ready") then
      assert(os.execute(fmt("mkdir -p %s && cp %s %s/tide && cp -R %s/bindings "
                            .. "%s/lua %s/ && cp %s %s/job.lua && chmod -R "
                            .. "a+rX %s && touch %s/ready", h.q(pub),
                            h.q(h.bin), h.q(pub), h.q(SRC), h.q(SRC), h.q(pub),
                            h.q(JOB), h.q(pub), h.q(pub), h.q(pub))) == 0)
    end
    local words = { "TIDE_LUA_PATH=" .. h.q(fmt("%s/bindings/?.lua;%s/lua/?.lua;"
                                                .. "%s/lua/?/init.lua;;", pub,
                                                pub, pub)),
                    "setpriv", "--reuid=65534", "--regid=65534",
                    "--clear-groups", h.q(pub .. "/tide") }
    for _, a in ipairs(args) do
      words[#words + 1] = h.q(a == JOB and pub .. "/job.lua" or a)
    end
    words[#words + 1] = "--data-dir " .. h.q(dir)
    return h.run(table.concat(words, " "), { stdin = "1 + 1\n" })
  end

  -- Makes every folder of the scratch dir traversable for others (the
  -- files keep their modes).
  local function open_dirs()
    os.execute("find " .. h.q(work) .. " -type d -exec chmod o+rx {} +")
  end

  local function rootly()
    if h.sh("id -u"):match("^(%d+)") ~= "0"
       or h.sh("command -v setpriv") == "" then
      pending("needs root and setpriv")
      return false
    end
    return true
  end

  it("refuses to attach a user other than the job's, with a clear error",
     function()
    if not rootly() then return end
    local job = start_counting(false)
    open_dirs()
    local sock = dir .. "/jobs/" .. NAME .. "/control.sock"
    assert.are.equal("600", h.sh("stat -c %a " .. h.q(sock)):match("%d+"))
    local r = as_nobody({ "repl", "--attach", JOB })
    assert.are_not.equal(0, r.code)
    assert.are.equal("", r.out)
    local l = h.lines(r.err)
    assert.are.equal(1, #l, r.err)
    assert.matches("permission denied", l[1])
    assert.matches("user", l[1])
    -- the job also checks the peer's uid: a socket opened to all still
    -- refuses nobody
    os.execute("chmod 666 " .. h.q(sock))
    r = as_nobody({ "repl", "--attach", JOB })
    assert.are_not.equal(0, r.code)
    assert.are.equal("", r.out)
    l = h.lines(r.err)
    assert.are.equal(1, #l, r.err)
    assert.matches("permission denied", l[1])
    assert.matches("uid 0", l[1])
    -- and goes on for its own user
    os.execute("chmod 600 " .. h.q(sock))
    assert.are.equal("2\n", attach_ok(dir, { "1 + 1" }))
    assert.is_false(exited(job))
    stop(job)
  end)

  it("refuses tide state get to a user other than the job's, with a clear "
     .. "error", function()
    -- Regression test (state-perm, fixed): as another user, `tide state get` on a
    -- running job says "job 'repl-count' is running (cannot open lock
    -- ...: Permission denied); stop it first: state dump reads a stopped
    -- job's committed state" (by file), or "cannot open the job file" (by
    -- name): not that the control socket refused this user.
    if not rootly() then return end
    local job = start_counting(false)
    open_dirs()
    for _, target in ipairs({ JOB, NAME }) do
      local r = as_nobody({ "state", "get", target, "counts", "k0" })
      assert.are_not.equal(0, r.code)
      assert.are.equal("", r.out)
      local l = h.lines(r.err)
      assert.are.equal(1, #l, r.err)
      assert.matches("permission denied", l[1])
      assert.is_nil(l[1]:find("stop it first", 1, true), l[1])
    end
    assert.is_false(exited(job))
    stop(job)
  end)
end)
