/*
 * The store's contract, without Lua: opening and its errors, reads and
 * writes through the cache (binary keys, deletes, ENOBUFS), cache fills,
 * the changelog records a flush pushes, iterators (cached writes, a fixed
 * view, keeping the store alive), snapshots and starting from one,
 * restore from a changelog, the memory engine, tide_path_remove, and the
 * write-outs of a full cache on their own thread.
 */
#include "tide.h"
#include "store/store.h"

#include "ctest.h"
#include "tmpdir.h"
#include "changelog.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <rocksdb/c.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define SENTINEL_S ((tide_store_t *) (uintptr_t) 0x1)
#define SENTINEL_I ((tide_iter_t *) (uintptr_t) 0x1)

/* ---- helpers ------------------------------------------------------------ */

static int
exists(const char *path)
{
    struct stat  st;

    return stat(path, &st) == 0;
}

static tide_store_t *
store_open(const char *dir, const tide_store_params_t *p)
{
    tide_store_t  *s;
    char           err[512];
    int            rc;

    rc = tide_store_new(&s, dir, p, err, sizeof(err));
    if (rc != TIDE_OK) {
        fprintf(stderr, "tide_store_new: %s\n", err);
    }
    ASSERT_OK(rc);
    ASSERT(s != NULL);
    return s;
}

static void
put(tide_store_t *s, const char *key, const char *val)
{
    ASSERT_OK(tide_store_set(s, key, strlen(key), val,
                             val != NULL ? strlen(val) : 0));
}

/* Asserts that 'key' reads as 'val' (NULL: absent). */
static void
expect(tide_store_t *s, const char *key, const char *val)
{
    char    buf[256];
    size_t  len = sizeof(buf);
    int     rc;

    rc = tide_store_get(s, key, strlen(key), buf, &len);
    if (val == NULL) {
        ASSERT_EQ(rc, TIDE_ENOENT);
        return;
    }
    ASSERT_OK(rc);
    ASSERT_EQ(len, strlen(val));
    ASSERT(memcmp(buf, val, len) == 0);
}

/* Appends 'n' bytes at 'p' to out[*len], writing \0 as "\\0". */
static void
append_esc(char *out, size_t *len, const char *p, size_t n)
{
    size_t  i;

    for (i = 0; i < n; i++) {
        if (p[i] == '\0') {
            out[(*len)++] = '\\';
            out[(*len)++] = '0';
        } else {
            out[(*len)++] = p[i];
        }
    }
}

/* Returns a text standing for every key and value in [from, to)
 * ("<klen>:<key>=<vlen>:<val>;" each, \0 written as "\\0"); caller frees
 * it. */
static char *
dump(tide_store_t *s, const char *from, const char *to)
{
    tide_iter_t  *it;
    const char   *k, *v;
    size_t        kl, vl, len = 0, cap = 1024;
    char         *out = malloc(cap);
    int           rc;

    ASSERT(out != NULL);
    ASSERT_OK(tide_iter_new(&it, s, from, from ? strlen(from) : 0, to,
                            to ? strlen(to) : 0));
    while ((rc = tide_iter_poll(it, &k, &kl, &v, &vl)) == TIDE_OK) {
        while (len + 2 * (kl + vl) + 64 > cap) {
            cap *= 2;
            out = realloc(out, cap);
            ASSERT(out != NULL);
        }
        len += (size_t) sprintf(out + len, "%zu:", kl);
        append_esc(out, &len, k, kl);
        len += (size_t) sprintf(out + len, "=%zu:", vl);
        append_esc(out, &len, v, vl);
        out[len++] = ';';
    }
    ASSERT_EQ(rc, TIDE_ENOENT);
    out[len] = '\0';
    tide_iter_free(it);
    return out;
}

static int64_t
count_keys(tide_store_t *s)
{
    tide_iter_t  *it;
    const char   *k, *v;
    size_t        kl, vl;
    int64_t       n = 0;

    ASSERT_OK(tide_iter_new(&it, s, NULL, 0, NULL, 0));
    while (tide_iter_poll(it, &k, &kl, &v, &vl) == TIDE_OK) {
        n++;
    }
    tide_iter_free(it);
    return n;
}

/* ---- tests -------------------------------------------------------------- */

static void
test_new_rejects_bad_params(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    tide_log_t          *log;
    char                 err[256], path[4096];
    char                *dir = tmp_new();

    ASSERT_EQ(tide_store_new(NULL, dir, NULL, err, sizeof(err)), TIDE_EINVAL);

    s = SENTINEL_S;
    ASSERT_EQ(tide_store_new(&s, NULL, NULL, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(s == NULL);
    ASSERT(strstr(err, "folder") != NULL);

    memset(&p, 0, sizeof(p));
    p.engine = 7;
    s = SENTINEL_S;
    ASSERT_EQ(tide_store_new(&s, dir, &p, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(s == NULL);

    memset(&p, 0, sizeof(p));
    p.cache_entries = -1;
    ASSERT_EQ(tide_store_new(&s, dir, &p, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(s == NULL);

    memset(&p, 0, sizeof(p));
    p.engine = TIDE_STORE_MEMORY;
    p.from = dir;
    ASSERT_EQ(tide_store_new(&s, NULL, &p, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(s == NULL);

    /* A partition the changelog does not have. */
    log = log_open(dir, 2);
    memset(&p, 0, sizeof(p));
    p.changelog = log;
    p.partition = 2;
    snprintf(path, sizeof(path), "%s/s", dir);
    ASSERT_EQ(tide_store_new(&s, path, &p, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(s == NULL);
    ASSERT(strstr(err, "out of range") != NULL);
    p.partition = -1;
    ASSERT_EQ(tide_store_new(&s, path, &p, err, sizeof(err)), TIDE_EINVAL);
    tide_log_free(log);

    /* A missing snapshot. */
    memset(&p, 0, sizeof(p));
    snprintf(path, sizeof(path), "%s/missing", dir);
    p.from = path;
    s = SENTINEL_S;
    ASSERT_EQ(tide_store_new(&s, dir, &p, err, sizeof(err)), TIDE_ENOENT);
    ASSERT(s == NULL);
    ASSERT(strstr(err, "missing") != NULL);

    /* err may be NULL when errlen is 0. */
    ASSERT_EQ(tide_store_new(&s, NULL, NULL, NULL, 0), TIDE_EINVAL);
    tmp_free(dir);
}

static void
test_new_busy_and_free_null(void)
{
    tide_store_t  *s, *s2;
    char           err[512], path[4096];
    char          *dir = tmp_new();

    tide_store_free(NULL);
    tide_iter_free(NULL);
    snprintf(path, sizeof(path), "%s/a/b/store", dir);   /* parents made */
    s = store_open(path, NULL);
    s2 = SENTINEL_S;
    ASSERT_EQ(tide_store_new(&s2, path, NULL, err, sizeof(err)), TIDE_EBUSY);
    ASSERT(s2 == NULL);
    ASSERT(strstr(err, path) != NULL);
    ASSERT(strcmp(tide_store_errmsg(s), "no error") == 0);
    tide_store_free(s);
    s = store_open(path, NULL);                          /* free released it */
    tide_store_free(s);
    tmp_free(dir);
}

static void
test_get_set_binary_and_deletes(void)
{
    tide_store_t  *s;
    char           buf[64], big[1000];
    size_t         len;
    char          *dir = tmp_new();
    const char     k1[] = "a\0b", k2[] = "a\0c", v1[] = "x\0y\0z";

    s = store_open(dir, NULL);
    len = sizeof(buf);
    ASSERT_EQ(tide_store_get(s, "nope", 4, buf, &len), TIDE_ENOENT);

    ASSERT_OK(tide_store_set(s, k1, 3, v1, 5));
    ASSERT_OK(tide_store_set(s, k2, 3, "", 0));          /* empty value */
    len = sizeof(buf);
    ASSERT_OK(tide_store_get(s, k1, 3, buf, &len));
    ASSERT_EQ(len, 5);
    ASSERT(memcmp(buf, v1, 5) == 0);
    len = sizeof(buf);
    ASSERT_OK(tide_store_get(s, k2, 3, buf, &len));
    ASSERT_EQ(len, 0);
    len = sizeof(buf);
    ASSERT_EQ(tide_store_get(s, "a", 1, buf, &len), TIDE_ENOENT);  /* prefix */

    /* ENOBUFS: the size needed, nothing changed, from cache and RocksDB. */
    memset(big, 'q', sizeof(big));
    ASSERT_OK(tide_store_set(s, "big", 3, big, sizeof(big)));
    len = 10;
    ASSERT_EQ(tide_store_get(s, "big", 3, buf, &len), TIDE_ENOBUFS);
    ASSERT_EQ(len, sizeof(big));
    len = 0;
    ASSERT_EQ(tide_store_get(s, "big", 3, NULL, &len), TIDE_ENOBUFS);
    ASSERT_EQ(len, sizeof(big));
    ASSERT_OK(tide_store_flush(s));
    tide_store_free(s);
    s = store_open(dir, NULL);
    len = 10;
    ASSERT_EQ(tide_store_get(s, "big", 3, buf, &len), TIDE_ENOBUFS);
    ASSERT_EQ(len, sizeof(big));
    {
        char  got[1000];

        len = sizeof(got);
        ASSERT_OK(tide_store_get(s, "big", 3, got, &len));
        ASSERT_EQ(len, sizeof(big));
        ASSERT(memcmp(got, big, sizeof(big)) == 0);
    }
    len = sizeof(buf);
    ASSERT_OK(tide_store_get(s, k1, 3, buf, &len));
    ASSERT_EQ(len, 5);
    ASSERT(memcmp(buf, v1, 5) == 0);

    /* Deletes: cached, then flushed. */
    ASSERT_OK(tide_store_set(s, k1, 3, NULL, 0));
    len = sizeof(buf);
    ASSERT_EQ(tide_store_get(s, k1, 3, buf, &len), TIDE_ENOENT);
    ASSERT_OK(tide_store_flush(s));
    len = sizeof(buf);
    ASSERT_EQ(tide_store_get(s, k1, 3, buf, &len), TIDE_ENOENT);
    ASSERT_OK(tide_store_set(s, k1, 3, "back", 4));      /* after a delete */
    len = sizeof(buf);
    ASSERT_OK(tide_store_get(s, k1, 3, buf, &len));
    ASSERT_EQ(len, 4);
    ASSERT(memcmp(buf, "back", 4) == 0);
    tide_store_free(s);
    tmp_free(dir);
}

static void
test_bad_arguments_change_nothing(void)
{
    tide_store_t        *s;
    tide_store_params_t  p;
    tide_log_t          *log;
    char                 buf[16], path[4096];
    size_t               len = sizeof(buf);
    char                *dir = tmp_new();

    snprintf(path, sizeof(path), "%s/s", dir);
    log = log_open(dir, 1);
    memset(&p, 0, sizeof(p));
    p.changelog = log;
    s = store_open(path, &p);
    put(s, "k", "v");
    ASSERT_EQ(tide_store_get(s, NULL, 0, buf, &len), TIDE_EINVAL);
    ASSERT_EQ(tide_store_get(s, "k", 1, buf, NULL), TIDE_EINVAL);
    ASSERT_EQ(tide_store_get(s, "k", 1, NULL, &len), TIDE_EINVAL);
    ASSERT_EQ(len, sizeof(buf));
    ASSERT_EQ(tide_store_set(s, NULL, 1, "v", 1), TIDE_EINVAL);
    /* Over the changelog's record limit: checked before 'val' is read. */
    ASSERT_EQ(tide_store_set(s, "k", 1, "x", (size_t) 64 << 20), TIDE_EINVAL);
    ASSERT(strstr(tide_store_errmsg(s), "limit") != NULL);
    expect(s, "k", "v");
    tide_store_free(s);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_flush_free_reopen_keeps_data(void)
{
    tide_store_t  *s;
    char          *dir = tmp_new();

    s = store_open(dir, NULL);
    put(s, "kept", "1");
    put(s, "gone", "1");
    ASSERT_OK(tide_store_flush(s));
    put(s, "gone", NULL);
    put(s, "lost", "unflushed");                         /* dropped by free */
    put(s, "kept", "2");
    tide_store_free(s);

    s = store_open(dir, NULL);
    expect(s, "kept", "1");
    expect(s, "gone", "1");
    expect(s, "lost", NULL);
    put(s, "gone", NULL);
    ASSERT_OK(tide_store_flush(s));
    tide_store_free(s);
    s = store_open(dir, NULL);
    expect(s, "gone", NULL);
    tide_store_free(s);
    tmp_free(dir);
}

static void
test_cache_fill_writes_out(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    tide_log_t          *log;
    tide_reader_t       *r;
    tide_rec_t           rec;
    char                 key[32], val[32], path[4096];
    int                  i, n = 0;
    char                *dir = tmp_new();

    log = log_open(dir, 1);
    memset(&p, 0, sizeof(p));
    p.cache_entries = 100;
    p.changelog = log;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    for (i = 0; i < 1000; i++) {
        snprintf(key, sizeof(key), "key-%04d", i);
        snprintf(val, sizeof(val), "val-%d", i);
        put(s, key, val);
    }
    /* 900 went out with the fills; 100 are still cached. */
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
    while (tide_reader_poll(r, &rec) == TIDE_OK) {
        n++;
    }
    ASSERT_EQ(n, 900);
    for (i = 0; i < 1000; i += 37) {
        snprintf(key, sizeof(key), "key-%04d", i);
        snprintf(val, sizeof(val), "val-%d", i);
        expect(s, key, val);
    }
    ASSERT_OK(tide_store_flush(s));
    ASSERT_OK(tide_log_flush(log));
    while (tide_reader_poll(r, &rec) == TIDE_OK) {
        n++;
    }
    ASSERT_EQ(n, 1000);
    tide_reader_free(r);
    tide_store_free(s);
    s = store_open(path, NULL);
    ASSERT_EQ(count_keys(s), 1000);
    tide_store_free(s);
    tide_log_free(log);
    tmp_free(dir);
}

/* A key read as absent is cached as such; a write, a fill and a flush
 * must not leave that absence behind. */
static void
test_absent_then_written(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 key[32], path[4096];
    int                  i;
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 50;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    expect(s, "k", NULL);
    put(s, "k", "1");
    expect(s, "k", "1");
    ASSERT_OK(tide_store_flush(s));
    expect(s, "k", "1");
    /* Absent in RocksDB, cached absent, then written while the cache
     * fills and drops entries around it. */
    for (i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "n-%03d", i);
        expect(s, key, NULL);
        put(s, key, key);
        expect(s, key, key);
    }
    for (i = 0; i < 500; i++) {
        snprintf(key, sizeof(key), "n-%03d", i);
        expect(s, key, key);
    }
    /* A deleted key reads as absent from the cache and after a flush. */
    put(s, "k", NULL);
    expect(s, "k", NULL);
    ASSERT_OK(tide_store_flush(s));
    expect(s, "k", NULL);
    tide_store_free(s);
    s = store_open(path, NULL);
    expect(s, "k", NULL);
    ASSERT_EQ(count_keys(s), 500);
    tide_store_free(s);
    tmp_free(dir);
}

/* Values growing past the room an entry keeps for them, hot keys read
 * between fills (they stay cached) and keys alike in their first bytes
 * (the flush sorts them) all read back right, from the cache and from
 * RocksDB, and iterate in key order. */
static void
test_cache_values_grow_and_fills_keep_order(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 key[64], val[512], path[4096];
    char                *text, *again;
    int                  i, j;
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 64;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    for (j = 1; j <= 6; j++) {
        for (i = 0; i < 300; i++) {
            /* Long common prefixes, differing past 8 bytes, and keys
             * that are prefixes of others. */
            snprintf(key, sizeof(key), "same-prefix-%s-%03d",
                     i % 3 == 0 ? "aaaaaaaaaaaa" : "aaaaaaaaaaaab",
                     (i * 7919) % 300);
            if (i % 10 == 0) {
                key[12] = '\0';
            }
            memset(val, 'a' + j, sizeof(val));
            snprintf(val, sizeof(val), "%d-%s", j, key);
            val[strlen(val)] = 'x';
            val[j * 40] = '\0';         /* grows every round */
            put(s, key, val);
            expect(s, key, val);
            expect(s, "hot", j == 1 && i == 0 ? NULL : "h");
            if (j == 1 && i == 0) {
                put(s, "hot", "h");
            }
        }
    }
    expect(s, "hot", "h");
    text = dump(s, NULL, NULL);
    ASSERT_OK(tide_store_flush(s));
    tide_store_free(s);
    s = store_open(path, NULL);
    again = dump(s, NULL, NULL);
    ASSERT(strcmp(text, again) == 0);
    /* dump() lists keys as "<len>:<key>=..."; check they ascend. */
    {
        const char  *q = again, *prev = NULL;
        size_t       plen = 0, kl;
        char        *end;

        while (*q != '\0') {
            kl = strtoul(q, &end, 10);
            ASSERT(*end == ':');
            if (prev != NULL) {
                int  c = memcmp(prev, end + 1, plen < kl ? plen : kl);

                ASSERT(c < 0 || (c == 0 && plen < kl));
            }
            prev = end + 1;
            plen = kl;
            q = strchr(end + 1 + kl, ';');
            ASSERT(q != NULL);
            q++;
        }
    }
    free(text);
    free(again);
    tide_store_free(s);
    tmp_free(dir);
}

static void
test_flush_pushes_one_record_per_key(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    tide_log_t          *log;
    tide_reader_t       *r;
    tide_rec_t           rec;
    char                 path[4096];
    int64_t              start, end;
    int                  n = 0, rc;
    char                *dir = tmp_new();

    log = log_open(dir, 2);
    memset(&p, 0, sizeof(p));
    p.changelog = log;
    p.partition = 1;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    tide_log_free(log);                 /* the store keeps the log alive */
    put(s, "a", "1");
    put(s, "a", "2");
    put(s, "b", "x");
    put(s, "b", NULL);
    put(s, "c", "3");
    put(s, "d", NULL);                  /* deleting an absent key */
    expect(s, "zz", NULL);              /* a read caches nothing dirty */
    ASSERT_OK(tide_store_flush(s));
    ASSERT_OK(tide_store_flush(s));     /* nothing new: no records */

    /* Read through a second handle: the first is only held by the store. */
    {
        char  err[256];

        ASSERT_OK(tide_log_new(&log, dir, "changelog", NULL, err,
                               sizeof(err)));
    }
    /* The store's handle buffers; nothing is visible before a flush. */
    ASSERT_OK(tide_log_get_range(log, 1, &start, &end));
    ASSERT_EQ(end, 0);
    tide_store_free(s);                 /* last reference: flushes the log */
    ASSERT_OK(tide_log_get_range(log, 1, &start, &end));
    ASSERT_EQ(end, 4);
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, 0);

    ASSERT_OK(tide_reader_new(&r, log, 1, TIDE_OFFSET_BEGINNING));
    while ((rc = tide_reader_poll(r, &rec)) == TIDE_OK) {
        ASSERT_EQ(rec.klen, 1);
        switch (rec.key[0]) {
        case 'a':
            ASSERT_EQ(rec.vlen, 1);
            ASSERT_EQ(rec.val[0], '2');
            break;
        case 'b':
        case 'd':
            ASSERT(rec.val == NULL);
            ASSERT_EQ(rec.vlen, -1);
            break;
        case 'c':
            ASSERT_EQ(rec.vlen, 1);
            ASSERT_EQ(rec.val[0], '3');
            break;
        default:
            ASSERT(0);
        }
        ASSERT(rec.ts > 0);
        n++;
    }
    ASSERT_EQ(rc, TIDE_EAGAIN);
    ASSERT_EQ(n, 4);
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_iter_sees_cache_and_fixed_view(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    tide_iter_t         *it, *it2;
    tide_log_t          *log;
    tide_reader_t       *r;
    tide_rec_t           rec;
    const char          *k, *v;
    size_t               kl, vl;
    char                 path[4096];
    char                *d;
    int                  n;
    char                *dir = tmp_new();

    log = log_open(dir, 1);
    memset(&p, 0, sizeof(p));
    p.changelog = log;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    put(s, "b", "1");
    put(s, "d", "1");
    put(s, "f", "1");
    ASSERT_OK(tide_store_flush(s));
    put(s, "a", "2");                   /* cached only */
    put(s, "d", NULL);                  /* cached delete */
    put(s, "f", "2");                   /* cached overwrite */
    ASSERT_OK(tide_store_set(s, "c\0x", 3, "z", 1));

    d = dump(s, NULL, NULL);
    ASSERT(strcmp(d, "1:a=1:2;1:b=1:1;3:c\\0x=1:z;1:f=1:2;") == 0);
    free(d);
    d = dump(s, "b", "f");              /* [b, f) */
    ASSERT(strcmp(d, "1:b=1:1;3:c\\0x=1:z;") == 0);
    free(d);
    d = dump(s, "g", NULL);
    ASSERT(strcmp(d, "") == 0);
    free(d);

    /* A fixed view while writes go on, and it keeps the store alive. */
    ASSERT_OK(tide_iter_new(&it, s, "a", 1, NULL, 0));
    ASSERT_OK(tide_iter_new(&it2, s, NULL, 0, "b", 1));
    put(s, "b", NULL);
    put(s, "e", "new");
    ASSERT_OK(tide_store_flush(s));
    put(s, "a", "3");
    ASSERT_OK(tide_store_flush(s));
    tide_store_free(s);
    n = 0;
    while (tide_iter_poll(it, &k, &kl, &v, &vl) == TIDE_OK) {
        ASSERT(!(kl == 1 && k[0] == 'e'));
        if (kl == 1 && k[0] == 'a') {
            ASSERT_EQ(v[0], '2');
        }
        n++;
    }
    ASSERT_EQ(n, 4);
    ASSERT_EQ(tide_iter_poll(it, &k, &kl, &v, &vl), TIDE_ENOENT);
    ASSERT(k == NULL && v == NULL && kl == 0 && vl == 0);
    tide_iter_free(it);
    ASSERT_OK(tide_iter_poll(it2, &k, &kl, &v, &vl));
    ASSERT(kl == 1 && k[0] == 'a');
    ASSERT_EQ(tide_iter_poll(it2, &k, &kl, &v, &vl), TIDE_ENOENT);
    tide_iter_free(it2);                /* frees the store */

    /* Writes an iterator put into RocksDB were still changelogged: a=2,
     * d=nil, f=2, c\0x=z in the second flush, one record each. */
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_reader_new(&r, log, 0, 3));
    n = 0;
    while (tide_reader_poll(r, &rec) == TIDE_OK) {
        n++;
    }
    /* 4 (the iterator's writes) + 2 (b, e) + 1 (a). */
    ASSERT_EQ(n, 7);
    tide_reader_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_snapshot_and_from(void)
{
    tide_store_params_t  p;
    tide_store_t        *s, *s2;
    char                 path[4096], snap[4096], path2[4096], err[512];
    char                 key[32];
    char                *d1, *d2;
    int                  i;
    char                *dir = tmp_new();

    snprintf(path, sizeof(path), "%s/s", dir);
    snprintf(snap, sizeof(snap), "%s/snap", dir);
    snprintf(path2, sizeof(path2), "%s/s2", dir);
    s = store_open(path, NULL);
    ASSERT_EQ(tide_store_snapshot(s, NULL, err, sizeof(err)), TIDE_EINVAL);
    for (i = 0; i < 5000; i++) {
        snprintf(key, sizeof(key), "k%05d", i);
        ASSERT_OK(tide_store_set(s, key, strlen(key), key, strlen(key)));
    }
    ASSERT_OK(tide_store_snapshot(s, snap, err, sizeof(err)));
    put(s, "after", "x");
    /* Replacing an existing snapshot folder. */
    put(s, "k00000", NULL);
    ASSERT_OK(tide_store_snapshot(s, snap, err, sizeof(err)));
    put(s, "after-2", "y");             /* not in the snapshot */
    d1 = dump(s, NULL, NULL);

    /* A store already at path2 is replaced by the snapshot. */
    s2 = store_open(path2, NULL);
    put(s2, "junk", "1");
    ASSERT_OK(tide_store_flush(s2));
    tide_store_free(s2);
    memset(&p, 0, sizeof(p));
    p.from = snap;
    s2 = store_open(path2, &p);
    expect(s2, "junk", NULL);
    expect(s2, "after-2", NULL);
    put(s2, "after-2", "y");
    d2 = dump(s2, NULL, NULL);
    ASSERT(strcmp(d1, d2) == 0);
    ASSERT_EQ(count_keys(s2), 5001);
    /* The new store writes without touching the snapshot. */
    put(s2, "k00001", NULL);
    ASSERT_OK(tide_store_flush(s2));
    tide_store_free(s2);
    s2 = store_open(snap, NULL);        /* a snapshot is a store too */
    expect(s2, "k00001", "k00001");
    expect(s2, "after-2", NULL);
    tide_store_free(s2);
    free(d1);
    free(d2);
    tide_store_free(s);

    /* The snapshot made the data durable in the store itself too. */
    s = store_open(path, NULL);
    expect(s, "after", "x");
    expect(s, "k04999", "k04999");
    tide_store_free(s);
    tmp_free(dir);
}

/* Writes versions of keys through a changelogged store; returns the log
 * offset after each of 3 flushes in ends[]. */
static void
fill_changelog(tide_log_t *log, const char *path, int64_t *ends,
               char **dumps)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 key[32], val[128];
    int64_t              start;
    int                  round, i;

    memset(&p, 0, sizeof(p));
    p.changelog = log;
    p.cache_entries = 500;               /* fills flush on their own too */
    s = store_open(path, &p);
    for (round = 0; round < 3; round++) {
        for (i = 0; i < 2000; i++) {
            snprintf(key, sizeof(key), "key-%d", (i * 7 + round) % 1500);
            if ((i + round) % 11 == 0) {
                ASSERT_OK(tide_store_set(s, key, strlen(key), NULL, 0));
                continue;
            }
            snprintf(val, sizeof(val), "v%d-%d", round, i);
            ASSERT_OK(tide_store_set(s, key, strlen(key), val, strlen(val)));
        }
        ASSERT_OK(tide_store_flush(s));
        ASSERT_OK(tide_log_flush(log));
        ASSERT_OK(tide_log_get_range(log, 0, &start, &ends[round]));
        dumps[round] = dump(s, NULL, NULL);
    }
    tide_store_free(s);
}

/* A restore in many small runs (the test seam ing.run_bytes), so that
 * runs are sorted, written and ingested by the writer thread while the
 * next is gathered, and later runs must win over earlier ones. */
static void
test_restore_in_many_runs(void)
{
    tide_store_t   *s;
    tide_log_t     *log;
    tide_reader_t  *r;
    char            path[4096];
    char           *dumps[3], *d;
    int64_t         ends[3], recs, bytes, total;
    int             rc, round, i;
    char           *dir = tmp_new();

    log = log_open(dir, 1);
    snprintf(path, sizeof(path), "%s/s", dir);
    fill_changelog(log, path, ends, dumps);
    for (round = 0; round < 3; round++) {
        snprintf(path, sizeof(path), "%s/m%d", dir, round);
        s = store_open(path, NULL);
        /* Round 2: runs of a dozen records (~450 of them; a run per
         * record made 6,000 fsync'd ingests and most of this file's time
         * on a busy disk). A key's records are ~1,500 apart, so each of
         * them lands in another run either way. */
        s->ing.run_bytes = round == 0 ? 4096 : round == 1 ? 100000 : 256;
        ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
        total = 0;
        do {
            rc = tide_store_restore(s, r, INT64_MAX, round == 1 ? 700 :
                                    INT64_MAX, &recs, &bytes);
            ASSERT(rc == TIDE_OK || rc == TIDE_ENOENT);
            total += recs;
        } while (rc == TIDE_OK);
        ASSERT_EQ(total, ends[2]);
        d = dump(s, NULL, NULL);
        ASSERT(strcmp(d, dumps[2]) == 0);
        free(d);
        /* Nothing of the restore's is left behind in the folder. */
        snprintf(path, sizeof(path), "%s/m%d/tide-restore.sst", dir, round);
        ASSERT(access(path, F_OK) != 0);
        tide_reader_free(r);
        tide_store_free(s);
    }
    for (i = 0; i < 3; i++) {
        free(dumps[i]);
    }
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_restore_rebuilds_content(void)
{
    tide_store_t   *s;
    tide_log_t     *log;
    tide_store_t   *s2;
    tide_reader_t  *r;
    tide_rec_t      rec;
    char            path[4096], path2[4096];
    char           *dumps[3], *d, *e;
    int64_t         ends[3], recs, bytes, total = 0, calls = 0;
    int             rc, i;
    char           *dir = tmp_new();

    log = log_open(dir, 1);
    snprintf(path, sizeof(path), "%s/s", dir);
    fill_changelog(log, path, ends, dumps);

    /* Everything, in chunks of 1000. */
    snprintf(path2, sizeof(path2), "%s/r1", dir);
    s = store_open(path2, NULL);
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
    do {
        rc = tide_store_restore(s, r, INT64_MAX, 1000, &recs, &bytes);
        ASSERT(rc == TIDE_OK || rc == TIDE_ENOENT);
        ASSERT(recs <= 1000);
        ASSERT(bytes >= recs * 36);
        total += recs;
        calls++;
    } while (rc == TIDE_OK);
    ASSERT_EQ(total, ends[2]);
    ASSERT(calls >= ends[2] / 1000);
    ASSERT_EQ(tide_store_restore(s, r, INT64_MAX, 1000, &recs, &bytes),
              TIDE_ENOENT);
    ASSERT_EQ(recs, 0);
    ASSERT_EQ(bytes, 0);
    d = dump(s, NULL, NULL);
    ASSERT(strcmp(d, dumps[2]) == 0);
    free(d);
    tide_reader_free(r);

    /* Keys read (and so cached) before a restore read as restored. */
    snprintf(path2, sizeof(path2), "%s/r0", dir);
    s2 = store_open(path2, NULL);
    put(s2, "key-1", "stale");
    put(s2, "key-2", "stale");
    put(s2, "zzz", "kept");
    ASSERT_OK(tide_store_flush(s2));
    expect(s2, "key-1", "stale");
    expect(s2, "key-2", "stale");
    expect(s2, "key-1", "stale");
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_store_restore(s2, r, INT64_MAX, INT64_MAX, &recs,
                                 &bytes), TIDE_ENOENT);
    ASSERT_EQ(recs, ends[2]);
    d = dump(s2, "key-", "key.");
    e = dump(s, "key-", "key.");
    ASSERT(strcmp(d, e) == 0);
    free(d);
    free(e);
    {
        char    buf[64], want[64];
        size_t  len = sizeof(buf), wlen = sizeof(want);
        int     rc1, rc2;

        rc1 = tide_store_get(s2, "key-1", 5, buf, &len);
        rc2 = tide_store_get(s, "key-1", 5, want, &wlen);
        ASSERT_EQ(rc1, rc2);
        if (rc1 == TIDE_OK) {
            ASSERT_EQ(len, wlen);
            ASSERT(memcmp(buf, want, len) == 0);
        }
    }
    expect(s2, "zzz", "kept");
    tide_reader_free(r);
    tide_store_free(s2);

    /* Bad arguments, and a dirty cache. */
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
    recs = bytes = 99;
    ASSERT_EQ(tide_store_restore(s, NULL, 10, 10, &recs, &bytes),
              TIDE_EINVAL);
    ASSERT_EQ(recs, 0);
    ASSERT_EQ(bytes, 0);
    ASSERT_EQ(tide_store_restore(s, r, -1, 10, &recs, &bytes), TIDE_EINVAL);
    ASSERT_EQ(tide_store_restore(s, r, 10, 0, &recs, &bytes), TIDE_EINVAL);
    put(s, "dirty", "1");
    ASSERT_EQ(tide_store_restore(s, r, 10, 10, &recs, &bytes), TIDE_EINVAL);
    ASSERT(strstr(tide_store_errmsg(s), "unflushed") != NULL);
    ASSERT_EQ(tide_reader_get_offset(r), 0);       /* nothing read */
    tide_reader_free(r);
    tide_store_free(s);

    /* Up to 'until': the state after each flush, then the tail. */
    for (i = 0; i < 2; i++) {
        snprintf(path2, sizeof(path2), "%s/r-until-%d", dir, i);
        s = store_open(path2, NULL);
        ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
        rc = tide_store_restore(s, r, ends[i], INT64_MAX, &recs, &bytes);
        ASSERT_EQ(rc, TIDE_ENOENT);
        ASSERT_EQ(recs, ends[i]);
        ASSERT_EQ(tide_reader_get_offset(r), ends[i]);
        d = dump(s, NULL, NULL);
        ASSERT(strcmp(d, dumps[i]) == 0);
        free(d);
        tide_reader_free(r);
        /* Replaying only the tail from there reaches the final state. */
        ASSERT_OK(tide_reader_new(&r, log, 0, ends[i]));
        rc = tide_store_restore(s, r, INT64_MAX, INT64_MAX, &recs, &bytes);
        ASSERT_EQ(rc, TIDE_ENOENT);
        ASSERT_EQ(recs, ends[2] - ends[i]);
        d = dump(s, NULL, NULL);
        ASSERT(strcmp(d, dumps[2]) == 0);
        free(d);
        tide_reader_free(r);
        tide_store_free(s);
    }

    /* A record without a key is not a changelog. */
    rec.offset = 0;
    memset(&rec, 0, sizeof(rec));
    tide_log_free(log);
    {
        tide_log_params_t  lp;
        char               err[256];

        memset(&lp, 0, sizeof(lp));
        lp.mode = TIDE_LOG_CREATE;
        lp.fsync = TIDE_FSYNC_NONE;
        ASSERT_OK(tide_log_new(&log, dir, "plain", &lp, err, sizeof(err)));
    }
    rec.key = "k";
    rec.klen = 1;
    rec.val = "v";
    rec.vlen = 1;
    ASSERT_OK(tide_log_push(log, &rec));
    rec.partition = 0;
    rec.key = NULL;
    rec.klen = -1;
    ASSERT_OK(tide_log_push(log, &rec));
    ASSERT_OK(tide_log_flush(log));
    snprintf(path2, sizeof(path2), "%s/r-bad", dir);
    s = store_open(path2, NULL);
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_store_restore(s, r, INT64_MAX, 100, &recs, &bytes),
              TIDE_ECORRUPT);
    ASSERT_EQ(recs, 1);                 /* the record before it applied */
    ASSERT(strstr(tide_store_errmsg(s), "no key") != NULL);
    expect(s, "k", "v");
    tide_reader_free(r);
    tide_store_free(s);
    tide_log_free(log);

    for (i = 0; i < 3; i++) {
        free(dumps[i]);
    }
    tmp_free(dir);
}

static void
test_memory_engine_leaves_nothing(void)
{
    tide_store_params_t  p;
    tide_store_t        *s, *s2;
    tide_log_t          *log;
    char                 path[4096], err[256];
    char                *d;
    int64_t              start, end;
    char                *dir = tmp_new();

    log = log_open(dir, 1);
    snprintf(path, sizeof(path), "%s/mem", dir);
    memset(&p, 0, sizeof(p));
    p.engine = TIDE_STORE_MEMORY;
    p.changelog = log;
    s = store_open(path, &p);
    s2 = store_open(NULL, &p);          /* no name needed */
    put(s, "a", "1");
    put(s, "b", "2");
    ASSERT_OK(tide_store_flush(s));
    put(s, "c", "3");
    d = dump(s, NULL, NULL);
    ASSERT(strcmp(d, "1:a=1:1;1:b=1:2;1:c=1:3;") == 0);
    free(d);
    expect(s2, "a", NULL);              /* separate stores */
    ASSERT_EQ(tide_store_snapshot(s, path, err, sizeof(err)), TIDE_EINVAL);
    ASSERT_OK(tide_store_flush(s));
    ASSERT(!exists(path));
    tide_store_free(s);
    tide_store_free(s2);
    ASSERT(!exists(path));
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, 3);                  /* still changelogged */
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_path_remove(void)
{
    char   path[4096], err[256];
    FILE  *f;
    char  *other;
    char  *dir = tmp_new();

    ASSERT_EQ(tide_path_remove(NULL, err, sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide_path_remove("", NULL, 0), TIDE_EINVAL);
    snprintf(path, sizeof(path), "%s/missing", dir);
    ASSERT_OK(tide_path_remove(path, err, sizeof(err)));
    snprintf(path, sizeof(path), "%s/file", dir);
    f = fopen(path, "w");
    ASSERT(f != NULL);
    fclose(f);
    ASSERT_OK(tide_path_remove(path, err, sizeof(err)));
    ASSERT(!exists(path));
    snprintf(path, sizeof(path), "%s/a", dir);
    ASSERT_OK(mkdir(path, 0755));
    snprintf(path, sizeof(path), "%s/a/b", dir);
    ASSERT_OK(mkdir(path, 0755));
    snprintf(path, sizeof(path), "%s/a/b/f", dir);
    f = fopen(path, "w");
    ASSERT(f != NULL);
    fclose(f);
    /* A link into another folder is removed, not followed. */
    other = tmp_new();
    snprintf(path, sizeof(path), "%s/a/b/link", dir);
    ASSERT_OK(symlink(other, path));
    tmp_free(dir);                      /* nested folders */
    ASSERT(exists(other));
    tmp_free(other);
}

/* ---- write-outs of a full cache on their own thread (spill.c) ------------
 *
 * Reads see a write-out until RocksDB has it, deletes included; a failed
 * write keeps everything readable, fails the set or flush that settles it
 * and is retried by the next; flush, iterators, snapshots and restore
 * wait for the write-out in flight; freeing a store with one in flight;
 * many write-outs racing reads, checked against a model. Failures come
 * from the store's test seam (spill.fail), hence the internal header. */

/* Whether RocksDB itself, under the cache, has 'key'. */
static int
in_rocksdb(tide_store_t *s, const char *key)
{
    rocksdb_readoptions_t  *ro = rocksdb_readoptions_create();
    char                   *v, *err = NULL;
    size_t                  vlen;

    v = rocksdb_get(s->db, ro, key, strlen(key), &vlen, &err);
    rocksdb_readoptions_destroy(ro);
    ASSERT(err == NULL);
    rocksdb_free(v);
    return v != NULL;
}

static void
key_of(char *key, int i)
{
    snprintf(key, 32, "key-%05d", i);
}

/* Sets keys [from, to) to "v<i>", or with 'check' expects them so. */
static void
range_op(tide_store_t *s, int from, int to, int check)
{
    char  key[32], val[32];
    int   i;

    for (i = from; i < to; i++) {
        key_of(key, i);
        snprintf(val, sizeof(val), "v%d", i);
        if (check) {
            expect(s, key, val);
        } else {
            put(s, key, val);
        }
    }
}

/* A write-out whose write fails twice (on its thread, then retried by
 * the next settle) stays readable, values and deletes alike, while
 * RocksDB has none of it; the set that settles it fails and changes
 * nothing; the next one retries, succeeds and goes on. */
static void
test_failed_write_out_stays_readable(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 path[4096], key[32], val[32];
    int                  i, rc;
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 100;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    put(s, "gone", "old");
    ASSERT_OK(tide_store_flush(s));
    ASSERT(in_rocksdb(s, "gone"));
    put(s, "gone", NULL);
    range_op(s, 0, 99, 0);                 /* the cache holds 100 now */
    s->spill.fail = 2;
    range_op(s, 99, 100, 0);               /* full: the write-out starts */
    ASSERT(s->spill.gen.slots != NULL);
    range_op(s, 0, 100, 1);
    expect(s, "gone", NULL);
    key_of(key, 0);
    ASSERT(!in_rocksdb(s, key));
    ASSERT(in_rocksdb(s, "gone"));
    /* Fill the fresh cache: the set that needs the next write-out
     * settles this one, whose retry fails too. */
    for (i = 100;; i++) {
        key_of(key, i);
        snprintf(val, sizeof(val), "v%d", i);
        rc = tide_store_set(s, key, strlen(key), val, strlen(val));
        if (rc != TIDE_OK) {
            break;
        }
    }
    ASSERT_EQ(rc, TIDE_EIO);
    ASSERT(strstr(tide_store_errmsg(s), "injected") != NULL);
    ASSERT(s->spill.gen.slots != NULL);
    ASSERT_EQ(s->spill.fail, 0);
    range_op(s, 0, i, 1);
    expect(s, key, NULL);
    expect(s, "gone", NULL);
    /* The retry succeeds: RocksDB has the first write-out. */
    ASSERT_OK(tide_store_set(s, key, strlen(key), val, strlen(val)));
    key_of(key, 0);
    ASSERT(in_rocksdb(s, key));
    ASSERT(!in_rocksdb(s, "gone"));
    ASSERT_OK(tide_store_flush(s));
    ASSERT(s->spill.gen.slots == NULL);
    range_op(s, 0, i + 1, 1);
    tide_store_free(s);
    s = store_open(path, NULL);
    range_op(s, 0, i + 1, 1);
    expect(s, "gone", NULL);
    tide_store_free(s);
    tmp_free(dir);
}

/* tide_store_flush returns the error of a write-out that fails twice,
 * keeps it, and the next flush writes it. A write-out whose thread fails
 * but whose retry succeeds costs nothing: the settle that retries it
 * returns TIDE_OK. */
static void
test_write_out_failures_at_flush_and_retried(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 path[4096];
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 10;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    range_op(s, 0, 10, 0);
    s->spill.fail = 2;
    range_op(s, 10, 15, 0);
    ASSERT_EQ(tide_store_flush(s), TIDE_EIO);
    ASSERT(strstr(tide_store_errmsg(s), "write-out failed") != NULL);
    range_op(s, 0, 15, 1);
    ASSERT_OK(tide_store_flush(s));
    ASSERT(s->spill.gen.slots == NULL);

    s->spill.fail = 1;
    range_op(s, 100, 125, 0);               /* two write-outs */
    ASSERT_EQ(s->spill.fail, 0);
    range_op(s, 100, 125, 1);
    ASSERT_OK(tide_store_flush(s));
    tide_store_free(s);
    s = store_open(path, NULL);
    range_op(s, 0, 15, 1);
    range_op(s, 100, 125, 1);
    ASSERT_EQ(count_keys(s), 40);
    tide_store_free(s);
    tmp_free(dir);
}

/* Iterators, snapshots and restore start only once the write-out in
 * flight is in RocksDB, and the changelog holds one record per key. */
static void
test_iter_snapshot_restore_wait(void)
{
    tide_store_params_t  p;
    tide_store_t        *s, *r;
    tide_log_t          *log;
    tide_reader_t       *rd;
    char                 path[4096], snap[4096], err[512];
    int64_t              recs, bytes;
    int                  i;
    char                *dir = tmp_new();

    log = log_open(dir, 1);
    memset(&p, 0, sizeof(p));
    p.cache_entries = 50;
    p.changelog = log;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    for (i = 0; i < 5; i++) {
        range_op(s, i * 1000, i * 1000 + 120, 0);
        ASSERT_EQ(count_keys(s), (i + 1) * 120);
    }
    snprintf(snap, sizeof(snap), "%s/snap", dir);
    range_op(s, 9000, 9051, 0);
    ASSERT_OK(tide_store_snapshot(s, snap, err, sizeof(err)));
    ASSERT_OK(tide_log_flush(log));
    tide_store_free(s);

    memset(&p, 0, sizeof(p));
    p.from = snap;
    snprintf(path, sizeof(path), "%s/from", dir);
    s = store_open(path, &p);
    ASSERT_EQ(count_keys(s), 651);
    tide_store_free(s);

    memset(&p, 0, sizeof(p));
    p.cache_entries = 50;
    snprintf(path, sizeof(path), "%s/r", dir);
    r = store_open(path, &p);
    range_op(r, 20000, 20060, 0);          /* a write-out, then dirty keys */
    ASSERT_OK(tide_store_flush(r));
    ASSERT_OK(tide_reader_new(&rd, log, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_store_restore(r, rd, INT64_MAX, 1000000, &recs, &bytes),
              TIDE_ENOENT);
    ASSERT_EQ(recs, 651);
    tide_reader_free(rd);
    range_op(r, 0, 120, 1);
    range_op(r, 9000, 9051, 1);
    range_op(r, 20000, 20060, 1);
    ASSERT_EQ(count_keys(r), 711);
    tide_store_free(r);
    tide_log_free(log);
    tmp_free(dir);
}

/* Freeing a store right after a write-out started waits for it. */
static void
test_free_with_write_out_in_flight(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 path[4096];
    int                  i;
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 1000;
    snprintf(path, sizeof(path), "%s/s", dir);
    for (i = 0; i < 20; i++) {
        s = store_open(path, &p);
        range_op(s, 0, 1001, 0);
        ASSERT(s->spill.gen.slots != NULL);
        tide_store_free(s);
    }
    s = store_open(path, NULL);
    range_op(s, 0, 1000, 1);
    tide_store_free(s);
    /* A failed write-out is dropped with the store, like unflushed
     * writes, without leaking. */
    s = store_open(path, &p);
    s->spill.fail = 2;
    range_op(s, 5000, 6001, 0);
    tide_store_free(s);
    tmp_free(dir);
}

/* Many write-outs racing reads and overwrites of the same keys, values
 * growing and shrinking, deletes: every read agrees with a model. */
static void
test_write_outs_race_reads(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    static char          model[2000][64];
    static int           has[2000];
    char                 path[4096], key[32], buf[256];
    size_t               len;
    uint64_t             st = 88172645463325252ULL;
    int                  i, k, rc;
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 97;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    for (i = 0; i < 200000; i++) {
        st ^= st >> 12;
        st ^= st << 25;
        st ^= st >> 27;
        k = (int) ((st * 2685821657736338717ULL) >> 33) % 2000;
        key_of(key, k);
        switch (i % 4) {
        case 0:
        case 1:
            len = sizeof(buf);
            rc = tide_store_get(s, key, strlen(key), buf, &len);
            if (!has[k]) {
                ASSERT_EQ(rc, TIDE_ENOENT);
            } else {
                ASSERT_OK(rc);
                ASSERT_EQ(len, strlen(model[k]));
                ASSERT(memcmp(buf, model[k], len) == 0);
            }
            break;
        case 2:
            snprintf(model[k], sizeof(model[k]), "%d-%.*s", i, i % 40,
                     "0123456789012345678901234567890123456789");
            has[k] = 1;
            put(s, key, model[k]);
            break;
        default:
            if (i % 12 == 3) {
                has[k] = 0;
                put(s, key, NULL);
            }
            if (i % 50000 == 7) {
                ASSERT_OK(tide_store_flush(s));
            }
        }
    }
    ASSERT_OK(tide_store_flush(s));
    tide_store_free(s);
    s = store_open(path, NULL);
    for (k = 0; k < 2000; k++) {
        key_of(key, k);
        expect(s, key, has[k] ? model[k] : NULL);
    }
    tide_store_free(s);
    tmp_free(dir);
}

/* ---- descriptors and disk of a store ----------------------------------- */

/* Returns the descriptors of this process open on 'dir' or a file in it. */
static int
fds_in(const char *dir)
{
    DIR            *d = opendir("/proc/self/fd");
    struct dirent  *e;
    char            link[300], target[PATH_MAX];
    size_t          n = strlen(dir);
    ssize_t         len;
    int             count = 0;

    ASSERT(d != NULL);
    while ((e = readdir(d)) != NULL) {
        snprintf(link, sizeof(link), "/proc/self/fd/%s", e->d_name);
        len = readlink(link, target, sizeof(target) - 1);
        if (len <= 0) {
            continue;
        }
        target[len] = '\0';
        if (strncmp(target, dir, n) == 0
            && (target[n] == '\0' || target[n] == '/'))
        {
            count++;
        }
    }
    ASSERT_OK(closedir(d));
    return count;
}

/* Returns the first file in 'dir' whose name starts with 'prefix' (into
 * 'path'); asserts there is one. */
static void
file_named(const char *dir, const char *prefix, char *path, size_t cap)
{
    DIR            *d = opendir(dir);
    struct dirent  *e;
    int             found = 0;

    ASSERT(d != NULL);
    while (!found && (e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
            ASSERT(snprintf(path, cap, "%s/%s", dir, e->d_name)
                   < (int) cap);
            found = 1;
        }
    }
    ASSERT_OK(closedir(d));
    ASSERT(found);
}

/* A store keeps a bounded number of descriptors: RocksDB's default keeps
 * every SST file open for good, and a job has a store per task. 40 quick
 * snapshots leave more SST files than the bound (each flushes one); the
 * OPTIONS file RocksDB writes shows the setting too. */
static void
test_open_files_are_bounded(void)
{
    tide_store_t  *s;
    char           path[4096], opts[4096], key[32], snap[4096], line[256];
    char          *dir = tmp_new();
    FILE          *f;
    int            i, found = 0;

    snprintf(path, sizeof(path), "%s/store", dir);
    s = store_open(path, NULL);
    for (i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(s, key, "v");
        snprintf(snap, sizeof(snap), "%s/snap", dir);
        ASSERT_OK(tide_store_snapshot(s, snap, NULL, 0));
    }
    printf("# descriptors of one store after 40 snapshots: %d\n",
           fds_in(path));
    ASSERT(fds_in(path) <= 28);

    file_named(path, "OPTIONS-", opts, sizeof(opts));
    f = fopen(opts, "r");
    ASSERT(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        if (strstr(line, "max_open_files=") != NULL) {
            ASSERT(strstr(line, "max_open_files=32\n") != NULL);
            found = 1;
        }
    }
    ASSERT_OK(fclose(f));
    ASSERT(found);
    tide_store_free(s);
    tmp_free(dir);
}

/* Returns the bytes on disk of the store's MANIFEST (blocks, not the
 * size: RocksDB's preallocation keeps the size). */
static long long
manifest_disk(const char *path)
{
    struct stat  st;
    char         manifest[4096];

    file_named(path, "MANIFEST-", manifest, sizeof(manifest));
    ASSERT_OK(stat(manifest, &st));
    return (long long) st.st_blocks * 512;
}

/* RocksDB preallocates 4 MiB for each MANIFEST by default: 256 MiB for a
 * job of 64 stores, which can turn a nearly full disk into ENOSPC for
 * the log. A new store's MANIFEST takes little disk, and stays small
 * over 100 snapshots (about 200 bytes each), with nothing lost. */
static void
test_manifest_stays_small(void)
{
    tide_store_t  *s;
    char           path[4096], snap[4096], key[32];
    char          *dir = tmp_new();
    int            i;

    snprintf(path, sizeof(path), "%s/store", dir);
    snprintf(snap, sizeof(snap), "%s/snap", dir);
    s = store_open(path, NULL);
    put(s, "k", "v");
    ASSERT_OK(tide_store_flush(s));
    printf("# MANIFEST of a new store: %lld bytes on disk\n",
           manifest_disk(path));
    ASSERT(manifest_disk(path) <= 128 * 1024);

    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        put(s, key, key);
        ASSERT_OK(tide_store_snapshot(s, snap, NULL, 0));
    }
    printf("# after 100 snapshots: %lld bytes on disk\n",
           manifest_disk(path));
    ASSERT(manifest_disk(path) <= 128 * 1024);
    tide_store_free(s);

    s = store_open(path, NULL);
    for (i = 0; i < 100; i++) {
        snprintf(key, sizeof(key), "k%d", i);
        expect(s, key, key);
    }
    tide_store_free(s);
    tmp_free(dir);
}

/* A store whose changelog's owner has gone flushes its last records at
 * free; when that fails (here EFBIG, as ENOSPC would), the warning says
 * what is true: those records are newer than any checkpoint (a commit
 * makes the changelog durable first), so a job restarted from its
 * checkpoint makes them again. Not "records lost". */
static void
test_failed_close_flush_says_what_is_true(void)
{
    tide_store_params_t  p;
    struct rlimit        saved, none;
    tide_store_t        *s;
    tide_log_t          *log;
    char                 path[4096], snap[4096], said[4096];
    char                *dir = tmp_new();
    int                  pipefd[2], saved_err;
    ssize_t              n;
    void               (*old)(int);

    log = log_open(dir, 2);
    memset(&p, 0, sizeof(p));
    p.changelog = log;
    p.partition = 1;
    snprintf(path, sizeof(path), "%s/s", dir);
    snprintf(snap, sizeof(snap), "%s/snap", dir);
    s = store_open(path, &p);
    tide_log_free(log);                 /* the owner goes; nothing pending */
    put(s, "a", "1");
    put(s, "b", "2");
    ASSERT_OK(tide_store_snapshot(s, snap, NULL, 0));  /* RocksDB is done */

    /* No file may grow now; stderr goes into a pipe, which may. */
    ASSERT_OK(pipe(pipefd));
    fflush(stderr);
    saved_err = dup(2);
    ASSERT(saved_err >= 0);
    ASSERT(dup2(pipefd[1], 2) == 2);
    ASSERT_OK(close(pipefd[1]));
    old = signal(SIGXFSZ, SIG_IGN);
    ASSERT_OK(getrlimit(RLIMIT_FSIZE, &saved));
    none = saved;
    none.rlim_cur = 0;
    ASSERT_OK(setrlimit(RLIMIT_FSIZE, &none));
    tide_store_free(s);
    ASSERT_OK(setrlimit(RLIMIT_FSIZE, &saved));
    signal(SIGXFSZ, old);
    fflush(stderr);
    ASSERT(dup2(saved_err, 2) == 2);
    ASSERT_OK(close(saved_err));
    n = read(pipefd[0], said, sizeof(said) - 1);
    ASSERT(n > 0);
    said[n] = '\0';
    ASSERT_OK(close(pipefd[0]));
    fprintf(stderr, "# %s", said);

    ASSERT(strstr(said, path) != NULL);
    ASSERT(strstr(said, "2 changelog records") != NULL);
    ASSERT(strstr(said, "File too large") != NULL);
    ASSERT(strstr(said, "newer than the job's last checkpoint") != NULL);
    ASSERT(strstr(said, "records lost") == NULL);
    tmp_free(dir);
}

/* Fills every free descriptor but 'spare' (below the lowest limit that
 * keeps the open ones); returns how many it took, into 'fill'. */
static int
fds_fill(int *fill, int cap, int spare, struct rlimit *saved)
{
    struct rlimit  low;
    int            i, n = 0;

    ASSERT_OK(getrlimit(RLIMIT_NOFILE, saved));
    low = *saved;
    low.rlim_cur = 0;
    for (i = 0; i < cap; i++) {
        if (fcntl(i, F_GETFD) >= 0) {
            low.rlim_cur = (rlim_t) i + 1;
        }
    }
    low.rlim_cur += 8;
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
    while ((i = dup(0)) >= 0) {
        ASSERT(n < cap);
        fill[n++] = i;
    }
    while (spare-- > 0 && n > 0) {
        ASSERT_OK(close(fill[--n]));
    }
    return n;
}

static void
fds_unfill(int *fill, int n, const struct rlimit *saved)
{
    while (n > 0) {
        ASSERT_OK(close(fill[--n]));
    }
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, saved));
}

/* Short of descriptors, opening fails with EIO and the system's words,
 * whichever file it could not open: never EBUSY ("another process"),
 * also when that file is the LOCK file. */
static void
test_new_without_descriptors(void)
{
    static int      fill[1024];
    struct rlimit   saved;
    tide_store_t   *s;
    char            path[4096], err[512];
    char           *dir = tmp_new();
    int             spare, n, rc, lock_seen = 0;

    snprintf(path, sizeof(path), "%s/store", dir);
    for (spare = 0; spare < 64; spare++) {
        s = SENTINEL_S;
        n = fds_fill(fill, 1024, spare, &saved);
        rc = tide_store_new(&s, path, NULL, err, sizeof(err));
        fds_unfill(fill, n, &saved);
        if (rc == TIDE_OK) {
            break;
        }
        if (rc != TIDE_EIO || strstr(err, "Too many open files") == NULL) {
            fprintf(stderr, "spare %d: rc %d: %s\n", spare, rc, err);
        }
        ASSERT(s == NULL);
        ASSERT_EQ(rc, TIDE_EIO);
        ASSERT(strstr(err, "Too many open files") != NULL);
        ASSERT(strstr(err, path) != NULL);
        lock_seen += strstr(err, "/LOCK") != NULL;
    }
    ASSERT_EQ(rc, TIDE_OK);
    ASSERT(lock_seen > 0);
    tide_store_free(s);
    tmp_free(dir);
}

/* tide_store_count: cache hits and misses of gets, changelog bytes of
 * flushes, RocksDB's key estimate and size once flushed; out written on
 * every failure. */
static void
test_count(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    tide_log_t          *log;
    char                 path[4096];
    char                *dir = tmp_new();
    int64_t              n;

    n = 7;
    ASSERT_EQ(tide_store_count(NULL, TIDE_STORE_COUNT_HITS, &n), TIDE_EINVAL);
    ASSERT_EQ(n, 0);
    log = log_open(dir, 1);
    memset(&p, 0, sizeof(p));
    p.changelog = log;
    snprintf(path, sizeof(path), "%s/store", dir);
    s = store_open(path, &p);
    ASSERT_EQ(tide_store_count(s, TIDE_STORE_COUNT_HITS, NULL), TIDE_EINVAL);
    n = 7;
    ASSERT_EQ(tide_store_count(s, 99, &n), TIDE_EINVAL);
    ASSERT_EQ(n, 0);

    expect(s, "a", NULL);                 /* RocksDB: a miss, then cached */
    expect(s, "a", NULL);                 /* the cache */
    put(s, "a", "12345");
    put(s, "bb", "x");
    expect(s, "a", "12345");
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_HITS, &n));
    ASSERT_EQ(n, 2);
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_MISSES, &n));
    ASSERT_EQ(n, 1);
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_LOG_BYTES, &n));
    ASSERT_EQ(n, 0);
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_KEYS, &n));
    ASSERT_EQ(n, 0);                      /* still in the cache */

    ASSERT_OK(tide_store_flush(s));
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_LOG_BYTES, &n));
    ASSERT_EQ(n, 1 + 5 + 2 + 1);
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_KEYS, &n));
    ASSERT_EQ(n, 2);
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_BYTES, &n));
    ASSERT(n > 0);

    /* A delete: its record is the key alone; RocksDB takes one key off
     * its estimate. */
    put(s, "bb", NULL);
    ASSERT_OK(tide_store_flush(s));
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_LOG_BYTES, &n));
    ASSERT_EQ(n, 1 + 5 + 2 + 1 + 2);
    ASSERT_OK(tide_store_count(s, TIDE_STORE_COUNT_KEYS, &n));
    ASSERT_EQ(n, 1);

    tide_store_free(s);
    tide_log_free(log);
    tmp_free(dir);
}

int
main(void)
{
    RUN(test_new_rejects_bad_params);
    RUN(test_new_busy_and_free_null);
    RUN(test_new_without_descriptors);
    RUN(test_open_files_are_bounded);
    RUN(test_manifest_stays_small);
    RUN(test_failed_close_flush_says_what_is_true);
    RUN(test_get_set_binary_and_deletes);
    RUN(test_bad_arguments_change_nothing);
    RUN(test_flush_free_reopen_keeps_data);
    RUN(test_cache_fill_writes_out);
    RUN(test_absent_then_written);
    RUN(test_cache_values_grow_and_fills_keep_order);
    RUN(test_flush_pushes_one_record_per_key);
    RUN(test_iter_sees_cache_and_fixed_view);
    RUN(test_snapshot_and_from);
    RUN(test_restore_rebuilds_content);
    RUN(test_memory_engine_leaves_nothing);
    RUN(test_path_remove);
    RUN(test_failed_write_out_stays_readable);
    RUN(test_write_out_failures_at_flush_and_retried);
    RUN(test_iter_snapshot_restore_wait);
    RUN(test_free_with_write_out_in_flight);
    RUN(test_write_outs_race_reads);
    RUN(test_restore_in_many_runs);
    RUN(test_count);
    return 0;
}
