-- reload_counter: the template of the hot reload specs
-- (spec/cli/reload_spec.lua copies it to a scratch folder and edits TAG
-- and the code). Counts messages per key in store "counts" and sends
-- "TAG:OFFSET:COUNT" (the input offset, the key's new count) for each.
local TAG = "t01"
return {
    name = "reload_counter",
    inputs = { "events" },
    outputs = { "tagged" },
    stores = { counts = {} },
    serde = "string",
    commit_interval = "100ms",
    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        ctx:send("tagged", msg.key,
                 TAG .. ":" .. string.format("%.0f", msg.offset) .. ":" .. n)
    end,
}
