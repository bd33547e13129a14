/*
 * "Did you mean ...?" for the command line: the known word nearest to a
 * mistyped one, by Damerau-Levenshtein distance (the optimal string
 * alignment variant: an insertion, a deletion, a substitution or a swap
 * of two neighbours each costs 1). lua/tide/cli.lua has the same rule for
 * the options of the commands written in Lua; keep the two alike.
 */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

/* Words are compared up to this many bytes: a longer one is nobody's
 * typo of a command or option, and the rows stay on the stack. */
#define SUGGEST_MAX  64

/* The distance between a[0, n) and b[0, m), both at most SUGGEST_MAX. */
static int
osa_distance(const char *a, size_t n, const char *b, size_t m)
{
    int     rows[3][SUGGEST_MAX + 1];
    int    *pp, *prev, *cur, *tmp;
    size_t  i, j;
    int     cost, d;

    for (j = 0; j <= m; j++) {
        rows[1][j] = (int) j;
    }
    pp = rows[0];
    prev = rows[1];
    cur = rows[2];
    for (i = 1; i <= n; i++) {
        cur[0] = (int) i;
        for (j = 1; j <= m; j++) {
            cost = a[i - 1] != b[j - 1];
            d = prev[j - 1] + cost;
            if (prev[j] + 1 < d) {
                d = prev[j] + 1;
            }
            if (cur[j - 1] + 1 < d) {
                d = cur[j - 1] + 1;
            }
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] &&
                a[i - 2] == b[j - 1] && pp[j - 2] + 1 < d)
            {
                d = pp[j - 2] + 1;
            }
            cur[j] = d;
        }
        /* Rotate: the row before the previous one becomes scratch. */
        tmp = pp;
        pp = prev;
        prev = cur;
        cur = tmp;
    }
    return prev[m];
}

/* The leading '-'s do not count: "-z" is one letter away from every
 * short option, and that is no reason to suggest one. */
static const char *
undash(const char *s, size_t *len)
{
    const char  *eq;

    while (*s == '-') {
        s++;
    }
    eq = strchr(s, '=');
    *len = eq != NULL ? (size_t) (eq - s) : strlen(s);
    return s;
}

/* Typos allowed in a word of 'len' letters: none up to 2, one up to 5,
 * else two. */
static int
suggest_budget(size_t len)
{
    return len <= 2 ? 0 : len <= 5 ? 1 : 2;
}

const char *
cli_suggest(const char *word, const char *const *known)
{
    const char  *w, *k, *best = NULL;
    size_t       wlen, klen;
    int          d, best_d, i;

    if (word == NULL || known == NULL) {
        return NULL;
    }
    w = undash(word, &wlen);
    if (wlen > SUGGEST_MAX) {
        return NULL;
    }
    best_d = suggest_budget(wlen) + 1;
    for (i = 0; known[i] != NULL; i++) {
        k = undash(known[i], &klen);
        if (klen > SUGGEST_MAX || klen <= 1) {
            continue;                           /* a short option */
        }
        d = osa_distance(w, wlen, k, klen);
        if (d < best_d) {
            best_d = d;
            best = known[i];
        }
    }
    return best;
}
