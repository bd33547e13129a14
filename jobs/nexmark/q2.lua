-- Nexmark q2, selection: the bids on auctions whose id is a multiple of
-- 123. Reads: bids (JSON, key: bidder). Writes: nexmark-q2 (key: auction,
-- value: { auction, price }). Stores: none.
return {
  name = "nexmark-q2",
  inputs = { "bids" },
  outputs = { "nexmark-q2" },
  serde = "json",
  process = function(msg, ctx)
    local b = msg.value
    if b.auction % 123 == 0 then
      ctx:send("nexmark-q2", tostring(b.auction),
               { auction = b.auction, price = b.price })
    end
  end,
}
