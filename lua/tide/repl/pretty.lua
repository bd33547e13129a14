--- Pretty-printer of the REPL: the text of one value, readable and bounded.
---
--- format(v, opts) rules:
--- - Strings print quoted, "...": \\, \", \n, \t, \r escaped; other control
---   bytes, bytes that are not valid UTF-8, C1 controls and the Unicode
---   line/paragraph separators and bidi controls as \ddd (decimal bytes).
---   Valid UTF-8 text prints as is. Past opts.max_string bytes the text is
---   cut at a character start and followed by `… (N bytes)`.
--- - Numbers: integral values below 2^53 without ".0" (-0.0 prints -0);
---   others in the shortest %.Ng form that reads back equal (0.1, 1e+300);
---   nan, inf, -inf.
--- - Functions print as `function: short_src:linedefined`, C functions by
---   tostring. cdata prints as `cdata<type>: value`; userdata and threads
---   by tostring (a raising __tostring never propagates).
--- - Tables: the array part (1..n up to the first nil) in order, then the
---   other keys: numbers ascending, strings in byte order, other types
---   last by tostring. Identifier keys print bare (`a = 1`), others in
---   brackets (`["x y"] = 1`, `[10] = 1`). A table whose one-line form
---   `{ a = 1, b = 2 }` fits in opts.width columns prints on one line;
---   otherwise one field per line, indented 2 spaces, each ending with ",".
---   Non-empty tables deeper than opts.max_depth (and than 100 levels,
---   whatever max_depth says) print as `{…}`.
--- - A table referenced again gets a number at its first occurrence,
---   `<table 1> {`; later references print `<table 1>`, and a reference
---   from inside the table itself `<cycle: table 1>`. Tables referenced
---   once get no number.
--- - A table with a __pretty metamethod (function(self) -> string), else
---   with __tostring, prints as that text (it may span lines); a
---   metamethod that raises prints `<table: __tostring raised: msg>`.
--- - Past opts.max_lines lines the output is cut and ends with
---   `… N more lines (pretty.format(v, {max_lines = 0}) shows all)`. The
---   lines past the cut are counted, up to a fixed amount of work; past
---   it the note says "at least N". The walk stops there, so the cost
---   follows the output, plus one pass over the keys of each table
---   printed (needed to sort them; only the first keys are fully sorted).
---
--- records(list, opts) prints a list of records as an aligned text
--- table, or returns nil when `list` is not one: a non-empty array (no
--- other keys) of plain tables (no __pretty/__tostring) with string keys,
--- at most 16 distinct, filling at least half of the grid. Columns: key,
--- value, partition, offset, timestamp first when present, then the
--- others sorted. A header row, a row of dashes, one row per record;
--- columns two spaces apart, numbers right-aligned, strings unquoted
--- (control bytes escaped), tables in their one-line form, missing
--- fields blank; cells cut at opts.max_cell columns with "…". After
--- opts.max_rows rows: `… N more rows`. show(v, opts) is records() when
--- it applies, else format(): what the REPL prints for a result.
---
--- Options (0 means no limit for all but width): max_lines 40, max_depth
--- 6, width 80, max_string 200, max_rows 20, max_cell 40 (display
--- columns of a record cell). Nothing here raises on any value; only bad
--- opts raise.
local ffi = require("ffi")

local type, next, rawget, pairs, ipairs, tostring, tonumber, pcall, error =
      type, next, rawget, pairs, ipairs, tostring, tonumber, pcall, error
local byte, sub, find, gsub, rep, format =
      string.byte, string.sub, string.find, string.gsub, string.rep,
      string.format
local concat, insert, sort = table.concat, table.insert, table.sort
local floor, huge, max = math.floor, math.huge, math.max
local getinfo, getmetatable = debug.getinfo, debug.getmetatable

local _M = {}

local DEFAULTS = {
    max_lines = 40, max_depth = 6, width = 80, max_string = 200,
    max_rows = 20, max_cell = 40,
}
local HARD_DEPTH  = 100     -- deepest table walked whatever max_depth says
local COUNT_WORK  = 2000    -- tables walked past the cut to count lines
local MAX_COLUMNS = 16      -- more distinct fields is not a record list
local ELLIPSIS    = "\226\128\166"                       -- U+2026 "…"
local NOTE        = "(pretty.format(v, {max_lines = 0}) shows all)"
local FIRST_COLUMNS = { "key", "value", "partition", "offset", "timestamp" }

local KEYWORDS = {}
for w in gsub([[and break do else elseif end false for function goto if in
               local nil not or repeat return then true until while]],
              "%s+", " "):gmatch("%a+") do
    KEYWORDS[w] = true
end

local G_FORMATS = {}
for p = 1, 17 do
    G_FORMATS[p] = "%." .. p .. "g"
end

---------------------------------------------------------------- scalars

--- Returns the display width of `s`: UTF-8 continuation bytes take none.
local function dlen(s)
    if not find(s, "[\128-\191]") then
        return #s
    end
    local _, cont = gsub(s, "[\128-\191]", "")
    return #s - cont
end

-- Bounds of the byte after a lead byte, where narrower than 80..BF: no
-- overlong forms, no surrogates, nothing past U+10FFFF, no C1 controls.
local SECOND_LO = { [0xC2] = 0xA0, [0xE0] = 0xA0, [0xF0] = 0x90 }
local SECOND_HI = { [0xED] = 0x9F, [0xF4] = 0x8F }

local function is_cont(c)
    return c ~= nil and c >= 0x80 and c <= 0xBF
end

--- Returns the length of the valid UTF-8 sequence at s[i] (lead byte c,
--- >= 128) that is safe to show as is, or nil (invalid, a C1 control, a
--- line or paragraph separator, a bidi or zero-width control, a BOM).
local function utf8_seq(s, i, c)
    local c2, c3, c4 = byte(s, i + 1, i + 3)
    local len = c >= 0xC2 and c <= 0xDF and 2 or c >= 0xE0 and c <= 0xEF
                and 3 or c >= 0xF0 and c <= 0xF4 and 4 or nil
    if not len or c2 == nil or c2 < (SECOND_LO[c] or 0x80)
            or c2 > (SECOND_HI[c] or 0xBF) then
        return nil
    end
    if (len > 2 and not is_cont(c3)) or (len > 3 and not is_cont(c4)) then
        return nil
    end
    if c == 0xE2 and ((c2 == 0x80 and ((c3 >= 0x8B and c3 <= 0x8F)
            or (c3 >= 0xA8 and c3 <= 0xAE)))
            or (c2 == 0x81 and c3 >= 0xA6 and c3 <= 0xA9))
            or (c == 0xEF and c2 == 0xBB and c3 == 0xBF) then
        return nil
    end
    return len
end

local NAMED = { [9] = "\\t", [10] = "\\n", [13] = "\\r" }

--- Returns `s` with unsafe bytes escaped; with `quoted` also \ and ".
local function escape(s, quoted)
    if not find(s, quoted and '[%c"\\\128-\255]' or "[%c\128-\255]") then
        return s
    end
    local buf, n = {}, 0
    local i, len, start = 1, #s, 1
    while i <= len do
        local c = byte(s, i)
        local esc, adv = nil, 1
        if c < 32 or c == 127 then
            esc = NAMED[c] or format("\\%03d", c)
        elseif quoted and (c == 34 or c == 92) then
            esc = c == 34 and '\\"' or "\\\\"
        elseif c >= 128 then
            adv = utf8_seq(s, i, c)
            if not adv then
                esc, adv = format("\\%03d", c), 1
            end
        end
        if esc then
            if start < i then
                n = n + 1
                buf[n] = sub(s, start, i - 1)
            end
            n = n + 1
            buf[n] = esc
            start = i + 1
        end
        i = i + adv
    end
    if start <= len then
        n = n + 1
        buf[n] = sub(s, start, len)
    end
    return concat(buf, "", 1, n)
end

--- Returns the first `n` bytes of `s`, moved back to a character start.
local function cut_bytes(s, n)
    local k = n
    while k > n - 3 and k > 0 do
        local c = byte(s, k + 1)
        if not c or c < 0x80 or c > 0xBF then
            return sub(s, 1, k)
        end
        k = k - 1
    end
    local c = byte(s, k + 1)
    if c and c >= 0xC0 then
        return sub(s, 1, k)
    end
    return sub(s, 1, n)
end

local function quote(s, max)
    if max > 0 and #s > max then
        return '"' .. escape(cut_bytes(s, max), true) .. '"' .. ELLIPSIS
               .. " (" .. #s .. " bytes)"
    end
    return '"' .. escape(s, true) .. '"'
end

local function number_text(x)
    if x ~= x then
        return "nan"
    elseif x == huge then
        return "inf"
    elseif x == -huge then
        return "-inf"
    elseif x == floor(x) and x > -2^53 and x < 2^53 then
        if x == 0 and 1 / x < 0 then
            return "-0"
        end
        return format("%d", x)
    end
    for p = 1, 16 do
        local s = format(G_FORMATS[p], x)
        if tonumber(s) == x then
            return s
        end
    end
    return format(G_FORMATS[17], x)
end

--- Returns one line for an error value raised by a metamethod.
local function err_text(e)
    if type(e) == "string" then
        return escape(e, false)
    end
    return "(" .. type(e) .. " error value)"
end

--- Returns tostring(v) on one line, or a note when its __tostring raised.
local function safe_tostring(v)
    local ok, s = pcall(tostring, v)
    if ok and type(s) == "string" then
        return escape(s, false)
    end
    return "<" .. type(v) .. ": __tostring raised: " .. err_text(s) .. ">"
end

local function function_text(f)
    local ok, info = pcall(getinfo, f, "S")
    if ok and info and info.what ~= "C" then
        return "function: " .. info.short_src .. ":" .. info.linedefined
    end
    return safe_tostring(f)
end

local function cdata_text(v)
    local s = safe_tostring(v)
    if sub(s, 1, 6) == "cdata<" or sub(s, 1, 6) == "ctype<" then
        return s
    end
    local ok, ct = pcall(ffi.typeof, v)
    local name = ok and tostring(ct):match("^ctype<(.*)>$") or "?"
    return "cdata<" .. name .. ">: " .. s
end

--- Returns the text of a value that is not a table.
local function scalar_text(v, tv, max_string)
    if tv == "string" then
        return quote(v, max_string)
    elseif tv == "number" then
        return number_text(v)
    elseif tv == "boolean" or tv == "nil" then
        return tostring(v)
    elseif tv == "function" then
        return function_text(v)
    elseif tv == "cdata" then
        return cdata_text(v)
    end
    return safe_tostring(v)
end

--- Returns the text of table `t` from its __pretty or __tostring
--- metamethod, or nil when it has neither.
local function meta_text(t)
    local mt = getmetatable(t)
    if mt == nil then
        return nil
    end
    local name, f = "__pretty", rawget(mt, "__pretty")
    if f == nil then
        name, f = "__tostring", rawget(mt, "__tostring")
        if f == nil then
            return nil
        end
    end
    local ok, s = pcall(f, t)
    if not ok then
        return "<table: " .. name .. " raised: " .. err_text(s) .. ">"
    elseif type(s) ~= "string" then
        return "<table: " .. name .. " returned " .. type(s) .. ">"
    end
    return s
end

--- Returns true when table `t` prints through a metamethod.
local function has_meta(t)
    local mt = getmetatable(t)
    return mt ~= nil and (rawget(mt, "__pretty") ~= nil
                          or rawget(mt, "__tostring") ~= nil)
end

local function is_ident(k)
    return type(k) == "string" and find(k, "^[A-Za-z_][A-Za-z0-9_]*$") ~= nil
           and not KEYWORDS[k]
end

---------------------------------------------------------------- keys

local RANK = { number = 1, string = 2 }

local function plain_less(a, b)
    return a < b
end

--- Returns a strict weak order over table keys: numbers, then strings,
--- then other types by tostring.
local function key_order()
    local cache = {}
    local function str(x)
        local s = cache[x]
        if s == nil then
            s = safe_tostring(x)
            cache[x] = s
        end
        return s
    end
    return function(a, b)
        local ra, rb = RANK[type(a)] or 3, RANK[type(b)] or 3
        if ra ~= rb then
            return ra < rb
        elseif ra < 3 then
            return a < b
        end
        return str(a) < str(b)
    end
end

local function sift_down(h, i, n, less)
    while true do
        local l, big = 2 * i, i
        if l <= n and less(h[big], h[l]) then
            big = l
        end
        if l + 1 <= n and less(h[big], h[l + 1]) then
            big = l + 1
        end
        if big == i then
            return
        end
        h[i], h[big] = h[big], h[i]
        i = big
    end
end

local function in_array(key, m)
    return type(key) == "number" and key >= 1 and key <= m and key % 1 == 0
end

--- Returns the keys of `t` outside its array part 1..m, the first `k` of
--- them in order (all when k is nil, none when k is 0); the rest follow
--- in no order. Only a heap of k keys is sorted, so a huge table with a
--- small k costs one pass.
local function other_keys(t, m, k)
    local keys, n = {}, 0
    local kinds = {}
    for key in next, t do
        if not in_array(key, m) then
            n = n + 1
            keys[n] = key
            kinds[type(key)] = true
        end
    end
    if k == 0 then
        return keys, n
    end
    -- Keys of one kind, numbers or strings, compare with < directly.
    local less = plain_less
    local first = next(kinds)
    if next(kinds, first) ~= nil or (first ~= "number" and first ~= "string")
            then
        less = key_order()
    end
    if k == nil or n <= 2 * k + 64 then
        sort(keys, less)
        return keys, n
    end
    local heap = {}
    for i = 1, k do
        heap[i] = keys[i]
    end
    for i = floor(k / 2), 1, -1 do
        sift_down(heap, i, k, less)
    end
    local rest, r = {}, 0
    for i = k + 1, n do
        local x = keys[i]
        if less(x, heap[1]) then
            x, heap[1] = heap[1], x
            sift_down(heap, 1, k, less)
        end
        r = r + 1
        rest[r] = x
    end
    sort(heap, less)
    for i = 1, r do
        heap[k + i] = rest[i]
    end
    return heap, n
end

--- Returns true when `t` has more than `n` keys; walks n + 1 at most.
local function has_more_keys(t, n)
    local key = nil
    for _ = 0, n do
        key = next(t, key)
        if key == nil then
            return false
        end
    end
    return true
end

local function array_extent(t)
    local i = 1
    while rawget(t, i) ~= nil do
        i = i + 1
    end
    return i - 1
end

---------------------------------------------------------------- tables

-- The output is a list of pieces: strings, and placeholders for table
-- numbers that are only known at the end: { label = rec } before a
-- table's body, { ref = rec, cycle = bool } for a reference to it. rec
-- is { used = bool, num = int }, one per table body printed.

local function new_state(o)
    local cap = o.max_depth
    if cap == 0 or cap > HARD_DEPTH then
        cap = HARD_DEPTH
    end
    return {
        width = o.width, max_lines = o.max_lines, max_string = o.max_string,
        depth_cap = cap,
        out = {}, n = 0, lines = 0,         -- pieces and lines shown
        full = false, more = 0,             -- past the cut: lines counted
        inexact = false, work = COUNT_WORK,
        seen = {}, path = {}, nrec = 0,     -- table -> rec
        undo = nil,                         -- tables seen in a flat try
        ext = {},                           -- table -> array extent
        meta = {},                          -- table -> metamethod text
        oneline = false,                    -- records' cells: never fail
    }
end

local function extent(st, t)
    local m = st.ext[t]
    if m == nil then
        m = array_extent(t)
        st.ext[t] = m
    end
    return m
end

local function new_rec(st, t)
    st.nrec = st.nrec + 1
    local rec = { used = false }
    st.seen[t] = rec
    st.path[t] = rec
    if st.undo then
        st.undo[#st.undo + 1] = t
    end
    return rec
end

--- Returns the piece and width for a table printed without its body
--- (a reference, a cut by depth, a metamethod's text), or nil.
local function short_table(st, t, depth)
    local rec = st.path[t]
    if rec then
        return { ref = rec, cycle = true }, 16 + #tostring(st.nrec)
    end
    rec = st.seen[t]
    if rec then
        return { ref = rec, cycle = false }, 9 + #tostring(st.nrec)
    end
    local text = st.meta[t]             -- one metamethod call per table
    if text == nil then
        text = meta_text(t) or false
        st.meta[t] = text
    end
    if text then
        return text, dlen(text)
    end
    if depth > st.depth_cap then
        if next(t) == nil then
            return "{}", 2
        end
        return "{" .. ELLIPSIS .. "}", 3
    end
    return nil
end

local flat

--- Appends the one-line key text of `k` and " = " to buf; returns the
--- new length or nil past limit.
local function flat_key(st, k, depth, buf, len, limit)
    if is_ident(k) then
        buf[#buf + 1] = k
        buf[#buf + 1] = " = "
        len = len + #k + 3
    else
        buf[#buf + 1] = "["
        len = flat(st, k, depth, buf, len + 1, limit)
        if not len then
            return nil
        end
        buf[#buf + 1] = "] = "
        len = len + 4
    end
    if len > limit then
        return nil
    end
    return len
end

--- Appends the one-line form of v to buf, whose text is `len` columns
--- wide so far; returns the new width, or nil once it passes `limit`
--- (buf then holds the text up to there).
function flat(st, v, depth, buf, len, limit)
    local tv = type(v)
    if tv ~= "table" then
        local s = scalar_text(v, tv, st.max_string)
        buf[#buf + 1] = s
        len = len + dlen(s)
        return len <= limit and len or nil
    end
    local piece, w = short_table(st, v, depth)
    if piece then
        if type(piece) == "string" and find(piece, "[\r\n]") then
            if not st.oneline then
                return nil
            end
            piece = escape(piece, false)
            w = dlen(piece)
        end
        buf[#buf + 1] = piece
        len = len + w
        return len <= limit and len or nil
    end
    local m = extent(st, v)
    if m == 0 and next(v) == nil then
        buf[#buf + 1] = "{}"
        len = len + 2
        return len <= limit and len or nil
    end
    local rec = new_rec(st, v)
    buf[#buf + 1] = { label = rec }
    buf[#buf + 1] = "{ "
    len = len + 2
    -- Each element takes at least 3 columns ("1, "), each keyed field 7
    -- ("a = 1, "): give up at once on a table with more than could fit.
    local fit = floor((limit - len - 3 * m) / 7) + 1
    if not st.oneline and (3 * m > limit - len + 2
                           or has_more_keys(v, m + fit)) then
        st.path[v] = nil
        return nil
    end
    local keys, n = other_keys(v, m, max(1, fit))
    local sep = ""
    for j = 1, m + n do
        buf[#buf + 1] = sep
        len = len + #sep
        local k = j
        if j > m then
            k = keys[j - m]
            len = flat_key(st, k, depth + 1, buf, len, limit)
        end
        if len then
            len = flat(st, rawget(v, k), depth + 1, buf, len, limit)
        end
        if not len then
            st.path[v] = nil
            return nil
        end
        sep = ", "
    end
    st.path[v] = nil
    buf[#buf + 1] = " }"
    len = len + 2
    return len <= limit and len or nil
end

--- Runs flat() as a try: on failure forgets the tables it numbered.
local function try_flat(st, v, depth, limit)
    local buf = {}
    st.undo = {}
    local len = flat(st, v, depth, buf, 0, limit)
    if not len and not st.oneline then
        local undo = st.undo
        for i = 1, #undo do
            st.seen[undo[i]] = nil
        end
    end
    st.undo = nil
    return len, buf
end

--- Adds one line of pieces to the output, or counts it past the cut.
local function emit(st, a, b, c, d)
    if st.full then
        st.more = st.more + 1
        return
    end
    if st.max_lines > 0 and st.lines >= st.max_lines then
        st.full, st.more = true, 1
        return
    end
    local out, n = st.out, st.n
    for _, part in ipairs({ a, b, c, d }) do
        if type(part) == "table" and part.label == nil and part.ref == nil then
            for i = 1, #part do
                n = n + 1
                out[n] = part[i]
            end
        else
            n = n + 1
            out[n] = part
        end
    end
    n = n + 1
    out[n] = "\n"
    st.n = n
    st.lines = st.lines + 1
end

local EMPTY = {}

--- Returns the pieces and width of the key head `k = ` of a field.
local function key_head(st, k, depth)
    if is_ident(k) then
        return { k, " = " }, #k + 3
    end
    local len, buf
    if type(k) == "table" then
        len, buf = try_flat(st, k, depth, st.width)
        if not len then
            buf, len = { "{" .. ELLIPSIS .. "}" }, 3
        end
    else
        local s = scalar_text(k, type(k), st.max_string)
        buf, len = { s }, dlen(s)
    end
    insert(buf, 1, "[")
    buf[#buf + 1] = "] = "
    return buf, len + 5
end

--- Prints v on lines starting at `indent`, after the pieces `head`
--- (headw columns), and ends the last line with `tail`.
local function block(st, v, depth, indent, head, headw, tail)
    if st.full then
        st.work = st.work - 1
    end
    local tv = type(v)
    if tv ~= "table" then
        emit(st, indent, head, scalar_text(v, tv, st.max_string), tail)
        return
    end
    local piece = short_table(st, v, depth)
    if piece then
        if type(piece) == "table" or not find(piece, "[\r\n]") then
            emit(st, indent, head, piece, tail)
            return
        end
        local lines, pos = {}, 1
        piece = gsub(piece, "\r\n", "\n")
        while true do
            local nl = find(piece, "\n", pos, true)
            lines[#lines + 1] = sub(piece, pos, (nl or 0) - 1)
            if not nl then
                break
            end
            pos = nl + 1
        end
        -- Continuation lines line up under the field's value.
        local more = depth > 1 and indent .. "  " or indent
        for i = 1, #lines do
            emit(st, i == 1 and indent or more, i == 1 and head or EMPTY,
                 lines[i], i == #lines and tail or "")
        end
        return
    end
    if extent(st, v) == 0 and next(v) == nil then
        emit(st, indent, head, "{}", tail)
        return
    end
    local len, buf = try_flat(st, v, depth,
                              st.width - #indent - headw - #tail)
    if len then
        emit(st, indent, head, buf, tail)
        return
    end
    local rec = new_rec(st, v)
    emit(st, indent, head, { label = rec }, "{")
    local inner = indent .. "  "
    local m = extent(st, v)
    local room = nil                    -- fields that can still be shown
    if st.full then
        room = 0
    elseif st.max_lines > 0 then
        room = st.max_lines - st.lines + 1
    end
    local keys, n = other_keys(v, m, room)
    for j = 1, m + n do
        local k = j <= m and j or keys[j - m]
        local x = rawget(v, k)
        if st.full and type(x) ~= "table" then
            st.more = st.more + 1       -- a scalar takes one line
        elseif st.full and st.work <= 0 then
            st.more = st.more + (m + n - j + 1) + 1
            st.inexact = true
            st.path[v] = nil
            return
        else
            local kh, kw = EMPTY, 0
            if j > m then
                kh, kw = key_head(st, k, depth + 1)
            end
            block(st, x, depth + 1, inner, kh, kw, ",")
        end
    end
    st.path[v] = nil
    emit(st, indent, "}", tail)
end

--- Returns the text of pieces out[1..n], table numbers filled in.
local function resolve(out, n)
    for i = 1, n do
        local p = out[i]
        if type(p) == "table" and p.ref then
            p.ref.used = true
        end
    end
    local num = 0
    local text = {}
    for i = 1, n do
        local p = out[i]
        if type(p) == "table" then
            if p.label then
                if p.label.used then
                    num = num + 1
                    p.label.num = num
                    p = "<table " .. num .. "> "
                else
                    p = ""
                end
            else
                p = (p.cycle and "<cycle: table " or "<table ")
                    .. (p.ref.num or "?") .. ">"
            end
        end
        text[i] = p
    end
    return concat(text, "", 1, n)
end

local function options(opts)
    if opts == nil then
        return DEFAULTS
    end
    if type(opts) ~= "table" then
        error("bad opts: table expected, got " .. type(opts), 3)
    end
    for name in pairs(opts) do
        if DEFAULTS[name] == nil then
            error("bad opts: unknown option '" .. tostring(name) .. "'", 3)
        end
    end
    local o = {}
    for name, default in pairs(DEFAULTS) do
        local v = opts[name]
        if v == nil then
            v = default
        elseif type(v) ~= "number" or v < 0 or v % 1 ~= 0
                or (name == "width" and v < 1) then
            error("bad opts." .. name .. ": " .. (name == "width"
                  and "positive" or "non-negative") .. " integer expected, got "
                  .. tostring(v), 3)
        end
        o[name] = v
    end
    return o
end

local function render(v, o)
    local st = new_state(o)
    block(st, v, 1, "", EMPTY, 0, "")
    local text = resolve(st.out, st.n - 1)      -- drops the last "\n"
    if st.full then
        text = text .. "\n" .. ELLIPSIS .. " " .. (st.inexact and "at least "
               or "") .. st.more .. " more line" .. (st.more == 1 and "" or "s")
               .. " " .. NOTE
    end
    return text
end

--- Returns the text of the value with a safe fallback if the printer
--- itself fails (out of memory, a C stack overflow from a metamethod).
local function guarded(f, v, o)
    local ok, text = pcall(f, v, o)
    if ok then
        return text
    end
    return "<" .. type(v) .. ": pretty-printer failed: " .. err_text(text)
           .. ">"
end

--- Returns the text of one value, without a trailing newline. Never
--- raises on any value; raises on bad opts.
---@param v any
---@param opts? {max_lines?: integer, max_depth?: integer, width?: integer, max_string?: integer}
---@return string
function _M.format(v, opts)
    return guarded(render, v, options(opts))
end

---------------------------------------------------------------- records

--- Returns `s` cut to `w` display columns, with "…" at the cut.
local function cut_columns(s, w)
    if w == 0 or dlen(s) <= w then
        return s
    end
    local i, cols = 1, 0
    while cols < w - 1 do
        local c = byte(s, i)
        i = i + (c >= 0xF0 and 4 or c >= 0xE0 and 3 or c >= 0xC0 and 2 or 1)
        cols = cols + 1
    end
    return sub(s, 1, i - 1) .. ELLIPSIS
end

local function cell_text(v, o)
    local tv = type(v)
    if tv == "string" then
        if o.max_cell > 0 and #v > 4 * o.max_cell then
            v = cut_bytes(v, 4 * o.max_cell + 4)
        end
        return escape(v, false)
    elseif tv ~= "table" then
        return scalar_text(v, tv, 0)
    end
    local st = new_state(o)
    st.oneline = true
    local limit = o.max_cell > 0 and o.max_cell or huge
    local _, buf = try_flat(st, v, 1, limit)
    return resolve(buf, #buf)
end

--- Returns the rows to show and the column names, or nil when `list`
--- is not a list of records.
local function record_columns(list, o)
    if type(list) ~= "table" or has_meta(list) then
        return nil
    end
    local n = array_extent(list)
    if n == 0 then
        return nil
    end
    local count = 0
    for _, row in next, list do
        if type(row) ~= "table" then
            return nil
        end
        count = count + 1
    end
    if count ~= n then
        return nil
    end
    local shown = (o.max_rows > 0 and o.max_rows < n) and o.max_rows or n
    local has, names, cells = {}, {}, 0
    for i = 1, shown do
        local row = rawget(list, i)
        if next(row) == nil or has_meta(row) then
            return nil
        end
        for k in next, row do
            if type(k) ~= "string" then
                return nil
            end
            if not has[k] then
                has[k] = true
                names[#names + 1] = k
                if #names > MAX_COLUMNS then
                    return nil
                end
            end
            cells = cells + 1
        end
    end
    -- Mostly shared: at least half of the grid is filled.
    if cells * 2 < shown * #names then
        return nil
    end
    sort(names)
    local columns = {}
    for _, name in ipairs(FIRST_COLUMNS) do
        if has[name] then
            columns[#columns + 1] = name
            has[name] = false
        end
    end
    for _, name in ipairs(names) do
        if has[name] then
            columns[#columns + 1] = name
        end
    end
    return n, shown, columns
end

local function render_records(list, o)
    local n, shown, columns = record_columns(list, o)
    if not n then
        return nil
    end
    local grid, widths, numeric = {}, {}, {}
    for c, name in ipairs(columns) do
        local head = cut_columns(escape(name, false), o.max_cell)
        grid[c] = { head }
        widths[c] = dlen(head)
        numeric[c] = true
        for i = 1, shown do
            local v = rawget(rawget(list, i), name)
            local s = ""
            if v ~= nil then
                s = cut_columns(cell_text(v, o), o.max_cell)
                numeric[c] = numeric[c] and type(v) == "number"
            end
            grid[c][i + 1] = s
            local w = dlen(s)
            if w > widths[c] then
                widths[c] = w
            end
        end
    end
    local lines = {}
    for r = 0, shown + 1 do
        local parts = {}
        for c = 1, #columns do
            local s = r == 1 and rep("-", widths[c]) or grid[c][r == 0 and 1
                                                                 or r]
            local pad = rep(" ", widths[c] - dlen(s))
            parts[c] = numeric[c] and pad .. s or s .. pad
        end
        lines[r + 1] = (gsub(concat(parts, "  "), "%s+$", ""))
    end
    if shown < n then
        lines[#lines + 1] = ELLIPSIS .. " " .. (n - shown) .. " more row"
                            .. (n - shown == 1 and "" or "s")
    end
    return concat(lines, "\n")
end

--- Returns `list` as an aligned text table when it is a non-empty array
--- of plain tables with string keys, most keys shared; else nil. Columns:
--- key, value, partition, offset, timestamp first when present, then the
--- others sorted. Never raises on any value; raises on bad opts.
---@param list any
---@param opts? {max_rows?: integer, max_cell?: integer, max_depth?: integer, max_string?: integer}
---@return string|nil
function _M.records(list, opts)
    local o = options(opts)
    local ok, text = pcall(render_records, list, o)
    if ok then
        return text
    end
    return nil
end

--- Returns records(v, opts) when v is a list of records, else
--- format(v, opts): what the REPL prints for a result.
---@param v any
---@param opts? table
---@return string
function _M.show(v, opts)
    local o = options(opts)
    local ok, text = pcall(render_records, v, o)
    if ok and text then
        return text
    end
    return guarded(render, v, o)
end

return _M
