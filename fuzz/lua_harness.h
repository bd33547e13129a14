/*
 * Shared by the libFuzzer targets that drive Lua code (fuzz_headers.c,
 * fuzz_checkpoint.c, fuzz_json.c): each input runs in a fresh LuaJIT
 * state that loads the project's modules from the source tree and calls
 * the function returned by a check script in fuzz/ (check_<target>.lua)
 * with the input as a string. The check script calls the code under test
 * under pcall and raises an error starting with "FINDING:" when the
 * result breaks the code's documented contract; any error that escapes
 * it is a finding, and the target prints it and aborts.
 *
 * Coverage: libFuzzer sees only the C it compiled, and Lua code runs in
 * LuaJIT's interpreter. So a line hook feeds the edges between Lua lines
 * (source name and line, hashed as AFL does) into an extra counters
 * section, which libFuzzer reads like its own: new Lua paths count as
 * new coverage. The JIT is off so that every line runs the hook.
 *
 * The state allocates with malloc, so ASan checks Lua's memory too, and
 * lua_close at the end of every input leaves nothing for LeakSanitizer.
 *
 * TIDE_SOURCE_DIR (a compile definition) is the checkout; the modules are
 * read from its bindings/, lua/ and fuzz/ folders.
 */
#ifndef TIDE_FUZZ_LUA_HARNESS_H
#define TIDE_FUZZ_LUA_HARNESS_H

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HARNESS_EDGES  (1 << 16)

__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t     harness_counters[HARNESS_EDGES];
static uint32_t    harness_prev;

static void *
harness_alloc(void *ud, void *p, size_t osize, size_t nsize)
{
    (void) ud;
    (void) osize;
    if (nsize == 0) {
        free(p);
        return NULL;
    }
    return realloc(p, nsize);
}

/* FNV-1a of the chunk name and the line: the same in every state. */
static void
harness_hook(lua_State *L, lua_Debug *ar)
{
    uint32_t     h = 2166136261u;
    const char  *s;
    uint32_t     cur;

    if (ar->event != LUA_HOOKLINE || !lua_getinfo(L, "S", ar)) {
        return;
    }
    for (s = ar->source; *s != '\0'; s++) {
        h = (h ^ (uint8_t) *s) * 16777619u;
    }
    cur = (h ^ (uint32_t) ar->currentline * 2654435761u) &
          (HARNESS_EDGES - 1);
    harness_counters[(cur ^ harness_prev) & (HARNESS_EDGES - 1)]++;
    harness_prev = cur >> 1;
}

/* Runs check script 'script' (relative to the checkout) on one input.
 * 'preload', when not NULL, is put into package.preload under
 * 'preload_name' first. Aborts on a finding or when the set-up fails. */
static void
harness_run(const char *tag, const char *script, const char *preload_name,
            lua_CFunction preload, const uint8_t *data, size_t size)
{
    lua_State  *L = lua_newstate(harness_alloc, NULL);
    char        path[8192];

    if (L == NULL) {
        printf("%s: cannot make a Lua state\n", tag);
        abort();
    }
    luaL_openlibs(L);
    luaJIT_setmode(L, 0, LUAJIT_MODE_ENGINE | LUAJIT_MODE_OFF);

    snprintf(path, sizeof(path), "%s/bindings/?.lua;%s/lua/?.lua;"
             "%s/fuzz/?.lua;", TIDE_SOURCE_DIR, TIDE_SOURCE_DIR,
             TIDE_SOURCE_DIR);
    lua_getglobal(L, "package");
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    if (preload != NULL) {
        lua_getfield(L, -1, "preload");
        lua_pushcfunction(L, preload);
        lua_setfield(L, -2, preload_name);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);

    snprintf(path, sizeof(path), "%s/%s", TIDE_SOURCE_DIR, script);
    if (luaL_loadfile(L, path) != 0 || lua_pcall(L, 0, 1, 0) != 0 ||
        lua_type(L, -1) != LUA_TFUNCTION)
    {
        printf("%s: cannot load %s: %s\n", tag, path,
               lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                              : "it returned no function");
        abort();
    }

    harness_prev = 0;
    lua_sethook(L, harness_hook, LUA_MASKLINE, 0);
    lua_pushlstring(L, (const char *) data, size);
    if (lua_pcall(L, 1, 0, 0) != 0) {
        lua_sethook(L, NULL, 0, 0);
        /* stdout: the runs close stderr. */
        printf("%s: %s\n", tag, lua_type(L, -1) == LUA_TSTRING
                                ? lua_tostring(L, -1)
                                : "FINDING: an error that is not a string");
        fflush(stdout);
        abort();
    }
    lua_close(L);
}

#endif
