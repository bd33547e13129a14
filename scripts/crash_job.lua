-- crashloop: the job that scripts/crash_loop.lua kills over and over.
-- Reads "events" (keyed, string serde); counts messages per key in two
-- stores, "counts" (RocksDB with a tiny write cache, so that write-outs
-- happen between commits) and "mem" (memory, rebuilt from its changelog
-- at every start); sends the key's new count to "counts-out". Both counts
-- must agree: a message that finds them apart stops the job.
return {
    name = "crashloop",
    inputs = { "events" },
    outputs = { "counts-out" },
    stores = { counts = { cache_entries = 300 }, mem = { engine = "memory" } },
    serde = "string",
    commit_interval = "50ms",
    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        local m = ctx.stores.mem:incr(msg.key, 1)
        if n ~= m then
            error(string.format("key %s: counts %d in RocksDB, %d in memory",
                                msg.key, n, m))
        end
        ctx:send("counts-out", msg.key, n)
    end,
}
