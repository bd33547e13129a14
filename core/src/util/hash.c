/*
 * Kafka's default partitioner: murmur2 with the Java client's seed, masked
 * to a positive int. The 'local' system must place keys exactly where a
 * Kafka producer would, so a job moves between systems without reshuffling
 * its state. ctest/test_hash.c checks it against librdkafka's own.
 */
#include "tide.h"

#include <string.h>

uint32_t
tide_murmur2(const char *key, size_t len)
{
    const uint32_t        seed = 0x9747b28cu;
    const uint32_t        m = 0x5bd1e995u;
    const int             r = 24;
    const unsigned char  *p = (const unsigned char *) key;
    uint32_t              h = seed ^ (uint32_t) len;
    uint32_t              k;

    while (len >= 4) {
        k = (uint32_t) p[0] | ((uint32_t) p[1] << 8) |
            ((uint32_t) p[2] << 16) | ((uint32_t) p[3] << 24);
        k *= m;
        k ^= k >> r;
        k *= m;
        h *= m;
        h ^= k;
        p += 4;
        len -= 4;
    }

    switch (len) {
    case 3:
        h ^= (uint32_t) p[2] << 16;
        /* fall through */
    case 2:
        h ^= (uint32_t) p[1] << 8;
        /* fall through */
    case 1:
        h ^= (uint32_t) p[0];
        h *= m;
        break;
    default:
        break;
    }

    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return h;
}

int32_t
tide_partition_get(const char *key, size_t len, int32_t n)
{
    if (n < 1) {
        return TIDE_EINVAL;
    }
    return (int32_t) ((tide_murmur2(key, len) & 0x7fffffffu) % (uint32_t) n);
}
