-- tide run's log options: --log-format json (every line one JSON object,
-- workers included: they inherit the choice), --log-level and -q, and
-- one usage line for a bad value.
local h = require("cli.helper")
local cjson = require("cjson")

local SRC = os.getenv("TIDE_SOURCE_DIR") or "."
local PASS = SRC .. "/spec/cli/jobs/pass.lua"

describe("tide run log options", function()
  local work, dir
  before_each(function()
    work, dir = h.scratch()
    h.ok({ "produce", "pings", "--partitions", "2" },
         { dir = dir, stdin = "a\nb\nc\n", stderr_ok = true })
  end)
  after_each(function()
    h.rmdir(work)
  end)

  it("refuses a bad --log-format or --log-level with one usage line",
     function()
    for _, c in ipairs({
      { { "--log-format", "xml" }, "--log-format: 'text' or 'json' expected, got 'xml'" },
      { { "--log-level=loud" }, "--log-level: debug, info, warn or error expected, got 'loud'" },
      { { "-q", "--log-level", "info" }, "-q and --log-level both set the level" },
    }) do
      local args = { "run", PASS, "--drain" }
      for _, a in ipairs(c[1]) do args[#args + 1] = a end
      local r = h.tide(args, { dir = dir })
      assert.are.equal(2, r.code, r.err)
      assert.are.equal(1, #h.lines(r.err), r.err)
      assert.matches("tide run: " .. c[2], r.err, 1, true)
    end
  end)

  it("writes JSON lines, the workers' too, with --log-format json",
     function()
    local r = h.tide({ "run", PASS, "--drain", "--workers", "2",
                       "--log-format", "json" }, { dir = dir })
    assert.are.equal(0, r.code, r.err)
    local workers = 0
    for _, line in ipairs(h.lines(r.err)) do
      local ok, o = pcall(cjson.decode, line)
      assert.is_true(ok and type(o) == "table", "not JSON: " .. line)
      assert.is_string(o.time)
      assert.is_string(o.msg)
      assert.is_truthy(({ debug = 1, info = 1, warn = 1, error = 1 })[o.level])
      if o.worker then workers = workers + 1 end
    end
    assert.is_true(workers >= 2, r.err)     -- each worker's progress line
  end)

  it("shows only warnings and errors with -q", function()
    local r = h.tide({ "run", PASS, "--drain", "-q" }, { dir = dir })
    assert.are.equal(0, r.code, r.err)
    assert.are.equal("", r.err)
    r = h.tide({ "run", PASS, "--drain" }, { dir = dir })
    assert.matches(" info job 'pass' stopped cleanly", r.err, 1, true)
  end)
end)
