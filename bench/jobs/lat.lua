-- bench-lat: the pass-through job of bench/bench_latency.c. Every message
-- goes out unchanged (its value carries its send time), string serde on
-- both sides, so that the bench measures the container, not a codec.
return {
    name = "bench-lat",
    inputs = { "bench-lat-in" },
    outputs = { "bench-lat-out" },
    serde = "string",

    process = function(msg, ctx)
        ctx:send("bench-lat-out", msg.key, msg.value)
    end,
}
