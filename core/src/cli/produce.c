/*
 * tide produce STREAM: stdin lines -> records. Records are flushed (one
 * write and fdatasync per partition) whenever stdin has nothing more to
 * give at once, every flush_bytes, and at the end, so an interactive
 * producer is durable line by line and a piped one is written in large
 * batches. Exit 0 means every line read is durable.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK (256 * 1024)

static volatile sig_atomic_t  stop_sig;

static void
on_signal(int sig)
{
    stop_sig = sig;
}

/* Returns whether a read of stdin would return data (or EOF) now. */
static int
stdin_ready(void)
{
    struct pollfd  pfd;

    pfd.fd = STDIN_FILENO;
    pfd.events = POLLIN;
    pfd.revents = 0;
    return poll(&pfd, 1, 0) > 0;
}

static const char usage[] =
"usage: tide produce STREAM [-K SEP] [-p N] [--partitions N] [--data-dir DIR]\n"
"Reads stdin lines and appends one record per line to STREAM.\n"
"  -K SEP          text before the first SEP is the key (no SEP: no key)\n"
"  -p N            write every record to partition N (default: murmur2 of\n"
"                  the key, as Kafka does; round-robin without a key)\n"
"  --partitions N  create STREAM with N partitions if it does not exist\n"
"  --data-dir DIR  the data dir (default $TIDE_DATA_DIR, else ./tide-data)\n"
"Exit 0 means every line read is durable on disk.\n";

typedef struct {
    tide_log_t   *log;
    const char   *sep;
    size_t        seplen;
    int32_t       part;
    uint64_t      count;
} prod_t;

static int
put_line(prod_t *p, const char *line, size_t len)
{
    tide_rec_t   rec;
    const char  *k;

    memset(&rec, 0, sizeof(rec));
    rec.partition = p->part;
    rec.klen = -1;
    rec.val = line;
    rec.vlen = (int32_t) len;
    if (p->sep != NULL) {
        k = memmem(line, len, p->sep, p->seplen);
        if (k != NULL) {
            rec.key = line;
            rec.klen = (int32_t) (k - line);
            rec.val = k + p->seplen;
            rec.vlen = (int32_t) (len - (size_t) rec.klen - p->seplen);
        }
    }
    p->count++;
    return tide_log_push(p->log, &rec);
}

int
cmd_produce(int argc, char **argv)
{
    static const struct option  opts[] = {
        { "data-dir",   required_argument, NULL, 'd' },
        { "partitions", required_argument, NULL, 'P' },
        { "help",       no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    cli_t               c = { "produce", NULL };
    tide_log_params_t   params;
    prod_t              p;
    char                err[512], *buf, *line, *nl;
    const char         *stream;
    size_t              have = 0, start;
    ssize_t             n;
    int64_t             v, partitions = 0;
    int                 opt, rc = TIDE_OK, eof = 0;
    struct sigaction    sa;

    memset(&p, 0, sizeof(p));
    p.part = -1;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "K:p:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            c.data_dir = optarg;
            break;
        case 'K':
            if (*optarg == '\0') {
                return cli_usage(&c, "-K needs a non-empty separator");
            }
            p.sep = optarg;
            p.seplen = strlen(optarg);
            break;
        case 'p':
            if (cli_int(optarg, 0, INT32_MAX, &v) != 0) {
                return cli_usage(&c, "-p takes a partition number, not '%s'",
                                 optarg);
            }
            p.part = (int32_t) v;
            break;
        case 'P':
            if (cli_int(optarg, 1, 4096, &partitions) != 0) {
                return cli_usage(&c, "--partitions takes a number from 1 to "
                                 "4096, not '%s'", optarg);
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return cli_usage(&c, "unknown or incomplete option '%s'",
                             argv[optind - 1]);
        }
    }
    if (optind != argc - 1) {
        return cli_usage(&c, optind >= argc ? "no STREAM given"
                                            : "one STREAM expected");
    }
    stream = argv[optind];

    memset(&params, 0, sizeof(params));
    params.mode = partitions > 0 ? TIDE_LOG_CREATE : TIDE_LOG_OPEN;
    params.partitions = (int32_t) partitions;
    rc = tide_log_new(&p.log, cli_data_dir(c.data_dir), stream, &params, err,
                      sizeof(err));
    if (rc != TIDE_OK) {
        return cli_fail(&c, "%s", err);
    }
    if (partitions > 0 && tide_log_count(p.log) != partitions) {
        cli_fail(&c, "stream '%s' exists with %d partitions, not %lld; drop "
                 "--partitions to use it as it is", stream,
                 tide_log_count(p.log), (long long) partitions);
        tide_log_free(p.log);
        return 1;
    }
    if (p.part >= tide_log_count(p.log)) {
        cli_usage(&c, "-p %d: stream '%s' has partitions 0..%d", p.part,
                  stream, tide_log_count(p.log) - 1);
        tide_log_free(p.log);
        return 2;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    buf = malloc(CHUNK);
    if (buf == NULL) {
        tide_log_free(p.log);
        return cli_fail(&c, "out of memory");
    }
    size_t  cap = CHUNK;

    while (!eof && !stop_sig && rc == TIDE_OK) {
        if (have == cap) {
            char  *nb = realloc(buf, cap * 2);   /* a line longer than cap */

            if (nb == NULL) {
                rc = TIDE_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        n = read(STDIN_FILENO, buf + have, cap - have);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            free(buf);
            tide_log_free(p.log);
            return cli_fail(&c, "reading stdin: %s", strerror(errno));
        }
        if (n == 0) {
            eof = 1;
        }
        have += (size_t) n;
        start = 0;
        while (rc == TIDE_OK &&
               (nl = memchr(buf + start, '\n', have - start)) != NULL)
        {
            line = buf + start;
            rc = put_line(&p, line, (size_t) (nl - line));
            start = (size_t) (nl - buf) + 1;
        }
        if (eof && rc == TIDE_OK && start < have) {
            rc = put_line(&p, buf + start, have - start);
            start = have;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        /* Nothing more to read at once: commit what we have. */
        if (rc == TIDE_OK && !eof && !stdin_ready()) {
            rc = tide_log_flush(p.log);
        }
    }
    free(buf);
    if (rc == TIDE_EINVAL || rc == TIDE_ERANGE) {
        /* A line the stream refuses: keep what came before it. */
        char  why[512];

        snprintf(why, sizeof(why), "%s", tide_log_errmsg(p.log));
        rc = tide_log_flush(p.log);
        cli_fail(&c, "line %llu: %s; %s", (unsigned long long) p.count, why,
                 rc == TIDE_OK ? "the lines before it are durable"
                               : tide_log_errmsg(p.log));
        tide_log_free(p.log);
        return 1;
    }
    if (rc == TIDE_OK) {
        rc = tide_log_flush(p.log);
    }
    if (rc != TIDE_OK) {
        cli_fail(&c, "writing to stream '%s' failed: %s (records read so far "
                 "may be lost)", stream, tide_log_errmsg(p.log));
        tide_log_free(p.log);
        return 1;
    }
    tide_log_free(p.log);
    if (stop_sig) {
        fprintf(stderr, "tide produce: interrupted; the %llu records read "
                "are durable\n", (unsigned long long) p.count);
        return 128 + stop_sig;
    }
    return 0;
}
