-- Specs for bindings/tide/base.lua: library loading, ABI check, error
-- codes, strerror and the scratch buffers.
local ffi  = require("ffi")
local base = require("tide.base")

describe("tide.base", function()
    describe("loading", function()
        it("passes the ABI check against the built library", function()
            assert.equals(base.ABI_VERSION, base.lib.tide_abi_version())
            assert.is_nil(base.check_abi(base.lib.tide_abi_version()))
        end)

        it("names both versions when the ABI differs", function()
            local msg = base.check_abi(base.ABI_VERSION + 1)
            assert.is_string(msg)
            assert.matches("ABI version " .. base.ABI_VERSION, msg, 1, true)
            assert.matches("ABI version " .. (base.ABI_VERSION + 1), msg, 1,
                           true)
        end)

        it("declares the C surface only once when loaded again", function()
            package.loaded["tide.base"] = nil
            local again = require("tide.base")
            package.loaded["tide.base"] = base
            assert.equals(base.OK, again.OK)
            assert.equals(base.lib.tide_abi_version(),
                          again.lib.tide_abi_version())
        end)

        it("reports the release version", function()
            assert.matches("^%d+%.%d+%.%d+", base.version())
        end)
    end)

    describe("error codes", function()
        local codes = {
            OK = 0, EINVAL = -1, ENOMEM = -2, EIO = -3, ENOENT = -4,
            EEXIST = -5, ECORRUPT = -6, EAGAIN = -7, ENOBUFS = -8,
            EBUSY = -9, ERANGE = -10,
        }

        it("match tide.h", function()
            for name, value in pairs(codes) do
                assert.equals(value, base[name], name)
            end
        end)

        describe("strerror()", function()
            it("returns distinct text for every code", function()
                local seen = {}
                for name, value in pairs(codes) do
                    local text = base.strerror(value)
                    assert.is_string(text)
                    assert.is_true(#text > 0, name)
                    assert.are_not.equals("unknown error", text, name)
                    assert.is_nil(seen[text], name .. " repeats " ..
                                  tostring(seen[text]))
                    seen[text] = name
                end
            end)

            it("returns \"unknown error\" for an unknown code", function()
                assert.equals("unknown error", base.strerror(-1000))
                assert.equals("unknown error", base.strerror(1))
                assert.equals("unknown error", base.strerror(-2147483648))
            end)
        end)
    end)

    describe("get_string_buf()", function()
        it("returns a writable buffer and its capacity", function()
            local buf, cap = base.get_string_buf()
            assert.is_true(cap >= 1)
            ffi.fill(buf, cap, 65)
            assert.equals(string.rep("A", cap), ffi.string(buf, cap))
        end)

        it("reuses the buffer while it is big enough", function()
            local buf, cap = base.get_string_buf()
            local again, cap2 = base.get_string_buf(cap)
            assert.equals(cap, cap2)
            assert.is_true(buf == again)
        end)

        it("grows to at least the size asked for", function()
            local _, cap = base.get_string_buf()
            local want = cap * 3 + 1
            local buf, grown = base.get_string_buf(want)
            assert.is_true(grown >= want)
            ffi.fill(buf, grown, 0)
            buf[grown - 1] = 66
            assert.equals("B", ffi.string(buf + grown - 1, 1))
            -- and stays grown for later callers
            local _, later = base.get_string_buf()
            assert.equals(grown, later)
        end)
    end)

    describe("get_size_ptr()", function()
        it("returns one reused size_t[1]", function()
            local p = base.get_size_ptr()
            p[0] = 12345
            assert.is_true(p == base.get_size_ptr())
            assert.equals(12345, tonumber(base.get_size_ptr()[0]))
        end)
    end)

    describe("errbuf", function()
        it("hands out an emptied buffer and its size", function()
            local err, len = base.get_errbuf()
            assert.is_true(len >= 256)
            ffi.copy(err, "left over")
            err = base.get_errbuf()
            assert.equals("", ffi.string(err))
        end)

        it("returns the text C wrote, else strerror(rc)", function()
            local err = base.get_errbuf()
            assert.equals(base.strerror(base.EIO), base.errbuf_msg(base.EIO))
            ffi.copy(err, "disk on fire")
            assert.equals("disk on fire", base.errbuf_msg(base.EIO))
        end)
    end)
end)
