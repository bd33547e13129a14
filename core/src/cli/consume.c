/*
 * tide consume STREAM: records -> stdout, formatted with kcat's tokens.
 * Reads the partitions in turn, a batch at a time, so a busy partition
 * does not starve the others. Without -e it follows new records: once
 * every partition is read to its end it waits on an inotify watch of the
 * partition folders (tide_notify_wait), so that a record appended by any
 * process shows up at once and an idle follower does not poll. The wait
 * is bounded (WAIT_MS) as a safety net: a read after it finds whatever a
 * missed or coalesced event would have announced. Without an inotify
 * instance (fs.inotify.max_user_instances reached) it falls back to
 * polling with a back-off of up to 50 ms, as before.
 */
#include "cli/cli.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define BATCH    512
#define WAIT_MS  500

static const char usage[] =
"usage: tide consume STREAM [-f FMT] [-o beginning|end|N|-N] [-p N] [-e]\n"
"                           [-c COUNT] [--data-dir DIR]\n"
"Prints the records of STREAM, following new ones until interrupted.\n"
"  -f FMT   output format (default '%s\\n'); tokens: %k key, %s value,\n"
"           %p partition, %o offset, %T timestamp (ms), %t stream,\n"
"           %h headers (name=value,...),\n"
"           %K key length, %S value length, %% a '%'; escapes \\n \\t \\\\\n"
"  -o POS   start at 'beginning' (default), 'end', offset N, or N records\n"
"           before the end (-N)\n"
"  -p N     read only partition N (default: all)\n"
"  -e       exit once every partition is read to its end\n"
"  -c COUNT exit after COUNT records\n";

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

int
cmd_consume(int argc, char **argv)
{
    static const struct option  opts[] = {
        { "data-dir", required_argument, NULL, 'd' },
        { "help",     no_argument,       NULL, 'h' },
        { NULL, 0, NULL, 0 }
    };
    cli_t            c = { "consume", NULL };
    tide_log_t      *log = NULL;
    tide_reader_t  **readers = NULL;
    tide_rec_t      *recs = NULL;
    tide_notify_t   *notify = NULL;
    const char      *stream, *pos = "beginning", *fmt_arg = "%s\\n";
    char             err[512], *fmt = NULL;
    int64_t          v, only = -1, limit = -1, seen = 0, start, end, off;
    int32_t          nparts, i, first, last;
    int              opt, exit_at_end = 0, rc, n, idle, sleep_ms = 1, ret = 0,
                     id;
    struct timespec  ts;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "f:o:p:ec:h", opts, NULL)) != -1) {
        switch (opt) {
        case 'd': c.data_dir = optarg; break;
        case 'f': fmt_arg = optarg; break;
        case 'o': pos = optarg; break;
        case 'e': exit_at_end = 1; break;
        case 'p':
            if (cli_int(optarg, 0, INT32_MAX, &only) != 0) {
                return cli_usage(&c, "-p takes a partition number, not '%s'",
                                 optarg);
            }
            break;
        case 'c':
            if (cli_int(optarg, 1, INT64_MAX, &limit) != 0) {
                return cli_usage(&c, "-c takes a positive count, not '%s'",
                                 optarg);
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
    if (check_fmt(fmt_arg) != 0) {
        return cli_usage(&c, "bad format '%s': tokens are %%k %%s %%p %%o "
                         "%%T %%t %%h %%K %%S %%%%", fmt_arg);
    }
    if (strcmp(pos, "beginning") != 0 && strcmp(pos, "end") != 0 &&
        cli_int(pos, INT64_MIN + 1, INT64_MAX, &v) != 0)
    {
        return cli_usage(&c, "-o takes beginning, end, an offset N or -N, "
                         "not '%s'", pos);
    }

    rc = tide_log_new(&log, cli_data_dir(c.data_dir), stream, NULL, err,
                      sizeof(err));
    if (rc != TIDE_OK) {
        return cli_fail(&c, "%s", err);
    }
    nparts = tide_log_count(log);
    if (only >= nparts) {
        tide_log_free(log);
        return cli_usage(&c, "-p %lld: stream '%s' has partitions 0..%d",
                         (long long) only, stream, nparts - 1);
    }
    first = only >= 0 ? (int32_t) only : 0;
    last = only >= 0 ? (int32_t) only : nparts - 1;
    fmt = unescape(fmt_arg);
    readers = calloc((size_t) nparts, sizeof(*readers));
    recs = malloc(BATCH * sizeof(*recs));
    if (fmt == NULL || readers == NULL || recs == NULL) {
        ret = cli_fail(&c, "out of memory");
        goto out;
    }
    for (i = first; i <= last; i++) {
        if (strcmp(pos, "beginning") == 0) {
            off = TIDE_OFFSET_BEGINNING;
        } else if (strcmp(pos, "end") == 0) {
            off = TIDE_OFFSET_END;
        } else {
            cli_int(pos, INT64_MIN + 1, INT64_MAX, &off);
            if (off < 0) {
                rc = tide_log_get_range(log, i, &start, &end);
                off = end + off < start ? start : end + off;
            }
        }
        rc = tide_reader_new(&readers[i], log, i, off);
        if (rc != TIDE_OK) {
            ret = cli_fail(&c, "stream '%s' partition %d: %s", stream, i,
                           tide_log_errmsg(log));
            goto out;
        }
    }

    /* Watches go in before the first read, so that an append made after
     * a read found nothing always leaves an event for the wait. A
     * notifier that cannot be made or fed means polling, not failing. */
    if (!exit_at_end && tide_notify_new(&notify) == TIDE_OK) {
        for (i = first; i <= last; i++) {
            if (tide_notify_add(notify, log, i, &id) != TIDE_OK) {
                tide_notify_free(notify);
                notify = NULL;
                break;
            }
        }
    }

    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    for (;;) {
        idle = 1;
        for (i = first; i <= last; i++) {
            n = tide_reader_poll_batch(readers[i], recs, BATCH);
            if (n < 0) {
                fflush(stdout);
                ret = cli_fail(&c, "stream '%s': %s", stream,
                               tide_reader_errmsg(readers[i]));
                goto out;
            }
            if (n > 0) {
                idle = 0;
            }
            for (rc = 0; rc < n; rc++) {
                print_rec(stdout, fmt, stream, &recs[rc]);
                if (++seen == limit) {
                    goto out;
                }
            }
        }
        if (!idle) {
            sleep_ms = 1;
            continue;
        }
        if (fflush(stdout) != 0) {
            ret = errno == EPIPE ? 0 : cli_fail(&c, "writing stdout: %s",
                                                strerror(errno));
            goto out;
        }
        if (exit_at_end) {
            break;
        }
        if (notify != NULL) {
            rc = tide_notify_wait(notify, WAIT_MS);
            if (rc == TIDE_OK || rc == TIDE_EAGAIN) {
                continue;
            }
            tide_notify_free(notify);       /* EIO: poll from now on */
            notify = NULL;
        }
        ts.tv_sec = 0;
        ts.tv_nsec = (long) sleep_ms * 1000000L;
        nanosleep(&ts, NULL);
        sleep_ms = sleep_ms < 50 ? sleep_ms * 2 : 50;
    }
out:
    if (fflush(stdout) != 0 && ret == 0 && errno != EPIPE) {
        ret = cli_fail(&c, "writing stdout: %s", strerror(errno));
    }
    if (readers != NULL) {
        for (i = 0; i < nparts; i++) {
            tide_reader_free(readers[i]);
        }
    }
    free(readers);
    free(recs);
    free(fmt);
    tide_notify_free(notify);
    tide_log_free(log);
    return ret;
}
