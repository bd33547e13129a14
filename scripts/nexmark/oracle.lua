-- Nexmark oracle (plain luajit + cjson; no tide code): computes what each
-- query must output from the generated files, for every window (all of
-- them close under `tide run --drain --final`).
-- Usage: luajit scripts/nexmark/oracle.lua DIR
-- Reads DIR/persons.tsv, auctions.tsv, bids.tsv (scripts/nexmark/gen.lua);
-- writes DIR/expected/q1.txt ... q11.txt, one result a line, in the
-- canonical form that scripts/nexmark/compare.lua gives the job outputs:
--   q1  auction bidder euro-price dateTime
--   q2  auction price
--   q3  auction-id name|city|state
--   q5  start end count auction,auction...
--   q7  start end price auction/bidder/dateTime,...
--   q8  starttime person-id name
--   q11 bidder start end bids
local cjson = require("cjson")
local floor, fmt, sort, concat = math.floor, string.format, table.sort,
    table.concat

local dir = assert(arg[1], "usage: oracle.lua DIR")

local function load(name)
  local t = {}
  for line in io.lines(dir .. "/" .. name .. ".tsv") do
    local json = line:match("^[^\t]*\t(.*)$")
    t[#t + 1] = cjson.decode(json)
  end
  return t
end
local persons, auctions, bids = load("persons"), load("auctions"),
    load("bids")

local out = {}
local function put(q, line)
  out[q] = out[q] or {}
  out[q][#out[q] + 1] = line
end

-- q1, q2
for _, b in ipairs(bids) do
  put("q1", fmt("%d %d %d %d", b.auction, b.bidder,
                floor(b.price * 0.908 + 1e-9), b.dateTime))
  if b.auction % 123 == 0 then
    put("q2", fmt("%d %d", b.auction, b.price))
  end
end

-- q3: every category-10 auction whose seller is in OR, ID or CA
local by_id = {}
for _, p in ipairs(persons) do by_id[p.id] = p end
for _, a in ipairs(auctions) do
  local p = by_id[a.seller]
  if a.category == 10 and p and (p.state == "OR" or p.state == "ID"
                                 or p.state == "CA") then
    put("q3", fmt("%d %s|%s|%s", a.id, p.name, p.city, p.state))
  end
end

-- q5: hopping windows [s, s + 10000), s a multiple of 2000
local counts = {}            -- [start][auction] = bids
for _, b in ipairs(bids) do
  local t = b.dateTime
  local s = t - t % 2000
  while s > t - 10000 do
    counts[s] = counts[s] or {}
    counts[s][b.auction] = (counts[s][b.auction] or 0) + 1
    s = s - 2000
  end
end
for s, per in pairs(counts) do
  local best, ids = 0, {}
  for a, n in pairs(per) do
    if n > best then best, ids = n, { a } elseif n == best then
      ids[#ids + 1] = a end
  end
  sort(ids)
  put("q5", fmt("%d %d %d %s", s, s + 10000, best, concat(ids, ",")))
end

-- q7: tumbling windows of 10 s, the highest price and its bids
local high = {}
for _, b in ipairs(bids) do
  local s = b.dateTime - b.dateTime % 10000
  local h = high[s]
  if not h or b.price > h.price then
    high[s] = { price = b.price, bids = { b } }
  elseif b.price == h.price then
    h.bids[#h.bids + 1] = b
  end
end
for s, h in pairs(high) do
  local l = {}
  for _, b in ipairs(h.bids) do
    l[#l + 1] = fmt("%d/%d/%d", b.auction, b.bidder, b.dateTime)
  end
  sort(l)
  put("q7", fmt("%d %d %d %s", s, s + 10000, h.price, concat(l, ",")))
end

-- q8: a person and one of their auctions in the same 10 s window
local opened = {}            -- [seller .. " " .. start] = true
for _, a in ipairs(auctions) do
  opened[a.seller .. " " .. (a.dateTime - a.dateTime % 10000)] = true
end
for _, p in ipairs(persons) do
  local s = p.dateTime - p.dateTime % 10000
  if opened[p.id .. " " .. s] then
    put("q8", fmt("%d %d %s", s, p.id, p.name))
  end
end

-- q11: per bidder, bids less than 10 s apart make one session
local times = {}
for _, b in ipairs(bids) do
  times[b.bidder] = times[b.bidder] or {}
  local l = times[b.bidder]
  l[#l + 1] = b.dateTime
end
for bidder, l in pairs(times) do
  sort(l)
  local first, last, n = l[1], l[1], 1
  for i = 2, #l + 1 do
    local t = l[i]
    if t and t - last < 10000 then
      last, n = t, n + 1
    else
      put("q11", fmt("%d %d %d %d", bidder, first, last + 1, n))
      if t then first, last, n = t, t, 1 end
    end
  end
end

os.execute("mkdir -p '" .. dir .. "/expected'")
for _, q in ipairs({ "q1", "q2", "q3", "q5", "q7", "q8", "q11" }) do
  local l = out[q] or {}
  sort(l)
  local f = assert(io.open(dir .. "/expected/" .. q .. ".txt", "wb"))
  if #l > 0 then f:write(concat(l, "\n"), "\n") end
  f:close()
end
