-- End to end: what the command line does for the person typing it.
-- tide consume -J (JSON lines), -o s@MS (start at a time) and -q; "did
-- you mean" for unknown commands, subcommands and options (C and Lua
-- commands alike); a missing stream's error lists the streams there are;
-- tide run refuses a data dir that does not exist unless --create. The
-- real `tide` binary runs over fresh data dirs; records with chosen
-- timestamps and headers are written through the bindings (tide.log).
local h = require("cli.helper")
local cjson = require("cjson")
local tlog = require("tide.log")
local headers = require("tide.headers")

local fmt = string.format

-- Asserts that r exited `code` with one line on stderr (and nothing on
-- stdout) holding every plain string of `patterns`; returns the line.
local function one_line(r, code, patterns)
  assert.are.equal(code, r.code, "exit code; stderr: " .. r.err)
  assert.are.equal("", r.out)
  local lines = h.lines(r.err)
  assert.are.equal(1, #lines, "stderr is not one line:\n" .. r.err)
  assert.are.equal(r.err, lines[1] .. "\n")
  assert.matches("^tide", lines[1])
  for _, p in ipairs(patterns or {}) do
    assert.matches(p, lines[1], 1, true)
  end
  return lines[1]
end

-- Whether s is well-formed UTF-8 (no overlong forms, no surrogates,
-- nothing past U+10FFFF).
local function utf8_ok(s)
  local i, n = 1, #s
  while i <= n do
    local c = s:byte(i)
    local len, lo, hi = 1, 0x80, 0xbf
    if c < 0x80 then
      len = 1
    elseif c >= 0xc2 and c <= 0xdf then
      len = 2
    elseif c >= 0xe0 and c <= 0xef then
      len = 3
      if c == 0xe0 then lo = 0xa0 elseif c == 0xed then hi = 0x9f end
    elseif c >= 0xf0 and c <= 0xf4 then
      len = 4
      if c == 0xf0 then lo = 0x90 elseif c == 0xf4 then hi = 0x8f end
    else
      return false
    end
    for j = 1, len - 1 do
      local b = s:byte(i + j)
      if not b or b < (j == 1 and lo or 0x80) or b > (j == 1 and hi or 0xbf) then
        return false
      end
    end
    i = i + len
  end
  return true
end

-- Writes records { key, value, partition, ts, hdrs (a table) } to stream
-- `name` of `dir`, made with `parts` partitions when missing.
local function write(dir, name, parts, recs)
  local log = assert(tlog.open(dir, name, { mode = "create", partitions = parts }))
  for _, r in ipairs(recs) do
    assert(log:push(r[1], r[2], r[3], r[4], r[5] and headers.encode(r[5])))
  end
  assert(log:flush())
  log:close()
end

describe("tide consume -J", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("prints one valid JSON object per record, with every field", function()
    write(dir, "s", 1, {
      { "k1", "plain", 0, 1000, { a = "1", b = "x=y" } },
      { nil, "no key", 0, 1001 },
      { "gone", nil, 0, 1002, { n = false } },
      { 'q"\\', "line\nbreak\ttab\r\1\31\127 end", 0, 1003 },
      { "utf8", "h\195\169llo \226\152\131 \240\159\152\128", 0, 1004 },
      { "bad", "a\255b\254", 0, 1005 },
      { "cut", "x\226\130", 0, 1006 },
      { "overlong", "\192\175", 0, 1007 },
      { "surrogate", "\237\160\128", 0, 1008 },
      { "", "", 0, 1009 },
    })
    local out = h.ok({ "consume", "s", "-e", "-J" }, { dir = dir })
    local lines = h.lines(out)
    assert.are.equal(10, #lines)
    local got = {}
    for i, l in ipairs(lines) do
      assert.is_true(utf8_ok(l), "line " .. i .. " is not UTF-8: " .. l)
      assert.is_nil(l:find("[%z\1-\31]"), "raw control byte in line " .. i)
      got[i] = cjson.decode(l)
    end
    assert.are.same({ stream = "s", partition = 0, offset = 0, timestamp = 1000,
                      key = "k1", value = "plain",
                      headers = { a = "1", b = "x=y" } }, got[1])
    assert.are.equal(cjson.null, got[2].key)
    assert.are.same({}, got[2].headers)
    assert.matches('"headers":{}', lines[2], 1, true)   -- an object, not []
    assert.are.equal(cjson.null, got[3].value)
    assert.are.equal(cjson.null, got[3].headers.n)
    assert.are.equal('q"\\', got[4].key)
    assert.are.equal("line\nbreak\ttab\r\1\31\127 end", got[4].value)
    assert.are.equal("h\195\169llo \226\152\131 \240\159\152\128", got[5].value)
    -- bytes that are not UTF-8: \u00XX each, the character of that number
    assert.matches('"value":"a\\u00ffb\\u00fe"', lines[6], 1, true)
    assert.are.equal("a\195\191b\195\190", got[6].value)
    assert.matches('"value":"x\\u00e2\\u0082"', lines[7], 1, true)
    assert.matches('"value":"\\u00c0\\u00af"', lines[8], 1, true)
    assert.matches('"value":"\\u00ed\\u00a0\\u0080"', lines[9], 1, true)
    assert.are.equal("", got[10].key)
    assert.are.equal("", got[10].value)
    for i, g in ipairs(got) do
      assert.are.equal(i - 1, g.offset)
      assert.are.equal(999 + i, g.timestamp)
    end
  end)

  it("names the stream and partition of each record", function()
    write(dir, "two", 2, { { nil, "a", 0, 5 }, { nil, "b", 1, 6 } })
    local seen = {}
    for _, l in ipairs(h.lines(h.ok({ "consume", "two", "-e", "-J" }, { dir = dir }))) do
      local m = cjson.decode(l)
      assert.are.equal("two", m.stream)
      seen[m.partition] = m.value
    end
    assert.are.same({ [0] = "a", [1] = "b" }, seen)
  end)

  it("refuses -J with -f", function()
    write(dir, "s", 1, { { nil, "a", 0, 5 } })
    one_line(h.tide({ "consume", "s", "-e", "-J", "-f", "%s" }, { dir = dir }), 2,
             { "-J", "-f" })
  end)
end)

describe("tide consume -o s@MS", function()
  local dir
  before_each(function()
    dir = h.tmpdir()
    write(dir, "t", 2, {
      { nil, "a", 0, 1000 }, { nil, "b", 0, 2000 }, { nil, "c", 0, 3000 },
      { nil, "d", 0, 1500 }, { nil, "e", 0, 4000 },
      { nil, "x", 1, 500 }, { nil, "y", 1, 600 },
    })
  end)
  after_each(function() h.rmdir(dir) end)

  it("starts each partition at its first record at or after the time", function()
    local out, r = h.ok({ "consume", "t", "-e", "-o", "s@2000", "-f", "%p %o %s\\n" },
                        { dir = dir, stderr_ok = true })
    -- offset order from there, whatever the later timestamps
    assert.are.equal("0 1 b\n0 2 c\n0 3 d\n0 4 e\n", out)
    -- one informational line per partition: where it starts, at what cost
    local lines = h.lines(r.err)
    assert.are.equal(2, #lines, r.err)
    assert.matches("partition 0: starting at the first record at or after "
                   .. "the time, offset 1 (2 records read", lines[1], 1, true)
    assert.matches("partition 1: no record at or after the time; starting at "
                   .. "its end, offset 2", lines[2], 1, true)
  end)

  it("takes a time between records, 0, and one past every record", function()
    local function at(ms)
      return h.ok({ "consume", "t", "-e", "-q", "-o", "s@" .. ms, "-f", "%s" },
                  { dir = dir })
    end
    assert.are.equal("cde", at(2500))
    assert.are.equal("abcdexy", at(0))
    assert.are.equal("abcdey", at(550))
    assert.are.equal("", at(99999))
  end)

  it("with -p reads that partition only", function()
    assert.are.equal("y\n", h.ok({ "consume", "t", "-e", "-q", "-p", "1", "-o", "s@600" },
                                 { dir = dir }))
  end)

  it("follows records appended after a time past every record", function()
    local work = h.tmpdir()
    local out = work .. "/out"
    local pid = h.spawn(fmt("%s consume t -p 1 -q -c 1 -o s@99999 -f '%%o %%s\\n' "
                            .. "--data-dir %s >%s 2>%s.err", h.q(h.bin), h.q(dir),
                            h.q(out), h.q(out)))
    -- the consumer is waiting at the end: a new record is the one it prints
    for _ = 1, 100 do
      if not h.alive(pid) then break end
      h.sleep(0.02)
    end
    assert.is_true(h.alive(pid), "consume exited early: "
                   .. tostring(h.read_file(out .. ".err")))
    write(dir, "t", 2, { { nil, "late", 1, 100000 } })
    for _ = 1, 1000 do
      if not h.alive(pid) then break end
      h.sleep(0.01)
    end
    local alive = h.alive(pid)
    if alive then os.execute("kill " .. pid) end
    local got, err = h.read_file(out), h.read_file(out .. ".err")
    h.rmdir(work)
    assert.is_false(alive, "consume did not see the new record")
    assert.are.equal("2 late\n", got)
    assert.are.equal("", err)
  end)

  it("refuses a bad time", function()
    for _, v in ipairs({ "s@", "s@x", "s@-5", "s@1.5", "@1000" }) do
      one_line(h.tide({ "consume", "t", "-e", "-o", v }, { dir = dir }), 2,
               { "'" .. v .. "'", "s@MS" })
    end
  end)
end)

describe("tide consume -q", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("drops the informational lines and keeps the errors", function()
    write(dir, "t", 1, { { nil, "a", 0, 10 } })
    local r = h.tide({ "consume", "t", "-e", "-q", "-o", "s@5" }, { dir = dir })
    assert.are.equal(0, r.code)
    assert.are.equal("a\n", r.out)
    assert.are.equal("", r.err)
    one_line(h.tide({ "consume", "nosuch", "-e", "-q" }, { dir = dir }), 1,
             { "no stream 'nosuch'" })
    one_line(h.tide({ "consume", "t", "-e", "-q", "-p", "3" }, { dir = dir }), 2,
             { "0..0" })
  end)

  it("is in consume's --help, with -J and s@MS", function()
    local out = h.ok({ "consume", "--help" })
    for _, o in ipairs({ "-J", "-q", "s@MS", "\\u00XX" }) do
      assert.matches(o, out, 1, true)
    end
    out = h.ok({ "--help" })
    for _, o in ipairs({ "-J", "-q", "s@MS", "--create" }) do
      assert.matches(o, out, 1, true)
    end
  end)
end)

describe("did you mean", function()
  local work, dir
  before_each(function()
    work, dir = h.scratch()
    h.ok({ "streams", "create", "events", "--partitions", "1" }, { dir = dir })
  end)
  after_each(function() h.rmdir(work) end)

  it("suggests the nearest command", function()
    local cases = {
      { { "stream", "list" }, "streams" }, { { "consum", "events" }, "consume" },
      { { "prodcue", "events" }, "produce" }, { { "job", "list" }, "jobs" },
      { { "rnu", "x.lua" }, "run" }, { { "ofsets", "reset" }, "offsets" },
    }
    for _, c in ipairs(cases) do
      local l = one_line(h.tide(c[1], { dir = dir }), 2)
      assert.are.equal(fmt("tide: unknown command '%s'; did you mean '%s'? "
                           .. "(run 'tide --help' for the list)", c[1][1], c[2]), l)
    end
  end)

  it("suggests nothing for a word far from every command", function()
    local l = one_line(h.tide({ "frobnicate" }), 2, { "'frobnicate'", "--help" })
    assert.is_nil(l:find("did you mean", 1, true))
    l = one_line(h.tide({ "x" }), 2, { "'x'" })
    assert.is_nil(l:find("did you mean", 1, true))
  end)

  it("suggests the nearest subcommand of streams", function()
    one_line(h.tide({ "streams", "lsit" }, { dir = dir }), 2,
             { "unknown subcommand 'lsit'; did you mean 'list'?" })
    one_line(h.tide({ "streams", "descibe", "events" }, { dir = dir }), 2,
             { "did you mean 'describe'?" })
    local l = one_line(h.tide({ "streams", "frob" }, { dir = dir }), 2,
                       { "'frob'", "list, create, describe, clean or delete" })
    assert.is_nil(l:find("did you mean", 1, true))
  end)

  it("suggests the nearest option of the C commands", function()
    local cases = {
      { { "produce", "events", "--partitons", "2" }, "produce",
        "unknown option '--partitons'; did you mean '--partitions'?" },
      { { "consume", "events", "-e", "--data-dri", dir }, "consume",
        "unknown option '--data-dri'; did you mean '--data-dir'?" },
      { { "streams", "create", "x", "--partitions", "1", "--compcat" }, "streams",
        "unknown option '--compcat'; did you mean '--compact'?" },
      { { "streams", "create", "x", "--partitions", "1", "--retention-mss=5" },
        "streams",
        "unknown option '--retention-mss=5'; did you mean '--retention-ms'?" },
    }
    for _, c in ipairs(cases) do
      one_line(h.tide(c[1], { dir = dir }), 2,
               { "tide " .. c[2] .. ": " .. c[3], "--help" })
    end
    -- single letters are never guessed at, and far words get no guess
    for _, args in ipairs({ { "consume", "events", "-z" },
                            { "produce", "events", "--bogus" } }) do
      local l = one_line(h.tide(args, { dir = dir }), 2, { "unknown option '" .. args[3] .. "'" })
      assert.is_nil(l:find("did you mean", 1, true))
    end
    -- a missing value is not an unknown option
    one_line(h.tide({ "consume", "events", "-e", "-o" },
                    { env = { TIDE_DATA_DIR = dir } }), 2,
             { "option '-o' needs a value" })
    one_line(h.tide({ "produce", "events", "--partitions" },
                    { env = { TIDE_DATA_DIR = dir } }), 2,
             { "option '--partitions' needs a value" })
  end)

  it("suggests the nearest option of the Lua commands", function()
    local job = work .. "/j.lua"
    h.write_file(job, 'return { name = "j", inputs = { "events" }, process = function() end }')
    one_line(h.tide({ "run", job, "--drian" }, { dir = dir }), 2,
             { "tide run: unknown option '--drian'; did you mean '--drain'?" })
    one_line(h.tide({ "run", job, "--crate" }, { dir = dir }), 2,
             { "did you mean '--create'?" })
    one_line(h.tide({ "run", job, "--worker", "2" }, { dir = dir }), 2,
             { "did you mean '--workers'?" })
    one_line(h.tide({ "offsets", "reset", "j", "--to", "earliest", "--dry-rn" },
                    { dir = dir }), 2, { "did you mean '--dry-run'?" })
    one_line(h.tide({ "streams", "delete", "events", "--froce" }, { dir = dir }), 2,
             { "did you mean '--force'?" })
    local l = one_line(h.tide({ "jobs", "list", "--bogus" }, { dir = dir }), 2,
                       { "unknown option '--bogus'" })
    assert.is_nil(l:find("did you mean", 1, true))
  end)
end)

describe("a stream that does not exist", function()
  local dir
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("is reported with the streams there are, by every command", function()
    for _, s in ipairs({ "c", "a", "b" }) do
      h.ok({ "streams", "create", s, "--partitions", "1" }, { dir = dir })
    end
    local want = fmt("no stream 'nosuch' in data dir '%s' (streams: a, b, c)", dir)
    for _, args in ipairs({ { "consume", "nosuch", "-e" }, { "produce", "nosuch" },
                            { "streams", "describe", "nosuch" },
                            { "streams", "clean", "nosuch" },
                            { "streams", "delete", "nosuch" } }) do
      one_line(h.tide(args, { dir = dir }), 1, { want })
    end
    -- what to do: create it (the C commands say how)
    one_line(h.tide({ "consume", "nosuch", "-e" }, { dir = dir }), 1,
             { "create it with 'tide streams create nosuch --partitions N'" })
    -- and nothing was made on the way
    assert.are.equal("a\nb\nc\n", h.ok({ "streams", "list" }, { dir = dir }))
  end)

  it("says when the data dir has none, and how to make one", function()
    os.execute("mkdir -p " .. h.q(dir .. "/streams"))
    for _, args in ipairs({ { "consume", "nosuch", "-e" },
                            { "streams", "describe", "nosuch" } }) do
      one_line(h.tide(args, { dir = dir }), 1,
               { "no stream 'nosuch' in data dir '" .. dir .. "', which has no "
                 .. "streams yet", "tide streams create nosuch --partitions N" })
    end
    h.rmdir(dir)
    dir = h.tmpdir()                       -- no streams/ folder at all
    one_line(h.tide({ "consume", "nosuch", "-e" }, { dir = dir }), 1,
             { "which has no streams yet" })
  end)

  it("suggests a stream whose name is near", function()
    h.ok({ "streams", "create", "pageviews", "--partitions", "1" }, { dir = dir })
    h.ok({ "streams", "create", "clicks", "--partitions", "1" }, { dir = dir })
    one_line(h.tide({ "consume", "pagevews", "-e" }, { dir = dir }), 1,
             { "(streams: clicks, pageviews); did you mean 'pageviews'? Or create "
               .. "it with 'tide streams create pagevews --partitions N'" })
  end)

  it("lists at most ten streams, and says how many there are", function()
    for i = 1, 12 do
      h.ok({ "streams", "create", fmt("s%02d", i), "--partitions", "1" }, { dir = dir })
    end
    one_line(h.tide({ "streams", "describe", "nosuch" }, { dir = dir }), 1,
             { "(streams: s01, s02, s03, s04, s05, s06, s07, s08, s09, s10, ... "
               .. "12 in all: tide streams list)" })
  end)

  it("is not what a missing data dir is reported as", function()
    local l = one_line(h.tide({ "consume", "s", "-e" }, { dir = dir .. "/nope" }), 1,
                       { dir .. "/nope", "does not exist" })
    assert.is_nil(l:find("streams:", 1, true))
  end)
end)

describe("tide run and its data dir", function()
  local work, dir, job
  before_each(function()
    work, dir = h.scratch()
    job = work .. "/j.lua"
    h.write_file(job, 'return { name = "j", inputs = { "in" }, process = function() end }')
  end)
  after_each(function() h.rmdir(work) end)

  it("refuses a data dir that does not exist, as the other commands do", function()
    one_line(h.tide({ "run", job, "--drain" }, { dir = dir }), 1,
             { "tide run: data dir '" .. dir .. "' does not exist; check --data-dir "
               .. "or $TIDE_DATA_DIR, or add --create to make it" })
    assert.are.equal("", h.sh("ls -A " .. h.q(work) .. " | grep -v j.lua"))
    -- from $TIDE_DATA_DIR too
    one_line(h.tide({ "run", job, "--drain" }, { env = { TIDE_DATA_DIR = dir } }), 1,
             { "data dir '" .. dir .. "' does not exist" })
  end)

  it("makes it with --create, then runs as usual", function()
    local r = h.tide({ "run", job, "--drain", "--create" }, { dir = dir .. "/deep" })
    -- the dir is made; the job then stops on its missing input, as it would
    one_line(r, 1, { "'in'", "tide streams create" })
    assert.are.equal("", h.ok({ "streams", "list" }, { dir = dir .. "/deep" }))
    h.ok({ "produce", "in", "--partitions", "2" }, { dir = dir .. "/deep", stdin = "a\nb\n" })
    local _, ok = h.ok({ "run", job, "--drain", "--create" },
                       { dir = dir .. "/deep", stderr_ok = true })
    assert.matches("stopped cleanly", ok.err, 1, true)
  end)

  it("refuses a data dir that is a file", function()
    h.write_file(work .. "/file", "x")
    one_line(h.tide({ "run", job, "--drain", "--create" }, { dir = work .. "/file" }), 1,
             { "data dir '" .. work .. "/file' is not a folder" })
  end)

  it("documents --create in its --help", function()
    local out = h.ok({ "run", "--help" })
    assert.matches("[--create]", out, 1, true)
    assert.matches("--create      make the data dir", out, 1, true)
  end)
end)
