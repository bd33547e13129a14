/*
 * Store iterators: a key range read from a RocksDB snapshot. To include
 * the cached writes, the cache's RocksDB-dirty entries are written first;
 * they stay changelog-dirty, so the next tide_store_flush still records
 * them. The snapshot keeps the view fixed while writes go on.
 */
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct tide_iter_s {
    tide_store_t              *s;
    rocksdb_readoptions_t     *ropts;
    const rocksdb_snapshot_t  *snap;
    rocksdb_iterator_t        *it;
    char                      *to;       /* upper bound; RocksDB keeps a
                                            pointer to it */
    int                        started;
    int                        done;
};

int
tide_iter_new(tide_iter_t **out, tide_store_t *s, const char *from,
              size_t flen, const char *to, size_t tlen)
{
    tide_iter_t  *it;
    int           rc;

    if (out == NULL) {
        return TIDE_EINVAL;
    }
    *out = NULL;
    rc = tide__store_write_db(s);
    if (rc != TIDE_OK) {
        return rc;
    }
    it = calloc(1, sizeof(*it));
    if (it == NULL) {
        return TIDE_ENOMEM;
    }
    if (to != NULL) {
        it->to = malloc(tlen ? tlen : 1);
        if (it->to == NULL) {
            free(it);
            return TIDE_ENOMEM;
        }
        memcpy(it->to, to, tlen);
    }
    it->s = s;
    it->snap = rocksdb_create_snapshot(s->db);
    it->ropts = rocksdb_readoptions_create();
    rocksdb_readoptions_set_snapshot(it->ropts, it->snap);
    if (to != NULL) {
        rocksdb_readoptions_set_iterate_upper_bound(it->ropts, it->to, tlen);
    }
    it->it = rocksdb_create_iterator(s->db, it->ropts);
    if (from != NULL) {
        rocksdb_iter_seek(it->it, from, flen);
    } else {
        rocksdb_iter_seek_to_first(it->it);
    }
    s->refs++;
    *out = it;
    return TIDE_OK;
}

int
tide_iter_poll(tide_iter_t *it, const char **key, size_t *klen,
               const char **val, size_t *vlen)
{
    char  *dberr = NULL;

    *key = *val = NULL;
    *klen = *vlen = 0;
    if (it->done) {
        return TIDE_ENOENT;
    }
    if (it->started) {
        rocksdb_iter_next(it->it);
    }
    it->started = 1;
    if (!rocksdb_iter_valid(it->it)) {
        it->done = 1;
        rocksdb_iter_get_error(it->it, &dberr);
        if (dberr != NULL) {
            snprintf(it->s->errmsg, sizeof(it->s->errmsg), "store %s: "
                     "iterator failed: %s", it->s->dir, dberr);
            rocksdb_free(dberr);
            return TIDE_EIO;
        }
        return TIDE_ENOENT;
    }
    *key = rocksdb_iter_key(it->it, klen);
    *val = rocksdb_iter_value(it->it, vlen);
    return TIDE_OK;
}

void
tide_iter_free(tide_iter_t *it)
{
    if (it == NULL) {
        return;
    }
    rocksdb_iter_destroy(it->it);
    rocksdb_readoptions_destroy(it->ropts);
    rocksdb_release_snapshot(it->s->db, it->snap);
    free(it->to);
    tide__store_unref(it->s);
    free(it);
}
