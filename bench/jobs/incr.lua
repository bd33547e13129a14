-- bench-incr: the keyed counting job of bench/bench_state.lua. Every
-- message adds one to its key's counter in store `counts` (RocksDB behind
-- the write cache, changelogged); nothing is sent.
return {
    name = "bench-incr",
    inputs = { "bench-incr-in" },
    serde = "string",
    stores = { counts = {} },

    process = function(msg, ctx)
        ctx.stores.counts:incr(msg.key, 1)
    end,
}
