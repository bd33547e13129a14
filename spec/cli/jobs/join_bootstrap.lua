-- join_bootstrap: jobs/profile_join.lua with its profiles input marked
-- `bootstrap = true`, for spec/cli/join_spec.lua. Reads profiles (JSON,
-- key: user id) to their end before any page view (JSON, key: user id),
-- at every start; writes each view to "views-enriched" with a "profile"
-- field, "unknown" when the user has no profile in store "profiles".
return {
    name = "join-bootstrap",
    inputs = { { "profiles", bootstrap = true }, "pageviews" },
    outputs = { "views-enriched" },
    stores = { profiles = {} },
    serde = "json",
    on_error = "dead_letter",
    commit_interval = "200ms",
    process = function(msg, ctx)
        local profiles = ctx.stores.profiles
        if msg.stream == "profiles" then
            profiles:put(msg.key, msg.value)
            return
        end
        local view = msg.value
        view.profile = msg.key and profiles:get(msg.key) or "unknown"
        ctx:send("views-enriched", msg.key, view)
    end,
}
