-- profile_join: enriches page views with the viewer's profile.
-- Reads:  profiles (JSON { name, country, plan }, key: user id), a table
--         input: tide keeps it in store "profiles" (a nil value deletes a
--         user) and reads it to its end before any page view, at every
--         start, so a backlog of views is never joined against a table
--         not read yet; and pageviews (JSON { user, url, ua, ts }, key:
--         user id), co-partitioned with profiles by user.
-- Writes: pageviews-enriched (key: user id, value: the page view with a
--         "profile" field, or profile = "unknown" when none was seen yet)
-- Stores: profiles (the table: user id -> latest profile)
-- Config: none.
return {
    name = "profile-join",
    inputs = { { "profiles", table = true }, "pageviews" },
    outputs = { "pageviews-enriched" },
    serde = "json",
    on_error = "dead_letter",

    process = function(msg, ctx)
        local view = msg.value
        view.profile = ctx.tables.profiles:get(msg.key) or "unknown"
        ctx:send("pageviews-enriched", msg.key, view)
    end,
}
