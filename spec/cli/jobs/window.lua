-- window: a job for the `tide run` specs of window(). Passes each message
-- of "in" to "out" as "msg:<value>" (same key) and, every 50 ms, sends one
-- unkeyed marker "window:<task partition>" per task from window().
return {
    name = "window",
    inputs = { "in" },
    outputs = { "out" },
    window_interval = "50ms",
    commit_interval = "100ms",
    process = function(msg, ctx)
        ctx:send("out", msg.key, "msg:" .. msg.value)
    end,
    window = function(ctx)
        ctx:send("out", nil, "window:" .. ctx.partition)
    end,
}
