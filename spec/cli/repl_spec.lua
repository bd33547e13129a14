-- End to end: `tide repl` with piped stdin, as a new user scripts it (issue
-- 12 "Must show": the scripted session; docs/repl.md). Each test feeds a
-- script to the real binary and reads what it prints; the data dir, the
-- saved job file and `tide run --drain` over that file are checked after.
-- Every test gets a fresh scratch dir (TMPDIR too, so that the REPL's own
-- scratch dirs are seen to go away), removed afterwards. No time is
-- asserted.
local h = require("cli.helper")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local COUNTER = SRC .. "/spec/cli/jobs/counter.lua"

local fmt = string.format

-- ---- helpers -----------------------------------------------------------------

local function plain_find(s, p) return s:find(p, 1, true) ~= nil end

-- Runs `tide repl [args] --data-dir dir` with `script` on stdin (TMPDIR set
-- to tmp when given); returns { code =, out =, err = }.
local function repl(dir, script, args, tmp)
  local words = { "repl" }
  for _, a in ipairs(args or {}) do words[#words + 1] = a end
  return h.tide(words, { dir = dir, stdin = script,
                         env = tmp and { TMPDIR = tmp } or nil })
end

-- Like repl, but fails unless the REPL exits 0 with nothing on stderr.
local function repl_ok(dir, script, args, tmp)
  return h.clean_exit(repl(dir, script, args, tmp), "tide repl")
end

-- Checks that REPL run r failed (exit 1) after printing `out`, with n
-- error lines on stderr ("error: ...", no traceback); returns them.
local function failed(r, out, n)
  assert.are.equal(1, r.code)
  assert.are.equal(out, r.out)
  local errs = h.lines(r.err)
  assert.are.equal(n, #errs, fmt("want %d error lines, got:\n%s", n, r.err))
  for _, l in ipairs(errs) do assert.matches("^error: ", l) end
  assert.is_false(plain_find(r.err, "traceback"))
  return errs
end

-- The lines of a script, joined with newlines (the last one ended too).
local function script(lines) return table.concat(lines, "\n") .. "\n" end

-- Parses an aligned table as the REPL prints it (a header line, a line of
-- dash groups, then rows): every cell must lie within the span of its
-- column's dashes, with only spaces between the spans. Returns the column
-- names and the rows as { [name] = cell text }.
local function parse_table(text)
  local l = h.lines(text)
  local sep
  for i, line in ipairs(l) do
    if line:match("^%-+[%- ]*$") then sep = i; break end
  end
  assert(sep and sep > 1, "no line of dashes under a header in:\n" .. text)
  local spans = {}
  for s, e in l[sep]:gmatch("()%-+()") do spans[#spans + 1] = { s, e - 1 } end
  local function cells(line)
    local t = {}
    for i = 1, #line do
      local inside = false
      for _, sp in ipairs(spans) do
        if i >= sp[1] and i <= sp[2] then inside = true end
      end
      assert(inside or line:sub(i, i) == " ",
             fmt("'%s': column %d is outside every column's span (%s)", line,
                 i, l[sep]))
    end
    for j, sp in ipairs(spans) do
      t[j] = line:sub(sp[1], sp[2]):match("^%s*(.-)%s*$")
    end
    return t
  end
  local names = cells(l[sep - 1])
  local rows = {}
  for i = sep + 1, #l do
    if l[i] ~= "" then
      local c, row = cells(l[i]), {}
      for j, n in ipairs(names) do row[n] = c[j] end
      rows[#rows + 1] = row
    end
  end
  return names, rows
end

-- Lines "TAG a b ..." of `out` (tab-separated after the tag): a list of
-- lists of fields.
local function tagged(out, tag)
  local t = {}
  for line in out:gmatch("[^\n]+") do
    if line:sub(1, #tag + 1) == tag .. "\t" then
      local f = {}
      for x in (line:sub(#tag + 2) .. "\t"):gmatch("([^\t]*)\t") do
        f[#f + 1] = x
      end
      t[#t + 1] = f
    end
  end
  return t
end

-- A multiset of strings as a sorted list (for comparing).
local function sorted(list)
  local t = {}
  for i, v in ipairs(list) do t[i] = v end
  table.sort(t)
  return t
end

-- Every file under dir with its md5: "sum  path" lines, sorted.
local function fingerprint(dir)
  return h.sh("cd " .. h.q(dir) .. " && find . -type f -print0 | sort -z | "
              .. "xargs -0 -r md5sum; find . -type d | sort")
end

-- ---- the tests -------------------------------------------------------------------

describe("tide repl with piped stdin", function()
  local work, dir, tmp

  before_each(function()
    work = h.tmpdir()
    dir = work .. "/data"
    tmp = work .. "/tmp"
    os.execute("mkdir -p " .. h.q(tmp))
  end)

  after_each(function()
    h.rmdir(work)
  end)

  -- What the REPL left in its TMPDIR: its scratch dirs must be gone.
  local function assert_no_scratch()
    local left = h.sh("ls -A " .. h.q(tmp))
    assert(left == "", "the REPL left in its TMPDIR:\n" .. left)
  end

  -- 1 -----------------------------------------------------------------------

  it("prints exactly what a line prints and exits 0", function()
    local r = h.run("sh -c " .. h.q("echo 'print(1+1)' | " .. h.q(h.bin)
                                    .. " repl --data-dir " .. h.q(dir)))
    assert.are.equal(0, r.code)
    assert.are.equal("2\n", r.out)
    assert.are.equal("", r.err)
  end)

  it("prints one error line for a runtime error and one for a syntax error, "
     .. "goes on, and exits 1", function()
    local r = repl(dir, script({
      'print("first")',
      'error("boom")',
      'x = = 1',
      'print("after")',
      'local t = nil; print(t.field)',
      'print("last")',
    }))
    local errs = failed(r, "first\nafter\nlast\n", 3)
    assert.matches("boom", errs[1])
    assert.matches("near '='", errs[2])     -- the parser's own words
    assert.matches("index", errs[3])
  end)

  it("reads a chunk that spans lines, prints =expr and bare expressions, and "
     .. "prints nothing for a statement", function()
    local out = repl_ok(dir, script({
      "function twice(x)",
      "  local y = x * 2",
      "  return y",
      "end",
      "=twice(21)",
      "twice(3)",
      "n = twice(5)",
      "= n, 'two'",
      "t = {",
      "  a = 1,",
      "}",
      "t.a",
    }))
    assert.are.equal('42\n6\n10\n"two"\n1\n', out)
  end)

  it("calls a chunk left open at the end of the input an error", function()
    local r = repl(dir, script({ "print(1)", "function g(x)", "  return x" }))
    failed(r, "1\n", 1)
  end)

  it("pretty-prints nested tables sorted, marks cycles, cuts long output and "
     .. "prints a list of records as an aligned table", function()
    local out = repl_ok(dir, script({
      't = { zeta = 2, alpha = { z = 1, y = { 3, 4 } }, mid = "x" }',
      "t",
      'print("=====")',
      'c = { name = "c", list = { 1 } }',
      "c.self = c",
      "c.list.back = c",
      "c",
      'print("=====")',
      "big = {}",
      "for i = 1, 5000 do big[i] = { i, tostring(i) } end",
      "big",
      'print("=====")',
      'l = { { key = "u1", value = "1", partition = 0 },',
      '      { key = "u22", value = "10", partition = 1 },',
      '      { key = "u333", value = "100", partition = 12 } }',
      "l",
    }))
    local parts = {}
    for p in (out .. "=====\n"):gmatch("(.-)=====\n") do
      parts[#parts + 1] = p
    end
    assert.are.equal(4, #parts, out)
    -- nested and sorted, and no table addresses
    local nested = parts[1]
    assert.is_false(plain_find(nested, "table: 0x"), nested)
    local pa, pm, pz = nested:find("alpha"), nested:find("mid"),
                       nested:find("zeta")
    assert(pa and pm and pz and pa < pm and pm < pz,
           "keys not sorted:\n" .. nested)
    local py, pzz = nested:find("y ="), nested:find("z =")
    assert(py and pzz and py < pzz, "nested keys not sorted:\n" .. nested)
    assert.matches("3,%s*4", nested)
    assert.matches('"x"', nested)
    -- a cycle is marked, not followed
    local cyc = parts[2]
    assert.matches("<cycle", cyc)
    local names = 0
    for _ in cyc:gmatch('"c"') do names = names + 1 end
    assert.are.equal(1, names, "the cycle was followed:\n" .. cyc)
    -- long output is cut, with a note saying so
    local long = parts[3]
    assert(#h.lines(long) < 500, fmt("%d lines printed for 5000 entries",
                                     #h.lines(long)))
    assert.matches("more", long)
    assert.matches("4", long)               -- the start is there
    -- a list of records: a header, dashes, one aligned row per record
    local cols, rows = parse_table(parts[4])
    assert.are.same({ "key", "partition", "value" }, sorted(cols))
    assert.are.equal(3, #rows)
    local want = { { "u1", "1", "0" }, { "u22", "10", "1" },
                   { "u333", "100", "12" } }
    for i, w in ipairs(want) do
      assert.are.equal(w[1], rows[i].key:gsub('"', ""))
      assert.are.equal(w[2], rows[i].value:gsub('"', ""))
      assert.are.equal(w[3], rows[i].partition)
    end
  end)

  -- 2 -----------------------------------------------------------------------

  it("the scripted session: a stream, 3 messages, a job typed at the "
     .. "prompt, a store value, a saved file that tide run --drain runs to "
     .. "the same outputs", function()
    local file = work .. "/per_user.lua"
    local out = repl_ok(dir, script({
      'clicks = stream("clicks", { partitions = 2 })',
      'send(clicks, "u1", { url = "/a" })',
      'send(clicks, "k1", { url = "/b" })',
      'send(clicks, "u1", { url = "/c" })',
      "j = job { name = 'per_user', inputs = { { 'clicks', serde = 'json' } },",
      "          outputs = { 'counts' },",
      "          stores = { seen = {} },",
      "          process = function(msg, ctx)",
      "            local n = ctx.stores.seen:incr(msg.key)",
      "            ctx:send('counts', msg.key, msg.value.url .. ' ' .. n)",
      "          end }",
      "r = run(j)",
      "for _, o in ipairs(r.outputs.counts) do",
      "  print('OUT', o.key, o.value)",
      "end",
      "print('STORE', r.stores.seen.u1, r.stores.seen.k1)",
      "print('PROCESSED', r.processed)",
      "print('<<')",
      "r.outputs.counts",
      "print('>>')",
      fmt("save(j, %q)", file),
    }), nil, tmp)
    assert_no_scratch()
    local outs = tagged(out, "OUT")
    local repl_outs = {}
    for i, o in ipairs(outs) do repl_outs[i] = o[1] .. "=" .. o[2] end
    assert.are.same({ "k1=/b 1", "u1=/a 1", "u1=/c 2" }, sorted(repl_outs))
    assert.are.same({ { "2", "1" } }, tagged(out, "STORE"))
    assert.are.same({ { "3" } }, tagged(out, "PROCESSED"))
    -- the bare r.outputs.counts printed the same records as a table
    local _, rows = parse_table(assert(out:match("<<\n(.*)>>\n"), out))
    assert.are.equal(3, #rows)
    assert.matches("saved job 'per_user' to " .. file:gsub("%p", "%%%0"), out)
    -- the REPL's run wrote nothing to the data dir: no output stream, no
    -- job dir
    assert.is_nil(h.read_file(dir .. "/streams/counts/stream.conf"))
    assert.are.equal("", h.sh("ls -A " .. h.q(dir .. "/jobs") .. " 2>/dev/null"))
    -- the saved file runs in the same data dir to the same outputs
    local r = h.tide({ "run", file, "--drain" }, { dir = dir })
    assert.are.equal(0, r.code, r.err)
    local got = h.ok({ "consume", "counts", "-e", "-f", "%k=%s\\n" },
                     { dir = dir })
    assert.are.same(sorted(repl_outs), sorted(h.lines(got)))
    local dump = h.ok({ "state", "dump", file, "seen" }, { dir = dir })
    assert.are.same({ "k1\t1", "u1\t2" }, sorted(h.lines(dump)))
  end)

  -- Types `lines` at the prompt (they make stream "words" and job j, which
  -- sends to "loud"), runs j and saves it; then runs the saved file with
  -- tide run --drain in the same data dir. Returns the REPL run's outputs
  -- and the file's, each as a sorted list of "key=value".
  local function prompt_and_file(lines)
    local file = work .. "/saved.lua"
    local all = { 's = stream("words", { serde = "string" })',
                  'send(s, "a", "apple")', 'send(s, "b", "banana")' }
    for _, l in ipairs(lines) do all[#all + 1] = l end
    for _, l in ipairs({
      "r = run(j, { reset = true })",
      "for _, o in ipairs(r.outputs.loud) do print('OUT', o.key, o.value) end",
      fmt("save(j, %q)", file),
    }) do all[#all + 1] = l end
    local out = repl_ok(dir, script(all), nil, tmp)
    local at_prompt = {}
    for i, o in ipairs(tagged(out, "OUT")) do at_prompt[i] = o[1] .. "=" .. o[2] end
    local r = h.tide({ "run", file, "--drain" }, { dir = dir })
    assert.are.equal(0, r.code, r.err)
    local got = h.ok({ "consume", "loud", "-e", "-f", "%k=%s\\n" },
                     { dir = dir })
    return sorted(at_prompt), sorted(h.lines(got)), h.read_file(file)
  end

  local JOB_LINE = "j = job { name = 'shout', inputs = { 'words' }, "
    .. "serde = 'string', outputs = { 'loud' }, process = function(msg, ctx) "
    .. "ctx:send('loud', msg.key, shout(msg.value)) end }"

  it("saves the last definition of a function redefined at the prompt",
     function()
    -- Regression test (save-first-definition, fixed): the REPL notes which chunk set
    -- a global only when the global is new (__newindex), so save() writes
    -- the first definition of shout, and the file sends "apple!" where the
    -- prompt's run sent "APPLE".
    local at_prompt, from_file, text = prompt_and_file({
      'function shout(x) return x .. "!" end',
      "function shout(x) return x:upper() end",
      JOB_LINE,
    })
    assert.are.same({ "a=APPLE", "b=BANANA" }, at_prompt)
    assert.are.same(at_prompt, from_file, text)
  end)

  it("saves a helper redefined after the job was made, as the prompt's run "
     .. "used it", function()
    -- Regression test (fixed: save-first-definition, and save() keeps only the chunks
    -- before the job's): the prompt's run calls the newest shout, the file
    -- the one from before the job.
    local at_prompt, from_file, text = prompt_and_file({
      'function shout(x) return x .. "!" end',
      JOB_LINE,
      "function shout(x) return x:upper() end",
    })
    assert.are.same({ "a=APPLE", "b=BANANA" }, at_prompt)
    assert.are.same(at_prompt, from_file, text)
  end)

  it("collects a run's outputs and dead letters, from data dir streams and "
     .. "from mem: streams", function()
    -- Regression test (mem-dead-letters, fixed): with mem: inputs the job dead-letters
    -- to mem:div-dead-letters, but run() reads its dead letters from the
    -- scratch dir's local div-dead-letters: r.dead_letters is empty.
    for _, prefix in ipairs({ "", "mem:" }) do
      -- (a dead letter is also a warning on stderr)
      local r = repl(dir, script({
        fmt('m = stream("%sin%d", { partitions = 2 })', prefix, #prefix),
        'send(m, "a", { n = 1 })',
        'send(m, "b", { n = 0 })',
        'send(m, "a", { n = 2 })',
        fmt("j = job { name = 'div', inputs = { { '%sin%d', serde = 'json' } },",
            prefix, #prefix),
        fmt("          outputs = { '%sout' }, on_error = 'dead_letter',",
            prefix),
        "          process = function(msg, ctx)",
        "            if msg.value.n == 0 then error('zero!') end",
        fmt("            ctx:send('%sout', msg.key, tostring(10 / msg.value.n))",
            prefix),
        "          end }",
        "r = run(j)",
        "for _, o in ipairs(r.outputs.out) do print('OUT', o.key, o.value) end",
        "for _, d in ipairs(r.dead_letters) do",
        "  print('DEAD', d.key, d.value, d.error)",
        "end",
      }), nil, tmp)
      assert.are.equal(0, r.code, r.err)
      local out = r.out
      local outs = {}
      for i, o in ipairs(tagged(out, "OUT")) do outs[i] = o[1] .. "=" .. o[2] end
      assert.are.same({ "a=10", "a=5" }, sorted(outs))
      local dead = tagged(out, "DEAD")
      assert.are.equal(1, #dead, prefix .. " streams: no dead letter in\n"
                                 .. out)
      assert.are.equal("b", dead[1][1])
      assert.are.equal('{"n":0}', dead[1][2])
      assert.matches("zero!", dead[1][3])
    end
  end)

  it("runs bounded by a count, goes on from where it stopped, and starts "
     .. "again with reset = true", function()
    local out = repl_ok(dir, script({
      's = stream("ev", { partitions = 3, serde = "string" })',
      'for i = 1, 20 do send(s, "k" .. (i % 7), "v" .. i) end',
      "j = job { name = 'cnt', inputs = { 'ev' }, serde = 'string',",
      "          outputs = { 'out' }, stores = { c = {} },",
      "          process = function(msg, ctx)",
      "            local n = ctx.stores.c:incr(msg.key)",
      "            ctx:send('out', msg.key, msg.value .. ' ' .. n)",
      "          end }",
      "function show(tag, r)",
      "  print(tag, r.processed, #r.outputs.out)",
      "  for _, o in ipairs(r.outputs.out) do print(tag .. 'O', o.key, o.value) end",
      "  local keys = {}",
      "  for k in pairs(r.stores.c) do keys[#keys + 1] = k end",
      "  table.sort(keys)",
      "  for _, k in ipairs(keys) do print(tag .. 'S', k, r.stores.c[k]) end",
      "end",
      "show('A', run(j, { count = 2 }))",
      "show('B', run(j))",
      "show('C', run(j))",
      "show('D', run(j, { reset = true }))",
    }), nil, tmp)
    assert_no_scratch()
    local function head(tag)
      local t = tagged(out, tag)
      assert.are.equal(1, #t, "no line " .. tag .. " in:\n" .. out)
      return tonumber(t[1][1]), tonumber(t[1][2])
    end
    -- inputs: k(i % 7) = v<i>; the count of each key
    local want = {}
    for i = 1, 20 do
      local k = "k" .. (i % 7)
      want[k] = (want[k] or 0) + 1
    end
    local function values(tag)
      local t = {}
      for _, o in ipairs(tagged(out, tag .. "O")) do
        t[#t + 1] = o[2]:match("^(%S+)")
      end
      return t
    end
    local function state(tag)
      local t = {}
      for _, s in ipairs(tagged(out, tag .. "S")) do t[s[1]] = tonumber(s[2]) end
      return t
    end
    -- exactly 2, then the other 18 (none again), then nothing
    assert.are.same({ 2, 2 }, { head("A") })
    assert.are.same({ 18, 18 }, { head("B") })
    assert.are.same({ 0, 0 }, { head("C") })
    local ab = values("A")
    for _, v in ipairs(values("B")) do ab[#ab + 1] = v end
    local all = {}
    for i = 1, 20 do all[i] = "v" .. i end
    assert.are.same(sorted(all), sorted(ab))
    assert.are.same(want, state("B"))
    assert.are.same(want, state("C"))
    -- reset: all 20 again, counted from zero
    assert.are.same({ 20, 20 }, { head("D") })
    assert.are.same(sorted(all), sorted(values("D")))
    assert.are.same(want, state("D"))
  end)

  -- A job that spends `ms` ms of CPU on each message of stream `name`
  -- (n messages "k<i % 5>:v<i>" produced on 2 partitions), sending each
  -- value to "out"; a time-bounded run, then an unbounded one that must
  -- read the rest, each message once in all.
  local function timed(name, n, ms)
    local lines = {}
    for i = 1, n do lines[i] = "k" .. (i % 5) .. ":v" .. i end
    h.ok({ "produce", name, "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    local out = repl_ok(dir, script({
      fmt("j = job { name = 'slow', inputs = { %q }, serde = 'string',", name),
      "          outputs = { 'out' },",
      "          process = function(msg, ctx)",
      fmt("            local t = os.clock() + %g", ms / 1000),
      "            while os.clock() < t do end",
      "            ctx:send('out', msg.key, msg.value)",
      "          end }",
      "r1 = run(j, { time = '300ms' })",
      "print('T', r1.processed, #r1.outputs.out)",
      "r2 = run(j)",
      "print('R', r2.processed, #r2.outputs.out)",
      "seen = {}",
      "for _, r in ipairs({ r1, r2 }) do",
      "  for _, o in ipairs(r.outputs.out) do",
      "    seen[o.value] = (seen[o.value] or 0) + 1",
      "  end",
      "end",
      "bad = 0",
      fmt("for i = 1, %d do if seen['v' .. i] ~= 1 then bad = bad + 1 end end",
          n),
      "print('BAD', bad)",
    }), nil, tmp)
    local t, r = tagged(out, "T")[1], tagged(out, "R")[1]
    assert(t and r, out)
    local p1, p2 = tonumber(t[1]), tonumber(r[1])
    assert.are.equal(p1, tonumber(t[2]))
    assert.are.equal(n, p1 + p2)
    assert.are.equal(n - p1, tonumber(r[2]))
    assert.are.same({ { "0" } }, tagged(out, "BAD"))
    return p1
  end

  it("stops a run bounded by a time, and the next run goes on from there",
     function()
    -- 2000 messages of 1 ms each: about 2 s of work, far more than 300 ms
    local p1 = timed("busy", 2000, 1)
    assert(p1 < 2000, fmt("the 300 ms run processed all %d messages", p1))
  end)

  it("stops a run bounded by a time when each message is slow", function()
    -- Regression test (repl-time-bound, fixed): run(j, {time = "300ms"}) checks the
    -- time only between rounds, and a round reads up to 256 messages per
    -- task: with 40 messages of 25 ms each (1 s of work) the 300 ms run
    -- processes all 40.
    local p1 = timed("slow", 40, 25)
    assert(p1 < 40, fmt("the 300 ms run processed all %d messages (1 s of "
                        .. "work)", p1))
  end)

  -- 3 -----------------------------------------------------------------------

  it("tide repl JOB runs the job over its real inputs without touching its "
     .. "checkpoint, stores or outputs in the data dir", function()
    local input = {}
    for i = 1, 30 do input[i] = "k" .. (i % 4) .. ":v" .. i end
    h.ok({ "produce", "events", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = table.concat(input, "\n") .. "\n" })
    local prog = script({
      "r = run(J)",
      "print('P', r.processed, #r.outputs['counts-out'])",
      "for k, v in pairs(r.stores.counts) do print('S', k, v) end",
    })
    local want = {}
    for i = 1, 30 do
      local k = "k" .. (i % 4)
      want[k] = (want[k] or 0) + 1
    end
    local function check(out, n)
      assert.are.same({ { tostring(n), tostring(n) } }, tagged(out, "P"))
      local st = {}
      for _, s in ipairs(tagged(out, "S")) do st[s[1]] = tonumber(s[2]) end
      assert.are.same(want, st)
    end
    -- a job that never ran here: nothing of it appears in the data dir
    local before = fingerprint(dir)
    check(repl_ok(dir, prog, { COUNTER }, tmp), 30)
    assert_no_scratch()
    assert.are.equal(before, fingerprint(dir))
    -- a job that ran (checkpoint, stores, outputs): all stay as they were,
    -- and the REPL reads every input, not from the job's checkpoint
    local r = h.tide({ "run", COUNTER, "--drain" }, { dir = dir })
    assert.are.equal(0, r.code, r.err)
    h.ok({ "produce", "events", "-K", ":" },
         { dir = dir, stdin = "k9:late\n" })
    want.k9 = 1
    before = fingerprint(dir)
    assert(plain_find(before, "jobs/counter/"), before)
    check(repl_ok(dir, prog, { COUNTER }, tmp), 31)
    assert_no_scratch()
    assert.are.equal(before, fingerprint(dir))
  end)

  -- 4 -----------------------------------------------------------------------

  it("answers bad options to the helpers with one clear error line each, "
     .. "naming no place in tide's own source, and goes on", function()
    -- Regression test (helper-options, fixed): tail's from = "middle" and limit = "x"
    -- and stream's serde = "nope" fail with errors that name tide's own
    -- files (".../lua/tide/system/local.lua:140: bad offset ...",
    -- ".../lua/tide/repl/proto.lua:265: attempt to compare number with
    -- string"); stream's partitions = 0 makes a stream of 1 partition and
    -- run's unknown option counts = 2 (for count) runs everything, both
    -- without a word.
    local r = repl(dir, script({
      's = stream("ev", { partitions = 2, serde = "string" })',
      'for i = 1, 5 do send(s, "k" .. i, "v" .. i) end',
      "j = job { name = 'x', inputs = { 'ev' }, outputs = { 'o' },",
      "          process = function(msg, ctx) end }",
      'tail("ev", { from = "middle" })',
      'print("1")',
      'tail("ev", { limit = "x" })',
      'print("2")',
      'stream("zz", { serde = "nope" })',
      'print("3")',
      'stream("zero", { partitions = 0 })',
      'print("4")',
      "run(j, { counts = 2 })",
      'print("5")',
    }))
    local errs = failed(r, "1\n2\n3\n4\n5\n", 5)
    for _, l in ipairs(errs) do
      assert.is_nil(l:find("lua/tide/", 1, true), l)
      assert.is_nil(l:find("attempt to", 1, true), l)
    end
    assert.matches("from", errs[1])
    assert.matches("limit", errs[2])
    assert.matches("nope", errs[3])
    assert.matches("partitions", errs[4])
    assert.matches("counts", errs[5])
  end)

  it("answers bad input with one error line each and goes on", function()
    h.write_file(work .. "/afile", "not a folder\n")
    local r = repl(dir, script({
      's = stream("a")',
      'tail("nosuch")',
      'print("1")',
      "bad = job { name = 'x', inputs = { 'a' }, outputs = { 'o' } }",
      'print("2")',
      "j = job { name = 'x', inputs = { 'a' }, outputs = { 'o' },",
      "          process = function(msg, ctx) end }",
      fmt("save(j, %q)", work .. "/afile/x.lua"),
      'print("3")',
      'send("bad name!", "k", "v")',
      'print("4")',
      'send(s, "k", { f = function() end })',
      'print("5")',
    }))
    local errs = failed(r, "1\n2\n3\n4\n5\n", 5)
    assert.matches("nosuch", errs[1])
    assert.matches("process", errs[2])
    assert.matches("afile", errs[3])
    assert.matches("bad name!", errs[4], 1, true)
    -- nothing was written for the failed sends
    assert.is_nil(h.read_file(dir .. "/streams/bad name!/stream.conf"))
    local t = h.ok({ "consume", "a", "-e" }, { dir = dir })
    assert.are.equal("", t)
  end)
end)
