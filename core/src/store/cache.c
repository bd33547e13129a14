/*
 * The store's write cache: a hash map from key bytes to a value or a
 * tombstone, with two dirty flags (not yet in RocksDB, not yet in the
 * changelog) and a list of the dirty entries, so that a flush touches
 * only what changed. Writes to one key coalesce in its entry; reads see
 * it. The store flushes it when it is full and then drops the clean
 * entries (tide__cache_drop_clean).
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS 1024

uint32_t
tide__cache_hash(const char *key, size_t klen)
{
    return tide_murmur2(key, klen);
}

int
tide__cache_init(tide__cache_t *c, size_t max)
{
    memset(c, 0, sizeof(*c));
    c->slots = calloc(MIN_SLOTS, sizeof(*c->slots));
    if (c->slots == NULL) {
        return TIDE_ENOMEM;
    }
    c->mask = MIN_SLOTS - 1;
    c->max = max;
    return TIDE_OK;
}

static void
ent_free(tide__ent_t *e)
{
    free(e->val);
    free(e);
}

void
tide__cache_free(tide__cache_t *c)
{
    size_t  i;

    if (c->slots != NULL) {
        for (i = 0; i <= c->mask; i++) {
            if (c->slots[i].ent != NULL) {
                ent_free(c->slots[i].ent);
            }
        }
    }
    free(c->slots);
    free(c->dirty);
    memset(c, 0, sizeof(*c));
}

tide__ent_t *
tide__cache_find(const tide__cache_t *c, const char *key, size_t klen,
                 uint32_t hash)
{
    size_t        i = hash & c->mask;
    tide__slot_t *sl;

    for (;;) {
        sl = &c->slots[i];
        if (sl->ent == NULL) {
            return NULL;
        }
        if (sl->hash == hash && sl->ent->klen == klen &&
            memcmp(sl->ent->key, key, klen) == 0)
        {
            return sl->ent;
        }
        i = (i + 1) & c->mask;
    }
}

static void
slot_insert(tide__slot_t *slots, size_t mask, tide__ent_t *e)
{
    size_t  i = e->hash & mask;

    while (slots[i].ent != NULL) {
        i = (i + 1) & mask;
    }
    slots[i].hash = e->hash;
    slots[i].ent = e;
}

/* Doubles the slot array. The table stays at most half full, which keeps
 * linear probes short. */
static int
grow(tide__cache_t *c)
{
    size_t         n = (c->mask + 1) * 2, i;
    tide__slot_t  *slots;

    slots = calloc(n, sizeof(*slots));
    if (slots == NULL) {
        return TIDE_ENOMEM;
    }
    for (i = 0; i <= c->mask; i++) {
        if (c->slots[i].ent != NULL) {
            slot_insert(slots, n - 1, c->slots[i].ent);
        }
    }
    free(c->slots);
    c->slots = slots;
    c->mask = n - 1;
    return TIDE_OK;
}

/* Makes room for one more dirty entry on the list. */
static int
dirty_reserve(tide__cache_t *c)
{
    tide__ent_t  **d;
    size_t         cap;

    if (c->ndirty < c->dcap) {
        return TIDE_OK;
    }
    cap = c->dcap ? c->dcap * 2 : 256;
    d = realloc(c->dirty, cap * sizeof(*d));
    if (d == NULL) {
        return TIDE_ENOMEM;
    }
    c->dirty = d;
    c->dcap = cap;
    return TIDE_OK;
}

/* Sets the value of 'key' (val NULL: a tombstone) and its flags, adding
 * the entry when missing. When the key is new and the cache holds its
 * maximum, returns TIDE_ENOBUFS and changes nothing: the store flushes and
 * drops clean entries, then tries again. Returns TIDE_OK with *out set (it
 * may be NULL), TIDE_ENOMEM with nothing changed. */
int
tide__cache_put(tide__cache_t *c, const char *key, size_t klen,
                uint32_t hash, const char *val, size_t vlen, uint32_t flags,
                tide__ent_t **out)
{
    tide__ent_t  *e;
    char         *nv;
    size_t        cap;
    int           listing = (flags & (TIDE__ENT_DB | TIDE__ENT_LOG)) != 0;

    if (out != NULL) {
        *out = NULL;
    }
    if (val == NULL) {
        vlen = 0;
        flags |= TIDE__ENT_TOMB;
    }
    e = tide__cache_find(c, key, klen, hash);
    if (e == NULL) {
        if (c->count >= c->max) {
            return TIDE_ENOBUFS;
        }
        if ((c->count + 1) * 2 > c->mask + 1 && grow(c) != TIDE_OK) {
            return TIDE_ENOMEM;
        }
        if (listing && dirty_reserve(c) != TIDE_OK) {
            return TIDE_ENOMEM;
        }
        e = malloc(sizeof(*e) + (klen ? klen : 1));
        if (e == NULL) {
            return TIDE_ENOMEM;
        }
        e->val = NULL;
        e->vcap = 0;
        if (vlen > 0) {
            e->val = malloc(vlen);
            if (e->val == NULL) {
                free(e);
                return TIDE_ENOMEM;
            }
            e->vcap = (uint32_t) vlen;
            memcpy(e->val, val, vlen);
        }
        memcpy(e->key, key, klen);
        e->klen = (uint32_t) klen;
        e->vlen = (uint32_t) vlen;
        e->hash = hash;
        e->flags = flags;
        slot_insert(c->slots, c->mask, e);
        c->count++;
    } else {
        if (listing && !(e->flags & TIDE__ENT_LISTED) &&
            dirty_reserve(c) != TIDE_OK)
        {
            return TIDE_ENOMEM;
        }
        if (vlen > e->vcap) {
            /* Grow by half again, so a value that keeps growing (an
             * appended list) does not realloc on every write. */
            cap = vlen + vlen / 2;
            if (cap > UINT32_MAX) {
                cap = vlen;
            }
            nv = realloc(e->val, cap);
            if (nv == NULL) {
                return TIDE_ENOMEM;
            }
            e->val = nv;
            e->vcap = (uint32_t) cap;
        }
        if (vlen > 0) {
            memcpy(e->val, val, vlen);
        }
        e->vlen = (uint32_t) vlen;
        /* Dirty flags only accumulate until a flush clears them. */
        e->flags = (e->flags & (TIDE__ENT_DB | TIDE__ENT_LOG |
                                TIDE__ENT_LISTED)) | flags;
    }
    if (listing && !(e->flags & TIDE__ENT_LISTED)) {
        e->flags |= TIDE__ENT_LISTED;
        c->dirty[c->ndirty++] = e;
    }
    if (out != NULL) {
        *out = e;
    }
    return TIDE_OK;
}

/* A dirty entry and 8 bytes of its key, big-endian, from the offset
 * where the keys being sorted start to differ (zero-padded past the
 * key's end). Unequal prefixes order as the whole keys do; equal ones
 * fall back to comparing the keys. */
typedef struct sortkey_s {
    uint64_t      pfx;
    tide__ent_t  *e;
} sortkey_t;

static int
key_cmp(const tide__ent_t *a, const tide__ent_t *b)
{
    size_t  n = a->klen < b->klen ? a->klen : b->klen;
    int     r = n ? memcmp(a->key, b->key, n) : 0;

    if (r != 0) {
        return r;
    }
    return a->klen < b->klen ? -1 : a->klen > b->klen;
}

static int
sortkey_cmp(const void *pa, const void *pb)
{
    const sortkey_t  *a = pa, *b = pb;

    if (a->pfx != b->pfx) {
        return a->pfx < b->pfx ? -1 : 1;
    }
    return key_cmp(a->e, b->e);
}

/* Sorts the dirty list in key order. RocksDB inserts a sorted WriteBatch
 * into its skiplist memtable next to the previous key (it keeps the
 * last insert's position), where random keys cost a search from the top
 * each: with many keys this was most of a flush. The list's order means
 * nothing else. Without memory for the scratch array it stays as it is:
 * sorting only saves time. */
void
tide__cache_sort_dirty(tide__cache_t *c)
{
    sortkey_t    *sk;
    tide__ent_t  *first, *e;
    uint64_t      pfx;
    size_t        i, j, lcp, n = c->ndirty;

    if (n < 2) {
        return;
    }
    sk = malloc(n * sizeof(*sk));
    if (sk == NULL) {
        return;
    }
    first = c->dirty[0];
    lcp = first->klen;
    for (i = 1; i < n && lcp > 0; i++) {
        e = c->dirty[i];
        if (e->klen < lcp) {
            lcp = e->klen;
        }
        for (j = 0; j < lcp && e->key[j] == first->key[j]; j++) {
        }
        lcp = j;
    }
    for (i = 0; i < n; i++) {
        e = c->dirty[i];
        pfx = 0;
        for (j = lcp; j < lcp + 8; j++) {
            pfx = (pfx << 8) | (j < e->klen ? (uint8_t) e->key[j] : 0);
        }
        sk[i].pfx = pfx;
        sk[i].e = e;
    }
    qsort(sk, n, sizeof(*sk), sortkey_cmp);
    for (i = 0; i < n; i++) {
        c->dirty[i] = sk[i].e;
    }
    free(sk);
}

/* Frees every entry that is clean (neither flag set) and keeps the rest,
 * rehashed. The dirty list is left as it is: it points at kept entries
 * only (a listed entry is dirty until the flush that unlists it). */
void
tide__cache_drop_clean(tide__cache_t *c)
{
    tide__ent_t  *e;
    size_t        i, n = 0;

    for (i = 0; i <= c->mask; i++) {
        e = c->slots[i].ent;
        if (e == NULL) {
            continue;
        }
        c->slots[i].ent = NULL;
        if (e->flags & (TIDE__ENT_DB | TIDE__ENT_LOG | TIDE__ENT_LISTED)) {
            /* Reuse the dirty list order: reinserted below. */
            continue;
        }
        ent_free(e);
    }
    for (i = 0; i < c->ndirty; i++) {
        slot_insert(c->slots, c->mask, c->dirty[i]);
        n++;
    }
    c->count = n;
}
