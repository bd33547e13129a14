-- End to end: records go in through `tide produce` and come back through
-- `tide consume`, as a user would run them.
local h = require("cli.helper")

local FMT = "%p\\t%o\\t%k\\t%s\\n"

-- Parses consume output in FMT: a list of { p, o, k, s } (k, s strings).
local function parse(out)
  local recs = {}
  for p, o, k, s in out:gmatch("(%d+)\t(%d+)\t([^\t\n]*)\t([^\n]*)\n") do
    recs[#recs + 1] = { p = tonumber(p), o = tonumber(o), k = k, s = s }
  end
  return recs
end

-- Realistic keys: user ids, e-mail addresses, URL paths, hex ids and a few
-- UTF-8 names, of lengths from 1 to about 60 bytes. About 3,000 distinct.
local function make_keys()
  local keys, words = {}, { "alpha", "bravo", "café", "delta", "échelle",
                            "foxtrot", "grün", "hotel", "日本", "x" }
  for i = 1, 1000 do keys[#keys + 1] = "user-" .. i end
  for i = 1, 600 do
    keys[#keys + 1] = words[i % #words + 1] .. "." .. words[(i * 7) % #words + 1]
                      .. i .. "@example.org"
  end
  for i = 1, 600 do
    keys[#keys + 1] = "/products/" .. (i * 37 % 1009) .. "/reviews?page="
                      .. (i % 13) .. "&sort=" .. words[i % #words + 1]
  end
  for i = 1, 700 do
    keys[#keys + 1] = string.format("%08x-%04x-%04x", i * 2654435761 % 2^32,
                                    i * 40503 % 65536, i % 65536)
  end
  for i = 0, 9 do keys[#keys + 1] = tostring(i) end
  for i = 1, 90 do keys[#keys + 1] = words[i % #words + 1]:rep(1 + i % 4) .. i end
  return keys
end

describe("tide produce/consume", function()
  local dir

  describe("with 200,000 keyed records in 4 partitions", function()
    local N, NPART = 200000, 4
    local input, keys_of, vals_of, out_recs

    -- One produce and one consume run, shared by the tests of this block.
    local function roundtrip()
      if out_recs then return end
      local keys = make_keys()
      local lines = {}
      keys_of, vals_of = {}, {}
      math.randomseed(20240601)
      for i = 1, N do
        local k = keys[math.random(#keys)]
        -- the value holds the separator too: only the first one splits
        local v = "seq=" .. i .. ":event=" .. (i % 5 == 0 and "click" or "view")
                  .. ":ms=" .. (1700000000000 + i * 13)
        keys_of[i], vals_of[i] = k, v
        lines[i] = k .. ":" .. v
      end
      input = table.concat(lines, "\n") .. "\n"
      local r = h.tide({ "produce", "clicks", "--partitions", NPART, "-K", ":" },
                       { dir = dir, stdin = input })
      assert.are.equal("", r.err)
      assert.are.equal(0, r.code)
      local out = h.ok({ "consume", "clicks", "-e", "-f", FMT }, { dir = dir })
      out_recs = parse(out)
      -- every line of the output was parsed
      local nl = select(2, out:gsub("\n", "\n"))
      assert.are.equal(nl, #out_recs)
    end

    -- One data dir for the whole block: produce once, check many ways.
    setup(function() dir = h.tmpdir() end)
    teardown(function() h.rmdir(dir) end)

    it("returns the same multiset of (key, value)", function()
      roundtrip()
      assert.are.equal(N, #out_recs)
      local want = {}
      for i = 1, N do
        local kv = keys_of[i] .. "\t" .. vals_of[i]
        want[kv] = (want[kv] or 0) + 1
      end
      for _, r in ipairs(out_recs) do
        local kv = r.k .. "\t" .. r.s
        assert(want[kv], "unexpected or repeated record: " .. kv)
        want[kv] = want[kv] - 1
        if want[kv] == 0 then want[kv] = nil end
      end
      assert.are.same({}, want)
    end)

    it("puts every key in the partition Kafka's murmur2 gives it", function()
      roundtrip()
      local distinct, used = {}, {}
      for _, r in ipairs(out_recs) do
        local p = h.partition_of(r.k, NPART)
        if p ~= r.p then
          assert.is_true(false, string.format("key %q is in partition %d, murmur2 says %d",
                              r.k, r.p, p))
        end
        distinct[r.k] = true
        used[r.p] = true
      end
      local nk = 0
      for _ in pairs(distinct) do nk = nk + 1 end
      assert.is_true(nk > 2000)
      assert.are.same({ [0] = true, true, true, true }, used)
    end)

    it("agrees with tide_partition_get of libtide", function()
      local lib_path = os.getenv("TIDE_LIB")
      if not lib_path then
        pending("TIDE_LIB is not set")
        return
      end
      local ffi = require("ffi")
      pcall(ffi.cdef, [[
        int32_t tide_partition_get(const char *key, size_t len, int32_t n);
      ]])
      local lib = ffi.load(lib_path)
      for _, k in ipairs(make_keys()) do
        assert.are.equal(h.partition_of(k, NPART),
                         lib.tide_partition_get(k, #k, NPART))
      end
      -- Kafka's own test vectors (UtilsTest.testMurmur2)
      assert.are.equal(-973932308, h.murmur2("21"))
      assert.are.equal(-790332482, h.murmur2("foobar"))
      assert.are.equal(-985981536, h.murmur2("a-little-bit-long-string"))
      assert.are.equal(-1486304829, h.murmur2("a-little-bit-longer-string"))
      assert.are.equal(-58897971,
        h.murmur2("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"))
      assert.are.equal(479470107, h.murmur2("abc"))
    end)

    it("keeps the input order within each partition", function()
      roundtrip()
      local want = {}
      for p = 0, NPART - 1 do want[p] = {} end
      for i = 1, N do
        local t = want[h.partition_of(keys_of[i], NPART)]
        t[#t + 1] = i
      end
      local got = {}
      for p = 0, NPART - 1 do got[p] = {} end
      for _, r in ipairs(out_recs) do
        local t = got[r.p]
        t[#t + 1] = tonumber(r.s:match("^seq=(%d+):"))
      end
      for p = 0, NPART - 1 do
        assert.are.equal(#want[p], #got[p])
        for j = 1, #want[p] do
          if want[p][j] ~= got[p][j] then
            assert.is_true(false, string.format("partition %d, position %d: input line %d, "
                                .. "got line %s", p, j, want[p][j],
                                tostring(got[p][j])))
          end
        end
      end
    end)

    it("numbers each partition 0..n-1 without a gap", function()
      roundtrip()
      local next_off = { [0] = 0, 0, 0, 0 }
      for _, r in ipairs(out_recs) do
        if r.o ~= next_off[r.p] then
          assert.is_true(false, string.format("partition %d: offset %d where %d was due",
                              r.p, r.o, next_off[r.p]))
        end
        next_off[r.p] = r.o + 1
      end
      local desc = h.ok({ "streams", "describe", "clicks" }, { dir = dir })
      for p = 0, NPART - 1 do
        -- "partition  start  end  segments  bytes"
        local s, e = desc:match("\n%s*" .. p .. "%s+(%d+)%s+(%d+)%s")
        assert.are.equal(0, tonumber(s))
        assert.are.equal(next_off[p], tonumber(e))
      end
    end)
  end)
end)

describe("tide produce/consume", function()
  local dir

  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  it("spreads unkeyed lines round-robin", function()
    local lines = {}
    for i = 1, 101 do lines[i] = "line " .. i end
    h.ok({ "produce", "rr", "--partitions", "4" },
         { dir = dir, stdin = table.concat(lines, "\n") .. "\n" })
    local recs = parse(h.ok({ "consume", "rr", "-e", "-f", FMT }, { dir = dir }))
    assert.are.equal(101, #recs)
    local where, count = {}, { 0, 0, 0, 0 }
    for _, r in ipairs(recs) do
      where[tonumber(r.s:match("^line (%d+)$"))] = r.p
      count[r.p + 1] = count[r.p + 1] + 1
    end
    for i = 2, 101 do
      assert.are.equal((where[i - 1] + 1) % 4, where[i])
    end
    table.sort(count)
    assert.are.same({ 25, 25, 25, 26 }, count)
  end)

  it("writes every line to partition N with -p N, keys or not", function()
    h.ok({ "streams", "create", "pin", "--partitions", "3" }, { dir = dir })
    h.ok({ "produce", "pin", "-p", "2", "-K", "=" },
         { dir = dir, stdin = "a=1\nb=2\nno key\nfoobar=4\n" })
    local recs = parse(h.ok({ "consume", "pin", "-e", "-f", FMT }, { dir = dir }))
    assert.are.equal(4, #recs)
    for i, r in ipairs(recs) do
      assert.are.equal(2, r.p)
      assert.are.equal(i - 1, r.o)
    end
    assert.are.equal("foobar", recs[4].k)
    assert.are.equal("4", recs[4].s)
  end)

  describe("consume", function()
    -- 'pos' has 2 partitions; partition p holds "p<p>-<i>" for i = 0..9.
    before_each(function()
      h.ok({ "streams", "create", "pos", "--partitions", "2" }, { dir = dir })
      for p = 0, 1 do
        local t = {}
        for i = 0, 9 do t[#t + 1] = "p" .. p .. "-" .. i end
        h.ok({ "produce", "pos", "-p", p },
             { dir = dir, stdin = table.concat(t, "\n") .. "\n" })
      end
    end)

    local function offsets(args)
      local a = { "consume", "pos", "-f", "%p:%o:%s\\n" }
      for _, x in ipairs(args) do a[#a + 1] = x end
      local got = {}
      for _, l in ipairs(h.lines(h.ok(a, { dir = dir }))) do
        local p, o, s = l:match("^(%d+):(%d+):(.*)$")
        assert.are.equal("p" .. p .. "-" .. o, s)
        got[#got + 1] = p .. ":" .. o
      end
      table.sort(got)
      return got
    end

    it("starts at the beginning by default", function()
      local got = offsets({ "-e" })
      assert.are.equal(20, #got)
      assert.are.same(offsets({ "-e", "-o", "beginning" }), got)
    end)

    it("prints nothing with -o end -e", function()
      assert.are.same({}, offsets({ "-e", "-o", "end" }))
    end)

    it("starts at offset N of every partition with -o N", function()
      assert.are.same({ "0:7", "0:8", "0:9", "1:7", "1:8", "1:9" },
                      offsets({ "-e", "-o", "7" }))
      assert.are.same({ "1:9" }, offsets({ "-e", "-o", "9", "-p", "1" }))
    end)

    it("prints the last N records of every partition with -o -N", function()
      assert.are.same({ "0:8", "0:9", "1:8", "1:9" },
                      offsets({ "-e", "-o", "-2" }))
      assert.are.same({ "0:9" }, offsets({ "-e", "-o", "-1", "-p", "0" }))
      -- more than there is: from the start
      assert.are.equal(20, #offsets({ "-e", "-o", "-50" }))
    end)

    it("reads only partition N with -p N", function()
      local got = offsets({ "-e", "-p", "1" })
      assert.are.equal(10, #got)
      for _, po in ipairs(got) do assert.matches("^1:", po) end
    end)

    it("stops after COUNT records with -c COUNT, even without -e", function()
      assert.are.equal(3, #offsets({ "-c", "3" }))
      assert.are.same({ "1:4", "1:5" }, offsets({ "-c", "2", "-p", "1", "-o", "4" }))
    end)

    it("follows new records from the end without -e", function()
      local out = os.tmpname()
      local pid = h.spawn(string.format(
        "%s consume pos --data-dir %s -o end -c 2 -f '%%p:%%o:%%s\\n' >%s 2>&1",
        h.q(h.bin), h.q(dir), h.q(out)))
      -- Append one line at a time until the follower has seen two; what
      -- it prints must be two of these lines, none of the older ones.
      local n = 0
      while h.alive(pid) and n < 200 do
        n = n + 1
        h.ok({ "produce", "pos", "-p", "0" }, { dir = dir, stdin = "tick-" .. n .. "\n" })
        h.sleep(0.05)
      end
      if h.alive(pid) then h.kill9(pid) end
      local got = h.read_file(out)
      os.remove(out)
      local a, b = got:match("^0:(%d+):tick%-%d+\n0:(%d+):tick%-%d+\n$")
      assert.is_not_nil(a, "follower printed: " .. got)
      assert.is_true(tonumber(a) >= 10)
      assert.are.equal(tonumber(a) + 1, tonumber(b))
    end)
  end)

  it("gives lines without the separator a nil key, and '' an empty key", function()
    h.ok({ "produce", "nk", "--partitions", "1", "-K", "::" },
         { dir = dir, stdin = "plain line\n::empty key\nk::v::w\nk:v\n\n" })
    local out = h.ok({ "consume", "nk", "-e", "-f", "%K|%S|%k|%s\\n" }, { dir = dir })
    assert.are.same({
      "-1|10||plain line",
      "0|9||empty key",
      "1|4|k|v::w",
      "-1|3||k:v",
      "-1|0||",
    }, h.lines(out))
  end)

  it("keeps tabs, UTF-8, CR, NUL and high bytes intact", function()
    local vals = {
      "tab\there\tand\tthere",
      "naïve café — 日本語 😀",
      "cr\rin the middle",
      "nul\0byte",
      "high \255\254\128 bytes",
      "back\\slash %s %k %%",
      "",
    }
    local keys = { "k\tt", "ключ", "\1\2\3", "emoji😀", "%k", "a b", "z" }
    local input = {}
    for i = 1, #vals do input[i] = keys[i] .. "|" .. vals[i] end
    h.ok({ "produce", "bin", "--partitions", "1", "-K", "|" },
         { dir = dir, stdin = table.concat(input, "\n") .. "\n" })
    -- Lengths first, then the raw bytes, so nothing relies on parsing.
    local out = h.ok({ "consume", "bin", "-e", "-f", "%K %S\\n%k%s\\n" },
                     { dir = dir })
    local want = {}
    for i = 1, #vals do
      want[#want + 1] = #keys[i] .. " " .. #vals[i] .. "\n" .. keys[i] .. vals[i] .. "\n"
    end
    assert.are.equal(table.concat(want), out)
    -- and the default format prints the value alone
    local plain = h.ok({ "consume", "bin", "-e" }, { dir = dir })
    assert.are.equal(table.concat(vals, "\n") .. "\n", plain)
  end)
end)

describe("many partitions under a descriptor limit", function()
  local dir

  before_each(function() dir = h.tmpdir() end)
  after_each(function() h.rmdir(dir) end)

  -- Runs tide ARGS in 'sh -c' after the ulimit command 'limit'.
  local function limited(limit, args, stdin_file)
    local words = { h.q(h.bin) }
    for _, a in ipairs(args) do words[#words + 1] = h.q(a) end
    words[#words + 1] = "--data-dir " .. h.q(dir)
    return h.run("sh -c " .. h.q(limit .. " && exec " .. table.concat(words, " ")),
                 { stdin_file = stdin_file })
  end

  it("creates, fills and reads 300 partitions under 'ulimit -n 1024'", function()
    local r = limited("ulimit -n 1024", { "streams", "create", "wide", "--partitions", "300" })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.err)
    local lines = {}
    for i = 1, 3000 do lines[i] = "key-" .. i .. ":value-" .. i end
    local input = dir .. "/input.txt"
    h.write_file(input, table.concat(lines, "\n") .. "\n")
    r = limited("ulimit -n 1024", { "produce", "wide", "-K", ":" }, input)
    assert.are.equal(0, r.code, r.err)
    r = limited("ulimit -n 1024", { "consume", "wide", "-e", "-f", "%p %k %s\\n" })
    assert.are.equal(0, r.code, r.err)
    local seen, parts = 0, {}
    for p, k, v in r.out:gmatch("(%d+) key%-(%d+) value%-(%d+)\n") do
      assert.are.equal(k, v)
      assert.are.equal(h.partition_of("key-" .. k, 300), tonumber(p))
      parts[p] = true
      seen = seen + 1
    end
    assert.are.equal(3000, seen)
    local n = 0
    for _ in pairs(parts) do n = n + 1 end
    assert.is_true(n > 250, n .. " partitions written")
  end)

  it("raises a low soft limit to the hard one", function()
    local r = limited("ulimit -Sn 200 && ulimit -Hn 4096",
                      { "streams", "create", "soft", "--partitions", "300" })
    assert.are.equal(0, r.code, r.err)
    r = limited("ulimit -Sn 200 && ulimit -Hn 4096", { "produce", "soft", "-K", ":" },
                nil)
    assert.are.equal(0, r.code, r.err)
  end)

  it("creates nothing when it runs out of descriptors partway", function()
    local r = limited("ulimit -Sn 64 && ulimit -Hn 64", { "streams", "create", "big", "--partitions", "300" })
    assert.are.equal(1, r.code)
    local lines = h.lines(r.err)
    assert.are.equal(1, #lines, "stderr:\n" .. r.err)
    assert.matches("open files", lines[1], 1, true)
    assert.matches("ulimit -n", lines[1], 1, true)
    assert.matches("not created", lines[1], 1, true)
    assert.are.equal("", h.ok({ "streams", "list" }, { dir = dir }))
    assert.are.equal("", h.sh("ls -A " .. h.q(dir .. "/streams") .. " 2>/dev/null"))
    -- and the same name can be created once the limit allows it
    h.ok({ "streams", "create", "big", "--partitions", "300" }, { dir = dir })
  end)

  it("leaves nothing behind when it cannot write stream.conf", function()
    -- no file may grow (SIGXFSZ ignored: writes fail with EFBIG); stderr
    -- goes through a pipe, which the limit does not cover
    local cmd = string.format("(trap '' XFSZ; ulimit -f 0; exec %s streams create "
                              .. "conf --partitions 3 --data-dir %s) 2>&1 | cat >&2",
                              h.q(h.bin), h.q(dir))
    local r = h.run("sh -c " .. h.q(cmd))
    local lines = h.lines(r.err)
    assert.are.equal(1, #lines, "stderr:\n" .. r.err)
    assert.matches("stream.conf", lines[1], 1, true)
    assert.are.equal("", h.sh("ls -A " .. h.q(dir .. "/streams") .. " 2>/dev/null"))
  end)
end)
