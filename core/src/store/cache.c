/*
 * The store's write cache: a hash map from key bytes to a value or a
 * tombstone, with two dirty flags (not yet in RocksDB, not yet in the
 * changelog) and a list of the dirty entries, so that a flush touches
 * only what changed. Writes to one key coalesce in its entry; reads see
 * it. When it is full the store writes it out and moves it aside whole
 * for the write-out's thread (tide__cache_rotate), keeping copies of the
 * entries read lately; a restore drops it (tide__cache_drop_clean).
 * Entries are carved from an arena that a drop replaces whole, and a
 * write-out sorts the dirty list by key first (tide__cache_sort_dirty).
 */
#include "store/store.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define MIN_SLOTS       1024
/* Arena block size; an entry bigger than a quarter of it gets a block of
 * its own. */
#define CHUNK_BYTES     (256 * 1024)
/* Value bytes every entry has room for inline: a counter's digits. */
#define INLINE_MIN      8

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
chunks_free(tide__chunk_t *ch)
{
    tide__chunk_t  *next;

    for (; ch != NULL; ch = next) {
        next = ch->next;
        free(ch);
    }
}

/* Returns 'size' bytes (a multiple of 8) from the arena, or NULL. */
static void *
arena_alloc(tide__cache_t *c, size_t size)
{
    tide__chunk_t  *ch = c->chunks;
    size_t          cap;

    if (ch == NULL || ch->cap - ch->used < size) {
        cap = size > CHUNK_BYTES / 4 ? size : CHUNK_BYTES;
        ch = malloc(sizeof(*ch) + cap);
        if (ch == NULL) {
            return NULL;
        }
        ch->used = 0;
        ch->cap = cap;
        if (cap != CHUNK_BYTES && c->chunks != NULL) {
            /* A block for this entry alone: keep filling the current
             * one. */
            ch->next = c->chunks->next;
            c->chunks->next = ch;
        } else {
            ch->next = c->chunks;
            c->chunks = ch;
        }
    }
    ch->used += size;
    return ch->data + ch->used - size;
}

/* Bytes of an entry with 'klen' key bytes and room for 'vcap' inline
 * value bytes, rounded up to 8. */
static size_t
ent_size(size_t klen, size_t vcap)
{
    return (offsetof(tide__ent_t, key) + klen + vcap + 7) & ~(size_t) 7;
}

void
tide__cache_free(tide__cache_t *c)
{
    size_t  i;

    if (c->slots != NULL) {
        for (i = 0; i <= c->mask; i++) {
            if (c->slots[i].ent != NULL &&
                (c->slots[i].ent->flags & TIDE__ENT_HEAP))
            {
                free(c->slots[i].ent->val);
            }
        }
    }
    chunks_free(c->chunks);
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
    size_t        cap, size;
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
        size = ent_size(klen, vlen > INLINE_MIN ? vlen : INLINE_MIN);
        e = arena_alloc(c, size);
        if (e == NULL) {
            return TIDE_ENOMEM;
        }
        cap = size - offsetof(tide__ent_t, key) - klen;
        e->vcap = cap > UINT32_MAX ? UINT32_MAX : (uint32_t) cap;
        e->val = e->key + klen;
        memcpy(e->key, key, klen);
        if (vlen > 0) {
            memcpy(e->val, val, vlen);
        }
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
            nv = (e->flags & TIDE__ENT_HEAP) ? realloc(e->val, cap)
                                             : malloc(cap);
            if (nv == NULL) {
                return TIDE_ENOMEM;
            }
            e->val = nv;
            e->vcap = (uint32_t) cap;
            e->flags |= TIDE__ENT_HEAP;
        }
        if (vlen > 0) {
            memcpy(e->val, val, vlen);
        }
        e->vlen = (uint32_t) vlen;
        /* Dirty flags only accumulate until a flush clears them. */
        e->flags = (e->flags & (TIDE__ENT_DB | TIDE__ENT_LOG |
                                TIDE__ENT_LISTED | TIDE__ENT_HEAP |
                                TIDE__ENT_REF)) | flags;
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

/* Returns a copy of 'e' in the arena (its heap value, if any, moves with
 * it), or NULL without memory. */
static tide__ent_t *
ent_copy(tide__cache_t *c, const tide__ent_t *e)
{
    tide__ent_t  *n;
    int           heap = (e->flags & TIDE__ENT_HEAP) != 0;

    n = arena_alloc(c, ent_size(e->klen, heap ? 0 : e->vcap));
    if (n == NULL) {
        return NULL;
    }
    memcpy(n, e, offsetof(tide__ent_t, key) + e->klen +
                 (heap ? 0 : e->vlen));
    if (!heap) {
        n->val = n->key + n->klen;
    }
    return n;
}

/* Gives 'c' a fresh arena holding copies of up to 'budget' of 'keep'
 * (cleared of every flag but the tombstone and a moved heap value) and
 * inserts them into its slots, which must be empty. With 'own' each copy
 * takes its original's heap value along; without, it gets a heap value
 * of its own (the original stays whole). An entry that cannot be copied
 * (no memory) is left out. Returns the old arena. */
static tide__chunk_t *
refill(tide__cache_t *c, tide__ent_t **keep, size_t nkeep, int own)
{
    tide__chunk_t  *old = c->chunks;
    tide__ent_t    *e, *n;
    char           *v;
    size_t          i;

    c->chunks = NULL;
    c->count = 0;
    for (i = 0; i < nkeep; i++) {
        e = keep[i];
        v = NULL;
        if (!own && (e->flags & TIDE__ENT_HEAP)) {
            v = malloc(e->vlen ? e->vlen : 1);
            if (v == NULL) {
                continue;
            }
            memcpy(v, e->val, e->vlen);
        }
        n = ent_copy(c, e);
        if (n == NULL) {
            free(own && (e->flags & TIDE__ENT_HEAP) ? e->val : v);
            continue;
        }
        if (v != NULL) {
            n->val = v;
            n->vcap = n->vlen;
        }
        n->flags &= TIDE__ENT_TOMB | TIDE__ENT_HEAP;
        slot_insert(c->slots, c->mask, n);
        c->count++;
    }
    return old;
}

/* Drops every entry, but with 'keep_read' keeps up to half the cache of
 * those read from it since the last drop (a second chance: hot keys stay
 * cached across fills). The cache must hold no dirty entry (both callers
 * flush first); one that does is left as it is. The kept entries move to
 * a fresh arena and the old one is freed whole; one that cannot be copied
 * (no memory) is dropped. */
void
tide__cache_drop_clean(tide__cache_t *c, int keep_read)
{
    tide__ent_t     *e, **keep;
    size_t           i, nkeep = 0, budget = c->max / 2;

    if (c->ndirty > 0) {
        return;
    }
    keep = keep_read && budget > 0 ? malloc(budget * sizeof(*keep)) : NULL;
    for (i = 0; i <= c->mask; i++) {
        e = c->slots[i].ent;
        if (e == NULL) {
            continue;
        }
        c->slots[i].ent = NULL;
        if ((e->flags & TIDE__ENT_REF) && keep != NULL && nkeep < budget) {
            keep[nkeep++] = e;
            continue;
        }
        if (e->flags & TIDE__ENT_HEAP) {
            free(e->val);
        }
    }
    chunks_free(refill(c, keep, nkeep, 1));
    free(keep);
}

/* Moves every entry of 'c' into 'old' (which must be empty: zeroed or
 * freed with tide__cache_free), dirty flags and all, for the write-out
 * that has put the dirty ones into a WriteBatch; 'old' stays a cache that
 * tide__cache_find reads and tide__cache_free frees. 'c' gets an empty
 * dirty list, new slots and arena, and clean copies of up to half the
 * cache of the entries read since the last drop (hot keys stay cached),
 * their values copied too. Returns TIDE_OK, or TIDE_ENOMEM with nothing
 * changed. */
int
tide__cache_rotate(tide__cache_t *c, tide__cache_t *old)
{
    tide__slot_t  *slots;
    tide__ent_t   *e, **keep;
    size_t         i, nkeep = 0, budget = c->max / 2;

    slots = calloc(c->mask + 1, sizeof(*slots));
    keep = budget > 0 ? malloc(budget * sizeof(*keep)) : NULL;
    if (slots == NULL || (budget > 0 && keep == NULL)) {
        free(slots);
        free(keep);
        return TIDE_ENOMEM;
    }
    for (i = 0; i <= c->mask && nkeep < budget; i++) {
        e = c->slots[i].ent;
        if (e != NULL && (e->flags & TIDE__ENT_REF)) {
            keep[nkeep++] = e;
        }
    }
    *old = *c;
    old->dirty = NULL;
    old->ndirty = 0;
    old->dcap = 0;
    c->slots = slots;
    c->ndirty = 0;
    old->chunks = refill(c, keep, nkeep, 0);
    free(keep);
    return TIDE_OK;
}

static const char *
dirty_key(const void *ctx, size_t i, size_t *klen)
{
    const tide__ent_t  *e = ((const tide__cache_t *) ctx)->dirty[i];

    *klen = e->klen;
    return e->key;
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
    tide__sortkey_t  *sk, *order;
    tide__ent_t     **sorted;
    size_t            i, n = c->ndirty;

    if (n < 2) {
        return;
    }
    sk = malloc(2 * n * sizeof(*sk));
    if (sk == NULL) {
        return;
    }
    order = tide__key_sort(sk, sk + n, n, dirty_key, c);
    /* The half of sk not holding the order takes the sorted list. */
    sorted = (tide__ent_t **) (order == sk ? sk + n : sk);
    for (i = 0; i < n; i++) {
        sorted[i] = c->dirty[order[i].i];
    }
    memcpy(c->dirty, sorted, n * sizeof(*sorted));
    free(sk);
}
