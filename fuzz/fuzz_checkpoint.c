/*
 * libFuzzer target: the checkpoint reader, decode() of lua/tide/checkpoint.lua
 * (the pure function behind load()). The contract is checked by
 * fuzz/check_checkpoint.lua; lua_harness.h runs it in LuaJIT.
 */
#include "lua_harness.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_run("fuzz_checkpoint", "fuzz/check_checkpoint.lua", NULL, NULL, data, size);
    return 0;
}
