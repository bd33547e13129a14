/*
 * tide consume STREAM: records -> stdout, formatted with kcat's tokens or
 * as JSON (-J). Reads the partitions in turn, a batch at a time, so a
 * busy partition does not starve the others. Without -e it follows new
 * records: once every partition is read to its end it waits on an
 * inotify watch of the partition folders (tide_notify_wait), so that a
 * record appended by any process shows up at once and an idle follower
 * does not poll. The wait is bounded (WAIT_MS) as a safety net: a read
 * after it finds whatever a missed or coalesced event would have
 * announced. Without an inotify instance (fs.inotify.max_user_instances
 * reached) it falls back to polling with a back-off of up to 50 ms.
 *
 * -o s@MS starts each partition at its first record stamped at or after
 * MS. The log keeps no index by time, and timestamps need not grow with
 * offsets (a job's outputs carry their inputs' times), so each partition
 * is read from its start up to that record: the cost is one read of
 * every record before it (as 'tide offsets reset --to @TIME').
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH    512
#define WAIT_MS  500

static const char usage[] =
"usage: tide consume STREAM [-f FMT | -J] [-o beginning|end|N|-N|s@MS]\n"
"                           [-p N] [-e] [-c COUNT] [-q] [--data-dir DIR]\n"
"Prints the records of STREAM, following new ones until interrupted.\n"
"  -f FMT   output format (default '%s\\n'); tokens: %k key, %s value,\n"
"           %p partition, %o offset, %T timestamp (ms), %t stream,\n"
"           %h headers (name=value,...),\n"
"           %K key length, %S value length, %% a '%'; escapes \\n \\t \\\\\n"
"  -J       one JSON object per line: stream, partition, offset,\n"
"           timestamp, key, value (null when absent), headers (an\n"
"           object); bytes that are not UTF-8 are written as \\u00XX\n"
"  -o POS   start at 'beginning' (default), 'end', offset N, N records\n"
"           before the end (-N), or at the first record stamped at or\n"
"           after MS milliseconds since 1970 (s@MS; each partition is\n"
"           read from its start to find it)\n"
"  -p N     read only partition N (default: all)\n"
"  -e       exit once every partition is read to its end\n"
"  -c COUNT exit after COUNT records\n"
"  -q       no informational lines on stderr (errors are still printed)\n";

/* Where reading starts in each partition (-o). */
typedef enum {
    POS_BEGINNING,
    POS_END,
    POS_OFFSET,           /* at 'arg' */
    POS_TAIL,             /* 'arg' records before the end */
    POS_TIME              /* at the first record stamped at or after 'arg' */
} pos_kind_t;

typedef struct cons_s {
    cli_t            c;
    const char      *stream;      /* borrowed from argv, as is fmt_arg */
    const char      *fmt_arg;
    char            *fmt;         /* owned: fmt_arg unescaped */
    int              json;        /* -J */
    int              quiet;       /* -q */
    int              exit_at_end; /* -e */
    pos_kind_t       pos;
    int64_t          pos_arg;
    int64_t          only;        /* -p, else -1 */
    int64_t          limit;       /* -c, else -1 */
    tide_log_t      *log;         /* owned, as are the readers */
    tide_reader_t  **readers;     /* one slot per partition */
    int32_t          nparts;
    int32_t          first, last; /* the partitions read */
    tide_rec_t      *recs;        /* owned: BATCH records */
    tide_notify_t   *notify;      /* owned; NULL: poll */
} cons_t;

/* Turns the escapes of a format string into the bytes they stand for. */
static char *
unescape(const char *f)
{
    char    *out = malloc(strlen(f) + 1), *o = out;

    if (out == NULL) {
        return NULL;
    }
    for (; *f; f++) {
        if (*f != '\\' || f[1] == '\0') {
            *o++ = *f;
            continue;
        }
        f++;
        switch (*f) {
        case 'n':  *o++ = '\n'; break;
        case 't':  *o++ = '\t'; break;
        case 'r':  *o++ = '\r'; break;
        case '\\': *o++ = '\\'; break;
        default:   *o++ = '\\'; *o++ = *f; break;
        }
    }
    *o = '\0';
    return out;
}

static int
check_fmt(const char *f)
{
    for (; *f; f++) {
        if (*f == '%') {
            f++;
            if (*f == '\0' || strchr("kspoTthKS%", *f) == NULL) {
                return -1;
            }
        }
    }
    return 0;
}

/* Prints the header block (u32 count, then per header u32 name length,
 * name, i32 value length or -1, value) as name=value pairs, comma
 * separated; a malformed block prints as "<bad headers>". */
static void
print_hdrs(FILE *out, const tide_rec_t *r)
{
    const unsigned char  *p = (const unsigned char *) r->hdrs;
    size_t                left = r->hlen > 0 ? (size_t) r->hlen : 0;
    uint32_t              count, i, nlen;
    int32_t               vlen;

    if (left < 4) {
        return;
    }
    memcpy(&count, p, 4);
    p += 4;
    left -= 4;
    for (i = 0; i < count; i++) {
        if (left < 4) {
            goto bad;
        }
        memcpy(&nlen, p, 4);
        if (left < 8 + (size_t) nlen) {
            goto bad;
        }
        memcpy(&vlen, p + 4 + nlen, 4);
        if (vlen < -1 || left < 8 + (size_t) nlen + (vlen > 0 ? vlen : 0)) {
            goto bad;
        }
        if (i > 0) {
            putc_unlocked(',', out);
        }
        fwrite_unlocked(p + 4, 1, nlen, out);
        putc_unlocked('=', out);
        if (vlen > 0) {
            fwrite_unlocked(p + 8 + nlen, 1, (size_t) vlen, out);
        }
        p += 8 + nlen + (vlen > 0 ? (size_t) vlen : 0);
        left -= 8 + nlen + (vlen > 0 ? (size_t) vlen : 0);
    }
    return;
bad:
    fputs("<bad headers>", out);
}

static void
print_rec(FILE *out, const char *fmt, const char *stream, const tide_rec_t *r)
{
    const char  *f;

    for (f = fmt; *f; f++) {
        if (*f != '%') {
            putc_unlocked(*f, out);
            continue;
        }
        f++;
        switch (*f) {
        case 'k':
            if (r->klen > 0) {
                fwrite_unlocked(r->key, 1, (size_t) r->klen, out);
            }
            break;
        case 's':
            if (r->vlen > 0) {
                fwrite_unlocked(r->val, 1, (size_t) r->vlen, out);
            }
            break;
        case 'p': fprintf(out, "%d", r->partition); break;
        case 'o': fprintf(out, "%lld", (long long) r->offset); break;
        case 'T': fprintf(out, "%lld", (long long) r->ts); break;
        case 't': fputs(stream, out); break;
        case 'h': print_hdrs(out, r); break;
        case 'K': fprintf(out, "%d", r->klen); break;
        case 'S': fprintf(out, "%d", r->vlen); break;
        default:  putc_unlocked('%', out); break;
        }
    }
}


/* The length of the well-formed UTF-8 sequence at p[0, left), or 0 when
 * it is not one (a stray continuation byte, an overlong form, a
 * surrogate, past U+10FFFF, or cut short). */
static size_t
utf8_seq(const unsigned char *p, size_t left)
{
    size_t  n, i;

    if (p[0] >= 0xc2 && p[0] <= 0xdf) {
        n = 2;
    } else if (p[0] >= 0xe0 && p[0] <= 0xef) {
        n = 3;
    } else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
        n = 4;
    } else {
        return 0;
    }
    if (left < n) {
        return 0;
    }
    for (i = 1; i < n; i++) {
        if ((p[i] & 0xc0) != 0x80) {
            return 0;
        }
    }
    if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] > 0x9f) ||
        (p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] > 0x8f))
    {
        return 0;
    }
    return n;
}

/* Writes s[0, len) as a JSON string, or null when s is NULL. Well-formed
 * UTF-8 is copied; '"', '\\' and control bytes are escaped; any other
 * byte (one that is not part of well-formed UTF-8) is written as \u00XX,
 * the character of the same number, so the line is always valid JSON. */
static void
json_str(FILE *out, const char *s, int32_t len)
{
    static const char     hex[] = "0123456789abcdef";
    const unsigned char  *p = (const unsigned char *) s;
    size_t                left = len > 0 ? (size_t) len : 0, n;

    if (s == NULL) {
        fputs("null", out);
        return;
    }
    putc_unlocked('"', out);
    while (left > 0) {
        n = 1;
        if (*p == '"' || *p == '\\') {
            putc_unlocked('\\', out);
            putc_unlocked((int) *p, out);
        } else if (*p == '\n') {
            fputs("\\n", out);
        } else if (*p == '\t') {
            fputs("\\t", out);
        } else if (*p == '\r') {
            fputs("\\r", out);
        } else if (*p >= 0x20 && *p < 0x80) {
            putc_unlocked((int) *p, out);
        } else if (*p >= 0x80 && (n = utf8_seq(p, left)) > 0) {
            fwrite_unlocked(p, 1, n, out);
        } else {
            n = 1;
            fputs("\\u00", out);
            putc_unlocked(hex[*p >> 4], out);
            putc_unlocked(hex[*p & 15], out);
        }
        p += n;
        left -= n;
    }
    putc_unlocked('"', out);
}

/* The header block of 'r' (see print_hdrs) as a JSON object, each header
 * a member in the block's order (a repeated name is repeated); a header
 * with a nil value is null. A malformed block is null. */
static void
json_hdrs(FILE *out, const tide_rec_t *r)
{
    const char  *p = r->hdrs;
    size_t       left = r->hlen > 0 ? (size_t) r->hlen : 0, need;
    uint32_t     count, i, nlen;
    int32_t      vlen;

    if (left < 4) {
        fputs("{}", out);
        return;
    }
    /* One pass to check the block, one to write it. */
    memcpy(&count, p, 4);
    for (i = 0, p += 4, left -= 4; i < count; i++) {
        if (left < 8 || (memcpy(&nlen, p, 4), left - 8 < nlen)) {
            fputs("null", out);
            return;
        }
        memcpy(&vlen, p + 4 + nlen, 4);
        need = 8 + (size_t) nlen + (vlen > 0 ? (size_t) vlen : 0);
        if (vlen < -1 || left < need) {
            fputs("null", out);
            return;
        }
        p += need;
        left -= need;
    }
    putc_unlocked('{', out);
    for (i = 0, p = r->hdrs + 4; i < count; i++) {
        memcpy(&nlen, p, 4);
        memcpy(&vlen, p + 4 + nlen, 4);
        if (i > 0) {
            putc_unlocked(',', out);
        }
        json_str(out, p + 4, (int32_t) nlen);
        putc_unlocked(':', out);
        json_str(out, vlen >= 0 ? p + 8 + nlen : NULL, vlen);
        p += 8 + (size_t) nlen + (vlen > 0 ? (size_t) vlen : 0);
    }
    putc_unlocked('}', out);
}

static void
print_json(FILE *out, const char *stream, const tide_rec_t *r)
{
    fputs("{\"stream\":", out);
    json_str(out, stream, (int32_t) strlen(stream));
    fprintf(out, ",\"partition\":%d,\"offset\":%lld,\"timestamp\":%lld,"
            "\"key\":", r->partition, (long long) r->offset,
            (long long) r->ts);
    json_str(out, r->key, r->klen);
    fputs(",\"value\":", out);
    json_str(out, r->val, r->vlen);
    fputs(",\"headers\":", out);
    json_hdrs(out, r);
    fputs("}\n", out);
}

/* An informational line on stderr, unless -q. */
static void
cons_info(const cons_t *k, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void
cons_info(const cons_t *k, const char *fmt, ...)
{
    va_list  ap;

    if (k->quiet) {
        return;
    }
    fprintf(stderr, "tide %s: ", k->c.cmd);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

/* Parses -o POS into k->pos and k->pos_arg. Returns 0, or -1 when POS is
 * none of the forms. */
static int
parse_pos(cons_t *k, const char *pos)
{
    if (strcmp(pos, "beginning") == 0) {
        k->pos = POS_BEGINNING;
    } else if (strcmp(pos, "end") == 0) {
        k->pos = POS_END;
    } else if (strncmp(pos, "s@", 2) == 0) {
        if (cli_int(pos + 2, 0, INT64_MAX, &k->pos_arg) != 0) {
            return -1;
        }
        k->pos = POS_TIME;
    } else if (cli_int(pos, INT64_MIN + 1, INT64_MAX, &k->pos_arg) == 0) {
        k->pos = k->pos_arg < 0 ? POS_TAIL : POS_OFFSET;
    } else {
        return -1;
    }
    return 0;
}

/* Parses the command line into 'k'. Returns -1 to go on, else the exit
 * code (0 after --help, 2 on a usage error). */
static int
cons_args(cons_t *k, int argc, char **argv)
{
    static const struct option  opts[] = {
        { "data-dir", required_argument, NULL, 'd' },
        { "help",     no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    static const char *const    known[] = {
        "-f", "-J", "-o", "-p", "-e", "-c", "-q", "--data-dir", "--help",
        NULL
    };
    const char  *pos = "beginning";
    int          opt, fmt_given = 0;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":f:Jo:p:ec:qh", opts, NULL))
           != -1)
    {
        switch (opt) {
        case 'd': k->c.data_dir = optarg; break;
        case 'f': k->fmt_arg = optarg; fmt_given = 1; break;
        case 'J': k->json = 1; break;
        case 'o': pos = optarg; break;
        case 'e': k->exit_at_end = 1; break;
        case 'q': k->quiet = 1; break;
        case 'p':
            if (cli_int(optarg, 0, INT32_MAX, &k->only) != 0) {
                return cli_usage(&k->c, "-p takes a partition number, not "
                                 "'%s'", optarg);
            }
            break;
        case 'c':
            if (cli_int(optarg, 1, INT64_MAX, &k->limit) != 0) {
                return cli_usage(&k->c, "-c takes a positive count, not "
                                 "'%s'", optarg);
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            return cli_bad_option(&k->c, opt, argc, argv, known);
        }
    }
    if (optind != argc - 1) {
        return cli_usage(&k->c, optind >= argc ? "no STREAM given"
                                               : "one STREAM expected");
    }
    k->stream = argv[optind];
    if (k->json && fmt_given) {
        return cli_usage(&k->c, "-J and -f both say how to print: give one");
    }
    if (check_fmt(k->fmt_arg) != 0) {
        return cli_usage(&k->c, "bad format '%s': tokens are %%k %%s %%p %%o "
                         "%%T %%t %%h %%K %%S %%%%", k->fmt_arg);
    }
    if (parse_pos(k, pos) != 0) {
        return cli_usage(&k->c, "-o takes beginning, end, an offset N or -N, "
                         "or s@MS (a time in ms since 1970), not '%s'", pos);
    }
    return -1;
}

/* The offset of the first record of partition 'part' stamped at or after
 * k->pos_arg, reading from its start; its end (as it was when the search
 * began) when there is none. Returns TIDE_OK or the reader's error, with
 * the line printed. */
static int
find_time(cons_t *k, int32_t part, int64_t *off)
{
    tide_reader_t  *r;
    int64_t         start, end, scanned = 0;
    int             n = 0, i, rc;

    *off = 0;
    rc = tide_log_get_range(k->log, part, &start, &end);
    if (rc == TIDE_OK) {
        rc = tide_reader_new(&r, k->log, part, start);
    }
    if (rc != TIDE_OK) {
        cli_fail(&k->c, "stream '%s' partition %d: %s", k->stream, part,
                 tide_log_errmsg(k->log));
        return rc;
    }
    *off = end;
    while (*off == end && (n = tide_reader_poll_batch(r, k->recs, BATCH)) > 0) {
        for (i = 0; i < n && k->recs[i].offset < end; i++) {
            scanned++;
            if (k->recs[i].ts >= k->pos_arg) {
                *off = k->recs[i].offset;
                break;
            }
        }
        if (i < n) {
            break;                  /* found, or past the end it had */
        }
    }
    if (n < 0) {
        cli_fail(&k->c, "stream '%s' partition %d: %s", k->stream, part,
                 tide_reader_errmsg(r));
        tide_reader_free(r);
        return n;
    }
    tide_reader_free(r);
    cons_info(k, "stream '%s' partition %d: %s %lld (%lld record%s read "
              "to find it)", k->stream, part, *off < end
              ? "starting at the first record at or after the time, offset"
              : "no record at or after the time; starting at its end, offset",
              (long long) *off, (long long) scanned, scanned == 1 ? "" : "s");
    return TIDE_OK;
}

/* The offset partition 'part' starts at. Returns TIDE_OK, or an error
 * with the line printed. */
static int
start_offset(cons_t *k, int32_t part, int64_t *off)
{
    int64_t  start, end;
    int      rc;

    switch (k->pos) {
    case POS_BEGINNING: *off = TIDE_OFFSET_BEGINNING; return TIDE_OK;
    case POS_END:       *off = TIDE_OFFSET_END; return TIDE_OK;
    case POS_OFFSET:    *off = k->pos_arg; return TIDE_OK;
    case POS_TIME:      return find_time(k, part, off);
    case POS_TAIL:
        break;
    }
    rc = tide_log_get_range(k->log, part, &start, &end);
    if (rc != TIDE_OK) {
        cli_fail(&k->c, "stream '%s' partition %d: %s", k->stream, part,
                 tide_strerror(rc));
        return rc;
    }
    *off = end + k->pos_arg < start ? start : end + k->pos_arg;
    return TIDE_OK;
}

/* Opens the stream and a reader per partition read. Returns -1 to go on,
 * else the exit code. */
static int
cons_open(cons_t *k)
{
    int64_t  off;
    int32_t  i;
    int      id;

    if (cli_log_open(&k->c, &k->log, k->stream, NULL) != 0) {
        return 1;
    }
    k->nparts = tide_log_count(k->log);
    if (k->only >= k->nparts) {
        return cli_usage(&k->c, "-p %lld: stream '%s' has partitions 0..%d",
                         (long long) k->only, k->stream, k->nparts - 1);
    }
    k->first = k->only >= 0 ? (int32_t) k->only : 0;
    k->last = k->only >= 0 ? (int32_t) k->only : k->nparts - 1;
    k->fmt = unescape(k->fmt_arg);
    k->readers = calloc((size_t) k->nparts, sizeof(*k->readers));
    k->recs = malloc(BATCH * sizeof(*k->recs));
    if (k->fmt == NULL || k->readers == NULL || k->recs == NULL) {
        return cli_fail(&k->c, "out of memory");
    }
    for (i = k->first; i <= k->last; i++) {
        if (start_offset(k, i, &off) != TIDE_OK) {
            return 1;
        }
        if (tide_reader_new(&k->readers[i], k->log, i, off) != TIDE_OK) {
            return cli_fail(&k->c, "stream '%s' partition %d: %s", k->stream,
                            i, tide_log_errmsg(k->log));
        }
    }
    /* Watches go in before the first read, so that an append made after
     * a read found nothing always leaves an event for the wait. A
     * notifier that cannot be made or fed means polling, not failing. */
    if (!k->exit_at_end && tide_notify_new(&k->notify) == TIDE_OK) {
        for (i = k->first; i <= k->last; i++) {
            if (tide_notify_add(k->notify, k->log, i, &id) != TIDE_OK) {
                tide_notify_free(k->notify);
                k->notify = NULL;
                break;
            }
        }
    }
    return -1;
}

/* Reads a batch of every partition in turn and prints it. Returns the
 * number of records printed (>= 0), -1 once -c COUNT is reached, or -2
 * on a read error (the line printed). */
static int64_t
cons_round(cons_t *k, int64_t *seen)
{
    int64_t  printed = 0;
    int32_t  i;
    int      n, j;

    for (i = k->first; i <= k->last; i++) {
        n = tide_reader_poll_batch(k->readers[i], k->recs, BATCH);
        if (n < 0) {
            fflush(stdout);
            cli_fail(&k->c, "stream '%s': %s", k->stream,
                     tide_reader_errmsg(k->readers[i]));
            return -2;
        }
        for (j = 0; j < n; j++) {
            if (k->json) {
                print_json(stdout, k->stream, &k->recs[j]);
            } else {
                print_rec(stdout, k->fmt, k->stream, &k->recs[j]);
            }
            printed++;
            if (++*seen == k->limit) {
                return -1;
            }
        }
    }
    return printed;
}

/* Waits for more records: on the notifier, else by sleeping 'sleep_ms'
 * (doubled up to 50 on each idle round). */
static void
cons_wait(cons_t *k, int *sleep_ms)
{
    struct timespec  ts;
    int              rc;

    if (k->notify != NULL) {
        rc = tide_notify_wait(k->notify, WAIT_MS);
        if (rc == TIDE_OK || rc == TIDE_EAGAIN) {
            return;
        }
        tide_notify_free(k->notify);        /* EIO: poll from now on */
        k->notify = NULL;
    }
    ts.tv_sec = 0;
    ts.tv_nsec = (long) *sleep_ms * 1000000L;
    nanosleep(&ts, NULL);
    *sleep_ms = *sleep_ms < 50 ? *sleep_ms * 2 : 50;
}

/* Prints records until the end (-e), COUNT (-c), or an error. Returns the
 * exit code. */
static int
cons_run(cons_t *k)
{
    int64_t  seen = 0, n;
    int      sleep_ms = 1;

    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    for (;;) {
        n = cons_round(k, &seen);
        if (n == -1) {
            return 0;
        }
        if (n == -2) {
            return 1;
        }
        if (n > 0) {
            sleep_ms = 1;
            continue;
        }
        if (fflush(stdout) != 0) {
            return errno == EPIPE ? 0 : cli_fail(&k->c, "writing stdout: %s",
                                                 strerror(errno));
        }
        if (k->exit_at_end) {
            return 0;
        }
        cons_wait(k, &sleep_ms);
    }
}

static void
cons_free(cons_t *k)
{
    int32_t  i;

    if (k->readers != NULL) {
        for (i = 0; i < k->nparts; i++) {
            tide_reader_free(k->readers[i]);
        }
    }
    free(k->readers);
    free(k->recs);
    free(k->fmt);
    tide_notify_free(k->notify);
    tide_log_free(k->log);
}

int
cmd_consume(int argc, char **argv)
{
    cons_t  k;
    int     ret;

    memset(&k, 0, sizeof(k));
    k.c.cmd = "consume";
    k.fmt_arg = "%s\\n";
    k.pos = POS_BEGINNING;
    k.only = -1;
    k.limit = -1;
    ret = cons_args(&k, argc, argv);
    if (ret < 0) {
        ret = cons_open(&k);
    }
    if (ret < 0) {
        ret = cons_run(&k);
    }
    if (fflush(stdout) != 0 && ret == 0 && errno != EPIPE) {
        ret = cli_fail(&k.c, "writing stdout: %s", strerror(errno));
    }
    cons_free(&k);
    return ret;
}
