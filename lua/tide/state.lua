--- Task state: a job's stores, per task, with their changelogs, local
--- snapshots, restore and the store API that process() sees as
--- ctx.stores.<name> (docs/design.md sections 3 and 4; docs/runtime.md "State").
---
--- Layout per task and store, under <data-dir>/jobs/<job>/stores/<store>/<task>/:
---   db/               the live RocksDB (WAL off: the changelog is durable)
---   snap.a/ snap.b/   snapshots (hard links) taken at commits; each has a
---                     file TIDE_OFFSET: the changelog offset it matches
--- Restore picks the snapshot whose offset equals the checkpoint's (a live
--- store may be ahead of the checkpoint: it is never trusted), replays the
--- changelog from the best snapshot below it otherwise, or from the start
--- when there is none, then writes back the committed value of every key
--- that changed after the checkpoint, so that the changelog's newest
--- records match the restored store again.
local tstore = require("tide.store")
local system = require("tide.system")
local serde = require("tide.serde")
local loop_mod = require("tide.loop")

local type, pairs, ipairs, tostring, tonumber, next = type, pairs, ipairs, tostring, tonumber, next
local setmetatable, error = setmetatable, error
local str_format, str_match, concat, sort = string.format, string.match, table.concat, table.sort
local io_open = io.open
local now_ms = loop_mod.now

local _M = {}

local RESTORE_CHUNK = 200000
-- Changelog segments roll at 16 MiB (not the log's 1 GiB default):
-- compaction runs on closed segments only, so a restore replays about the
-- state plus one segment of history rather than every write ever made.
local CHANGELOG_SEGMENT_BYTES = 16 * 1024 * 1024
local SLOTS = { "snap.a", "snap.b" }
local OFFSET_FILE = "TIDE_OFFSET"

-- ---- store options in the job file ---------------------------------------

local STORE_FIELDS = { serde = "string", key_serde = "string",
                       changelog = "boolean", engine = "string",
                       cache_entries = "number" }

--- Validates job.stores and returns a sorted array of normalised stores
--- { name, serde, key_serde, changelog (bool), engine }; nil, err on a
--- mistake (the message names the field).
---@param stores table|nil
---@param default_serde string|nil
---@return table|nil list, string|nil err
function _M.normalise(stores, default_serde)
    local list = {}
    for name, opts in pairs(stores or {}) do
        if type(name) ~= "string" or not str_match(name, "^[%w_]+$") then
            return nil, str_format("stores: bad store name '%s': use "
                                   .. "letters, digits and '_'", tostring(name))
        end
        if type(opts) ~= "table" then
            return nil, str_format("stores.%s must be a table of options "
                                   .. "({} for the defaults)", name)
        end
        for k, v in pairs(opts) do
            local want = STORE_FIELDS[k]
            if not want then
                return nil, str_format("stores.%s: unknown option '%s' "
                                       .. "(known: serde, key_serde, "
                                       .. "changelog, engine, "
                                       .. "cache_entries)", name, tostring(k))
            end
            if type(v) ~= want then
                return nil, str_format("stores.%s.%s must be a %s", name, k,
                                       want)
            end
        end
        local engine = opts.engine or "rocksdb"
        if engine ~= "rocksdb" and engine ~= "memory" then
            return nil, str_format("stores.%s.engine must be rocksdb or "
                                   .. "memory, not '%s'", name, engine)
        end
        local vs, err = serde.get(opts.serde or default_serde or "string")
        if not vs then
            return nil, str_format("stores.%s: %s", name, err)
        end
        local ks
        ks, err = serde.get(opts.key_serde or "string")
        if not ks then
            return nil, str_format("stores.%s: %s", name, err)
        end
        list[#list + 1] = { name = name, serde = vs, key_serde = ks,
                            changelog = opts.changelog ~= false,
                            engine = engine,
                            cache_entries = opts.cache_entries }
    end
    sort(list, function(a, b) return a.name < b.name end)
    return list
end

--- Returns the changelog stream spec of store `name` of job `job`.
function _M.changelog_spec(sys, job_name, store_name)
    return str_format("%s:%s-%s-changelog", sys, job_name, store_name)
end

-- ---- small file helpers ----------------------------------------------------

local function read_offset(dir)
    local f = io_open(dir .. "/" .. OFFSET_FILE, "rb")
    if not f then
        return nil
    end
    local text = f:read("*a")
    f:close()
    return tonumber(str_match(text or "", "^(%d+)\n?$"))
end

local function write_offset(dir, off)
    local f, err = io_open(dir .. "/" .. OFFSET_FILE, "wb")
    if not f then
        return nil, err
    end
    f:write(str_format("%.0f\n", off))
    f:close()
    -- Not synced: the snapshot files are (RocksDB checkpoint), and a lost
    -- offset file only makes restore ignore this snapshot.
    return true
end

-- ---- the store API of ctx.stores ---------------------------------------------

-- Writes are held per message in `pending` (raw key -> raw value, or
-- false for a delete) and reach the C store only when the message is done,
-- so a message that raises leaves no trace in state (docs/design.md section 4).
local Store = {}
Store.__index = Store

local function pending_get(self, kraw)
    local v = self.pending[kraw]
    if v ~= nil then
        self.phits = self.phits + 1      -- a write cache hit (counts)
        return v
    end
    return self.s:get(kraw)
end

--- Returns the value of `key`, or nil.
function Store:get(key)
    local raw = pending_get(self, self.kenc(key))
    if not raw then
        return nil
    end
    return self.vdec(raw)
end

--- Sets `key` to `value` (nil deletes).
function Store:put(key, value)
    local kraw = self.kenc(key)
    local p = self.pending
    if p[kraw] == nil then
        local keys = self.pkeys
        keys[#keys + 1] = kraw
    end
    if value == nil then
        p[kraw] = false
    else
        p[kraw] = self.venc(value)
    end
end

--- Deletes `key`.
function Store:delete(key)
    self:put(key, nil)
end

--- Adds `n` (default 1) to the number at `key` (absent: 0) and returns
--- the new value.
function Store:incr(key, n)
    local kraw = self.kenc(key)
    local raw = pending_get(self, kraw)
    local v = (raw and tonumber(self.vdec(raw)) or 0) + (n or 1)
    local p = self.pending
    if p[kraw] == nil then
        local keys = self.pkeys
        keys[#keys + 1] = kraw
    end
    p[kraw] = self.venc(v)
    return v
end

--- Sets every key of table `t` to its value.
function Store:put_all(t)
    for k, v in pairs(t) do
        self:put(k, v)
    end
end

--- Returns an iterator over key, value in key order (raw byte order of
--- the encoded keys), for keys in [from, to); nil bounds are open. It sees
--- this message's own writes.
function Store:range(from, to)
    local kfrom = from ~= nil and self.kenc(from) or nil
    local kto = to ~= nil and self.kenc(to) or nil
    local list = {}
    for k, v in self.s:iter(kfrom, kto) do
        list[#list + 1] = { k, v }
    end
    if #self.pkeys > 0 then
        -- Merge this message's writes into the sorted list.
        local byk = {}
        for i, e in ipairs(list) do
            byk[e[1]] = i
        end
        for _, k in ipairs(self.pkeys) do
            if (kfrom == nil or k >= kfrom) and (kto == nil or k < kto) then
                local v = self.pending[k]
                if byk[k] then
                    list[byk[k]][2] = v
                else
                    list[#list + 1] = { k, v }
                end
            end
        end
        sort(list, function(a, b) return a[1] < b[1] end)
    end
    local i, kdec, vdec = 0, self.kdec, self.vdec
    return function()
        while true do
            i = i + 1
            local e = list[i]
            if e == nil then
                return nil
            end
            if e[2] then
                return kdec(e[1]), vdec(e[2])
            end
        end
    end
end

--- Returns an iterator over every key, value in key order.
function Store:all()
    return self:range(nil, nil)
end

-- Applies this message's writes to the C store (called by the runner once
-- process() returned).
-- A write that the C store refuses (a failed write-out, no memory) marks
-- the store as failed and raises: the task's state is no longer what its
-- input made it, so State:drain refuses every later commit and the job
-- stops with nothing committed past its last checkpoint.
function _M.apply(st)
    local keys, p, s = st.pkeys, st.pending, st.s
    local failed
    for i = 1, #keys do
        local k = keys[i]
        local v = p[k]
        if not failed then
            local ok, err = s:set(k, v or nil)
            if not ok then
                failed = err
            end
        end
        p[k] = nil
        keys[i] = nil
    end
    if failed then
        st.failed = st.failed or failed
        error(str_format("store '%s': write failed: %s", st.name, failed), 0)
    end
end

-- Drops this message's writes (process() raised).
function _M.discard(st)
    local keys, p = st.pkeys, st.pending
    for i = 1, #keys do
        p[keys[i]] = nil
        keys[i] = nil
    end
end

-- ---- opening and restoring -------------------------------------------------

local State = {}
State.__index = State

local function task_dir(env, job_name, store_name, p)
    return str_format("%s/jobs/%s/stores/%s/%d", env.data_dir, job_name,
                      store_name, p)
end

-- Replays changelog records [from, until) of partition p into store s,
-- logging progress. Returns records, bytes; or nil, err.
local function replay(self, spec, s, cl, p, from, upto, what)
    if upto <= from then
        return 0, 0
    end
    local kafka = cl.system == "kafka"
    local r, err
    if kafka then
        r, err = cl.client:reader(cl.name, p, from)
    else
        r, err = cl.log:reader(p, from)       -- the binding's reader
    end
    if not r then
        return nil, err
    end
    local idle = 0
    local t0 = now_ms()
    local last_log = t0
    local total, bytes = 0, 0
    local want = upto - from
    while true do
        local n, b, done = s:restore(r, upto, RESTORE_CHUNK)
        if not n then
            r:close()
            return nil, b
        end
        total, bytes = total + n, bytes + b
        local now = now_ms()
        if done and kafka and r:offset() < upto then
            -- Kafka fetches in the background: nothing for a while is not
            -- the end until the reader is past `upto`, or the broker says
            -- the records left below it were compacted away.
            idle = n == 0 and idle + 1 or 0
            local _, hi = cl:range(p)
            if not hi then
                r:close()
                return nil, str_format("restoring %s task %d: the changelog "
                                       .. "topic cannot be read", spec.name,
                                       p)
            elseif hi < upto then
                r:close()
                return nil, str_format("restoring %s task %d: changelog "
                                       .. "topic %s ends at offset %.0f, "
                                       .. "before the checkpoint's %.0f: it "
                                       .. "was deleted or cut", spec.name, p,
                                       cl.name, hi, upto)
            end
            done = idle >= 4
        end
        if done then
            break
        end
        if now - last_log >= 1000 then
            local secs = (now - t0) / 1000
            local rate = total / secs
            self.log("info", str_format(
                "%s %s task %d: %d of about %d records, %.1f MB/s, "
                .. "about %.0f s left", what or "restoring", spec.name, p,
                total, want,
                bytes / secs / 1e6, rate > 0 and (want - total) / rate or 0))
            last_log = now
        end
    end
    r:close()
    return total, bytes, (now_ms() - t0) / 1000
end

-- Appends, for every key written after the checkpoint (changelog offsets
-- [from, end)), its restored value, so that the newest record per key
-- matches the store again. Returns the number of keys.
local function write_back(cl, s, p, from, upto)
    if upto <= from then
        return 0
    end
    local r, rerr = cl:reader(p, from)
    if not r then
        return nil, rerr
    end
    local keys, buf, n = {}, {}, 0
    while true do
        local got, perr = r:poll(512, buf)
        if not got then
            r:close()
            return nil, perr
        end
        if got == 0 then
            break
        end
        for i = 1, got do
            local m = buf[i]
            if m.offset >= upto then
                break
            end
            if m.key ~= nil and not keys[m.key] then
                keys[m.key] = true
                n = n + 1
            end
        end
    end
    r:close()
    for k in pairs(keys) do
        local v, err = s:get(k)
        if v == nil and err then
            return nil, err
        end
        local ok, err2 = s:set(k, v)
        if not ok then
            return nil, err2
        end
    end
    return n
end

-- Removes the live RocksDB of a store before a restore: a live store is
-- never trusted, and one that could not be removed would be reused.
local function remove_live(dir)
    local ok, err = tstore.remove(dir .. "/db")
    if not ok then
        return nil, str_format("cannot remove the old live store %s/db "
                               .. "before restoring it: %s; remove it by "
                               .. "hand and start the job again", dir, err)
    end
    return true
end

-- Opens and restores one store of one task.
function State:open_one(spec, p, ckpt)
    local dir = task_dir(self.env, self.job.name, spec.name, p)
    local cl = spec.cl and spec.cl.log         -- the tide.log object
    -- A changelog on Kafka: the client's producer takes the records.
    local kcl = spec.cl and spec.cl.system == "kafka"
                and { client = spec.cl.client, topic = spec.cl.name } or nil
    local committed = ckpt and ckpt.changelogs and ckpt.changelogs[spec.name]
    local entry = { spec = spec, dir = dir, cur_slot = nil }

    if spec.engine == "memory" or not spec.changelog then
        -- Memory: rebuilt from the changelog every start. No changelog:
        -- only a local snapshot can bring state back.
        local from, slot
        if spec.engine ~= "memory" then
            for _, sl in ipairs(SLOTS) do
                local off = read_offset(dir .. "/" .. sl)
                if off and committed and off == committed then
                    from, slot = dir .. "/" .. sl, sl
                end
            end
            if not from and committed then
                self.log("warn", str_format(
                    "store '%s' task %d has no changelog and no local "
                    .. "snapshot matching the checkpoint: it starts empty",
                    spec.name, p))
            end
            local ok, err = remove_live(dir)
            if not ok then
                return nil, err
            end
        end
        local s, err = tstore.open(dir .. "/db", {
            engine = spec.engine, partition = p, changelog = cl, from = from,
            kafka_changelog = kcl,
            cache_entries = spec.cache_entries })
        if not s then
            return nil, err
        end
        entry.s, entry.cur_slot = s, slot
        if spec.engine == "memory" and spec.changelog then
            local start, end_ = spec.cl:range(p)
            if not start then
                s:close()
                return nil, str_format("store '%s' task %d: changelog: %s",
                                       spec.name, p, tostring(end_))
            end
            local upto = committed or start
            local n, err2 = replay(self, spec, s, spec.cl, p, start, upto)
            if n and not self.read_only then
                n, err2 = write_back(spec.cl, s, p, upto, end_)
            end
            if not n then
                s:close()
                return nil, str_format("restoring store '%s' task %d from "
                                       .. "'%s': %s", spec.name, p,
                                       spec.cl_spec, err2)
            end
        end
        entry.committed = committed
        return entry
    end

    local start, end_ = spec.cl:range(p)
    if not start then
        return nil, str_format("store '%s' task %d: changelog: %s",
                               spec.name, p, tostring(end_))
    end
    if committed and committed > end_ then
        return nil, str_format(
            "changelog '%s' partition %d ends at offset %.0f, before the "
            .. "checkpoint's %.0f: it was truncated or replaced. Restore it, "
            .. "or delete the job's checkpoint.json and stores/ to rebuild "
            .. "state from the inputs", spec.cl_spec, p, end_, committed)
    end
    -- No checkpoint means nothing was ever committed: the state is empty,
    -- whatever the snapshot slots hold (a run killed between its first
    -- snapshot and its first checkpoint leaves one behind), and every
    -- record in the changelog is rolled back below.
    local upto = committed or start
    local best, best_off
    if committed then
        for _, sl in ipairs(SLOTS) do
            local off = read_offset(dir .. "/" .. sl)
            if off and off <= upto and (best_off == nil or off > best_off) then
                best, best_off = sl, off
            end
        end
    end
    if best_off and best_off < start and best_off < upto then
        best, best_off = nil, nil    -- its tail was compacted away
    end
    -- A snapshot past the checkpoint is from a commit that did not
    -- finish: never valid, and under exactly-once its changelog records
    -- were aborted, so it must not be found by a later restore below a
    -- later checkpoint either. Removed.
    for _, sl in ipairs(SLOTS) do
        local off = read_offset(dir .. "/" .. sl)
        if off and (not committed or off > upto) and not self.read_only then
            local ok, err = tstore.remove(dir .. "/" .. sl)
            if not ok then
                return nil, str_format("cannot remove the unfinished "
                                       .. "snapshot %s/%s: %s; remove it by "
                                       .. "hand", dir, sl, err)
            end
        end
    end
    local removed, rerr = remove_live(dir)
    if not removed then
        return nil, rerr
    end
    local s, err = tstore.open(dir .. "/db", {
        engine = "rocksdb", partition = p, changelog = cl,
        kafka_changelog = kcl,
        from = best and (dir .. "/" .. best) or nil,
        cache_entries = spec.cache_entries })
    if not s then
        return nil, err
    end
    local from = best_off or start
    local n, bytes, secs = replay(self, spec, s, spec.cl, p, from, upto)
    if not n then
        s:close()
        return nil, str_format("restoring store '%s' task %d from '%s': %s",
                               spec.name, p, spec.cl_spec, bytes)
    end
    local back, berr = 0, nil
    if not self.read_only then
        back, berr = write_back(spec.cl, s, p, upto, end_)
        if not back then
            s:close()
            return nil, str_format("store '%s' task %d: rolling back the "
                                   .. "changelog to the checkpoint: %s",
                                   spec.name, p, berr)
        end
    end
    -- A store that replayed nothing logs only at debug: the task's
    -- assignment line is its start summary.
    self.log((n > 0 or back > 0) and "info" or "debug", str_format(
        "store '%s' task %d: %s%s, replayed %d changelog records (%.1f MB%s)%s",
        spec.name, p,
        best and str_format("from local snapshot at offset %.0f", best_off)
             or "rebuilt from the changelog",
        committed and str_format(" to checkpoint offset %.0f", committed)
                  or " (no checkpoint yet)",
        n, (bytes or 0) / 1e6,
        (secs and secs > 0) and str_format(", %.0f MB/s",
                                           bytes / 1e6 / secs) or "",
        back > 0 and str_format("; rolled back %d keys written after the "
                                .. "checkpoint", back) or ""))
    entry.s, entry.cur_slot, entry.committed = s, best_off == upto and best
                                                  or nil, committed
    return entry
end

--- Opens the job's stores for the tasks in `parts` (a list of partitions;
--- nil: every task), restoring them to the checkpoint. `ckpt` is the
--- checkpoint's tasks table ([p] = { inputs, changelogs }). With
--- `read_only`, the changelogs are not written to (no write-back; for tide
--- state dump). More tasks come and go with add_task and remove_task.
--- Returns the state, or nil and an error.
---@return table|nil state, string|nil err
function _M.open(job, env, nparts, ckpt, log, read_only, parts)
    if parts == nil then
        parts = {}
        for p = 0, nparts - 1 do
            parts[#parts + 1] = p
        end
    end
    local self = setmetatable({ job = job, env = env, log = log,
                                read_only = read_only,
                                specs = job.store_list or {}, tasks = {},
                                standbys = {},
                                streams = {} }, State)
    if #self.specs == 0 then
        return self
    end
    if not env.data_dir then
        -- The test kit: stores in memory, no changelog, nothing restored.
        for _, spec in ipairs(self.specs) do
            spec.engine_run = "memory"
        end
    end
    local sys = job.inputs[1].system
    for _, spec in ipairs(self.specs) do
        if spec.changelog and env.data_dir then
            spec.cl_spec = _M.changelog_spec(sys, job.name, spec.name)
            local cl, err = system.open(env, spec.cl_spec, {
                create = true, partitions = nparts, compact = true,
                segment_bytes = CHANGELOG_SEGMENT_BYTES })
            if not cl then
                return nil, str_format("store '%s': changelog: %s",
                                       spec.name, err)
            end
            if cl:count() ~= nparts then
                cl:close()
                return nil, str_format("changelog '%s' has %d partitions, "
                                       .. "the job has %d tasks; it belongs "
                                       .. "to another layout of this job",
                                       spec.cl_spec, cl:count(), nparts)
            end
            spec.cl = cl
            self.streams[#self.streams + 1] = cl
        end
    end
    for _, p in ipairs(parts or {}) do
        local ok, err = self:add_task(p, ckpt[p])
        if not ok then
            self:close()
            for _, cl in ipairs(self.streams) do
                cl:close()
            end
            return nil, err
        end
    end
    return self
end

--- Opens the stores of task `p` and restores them to `entry` (its
--- checkpoint entry { inputs, changelogs }, or nil when none was saved).
--- Returns true, or nil and an error (nothing of the task stays open).
---@return boolean|nil ok, string|nil err
function State:add_task(p, entry)
    if self.tasks[p] then
        return nil, str_format("task %d is open already", p)
    end
    local env, read_only = self.env, self.read_only
    local stores, entries = {}, {}
    for _, spec in ipairs(self.specs) do
        local e, err
        if not env.data_dir then
            local s
            s, err = tstore.open(str_format("/memory/%s/%d", spec.name, p),
                                 { engine = "memory", partition = p })
            e = s and { spec = spec, s = s }
        else
            e, err = self:open_one(spec, p, entry)
        end
        if e and not read_only and spec.cl and spec.cl.log then
            -- From now on compaction may only pass what the job's
            -- checkpoint covers (nothing without one): a changelog
            -- without a 'stable' file counts as wholly committed, and
            -- records of a run that never reached its checkpoint must
            -- not replace committed ones. Restore appended nothing yet
            -- (its roll-back writes wait in the cache).
            local ok, serr = spec.cl.log:set_stable(p, e.committed or 0)
            if not ok then
                e.s:close()
                e, err = nil, str_format("store '%s': changelog: %s",
                                         spec.name, serr)
            end
        end
        if not e then
            for _, opened in ipairs(entries) do
                opened.s:close()
            end
            return nil, err
        end
        entries[#entries + 1] = e
        stores[spec.name] = setmetatable({
            s = e.s, name = spec.name, pending = {}, pkeys = {}, phits = 0,
            kenc = spec.key_serde.encode, kdec = spec.key_serde.decode,
            venc = spec.serde.encode, vdec = spec.serde.decode,
        }, Store)
    end
    self.tasks[p] = { stores = stores, entries = entries }
    return true
end

--- Closes the stores of task `p` (after a commit: what they hold past it
--- is in the changelog). No-op for a task not open.
function State:remove_task(p)
    local t = self.tasks[p]
    if t then
        for _, e in ipairs(t.entries) do
            e.s:close()
        end
        self.tasks[p] = nil
    end
end

-- ---- standby copies (docs/kafka.md "Standby replicas") --------------------

-- Opens the standby copy of one store of task p: its newest local
-- snapshot at or below `committed` (the group's checkpoint; others are
-- from a commit that did not finish and are removed), or empty.
local function open_standby(self, spec, p, committed)
    local dir = task_dir(self.env, self.job.name, spec.name, p)
    local start, end_ = spec.cl:range(p)
    if not start then
        return nil, str_format("store '%s' task %d: changelog: %s",
                               spec.name, p, tostring(end_))
    end
    local best, best_off
    for _, sl in ipairs(SLOTS) do
        local off = read_offset(dir .. "/" .. sl)
        if off and (committed == nil or off > committed) then
            local ok, err = tstore.remove(dir .. "/" .. sl)
            if not ok then
                return nil, str_format("cannot remove the unfinished "
                                       .. "snapshot %s/%s: %s", dir, sl, err)
            end
        elseif off and off >= start and (best_off == nil or off > best_off)
            then
            best, best_off = sl, off
        end
    end
    local ok, rerr = remove_live(dir)
    if not ok then
        return nil, rerr
    end
    local s, err = tstore.open(dir .. "/db", {
        engine = "rocksdb", partition = p,
        from = best and (dir .. "/" .. best) or nil,
        cache_entries = spec.cache_entries })
    if not s then
        return nil, err
    end
    return { spec = spec, dir = dir, s = s, cur_slot = best,
             committed = best_off or start }
end

--- Opens a standby copy of task `p`'s stores (a task another process of
--- the Kafka group owns): each RocksDB store with a changelog, from its
--- newest local snapshot at or below `entry` (the group's checkpoint of
--- the task, or nil), kept up by advance_standby. Nothing is written to
--- the changelogs. Returns true, or nil and an error.
function State:add_standby(p, entry)
    if self.standbys[p] or self.tasks[p] then
        return nil, str_format("task %d is open here already", p)
    end
    local list = {}
    for _, spec in ipairs(self.specs) do
        if spec.cl and spec.engine ~= "memory" and self.env.data_dir then
            local committed = entry and entry.changelogs
                              and entry.changelogs[spec.name]
            local e, err = open_standby(self, spec, p, committed)
            if not e then
                for _, opened in ipairs(list) do
                    opened.s:close()
                end
                return nil, err
            end
            list[#list + 1] = e
        end
    end
    self.standbys[p] = list
    return true
end

--- Brings task `p`'s standby copy towards `changelogs` (the changelog
--- offsets of the group's checkpoint of the task), replaying at most
--- `max` records per store, then snapshots each store that moved, so that
--- taking the task over replays only what came after. Returns the number
--- of records replayed and whether the copy is at `changelogs`; or nil
--- and an error (a checkpoint below the copy: offsets were reset; the
--- caller opens the copy again).
function State:advance_standby(p, changelogs, max)
    local list = self.standbys[p]
    if not list then
        return nil, str_format("task %d has no standby here", p)
    end
    local total, caught_up = 0, true
    for _, e in ipairs(list) do
        local spec = e.spec
        local target = changelogs and changelogs[spec.name]
        if target and target < e.committed then
            return nil, str_format("store '%s' task %d: the checkpoint's "
                                   .. "changelog offset %.0f is below the "
                                   .. "standby's %.0f", spec.name, p,
                                   target, e.committed)
        end
        if target and target > e.committed then
            local upto = target
            if max and upto - e.committed > max then
                upto, caught_up = e.committed + max, false
            end
            local n, bytes = replay(self, spec, e.s, spec.cl, p,
                                    e.committed, upto, "standby of")
            if not n then
                return nil, str_format("standby of store '%s' task %d: %s",
                                       spec.name, p, bytes)
            end
            local slot = e.cur_slot == SLOTS[1] and SLOTS[2] or SLOTS[1]
            local sdir = e.dir .. "/" .. slot
            local ok, err = e.s:snapshot(sdir)
            if ok then
                ok, err = write_offset(sdir, upto)
            end
            if not ok then
                return nil, str_format("standby of store '%s' task %d: %s",
                                       spec.name, p, tostring(err))
            end
            e.cur_slot, e.committed = slot, upto
            total = total + n
        end
    end
    return total, caught_up
end

--- The changelog offsets task `p`'s standby copy is at ({ [store] =
--- offset }), or nil when it has none.
function State:standby_offsets(p)
    local list = self.standbys[p]
    if not list then
        return nil
    end
    local offs = {}
    for _, e in ipairs(list) do
        offs[e.spec.name] = e.committed
    end
    return offs
end

--- Closes task `p`'s standby copy; its snapshots stay for a later
--- restore of the task here. No-op without one.
function State:remove_standby(p)
    local list = self.standbys[p]
    if list then
        for _, e in ipairs(list) do
            e.s:close()
        end
        self.standbys[p] = nil
    end
end

--- Returns the ctx.stores table of task `p`.
function State:stores(p)
    local t = self.tasks[p]
    return t and t.stores or {}
end

--- Returns what /metrics shows of task `p`'s stores: { [store] = { keys,
--- bytes (RocksDB's estimates; nil while it cannot tell), hits (reads
--- answered by a message's own writes or the C store's cache), misses
--- (reads of RocksDB), log_bytes (key and value bytes pushed to the
--- changelog since the store opened) } }. tide's own stores (named
--- "_...") are left out.
---@param p integer
---@return table
function State:counts(p)
    local out = {}
    local t = self.tasks[p]
    if not t then
        return out
    end
    for _, e in ipairs(t.entries) do
        local name = e.spec.name
        if name:sub(1, 1) ~= "_" then
            local s = e.s
            out[name] = {
                keys = s:count("keys"), bytes = s:count("bytes"),
                hits = (s:count("hits") or 0) + t.stores[name].phits,
                misses = s:count("misses") or 0,
                log_bytes = s:count("log_bytes") or 0,
            }
        end
    end
    return out
end

--- Returns the key and value bytes task `p`'s stores pushed to their
--- changelogs since they opened, tide's own stores included.
---@param p integer
---@return integer
function State:log_bytes(p)
    local n = 0
    local t = self.tasks[p]
    for _, e in ipairs(t and t.entries or {}) do
        n = n + (e.s:count("log_bytes") or 0)
    end
    return n
end

--- Applies the held writes of every store of task `p` (the message is
--- done).
function State:apply(p)
    for _, st in pairs(self.tasks[p].stores) do
        if st.pkeys[1] ~= nil then
            _M.apply(st)
        end
    end
end

--- Drops the held writes of task `p` (the message raised).
function State:discard(p)
    for _, st in pairs(self.tasks[p].stores) do
        if st.pkeys[1] ~= nil then
            _M.discard(st)
        end
    end
end

--- Commit step 1: drains every store's write cache into RocksDB and its
--- changelog.
function State:drain()
    for p, t in pairs(self.tasks) do
        for name, st in pairs(t.stores) do
            if st.failed then
                return nil, str_format("store '%s' task %d: a write failed "
                                       .. "(%s); nothing past the last "
                                       .. "checkpoint is committed", name, p,
                                       st.failed)
            end
        end
        for _, e in ipairs(t.entries) do
            local ok, err = e.s:flush()
            if not ok then
                return nil, str_format("store '%s': %s", e.spec.name, err)
            end
        end
    end
    return true
end

--- Commit step 3 (after every changelog record is durable): snapshots
--- each store with its changelog offset. Returns { [p] = { [store] =
--- offset } } for the checkpoint.
function State:snapshot()
    local offsets = {}
    for p, t in pairs(self.tasks) do
        local offs = {}
        for _, e in ipairs(t.entries) do
            local spec = e.spec
            if spec.cl then
                local start, end_
                if spec.cl.written_end then
                    -- Kafka: what this process wrote, as acknowledged.
                    end_ = spec.cl:written_end(p, e.committed)
                    start = end_ and 0
                else
                    start, end_ = spec.cl:range(p)
                end
                if not start or type(end_) ~= "number" then
                    -- Nothing is written yet: this commit fails, and the
                    -- job goes on to the next one (tide.worker).
                    return nil, str_format("store '%s' task %d: the end of "
                                           .. "its changelog is unknown: %s",
                                           spec.name, p, tostring(end_))
                end
                offs[spec.name] = end_
                if spec.engine == "rocksdb" then
                    local slot = e.cur_slot == SLOTS[1] and SLOTS[2]
                                 or SLOTS[1]
                    local sdir = e.dir .. "/" .. slot
                    local ok, err = e.s:snapshot(sdir)
                    if not ok then
                        return nil, str_format("store '%s' task %d: %s",
                                               spec.name, p, err)
                    end
                    ok, err = write_offset(sdir, end_)
                    if not ok then
                        return nil, err
                    end
                    e.next_slot = slot
                end
            end
        end
        offsets[p] = offs
    end
    return offsets
end

--- After the checkpoint is written: remembers which snapshot is the
--- committed one and lets compaction pass the committed offsets.
function State:committed(offsets)
    for p, t in pairs(self.tasks) do
        for _, e in ipairs(t.entries) do
            if e.next_slot then
                e.cur_slot, e.next_slot = e.next_slot, nil
            end
            local off = offsets[p] and offsets[p][e.spec.name]
            if off then
                e.committed = off
            end
            if off and e.spec.cl and e.spec.cl.log then
                local ok, err = e.spec.cl.log:set_stable(p, off)
                if not ok then
                    -- Only compaction waits for it: the checkpoint holds.
                    self.log("warn", str_format(
                        "store '%s' task %d: compaction stays behind the "
                        .. "checkpoint: %s", e.spec.name, p, err))
                end
            end
        end
    end
end

--- Closes every store. The changelog streams are the runner's to close
--- (it flushes them with the outputs).
function State:close()
    for _, t in pairs(self.tasks) do
        for _, e in ipairs(t.entries) do
            e.s:close()
        end
    end
    self.tasks = {}
    for p in pairs(self.standbys) do
        self:remove_standby(p)
    end
end

--- Returns the contents of every store, merged over tasks: { [store] =
--- { [key] = value } } (decoded). For the test kit and tide state dump.
function State:dump()
    local out = {}
    for _, spec in ipairs(self.specs) do
        out[spec.name] = {}
    end
    for _, t in pairs(self.tasks) do
        for name, st in pairs(t.stores) do
            for k, v in st:all() do
                out[name][k] = v
            end
        end
    end
    return out
end

--- Returns the changelog streams (the runner flushes them with the
--- outputs).
function State:changelogs()
    return self.streams
end

return _M
