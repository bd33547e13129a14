-- metered: the job of the /metrics spec (spec/cli/http_spec.lua). Reads
-- "events" (json values, string keys, event time = value.t) and skips
-- what fails (on_error = "skip"): a value that is not JSON fails to
-- decode; { "boom": true } raises in process(). Every other message:
-- its key is read from store "seen" and written there when absent (so
-- each key is written once: RocksDB's key estimate is exact), it is
-- counted in the tumbling 1 s window "w" (a message older than the
-- watermark is late and dropped) and sent on to "echo".
local windows = require("tide.windows")

local w = windows.new("w", { shape = windows.tumbling("1s"),
                             agg = windows.agg.count, late = "drop",
                             output = "counts" })

return {
    name = "metered",
    inputs = { "events" },
    outputs = { "echo", "counts" },
    serde = "json",
    on_error = "skip",
    commit_interval = "100ms",
    timestamp = function(msg) return msg.value.t end,
    stores = windows.stores(w, { seen = {} }),
    process = function(msg, ctx)
        if msg.value.boom then
            error("boom")
        end
        local seen = ctx.stores.seen
        if seen:get(msg.key) == nil then
            seen:put(msg.key, "1")
        end
        w:add(msg, ctx)
        ctx:send("echo", msg.key, msg.value)
    end,
    on_timer = windows.timers(w),
}
