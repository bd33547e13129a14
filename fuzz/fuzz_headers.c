/*
 * libFuzzer target: the record header block decoder, decode() of
 * lua/tide/headers.lua. The contract is checked by
 * fuzz/check_headers.lua; lua_harness.h runs it in LuaJIT.
 */
#include "lua_harness.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    harness_run("fuzz_headers", "fuzz/check_headers.lua", NULL, NULL, data, size);
    return 0;
}
