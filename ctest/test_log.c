/*
 * The embedded log's contract, without Lua: opening and its errors,
 * appends and reads (binary data, nil keys and values, headers),
 * placement, readers from any offset and across segment rolls, several
 * appending processes, recovery of torn or damaged files, retention and
 * compaction.
 */
#include "tide.h"

#include "ctest.h"
#include "tmpdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SENTINEL ((tide_log_t *) (uintptr_t) 0x1)

/* ---- helpers ------------------------------------------------------------ */

static tide_log_t *
log_open(const char *dir, const char *name, const tide_log_params_t *p)
{
    tide_log_t  *log;
    char         err[256];
    int          rc;

    rc = tide_log_new(&log, dir, name, p, err, sizeof(err));
    if (rc != TIDE_OK) {
        fprintf(stderr, "tide_log_new: %s\n", err);
    }
    ASSERT_OK(rc);
    ASSERT(log != NULL);
    return log;
}

static tide_log_params_t
params_create(void)
{
    tide_log_params_t  p;

    memset(&p, 0, sizeof(p));
    p.mode = TIDE_LOG_CREATE;
    return p;
}

/* Pushes one record; returns the partition it went to. */
static int32_t
push(tide_log_t *log, int32_t part, const char *key, int32_t klen,
     const char *val, int32_t vlen)
{
    tide_rec_t  rec;

    memset(&rec, 0, sizeof(rec));
    rec.partition = part;
    rec.key = key;
    rec.klen = klen;
    rec.val = val;
    rec.vlen = vlen;
    ASSERT_OK(tide_log_push(log, &rec));
    return rec.partition;
}

/* Writes the 100-byte value of version 'ver' of key 'k' into 'buf'. */
static int32_t
make_val(char *buf, int k, int ver)
{
    memset(buf, 'v', 100);
    snprintf(buf, 100, "value-%d-%d", k, ver);
    return 100;
}

static void
part_path(char *buf, size_t len, const char *dir, const char *name,
          int32_t part, const char *file)
{
    snprintf(buf, len, "%s/streams/%s/%d/%s", dir, name, part, file);
}

/* Lists the segments of a partition: their count, the base of the last
 * one and their total bytes. */
static int
seg_list(const char *dir, const char *name, int32_t part, int64_t *last,
         int64_t *bytes)
{
    char            path[4096];
    DIR            *d;
    struct dirent  *de;
    struct stat     st;
    int             n = 0;
    size_t          len;

    *last = -1;
    *bytes = 0;
    part_path(path, sizeof(path), dir, name, part, "");
    d = opendir(path);
    ASSERT(d != NULL);
    while ((de = readdir(d)) != NULL) {
        len = strlen(de->d_name);
        if (len != 24 || strcmp(de->d_name + 20, ".log") != 0) {
            continue;
        }
        n++;
        if (atoll(de->d_name) > *last) {
            *last = atoll(de->d_name);
        }
        part_path(path, sizeof(path), dir, name, part, de->d_name);
        ASSERT_OK(stat(path, &st));
        *bytes += st.st_size;
    }
    closedir(d);
    return n;
}

/* Parses the decimal number in 'len' bytes at 'p' (not NUL-terminated). */
static int
num(const char *p, int32_t len)
{
    char  buf[32];

    ASSERT(len >= 0 && len < (int32_t) sizeof(buf));
    memcpy(buf, p, (size_t) len);
    buf[len] = '\0';
    return atoi(buf);
}

static void
seg_path(char *buf, size_t len, const char *dir, const char *name,
         int32_t part, int64_t base, const char *ext)
{
    char  file[64];

    snprintf(file, sizeof(file), "%020lld.%s", (long long) base, ext);
    part_path(buf, len, dir, name, part, file);
}

/* Reads from 'offset' to the end; checks offsets are dense from the first
 * one and returns how many records there were. */
static int64_t
read_dense(tide_log_t *log, int32_t part, int64_t offset, int64_t first)
{
    tide_reader_t  *r;
    tide_rec_t      rec;
    int64_t         n = 0;
    int             rc;

    ASSERT_OK(tide_reader_new(&r, log, part, offset));
    while ((rc = tide_reader_poll(r, &rec)) == TIDE_OK) {
        ASSERT_EQ(rec.offset, first + n);
        ASSERT_EQ(rec.partition, part);
        n++;
    }
    ASSERT_EQ(rc, TIDE_EAGAIN);
    ASSERT_EQ(tide_reader_get_offset(r), first + n);
    tide_reader_free(r);
    return n;
}

/* Appends 'n' keyed 100-byte records to partition 0, flushing every
 * 'every' records. Key "k<i % keys>", value version i / keys. */
static void
fill_log(tide_log_t *log, int n, int keys, int every)
{
    char     key[32], val[100];
    int32_t  klen, vlen;
    int      i;

    for (i = 0; i < n; i++) {
        klen = snprintf(key, sizeof(key), "k%d", i % keys);
        vlen = make_val(val, i % keys, i / keys);
        push(log, 0, key, klen, val, vlen);
        if ((i + 1) % every == 0) {
            ASSERT_OK(tide_log_flush(log));
        }
    }
    ASSERT_OK(tide_log_flush(log));
}

/* Holds a partition's clean.lock, as another cleaner would. */
static int
clean_lock(const char *dir, const char *name, int32_t part)
{
    char  path[4096];
    int   fd;

    part_path(path, sizeof(path), dir, name, part, "clean.lock");
    fd = open(path, O_RDWR | O_CREAT, 0644);
    ASSERT(fd >= 0);
    ASSERT_OK(flock(fd, LOCK_EX | LOCK_NB));
    return fd;
}

static void
clean_unlock(int fd)
{
    ASSERT_OK(flock(fd, LOCK_UN));
    ASSERT_OK(close(fd));
}

static void
expect_new_fails(const char *dir, const char *name,
                 const tide_log_params_t *p, int code)
{
    tide_log_t  *log = SENTINEL;
    char         err[256];

    err[0] = '\0';
    ASSERT_EQ(tide_log_new(&log, dir, name, p, err, sizeof(err)), code);
    ASSERT(log == NULL);
    ASSERT(err[0] != '\0');
}

/* ---- opening ------------------------------------------------------------ */

static void
test_new_rejects_bad_names(void)
{
    tide_log_params_t   p = params_create();
    char               *dir = tmp_new();
    char                longname[260];

    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    expect_new_fails(dir, "", &p, TIDE_EINVAL);
    expect_new_fails(dir, ".hidden", &p, TIDE_EINVAL);
    expect_new_fails(dir, "..", &p, TIDE_EINVAL);
    expect_new_fails(dir, "a/b", &p, TIDE_EINVAL);
    expect_new_fails(dir, "a b", &p, TIDE_EINVAL);
    expect_new_fails(dir, longname, &p, TIDE_EINVAL);
    expect_new_fails(dir, NULL, &p, TIDE_EINVAL);
    expect_new_fails(NULL, "ok", &p, TIDE_EINVAL);
    /* Nothing was created for the rejected names. */
    {
        char         path[4096];
        struct stat  st;

        snprintf(path, sizeof(path), "%s/streams/a", dir);
        ASSERT(stat(path, &st) != 0);
    }
    tmp_free(dir);
}

static void
test_new_rejects_bad_params(void)
{
    tide_log_params_t   p;
    char               *dir = tmp_new();

    p = params_create();
    p.partitions = -1;
    expect_new_fails(dir, "s", &p, TIDE_EINVAL);
    p = params_create();
    p.partitions = 100000;
    expect_new_fails(dir, "s", &p, TIDE_EINVAL);
    p = params_create();
    p.segment_bytes = 100;
    expect_new_fails(dir, "s", &p, TIDE_EINVAL);
    p = params_create();
    p.mode = 3;
    expect_new_fails(dir, "s", &p, TIDE_EINVAL);
    p = params_create();
    p.mode = -1;
    expect_new_fails(dir, "s", &p, TIDE_EINVAL);
    tmp_free(dir);
}

static void
test_new_missing_stream_and_dir(void)
{
    char  *dir = tmp_new();
    char   missing[4200];

    /* NULL params mean TIDE_LOG_OPEN. */
    expect_new_fails(dir, "nope", NULL, TIDE_ENOENT);
    snprintf(missing, sizeof(missing), "%s/no/such/dir", dir);
    expect_new_fails(missing, "nope", NULL, TIDE_ENOENT);
    /* Opening did not create the data dir. */
    {
        struct stat  st;

        ASSERT(stat(missing, &st) != 0);
    }
    tmp_free(dir);
}

static void
test_new_excl_and_settings_fixed(void)
{
    tide_log_params_t   p = params_create(), got;
    tide_log_t         *log;
    char               *dir = tmp_new();

    p.mode = TIDE_LOG_EXCL;
    p.partitions = 3;
    p.segment_bytes = 8192;
    log = log_open(dir, "s", &p);
    ASSERT_EQ(tide_log_count(log), 3);
    tide_log_free(log);
    expect_new_fails(dir, "s", &p, TIDE_EEXIST);

    /* CREATE and OPEN of an existing stream keep its fixed settings. */
    p.mode = TIDE_LOG_CREATE;
    p.partitions = 7;
    p.segment_bytes = 1 << 20;
    log = log_open(dir, "s", &p);
    ASSERT_EQ(tide_log_count(log), 3);
    ASSERT_OK(tide_log_get_params(log, &got));
    ASSERT_EQ(got.partitions, 3);
    ASSERT_EQ(got.segment_bytes, 8192);
    tide_log_free(log);
    log = log_open(dir, "s", NULL);
    ASSERT_EQ(tide_log_count(log), 3);
    ASSERT_EQ(strcmp(tide_log_errmsg(log), "no error"), 0);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_new_bad_meta_and_unusable_dir(void)
{
    tide_log_params_t   p = params_create();
    char               *dir = tmp_new();
    char                path[4200];
    FILE               *f;

    tide_log_free(log_open(dir, "s", &p));
    snprintf(path, sizeof(path), "%s/streams/s/stream.conf", dir);
    f = fopen(path, "w");
    ASSERT(f != NULL);
    fputs("partitions=many\n", f);
    ASSERT_OK(fclose(f));
    expect_new_fails(dir, "s", NULL, TIDE_ECORRUPT);

    /* A data dir that is a plain file cannot hold streams. */
    snprintf(path, sizeof(path), "%s/file", dir);
    f = fopen(path, "w");
    ASSERT(f != NULL);
    ASSERT_OK(fclose(f));
    expect_new_fails(path, "s", &p, TIDE_EINVAL);
    tmp_free(dir);
}

static void
test_free_null(void)
{
    tide_log_free(NULL);
    tide_reader_free(NULL);
}

/* ---- appends and reads -------------------------------------------------- */

static void
test_roundtrip_binary_nil_and_headers(void)
{
    static const char   key[] = "k\0ey";
    static const char   val[] = "\0val\0ue\0";
    static const char   hdrs[] = "h\0\1\2";
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          rec, in;
    char               *dir = tmp_new();
    int64_t             before = (int64_t) time(NULL) * 1000;

    log = log_open(dir, "s", &p);

    memset(&in, 0, sizeof(in));
    in.partition = 0;
    in.key = key;
    in.klen = sizeof(key);
    in.val = val;
    in.vlen = sizeof(val);
    in.hdrs = hdrs;
    in.hlen = sizeof(hdrs);
    in.ts = 1234567;
    ASSERT_OK(tide_log_push(log, &in));
    push(log, 0, NULL, -1, "x", 1);            /* nil key */
    push(log, 0, "k", 1, NULL, -1);            /* nil value */
    push(log, 0, "", 0, "", 0);                /* empty, not nil */

    /* Nothing is readable before the flush. */
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    ASSERT_OK(tide_log_flush(log));

    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 0);
    ASSERT_EQ(rec.ts, 1234567);
    ASSERT_EQ(rec.klen, sizeof(key));
    ASSERT_OK(memcmp(rec.key, key, sizeof(key)));
    ASSERT_EQ(rec.vlen, sizeof(val));
    ASSERT_OK(memcmp(rec.val, val, sizeof(val)));
    ASSERT_EQ(rec.hlen, sizeof(hdrs));
    ASSERT_OK(memcmp(rec.hdrs, hdrs, sizeof(hdrs)));

    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 1);
    ASSERT(rec.key == NULL);
    ASSERT_EQ(rec.klen, -1);
    ASSERT_EQ(rec.vlen, 1);
    ASSERT_EQ(rec.val[0], 'x');
    ASSERT_EQ(rec.hlen, 0);
    /* ts 0 means now. */
    ASSERT(rec.ts >= before && rec.ts <= before + 60000);

    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 2);
    ASSERT_EQ(rec.klen, 1);
    ASSERT(rec.val == NULL);
    ASSERT_EQ(rec.vlen, -1);

    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 3);
    ASSERT(rec.key != NULL);
    ASSERT_EQ(rec.klen, 0);
    ASSERT(rec.val != NULL);
    ASSERT_EQ(rec.vlen, 0);

    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    ASSERT_EQ(tide_reader_get_offset(r), 4);
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_placement_keyed_and_round_robin(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          rec;
    char               *dir = tmp_new(), key[32];
    int32_t             klen, part, prev = -1;
    int                 i, seen = 0;

    p.partitions = 5;
    log = log_open(dir, "s", &p);
    for (i = 0; i < 500; i++) {
        klen = snprintf(key, sizeof(key), "user-%d", i);
        part = push(log, -1, key, klen, "v", 1);
        ASSERT_EQ(part, tide_partition_get(key, (size_t) klen, 5));
    }
    for (i = 0; i < 20; i++) {
        part = push(log, -1, NULL, -1, "v", 1);
        if (prev >= 0) {
            ASSERT_EQ(part, (prev + 1) % 5);
        }
        prev = part;
    }
    ASSERT_OK(tide_log_flush(log));

    /* Every keyed record was stored in the partition its key hashes to. */
    for (part = 0; part < 5; part++) {
        ASSERT_OK(tide_reader_new(&r, log, part, 0));
        while (tide_reader_poll(r, &rec) == TIDE_OK) {
            ASSERT_EQ(rec.partition, part);
            if (rec.key != NULL) {
                ASSERT_EQ(tide_partition_get(rec.key, (size_t) rec.klen, 5),
                          part);
            }
            seen++;
        }
        tide_reader_free(r);
    }
    ASSERT_EQ(seen, 520);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_bad_partition_and_bad_records(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r = (tide_reader_t *) SENTINEL;
    tide_rec_t          rec;
    char               *dir = tmp_new();
    int64_t             start = 7, end = 7;

    p.partitions = 2;
    log = log_open(dir, "s", &p);
    memset(&rec, 0, sizeof(rec));
    rec.partition = 2;
    rec.val = "v";
    rec.vlen = 1;
    ASSERT_EQ(tide_log_push(log, &rec), TIDE_ERANGE);
    ASSERT(strstr(tide_log_errmsg(log), "partition") != NULL);
    ASSERT_EQ(tide_reader_new(&r, log, 2, 0), TIDE_ERANGE);
    ASSERT(r == NULL);
    r = (tide_reader_t *) SENTINEL;
    ASSERT_EQ(tide_reader_new(&r, log, -1, 0), TIDE_ERANGE);
    ASSERT(r == NULL);
    ASSERT_EQ(tide_log_get_range(log, 2, &start, &end), TIDE_ERANGE);
    ASSERT_EQ(tide_log_clean(log, 2), TIDE_ERANGE);
    ASSERT_EQ(tide_log_clean(log, -2), TIDE_ERANGE);

    /* Over the size limit: rejected before any byte is read. */
    rec.partition = 0;
    rec.vlen = INT32_MAX;
    ASSERT_EQ(tide_log_push(log, &rec), TIDE_EINVAL);

    /* Nothing was appended by the failed calls. */
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, 0);
    tide_log_free(log);

    /* A compacted stream needs keys. */
    p.compact = 1;
    log = log_open(dir, "c", &p);
    rec.vlen = 1;
    ASSERT_EQ(tide_log_push(log, &rec), TIDE_EINVAL);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_poll_sees_appends_of_other_handles(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *a, *b;
    tide_reader_t      *r;
    tide_rec_t          rec;
    char               *dir = tmp_new();

    a = log_open(dir, "s", &p);
    b = log_open(dir, "s", NULL);
    ASSERT_OK(tide_reader_new(&r, a, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);

    push(b, 0, "k", 1, "one", 3);
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    ASSERT_OK(tide_log_flush(b));
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 0);
    ASSERT_OK(memcmp(rec.val, "one", 3));
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);

    /* Both handles append; offsets continue across them. */
    push(a, 0, "k", 1, "two", 3);
    ASSERT_OK(tide_log_flush(a));
    push(b, 0, "k", 1, "three", 5);
    ASSERT_OK(tide_log_flush(b));
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 1);
    ASSERT_OK(memcmp(rec.val, "two", 3));
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 2);
    ASSERT_OK(memcmp(rec.val, "three", 5));
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);

    /* The reader keeps its log alive after tide_log_free. */
    tide_log_free(a);
    push(b, 0, "k", 1, "four", 4);
    tide_log_free(b);
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 3);
    tide_reader_free(r);
    tmp_free(dir);
}

static void
test_auto_flush_at_flush_bytes(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    char               *dir = tmp_new(), val[100];
    int64_t             start, end;
    int                 i;

    p.flush_bytes = 4096;
    log = log_open(dir, "s", &p);
    for (i = 0; i < 100; i++) {
        push(log, 0, "k", 1, val, make_val(val, 0, i));
    }
    /* About 137 bytes a record: at least 3 automatic flushes happened. */
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT(end >= 90 && end < 100);
    ASSERT_EQ(read_dense(log, 0, 0, 0), end);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_poll_batch(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          recs[64];
    char               *dir = tmp_new(), val[100];
    int64_t             next = 0;
    int                 i, n;

    log = log_open(dir, "s", &p);
    fill_log(log, 1000, 1000, 1000);
    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    ASSERT_EQ(tide_reader_poll_batch(r, recs, 0), TIDE_EINVAL);
    while ((n = tide_reader_poll_batch(r, recs, 64)) > 0) {
        ASSERT(n <= 64);
        for (i = 0; i < n; i++) {
            ASSERT_EQ(recs[i].offset, next);
            make_val(val, (int) next, 0);
            ASSERT_EQ(recs[i].vlen, 100);
            ASSERT_OK(memcmp(recs[i].val, val, 100));
            next++;
        }
    }
    ASSERT_EQ(n, 0);
    ASSERT_EQ(next, 1000);
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

/* A flush that fails part-way (here: the file size limit) takes back what
 * reached the file, keeps the batch, and a retry writes it exactly once. */
static void
test_failed_flush_is_taken_back(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          rec;
    struct rlimit       old, lim;
    char               *dir = tmp_new(), val[100];
    int64_t             next = 0;
    int                 i;

    p.flush_bytes = 64 * 1024 * 1024;
    log = log_open(dir, "s", &p);
    fill_log(log, 100, 100, 100);
    signal(SIGXFSZ, SIG_IGN);
    ASSERT_OK(getrlimit(RLIMIT_FSIZE, &old));
    for (i = 0; i < 1000; i++) {
        push(log, 0, NULL, -1, val, make_val(val, 100 + i, 0));
    }
    lim = old;
    lim.rlim_cur = 100 * 1024;       /* room for part of the batch only */
    ASSERT_OK(setrlimit(RLIMIT_FSIZE, &lim));
    ASSERT_EQ(tide_log_flush(log), TIDE_EIO);
    ASSERT_OK(setrlimit(RLIMIT_FSIZE, &old));
    ASSERT_OK(tide_log_flush(log));

    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    while (tide_reader_poll(r, &rec) == TIDE_OK) {
        ASSERT_EQ(rec.offset, next);
        make_val(val, (int) next, 0);
        ASSERT_OK(memcmp(rec.val, val, 100));
        next++;
    }
    ASSERT_EQ(next, 1100);
    tide_reader_free(r);
    tide_log_free(log);
    signal(SIGXFSZ, SIG_DFL);
    tmp_free(dir);
}

static void
test_reader_from_offset_and_end(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          rec;
    char               *dir = tmp_new();

    log = log_open(dir, "s", &p);
    /* An empty partition: END is 0. */
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_END));
    ASSERT_EQ(tide_reader_get_offset(r), 0);
    tide_reader_free(r);

    fill_log(log, 300, 300, 7);
    ASSERT_EQ(read_dense(log, 0, 123, 123), 300 - 123);
    ASSERT_EQ(read_dense(log, 0, TIDE_OFFSET_BEGINNING, 0), 300);

    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_END));
    ASSERT_EQ(tide_reader_get_offset(r), 300);
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    push(log, 0, "k", 1, "new", 3);
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 300);
    ASSERT_OK(memcmp(rec.val, "new", 3));
    tide_reader_free(r);

    /* Past the end: waits for that offset. */
    ASSERT_OK(tide_reader_new(&r, log, 0, 303));
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    push(log, 0, "k", 1, "a", 1);
    push(log, 0, "k", 1, "b", 1);
    push(log, 0, "k", 1, "c", 1);
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 303);
    ASSERT_EQ(rec.val[0], 'c');
    tide_reader_free(r);
    ASSERT_EQ(tide_reader_new(&r, log, 0, -3), TIDE_EINVAL);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_segment_rolls_keep_offsets_dense(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          rec;
    char               *dir = tmp_new();
    int64_t             last, bytes, start, end, off;
    int                 nseg;

    p.segment_bytes = 4096;
    log = log_open(dir, "s", &p);
    fill_log(log, 5000, 5000, 10);
    nseg = seg_list(dir, "s", 0, &last, &bytes);
    ASSERT(nseg > 100);
    ASSERT(last > 4900);
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(start, 0);
    ASSERT_EQ(end, 5000);
    ASSERT_EQ(read_dense(log, 0, 0, 0), 5000);

    /* From any offset, including segment bases, the first record read is
     * that offset. */
    for (off = 0; off < 5000; off += 37) {
        ASSERT_OK(tide_reader_new(&r, log, 0, off));
        ASSERT_OK(tide_reader_poll(r, &rec));
        ASSERT_EQ(rec.offset, off);
        tide_reader_free(r);
    }
    ASSERT_EQ(read_dense(log, 0, last, last), 5000 - last);

    /* A reader at the end follows the writer into new segments. */
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_END));
    fill_log(log, 500, 500, 10);
    for (off = 5000; off < 5500; off++) {
        ASSERT_OK(tide_reader_poll(r, &rec));
        ASSERT_EQ(rec.offset, off);
    }
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_get_range(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *a, *b;
    char               *dir = tmp_new();
    int64_t             start = -5, end = -5;

    p.partitions = 2;
    p.segment_bytes = 4096;
    a = log_open(dir, "s", &p);
    b = log_open(dir, "s", NULL);
    ASSERT_OK(tide_log_get_range(a, 1, &start, &end));
    ASSERT_EQ(start, 0);
    ASSERT_EQ(end, 0);
    fill_log(b, 1000, 1000, 100);
    ASSERT_OK(tide_log_get_range(a, 0, &start, &end));
    ASSERT_EQ(start, 0);
    ASSERT_EQ(end, 1000);
    ASSERT_OK(tide_log_get_range(a, 1, &start, &end));
    ASSERT_EQ(end, 0);
    tide_log_free(a);
    tide_log_free(b);
    tmp_free(dir);
}

/* ---- several processes -------------------------------------------------- */

static void
child_append(const char *dir, int id, int n)
{
    tide_log_t  *log = log_open(dir, "s", NULL);
    char         key[16], val[64];
    int32_t      vlen;
    int          i;
    unsigned     seed = (unsigned) id * 7919u;

    snprintf(key, sizeof(key), "child%d", id);
    for (i = 0; i < n; i++) {
        vlen = snprintf(val, sizeof(val), "%d", i);
        push(log, 0, key, (int32_t) strlen(key), val, vlen);
        if (rand_r(&seed) % 20 == 0) {
            ASSERT_OK(tide_log_flush(log));
        }
    }
    tide_log_free(log);
}

static void
test_two_processes_append_concurrently(void)
{
    enum { N = 4000, KIDS = 2 };
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          rec;
    char               *dir = tmp_new();
    pid_t               pid[KIDS];
    int                 k, status, id, next[KIDS] = { 0 }, rc, gate[2];
    int                 prev = -1, turns = 0;
    int64_t             off = 0;
    char                c;

    p.segment_bytes = 8192;
    tide_log_free(log_open(dir, "s", &p));
    /* The children start together once the gate's write end closes. */
    ASSERT_OK(pipe(gate));
    for (k = 0; k < KIDS; k++) {
        fflush(NULL);
        pid[k] = fork();
        ASSERT(pid[k] >= 0);
        if (pid[k] == 0) {
            close(gate[1]);
            ASSERT_EQ(read(gate[0], &c, 1), 0);
            child_append(dir, k, N);
            _exit(0);
        }
    }
    close(gate[0]);
    close(gate[1]);
    for (k = 0; k < KIDS; k++) {
        ASSERT_EQ(waitpid(pid[k], &status, 0), pid[k]);
        ASSERT(WIFEXITED(status));
        ASSERT_EQ(WEXITSTATUS(status), 0);
    }

    /* Dense offsets, every record once, each child's in its order. */
    log = log_open(dir, "s", NULL);
    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    while ((rc = tide_reader_poll(r, &rec)) == TIDE_OK) {
        ASSERT_EQ(rec.offset, off);
        ASSERT_EQ(rec.klen, 6);
        id = rec.key[5] - '0';
        ASSERT(id >= 0 && id < KIDS);
        ASSERT_EQ(num(rec.val, rec.vlen), next[id]);
        next[id]++;
        turns += id != prev;
        prev = id;
        off++;
    }
    ASSERT_EQ(rc, TIDE_EAGAIN);
    for (k = 0; k < KIDS; k++) {
        ASSERT_EQ(next[k], N);
    }
    ASSERT_EQ(off, N * KIDS);
    /* How often the writers took turns; not asserted, as it depends on
     * scheduling, but a 1 here means the test ran them one after the
     * other. */
    printf("# %d turns between writers\n", turns);
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

/* ---- recovery ----------------------------------------------------------- */

/* Writes 'n' records, closes, and returns the path of the last segment. */
static void
make_log(const char *dir, int64_t segment_bytes, int n, char *last_seg,
         size_t len)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    int64_t             last, bytes;

    p.segment_bytes = segment_bytes;
    log = log_open(dir, "s", &p);
    fill_log(log, n, n, 50);
    tide_log_free(log);
    seg_list(dir, "s", 0, &last, &bytes);
    seg_path(last_seg, len, dir, "s", 0, last, "log");
}

/* Checks that records 0..n-1 are all there, the first 'vals' with the
 * values make_log wrote, and that an append continues at n. */
static void
check_recovered(const char *dir, int n, int vals)
{
    tide_log_t     *log = log_open(dir, "s", NULL);
    tide_reader_t  *r;
    tide_rec_t      rec;
    char            val[100];
    int64_t         start, end;
    int             i;

    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, n);
    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    for (i = 0; i < n; i++) {
        ASSERT_OK(tide_reader_poll(r, &rec));
        ASSERT_EQ(rec.offset, i);
        if (i < vals) {
            make_val(val, i, 0);
            ASSERT_EQ(rec.vlen, 100);
            ASSERT_OK(memcmp(rec.val, val, 100));
        }
    }
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    push(log, 0, "after", 5, "x", 1);
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, n);
    ASSERT_EQ(rec.klen, 5);
    tide_reader_free(r);
    tide_log_free(log);
}

static void
test_torn_tail_is_cut(void)
{
    char         *dir = tmp_new(), seg[4200];
    struct stat   st;

    make_log(dir, 64 * 1024, 1000, seg, sizeof(seg));
    ASSERT_OK(stat(seg, &st));
    /* Records are 36 + 4 + 100 bytes or so: cut the last one in half. */
    ASSERT_OK(truncate(seg, st.st_size - 70));
    check_recovered(dir, 999, 999);

    /* Then in the middle of a record header: the 42-byte record appended
     * above, one whole 140-byte record and 95 bytes of the one before. */
    ASSERT_OK(stat(seg, &st));
    ASSERT_OK(truncate(seg, st.st_size - 42 - 140 - 95));
    check_recovered(dir, 997, 997);
    tmp_free(dir);
}

static void
test_torn_tail_seen_by_open_handle(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    char               *dir = tmp_new(), seg[4200];
    struct stat         st;
    int64_t             start, end;

    make_log(dir, 1 << 20, 100, seg, sizeof(seg));
    log = log_open(dir, "s", &p);
    /* Another writer died mid-write after this handle loaded the tail. */
    ASSERT_OK(stat(seg, &st));
    ASSERT_OK(truncate(seg, st.st_size - 10));
    push(log, 0, "k", 1, "x", 1);
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, 100);
    ASSERT_EQ(read_dense(log, 0, 0, 0), 100);
    tide_log_free(log);
    tmp_free(dir);
}

/* Appends 'len' bytes of a record that a writer died writing: a length
 * field claiming 'claim' bytes, then filler. */
static void
append_torn(const char *path, uint32_t claim, size_t len)
{
    char         buf[4096];
    struct stat  st;
    int          fd = open(path, O_WRONLY);

    ASSERT(fd >= 0);
    ASSERT(len >= 4 && len <= sizeof(buf));
    memset(buf, 'z', len);
    memcpy(buf, &claim, 4);
    ASSERT_OK(fstat(fd, &st));
    ASSERT_EQ(pwrite(fd, buf, len, st.st_size), (ssize_t) len);
    ASSERT_OK(close(fd));
}

/* Polls 'r' until it returns offsets from..to-1 in order, then EAGAIN. */
static void
poll_expect(tide_reader_t *r, int64_t from, int64_t to)
{
    tide_rec_t  rec;
    int64_t     o;
    int         rc;

    for (o = from; o < to; o++) {
        rc = tide_reader_poll(r, &rec);
        if (rc != TIDE_OK) {
            fprintf(stderr, "poll at %lld: %s: %s\n", (long long) o,
                    tide_strerror(rc), tide_reader_errmsg(r));
        }
        ASSERT_OK(rc);
        ASSERT_EQ(rec.offset, o);
    }
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
}

/* Returns how many descriptors this process has open. */
static int
fd_count(void)
{
    DIR            *d = opendir("/proc/self/fd");
    struct dirent  *de;
    int             n = 0;

    ASSERT(d != NULL);
    while ((de = readdir(d)) != NULL) {
        n += de->d_name[0] != '.';
    }
    closedir(d);
    return n - 1;                       /* the one opendir holds */
}

/* Readers at the end of the log hold no descriptor, an open log one per
 * partition, a writer two more per partition it wrote to; a reader goes
 * on where it stopped, in the same file or in one compacted meanwhile. */
static void
test_idle_handles_hold_few_descriptors(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log, *w;
    tide_reader_t      *r[8];
    char               *dir = tmp_new(), val[100];
    int                 before, i;

    p.partitions = 8;
    p.segment_bytes = 4096;
    before = fd_count();
    log = log_open(dir, "s", &p);
    ASSERT_EQ(fd_count(), before + 8);
    for (i = 0; i < 8; i++) {
        ASSERT_OK(tide_reader_new(&r[i], log, i, 0));
        poll_expect(r[i], 0, 0);
    }
    ASSERT_EQ(fd_count(), before + 8);

    w = log_open(dir, "s", NULL);
    for (i = 0; i < 100; i++) {
        make_val(val, i, 0);
        push(w, 3, "k", 1, val, 100);
        if (i % 10 == 9) {
            ASSERT_OK(tide_log_flush(w));       /* rolls every ~29 */
        }
    }
    ASSERT_EQ(fd_count(), before + 8 + 8 + 2);
    poll_expect(r[3], 0, 100);
    poll_expect(r[2], 0, 0);
    ASSERT_EQ(fd_count(), before + 8 + 8 + 2);
    for (i = 0; i < 10; i++) {
        push(w, 3, "k", 1, "x", 1);
    }
    ASSERT_OK(tide_log_flush(w));
    poll_expect(r[3], 100, 110);
    tide_log_free(w);
    for (i = 0; i < 8; i++) {
        tide_reader_free(r[i]);
    }
    tide_log_free(log);
    ASSERT_EQ(fd_count(), before);
    tmp_free(dir);
}

/* A follower that read a torn tail before the next writer cut it and
 * appended re-reads from its last whole record: when the new records run
 * past the bytes it had read, and when they stop short of them. */
static void
test_reader_rereads_after_torn_tail_cut(void)
{
    tide_log_t     *log, *w;
    tide_reader_t  *r;
    char           *dir = tmp_new(), seg[4200], val[100];
    int             i;

    make_log(dir, 1 << 20, 100, seg, sizeof(seg));
    log = log_open(dir, "s", NULL);
    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    poll_expect(r, 0, 100);

    /* A writer dies 60 bytes into a 140-byte record; the follower reads
     * them and waits for the rest. */
    append_torn(seg, 136, 60);
    poll_expect(r, 100, 100);
    /* The next writer cuts them and writes 5 records over and past. */
    w = log_open(dir, "s", NULL);
    for (i = 0; i < 5; i++) {
        make_val(val, 100 + i, 0);
        push(w, 0, "k", 1, val, 100);
    }
    ASSERT_OK(tide_log_flush(w));
    tide_log_free(w);
    poll_expect(r, 100, 105);

    /* Now 2000 torn bytes, and a next writer that writes 1 record. */
    append_torn(seg, 3000, 2000);
    poll_expect(r, 105, 105);
    w = log_open(dir, "s", NULL);
    push(w, 0, "k", 1, "short", 5);
    ASSERT_OK(tide_log_flush(w));
    tide_log_free(w);
    poll_expect(r, 105, 106);

    /* A file cut below records already returned (a failed write taken
     * back), then written again: the reader goes on after what it had. */
    {
        struct stat  st;

        ASSERT_OK(stat(seg, &st));
        ASSERT_OK(truncate(seg, st.st_size - 20));
        poll_expect(r, 106, 106);
        w = log_open(dir, "s", NULL);
        push(w, 0, "k", 1, "again", 5);
        push(w, 0, "k", 1, "more", 4);
        ASSERT_OK(tide_log_flush(w));
        tide_log_free(w);
        poll_expect(r, 106, 107);
    }
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

static void
write_at(const char *path, int64_t pos, int byte, size_t len)
{
    char  buf[4096];
    int   fd = open(path, O_WRONLY);

    ASSERT(fd >= 0);
    ASSERT(len <= sizeof(buf));
    memset(buf, byte, len);
    ASSERT_EQ(pwrite(fd, buf, len, pos), (ssize_t) len);
    ASSERT_OK(close(fd));
}

static void
test_garbage_tail_is_cut(void)
{
    char         *dir = tmp_new(), seg[4200];
    struct stat   st;

    make_log(dir, 64 * 1024, 1000, seg, sizeof(seg));
    ASSERT_OK(stat(seg, &st));
    /* Over the last record's value, and past the end. */
    write_at(seg, st.st_size - 50, 0xab, 300);
    check_recovered(dir, 999, 999);

    /* Zeros past the end (a file extended but never written). */
    ASSERT_OK(stat(seg, &st));
    write_at(seg, st.st_size, 0, 4000);
    check_recovered(dir, 1000, 999);
    tmp_free(dir);
}

static void
test_corrupt_record_before_tail_is_reported(void)
{
    tide_log_t     *log;
    tide_reader_t  *r;
    tide_rec_t      rec;
    char           *dir = tmp_new(), seg[4200];
    int             i, rc;

    make_log(dir, 64 * 1024, 1000, seg, sizeof(seg));
    /* The first segment is closed: recovery does not touch it, and the
     * reader must not skip the damage silently. */
    seg_path(seg, sizeof(seg), dir, "s", 0, 0, "log");
    write_at(seg, 16 + 141 * 10 + 60, 0xcd, 4);
    log = log_open(dir, "s", NULL);
    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    for (i = 0; i < 10; i++) {
        ASSERT_OK(tide_reader_poll(r, &rec));
        ASSERT_EQ(rec.offset, i);
    }
    rc = tide_reader_poll(r, &rec);
    ASSERT_EQ(rc, TIDE_ECORRUPT);
    ASSERT(strstr(tide_reader_errmsg(r), "corrupt") != NULL);
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_garbage_index_is_ignored(void)
{
    tide_log_t     *log;
    tide_reader_t  *r;
    tide_rec_t      rec;
    char           *dir = tmp_new(), seg[4200], idx[4200];
    struct stat     st;
    int64_t         off;
    int             fd, i;

    make_log(dir, 1 << 20, 3000, seg, sizeof(seg));
    seg_path(idx, sizeof(idx), dir, "s", 0, 0, "index");
    ASSERT_OK(stat(idx, &st));
    ASSERT(st.st_size >= 80);
    write_at(idx, 0, 0x5a, (size_t) st.st_size);
    check_recovered(dir, 3000, 3000);

    /* A stale index under an open handle: entries that claim offsets
     * too high or too low for the records they point at. */
    log = log_open(dir, "s", NULL);
    ASSERT_OK(stat(idx, &st));
    ASSERT(st.st_size >= 80);
    fd = open(idx, O_RDWR);
    ASSERT(fd >= 0);
    for (i = 0; i < st.st_size / 8; i++) {
        uint32_t  e[2];

        ASSERT_EQ(pread(fd, e, 8, i * 8), 8);
        e[0] = i % 2 ? e[0] + 5 : e[0] - 5;
        ASSERT_EQ(pwrite(fd, e, 8, i * 8), 8);
    }
    ASSERT_OK(close(fd));
    for (off = 0; off < 3000; off += 101) {
        ASSERT_OK(tide_reader_new(&r, log, 0, off));
        ASSERT_OK(tide_reader_poll(r, &rec));
        ASSERT_EQ(rec.offset, off);
        tide_reader_free(r);
    }
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_deleted_index_is_not_needed(void)
{
    tide_log_t     *log;
    tide_reader_t  *r;
    tide_rec_t      rec;
    char           *dir = tmp_new(), seg[4200];
    int64_t         off;

    make_log(dir, 64 * 1024, 3000, seg, sizeof(seg));
    log = log_open(dir, "s", NULL);
    {
        DIR            *d;
        struct dirent  *de;
        char            path[4200];
        int             n = 0;

        part_path(path, sizeof(path), dir, "s", 0, "");
        d = opendir(path);
        ASSERT(d != NULL);
        while ((de = readdir(d)) != NULL) {
            if (strstr(de->d_name, ".index") != NULL) {
                part_path(path, sizeof(path), dir, "s", 0, de->d_name);
                ASSERT_OK(unlink(path));
                n++;
            }
        }
        closedir(d);
        ASSERT(n > 3);
    }
    for (off = 0; off < 3000; off += 97) {
        ASSERT_OK(tide_reader_new(&r, log, 0, off));
        ASSERT_OK(tide_reader_poll(r, &rec));
        ASSERT_EQ(rec.offset, off);
        tide_reader_free(r);
    }
    tide_log_free(log);
    check_recovered(dir, 3000, 3000);
    tmp_free(dir);
}

/* ---- retention and compaction ------------------------------------------- */

enum { KEYS = 1000, VERSIONS = 5, TOMBS = 100 };

/* Fills a compacted stream: VERSIONS versions of KEYS keys (newest
 * offsets into newest[0..KEYS-1], the empty key's into newest[KEYS]), then
 * tombstones for keys 0..TOMBS-1, then fresh keys so that everything
 * before them is in closed segments. The background cleaner is kept out
 * by holding clean.lock. */
static void
make_compacted(const char *dir, const char *name, int64_t delete_ms,
               int64_t *newest)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    char                key[32], val[100];
    int32_t             klen;
    int                 i, fd;
    int64_t             off = 0;

    p.compact = 1;
    p.segment_bytes = 32 * 1024;
    p.delete_retention_ms = delete_ms;
    tide_log_free(log_open(dir, name, &p));
    fd = clean_lock(dir, name, 0);
    log = log_open(dir, name, NULL);
    /* The empty key is a key like any other; it comes first so that it
     * is the first key the cleaner's map sees. */
    push(log, 0, "", 0, "old", 3);
    off++;
    for (i = 0; i < KEYS * VERSIONS; i++) {
        klen = snprintf(key, sizeof(key), "k%d", i % KEYS);
        push(log, 0, key, klen, val, make_val(val, i % KEYS, i / KEYS));
        newest[i % KEYS] = off++;
        if (i % 100 == 99) {
            ASSERT_OK(tide_log_flush(log));
        }
    }
    push(log, 0, "", 0, "new", 3);
    newest[KEYS] = off++;
    for (i = 0; i < TOMBS; i++) {
        klen = snprintf(key, sizeof(key), "k%d", i);
        push(log, 0, key, klen, NULL, -1);
        newest[i] = off++;
    }
    ASSERT_OK(tide_log_flush(log));
    for (i = 0; i < 600; i++) {
        klen = snprintf(key, sizeof(key), "fresh%d", i);
        push(log, 0, key, klen, val, make_val(val, i, 0));
        if (i % 100 == 99) {
            ASSERT_OK(tide_log_flush(log));
        }
    }
    tide_log_free(log);
    clean_unlock(fd);
}

/* Cleans, then checks what a compacted stream holds. */
static void
check_compacted(const char *dir, const char *name, const int64_t *newest,
                int tombs_gone)
{
    tide_log_t     *log;
    tide_reader_t  *r;
    tide_rec_t      rec;
    char            val[100];
    int64_t         before, after, last, freed, off = -1, start, end;
    int64_t         first = -1;
    int             k, seen[KEYS], rc, nseg, empty = 0;

    nseg = seg_list(dir, name, 0, &last, &before);
    ASSERT(nseg > 10);
    log = log_open(dir, name, NULL);
    freed = tide_log_clean(log, -1);
    ASSERT(freed > 0);
    /* Segments left empty are dropped; the active one always stays. */
    rc = seg_list(dir, name, 0, &last, &after);
    ASSERT(rc >= 1 && rc < nseg);
    ASSERT_EQ(after, before - freed);
    ASSERT(after < before / 3);

    memset(seen, 0, sizeof(seen));
    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    while ((rc = tide_reader_poll(r, &rec)) == TIDE_OK) {
        ASSERT(rec.offset > off);
        if (off < 0) {
            first = rec.offset;
        }
        off = rec.offset;
        if (rec.klen == 0) {
            ASSERT_EQ(rec.offset, newest[KEYS]);
            ASSERT_OK(memcmp(rec.val, "new", 3));
            empty++;
            continue;
        }
        if (rec.key[0] != 'k') {
            continue;
        }
        k = num(rec.key + 1, rec.klen - 1);
        ASSERT_EQ(rec.offset, newest[k]);
        seen[k]++;
        if (k < TOMBS) {
            ASSERT(rec.val == NULL);
            ASSERT(!tombs_gone);
        } else {
            make_val(val, k, VERSIONS - 1);
            ASSERT_EQ(rec.vlen, 100);
            ASSERT_OK(memcmp(rec.val, val, 100));
        }
    }
    ASSERT_EQ(rc, TIDE_EAGAIN);
    tide_reader_free(r);
    ASSERT_EQ(empty, 1);
    for (k = 0; k < KEYS; k++) {
        ASSERT_EQ(seen[k], k < TOMBS && tombs_gone ? 0 : 1);
    }
    /* Offsets never change: the end is where it was. */
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, 2 + KEYS * VERSIONS + TOMBS + 600);
    ASSERT_EQ(start, first);     /* the first offset still stored */

    /* A reader from a key's newest offset starts at that record. */
    for (k = TOMBS; k < KEYS; k += 7) {
        ASSERT_OK(tide_reader_new(&r, log, 0, newest[k]));
        ASSERT_OK(tide_reader_poll(r, &rec));
        ASSERT_EQ(rec.offset, newest[k]);
        tide_reader_free(r);
    }
    /* Cleaning again finds nothing more to drop. */
    ASSERT_EQ(tide_log_clean(log, 0), 0);
    tide_log_free(log);
}

static void
test_compaction_keeps_newest_per_key(void)
{
    char     *dir = tmp_new();
    int64_t   newest[KEYS + 1];

    /* Tombstones younger than delete_retention stay. */
    make_compacted(dir, "keep", 3600 * 1000, newest);
    check_compacted(dir, "keep", newest, 0);

    make_compacted(dir, "drop", 1, newest);
    usleep(5000);
    check_compacted(dir, "drop", newest, 1);
    tmp_free(dir);
}

/* Records past the stable offset are uncommitted: they neither supersede
 * older records nor get dropped, until the barrier moves past them. */
static void
test_compaction_stops_at_stable_offset(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    tide_reader_t      *r;
    tide_rec_t          rec;
    char               *dir = tmp_new(), val[100];
    int                 i, old_seen = 0, total = 0;

    p.compact = 1;
    p.segment_bytes = 4096;
    log = log_open(dir, "c", &p);
    push(log, 0, "k", 1, "committed", 9);            /* offset 0 */
    ASSERT_OK(tide_log_flush(log));
    for (i = 0; i < 200; i++) {                      /* offsets 1..200 */
        push(log, 0, "filler", 6, val, make_val(val, i, 0));
        ASSERT_OK(tide_log_flush(log));
    }
    /* What a job does after each checkpoint; background cleaning at
     * every roll from here on must respect it. */
    ASSERT_OK(tide_log_set_stable(log, 0, 201));
    push(log, 0, "k", 1, "uncommitted", 11);         /* offset 201 */
    ASSERT_OK(tide_log_flush(log));
    for (i = 0; i < 100; i++) {                      /* roll past it */
        push(log, 0, "more", 4, val, make_val(val, i, 1));
        ASSERT_OK(tide_log_flush(log));
    }
    ASSERT_EQ(tide_log_set_stable(log, 0, -1), TIDE_EINVAL);
    ASSERT_EQ(tide_log_set_stable(log, 1, 5), TIDE_ERANGE);
    ASSERT(tide_log_clean(log, 0) >= 0);             /* fillers go */

    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    while (tide_reader_poll(r, &rec) == TIDE_OK) {
        total += rec.klen == 6;                      /* fillers */
        if (rec.offset == 0) {
            ASSERT_EQ(rec.vlen, 9);
            old_seen = 1;
        }
    }
    tide_reader_free(r);
    ASSERT_EQ(old_seen, 1);
    ASSERT_EQ(total, 1);                             /* only the newest */

    ASSERT_OK(tide_log_set_stable(log, 0, 1000));
    ASSERT(tide_log_clean(log, 0) > 0);
    ASSERT_OK(tide_reader_new(&r, log, 0, 0));
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT(rec.offset > 0);                          /* committed one gone */
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_retention_by_bytes_deletes_old_closed_segments(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    char               *dir = tmp_new();
    int64_t             last, bytes, start, end, freed, limit = 40000;
    int                 nseg, fd;

    p.segment_bytes = 8192;
    p.retention_bytes = limit;
    p.retention_ms = -1;
    tide_log_free(log_open(dir, "s", &p));
    fd = clean_lock(dir, "s", 0);
    log = log_open(dir, "s", NULL);
    fill_log(log, 2000, 2000, 20);
    nseg = seg_list(dir, "s", 0, &last, &bytes);
    ASSERT(bytes > 5 * limit);

    ASSERT_EQ(tide_log_clean(log, 0), TIDE_EBUSY);
    ASSERT(strstr(tide_log_errmsg(log), "cleaning") != NULL);
    clean_unlock(fd);

    freed = tide_log_clean(log, 0);
    ASSERT(freed > 0);
    {
        int64_t  last2, bytes2;
        int      nseg2 = seg_list(dir, "s", 0, &last2, &bytes2);

        ASSERT(nseg2 < nseg);
        ASSERT_EQ(last2, last);
        ASSERT_EQ(bytes2, bytes - freed);
        /* Kafka's rule: keep at least the limit, and no whole segment
         * more than it. */
        ASSERT(bytes2 >= limit);
        ASSERT(bytes2 - 8192 < limit);
    }
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT(start > 0);
    ASSERT_EQ(end, 2000);
    ASSERT_EQ(read_dense(log, 0, TIDE_OFFSET_BEGINNING, start), 2000 - start);
    ASSERT_EQ(read_dense(log, 0, 0, start), 2000 - start);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_retention_by_age_keeps_active_segment(void)
{
    tide_log_params_t   p = params_create();
    tide_log_t         *log;
    char               *dir = tmp_new(), path[4200];
    int64_t             last, bytes, start, end;
    int                 fd;
    DIR                *d;
    struct dirent      *de;
    struct timespec     old[2];

    p.segment_bytes = 8192;
    p.retention_ms = 3600 * 1000;
    tide_log_free(log_open(dir, "s", &p));
    fd = clean_lock(dir, "s", 0);
    log = log_open(dir, "s", NULL);
    fill_log(log, 1000, 1000, 20);
    clean_unlock(fd);
    ASSERT_EQ(tide_log_clean(log, -1), 0);

    /* Every segment, the active one too, is two hours old. */
    old[0].tv_sec = old[1].tv_sec = time(NULL) - 7200;
    old[0].tv_nsec = old[1].tv_nsec = 0;
    part_path(path, sizeof(path), dir, "s", 0, "");
    d = opendir(path);
    ASSERT(d != NULL);
    while ((de = readdir(d)) != NULL) {
        if (strstr(de->d_name, ".log") != NULL) {
            part_path(path, sizeof(path), dir, "s", 0, de->d_name);
            ASSERT_OK(utimensat(AT_FDCWD, path, old, 0));
        }
    }
    closedir(d);
    ASSERT(tide_log_clean(log, -1) > 0);
    ASSERT_EQ(seg_list(dir, "s", 0, &last, &bytes), 1);
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(start, last);
    ASSERT_EQ(end, 1000);
    ASSERT_EQ(read_dense(log, 0, 0, last), 1000 - last);
    tide_log_free(log);
    tmp_free(dir);
}

int
main(void)
{
    RUN(test_new_rejects_bad_names);
    RUN(test_new_rejects_bad_params);
    RUN(test_new_missing_stream_and_dir);
    RUN(test_new_excl_and_settings_fixed);
    RUN(test_new_bad_meta_and_unusable_dir);
    RUN(test_free_null);
    RUN(test_roundtrip_binary_nil_and_headers);
    RUN(test_placement_keyed_and_round_robin);
    RUN(test_bad_partition_and_bad_records);
    RUN(test_poll_sees_appends_of_other_handles);
    RUN(test_auto_flush_at_flush_bytes);
    RUN(test_poll_batch);
    RUN(test_failed_flush_is_taken_back);
    RUN(test_reader_from_offset_and_end);
    RUN(test_segment_rolls_keep_offsets_dense);
    RUN(test_get_range);
    RUN(test_two_processes_append_concurrently);
    RUN(test_torn_tail_is_cut);
    RUN(test_torn_tail_seen_by_open_handle);
    RUN(test_reader_rereads_after_torn_tail_cut);
    RUN(test_idle_handles_hold_few_descriptors);
    RUN(test_garbage_tail_is_cut);
    RUN(test_corrupt_record_before_tail_is_reported);
    RUN(test_garbage_index_is_ignored);
    RUN(test_deleted_index_is_not_needed);
    RUN(test_compaction_keeps_newest_per_key);
    RUN(test_compaction_stops_at_stable_offset);
    RUN(test_retention_by_bytes_deletes_old_closed_segments);
    RUN(test_retention_by_age_keeps_active_segment);
    return 0;
}
