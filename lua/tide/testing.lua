--- Test kit: runs a job in-process on mem: streams and returns what it
--- sent, with no files and no processes. For busted specs of jobs.
---
---     local testing = require("tide.testing")
---     local res = assert(testing.run("jobs/bot_filter.lua", {
---         partitions = 2,
---         inputs = { pageviews = { { key = "u1", value = { url = "/" } } } },
---     }))
---     res.outputs["pageviews-clean"]  -- { { key, value, partition, offset }, ... }
local job_mod = require("tide.job")
local runner = require("tide.runner")
local system = require("tide.system")
local headers = require("tide.headers")
local timers = require("tide.timers")
local serde = require("tide.serde")

local type, pairs, ipairs, tostring = type, pairs, ipairs, tostring
local str_format = string.format
local sort = table.sort

local _M = {}

-- Encodes a test value: strings are taken as the raw bytes (so a spec can
-- feed malformed input), anything else goes through the serde.
local function raw(serde, v)
    if v == nil or type(v) == "string" then
        return v
    end
    return serde.encode(v)
end

local function read_all(env, spec, kdec, vdec)
    local s = assert(system.open(env, spec, { create = false }))
    local list, buf = {}, {}
    for p = 0, s:count() - 1 do
        local r = s:reader(p, "beginning")
        while true do
            local n = assert(r:poll(256, buf))
            if n == 0 then
                break
            end
            for i = 1, n do
                local m = buf[i]
                list[#list + 1] = {
                    key = m.key ~= nil and kdec and kdec(m.key) or m.key,
                    value = m.value ~= nil and vdec and vdec(m.value)
                            or m.value,
                    partition = p, offset = m.offset, timestamp = m.timestamp,
                    headers = m.headers and headers.decode(m.headers) or nil,
                }
            end
        end
        r:close()
    end
    s:close()
    return list
end

--- Runs `job` (a path or a job table) over `opts.inputs` until they are
--- read to their end. opts: inputs = { [stream name] = { msg, ... } } with
--- msg = { key = ..., value = ..., partition = n|nil, timestamp = ms|nil,
--- headers = table|nil }; partitions (default 1); overrides ("a.b=v"
--- strings, as tide run -c); final = true (or window = true, as before)
--- to do what `tide run --drain --final` does once the inputs are
--- drained: fire every event timer and run window() once per task; log =
--- function(level, line) (default: kept in result.logs).
--- Returns result = { outputs = { [name] = { out, ... } }, dead_letters =
--- { ... }, stores = { [store] = { [key] = value } }, timers = { { key,
--- at, kind }, ... } (those still pending, in firing order), stats =
--- {...}, logs = {...}, tables = { [table input] = its contents: { [key]
--- = value }, versioned: { [key] = { { at, value }, ... } } newest first }
--- }, or nil, the error that stopped the job, and the result
--- so far. Stores are in memory and start empty.
---@param job string|table
---@param opts table|nil
---@return table|nil result, string|nil err, table|nil partial
function _M.run(job, opts)
    opts = opts or {}
    local j, err
    if type(job) == "string" then
        j, err = job_mod.load(job, opts.overrides)
    else
        local ok
        ok, err = job_mod.override(job, opts.overrides)
        if ok then
            j, err = job_mod.validate(job, job.name and ("job '" .. tostring(
                job.name) .. "'") or "job")
        end
    end
    if not j then
        return nil, err
    end

    -- Every stream moves to the mem system, whatever the job names.
    for _, list in ipairs({ j.inputs, j.outputs }) do
        for _, s in ipairs(list) do
            s.system = "mem"
            s.spec = "mem:" .. s.name
        end
    end

    local env = { mem = {} }
    local nparts = opts.partitions or 1
    for _, inp in ipairs(j.inputs) do
        local s = assert(system.open(env, inp.spec, { create = true,
                                                      partitions = nparts }))
        for _, m in ipairs(opts.inputs and opts.inputs[inp.name] or {}) do
            local ok, perr = s:push(raw(inp.key_serde, m.key),
                                    raw(inp.serde, m.value), m.partition,
                                    m.timestamp,
                                    m.headers and headers.encode(m.headers))
            if not ok then
                error(str_format("tide.testing: input '%s': %s", inp.name,
                                 perr), 2)
            end
        end
        assert(s:flush())
        s:close()
    end
    for name in pairs(opts.inputs or {}) do
        local known = false
        for _, inp in ipairs(j.inputs) do
            known = known or inp.name == name
        end
        if not known then
            error(str_format("tide.testing: '%s' is not an input of the job",
                             tostring(name)), 2)
        end
    end

    local logs = {}
    local r
    r, err = runner.new(j, env, {
        drain = true,
        collect_stores = true,
        final_window = opts.final or opts.window,
        log = opts.log or function(level, line)
            logs[#logs + 1] = level .. " " .. line
        end,
    })
    if not r then
        return nil, err
    end
    local ok, rerr = r:run()

    local result = { outputs = {}, dead_letters = {}, stats = r:stats(),
                     logs = logs, stores = r.final_stores or {},
                     timers = {} }
    local tstore = result.stores[timers.STORE]
    if tstore then
        -- Pending timers, decoded (tide.timers' layout), in firing order.
        result.stores[timers.STORE] = nil
        local ks = serde.get(j.key_serde or "string")
        for raw in pairs(tstore) do
            local kind = timers.kind_of(raw)
            if kind then
                result.timers[#result.timers + 1] = {
                    kind = kind, at = timers.read_be64(raw, 2),
                    key = ks.decode(raw:sub(10)), raw = raw }
            end
        end
        sort(result.timers, function(a, b) return a.raw < b.raw end)
        for _, t in ipairs(result.timers) do
            t.raw = nil
        end
    end
    -- Tables (tide.tables), by stream name: a plain one as { [key] =
    -- value }, a versioned one as { [key] = { { at = ms, value = v
    -- (nil: deleted) }, ... } } newest first.
    result.tables = {}
    for _, t in ipairs(j.tables or {}) do
        local st = result.stores[t.store] or {}
        if not t.versioned then
            result.tables[t.name] = st
        else
            local by = {}
            for kraw, raw in pairs(st) do
                local key = t.key_serde.decode(kraw:sub(1, -10))
                local list = by[key] or {}
                by[key] = list
                list[#list + 1] = {
                    at = 2 ^ 52 - timers.read_be64(kraw, #kraw - 7),
                    value = raw:sub(1, 1) ~= "d"
                            and t.serde.decode(raw:sub(2)) or nil }
            end
            for _, list in pairs(by) do
                sort(list, function(a, b) return a.at > b.at end)
            end
            result.tables[t.name] = by
        end
    end
    for _, o in ipairs(j.outputs) do
        result.outputs[o.name] = read_all(env, o.spec, o.key_serde.decode,
                                          o.serde.decode)
    end
    if j.on_error == "dead_letter" or j.dead_letters then
        for _, d in ipairs(read_all(env, "mem:" .. j.name .. "-dead-letters")) do
            local h = d.headers or {}
            result.dead_letters[#result.dead_letters + 1] = {
                key = d.key, value = d.value, error = h["tide.error"],
                stream = h["tide.stream"],
                partition = tonumber(h["tide.partition"]),
                offset = tonumber(h["tide.offset"]),
            }
        end
    end
    for _, list in pairs(result.outputs) do
        sort(list, function(a, b)
            if a.partition ~= b.partition then
                return a.partition < b.partition
            end
            return a.offset < b.offset
        end)
    end
    if not ok then
        return nil, rerr, result
    end
    return result
end

return _M
