-- Writes realistic page-view events to stdout, one per line, as
-- "<user>\t<json>": URLs with Zipf-like popularity, a few thousand users,
-- browsers and some bots. Usage: luajit scripts/gen_pageviews.lua N [SEED]
local n = tonumber(arg[1]) or 100000
local seed = tonumber(arg[2]) or 42

local floor, random, format = math.floor, math.random, string.format
math.randomseed(seed)

local sections = { "news", "sport", "tech", "travel", "food", "money" }
local urls, weights, total = {}, {}, 0
for i = 1, 500 do
    urls[i] = format("/%s/article-%d", sections[(i % #sections) + 1], i)
    total = total + 1 / i            -- Zipf, s = 1
    weights[i] = total
end

local agents = {
    "Mozilla/5.0 (X11; Linux x86_64) Firefox/128.0",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) Chrome/131.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5) Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) Safari/605.1",
}
local bots = {
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0)",
    "python-requests/2.31",
}

local function pick_url()
    local r, lo, hi = random() * total, 1, #weights
    while lo < hi do
        local mid = floor((lo + hi) / 2)
        if weights[mid] < r then lo = mid + 1 else hi = mid end
    end
    return urls[lo]
end

local ts = 1764000000000
local out = {}
for i = 1, n do
    local user = format("u%04d", floor(random() ^ 2 * 5000))
    local bot = random() < 0.08
    local ua = bot and bots[random(#bots)] or agents[random(#agents)]
    ts = ts + random(0, 20)
    out[#out + 1] = format('%s\t{"user":"%s","url":"%s","ua":"%s","ts":%d}',
                           user, user, pick_url(), ua, ts)
    if #out == 1000 or i == n then
        io.write(table.concat(out, "\n"), "\n")
        out = {}
    end
end
