/*
 * End-to-end latency of a job's outputs (issue 11, "outputs seen at
 * once"), each figure beside a baseline measured in the same run:
 *
 *   job:      a writer appends records at a steady rate to a 4-partition
 *             stream, publishing (tide_log_publish) every millisecond's
 *             worth; `tide run` of the pass-through job bench/jobs/lat.lua
 *             (default --workers) copies them to its output stream; a
 *             follower reads that stream, woken by tide_notify_wait;
 *   baseline: the same writer, the follower reading the writer's stream
 *             directly, with no job in between.
 *
 * Each record's value carries its send time (CLOCK_REALTIME ns, taken
 * just before the push); the follower takes the time at which it read
 * it, so a figure is (read time - send time), including the publish
 * batching of up to 1 ms. Reported: p50, p99 and max, at 10 K and 100 K
 * msgs/s. The writer runs in this process and the follower in a child
 * (fork), each with its own log handle; the job is a third and more
 * processes (supervisor and workers), all sharing the machine's cores.
 *
 * Before the paced phase the writer sends 4 warm-up records and waits
 * until the follower has seen them, so the job's start-up (workers
 * spawned, tasks assigned) is not counted.
 *
 * Usage: bench_latency TIDE_BIN JOB_FILE DIR [SECONDS]. SECONDS (default
 * 5) is the paced phase of each rate. A temporary folder is made in DIR
 * for every run and removed after. Each side runs BENCH_RUNS times
 * (default 5), the two alternating; each figure is the median of its
 * runs with their spread (min-max), see bench_stats.h.
 */

#include "tide.h"
#include "bench_stats.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define NPARTS     4
#define VAL_LEN    100
#define NKEYS      10000
#define WARM       4
#define IN_STREAM  "bench-lat-in"
#define OUT_STREAM "bench-lat-out"

typedef struct {
    double  p50;
    double  p99;
    double  max;
} lat_t;

static void
die(const char *what, const char *detail)
{
    fprintf(stderr, "bench_latency: %s: %s\n", what, detail);
    exit(1);
}

static int64_t
now_ns(clockid_t clk)
{
    struct timespec  ts;

    clock_gettime(clk, &ts);
    return (int64_t) ts.tv_sec * 1000000000LL + ts.tv_nsec;
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

static int
cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}

/* Opens stream 'name' of 'dir', waiting up to 60 s for it to exist (a
 * job makes its outputs when it starts). */
static tide_log_t *
open_wait(const char *dir, const char *name)
{
    tide_log_t  *log = NULL;
    char         err[256];
    int          i, rc;

    for (i = 0; i < 6000; i++) {
        rc = tide_log_new(&log, dir, name, NULL, err, sizeof(err));
        if (rc == TIDE_OK) {
            return log;
        }
        if (rc != TIDE_ENOENT) {
            die("tide_log_new", err);
        }
        usleep(10000);
    }
    die("waiting for its stream", err);
    return NULL;
}

/* The follower (a child process): reads every partition of 'stream' from
 * the beginning, tells the writer through 'ready' once it has seen the
 * warm-up records, then reads 'n' timed records and writes their p50,
 * p99 and max (ms) to 'result'. Gives up after 60 s without a record. */
static void
follow(const char *dir, const char *stream, long n, int ready, int result)
{
    tide_log_t      *log = open_wait(dir, stream);
    tide_reader_t   *readers[64];
    tide_notify_t   *notify;
    tide_rec_t       recs[512];
    double          *lat = malloc((size_t) n * sizeof(double));
    int64_t          t, last = now_ns(CLOCK_MONOTONIC);
    long             got = 0;
    lat_t            out;
    int32_t          np = tide_log_count(log), p;
    int              warm = 0, i, k, id, idle;
    char             num[24];

    if (lat == NULL || np > 64) {
        die("follower", "out of memory or too many partitions");
    }
    if (tide_notify_new(&notify) != TIDE_OK) {
        die("tide_notify_new", "no inotify instance");
    }
    for (p = 0; p < np; p++) {
        if (tide_notify_add(notify, log, p, &id) != TIDE_OK ||
            tide_reader_new(&readers[p], log, p, TIDE_OFFSET_BEGINNING)
            != TIDE_OK)
        {
            die("follower", tide_log_errmsg(log));
        }
    }
    while (got < n) {
        idle = 1;
        for (p = 0; p < np; p++) {
            k = tide_reader_poll_batch(readers[p], recs, 512);
            if (k < 0) {
                die("tide_reader_poll_batch",
                    tide_reader_errmsg(readers[p]));
            }
            t = now_ns(CLOCK_REALTIME);
            for (i = 0; i < k; i++) {
                idle = 0;
                if (recs[i].vlen > 0 && recs[i].val[0] == 'w') {
                    if (++warm == WARM && write(ready, "r", 1) != 1) {
                        die("follower", "cannot tell the writer");
                    }
                    continue;
                }
                if (recs[i].vlen < 19 || got >= n) {
                    continue;
                }
                memcpy(num, recs[i].val, 19);
                num[19] = '\0';
                lat[got++] = (double) (t - strtoll(num, NULL, 10)) / 1e6;
            }
        }
        if (!idle) {
            last = now_ns(CLOCK_MONOTONIC);
            continue;
        }
        if (now_ns(CLOCK_MONOTONIC) - last > 60000000000LL) {
            fprintf(stderr, "bench_latency: follower: %ld of %ld records "
                    "after 60 s idle\n", got, n);
            exit(1);
        }
        (void) tide_notify_wait(notify, 100);
    }
    qsort(lat, (size_t) n, sizeof(double), cmp_double);
    out.p50 = lat[n / 2];
    out.p99 = lat[(long) ((double) n * 0.99)];
    out.max = lat[n - 1];
    if (write(result, &out, sizeof(out)) != (ssize_t) sizeof(out)) {
        die("follower", "cannot report");
    }
    for (p = 0; p < np; p++) {
        tide_reader_free(readers[p]);
    }
    tide_notify_free(notify);
    tide_log_free(log);
    free(lat);
    exit(0);
}

/* Waits up to 'ms' for 'fd' to be readable, then reads 'len' bytes. */
static void
read_wait(int fd, void *buf, size_t len, int ms, const char *what)
{
    struct pollfd  pfd = { fd, POLLIN, 0 };

    if (poll(&pfd, 1, ms) != 1 || read(fd, buf, len) != (ssize_t) len) {
        die("waiting for the follower", what);
    }
}

static void
push_or_die(tide_log_t *log, tide_rec_t *rec)
{
    if (tide_log_push(log, rec) != TIDE_OK) {
        die("tide_log_push", tide_log_errmsg(log));
    }
}

/* Appends rate * secs records at 'rate' per second to 'log', publishing
 * each millisecond's worth, once 'ready' says the follower is there. */
static void
write_paced(tide_log_t *log, long rate, long n, int ready)
{
    tide_rec_t       rec;
    struct timespec  tick;
    char             key[16], val[VAL_LEN + 1], c;
    int64_t          t0, due;
    long             sent = 0;
    int              p;

    memset(&rec, 0, sizeof(rec));
    memset(val, 'x', VAL_LEN);
    rec.val = val;
    rec.vlen = VAL_LEN;
    rec.key = key;
    for (p = 0; p < WARM; p++) {
        rec.partition = p % NPARTS;
        rec.klen = snprintf(key, sizeof(key), "warm-%d", p);
        val[0] = 'w';
        push_or_die(log, &rec);
    }
    if (tide_log_publish(log) != TIDE_OK) {
        die("tide_log_publish", tide_log_errmsg(log));
    }
    read_wait(ready, &c, 1, 120000, "the warm-up records never came");

    rec.partition = -1;                         /* murmur2 of the key */
    t0 = now_ns(CLOCK_MONOTONIC);
    clock_gettime(CLOCK_MONOTONIC, &tick);
    while (sent < n) {
        due = (now_ns(CLOCK_MONOTONIC) - t0) * rate / 1000000000LL + 1;
        if (due > n) {
            due = n;
        }
        for (; sent < due; sent++) {
            rec.klen = snprintf(key, sizeof(key), "key-%05ld",
                                sent % NKEYS);
            snprintf(val, 20, "%019lld",
                     (long long) now_ns(CLOCK_REALTIME));
            val[19] = ' ';
            push_or_die(log, &rec);
        }
        if (tide_log_publish(log) != TIDE_OK) {
            die("tide_log_publish", tide_log_errmsg(log));
        }
        tick.tv_nsec += 1000000L;
        if (tick.tv_nsec >= 1000000000L) {
            tick.tv_nsec -= 1000000000L;
            tick.tv_sec++;
        }
        clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &tick, NULL);
    }
}

/* Starts `tide run JOB_FILE --data-dir DIR`, its stderr in DIR/run.log. */
static pid_t
start_job(const char *bin, const char *job, const char *dir)
{
    char   logpath[4200];
    pid_t  pid;
    int    fd;

    snprintf(logpath, sizeof(logpath), "%s/run.log", dir);
    pid = fork();
    if (pid < 0) {
        die("fork", strerror(errno));
    }
    if (pid == 0) {
        fd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 2);
            dup2(fd, 1);
        }
        execl(bin, bin, "run", job, "--data-dir", dir, (char *) NULL);
        _exit(127);
    }
    return pid;
}

static void
stop_job(pid_t pid, const char *dir)
{
    int  st, i;

    kill(pid, SIGTERM);
    for (i = 0; i < 3000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid) {
            if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "bench_latency: tide run ended badly; see "
                        "%s/run.log\n", dir);
            }
            return;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
}

/* One run at 'rate' for 'secs'; through the job when 'job' is not NULL. */
static lat_t
run_one(const char *bin, const char *job, const char *base, long rate,
        long secs)
{
    tide_log_params_t   p;
    tide_log_t         *log;
    char                dir[4096], err[256];
    long                n = rate * secs;
    pid_t               jpid = -1, fpid;
    int                 ready[2], result[2], st;
    lat_t               l;

    snprintf(dir, sizeof(dir), "%s/tide-bench-lat-XXXXXX", base);
    if (mkdtemp(dir) == NULL) {
        die("mkdtemp", strerror(errno));
    }
    memset(&p, 0, sizeof(p));
    p.mode = TIDE_LOG_EXCL;
    p.partitions = NPARTS;
    p.fsync = TIDE_FSYNC_NONE;
    p.retention_ms = -1;
    p.flush_bytes = 1LL << 40;                  /* only the publishes */
    if (tide_log_new(&log, dir, IN_STREAM, &p, err, sizeof(err)) != TIDE_OK) {
        die("tide_log_new", err);
    }
    if (job != NULL) {
        jpid = start_job(bin, job, dir);
    }
    if (pipe(ready) != 0 || pipe(result) != 0) {
        die("pipe", strerror(errno));
    }
    fflush(NULL);
    fpid = fork();
    if (fpid < 0) {
        die("fork", strerror(errno));
    }
    if (fpid == 0) {
        follow(dir, job != NULL ? OUT_STREAM : IN_STREAM, n, ready[1],
               result[1]);
    }
    write_paced(log, rate, n, ready[0]);
    read_wait(result[0], &l, sizeof(l), 120000, "no result");
    waitpid(fpid, &st, 0);
    tide_log_free(log);
    if (jpid > 0) {
        stop_job(jpid, dir);
    }
    close(ready[0]);
    close(ready[1]);
    close(result[0]);
    close(result[1]);
    rm_rf(dir);
    return l;
}

int
main(int argc, char **argv)
{
    static const long  rates[2] = { 10000, 100000 };
    double             jv[2][3][BENCH_RUNS_MAX], bv[2][3][BENCH_RUNS_MAX];
    char               b1[128], b2[128];
    const char        *names[3] = { "p50", "p99", "max" };
    long               secs;
    lat_t              j, b;
    int                runs, r, k, f;

    if (argc < 4) {
        fprintf(stderr, "usage: bench_latency TIDE_BIN JOB_FILE DIR "
                "[SECONDS]\n");
        return 2;
    }
    secs = argc > 4 ? atol(argv[4]) : 5;
    if (secs < 1) {
        die("SECONDS", "give a whole number of seconds, 1 or more");
    }
    runs = bench_runs("bench_latency");
    for (r = 0; r < runs; r++) {
        for (k = 0; k < 2; k++) {
            if (r % 2 == 0) {
                b = run_one(argv[1], NULL, argv[3], rates[k], secs);
                j = run_one(argv[1], argv[2], argv[3], rates[k], secs);
            } else {
                j = run_one(argv[1], argv[2], argv[3], rates[k], secs);
                b = run_one(argv[1], NULL, argv[3], rates[k], secs);
            }
            jv[k][0][r] = j.p50;
            jv[k][1][r] = j.p99;
            jv[k][2][r] = j.max;
            bv[k][0][r] = b.p50;
            bv[k][1][r] = b.p99;
            bv[k][2][r] = b.max;
        }
    }
    printf("latency: writer -> pass-through job (tide run, default "
           "workers) -> follower, %d partitions, %d-byte values, %ld s "
           "paced per run, publish every 1 ms; runs: %d, the sides "
           "alternating\n", NPARTS, VAL_LEN, secs, runs);
    printf("  baseline: the same writer read directly by the follower, no "
           "job; figures are read time - send time\n");
    for (k = 0; k < 2; k++) {
        for (f = 0; f < 3; f++) {
            printf("%3ld K msgs/s %-4s job %s   direct %s\n",
                   rates[k] / 1000, names[f],
                   bench_fmt(b1, sizeof(b1), jv[k][f], runs, 2, "ms"),
                   bench_fmt(b2, sizeof(b2), bv[k][f], runs, 2, "ms"));
        }
    }
    printf("  targets (issue 11): job p99 <= 10 ms at 10 K msgs/s, <= 50 ms "
           "at 100 K msgs/s\n");
    return 0;
}
