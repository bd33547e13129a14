--- Tab completion for the REPL: the last word of a line, resolved in an
--- environment. Used by the prompt (tide.repl) and, attached, inside the
--- job's worker (tide.inspect), where ctx and the stores live.
local type, pairs, ipairs, pcall, getmetatable = type, pairs, ipairs, pcall, getmetatable
local str_match, str_sub = string.match, string.sub
local sort = table.sort

local _M = {}

local KEYWORDS = { "and", "break", "do", "else", "elseif", "end", "false",
                   "for", "function", "if", "in", "local", "nil", "not",
                   "or", "repeat", "return", "then", "true", "until",
                   "while" }

-- Adds the string keys `t` offers to `out`: its own (unless
-- `inherited_only`: methods come from the metatable) and those of its
-- __index chain (tables only: an __index function is not called).
local function names_of(t, out, depth, inherited_only)
    if depth > 4 then
        return
    end
    if type(t) == "table" and not (inherited_only and depth == 0) then
        for k in pairs(t) do
            if type(k) == "string" then
                out[k] = true
            end
        end
    end
    local ok, mt = pcall(getmetatable, t)
    if ok and type(mt) == "table" and type(mt.__index) == "table" then
        names_of(mt.__index, out, depth + 1)
    end
end

--- Returns the sorted completions of the last word of `text`, each the
--- whole text as it would read once completed. A word after `.` is a
--- field of the path before it, after `:` a method; otherwise a global
--- of `env` (and of each table in `more`) or a keyword. Never raises.
---@param text string
---@param env table
---@param more table[]|nil
---@return string[]
function _M.candidates(text, env, more)
    local head, path, sep, last = str_match(text,
        "^(.-)([%a_][%w_%.:]*)([%.:])([%a_][%w_]*)$")
    if not path then
        head, path, sep = str_match(text, "^(.-)([%a_][%w_%.:]*)([%.:])$")
        last = ""
    end
    local cands, base, prefix = {}, nil, nil
    if path then
        if path:find(":", 1, true) then
            return {}                  -- a method call in the middle
        end
        local ok, v = pcall(function()
            local cur = env
            for part in path:gmatch("[^%.]+") do
                cur = cur[part]
            end
            return cur
        end)
        if not ok or v == nil then
            return {}
        end
        base, prefix = v, head .. path .. sep
        names_of(base, cands, 0, sep == ":" and type(base) == "table"
                                 and getmetatable(base) ~= nil)
    else
        head, last = str_match(text, "^(.-)([%a_][%w_]*)$")
        if not head then
            head, last = text, ""
        end
        prefix = head
        names_of(env, cands, 0)
        for _, t in ipairs(more or {}) do
            names_of(t, cands, 0)
        end
        for _, kw in ipairs(KEYWORDS) do
            cands[kw] = true
        end
    end
    local out = {}
    for name in pairs(cands) do
        if str_sub(name, 1, #last) == last then
            local keep = true
            if sep == ":" then
                local ok, v = pcall(function() return base[name] end)
                keep = ok and type(v) == "function"
            end
            if keep then
                out[#out + 1] = prefix .. name
            end
        end
    end
    sort(out)
    return out
end

return _M
