-- reload_memo: the template of the ctx.memo / on_reload spec
-- (spec/cli/reload_spec.lua copies it and edits TAG). Counts messages per
-- task in ctx.memo and sends "p TASK TAG VERSION MEMO_COUNT"; on_reload
-- sends "r TASK OLD_VERSION VERSION".
local TAG = "m1"
return {
    name = "reload_memo",
    inputs = { "events" },
    outputs = { "memo-out" },
    serde = "string",
    commit_interval = "50ms",
    process = function(msg, ctx)
        ctx.memo.n = (ctx.memo.n or 0) + 1
        ctx:send("memo-out", msg.key, string.format("p %d %s %s %d",
                 ctx.partition, TAG, ctx.version, ctx.memo.n))
    end,
    on_reload = function(ctx, old)
        ctx:send("memo-out", "marker", string.format("r %d %s %s",
                 ctx.partition, tostring(old), ctx.version))
    end,
}
