--- Line editing for the REPL: libedit's readline-compatible API (the
--- soname libedit.so.2, Debian package libedit2) through the FFI, with a
--- history file and Tab completion answered by a Lua function.
---
--- Why libedit: it is BSD-licensed; GNU readline is GPL and tide is not.
--- It is loaded at run time, so tide builds and runs without it; only the
--- interactive prompt needs it (available() says why it is missing).
---
--- libedit keeps one global state, so one editor is open at a time. The
--- history file is kept here rather than by libedit's read_history and
--- append_history: libedit 3.1-20221030's append_history(1, file) does
--- not append just the newest entry (add "one" and "two", appending after
--- each, and the file reads back as one, one, two). Here the file is one
--- entry per line, appended as each line is read (so it survives a crash
--- or a kill), mode 0600.
---
--- Caller bugs (wrong argument types) raise errors; runtime failures
--- return nil and a message.
local ffi = require("ffi")

local jit = require("jit")
local ffi_cast, ffi_string, ffi_new = ffi.cast, ffi.string, ffi.new
local type, error, pcall, setmetatable, tostring, tonumber, ipairs =
    type, error, pcall, setmetatable, tostring, tonumber, ipairs
local io_open, os_rename = io.open, os.rename
local str_find, str_sub = string.find, string.sub

local _M = {}

local Editor = {}
local editor_mt = { __index = Editor }

-- libedit's readline API, and the few libc calls this module makes: one
-- cdef each, so that one another module made already does no harm.
local DECLS = {
    [[typedef char **tide_le_complete_fn(const char *text, int start,
                                          int end);]],
    "typedef int tide_le_command_fn(int count, int key);",
    "typedef int tide_le_hook_fn(const char *text, int n);",
    "char *readline(const char *prompt);",
    "int rl_initialize(void);",
    "int add_history(const char *line);",
    "void clear_history(void);",
    "void stifle_history(int max);",
    "extern tide_le_complete_fn *rl_attempted_completion_function;",
    "extern int rl_attempted_completion_over;",
    "extern int rl_completion_append_character;",
    "extern char *rl_basic_word_break_characters;",
    "extern char *rl_completer_word_break_characters;",
    "extern char *rl_line_buffer;",
    "extern int rl_point;",
    "extern int rl_done;",
    "extern tide_le_hook_fn *rl_pre_input_hook;",
    "int rl_add_defun(const char *name, tide_le_command_fn *fn, int key);",
    "int rl_parse_and_bind(const char *line);",
    "int kill(int pid, int sig);",
    "void *malloc(size_t size);",
    "void free(void *p);",
    "char *strdup(const char *s);",
    "int open(const char *path, int flags, ...);",
    "int close(int fd);",
    "long write(int fd, const void *buf, size_t n);",
    "int fchmod(int fd, unsigned int mode);",
}
for _, d in ipairs(DECLS) do
    pcall(ffi.cdef, d)
end

local C = ffi.C
local O_WRONLY, O_CREAT, O_APPEND, O_TRUNC = 1, 64, 1024, 512 -- Linux
local O_CLOEXEC = 524288

-- Word breaks for completion: "ctx.stores.cou" is one word, so the whole
-- dotted path reaches the completer, which splits it itself.
local WORD_BREAKS = " \t\n\"'()[]{},;=+-*/<>~"

local edit                                    -- the libedit namespace
local load_err                                -- why it cannot be loaded
local break_chars                             -- WORD_BREAKS, malloc'ed
local open_ed                                 -- the one open editor
-- The ffi callbacks libedit calls (completion, the pre-input hook, Ctrl-C
-- and Ctrl-Z): made once, anchored here for the life of the process.
local callback, hook_cb, intr_cb, susp_cb
local interrupted                             -- Ctrl-C ended this read

local function load()
    if edit or load_err then
        return edit, load_err
    end
    local ok, lib = pcall(ffi.load, "libedit.so.2")
    if not ok then
        load_err = "line editing needs libedit (libedit.so.2, Debian "
                   .. "package libedit2): " .. tostring(lib)
        return nil, load_err
    end
    edit = lib
    return edit
end

--- Returns true when libedit can be loaded, else false and why.
---@return boolean ok, string|nil err
function _M.available()
    local lib, err = load()
    if not lib then
        return false, err
    end
    return true
end

-- Opens `path` for writing with mode 0600 (also when it exists: a file
-- made by hand stays private). Returns the descriptor or nil.
local function open_private(path, flags)
    local fd = C.open(path, O_WRONLY + O_CREAT + O_CLOEXEC + flags,
                      ffi_new("unsigned int", 384))         -- 0600
    if fd < 0 then
        return nil
    end
    C.fchmod(fd, 384)
    return fd
end

local function write_all(fd, s)
    local off = 0
    while off < #s do
        local n = tonumber(C.write(fd, str_sub(s, off + 1), #s - off))
        if n <= 0 then
            return false
        end
        off = off + n
    end
    return true
end

-- Reads the history file: its entries, oldest first (at most `max`, the
-- newest), and whether it holds many more (time to rewrite it).
local function history_load(path, max)
    local f = io_open(path, "rb")
    if not f then
        return {}, false
    end
    local lines = {}
    for line in f:lines() do
        if line ~= "" then
            lines[#lines + 1] = line
        end
    end
    f:close()
    local keep = {}
    for i = #lines - max + 1, #lines do
        if i >= 1 then
            keep[#keep + 1] = lines[i]
        end
    end
    return keep, #lines > 2 * max
end

-- Replaces the history file with `lines`, through a rename.
local function history_rewrite(path, lines)
    local tmp = path .. ".tmp"
    local fd = open_private(tmp, O_TRUNC)
    if not fd then
        return
    end
    local ok = write_all(fd, #lines > 0 and table.concat(lines, "\n") .. "\n"
                              or "")
    C.close(fd)
    if ok then
        os_rename(tmp, path)
    else
        os.remove(tmp)
    end
end

-- Builds libedit's answer for `word` from `list`: a malloc'ed
-- NULL-terminated array whose first entry replaces the word (the longest
-- common prefix of the matches, never shorter than what was typed), then
-- the matches to list. libedit frees the array and each string.
local function matches_array(word, list)
    local n = #list
    local prefix = list[1]
    for i = 2, n do
        local s, j = list[i], 0
        while j < #prefix and j < #s
              and str_sub(prefix, j + 1, j + 1) == str_sub(s, j + 1, j + 1) do
            j = j + 1
        end
        prefix = str_sub(prefix, 1, j)
    end
    if #prefix < #word then
        prefix = word
    end
    local arr = ffi_cast("char **", C.malloc(ffi.sizeof("char *") * (n + 2)))
    if arr == nil then
        return nil
    end
    arr[0] = C.strdup(prefix)
    if arr[0] == nil then
        C.free(arr)
        return nil
    end
    local k = 1
    if n > 1 then
        for i = 1, n do
            arr[k] = C.strdup(list[i])
            k = k + 1
        end
    end
    arr[k] = nil
    return arr
end

-- Called by libedit, from C, on Tab. Must never raise: an error escaping
-- here would unwind through libedit's frames. Any failure means "no
-- matches".
local function on_complete(text, start, finish)
    edit.rl_attempted_completion_over = 1     -- no file names instead
    local ed = open_ed
    if ed == nil or ed.complete == nil then
        return nil
    end
    local ok, arr = pcall(function()
        local word = ffi_string(text)
        local line = ffi_string(edit.rl_line_buffer, edit.rl_point)
        local list = ed.complete(word, line, start, finish)
        if type(list) ~= "table" then
            return nil
        end
        local clean, seen = {}, {}
        for i = 1, #list do
            local s = list[i]
            if type(s) == "string" and s ~= "" and not seen[s]
               and not str_find(s, "\0", 1, true) then
                clean[#clean + 1] = s
                seen[s] = true
            end
        end
        if #clean == 0 then
            return nil
        end
        return matches_array(word, clean)
    end)
    if not ok then
        return nil
    end
    return arr
end

-- Called by readline() before it reads, after it has reset the
-- terminal settings: Ctrl-C and Ctrl-Z become keys rather than signals,
-- so that Ctrl-C can drop the line (a signal would end the process or
-- raise "interrupted!" in Lua after readline returns).
local function on_pre_input()
    pcall(edit.rl_parse_and_bind, "setty -d -isig")
    return 0
end

-- Ctrl-C: ends the read with nothing; read() then says "interrupt".
local function on_interrupt()
    interrupted = true
    edit.rl_done = 1
    return 0
end

-- Ctrl-Z: suspends as the terminal would; libedit's own SIGTSTP handler
-- restores the terminal first and redraws the line on resume.
local function on_suspend()
    C.kill(0, 20)                             -- SIGTSTP to our group
    return 0
end

--- Returns a line editor. `opts.history` is the history file (created
--- mode 0600 on the first line; none when nil); `opts.history_size` the
--- number of entries kept (default 1000); `opts.complete(text, line)` the
--- completer: `text` is the word before the cursor (a dotted path such as
--- "ctx.stores.cou" stays whole: words break at blanks, quotes, brackets
--- and operators), `line` the line up to the cursor; it returns an array
--- of full replacements for `text` (e.g. "ctx.stores.counts"). A
--- completer that raises or returns no table means no matches. One
--- editor is open at a time: close it before making another.
---@param opts table|nil
---@return table|nil editor, string|nil err
function _M.new(opts)
    opts = opts or {}
    if type(opts) ~= "table" then
        error("bad options: table expected", 2)
    end
    local hist, size, complete = opts.history, opts.history_size or 1000,
                                 opts.complete
    if hist ~= nil and type(hist) ~= "string" then
        error("bad history: file path expected", 2)
    end
    if type(size) ~= "number" or size < 1 or size % 1 ~= 0 then
        error("bad history_size: positive integer expected", 2)
    end
    if complete ~= nil and type(complete) ~= "function" then
        error("bad complete: function expected", 2)
    end
    local lib, err = load()
    if not lib then
        return nil, err
    end
    if open_ed then
        return nil, "a line editor is open already: close it first"
    end
    lib.rl_initialize()
    if break_chars == nil then
        break_chars = C.strdup(WORD_BREAKS)   -- kept for the process
    end
    lib.rl_basic_word_break_characters = break_chars
    lib.rl_completer_word_break_characters = break_chars
    lib.rl_completion_append_character = 0    -- "x.count", then ':' or '('
    if callback == nil then
        callback = ffi_cast("tide_le_complete_fn *", on_complete)
        hook_cb = ffi_cast("tide_le_hook_fn *", on_pre_input)
        intr_cb = ffi_cast("tide_le_command_fn *", on_interrupt)
        susp_cb = ffi_cast("tide_le_command_fn *", on_suspend)
    end
    lib.rl_attempted_completion_function = callback
    lib.rl_pre_input_hook = hook_cb
    lib.rl_add_defun("tide-interrupt", intr_cb, 3)       -- Ctrl-C
    lib.rl_add_defun("tide-suspend", susp_cb, 26)        -- Ctrl-Z

    lib.clear_history()
    lib.stifle_history(size)
    local ed = setmetatable({ complete = complete, history = hist,
                              size = size, last = nil }, editor_mt)
    if hist then
        local lines, long = history_load(hist, size)
        for i = 1, #lines do
            lib.add_history(lines[i])
        end
        ed.last = lines[#lines]
        if long then
            history_rewrite(hist, lines)
        end
    end
    open_ed = ed
    return ed
end

--- Shows `prompt`, lets the user edit a line and returns it (without its
--- newline), or nil at end of input (Ctrl-D on an empty line). Ctrl-C
--- drops the line being typed: it returns "" and "interrupt" (a REPL
--- drops its unfinished chunk too). A line that is not blank and differs
--- from the previous entry goes into the history, and is appended to the
--- history file at once.
---@param prompt string|nil
---@return string|nil line, string|nil why
function Editor:read(prompt)
    if open_ed ~= self then
        error("line editor is closed", 2)
    end
    if prompt ~= nil and type(prompt) ~= "string" then
        error("bad prompt: string expected", 2)
    end
    interrupted = false
    local p = edit.readline(prompt or "")
    if interrupted then
        if p ~= nil then
            C.free(p)
        end
        io.stdout:write("^C\n")
        io.stdout:flush()
        return "", "interrupt"
    end
    if p == nil then
        return nil
    end
    local line = ffi_string(p)
    C.free(p)
    if str_find(line, "%S") and line ~= self.last then
        self.last = line
        edit.add_history(line)
        if self.history then
            local fd = open_private(self.history, O_APPEND)
            if fd then
                write_all(fd, line .. "\n")
                C.close(fd)
            end
        end
    end
    return line
end
-- libedit calls back into Lua (on_complete) from inside readline(): the
-- call must not be made from a compiled trace ("bad callback").
jit.off(Editor.read)

--- Closes the editor: completion is turned off and the in-memory history
--- cleared (the file stays). Safe to call twice.
function Editor:close()
    if open_ed == self then
        edit.rl_attempted_completion_function = nil
        edit.rl_pre_input_hook = nil
        edit.clear_history()
        open_ed = nil
    end
end

return _M
