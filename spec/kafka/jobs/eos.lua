-- eos: the job of spec/kafka/eos_spec.lua. Reads keyed records whose
-- value is the record's number, counts them per key in store "counts"
-- (changelog on Kafka) and sends "<number> <count>" under the key, one
-- output per input, so that a reader can tell a missing or doubled
-- output. Exactly-once unless -c processing=at_least_once.
return {
    name = "kafka-eos",
    inputs = { "kafka:eos-in" },
    outputs = { "kafka:eos-out" },
    stores = { counts = {} },
    serde = "string",
    processing = "exactly_once",
    commit_interval = "300ms",
    config = { out = "kafka:eos-out" },
    process = function(msg, ctx)
        local n = ctx.stores.counts:incr(msg.key, 1)
        ctx:send(ctx.config.out, msg.key, msg.value .. " " .. n)
    end,
}
