-- repl_count: the counting job of the attach specs
-- (spec/cli/repl_attach_spec.lua). Reads "events" (string serde, keyed);
-- counts messages per key in store "counts" and sends "VALUE COUNT" (the
-- input's value, the key's new count) to "echo-out" for each message, so
-- that every input has its own output and each output says what the
-- state was. max_process_time is short so that a runaway evaluation is
-- stopped after half of it (2 s), not after the default 5 s.
return {
    name = "repl-count",
    inputs = { "events" },
    outputs = { "echo-out" },
    stores = { counts = {} },
    serde = "string",
    commit_interval = "100ms",
    max_process_time = "4s",
    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        ctx:send("echo-out", msg.key, msg.value .. " " .. n)
    end,
}
