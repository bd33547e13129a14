-- pageview_counts: counts page views per URL.
-- Reads:  pageviews (JSON events: { user, url, ua, ts }, any key)
-- Writes: pageview-counts (key: url, value: the URL's count so far, after
--         every view: the newest record per URL is its current count)
--         top-urls (every window, per task: key "top", value: the task's
--         top N URLs as a JSON array of { url, views })
-- Stores: counts (url -> views)
-- Config: top_n (default 10)
local sort = table.sort

return {
    name = "pageview-counts",
    inputs = { "pageviews" },
    outputs = { "pageview-counts", "top-urls" },
    stores = { counts = {} },
    serde = "json",
    commit_interval = "2s",
    window_interval = "10s",
    config = { top_n = 10 },

    process = function(msg, ctx)
        local url = msg.value.url
        if type(url) ~= "string" then
            error("page view without a url")
        end
        local n = ctx.stores.counts:incr(url, 1)
        ctx:send("pageview-counts", url, n)
    end,

    window = function(ctx)
        local top = {}
        for url, views in ctx.stores.counts:all() do
            top[#top + 1] = { url = url, views = views }
        end
        if #top == 0 then
            return
        end
        sort(top, function(a, b)
            if a.views ~= b.views then
                return a.views > b.views
            end
            return a.url < b.url
        end)
        for i = #top, ctx.config.top_n + 1, -1 do
            top[i] = nil
        end
        ctx:send("top-urls", "top", top)
    end,
}
