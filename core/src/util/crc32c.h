/* CRC-32C (Castagnoli), the checksum of every log record. */
#ifndef TIDE_UTIL_CRC32C_H
#define TIDE_UTIL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Returns the CRC-32C of 'len' bytes at 'p', continuing from 'crc' (0 to
 * start). Uses the SSE4.2 instruction when the CPU has it. */
uint32_t tide__crc32c(uint32_t crc, const void *p, size_t len);

#endif
