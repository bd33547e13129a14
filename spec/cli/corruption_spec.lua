-- End to end: damage to the segment files of a stream, as a disk or a
-- crash could leave it, seen through the `tide` command line.
local h = require("cli.helper")

local SEG0 = "00000000000000000000.log"

-- Byte ranges of the records of a segment file (format.h: a 16-byte
-- header, then records of a u32 length and that many bytes): a list of
-- { first = byte position, stop = position after it }.
local function records_of(path)
  local data = assert(h.read_file(path))
  assert(data:sub(1, 8) == "TIDESEG1", path .. " is not a segment")
  return h.segment_records(data, path)
end

local overwrite = h.overwrite

local function garbage(n)
  local t = {}
  for i = 1, n do t[i] = string.char((i * 97 + 13) % 256) end
  return table.concat(t)
end

local function truncate(path, size)
  os.execute("truncate -s " .. size .. " " .. h.q(path))
end

local function numbered(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = "record number " .. i .. " of the stream" end
  return table.concat(t, "\n") .. "\n"
end

describe("a damaged stream", function()
  local dir

  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  local function seg(stream, part, name)
    return string.format("%s/streams/%s/%d/%s", dir, stream, part, name or SEG0)
  end

  -- Asserts that 'err' is one line telling what was cut: the stream, the
  -- partition, the segment and the byte position.
  local function assert_cut_line(err, stream, part, segname, byte)
    local lines = h.lines(err)
    assert.are.equal(1, #lines, "stderr:\n" .. err)
    local l = lines[1]
    assert.matches("'" .. stream .. "'", l, 1, true)
    assert.matches("partition " .. part, l, 1, true)
    assert.matches(segname, l, 1, true)
    assert.matches("byte " .. byte .. "%f[%D]", l)
    assert.matches("cut", l, 1, true)
  end

  it("cuts garbage over its tail back to the last whole record", function()
    h.ok({ "produce", "tail", "--partitions", "1" },
         { dir = dir, stdin = numbered(0, 999) })
    local recs = records_of(seg("tail", 0))
    assert.are.equal(1000, #recs)
    -- the last 10 bytes of record 999 become garbage
    local size = recs[1000].stop
    overwrite(seg("tail", 0), size - 10, garbage(10))

    local r = h.tide({ "consume", "tail", "-e" }, { dir = dir })
    assert.are.equal(0, r.code)
    assert.are.equal(numbered(0, 998), r.out)
    assert_cut_line(r.err, "tail", 0, SEG0, recs[1000].first)

    -- the cut is made once: the next open says nothing
    local again = h.tide({ "consume", "tail", "-e" }, { dir = dir })
    assert.are.equal("", again.err)
    assert.are.equal(numbered(0, 998), again.out)
  end)

  it("keeps every record before garbage that spans several records", function()
    h.ok({ "produce", "wide", "--partitions", "1" },
         { dir = dir, stdin = numbered(0, 499) })
    local recs = records_of(seg("wide", 0))
    -- from the middle of record 420 to the end of the file
    local from = recs[421].first + 7
    overwrite(seg("wide", 0), from, garbage(recs[500].stop - from))

    local r = h.tide({ "consume", "wide", "-e", "-f", "%o %s\\n" }, { dir = dir })
    assert.are.equal(0, r.code)
    local want = {}
    for i = 0, 419 do want[#want + 1] = i .. " record number " .. i .. " of the stream" end
    assert.are.same(want, h.lines(r.out))
    assert_cut_line(r.err, "wide", 0, SEG0, recs[421].first)
  end)

  it("is repaired by the next produce, which appends after the cut", function()
    h.ok({ "produce", "app", "--partitions", "1" },
         { dir = dir, stdin = numbered(0, 99) })
    local recs = records_of(seg("app", 0))
    overwrite(seg("app", 0), recs[100].first + 20, garbage(recs[100].stop - recs[100].first - 20))

    local r = h.tide({ "produce", "app" }, { dir = dir, stdin = "late-1\nlate-2\n" })
    assert.are.equal(0, r.code)
    assert_cut_line(r.err, "app", 0, SEG0, recs[100].first)

    local out = h.ok({ "consume", "app", "-e", "-o", "97", "-f", "%o %s\\n" },
                     { dir = dir })
    assert.are.equal("97 record number 97 of the stream\n"
                     .. "98 record number 98 of the stream\n"
                     .. "99 late-1\n100 late-2\n", out)
  end)

  it("cuts a record truncated in the middle", function()
    h.ok({ "produce", "trunc", "--partitions", "1" },
         { dir = dir, stdin = numbered(0, 299) })
    local recs = records_of(seg("trunc", 0))
    truncate(seg("trunc", 0), recs[251].first + 30)   -- inside record 250

    local r = h.tide({ "consume", "trunc", "-e" }, { dir = dir })
    assert.are.equal(0, r.code)
    assert.are.equal(numbered(0, 249), r.out)
    assert_cut_line(r.err, "trunc", 0, SEG0, recs[251].first)

    h.ok({ "produce", "trunc" }, { dir = dir, stdin = "after the cut\n" })
    assert.are.equal("250 after the cut\n",
      h.ok({ "consume", "trunc", "-e", "-o", "-1", "-f", "%o %s\\n" }, { dir = dir }))
  end)

  it("cuts a torn record header (a few bytes past the last record)", function()
    h.ok({ "produce", "hdr", "--partitions", "1" },
         { dir = dir, stdin = numbered(0, 9) })
    local recs = records_of(seg("hdr", 0))
    local f = assert(io.open(seg("hdr", 0), "ab"))
    f:write("\60\0\0")   -- 3 bytes of a length field
    f:close()

    local r = h.tide({ "consume", "hdr", "-e" }, { dir = dir })
    assert.are.equal(0, r.code)
    assert.are.equal(numbered(0, 9), r.out)
    assert_cut_line(r.err, "hdr", 0, SEG0, recs[10].stop)
  end)

  it("cuts only the damaged partition of a stream", function()
    local lines = {}
    for i = 0, 299 do lines[#lines + 1] = "line " .. i end
    h.ok({ "produce", "multi", "--partitions", "3" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    local before = h.ok({ "consume", "multi", "-e", "-f", "%p %o %s\\n" },
                        { dir = dir })
    local recs = records_of(seg("multi", 2))
    local n2 = #recs
    overwrite(seg("multi", 2), recs[n2].stop - 5, garbage(5))

    local r = h.tide({ "consume", "multi", "-e", "-f", "%p %o %s\\n" }, { dir = dir })
    assert.are.equal(0, r.code)
    assert_cut_line(r.err, "multi", 2, SEG0, recs[n2].first)
    -- all the records of partitions 0 and 1, and all but the last of 2
    local want = {}
    for _, l in ipairs(h.lines(before)) do
      if not l:match("^2 " .. (n2 - 1) .. " ") then
        want[#want + 1] = l
      end
    end
    assert.are.same(want, h.lines(r.out))
  end)

  describe("with garbage in the middle of a closed segment", function()
    it("stops consume with one clear error line and a non-zero exit", function()
      h.ok({ "streams", "create", "mid", "--partitions", "1",
             "--segment-bytes", "4096" }, { dir = dir })
      -- two runs, so that the second one rolls a new segment
      h.ok({ "produce", "mid" }, { dir = dir, stdin = numbered(0, 199) })
      h.ok({ "produce", "mid" }, { dir = dir, stdin = numbered(200, 399) })
      local files = h.files(dir .. "/streams/mid/0")
      local logs = {}
      for name in pairs(files) do
        if name:match("%.log$") then logs[#logs + 1] = name end
      end
      assert.is_true(#logs >= 2, "expected a closed segment")
      local recs = records_of(seg("mid", 0))
      assert.is_true(#recs > 100)
      overwrite(seg("mid", 0), recs[101].first + 12, garbage(16))

      local r = h.tide({ "consume", "mid", "-e" }, { dir = dir })
      assert.are_not.equal(0, r.code)
      -- what came before the damage was printed
      assert.are.equal(numbered(0, 99), r.out)
      local lines = h.lines(r.err)
      assert.are.equal(1, #lines, "stderr:\n" .. r.err)
      assert.matches("mid", lines[1], 1, true)
      assert.matches(SEG0, lines[1], 1, true)
      assert.matches("byte " .. recs[101].first .. "%f[%D]", lines[1])
      assert.not_matches("traceback", lines[1])
    end)
  end)

  -- Reads a u32 (little-endian) of string 'data' at byte 'pos' (0-based).
  local function u32(data, pos)
    local a, b, c, d = data:byte(pos + 1, pos + 4)
    return a + b * 256 + c * 65536 + d * 16777216
  end

  local function u32s(v)
    return string.char(v % 256, math.floor(v / 256) % 256,
                       math.floor(v / 65536) % 256, math.floor(v / 16777216) % 256)
  end

  -- Asserts that consume -e stopped with one line naming 'segname' and
  -- 'byte', after printing exactly the records 0..last.
  local function assert_reported(stream, segname, byte, last)
    local r = h.tide({ "consume", stream, "-e" }, { dir = dir })
    assert.are.equal(1, r.code, "stderr:\n" .. r.err)
    assert.are.equal(numbered(0, last), r.out)
    local lines = h.lines(r.err)
    assert.are.equal(1, #lines, "stderr:\n" .. r.err)
    assert.matches(segname, lines[1], 1, true)
    assert.matches("byte " .. byte .. "%f[%D]", lines[1])
    return r
  end

  describe("with a stale index entry inside a record", function()
    it("checks the entry against the record and scans instead", function()
      h.ok({ "produce", "idx", "--partitions", "1" },
           { dir = dir, stdin = numbered(0, 1999) })
      local recs = records_of(seg("idx", 0))
      local data = h.read_file(seg("idx", 0))
      local ipath = seg("idx", 0, "00000000000000000000.index")
      local index = assert(h.read_file(ipath))
      assert.is_true(#index >= 16)
      -- a place inside record 1025 whose bytes read as a length that is
      -- in bounds but runs past the end of the file
      local at
      for k = recs[1026].first + 1, recs[1026].stop - 4 do
        local v = u32(data, k)
        if v >= 32 and v < 64 * 1024 * 1024 and k + 4 + v > #data then
          at = k
          break
        end
      end
      assert.is_not_nil(at, "no such place in record 1025")
      -- the entry for the largest offset <= 1025 now claims 1025 is there
      local keep = {}
      for e = 0, #index / 8 - 1 do
        if u32(index, e * 8) <= 1025 then keep[#keep + 1] = e end
      end
      local e = keep[#keep]
      assert.is_true(e < #index / 8 - 1, "the entry must not be the last one")
      overwrite(ipath, e * 8, u32s(1025) .. u32s(at))

      local r = h.tide({ "consume", "idx", "-e", "-o", "1025" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      assert.are.equal(numbered(1025, 1999), r.out)
      assert.are.equal("", r.err)
    end)
  end)

  describe("with a damaged length field", function()
    it("in a closed segment: reports file and byte", function()
      h.ok({ "streams", "create", "lc", "--partitions", "1",
             "--segment-bytes", "8192" }, { dir = dir })
      -- two runs, so that the second one rolls a new segment
      h.ok({ "produce", "lc" }, { dir = dir, stdin = numbered(0, 149) })
      h.ok({ "produce", "lc" }, { dir = dir, stdin = numbered(150, 299) })
      local recs = records_of(seg("lc", 0))
      assert.is_not_nil(h.read_file(seg("lc", 0, string.format("%020d.log", #recs))))
      -- record 50 claims more bytes than the file holds
      overwrite(seg("lc", 0), recs[51].first, u32s(100000))
      local r = assert_reported("lc", SEG0, recs[51].first, 49)
      assert.not_matches("trailing", r.err, 1, true)
    end)

    it("in the active segment, before its last index entry: reports it", function()
      h.ok({ "produce", "la", "--partitions", "1" },
           { dir = dir, stdin = numbered(0, 999) })
      local recs = records_of(seg("la", 0))
      overwrite(seg("la", 0), recs[101].first, u32s(5000000))
      assert_reported("la", SEG0, recs[101].first, 99)
    end)

    it("in the active segment, near its end: reports it, cuts nothing", function()
      h.ok({ "produce", "le", "--partitions", "1" },
           { dir = dir, stdin = numbered(0, 999) })
      local recs = records_of(seg("le", 0))
      local before = h.read_file(seg("le", 0))
      -- a record after the last index entry, where an open looks for a
      -- torn tail; whole records follow it
      local index = h.read_file(seg("le", 0, "00000000000000000000.index"))
      local last_entry = u32(index, #index - 4)
      local k = 1
      while recs[k].first <= last_entry do k = k + 1 end
      k = k + 1
      assert.is_true(k < 998)
      overwrite(seg("le", 0), recs[k].first, u32s(5000000))
      assert_reported("le", SEG0, recs[k].first, k - 2)
      -- nothing was cut: the records after it are still on disk
      assert.are.equal(#before, #h.read_file(seg("le", 0)))
      -- and an append says what is wrong instead of writing after it
      local r = h.tide({ "produce", "le" }, { dir = dir, stdin = "more\n" })
      assert.are.equal(1, r.code, r.err)
      assert.matches("byte " .. recs[k].first .. "%f[%D]", r.err)
    end)
  end)

  describe("followed while writers are killed mid-write", function()
    after_each(function() h.kill_started(dir) end)

    it("re-reads after each cut of a torn tail and never dies", function()
      local seed = tonumber(os.getenv("TIDE_SEED") or "") or os.time()
      math.randomseed(seed)
      local why = "seed " .. seed .. " (TIDE_SEED=" .. seed .. " repeats it)"
      local big = dir .. "/big.txt"
      local t = {}
      for i = 1, 1000 do t[i] = string.format("w-%04d-%s", i, ("x"):rep(16000)) end
      h.write_file(big, table.concat(t, "\n") .. "\n")
      h.ok({ "streams", "create", "f", "--partitions", "1" }, { dir = dir })
      local follower = h.start_tide(dir, dir, { "consume", "f", "-f", "%o %S\\n" })
      local errf = dir .. "/producers.err"
      local tears, kills = 0, 0
      for _ = 1, 60 do
        local pid = h.spawn(string.format("%s produce f --data-dir %s <%s >/dev/null 2>>%s",
                                          h.q(h.bin), h.q(dir), h.q(big), h.q(errf)))
        h.sleep(0.01 + math.random() * 0.05)
        h.kill9(pid)
        kills = kills + 1
        assert.is_true(h.alive(follower.pid), "the follower died after "
                       .. kills .. " kills: " .. h.tide_stderr(follower) .. "; " .. why)
        local _, n = (h.read_file(errf) or ""):gsub("cut a torn tail", "")
        tears = n
        if tears >= 4 then break end
      end
      -- the last writer cuts what the last kill tore
      h.tide({ "produce", "f" }, { dir = dir, stdin = "the end\n" })
      local want = h.ok({ "consume", "f", "-e", "-f", "%o %S\\n" }, { dir = dir })
      local got
      for _ = 1, 2000 do
        got = h.read_file(follower.base .. ".out") or ""
        if #got >= #want or not h.alive(follower.pid) then break end
        h.sleep(0.01)
      end
      assert.is_true(h.alive(follower.pid), h.tide_stderr(follower) .. "; " .. why)
      assert.are.equal("", h.tide_stderr(follower), why)
      assert.is_true(got == want, "the follower printed " .. #got .. " bytes, consume -e "
                     .. #want .. "; " .. why)
      assert.is_true(tears >= 1, "no torn tail in " .. kills .. " kills; " .. why)
    end)
  end)

  describe("with a segment missing or cut short", function()
    -- A stream of 4 KiB segments holding records 0..599, made by six
    -- runs; returns the sorted bases of its segments.
    local function segmented(stream)
      h.ok({ "streams", "create", stream, "--partitions", "1",
             "--segment-bytes", "4096" }, { dir = dir })
      for run = 0, 5 do
        h.ok({ "produce", stream }, { dir = dir,
             stdin = numbered(run * 100, run * 100 + 99) })
      end
      local bases = {}
      for path in pairs(h.files(dir .. "/streams/" .. stream .. "/0")) do
        local b = path:match("^(%d+)%.log$")
        if b then bases[#bases + 1] = tonumber(b) end
      end
      table.sort(bases)
      assert.is_true(#bases >= 4, #bases .. " segments")
      return bases
    end

    local function assert_gap(stream, from, last_read)
      local r = h.tide({ "consume", stream, "-e" }, { dir = dir })
      assert.are.equal(1, r.code, "stderr:\n" .. r.err)
      assert.are.equal(numbered(0, last_read), r.out)
      local lines = h.lines(r.err)
      assert.are.equal(1, #lines, "stderr:\n" .. r.err)
      assert.matches("'" .. stream .. "'", lines[1], 1, true)
      assert.matches("partition 0", lines[1], 1, true)
      assert.matches("expected offset " .. from .. "%f[%D]", lines[1])
      assert.matches("/" .. stream .. "/0/%d+%.log", lines[1])
    end

    it("reports a deleted middle segment with its place", function()
      local bases = segmented("gap")
      os.remove(seg("gap", 0, string.format("%020d.log", bases[2])))
      os.remove(seg("gap", 0, string.format("%020d.index", bases[2])))
      assert_gap("gap", bases[2], bases[2] - 1)
    end)

    it("reports a closed segment cut at a record boundary", function()
      local bases = segmented("short")
      local path = seg("short", 0, string.format("%020d.log", bases[2]))
      local recs = records_of(path)
      truncate(path, recs[#recs - 2].stop)     -- drop its last 2 records
      local from = bases[3] - 2
      assert_gap("short", from, from - 1)
    end)

    it("reports a whole record taken out of a segment", function()
      local bases = segmented("spliced")
      for _, k in ipairs({ 2, #bases }) do       -- a closed one, then the active one
        local path = seg("spliced", 0, string.format("%020d.log", bases[k]))
        local data = h.read_file(path)
        local recs = records_of(path)
        local cut = recs[11]
        h.write_file(path, data:sub(1, cut.first) .. data:sub(cut.stop + 1))
        local r = h.tide({ "consume", "spliced", "-e" }, { dir = dir })
        assert.are.equal(1, r.code, r.err)
        assert.are.equal(numbered(0, bases[k] + 9), r.out)
        assert.matches(string.format("%020d.log", bases[k]), r.err, 1, true)
        assert.matches("byte " .. cut.first .. "%f[%D]", r.err)
        assert.matches("expected offset " .. (bases[k] + 10) .. "%f[%D]", r.err)
        h.write_file(path, data)
      end
    end)

    it("takes a start that retention deleted as the start", function()
      local bases = segmented("ret")
      os.remove(seg("ret", 0, string.format("%020d.log", bases[1])))
      os.remove(seg("ret", 0, string.format("%020d.index", bases[1])))
      local r = h.tide({ "consume", "ret", "-e" }, { dir = dir })
      assert.are.equal(0, r.code, r.err)
      assert.are.equal(numbered(bases[2], 599), r.out)
    end)
  end)
end)
