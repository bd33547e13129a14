-- End to end: a stream-table join over a backlog (issue 11 "Must show",
-- "Join correctness"). 300,000 profiles are in the log, then the page
-- views; spec/cli/jobs/join_bootstrap.lua (jobs/profile_join.lua with
-- `bootstrap = true` on its profiles input) must send no view out
-- without its profile: with --workers 2, and after SIGKILLs of the
-- supervisor mid-run and restarts. The same job without `bootstrap`
-- shows that this input does catch a job that reads views too early.
-- The random seed is printed; rerun with TIDE_JOIN_SEED=<seed>.
local h = require("cli.helper")

local ASAN = (os.getenv("TIDE_BUILD_DIR") or ""):find("asan") ~= nil
local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local JOIN = SRC .. "/spec/cli/jobs/join_bootstrap.lua"

local N_PROFILES = ASAN and 60000 or 300000
local N_VIEWS = ASAN and 30000 or 300000
local PARTS = 4

local fmt = string.format

local SEED = tonumber(os.getenv("TIDE_JOIN_SEED") or "")
if not SEED then
  SEED = os.time() * 1000 + math.floor((os.clock() * 1e6) % 1000)
end
io.stderr:write(fmt("join_spec: seed %d (rerun with TIDE_JOIN_SEED=%d)\n",
                    SEED, SEED))
math.randomseed(SEED)
local rand = math.random

-- Writes the profiles, then the views (each of a user with a profile,
-- with "ts" = its number 1..N_VIEWS) to data dir `dir`.
local function write_backlog(dir, work)
  local profiles, views = work .. "/profiles", work .. "/views"
  h.write_lines(profiles, N_PROFILES, function(i)
    return fmt('u%d:{"name":"n%d","country":"fr","plan":"free"}', i, i)
  end)
  h.write_lines(views, N_VIEWS, function(i)
    local u = rand(1, N_PROFILES)
    return fmt('u%d:{"user":"u%d","url":"/p%d","ua":"m","ts":%d}', u, u,
               i % 50, i)
  end)
  for _, s in ipairs({ "profiles", "views" }) do
    h.ok({ "produce", s == "views" and "pageviews" or s, "-K", ":",
           "--partitions", tostring(PARTS) },
         { dir = dir, stdin_file = work .. "/" .. s })
    os.remove(work .. "/" .. s)
  end
end

-- The enriched views: the number without a profile, and which view
-- numbers (ts) have an output at all.
local function enriched(dir)
  local r = h.tide({ "consume", "views-enriched", "-e", "-f", "%s\\n" },
                   { dir = dir })
  local unknown, seen, n = 0, {}, 0
  if r.code ~= 0 then return 0, seen, 0 end
  for l in r.out:gmatch("[^\n]+") do
    n = n + 1
    if l:find('"profile":"unknown"', 1, true) then unknown = unknown + 1 end
    local ts = tonumber(l:match('"ts":(%d+)'))
    if ts then seen[ts] = true end
  end
  return unknown, seen, n
end

local function assert_all_joined(dir)
  local unknown, seen, n = enriched(dir)
  local missing = 0
  for i = 1, N_VIEWS do
    if not seen[i] then missing = missing + 1 end
  end
  assert(unknown == 0, fmt("%d of %d views went out without a profile",
                           unknown, n))
  assert(missing == 0, fmt("%d of %d views have no output", missing,
                           N_VIEWS))
  return n
end

describe("a stream-table join over a backlog", function()
  local work, dir

  before_each(function()
    work = h.tmpdir()
    dir = work .. "/data"
    write_backlog(dir, work)
  end)

  local wrappers = {}

  after_each(function()
    -- wrappers first, so that none writes its .rc into a removed folder
    for _, pid in ipairs(wrappers) do
      local cmd = h.read_file("/proc/" .. pid .. "/cmdline")
      if cmd and cmd:find(work, 1, true) then     -- never a reused pid
        os.execute("kill -9 " .. pid .. " 2>/dev/null")
      end
    end
    wrappers = {}
    h.kill_started(work)
    h.sleep(0.2)
    h.rmdir(work)
  end)

  it("sends no view out without its profile when the profiles input is "
     .. "read first (bootstrap = true)", function()
    local r = h.tide({ "run", JOIN, "--drain", "--workers", "2" },
                     { dir = dir })
    assert(r.code == 0, "tide run exited " .. tostring(r.code) .. ":\n"
           .. r.err)
    assert.matches("bootstrap inputs read to", r.err, 1, true)
    assert.are.equal(N_VIEWS, assert_all_joined(dir))
  end)

  -- Event-time order alone reads the older profiles first here, so the
  -- job without bootstrap also gives the views a higher priority: what
  -- any input the views' side outranks (or a view older than its profile)
  -- does, and what bootstrap rules out.
  it("would send views out without a profile without bootstrap (the "
     .. "check above can fail)", function()
    local text = assert(h.read_file(JOIN))
    local plain = text:gsub('{ "profiles", bootstrap = true }',
                            '{ "profiles", priority = -1 }')
    assert(plain ~= text)
    local file = work .. "/join_plain.lua"
    h.write_file(file, plain)
    local r = h.tide({ "run", file, "--drain", "--workers", "2" },
                     { dir = dir })
    assert(r.code == 0, "tide run exited " .. tostring(r.code) .. ":\n"
           .. r.err)
    local unknown = enriched(dir)
    assert(unknown > 0, "no view without a profile: this input does not "
           .. "tell a bootstrapping job from one that is not")
  end)

  it("sends no view out without its profile after SIGKILLs of the "
     .. "supervisor mid-run and restarts", function()
    local killed_mid, views_before = 0, 0
    for round = 1, 2 do
      local job = h.start_tide(dir, work, { "run", JOIN, "--workers", "2",
                                            "--drain" })
      wrappers[#wrappers + 1] = job.wrapper
      -- the first kill comes early (while bootstrapping, on this box),
      -- the second once views go out
      if round == 1 then
        h.sleep(0.2 + rand() * 0.6)
      else
        for _ = 1, 600 do
          if select(3, enriched(dir)) > 0 then break end
          if h.read_file(job.base .. ".rc") then break end
          h.sleep(0.02)
        end
        h.sleep(rand() * 0.05)
      end
      local finished = h.read_file(job.base .. ".rc") ~= nil
      -- (procps hangs under the ASan build's LD_PRELOAD: not for it)
      local kids = h.sh("env -u LD_PRELOAD timeout 20 pgrep -P " .. job.pid)
      h.kill9(job.pid)
      -- no worker outlives its parent for long (they hold the lock)
      for _ = 1, 200 do
        local left = false
        for pid in kids:gmatch("%d+") do
          left = left or h.alive(tonumber(pid))
        end
        if not left then break end
        h.sleep(0.01)
      end
      local _, _, n = enriched(dir)
      if not finished and n < N_VIEWS then killed_mid = killed_mid + 1 end
      if round == 2 then views_before = n end
      io.stderr:write(fmt("join_spec: kill %d after %d of %d views out\n",
                          round, n, N_VIEWS))
    end
    -- (Under ASan on a loaded machine a run may finish before its kill:
    -- at least one of the two must land mid-run.)
    assert(killed_mid >= 1, "both runs ended before their kill: rerun")
    assert(views_before > 0, "no view went out before the second kill")
    local r = h.tide({ "run", JOIN, "--drain", "--workers", "2" },
                     { dir = dir })
    assert(r.code == 0, "tide run exited " .. tostring(r.code) .. ":\n"
           .. r.err)
    assert_all_joined(dir)
  end)
end)
