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
  local recs, pos = {}, 16
  while pos + 4 <= #data do
    local a, b, c, d = data:byte(pos + 1, pos + 4)
    local len = a + b * 256 + c * 65536 + d * 16777216
    if pos + 4 + len > #data then break end
    recs[#recs + 1] = { first = pos, stop = pos + 4 + len }
    pos = pos + 4 + len
  end
  assert(pos == #data, "the segment does not end on a record boundary")
  return recs
end

-- Writes 'bytes' over 'path' at byte 'pos' (0-based), in place.
local function overwrite(path, pos, bytes)
  local f = assert(io.open(path, "r+b"))
  f:seek("set", pos)
  f:write(bytes)
  f:close()
end

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
end)
