-- End to end: `tide run` as a user drives it (docs/design.md sections 3 and 4, README's CLI table; issue 3
-- "Must show"). Jobs come from spec/cli/jobs/ and jobs/; each test gets a
-- fresh data dir and a scratch dir, removed afterwards.
local h = require("cli.helper")
local cjson = require("cjson")

local ASAN = (os.getenv("TIDE_BUILD_DIR") or ""):find("asan") ~= nil
local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local TAG_JOB = SRC .. "/spec/cli/jobs/tag.lua"
local WINDOW_JOB = SRC .. "/spec/cli/jobs/window.lua"
local BOT_JOB = SRC .. "/jobs/bot_filter.lua"

-- Message counts: the "Must show" sizes, smaller under ASan for the long
-- ones so that the file stays well under a minute.
local N_DRAIN = 100000
local N_KILL = ASAN and 400000 or 1000000
local N_STOP = ASAN and 300000 or 600000
local PARTS = 4

local fmt = string.format

-- ---- helpers -----------------------------------------------------------------

-- Writes n lines "k<i % 9973>:v<i>" (key before the ':') to path.
local function make_keyed(path, n)
  h.write_lines(path, n, function(i)
    return "k" .. ((i - 1) % 9973) .. ":v" .. (i - 1)
  end)
end

-- Reads a whole stream: { [p] = { k = { keys }, v = { values } } } for
-- p = 0..nparts-1, index j holding offset j-1. Fails unless each partition
-- starts at offset 0 and its offsets follow each other.
local function read_stream(dir, name, nparts)
  local out = h.ok({ "consume", name, "-e", "-f", "%p %o %k %s\\n" },
                   { dir = dir })
  local t = {}
  for p = 0, nparts - 1 do t[p] = { k = {}, v = {} } end
  local bad
  for p, o, k, v in out:gmatch("(%d+) (%d+) (%S*) ([^\n]*)\n") do
    local part = t[tonumber(p)]
    if not part then
      bad = bad or fmt("'%s': partition %s out of range", name, p)
    else
      local n = #part.v
      if tonumber(o) ~= n then
        bad = bad or fmt("'%s' partition %s: offset %s where %d was due",
                         name, p, o, n)
      end
      part.k[n + 1], part.v[n + 1] = k, v
    end
  end
  assert(bad == nil, bad)
  return t
end

-- { [p] = { start =, ["end"] = } } and the partition count, from
-- `tide streams describe`.
local function stream_info(dir, name)
  local out = h.ok({ "streams", "describe", name }, { dir = dir })
  local t = {}
  for p, s, e in out:gmatch("\n%s*(%d+)%s+(%d+)%s+(%d+)%s+%d+%s+%d+") do
    t[tonumber(p)] = { start = tonumber(s), ["end"] = tonumber(e) }
  end
  return t, tonumber(out:match("partitions%s+(%d+)"))
end

local function stream_total(dir, name)
  local t, n = stream_info(dir, name)
  local sum = 0
  for p = 0, n - 1 do sum = sum + t[p]["end"] end
  return sum
end

-- The checkpoint of a job: { [p] = offset of the next message of input
-- spec } (nil when there is no checkpoint file yet).
local function checkpoint(dir, job, spec)
  local text = h.read_file(fmt("%s/jobs/%s/checkpoint.json", dir, job))
  if not text then return nil end
  local doc = cjson.decode(text)
  local t = {}
  for p, task in pairs(doc.tasks) do
    t[tonumber(p)] = task.inputs[spec]
  end
  return t
end

local function sum_of(t, nparts)
  local s = 0
  for p = 0, nparts - 1 do s = s + (t and t[p] or 0) end
  return s
end

local start = h.start_tide

local stderr_of = h.tide_stderr

-- Waits (at most 30 s, a hang guard, not a timing assertion) until job's
-- stderr matches pattern.
local function wait_log(job, pattern)
  h.wait_log(job, pattern, 1, nil, 30)
end

local wait_exit, signal = h.wait_exit, h.signal

-- Checks that "out" is exactly "in" tagged, partition by partition: same
-- count, same order, same keys, "p:o|value" values (one output per input,
-- in input order, in the input's partition).
local function assert_exact_copy(ins, outs)
  local bad
  for p = 0, PARTS - 1 do
    local i, o = ins[p], outs[p]
    if #o.v ~= #i.v then
      bad = bad or fmt("partition %d: %d outputs for %d inputs", p, #o.v, #i.v)
    end
    for j = 1, #o.v do
      local want = p .. ":" .. (j - 1) .. "|" .. tostring(i.v[j])
      if o.v[j] ~= want or o.k[j] ~= i.k[j] then
        bad = bad or fmt("partition %d offset %d: '%s' '%s' where '%s' '%s' "
                         .. "was due", p, j - 1, o.k[j], o.v[j],
                         tostring(i.k[j]), want)
      end
    end
  end
  assert(bad == nil, bad)
end

-- Asserts that stderr is one line starting "tide run:", not a traceback,
-- containing every plain string of 'patterns'.
local function assert_one_line_error(r, patterns)
  assert.are_not.equal(0, r.code, "exit code 0; stderr: " .. r.err)
  assert.is_true(r.code < 128, "killed by a signal? exit " .. r.code)
  local lines = h.lines(r.err)
  assert.are.equal(1, #lines, "stderr is not one line:\n" .. r.err)
  assert.are.equal(r.err, lines[1] .. "\n")
  assert.matches("^tide run: ", lines[1])
  for _, bad in ipairs({ "traceback", "AddressSanitizer", "runtime error",
                         "Segmentation" }) do
    assert.not_matches(bad, lines[1])
  end
  for _, p in ipairs(patterns or {}) do
    assert.matches(p, lines[1], 1, true)
  end
  return lines[1]
end

-- ---- specs ---------------------------------------------------------------------

describe("tide run", function()
  local dir, work

  before_each(function() dir, work = h.tmpdir(), h.tmpdir() end)
  after_each(function() h.kill_ours(nil, work, dir) end)

  describe("a stateless job with --drain", function()
    it("sends one output per input, in order, to the key's partition, and a "
       .. "rerun sends nothing more", function()
      local input = work .. "/in.txt"
      make_keyed(input, N_DRAIN)
      h.ok({ "produce", "in", "-K", ":", "--partitions", tostring(PARTS) },
           { dir = dir, stdin_file = input })
      local ins = read_stream(dir, "in", PARTS)

      local r = h.tide({ "run", TAG_JOB, "--drain" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      assert.matches(N_DRAIN .. " messages processed", r.err, 1, true)
      assert.matches("stopped cleanly", r.err, 1, true)
      local outs = read_stream(dir, "out", PARTS)
      assert_exact_copy(ins, outs)

      -- keys are where murmur2 puts them, in "in" and so in "out"
      local cache, total, bad = {}, 0, nil
      for p = 0, PARTS - 1 do
        total = total + #outs[p].k
        for _, k in ipairs(outs[p].k) do
          local want = cache[k]
          if not want then
            want = h.partition_of(k, PARTS)
            cache[k] = want
          end
          if want ~= p then
            bad = bad or fmt("key '%s' in partition %d, murmur2 says %d", k, p,
                             want)
          end
        end
      end
      assert(bad == nil, bad)
      assert.are.equal(N_DRAIN, total)

      -- the checkpoint holds every partition's end
      local ckpt = checkpoint(dir, "tag", "local:in")
      local ends = stream_info(dir, "in")
      for p = 0, PARTS - 1 do
        assert.are.equal(ends[p]["end"], ckpt[p])
        assert.are.equal(#ins[p].v, ckpt[p])
      end

      -- a second drain starts at the checkpoint: nothing more to do
      r = h.tide({ "run", TAG_JOB, "--drain" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      assert.matches(" 0 messages processed", r.err, 1, true)
      assert.are.equal(N_DRAIN, stream_total(dir, "out"))
      assert.are.same(ckpt, checkpoint(dir, "tag", "local:in"))
    end)
  end)

  describe("with --drain and several workers", function()
    it("reads every input to its end before it stops, run after run",
       function()
      -- A probe answered on a round that read its inputs before the last
      -- data landed said "idle" too early: about 1 drain in 8 of this
      -- stateful job stopped after its first round (2048 messages).
      local job = SRC .. "/spec/cli/jobs/counter.lua"
      local input = work .. "/in.txt"
      make_keyed(input, 60000)
      h.ok({ "produce", "events", "-K", ":", "--partitions", tostring(PARTS) },
           { dir = dir, stdin_file = input })
      for run = 1, 10 do
        h.rmdir(dir .. "/jobs")
        for _, s in ipairs({ "counts-out", "counter-counts-changelog" }) do
          h.rmdir(dir .. "/streams/" .. s)
        end
        local workers = run % 4 == 0 and "2" or "1"
        local r = h.tide({ "run", job, "--drain", "--workers", workers },
                         { dir = dir })
        assert.are.equal(0, r.code, r.err)
        assert.is_true(r.err:find(" 60000 messages processed", 1, true) ~= nil,
                       "run " .. run .. " with " .. workers .. " workers:\n"
                       .. r.err)
        assert.are.equal(60000, stream_total(dir, "counts-out"))
      end
    end)
  end)

  describe("killed with SIGKILL", function()
    it("loses no input: a rerun leaves every input in the outputs, in "
       .. "replayed runs", function()
      local input = work .. "/in.txt"
      make_keyed(input, N_KILL)
      h.ok({ "produce", "in", "-K", ":", "--partitions", tostring(PARTS) },
           { dir = dir, stdin_file = input })
      os.remove(input)
      local args = { "run", TAG_JOB, "-c", "commit_interval=30ms" }

      local mid_run, runs = 0, 0
      for _, delay in ipairs({ 0.02, 0.1, 0.3 }) do
        local job = start(dir, work, args)
        runs = runs + 1
        h.sleep(delay)
        local alive = h.alive(job.pid)
        signal(job, 9)
        local rc = wait_exit(job)
        if alive then
          assert.are.equal(137, rc, stderr_of(job))
        end
        local done = sum_of(checkpoint(dir, "tag", "local:in"), PARTS)
        local exists = h.tide({ "streams", "describe", "out" }, { dir = dir })
        if alive and done < N_KILL and exists.code == 0
           and stream_total(dir, "out") > 0 then
          mid_run = mid_run + 1
        end
      end
      -- On a loaded machine all three may land before the work starts:
      -- then one more, killed as soon as its outputs grow.
      if mid_run == 0 then
        local before = h.tide({ "streams", "describe", "out" },
                              { dir = dir }).code == 0
                       and stream_total(dir, "out") or 0
        local job = start(dir, work, args)
        runs = runs + 1
        for _ = 1, 3000 do
          local exists = h.tide({ "streams", "describe", "out" },
                                { dir = dir }).code == 0
          if (exists and stream_total(dir, "out") > before)
             or h.read_file(job.base .. ".rc") then
            break
          end
          h.sleep(0.01)
        end
        local alive = h.alive(job.pid)
        signal(job, 9)
        wait_exit(job)
        local done = sum_of(checkpoint(dir, "tag", "local:in"), PARTS)
        if alive and done < N_KILL then
          mid_run = mid_run + 1
        end
      end
      -- one more, killed while idle with every input read and committed
      local job = start(dir, work, args)
      runs = runs + 1
      local done
      for _ = 1, 3000 do
        done = sum_of(checkpoint(dir, "tag", "local:in"), PARTS)
        if done >= N_KILL or h.read_file(job.base .. ".rc") then break end
        h.sleep(0.01)
      end
      assert.are.equal(N_KILL, done, "the job never caught up; stderr:\n"
                       .. stderr_of(job))
      h.sleep(0.1)
      assert.is_true(h.alive(job.pid), "the job exited on its own without --drain")
      signal(job, 9)
      assert.are.equal(137, wait_exit(job))

      local r = h.tide({ "run", TAG_JOB, "--drain" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      assert.is_true(mid_run > 0, "no SIGKILL landed in the middle of the work")

      -- each output partition: runs of consecutive input offsets, a new run
      -- starting at or before the end of the last (a replay after a
      -- restart), every input offset present
      local ins = read_stream(dir, "in", PARTS)
      local outs = read_stream(dir, "out", PARTS)
      local bad, total = nil, 0
      for p = 0, PARTS - 1 do
        local seen, prev, replays, iv = {}, -1, 0, ins[p].v
        total = total + #outs[p].v
        for j, s in ipairs(outs[p].v) do
          local tp, to, v = s:match("^(%d+):(%d+)|(.*)$")
          tp, to = tonumber(tp), tonumber(to)
          if tp ~= p then
            bad = bad or fmt("out partition %d offset %d: '%s' comes from "
                             .. "partition %s", p, j - 1, s, tostring(tp))
          elseif iv[to + 1] ~= v then
            bad = bad or fmt("out partition %d offset %d: '%s', but input "
                             .. "offset %d is '%s'", p, j - 1, s, to,
                             tostring(iv[to + 1]))
          elseif to > prev + 1 then
            bad = bad or fmt("out partition %d offset %d: input offsets %d.."
                             .. "%d skipped", p, j - 1, prev + 1, to - 1)
          else
            if to <= prev then replays = replays + 1 end
            seen[to] = true
            prev = to
          end
        end
        for o = 0, #iv - 1 do
          if not seen[o] then
            bad = bad or fmt("input partition %d offset %d ('%s') is missing "
                             .. "from the outputs", p, o, iv[o + 1])
            break
          end
        end
        if replays > runs then
          bad = bad or fmt("out partition %d goes back %d times in %d "
                           .. "restarts", p, replays, runs)
        end
      end
      assert(bad == nil, bad)
      assert.is_true(total >= N_KILL)
    end)
  end)

  for _, sig in ipairs({ "TERM", "INT" }) do
    describe("stopped with SIG" .. sig, function()
      it("exits 0 with a checkpoint that covers exactly what was sent",
         function()
        local input = work .. "/in.txt"
        make_keyed(input, N_STOP)
        h.ok({ "produce", "in", "-K", ":", "--partitions", tostring(PARTS) },
             { dir = dir, stdin_file = input })
        os.remove(input)
        -- only the stop commits: anything else would hide a missing one
        local job = start(dir, work, { "run", TAG_JOB, "-c",
                                       "commit_interval=1h" })
        wait_log(job, "started")
        h.sleep(0.05)
        signal(job, sig)
        local rc = wait_exit(job)
        local err = stderr_of(job)
        assert.are.equal(0, rc, err)
        assert.matches("stopping", err, 1, true)
        assert.matches("stopped cleanly", err, 1, true)

        local ckpt = checkpoint(dir, "tag", "local:in")
        assert.is_not_nil(ckpt, "no checkpoint written on stop")
        local outs = stream_info(dir, "out")
        local done = 0
        for p = 0, PARTS - 1 do
          assert.are.equal(outs[p]["end"], ckpt[p],
                           "partition " .. p .. ": checkpoint vs outputs")
          done = done + ckpt[p]
        end
        assert.is_true(done < N_STOP, "the stop came after the whole input; "
                       .. "nothing was tested")

        -- the rest, exactly once
        local r = h.tide({ "run", TAG_JOB, "--drain" }, { dir = dir })
        assert.are.equal(0, r.code, r.err)
        assert.matches(" " .. (N_STOP - done) .. " messages processed", r.err,
                       1, true)
        assert_exact_copy(read_stream(dir, "in", PARTS),
                          read_stream(dir, "out", PARTS))
      end)
    end)
  end

  describe("with malformed JSON in the input", function()
    -- Good page views of users u0..u<n-1>; every 5th is a bot, every 3rd
    -- (not a bot) a phone. The bad lines are written to partitions of
    -- their own choosing between two halves of good lines.
    local BAD = {
      '{"user":"u1", broken',
      'not json',
      '{"user":"u2","url":"/a"',
      "{'single':'quotes'}",
      '[1, 2,',
      '{"user":"u3","ua":"x\\q"}',
    }
    local N_GOOD = 2000
    local want_desktop, want_mobile

    local function good_line(i)
      local ua
      if i % 5 == 0 then
        ua = "Mozilla/5.0 (compatible; Googlebot/2.1)"
      elseif i % 3 == 0 then
        ua = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0)"
      else
        ua = "Mozilla/5.0 (X11; Linux x86_64) Firefox/120.0"
      end
      return fmt('u%d\t{"user":"u%d","url":"/s%d/page","ua":"%s","n":%d}',
                 i % 97, i % 97, i % 7, ua, i)
    end

    -- Produces the input into 'pageviews' with bad line b in partition
    -- parts[b]. Returns { [bad line] = { p =, o = } }.
    local function produce_input(parts)
      local function good(from, to)
        local t = {}
        for i = from, to do t[#t + 1] = good_line(i) end
        h.ok({ "produce", "pageviews", "-K", "\t", "--partitions", "4" },
             { dir = dir, stdin = table.concat(t, "\n") .. "\n" })
      end
      good(0, N_GOOD / 2 - 1)
      for b, line in ipairs(BAD) do
        h.ok({ "produce", "pageviews", "-p", tostring(parts[b]) },
             { dir = dir, stdin = line .. "\n" })
      end
      good(N_GOOD / 2, N_GOOD - 1)
      want_desktop, want_mobile = {}, {}
      for i = 0, N_GOOD - 1 do
        if i % 5 ~= 0 then
          if i % 3 == 0 then want_mobile[i] = true else want_desktop[i] = true end
        end
      end
      local where = {}
      local out = h.ok({ "consume", "pageviews", "-e", "-f", "%p %o %s\\n" },
                       { dir = dir })
      for p, o, s in out:gmatch("(%d+) (%d+) ([^\n]*)\n") do
        for _, line in ipairs(BAD) do
          if s == line then where[line] = { p = tonumber(p), o = tonumber(o) } end
        end
      end
      for _, line in ipairs(BAD) do
        assert(where[line], "bad line not found in the input: " .. line)
      end
      return where
    end

    -- Asserts that the good page views, and only they, reached the two
    -- outputs, each once, with the derived fields.
    local function assert_good_processed()
      for name, want in pairs({ ["pageviews-desktop"] = want_desktop,
                                ["pageviews-mobile"] = want_mobile }) do
        local out = h.ok({ "consume", name, "-e", "-f", "%s\\n" }, { dir = dir })
        local got, bad = {}, nil
        for _, l in ipairs(h.lines(out)) do
          local ev = cjson.decode(l)
          if got[ev.n] then bad = bad or fmt("%s: n=%d twice", name, ev.n) end
          got[ev.n] = true
          if not want[ev.n] then bad = bad or fmt("%s: unexpected %s", name, l) end
          if ev.section ~= "s" .. (ev.n % 7) then
            bad = bad or fmt("%s: bad section in %s", name, l)
          end
        end
        for n in pairs(want) do
          if not got[n] then bad = bad or fmt("%s: n=%d missing", name, n) end
        end
        assert(bad == nil, bad)
      end
    end

    it("dead-letters the original bytes with the error, and processes every "
       .. "good line", function()
      local where = produce_input({ 0, 1, 3, 3, 0, 2 })
      local r = h.tide({ "run", BOT_JOB, "--drain" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      assert_good_processed()

      -- the values are the bad lines, byte for byte
      local out = h.ok({ "consume", "bot-filter-dead-letters", "-e", "-f",
                         "%s\\n" }, { dir = dir })
      local got = h.lines(out)
      local want = {}
      for i, l in ipairs(BAD) do want[i] = l end
      table.sort(got)
      table.sort(want)
      assert.are.same(want, got)

      -- the headers hold the error and where the message came from (read
      -- through the bindings; every handle closed before any assertion)
      local system = require("tide.system")
      local headers = require("tide.headers")
      local recs = {}
      do
        local s = assert(system.open({ data_dir = dir }, "bot-filter-dead-letters",
                                     { create = false }))
        for p = 0, s:count() - 1 do
          local rd = s:reader(p, "beginning")
          local msgs = {}
          local n = rd and rd:poll(100, msgs) or 0
          for i = 1, n do recs[#recs + 1] = msgs[i] end
          if rd then rd:close() end
        end
        s:close()
      end
      local seen = 0
      for _, m in ipairs(recs) do
        local hd = headers.decode(assert(m.headers, "no headers on " .. m.value))
        local at = where[m.value]
        assert.is_not_nil(at, m.value)
        assert.are.equal(tostring(at.p), hd["tide.partition"])
        assert.are.equal(tostring(at.o), hd["tide.offset"])
        assert.are.equal("pageviews", hd["tide.stream"])
        assert.matches("json", hd["tide.error"] or "", 1, true)
        assert.matches("cannot decode", hd["tide.error"] or "", 1, true)
        seen = seen + 1
      end
      assert.are.equal(#BAD, seen)
      -- and the log says so, once per bad line
      local _, warns = r.err:gsub("warn dead%-lettered", "")
      assert.are.equal(#BAD, warns)
    end)

    it("fails on the first bad line with on_error=fail, naming it, and a "
       .. "rerun stops at the same message", function()
      -- every bad line in partition 2, so the first one is hit first
      local where = produce_input({ 2, 2, 2, 2, 2, 2 })
      local first = where[BAD[1]]
      local name = fmt("stream 'pageviews' partition %d offset %d", first.p,
                       first.o)
      for run = 1, 2 do
        -- the first run at --log-level debug (the traceback below the
        -- line), the second at the default level (the line alone)
        local args = { "run", BOT_JOB, "-c", "on_error=fail", "--drain" }
        if run == 1 then
          args[#args + 1] = "--log-level=debug"
        end
        local r = h.tide(args, { dir = dir })
        assert.are_not.equal(0, r.code, "run " .. run .. " exited 0")
        assert.is_true(r.code < 128, "killed by a signal? exit " .. r.code)
        local line = r.err:match("[^\n]*tide run:[^\n]*")
        assert.is_not_nil(line, r.err)
        assert.matches(name, line, 1, true)
        assert.matches("cannot decode", line, 1, true)
        local _, nrun = r.err:gsub("tide run:", "")
        assert.are.equal(1, nrun, r.err)
        if run == 1 then
          assert.matches("stack traceback", r.err, 1, true)
          -- through the job's own code only, not tide's runtime
          assert.is_nil(r.err:find("/tide/task.lua", 1, true), r.err)
          assert.is_nil(r.err:find("[C]:", 1, true), r.err)
        else
          assert.is_nil(r.err:find("traceback", 1, true), r.err)
        end
        local ckpt = checkpoint(dir, "bot-filter", "local:pageviews")
        assert.is_true(ckpt == nil or (ckpt[first.p] or 0) <= first.o,
                       "checkpoint past the bad message")
      end
      local dl = h.tide({ "consume", "bot-filter-dead-letters", "-e" }, { dir = dir })
      assert.are.equal("", dl.out)
    end)

    it("skips the bad lines with on_error=skip, one warning each, and "
       .. "processes every good line", function()
      local where = produce_input({ 1, 0, 3, 2, 1, 0 })
      local r = h.tide({ "run", BOT_JOB, "-c", "on_error=skip", "--drain" },
                       { dir = dir })
      assert.are.equal(0, r.code, r.err)
      assert_good_processed()
      local warns = {}
      for l in r.err:gmatch("[^\n]*warn[^\n]*") do warns[#warns + 1] = l end
      assert.are.equal(#BAD, #warns, r.err)
      for _, line in ipairs(BAD) do
        local at = where[line]
        local n = 0
        for _, w in ipairs(warns) do
          if w:find(fmt("partition %d offset %d:", at.p, at.o), 1, true) then
            n = n + 1
          end
        end
        assert.are.equal(1, n, "warnings naming " .. line .. ":\n" .. r.err)
      end
      assert.matches(#BAD .. " skipped", r.err, 1, true)
    end)
  end)

  describe("with a bad job or command line", function()
    before_each(function()
      h.ok({ "produce", "in", "--partitions", "2" }, { dir = dir, stdin = "a\nb\n" })
      h.ok({ "produce", "in3", "--partitions", "3" }, { dir = dir, stdin = "c\n" })
    end)

    local function job_file(text)
      local path = work .. "/job.lua"
      h.write_file(path, text)
      return path
    end

    local cases = {
      { "a missing name", 'return { inputs = { "in" }, process = function() end }',
        { "missing field 'name'" } },
      { "a missing process", 'return { name = "j", inputs = { "in" } }',
        { "missing field 'process'" } },
      { "an unknown field",
        'return { name = "j", inptus = { "in" }, process = function() end }',
        { "unknown field 'inptus'", "known:" } },
      { "an unknown serde",
        'return { name = "j", inputs = { "in" }, serde = "xml", process = function() end }',
        { "unknown serde 'xml'" } },
      { "an unknown serde of one input",
        'return { name = "j", inputs = { { "in", serde = "yaml" } }, process = function() end }',
        { "unknown serde 'yaml'", "inputs[1]" } },
      { "an input stream that does not exist",
        'return { name = "j", inputs = { "nope" }, process = function() end }',
        { "'nope'", "tide streams create" } },
      { "inputs with unequal partition counts",
        'return { name = "j", inputs = { "in", "in3" }, process = function() end }',
        { "partition count", "'in' has 2", "'in3' has 3" } },
      { "a syntax error", 'return { name = "j",\n inputs = { "in" }\n process = 1 }',
        { "job.lua:3:" } },
      { "an unknown processing mode",
        'return { name = "j", inputs = { "in" }, processing = "twice", process = function() end }',
        { "field 'processing' must be at_least_once or exactly_once, not 'twice'" } },
      { "exactly_once on a local: job",
        'return { name = "j", inputs = { "in" }, processing = "exactly_once", process = function() end }',
        { "exactly_once", "first input on kafka:" } },
      { "a standby count other than 0 or 1",
        'return { name = "j", inputs = { "in" }, standby_replicas = 2, process = function() end }',
        { "field 'standby_replicas' must be 0 or 1, not 2" } },
    }
    for _, c in ipairs(cases) do
      it("fails with one line for " .. c[1], function()
        local path = job_file(c[2])
        local r = h.tide({ "run", path, "--drain" }, { dir = dir })
        local l = assert_one_line_error(r, c[3])
        assert.matches(path, l, 1, true)
        -- nothing ran: no checkpoint
        assert.is_nil(h.read_file(dir .. "/jobs/j/checkpoint.json"))
      end)
    end

    it("fails with one line for a missing job file", function()
      local r = h.tide({ "run", work .. "/none.lua", "--drain" }, { dir = dir })
      assert_one_line_error(r, { work .. "/none.lua", "cannot open" })
    end)

    it("fails with one line for a bad -c and an unknown option", function()
      local path = job_file('return { name = "j", inputs = { "in" }, process = function() end }')
      assert_one_line_error(h.tide({ "run", path, "-c", "foo", "--drain" }, { dir = dir }),
                            { "'foo'", "KEY=VALUE" })
      assert_one_line_error(h.tide({ "run", path, "-c", "=1", "--drain" }, { dir = dir }),
                            { "KEY=VALUE" })
      assert_one_line_error(h.tide({ "run", path, "--bogus", "--drain" }, { dir = dir }),
                            { "--bogus" })
      assert_one_line_error(h.tide({ "run", path, "--drain", "-c" }, { dir = dir }),
                            { "-c" })
    end)

    it("refuses a second run of a running job, naming its pid", function()
      local path = job_file('return { name = "j", inputs = { "in" }, process = function() end }')
      local first = start(dir, work, { "run", path })
      wait_log(first, "started")
      local r = h.tide({ "run", path, "--drain" }, { dir = dir })
      assert_one_line_error(r, { "'j'", "pid " .. first.pid })
      assert.is_true(h.alive(first.pid))
      signal(first, "TERM")
      assert.are.equal(0, wait_exit(first), stderr_of(first))
      -- and once it is gone, the job runs again
      r = h.tide({ "run", path, "--drain" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
    end)

    it("creates missing outputs and the dead-letter stream with the inputs' "
       .. "partition count", function()
      local path = job_file([[return { name = "j", inputs = { "in3" },
        outputs = { "new-a", "local:new-b" }, on_error = "dead_letter",
        process = function(msg, ctx) ctx:send("new-a", nil, msg.value) end }]])
      local r = h.tide({ "run", path, "--drain" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      for _, s in ipairs({ "new-a", "new-b", "j-dead-letters" }) do
        local _, n = stream_info(dir, s)
        assert.are.equal(3, n, s)
      end
      assert.are.equal("c\n", h.ok({ "consume", "new-a", "-e" }, { dir = dir }))
    end)

    it("passes -c config.x=5 to ctx.config.x as a number", function()
      local path = job_file([[return { name = "j", inputs = { "in" },
        outputs = { "out" }, config = { x = 1, y = "" },
        process = function(msg, ctx)
          ctx:send("out", nil, type(ctx.config.x) .. " " .. tostring(ctx.config.x + 1)
                   .. " " .. type(ctx.config.y) .. " " .. tostring(ctx.config.y))
        end }]])
      local r = h.tide({ "run", path, "-c", "config.x=5", "-c", "config.y=hello",
                         "--drain" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      local out = h.ok({ "consume", "out", "-e" }, { dir = dir })
      assert.are.equal("number 6 string hello\nnumber 6 string hello\n", out)
      -- a key the job does not declare (a typo) is refused, not ignored
      r = h.tide({ "run", path, "-c", "config.z=1", "--drain" }, { dir = dir })
      assert.are.equal(1, r.code, r.err)
      assert.matches("tide run: [^\n]*bad %-c 'config.z=1': the job's config "
                     .. "has no key 'z' %(its keys: x, y%)", r.err)
    end)
  end)

  describe("window()", function()
    it("runs per task every window_interval", function()
      h.ok({ "produce", "in", "-K", ":", "--partitions", tostring(PARTS) },
           { dir = dir, stdin = "k0:first\n" })
      local job = start(dir, work, { "run", WINDOW_JOB })
      wait_log(job, "started")
      -- a steady trickle of input while it runs
      local sent = { first = true }
      for i = 1, 10 do
        local lines = {}
        for j = 1, 4 do
          local v = fmt("t%d-%d", i, j)
          lines[#lines + 1] = fmt("k%d:%s", i * 4 + j, v)
          sent[v] = true
        end
        h.ok({ "produce", "in", "-K", ":" },
             { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
        h.sleep(0.05)
      end
      -- stop once every message is read and committed (a hang guard, not
      -- a timing assertion), so that the outputs are exactly the inputs
      local n_in = 0
      for _ in pairs(sent) do n_in = n_in + 1 end
      local done
      for _ = 1, 3000 do
        done = sum_of(checkpoint(dir, "window", "local:in"), PARTS)
        if done >= n_in or h.read_file(job.base .. ".rc") then break end
        h.sleep(0.01)
      end
      assert.are.equal(n_in, done, stderr_of(job))
      signal(job, "TERM")
      assert.are.equal(0, wait_exit(job), stderr_of(job))

      local out = h.ok({ "consume", "out", "-e" }, { dir = dir })
      local markers, got = {}, {}
      for _, l in ipairs(h.lines(out)) do
        local p = l:match("^window:(%d+)$")
        if p then
          markers[tonumber(p)] = (markers[tonumber(p)] or 0) + 1
        else
          local v = assert(l:match("^msg:(.*)$"), "unexpected output " .. l)
          assert.is_nil(got[v], "twice: " .. v)
          got[v] = true
        end
      end
      for p = 0, PARTS - 1 do
        assert.is_true((markers[p] or 0) >= 1, "no window() marker from task " .. p)
        -- every worker ticks on the same wall-clock multiples of the
        -- interval; a stop (or the resume at start) may still fall between
        -- two workers' ticks, once at each end
        assert.is_true(math.abs(markers[0] - markers[p]) <= 2,
                       fmt("task 0 had %d windows, task %d %d", markers[0], p,
                           markers[p]))
      end
      assert.are.same(sent, got)
    end)
  end)

  describe("and huge pages", function()
    -- The job writes the GLIBC_TUNABLES it runs with, and its pid, to a
    -- file: tide run sets the tunable and executes itself again (the same
    -- process), unless the user set GLIBC_TUNABLES.
    local function env_of_run(env)
      local job, out = work .. "/env.lua", work .. "/env.out"
      h.write_file(job, string.format([[
return {
  name = "env", inputs = { "in" },
  init = function()
    local f = assert(io.open(%q, "w"))
    f:write(tostring(os.getenv("GLIBC_TUNABLES")))
    f:close()
  end,
  process = function() end,
}
]], out))
      h.ok({ "produce", "in", "--partitions", "1" },
           { dir = dir, stdin = "x\n" })
      local r = h.tide({ "run", job, "--drain" }, { dir = dir, env = env })
      assert.are.equal(0, r.code, r.err)
      return h.read_file(out)
    end

    it("turns on huge pages for malloc", function()
      if os.getenv("GLIBC_TUNABLES") then
        pending("GLIBC_TUNABLES is set around the specs")
        return
      end
      assert.are.equal("glibc.malloc.hugetlb=1", env_of_run())
    end)

    it("keeps the user's GLIBC_TUNABLES, even an empty one", function()
      local mine = "glibc.malloc.hugetlb=0"
      assert.are.equal(mine, env_of_run({ GLIBC_TUNABLES = mine }))
      assert.are.equal("", env_of_run({ GLIBC_TUNABLES = "" }))
    end)
  end)
end)
