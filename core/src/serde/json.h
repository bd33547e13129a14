/*
 * The json serde's codec: a Lua C module (the one place in core/ besides
 * the CLI that uses the Lua C API, because only the API can build Lua
 * tables without a call per field). bindings/tide/json.lua loads it; see
 * json.c for what it decodes and how it encodes.
 */
#ifndef TIDE_SERDE_JSON_H
#define TIDE_SERDE_JSON_H

#include <lua.h>

/* Pushes the module table { decode = f, encode = f, null = lightuserdata }
 * and returns 1. Exported under this name so that package.loadlib finds
 * it in libtide.so; the tide binary puts it into package.preload under
 * "tide.json.codec". */
__attribute__((visibility("default"))) int luaopen_tide_json_codec(lua_State *L);

#endif
