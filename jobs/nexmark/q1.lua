-- Nexmark q1, currency conversion: every bid with its price in euros
-- (floor(price * 0.908), cents).
-- Reads:  bids (JSON, key: bidder). Writes: nexmark-q1 (key: bidder,
-- value: { auction, bidder, price, dateTime }). Stores: none.
local floor = math.floor
return {
  name = "nexmark-q1",
  inputs = { "bids" },
  outputs = { "nexmark-q1" },
  serde = "json",
  process = function(msg, ctx)
    local b = msg.value
    ctx:send("nexmark-q1", msg.key, { auction = b.auction, bidder = b.bidder,
             price = floor(b.price * 908 / 1000), dateTime = b.dateTime })
  end,
}
