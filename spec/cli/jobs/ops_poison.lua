-- ops_poison: a counting job that fails on a poison message, for the
-- offsets reset specs (spec/cli/ops_spec.lua). Reads "events" (string
-- serde, keyed "key:value"); a value "POISON" raises, and on_error =
-- "fail" stops the job there. Every other message adds 1 to its key in
-- store "counts" and is sent on to "seen".
return {
    name = "ops_poison",
    inputs = { "events" },
    outputs = { "seen" },
    stores = { counts = {} },
    serde = "string",
    on_error = "fail",
    commit_interval = "50ms",
    process = function(msg, ctx)
        if msg.value == "POISON" then
            error("poison message")
        end
        ctx.stores.counts:incr(msg.key, 1)
        ctx:send("seen", msg.key, msg.value)
    end,
}
