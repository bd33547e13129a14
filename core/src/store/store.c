/*
 * Stores: RocksDB behind the write cache of cache.c, with every write
 * recorded in a changelog partition.
 *
 * Writes go into the cache and coalesce there per key. A flush writes the
 * dirty entries into RocksDB in one WriteBatch sorted by key, without the
 * WAL (the changelog is the durable record, as in Samza), and pushes one
 * changelog record per key; a full cache is written out the same way, but
 * by a thread of its own (spill.c). Reads see the cache first, then a
 * write-out in flight, then RocksDB. Snapshots are RocksDB
 * checkpoints (hard links); restore replays a changelog straight into
 * RocksDB: sorted runs written as SST files and ingested (ingest.c), or
 * large WriteBatches for the memory engine.
 */
#include "store/store.h"
#include "util/fs.h"
#include "log/log.h"
#include "log/format.h"
#include "util/errors.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_CACHE_ENTRIES   100000
/* One block cache for every store of the process: a task host runs many
 * stores, and hot blocks compete better in one pool than in many. */
#define BLOCK_CACHE_BYTES       (512ULL * 1024 * 1024)
#define WRITE_BUFFER_BYTES      (64ULL * 1024 * 1024)
#define BLOOM_BITS_PER_KEY      10
/* Restore: records per poll, and when to write the WriteBatch out. */
#define RESTORE_POLL            4096
#define RESTORE_BATCH_BYTES     (8 * 1024 * 1024)

static pthread_once_t    block_cache_once = PTHREAD_ONCE_INIT;
static rocksdb_cache_t  *block_cache;

static void
block_cache_init(void)
{
    block_cache = rocksdb_cache_create_lru(BLOCK_CACHE_BYTES);
}

int
tide__store_msg(tide_store_t *s, int rc, const char *fmt, ...)
{
    va_list  ap;

    va_start(ap, fmt);
    vsnprintf(s->errmsg, sizeof(s->errmsg), fmt, ap);
    va_end(ap);
    return rc;
}

/* Takes a RocksDB error string (which RocksDB malloc'd) into errmsg. */
static int
db_fail(tide_store_t *s, int rc, const char *what, char *dberr)
{
    tide__store_msg(s, rc, "store %s: %s: %s", s->dir, what,
                    dberr != NULL ? dberr : "unknown RocksDB error");
    rocksdb_free(dberr);
    return rc;
}

static void
store_destroy(tide_store_t *s)
{
    tide__spill_free(s);
    tide__run_free(s);
    if (s->db != NULL) {
        rocksdb_close(s->db);
    }
    if (s->opts != NULL) {
        rocksdb_options_destroy(s->opts);
    }
    if (s->env != NULL) {
        rocksdb_env_destroy(s->env);
    }
    if (s->ropts != NULL) {
        rocksdb_readoptions_destroy(s->ropts);
    }
    if (s->wopts != NULL) {
        rocksdb_writeoptions_destroy(s->wopts);
    }
    if (s->batch != NULL) {
        rocksdb_writebatch_destroy(s->batch);
    }
    tide__cache_free(&s->cache);
    if (s->log != NULL) {
        /* Its owner is gone and flushed before our last pushes: write them
         * out rather than drop them with the handle. If that fails (say
         * ENOSPC), the warning says what is true: a commit makes the
         * changelog durable before it writes its checkpoint, so records
         * still buffered here are newer than the job's last checkpoint. A
         * restart restores the store to that checkpoint and reprocesses
         * the input from it, which makes these records again. */
        if (s->log->freed && tide_log_flush(s->log) != TIDE_OK) {
            int32_t  n = s->log->parts[s->partition].count;

            tide__warn("store %s: %ld changelog record%s not written at "
                       "close: %s; they are newer than the job's last "
                       "checkpoint and are made again when it restarts "
                       "from it (nothing committed is lost)", s->dir,
                       (long) n, n == 1 ? " was" : "s were",
                       tide_log_errmsg(s->log));
        }
        tide__log_unref(s->log);
    }
    free(s->dir);
    free(s);
}

void
tide__store_unref(tide_store_t *s)
{
    if (--s->refs == 0) {
        store_destroy(s);
    }
}

void
tide_store_free(tide_store_t *s)
{
    if (s == NULL || s->freed) {
        return;
    }
    s->freed = 1;
    tide__store_unref(s);
}

/* Returns 'o', or a copy of it that inserts into the skiplist memtable
 * from the position of the previous insert (one hint for every key: a
 * prefix of 0 bytes), destroying 'o'. A flush writes its keys sorted, so
 * each insert then walks a few nodes forward instead of searching from
 * the top: with a memtable of a million random keys that search was most
 * of a flush's time. The C API has no setter for it, hence the string. */
static rocksdb_options_t *
with_insert_hint(rocksdb_options_t *o)
{
    rocksdb_options_t  *n = rocksdb_options_create();
    char               *dberr = NULL;

    rocksdb_get_options_from_string(
        o, "memtable_insert_with_hint_prefix_extractor=fixed:0", n, &dberr);
    if (dberr != NULL) {
        /* Only slower without it. */
        rocksdb_free(dberr);
        rocksdb_options_destroy(n);
        return o;
    }
    rocksdb_options_destroy(o);
    return n;
}

static rocksdb_options_t *
make_options(rocksdb_env_t *env, int bulk)
{
    rocksdb_options_t                   *o;
    rocksdb_block_based_table_options_t *t;

    pthread_once(&block_cache_once, block_cache_init);
    o = rocksdb_options_create();
    rocksdb_options_set_create_if_missing(o, 1);
    /* Two cores: one flush and one compaction at a time. */
    rocksdb_options_increase_parallelism(o, 2);
    rocksdb_options_set_max_background_jobs(o, 2);
    rocksdb_options_set_write_buffer_size(o, WRITE_BUFFER_BYTES);
    rocksdb_options_set_max_write_buffer_number(o, 3);
    rocksdb_options_set_level_compaction_dynamic_level_bytes(o, 1);
    /* Every commit's snapshot flushes the memtable into a new L0 file,
     * and a point lookup probes each L0 file's filter: compacting from
     * two files on (the default is four) kept the task's thread 5% less
     * busy with many keys, for about the same CPU in all. */
    rocksdb_options_set_level0_file_num_compaction_trigger(o, 2);
    rocksdb_options_set_compression(o, rocksdb_lz4_compression);
    /* A bloom filter in the memtables too: most reads of a counting job
     * are for keys not written lately, and skiplist searches of absent
     * keys were most of the cost with many keys (0.10 -> 0.15 M ops/s at
     * 1 M keys). Each memtable allocates it up front (2% of 64 MiB),
     * which is why the ratio is small: many stores share a process. */
    rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0.02);
    rocksdb_options_set_memtable_whole_key_filtering(o, 1);
    rocksdb_options_set_info_log_level(o, 2);        /* WARN */
    rocksdb_options_set_keep_log_file_num(o, 2);
    /* Descriptors (issue 10, D8): a store holds six for good (its folder
     * twice, LOCK, LOG, MANIFEST and the WAL, which exists although
     * writes skip it), and with RocksDB's default max_open_files of -1
     * every SST file too: measured 7 for a new store, 44 after 40 quick
     * snapshots (each flushes an L0 file), and a job has a store per task.
     * RocksDB keeps max_open_files - 10 table files open, in an LRU
     * cache of 64 shards by default, where each shard keeps at least one
     * (31 open after those snapshots): with one shard (a store is read
     * by its task's thread and compactions) 32 bounds a store to 6 + 22
     * = 28 descriptors, measured 28, and keeps a store of 22 SST files of
     * 64 MiB (about 1.4 GB) open; past that, lookups reopen files. */
    rocksdb_options_set_max_open_files(o, 32);
    rocksdb_options_set_table_cache_numshardbits(o, 0);
    /* Disk: RocksDB preallocates 4 MiB for the MANIFEST while it is open
     * (256 MiB for 64 stores, enough to turn a nearly full disk into
     * ENOSPC for the log), where a store's MANIFEST grows by about 200
     * bytes a snapshot (measured: 80 KB after 400). And every snapshot
     * copies the whole MANIFEST, which RocksDB lets grow to 1 GiB: past
     * 4 MiB it now starts a new one, listing the live files only (some
     * 150 bytes each), about every 20,000 snapshots. Not lower: a restore
     * ingests thousands of SST files, one MANIFEST edit each, and a
     * 64 KiB bound rewrote the MANIFEST so often that the store's C tests
     * ran 2-3 times longer. */
    rocksdb_options_set_manifest_preallocation_size(o, 64 * 1024);
    rocksdb_options_set_max_manifest_file_size(o, 4 * 1024 * 1024);
    t = rocksdb_block_based_options_create();
    rocksdb_block_based_options_set_block_cache(t, block_cache);
    rocksdb_block_based_options_set_filter_policy(
        t, rocksdb_filterpolicy_create_bloom_full(BLOOM_BITS_PER_KEY));
    rocksdb_block_based_options_set_block_size(t, 16 * 1024);
    /* A hash index in each data block: a point lookup goes straight to
     * its restart interval instead of binary-searching the block's ~40
     * restart keys, which was the biggest single item (9%) of a keyed
     * incr job with many keys. It costs about 1 byte a key. */
    rocksdb_block_based_options_set_data_block_index_type(t,
        rocksdb_block_based_table_data_block_index_type_binary_search_and_hash);
    rocksdb_block_based_options_set_data_block_hash_ratio(t, 0.75);
    rocksdb_options_set_block_based_table_factory(o, t);
    rocksdb_block_based_options_destroy(t);
    if (env != NULL) {
        rocksdb_options_set_env(o, env);
    }
    if (!bulk) {
        /* Not with the vector memtable of a restore: it ignores the hint
         * but would look it up for every record. */
        o = with_insert_hint(o);
    } else {
        /* A restore ingests SST files (ingest.c), and those of the
         * memory engine write records in changelog order, once: appending
         * to a vector that is sorted once per flush beats a skiplist
         * search per key by an order of magnitude. Compaction waits for
         * the normal reopen. Two flushes at a time, four memtables before
         * writes wait, and no compression (the reopen's compactions
         * compress; the SST files are written with these options too). */
        rocksdb_options_set_memtable_vector_rep(o);
        rocksdb_options_set_allow_concurrent_memtable_write(o, 0);
        rocksdb_options_set_max_background_flushes(o, 2);
        rocksdb_options_set_max_write_buffer_number(o, 4);
        rocksdb_options_set_compression(o, rocksdb_no_compression);
        rocksdb_options_set_disable_auto_compactions(o, 1);
        rocksdb_options_set_memtable_prefix_bloom_size_ratio(o, 0);
    }
    return o;
}

int
tide__store_mode(tide_store_t *s, int bulk)
{
    rocksdb_flushoptions_t  *fo;
    rocksdb_options_t       *o;
    char                    *dberr = NULL;
    int                      rc;

    if (s->bulk == bulk) {
        return TIDE_OK;
    }
    if (s->refs > 1) {
        return TIDE_OK;         /* an iterator holds the DB: stay as is */
    }
    rc = tide__spill_settle(s);
    if (rc == TIDE_OK && !bulk) {
        rc = tide__run_ingest(s, 1);    /* what a restore gathered */
        if (rc == TIDE_OK) {
            tide__run_free(s);
        }
    }
    if (rc != TIDE_OK) {
        return rc;
    }
    /* The WAL is off: make the memtable durable before closing. */
    fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(s->db, fo, &dberr);
    rocksdb_flushoptions_destroy(fo);
    if (dberr != NULL) {
        return db_fail(s, TIDE_EIO, "memtable flush failed", dberr);
    }
    o = make_options(s->env, bulk);
    rocksdb_close(s->db);
    s->db = rocksdb_open(o, s->dir, &dberr);
    rocksdb_options_destroy(s->opts);
    s->opts = o;
    if (s->db == NULL) {
        return db_fail(s, TIDE_EIO, "reopen failed", dberr);
    }
    s->bulk = bulk;
    return TIDE_OK;
}

static int
check_params(const tide_store_params_t *p, const char *dir, char *err,
             size_t errlen)
{
    if (p->engine != TIDE_STORE_ROCKSDB && p->engine != TIDE_STORE_MEMORY) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "bad store engine %d",
                             (int) p->engine);
    }
    if (p->engine == TIDE_STORE_ROCKSDB && (dir == NULL || dir[0] == '\0')) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "a RocksDB store needs "
                             "a folder");
    }
    if (p->engine == TIDE_STORE_MEMORY && p->from != NULL) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "a memory store cannot "
                             "start from a snapshot");
    }
    if (p->cache_entries < 0) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "bad cache_entries "
                             "%lld", (long long) p->cache_entries);
    }
    if (p->kafka_changelog != NULL
        && (p->changelog != NULL || p->kafka_topic == NULL
            || p->partition < 0))
    {
        return tide__set_err(err, errlen, TIDE_EINVAL, "a Kafka changelog "
                             "needs its topic and a partition, and no log "
                             "changelog beside it");
    }
    if (p->changelog != NULL &&
        (p->partition < 0 || p->partition >= tide_log_count(p->changelog)))
    {
        return tide__set_err(err, errlen, TIDE_EINVAL, "changelog partition "
                             "%d out of range: stream '%s' has %d",
                             (int) p->partition, p->changelog->name,
                             tide_log_count(p->changelog));
    }
    return TIDE_OK;
}

/* Replaces 'dir' by a hard-link copy of snapshot 'from'. */
static int
start_from(const char *dir, const char *from, char *err, size_t errlen)
{
    char  tmp[PATH_MAX];
    int   rc;

    if (!tide__path_exists(from)) {
        return tide__set_err(err, errlen, TIDE_ENOENT, "no snapshot at %s",
                             from);
    }
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-from", dir) >= (int) sizeof(tmp)) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "path too long: %s",
                             dir);
    }
    rc = tide_path_remove(tmp, err, errlen);
    if (rc == TIDE_OK) {
        rc = tide__dir_copy_links(from, tmp, err, errlen);
    }
    if (rc == TIDE_OK) {
        rc = tide__dir_swap_in(tmp, dir, err, errlen);
    }
    if (rc != TIDE_OK) {
        tide_path_remove(tmp, NULL, 0);
    }
    return rc;
}

int
tide_store_new(tide_store_t **out, const char *dir,
               const tide_store_params_t *p, char *err, size_t errlen)
{
    static const tide_store_params_t  defaults;
    tide_store_t                     *s;
    char                             *dberr = NULL;
    char                              name[64];
    int                               rc;

    if (out == NULL) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "no out-param given");
    }
    *out = NULL;
    if (p == NULL) {
        p = &defaults;
    }
    rc = check_params(p, dir, err, errlen);
    if (rc != TIDE_OK) {
        return rc;
    }
    if (p->engine == TIDE_STORE_ROCKSDB) {
        if (p->from != NULL) {
            rc = start_from(dir, p->from, err, errlen);
            if (rc != TIDE_OK) {
                return rc;
            }
        } else if (tide__mkdir_p(dir) != 0) {
            return tide__set_err(err, errlen, TIDE_EIO, "cannot create %s: %s",
                                 dir, strerror(errno));
        }
    }

    s = calloc(1, sizeof(*s));
    if (s == NULL) {
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    s->refs = 1;
    s->engine = p->engine;
    s->partition = p->partition;
    if (dir == NULL) {
        snprintf(name, sizeof(name), "/tide-memory-store-%p", (void *) s);
        dir = name;
    }
    s->dir = strdup(dir);
    if (s->dir == NULL ||
        tide__cache_init(&s->cache, p->cache_entries > 0
                         ? (size_t) p->cache_entries
                         : DEFAULT_CACHE_ENTRIES) != TIDE_OK ||
        tide__spill_init(s) != TIDE_OK)
    {
        store_destroy(s);
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    if (p->engine == TIDE_STORE_MEMORY) {
        s->env = rocksdb_create_mem_env();
    }
    /* RocksDB counts every key comparison in a thread-local perf context
     * unless told not to; reached through __tls_get_addr from a shared
     * library that was 9% of a keyed incr job. The level is per thread:
     * set it for the thread that opens the store, the one that uses it. */
    rocksdb_set_perf_level(rocksdb_disable);
    s->opts = make_options(s->env, 0);
    s->ropts = rocksdb_readoptions_create();
    s->wopts = rocksdb_writeoptions_create();
    rocksdb_writeoptions_disable_WAL(s->wopts, 1);
    s->batch = rocksdb_writebatch_create();
    s->db = rocksdb_open(s->opts, s->dir, &dberr);
    if (s->db == NULL) {
        /* EBUSY only when the LOCK is held ("While lock file: ...:
         * Resource temporarily unavailable", or held in this process):
         * not when it could not be opened, say for EMFILE. */
        rc = dberr != NULL && (strstr(dberr, "While lock file") != NULL
                               || strstr(dberr, "lock hold by current "
                                         "process") != NULL)
             ? TIDE_EBUSY : TIDE_EIO;
        tide__set_err(err, errlen, rc, "cannot open store %s: %s", s->dir,
                      dberr != NULL ? dberr : "unknown RocksDB error");
        rocksdb_free(dberr);
        store_destroy(s);
        return rc;
    }
    if (p->changelog != NULL) {
        s->log = p->changelog;
        s->log->refs++;
    } else if (p->kafka_changelog != NULL) {
        s->ktopic = strdup(p->kafka_topic);
        if (s->ktopic == NULL) {
            store_destroy(s);
            return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
        }
        s->kafka = p->kafka_changelog;
    }
    *out = s;
    return TIDE_OK;
}

/* Adds an integer property of the store's RocksDB to *out; a property
 * RocksDB cannot tell adds nothing. */
static int
db_property(tide_store_t *s, const char *name, int64_t *out)
{
    uint64_t  v = 0;

    if (rocksdb_property_int(s->db, name, &v) == 0) {
        *out += (int64_t) v;
    }
    return TIDE_OK;
}

int
tide_store_count(tide_store_t *s, int what, int64_t *out)
{
    if (out == NULL) {
        return TIDE_EINVAL;
    }
    *out = 0;
    if (s == NULL) {
        return TIDE_EINVAL;
    }
    switch (what) {
    case TIDE_STORE_COUNT_HITS:
        *out = s->hits;
        return TIDE_OK;
    case TIDE_STORE_COUNT_MISSES:
        *out = s->misses;
        return TIDE_OK;
    case TIDE_STORE_COUNT_LOG_BYTES:
        *out = s->log_bytes;
        return TIDE_OK;
    case TIDE_STORE_COUNT_KEYS:
    case TIDE_STORE_COUNT_BYTES:
        break;
    default:
        return TIDE_EINVAL;
    }
    /* RocksDB's own estimates, read without waiting for anything: a
     * write-out in flight (RocksDB reads its properties safely while
     * another thread writes) is not in them yet. A store a restore left
     * in bulk mode is not switched back for a count: that is the next
     * read's or write's to do. */
    if (s->bulk || s->ing.running) {
        return TIDE_EAGAIN;
    }
    if (what == TIDE_STORE_COUNT_KEYS) {
        return db_property(s, "rocksdb.estimate-num-keys", out);
    }
    db_property(s, "rocksdb.total-sst-files-size", out);
    return db_property(s, "rocksdb.cur-size-all-mem-tables", out);
}

const char *
tide_store_errmsg(const tide_store_t *s)
{
    return s->errmsg[0] ? s->errmsg : "no error";
}

int
tide_store_get(tide_store_t *s, const char *key, size_t klen, char *buf,
               size_t *len)
{
    tide__ent_t              *e;
    rocksdb_pinnableslice_t  *ps;
    const char               *v;
    char                     *dberr = NULL;
    size_t                    vlen;
    uint32_t                  h;

    if (key == NULL || len == NULL || (buf == NULL && *len > 0)) {
        return TIDE_EINVAL;
    }
    h = tide__cache_hash(key, klen);
    e = tide__cache_find(&s->cache, key, klen, h);
    if (e != NULL) {
        e->flags |= TIDE__ENT_REF;
        s->hits++;
    } else {
        /* A write-out in flight holds it: RocksDB may not yet. Cache it
         * as if read from RocksDB (a full cache only means no caching). */
        e = tide__spill_find(s, key, klen, h);
        if (e != NULL) {
            s->hits++;
            tide__cache_put(&s->cache, key, klen, h,
                            (e->flags & TIDE__ENT_TOMB) ? NULL
                            : e->vlen ? e->val : "", e->vlen, 0, NULL);
        }
    }
    if (e != NULL) {
        if (e->flags & TIDE__ENT_TOMB) {
            return TIDE_ENOENT;
        }
        if (e->vlen > *len) {
            *len = e->vlen;
            return TIDE_ENOBUFS;
        }
        if (e->vlen > 0) {
            memcpy(buf, e->val, e->vlen);
        }
        *len = e->vlen;
        return TIDE_OK;
    }

    if (s->bulk && tide__store_mode(s, 0) != TIDE_OK) {
        return TIDE_EIO;
    }
    s->misses++;
    ps = rocksdb_get_pinned(s->db, s->ropts, key, klen, &dberr);
    if (dberr != NULL) {
        return db_fail(s, TIDE_EIO, "get failed", dberr);
    }
    if (ps == NULL) {
        /* Remember the absence too: counters read a new key, then set it.
         * A full cache or no memory only means no caching. */
        tide__cache_put(&s->cache, key, klen, h, NULL, 0, 0, NULL);
        return TIDE_ENOENT;
    }
    v = rocksdb_pinnableslice_value(ps, &vlen);
    if (vlen <= UINT32_MAX) {
        tide__cache_put(&s->cache, key, klen, h, v != NULL ? v : "", vlen, 0,
                        NULL);
    }
    if (vlen > *len) {
        *len = vlen;
        rocksdb_pinnableslice_destroy(ps);
        return TIDE_ENOBUFS;
    }
    if (vlen > 0) {
        memcpy(buf, v, vlen);
    }
    *len = vlen;
    rocksdb_pinnableslice_destroy(ps);
    return TIDE_OK;
}

/* Removes entries that are clean now from the dirty list. */
static void
dirty_compact(tide__cache_t *c)
{
    tide__ent_t  *e;
    size_t        i, n = 0;

    for (i = 0; i < c->ndirty; i++) {
        e = c->dirty[i];
        if (e->flags & (TIDE__ENT_DB | TIDE__ENT_LOG)) {
            c->dirty[n++] = e;
        } else {
            e->flags &= ~(uint32_t) TIDE__ENT_LISTED;
        }
    }
    c->ndirty = n;
}

/* What every write of the dirty entries does first: settles a write-out
 * in flight, leaves bulk-load mode, and sorts the dirty list. */
int
tide__store_prepare_write(tide_store_t *s)
{
    int  rc;

    rc = tide__spill_settle(s);
    if (rc == TIDE_OK && s->bulk) {
        rc = tide__store_mode(s, 0);
    }
    if (rc == TIDE_OK) {
        tide__cache_sort_dirty(&s->cache);
    }
    return rc;
}

/* Adds the entries of the dirty list not yet in RocksDB to 'b', in the
 * list's order; returns how many. */
size_t
tide__store_batch(tide_store_t *s, rocksdb_writebatch_t *b)
{
    tide__cache_t  *c = &s->cache;
    tide__ent_t    *e;
    size_t          i, n = 0;

    for (i = 0; i < c->ndirty; i++) {
        e = c->dirty[i];
        if (!(e->flags & TIDE__ENT_DB)) {
            continue;
        }
        if (e->flags & TIDE__ENT_TOMB) {
            rocksdb_writebatch_delete(b, e->key, e->klen);
        } else {
            rocksdb_writebatch_put(b, e->key, e->klen,
                                   e->vlen ? e->val : "", e->vlen);
        }
        n++;
    }
    return n;
}

/* Writes the entries not yet in RocksDB in one WriteBatch, leaving their
 * changelog flag as it is. On failure nothing changes. */
int
tide__store_write_db(tide_store_t *s)
{
    tide__cache_t  *c = &s->cache;
    char           *dberr = NULL;
    size_t          i;
    int             rc;

    rc = tide__store_prepare_write(s);
    if (rc != TIDE_OK) {
        return rc;
    }
    rocksdb_writebatch_clear(s->batch);
    if (tide__store_batch(s, s->batch) == 0) {
        return TIDE_OK;
    }
    rocksdb_write(s->db, s->wopts, s->batch, &dberr);
    rocksdb_writebatch_clear(s->batch);
    if (dberr != NULL) {
        return db_fail(s, TIDE_EIO, "write failed", dberr);
    }
    for (i = 0; i < c->ndirty; i++) {
        c->dirty[i]->flags &= ~(uint32_t) TIDE__ENT_DB;
    }
    dirty_compact(c);
    return TIDE_OK;
}

/* Pushes one changelog record per entry with the changelog flag. */
int
tide__store_push_log(tide_store_t *s)
{
    tide__cache_t  *c = &s->cache;
    tide__ent_t    *e;
    tide_rec_t      rec;
    int64_t         ts = tide_time_get(TIDE_TIME_REAL);
    size_t          i;
    int             rc, result = TIDE_OK;

    for (i = 0; i < c->ndirty; i++) {
        e = c->dirty[i];
        if (!(e->flags & TIDE__ENT_LOG)) {
            continue;
        }
        memset(&rec, 0, sizeof(rec));
        rec.ts = ts;
        rec.partition = s->partition;
        rec.key = e->klen ? e->key : "";
        rec.klen = (int32_t) e->klen;
        if (e->flags & TIDE__ENT_TOMB) {
            rec.val = NULL;
            rec.vlen = -1;
        } else {
            rec.val = e->vlen ? e->val : "";
            rec.vlen = (int32_t) e->vlen;
        }
        if (s->kafka != NULL) {
            rc = tide_kafka_produce(s->kafka, s->ktopic, s->partition, &rec);
            if (rc != TIDE_OK) {
                tide__store_msg(s, rc, "changelog: %s",
                                tide_kafka_errmsg(s->kafka));
                dirty_compact(c);
                return rc;
            }
            e->flags &= ~(uint32_t) TIDE__ENT_LOG;
            s->log_bytes += (int64_t) e->klen + (rec.vlen > 0 ? rec.vlen : 0);
            continue;
        }
        rc = tide_log_push(s->log, &rec);
        if (rc == TIDE_EIO) {
            /* Buffered; only writing out the log's full buffer failed,
             * and the log keeps it for its next flush. */
            result = tide__store_msg(s, rc, "changelog: %s",
                                     tide_log_errmsg(s->log));
        } else if (rc != TIDE_OK) {
            tide__store_msg(s, rc, "changelog: %s", tide_log_errmsg(s->log));
            dirty_compact(c);
            return rc;
        }
        e->flags &= ~(uint32_t) TIDE__ENT_LOG;
        s->log_bytes += (int64_t) e->klen + (rec.vlen > 0 ? rec.vlen : 0);
    }
    dirty_compact(c);
    return result;
}

int
tide_store_flush(tide_store_t *s)
{
    tide__cache_t  *c = &s->cache;
    size_t          i;
    int             rc;

    /* A write-out in flight must be in RocksDB before this returns. */
    rc = tide__spill_settle(s);
    if (rc != TIDE_OK || c->ndirty == 0) {
        return rc;
    }
    rc = tide__store_write_db(s);
    if (rc != TIDE_OK) {
        return rc;
    }
    if (s->log != NULL || s->kafka != NULL) {
        return tide__store_push_log(s);
    }
    for (i = 0; i < c->ndirty; i++) {
        c->dirty[i]->flags &= ~(uint32_t) TIDE__ENT_LOG;
    }
    dirty_compact(c);
    return TIDE_OK;
}

int
tide_store_set(tide_store_t *s, const char *key, size_t klen,
               const char *val, size_t vlen)
{
    uint32_t  h, flags = TIDE__ENT_DB;
    int       rc;

    if (key == NULL || klen > UINT32_MAX || vlen > UINT32_MAX) {
        return tide__store_msg(s, TIDE_EINVAL, "bad key or value (NULL key, "
                               "or 4 GiB or more)");
    }
    if (s->log != NULL || s->kafka != NULL) {
        flags |= TIDE__ENT_LOG;
        if (klen + (val != NULL ? vlen : 0) >
            TIDE__REC_MAX - TIDE__REC_HDR)
        {
            return tide__store_msg(s, TIDE_EINVAL, "key and value of %zu "
                                   "bytes are over the changelog's record "
                                   "limit of %d", klen + vlen,
                                   TIDE__REC_MAX - TIDE__REC_HDR);
        }
    }
    h = tide__cache_hash(key, klen);
    rc = tide__cache_put(&s->cache, key, klen, h, val, vlen, flags, NULL);
    if (rc == TIDE_ENOBUFS) {
        /* Full: write the cache out (on a thread) and go on with a fresh
         * one. */
        rc = tide__spill_start(s);
        if (rc != TIDE_OK) {
            return rc;
        }
        rc = tide__cache_put(&s->cache, key, klen, h, val, vlen, flags, NULL);
    }
    if (rc == TIDE_ENOMEM) {
        return tide__store_msg(s, rc, "out of memory caching a value of %zu "
                               "bytes", vlen);
    }
    return rc;
}

int
tide_store_snapshot(tide_store_t *s, const char *dir, char *err,
                    size_t errlen)
{
    rocksdb_flushoptions_t  *fo;
    rocksdb_checkpoint_t    *cp;
    char                    *dberr = NULL;
    char                     tmp[PATH_MAX];
    int                      rc;

    if (dir == NULL || dir[0] == '\0') {
        return tide__set_err(err, errlen,
                             tide__store_msg(s, TIDE_EINVAL, "no snapshot "
                                             "folder given"),
                             "no snapshot folder given");
    }
    if (s->engine == TIDE_STORE_MEMORY) {
        return tide__set_err(err, errlen,
                             tide__store_msg(s, TIDE_EINVAL, "a memory store "
                                             "has no snapshots"),
                             "a memory store has no snapshots");
    }
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-snap", dir) >= (int) sizeof(tmp)) {
        return tide__set_err(err, errlen,
                             tide__store_msg(s, TIDE_EINVAL, "path too long"),
                             "path too long: %s", dir);
    }
    rc = tide_store_flush(s);
    if (rc == TIDE_OK && s->bulk) {
        rc = tide__store_mode(s, 0);
    }
    if (rc != TIDE_OK) {
        return tide__set_err(err, errlen, rc, "%s", s->errmsg);
    }
    /* The WAL is off, so only flushed memtables are durable. */
    fo = rocksdb_flushoptions_create();
    rocksdb_flushoptions_set_wait(fo, 1);
    rocksdb_flush(s->db, fo, &dberr);
    rocksdb_flushoptions_destroy(fo);
    if (dberr != NULL) {
        rc = db_fail(s, TIDE_EIO, "memtable flush failed", dberr);
        return tide__set_err(err, errlen, rc, "%s", s->errmsg);
    }
    rc = tide_path_remove(tmp, s->errmsg, sizeof(s->errmsg));
    if (rc != TIDE_OK) {
        return tide__set_err(err, errlen, rc, "%s", s->errmsg);
    }
    cp = rocksdb_checkpoint_object_create(s->db, &dberr);
    if (cp != NULL && dberr == NULL) {
        rocksdb_checkpoint_create(cp, tmp, 0, &dberr);
    }
    if (cp != NULL) {
        rocksdb_checkpoint_object_destroy(cp);
    }
    if (dberr != NULL) {
        rc = db_fail(s, TIDE_EIO, "checkpoint failed", dberr);
        tide_path_remove(tmp, NULL, 0);
        return tide__set_err(err, errlen, rc, "%s", s->errmsg);
    }
    rc = tide__dir_swap_in(tmp, dir, s->errmsg, sizeof(s->errmsg));
    if (rc != TIDE_OK) {
        tide_path_remove(tmp, NULL, 0);
        return tide__set_err(err, errlen, rc, "%s", s->errmsg);
    }
    return TIDE_OK;
}

/* Where a restore reads the changelog from: a log reader or a Kafka
 * reader, behind the same three calls. */
typedef struct restore_src_s {
    void        *r;
    int        (*poll)(void *r, tide_rec_t *recs, int n);
    int64_t    (*offset)(void *r);
    const char *(*errmsg)(void *r);
} restore_src_t;

static int
log_poll(void *r, tide_rec_t *recs, int n)
{
    return tide_reader_poll_batch(r, recs, n);
}

static int64_t
log_offset(void *r)
{
    return tide_reader_get_offset(r);
}

static const char *
log_errmsg(void *r)
{
    return tide_reader_errmsg(r);
}

/* A Kafka reader fetches in the background: a poll waits up to this long
 * for records before it says there are none now. */
#define KAFKA_RESTORE_WAIT_MS 500

static int
kafka_poll(void *r, tide_rec_t *recs, int n)
{
    return tide_kreader_poll_batch(r, recs, n < 256 ? n : 256,
                                   KAFKA_RESTORE_WAIT_MS);
}

static int64_t
kafka_offset(void *r)
{
    return tide_kreader_offset(r);
}

static const char *
kafka_errmsg(void *r)
{
    return tide_kreader_errmsg(r);
}

static int
restore_from(tide_store_t *s, const restore_src_t *src, int64_t until,
             int64_t max, int64_t *records, int64_t *bytes)
{
    tide_rec_t  *recs;
    char        *dberr = NULL;
    int64_t      pend_recs = 0, pend_bytes = 0, off, n, left;
    size_t       batch_bytes = 0;
    int          got, i, rc = TIDE_OK, done = 0;

    if (records != NULL) {
        *records = 0;
    }
    if (bytes != NULL) {
        *bytes = 0;
    }
    if (until < 0 || max < 1 || records == NULL ||
        bytes == NULL)
    {
        return tide__store_msg(s, TIDE_EINVAL, "bad restore arguments");
    }
    rc = tide__spill_settle(s);
    if (rc != TIDE_OK) {
        return rc;
    }
    if (s->cache.ndirty > 0) {
        return tide__store_msg(s, TIDE_EINVAL, "restore needs a store "
                               "without unflushed writes (%zu keys are "
                               "dirty)", s->cache.ndirty);
    }
    /* Restore writes RocksDB behind the cache's back: nothing cached
     * may stay. */
    tide__cache_drop_clean(&s->cache, 0);
    rc = tide__store_mode(s, 1);
    if (rc != TIDE_OK) {
        return rc;
    }
    recs = malloc(RESTORE_POLL * sizeof(*recs));
    if (recs == NULL) {
        return tide__store_msg(s, TIDE_ENOMEM, "out of memory");
    }
    rocksdb_writebatch_clear(s->batch);

    while (!done) {
        left = max - (*records + pend_recs);
        off = src->offset(src->r);
        if (left == 0) {
            break;
        }
        if (off >= until) {
            rc = TIDE_ENOENT;
            break;
        }
        /* Records have distinct, growing offsets: no more than until - off
         * of them can be below 'until'. */
        n = left < until - off ? left : until - off;
        if (n > RESTORE_POLL) {
            n = RESTORE_POLL;
        }
        got = src->poll(src->r, recs, (int) n);
        if (got < 0) {
            rc = tide__store_msg(s, got, "changelog: %s",
                                 src->errmsg(src->r));
            break;
        }
        if (got == 0) {
            rc = TIDE_ENOENT;
            break;
        }
        for (i = 0; i < got; i++) {
            tide_rec_t  *rec = &recs[i];

            if (rec->offset >= until) {
                rc = TIDE_ENOENT;
                done = 1;
                break;
            }
            if (rec->key == NULL) {
                rc = tide__store_msg(s, TIDE_ECORRUPT, "changelog record at "
                                     "offset %lld has no key: not a store "
                                     "changelog", (long long) rec->offset);
                done = 1;
                break;
            }
            if (s->engine == TIDE_STORE_ROCKSDB) {
                rc = tide__run_add(s, rec->key, (size_t) rec->klen,
                                   rec->val, rec->val == NULL ? -1
                                   : (int64_t) rec->vlen);
                if (rc != TIDE_OK) {
                    done = 1;
                    break;
                }
                *records += 1;
                *bytes += TIDE__REC_HDR + rec->klen + rec->hlen +
                          (rec->vlen > 0 ? rec->vlen : 0);
                continue;
            }
            if (rec->val == NULL) {
                rocksdb_writebatch_delete(s->batch, rec->key,
                                          (size_t) rec->klen);
            } else {
                rocksdb_writebatch_put(s->batch, rec->key, (size_t) rec->klen,
                                       rec->val, (size_t) rec->vlen);
            }
            pend_recs++;
            pend_bytes += TIDE__REC_HDR + rec->klen + rec->hlen +
                          (rec->vlen > 0 ? rec->vlen : 0);
            batch_bytes += (size_t) rec->klen +
                           (rec->vlen > 0 ? (size_t) rec->vlen : 0);
        }
        if (batch_bytes >= RESTORE_BATCH_BYTES || done) {
            rocksdb_write(s->db, s->wopts, s->batch, &dberr);
            rocksdb_writebatch_clear(s->batch);
            if (dberr != NULL) {
                rc = db_fail(s, TIDE_EIO, "restore write failed", dberr);
                pend_recs = pend_bytes = 0;
                done = 1;
                break;
            }
            *records += pend_recs;
            *bytes += pend_bytes;
            pend_recs = pend_bytes = 0;
            batch_bytes = 0;
        }
    }
    if (pend_recs > 0) {
        rocksdb_write(s->db, s->wopts, s->batch, &dberr);
        rocksdb_writebatch_clear(s->batch);
        if (dberr != NULL) {
            rc = db_fail(s, TIDE_EIO, "restore write failed", dberr);
        } else {
            *records += pend_recs;
            *bytes += pend_bytes;
        }
    }
    free(recs);
    if (rc == TIDE_ENOENT) {
        /* Done for now: what was gathered goes into RocksDB here, inside
         * the restore that it belongs to. */
        int  irc = tide__run_ingest(s, 1);

        if (irc != TIDE_OK) {
            rc = irc;
        } else {
            tide__run_free(s);          /* hundreds of MB after a big one */
        }
    }
    return rc;
}

int
tide_store_restore(tide_store_t *s, tide_reader_t *r, int64_t until,
                   int64_t max, int64_t *records, int64_t *bytes)
{
    restore_src_t  src = { r, log_poll, log_offset, log_errmsg };

    if (r == NULL) {
        if (records != NULL) {
            *records = 0;
        }
        if (bytes != NULL) {
            *bytes = 0;
        }
        return tide__store_msg(s, TIDE_EINVAL, "bad restore arguments");
    }
    return restore_from(s, &src, until, max, records, bytes);
}

int
tide_store_restore_kafka(tide_store_t *s, tide_kreader_t *r, int64_t until,
                         int64_t max, int64_t *records, int64_t *bytes)
{
    restore_src_t  src = { r, kafka_poll, kafka_offset, kafka_errmsg };

    if (r == NULL) {
        if (records != NULL) {
            *records = 0;
        }
        if (bytes != NULL) {
            *bytes = 0;
        }
        return tide__store_msg(s, TIDE_EINVAL, "bad restore arguments");
    }
    return restore_from(s, &src, until, max, records, bytes);
}
