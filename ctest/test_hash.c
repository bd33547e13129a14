/*
 * Partitioning and checksums: tide's murmur2 must place keys exactly where
 * librdkafka (and so the Java client) does, and CRC-32C must match the
 * standard check value.
 */
#include "tide.h"
#include "util/crc32c.h"

#include "ctest.h"

#include <librdkafka/rdkafka.h>
#include <string.h>

/* A small deterministic generator, so a failure is reproducible. */
static uint32_t
next_rand(uint32_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 17;
    *s ^= *s << 5;
    return *s;
}

/* librdkafka's plain murmur2 partitioner does not touch the topic or the
 * opaques, so NULL is fine for them. */
static int32_t
kafka_partition(const char *key, size_t len, int32_t n)
{
    return rd_kafka_msg_partitioner_murmur2(NULL, key, len, n, NULL, NULL);
}

static void
test_murmur2_matches_librdkafka(void)
{
    char      key[40];
    uint32_t  seed = 0x12345678u;
    size_t    len, i;
    int32_t   n;
    int       k;

    for (k = 0; k < 2000; k++) {
        len = (size_t) (k % 41);
        for (i = 0; i < len; i++) {
            /* Half the keys are printable, half arbitrary bytes with \0. */
            key[i] = k % 2 ? (char) ('a' + next_rand(&seed) % 26)
                           : (char) (next_rand(&seed) & 0xff);
        }
        for (n = 1; n <= 64; n++) {
            ASSERT_EQ(tide_partition_get(key, len, n),
                      kafka_partition(key, len, n));
        }
        ASSERT_EQ(tide_partition_get(key, len, 1000003),
                  (int32_t) ((tide_murmur2(key, len) & 0x7fffffff) %
                             1000003));
    }
}

static void
test_murmur2_known_values(void)
{
    /* Values printed by the Java client's Utils.murmur2 for these keys;
     * librdkafka's unit test rd_murmur2 checks the same ones. */
    ASSERT_EQ(tide_murmur2("kafka", 5), 0xd067cf64u);
    ASSERT_EQ(tide_murmur2("giberish123456789", 17), 0x8f552b0cu);
    ASSERT_EQ(tide_murmur2("1234", 4), 0x9fc97b14u);
    ASSERT_EQ(tide_murmur2("234", 3), 0xe7c009cau);
    ASSERT_EQ(tide_murmur2("34", 2), 0x873930dau);
    ASSERT_EQ(tide_murmur2("4", 1), 0x5a4b5ca1u);
    ASSERT_EQ(tide_murmur2("", 0), 0x106e08d9u);
}

static void
test_partition_get_rejects_no_partitions(void)
{
    ASSERT_EQ(tide_partition_get("k", 1, 0), TIDE_EINVAL);
    ASSERT_EQ(tide_partition_get("k", 1, -1), TIDE_EINVAL);
    ASSERT_EQ(tide_partition_get("k", 1, INT32_MIN), TIDE_EINVAL);
    ASSERT_EQ(tide_partition_get("k", 1, 1), 0);
}

static void
test_crc32c_check_value(void)
{
    ASSERT_EQ(tide__crc32c(0, "123456789", 9), 0xe3069283u);
    ASSERT_EQ(tide__crc32c(0, "", 0), 0);
    /* RFC 3720 B.4: 32 bytes of zeros. */
    {
        char  z[32];

        memset(z, 0, sizeof(z));
        ASSERT_EQ(tide__crc32c(0, z, sizeof(z)), 0x8a9136aau);
        memset(z, 0xff, sizeof(z));
        ASSERT_EQ(tide__crc32c(0, z, sizeof(z)), 0x62a8ab43u);
    }
}

static void
test_crc32c_incremental_equals_one_shot(void)
{
    char      buf[1000];
    uint32_t  seed = 42, whole, crc;
    size_t    i, cut, cut2;

    for (i = 0; i < sizeof(buf); i++) {
        buf[i] = (char) next_rand(&seed);
    }
    whole = tide__crc32c(0, buf, sizeof(buf));
    for (cut = 0; cut <= sizeof(buf); cut += 7) {
        crc = tide__crc32c(0, buf, cut);
        crc = tide__crc32c(crc, buf + cut, sizeof(buf) - cut);
        ASSERT_EQ(crc, whole);
    }
    /* Three pieces at unaligned cuts, a byte at a time in the middle. */
    for (cut = 1; cut < 20; cut++) {
        crc = tide__crc32c(0, buf, cut);
        for (cut2 = cut; cut2 < cut + 13; cut2++) {
            crc = tide__crc32c(crc, buf + cut2, 1);
        }
        crc = tide__crc32c(crc, buf + cut2, sizeof(buf) - cut2);
        ASSERT_EQ(crc, whole);
    }
    /* A changed byte changes the CRC. */
    buf[500] ^= 1;
    ASSERT(tide__crc32c(0, buf, sizeof(buf)) != whole);
}

int
main(void)
{
    RUN(test_murmur2_matches_librdkafka);
    RUN(test_murmur2_known_values);
    RUN(test_partition_get_rejects_no_partitions);
    RUN(test_crc32c_check_value);
    RUN(test_crc32c_incremental_equals_one_shot);
    return 0;
}
