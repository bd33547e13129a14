-- count_echo: the counting job of the container specs
-- (spec/cli/container_spec.lua). Reads "events" (string serde, keyed);
-- counts messages per key in store "counts" and sends "VALUE COUNT" (the
-- input's value, the key's new count) to "echo-out" for each message, so
-- that every input has its own output and each output says what the
-- state was.
return {
    name = "count-echo",
    inputs = { "events" },
    outputs = { "echo-out" },
    stores = { counts = {} },
    serde = "string",
    commit_interval = "100ms",
    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        ctx:send("echo-out", msg.key, msg.value .. " " .. n)
    end,
}
