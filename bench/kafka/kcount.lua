-- bench-kcount: the keyed count of bench/bench_kafka.lua, the same job as
-- bench/kafka/.../Count.java (Kafka Streams' groupByKey().count()).
-- Reads kafka:bench-kcount-in, adds one to the message key's count in
-- store `counts` (RocksDB, changelog topic <name>-counts-changelog) and
-- sends the key's new count, as a decimal string, to config.out. The
-- bench names a fresh job (so group and changelog), input and output each
-- run with -c name=, inputs.1=, outputs.1= and config.out=, and the
-- processing guarantee with -c processing=.
return {
    name = "bench-kcount",
    inputs = { "kafka:bench-kcount-in" },
    outputs = { "kafka:bench-kcount-out" },
    serde = "string",
    stores = { counts = {} },
    config = { out = "kafka:bench-kcount-out" },

    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        ctx:send(ctx.config.out, msg.key, tostring(n))
    end,
}
