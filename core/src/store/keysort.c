/*
 * Sorting keys by their bytes, for a cache write-out (cache.c) and for a
 * restore's runs (ingest.c): a radix sort on 8 bytes of each key, taken
 * from the offset where the keys start to differ, then the keys alike in
 * those 8 bytes by their whole bytes. Equal keys keep their order.
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

typedef struct sort_ctx_s {
    tide__key_fn   key;
    const void    *ctx;
} sort_ctx_t;

static int
whole_cmp(const void *pa, const void *pb, void *arg)
{
    const tide__sortkey_t  *a = pa, *b = pb;
    const sort_ctx_t       *sc = arg;
    size_t                  alen, blen, n;
    const char             *ak = sc->key(sc->ctx, a->i, &alen);
    const char             *bk = sc->key(sc->ctx, b->i, &blen);
    int                     c;

    n = alen < blen ? alen : blen;
    c = n ? memcmp(ak, bk, n) : 0;
    if (c != 0) {
        return c;
    }
    if (alen != blen) {
        return alen < blen ? -1 : 1;
    }
    return a->i < b->i ? -1 : a->i > b->i;
}

tide__sortkey_t *
tide__key_sort(tide__sortkey_t *a, tide__sortkey_t *tmp, size_t n,
               tide__key_fn key, const void *ctx)
{
    tide__sortkey_t  *from = a, *to = tmp, *sw;
    sort_ctx_t        sc = { key, ctx };
    const char       *k0, *k;
    size_t            lcp, klen, i, j, sum, t, count[8][256];
    uint64_t          p;
    unsigned          b, d, shift;

    if (n == 0) {
        return a;
    }
    k0 = key(ctx, 0, &lcp);
    for (i = 1; i < n && lcp > 0; i++) {
        k = key(ctx, i, &klen);
        if (klen < lcp) {
            lcp = klen;
        }
        for (j = 0; j < lcp && k[j] == k0[j]; j++) {
        }
        lcp = j;
    }
    memset(count, 0, sizeof(count));
    for (i = 0; i < n; i++) {
        k = key(ctx, i, &klen);
        p = 0;
        for (j = lcp; j < lcp + 8; j++) {
            p = (p << 8) | (j < klen ? (uint8_t) k[j] : 0);
        }
        a[i].pfx = p;
        a[i].i = i;
        for (b = 0; b < 8; b++) {
            count[b][(p >> (8 * b)) & 0xff]++;
        }
    }
    /* Least significant byte first, one stable pass per byte, skipping
     * the bytes all keys share. */
    for (b = 0; b < 8; b++) {
        shift = 8 * b;
        if (count[b][(a[0].pfx >> shift) & 0xff] == n) {
            continue;
        }
        for (sum = 0, d = 0; d < 256; d++) {
            t = count[b][d];
            count[b][d] = sum;
            sum += t;
        }
        for (i = 0; i < n; i++) {
            to[count[b][(from[i].pfx >> shift) & 0xff]++] = from[i];
        }
        sw = from;
        from = to;
        to = sw;
    }
    for (i = 0; i < n; i = j) {
        for (j = i + 1; j < n && from[j].pfx == from[i].pfx; j++) {
        }
        if (j - i > 1) {
            qsort_r(from + i, j - i, sizeof(*from), whole_cmp, &sc);
        }
    }
    return from;
}
