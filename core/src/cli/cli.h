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

/* Reports the option getopt_long refused: 'opt' is what it returned ('?'
 * for an unknown option, ':' for a missing value; the optstring must
 * start with ':'), read from optind and optopt. Suggests the nearest of
 * 'known' (NULL-terminated, may be NULL). Returns 2. */
int  cli_bad_option(const cli_t *c, int opt, int argc, char **argv,
                    const char *const *known);

/* The word of 'known' (NULL-terminated) nearest to 'word', or NULL when
 * none is near enough: at most 0, 1 or 2 edits (Damerau-Levenshtein) for
 * words of up to 2, 5 or more letters, leading '-'s and an '=VALUE' not
 * counted; single-letter options are never suggested. The result points
 * into 'known'. core/src/cli/suggest.c */
const char *cli_suggest(const char *word, const char *const *known);

/* The names of the streams in data dir 'dir', sorted, hidden and
 * half-made ones left out; *names is NULL-terminated (NULL when *n is
 * 0). Caller owns *names and each name (cli_names_free), also on
 * failure. Returns 0, -ENOENT when 'dir' has no streams/
 * folder (*n is 0), or another negative errno. */
int  cli_stream_names(const char *dir, char ***names, size_t *n);
void cli_names_free(char **names, size_t n);

/* tide_log_new for a command: on failure prints one line (for a stream
 * that does not exist, the streams that do, or how to make one) and
 * returns 1; on success returns 0 and the caller owns *out. */
int  cli_log_open(const cli_t *c, tide_log_t **out, const char *name,
                  const tide_log_params_t *params);

/* Parses a whole decimal integer in [min, max]; 0 on success. */
int  cli_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Resolves the data dir: --data-dir, else $TIDE_DATA_DIR, else
 * ./tide-data. */
const char *cli_data_dir(const char *opt);

int  cmd_produce(int argc, char **argv);
int  cmd_consume(int argc, char **argv);
int  cmd_streams(int argc, char **argv);

#endif
