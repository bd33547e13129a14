--- Thin wrapper over tide_http_*: the HTTP endpoint of `tide run --http`,
--- a server on a libuv loop of its own whose requests are parsed in C
--- (http-parser) and pulled and answered from Lua between other work.
---
--- Caller bugs (wrong argument types, a closed server) raise errors;
--- runtime failures return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib                          -- cache the namespace, not functions
local ffi_gc, ffi_new, ffi_string = ffi.gc, ffi.new, ffi.string
local type, error, setmetatable, tonumber = type, error, setmetatable, tonumber
local OK, EAGAIN, ENOBUFS = base.OK, base.EAGAIN, base.ENOBUFS
local get_string_buf, get_size_ptr = base.get_string_buf, base.get_size_ptr
local get_errbuf, errbuf_msg = base.get_errbuf, base.errbuf_msg

local _M = {
    TARGET_MAX = tonumber(lib.TIDE_HTTP_TARGET_MAX),
    CLIENTS_MAX = tonumber(lib.TIDE_HTTP_CLIENTS_MAX),
}

local Server = {}
local server_mt = { __index = Server }

local phttp = ffi_new("tide_http_t *[1]")     -- reused out-param

--- Listens on `addr`: "PORT" (127.0.0.1), "HOST:PORT", ":PORT" (every
--- interface) or "[IPV6]:PORT"; port 0 takes any free port (see port()).
--- Fails with code EINVAL (a bad address), EBUSY (in use) or EIO.
---@param addr string
---@return table|nil server, string|nil err, integer|nil code
function _M.new(addr)
    if type(addr) ~= "string" then
        error("bad address: string expected", 2)
    end
    local err, errlen = get_errbuf()
    local rc = lib.tide_http_new(phttp, addr, err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return setmetatable({ cdata = ffi_gc(phttp[0], lib.tide_http_free) },
                        server_mt)
end

local function live(self)
    local cdata = self.cdata
    if not cdata then
        error("HTTP server is closed", 3)
    end
    return cdata
end

--- Returns the descriptor to watch (readable when the server has work).
---@return integer
function Server:fd()
    return tonumber(lib.tide_http_get_fd(live(self)))
end

--- Returns the port it listens on.
---@return integer
function Server:port()
    return tonumber(lib.tide_http_get_port(live(self)))
end

--- Accepts, reads and writes what is ready, without waiting. Returns the
--- number of requests waiting for pop().
---@return integer
function Server:poll()
    return tonumber(lib.tide_http_poll(live(self)))
end

--- Returns the method and target of the oldest complete request
--- ("GET", "/metrics"), or nil when none waits. Its client is the one
--- reply() answers; one popped before and not answered is closed.
---@return string|nil method, string|nil target
function Server:pop()
    local cdata = live(self)
    local buf, cap = get_string_buf()
    local len = get_size_ptr()
    len[0] = cap
    local rc = lib.tide_http_pop_request(cdata, buf, len)
    if rc == ENOBUFS then
        buf = get_string_buf(tonumber(len[0]))
        rc = lib.tide_http_pop_request(cdata, buf, len)
    end
    if rc == EAGAIN then
        return nil
    end
    if rc ~= OK then
        error("cannot take a request: " .. base.strerror(rc), 2)
    end
    local line = ffi_string(buf, len[0])
    return line:match("^(%S+) (.*)$")
end

--- Answers the last popped request with `status`, content type `ctype`
--- and `body`, and closes its connection once written.
---@param status integer
---@param ctype string
---@param body string
---@return true|nil ok, string|nil err, integer|nil code
function Server:reply(status, ctype, body)
    local cdata = live(self)
    if not base.is_int(status) or status < 100 or status > 599 then
        error("bad status: 100 to 599 expected", 2)
    end
    if type(ctype) ~= "string" or type(body) ~= "string" then
        error("bad reply: content type and body strings expected", 2)
    end
    local rc = lib.tide_http_push_reply(cdata, status, ctype, body, #body)
    if rc ~= OK then
        return nil, "cannot answer: " .. base.strerror(rc), rc
    end
    return true
end

--- Closes the server and its clients. Safe to call twice.
function Server:close()
    if self.cdata then
        lib.tide_http_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

return _M
