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
local MAX_COMMAND = tonumber(lib.TIDE_CONTROL_LINE_MAX) -- without the '\n'
local REPLY_MAX = 4 * 1024 * 1024             -- send()'s default reply limit
-- send()'s reply buffer: owned here, grown to the largest limit asked for
-- (plus one byte, to tell a reply of exactly the limit from a longer one)
-- and kept for the next call. Each reply is copied out with ffi.string.
local reply_buf, reply_cap = nil, 0

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
--- not (code EBUSY). Each line a client sends (at most 1 MiB) raises
--- COMMAND; take it with pop_command() and answer with reply(). The file
--- is removed when the loop is closed. A loop serves one socket. Only
--- this process's user may send commands (checked by uid, root included):
--- another gets "error: permission denied: this job runs as uid N
--- (NAME); connect as that user" and a warning goes to stderr. At most 16
--- clients are open at once (one more gets "busy: too many control
--- clients" and is closed); a longer line gets "error: command longer
--- than 1048576 bytes"; a client that sends nothing for 5 s before its
--- line ends gets "timeout: ..." and is closed; a failed accept (say
--- EMFILE) is logged once to stderr and retried every second, while the
--- job goes on.
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
    if rc == ENOBUFS then                     -- a long one (up to 1 MiB)
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

--- Sends command line `cmd` (at most 1 MiB, no newline) to the job
--- serving the control socket at `path` and returns its whole reply. The
--- exchange (connect, send, reply) takes at most `timeout_ms` (default
--- 5000; an evaluation the job stops after its own time limit needs more,
--- say 35000). Fails with code ENOENT when no job listens there, EAGAIN
--- when no reply came within `timeout_ms`, ENOBUFS when the reply is
--- longer than `max_reply` bytes (default 4 MiB; the command has run),
--- EIO when the socket belongs to another user ("permission denied on
--- control socket PATH: ...") or the exchange failed. A job that refuses
--- this user by its uid answers "error: permission denied: ...", which
--- is returned as the reply. `cmd` is not kept; the reply is a copy.
---@param path string
---@param cmd string
---@param timeout_ms integer|nil
---@param max_reply integer|nil
---@return string|nil reply, string|nil err, integer|nil code
function _M.send(path, cmd, timeout_ms, max_reply)
    if type(path) ~= "string" then
        error("bad socket path: string expected", 2)
    end
    if type(cmd) ~= "string" or #cmd > MAX_COMMAND or cmd:find("\n", 1, true)
       or cmd:find("\0", 1, true) then
        error("bad command: one line of at most " .. MAX_COMMAND
              .. " bytes expected", 2)
    end
    if timeout_ms == nil then
        timeout_ms = 5000
    elseif type(timeout_ms) ~= "number" or timeout_ms < 0
           or timeout_ms > MAX_TIMEOUT then
        error("bad timeout: milliseconds >= 0 expected", 2)
    end
    if max_reply == nil then
        max_reply = REPLY_MAX
    elseif not base.is_int(max_reply) or max_reply < 0
           or max_reply > 1073741824 then
        error("bad reply limit: bytes from 0 to 1 GiB expected", 2)
    end
    if reply_cap < max_reply + 1 then
        reply_buf = nil                        -- let the old one go first
        reply_buf = ffi_new("char[?]", max_reply + 1)
        reply_cap = max_reply + 1
    end
    local len = get_size_ptr()
    len[0] = max_reply + 1
    local err, errlen = get_errbuf()
    local rc = lib.tide_control_send(path, cmd, reply_buf, len,
                                     math_ceil(timeout_ms), err, errlen)
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    if tonumber(len[0]) > max_reply then
        return nil, "the reply from " .. path .. " is longer than "
                    .. max_reply .. " bytes", ENOBUFS
    end
    return ffi_string(reply_buf, len[0])
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
