/*
 * libFuzzer target: the json codec (core/src/serde/json.c, a Lua C module
 * inside libtide). Any bytes are decoded; what decodes is encoded and
 * decoded again and must come back the same. The contract is checked by
 * fuzz/check_json.lua; lua_harness.h runs it in LuaJIT, with the codec
 * (compiled into this target, instrumented) preloaded as
 * "tide.json.codec" the way the tide binary preloads it.
 */
#include "lua_harness.h"
#include "serde/json.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_run("fuzz_json", "fuzz/check_json.lua", "tide.json.codec",
                luaopen_tide_json_codec, data, size);
    return 0;
}
