-- Nexmark q3, local item suggestion: the auctions of category 10 whose
-- seller lives in OR, ID or CA, with the seller's name, city and state.
-- An unwindowed stream-stream join, whichever side comes first.
-- Reads:  persons (JSON, key: id) and auctions (JSON, key: seller): both
--         keyed by the person id, so a task sees both sides of a seller.
-- Writes: nexmark-q3 (key: seller, value: { name, city, state, id }).
-- Stores: persons (id -> { name, city, state }, or false for a person of
--         another state), waiting (seller .. "\0" .. auction id -> true:
--         category-10 auctions whose seller has not come yet).
local WANT = { OR = true, ID = true, CA = true }

local function emit(ctx, seller, p, auction)
  ctx:send("nexmark-q3", seller, { name = p.name, city = p.city,
                                   state = p.state, id = auction })
end

return {
  name = "nexmark-q3",
  inputs = { "persons", "auctions" },
  outputs = { "nexmark-q3" },
  serde = "json",
  stores = { persons = {}, waiting = {} },
  process = function(msg, ctx)
    local persons, waiting = ctx.stores.persons, ctx.stores.waiting
    local v = msg.value
    if msg.stream == "persons" then
      local p = false
      if WANT[v.state] then
        p = { name = v.name, city = v.city, state = v.state }
      end
      persons:put(msg.key, p)
      local from = msg.key .. "\0"
      local ids = {}
      for k in waiting:range(from, msg.key .. "\1") do
        ids[#ids + 1] = k
      end
      for _, k in ipairs(ids) do
        if p then emit(ctx, msg.key, p, tonumber(k:sub(#from + 1))) end
        waiting:delete(k)
      end
    elseif v.category == 10 then
      local p = persons:get(msg.key)
      if p then
        emit(ctx, msg.key, p, v.id)
      elseif p == nil then
        waiting:put(msg.key .. "\0" .. v.id, true)
      end
    end
  end,
}
