-- Nexmark on tide (docs/nexmark.md): scripts/nexmark.sh generates events,
-- runs the queries in jobs/nexmark/ with --drain --final, alone and under
-- SIGKILLs, and compares every result with an oracle written without
-- tide; here at small sizes. A query that is wrong must be caught.
local h = require("cli.helper")

local fmt = string.format
local src = os.getenv("TIDE_SOURCE_DIR") or "."
local QUERIES = { "q1", "q2", "q3", "q5", "q7", "q8", "q11" }

-- Runs scripts/nexmark.sh MODE with the environment `env` (a table);
-- returns { code, out, err }.
local function nexmark(mode, env)
  env.TIDE = h.bin
  local words = {}
  for k, v in pairs(env) do words[#words + 1] = k .. "=" .. h.q(v) end
  return h.run(fmt("cd %s && env %s sh scripts/nexmark.sh %s", h.q(src),
                   table.concat(words, " "), mode))
end

-- Fails unless run `r` printed "qN: ... match" for every query of `qs`
-- and exited 0; returns the lines per query.
local function all_match(r, qs)
  local lines = {}
  for l in r.out:gmatch("[^\n]+") do
    local q = l:match("^(q%d+):")
    if q then lines[q] = l end
  end
  for _, q in ipairs(qs) do
    assert(lines[q] and lines[q]:match("^q%d+: [1-9]%d* .*, match"),
           fmt("%s: no match line\nstdout:\n%s\nstderr:\n%s", q, r.out,
               r.err))
  end
  assert.equals(0, r.code, r.out .. r.err)
  return lines
end

local work
before_each(function() work = h.tmpdir() end)
after_each(function() h.rmdir(work) end)

describe("nexmark", function()
  it("matches the oracle on every query", function()
    local r = nexmark("check", { NEXMARK_EVENTS = 8000, NEXMARK_SEED = 7,
                                 NEXMARK_DIR = work .. "/run" })
    all_match(r, QUERIES)
  end)

  it("stays exact through SIGKILLs: every emission of a window carries "
     .. "its exact value, and every window is emitted", function()
    local r = nexmark("crash", { NEXMARK_EVENTS = 6000, NEXMARK_SEED = 9,
                                 NEXMARK_KILLS = 3,
                                 NEXMARK_KILL_MAX_MS = 700,
                                 NEXMARK_DIR = work .. "/run" })
    local lines = all_match(r, QUERIES)
    -- the kills came while windows were being emitted
    local mid = 0
    for _, q in ipairs({ "q5", "q7", "q8", "q11" }) do
      mid = mid + tonumber(lines[q]:match("(%d+) before the final run"))
    end
    assert.is_true(mid > 0, "no window was emitted before the final run")
  end)

  it("catches a wrong query, and too little out-of-orderness", function()
    -- q7 taking the lowest price instead of the highest
    local q7 = assert(h.read_file(src .. "/jobs/nexmark/q7.lua"))
    local bad, n = q7:gsub("if b.price > acc.price then",
                           "if acc.price < 0 or b.price < acc.price then")
    assert.equals(1, n)
    -- q11 with sessions of 2 s instead of 10 s
    local q11 = assert(h.read_file(src .. "/jobs/nexmark/q11.lua"))
    local bad11, n11 = q11:gsub('session%("10s"%)', 'session("2s")')
    assert.equals(1, n11)
    os.execute("mkdir -p " .. h.q(work .. "/jobs"))
    h.write_file(work .. "/jobs/q7.lua", bad)
    h.write_file(work .. "/jobs/q11.lua", bad11)
    local r = nexmark("check", { NEXMARK_EVENTS = 6000, NEXMARK_SEED = 3,
                                 NEXMARK_QUERIES = "q7 q11",
                                 NEXMARK_JOBS = work .. "/jobs",
                                 NEXMARK_DIR = work .. "/run" })
    assert.equals(1, r.code, r.out .. r.err)
    assert.matches("q7: MISMATCH", r.out)
    assert.matches("q11: MISMATCH", r.out)
    -- half the events moved back by up to 6 s, the watermark trailing by 0:
    -- records come late and are dropped, and the check says so
    r = nexmark("check", { NEXMARK_EVENTS = 8000, NEXMARK_SEED = 3,
                           NEXMARK_QUERIES = "q8",
                           NEXMARK_DISORDER_MS = 6000,
                           NEXMARK_DISORDER_SHARE = 0.5,
                           NEXMARK_OOO_MS = 0,
                           NEXMARK_DIR = work .. "/run" })
    assert.equals(1, r.code, r.out .. r.err)
    assert.matches("q8: MISMATCH", r.out)
  end)
end)
