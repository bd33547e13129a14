/*
 * CRC-32C. Records are checked on every read, so this is on the hot path:
 * the SSE4.2 crc32 instruction does 8 bytes a cycle or so; a table-driven
 * loop is the fallback for CPUs without it. Debian has no packaged
 * CRC-32C library, hence this file.
 */
#include "util/crc32c.h"

#include <string.h>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

#define POLY 0x82f63b78u   /* reversed Castagnoli polynomial */

static uint32_t
crc_soft(uint32_t crc, const unsigned char *p, size_t len)
{
    size_t  i;
    int     k;

    for (i = 0; i < len; i++) {
        crc ^= p[i];
        for (k = 0; k < 8; k++) {
            crc = (crc >> 1) ^ (POLY & (0u - (crc & 1u)));
        }
    }
    return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2")))
static uint32_t
crc_hw(uint32_t crc, const unsigned char *p, size_t len)
{
    uint64_t  c = crc;
    uint64_t  w;

    while (len >= 8) {
        memcpy(&w, p, 8);
        c = _mm_crc32_u64(c, w);
        p += 8;
        len -= 8;
    }
    crc = (uint32_t) c;
    while (len > 0) {
        crc = _mm_crc32_u8(crc, *p);
        p++;
        len--;
    }
    return crc;
}
#endif

uint32_t
tide__crc32c(uint32_t crc, const void *p, size_t len)
{
    crc = ~crc;
#if defined(__x86_64__)
    if (__builtin_cpu_supports("sse4.2")) {
        return ~crc_hw(crc, p, len);
    }
#endif
    return ~crc_soft(crc, p, len);
}
