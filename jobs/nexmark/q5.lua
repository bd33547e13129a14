-- Nexmark q5, hot items: in hopping windows of 10 s every 2 s (event
-- time), the auctions with the most bids.
-- Reads:  bids-all (JSON, all bids in one partition: the maximum is over
--         every auction, so one task sees them all; see docs/nexmark.md).
-- Writes: nexmark-q5 (key: "all", value: { start, end, value = { count,
--         auctions = the ids with that count, ascending } }).
-- Stores: the window "hot": per window, the bids of each auction in it
--         (one accumulator per window rather than one window per auction:
--         a window per auction and its timer cost ten times as much, see
--         docs/nexmark.md).
local windows = require("tide.windows")

local hot = windows.new("hot", {
  shape = windows.hopping("10s", "2s"),
  key = function() return "all" end,
  value = function(msg) return msg.value.auction end,
  agg = {
    init = function() return {} end,
    add = function(acc, auction)
      local k = tostring(auction)
      acc[k] = (acc[k] or 0) + 1
      return acc
    end,
    result = function(acc)
      local best, ids = 0, {}
      for k, n in pairs(acc) do
        if n > best then
          best, ids = n, { tonumber(k) }
        elseif n == best then
          ids[#ids + 1] = tonumber(k)
        end
      end
      table.sort(ids)
      return { count = best, auctions = ids }
    end,
  },
  output = "nexmark-q5",
})

return {
  name = "nexmark-q5",
  inputs = { "bids-all" },
  outputs = { "nexmark-q5" },
  serde = "json",
  timestamp = function(msg) return msg.value.dateTime end,
  max_out_of_orderness = "2s",
  stores = windows.stores(hot),
  process = function(msg, ctx) hot:add(msg, ctx) end,
  on_timer = windows.timers(hot),
}
