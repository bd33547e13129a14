-- pass: a pass-through job for the latency spec
-- (spec/cli/container_spec.lua). Reads "pings" (string serde) and sends
-- each message on to "pongs" unchanged. Its commit interval is 10 s, so
-- an output seen sooner was not waiting for a commit.
return {
    name = "pass",
    inputs = { "pings" },
    outputs = { "pongs" },
    serde = "string",
    commit_interval = "10s",
    process = function(msg, ctx)
        ctx:send("pongs", msg.key, msg.value)
    end,
}
