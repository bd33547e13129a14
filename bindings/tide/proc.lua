--- Thin wrapper over tide_proc_*, tide_chan_* and tide_shm_*: worker
--- processes for the supervisor (spawn, kill, reap, RSS), the framed
--- message channel both sides use, and the shared watch slots
--- (tide_watch_t) a worker writes and the supervisor reads.
---
--- Caller bugs (wrong argument types, a closed handle) raise errors;
--- runtime failures return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib
local ffi_gc, ffi_new, ffi_string, ffi_cast, ffi_sizeof =
    ffi.gc, ffi.new, ffi.string, ffi.cast, ffi.sizeof
local type, error, setmetatable, pairs, tonumber, tostring =
    type, error, setmetatable, pairs, tonumber, tostring
local math_ceil, math_floor = math.ceil, math.floor
local OK, EAGAIN, ECLOSED = base.OK, base.EAGAIN, base.ECLOSED
local get_errbuf, errbuf_msg = base.get_errbuf, base.errbuf_msg

local _M = {
    FRAME_MAX = lib.TIDE_CHAN_FRAME_MAX,      -- bytes in one frame at most
    ECLOSED = ECLOSED,                        -- code: the peer is gone
}

local Proc = {}
local proc_mt = { __index = Proc }
local Chan = {}
local chan_mt = { __index = Chan }

local pproc   = ffi_new("tide_proc_t *[1]")
local pchan   = ffi_new("tide_chan_t *[1]")
local opts    = ffi_new("tide_proc_opts_t")
local pstatus = ffi_new("int[1]")
local pbuf    = ffi_new("char *[1]")
local plen    = ffi_new("size_t[1]")
local psize   = ffi_new("size_t[1]")
local pptr    = ffi_new("void *[1]")
local env_t   = ffi.typeof("const char *[?]")
local watch_ptr_t = ffi.typeof("tide_watch_t *")
local WATCH_SIZE = ffi_sizeof("tide_watch_t")
local MAX_TIMEOUT = 2147483647

-- Linux signal numbers, for kill("TERM") and the like.
local SIGNALS = { HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10,
                  USR2 = 12, TERM = 15, CONT = 18, STOP = 19 }
_M.SIGNALS = SIGNALS

local function check_timeout(t, level)
    if t == nil then
        return -1
    end
    if type(t) ~= "number" or t < 0 or t > MAX_TIMEOUT then
        error("bad timeout: milliseconds >= 0 expected", level + 1)
    end
    return math_ceil(t)
end

-- Channel ------------------------------------------------------------------

local function chan_check(self, level)
    if not self.cdata then
        error("channel is closed", level + 1)
    end
end

local function chan_fail(what, rc)
    if rc == ECLOSED then
        return nil, "channel closed: the other process is gone", rc
    end
    return nil, what .. ": " .. base.strerror(rc), rc
end

-- The result of tide_chan_send and tide_chan_flush: true when all is
-- sent, false when some is still queued.
local function sent(rc)
    if rc == OK then
        return true
    end
    if rc == EAGAIN then
        return false
    end
    return chan_fail("cannot send", rc)
end

--- Sends `msg` (a string of at most FRAME_MAX bytes) as one frame.
--- Returns true when all of it reached the socket; false when part of it
--- is still queued after `timeout_ms` (nil: no limit), to go out with
--- the next send or flush(); nil, an error and ECLOSED when the peer is
--- gone. While it waits it reads the peer's frames (recv() them after).
---@param msg string
---@param timeout_ms integer|nil
---@return boolean|nil sent, string|nil err, integer|nil code
function Chan:send(msg, timeout_ms)
    chan_check(self, 2)
    if type(msg) ~= "string" then
        error("bad message: string expected", 2)
    end
    if #msg > _M.FRAME_MAX then
        error("bad message: " .. #msg .. " bytes, at most "
              .. _M.FRAME_MAX .. " expected", 2)
    end
    return sent(lib.tide_chan_send(self.cdata, msg, #msg,
                                   check_timeout(timeout_ms, 2)))
end

--- Writes out what send() left queued, waiting at most `timeout_ms` (nil:
--- no limit). Returns true when nothing is queued any more, false when
--- something still is, nil, an error and a code on failure.
---@param timeout_ms integer|nil
---@return boolean|nil done, string|nil err, integer|nil code
function Chan:flush(timeout_ms)
    chan_check(self, 2)
    return sent(lib.tide_chan_flush(self.cdata, check_timeout(timeout_ms, 2)))
end

--- Returns the next whole frame as a string, or nil when none is there
--- yet (without waiting). At the peer's end: nil, an error and ECLOSED.
---@return string|nil msg, string|nil err, integer|nil code
function Chan:recv()
    chan_check(self, 2)
    local rc = lib.tide_chan_recv(self.cdata, pbuf, plen)
    if rc == OK then
        return ffi_string(pbuf[0], plen[0])
    end
    if rc == EAGAIN then
        return nil
    end
    return chan_fail("cannot receive", rc)
end

--- Waits until recv() has something to say (a frame, the end, an error)
--- or `timeout_ms` passes. Returns true, or false on timeout.
---@param timeout_ms integer
---@return boolean
function Chan:wait(timeout_ms)
    chan_check(self, 2)
    if timeout_ms == nil then
        error("bad timeout: milliseconds >= 0 expected", 2)
    end
    return lib.tide_chan_wait(self.cdata, check_timeout(timeout_ms, 2)) == OK
end

--- Returns the channel's descriptor (for loop:watch_fd()).
---@return integer
function Chan:fd()
    chan_check(self, 2)
    return lib.tide_chan_fd(self.cdata)
end

--- Closes the channel (a worker's own; a proc's channel closes with the
--- proc). Safe to call twice.
function Chan:close()
    if self.cdata then
        if self.owned then
            lib.tide_chan_free(ffi_gc(self.cdata, nil))
        end
        self.cdata = nil
    end
end

-- Worker side --------------------------------------------------------------

local worker_slots, worker_size

--- In a worker: returns the channel to the supervisor (fd 3), or nil and
--- an error when this process is no worker. Call it once: the channel
--- owns fd 3.
---@return table|nil chan, string|nil err, integer|nil code
function _M.worker_chan()
    local rc = lib.tide_chan_open(pchan, lib.TIDE_PROC_CHAN_FD)
    if rc ~= OK then
        return nil, "not a worker: fd 3 is no channel (start workers "
                    .. "with 'tide run')", rc
    end
    return setmetatable({ cdata = ffi_gc(pchan[0], lib.tide_chan_free),
                          owned = true }, chan_mt)
end

--- In a worker: returns the shared watch slots (a tide_watch_t * cdata;
--- index it from 0) and their count, or nil when this process is no worker
--- or has no region. Mapped once, for the life of the process. Fields are
--- plain stores; the supervisor may see a slot half written.
---@return ffi.cdata*|nil slots, integer|nil count
function _M.worker_shm()
    if worker_slots == nil then
        local rc = lib.tide_shm_map(lib.TIDE_PROC_SHM_FD, psize, pptr)
        if rc ~= OK then
            return nil
        end
        worker_size = tonumber(psize[0])
        worker_slots = ffi_cast(watch_ptr_t, pptr[0])
    end
    return worker_slots, math_floor(worker_size / WATCH_SIZE)
end

-- Supervisor side ----------------------------------------------------------

local function proc_check(self, level)
    if not self.cdata then
        error("proc is closed", level + 1)
    end
end

--- Starts a worker process: this program again (or `o.path`), with
--- argv[0] `o.title` (what ps and pgrep -f show), our environment plus
--- `o.env` (a list of "K=V" strings or a table of K = V), `o.keep_fd` (a
--- descriptor > 2 the worker inherits as fd 5, e.g. a lock's), a channel (the
--- `chan` field of the result) and, with `o.shm_bytes` > 0, a shared
--- region (watch()). `o.max_data_bytes` > 0 caps the worker's data
--- (RLIMIT_DATA). The worker gets SIGKILL when this process dies.
---@param o table
---@return table|nil proc, string|nil err, integer|nil code
function _M.spawn(o)
    if type(o) ~= "table" then
        error("bad options: table expected", 2)
    end
    if type(o.title) ~= "string" or o.title == "" then
        error("bad title: non-empty string expected", 2)
    end
    if o.path ~= nil and type(o.path) ~= "string" then
        error("bad path: string expected", 2)
    end
    local shm, maxd = o.shm_bytes or 0, o.max_data_bytes or 0
    local keep = o.keep_fd or 0
    if not base.is_int(keep) or keep < 0 then
        error("bad keep_fd: descriptor (integer >= 0) expected", 2)
    end
    if not base.is_int(shm) or shm < 0 then
        error("bad shm_bytes: integer >= 0 expected", 2)
    end
    if not base.is_int(maxd) or maxd < 0 then
        error("bad max_data_bytes: integer >= 0 expected", 2)
    end
    local list = {}
    if o.env ~= nil then
        if type(o.env) ~= "table" then
            error("bad env: table expected", 2)
        end
        for k, v in pairs(o.env) do
            if type(k) == "number" then
                if type(v) ~= "string" or not v:find("=", 2, true) then
                    error("bad env entry: \"K=V\" string expected", 2)
                end
                list[#list + 1] = v
            else
                list[#list + 1] = tostring(k) .. "=" .. tostring(v)
            end
        end
    end
    local env = env_t(#list + 1)
    for i = 1, #list do
        env[i - 1] = list[i]                 -- 'list' keeps them alive
    end
    env[#list] = nil
    opts.title = o.title
    opts.env = env
    opts.path = o.path
    opts.shm_bytes = shm
    opts.max_data_bytes = maxd
    opts.keep_fd = keep
    local err, errlen = get_errbuf()
    local rc = lib.tide_proc_spawn(pproc, opts, err, errlen)
    opts.title, opts.env, opts.path = nil, nil, nil
    if rc ~= OK then
        return nil, errbuf_msg(rc), rc
    end
    local cdata = ffi_gc(pproc[0], lib.tide_proc_free)
    local self = setmetatable({ cdata = cdata, shm_bytes = shm }, proc_mt)
    -- The channel belongs to the proc; it keeps the proc alive.
    self.chan = setmetatable({ cdata = lib.tide_proc_chan(cdata),
                               owned = false, proc = self }, chan_mt)
    return self
end

--- Returns the worker's pid.
---@return integer
function Proc:pid()
    proc_check(self, 2)
    return lib.tide_proc_pid(self.cdata)
end

--- Returns the channel's descriptor (for loop:watch_fd()).
---@return integer
function Proc:fd()
    proc_check(self, 2)
    return lib.tide_proc_fd(self.cdata)
end

--- Returns the shared watch slots (tide_watch_t *, index from 0) and
--- their count, or nil without a region. Valid while the proc is open:
--- keep the proc referenced while using them.
---@return ffi.cdata*|nil slots, integer|nil count
function Proc:watch()
    proc_check(self, 2)
    local p = lib.tide_proc_shm(self.cdata)
    if p == nil then
        return nil
    end
    return ffi_cast(watch_ptr_t, p), math_floor(self.shm_bytes / WATCH_SIZE)
end

--- Sends signal `sig` (a number, or a name: "TERM", "KILL" ...). Returns
--- true, or nil, an error and ENOENT once the worker is reaped.
---@param sig integer|string
---@return true|nil ok, string|nil err, integer|nil code
function Proc:kill(sig)
    proc_check(self, 2)
    if type(sig) == "string" then
        local n = SIGNALS[sig:upper():gsub("^SIG", "")]
        if not n then
            error("bad signal: unknown name '" .. sig .. "'", 2)
        end
        sig = n
    elseif not base.is_int(sig) then
        error("bad signal: integer or name expected", 2)
    end
    local rc = lib.tide_proc_kill(self.cdata, sig)
    if rc ~= OK then
        return nil, "cannot signal worker " .. self:pid() .. ": "
                    .. base.strerror(rc), rc
    end
    return true
end

--- Collects the worker's end without waiting: returns its exit code (>=
--- 0) or minus the signal that killed it (-9), the same on later calls;
--- nil (and no error) while it runs.
---@return integer|nil status, string|nil err, integer|nil code
function Proc:reap()
    proc_check(self, 2)
    local rc = lib.tide_proc_reap(self.cdata, pstatus)
    if rc == OK then
        return pstatus[0]
    end
    if rc == EAGAIN then
        return nil
    end
    return nil, "cannot collect worker " .. self:pid() .. ": "
                .. base.strerror(rc), rc
end

--- Returns the worker's resident memory in bytes, or nil, an error and
--- ENOENT when it has ended.
---@return integer|nil bytes, string|nil err, integer|nil code
function Proc:rss()
    proc_check(self, 2)
    local n = lib.tide_proc_rss(self.cdata)
    if n < 0 then
        return nil, "cannot read the memory of worker " .. self:pid() .. ": "
                    .. base.strerror(tonumber(n)), tonumber(n)
    end
    return tonumber(n)
end

--- Closes the channel and unmaps the region; the worker is neither
--- killed nor reaped (kill and reap it first). Unwatch its fd from a loop
--- before. Safe to call twice.
function Proc:close()
    if self.cdata then
        self.chan.cdata = nil
        lib.tide_proc_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

return _M
