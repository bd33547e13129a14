-- tide.http: the wrapper over tide_http_* (the --http endpoint).
local http = require("tide.http")

describe("tide.http", function()
  describe("new()", function()
    it("listens on a free port with port 0", function()
      local s = assert(http.new("0"))
      assert.is_true(s:port() > 0)
      assert.is_true(s:fd() >= 0)
      assert.equal(0, s:poll())
      assert.is_nil(s:pop())
      s:close()
      s:close()
    end)

    it("fails with EINVAL on a bad address and EBUSY on a port in use",
       function()
      local s, err, code = http.new("not an address")
      assert.is_nil(s)
      assert.matches("bad address", err)
      assert.equal(require("tide.base").EINVAL, code)
      local a = assert(http.new("0"))
      s, err, code = http.new("127.0.0.1:" .. a:port())
      assert.is_nil(s)
      assert.matches("in use", err)
      assert.equal(require("tide.base").EBUSY, code)
      a:close()
    end)

    it("raises on a caller bug", function()
      assert.has_error(function() http.new(9100) end)
      local s = assert(http.new("0"))
      assert.has_error(function() s:reply(700, "text/plain", "") end)
      s:close()
      assert.has_error(function() s:poll() end)
    end)

    it("frees dropped servers", function()
      for i = 1, 1000 do
        http.new("0")
        -- Each holds descriptors, which the GC does not count.
        if i % 100 == 0 then collectgarbage() end
      end
      collectgarbage()
      collectgarbage()
    end)
  end)

  describe("reply()", function()
    it("fails without a current request", function()
      local s = assert(http.new("0"))
      local ok, err = s:reply(200, "text/plain", "x")
      assert.is_nil(ok)
      assert.matches("cannot answer", err)
      s:close()
    end)
  end)
end)
