-- End to end: 400 random damages to the files of a stream (byte flips,
-- records taken out, cuts, zeroed pages and length fields in segments,
-- deleted middle segments, index and stream.conf damage), each on a fresh
-- copy of one data dir, each followed by an open and a full `tide consume
-- -e` read. A read never returns a record that was not written, never
-- skips one silently, never hangs and never crashes: every damage is
-- repaired as a torn tail, with a line saying so, or reported with its
-- file and place, or harmless (an index is a hint). One kind is beyond
-- reach and counted apart: an active segment that ends at a record
-- boundary looks like a stream that ended there, as nothing records where
-- a partition ends. TIDE_SEED=N repeats a run; TIDE_DAMAGES=N sets the
-- count.
local bit = require("bit")
local h = require("cli.helper")

local NPART, RUNS, PER_RUN = 2, 6, 60
local TRIALS = tonumber(os.getenv("TIDE_DAMAGES") or "") or 400
local FMT = "%p %o %s\\n"

local function u32s(v)
  return string.char(v % 256, math.floor(v / 256) % 256,
                     math.floor(v / 65536) % 256, math.floor(v / 16777216) % 256)
end

local function records_of(data)
  return h.segment_records(data, "template segment")
end

local overwrite = h.overwrite

describe("400 random damages", function()
  local tpl, work, want, files, active, seed

  -- The template: NPART partitions of RUNS segments of PER_RUN records
  -- (each run of `tide produce` lands whole in a segment of 4 KiB).
  setup(function()
    seed = tonumber(os.getenv("TIDE_SEED") or "") or os.time()
    math.randomseed(seed)
    tpl = h.tmpdir()
    work = tpl .. "/work"
    local data = tpl .. "/tpl"
    h.ok({ "streams", "create", "s", "--partitions", NPART,
           "--segment-bytes", "4096" }, { dir = data })
    want = {}
    for p = 0, NPART - 1 do
      want[p] = {}
      local o = 0
      for _ = 1, RUNS do
        local lines = {}
        for _ = 1, PER_RUN do
          local v = string.format("p%d-o%d-%s", p, o, ("abcdefgh"):rep(4 + o % 4))
          lines[#lines + 1] = v
          want[p][o] = v
          o = o + 1
        end
        h.ok({ "produce", "s", "-p", p },
             { dir = data, stdin = table.concat(lines, "\n") .. "\n" })
      end
    end
    -- every file of the template, with what a damage needs to know
    files, active = {}, {}
    local sdir = data .. "/streams/s"
    for rel in pairs(h.files(sdir)) do
      local p, base, ext = rel:match("^(%d+)/(%d+)%.(%a+)$")
      if p and (ext == "log" or ext == "index") then
        p, base = tonumber(p), tonumber(base)
        files[#files + 1] = { rel = rel, p = p, base = base, ext = ext }
        if ext == "log" and (not active[p] or base > active[p]) then
          active[p] = base
        end
      end
    end
    table.sort(files, function(a, b) return a.rel < b.rel end)
    for _, f in ipairs(files) do
      f.data = assert(h.read_file(sdir .. "/" .. f.rel))
      if f.ext == "log" then f.recs = records_of(f.data) end
    end
    for p = 0, NPART - 1 do assert(active[p] and active[p] > 0) end
  end)

  teardown(function() h.rmdir(tpl) end)

  local function pick(list) return list[math.random(#list)] end

  local function logs(filter)
    local t = {}
    for _, f in ipairs(files) do
      if f.ext == "log" and (not filter or filter(f)) then t[#t + 1] = f end
    end
    return t
  end

  -- Applies one random damage to the copy in 'work'; returns a table
  -- describing it: { what =, file =, kind =, boundary = bool }.
  local function damage()
    local sdir = work .. "/streams/s"
    local r = math.random(100)
    if r <= 25 then                                         -- byte flip
      local f = pick(logs())
      local pos = math.random(0, #f.data - 1)
      local mask = math.random(1, 255)
      overwrite(sdir .. "/" .. f.rel, pos,
                string.char(bit.bxor(f.data:byte(pos + 1), mask)))
      return { what = string.format("flip byte %d of %s by 0x%02x", pos, f.rel, mask),
               file = f, kind = "log" }
    elseif r <= 30 then                                     -- a record taken out
      local f = pick(logs())
      local k = math.random(#f.recs)
      local rec = f.recs[k]
      h.write_file(sdir .. "/" .. f.rel, f.data:sub(1, rec.first) .. f.data:sub(rec.stop + 1))
      return { what = string.format("take out record %d (bytes %d..%d) of %s", k,
                                    rec.first, rec.stop - 1, f.rel),
               file = f, kind = "log", boundary = k == #f.recs }
    elseif r <= 40 then                                     -- cut
      local f = pick(logs())
      local size = math.random(0, #f.data - 1)
      os.execute("truncate -s " .. size .. " " .. h.q(sdir .. "/" .. f.rel))
      local boundary = size == 16
      for _, rec in ipairs(f.recs) do
        if rec.stop == size then boundary = true end
      end
      return { what = string.format("cut %s to %d bytes", f.rel, size),
               file = f, kind = "log", boundary = boundary }
    elseif r <= 55 then                                     -- zeroed page
      local f = pick(logs())
      local page = math.random(0, math.floor((#f.data - 1) / 4096))
      local from = page * 4096
      local n = math.min(4096, #f.data - from)
      overwrite(sdir .. "/" .. f.rel, from, ("\0"):rep(n))
      return { what = string.format("zero bytes %d..%d of %s", from, from + n - 1, f.rel),
               file = f, kind = "log" }
    elseif r <= 70 then                                     -- length field
      local f = pick(logs())
      local rec = pick(f.recs)
      local len = rec.stop - rec.first - 4
      local choices = {
        math.random(0, 4294967295), len + math.random(1, 8),
        math.max(0, len - math.random(1, 8)), #f.data * 2, 5000000, 0, 31,
        64 * 1024 * 1024 + 1, len + 4096,
      }
      local v = pick(choices)
      overwrite(sdir .. "/" .. f.rel, rec.first, u32s(v))
      return { what = string.format("length of the record at byte %d of %s: %d -> %d",
                                    rec.first, f.rel, len, v),
               file = f, kind = "log" }
    elseif r <= 78 then                                     -- missing segment
      -- a middle one: the first may go by retention, and nothing records
      -- where the last one ends
      local f = pick(logs(function(x)
        return x.base > 0 and x.base < active[x.p]
      end))
      os.remove(sdir .. "/" .. f.rel)
      if math.random(2) == 1 then
        os.remove(sdir .. "/" .. f.rel:gsub("%.log$", ".index"))
      end
      return { what = "delete " .. f.rel, file = f, kind = "log" }
    elseif r <= 90 then                                     -- index
      local idx = {}
      for _, f in ipairs(files) do
        if f.ext == "index" and #f.data > 0 then idx[#idx + 1] = f end
      end
      local f = pick(idx)
      local path = sdir .. "/" .. f.rel
      local how = math.random(5)
      if how == 1 then
        local pos = math.random(0, #f.data - 1)
        overwrite(path, pos, string.char(bit.bxor(f.data:byte(pos + 1), math.random(1, 255))))
      elseif how == 2 then
        os.execute("truncate -s " .. math.random(0, #f.data - 1) .. " " .. h.q(path))
      elseif how == 3 then
        local e = math.random(0, #f.data / 8 - 1)
        overwrite(path, e * 8, u32s(math.random(0, 400)) .. u32s(math.random(0, 6000)))
      elseif how == 4 then
        local g = {}
        for i = 1, 8 * math.random(1, 4) do g[i] = string.char(math.random(0, 255)) end
        overwrite(path, #f.data, table.concat(g))
      else
        os.remove(path)
      end
      return { what = string.format("index %s, damage %d", f.rel, how), file = f,
               kind = "index" }
    else                                                    -- stream.conf
      local path = sdir .. "/stream.conf"
      local conf = assert(h.read_file(path))
      local how = math.random(3)
      if how == 1 then
        local pos = math.random(0, #conf - 1)
        overwrite(path, pos, string.char(bit.bxor(conf:byte(pos + 1), math.random(1, 255))))
      elseif how == 2 then
        os.execute("truncate -s " .. math.random(0, #conf - 1) .. " " .. h.q(path))
      else
        local n = pick({ 0, 1, 3, 9, 4097 })
        h.write_file(path, (conf:gsub("partitions=%d+", "partitions=" .. n)))
      end
      return { what = "stream.conf damage " .. how, kind = "conf" }
    end
  end

  -- Checks one read; returns nil or what is wrong.
  local function check(d, r)
    if r.code == 124 then return "hang (timeout)" end
    if r.code >= 128 or r.err:match("Sanitizer") then return "crash" end
    -- never a record that was not written; per partition in order
    local got, last = {}, {}
    for p = 0, NPART - 1 do got[p], last[p] = 0, -1 end
    for line in r.out:gmatch("([^\n]*)\n") do
      local p, o, v = line:match("^(%d+) (%d+) (.*)$")
      p, o = tonumber(p), tonumber(o)
      if not p or not want[p] or want[p][o] ~= v then
        return "a record that was not written: " .. line
      end
      if o <= last[p] then return "offset " .. o .. " after " .. last[p] end
      last[p] = o
      got[p] = got[p] + 1
    end
    if r.code ~= 0 then
      if r.code ~= 1 then return "exit " .. r.code end
      local l = h.lines(r.err)[#h.lines(r.err)] or ""
      if d.kind == "conf" and l:match("stream%.conf") then return nil end
      if l:match("/%d+/%d+%.log") and (l:match("byte %d+") or l:match("expected offset %d+")) then
        return nil
      end
      return "failed without naming the file and byte"
    end
    -- exit 0: exactly what was written, less a torn tail cut with a line
    for p = 0, NPART - 1 do
      local n = RUNS * PER_RUN
      if last[p] ~= got[p] - 1 then return "partition " .. p .. " skipped records" end
      if got[p] < n then
        if not (d.file and d.file.p == p and d.file.base == active[p]) then
          return "partition " .. p .. ": " .. got[p] .. " of " .. n .. " records"
        end
        if got[p] < active[p] then return "records lost before the active segment" end
        local said = false
        for line in r.err:gmatch("[^\n]+") do
          if line:match("partition " .. p .. "%f[%D]") and
             (line:match("cut a torn tail") or line:match("made again, empty")) then
            said = true
          end
        end
        if not said and not d.boundary then
          return "partition " .. p .. " lost its tail without a word"
        end
      end
    end
    if d.kind ~= "log" and r.err ~= "" then return "stderr: " .. r.err end
    return nil
  end

  it("are each repaired with a line, reported with file and byte, or harmless", function()
    local stats = { repaired = 0, reported = 0, harmless = 0, boundary = 0 }
    local timeout = "timeout 20 "
    for trial = 1, TRIALS do
      os.execute("rm -rf " .. h.q(work) .. " && cp -a " .. h.q(tpl .. "/tpl") .. " " .. h.q(work))
      local d = damage()
      local r = h.run(timeout .. h.q(h.bin) .. " consume s -e -f " .. h.q(FMT)
                      .. " --data-dir " .. h.q(work))
      local wrong = check(d, r)
      if not wrong and d.kind == "index" and r.code == 0 then
        -- the index is a hint: a read from the middle finds its records
        local p, from = d.file.p, d.file.base + math.random(0, PER_RUN - 1)
        local m = h.run(timeout .. h.q(h.bin) .. " consume s -e -p " .. p .. " -o " .. from
                        .. " -f " .. h.q(FMT) .. " --data-dir " .. h.q(work))
        local exp = {}
        for o = from, RUNS * PER_RUN - 1 do exp[#exp + 1] = p .. " " .. o .. " " .. want[p][o] end
        if m.code ~= 0 or m.out ~= table.concat(exp, "\n") .. "\n" then
          wrong = "read from offset " .. from .. " of partition " .. p
                  .. " gave exit " .. tostring(m.code) .. ": " .. m.err
        end
      end
      if wrong then
        error(string.format("damage %d (seed %d; TIDE_SEED=%d repeats it): %s\n"
                            .. "  -> %s\n  exit %s, stderr:\n%s", trial, seed, seed,
                            d.what, wrong, tostring(r.code), r.err), 0)
      end
      if r.code ~= 0 then
        stats.reported = stats.reported + 1
      elseif r.err:match("cut a torn tail") or r.err:match("made again") then
        stats.repaired = stats.repaired + 1
      elseif d.boundary and d.file.base == active[d.file.p] then
        stats.boundary = stats.boundary + 1
      else
        stats.harmless = stats.harmless + 1
      end
    end
    print(string.format("\n%d damages (seed %d): %d reported, %d repaired as torn tails, "
                        .. "%d harmless, %d active segments ending at a record boundary",
                        TRIALS, seed, stats.reported, stats.repaired, stats.harmless,
                        stats.boundary))
  end)
end)
