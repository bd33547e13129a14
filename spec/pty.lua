-- Drives a program in a real terminal for the specs: a tmux server of its
-- own (private socket, no config of the user's) runs the command in a
-- pane, keys are sent to it, and the screen is read back. For the line
-- editor and the REPL, which behave differently when stdin is not a tty.
--
--   local pty = require("pty")
--   local t = pty.start("luajit prog.lua", { HOME = dir })
--   t:wait_for("> $")                     -- the prompt
--   t:send_keys("x.co<Tab><Enter>")       -- text, and keys in <...>
--   t:wait_for("GOT:x%.count")
--   t:kill()
--
-- Keys in angle brackets are tmux key names: <Enter>, <Tab>, <Up>,
-- <Down>, <Left>, <Right>, <BSpace>, <Escape>, <C-c>, <C-d>, <M-b> ...;
-- <lt> sends a literal '<'. wait_for raises, with the screen, when the
-- pattern does not show up in time: a hang guard, not a timing check.
local M = {}

local Term = {}
local term_mt = { __index = Term }

local function q(s)
    return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function sh(cmd)
    local p = assert(io.popen(cmd .. " 2>&1"))
    local out = p:read("*a")
    local ok, _, code = p:close()
    if type(ok) == "number" then              -- LuaJIT without 5.2 compat
        code = ok
        ok = code == 0
    end
    return out, ok, code
end

local function sleep(s)
    os.execute("sleep " .. s)
end

local function now()
    local p = assert(io.popen("date +%s%N"))
    local ns = tonumber(p:read("*l"))
    p:close()
    return ns / 1e9
end

--- Returns true when tmux is there to drive a terminal, else false and
--- why (for a spec's pending()).
function M.available()
    local _, ok = sh("command -v tmux")
    if not ok then
        return false, "needs tmux to drive a terminal (Debian package tmux)"
    end
    return true
end

--- Starts `cmd` (a shell command line, or an array of words to quote)
--- in a fresh terminal of `opts.width` x `opts.height` (default 120 x
--- 40), with the variables of `env` set on top of this process's
--- environment. The pane stays after the command ends, so that its last
--- screen and exit status can be read.
function M.start(cmd, env, opts)
    opts = opts or {}
    if type(cmd) == "table" then
        local words = {}
        for i, w in ipairs(cmd) do
            words[i] = q(w)
        end
        cmd = table.concat(words, " ")
    end
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 0700 " .. q(dir)) == 0)
    local conf = dir .. "/tmux.conf"
    local f = assert(io.open(conf, "w"))
    f:write("set -g remain-on-exit on\n",
            "set -g status off\n",
            "set -g history-limit 10000\n",
            "set -g default-shell /bin/sh\n",
            "set -g escape-time 0\n")
    f:close()
    local words = {}
    for k, v in pairs(env or {}) do
        words[#words + 1] = q(k .. "=" .. v)
    end
    table.sort(words)
    local line = "exec env " .. table.concat(words, " ") .. " " .. cmd
    local t = setmetatable({
        dir = dir,
        tmux = "env -u TMUX tmux -S " .. q(dir .. "/sock") .. " -f "
               .. q(conf),
    }, term_mt)
    local out, ok = sh(string.format("%s new-session -d -x %d -y %d %s",
                                     t.tmux, opts.width or 120,
                                     opts.height or 40, q(line)))
    if not ok then
        os.execute("rm -rf " .. q(dir))
        error("pty: cannot start tmux: " .. out, 2)
    end
    return t
end

--- Sends `keys`: text as typed, and tmux key names in angle brackets
--- ("x.co<Tab><Enter>").
function Term:send_keys(keys)
    local pos = 1
    while pos <= #keys do
        local s, e, name = keys:find("<([%w%-]+)>", pos)
        local text = keys:sub(pos, (s or #keys + 1) - 1)
        if text ~= "" then
            local out, ok = sh(self.tmux .. " send-keys -l -- " .. q(text))
            assert(ok, "pty: send-keys: " .. out)
        end
        if not s then
            break
        end
        local key = name == "lt" and "<" or name
        local out, ok = sh(self.tmux .. " send-keys " .. q(key))
        assert(ok, "pty: send-keys " .. key .. ": " .. out)
        pos = e + 1
    end
end

--- Returns the pane's text: what scrolled off, then the screen, with
--- wrapped lines joined and the empty lines below the last one dropped
--- (trailing spaces stay: "> " is a prompt waiting).
function Term:capture()
    local out = sh(self.tmux .. " capture-pane -p -J -S -")
    return (out:gsub("\n+$", ""))
end

--- Waits until Lua pattern `pattern` matches the pane's text, for at
--- most `timeout` seconds (default 10); returns the text and the
--- pattern's captures. Raises with the text when it does not.
function Term:wait_for(pattern, timeout)
    local deadline = now() + (timeout or 10)
    local text
    repeat
        text = self:capture()
        local found = { text:find(pattern) }
        if found[1] then
            return text, select(3, unpack(found))
        end
        sleep(0.05)
    until now() > deadline
    error(string.format("pty: no %q on the screen after %s s; it shows:\n%s",
                        pattern, tostring(timeout or 10), text), 2)
end

--- Returns the command's exit status once it has ended, else nil.
function Term:status()
    local out = sh(self.tmux .. " display-message -p "
                   .. q("#{pane_dead} #{pane_dead_status} "
                        .. "#{pane_dead_signal}"))
    local dead, code, sig = out:match("^(%d) ?(%d*) ?(%d*)")
    if dead == "1" then
        -- tmux marks the pane dead a moment before it knows how the
        -- command ended: until then, not known yet. A signal is 128+n.
        if code ~= "" then
            return tonumber(code)
        elseif sig ~= "" then
            return 128 + tonumber(sig)
        end
        -- Else the line remain-on-exit writes says it: "Pane is dead
        -- (status N, ...)" or "(signal N, ...)".
        local text = self:capture()
        local st = text:match("Pane is dead %(status (%d+)")
        if st then
            return tonumber(st)
        end
        st = text:match("Pane is dead %(signal (%d+)")
        if st then
            return 128 + tonumber(st)
        end
    end
    return nil
end

--- Waits (at most `timeout` seconds, default 10) for the command to end
--- and returns its exit status; raises with the screen when it does not.
function Term:wait_exit(timeout)
    local deadline = now() + (timeout or 10)
    repeat
        local code = self:status()
        if code then
            return code
        end
        sleep(0.05)
    until now() > deadline
    error("pty: the command did not end; the screen shows:\n"
          .. self:capture(), 2)
end

--- Ends the terminal, its command and its tmux server; safe to call
--- twice.
function Term:kill()
    if self.dir then
        sh(self.tmux .. " kill-server")
        os.execute("rm -rf " .. q(self.dir))
        self.dir = nil
    end
end

return M
