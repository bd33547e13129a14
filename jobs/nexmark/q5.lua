-- Nexmark q5, hot items: in hopping windows of 10 s every 2 s (event
-- time), the auctions with the most bids.
-- Reads:  bids-all (JSON, all bids in one partition: the maximum is over
--         every auction, so one task sees them all; see docs/nexmark.md).
-- Writes: nexmark-q5 (key: window start, value: { start, end, count,
--         auctions = the ids with that count, ascending }).
-- Stores: the window "bids" (count per auction and window), best (window
--         start -> { n, a }: the highest count so far and its auctions,
--         filled as each auction's window closes).
-- Timers: the window's, and "hot" .. start at the window's end: once all
--         auction counts of the window (timers at end - 1) are in best.
local windows = require("tide.windows")

local SIZE, ADV = 10000, 2000

local per_auction = windows.new("bids", {
  shape = windows.hopping(SIZE / 1000, ADV / 1000),
  agg = windows.agg.count,
  key = function(msg) return msg.value.auction end,
  on_result = function(ctx, key, win, n)
    local best = ctx.stores.best
    local k = tostring(win.start)
    local b = best:get(k) or { n = 0, a = {} }
    if n > b.n then
      b = { n = n, a = { tonumber(key) } }
    elseif n == b.n then
      b.a[#b.a + 1] = tonumber(key)
    end
    best:put(k, b)
  end,
})

return {
  name = "nexmark-q5",
  inputs = { "bids-all" },
  outputs = { "nexmark-q5" },
  serde = "json",
  timestamp = function(msg) return msg.value.dateTime end,
  max_out_of_orderness = "2s",
  stores = windows.stores(per_auction, { best = { serde = "json" } }),
  process = function(msg, ctx)
    per_auction:add(msg, ctx)
    local t = ctx.event_time
    local s = t - t % ADV
    while s > t - SIZE do
      ctx:timer("hot" .. s, s + SIZE)
      s = s - ADV
    end
  end,
  on_timer = windows.timers(per_auction, function(key, at, ctx)
    local k = key:sub(4)
    local b = ctx.stores.best:get(k)
    if b then
      table.sort(b.a)
      ctx:send("nexmark-q5", k, { start = tonumber(k), ["end"] = at,
                                   count = b.n, auctions = b.a },
               { timestamp = at - 1 })
      ctx.stores.best:delete(k)
    end
  end),
}
