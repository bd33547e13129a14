/*
 * The store against a model: random puts, deletes, gets (some with too
 * small a buffer), flushes, full iterations and reopens over a few dozen
 * awkward keys (empty, NUL bytes, 0xff, prefixes of each other, long
 * shared prefixes) and values from empty to bigger than a cache arena
 * block, with caches of 1 to 100 entries, so fills, kept entries, inline
 * values outgrowing their entry and sorted write-outs all happen often.
 * Every read must agree with a plain array of what was written. Then the
 * changelog is restored into a store whose cache holds stale reads, which
 * must read as the model too.
 */
#include "tide.h"

#include "ctest.h"
#include "tmpdir.h"
#include "changelog.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NKEYS     64
#define OPS       20000
#define BIG_VALUE 300000

typedef struct model_s {
    char    key[NKEYS][40];
    size_t  klen[NKEYS];
    char   *val[NKEYS];            /* NULL: absent */
    size_t  vlen[NKEYS];
} model_t;

static model_t   m;
static uint64_t  rng_state = 88172645463325252ULL;
static char      readbuf[BIG_VALUE];

static uint32_t
rnd(uint32_t n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t) (rng_state % n);
}

static void
set_key(int i, const char *bytes, size_t len)
{
    memcpy(m.key[i], bytes, len);
    m.klen[i] = len;
}

/* Fixed awkward keys first, then keys with shared prefixes of random
 * length; a duplicate gets a 'z' appended until it is unique. */
static void
make_keys(void)
{
    int  i, j;

    set_key(0, "", 0);
    set_key(1, "\0", 1);
    set_key(2, "\0\0", 2);
    set_key(3, "a", 1);
    set_key(4, "a\0", 2);
    set_key(5, "a\0b", 3);
    set_key(6, "\xff\xff", 2);
    for (i = 7; i < NKEYS; i++) {
        m.klen[i] = (size_t) snprintf(m.key[i], 32, "%.*s%u",
                                      (int) rnd(20), "prefixprefixprefix"
                                      "prefixprefix", rnd(1000));
    }
    for (i = 0; i < NKEYS; i++) {
        for (j = 0; j < i; j++) {
            if (m.klen[i] == m.klen[j] &&
                memcmp(m.key[i], m.key[j], m.klen[i]) == 0)
            {
                m.key[i][m.klen[i]++] = 'z';
                j = -1;
            }
        }
    }
}

static void
model_clear(void)
{
    int  i;

    for (i = 0; i < NKEYS; i++) {
        free(m.val[i]);
        m.val[i] = NULL;
        m.vlen[i] = 0;
    }
}

static tide_store_t *
store_open(const char *dir, int64_t cache_entries, tide_log_t *changelog)
{
    tide_store_params_t  p;
    tide_store_t        *s;
    char                 err[512];
    int                  rc;

    memset(&p, 0, sizeof(p));
    p.cache_entries = cache_entries;
    p.changelog = changelog;
    rc = tide_store_new(&s, dir, &p, err, sizeof(err));
    if (rc != TIDE_OK) {
        fprintf(stderr, "tide_store_new: %s\n", err);
    }
    ASSERT_OK(rc);
    return s;
}

/* Asserts that key i reads as the model says; one read in five offers a
 * buffer too small first, which must say how big the value is. */
static void
check_get(tide_store_t *s, int i)
{
    size_t  len = sizeof(readbuf);
    int     rc;

    if (rnd(5) == 0) {
        len = rnd(4);
    }
    rc = tide_store_get(s, m.key[i], m.klen[i], readbuf, &len);
    if (m.val[i] == NULL) {
        ASSERT_EQ(rc, TIDE_ENOENT);
        return;
    }
    if (rc == TIDE_ENOBUFS) {
        ASSERT_EQ(len, m.vlen[i]);
        len = sizeof(readbuf);
        rc = tide_store_get(s, m.key[i], m.klen[i], readbuf, &len);
    }
    ASSERT_OK(rc);
    ASSERT_EQ(len, m.vlen[i]);
    ASSERT(memcmp(readbuf, m.val[i], len) == 0);
}

static int
key_order(const void *a, const void *b)
{
    int     i = *(const int *) a, j = *(const int *) b;
    size_t  n = m.klen[i] < m.klen[j] ? m.klen[i] : m.klen[j];
    int     c = memcmp(m.key[i], m.key[j], n);

    if (c != 0) {
        return c;
    }
    return m.klen[i] < m.klen[j] ? -1 : m.klen[i] > m.klen[j];
}

/* Asserts that a full iteration yields exactly the model, in key order. */
static void
check_iter(tide_store_t *s)
{
    int           order[NKEYS], n = 0, i;
    tide_iter_t  *it;
    const char   *k, *v;
    size_t        kl, vl;

    for (i = 0; i < NKEYS; i++) {
        if (m.val[i] != NULL) {
            order[n++] = i;
        }
    }
    qsort(order, (size_t) n, sizeof(order[0]), key_order);
    ASSERT_OK(tide_iter_new(&it, s, NULL, 0, NULL, 0));
    for (i = 0; i < n; i++) {
        ASSERT_OK(tide_iter_poll(it, &k, &kl, &v, &vl));
        ASSERT_EQ(kl, m.klen[order[i]]);
        ASSERT(memcmp(k, m.key[order[i]], kl) == 0);
        ASSERT_EQ(vl, m.vlen[order[i]]);
        ASSERT(memcmp(v, m.val[order[i]], vl) == 0);
    }
    ASSERT_EQ(tide_iter_poll(it, &k, &kl, &v, &vl), TIDE_ENOENT);
    tide_iter_free(it);
}

/* Mostly small values (inline in a cache entry), some of a few KiB and a
 * few bigger than an arena block. */
static size_t
value_size(void)
{
    uint32_t  r = rnd(100);

    if (rnd(10) == 0) {
        return 0;
    }
    if (r < 30) {
        return rnd(9);
    }
    if (r < 80) {
        return rnd(200);
    }
    if (r < 97) {
        return rnd(5000);
    }
    return 60000 + rnd(100000);
}

static void
random_ops(tide_store_t **sp, const char *dir, int64_t cache_entries,
           tide_log_t *changelog)
{
    int       op, i, n;
    size_t    j, vl;

    for (n = 0; n < OPS; n++) {
        op = (int) rnd(100);
        i = (int) rnd(NKEYS);
        if (op < 40) {
            vl = value_size();
            free(m.val[i]);
            m.val[i] = malloc(vl + 1);
            ASSERT(m.val[i] != NULL);
            for (j = 0; j < vl; j++) {
                m.val[i][j] = (char) rnd(256);
            }
            m.vlen[i] = vl;
            ASSERT_OK(tide_store_set(*sp, m.key[i], m.klen[i], m.val[i], vl));
        } else if (op < 50) {
            free(m.val[i]);
            m.val[i] = NULL;
            m.vlen[i] = 0;
            ASSERT_OK(tide_store_set(*sp, m.key[i], m.klen[i], NULL, 0));
        } else if (op < 90) {
            check_get(*sp, i);
        } else if (op < 94) {
            ASSERT_OK(tide_store_flush(*sp));
        } else if (op < 97) {
            check_iter(*sp);
        } else if (op < 98) {
            ASSERT_OK(tide_store_flush(*sp));
            tide_store_free(*sp);
            *sp = store_open(dir, cache_entries, changelog);
        }
    }
}

/* A store whose cache holds stale values read lately gets the changelog
 * restored into it: every key must then read as the model. Keys the
 * changelog never saw are set in the model to what the store holds. */
static void
check_restore(const char *dir, int64_t cache_entries, tide_log_t *changelog)
{
    tide_store_t   *s = store_open(dir, cache_entries, NULL);
    tide_reader_t  *r;
    int64_t         recs, bytes;
    size_t          len;
    int             i;

    for (i = 0; i < NKEYS; i++) {
        ASSERT_OK(tide_store_set(s, m.key[i], m.klen[i], "stale", 5));
    }
    ASSERT_OK(tide_store_flush(s));
    for (i = 0; i < NKEYS; i++) {
        len = sizeof(readbuf);
        ASSERT_OK(tide_store_get(s, m.key[i], m.klen[i], readbuf, &len));
    }
    ASSERT_OK(tide_reader_new(&r, changelog, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_store_restore(s, r, INT64_MAX, INT64_MAX, &recs, &bytes),
              TIDE_ENOENT);
    ASSERT(recs > 0);
    tide_reader_free(r);
    for (i = 0; i < NKEYS; i++) {
        check_get(s, i);
    }
    check_iter(s);
    tide_store_free(s);
}

static void
test_store_agrees_with_a_model(void)
{
    static const int64_t  caches[] = { 1, 2, 3, 5, 8, 16, 40, 100 };
    char                 *tmp = tmp_new();
    char                  dir[4200], dir2[4200], logdir[4200];
    tide_store_t         *s;
    tide_log_t           *changelog;
    size_t                round;
    int                   i;

    make_keys();
    for (round = 0; round < sizeof(caches) / sizeof(caches[0]); round++) {
        snprintf(dir, sizeof(dir), "%s/%zu-store", tmp, round);
        snprintf(dir2, sizeof(dir2), "%s/%zu-restored", tmp, round);
        snprintf(logdir, sizeof(logdir), "%s/%zu-log", tmp, round);
        changelog = log_open(logdir, 1);
        model_clear();
        s = store_open(dir, caches[round], changelog);
        random_ops(&s, dir, caches[round], changelog);
        for (i = 0; i < NKEYS; i++) {
            check_get(s, i);
        }
        check_iter(s);
        ASSERT_OK(tide_store_flush(s));
        ASSERT_OK(tide_log_flush(changelog));
        tide_store_free(s);
        /* Every key was written or deleted at least once in OPS random
         * operations, so the changelog speaks for all of them. */
        check_restore(dir2, caches[round], changelog);
        tide_log_free(changelog);
    }
    model_clear();
    tmp_free(tmp);
}

int
main(void)
{
    RUN(test_store_agrees_with_a_model);
    return 0;
}
