-- bench-klast: the restore job of bench/bench_kafka.lua. Keeps each key's
-- last value (about 100 bytes) in store `last` (RocksDB, changelog topic
-- <name>-last-changelog); sends nothing. Run once over an input of
-- distinct keys, it fills the changelog with one record a key; run again
-- on an empty data dir, it rebuilds the store from that changelog, which
-- is what the bench times. The bench names the job and its input with -c
-- name= and inputs.1=.
return {
    name = "bench-klast",
    inputs = { "kafka:bench-klast-in" },
    serde = "string",
    stores = { last = {} },

    process = function(msg, ctx)
        ctx.stores.last:put(msg.key, msg.value)
    end,
}
