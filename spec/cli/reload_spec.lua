-- End to end: hot reload as a user drives it (docs/design.md section 5; issue 5 "Must
-- show"). The real `tide run` runs a copy of spec/cli/jobs/reload_counter.lua
-- or reload_memo.lua in a scratch folder, whose file the spec edits while a
-- background writer feeds the job through `tide produce`. Each test gets
-- fresh temp dirs; background processes are killed afterwards, also on
-- failure. Waits are bounded hang guards, never timing assertions.
local h = require("cli.helper")

local ASAN = (os.getenv("TIDE_BUILD_DIR") or ""):find("asan") ~= nil
local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local COUNTER_TPL = SRC .. "/spec/cli/jobs/reload_counter.lua"
local MEMO_TPL = SRC .. "/spec/cli/jobs/reload_memo.lua"

local PARTS = 3
local NKEYS = 13
local BATCH = ASAN and 12 or 25        -- lines per `tide produce` call
local MAX_BATCHES = ASAN and 500 or 800 -- writer hang guard (msgs cap)
local SETTLE = ASAN and 0.25 or 0.15   -- extra input between edits, s

local fmt = string.format

-- ---- helpers -----------------------------------------------------------------

local function plain_find(s, p) return s:find(p, 1, true) ~= nil end

local count = h.count
local log_of = h.tide_stderr

-- Background processes of the current test: killed in after_each.
local procs = {}

local function start(dir, work, args)
  return h.start_tide(dir, work, args, procs)
end

-- Waits (hang guard: 30 s) until job's log has at least n matches of Lua
-- pattern pat; returns the log.
local function wait_count(job, pat, n, what)
  return h.wait_log(job, pat, n, what, 30)
end

-- Reads a whole stream: { [p] = { {key, value}, ... } }, index j holding
-- offset j-1; fails unless each partition's offsets follow each other.
local function read_stream(dir, name, nparts)
  local out = h.ok({ "consume", name, "-e", "-f", "%p\\t%o\\t%k\\t%s\\n" },
                   { dir = dir })
  local t = {}
  for p = 0, nparts - 1 do t[p] = {} end
  for p, o, k, v in out:gmatch("(%d+)\t(%d+)\t([^\t]*)\t([^\n]*)\n") do
    local part = assert(t[tonumber(p)], name .. ": partition out of range")
    assert(tonumber(o) == #part, fmt("%s partition %s: offset %s where %d "
                                     .. "was due", name, p, o, #part))
    part[#part + 1] = { k, v }
  end
  return t
end

-- Number of records of a stream (0 when it does not exist yet).
local function stream_len(dir, name)
  local r = h.tide({ "consume", name, "-e", "-f", "x\\n" }, { dir = dir })
  if r.code ~= 0 then return 0 end
  return #h.lines(r.out)
end

local function wait_stream_len(dir, name, n)
  local got
  for _ = 1, 600 do
    got = stream_len(dir, name)
    if got >= n then return got end
    h.sleep(0.05)
  end
  error(fmt("stream '%s' has %d records, waited 30 s for %d", name, got, n), 2)
end

local function assert_no_sanitizer(log)
  for _, bad in ipairs({ "AddressSanitizer", "runtime error", "traceback",
                         "Segmentation" }) do
    assert.is_false(plain_find(log, bad), "'" .. bad .. "' in log:\n" .. log)
  end
end

-- Writes path through a temp file in the same folder and a rename, as
-- editors that save through a rename do.
local function write_renamed(path, text)
  local tmp = path:gsub("[^/]*$", ".%0.swp")
  h.write_file(tmp, text)
  assert(os.rename(tmp, path))
end

-- The versions of the counting job, made from its template.
local TPL_TAG = 'local TAG = "t01"'
local PROCESS = "process = function(msg, ctx)"

local function sub1(text, from, to)
  local a, b = text:find(from, 1, true)
  assert(a, "template lacks: " .. from)
  return text:sub(1, a - 1) .. to .. text:sub(b + 1)
end

local function counter_version(tpl, kind, tag, edit)
  local text = sub1(tpl, TPL_TAG, fmt('local TAG = "%s"', tag))
  if kind == "syntax" then
    -- an unclosed parameter list: does not compile
    text = sub1(text, PROCESS, "process = function(msg, ctx")
  elseif kind == "boom" then
    text = sub1(text, PROCESS, PROCESS .. ' error("boom")')
  elseif kind == "input" then
    text = sub1(text, 'inputs = { "events" }',
                'inputs = { "events", "more-events" }')
  end
  return text .. fmt("-- edit %d\n", edit)
end

-- ---- the tests -------------------------------------------------------------------

describe("hot reload", function()
  local work, dir

  before_each(function() work, dir = h.scratch() end)
  after_each(function() h.kill_ours(procs, work) end)

  it("swaps 20 edits of a counting job under continuous input: exactly one "
     .. "output per input, monotonic tags, broken versions refused or "
     .. "rolled back, true final state", function()
    local tpl = assert(h.read_file(COUNTER_TPL))
    os.execute("mkdir " .. h.q(work .. "/job"))
    local job_file = work .. "/job/job.lua"
    h.write_file(job_file, counter_version(tpl, "good", "t01", 0))
    -- the input exists before the job starts
    h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
         { dir = dir, stdin = "k0:first\n" })
    procs[#procs + 1] = h.start_writer(dir, work, {
      batch = BATCH, nkeys = NKEYS, parts = PARTS,
      max_batches = MAX_BATCHES })
    local job = start(dir, work, { "run", job_file })
    wait_count(job, "job 'reload_counter' started", 1, "the start")
    wait_stream_len(dir, "tagged", 20)

    -- The 20 edits: { kind, tag, how written }. Good versions raise the
    -- tag (edit 11 only changes a comment); the broken ones carry tags
    -- that must never show up.
    local R, W = "rename", "in place"
    local edits = {
      { "good", "t02", R }, { "good", "t03", W }, { "syntax", "x-syntax", W },
      { "good", "t04", R }, { "good", "t05", W }, { "boom", "x-boom", R },
      { "good", "t06", W }, { "input", "x-input", W }, { "good", "t07", R },
      { "good", "t08", W }, { "good", "t08", R }, { "good", "t09", W },
      { "good", "t10", R }, { "good", "t11", W }, { "good", "t12", R },
      { "good", "t13", W }, { "good", "t14", R }, { "good", "t15", W },
      { "good", "t16", R }, { "good", "t17", W },
    }
    assert.are.equal(20, #edits)
    local PAT = {
      good = "reloaded [^\n]*%(file change%): version %x+ %-> %x+",
      syntax = "refused: [^\n]*job%.lua:%d+:",
      boom = "rolled back to",
      input = "refused: restart needed: inputs changed",
    }
    local seen = { good = 0, syntax = 0, boom = 0, input = 0 }
    for i, e in ipairs(edits) do
      local kind, tag, how = e[1], e[2], e[3]
      local text = counter_version(tpl, kind, tag, i)
      if how == R then write_renamed(job_file, text)
      else h.write_file(job_file, text) end
      seen[kind] = seen[kind] + 1
      -- a raising version is swapped in ("reloaded") before it rolls back
      local want = seen[kind] + (kind == "good" and seen.boom or 0)
      wait_count(job, PAT[kind], want,
                 fmt("edit %d (%s, %s)", i, kind, how))
      h.sleep(SETTLE)           -- let the new (or kept) code see input
    end

    local total = h.stop_writer(work) + 1
    local log = h.stop(job)
    local drain = h.tide({ "run", job_file, "--drain" }, { dir = dir })
    assert.are.equal(0, drain.code, "tide run --drain: " .. drain.err)
    assert_no_sanitizer(log .. drain.err)

    -- swap figures, for information only
    local ms = {}
    for x in log:gmatch("swapped in ([%d.]+) ms") do ms[#ms + 1] = x end
    io.stderr:write(fmt("\nreload_spec: %d messages; swap times (ms): %s\n",
                        total, table.concat(ms, " ")))

    -- Every input has exactly one output, in its partition and order, with
    -- its offset and the key's true running count; tags never go back.
    local ins = read_stream(dir, "events", PARTS)
    local outs = read_stream(dir, "tagged", PARTS)
    local n_in, n_out, bad, tags, truth, broken = 0, 0, {}, {}, {}, {}
    local function note(s) if #bad < 8 then bad[#bad + 1] = s end end
    for p = 0, PARTS - 1 do
      local running, last = {}, 0
      n_in, n_out = n_in + #ins[p], n_out + #outs[p]
      if #outs[p] ~= #ins[p] then
        note(fmt("partition %d: %d outputs for %d inputs", p, #outs[p],
                 #ins[p]))
      end
      for j, inp in ipairs(ins[p]) do
        local k = inp[1]
        running[k] = (running[k] or 0) + 1
        truth[k] = (truth[k] or 0) + 1
        local o = outs[p][j]
        if o then
          local tag, off, n = o[2]:match("^([^:]*):(%d+):(%d+)$")
          if o[1] ~= k or tonumber(off) ~= j - 1
             or tonumber(n) ~= running[k] then
            note(fmt("partition %d output %d: key '%s' value '%s' where key "
                     .. "'%s' value 'tNN:%d:%d' was due", p, j - 1, o[1],
                     o[2], k, j - 1, running[k]))
          end
          local num = tag and tonumber(tag:match("^t(%d%d)$"))
          if not num then
            broken[tag or o[2]] = (broken[tag or o[2]] or 0) + 1
          else
            tags[tag] = true
            if num < last then
              note(fmt("partition %d output %d: tag %s after t%02d", p, j - 1,
                       tag, last))
            end
            last = num
          end
        end
      end
    end
    local tag_list = {}
    for t in pairs(tags) do tag_list[#tag_list + 1] = t end
    table.sort(tag_list)
    io.stderr:write(fmt("reload_spec: tags seen: %s\n",
                        table.concat(tag_list, " ")))
    assert.are.equal(total, n_in, "input records vs lines written")
    assert(#bad == 0, fmt("%d inputs, %d outputs:\n  %s", n_in, n_out,
                          table.concat(bad, "\n  ")))
    assert.are.same({}, broken, "outputs of broken versions")
    assert.is_true(tags.t01 and tags.t17 and #tag_list > 2,
                   "tags seen: " .. table.concat(tag_list, " "))

    -- The final state equals the true counts.
    local dump = h.ok({ "state", "dump", job_file, "counts" }, { dir = dir })
    local got = {}
    for _, l in ipairs(h.lines(dump)) do
      local k, v = l:match("^([^\t]*)\t(.*)$")
      assert(k and got[k] == nil, "bad or doubled dump line: " .. l)
      got[k] = tonumber(v)
    end
    assert.are.same(truth, got)

    -- The log: one clear line per refused or rolled-back version, and a
    -- version chain without gaps (every line names the running version).
    assert.are.equal(1, count(log, "refused: [^\n]*job%.lua:%d+: [^\n]*still "
                                   .. "running version %x+"),
                     "syntax error refusal with file:line; log:\n" .. log)
    assert.are.equal(1, count(log, "refused: restart needed: inputs changed"
                                   .. "[^\n]*more%-events[^\n]*still running"),
                     "added input refusal; log:\n" .. log)
    assert.are.equal(1, count(log, "version %x+ rolled back to %x+: "
                                   .. "process%(%) raised [^\n]*boom"),
                     "rollback of the raising version; log:\n" .. log)
    assert.are.equal(2, count(log, "refused"), "refusals; log:\n" .. log)
    -- 17 good versions and the raising one (swapped in, then rolled back)
    assert.are.equal(18, count(log, "reloaded [^\n]* %-> "),
                     "swaps; log:\n" .. log)
    local cur, prev
    for line in log:gmatch("[^\n]+") do
      local v = line:match("job 'reload_counter' started: .*version (%x+)")
      local old, new = line:match("reloaded .*version (%x+) %-> (%x+)")
      local keep = line:match("refused: .*still running version (%x+)")
      local bad_v, back = line:match("version (%x+) rolled back to (%x+)")
      if v then cur = v
      elseif old then
        assert.are.equal(cur, old, line)
        prev, cur = cur, new
      elseif keep then assert.are.equal(cur, keep, line)
      elseif bad_v then
        assert.are.same({ cur, prev }, { bad_v, back }, line)
        cur = back
      end
    end
    assert.is_not_nil(cur, "no 'started' line; log:\n" .. log)
  end)

  describe("tide reload", function()
    local function setup_counter()
      os.execute("mkdir " .. h.q(work .. "/job"))
      local job_file = work .. "/job/job.lua"
      h.write_file(job_file, assert(h.read_file(COUNTER_TPL)))
      h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
           { dir = dir, stdin = "a:1\nb:2\n" })
      return job_file
    end

    local function assert_clear_error(r, must)
      assert.are_not.equal(0, r.code, "exit 0: " .. r.out .. r.err)
      assert.is_true(r.code < 128, "killed by a signal? exit " .. r.code)
      assert.are.equal("", r.out)
      local lines = h.lines(r.err)
      assert.are.equal(1, #lines, "stderr is not one line:\n" .. r.err)
      assert.matches("^tide reload: ", lines[1])
      assert_no_sanitizer(r.err)
      for _, m in ipairs(must) do
        assert.is_true(plain_find(lines[1], m), "'" .. m .. "' not in: "
                       .. lines[1])
      end
    end

    it("against a stopped job fails clearly, by file and by name", function()
      local job_file = setup_counter()
      -- never started
      assert_clear_error(h.tide({ "reload", job_file }, { dir = dir }),
                         { "reload_counter", "running" })
      local job = start(dir, work, { "run", job_file })
      wait_count(job, "started", 1)
      local live = h.tide({ "reload", "reload_counter" }, { dir = dir })
      assert.are.equal(0, live.code, live.out .. live.err)
      h.stop(job)
      -- stopped
      assert_clear_error(h.tide({ "reload", job_file }, { dir = dir }),
                         { "reload_counter", "running" })
      assert_clear_error(h.tide({ "reload", "reload_counter" }, { dir = dir }),
                         { "reload_counter", "running" })
    end)

    it("refuses, with the reason, a version that changes what needs a "
       .. "restart; the old code goes on", function()
      local job_file = setup_counter()
      local tpl = assert(h.read_file(COUNTER_TPL))
      local job = start(dir, work, { "run", job_file })
      wait_count(job, "started", 1)
      local edits = {
        { tpl:gsub('commit_interval = "100ms"', 'commit_interval = "2s"'),
          "restart needed: commit_interval changed" },
        { tpl:gsub('    process = function',
                   '    window = function(ctx) end,\n    process = function'),
          "restart needed: window changed" },
        { tpl:gsub('serde = "string",', 'serde = "string",\n    max_memory = "1GiB",'),
          "restart needed: max_memory changed" },
      }
      for i, e in ipairs(edits) do
        -- a tag of its own, so that each is a new version
        h.write_file(job_file, (e[1]:gsub('"t01"', fmt('"r%02d"', i))))
        local r = h.tide({ "reload", "reload_counter" }, { dir = dir })
        assert.are.equal(1, r.code, r.out .. r.err)
        assert.is_true(plain_find(r.out, e[2]), "'" .. e[2] .. "' not in: "
                       .. r.out)
        -- asked again: refused again, with the same reason
        r = h.tide({ "reload", "reload_counter" }, { dir = dir })
        assert.are.equal(1, r.code, r.out .. r.err)
        assert.is_true(plain_find(r.out, e[2]), "again: " .. r.out)
      end
      -- the old code still runs: its tag on new outputs
      local before = stream_len(dir, "tagged")
      h.ok({ "produce", "events", "-K", ":" }, { dir = dir, stdin = "c:3\n" })
      wait_stream_len(dir, "tagged", before + 1)
      local outs = read_stream(dir, "tagged", PARTS)
      for p = 0, PARTS - 1 do
        for _, o in ipairs(outs[p]) do
          assert.matches("^t01:", o[2])
        end
      end
      h.stop(job)
      assert.are.equal(0, count(log_of(job), "reloaded "), log_of(job))
    end)

    it("against a job run by another user fails with a permission error",
       function()
      local setpriv = h.sh("command -v setpriv"):gsub("%s+$", "")
      if setpriv == "" or h.sh("id -u"):gsub("%s+$", "") ~= "0" then
        pending("needs root and setpriv")
        return
      end
      local job_file = setup_counter()
      local job = start(dir, work, { "run", job_file })
      wait_count(job, "started", 1)
      -- The other user runs a copy of tide and of the Lua runtime it loads
      -- (from the source tree) in the scratch folder: the checkout or the
      -- build may sit where that user cannot read, and that must not be
      -- what keeps it out.
      local rt = work .. "/rt"
      assert(os.execute(fmt("mkdir %s && cp -R %s %s %s/ && cp %s %s/tide",
                            h.q(rt), h.q(SRC .. "/bindings"),
                            h.q(SRC .. "/lua"), h.q(rt), h.q(h.bin), h.q(rt)))
             == 0, "could not copy tide to " .. rt)
      local other = fmt("setpriv --reuid=65534 --regid=65534 --clear-groups "
                        .. "env TIDE_LUA_PATH=%s %s",
                        h.q(fmt("%s/bindings/?.lua;%s/lua/?.lua;"
                                .. "%s/lua/?/init.lua;;", rt, rt, rt)),
                        h.q(rt .. "/tide"))
      -- let the other user reach the socket: only its mode keeps it out
      os.execute("chmod -R a+rX " .. h.q(rt))
      os.execute("find " .. h.q(work) .. " -type d -exec chmod a+rx {} +")
      -- it can run tide: a job it may reach gets an answer ("not running")
      local probe = h.run(other .. " reload nosuchjob --data-dir "
                          .. h.q(dir))
      assert_clear_error(probe, { "nosuchjob" })
      assert.is_nil(probe.err:find("module", 1, true), probe.err)
      local sock = dir .. "/jobs/reload_counter/control.sock"
      assert.are.equal("600 0 socket",
                       h.sh("stat -c '%a %u %F' " .. h.q(sock))
                         :gsub("%s+$", ""))
      local r = h.run(other .. " reload reload_counter --data-dir "
                      .. h.q(dir))
      assert_clear_error(r, { "reload_counter" })
      assert.matches("[Pp]ermission", r.err)
      -- the job kept running and was not asked anything
      assert.is_true(h.alive(job.pid))
      assert.is_false(plain_find(log_of(job), "reload ("), log_of(job))
      local own = h.tide({ "reload", "reload_counter" }, { dir = dir })
      assert.are.equal(0, own.code, own.out .. own.err)
      assert.matches("^ok: .*already running", own.out)
      h.stop(job)
    end)
  end)

  it("rolls back a version whose window() raises on probation, and the "
     .. "old code runs that window and keeps going", function()
    local tpl = assert(h.read_file(COUNTER_TPL))
    -- Both versions have a window(); the old one's sends a marker, the new
    -- one's raises. No input arrives after the swap, so the new version is
    -- still on probation when its first window comes.
    local function with_window(body)
      return sub1(tpl, PROCESS, 'window_interval = "50ms",\n'
                  .. "    window = function(ctx) " .. body .. " end,\n    "
                  .. PROCESS)
    end
    local v1 = with_window('ctx:send("tagged", nil, "w:" .. TAG)')
    local v2 = sub1(with_window('error("wboom")'), TPL_TAG,
                    'local TAG = "t02"')
    os.execute("mkdir " .. h.q(work .. "/job"))
    local job_file = work .. "/job/job.lua"
    h.write_file(job_file, v1)
    h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
         { dir = dir, stdin = "a:1\nb:2\n" })
    local job = start(dir, work, { "run", job_file })
    wait_count(job, "job 'reload_counter' started", 1, "the start")
    wait_stream_len(dir, "tagged", 2)

    h.write_file(job_file, v2)         -- the watcher reloads it
    local log = wait_count(job, "rolled back to", 1, "the rollback")
    assert.matches("reloaded [^\n]*%(file change%)", log)
    assert.matches("version %x+ rolled back to %x+: window%(%) of task %d "
                   .. "raised: [^\n]*wboom", log)
    -- the old code runs on: its windows and its process()
    local before = stream_len(dir, "tagged")
    h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
         { dir = dir, stdin = "c:3\n" })
    wait_stream_len(dir, "tagged", before + 1 + PARTS)
    assert.is_true(h.alive(job.pid), "the job stopped; log:\n" .. log_of(job))
    h.stop(job)
    log = log_of(job)
    assert_no_sanitizer(log)
    assert.are.equal(1, count(log, "rolled back"), log)
    local outs = read_stream(dir, "tagged", PARTS)
    for p = 0, PARTS - 1 do
      for _, o in ipairs(outs[p]) do
        assert.matches("t01", o[2], "an output of the rolled back version")
      end
    end
  end)

  it("keeps ctx.memo, runs on_reload once per task with the old version, "
     .. "reloads on SIGHUP and on tide reload", function()
    -- The job file is a symlink into a folder tide does not watch, so that
    -- only SIGHUP and `tide reload` make it reload.
    local tpl = assert(h.read_file(MEMO_TPL))
    os.execute("mkdir " .. h.q(work .. "/job") .. " " .. h.q(work .. "/src"))
    local real = work .. "/src/real.lua"
    local job_file = work .. "/job/job.lua"
    h.write_file(real, tpl)
    os.execute("ln -s ../src/real.lua " .. h.q(job_file))
    assert(h.read_file(job_file) == tpl, "could not make the symlink")
    local function version(tag)
      return sub1(tpl, 'local TAG = "m1"', fmt('local TAG = "%s"', tag))
    end
    local function feed(first, n)
      local lines = {}
      for i = first, first + n - 1 do lines[#lines + 1] = "k" .. i .. ":" .. i end
      h.ok({ "produce", "events", "-K", ":", "--partitions", "2" },
           { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    end
    feed(0, 20)
    local job = start(dir, work, { "run", job_file })
    local log = wait_count(job, "job 'reload_memo' started", 1)
    local v1 = assert(log:match("started: .*version (%x+)"))
    wait_stream_len(dir, "memo-out", 20)

    -- SIGHUP: a new version
    h.write_file(real, version("m2"))
    h.signal(job, "HUP")
    log = wait_count(job, "reloaded [^\n]*%(SIGHUP%)", 1, "the SIGHUP reload")
    local o2, v2 = log:match("%(SIGHUP%): version (%x+) %-> (%x+)")
    assert.are.equal(v1, o2)
    feed(20, 20)
    wait_stream_len(dir, "memo-out", 20 + 2 + 20)

    -- tide reload, unchanged: already running
    local same = h.tide({ "reload", job_file }, { dir = dir })
    assert.are.equal(0, same.code, same.out .. same.err)
    assert.matches("already running", same.out)
    assert.is_true(plain_find(same.out, v2), same.out)

    -- tide reload, a new version: ok
    h.write_file(real, version("m3"))
    local ok = h.tide({ "reload", "reload_memo" }, { dir = dir })
    assert.are.equal(0, ok.code, ok.out .. ok.err)
    assert.matches("^ok: ", ok.out)
    local o3, v3 = ok.out:match("version (%x+) %-> (%x+)")
    assert.are.equal(v2, o3)
    feed(40, 20)
    wait_stream_len(dir, "memo-out", 20 + 2 + 20 + 2 + 20)

    -- tide reload, a syntax error: error, exit 1, old code kept
    h.write_file(real, version("m4"):gsub("%(msg, ctx%)", "(msg, ctx", 1))
    local err = h.tide({ "reload", "reload_memo" }, { dir = dir })
    assert.are.equal(1, err.code, err.out .. err.err)
    assert.matches("^error: .*refused: .*job%.lua:%d+:", err.out)

    h.stop(job)
    assert_no_sanitizer(log_of(job))
    local ms = {}
    for x in log_of(job):gmatch("swapped in ([%d.]+) ms") do ms[#ms + 1] = x end
    io.stderr:write(fmt("\nreload_spec (memo): swap times (ms): %s\n",
                        table.concat(ms, " ")))

    -- Per task: the memo count runs 1, 2, 3, ... across both reloads, the
    -- version changes v1 -> v2 -> v3 where the markers are, and there is
    -- one marker per task and reload, naming the old and new versions.
    local outs = read_stream(dir, "memo-out", 2)
    local rank = { [v1] = 1, [v2] = 2, [v3] = 3 }
    local want_tag = { [v1] = "m1", [v2] = "m2", [v3] = "m3" }
    local memo, last, markers = { [0] = 0, [1] = 0 }, { [0] = 1, [1] = 1 },
                                { [0] = {}, [1] = {} }
    local processed = 0
    -- process() sends with the message's key, so a task's outputs are in
    -- its own partition, in order; the markers' key may be in the other.
    for p = 0, 1 do
      for _, o in ipairs(outs[p]) do
        local val = o[2]
        local t, tag, v, n = val:match("^p (%d+) (%S+) (%x+) (%d+)$")
        local mt, old, new = val:match("^r (%d+) (%x+) (%x+)$")
        t = tonumber(t)
        if t then
          assert.are.equal(p, t, "task of '" .. val .. "'")
          memo[t] = memo[t] + 1
          assert.are.equal(memo[t], tonumber(n), "memo count of task " .. t
                           .. " in '" .. val .. "'")
          assert(rank[v], "unknown version in " .. val)
          assert(rank[v] >= last[t], "version went back: " .. val)
          last[t] = rank[v]
          assert.are.equal(want_tag[v], tag, val)
          processed = processed + 1
        else
          mt = assert(tonumber(mt), "bad output: " .. val)
          table.insert(markers[mt], old .. " " .. new)
        end
      end
    end
    for t = 0, 1 do
      table.sort(markers[t], function(a, b)
        return rank[a:match("^%x+")] < rank[b:match("^%x+")]
      end)
      assert.are.same({ v1 .. " " .. v2, v2 .. " " .. v3 }, markers[t],
                      "on_reload markers of task " .. t)
    end
    assert.are.equal(60, processed)
  end)
end)
