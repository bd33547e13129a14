/*
 * Write-outs of a full cache on their own thread (core/src/store/spill.c):
 * reads see a write-out until RocksDB has it, deletes included; a failed
 * write keeps everything readable, fails the set or flush that settles it
 * and is retried by the next; flush, iterators, snapshots and restore
 * wait for the write-out in flight; freeing a store with one in flight;
 * and many write-outs racing reads, checked against a model. Failures
 * come from the store's test seam (spill.fail), hence the internal
 * header.
 */
#include "tide.h"
#include "store/store.h"

#include "ctest.h"
#include "tmpdir.h"

#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    return s;
}

static tide_log_t *
log_open(const char *dir)
{
    tide_log_params_t  p;
    tide_log_t        *log;
    char               err[512];

    memset(&p, 0, sizeof(p));
    p.mode = TIDE_LOG_CREATE;
    p.partitions = 1;
    p.fsync = TIDE_FSYNC_NONE;
    ASSERT_OK(tide_log_new(&log, dir, "changelog", &p, err, sizeof(err)));
    return log;
}

static void
put(tide_store_t *s, const char *key, const char *val)
{
    ASSERT_OK(tide_store_set(s, key, strlen(key), val,
                             val != NULL ? strlen(val) : 0));
}

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

static void
key_of(char *key, int i)
{
    snprintf(key, 32, "key-%05d", i);
}

/* Sets keys [from, to) to "v<i>". */
static void
put_range(tide_store_t *s, int from, int to)
{
    char  key[32], val[32];
    int   i;

    for (i = from; i < to; i++) {
        key_of(key, i);
        snprintf(val, sizeof(val), "v%d", i);
        put(s, key, val);
    }
}

static void
expect_range(tide_store_t *s, int from, int to)
{
    char  key[32], val[32];
    int   i;

    for (i = from; i < to; i++) {
        key_of(key, i);
        snprintf(val, sizeof(val), "v%d", i);
        expect(s, key, val);
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
    put_range(s, 0, 99);                 /* the cache holds 100 now */
    s->spill.fail = 2;
    put_range(s, 99, 100);               /* full: the write-out starts */
    ASSERT(s->spill.gen.slots != NULL);
    expect_range(s, 0, 100);
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
    expect_range(s, 0, i);
    expect(s, key, NULL);
    expect(s, "gone", NULL);
    /* The retry succeeds: RocksDB has the first write-out. */
    ASSERT_OK(tide_store_set(s, key, strlen(key), val, strlen(val)));
    key_of(key, 0);
    ASSERT(in_rocksdb(s, key));
    ASSERT(!in_rocksdb(s, "gone"));
    ASSERT_OK(tide_store_flush(s));
    ASSERT(s->spill.gen.slots == NULL);
    expect_range(s, 0, i + 1);
    tide_store_free(s);
    s = store_open(path, NULL);
    expect_range(s, 0, i + 1);
    expect(s, "gone", NULL);
    tide_store_free(s);
    tmp_free(dir);
}

/* tide_store_flush returns the error of a write-out that fails twice,
 * keeps it, and the next flush writes it. */
static void
test_flush_reports_and_retries_write_out(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 path[4096];
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 10;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    put_range(s, 0, 10);
    s->spill.fail = 2;
    put_range(s, 10, 15);
    ASSERT_EQ(tide_store_flush(s), TIDE_EIO);
    ASSERT(strstr(tide_store_errmsg(s), "write-out failed") != NULL);
    expect_range(s, 0, 15);
    ASSERT_OK(tide_store_flush(s));
    ASSERT(s->spill.gen.slots == NULL);
    tide_store_free(s);
    s = store_open(path, NULL);
    expect_range(s, 0, 15);
    ASSERT_EQ(count_keys(s), 15);
    tide_store_free(s);
    tmp_free(dir);
}

/* A write-out whose thread fails but whose retry succeeds costs nothing:
 * the settle that retries it returns TIDE_OK. */
static void
test_thread_failure_retried_quietly(void)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 path[4096];
    char                *dir = tmp_new();

    memset(&p, 0, sizeof(p));
    p.cache_entries = 10;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    s->spill.fail = 1;
    put_range(s, 0, 25);                 /* two write-outs */
    ASSERT_EQ(s->spill.fail, 0);
    expect_range(s, 0, 25);
    ASSERT_OK(tide_store_flush(s));
    tide_store_free(s);
    s = store_open(path, NULL);
    ASSERT_EQ(count_keys(s), 25);
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

    log = log_open(dir);
    memset(&p, 0, sizeof(p));
    p.cache_entries = 50;
    p.changelog = log;
    snprintf(path, sizeof(path), "%s/s", dir);
    s = store_open(path, &p);
    for (i = 0; i < 5; i++) {
        put_range(s, i * 1000, i * 1000 + 120);
        ASSERT_EQ(count_keys(s), (i + 1) * 120);
    }
    snprintf(snap, sizeof(snap), "%s/snap", dir);
    put_range(s, 9000, 9051);
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
    put_range(r, 20000, 20060);          /* a write-out, then dirty keys */
    ASSERT_OK(tide_store_flush(r));
    ASSERT_OK(tide_reader_new(&rd, log, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_store_restore(r, rd, INT64_MAX, 1000000, &recs, &bytes),
              TIDE_ENOENT);
    ASSERT_EQ(recs, 651);
    tide_reader_free(rd);
    expect_range(r, 0, 120);
    expect_range(r, 9000, 9051);
    expect_range(r, 20000, 20060);
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
        put_range(s, 0, 1001);
        ASSERT(s->spill.gen.slots != NULL);
        tide_store_free(s);
    }
    s = store_open(path, NULL);
    expect_range(s, 0, 1000);
    tide_store_free(s);
    /* A failed write-out is dropped with the store, like unflushed
     * writes, without leaking. */
    s = store_open(path, &p);
    s->spill.fail = 2;
    put_range(s, 5000, 6001);
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

int
main(void)
{
    RUN(test_failed_write_out_stays_readable);
    RUN(test_flush_reports_and_retries_write_out);
    RUN(test_thread_failure_retried_quietly);
    RUN(test_iter_snapshot_restore_wait);
    RUN(test_free_with_write_out_in_flight);
    RUN(test_write_outs_race_reads);
    return 0;
}
