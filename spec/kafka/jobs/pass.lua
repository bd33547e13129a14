-- pass: the round-trip job of spec/kafka/run_spec.lua. Reads a kafka:
-- topic (bytes serde) and sends each record's key and value unchanged
-- (a null value stays null, its headers passed on) to output config.out;
-- and, for a record with
-- headers, "name=value,..." (sorted by name) of msg.headers to output
-- config.hdrs, so that the spec sees what tide read. No stores. The spec
-- names the topics with -c, as for count.lua.
return {
    name = "kafka-pass",
    inputs = { "kafka:pass-in" },
    outputs = { "kafka:pass-out", "kafka:pass-hdrs" },
    serde = "bytes",
    config = { out = "kafka:pass-out", hdrs = "kafka:pass-hdrs" },
    process = function(msg, ctx)
        ctx:send(ctx.config.out, msg.key, msg.value, { headers = msg.headers })
        if msg.headers ~= nil then
            local list = {}
            for name, value in pairs(msg.headers) do
                list[#list + 1] = name .. "=" .. value
            end
            table.sort(list)
            ctx:send(ctx.config.hdrs, msg.key, table.concat(list, ","))
        end
    end,
}
