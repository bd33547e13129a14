-- tag: a stateless pass-through for the `tide run` specs. Reads "in" with
-- the string serde and sends each value to "out" with the same key,
-- prefixed with the partition and offset it was read from:
-- "<partition>:<offset>|<value>".
local str_format = string.format

return {
    name = "tag",
    inputs = { "in" },
    outputs = { "out" },
    serde = "string",
    commit_interval = "200ms",
    process = function(msg, ctx)
        ctx:send("out", msg.key, str_format("%d:%d|%s", msg.partition,
                                            msg.offset, msg.value))
    end,
}
