/*
 * Store throughput, each figure beside a baseline measured in the same run
 * on the same keys (issue 4, "Speed"):
 *
 *   hot keys:  get + set of a counter over 10,000 keys through the store
 *              (its write cache; flushed every FLUSH_EVERY ops) vs a raw
 *              loop of rocksdb_get + rocksdb_put (WAL off) on the same
 *              keys, in a RocksDB opened with the same options a store
 *              uses;
 *   many keys: the same over 10 M keys picked at random; each side stops
 *              after 10 M ops or TIME_BUDGET seconds, whichever is first
 *              (it says so);
 *   restore:   a changelog of RESTORE_RECS records (100-byte values)
 *              written through a changelogged store, then
 *              tide_store_restore into an empty store, vs a raw
 *              sequential read() of the changelog's segment files.
 *
 * Usage: bench_store [DIR [HOT_OPS [MANY_KEYS [RESTORE_RECS]]]]. DIR
 * defaults to $TIDE_TMP or /tmp; a temporary folder is made in it and
 * removed after.
 */
#include "tide.h"

#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <rocksdb/c.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HOT_KEYS        10000
#define FLUSH_EVERY     100000
#define TIME_BUDGET     30.0
#define VAL_LEN         100

static double
now(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static void
die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_store: %s: %s\n", what, detail);
    exit(1);
}

static void
rm_rf(const char *path)
{
    char  err[512];

    if (tide_path_remove(path, err, sizeof(err)) != TIDE_OK) {
        die("remove", err);
    }
}

static tide_store_t *
store_open(const char *dir, tide_log_t *log)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 err[512];

    memset(&p, 0, sizeof(p));
    p.changelog = log;
    if (tide_store_new(&s, dir, &p, err, sizeof(err)) != TIDE_OK) {
        die("tide_store_new", err);
    }
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
    p.compact = 1;
    p.fsync = TIDE_FSYNC_NONE;
    if (tide_log_new(&log, dir, "changelog", &p, err, sizeof(err))
        != TIDE_OK)
    {
        die("tide_log_new", err);
    }
    return log;
}

static int
key_make(char *buf, uint64_t k)
{
    return snprintf(buf, 32, "key-%010" PRIu64, k);
}

/* A cheap generator for key choices (xorshift64*). */
static uint64_t
rnd(uint64_t *st)
{
    *st ^= *st >> 12;
    *st ^= *st << 25;
    *st ^= *st >> 27;
    return *st * 2685821657736338717ULL;
}

/* Counts with get + set; returns ops done (it may stop at the budget). */
static int64_t
run_store(tide_store_t *s, tide_log_t *log, uint64_t nkeys, int64_t ops,
          int random, double *secs)
{
    char      key[32], buf[64];
    size_t    len;
    uint64_t  st = 88172645463325252ULL, k;
    int64_t   i, n;
    double    t0 = now();
    int       klen, rc;

    for (i = 0; i < ops; i++) {
        k = random ? rnd(&st) % nkeys : (uint64_t) i % nkeys;
        klen = key_make(key, k);
        len = sizeof(buf) - 1;
        rc = tide_store_get(s, key, (size_t) klen, buf, &len);
        n = 0;
        if (rc == TIDE_OK) {
            buf[len] = '\0';
            n = strtoll(buf, NULL, 10);
        } else if (rc != TIDE_ENOENT) {
            die("tide_store_get", tide_store_errmsg(s));
        }
        len = (size_t) snprintf(buf, sizeof(buf), "%" PRId64, n + 1);
        if (tide_store_set(s, key, (size_t) klen, buf, len) != TIDE_OK) {
            die("tide_store_set", tide_store_errmsg(s));
        }
        if ((i + 1) % FLUSH_EVERY == 0) {
            if (tide_store_flush(s) != TIDE_OK) {
                die("tide_store_flush", tide_store_errmsg(s));
            }
            if (log != NULL && tide_log_flush(log) != TIDE_OK) {
                die("tide_log_flush", tide_log_errmsg(log));
            }
            if (now() - t0 > TIME_BUDGET) {
                i++;
                break;
            }
        }
    }
    if (tide_store_flush(s) != TIDE_OK) {
        die("tide_store_flush", tide_store_errmsg(s));
    }
    if (log != NULL && tide_log_flush(log) != TIDE_OK) {
        die("tide_log_flush", tide_log_errmsg(log));
    }
    *secs = now() - t0;
    return i;
}

/* The raw loop: rocksdb_get + rocksdb_put per op, WAL off, with the
 * options a store uses (bloom filter, block cache, write buffer) minus
 * the store's cache. */
static int64_t
run_raw(const char *dir, uint64_t nkeys, int64_t ops, int random,
        double *secs)
{
    rocksdb_options_t                   *o;
    rocksdb_block_based_table_options_t *t;
    rocksdb_readoptions_t               *ro;
    rocksdb_writeoptions_t              *wo;
    rocksdb_cache_t                     *cache;
    rocksdb_t                           *db;
    char                                *err = NULL, *v;
    char                                 key[32], buf[64];
    size_t                               vlen, len;
    uint64_t                             st = 88172645463325252ULL, k;
    int64_t                              i, n;
    double                               t0;
    int                                  klen;

    o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    rocksdb_options_increase_parallelism(o, 2);
    rocksdb_options_set_write_buffer_size(o, 64 << 20);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.02);
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);
    t = rocksdb_block_based_options_create();
    cache = rocksdb_cache_create_lru(512 << 20);
    rocksdb_block_based_options_set_block_cache(t, cache);
    rocksdb_block_based_options_set_filter_policy(
        t, rocksdb_filterpolicy_create_bloom_full(10));
    rocksdb_options_set_block_based_table_factory(o, t);
    db = rocksdb_open(o, dir, &err);
    if (db == NULL) {
        die("rocksdb_open", err);
    }
    ro = rocksdb_readoptions_create();
    wo = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(wo, 1);
    t0 = now();
    for (i = 0; i < ops; i++) {
        k = random ? rnd(&st) % nkeys : (uint64_t) i % nkeys;
        klen = key_make(key, k);
        v = rocksdb_get(db, ro, key, (size_t) klen, &vlen, &err);
        if (err != NULL) {
            die("rocksdb_get", err);
        }
        n = 0;
        if (v != NULL) {
            len = vlen < sizeof(buf) - 1 ? vlen : sizeof(buf) - 1;
            memcpy(buf, v, len);
            buf[len] = '\0';
            n = strtoll(buf, NULL, 10);
            rocksdb_free(v);
        }
        len = (size_t) snprintf(buf, sizeof(buf), "%" PRId64, n + 1);
        rocksdb_put(db, wo, key, (size_t) klen, buf, len, &err);
        if (err != NULL) {
            die("rocksdb_put", err);
        }
        if ((i + 1) % FLUSH_EVERY == 0 && now() - t0 > TIME_BUDGET) {
            i++;
            break;
        }
    }
    *secs = now() - t0;
    rocksdb_close(db);
    rocksdb_readoptions_destroy(ro);
    rocksdb_writeoptions_destroy(wo);
    rocksdb_block_based_options_destroy(t);
    rocksdb_options_destroy(o);
    rocksdb_cache_destroy(cache);
    return i;
}

static void
bench_keys(const char *base, const char *label, uint64_t nkeys, int64_t ops,
           int random)
{
    tide_store_t  *s;
    tide_log_t    *log;
    char           path[4096];
    double         ts, tl, tr;
    int64_t        ns, nl, nr;

    snprintf(path, sizeof(path), "%s/%s-store", base, label);
    s = store_open(path, NULL);
    ns = run_store(s, NULL, nkeys, ops, random, &ts);
    tide_store_free(s);
    rm_rf(path);

    snprintf(path, sizeof(path), "%s/%s-log", base, label);
    log = log_open(path);
    snprintf(path, sizeof(path), "%s/%s-store-cl", base, label);
    s = store_open(path, log);
    nl = run_store(s, log, nkeys, ops, random, &tl);
    tide_store_free(s);
    tide_log_free(log);
    rm_rf(path);
    snprintf(path, sizeof(path), "%s/%s-log", base, label);
    rm_rf(path);

    snprintf(path, sizeof(path), "%s/%s-raw", base, label);
    /* The raw loop is much slower: a fifth of the hot ops is plenty. */
    nr = run_raw(path, nkeys, random ? ops : ops / 5, random, &tr);
    rm_rf(path);

    printf("%-10s %8" PRIu64 " keys: store %6.2f M ops/s (%" PRId64 " ops "
           "in %.1f s), with changelog %6.2f M ops/s; raw get+put %6.3f M "
           "ops/s (%" PRId64 " ops in %.1f s); store/raw %.1fx\n",
           label, nkeys, ns / ts / 1e6, ns, ts, nl / tl / 1e6,
           nr / tr / 1e6, nr, tr, (ns / ts) / (nr / tr));
    if (ns < ops || (random && nr < ops)) {
        printf("%-10s stopped at the %.0f s budget: store %" PRId64
               " of %" PRId64 " ops, raw %" PRId64 "\n", label, TIME_BUDGET,
               ns, ops, nr);
    }
    fflush(stdout);
}

/* Reads every segment file of the changelog's partition 0 with read(). */
static double
raw_read(const char *logdir, int64_t *total)
{
    char            path[3800], file[4096];
    DIR            *d;
    struct dirent  *de;
    char           *buf = malloc(1 << 20);
    ssize_t         n;
    double          t0 = now();
    int             fd;

    *total = 0;
    snprintf(path, sizeof(path), "%s/streams/changelog/0", logdir);
    d = opendir(path);
    if (d == NULL || buf == NULL) {
        die("opendir", path);
    }
    while ((de = readdir(d)) != NULL) {
        if (strstr(de->d_name, ".log") == NULL) {
            continue;
        }
        snprintf(file, sizeof(file), "%s/%s", path, de->d_name);
        fd = open(file, O_RDONLY);
        if (fd < 0) {
            die("open", file);
        }
        while ((n = read(fd, buf, 1 << 20)) > 0) {
            *total += n;
        }
        close(fd);
    }
    closedir(d);
    free(buf);
    return now() - t0;
}

static void
bench_restore(const char *base, int64_t nrecs)
{
    tide_store_t   *s;
    tide_log_t     *log;
    tide_reader_t  *r;
    tide_rec_t      recs[1024];
    char            logdir[4096], path[4096], snap[4096], err[512];
    char            key[32], val[VAL_LEN];
    int64_t         i, recs_done, bytes, tot_recs = 0, tot_bytes = 0;
    int64_t         raw_bytes, rd_recs = 0;
    double          t0, t_restore, t_snap, t_raw, t_reader;
    int             rc, klen, got;

    snprintf(logdir, sizeof(logdir), "%s/restore-log", base);
    log = log_open(logdir);
    snprintf(path, sizeof(path), "%s/restore-src", base);
    s = store_open(path, log);
    memset(val, 'v', sizeof(val));
    for (i = 0; i < nrecs; i++) {
        klen = key_make(key, (uint64_t) i);
        memcpy(val, key, (size_t) klen);
        if (tide_store_set(s, key, (size_t) klen, val, sizeof(val))
            != TIDE_OK)
        {
            die("tide_store_set", tide_store_errmsg(s));
        }
        if ((i + 1) % FLUSH_EVERY == 0 && (tide_store_flush(s) != TIDE_OK ||
                                           tide_log_flush(log) != TIDE_OK))
        {
            die("flush", tide_store_errmsg(s));
        }
    }
    if (tide_store_flush(s) != TIDE_OK || tide_log_flush(log) != TIDE_OK) {
        die("flush", tide_store_errmsg(s));
    }
    tide_store_free(s);
    rm_rf(path);

    /* Raw read, once to warm the page cache alike for both, then timed. */
    raw_read(logdir, &raw_bytes);
    t_raw = raw_read(logdir, &raw_bytes);

    /* The log reader alone, for reference. */
    if (tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING) != TIDE_OK) {
        die("tide_reader_new", tide_log_errmsg(log));
    }
    t0 = now();
    while ((got = tide_reader_poll_batch(r, recs, 1024)) > 0) {
        rd_recs += got;
    }
    t_reader = now() - t0;
    tide_reader_free(r);

    snprintf(path, sizeof(path), "%s/restore-dst", base);
    s = store_open(path, NULL);
    if (tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING) != TIDE_OK) {
        die("tide_reader_new", tide_log_errmsg(log));
    }
    t0 = now();
    do {
        rc = tide_store_restore(s, r, INT64_MAX, 500000, &recs_done, &bytes);
        tot_recs += recs_done;
        tot_bytes += bytes;
    } while (rc == TIDE_OK);
    t_restore = now() - t0;
    if (rc != TIDE_ENOENT) {
        die("tide_store_restore", tide_store_errmsg(s));
    }
    snprintf(snap, sizeof(snap), "%s/restore-snap", base);
    if (tide_store_snapshot(s, snap, err, sizeof(err)) != TIDE_OK) {
        die("tide_store_snapshot", err);
    }
    t_snap = now() - t0;
    tide_reader_free(r);
    tide_store_free(s);
    tide_log_free(log);
    rm_rf(path);
    rm_rf(snap);
    rm_rf(logdir);

    printf("restore    %" PRId64 " records, %.1f MB of changelog: %.2f M "
           "rec/s, %.0f MB/s (%.0f MB/s including the snapshot that makes "
           "it durable); log reader alone %.0f MB/s; raw read() %.0f MB/s\n",
           tot_recs, tot_bytes / 1e6, tot_recs / t_restore / 1e6,
           tot_bytes / t_restore / 1e6, tot_bytes / t_snap / 1e6,
           rd_recs > 0 ? tot_bytes / t_reader / 1e6 : 0.0,
           raw_bytes / t_raw / 1e6);
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    const char  *base = argc > 1 ? argv[1] : getenv("TIDE_TMP");
    int64_t      hot_ops = argc > 2 ? atoll(argv[2]) : 5000000;
    uint64_t     many = argc > 3 ? strtoull(argv[3], NULL, 10) : 10000000;
    int64_t      nrestore = argc > 4 ? atoll(argv[4]) : 2000000;
    char         dir[4096];

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    snprintf(dir, sizeof(dir), "%s/tide-bench-store-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp", dir);
    }
    bench_keys(dir, "hot", HOT_KEYS, hot_ops, 0);
    bench_keys(dir, "many", many, (int64_t) many, 1);
    bench_restore(dir, nrestore);
    rm_rf(dir);
    return 0;
}
