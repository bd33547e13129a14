/*
 * On-disk format of the embedded log. Internal to core/src/log/.
 *
 * A partition is a folder of segments. Segment '<base>.log' (base = offset
 * of its first record, 20 digits) starts with a 16-byte header, then holds
 * records back to back. All integers are little-endian.
 *
 *   segment header:  "TIDESEG1"  u32 version (1)  u32 reserved (0)
 *   record:          u32 len      bytes that follow this field
 *                    u32 crc      CRC-32C of the 'len - 4' bytes after it
 *                    i64 offset
 *                    i64 ts       milliseconds since the epoch
 *                    i32 klen     -1: nil key
 *                    i32 vlen     -1: nil value (tombstone)
 *                    i32 hlen     header block bytes (0: none)
 *                    key, value, header block
 *
 * '<base>.index' is a sparse index, a hint only: pairs of u32 (offset -
 * base, byte position), one every TIDE__INDEX_EVERY bytes of log. It is
 * rebuilt or cut back whenever it disagrees with the log.
 */
#ifndef TIDE_LOG_FORMAT_H
#define TIDE_LOG_FORMAT_H

#include <stdint.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the log format is written for little-endian hosts"
#endif

#define TIDE__SEG_MAGIC      "TIDESEG1"
#define TIDE__SEG_VERSION    1u
#define TIDE__SEG_HDR        16
#define TIDE__REC_HDR        36
#define TIDE__REC_MAX        (64 * 1024 * 1024)
#define TIDE__INDEX_EVERY    4096
#define TIDE__INDEX_ENTRY    8

static inline uint32_t
tide__ld32(const char *p)
{
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static inline int64_t
tide__ld64(const char *p)
{
    int64_t v;
    memcpy(&v, p, 8);
    return v;
}

static inline void
tide__st32(char *p, uint32_t v)
{
    memcpy(p, &v, 4);
}

static inline void
tide__st64(char *p, int64_t v)
{
    memcpy(p, &v, 8);
}

#endif
