-- profile_join: enriches page views with the viewer's profile.
-- Reads:  profiles (JSON { name, country, plan }, key: user id) and
--         pageviews (JSON { user, url, ua, ts }, key: user id); the two
--         are co-partitioned by user, so a task sees both sides of a user.
--         Profiles are a bootstrap input: a task reads them to their end
--         before any page view, at every start, so a backlog of views is
--         never joined against a table not read yet.
-- Writes: pageviews-enriched (key: user id, value: the page view with a
--         "profile" field, or profile = "unknown" when none was seen yet)
-- Stores: profiles (user id -> latest profile; a nil profile deletes it)
-- Config: none.
return {
    name = "profile-join",
    inputs = { { "profiles", bootstrap = true }, "pageviews" },
    outputs = { "pageviews-enriched" },
    stores = { profiles = {} },
    serde = "json",
    on_error = "dead_letter",

    process = function(msg, ctx)
        local profiles = ctx.stores.profiles
        if msg.stream == "profiles" then
            profiles:put(msg.key, msg.value)          -- nil value deletes
            return
        end
        local view = msg.value
        view.profile = msg.key and profiles:get(msg.key) or "unknown"
        ctx:send("pageviews-enriched", msg.key, view)
    end,
}
