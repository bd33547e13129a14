/*
 * Write-outs of a full cache on a thread of their own.
 *
 * With many keys nearly every message of a counting job misses the cache,
 * so the cache fills every few hundred thousand messages and its dirty
 * entries have to go into RocksDB; inserting them into the memtable was a
 * fifth of the task's time. A write-out therefore puts the dirty entries
 * into a WriteBatch (sorted, as tide_store_flush does) and pushes their
 * changelog records on the task's thread, moves the whole cache aside
 * (tide__cache_rotate) and lets a thread write the batch while the task
 * carries on with a fresh cache that keeps the hot keys.
 *
 * What keeps the store's guarantees:
 *   - reads look in the moved-aside cache ('gen') after the live one and
 *     before RocksDB, so no read misses the batch while it is in flight;
 *   - one write-out at a time, and every other path to RocksDB's content
 *     (tide_store_flush, hence snapshots and commits; iterators; restore;
 *     reopening; freeing) settles the one in flight first
 *     (tide__spill_settle): it joins the thread and only then lets the
 *     store write, read through an iterator, or snapshot. A commit's
 *     drain thus still ends with everything in RocksDB (DESIGN.md 5);
 *   - a failed write keeps 'gen' and the batch, so reads stay right, and
 *     is retried on the task's thread at the next settle, which returns
 *     the error (nothing is lost; the set or flush that settles fails as
 *     a synchronous write would have).
 * A crash loses what RocksDB had not flushed either way: without the WAL
 * a store is only as new as its last snapshot, and the changelog holds
 * the rest.
 */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

int
tide__spill_init(tide_store_t *s)
{
    s->spill.batch = rocksdb_writebatch_create();
    return s->spill.batch != NULL ? TIDE_OK : TIDE_ENOMEM;
}

/* Writes the batch; on failure *dberr is RocksDB's malloc'd message. */
static void
spill_write(tide__spill_t *sp, char **dberr)
{
    *dberr = NULL;
    if (sp->fail > 0) {
        sp->fail--;
        *dberr = strdup("injected write-out failure");
        return;
    }
    rocksdb_write(sp->db, sp->wopts, sp->batch, dberr);
}

static void *
spill_main(void *arg)
{
    tide__spill_t  *sp = arg;
    char           *dberr;

    /* Perf counters are per thread and on by default (see
     * tide_store_new). */
    rocksdb_set_perf_level(rocksdb_disable);
    spill_write(sp, &dberr);
    sp->dberr = dberr;
    return NULL;
}

/* Waits for the write-out in flight, if any. When it succeeded the
 * moved-aside cache is freed and TIDE_OK returned. When it failed, it is
 * tried again here; a second failure returns TIDE_EIO (errmsg says why)
 * and keeps the batch and the moved-aside cache for the next settle. */
int
tide__spill_settle(tide_store_t *s)
{
    tide__spill_t  *sp = &s->spill;
    char           *dberr;

    if (sp->running) {
        pthread_join(sp->thread, NULL);
        sp->running = 0;
    }
    if (sp->gen.slots == NULL) {
        return TIDE_OK;
    }
    if (sp->dberr != NULL) {
        rocksdb_free(sp->dberr);
        sp->dberr = NULL;
        spill_write(sp, &dberr);
        if (dberr != NULL) {
            tide__store_msg(s, TIDE_EIO, "store %s: write-out failed: %s",
                            s->dir, dberr);
            sp->dberr = dberr;          /* still to be written */
            return TIDE_EIO;
        }
    }
    rocksdb_writebatch_clear(sp->batch);
    tide__cache_free(&sp->gen);
    return TIDE_OK;
}

/* Writes the dirty entries of the full cache out: settles the previous
 * write-out, pushes the changelog records (with a changelog), puts the
 * RocksDB-dirty entries into the batch, moves the cache aside and starts
 * the thread. Without memory for a fresh cache it writes synchronously
 * and drops the clean entries instead, as tide_store_set used to; without
 * a thread it writes the batch on this one. Returns TIDE_OK, an error of
 * the settle or of the changelog push (the cache unchanged but for the
 * records pushed), or of the synchronous write. */
int
tide__spill_start(tide_store_t *s)
{
    tide__spill_t  *sp = &s->spill;
    tide__cache_t  *c = &s->cache;
    int             rc;

    rc = tide__store_prepare_write(s);
    if (rc != TIDE_OK) {
        return rc;
    }
    if (s->log != NULL || s->kafka != NULL) {
        rc = tide__store_push_log(s);
        if (rc != TIDE_OK) {
            return rc;
        }
    }
    tide__store_batch(s, sp->batch);
    if (tide__cache_rotate(c, &sp->gen) != TIDE_OK) {
        rocksdb_writebatch_clear(sp->batch);
        rc = tide_store_flush(s);
        if (rc == TIDE_OK) {
            tide__cache_drop_clean(c, 1);
        }
        return rc;
    }
    sp->db = s->db;
    sp->wopts = s->wopts;
    sp->dberr = NULL;
    if (pthread_create(&sp->thread, NULL, spill_main, sp) != 0) {
        spill_main(sp);
        return tide__spill_settle(s);
    }
    sp->running = 1;
    return TIDE_OK;
}

/* Looks 'key' up in the cache of the write-out in flight; NULL when it
 * is not there or nothing is in flight. */
tide__ent_t *
tide__spill_find(const tide_store_t *s, const char *key, size_t klen,
                 uint32_t hash)
{
    if (s->spill.gen.slots == NULL) {
        return NULL;
    }
    return tide__cache_find(&s->spill.gen, key, klen, hash);
}

/* Settles (a failure is lost with the store, like unflushed writes) and
 * frees what the write-outs hold. */
void
tide__spill_free(tide_store_t *s)
{
    tide__spill_t  *sp = &s->spill;

    if (s->db != NULL) {
        tide__spill_settle(s);
    } else if (sp->running) {
        pthread_join(sp->thread, NULL);
        sp->running = 0;
    }
    rocksdb_free(sp->dberr);
    sp->dberr = NULL;
    tide__cache_free(&sp->gen);
    if (sp->batch != NULL) {
        rocksdb_writebatch_destroy(sp->batch);
        sp->batch = NULL;
    }
}
