-- stuck: a job with a stuck and a bloated message, for the container
-- specs (spec/cli/container_spec.lua; also the template of its reload
-- test, which edits TAG and the code). Reads "events" (string serde);
-- sends "TAG VALUE" to "stuck-out" for each message, except that value
-- "hang" loops forever and value "hog" allocates memory without bound.
-- max_process_time is 2 s, max_memory 256 MiB; failed messages go to
-- "stuck-dead-letters".
local TAG = "t01"
return {
    name = "stuck",
    inputs = { "events" },
    outputs = { "stuck-out" },
    serde = "string",
    commit_interval = "100ms",
    on_error = "dead_letter",
    max_process_time = "2s",
    max_memory = "256MiB",
    process = function(msg, ctx)
        if msg.value == "hang" then
            while true do end
        elseif msg.value == "hog" then
            local t = {}
            while true do
                t[#t + 1] = string.rep("x", 1048576 - 32) .. #t
            end
        end
        ctx:send("stuck-out", msg.key, TAG .. " " .. msg.value)
    end,
}
