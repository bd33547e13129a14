/*
 * tide: the engine binary. Commands that need no job are written in C
 * here; LuaJIT is linked in (and tide_* exported with -Wl,-E) so that the
 * Lua runtime can reach the core through ffi.C.
 */
#include "cli/cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <luajit.h>
#include <uv.h>

static const char usage[] =
"usage: tide <command> [options]\n"
"\n"
"Streams (the embedded log under the data dir):\n"
"  streams list                      names of the streams\n"
"  streams create NAME --partitions N [--compact]   make a stream\n"
"  streams describe NAME             settings, offsets and size per partition\n"
"  streams clean NAME                apply retention / compaction now\n"
"  produce STREAM [-K SEP] [-p N] [--partitions N]  stdin lines -> records\n"
"  consume STREAM [-f FMT] [-o beginning|end|N|-N] [-p N] [-e] [-c N]\n"
"                                    records -> stdout, kcat-like format\n"
"  version                           versions of tide and its libraries\n"
"\n"
"Every command takes --data-dir DIR (default: $TIDE_DATA_DIR, else\n"
"./tide-data) and --help.\n";

int
cli_fail(const cli_t *c, const char *fmt, ...)
{
    va_list  ap;

    fprintf(stderr, "tide %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    return 1;
}

int
cli_usage(const cli_t *c, const char *fmt, ...)
{
    va_list  ap;

    fprintf(stderr, "tide %s: ", c->cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (see 'tide %s --help')\n", c->cmd);
    return 2;
}

int
cli_int(const char *s, int64_t min, int64_t max, int64_t *out)
{
    char       *end;
    long long   v;

    if (s == NULL || *s == '\0') {
        return -1;
    }
    errno = 0;
    v = strtoll(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < min || v > max) {
        return -1;
    }
    *out = v;
    return 0;
}

const char *
cli_data_dir(const char *opt)
{
    const char  *env;

    if (opt != NULL) {
        return opt;
    }
    env = getenv("TIDE_DATA_DIR");
    if (env != NULL && *env != '\0') {
        return env;
    }
    return "./tide-data";
}

static int
cmd_version(int argc, char **argv)
{
    int  i;

    for (i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("usage: tide version\nPrints the versions of tide and of "
                   "the libraries it runs on.\n");
            return 0;
        }
    }
    printf("tide %s (abi %d)\n%s\nlibrdkafka %s\nlibuv %s\n", tide_version(),
           tide_abi_version(), LUAJIT_VERSION, rd_kafka_version_str(),
           uv_version_string());
    return 0;
}

int
main(int argc, char **argv)
{
    const char  *cmd;

    /* A leading '--data-dir DIR' applies to the command that follows. */
    while (argc >= 2 && strncmp(argv[1], "--data-dir", 10) == 0) {
        if (argv[1][10] == '=') {
            setenv("TIDE_DATA_DIR", argv[1] + 11, 1);
            argv++;
            argc--;
        } else if (argv[1][10] == '\0' && argc >= 3) {
            setenv("TIDE_DATA_DIR", argv[2], 1);
            argv += 2;
            argc -= 2;
        } else {
            fprintf(stderr, "tide: --data-dir needs a folder\n");
            return 2;
        }
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 ||
        strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)
    {
        fputs(usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    cmd = argv[1];
    if (strcmp(cmd, "produce") == 0) {
        return cmd_produce(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "consume") == 0) {
        return cmd_consume(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "streams") == 0) {
        return cmd_streams(argc - 1, argv + 1);
    }
    if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
        return cmd_version(argc - 1, argv + 1);
    }
    fprintf(stderr, "tide: unknown command '%s'; run 'tide --help' for the "
            "list\n", cmd);
    return 2;
}
