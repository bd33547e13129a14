-- counter: a keyed counting job for the state specs (spec/cli/state_spec.lua).
-- Reads "events" (string serde, keyed); counts messages per key in store
-- "counts" (string serde: the counts are stored as text) and sends the
-- key's new count to "counts-out" after each message, so that the newest
-- record per key in "counts-out" is its count.
return {
    name = "counter",
    inputs = { "events" },
    outputs = { "counts-out" },
    stores = { counts = {} },
    serde = "string",
    commit_interval = "50ms",
    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        ctx:send("counts-out", msg.key, n)
    end,
}
