/*
 * libFuzzer target: the embedded log's segment and index reader, through
 * the public API only (core/include/tide.h), so that it keeps working as
 * the reader's internals change.
 *
 * The input is one partition of a stream on disk (fuzz/README.md has the
 * layout and fuzz/make_corpus.lua writes real ones):
 *
 *   12-byte head   u8 flags, u8 settings, u16 read_at, u32 base0, u32 base1
 *   then sections  seg0 SEP idx0 SEP seg1 SEP idx1 SEP conf SEP stable
 *
 * SEP is "#SPLIT#". Sections that are missing are empty. seg<n> becomes
 * the segment '<base<n>>.log' and idx<n> its '.index'; the flags say which
 * files exist (an empty section written as a file is an empty file).
 * 'conf' replaces the stream.conf the target writes itself when flag
 * F_CONF is set; 'stable' is the partition's stable offset file.
 *
 * Each input is written into a fresh partition folder, and then:
 *   1. the stream is opened (cutting a torn tail is allowed) and read
 *      from the beginning to the end, and from offset 'read_at';
 *   2. one record is appended and flushed;
 *   3. the appended record is read back at its own offset, and the whole
 *      partition is read again.
 *
 * Findings, besides crashes, hangs and leaks (ASan, UBSan, LeakSanitizer):
 * a return code the header does not document for the call; a record that
 * is not byte for byte, with a CRC-32C that checks, a record of one of the
 * segments given (or the appended one); offsets that go backwards; a
 * record in a non-compacted stream whose offset is not the one after the
 * previous record read (a gap read silently: issue 10, D4); more records
 * than the bytes can hold; a flushed append that cannot be read back at
 * its offset. Each prints "fuzz_log: FINDING: ..." on stdout and aborts.
 */
#include "tide.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SEP          "#SPLIT#"
#define SEP_LEN      7
#define HEAD_LEN     12
#define NSECT        6

enum {
    S_SEG0 = 0, S_IDX0, S_SEG1, S_IDX1, S_CONF, S_STABLE
};

enum {
    F_SEG0    = 1,      /* write seg0 (else: no first segment) */
    F_IDX0    = 2,
    F_SEG1    = 4,
    F_IDX1    = 8,
    F_CONF    = 16,     /* stream.conf from the input */
    F_STABLE  = 32,
    F_COMPACT = 64      /* the generated stream.conf says compact=1 */
};

#define APPEND_KEY   "fuzz-key"
#define APPEND_VAL   "fuzz-value"

typedef struct sect_s {
    const uint8_t  *p;
    size_t          n;
} sect_t;

typedef struct input_s {
    uint8_t     flags;
    uint8_t     settings;
    uint16_t    read_at;
    uint32_t    base[2];
    sect_t      s[NSECT];
    size_t      total;          /* bytes of seg0 + seg1 */
} input_t;

/* The folders of this process: made once, emptied for every input. */
static char      g_root[4096];
static char      g_part[4200];
static char      g_sdir[4200];
static uint32_t  g_crc_table[256];

static void
finding(const char *fmt, ...)
{
    va_list  ap;

    /* stdout: the runs close stderr (the log's own warnings). */
    printf("fuzz_log: FINDING: ");
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    printf("\n");
    fflush(stdout);
    abort();
}

/* Our own CRC-32C (bitwise table), independent of core/src/util. */
static void
crc_init(void)
{
    uint32_t  c;
    int       i, k;

    for (i = 0; i < 256; i++) {
        c = (uint32_t) i;
        for (k = 0; k < 8; k++) {
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        }
        g_crc_table[i] = c;
    }
}

static uint32_t
crc32c(const uint8_t *p, size_t n)
{
    uint32_t  c = 0xFFFFFFFFu;

    while (n-- > 0) {
        c = g_crc_table[(c ^ *p++) & 0xFF] ^ (c >> 8);
    }
    return c ^ 0xFFFFFFFFu;
}

static void
rm_tree(const char *path)
{
    DIR            *d;
    struct dirent  *de;
    char            sub[8192];
    struct stat     st;

    if (lstat(path, &st) != 0) {
        return;
    }
    if (!S_ISDIR(st.st_mode)) {
        unlink(path);
        return;
    }
    d = opendir(path);
    if (d != NULL) {
        while ((de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
                continue;
            }
            snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
            rm_tree(sub);
        }
        closedir(d);
    }
    rmdir(path);
}

static void
cleanup(void)
{
    if (g_root[0] != '\0') {
        rm_tree(g_root);
    }
}

static void
write_file(const char *dir, const char *name, const void *p, size_t n)
{
    char  path[8192];
    int   fd;

    snprintf(path, sizeof(path), "%s/%s", dir, name);
    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stdout, "fuzz_log: cannot write %s: %s\n", path,
                strerror(errno));
        abort();
    }
    while (n > 0) {
        ssize_t  w = write(fd, p, n);

        if (w <= 0) {
            fprintf(stdout, "fuzz_log: cannot write %s: %s\n", path,
                    strerror(errno));
            abort();
        }
        p = (const char *) p + w;
        n -= (size_t) w;
    }
    close(fd);
}

/* Removes the folders of earlier runs that died (a finding aborts, and
 * libFuzzer's fork mode kills its jobs): each is named after its pid. */
static void
remove_stale(const char *tmp)
{
    DIR            *d = opendir(tmp);
    struct dirent  *de;
    char            path[8192], *end;
    long            pid;

    if (d == NULL) {
        return;
    }
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "tide-fuzz-log-", 14) != 0) {
            continue;
        }
        pid = strtol(de->d_name + 14, &end, 10);
        if (*end != '\0' || pid <= 0 ||
            (pid != (long) getpid() && (kill((pid_t) pid, 0) == 0 ||
                                        errno != ESRCH)))
        {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", tmp, de->d_name);
        rm_tree(path);
    }
    closedir(d);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    const char  *tmp = getenv("TIDE_TMP");

    (void) argc;
    (void) argv;
    if (tmp == NULL || tmp[0] == '\0') {
        tmp = getenv("TMPDIR");
    }
    if (tmp == NULL || tmp[0] == '\0') {
        tmp = "/tmp";
    }
    mkdir(tmp, 0755);
    remove_stale(tmp);
    snprintf(g_root, sizeof(g_root), "%s/tide-fuzz-log-%ld", tmp,
             (long) getpid());
    if (mkdir(g_root, 0700) != 0) {
        fprintf(stdout, "fuzz_log: cannot make %s: %s\n", g_root,
                strerror(errno));
        abort();
    }
    atexit(cleanup);
    snprintf(g_sdir, sizeof(g_sdir), "%s/streams/s", g_root);
    snprintf(g_part, sizeof(g_part), "%s/0", g_sdir);
    crc_init();
    return 0;
}

static void
parse(input_t *in, const uint8_t *data, size_t size)
{
    const uint8_t  *p, *end, *hit;
    int             i;

    memset(in, 0, sizeof(*in));
    if (size < HEAD_LEN) {
        return;
    }
    in->flags = data[0];
    in->settings = data[1];
    in->read_at = (uint16_t) (data[2] | data[3] << 8);
    memcpy(&in->base[0], data + 4, 4);
    memcpy(&in->base[1], data + 8, 4);
    p = data + HEAD_LEN;
    end = data + size;
    for (i = 0; i < NSECT && p <= end; i++) {
        hit = memmem(p, (size_t) (end - p), SEP, SEP_LEN);
        if (hit == NULL || i == NSECT - 1) {
            hit = end;
        }
        in->s[i].p = p;
        in->s[i].n = (size_t) (hit - p);
        p = hit + SEP_LEN;
    }
    in->total = in->s[S_SEG0].n + in->s[S_SEG1].n;
}

/* Writes the partition folder for 'in'. */
static void
lay_out(const input_t *in)
{
    static const int64_t  seg_bytes[4] = { 4096, 8192, 65536, 1 << 30 };
    char                  name[64], conf[512];
    int                   n, k;

    rm_tree(g_root);
    mkdir(g_root, 0755);
    snprintf(name, sizeof(name), "%s/streams", g_root);
    mkdir(name, 0755);
    mkdir(g_sdir, 0755);
    mkdir(g_part, 0755);

    if (in->flags & F_CONF) {
        write_file(g_sdir, "stream.conf", in->s[S_CONF].p, in->s[S_CONF].n);
    } else {
        n = snprintf(conf, sizeof(conf), "partitions=1\ncompact=%d\n"
                     "fsync=none\nsegment_bytes=%lld\nretention_ms=-1\n"
                     "retention_bytes=-1\ndelete_retention_ms=%d\n",
                     (in->flags & F_COMPACT) ? 1 : 0,
                     (long long) seg_bytes[in->settings & 3],
                     (in->settings & 4) ? 1 : 86400000);
        write_file(g_sdir, "stream.conf", conf, (size_t) n);
    }
    for (k = 0; k < 2; k++) {
        if (in->flags & (k == 0 ? F_SEG0 : F_SEG1)) {
            snprintf(name, sizeof(name), "%020lld.log",
                     (long long) in->base[k]);
            write_file(g_part, name, in->s[k == 0 ? S_SEG0 : S_SEG1].p,
                       in->s[k == 0 ? S_SEG0 : S_SEG1].n);
        }
        if (in->flags & (k == 0 ? F_IDX0 : F_IDX1)) {
            snprintf(name, sizeof(name), "%020lld.index",
                     (long long) in->base[k]);
            write_file(g_part, name, in->s[k == 0 ? S_IDX0 : S_IDX1].p,
                       in->s[k == 0 ? S_IDX0 : S_IDX1].n);
        }
    }
    if (in->flags & F_STABLE) {
        write_file(g_part, "stable", in->s[S_STABLE].p, in->s[S_STABLE].n);
    }
}

static int
is_appended(const tide_rec_t *rec)
{
    return rec->klen == (int32_t) strlen(APPEND_KEY) &&
           rec->vlen == (int32_t) strlen(APPEND_VAL) && rec->hlen == 0 &&
           memcmp(rec->key, APPEND_KEY, strlen(APPEND_KEY)) == 0 &&
           memcmp(rec->val, APPEND_VAL, strlen(APPEND_VAL)) == 0;
}

/* Damage must be reported with its place (issue 10): a TIDE_ECORRUPT
 * message starts with the file, and a segment's damage says its byte.
 * The message is matched from its start, with this process's folder,
 * so that no file content quoted in it can pass for a place. */
static void
check_corrupt_msg(const char *call, const char *msg)
{
    const char  *p;
    size_t       n = strlen(g_sdir);

    if (msg == NULL || strncmp(msg, g_sdir, n) != 0 || msg[n] != '/') {
        finding("%s reported damage without its file: %s", call,
                msg ? msg : "(NULL)");
    }
    p = msg + n + 1;
    if (strncmp(p, "0/", 2) != 0) {
        return;                         /* stream.conf */
    }
    for (p += 2; *p >= '0' && *p <= '9'; p++) {
    }
    if ((strncmp(p, ".log", 4) == 0 || strncmp(p, ".index", 6) == 0) &&
        strstr(p, "byte") == NULL)
    {
        finding("%s reported damage in a segment without its byte: %s",
                call, msg);
    }
}

/* The record as the log format writes it (core/src/log/format.h, README
 * "On disk"): must be found byte for byte, CRC included, in a segment of
 * the input, or be the record the target appended. */
static void
check_rec(const input_t *in, const tide_rec_t *rec, int appended)
{
    uint8_t   stack[4096], *buf;
    size_t    payload, n, off;
    uint32_t  len, crc;
    int32_t   kl, vl, hl;
    int       k, found = 0;

    if (rec->partition != 0) {
        finding("record at offset %lld has partition %d, expected 0",
                (long long) rec->offset, (int) rec->partition);
    }
    if (rec->klen < -1 || rec->vlen < -1 || rec->hlen < 0 ||
        (rec->klen == -1) != (rec->key == NULL) ||
        (rec->vlen == -1) != (rec->val == NULL) ||
        (rec->hlen > 0 && rec->hdrs == NULL))
    {
        finding("record at offset %lld has inconsistent lengths: key %d "
                "(%s), value %d (%s), headers %d", (long long) rec->offset,
                (int) rec->klen, rec->key ? "set" : "NULL", (int) rec->vlen,
                rec->val ? "set" : "NULL", (int) rec->hlen);
    }
    if (appended && is_appended(rec)) {
        return;
    }
    kl = rec->klen > 0 ? rec->klen : 0;
    vl = rec->vlen > 0 ? rec->vlen : 0;
    hl = rec->hlen;
    payload = (size_t) kl + (size_t) vl + (size_t) hl;
    n = 36 + payload;
    if (payload > in->total) {
        finding("record at offset %lld holds %zu bytes, more than the %zu "
                "bytes of segments given", (long long) rec->offset, payload,
                in->total);
    }
    buf = n <= sizeof(stack) ? stack : malloc(n);
    if (buf == NULL) {
        abort();
    }
    len = (uint32_t) (n - 4);
    memcpy(buf, &len, 4);
    memcpy(buf + 8, &rec->offset, 8);
    memcpy(buf + 16, &rec->ts, 8);
    memcpy(buf + 24, &rec->klen, 4);
    memcpy(buf + 28, &rec->vlen, 4);
    memcpy(buf + 32, &rec->hlen, 4);
    off = 36;
    if (kl > 0) {
        memcpy(buf + off, rec->key, (size_t) kl);
        off += (size_t) kl;
    }
    if (vl > 0) {
        memcpy(buf + off, rec->val, (size_t) vl);
        off += (size_t) vl;
    }
    if (hl > 0) {
        memcpy(buf + off, rec->hdrs, (size_t) hl);
    }
    crc = crc32c(buf + 8, n - 8);
    memcpy(buf + 4, &crc, 4);
    for (k = 0; k < 2 && !found; k++) {
        const sect_t  *s = &in->s[k == 0 ? S_SEG0 : S_SEG1];

        if ((in->flags & (k == 0 ? F_SEG0 : F_SEG1)) && s->n >= n &&
            memmem(s->p, s->n, buf, n) != NULL)
        {
            found = 1;
        }
    }
    if (buf != stack) {
        free(buf);
    }
    if (!found) {
        finding("read a record that no segment holds with a good CRC: "
                "offset %lld, key %d bytes, value %d bytes, headers %d bytes",
                (long long) rec->offset, (int) rec->klen, (int) rec->vlen,
                (int) rec->hlen);
    }
}

/* Reads partition 0 from 'from' until the end or an error. Returns the
 * offset after the last record read (-1: none), in *last_appended
 * whether the last record read was the appended one, and sets *damaged
 * when the read stopped at reported damage (TIDE_ECORRUPT). */
static int64_t
read_all(const input_t *in, tide_log_t *log, int64_t from, int appended,
         int compact, int *last_appended, int *damaged)
{
    tide_reader_t  *r = NULL;
    tide_rec_t      recs[7];
    int64_t         prev = -1, start = 0, end = 0, count = 0, limit, first;
    int             rc, i, batch = 1, range_ok, at_end = 0;
    const char     *msg;

    *last_appended = 0;
    rc = tide_log_get_range(log, 0, &start, &end);
    range_ok = rc == TIDE_OK;
    if (rc != TIDE_OK && rc != TIDE_EIO) {
        finding("tide_log_get_range returned %d (%s)", rc, tide_strerror(rc));
    }
    if (rc == TIDE_OK && (start < 0 || end < start)) {
        finding("tide_log_get_range gave start %lld, end %lld",
                (long long) start, (long long) end);
    }
    rc = tide_reader_new(&r, log, 0, from);
    if (rc != TIDE_OK) {
        if (r != NULL) {
            finding("tide_reader_new returned %d with *out set", rc);
        }
        /* TIDE_ECORRUPT (a segment that is no segment) is not in
         * tide.h's list for tide_reader_new: reported to the log's
         * owner, taken here as long as it says where. */
        if (rc == TIDE_ECORRUPT) {
            check_corrupt_msg("tide_reader_new", tide_log_errmsg(log));
            *damaged = 1;
        } else if (rc != TIDE_EIO && rc != TIDE_ENOMEM) {
            finding("tide_reader_new(%lld) returned %d (%s): %s",
                    (long long) from, rc, tide_strerror(rc),
                    tide_log_errmsg(log));
        }
        return -1;
    }
    /* A record takes 36 bytes at least; the append adds one. */
    limit = (int64_t) (in->total / 36) + 2;
    for (;;) {
        /* Alternate single polls and batches: both paths are public. */
        if (batch == 1) {
            rc = tide_reader_poll(r, &recs[0]);
            rc = rc == TIDE_OK ? 1 : rc;
        } else {
            rc = tide_reader_poll_batch(r, recs, batch);
        }
        batch = batch == 1 ? 7 : 1;
        if (rc == 0 || rc == TIDE_EAGAIN) {
            at_end = 1;
            break;
        }
        if (rc < 0) {
            if (rc != TIDE_ECORRUPT && rc != TIDE_EIO && rc != TIDE_ENOMEM) {
                finding("poll returned %d (%s)", rc, tide_strerror(rc));
            }
            msg = tide_reader_errmsg(r);
            if (msg == NULL || msg[0] == '\0') {
                finding("poll returned %d with no errmsg", rc);
            }
            if (rc == TIDE_ECORRUPT) {
                check_corrupt_msg("tide_reader_poll", msg);
                *damaged = 1;
            }
            break;
        }
        if (rc > 7) {
            finding("poll_batch(7) returned %d", rc);
        }
        for (i = 0; i < rc; i++) {
            const tide_rec_t  *rec = &recs[i];

            check_rec(in, rec, appended);
            if (rec->offset < 0 || (from >= 0 && from >= start &&
                                    rec->offset < from))
            {
                finding("reader at %lld returned offset %lld (range %lld.."
                        "%lld)", (long long) from, (long long) rec->offset,
                        (long long) start, (long long) end);
            }
            if (prev >= 0 && rec->offset <= prev) {
                finding("offsets go backwards: %lld after %lld",
                        (long long) rec->offset, (long long) prev);
            }
            if (prev >= 0 && !compact && rec->offset != prev + 1) {
                finding("gap read silently in a non-compacted stream: "
                        "offset %lld after %lld", (long long) rec->offset,
                        (long long) prev);
            }
            prev = rec->offset;
            *last_appended = appended && is_appended(rec);
            if (++count > limit) {
                finding("more than %lld records from %zu bytes",
                        (long long) limit, in->total);
            }
        }
    }
    /* In an ordinary stream a read that ends without an error has read
     * every record up to the end the log reports: nothing stops short
     * silently (issue 10, D2: a stale index entry or a length past the
     * file ended reads early and without a word). */
    if (at_end && range_ok && !compact) {
        first = from == TIDE_OFFSET_BEGINNING ? start
              : from == TIDE_OFFSET_END ? end
              : from < start ? start : from;
        if (prev >= 0 ? prev + 1 != end : first < end) {
            finding("a read from %lld stopped at %lld without an error; "
                    "the partition ends at %lld", (long long) from,
                    (long long) (prev >= 0 ? prev + 1 : first),
                    (long long) end);
        }
    }
    if (tide_reader_get_offset(r) < 0) {
        finding("tide_reader_get_offset returned %lld",
                (long long) tide_reader_get_offset(r));
    }
    tide_reader_free(r);
    return prev < 0 ? -1 : prev + 1;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    input_t            in;
    tide_log_t        *log = NULL;
    tide_log_params_t  params;
    tide_log_params_t  got;
    tide_rec_t         rec;
    tide_reader_t     *r = NULL;
    char               err[512];
    int64_t            start, end;
    int                rc, compact, last, damaged = 0;

    parse(&in, data, size);
    lay_out(&in);

    memset(&params, 0, sizeof(params));
    params.mode = TIDE_LOG_OPEN;
    params.fsync = TIDE_FSYNC_NONE;
    err[0] = '\0';
    rc = tide_log_new(&log, g_root, "s", &params, err, sizeof(err));
    if (rc != TIDE_OK) {
        if (log != NULL) {
            finding("tide_log_new returned %d with *out set", rc);
        }
        if (rc != TIDE_ECORRUPT && rc != TIDE_EIO && rc != TIDE_ENOENT &&
            rc != TIDE_EINVAL && rc != TIDE_ENOMEM)
        {
            finding("tide_log_new returned %d (%s): %s", rc,
                    tide_strerror(rc), err);
        }
        if (err[0] == '\0') {
            finding("tide_log_new returned %d with an empty message", rc);
        }
        if (rc == TIDE_ECORRUPT) {
            check_corrupt_msg("tide_log_new", err);
        }
        return 0;
    }
    if (tide_log_count(log) != 1) {
        tide_log_free(log);
        return 0;       /* a stream.conf from the input with more */
    }
    if (tide_log_get_params(log, &got) != TIDE_OK) {
        finding("tide_log_get_params failed");
    }
    compact = got.compact != 0;

    /* 1. Read everything, then from the offset the input names. */
    read_all(&in, log, TIDE_OFFSET_BEGINNING, 0, compact, &last, &damaged);
    read_all(&in, log, (int64_t) in.read_at, 0, compact, &last, &damaged);

    /* 2. Append one record. */
    memset(&rec, 0, sizeof(rec));
    rec.partition = 0;
    rec.ts = 1700000000000LL;
    rec.key = APPEND_KEY;
    rec.klen = (int32_t) strlen(APPEND_KEY);
    rec.val = APPEND_VAL;
    rec.vlen = (int32_t) strlen(APPEND_VAL);
    /* An append to a damaged active segment is refused with
     * TIDE_ECORRUPT (nothing is cut that is not a torn tail); tide.h
     * lists only TIDE_EIO for the flush (reported to the log's owner). */
    rc = tide_log_push(log, &rec);
    if (rc != TIDE_OK && rc != TIDE_EIO && rc != TIDE_ECORRUPT &&
        rc != TIDE_ENOMEM)
    {
        finding("tide_log_push returned %d (%s): %s", rc, tide_strerror(rc),
                tide_log_errmsg(log));
    }
    if (rc == TIDE_OK) {
        rc = tide_log_flush(log);
        if (rc != TIDE_OK && rc != TIDE_EIO && rc != TIDE_ECORRUPT) {
            finding("tide_log_flush returned %d (%s): %s", rc,
                    tide_strerror(rc), tide_log_errmsg(log));
        }
    }
    if (rc != TIDE_OK && tide_log_errmsg(log)[0] == '\0') {
        finding("an append failed with %d and no errmsg", rc);
    }
    if (rc == TIDE_ECORRUPT) {
        check_corrupt_msg("an append", tide_log_errmsg(log));
    }

    /* 3. A flushed append is readable at its own offset. */
    if (rc == TIDE_OK) {
        rc = tide_log_get_range(log, 0, &start, &end);
        if (rc != TIDE_OK || end < 1) {
            finding("after a flushed append, get_range returned %d, end %lld",
                    rc, (long long) end);
        }
        rc = tide_reader_new(&r, log, 0, end - 1);
        if (rc != TIDE_OK) {
            finding("after a flushed append, tide_reader_new(%lld) returned "
                    "%d (%s)", (long long) (end - 1), rc, tide_strerror(rc));
        }
        rc = tide_reader_poll(r, &rec);
        /* Known limit: damage inside the active segment but before the
         * index entry a writer resumes from is not seen by the writer
         * (it does not scan a whole segment at open), so the append is
         * taken; a reader whose index lookup lands before the damage
         * then stops at it, naming its place. Damage reported before the
         * append may thus also hide the appended record; silence may
         * not. */
        if (rc == TIDE_ECORRUPT && damaged) {
            check_corrupt_msg("reading back an append behind damage",
                              tide_reader_errmsg(r));
            tide_reader_free(r);
            tide_log_free(log);
            return 0;
        }
        if (rc != TIDE_OK || !is_appended(&rec) || rec.offset != end - 1) {
            finding("the record appended at offset %lld cannot be read back: "
                    "poll returned %d (%s), offset %lld, %s", (long long)
                    (end - 1), rc, tide_strerror(rc),
                    rc == TIDE_OK ? (long long) rec.offset : -1LL,
                    rc == TIDE_OK ? "another record" : tide_reader_errmsg(r));
        }
        tide_reader_free(r);
        read_all(&in, log, TIDE_OFFSET_BEGINNING, 1, compact, &last,
                 &damaged);
    }
    tide_log_free(log);
    return 0;
}
