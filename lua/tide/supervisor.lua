--- The supervisor: the process a user starts with `tide run`. It owns the
--- job's control socket, its checkpoint file and its workers (processes,
--- tide.worker_proc), spreads the tasks over them, moves, pauses and
--- resumes tasks, restarts a worker that dies or hangs or bloats, swaps
--- new code into every worker, and stops them all cleanly
--- (docs/container.md).
local checkpoint = require("tide.checkpoint")
local loop_mod = require("tide.loop")
local topology = require("tide.topology")
local reload_mod = require("tide.reload")
local proc = require("tide.proc")
local wire = require("tide.wire")
local ckpt_kafka = require("tide.checkpoint_kafka")
local metrics = require("tide.metrics")
local dashboard = require("tide.dashboard")

local type, pairs, ipairs, tostring, tonumber = type, pairs, ipairs, tostring, tonumber
local setmetatable = setmetatable
local str_format, concat, sort = string.format, table.concat, table.sort
local bit_band = require("bit").band
local now_ms = loop_mod.now

local _M = {}
local Sup = {}
local mt = { __index = Sup }

local SETTLE_MS = 50             -- quiet time after a file change
local TICK_MS = 100              -- watchdog period
local REQUEST_MS = 120000        -- longest wait for a worker's answer
local START_MS = 60000           -- longest wait for a worker to start
local RESTORE_MS = 6 * 3600000   -- longest wait for a task's restore
local RESTART_MAX = 5            -- deaths of one worker slot...
local RESTART_WINDOW_MS = 60000  -- ...within this time stop the job
local SIGKILL = 9

local function mib(bytes)
    return str_format("%.0f MiB", bytes / 1048576)
end

local function total_memory()
    local f = io.open("/proc/meminfo", "r")
    if not f then
        return nil
    end
    local text = f:read("*a")
    f:close()
    local kb = tonumber(text:match("MemTotal:%s*(%d+)"))
    return kb and kb * 1024
end

--- The number of cores this process may run on.
function _M.cores()
    local f = io.popen("nproc 2>/dev/null")
    local n = f and tonumber(f:read("*l"))
    if f then
        f:close()
    end
    return n or 1
end

--- Plans a job's container: opens its streams, loads and checks its
--- checkpoint. opts: { data_dir, overrides, load_limit_ms, workers,
--- drain, log, loop }. Returns the supervisor, or nil and one line.
function _M.new(job, opts)
    local env = require("tide.system").env(job, opts.data_dir)
    local self = setmetatable({
        job = job, env = env, opts = opts, log = opts.log, loop = opts.loop,
        workers = {}, owner = {}, paused = {}, give_up = {}, bad = {},
        replies = {}, rid = 0, orphans = {}, command_waiting = false,
        reloads = 0, refused = 0, rolled_back = 0,
        totals = { processed = 0, skipped = 0, dead = 0 },
        -- --http (tide.metrics): the server, each task's latest stats,
        -- its lag samples, restores under way.
        http = opts.http, tstats = {}, samples = {}, restoring = {},
        assigning = {},
    }, mt)
    local topo, err = topology.open(job, env)
    if not topo then
        return nil, err
    end
    self.nparts = topo.nparts
    self.topo = topo
    self.eos = job.processing == "exactly_once"
    local lead = ckpt_kafka.lead_input(job)
    if self.eos and not lead then
        topo:close()
        return nil, "processing = \"exactly_once\" needs the job's first "
                    .. "input on kafka: (its transactions commit the input "
                    .. "offsets to the job's Kafka group); on local: streams "
                    .. "state is exact in either mode, and outputs are "
                    .. "at-least-once"
    end
    self.lead = lead and lead.name
    self.ckpt = checkpoint.for_job(env, job)
    local saved
    saved, err = self.ckpt:load()
    if not saved then
        topo:close()
        return nil, err
    end
    local ok
    ok, err = topo:check(saved, self.ckpt.path)
    if not ok then
        topo:close()
        return nil, err
    end
    self.saved = saved
    self.version = reload_mod.version_of(job)
    local n = opts.workers or _M.cores()
    if n > self.nparts then
        n = self.nparts
    end
    self.nworkers = n
    local mem = job.max_memory
    if not mem then
        local total = total_memory() or 8 * 1073741824
        mem = math.floor(total * 0.75 / n)
    end
    self.max_memory = mem
    self.max_process_ms = job.max_process_time_ms
    return self
end

-- ---- workers -------------------------------------------------------------------

local function alive(w)
    return w and w.proc and not w.dead
end

-- True while worker `w` can still answer.
local function reachable(w)
    return alive(w) and not w.chan_closed
end

-- True when worker `w` is dead or dying (killed, or its channel closed):
-- a request to it that failed is then no error of the task's.
local function going(w)
    return not reachable(w) or w.kill_reason ~= nil
end

-- The supervisor's other concerns, one module each, add their methods.
local util = { alive = alive, mib = mib }
local RSS_EVERY_MS = require("tide.watchdog")(Sup, util)
require("tide.versions")(Sup, util)
require("tide.control")(Sup, util)
require("tide.group")(Sup, util)

-- Sends `msg` to worker `w`. Returns true, or nil and an error.
function Sup:send(w, msg)
    if not alive(w) then
        return nil, str_format("worker %d is not running", w.id)
    end
    -- false: part of it waits in the channel; pump() flushes it.
    local ok, err = w.proc.chan:send(wire.encode(msg), 10000)
    if ok == nil then
        return nil, str_format("worker %d: %s", w.id, tostring(err))
    end
    w.queued = ok == false
    return true
end

function Sup:spawn(id)
    local title = str_format("tide: %s worker %d", self.job.name, id)
    -- The worker inherits the job's run lock: a new `tide run` (or `tide
    -- state dump`) cannot start while a worker of this one still lives,
    -- even after the supervisor was killed.
    local p, err = proc.spawn({ title = title, shm_bytes = 64,
                                keep_fd = self.opts.lock_fd,
                                max_data_bytes = self.max_memory
                                                 + 256 * 1048576 })
    if not p then
        return nil, str_format("cannot start worker %d: %s", id, err)
    end
    local old = self.workers[id]
    local w = { id = id, proc = p, tasks = {}, watch = p:watch(),
                started = now_ms(), deaths = old and old.deaths or {},
                ready = false }
    w.watch_id = self.loop:watch_fd(p:fd())
    self.workers[id] = w
    local ok
    ok, err = self:send(w, {
        op = "init", id = id, path = self.job.path,
        sources = self.job.sources, version = self.version,
        overrides = self.opts.overrides or {}, data_dir = self.env.data_dir,
        load_limit_ms = self.opts.load_limit_ms, drain = self.opts.drain,
        final = self.opts.final, metrics = self.http and true or nil,
        bad = self.bad, lead = self.lead,
        txn_id = self.eos and self:txn_id(id) or nil,
    })
    if not ok then
        return nil, err
    end
    local msg
    msg, err = self:wait_reply(w, "ready", START_MS)
    if not msg then
        return nil, str_format("worker %d did not start: %s", id, err)
    end
    w.ready = true
    w.pid = p:pid()
    return w
end

-- Exactly-once: the transactional.id of worker `id`. The same worker of
-- the same job and data dir on the same host gets it again after a
-- restart, so that its new producer fences the killed one's and aborts
-- the transaction that one left open; no two live workers share it.
function Sup:txn_id(id)
    local f = io.open("/proc/sys/kernel/hostname")
    local host = f and f:read("*l") or "localhost"
    if f then
        f:close()
    end
    local dir = self.env.data_dir
    if dir:sub(1, 1) ~= "/" then
        dir = (os.getenv("PWD") or ".") .. "/" .. dir
    end
    return str_format("tide-%s-%s-%08x-w%d", self.job.name, host,
                      require("tide.partition").murmur2(dir) % 2 ^ 32, id)
end

-- Why worker `w` is gone, as a phrase.
local function death_text(status)
    if status == nil then
        return "ended"
    elseif status < 0 then
        return str_format("was killed by signal %d", -status)
    elseif status == 3 then
        return "ran out of memory"
    end
    return str_format("exited with code %d", status)
end

-- Task `p` waits for a worker (once in the list; `first`: at its head).
function Sup:add_orphan(p, first)
    if self.owner[p] then
        return
    end
    for _, q in ipairs(self.orphans) do
        if q == p then
            return
        end
    end
    table.insert(self.orphans, first and 1 or #self.orphans + 1, p)
end

--- Forgets orphan p (its task went to another process of the group).
function Sup:drop_orphan(p)
    for i, q in ipairs(self.orphans) do
        if q == p then
            table.remove(self.orphans, i)
            return
        end
    end
end

-- A worker ended: its tasks wait for a new one.
function Sup:worker_died(w, status)
    if w.dead then
        return
    end
    w.dead = true
    if w.watch_id then
        self.loop:unwatch_fd(w.watch_id)
        w.watch_id = nil
    end
    local why = w.kill_reason or death_text(status)
    local list = {}
    for p in pairs(w.tasks) do
        list[#list + 1] = p
        self.tstats[p] = nil
        self.owner[p] = nil
        self:add_orphan(p)
    end
    sort(list)
    if not self.stopping or w.kill_reason then
        if w.clean_exit then
            self.log("info", str_format("worker %d (pid %d) stopped", w.id,
                                        w.pid or 0))
        else
            self.log("warn", str_format(
                "worker %d (pid %d) %s; its tasks (%s) restart from their "
                .. "checkpoints", w.id, w.pid or 0, why,
                #list > 0 and concat(list, ", ") or "none"))
        end
    end
    w.proc:close()
    if not w.clean_exit and not self.stopping then
        local now = now_ms()
        local deaths = {}
        for _, t in ipairs(w.deaths) do
            if now - t < RESTART_WINDOW_MS then
                deaths[#deaths + 1] = t
            end
        end
        deaths[#deaths + 1] = now
        w.deaths = deaths
        if #deaths > RESTART_MAX and not w.kill_reason then
            self.fatal = str_format("worker %d died %d times within %d s "
                                    .. "(last: %s); stopping the job",
                                    w.id, #deaths, RESTART_WINDOW_MS / 1000,
                                    why)
        end
    end
end

-- Collects ended children.
function Sup:reap()
    for _, w in pairs(self.workers) do
        if alive(w) then
            local status = w.proc:reap()
            if status then
                -- What it sent before it ended (its "stopped" with its
                -- counts) is read first.
                self:pump_one(w)
                self:worker_died(w, status)
            end
        end
    end
end

-- ---- messages from workers -----------------------------------------------------

-- Keeps what a commit of worker `w` wrote, with its local copy.
function Sup:keep_entries(entries)
    for p, e in pairs(entries) do
        self.saved[p] = { inputs = e.inputs or {},
                          changelogs = e.changelogs or {} }
    end
    -- A checkpoint names every task: one not committed yet starts from the
    -- beginning, with empty stores, as with no checkpoint at all.
    for p = 0, self.nparts - 1 do
        if not self.saved[p] then
            self.saved[p] = { inputs = {}, changelogs = {} }
        end
    end
end

function Sup:on_commit(w, msg)
    local entries = wire.by_task(msg.entries)
    for p in pairs(entries) do
        if not w.tasks[p] then
            return self:send(w, { op = "commit_failed", seq = msg.seq,
                                  error = str_format("task %d is not "
                                                     .. "assigned to worker "
                                                     .. "%d", p, w.id) })
        end
    end
    if msg.txn then
        -- Exactly-once: the worker commits its transaction with the
        -- group member's metadata as it is now (a member fenced since
        -- cannot commit), then says so (txn_done).
        local gmeta
        if self.member then
            local err
            gmeta, err = self.member:group_meta()
            if not gmeta then
                return self:send(w, { op = "commit_failed", seq = msg.seq,
                                      error = err })
            end
        end
        return self:send(w, { op = "committed", seq = msg.seq,
                              gmeta = gmeta and wire.hex(gmeta) or nil })
    end
    local t0, rec = now_ms(), dashboard.commit_record(self, w, entries)
    self:keep_entries(entries)
    -- In a Kafka group only this commit's tasks are committed: the
    -- others may be another process's by now.
    local ok, err, passing = self.ckpt:save(self.saved, entries)
    if not ok and passing and self.member then
        -- A rebalance or a coordinator moving: these offsets go with the
        -- next commit; a task that moved meanwhile restarts from its last
        -- commit elsewhere (its state exact; outputs since, again).
        self.log("warn", str_format("kafka group: a commit was refused (%s);"
                                    .. " the next commit carries it", err))
        return self:send(w, { op = "committed", seq = msg.seq,
                              deferred = true })
    end
    if not ok then
        self.log("error", err)
        return self:send(w, { op = "commit_failed", seq = msg.seq,
                              error = err })
    end
    self.commits = (self.commits or 0) + 1
    dashboard.note_commit(self, rec, now_ms() - t0)
    return self:send(w, { op = "committed", seq = msg.seq })
end

function Sup:handle(w, msg)
    local op = msg.op
    if msg.rid then
        if op == "assigned" and not msg.error then
            -- Its commits may follow before the request returns.
            w.tasks[msg.task] = true
            self.owner[msg.task] = w
        end
        self.replies[msg.rid] = msg
    elseif op == "commit" then
        self:on_commit(w, msg)
    elseif op == "txn_done" then
        local entries = wire.by_task(msg.entries)
        local t0, rec = now_ms(), dashboard.commit_record(self, w, entries)
        self:keep_entries(entries)
        local ok, err = self.ckpt.file:save(self.saved)
        if not ok then
            self.log("warn", "the local copy of the checkpoint: " .. err)
        end
        self.commits = (self.commits or 0) + 1
        dashboard.note_commit(self, rec, now_ms() - t0)
    elseif op == "ready" then
        self.replies["ready" .. w.id] = msg
    elseif op == "rolled_back" then
        if self.swapping then
            -- Logged once the swap is: the log reads in order.
            self.late_rollback = self.late_rollback
                                 or { msg.version, msg.why, w }
        elseif msg.version == self.version and self.prev then
            self:rollback(msg.version, msg.why, w)
        end
    elseif op == "memory" then
        w.kill_reason = str_format("memory: process() raised not enough "
                                   .. "memory in task %d%s (worker %d past "
                                   .. "max_memory %s, or the machine's)",
                                   msg.task or -1, msg.key and str_format(
                                       " on input '%s' offset %.0f",
                                       msg.key, msg.offset) or "", w.id,
                                   mib(self.max_memory))
        self:kill_for(w, "memory", w.kill_reason, msg.key and {
            task = msg.task, input = msg.input, offset = msg.offset,
            probation = msg.probation })
    elseif op == "failed" then
        self.fatal = self.fatal or msg.error
    elseif op == "stats" then
        self:on_stats(w, msg)
    elseif op == "restore" then
        self.restoring[msg.task] = msg
    elseif op == "idle" then
        w.idle, w.idle_processed = true, msg.processed
        self.probe_soon = true       -- --drain: look now, not at the tick
    elseif op == "stopped" then
        w.clean_exit = true
        local t = self.totals
        t.processed = t.processed + (msg.processed or 0)
        t.skipped = t.skipped + (msg.skipped or 0)
        t.dead = t.dead + (msg.dead or 0)
    end
end

-- Takes every frame worker `w` sent.
function Sup:pump_one(w)
    if w.queued and not w.chan_closed then
        w.queued = w.proc.chan:flush(0) == false
    end
    while not w.chan_closed do
        local text, err = w.proc.chan:recv()
        if not text then
            if err then
                -- The worker closed its end: it is ending; reap()
                -- collects it.
                w.chan_closed = true
                if w.watch_id then
                    self.loop:unwatch_fd(w.watch_id)
                    w.watch_id = nil
                end
            end
            break
        end
        local msg, derr = wire.decode(text)
        if msg then
            self:handle(w, msg)
        else
            self.log("error", str_format("worker %d: %s; ignored", w.id,
                                         derr))
        end
    end
end

-- Takes every frame the workers sent.
function Sup:pump()
    for _, w in pairs(self.workers) do
        if alive(w) then
            self:pump_one(w)
        end
    end
end

-- Runs the loop once: children, frames, watchdog; signals and commands
-- are noted for the main loop. Waits at most `wait` ms.
function Sup:service(wait)
    local ev = self.loop:poll(wait)
    if self.http then
        self:serve_http()
    end
    if bit_band(ev, loop_mod.STOP) ~= 0 then
        self.stop_requested = true
    end
    if bit_band(ev, loop_mod.RELOAD) ~= 0 then
        self.reload_requested = "SIGHUP"
    end
    if bit_band(ev, loop_mod.CHANGE) ~= 0 then
        self.reload_at = now_ms() + SETTLE_MS
    end
    if bit_band(ev, loop_mod.COMMAND) ~= 0 then
        self.command_waiting = true
    end
    self:pump()
    if bit_band(ev, loop_mod.CHILD) ~= 0 then
        self:reap()
    end
    local now = now_ms()
    if now - (self.last_tick or 0) >= TICK_MS then
        self.last_tick = now
        self:reap()
        self:watchdog(now)
    end
end

-- Waits for the reply to request `rid` (or the unsolicited message `key`
-- of worker w), serving everything else meanwhile.
function Sup:wait_reply(w, key, timeout)
    local deadline = now_ms() + timeout
    while true do
        local msg = self.replies[key == "ready" and "ready" .. w.id or key]
        if msg then
            self.replies[key == "ready" and "ready" .. w.id or key] = nil
            return msg
        end
        if not reachable(w) then
            return nil, str_format("worker %d %s", w.id,
                                   w.kill_reason or "ended")
        end
        local left = deadline - now_ms()
        if left <= 0 then
            return nil, str_format("worker %d did not answer within %g s",
                                   w.id, timeout / 1000)
        end
        self:service(left < TICK_MS and left or TICK_MS)
    end
end

--- Sends request `msg` to worker `w` and waits for its answer. Returns
--- the answer, or nil and an error.
function Sup:request(w, msg, timeout)
    self.rid = self.rid + 1
    msg.rid = self.rid
    local ok, err = self:send(w, msg)
    if not ok then
        return nil, err
    end
    local reply
    reply, err = self:wait_reply(w, msg.rid, timeout or REQUEST_MS)
    if not reply then
        return nil, err
    end
    if reply.error then
        return nil, reply.error, reply
    end
    return reply
end

-- ---- the task lifecycle -----------------------------------------------------------

--- Assigns task `p` to worker `w`. Returns true, or nil and an error.
function Sup:assign(p, w, why)
    local g = self.give_up[p]
    local give_up
    if g and g.count >= 2 then
        give_up = { key = g.key, offset = g.offset,
                    text = g.text .. str_format(" (stopped twice at this "
                                                .. "message)") }
        self.give_up[p] = nil
    end
    -- A restore of a large store may take long; it logs its progress.
    self.assigning[p] = now_ms()
    self.restoring[p] = nil
    self.samples[p] = nil
    local reply, err = self:request(w, { op = "assign", task = p,
                                         entry = self.saved[p] or false,
                                         give_up = give_up or false,
                                         paused = self.paused[p]
                                                  or self.starting or false },
                                    RESTORE_MS)
    self.assigning[p] = nil
    self.restoring[p] = nil
    if not reply then
        return nil, str_format("assigning task %d to worker %d: %s", p,
                               w.id, err)
    end
    w.tasks[p] = true
    self.owner[p] = w
    self.log("info", str_format("task %d assigned to worker %d (pid %d)%s "
                                .. "in %.0f ms%s", p, w.id, w.pid or 0,
                                why and " (" .. why .. ")" or "",
                                reply.ms or 0,
                                self.paused[p] and "; paused" or ""),
             { event = "assigned", task = p, worker = w.id,
               ms = reply.ms or 0 })
    return true, reply.ms
end

--- Revokes task `p` from its worker (commit, close). Returns true and the
--- ms it took, or nil and an error.
function Sup:revoke(p)
    local w = self.owner[p]
    if not w then
        return nil, str_format("task %d is not assigned", p)
    end
    local reply, err = self:request(w, { op = "revoke", task = p })
    if not reply then
        return nil, str_format("revoking task %d from worker %d: %s", p,
                               w.id, err)
    end
    w.tasks[p] = nil
    self.owner[p] = nil
    self.log("info", str_format("task %d revoked from worker %d in %.0f ms",
                                p, w.id, reply.ms or 0),
             { event = "revoked", task = p, worker = w.id,
               ms = reply.ms or 0 })
    return true, reply.ms
end

function Sup:least_loaded()
    local best
    for id = 1, self.nworkers do
        local w = self.workers[id]
        if alive(w) then
            local n = 0
            for _ in pairs(w.tasks) do
                n = n + 1
            end
            if not best or n < best.n then
                best = { w = w, n = n }
            end
        end
    end
    return best and best.w
end

-- Starts workers that are missing and gives orphaned tasks a worker.
function Sup:heal()
    for id = 1, self.nworkers do
        local w = self.workers[id]
        if not alive(w) and not self.stopping and not self.fatal then
            local nw, err = self:spawn(id)
            if not nw then
                self.fatal = err
                return
            end
            if w then
                self.restarts = self.restarts + 1
                self.log("info", str_format("worker %d restarted (pid %d)",
                                            id, nw.pid))
            end
        end
    end
    while #self.orphans > 0 and not self.fatal and not self.stopping do
        local p = table.remove(self.orphans, 1)
        local w = self:least_loaded()
        if not w then
            table.insert(self.orphans, 1, p)
            return
        end
        if self.eos and self.member then
            -- Its worker may have committed a transaction and died
            -- before saying so: the group has the last commit.
            local entry, lerr = self.ckpt:load_task(p)
            if lerr then
                self:add_orphan(p, true)
                self.log("warn", str_format("task %d: %s; trying again", p,
                                            lerr))
                return
            end
            self.saved[p] = entry
        end
        local ok, err = self:assign(p, w, "restart")
        if not ok then
            self:add_orphan(p, true)
            if not going(w) then
                self.fatal = err      -- the task itself cannot be opened
            end
            return
        end
    end
end

--- Moves task `p` to worker `id`. Returns a reply line.
function Sup:move(p, id)
    local to = self.workers[id]
    if not alive(to) then
        return nil, str_format("no worker %s (workers: 1 to %d)",
                               tostring(id), self.nworkers)
    end
    local from = self.owner[p]
    if from == to then
        return nil, str_format("task %d is on worker %d already", p, id)
    end
    local t0 = now_ms()
    local ok, rms = self:revoke(p)
    if not ok then
        return nil, rms
    end
    local ams
    ok, ams = self:assign(p, to, "moved from worker " .. from.id)
    if not ok then
        self:add_orphan(p)
        return nil, ams
    end
    local total = now_ms() - t0
    self.log("info", str_format("task %d moved from worker %d to worker %d "
                                .. "in %.0f ms (revoke %.0f ms, assign %.0f "
                                .. "ms)", p, from.id, id, total, rms, ams),
             { event = "moved", task = p, from = from.id, to = id,
               ms = total })
    return str_format("task %d moved from worker %d to worker %d in %.0f ms",
                      p, from.id, id, total)
end

function Sup:set_paused(p, on)
    local w = self.owner[p]
    if not w then
        return nil, str_format("task %d is not assigned now; try again", p)
    end
    if (self.paused[p] or false) == on then
        return nil, str_format("task %d is %s already", p,
                               on and "paused" or "running")
    end
    local t0 = now_ms()
    local reply, err = self:request(w, { op = on and "pause" or "resume",
                                         task = p })
    if not reply then
        return nil, err
    end
    self.paused[p] = on or nil
    local ms = now_ms() - t0
    local line = str_format("task %d %s on worker %d in %.1f ms", p,
                            on and "paused" or "resumed", w.id, ms)
    self.log("info", line, { event = on and "paused" or "resumed", task = p,
                             worker = w.id, ms = ms })
    return line
end

-- ---- running -------------------------------------------------------------------

-- --drain: the job is done when every worker is idle twice in a row with
-- nothing processed in between (a worker's output may be another's input).
function Sup:drained()
    local total
    for _ = 1, 2 do
        local sum = 0
        for _, w in pairs(self.workers) do
            if alive(w) then
                local reply = self:request(w, { op = "probe" }, 30000)
                if not reply or not reply.idle then
                    return false
                end
                sum = sum + (reply.processed or 0)
            end
        end
        if total and total ~= sum then
            return false
        end
        total = sum
    end
    return true
end

--- Stops every worker: each finishes its batch and commits (with
--- `abort`, it does not commit: nothing may be written).
function Sup:stop_all(abort)
    self.stopping = true
    for _, w in pairs(self.workers) do
        if alive(w) then
            self:send(w, { op = abort and "abort" or "stop" })
        end
    end
    local deadline = now_ms() + REQUEST_MS
    while now_ms() < deadline do
        local any = false
        for _, w in pairs(self.workers) do
            if alive(w) then
                any = true
            end
        end
        if not any then
            return true
        end
        self:service(TICK_MS)
    end
    for _, w in pairs(self.workers) do
        if alive(w) then
            self.log("error", str_format("worker %d did not stop within %d "
                                         .. "s; killing it", w.id,
                                         REQUEST_MS / 1000))
            w.proc:kill(SIGKILL)
        end
    end
    return false
end

--- Starts the workers, assigns the tasks and serves until stopped.
--- Returns true, or nil and the error that stopped the job.
function Sup:run()
    local loop = self.loop
    self.started = now_ms()
    self.restarts = 0
    local ok, err = loop:watch_children()
    if not ok then
        return nil, "cannot watch worker processes: " .. tostring(err)
    end
    if self.http then
        ok, err = loop:watch_fd(self.http:fd())
        if not ok then
            return nil, "cannot watch the HTTP server: " .. tostring(err)
        end
        self.http_watch = ok
    end
    self.topo:close()               -- the workers open their own
    self.log("info", str_format(
        "%d worker%s; max_memory %s per worker, enforced with setrlimit "
        .. "(RLIMIT_DATA) and RSS checks every %.1f s (cgroups v2 are not "
        .. "used); max_process_time %g s", self.nworkers,
        self.nworkers == 1 and "" or "s", mib(self.max_memory),
        RSS_EVERY_MS / 1000, self.max_process_ms / 1000))
    for id = 1, self.nworkers do
        local w
        w, err = self:spawn(id)
        if not w then
            self:stop_all(true)
            return nil, err
        end
    end
    -- In a Kafka group the group says which tasks are this process's.
    local grouped = self:in_group()
    if grouped then
        ok, err = self:group_join()
        if not ok then
            self:stop_all(true)
            return nil, err
        end
    end
    -- Tasks start paused until every one is assigned: a start that fails
    -- (a store that cannot be restored) then leaves the checkpoint as it
    -- was.
    self.starting = true
    for p = 0, grouped and -1 or self.nparts - 1 do
        local w = self.workers[p % self.nworkers + 1]
        ok, err = self:assign(p, w)
        if not ok then
            if not going(w) then
                -- The task cannot be opened, and nothing ran yet: stop
                -- without writing a checkpoint.
                self:stop_all(true)
                return nil, err
            end
            -- Its worker died (stopped by a watchdog on another task):
            -- heal() starts a new one and assigns its tasks.
            self:add_orphan(p)
        end
    end
    self.starting = false
    for p = 0, grouped and -1 or self.nparts - 1 do
        local w = self.owner[p]
        if w and not self.paused[p] then
            local reply
            reply, err = self:request(w, { op = "resume", task = p })
            if not reply and not going(w) then
                self:stop_all()
                return nil, err
            end
            -- A worker that died meanwhile: its tasks are reassigned
            -- (running) by heal().
        end
    end
    self.all_started = true
    if self.opts.on_started then
        self.opts.on_started(self)
    end
    local next_probe = 0
    while true do
        -- --drain: a worker just said it is idle; probe without waiting.
        local soon = self.opts.drain and self.probe_soon
                     and #self.orphans == 0
        self:service(soon and 0 or TICK_MS)
        if self.fatal or self.stop_requested then
            break
        end
        self:heal()
        if grouped then
            ok, err = self:group_poll()
            if not ok then
                self.fatal = "kafka group: " .. tostring(err)
                break
            end
            self:group_standbys()
        end
        if self.command_waiting then
            self:serve_commands()
        end
        if self.reload_requested then
            local trigger = self.reload_requested
            self.reload_requested = nil
            self:reload(trigger)
        end
        if self.reload_at and now_ms() >= self.reload_at then
            self.reload_at = nil
            self:reload("file change", true)
        end
        if self.opts.drain and #self.orphans == 0
            and (self.probe_soon or now_ms() >= next_probe) then
            self.probe_soon = false
            next_probe = now_ms() + 200
            local all_idle = true
            for _, w in pairs(self.workers) do
                all_idle = all_idle and alive(w) and w.idle
            end
            if all_idle and self:drained() then
                break
            end
        end
    end
    if self.stop_requested then
        self.log("info", "stopping: every worker finishes its batch, then a "
                 .. "last commit")
    end
    self:stop_all()
    if self.member then
        -- Leave the group now, so that the others take the tasks over at
        -- once rather than after the session timeout.
        self.member:close()
        self.member = nil
        self.env.kafka.client = nil
    end
    local t = self.totals
    local secs = (now_ms() - self.started) / 1000
    self.log("info", str_format(
        "job '%s': %d messages processed (%.0f/s), %d skipped, %d "
        .. "dead-lettered%s", self.job.name, t.processed,
        secs > 0 and t.processed / secs or 0, t.skipped, t.dead,
        self.restarts > 0 and str_format("; %d worker restart%s (their "
                                         .. "counts are not in these)",
                                         self.restarts,
                                         self.restarts == 1 and "" or "s")
        or ""))
    if self.fatal then
        return nil, self.fatal
    end
    return true
end

-- ---- --http: /metrics and /health (tide.metrics), the dashboard and /state
-- (tide.dashboard) -----------------------------------------------------------

-- Keeps the stats worker `w` sent for its tasks, and a lag sample per
-- task at most once per commit interval (Burrow samples at commits).
function Sup:on_stats(w, msg)
    local now = now_ms()
    local every = self.job.commit_interval_ms or 5000
    if every < 1000 then
        every = 1000
    end
    for p, st in pairs(wire.by_task(msg.tasks)) do
        if w.tasks[p] then
            st.parts = wire.list(st.parts)
            st.hist = st.hist and wire.list(st.hist)
            self.tstats[p] = st
            dashboard.note_stats(self, w, p, st)
            local list = self.samples[p] or { at = 0 }
            self.samples[p] = list
            if now - list.at >= every then
                list.at = now
                local saved = self.saved[p]
                local inputs = saved and saved.inputs or {}
                local committed, lag = 0, 0
                for _, part in ipairs(st.parts) do
                    local c = inputs[part.key] or 0
                    committed = committed + c
                    if type(part["end"]) == "number" and part["end"] > c then
                        lag = lag + part["end"] - c
                    end
                end
                list[#list + 1] = { committed = committed, lag = lag }
                if #list > metrics.WINDOW then
                    table.remove(list, 1)
                end
            end
        end
    end
end

--- Returns what /metrics and /health show (tide.metrics).
function Sup:metrics_view()
    local view = {
        job = self.job.name, version = self.version, ntasks = self.nparts,
        uptime = (now_ms() - (self.started or now_ms())) / 1000,
        commits = self.commits or 0, reloads = self.reloads,
        refused = self.refused, rolled_back = self.rolled_back,
        restarts = self.restarts or 0, workers = {}, tasks = {},
        buckets = require("tide.worker").BATCH_BUCKETS,
    }
    for id = 1, self.nworkers do
        local w = self.workers[id]
        local up = alive(w) and w.ready
        view.workers[#view.workers + 1] = {
            id = id, up = up, rss = up and w.proc:rss() or nil }
    end
    local orphan = {}
    for _, p in ipairs(self.orphans) do
        orphan[p] = true
    end
    for p = 0, self.nparts - 1 do
        local w, st = self.owner[p], self.tstats[p]
        local t = { task = p, worker = w and w.id, stats = st,
                    restore = self.restoring[p] }
        if self.assigning[p] or (not self.all_started and not self.member)
        then
            t.state = "RESTORING"
        elseif w then
            if self.paused[p] then
                t.state = "PAUSED"
            elseif st and st.state == "BOOTSTRAPPING" then
                t.state, t.bootstrap = "RESTORING", true
            else
                t.state = "RUNNING"
            end
        elseif orphan[p] or not self.member then
            t.state = "FAILED"
        end
        if t.state then
            local saved = self.saved[p]
            t.committed = saved and saved.inputs
            t.lag_status = metrics.lag_status(self.samples[p] or {})
            view.tasks[#view.tasks + 1] = t
        end
    end
    return view
end

-- Answers every HTTP request that waits. A /state read waits for a
-- worker's answer, serving the loop meanwhile: requests that come then
-- wait for it (the server answers one request at a time).
function Sup:serve_http()
    local http = self.http
    if self.http_busy or http:poll() == 0 then
        return
    end
    self.http_busy = true
    while true do
        local method, target = http:pop()
        if not method then
            break
        end
        local path, query = target:match("^([^?#]*)%??([^#]*)")
        local status, ctype, body
        if method ~= "GET" and method ~= "HEAD" then
            status, ctype, body = 405, "text/plain; charset=utf-8",
                                  "405 Method Not Allowed: GET or HEAD\n"
        elseif path == "/metrics" then
            status, ctype = 200, "text/plain; version=0.0.4; charset=utf-8"
            body = metrics.prometheus(self:metrics_view())
        elseif path == "/health" then
            status, body = metrics.health(self:metrics_view())
            ctype = "application/json"
        else
            -- A fault here must not stop the job: it answers 500.
            local ok
            ok, status, ctype, body = pcall(dashboard.route, self, path,
                                            query)
            if not ok then
                self.log("error", str_format("--http %s: %s", path,
                                             tostring(status)))
                status, ctype, body = 500, "text/plain; charset=utf-8",
                                      "500 Internal Server Error: see the "
                                      .. "job's log\n"
            end
        end
        if not status then
            status, ctype, body = 404, "text/plain; charset=utf-8",
                                  "404 Not Found: try / (the dashboard), "
                                  .. "/metrics, /health, /api/status or "
                                  .. "/state/STORE/KEY\n"
        end
        http:reply(status, ctype, body)
    end
    self.http_busy = false
end

function Sup:stats()
    return { reloads = self.reloads, reloads_refused = self.refused,
             rolled_back = self.rolled_back, version = self.version,
             commits = self.commits or 0 }
end

return _M
