-- Nexmark q8, monitor new users: the persons who opened an auction in the
-- same tumbling 10 s window (event time) in which they registered.
-- Reads:  persons (JSON, key: id) and auctions (JSON, key: seller), both
--         keyed by the person id: a window per person id holds both sides.
-- Writes: nexmark-q8 (key: person id, value: { id, name, starttime }).
-- Stores: the window "joined" (per person id and window: the person's
--         name when registered in it, and its number of auctions).
local windows = require("tide.windows")

local joined = windows.new("joined", {
  shape = windows.tumbling("10s"),
  value = function(msg)
    if msg.stream == "persons" then return msg.value.name end
    return false
  end,
  agg = {
    init = function() return { name = false, auctions = 0 } end,
    add = function(acc, name)
      if name then
        acc.name = name
      else
        acc.auctions = acc.auctions + 1
      end
      return acc
    end,
  },
  on_result = function(ctx, key, win, acc)
    if acc.name and acc.auctions > 0 then
      ctx:send("nexmark-q8", key, { id = tonumber(key), name = acc.name,
                                    starttime = win.start })
    end
  end,
})

return {
  name = "nexmark-q8",
  inputs = { "persons", "auctions" },
  outputs = { "nexmark-q8" },
  serde = "json",
  timestamp = function(msg) return msg.value.dateTime end,
  max_out_of_orderness = "2s",
  stores = windows.stores(joined),
  process = function(msg, ctx) joined:add(msg, ctx) end,
  on_timer = windows.timers(joined),
}
