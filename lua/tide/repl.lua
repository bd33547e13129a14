--- `tide repl [JOB] [--attach JOB]`: an interactive LuaJIT prompt for
--- prototyping pipelines and for looking inside a running job
--- (docs/repl.md). This module reads chunks (a line, or several while a
--- chunk is incomplete), evaluates them and prints their values; the
--- helpers come from tide.repl.proto (prototyping) and tide.repl.attach
--- (a running job).
local pretty = require("tide.repl.pretty")
local complete = require("tide.repl.complete")
local bit = require("bit")

local type, pairs, ipairs, tostring, select = type, pairs, ipairs, tostring, select
local setmetatable, setfenv, loadstring = setmetatable, setfenv, loadstring
local xpcall, traceback = xpcall, debug.traceback
local str_format, str_match, str_sub, str_find = string.format, string.match, string.sub, string.find
local concat = table.concat


local _M = {}

local USAGE = [[
usage: tide repl [JOB] [--attach JOB] [-c KEY=VALUE]... [--data-dir DIR]
                 [--history FILE]
A LuaJIT prompt with tide's helpers (type help() at the prompt).
  JOB           load the job file JOB, ready to run over its real inputs
                in a scratch copy (its checkpoint and stores are never
                touched): run(job), describe(job), tail(...)
  --attach JOB  connect to the running job JOB (a file or a name) through
                its control socket: tasks(), store(task, name), pause(t),
                resume(t), reload(), tap(stream, n), trace(task, n, filter);
                any other line is evaluated inside the job, in the worker
                of the current task (task(N) picks it), with ctx
  --history FILE  where the history is kept (default ~/.tide_history)
When stdin is not a terminal, lines are evaluated as they come, with no
prompt; the exit code is 1 if a line failed.
]]

-- ---- chunks ---------------------------------------------------------------------

-- True when `err` (from loadstring) says the chunk only ended too soon.
local function incomplete(err)
    return str_find(err, "<eof>", 1, true) ~= nil
end

--- Compiles `text` for the prompt: `=expr` and a bare expression print
--- their value. Returns the function, or nil and the error, and whether
--- the chunk is only incomplete.
function _M.compile(text, name)
    if str_sub(text, 1, 1) == "=" then
        text = "return " .. str_sub(text, 2)
    end
    local fn = loadstring("return " .. text, name)
    if fn then
        return fn
    end
    local err
    fn, err = loadstring(text, name)
    if fn then
        return fn
    end
    return nil, err, incomplete(err)
end

local function pack(...)
    return { n = select("#", ...), ... }
end

-- Shortens a traceback to the lines of the evaluated code.
local function on_error(e)
    if type(e) ~= "string" then
        local ok, s = pcall(pretty.format, e, { width = 1e9, max_lines = 1 })
        e = ok and s or tostring(e)
    end
    return e
end

--- A session: the environment chunks run in, the chunks kept for
--- save(), and where output goes.
local Session = {}
Session.__index = Session

function _M.session(opts)
    opts = opts or {}
    local self = setmetatable({
        out = opts.out or io.stdout, err = opts.err or io.stderr,
        chunks = {}, assigned = {}, current = nil, failed = 0,
        interactive = opts.interactive,
    }, Session)
    local helpers, vars = {}, {}
    self.helpers, self.vars = helpers, vars
    -- The chunks' globals live in `vars`, behind an empty proxy, so that
    -- every assignment (not only the first of a name) is seen: save()
    -- writes the last definition of each.
    self.env = setmetatable({}, {
        __index = function(_, k)
            local v = vars[k]
            if v ~= nil then
                return v
            end
            v = helpers[k]
            if v ~= nil then
                return v
            end
            return _G[k]
        end,
        __newindex = function(_, k, v)
            if self.current then
                self.assigned[k] = self.current
            end
            vars[k] = v
        end,
    })
    return self
end

--- Prints the values of a chunk.
function Session:show(res)
    for i = 1, res.n do
        local ok, text = pcall(pretty.show, res[i])
        self.out:write(ok and text or ("<cannot print: " .. tostring(text)
                                       .. ">"), "\n")
    end
    self.out:flush()
end

--- Evaluates one complete chunk `text` (already compiled as `fn`).
--- Returns true, or nil after printing the error.
function Session:eval(text, fn)
    local idx = #self.chunks + 1
    self.chunks[idx] = { text = text }
    self.current = idx
    setfenv(fn, self.env)
    local res = pack(xpcall(fn, on_error))
    self.current = nil
    if not res[1] then
        self.chunks[idx].failed = true
        self:error(res[2])
        return nil
    end
    local vals = { n = res.n - 1 }
    for i = 2, res.n do
        vals[i - 1] = res[i]
    end
    self:show(vals)
    return true
end

--- True once after Ctrl-C was pressed (interactive only): long helpers
--- (tail with follow, tap, trace) stop then.
function Session:interrupted()
    local lp = self.sigloop
    if not lp then
        return false
    end
    local ev = lp:poll(0)
    return bit.band(ev, require("tide.loop").STOP) ~= 0
end

--- Prints one error line (and counts it, for the exit code).
function Session:error(msg)
    self.failed = self.failed + 1
    msg = tostring(msg):gsub("^%[string \"[^\"]*\"%]:", "stdin:")
    self.err:write("error: ", msg, "\n")
    self.err:flush()
end

--- Feeds one line; returns "more" when the chunk goes on, else "done".
function Session:feed(line)
    local pending = self.pending
    local text = pending and (pending .. "\n" .. line) or line
    if not pending and str_match(text, "^%s*$") then
        return "done"
    end
    local fn, err, more = _M.compile(text, "=stdin")
    if not fn then
        if more then
            self.pending = text
            return "more"
        end
        self.pending = nil
        self:error(err)
        return "done"
    end
    self.pending = nil
    -- Attached: lines that call no helper of the REPL run in the job.
    if self.route and self:route(text) then
        return "done"
    end
    self:eval(text, fn)
    return "done"
end

-- ---- completion -------------------------------------------------------------------

--- Completions of the last word of `text` in the session: globals,
--- fields after '.', methods after ':' (tide.repl.complete). Attached,
--- a line that would run in the job is completed there.
function Session:complete(text)
    if self.complete_remote and not self.calls_local(text) then
        local list = self.complete_remote(text)
        if list then
            return list
        end
    end
    return complete.candidates(text, self.env, { self.vars, self.helpers, _G })
end

-- ---- the loop ---------------------------------------------------------------------

local isatty = require("tide.fs").isatty

-- Reads and evaluates until EOF. Returns the exit code.
local function loop(self, history)
    local tty = isatty(0) and isatty(1)
    local ed
    if tty then
        local ok, lineedit = pcall(require, "tide.lineedit")
        if ok and lineedit.available() then
            ed = lineedit.new({
                history = history,
                complete = function(text)
                    return self:complete(text)
                end,
            })
        end
    end
    self.interactive = tty
    if tty then
        -- Ctrl-C stops a tail, tap or trace (Session:interrupted) instead
        -- of the REPL; Ctrl-D leaves.
        local lp = require("tide.loop").new()
        if lp then
            self.sigloop = lp
        end
        self.out:write(self.banner or "tide repl: help() lists the helpers; "
                       .. "Ctrl-D leaves\n")
    end
    while true do
        local prompt = self.pending and ">> " or (self.prompt or "tide> ")
        local line
        local why
        if ed then
            line, why = ed:read(prompt)
            if why == "interrupt" then
                -- Ctrl-C at the prompt drops the chunk being typed.
                self.pending = nil
                line = ""
            end
        else
            if tty then
                self.out:write(prompt)
                self.out:flush()
            end
            line = io.stdin:read("*l")
        end
        if line == nil then
            break
        end
        self:feed(line)
    end
    if ed then
        ed:close()
    end
    if self.pending then
        self:error("the input ended inside a chunk: " ..
                   (self.pending:match("^[^\n]*") or ""))
        self.pending = nil
    end
    if tty then
        self.out:write("\n")
    end
    return (not tty and self.failed > 0) and 1 or 0
end
_M.loop = loop

--- `tide repl` with its arguments; returns the exit code.
function _M.main(args, common)
    local o = common
    local attach, history
    local pos = {}
    local i = 1
    while i <= #o.pos do
        pos[#pos + 1] = o.pos[i]
        i = i + 1
    end
    for k = 1, #args do
        local a = args[k]
        if a == "--help" or a == "-h" then
            io.stdout:write(USAGE)
            return 0
        end
    end
    attach = o.attach
    history = o.history or ((os.getenv("HOME") or ".") .. "/.tide_history")
    if #pos > 1 then
        io.stderr:write("tide repl: one JOB at most (see 'tide repl --help')\n")
        return 2
    end
    local self = _M.session()
    local proto = require("tide.repl.proto")
    local ok, err = proto.install(self, { data_dir = o.data_dir,
                                          job = pos[1],
                                          overrides = o.overrides,
                                          scratch = o.scratch })
    if not ok then
        io.stderr:write("tide repl: ", err, "\n")
        return 1
    end
    if attach then
        ok, err = require("tide.repl.attach").install(self, {
            data_dir = o.data_dir, target = attach })
        if not ok then
            io.stderr:write("tide repl: ", err, "\n")
            return 1
        end
    end
    local code = loop(self, history)
    if self.close then
        self:close()
    end
    return code
end

_M.USAGE = USAGE
return _M
