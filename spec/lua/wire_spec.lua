-- Messages between the supervisor and its workers (tide.wire): exact
-- offsets, and a frame that is not a message is refused, not raised.
local wire = require("tide.wire")

describe("tide.wire", function()
    it("keeps every digit of offsets up to 2^53 and nested tables", function()
        local msg = { op = "commit", seq = 7, entries = {
            [0] = { inputs = { ["local:in"] = 2^53, ["local:t#1"] = 123456789012345 },
                    changelogs = { counts = 0 } } } }
        local back = assert(wire.decode(wire.encode(msg)))
        local e = wire.by_task(back.entries)[0]
        assert.equals(2^53, e.inputs["local:in"])
        assert.equals(123456789012345, e.inputs["local:t#1"])
        assert.equals(0, e.changelogs.counts)
        assert.equals("commit", back.op)
        assert.same({ "a", "b" }, wire.list(assert(wire.decode(
            wire.encode({ "a", "b" })))))
    end)

    it("refuses bytes that are not a message with a reason", function()
        for _, text in ipairs({ "", "not json", "[1,2", "42", "\"s\"",
                                "\0\1\2", string.rep("{", 5000) }) do
            local msg, err = wire.decode(text)
            assert.is_nil(msg, text)
            assert.matches("bad message", err)
        end
    end)

    it("refuses to encode a table nested without end", function()
        local t = {}
        t.self = t
        local ok, err = pcall(wire.encode, t)
        assert.is_false(ok)
        assert.matches("nested too deep", err)
    end)
end)
