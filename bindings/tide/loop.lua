--- Thin wrapper over tide_loop_*, tide_control_send and tide_time_get: the
--- container's libuv loop, which turns SIGINT/SIGTERM (STOP), SIGHUP
--- (RELOAD), changes in a watched folder (CHANGE) and lines sent to its
--- control socket (COMMAND) into event bits and waits with a timeout; the
--- client side of the control socket; and the clocks.
---
--- Caller bugs (wrong argument types, a closed loop) raise errors;
--- runtime failures return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib                          -- cache the namespace, not functions
local ffi_gc, ffi_new, ffi_string = ffi.gc, ffi.new, ffi.string
local type, error, setmetatable, tonumber = type, error, setmetatable, tonumber
local math_ceil = math.ceil
local OK, EAGAIN, ENOBUFS = base.OK, base.EAGAIN, base.ENOBUFS
local get_string_buf, get_size_ptr = base.get_string_buf, base.get_size_ptr
local get_errbuf, errbuf_msg = base.get_errbuf, base.errbuf_msg

local _M = {
    STOP    = lib.TIDE_LOOP_STOP,             -- SIGINT or SIGTERM arrived
    RELOAD  = lib.TIDE_LOOP_RELOAD,           -- SIGHUP arrived
    CHANGE  = lib.TIDE_LOOP_CHANGE,           -- the watched folder changed
    COMMAND = lib.TIDE_LOOP_COMMAND,          -- a control line is queued
    INPUT   = lib.TIDE_LOOP_INPUT,            -- a watched fd is readable
    CHILD   = lib.TIDE_LOOP_CHILD,            -- SIGCHLD arrived
}

local Loop = {}
local loop_mt = { __index = Loop }

local ploop = ffi_new("tide_loop_t *[1]")     -- reused out-param
local pid   = ffi_new("int[1]")
local TIME_MONO, TIME_REAL = lib.TIDE_TIME_MONO, lib.TIDE_TIME_REAL
local MAX_TIMEOUT = 2147483647
local MAX_COMMAND = 4095                      -- bytes, without the '\n'
local REPLY_MAX = 65536                       -- longer replies are cut

--- Returns a monotonic time in milliseconds (from an arbitrary point), for
--- intervals and deadlines.
---@return integer
function _M.now()
    return tonumber(lib.tide_time_get(TIME_MONO))
end

--- Returns the wall-clock time in milliseconds since the epoch.
---@return integer
function _M.realtime()
    return tonumber(lib.tide_time_get(TIME_REAL))
end

--- Returns a new loop watching SIGINT, SIGTERM and SIGHUP. While a loop
--- exists these signals no longer end the process; they show up in
--- poll() instead.
---@return table|nil loop, string|nil err, integer|nil code
function _M.new()
    local rc = lib.tide_loop_new(ploop)
    if rc ~= OK then
        return nil, "cannot make the event loop: " .. base.strerror(rc), rc
    end
    return setmetatable({ cdata = ffi_gc(ploop[0], lib.tide_loop_free) },
                        loop_mt)
end

--- Runs the loop once and returns the event bits (STOP, RELOAD; 0 for
--- none) seen since the previous poll. With `timeout_ms` 0 (the default)
--- it does not wait; otherwise it returns when an event arrives or after
--- `timeout_ms` milliseconds.
---@param timeout_ms integer|nil
---@return integer events
function Loop:poll(timeout_ms)
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    if timeout_ms == nil then
        timeout_ms = 0
    elseif type(timeout_ms) ~= "number" or timeout_ms < 0
           or timeout_ms > MAX_TIMEOUT then
        error("bad timeout: milliseconds >= 0 expected", 2)
    end
    -- Fractions of a millisecond round up, so a short wait still waits.
    return lib.tide_loop_poll(cdata, math_ceil(timeout_ms))
end

--- Watches folder `dir` (not its subfolders): any file created, written,
--- renamed or removed in it raises CHANGE. Watching the folder catches
--- editors that save through a rename. A second call replaces the watch;
--- a failed one keeps the previous watch.
---@param dir string
---@return true|nil ok, string|nil err, integer|nil code
function Loop:watch(dir)
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    if type(dir) ~= "string" then
        error("bad folder: string expected", 2)
    end
    local rc = lib.tide_loop_set_watch(cdata, dir)
    if rc ~= OK then
        return nil, "cannot watch folder '" .. dir .. "': "
                    .. base.strerror(rc), rc
    end
    return true
end

--- Serves control clients on a Unix socket made at `path` (mode 0600).
--- A stale socket file there is replaced; one a live process serves is
--- not (code EBUSY). Each line a client sends raises COMMAND; take it
--- with pop_command() and answer with reply(). The file is removed when
--- the loop is closed. A loop serves one socket. At most 16 clients are
--- open at once (one more gets "busy: too many control clients" and is
--- closed); a client without a complete line after 5 s gets "timeout: ..."
--- and is closed; a failed accept (say EMFILE) is logged once to stderr
--- and retried every second, while the job goes on.
---@param path string
---@return true|nil ok, string|nil err, integer|nil code
function Loop:control(path)
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    if type(path) ~= "string" then
        error("bad socket path: string expected", 2)
    end
    local err, errlen = get_errbuf()
    local rc = lib.tide_loop_set_control(cdata, path, err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return true
end

--- Returns the oldest command line a control client sent (without its
--- newline), or nil when none is queued. One COMMAND event may stand for
--- several commands: call it until it returns nil. Its client becomes the one
--- reply() answers; a previous client not yet answered is disconnected.
---@return string|nil
function Loop:pop_command()
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    local buf, cap = get_string_buf()
    local len = get_size_ptr()
    len[0] = cap
    local rc = lib.tide_loop_pop_command(cdata, buf, len)
    if rc == ENOBUFS then                     -- cannot happen below 4 KiB
        buf = get_string_buf(tonumber(len[0]))
        rc = lib.tide_loop_pop_command(cdata, buf, len)
    end
    if rc == EAGAIN then
        return nil
    end
    if rc ~= OK then
        error("cannot take a command: " .. base.strerror(rc), 2)
    end
    return ffi_string(buf, len[0])
end

--- Sends `text` to the client of the last popped command and disconnects
--- it. A client that has gone away is dropped silently.
---@param text string
---@return true|nil ok, string|nil err, integer|nil code
function Loop:reply(text)
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    if type(text) ~= "string" then
        error("bad reply: string expected", 2)
    end
    local rc = lib.tide_loop_push_reply(cdata, text, #text)
    if rc ~= OK then
        return nil, "no command to reply to", rc
    end
    return true
end

--- Sends command line `cmd` to the job serving the control socket at
--- `path` and returns its reply (cut at 64 KiB). Fails with code ENOENT
--- when no job listens there, EAGAIN when no reply came within
--- `timeout_ms` (default 5000), EIO when the socket belongs to another
--- user or the exchange failed.
---@param path string
---@param cmd string
---@param timeout_ms integer|nil
---@return string|nil reply, string|nil err, integer|nil code
function _M.send(path, cmd, timeout_ms)
    if type(path) ~= "string" then
        error("bad socket path: string expected", 2)
    end
    if type(cmd) ~= "string" or #cmd > MAX_COMMAND or cmd:find("\n", 1, true)
       or cmd:find("\0", 1, true) then
        error("bad command: one line of at most 4095 bytes expected", 2)
    end
    if timeout_ms == nil then
        timeout_ms = 5000
    elseif type(timeout_ms) ~= "number" or timeout_ms < 0
           or timeout_ms > MAX_TIMEOUT then
        error("bad timeout: milliseconds >= 0 expected", 2)
    end
    local buf = get_string_buf(REPLY_MAX)
    local len = get_size_ptr()
    len[0] = REPLY_MAX
    local err, errlen = get_errbuf()
    local rc = lib.tide_control_send(path, cmd, buf, len, math_ceil(timeout_ms),
                                     err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    return ffi_string(buf, len[0])
end

--- Watches descriptor `fd` (the caller keeps it open and owns it): while
--- it is readable, at end-of-file or failed, poll() returns INPUT. The
--- bit does not say which descriptor: look at each (a channel: receive
--- until it returns nothing, for it may hold frames already read).
--- Unwatch before closing `fd`, and at its end-of-file (else every poll
--- returns at once).
---@param fd integer
---@return integer|nil id, string|nil err, integer|nil code
function Loop:watch_fd(fd)
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    if not base.is_int(fd) or fd < 0 then
        error("bad fd: integer >= 0 expected", 2)
    end
    local rc = lib.tide_loop_watch_fd(cdata, fd, pid)
    if rc ~= OK then
        return nil, "cannot watch descriptor " .. fd .. ": "
                    .. base.strerror(rc), rc
    end
    return pid[0]
end

--- Ends watch `id` of watch_fd(). Returns true, or nil, an error and the
--- code ENOENT when there is no such watch.
---@param id integer
---@return true|nil ok, string|nil err, integer|nil code
function Loop:unwatch_fd(id)
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    if not base.is_int(id) then
        error("bad watch id: integer expected", 2)
    end
    local rc = lib.tide_loop_unwatch_fd(cdata, id)
    if rc ~= OK then
        return nil, "no descriptor watch " .. id, rc
    end
    return true
end

--- From now on SIGCHLD raises CHILD in poll(): a child ended (or stopped).
--- One bit may stand for several children: reap every one.
---@return true|nil ok, string|nil err, integer|nil code
function Loop:watch_children()
    local cdata = self.cdata
    if not cdata then
        error("loop is closed", 2)
    end
    local rc = lib.tide_loop_watch_children(cdata)
    if rc ~= OK then
        return nil, "cannot watch child processes: " .. base.strerror(rc), rc
    end
    return true
end

--- Closes the loop, its watch and its control socket (removing the socket
--- file it made); once the last loop is closed, the signals take their
--- default action again. Safe to call twice.
function Loop:close()
    if self.cdata then
        lib.tide_loop_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

return _M
