-- bench-kpass: the kafka -> kafka pass-through of bench/bench_kafka.lua.
-- Reads kafka:bench-kpass-in and sends every message's key and value
-- unchanged, string serde on both sides, to config.out. No stores. The
-- bench names a fresh job (so group), input and output each run with -c
-- name=, inputs.1=, outputs.1= and config.out=.
return {
    name = "bench-kpass",
    inputs = { "kafka:bench-kpass-in" },
    outputs = { "kafka:bench-kpass-out" },
    serde = "string",
    config = { out = "kafka:bench-kpass-out" },

    process = function(msg, ctx)
        ctx:send(ctx.config.out, msg.key, msg.value)
    end,
}
