/*
 * tide produce STREAM [FILE]: lines of FILE or stdin -> records. Records
 * are flushed (one write and fdatasync per partition) when the input has
 * given nothing more for LINGER_MS, at least every MAX_DELAY_MS while it
 * keeps coming, every flush_bytes, and at the end. An interactive
 * producer is durable line by line within LINGER_MS; a live program
 * (`gen | tide produce`) that pauses briefly between its writes is
 * written in large batches, as a file is. Exit 0 means every record read
 * is durable. On a terminal, stderr shows the progress every second.
 *
 * A record ends at DELIM (-D, newline by default); a last record without
 * one is still a record, and a trailing DELIM makes no empty record.
 */
#include "cli/cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK         (256 * 1024)
#define LINGER_MS     20      /* a pause this long flushes what was read */
#define MAX_DELAY_MS  200     /* ... and a steady input flushes this often */
#define PROGRESS_MS   1000

static volatile sig_atomic_t  stop_sig;

static void
on_signal(int sig)
{
    stop_sig = sig;
}

/* Returns whether a read of 'fd' would return data (or EOF) within
 * 'ms' milliseconds (0: now). */
static int
input_ready(int fd, int ms)
{
    struct pollfd  pfd;
    int            n;

    pfd.fd = fd;
    pfd.events = POLLIN;
    pfd.revents = 0;
    do {
        n = poll(&pfd, 1, ms);
    } while (n < 0 && errno == EINTR && !stop_sig);
    return n > 0;
}

static const char usage[] =
"usage: tide produce STREAM [FILE] [-K SEP] [-D DELIM] [-Z]\n"
"                    [-H NAME=VALUE]... [-p N] [--partitions N]\n"
"                    [--data-dir DIR]\n"
"Reads FILE (default or '-': stdin) and appends one record per line to\n"
"STREAM.\n"
"  -K SEP          text before the first SEP is the key (no SEP: no key)\n"
"  -D DELIM        records end with DELIM instead of a newline; DELIM may\n"
"                  be several bytes and takes the escapes \\0 \\n \\t \\r\n"
"                  \\\\ and \\xHH\n"
"  -Z              an empty value is a nil value (a tombstone)\n"
"  -H NAME=VALUE   adds this header to every record (repeatable)\n"
"  -p N            write every record to partition N (default: murmur2 of\n"
"                  the key, as Kafka does; round-robin without a key)\n"
"  --partitions N  create STREAM with N partitions if it does not exist\n"
"  --data-dir DIR  the data dir (default $TIDE_DATA_DIR, else ./tide-data)\n"
"Exit 0 means every record read is durable on disk.\n";

typedef struct {
    tide_log_t   *log;        /* owned */
    const char   *stream;     /* borrowed from argv, as are sep and path */
    const char   *path;       /* FILE; NULL: stdin */
    int           fd;         /* the input; owned unless STDIN_FILENO */
    const char   *sep;        /* -K */
    size_t        seplen;
    const char   *delim;      /* dbuf, or "\n" */
    size_t        dlen;
    char         *dbuf;       /* owned: -D decoded, NULL without -D */
    char         *hdrs;       /* owned: the -H header block, NULL: none */
    size_t        hlen;
    uint32_t      hcount;
    int           tomb;       /* -Z */
    int32_t       part;
    int64_t       partitions;
    uint64_t      count;
    int           rerrno;     /* errno of a failed read, else 0 */
    uint64_t      flushed;    /* count at the last flush */
    int64_t       dirty_ms;   /* when the first record not yet flushed
                                 was read; 0: none */
    int           tty;        /* stderr is a terminal: show progress */
    int64_t       start_ms, shown_ms;
} prod_t;

static int
hexval(int ch)
{
    if (ch >= '0' && ch <= '9') {
        return ch - '0';
    }
    if (ch >= 'a' && ch <= 'f') {
        return ch - 'a' + 10;
    }
    if (ch >= 'A' && ch <= 'F') {
        return ch - 'A' + 10;
    }
    return -1;
}

/* Decodes the escapes \0 \n \t \r \\ and \xHH of 's' into 'out', which
 * has room for strlen(s) bytes (no escape is shorter than what it makes),
 * and sets *len. Returns TIDE_OK, or TIDE_EINVAL on any other escape. */
static int
unescape(const char *s, char *out, size_t *len)
{
    size_t  n = 0;
    int     hi, lo;

    for (; *s != '\0'; s++) {
        if (*s != '\\') {
            out[n++] = *s;
            continue;
        }
        switch (*++s) {
        case '0':  out[n++] = '\0'; break;
        case 'n':  out[n++] = '\n'; break;
        case 't':  out[n++] = '\t'; break;
        case 'r':  out[n++] = '\r'; break;
        case '\\': out[n++] = '\\'; break;
        case 'x':
            hi = hexval((unsigned char) s[1]);
            lo = hi >= 0 ? hexval((unsigned char) s[2]) : -1;
            if (lo < 0) {
                *len = n;
                return TIDE_EINVAL;
            }
            out[n++] = (char) (hi * 16 + lo);
            s += 2;
            break;
        default:                        /* also a lone '\' at the end */
            *len = n;
            return TIDE_EINVAL;
        }
    }
    *len = n;
    return TIDE_OK;
}

static void
put_u32(char *p, uint32_t v)
{
    p[0] = (char) (v & 0xff);
    p[1] = (char) ((v >> 8) & 0xff);
    p[2] = (char) ((v >> 16) & 0xff);
    p[3] = (char) ((v >> 24) & 0xff);
}

/* Appends "NAME=VALUE" (split at the first '=') to p->hdrs, the block
 * tide_rec_t.hdrs takes: u32 count, then per header u32 name length,
 * name, i32 value length, value; little-endian (lua/tide/headers.lua).
 * Returns TIDE_OK, TIDE_EINVAL (no '=' or an empty name), TIDE_ERANGE
 * (the block would pass INT32_MAX bytes) or TIDE_ENOMEM; p->hdrs is left
 * as it was on failure. */
static int
hdr_add(prod_t *p, const char *arg)
{
    const char  *eq = strchr(arg, '=');
    size_t       nlen, vlen, len;
    char        *b;

    if (eq == NULL || eq == arg) {
        return TIDE_EINVAL;
    }
    nlen = (size_t) (eq - arg);
    vlen = strlen(eq + 1);
    len = (p->hdrs != NULL ? p->hlen : 4) + 8 + nlen + vlen;
    if (len > INT32_MAX) {
        return TIDE_ERANGE;
    }
    b = realloc(p->hdrs, len);
    if (b == NULL) {
        return TIDE_ENOMEM;
    }
    if (p->hdrs == NULL) {
        put_u32(b, 0);
        p->hlen = 4;
    }
    p->hdrs = b;
    b += p->hlen;
    put_u32(b, (uint32_t) nlen);
    memcpy(b + 4, arg, nlen);
    put_u32(b + 4 + nlen, (uint32_t) vlen);
    memcpy(b + 8 + nlen, eq + 1, vlen);
    p->hlen = len;
    put_u32(p->hdrs, ++p->hcount);
    return TIDE_OK;
}

static int
put_rec(prod_t *p, const char *line, size_t len)
{
    tide_rec_t   rec;
    const char  *k;

    memset(&rec, 0, sizeof(rec));
    rec.partition = p->part;
    rec.klen = -1;
    rec.val = line;
    rec.vlen = (int32_t) len;
    rec.hdrs = p->hdrs;
    rec.hlen = (int32_t) p->hlen;
    if (p->sep != NULL) {
        k = memmem(line, len, p->sep, p->seplen);
        if (k != NULL) {
            rec.key = line;
            rec.klen = (int32_t) (k - line);
            rec.val = k + p->seplen;
            rec.vlen = (int32_t) (len - (size_t) rec.klen - p->seplen);
        }
    }
    if (p->tomb && rec.vlen == 0) {
        rec.val = NULL;
        rec.vlen = -1;
    }
    p->count++;
    return tide_log_push(p->log, &rec);
}

/* Parses the command line into 'p'. Returns -1 to go on, else the exit
 * code (0 after --help, 2 on a usage error, 1 out of memory). */
static int
prod_args(prod_t *p, cli_t *c, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "data-dir",   required_argument, NULL, 'd' },
        { "partitions", required_argument, NULL, 'P' },
        { "help",       no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    static const char *const    known[] = {
        "-K", "-D", "-Z", "-H", "-p", "--partitions", "--data-dir", "--help",
        NULL
    };
    int64_t  v;
    int      opt, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":K:D:ZH:p:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd':
            c->data_dir = optarg;
            break;
        case 'K':
            if (*optarg == '\0') {
                return cli_usage(c, "-K needs a non-empty separator");
            }
            p->sep = optarg;
            p->seplen = strlen(optarg);
            break;
        case 'D':
            if (*optarg == '\0') {
                return cli_usage(c, "-D '': the delimiter is empty");
            }
            free(p->dbuf);
            p->dbuf = malloc(strlen(optarg));
            if (p->dbuf == NULL) {
                return cli_fail(c, "out of memory");
            }
            if (unescape(optarg, p->dbuf, &p->dlen) != TIDE_OK) {
                return cli_usage(c, "-D '%s': bad escape", optarg);
            }
            p->delim = p->dbuf;
            break;
        case 'Z':
            p->tomb = 1;
            break;
        case 'H':
            rc = hdr_add(p, optarg);
            if (rc == TIDE_EINVAL) {
                return cli_usage(c, "-H '%s': NAME=VALUE expected", optarg);
            }
            if (rc != TIDE_OK) {
                return cli_fail(c, "-H: %s", tide_strerror(rc));
            }
            break;
        case 'p':
            if (cli_int(optarg, 0, INT32_MAX, &v) != 0) {
                return cli_usage(c, "-p takes a partition number, not '%s'",
                                 optarg);
            }
            p->part = (int32_t) v;
            break;
        case 'P':
            if (cli_int(optarg, 1, 4096, &p->partitions) != 0) {
                return cli_usage(c, "--partitions takes a number from 1 to "
                                 "4096, not '%s'", optarg);
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return cli_bad_option(c, opt, argc, argv, known);
        }
    }
    if (optind >= argc) {
        return cli_usage(c, "no STREAM given");
    }
    if (argc - optind > 2) {
        return cli_usage(c, "one STREAM and at most one FILE expected");
    }
    p->stream = argv[optind];
    if (argc - optind == 2 && strcmp(argv[optind + 1], "-") != 0) {
        p->path = argv[optind + 1];
    }
    return -1;
}

/* Opens the input, then the stream (so a missing FILE creates no stream).
 * Returns -1 to go on, else the exit code. */
static int
prod_open(prod_t *p, const cli_t *c)
{
    tide_log_params_t  params;

    if (p->path != NULL) {
        p->fd = open(p->path, O_RDONLY | O_CLOEXEC);
        if (p->fd < 0) {
            return cli_fail(c, "cannot read '%s': %s", p->path,
                            strerror(errno));
        }
    }
    memset(&params, 0, sizeof(params));
    params.mode = p->partitions > 0 ? TIDE_LOG_CREATE : TIDE_LOG_OPEN;
    params.partitions = (int32_t) p->partitions;
    if (cli_log_open(c, &p->log, p->stream, &params) != 0) {
        return 1;
    }
    if (p->partitions > 0 && tide_log_count(p->log) != p->partitions) {
        return cli_fail(c, "stream '%s' exists with %d partitions, not %lld; "
                        "drop --partitions to use it as it is", p->stream,
                        tide_log_count(p->log), (long long) p->partitions);
    }
    if (p->part >= tide_log_count(p->log)) {
        return cli_usage(c, "-p %d: stream '%s' has partitions 0..%d",
                         p->part, p->stream, tide_log_count(p->log) - 1);
    }
    return -1;
}

/* On a terminal: the records so far and their rate, once a second, on
 * one line that each update overwrites; 'last' ends it. */
static void
show_progress(prod_t *p, int64_t now, int last)
{
    double  secs;

    if (!p->tty || (!last && now - p->shown_ms < PROGRESS_MS)
        || (last && p->shown_ms == p->start_ms))
    {
        return;
    }
    p->shown_ms = now;
    secs = (double) (now - p->start_ms) / 1000.0;
    fprintf(stderr, "\rtide produce: %llu records to '%s' (%.0f/s)%s",
            (unsigned long long) p->count, p->stream,
            secs > 0 ? (double) p->count / secs : 0.0, last ? "\n" : "");
}

/* Flushes when the records read and not yet flushed are due: the input
 * paused LINGER_MS, or the oldest of them waits MAX_DELAY_MS. */
static int
flush_due(prod_t *p)
{
    int64_t  now = tide_time_get(TIDE_TIME_MONO);
    int64_t  left;

    show_progress(p, now, 0);
    if (p->count == p->flushed) {
        p->dirty_ms = 0;
        return TIDE_OK;
    }
    if (p->dirty_ms == 0) {
        p->dirty_ms = now;
    }
    left = p->dirty_ms + MAX_DELAY_MS - now;
    if (left > 0
        && input_ready(p->fd, left < LINGER_MS ? (int) left : LINGER_MS))
    {
        return TIDE_OK;                 /* more input comes: keep reading */
    }
    p->flushed = p->count;
    p->dirty_ms = 0;
    return tide_log_flush(p->log);
}

/* Reads the input to its end (or a signal) and pushes one record per
 * DELIM, flushing as flush_due says. Returns
 * TIDE_OK or the first error; a failed read sets p->rerrno and returns
 * TIDE_EIO. */
static int
prod_run(prod_t *p)
{
    char        *buf, *nb, *d;
    size_t       cap = CHUNK, have = 0, start, from = 0;
    ssize_t      n;
    int          rc = TIDE_OK, eof = 0;

    buf = malloc(cap);
    if (buf == NULL) {
        return TIDE_ENOMEM;
    }
    while (!eof && !stop_sig && rc == TIDE_OK) {
        if (have == cap) {
            nb = realloc(buf, cap * 2);     /* a record longer than cap */
            if (nb == NULL) {
                rc = TIDE_ENOMEM;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        n = read(p->fd, buf + have, cap - have);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            p->rerrno = errno;
            rc = TIDE_EIO;
            break;
        }
        if (n == 0) {
            eof = 1;
        }
        have += (size_t) n;
        start = 0;
        /* buf[0, from) was searched already and holds no whole DELIM. */
        while (rc == TIDE_OK &&
               (d = memmem(buf + from, have - from, p->delim, p->dlen))
               != NULL)
        {
            rc = put_rec(p, buf + start, (size_t) (d - buf) - start);
            start = (size_t) (d - buf) + p->dlen;
            from = start;
        }
        if (eof && rc == TIDE_OK && start < have) {
            rc = put_rec(p, buf + start, have - start);
            start = have;
        }
        memmove(buf, buf + start, have - start);
        have -= start;
        /* A DELIM cut by the end of this read starts in its last dlen-1
         * bytes: search again from there. */
        from = have >= p->dlen ? have - p->dlen + 1 : 0;
        /* Nothing more to read at once: commit what we have, when due. */
        if (rc == TIDE_OK && !eof && !input_ready(p->fd, 0)) {
            rc = flush_due(p);
        }
    }
    free(buf);
    return rc;
}

/* Frees what 'p' owns; tide_log_free flushes what is still buffered. */
static void
prod_free(prod_t *p)
{
    if (p->fd != STDIN_FILENO && p->fd >= 0) {
        close(p->fd);
    }
    tide_log_free(p->log);
    free(p->dbuf);
    free(p->hdrs);
}

int
cmd_produce(int argc, char **argv)
{
    cli_t             c = { "produce", NULL };
    prod_t            p;
    struct sigaction  sa;
    char              why[512];
    int               code, rc;

    memset(&p, 0, sizeof(p));
    p.fd = STDIN_FILENO;
    p.part = -1;
    p.delim = "\n";
    p.dlen = 1;
    code = prod_args(&p, &c, argc, argv);
    if (code < 0) {
        code = prod_open(&p, &c);
    }
    if (code >= 0) {
        prod_free(&p);
        return code;
    }

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    p.tty = isatty(STDERR_FILENO);
    p.start_ms = p.shown_ms = tide_time_get(TIDE_TIME_MONO);
    rc = prod_run(&p);
    show_progress(&p, tide_time_get(TIDE_TIME_MONO), 1);
    if (rc == TIDE_EINVAL || rc == TIDE_ERANGE) {
        /* A record the stream refuses: keep what came before it. */
        snprintf(why, sizeof(why), "%s", tide_log_errmsg(p.log));
        rc = tide_log_flush(p.log);
        cli_fail(&c, "record %llu: %s; %s", (unsigned long long) p.count,
                 why, rc == TIDE_OK ? "the records before it are durable"
                                    : tide_log_errmsg(p.log));
        prod_free(&p);
        return 1;
    }
    if (p.rerrno != 0) {
        /* As before: freeing the log flushes what was read. */
        if (p.path != NULL) {
            cli_fail(&c, "cannot read '%s': %s", p.path, strerror(p.rerrno));
        } else {
            cli_fail(&c, "reading stdin: %s", strerror(p.rerrno));
        }
        prod_free(&p);
        return 1;
    }
    if (rc == TIDE_OK) {
        rc = tide_log_flush(p.log);
    }
    if (rc != TIDE_OK) {
        cli_fail(&c, "writing to stream '%s' failed: %s (records read so far "
                 "may be lost)", p.stream, rc == TIDE_ENOMEM
                 ? tide_strerror(rc) : tide_log_errmsg(p.log));
        prod_free(&p);
        return 1;
    }
    prod_free(&p);
    if (stop_sig) {
        fprintf(stderr, "tide produce: interrupted; the %llu records read "
                "are durable\n", (unsigned long long) p.count);
        return 128 + stop_sig;
    }
    return 0;
}
