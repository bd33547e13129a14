/*
 * Internals shared by the files of core/src/store/: the store handle, its
 * write cache (cache.c), iterators (iter.c) and folder helpers (files.c).
 *
 * A store is used by one thread, the task's, except for the WriteBatch of
 * a write-out (spill.c), which a thread of its own writes into RocksDB
 * while the task goes on; the two share nothing else, and the task joins
 * that thread before it touches RocksDB's content in any other way.
 * Nothing here locks.
 */
#ifndef TIDE_STORE_STORE_H
#define TIDE_STORE_STORE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include <rocksdb/c.h>

#include "tide.h"

#define TIDE__STORE_ERRLEN 512

/* Entry flags. */
enum {
    TIDE__ENT_TOMB   = 1,   /* deleted: reads as absent */
    TIDE__ENT_DB     = 2,   /* not yet written to RocksDB */
    TIDE__ENT_LOG    = 4,   /* not yet pushed to the changelog */
    TIDE__ENT_LISTED = 8,   /* on the dirty list */
    TIDE__ENT_HEAP   = 16,  /* 'val' is its own malloc'd buffer */
    TIDE__ENT_REF    = 32   /* read from the cache since the last drop */
};

/* One cached key and its value (or tombstone), carved from the cache's
 * arena. The key is stored inline, followed by room for a small value;
 * a value that outgrows that room moves to a buffer of its own
 * (TIDE__ENT_HEAP). An entry stays put until the cache drops entries,
 * so the dirty list can point at it. */
typedef struct tide__ent_s {
    char        *val;         /* 'vcap' bytes: inline or heap */
    uint32_t     vlen;
    uint32_t     vcap;
    uint32_t     klen;
    uint32_t     hash;
    uint32_t     flags;
    char         key[];
} tide__ent_t;

typedef struct tide__slot_s {
    uint32_t      hash;
    tide__ent_t  *ent;        /* NULL: free slot */
} tide__slot_t;

/* A block of the arena entries are carved from. */
typedef struct tide__chunk_s {
    struct tide__chunk_s  *next;
    size_t                 used;
    size_t                 cap;
    char                   data[];
} tide__chunk_t;

/* Open addressing with linear probing; entries are only ever removed all
 * together (tide__cache_rotate or tide__cache_drop_clean), so there
 * are no deleted-slot markers. */
typedef struct tide__cache_s {
    tide__slot_t   *slots;
    size_t          mask;     /* slot count - 1 (a power of two) */
    size_t          count;    /* entries */
    size_t          max;      /* entries allowed before a flush */
    tide__ent_t   **dirty;    /* entries with TIDE__ENT_LISTED */
    size_t          ndirty;
    size_t          dcap;
    tide__chunk_t  *chunks;   /* the arena, newest first */
} tide__cache_t;

/* A write-out in flight (spill.c). When the cache fills, its dirty
 * entries go into 'batch', the whole cache moves to 'gen' and a thread
 * writes the batch into RocksDB while the task goes on with a fresh
 * cache. Until the write is known done, reads look in 'gen' after the
 * cache and before RocksDB, so they never see RocksDB without the batch.
 * The thread reads only 'batch', 'db' and 'wopts' and writes only
 * 'dberr'; the task touches none of them until it has joined it. */
typedef struct tide__spill_s {
    tide__cache_t            gen;       /* slots NULL: nothing in flight */
    rocksdb_writebatch_t    *batch;
    rocksdb_t               *db;        /* the store's, for the thread */
    rocksdb_writeoptions_t  *wopts;
    char                    *dberr;     /* the write's error, or NULL */
    pthread_t                thread;
    int                      running;   /* 'thread' is not yet joined */
    int                      fail;      /* test seam: that many writes of
                                           write-outs fail (ctest only) */
} tide__spill_t;

/* A restore's records waiting to be written as one SST file and
 * ingested (ingest.c): keys and values in 'buf', one entry each. */
typedef struct tide__runrec_s {
    size_t   off;                       /* key at buf + off, value after */
    size_t   klen;
    int64_t  vlen;                      /* -1: a delete */
} tide__runrec_t;

typedef struct tide__run_s {
    char            *buf;
    size_t           len, cap;
    tide__runrec_t  *recs;
    size_t           n, capn;
    void            *sort_a, *sort_b;   /* sort arrays, sort_cap each */
    size_t           sort_cap;
} tide__run_t;

/* The run being written and ingested by the writer thread (ingest.c).
 * The thread reads 'wrun', 'order' and the store's db, options and
 * folder, and writes 'rc' and 'err'; the task touches none of them (nor
 * RocksDB) until it has joined it. */
typedef struct tide__ingest_s {
    tide__run_t  wrun;
    void        *order;                 /* wrun's sorted order */
    pthread_t    thread;
    int          running;
    int          rc;
    char         err[TIDE__STORE_ERRLEN];
    size_t       run_bytes;             /* test seam: a run's size, or 0 */
} tide__ingest_t;

struct tide_store_s {
    rocksdb_t                *db;
    rocksdb_options_t        *opts;
    rocksdb_env_t            *env;        /* MEMORY engine: its own mem env */
    rocksdb_readoptions_t    *ropts;
    rocksdb_writeoptions_t   *wopts;      /* WAL off */
    rocksdb_writebatch_t     *batch;      /* reused by flushes */
    tide_log_t               *log;        /* changelog, referenced; or NULL */
    tide_kafka_t             *kafka;      /* or a changelog topic: borrowed,
                                             outlives the store; or NULL */
    char                     *ktopic;     /* that topic's name; ours */
    char                     *dir;
    tide__cache_t             cache;
    tide__spill_t             spill;
    tide__run_t               run;        /* a restore's, RocksDB engine */
    tide__ingest_t            ing;
    int32_t                   engine;
    int32_t                   partition;
    int                       bulk;       /* opened for a restore: see
                                             tide__store_mode */
    int64_t                   hits;       /* gets the cache answered (or a
                                             write-out in flight) */
    int64_t                   misses;     /* gets that read RocksDB */
    int64_t                   log_bytes;  /* key and value bytes pushed to
                                             the changelog */
    int                       refs;       /* 1 for the owner + 1 per iter */
    int                       freed;
    char                      errmsg[TIDE__STORE_ERRLEN];
};

/* store.c: reopens the store's RocksDB in bulk-load mode (bulk = 1: a
 * vector memtable, no automatic compaction) or back in normal mode. */
int           tide__store_mode(tide_store_t *s, int bulk);

/* keysort.c: sorts keys 0..n-1 (key() gives each one's bytes) by their
 * bytes, equal keys in index order. 'a' and 'tmp' hold n each; returns
 * whichever of the two holds the order. */
typedef struct tide__sortkey_s {
    uint64_t  pfx;
    size_t    i;
} tide__sortkey_t;

typedef const char *(*tide__key_fn)(const void *ctx, size_t i,
                                    size_t *klen);

tide__sortkey_t *tide__key_sort(tide__sortkey_t *a, tide__sortkey_t *tmp,
                                size_t n, tide__key_fn key, const void *ctx);

/* store.c: formats errmsg, returns rc. */
int           tide__store_msg(tide_store_t *s, int rc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ingest.c */
int           tide__run_add(tide_store_t *s, const char *key, size_t klen,
                            const char *val, int64_t vlen);
int           tide__run_ingest(tide_store_t *s, int wait);
void          tide__run_free(tide_store_t *s);

/* cache.c */
int           tide__cache_init(tide__cache_t *c, size_t max);
void          tide__cache_free(tide__cache_t *c);
tide__ent_t  *tide__cache_find(const tide__cache_t *c, const char *key,
                               size_t klen, uint32_t hash);
int           tide__cache_put(tide__cache_t *c, const char *key, size_t klen,
                              uint32_t hash, const char *val, size_t vlen,
                              uint32_t flags, tide__ent_t **out);
void          tide__cache_drop_clean(tide__cache_t *c, int keep_read);
int           tide__cache_rotate(tide__cache_t *c, tide__cache_t *old);
void          tide__cache_sort_dirty(tide__cache_t *c);
uint32_t      tide__cache_hash(const char *key, size_t klen);

/* store.c */
void          tide__store_unref(tide_store_t *s);
int           tide__store_write_db(tide_store_t *s);
int           tide__store_push_log(tide_store_t *s);
int           tide__store_prepare_write(tide_store_t *s);
size_t        tide__store_batch(tide_store_t *s, rocksdb_writebatch_t *b);

/* spill.c */
int           tide__spill_init(tide_store_t *s);
int           tide__spill_start(tide_store_t *s);
int           tide__spill_settle(tide_store_t *s);
void          tide__spill_free(tide_store_t *s);
tide__ent_t  *tide__spill_find(const tide_store_t *s, const char *key,
                               size_t klen, uint32_t hash);

/* files.c */
int           tide__dir_copy_links(const char *from, const char *to,
                                   char *err, size_t errlen);
int           tide__dir_swap_in(const char *tmp, const char *dir, char *err,
                                size_t errlen);
int           tide__path_exists(const char *path);

#endif
