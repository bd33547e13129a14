-- Compares a query's output with the oracle's (plain luajit + cjson).
-- Usage: luajit scripts/nexmark/compare.lua QUERY EXPECTED ACTUAL MODE
--        [BEFORE: how many of ACTUAL the killed runs emitted, to print]
-- ACTUAL holds `tide consume nexmark-QUERY -e -f '%k\t%s\n'`; each record
-- is put in the canonical form of scripts/nexmark/oracle.lua. MODE:
--   exact     the two are equal as multisets (each result once);
--   atleast   after crashes (outputs are at least once): every expected
--             result came at least as many times as expected, and nothing
--             else came, so every emission of a window has its exact value.
-- Prints "q7: 1234 windows, match" and exits 0, or says what differs and
-- exits 1.
local cjson = require("cjson")
local fmt, concat = string.format, table.concat

local q, efile, afile, mode = arg[1], arg[2], arg[3], arg[4] or "exact"
local before = tonumber(arg[5])     -- emitted by the killed runs (crash)
local UNIT = { q1 = "bids", q2 = "bids", q3 = "joined auctions",
               q5 = "windows", q7 = "windows", q8 = "person windows",
               q11 = "sessions" }

local function ids(list, f)
  local t = {}
  for i, x in ipairs(list) do t[i] = f(x) end
  return concat(t, ",")
end

local CANON = {
  q1 = function(_, v) return fmt("%d %d %d %d", v.auction, v.bidder,
                                 v.price, v.dateTime) end,
  q2 = function(_, v) return fmt("%d %d", v.auction, v.price) end,
  q3 = function(_, v) return fmt("%d %s|%s|%s", v.id, v.name, v.city,
                                 v.state) end,
  q5 = function(_, v) return fmt("%d %d %d %s", v.start, v["end"],
                                 v.value.count,
                                 ids(v.value.auctions, tostring)) end,
  q7 = function(_, v)
    return fmt("%d %d %d %s", v.start, v["end"], v.value.price,
               ids(v.value.bids, function(b)
                 return fmt("%d/%d/%d", b.auction, b.bidder, b.dateTime)
               end))
  end,
  q8 = function(_, v) return fmt("%d %d %s", v.starttime, v.id, v.name) end,
  q11 = function(k, v) return fmt("%s %d %d %d", k, v.start, v["end"],
                                  v.value) end,
}

local function count(lines)
  local c, n = {}, 0
  for _, l in ipairs(lines) do c[l] = (c[l] or 0) + 1 n = n + 1 end
  return c, n
end

local exp = {}
for l in io.lines(efile) do exp[#exp + 1] = l end
local act = {}
for l in io.lines(afile) do
  local k, v = l:match("^([^\t]*)\t(.*)$")
  act[#act + 1] = CANON[q](k, cjson.decode(v))
end
local ec, en = count(exp)
local ac, an = count(act)

local missing, extra, short = {}, {}, {}
for l, n in pairs(ec) do
  local got = ac[l] or 0
  if got == 0 then missing[#missing + 1] = l
  elseif got < n or (mode == "exact" and got ~= n) then
    short[#short + 1] = fmt("%s (came %d times, want %d)", l, got, n)
  end
end
for l in pairs(ac) do
  if not ec[l] then extra[#extra + 1] = l end
end
table.sort(missing) table.sort(extra) table.sort(short)

if #missing + #extra + #short == 0 and en > 0 then
  local notes = {}
  if an ~= en then notes[#notes + 1] = fmt("%d emissions", an) end
  if before then
    notes[#notes + 1] = fmt("%d before the final run", before)
  end
  print(fmt("%s: %d %s, match%s", q, en, UNIT[q],
            #notes > 0 and " (" .. concat(notes, ", ") .. ")" or ""))
  os.exit(0)
end
local function some(t)
  local s = {}
  for i = 1, math.min(3, #t) do s[i] = t[i] end
  return concat(s, "; ")
end
print(fmt("%s: MISMATCH: %d expected, %d emitted; %d missing%s; %d "
          .. "unexpected (a wrong value, or nothing expected)%s; %d with "
          .. "the wrong number of copies%s", q, en, an, #missing,
          #missing > 0 and " e.g. " .. some(missing) or "", #extra,
          #extra > 0 and " e.g. " .. some(extra) or "", #short,
          #short > 0 and " e.g. " .. some(short) or ""))
os.exit(1)
