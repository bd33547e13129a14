/*
 * Embedded log throughput, each figure beside a baseline measured in the
 * same run on the same bytes (DESIGN.md section 9):
 *
 *   append: tide_log_push + tide_log_flush (one partition, fdatasync per
 *           flush) vs write() + fdatasync() of the same bytes in batches
 *           of the same size;
 *   read:   tide_reader_poll_batch over the files just written vs a raw
 *           sequential read() of the same files.
 *
 * Usage: bench_log [DIR [RECORDS [FLUSH_EVERY]]]. DIR defaults to
 * $TIDE_TMP or /tmp; a temporary folder is made in it and removed after.
 * Each side runs BENCH_RUNS times (default 5), the two alternating, and
 * each figure is the median of its runs with their spread (min-max); a
 * ratio is taken run by run, then summarised alike (bench_stats.h).
 */
#include "tide.h"
#include "bench_stats.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define VAL_LEN   100
#define NKEYS     10000
#define KEY_LEN   10

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
    fprintf(stderr, "bench_log: %s: %s\n", what, detail);
    exit(1);
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void
rm_rf(const char *path)
{
    struct stat  st;

    if (stat(path, &st) == 0) {
        nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* Appends n records through tide; returns the seconds taken. */
static double
append_tide(const char *dir, const char *name, char keys[][KEY_LEN],
            const char *val, long n, long every)
{
    tide_log_params_t   p;
    tide_log_t         *log;
    tide_rec_t          rec;
    char                err[256];
    double              t0, t;
    long                i;

    memset(&p, 0, sizeof(p));
    p.mode = TIDE_LOG_EXCL;
    p.fsync = TIDE_FSYNC_BATCH;
    p.retention_ms = -1;
    p.flush_bytes = 1LL << 40;       /* only the explicit flushes */
    if (tide_log_new(&log, dir, name, &p, err, sizeof(err)) != TIDE_OK) {
        die("tide_log_new", err);
    }
    memset(&rec, 0, sizeof(rec));
    rec.klen = KEY_LEN;
    rec.val = val;
    rec.vlen = VAL_LEN;
    t0 = now();
    for (i = 0; i < n; i++) {
        rec.partition = 0;
        rec.key = keys[i % NKEYS];
        rec.ts = 1700000000000LL + i;
        if (tide_log_push(log, &rec) != TIDE_OK) {
            die("tide_log_push", tide_log_errmsg(log));
        }
        if ((i + 1) % every == 0 && tide_log_flush(log) != TIDE_OK) {
            die("tide_log_flush", tide_log_errmsg(log));
        }
    }
    if (tide_log_flush(log) != TIDE_OK) {
        die("tide_log_flush", tide_log_errmsg(log));
    }
    t = now() - t0;
    tide_log_free(log);
    return t;
}

/* Writes 'bytes' in batches of 'batch' bytes with an fdatasync each. */
static double
append_raw(const char *path, const char *buf, long long bytes, size_t batch)
{
    double     t0, t;
    long long  done = 0;
    size_t     len;
    int        fd;

    fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) {
        die("open", path);
    }
    t0 = now();
    while (done < bytes) {
        len = bytes - done < (long long) batch ? (size_t) (bytes - done)
                                               : batch;
        if (write(fd, buf, len) != (ssize_t) len || fdatasync(fd) != 0) {
            die("write", path);
        }
        done += (long long) len;
    }
    t = now() - t0;
    close(fd);
    return t;
}

/* Reads the whole partition through tide; returns the seconds taken. */
static double
read_tide(const char *dir, const char *name, long n)
{
    tide_log_t     *log;
    tide_reader_t  *r;
    tide_rec_t      recs[1024];
    char            err[256];
    double          t0, t;
    long            got = 0;
    long long       sum = 0;
    int             k, i;

    if (tide_log_new(&log, dir, name, NULL, err, sizeof(err)) != TIDE_OK) {
        die("tide_log_new", err);
    }
    t0 = now();
    if (tide_reader_new(&r, log, 0, 0) != TIDE_OK) {
        die("tide_reader_new", tide_log_errmsg(log));
    }
    while ((k = tide_reader_poll_batch(r, recs, 1024)) > 0) {
        for (i = 0; i < k; i++) {
            sum += recs[i].vlen + recs[i].klen;
        }
        got += k;
    }
    if (k < 0) {
        die("tide_reader_poll_batch", tide_reader_errmsg(r));
    }
    t = now() - t0;
    tide_reader_free(r);
    tide_log_free(log);
    if (got != n || sum != (long long) n * (VAL_LEN + KEY_LEN)) {
        die("read", "wrong record count or sizes");
    }
    return t;
}

static int
is_seg(const char *name)
{
    size_t  len = strlen(name);

    return len > 4 && strcmp(name + len - 4, ".log") == 0;
}

/* Reads every segment file of the partition with read(); returns the
 * seconds taken and the bytes read. */
static double
read_raw(const char *partdir, long long *bytes)
{
    static char     buf[1 << 20];
    char            path[4200];
    struct dirent **names;
    double          t0, t;
    ssize_t         k;
    int             n, i, fd;

    *bytes = 0;
    n = scandir(partdir, &names, NULL, alphasort);
    if (n < 0) {
        die("scandir", partdir);
    }
    t0 = now();
    for (i = 0; i < n; i++) {
        if (!is_seg(names[i]->d_name)) {
            continue;
        }
        snprintf(path, sizeof(path), "%s/%s", partdir, names[i]->d_name);
        fd = open(path, O_RDONLY);
        if (fd < 0) {
            die("open", path);
        }
        while ((k = read(fd, buf, sizeof(buf))) > 0) {
            *bytes += k;
        }
        close(fd);
    }
    t = now() - t0;
    for (i = 0; i < n; i++) {
        free(names[i]);
    }
    free(names);
    return t;
}

static long long
dir_bytes(const char *partdir)
{
    long long  total;

    read_raw(partdir, &total);
    return total;
}

/* Prints one row: tide's and the baseline's median rate with their
 * spreads, and the ratio taken run by run. */
static void
print_row(const char *what, const char *base_name, const double *t_tide,
          const double *t_base, int runs, long n)
{
    double  rt[BENCH_RUNS_MAX], rb[BENCH_RUNS_MAX], ratio[BENCH_RUNS_MAX];
    char    a[96], b[96], c[48];
    int     i;

    for (i = 0; i < runs; i++) {
        rt[i] = n / t_tide[i] / 1e6;
        rb[i] = n / t_base[i] / 1e6;
        ratio[i] = t_base[i] / t_tide[i];
    }
    printf("%-7s tide %s   %s %s   ratio %s\n", what,
           bench_fmt(a, sizeof(a), rt, runs, 2, "M rec/s"), base_name,
           bench_fmt(b, sizeof(b), rb, runs, 2, "M rec/s"),
           bench_fmt_ratio(c, sizeof(c), ratio, runs, 2));
}

int
main(int argc, char **argv)
{
    static char   keys[NKEYS][KEY_LEN];
    const char   *base = argc > 1 ? argv[1] : getenv("TIDE_TMP");
    long          n = argc > 2 ? atol(argv[2]) : 2000000;
    long          every = argc > 3 ? atol(argv[3]) : 10000;
    int           runs = bench_runs("bench_log");
    char          dir[4096], path[4200], partdir[4200], rawpath[4200];
    char          val[VAL_LEN], *batch;
    double        ta[BENCH_RUNS_MAX], tr[BENCH_RUNS_MAX];
    double        ra[BENCH_RUNS_MAX], rr[BENCH_RUNS_MAX];
    long long     bytes = 0, rbytes = 0;
    size_t        batch_len;
    int           i;

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    if (n < 1 || every < 1) {
        die("usage", "bench_log [DIR [RECORDS [FLUSH_EVERY]]]");
    }
    mkdir(base, 0755);
    snprintf(dir, sizeof(dir), "%s/tide-bench-log-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp", dir);
    }
    for (i = 0; i < NKEYS; i++) {
        snprintf(keys[i], KEY_LEN, "key-%05d", i);   /* 9 chars + NUL */
    }
    memset(val, 'x', sizeof(val));

    /* The raw side writes as many bytes as tide's files hold, in batches
     * of as many bytes as tide's flushes, so a first tide run sizes it.
     * Then the sides alternate, each going first every other round, and
     * the previous round's files are removed so the disk holds one set. */
    snprintf(partdir, sizeof(partdir), "%s/streams/size/0", dir);
    append_tide(dir, "size", keys, val, n, every);
    bytes = dir_bytes(partdir);
    batch_len = (size_t) (bytes / n * every);
    batch = malloc(batch_len);
    if (batch == NULL) {
        die("malloc", "batch");
    }
    memset(batch, 'x', batch_len);
    snprintf(rawpath, sizeof(rawpath), "%s/raw", dir);
    for (i = 0; i < runs; i++) {
        snprintf(path, sizeof(path), "%s/streams", dir);
        rm_rf(path);
        unlink(rawpath);
        sync();
        if (i % 2 == 1) {
            ra[i] = append_raw(rawpath, batch, bytes, batch_len);
        }
        ta[i] = append_tide(dir, "bench", keys, val, n, every);
        if (i % 2 == 0) {
            ra[i] = append_raw(rawpath, batch, bytes, batch_len);
        }
    }
    free(batch);
    unlink(rawpath);

    /* Reads come from the page cache on both sides: the files were just
     * written, and an untimed first read warms whatever is not. */
    snprintf(partdir, sizeof(partdir), "%s/streams/bench/0", dir);
    read_raw(partdir, &rbytes);
    for (i = 0; i < runs; i++) {
        if (i % 2 == 1) {
            rr[i] = read_raw(partdir, &rbytes);
        }
        tr[i] = read_tide(dir, "bench", n);
        if (i % 2 == 0) {
            rr[i] = read_raw(partdir, &rbytes);
        }
    }
    if (rbytes != bytes) {
        die("read", "raw read a different number of bytes");
    }
    rm_rf(dir);

    printf("log: %ld records, %d-byte keys, %d-byte values, %.1f MB on "
           "disk (%lld bytes a record), flush every %ld; runs: %d, the sides "
           "alternating; ratio = tide/baseline, run by run\n", n, KEY_LEN,
           VAL_LEN, bytes / 1e6, bytes / n, every, runs);
    print_row("append", "write+fdatasync", ta, ra, runs, n);
    print_row("read", "read()", tr, rr, runs, n);
    return 0;
}
