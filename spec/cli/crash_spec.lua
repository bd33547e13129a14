-- End to end: `tide produce` killed with SIGKILL mid-write leaves an exact
-- prefix of its input in the log, and the log takes appends afterwards.
local h = require("cli.helper")

local LINES = 2000000

-- Lines "r<run>-<i>-<padding>", i from 0; the padding varies in length so
-- that records straddle write and page boundaries in every way.
local function make_input(path, run, n)
  local pad = ("abcdefghijklmnopqrstuvwxyz0123456789"):rep(3)
  h.write_lines(path, n, function(i)
    i = i - 1
    return "r" .. run .. "-" .. i .. "-" .. pad:sub(1, i % 23)
  end)
end

-- Starts `tide produce STREAM` reading 'input' (through a pipe when
-- 'piped'), waits 'delay' seconds and kills it with SIGKILL.
local function produce_and_kill(dir, stream, input, delay, piped)
  local tide = string.format("%s produce %s --partitions 1 --data-dir %s",
                             h.q(h.bin), h.q(stream), h.q(dir))
  local cmd
  if piped then
    cmd = string.format("cat %s | %s >/dev/null 2>&1", h.q(input), tide)
  else
    cmd = string.format("exec %s <%s >/dev/null 2>&1", tide, h.q(input))
  end
  local pid = h.spawn(cmd)
  h.sleep(delay)
  local was_alive = h.alive(pid)
  h.kill9(pid)
  return was_alive
end

describe("tide produce killed with SIGKILL", function()
  local dir, input, seed
  local full

  setup(function()
    seed = os.time()
    math.randomseed(seed)
    print("crash_spec: random seed " .. seed)
    input = os.tmpname()
    make_input(input, 1, LINES)
    full = h.read_file(input)
  end)
  teardown(function() os.remove(input) end)
  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  -- Checks that stream 's' holds an exact prefix of 'full'; returns the
  -- number of records.
  local function assert_prefix(s)
    local r = h.tide({ "consume", s, "-e" }, { dir = dir })
    assert.are.equal(0, r.code)
    local out = r.out
    assert(#out <= #full, "more bytes than the input")
    if full:sub(1, #out) ~= out then
      local i = 1
      while out:byte(i) == full:byte(i) do i = i + 1 end
      assert.is_true(false, string.format("not a prefix of the input: first difference at "
                          .. "byte %d: %q", i, out:sub(i, i + 40)))
    end
    assert(out == "" or out:sub(-1) == "\n", "ends in the middle of a line")
    -- lines are numbered from 0, so the last one tells how many there are
    local n = 0
    if out ~= "" then
      local tail = out:sub(-200)
      n = tonumber(tail:match("r%d+%-(%d+)%-%w*\n$")) + 1
      -- and the offsets are 0..n-1: the last record has offset n-1
      local last = h.ok({ "consume", s, "-e", "-o", "-1", "-f", "%o" },
                        { dir = dir, stderr_ok = true })
      assert.are.equal(tostring(n - 1), last)
    end
    return n, r.err
  end

  -- Appends 3 lines and checks they follow the prefix at offsets n..n+2.
  local function assert_appends(s, n)
    h.ok({ "produce", s }, { dir = dir, stdin = "after-1\nafter-2\nafter-3\n" })
    local out = h.ok({ "consume", s, "-e", "-o", tostring(n), "-f", "%o %s\\n" },
                     { dir = dir })
    -- exactly these three, at n..n+2, and nothing after them
    assert.are.equal(string.format("%d after-1\n%d after-2\n%d after-3\n",
                                   n, n + 1, n + 2), out)
  end

  for _, mode in ipairs({ "file", "pipe" }) do
    it("leaves an exact prefix of its input read from a " .. mode, function()
      local delays = { 0.01, 0.04, 0.1 }
      delays[#delays + 1] = 0.01 + math.random() * 0.2
      local cut_short = 0
      for iter, delay in ipairs(delays) do
        local s = "crash-" .. mode .. "-" .. iter
        local killed = produce_and_kill(dir, s, input, delay, mode == "pipe")
        -- the stream may not even exist yet if the kill came very early
        local exists = h.tide({ "streams", "describe", s }, { dir = dir }).code == 0
        if not exists then
          h.ok({ "streams", "create", s, "--partitions", "1" }, { dir = dir })
        end
        local n = assert_prefix(s)
        if killed and n < LINES then cut_short = cut_short + 1 end
        assert_appends(s, n)
      end
      -- at least one kill must have landed mid-input, or nothing was tested
      assert.is_true(cut_short > 0, "every produce finished before the kill")
    end)
  end

  it("keeps the prefixes of several killed runs, one after another", function()
    local inputs = {}
    for run = 1, 3 do
      inputs[run] = os.tmpname()
      make_input(inputs[run], run + 1, 200000)
    end
    for run = 1, 3 do
      produce_and_kill(dir, "again", inputs[run], 0.005 + math.random() * 0.04,
                       run == 2)
      os.remove(inputs[run])
    end
    if h.tide({ "streams", "describe", "again" }, { dir = dir }).code ~= 0 then
      pending("every kill came before the stream was created; rerun")
      return
    end
    -- the log is: a prefix of run 2's lines, then of run 3's, then of run 4's
    local r = h.tide({ "consume", "again", "-e", "-f", "%o %s\\n" }, { dir = dir })
    assert.are.equal(0, r.code)
    local run, want, off = 2, 0, 0
    for o, rr, i, pad in r.out:gmatch("(%d+) r(%d+)%-(%d+)%-(%w*)\n") do
      o, rr, i = tonumber(o), tonumber(rr), tonumber(i)
      -- (plain ifs: a luassert call per line would take seconds)
      if o ~= off then
        assert.is_true(false, string.format("offset %d where %d was due", o, off))
      end
      if rr ~= run or i ~= want then
        if not (rr > run and i == 0) then
          assert.is_true(false, string.format("offset %d: r%d-%d after r%d-%d", o, rr, i,
                              run, want - 1))
        end
        run = rr
      end
      if #pad ~= i % 23 then
        assert.is_true(false, string.format("offset %d: garbled line r%d-%d", o, rr, i))
      end
      want, off = i + 1, off + 1
    end
    assert.are.equal(off, select(2, r.out:gsub("\n", "\n")))
    assert_appends("again", off)
  end)
end)
