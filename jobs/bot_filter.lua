-- bot_filter: cleans a page-view stream.
-- Reads:  pageviews (JSON events keyed by user: { user, url, ua, ts })
-- Writes: pageviews-desktop and pageviews-mobile, the same events from
--         people (bots dropped), with two derived fields: device
--         ("desktop" | "mobile") and section (first part of the URL path).
-- Stores: none.
-- Config: bot_patterns (Lua patterns matched against the user agent, lower
--         case), mobile_patterns (same, for phones and tablets).
local str_find, str_lower, str_match = string.find, string.lower, string.match

local function matches_any(s, patterns)
    for i = 1, #patterns do
        if str_find(s, patterns[i]) then
            return true
        end
    end
    return false
end

return {
    name = "bot-filter",
    inputs = { "pageviews" },
    outputs = { "pageviews-desktop", "pageviews-mobile" },
    serde = "json",
    on_error = "dead_letter",
    commit_interval = "2s",
    config = {
        bot_patterns = { "bot", "crawl", "spider", "slurp", "python%-requests",
                         "curl/", "wget/" },
        mobile_patterns = { "iphone", "android", "ipad", "mobile" },
    },

    process = function(msg, ctx)
        local ev = msg.value
        local ua = str_lower(ev.ua or "")
        if matches_any(ua, ctx.config.bot_patterns) then
            return                                  -- dropped
        end
        local mobile = matches_any(ua, ctx.config.mobile_patterns)
        ev.device = mobile and "mobile" or "desktop"
        ev.section = str_match(ev.url or "", "^/([^/?#]+)") or "home"
        ctx:send(mobile and "pageviews-mobile" or "pageviews-desktop",
                 msg.key, ev)
    end,
}
