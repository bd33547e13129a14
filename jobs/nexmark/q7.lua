-- Nexmark q7, highest bid: in tumbling windows of 10 s (event time), the
-- bid(s) with the highest price.
-- Reads:  bids-all (JSON, all bids in one partition: the maximum is over
--         every bid; see docs/nexmark.md).
-- Writes: nexmark-q7 (key: "all", value: { start, end, value = { price,
--         bids = [{ auction, bidder, dateTime }] sorted } }).
-- Stores: the window "highest".
local windows = require("tide.windows")

local function before(x, y)
  if x.auction ~= y.auction then return x.auction < y.auction end
  if x.bidder ~= y.bidder then return x.bidder < y.bidder end
  return x.dateTime < y.dateTime
end

local highest = windows.new("highest", {
  shape = windows.tumbling("10s"),
  key = function() return "all" end,
  value = function(msg) return msg.value end,
  agg = {
    init = function() return { price = -1, bids = {} } end,
    add = function(acc, b)
      local one = { auction = b.auction, bidder = b.bidder,
                    dateTime = b.dateTime }
      if b.price > acc.price then
        acc.price, acc.bids = b.price, { one }
      elseif b.price == acc.price then
        acc.bids[#acc.bids + 1] = one
      end
      return acc
    end,
    result = function(acc)
      table.sort(acc.bids, before)
      return acc
    end,
  },
  output = "nexmark-q7",
})

return {
  name = "nexmark-q7",
  inputs = { "bids-all" },
  outputs = { "nexmark-q7" },
  serde = "json",
  timestamp = function(msg) return msg.value.dateTime end,
  max_out_of_orderness = "2s",
  stores = windows.stores(highest),
  process = function(msg, ctx) highest:add(msg, ctx) end,
  on_timer = windows.timers(highest),
}
