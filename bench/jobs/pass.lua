-- bench-pass: the pass-through job of bench/bench_job.lua. Every message
-- goes out unchanged, with the string serde on both sides.
return {
    name = "bench-pass",
    inputs = { "bench-pass-in" },
    outputs = { "bench-pass-out" },
    serde = "string",

    process = function(msg, ctx)
        ctx:send("bench-pass-out", msg.key, msg.value)
    end,
}
