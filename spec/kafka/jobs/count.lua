-- count: the counting job of spec/kafka/run_spec.lua. Reads a kafka:
-- topic of keyed records (string serde), counts them per key in store
-- "counts" (its changelog: topic <job>-counts-changelog) and sends each
-- key's new count to output config.out. The spec names the topics and
-- the job with -c name=... -c inputs.1=kafka:... -c outputs.1=kafka:...
-- -c config.out=kafka:... so that each test has its own.
return {
    name = "kafka-count",
    inputs = { "kafka:count-in" },
    outputs = { "kafka:count-out" },
    stores = { counts = {} },
    serde = "string",
    commit_interval = "200ms",
    config = { out = "kafka:count-out" },
    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        ctx:send(ctx.config.out, msg.key, tostring(n))
    end,
}
