/*
 * The median and spread of a bench's runs, for bench_log.c and
 * bench_store.c (bench/stats.lua is the same for the Lua benches).
 *
 * A figure is printed as "41.2 M rec/s (median of 5, 38.9-43.0)": the
 * median of the runs and their lowest and highest value, so that a reader
 * sees how far one run of their own may land from it. A ratio is taken
 * run by run (tide and its baseline of the same round), then summarised
 * the same way. The number of runs is BENCH_RUNS (default 5).
 */
#ifndef TIDE_BENCH_STATS_H
#define TIDE_BENCH_STATS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BENCH_RUNS_DEFAULT  5
#define BENCH_RUNS_MAX      99

typedef struct {
    double  med;
    double  min;
    double  max;
    int     n;
} bench_stat_t;

static inline int
bench_cmp_double(const void *a, const void *b)
{
    double  x = *(const double *) a, y = *(const double *) b;

    return x < y ? -1 : x > y;
}

/* Returns BENCH_RUNS from the environment, or the default; exits with a
 * one-line message when it is not a number from 1 to BENCH_RUNS_MAX. */
static inline int
bench_runs(const char *prog)
{
    const char  *s = getenv("BENCH_RUNS");
    char        *end;
    long         n;

    if (s == NULL || s[0] == '\0') {
        return BENCH_RUNS_DEFAULT;
    }
    n = strtol(s, &end, 10);
    if (*end != '\0' || n < 1 || n > BENCH_RUNS_MAX) {
        fprintf(stderr, "%s: BENCH_RUNS=%s: give a number of runs from 1 "
                "to %d (5 or more for figures to publish)\n", prog, s,
                BENCH_RUNS_MAX);
        exit(2);
    }
    return (int) n;
}

/* Returns the median, lowest and highest of v[0..n-1]; v is not changed.
 * The median of an even count is the mean of the middle two. */
static inline bench_stat_t
bench_stat(const double *v, int n)
{
    double        sorted[BENCH_RUNS_MAX];
    bench_stat_t  s;

    memset(&s, 0, sizeof(s));
    if (n < 1 || n > BENCH_RUNS_MAX) {
        return s;
    }
    memcpy(sorted, v, (size_t) n * sizeof(double));
    qsort(sorted, (size_t) n, sizeof(double), bench_cmp_double);
    s.n = n;
    s.min = sorted[0];
    s.max = sorted[n - 1];
    s.med = n % 2 ? sorted[n / 2]
                  : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    return s;
}

/* Writes "<median> <unit> (median of <n>, <min>-<max>)" into buf, with
 * 'prec' decimals; returns buf. */
static inline const char *
bench_fmt(char *buf, size_t len, const double *v, int n, int prec,
          const char *unit)
{
    bench_stat_t  s = bench_stat(v, n);

    snprintf(buf, len, "%.*f %s (median of %d, %.*f-%.*f)", prec, s.med,
             unit, s.n, prec, s.min, prec, s.max);
    return buf;
}

/* Writes "<median> (<min>-<max>)" for a ratio into buf; returns buf. */
static inline const char *
bench_fmt_ratio(char *buf, size_t len, const double *v, int n, int prec)
{
    bench_stat_t  s = bench_stat(v, n);

    snprintf(buf, len, "%.*f (%.*f-%.*f)", prec, s.med, prec, s.min, prec,
             s.max);
    return buf;
}

#endif
