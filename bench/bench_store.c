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
 * removed after. Each part runs BENCH_RUNS times (default 5), the sides
 * in turn, and each figure is the median of its runs with their spread
 * (min-max); a ratio is taken run by run, then summarised alike
 * (bench_stats.h).
 */
#include "tide.h"
#include "bench_stats.h"

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

/* One round of a keys part: the store alone, the store with its
 * changelog, the raw loop; returns 1 when a side stopped at the budget. */
static int
keys_round(const char *base, const char *label, uint64_t nkeys,
           int64_t ops, int random, double *rs, double *rl, double *rr)
{
    tide_store_t  *s;
    tide_log_t    *log;
    char           path[4096];
    double         ts, tl, tr;
    int64_t        ns, nl, nr, raw_ops;

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
    raw_ops = random ? ops : ops / 5;
    nr = run_raw(path, nkeys, raw_ops, random, &tr);
    rm_rf(path);

    *rs = ns / ts / 1e6;
    *rl = nl / tl / 1e6;
    *rr = nr / tr / 1e6;
    return ns < ops || nl < ops || nr < raw_ops;
}

static void
bench_keys(const char *base, const char *label, uint64_t nkeys, int64_t ops,
           int random, int runs)
{
    /* Zeroed so that the compiler sees them written whatever 'runs'. */
    double  rs[BENCH_RUNS_MAX] = { 0 }, rl[BENCH_RUNS_MAX] = { 0 };
    double  rr[BENCH_RUNS_MAX] = { 0 }, ratio[BENCH_RUNS_MAX] = { 0 };
    char    a[96], b[96], c[96], d[48];
    int     i, stopped = 0;

    for (i = 0; i < runs; i++) {
        stopped |= keys_round(base, label, nkeys, ops, random, &rs[i],
                              &rl[i], &rr[i]);
        ratio[i] = rs[i] / rr[i];
    }
    printf("%-10s %" PRIu64 " keys, %" PRId64 " ops%s: store %s; with "
           "changelog %s; raw get+put %s; store/raw %s\n", label, nkeys,
           ops, random ? " at random" : " in rotation (raw: a fifth)",
           bench_fmt(a, sizeof(a), rs, runs, 2, "M ops/s"),
           bench_fmt(b, sizeof(b), rl, runs, 2, "M ops/s"),
           bench_fmt(c, sizeof(c), rr, runs, 3, "M ops/s"),
           bench_fmt_ratio(d, sizeof(d), ratio, runs, 1));
    if (stopped) {
        printf("%-10s a side stopped at the %.0f s budget in some run: its "
               "rate is over the ops it did\n", label, TIME_BUDGET);
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

/* Writes a changelog of nrecs records, each of a new key, through a
 * changelogged store; returns the open log (caller frees it). */
static tide_log_t *
restore_source(const char *base, const char *logdir, int64_t nrecs)
{
    tide_store_t  *s;
    tide_log_t    *log;
    char           path[4096], key[32], val[VAL_LEN];
    int64_t        i;
    int            klen;

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
    return log;
}

/* One restore into an empty store, then the snapshot that makes it
 * durable; writes the seconds of each, the records and the bytes. */
static void
restore_round(const char *base, tide_log_t *log, double *t_restore,
              double *t_snap, int64_t *tot_recs, int64_t *tot_bytes)
{
    tide_store_t   *s;
    tide_reader_t  *r;
    char            path[4096], snap[4096], err[512];
    int64_t         recs_done, bytes;
    double          t0;
    int             rc;

    *tot_recs = 0;
    *tot_bytes = 0;
    snprintf(path, sizeof(path), "%s/restore-dst", base);
    s = store_open(path, NULL);
    if (tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING) != TIDE_OK) {
        die("tide_reader_new", tide_log_errmsg(log));
    }
    t0 = now();
    do {
        rc = tide_store_restore(s, r, INT64_MAX, 500000, &recs_done, &bytes);
        *tot_recs += recs_done;
        *tot_bytes += bytes;
    } while (rc == TIDE_OK);
    *t_restore = now() - t0;
    if (rc != TIDE_ENOENT) {
        die("tide_store_restore", tide_store_errmsg(s));
    }
    snprintf(snap, sizeof(snap), "%s/restore-snap", base);
    if (tide_store_snapshot(s, snap, err, sizeof(err)) != TIDE_OK) {
        die("tide_store_snapshot", err);
    }
    *t_snap = now() - t0;
    tide_reader_free(r);
    tide_store_free(s);
    rm_rf(path);
    rm_rf(snap);
}

/* Reads the whole changelog through the log reader; returns seconds. */
static double
reader_round(tide_log_t *log)
{
    tide_reader_t  *r;
    tide_rec_t      recs[1024];
    double          t0, t;

    if (tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING) != TIDE_OK) {
        die("tide_reader_new", tide_log_errmsg(log));
    }
    t0 = now();
    while (tide_reader_poll_batch(r, recs, 1024) > 0) {
        continue;
    }
    t = now() - t0;
    tide_reader_free(r);
    return t;
}

static void
bench_restore(const char *base, int64_t nrecs, int runs)
{
    tide_log_t  *log;
    char         logdir[4096], a[96], b[96], c[96], d[96], f[96], e[48];
    int64_t      recs = 0, bytes = 0, raw_bytes;
    double       t_restore, t_snap;
    /* Zeroed so that the compiler sees them written whatever 'runs'. */
    double       mr[BENCH_RUNS_MAX] = { 0 }, ms[BENCH_RUNS_MAX] = { 0 };
    double       mrd[BENCH_RUNS_MAX] = { 0 }, mraw[BENCH_RUNS_MAX] = { 0 };
    double       recs_s[BENCH_RUNS_MAX] = { 0 }, ratio[BENCH_RUNS_MAX] = { 0 };
    int          i;

    snprintf(logdir, sizeof(logdir), "%s/restore-log", base);
    log = restore_source(base, logdir, nrecs);

    /* An untimed raw read warms the page cache alike for every side. */
    raw_read(logdir, &raw_bytes);
    for (i = 0; i < runs; i++) {
        mraw[i] = raw_bytes / raw_read(logdir, &raw_bytes) / 1e6;
        restore_round(base, log, &t_restore, &t_snap, &recs, &bytes);
        mrd[i] = bytes / reader_round(log) / 1e6;
        mr[i] = bytes / t_restore / 1e6;
        ms[i] = bytes / t_snap / 1e6;
        recs_s[i] = recs / t_restore / 1e6;
        ratio[i] = mr[i] / mraw[i];
    }
    tide_log_free(log);
    rm_rf(logdir);

    printf("restore    %" PRId64 " records (one per key), %.1f MB of "
           "changelog: %s, %s (%s including the snapshot that makes it "
           "durable); log reader alone %s; raw read() %s; restore/raw read "
           "%s\n", recs, bytes / 1e6,
           bench_fmt(a, sizeof(a), recs_s, runs, 2, "M rec/s"),
           bench_fmt(b, sizeof(b), mr, runs, 0, "MB/s"),
           bench_fmt(c, sizeof(c), ms, runs, 0, "MB/s"),
           bench_fmt(d, sizeof(d), mrd, runs, 0, "MB/s"),
           bench_fmt(f, sizeof(f), mraw, runs, 0, "MB/s"),
           bench_fmt_ratio(e, sizeof(e), ratio, runs, 2));
    fflush(stdout);
}

int
main(int argc, char **argv)
{
    const char  *base = argc > 1 ? argv[1] : getenv("TIDE_TMP");
    int64_t      hot_ops = argc > 2 ? atoll(argv[2]) : 5000000;
    uint64_t     many = argc > 3 ? strtoull(argv[3], NULL, 10) : 10000000;
    int64_t      nrestore = argc > 4 ? atoll(argv[4]) : 2000000;
    int          runs = bench_runs("bench_store");
    char         dir[4096];

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    snprintf(dir, sizeof(dir), "%s/tide-bench-store-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp", dir);
    }
    printf("store: runs of each part: %d; figures are the median (median of "
           "N, min-max); ratios are taken run by run\n", runs);
    bench_keys(dir, "hot", HOT_KEYS, hot_ops, 0, runs);
    bench_keys(dir, "many", many, (int64_t) many, 1, runs);
    bench_restore(dir, nrestore, runs);
    rm_rf(dir);
    return 0;
}
