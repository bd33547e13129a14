-- `tide repl` in a real terminal (tmux, through spec/pty.lua), as a user
-- types at it (issue 12 "Must show": the interactive session): Tab
-- completes a store method inside a running job, a syntax error and a
-- runtime error each print one error line and the session goes on, and
-- the history survives a restart of the REPL. No time is asserted: every
-- wait is a hang guard.
local h = require("cli.helper")
local pty = require("pty")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local COUNTER = SRC .. "/spec/cli/jobs/counter.lua"

local fmt = string.format

-- The shell line that runs `words` (quoted) and then shows its exit
-- status on the screen as "exit=N": tmux does not always know the status
-- of a pane's command by the time it marks the pane dead.
local function shown_exit(words)
  local q = {}
  for i, w in ipairs(words) do q[i] = h.q(w) end
  return "sh -c " .. h.q(table.concat(q, " ") .. '; echo "exit=$?"')
end

local function count(text, plain)
  local n, at = 0, 1
  while true do
    local i = text:find(plain, at, true)
    if not i then return n end
    n, at = n + 1, i + #plain
  end
end

describe("tide repl in a terminal", function()
  local work, dir, pids, term

  before_each(function()
    work, dir = h.scratch()
    pids = {}
  end)

  after_each(function()
    if term then term:kill() end
    term = nil
    h.kill_ours(pids, work)
  end)

  it("completes, reports errors one line each, and keeps its history",
     function()
    local ok, why = pty.available()
    if not ok then
      pending("no terminal to drive: " .. tostring(why))
      return
    end
    h.ok({ "produce", "events", "-K", ":", "--partitions", "2" },
         { dir = dir, stdin = "k1:a\nk2:b\nk1:c\n" })
    local job = h.start_tide(dir, work, { "run", COUNTER, "--workers", "1" },
                             pids)
    h.wait_log(job, "started", 1, "the job's start")
    local hist = work .. "/history"
    local cmd = shown_exit({ h.bin, "repl", "--attach", COUNTER,
                             "--data-dir", dir, "--history", hist })

    term = pty.start(cmd, { HOME = work })
    term:wait_for("counter@0> $")
    -- Tab completes a method of a store, inside the job's worker.
    term:send_keys("stores.counts:inc<Tab>")
    term:wait_for("counter@0> stores%.counts:incr$")
    -- And a store read through the REPL's own proxy: s:ge<Tab>.
    term:send_keys("<C-u>s = store(1, \"counts\")<Enter>")
    term:wait_for("counter@0> $")
    term:send_keys("s:ge<Tab>")
    term:wait_for("counter@0> s:get$")
    term:send_keys("(\"k1\")<Enter>")
    -- k1 is in the task that holds it; in task 1 or not, the answer is
    -- one line: the count as a string, or nil.
    local text = term:wait_for("s:get%(\"k1\"%)\n([^\n]*)\n")
    assert.is_truthy(text)

    -- A syntax error and a runtime error: one line each, then it goes on.
    term:send_keys("x = = 1<Enter>")
    term:wait_for("error: [^\n]*unexpected symbol[^\n]*\ncounter@0> $")
    term:send_keys("error(\"boom\")<Enter>")
    term:wait_for("error: [^\n]*boom\ncounter@0> $")
    term:send_keys("1 + 41<Enter>")
    text = term:wait_for("\n42\ncounter@0> $")
    assert.are.equal(2, count(text, "error:"),
                     "one line per error:\n" .. text)
    term:send_keys("<C-d>")
    term:wait_for("\nexit=0")
    term:kill()

    -- History survives a restart: Up brings back the last line typed.
    term = pty.start(cmd, { HOME = work })
    term:wait_for("counter@0> $")
    term:send_keys("<Up>")
    term:wait_for("counter@0> 1 %+ 41$")
    term:send_keys("<Up>")
    term:wait_for("counter@0> error%(\"boom\"%)$")
    term:send_keys("<C-u><C-d>")
    term:wait_for("\nexit=0")
    local f = assert(io.open(hist, "rb"))
    local saved = f:read("*a")
    f:close()
    assert.is_truthy(saved:find("1 + 41", 1, true), saved)
    h.stop(job)
  end)

  it("prototypes without a job: completion of globals and fields",
     function()
    local ok, why = pty.available()
    if not ok then
      pending("no terminal to drive: " .. tostring(why))
      return
    end
    term = pty.start(shown_exit({ h.bin, "repl", "--data-dir", dir,
                                  "--history", work .. "/h2" }),
                     { HOME = work })
    term:wait_for("tide> $")
    term:send_keys("clicks = stream(\"clicks\")<Enter>")
    term:wait_for("tide> $")
    term:send_keys("clicks:se<Tab>")
    term:wait_for("tide> clicks:send$")
    term:send_keys("(\"u1\", { url = \"/a\" })<Enter>")
    term:wait_for("tide> $")
    term:send_keys("tail(\"clicks\")<Enter>")
    term:wait_for("0@0  \"u1\"  { url = \"/a\" }\n")
    -- A chunk over two lines continues with the >> prompt.
    term:send_keys("function twice(x)<Enter>")
    term:wait_for(">> $")
    term:send_keys("return 2 * x end<Enter>")
    term:wait_for("tide> $")
    term:send_keys("twi<Tab>")
    term:wait_for("tide> twice$")
    term:send_keys("(21)<Enter>")
    term:wait_for(fmt("\n%d\ntide> $", 42))
    term:send_keys("<C-d>")
    term:wait_for("\nexit=0")
  end)
end)
