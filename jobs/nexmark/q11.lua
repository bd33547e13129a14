-- Nexmark q11, user sessions: per bidder, sessions of bids less than 10 s
-- apart (event time), and the number of bids in each.
-- Reads:  bids (JSON, key: bidder). Writes: nexmark-q11 (key: bidder,
-- value: { start, end = last bid + 1, value = bids }). Stores: the
-- window "sessions".
local windows = require("tide.windows")

local sessions = windows.new("sessions", {
  shape = windows.session("10s"),
  agg = windows.agg.count,
  output = "nexmark-q11",
})

return {
  name = "nexmark-q11",
  inputs = { "bids" },
  outputs = { "nexmark-q11" },
  serde = "json",
  timestamp = function(msg) return msg.value.dateTime end,
  max_out_of_orderness = "2s",
  stores = windows.stores(sessions),
  process = function(msg, ctx) sessions:add(msg, ctx) end,
  on_timer = windows.timers(sessions),
}
