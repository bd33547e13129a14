-- bench-json: the JSON job of bench/bench_job.lua. Values are decoded
-- (json serde) before process() and encoded again by ctx:send.
return {
    name = "bench-json",
    inputs = { "bench-json-in" },
    outputs = { "bench-json-out" },
    serde = "json",

    process = function(msg, ctx)
        ctx:send("bench-json-out", msg.key, msg.value)
    end,
}
