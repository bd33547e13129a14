/* The tide command line: shared helpers of core/src/cli/. */
#ifndef TIDE_CLI_CLI_H
#define TIDE_CLI_CLI_H

#include <stdint.h>

#include "tide.h"

/* Options every command takes. */
typedef struct cli_s {
    const char  *cmd;         /* e.g. "produce", for error lines */
    const char  *data_dir;
} cli_t;

/* Prints "tide CMD: <message>" on stderr; returns 1 (the exit code). */
int  cli_fail(const cli_t *c, const char *fmt, ...)
     __attribute__((format(printf, 2, 3)));

/* Prints a usage error with a pointer to --help; returns 2. */
int  cli_usage(const cli_t *c, const char *fmt, ...)
     __attribute__((format(printf, 2, 3)));

/* Parses a whole decimal integer in [min, max]; 0 on success. */
int  cli_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Resolves the data dir: --data-dir, else $TIDE_DATA_DIR, else
 * ./tide-data. */
const char *cli_data_dir(const char *opt);

int  cmd_produce(int argc, char **argv);
int  cmd_consume(int argc, char **argv);
int  cmd_streams(int argc, char **argv);

#endif
