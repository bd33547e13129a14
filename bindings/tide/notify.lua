--- Thin wrapper over tide_notify_*: wakes an idle reader when a log
--- partition changes (a write by any process, a new segment), instead of a
--- polling timer. Add the partitions first, read until nothing is left,
--- then wait(): an append made after add() is never missed. A wake-up is
--- a hint: it may find nothing new.
---
--- Caller bugs (wrong argument types, a closed notifier) raise errors;
--- runtime failures return nil, a message and the TIDE_E* code.
local ffi  = require("ffi")
local base = require("tide.base")

local lib = base.lib
local ffi_gc, ffi_new = ffi.gc, ffi.new
local type, error, setmetatable, tostring = type, error, setmetatable, tostring
local math_ceil = math.ceil
local OK, EAGAIN = base.OK, base.EAGAIN

local _M = {}

local Notify = {}
local notify_mt = { __index = Notify }

local pnotify = ffi_new("tide_notify_t *[1]")
local pid     = ffi_new("int[1]")
local MAX_TIMEOUT = 2147483647

local function check_open(self, level)
    if not self.cdata then
        error("notifier is closed", level + 1)
    end
end

--- Returns a new notifier.
---@return table|nil notify, string|nil err, integer|nil code
function _M.new()
    local rc = lib.tide_notify_new(pnotify)
    if rc ~= OK then
        return nil, "cannot make a notifier (inotify): " .. base.strerror(rc)
                    .. "; raise fs.inotify.max_user_instances", rc
    end
    return setmetatable({ cdata = ffi_gc(pnotify[0], lib.tide_notify_free) },
                        notify_mt)
end

--- Watches partition `partition` of stream `log` (a tide.log handle).
--- Returns the watch's id, for remove().
---@param log table
---@param partition integer
---@return integer|nil id, string|nil err, integer|nil code
function Notify:add(log, partition)
    check_open(self, 2)
    if type(log) ~= "table" or not log.cdata then
        error("bad log: an open tide.log handle expected", 2)
    end
    if not base.is_int(partition) then
        error("bad partition: integer expected", 2)
    end
    local rc = lib.tide_notify_add(self.cdata, log.cdata, partition, pid)
    if rc ~= OK then
        local what = "cannot watch stream '" .. tostring(log.name)
                     .. "' partition " .. partition .. ": "
        if rc == base.ERANGE then
            return nil, what .. "no such partition", rc
        end
        return nil, what .. base.strerror(rc)
                    .. " (out of inotify watches? fs.inotify.max_user_watches)",
               rc
    end
    return pid[0]
end

--- Ends watch `id`. Returns true, or nil, an error and ENOENT.
---@param id integer
---@return true|nil ok, string|nil err, integer|nil code
function Notify:remove(id)
    check_open(self, 2)
    if not base.is_int(id) then
        error("bad watch id: integer expected", 2)
    end
    local rc = lib.tide_notify_remove(self.cdata, id)
    if rc ~= OK then
        return nil, "no notify watch " .. id, rc
    end
    return true
end

--- Returns the notifier's descriptor, readable while events are pending
--- (for loop:watch_fd()). Do not read or close it: drain() reads it.
---@return integer
function Notify:fd()
    check_open(self, 2)
    return lib.tide_notify_fd(self.cdata)
end

--- Clears pending events without waiting; returns how many there were.
---@return integer|nil count, string|nil err, integer|nil code
function Notify:drain()
    check_open(self, 2)
    local n = lib.tide_notify_drain(self.cdata)
    if n < 0 then
        return nil, "cannot read the notifier: " .. base.strerror(n), n
    end
    return n
end

--- Waits until a watched partition changes or `timeout_ms` passes.
--- Returns true when something changed, false on timeout (or a signal).
---@param timeout_ms integer
---@return boolean|nil changed, string|nil err, integer|nil code
function Notify:wait(timeout_ms)
    check_open(self, 2)
    if type(timeout_ms) ~= "number" or timeout_ms < 0
       or timeout_ms > MAX_TIMEOUT then
        error("bad timeout: milliseconds >= 0 expected", 2)
    end
    local rc = lib.tide_notify_wait(self.cdata, math_ceil(timeout_ms))
    if rc == OK then
        return true
    end
    if rc == EAGAIN then
        return false
    end
    return nil, "cannot wait on the notifier: " .. base.strerror(rc), rc
end

--- Closes the notifier. Safe to call twice.
function Notify:close()
    if self.cdata then
        lib.tide_notify_free(ffi_gc(self.cdata, nil))
        self.cdata = nil
    end
end

return _M
