--- The live dashboard of `tide run --http` (docs/operate.md "Dashboard"):
--- the page and its assets (lua/tide/web/, found beside this module, so
--- that an installed tide serves its own copy), /api/status that feeds
--- it, /state/STORE/KEY and /state/STORE?from=&to=&limit= reads of the
--- running job's stores, and the commit history the supervisor keeps
--- for it. Nothing here is fetched at run time from elsewhere.
local json = require("tide.json")
local wire = require("tide.wire")
local metrics = require("tide.metrics")
local realtime = require("tide.loop").realtime

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local setmetatable = setmetatable
local str_format, concat, sort = string.format, table.concat, table.sort
local char = string.char

local _M = {}

--- Commits (and reloads, tide.versions) kept for the page.
_M.HISTORY = 20
-- Entries of a range read, when the request names no limit, and at most.
local LIMIT = 1000
local LIMIT_MAX = 10000

-- The files of lua/tide/web/ served, by path, with their content types.
local ASSETS = {
    ["/"] = { "index.html", "text/html; charset=utf-8" },
    ["/dashboard.css"] = { "dashboard.css", "text/css; charset=utf-8" },
    ["/dashboard.js"] = { "dashboard.js", "text/javascript; charset=utf-8" },
}

local JSON = "application/json"

-- ---- history ---------------------------------------------------------------

--- Appends `item` to list `name` of supervisor `sup` (commit_log,
--- reload_log), keeping the last HISTORY.
local function remember(sup, name, item)
    local list = sup[name] or {}
    sup[name] = list
    list[#list + 1] = item
    if #list > _M.HISTORY then
        table.remove(list, 1)
    end
end
_M.remember = remember

-- Sums the offsets of `now` past those of `before` (both { key = offset };
-- one missing from `before` was read from 0).
local function moved(now, before)
    local n = 0
    for k, off in pairs(now or {}) do
        local b = before and tonumber(before[k]) or 0
        if type(off) == "number" and off > b then
            n = n + off - b
        end
    end
    return n
end

--- Returns the record of a commit of worker `w` with `entries` (by
--- task), taken before the supervisor keeps them: what moved since each
--- task's last checkpoint. note_commit keeps it once it is saved.
function _M.commit_record(sup, w, entries)
    local rec = { at = realtime(), worker = w.id, tasks = {}, messages = 0,
                  changelog_records = 0, changelogs = {} }
    for p, e in pairs(entries) do
        local before = sup.saved[p] or {}
        rec.tasks[#rec.tasks + 1] = p
        rec.messages = rec.messages + moved(e.inputs, before.inputs)
        rec.changelog_records = rec.changelog_records
                                + moved(e.changelogs, before.changelogs)
        for store, off in pairs(e.changelogs or {}) do
            rec.changelogs[#rec.changelogs + 1] = { task = p, store = store,
                                                    offset = off }
        end
    end
    sort(rec.tasks)
    sort(rec.changelogs, function(a, b)
        if a.task ~= b.task then
            return a.task < b.task
        end
        return a.store < b.store
    end)
    return rec
end

--- Keeps commit record `rec` whose checkpoint took `save_ms` to write.
function _M.note_commit(sup, rec, save_ms)
    sup.commit_seq = (sup.commit_seq or 0) + 1
    rec.seq, rec.save_ms = sup.commit_seq, save_ms
    remember(sup, "commit_log", rec)
end

-- The latest commit record of worker `w`, or nil.
local function latest_commit(sup, w)
    local list = sup.commit_log or {}
    for i = #list, 1, -1 do
        if list[i].worker == w.id then
            return list[i]
        end
    end
    return nil
end

-- The bytes of a commit record by task, as they come (not shown).
local bytes_of = setmetatable({}, { __mode = "k" })

local function num(v)
    return type(v) == "number"
end

--- Worker `w` sent stats `st` of task `p` (after any commit it made
--- before them): its last commit's duration (st.commit_ms) goes into
--- its latest commit record, when none is there yet; and when the task
--- took part in exactly one commit since its last stats (st.commits),
--- and that commit is the record, the bytes it wrote for the task (the
--- growth of st.commit_bytes).
function _M.note_stats(sup, w, p, st)
    local seen = sup.commit_seen or {}
    sup.commit_seen = seen
    local before = seen[p]
    if not before or before.worker ~= w.id then
        -- New on this worker: its counters start from 0.
        before = { commits = 0, bytes = 0, seq = 0 }
    end
    local rec = latest_commit(sup, w)
    seen[p] = { worker = w.id, commits = st.commits,
                bytes = st.commit_bytes, seq = rec and rec.seq or 0 }
    if not rec then
        return
    end
    if rec.ms == nil then
        rec.ms = st.commit_ms
    end
    local by = bytes_of[rec] or {}
    bytes_of[rec] = by
    if rec.seq > before.seq and by[p] == nil and num(st.commits)
       and num(before.commits) and st.commits - before.commits == 1
       and num(st.commit_bytes) and num(before.bytes) then
        for _, q in ipairs(rec.tasks) do
            if q == p then
                by[p] = st.commit_bytes - before.bytes
                rec.bytes = (rec.bytes or 0) + by[p]
            end
        end
    end
end

-- ---- /api/status -----------------------------------------------------------

-- The /api/status entry of task `t` of the metrics view.
local function task_status(t)
    local s = t.stats or {}
    local e = { task = t.task, state = t.state, worker = t.worker,
                lag_status = t.lag_status, lag = s.lag,
                processed = s.processed, sent = s.sent, skipped = s.skipped,
                dead = s.dead, batches = s.hcount, batch_seconds = s.hsum,
                watermark = s.watermark, commit_ms = s.commit_ms,
                bootstrap = t.bootstrap, inputs = {} }
    for i, part in ipairs(s.parts or {}) do
        local last = type(part["end"]) == "number" and part["end"] or nil
        e.inputs[i] = { stream = part.stream, partition = part.partition,
                        next = part.next, ["end"] = last,
                        committed = t.committed and t.committed[part.key],
                        lag = last and math.max(last - part.next, 0) }
    end
    local e2e = s.latency           -- end-to-end latency, when measured
    if type(e2e) == "table" then
        e.e2e_seconds, e.e2e_count = e2e.sum, e2e.count
    end
    local r = t.restore
    if r then
        e.restore = { store = r.store, records = r.records, total = r.total }
    end
    return e
end

-- The job's streams and stores, as Sup:describe tells them.
local function topology(sup)
    local _, text = sup:describe()
    local d = wire.decode(text)
    local out = { partitions = sup.nparts, inputs = wire.list(d.inputs),
                  outputs = wire.list(d.outputs), stores = {} }
    for i, s in ipairs(wire.list(d.stores)) do
        out.stores[i] = s
        if s.changelog then
            s.changelog_stream = str_format("%s-%s-changelog", d.name, s.name)
        end
    end
    local job = sup.job
    if job.on_error == "dead_letter" or job.dead_letters then
        out.dead_letters = job.name .. "-dead-letters"
    end
    return out
end

--- Returns the /api/status document of supervisor `sup` (docs/operate.md
--- "Dashboard" lists its fields).
function _M.status(sup)
    local view = sup:metrics_view()
    local code = metrics.health(view)
    local doc = {
        job = view.job, version = view.version, now = realtime(),
        uptime = view.uptime, status = code == 200 and "UP" or "DOWN",
        ntasks = view.ntasks, nworkers = sup.nworkers,
        commits = view.commits, restarts = view.restarts,
        reloads = { ok = view.reloads, refused = view.refused,
                    rolled_back = view.rolled_back },
        topology = topology(sup), workers = {}, tasks = {},
        commit_log = sup.commit_log or {},
        reload_log = sup.reload_log or {},
    }
    for i, w in ipairs(view.workers) do
        local sw = sup.workers[w.id]
        local tasks = {}
        for p in pairs(sw and sw.tasks or {}) do
            tasks[#tasks + 1] = p
        end
        sort(tasks)
        doc.workers[i] = { id = w.id, up = w.up or false, rss = w.rss,
                           pid = sw and sw.pid, tasks = tasks }
    end
    for i, t in ipairs(view.tasks) do
        doc.tasks[i] = task_status(t)
    end
    return doc
end

-- ---- /state ----------------------------------------------------------------

-- Decodes %XX escapes (and '+' as a space when `form`); nil when an
-- escape is malformed.
local function unescape(s, form)
    if form then
        s = s:gsub("%+", " ")
    end
    if s:find("%%%X") or s:find("%%%x%X") or s:find("%%.?$") then
        return nil
    end
    return (s:gsub("%%(%x%x)", function(h)
        return char(tonumber(h, 16))
    end))
end
_M.unescape = unescape

-- The query of a range read: { from, to, limit }, or nil and an error.
local function range_query(query)
    local q = {}
    for pair in (query or ""):gmatch("[^&]+") do
        local k, v = pair:match("^([^=]*)=?(.*)$")
        local name, value = unescape(k, true), unescape(v, true)
        if not name or not value then
            return nil, str_format("bad escape in '%s'", pair)
        end
        if name ~= "from" and name ~= "to" and name ~= "limit" then
            return nil, str_format("unknown parameter '%s' (from, to, limit)",
                                   name)
        end
        q[name] = value
    end
    if q.limit then
        local n = tonumber(q.limit)
        if not n or n % 1 ~= 0 or n < 1 or n > LIMIT_MAX then
            return nil, str_format("limit: a whole number from 1 to %d "
                                   .. "expected, got '%s'", LIMIT_MAX,
                                   q.limit)
        end
        q.limit = n
    end
    q.limit = q.limit or LIMIT
    return q
end

-- Orders keys as the stores do (byte order of strings; numbers before
-- strings), across tasks.
local function key_before(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then
        return ta < tb
    end
    if ta == "string" or ta == "number" then
        return a < b
    end
    return tostring(a) < tostring(b)
end

-- A JSON answer of `status` with document `doc`.
local function answer(status, doc)
    return status, JSON, json.encode(doc) .. "\n"
end

-- An error answer: { error = one line }.
local function refuse(status, fmt, ...)
    return answer(status, { error = str_format(fmt, ...) })
end

-- Asks task `p` inspection `args` (tide.inspect's store read). Returns
-- its answer, or nil, an HTTP status and the error.
local function ask(sup, p, args)
    if not sup.owner[p] then
        return nil, 503, str_format("task %d is not assigned now (starting, "
                                    .. "restoring or restarting); try again",
                                    p)
    end
    args.task = p
    local ok, text = sup:inspect("store", json.encode(args))
    if not ok then
        return nil, 500, text
    end
    return wire.decode(text)
end

-- True when task `p` is another process's (Kafka group): not asked.
local function elsewhere(sup, p)
    return sup.member ~= nil and not sup.owner[p]
end

local function state_get(sup, store, key)
    local value_of = require("tide.repl.attach").value_of
    local asked = 0
    for p = 0, sup.nparts - 1 do
        if not elsewhere(sup, p) then
            asked = asked + 1
            local r, code, err = ask(sup, p, { store = store, read = "get",
                                               key = key })
            if not r then
                return refuse(code, "%s", err)
            end
            if r.found then
                return answer(200, { store = store, key = key,
                                     value = value_of(r.value), task = p,
                                     worker = r.worker,
                                     offsets = r.offsets or {} })
            end
        end
    end
    return answer(404, {
        error = str_format("key '%s' is not in store '%s' of running job "
                           .. "'%s' (asked its %d task%s%s)", key, store,
                           sup.job.name, asked, asked == 1 and "" or "s",
                           sup.member and " in this process" or ""),
        store = store, key = key })
end

local function state_scan(sup, store, q)
    local value_of = require("tide.repl.attach").value_of
    local entries = {}
    for p = 0, sup.nparts - 1 do
        local args = { store = store, read = "scan", from = q.from,
                       to = q.to, limit = q.limit }
        if elsewhere(sup, p) then
            args = nil
        end
        while args do
            local r, code, err = ask(sup, p, args)
            if not r then
                return refuse(code, "%s", err)
            end
            for _, e in ipairs(wire.list(r.entries or {})) do
                entries[#entries + 1] = { key = value_of(e.k),
                                          value = value_of(e.v), task = p }
            end
            if r.done then
                break
            end
            args = { store = store, read = "scan", scan = r.scan }
        end
    end
    sort(entries, function(x, y) return key_before(x.key, y.key) end)
    local more = #entries > q.limit
    for i = #entries, q.limit + 1, -1 do
        entries[i] = nil
    end
    return answer(200, { store = store, from = q.from, to = q.to,
                         limit = q.limit, count = #entries, more = more,
                         entries = entries })
end

-- The names of the job's stores, sorted.
local function store_names(sup)
    local names = {}
    for _, s in ipairs(sup.job.store_list or {}) do
        names[#names + 1] = s.name
    end
    sort(names)
    return names
end

-- /state/STORE/KEY and /state/STORE?from=A&to=B&limit=N.
local function state(sup, rest, query)
    local raw_store, raw_key = rest:match("^([^/]*)/(.*)$")
    raw_store = raw_store or rest
    local store = unescape(raw_store)
    local key = raw_key and unescape(raw_key)
    if not store or (raw_key and not key) then
        return refuse(400, "bad %%-escape in the path")
    end
    if store == "" then
        return refuse(400, "no store: /state/STORE/KEY or "
                      .. "/state/STORE?from=A&to=B&limit=N")
    end
    local names = store_names(sup)
    local known = false
    for _, n in ipairs(names) do
        known = known or n == store
    end
    if not known then
        return answer(404, { error = str_format(
            "job '%s' has no store '%s' (stores: %s)", sup.job.name, store,
            #names > 0 and concat(names, ", ") or "none"), stores = names })
    end
    if key then
        if key == "" then
            return refuse(400, "empty key: /state/%s/KEY", store)
        end
        if query and query ~= "" then
            return refuse(400, "a key read takes no parameters (from, to "
                          .. "and limit are for /state/%s?...)", store)
        end
        return state_get(sup, store, key)
    end
    local q, err = range_query(query)
    if not q then
        return refuse(400, "%s", err)
    end
    return state_scan(sup, store, q)
end

-- ---- the assets ------------------------------------------------------------

-- The folder of the assets: web/ beside this module, wherever it was
-- installed.
local function web_dir()
    local here = package.searchpath("tide.dashboard", package.path)
    if not here then
        return nil
    end
    return (here:gsub("[^/]*$", "")) .. "web/"
end
_M.web_dir = web_dir

local cache = {}

-- The text of asset `name`, or nil and an error.
local function asset(name)
    if cache[name] then
        return cache[name]
    end
    local dir = web_dir()
    local f = dir and io.open(dir .. name, "rb")
    if not f then
        return nil, str_format("the dashboard's %s is missing (looked in %s); "
                               .. "reinstall tide", name,
                               tostring(dir or "web/ beside tide.dashboard"))
    end
    local text = f:read("*a")
    f:close()
    cache[name] = text
    return text
end

--- Answers GET `path` (and query `query`) when it is the dashboard's:
--- returns the status, content type and body, or nil for another path.
function _M.route(sup, path, query)
    local a = ASSETS[path] or (path == "/index.html" and ASSETS["/"])
    if a then
        local text, err = asset(a[1])
        if not text then
            return 500, "text/plain; charset=utf-8", err .. "\n"
        end
        return 200, a[2], text
    elseif path == "/api/status" then
        return answer(200, _M.status(sup))
    elseif path == "/state" or path == "/state/" then
        return refuse(400, "no store: /state/STORE/KEY or "
                      .. "/state/STORE?from=A&to=B&limit=N")
    end
    local rest = path:match("^/state/(.*)$")
    if rest then
        return state(sup, rest, query)
    end
    return nil
end

return _M
