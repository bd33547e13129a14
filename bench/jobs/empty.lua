-- bench-empty: a pass-through job over an empty stream, to time what a
-- `tide run --drain` costs with no messages (start, open, commit, exit).
return {
    name = "bench-empty",
    inputs = { "bench-empty-in" },
    outputs = { "bench-empty-out" },
    serde = "string",

    process = function(msg, ctx)
        ctx:send("bench-empty-out", msg.key, msg.value)
    end,
}
