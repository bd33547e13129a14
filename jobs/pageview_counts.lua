-- pageview_counts: counts page views per URL.
-- Reads:  pageviews (JSON events { user, url, ua, ts }, keyed by user;
--         -c inputs.1=STREAM counts another stream of page views) and
--         pageview-urls, its own re-keyed copy: each view is sent there
--         keyed by URL, so that every URL is counted by one task (the
--         stream is both an input and an output; it is created with the
--         partition count of pageviews).
-- Writes: pageview-counts (key: url, value: the URL's count after each
--         view: the newest record per URL is its count)
--         top-urls (every window, per task: key "top", value: a JSON array
--         of the task's top N { url, views })
-- Stores: counts (url -> views)
-- Config: top_n (default 10)
-- Note: the re-keying hop is at-least-once like every output; after a
-- crash a view re-sent to pageview-urls is counted again. A job whose
-- input is already keyed by URL counts exactly (see docs/design.md, section 4).
local sort, type = table.sort, type

return {
    name = "pageview-counts",
    inputs = { "pageviews", "pageview-urls" },
    outputs = { "pageview-urls", "pageview-counts", "top-urls" },
    stores = { counts = {} },
    serde = "json",
    commit_interval = "2s",
    window_interval = "10s",
    config = { top_n = 10 },

    process = function(msg, ctx)
        if msg.stream == "pageview-urls" then       -- keyed by URL: count
            local n = ctx.stores.counts:incr(msg.key, msg.value)
            ctx:send("pageview-counts", msg.key, n)
            return
        end
        local url = msg.value.url                    -- a page view: re-key
        if type(url) ~= "string" then
            error("page view without a url")
        end
        ctx:send("pageview-urls", url, 1)
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
