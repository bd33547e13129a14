--- Loads a job file, applies -c overrides and validates it (docs/design.md section 3; README "Writing a job").
local loop = require("tide.loop")
local serde = require("tide.serde")
local system = require("tide.system")
local state = require("tide.state")
local timers = require("tide.timers")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local setmetatable, setfenv, loadfile, pcall = setmetatable, setfenv, loadfile, pcall
local loadstring = loadstring
local getmetatable, rawget, error = getmetatable, rawget, error
local str_format, str_match, str_find = string.format, string.match, string.find
local str_sub = string.sub
local concat, sort = table.concat, table.sort
local sethook, getinfo = debug.sethook, debug.getinfo
local jit = jit
local now_ms = loop.now

local _M = {}

-- Fields a job table may have, and what each must be.
local FIELDS = {
    name = "string", inputs = "table", outputs = "table", serde = "string",
    key_serde = "string", commit_interval = "duration",
    window_interval = "duration", on_error = "string", config = "table",
    init = "function", process = "function", window = "function",
    close = "function", stores = "table", on_reload = "function",
    reload_probation = "number", max_process_time = "duration",
    max_memory = "size", kafka = "table", processing = "string",
    standby_replicas = "number", timestamp = "function",
    max_idle = "duration0", max_out_of_orderness = "duration0",
    idle_timeout = "duration", on_timer = "function",
    dead_letters = "boolean", on_table = "function",
}

local function known_fields()
    local names = {}
    for k in pairs(FIELDS) do
        names[#names + 1] = k
    end
    sort(names)
    return concat(names, ", ")
end

local UNITS = { ms = 1, s = 1000, m = 60000, h = 3600000 }

--- Returns milliseconds for a duration: a number of seconds or a string
--- such as "250ms", "5s", "2m", "1h"; nil and an error otherwise.
---@param v number|string
---@return number|nil ms, string|nil err
function _M.duration_ms(v)
    if type(v) == "number" and v > 0 then
        return v * 1000
    end
    if type(v) == "string" then
        local n, unit = str_match(v, "^%s*([%d%.]+)%s*(%a*)%s*$")
        n = tonumber(n)
        local mul = UNITS[unit ~= "" and unit or "s"]
        if n and n > 0 and mul then
            return n * mul
        end
    end
    return nil, str_format("bad duration %s: use seconds or a string like "
                           .. "'500ms', '5s', '2m', '1h'", tostring(v))
end

--- Returns milliseconds for a duration that may be zero: as duration_ms,
--- with 0 (or "0", "0ms", ...) allowed; nil and an error otherwise.
---@param v number|string
---@return number|nil ms, string|nil err
function _M.duration0_ms(v)
    if v == 0 then
        return 0
    end
    if type(v) == "string" then
        local n, unit = str_match(v, "^%s*([%d%.]+)%s*(%a*)%s*$")
        if tonumber(n) == 0 and UNITS[unit ~= "" and unit or "s"] then
            return 0
        end
    end
    local ms = _M.duration_ms(v)
    if ms then
        return ms
    end
    return nil, str_format("bad duration %s: use seconds or a string like "
                           .. "'0', '500ms', '5s', '2m'", tostring(v))
end

local SIZE_UNITS = { [""] = 1, b = 1, k = 1024, kib = 1024, kb = 1024,
                     m = 1048576, mib = 1048576, mb = 1048576,
                     g = 1073741824, gib = 1073741824, gb = 1073741824 }

--- Returns bytes for a size: a number of bytes or a string such as
--- "512MiB", "2GiB", "64m"; nil and an error otherwise (at least 16 MiB:
--- less cannot hold a worker).
---@param v number|string
---@return number|nil bytes, string|nil err
function _M.size_bytes(v)
    local n
    if type(v) == "number" then
        n = v
    elseif type(v) == "string" then
        local num, unit = str_match(v, "^%s*([%d%.]+)%s*(%a*)%s*$")
        local mul = SIZE_UNITS[string.lower(unit or "")]
        n = tonumber(num) and mul and tonumber(num) * mul
    end
    if n and n >= 16 * 1048576 and n < 2^53 then
        return math.floor(n)
    end
    return nil, str_format("bad size %s: use bytes or a string like "
                           .. "'512MiB', '2GiB' (at least 16MiB)", tostring(v))
end

-- Parses the text of a -c value: numbers, true/false, else the string.
local function parse_value(s)
    if s == "true" then
        return true
    elseif s == "false" then
        return false
    end
    local n = tonumber(s)
    if n ~= nil and str_match(s, "^%s*[-+]?[%d%.]") then
        return n
    end
    return s
end

-- The error of override `o` (its path split into `keys`, keys[1] ==
-- "config") when the job's config table has no such key: -c sets what
-- the job declares, so that a typo is not silently ignored.
local function config_key_error(t, keys, o)
    local node, path = t.config, "config"
    if node == nil then
        return str_format("bad -c '%s': the job has no config table; "
                          .. "declare config = { %s = ... } in the job file "
                          .. "to make it settable", o, tostring(keys[2]))
    end
    for i = 2, #keys do
        if type(node) ~= "table" then
            break                      -- reported as "not a table" below
        end
        local k = keys[i]
        if node[k] == nil then
            local known = {}
            for name in pairs(node) do
                known[#known + 1] = tostring(name)
            end
            sort(known)
            return str_format("bad -c '%s': the job's %s has no key '%s' "
                              .. "(%s); declare it in the job file with a "
                              .. "default to make it settable", o, path,
                              tostring(k), #known > 0 and "its keys: "
                              .. concat(known, ", ") or "it is empty")
        end
        node, path = node[k], path .. "." .. tostring(k)
    end
    return nil
end

--- Applies "a.b.c=value" overrides to table `t` in place; a config key
--- must be declared by the job.
---@param t table
---@param overrides string[]
---@return boolean|nil ok, string|nil err
function _M.override(t, overrides)
    for _, o in ipairs(overrides or {}) do
        local path, value = str_match(o, "^([%w_%.]+)=(.*)$")
        if not path or str_find(path, "%.%.") or str_find(path, "^%.")
            or str_find(path, "%.$") then
            return nil, str_format("bad -c '%s': expected KEY=VALUE, with "
                                   .. "KEY like top_n or config.top_n", o)
        end
        local node, last = t, nil
        local keys = {}
        for k in path:gmatch("[^%.]+") do
            keys[#keys + 1] = tonumber(k) or k
        end
        if keys[1] == "kafka" and #keys > 2 then
            -- kafka.<librdkafka property>: the property keeps its dots.
            keys = { "kafka", path:sub(7) }
        end
        if keys[1] == "config" then
            local cerr = config_key_error(t, keys, o)
            if cerr then
                return nil, cerr
            end
        end
        for i = 1, #keys - 1 do
            local k = keys[i]
            if node[k] == nil then
                node[k] = {}
            elseif type(node[k]) ~= "table" then
                return nil, str_format("bad -c '%s': '%s' is a %s, not a "
                                       .. "table", o, k, type(node[k]))
            end
            node = node[k]
        end
        last = keys[#keys]
        node[last] = parse_value(value)
    end
    return true
end

-- Options an entry of inputs may have beside serde and key_serde, and
-- their types (docs/container.md "Input order").
-- `timestamp` (function(msg) -> milliseconds) names the input's event
-- time (docs/time.md).
-- `table = true` makes the input a table (docs/time.md "Tables and
-- joins"): materialized by tide into a store (`store`, default the
-- stream's name), `versioned` keeping past values for `history`.
local INPUT_OPTIONS = { bootstrap = "boolean", priority = "number",
                        broadcast = "boolean", timestamp = "function",
                        table = "boolean", versioned = "boolean",
                        history = "duration", store = "string" }

-- The options that only a table input may have.
local TABLE_ONLY = { versioned = true, history = true, store = true }

-- Normalises one entry of inputs/outputs.
local function stream_entry(job, field, i, e)
    local spec, opts
    if type(e) == "string" then
        spec, opts = e, {}
    elseif type(e) == "table" and type(e[1]) == "string" then
        spec, opts = e[1], e
        for k, v in pairs(e) do
            local want = field == "inputs" and INPUT_OPTIONS[k]
            if want then
                if want == "duration" then
                    local ok, derr = _M.duration_ms(v)
                    if not ok then
                        return nil, str_format("%s[%d]: option '%s': %s",
                                               field, i, k, derr)
                    end
                elseif type(v) ~= want then
                    return nil, str_format("%s[%d]: option '%s' must be a "
                                           .. "%s, not a %s", field, i, k,
                                           want, type(v))
                end
                if k == "priority" and (v % 1 ~= 0 or v < -1000
                                        or v > 1000) then
                    return nil, str_format("%s[%d]: priority must be a whole "
                                           .. "number from -1000 to 1000",
                                           field, i)
                end
            elseif k ~= 1 and k ~= "serde" and k ~= "key_serde" then
                return nil, str_format("%s[%d]: unknown option '%s' (known: "
                                       .. "%s)", field, i, tostring(k),
                                       field == "inputs" and "serde, "
                                       .. "key_serde, bootstrap, priority, "
                                       .. "broadcast, timestamp) or table "
                                       .. "options (table, store, versioned, "
                                       .. "history"
                                       or "serde, key_serde")
            end
        end
        if field == "inputs" then
            if opts.table ~= true then
                for k in pairs(TABLE_ONLY) do
                    if opts[k] ~= nil then
                        return nil, str_format("%s[%d]: option '%s' is for "
                                               .. "tables: add table = true",
                                               field, i, k)
                    end
                end
            elseif opts.priority ~= nil then
                return nil, str_format("%s[%d]: a table cannot have a "
                                       .. "priority: it is read first "
                                       .. "(bootstrap), or with bootstrap = "
                                       .. "false in event-time order with "
                                       .. "the inputs of priority 0", field,
                                       i)
            end
            if opts.history ~= nil and opts.versioned ~= true then
                return nil, str_format("%s[%d]: option 'history' is for "
                                       .. "versioned tables: add versioned "
                                       .. "= true", field, i)
            end
        end
    else
        return nil, str_format("%s[%d]: expected a stream name or { name, "
                               .. "serde = ... }", field, i)
    end
    local sys, name = system.parse(spec)
    if not sys then
        return nil, str_format("%s[%d]: %s", field, i, name)
    end
    local vs, err = serde.get(opts.serde or job.serde or "string")
    if not vs then
        return nil, str_format("%s[%d] '%s': %s", field, i, spec, err)
    end
    local ks
    ks, err = serde.get(opts.key_serde or job.key_serde or "string")
    if not ks then
        return nil, str_format("%s[%d] '%s': %s", field, i, spec, err)
    end
    local tbl = field == "inputs" and opts.table == true
    local bootstrap = opts.bootstrap == true
    if tbl then
        bootstrap = opts.bootstrap ~= false        -- a table: by default
    end
    return { spec = spec, system = sys, name = name, serde = vs,
             key_serde = ks, bootstrap = bootstrap,
             priority = opts.priority or 0, broadcast = opts.broadcast == true,
             timestamp = field == "inputs" and opts.timestamp or nil,
             table = tbl or nil, versioned = tbl and opts.versioned == true
             or nil, history_ms = tbl and opts.history
             and _M.duration_ms(opts.history) or nil,
             store = tbl and (opts.store or (name:gsub("[^%w_]", "_")))
             or nil }
end

--- Checks a job table and adds the normalised fields of docs/runtime.md.
--- `where` names the job in errors (its path).
---@param job table
---@param where string|nil
---@return table|nil job, string|nil err
function _M.validate(job, where)
    where = where or "job"
    local function fail(fmt, ...)
        return nil, where .. ": " .. str_format(fmt, ...)
    end
    if type(job) ~= "table" then
        return fail("the file must return a table (the job), not %s",
                    type(job))
    end
    for k, v in pairs(job) do
        local want = FIELDS[k]
        if want == nil then
            return fail("unknown field '%s' (known: %s)", tostring(k),
                        known_fields())
        end
        if want == "duration" then
            if not _M.duration_ms(v) then
                return fail("field '%s': %s", k, select(2, _M.duration_ms(v)))
            end
        elseif want == "duration0" then
            if not _M.duration0_ms(v) then
                return fail("field '%s': %s", k,
                            select(2, _M.duration0_ms(v)))
            end
        elseif want == "size" then
            if not _M.size_bytes(v) then
                return fail("field '%s': %s", k, select(2, _M.size_bytes(v)))
            end
        elseif type(v) ~= want then
            return fail("field '%s' must be a %s, not a %s", k, want, type(v))
        end
    end
    if job.name == nil then
        return fail("missing field 'name' (it names the job's checkpoints "
                    .. "and streams)")
    end
    if not str_match(job.name, "^[%w_%-][%w_%.%-]*$") or #job.name > 100 then
        return fail("bad name '%s': use letters, digits, '.', '_' and '-'",
                    job.name)
    end
    if type(job.inputs) ~= "table" or #job.inputs == 0 then
        return fail("field 'inputs' must list at least one stream")
    end
    for _, name in ipairs({ "serde", "key_serde" }) do
        if job[name] ~= nil then
            local ok, err = serde.get(job[name])
            if not ok then
                return fail("field '%s': %s", name, err)
            end
        end
    end
    local on_error = job.on_error or "fail"
    if on_error ~= "fail" and on_error ~= "skip"
        and on_error ~= "dead_letter" then
        return fail("field 'on_error' must be fail, skip or dead_letter, not "
                    .. "'%s'", tostring(on_error))
    end
    local processing = job.processing or "at_least_once"
    if processing ~= "at_least_once" and processing ~= "exactly_once" then
        return fail("field 'processing' must be at_least_once or "
                    .. "exactly_once, not '%s'", tostring(processing))
    end
    local standbys = job.standby_replicas or 0
    if standbys ~= 0 and standbys ~= 1 then
        return fail("field 'standby_replicas' must be 0 or 1, not %s",
                    tostring(standbys))
    end

    local ins, outs, seen = {}, {}, {}
    for i, e in ipairs(job.inputs) do
        local s, err = stream_entry(job, "inputs", i, e)
        if not s then
            return nil, where .. ": " .. err
        end
        if seen[s.system .. ":" .. s.name] then
            return fail("inputs: stream '%s' is listed twice", s.spec)
        end
        seen[s.system .. ":" .. s.name] = true
        ins[i] = s
    end
    -- Tables (docs/time.md "Tables and joins"): each is a store of the
    -- task that tide writes; process() gets only the other inputs.
    local tables, streams = {}, 0
    for _, s in ipairs(ins) do
        if s.table then
            local name = s.store
            if not str_match(name, "^[%w_]+$") then
                return fail("inputs: table '%s': bad store name '%s': use "
                            .. "letters, digits and '_'", s.spec, name)
            end
            if str_sub(name, 1, 1) == "_" then
                return fail("inputs: table '%s': store name '%s' starts "
                            .. "with '_', which is kept for tide's own "
                            .. "stores; name it with store = \"...\"",
                            s.spec, name)
            end
            if type(job.stores) == "table" and job.stores[name] ~= nil then
                return fail("inputs: table '%s' is kept in store '%s', "
                            .. "which is also in 'stores'; rename one (the "
                            .. "table's with store = \"...\")", s.spec,
                            name)
            end
            for _, t in ipairs(tables) do
                if t.store == name then
                    return fail("inputs: tables '%s' and '%s' are both "
                                .. "kept in store '%s'; name one with "
                                .. "store = \"...\"", t.spec, s.spec, name)
                end
            end
            tables[#tables + 1] = s
        else
            streams = streams + 1
        end
    end
    if job.process == nil and streams > 0 then
        return fail("missing field 'process' (function(msg, ctx))")
    end
    if job.on_table ~= nil and #tables == 0 then
        return fail("field 'on_table' is set but no input is a table; "
                    .. "mark one with { \"stream\", table = true }")
    end
    for i, e in ipairs(job.outputs or {}) do
        local s, err = stream_entry(job, "outputs", i, e)
        if not s then
            return nil, where .. ": " .. err
        end
        outs[i] = s
    end

    local all_stores = job.stores
    if type(all_stores) == "table" then
        for name in pairs(all_stores) do
            if type(name) == "string" and str_sub(name, 1, 1) == "_" then
                return fail("stores: store name '%s' starts with '_', which "
                            .. "is kept for tide's own stores; rename it",
                            name)
            end
        end
    end
    if job.on_timer or #tables > 0 then
        -- Timers live in a store of their own (tide.timers); each table
        -- in one named after it: a versioned one holds raw bytes (its
        -- keys carry the version's time), a plain one the input's serdes.
        all_stores = {}
        for name, opts in pairs(job.stores or {}) do
            all_stores[name] = opts
        end
        if job.on_timer then
            all_stores[timers.STORE] = timers.STORE_OPTIONS
        end
        for _, s in ipairs(tables) do
            if s.versioned then
                all_stores[s.store] = { serde = "bytes", key_serde = "bytes" }
            else
                all_stores[s.store] = { serde = s.serde.name,
                                        key_serde = s.key_serde.name }
            end
        end
    end
    local stores, serr = state.normalise(all_stores, job.serde)
    if not stores then
        return nil, where .. ": " .. serr
    end

    local norm = setmetatable({}, { __index = job })
    norm.store_list = stores
    norm.source = job
    norm.inputs = ins
    norm.tables = tables
    norm.outputs = outs
    norm.on_error = on_error
    norm.processing = processing
    norm.standby_replicas = standbys
    norm.config = job.config or {}
    local copartitioned = 0
    for _, inp in ipairs(ins) do
        if not inp.broadcast then
            copartitioned = copartitioned + 1
        end
    end
    if job.process == nil then
        norm.process = function() end           -- every input is a table
    end
    if copartitioned == 0 then
        return fail("inputs: every input is broadcast; at least one must "
                    .. "not be (its partitions make the tasks)")
    end
    norm.commit_interval_ms = _M.duration_ms(job.commit_interval or "5s")
    norm.max_process_time_ms = _M.duration_ms(job.max_process_time or "30s")
    norm.max_memory = job.max_memory and _M.size_bytes(job.max_memory)
    -- Event time (docs/time.md): waiting for an empty input, the lateness
    -- allowed, and when a silent input partition stops holding the
    -- watermark back.
    norm.max_idle_ms = _M.duration0_ms(job.max_idle or 0)
    norm.max_out_of_orderness_ms =
        _M.duration0_ms(job.max_out_of_orderness or 0)
    norm.idle_timeout_ms = _M.duration_ms(job.idle_timeout or "30s")
    if job.window then
        norm.window_interval_ms = _M.duration_ms(job.window_interval or "10s")
    end
    return norm
end

-- ---- error values ------------------------------------------------------------

local function show_value(v)
    local t = type(v)
    if t == "string" then
        if #v > 60 then
            v = str_sub(v, 1, 57) .. "..."
        end
        return str_format("%q", v)
    elseif t == "number" then
        return str_format("%.14g", v)
    elseif t == "boolean" then
        return tostring(v)
    elseif t == "table" then
        return "{...}"
    end
    return t
end

local function show_table(e)
    local items = {}
    for k, v in pairs(e) do
        if #items == 8 then
            items[#items + 1] = "..."
            break
        end
        local key
        if type(k) == "string" and str_match(k, "^[%a_][%w_]*$") then
            key = k
        else
            key = "[" .. show_value(k) .. "]"
        end
        items[#items + 1] = key .. " = " .. show_value(v)
    end
    if items[#items] == "..." then
        items[#items] = nil
        sort(items)
        items[#items + 1] = "..."
    else
        sort(items)
    end
    return "{" .. concat(items, ", ") .. "}"
end

local function errtext(e)
    local t = type(e)
    if t == "string" then
        return e
    elseif t == "nil" then
        return "error raised with no message (error(nil))"
    elseif t == "table" or t == "userdata" then
        local m = getmetatable(e)
        if type(m) == "table" and rawget(m, "__tostring") ~= nil then
            local ok, text = pcall(tostring, e)
            if ok and type(text) == "string" then
                return text
            end
        end
        if t == "table" then
            return "error object " .. show_table(e)
        end
    end
    return "error value " .. show_value(e)
end

--- Returns one readable line for an error value a job raised: strings as
--- they are, an object with __tostring through it, a plain table as
--- "error object {code = 7}", nil and other values named. Never raises.
---@param e any
---@return string
function _M.errtext(e)
    local ok, text = pcall(errtext, e)
    if ok then
        return text
    end
    return "error object (it could not be shown: " .. tostring(text) .. ")"
end

-- ---- loading under guard -------------------------------------------------------

--- The time a job file's top-level code (with the modules it requires)
--- may take to load, by default: ms.
_M.LOAD_LIMIT_MS = 10000

-- Instructions between two looks at the clock while a job file loads.
local HOOK_COUNT = 1000

--- Stands in for os.exit while job code runs: ending the process from
--- job code would skip the last commit and leave control.sock behind.
function _M.no_exit()
    error("os.exit() called: a job cannot end the process; raise an error "
          .. "instead (SIGTERM or SIGINT stops the job)", 2)
end

local guarded

-- Runs fn(...) protected, with os.exit raising instead, for at most
-- `limit_ms` of wall time. Debug hooks do not fire inside compiled traces,
-- so the JIT is off meanwhile: code compiled here later is compiled when
-- it runs hot. Once the time is up, the hook raises at every instruction
-- of the guarded code, so a pcall in the job cannot swallow the stop.
-- Returns ok, the result or error, and where the code was when the time
-- ran out (nil when it did not).
function guarded(limit_ms, fn, ...)
    local deadline = now_ms() + limit_ms
    local expired
    local function hook()
        local info = getinfo(2, "fSl")
        if info == nil or info.func == guarded then
            return
        end
        if expired == nil then
            if now_ms() < deadline then
                return
            end
            local src = info.source or "?"
            src = str_sub(src, 1, 1) == "@" and str_sub(src, 2) or info.short_src
            expired = str_format("%s:%d", src, info.currentline or 0)
            sethook(hook, "", 1)
        end
        error(expired, 0)
    end
    local exit = os.exit
    local jit_on = jit.status()
    os.exit = _M.no_exit
    jit.off()
    sethook(hook, "", HOOK_COUNT)
    local ok, res = pcall(fn, ...)
    sethook()
    if jit_on then
        jit.on()
    end
    os.exit = exit
    return ok, res, expired
end
_M.guarded = guarded

--- Returns the whole text of `file`, or nil when it cannot be read.
---@param file string
---@return string|nil
function _M.read_text(file)
    local f = io.open(file, "rb")
    if not f then
        return nil
    end
    local text = f:read("*a")
    f:close()
    return text
end
local read_text = _M.read_text

-- The environment job files run in: the standard globals, read-only, so
-- that a job that forgets 'local' gets an error instead of a shared global.
-- Its require records the modules it loads from the job's folder, which
-- hot reload watches and loads again, and the text each was loaded from
-- (`texts`, file -> text): a worker loads exactly those texts, so every
-- worker runs one version even while the files change. With `sources`
-- (file -> text) modules come from there rather than from the disk.
local function job_env(path, dir, modules, texts, sources)
    local env = { require = function(name)
        local file = package.searchpath(name, dir .. "/?.lua")
        if not file and sources and type(name) == "string" then
            local cand = dir .. "/" .. name:gsub("%.", "/") .. ".lua"
            file = sources[cand] and cand
        end
        if file and not modules[name] then
            modules[name] = file
            modules[#modules + 1] = name
        end
        if file and package.loaded[name] == nil then
            local text = sources and sources[file] or read_text(file)
            if text then
                texts[file] = text
                local chunk, err = loadstring(text, "@" .. file)
                if not chunk then
                    error(str_format("error loading module '%s' from file "
                                     .. "'%s':\n\t%s", name, file, err), 2)
                end
                local r = chunk(name, file)
                if package.loaded[name] == nil then
                    package.loaded[name] = r == nil and true or r
                end
                return package.loaded[name]
            end
        elseif file and texts[file] == nil then
            texts[file] = read_text(file)
        end
        return require(name)
    end }
    return setmetatable(env, {
        __index = _G,
        __newindex = function(_, k)
            error(str_format("%s: assignment to global '%s' (use 'local')",
                             path, tostring(k)), 2)
        end,
    })
end

--- Loads the job file at `path`, applies `overrides` ("key=value") and
--- validates it. Modules next to the job file can be required; the job's
--- `modules` lists them (name -> file). The file's top-level code and the
--- modules it requires run with os.exit raising and for at most
--- opts.limit_ms (default LOAD_LIMIT_MS). opts.reload_modules: names of
--- modules to load afresh (hot reload). opts.sources (file -> text): load
--- the job file and its modules from these texts, not from the disk. The
--- job's `sources` holds the texts it was loaded from.
---@param path string
---@param overrides string[]|nil
---@return table|nil job, string|nil err
function _M.load(path, overrides, opts)
    local sources = opts and opts.sources
    local chunk, err
    local text = sources and sources[path]
    if text == nil then
        text = read_text(path)
    end
    if text then
        chunk, err = loadstring(text, "@" .. path)
    else
        chunk, err = loadfile(path)
    end
    if not chunk then
        if str_find(err, "No such file", 1, true)
            or str_find(err, "cannot open", 1, true) then
            return nil, str_format("%s: cannot open the job file; check the "
                                   .. "path", path)
        end
        return nil, err      -- "path:line: message" from the compiler
    end
    local dir = str_match(path, "^(.*)/[^/]*$") or "."
    local lpath = dir .. "/?.lua;"
    if not str_find(package.path, lpath, 1, true) then
        package.path = lpath .. package.path
    end
    local modules, texts = {}, { [path] = text }
    for _, name in ipairs(opts and opts.reload_modules or {}) do
        package.loaded[name] = nil       -- hot reload: load them again
    end
    setfenv(chunk, job_env(path, dir, modules, texts, sources))
    -- Validation reads the table the job made, whose metatables are job
    -- code too: all of it runs under the guard.
    local limit = opts and opts.limit_ms or _M.LOAD_LIMIT_MS
    local ok, job, where = guarded(limit, function()
        local t = chunk()
        if type(t) == "table" then
            local ook, oerr = _M.override(t, overrides)
            if not ook then
                return { err = oerr }
            end
        end
        local j, verr = _M.validate(t, path)
        return j and { job = j } or { err = verr }
    end)
    if where or not ok or job.err then
        -- A module that failed to load would be "previous error loading
        -- module" to the next attempt: forget it.
        for _, name in ipairs(modules) do
            package.loaded[name] = nil
        end
    end
    if where then
        return nil, str_format("%s: top-level code still running after %g s "
                               .. "(at %s; an endless loop?): the load was "
                               .. "stopped; a job's top-level code must "
                               .. "finish, or give it more time with tide "
                               .. "run --load-timeout", path, limit / 1000,
                               where)
    end
    if not ok then
        local msg = _M.errtext(job)
        if msg == "not enough memory" then
            msg = msg .. " while loading the job file"
        end
        if str_sub(msg, 1, #path) ~= path then
            msg = path .. ": " .. msg
        end
        return nil, msg
    end
    if job.err then
        return nil, job.err
    end
    job = job.job
    job.path = path
    job.dir = dir
    job.modules = modules
    job.sources = texts
    return job
end

return _M
