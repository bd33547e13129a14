-- Nexmark event generator (plain luajit + cjson; no tide modules).
-- Usage: luajit scripts/nexmark/gen.lua OUTDIR [EVENTS [SEED [RATE
--        [DISORDER_MS [DISORDER_SHARE]]]]]
-- Writes OUTDIR/persons.tsv, auctions.tsv and bids.tsv, one event a line
-- as "key<TAB>json" (for `tide produce STREAM -K "<TAB>"`), with Nexmark's
-- field names. Event i (from 0) is a person when i % 50 == 0, an auction
-- when i % 50 is 1..3, else a bid (1 : 3 : 46). Its nominal time is
-- 1700000000000 + floor(i * 1000 / RATE) ms; a share DISORDER_SHARE of
-- events has its dateTime moved back by 1..DISORDER_MS ms (out of order).
-- Keys: persons by id, auctions by seller, bids by bidder (docs/nexmark.md).
local cjson = require("cjson")

local out = assert(arg[1], "usage: gen.lua OUTDIR [EVENTS [SEED [RATE "
                   .. "[DISORDER_MS [DISORDER_SHARE]]]]]")
local EVENTS = tonumber(arg[2] or 50000)
local SEED = tonumber(arg[3] or 42)
local RATE = tonumber(arg[4] or 200)
local BOUND = tonumber(arg[5] or 2000)
local SHARE = tonumber(arg[6] or 0.1)
local T0 = 1700000000000

math.randomseed(SEED)
local random, floor, fmt = math.random, math.floor, string.format
local enc = cjson.encode

local FIRST = { "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate",
                "Julie", "Sarah", "Deiter", "Walter" }
local LAST = { "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton",
               "Smith", "Jones", "Noris" }
local STATES = { "AZ", "CA", "ID", "OR", "WA", "WY" }
local CITIES = { "Phoenix", "Los Angeles", "San Francisco", "Boise",
                 "Portland", "Bend", "Redmond", "Seattle", "Kent",
                 "Cheyenne" }
local CHANNELS = { "Google", "Facebook", "Baidu", "Apple" }

local function pick(t) return t[random(#t)] end

local function str(n)
  local c = {}
  for i = 1, n do c[i] = string.char(96 + random(26)) end
  return table.concat(c)
end

-- Nexmark's price: round(10^(U*6) * 100) cents.
local function price()
  return floor(10 ^ (random() * 6) * 100 + 0.5)
end

local function open(name)
  return assert(io.open(out .. "/" .. name .. ".tsv", "wb"))
end
local fp, fa, fb = open("persons"), open("auctions"), open("bids")

local np, na = 0, 0               -- persons, auctions so far
for i = 0, EVENTS - 1 do
  local t = T0 + floor(i * 1000 / RATE)
  if random() < SHARE then
    t = t - random(BOUND)
  end
  local r = i % 50
  if r == 0 then
    local id = 1000 + np
    np = np + 1
    local name = pick(FIRST) .. " " .. pick(LAST)
    fp:write(id, "\t", fmt('{"id":%d,"name":%s,"emailAddress":%s,'
      .. '"creditCard":"%04d %04d %04d %04d","city":%s,"state":%s,'
      .. '"dateTime":%d}', id, enc(name), enc(str(7) .. "@" .. str(5)
      .. ".com"), random(0, 9999), random(0, 9999), random(0, 9999),
      random(0, 9999), enc(pick(CITIES)), enc(pick(STATES)), t), "\n")
  elseif r <= 3 then
    local id = 1000 + na
    na = na + 1
    -- half the auctions come from one of the 5 newest persons (so that
    -- q8 finds new users), the others from any person so far
    local seller
    if random() < 0.5 then
      seller = 1000 + np - random(math.min(5, np))
    else
      seller = 1000 + random(0, np - 1)
    end
    local initial = price()
    fa:write(seller, "\t", fmt('{"id":%d,"itemName":%s,"description":%s,'
      .. '"initialBid":%d,"reserve":%d,"dateTime":%d,"expires":%d,'
      .. '"seller":%d,"category":%d}', id, enc(str(12)), enc(str(30)),
      initial, initial + price(), t, t + random(10000, 60000), seller,
      10 + random(0, 4)), "\n")
  else
    -- half the bids go to one of the 4 newest auctions (hot items), the
    -- others to any of the 200 newest; half the bidders are among the 10
    -- newest persons
    local auction
    if random() < 0.5 then
      auction = 1000 + na - random(math.min(4, na))
    else
      auction = 1000 + na - random(math.min(200, na))
    end
    local bidder
    if random() < 0.5 then
      bidder = 1000 + np - random(math.min(10, np))
    else
      bidder = 1000 + random(0, np - 1)
    end
    local ch = random(#CHANNELS)
    fb:write(bidder, "\t", fmt('{"auction":%d,"bidder":%d,"price":%d,'
      .. '"channel":"%s","url":"https://www.nexmark.com/%s/%s/item.htm?'
      .. 'query=1&channel_id=%d","dateTime":%d}', auction, bidder, price(),
      CHANNELS[ch], str(5), str(5), ch, t), "\n")
  end
end
fp:close() fa:close() fb:close()
io.stderr:write(fmt("nexmark: %d events (%d persons, %d auctions, %d bids)"
                    .. ", seed %d, %d events/s, disorder %d ms on %g%%\n",
                    EVENTS, np, na, EVENTS - np - na, SEED, RATE, BOUND,
                    SHARE * 100))
