/*
 * A restore's records gathered into runs that become SST files, which
 * RocksDB ingests (RocksDB engine only; the memory engine keeps
 * WriteBatches).
 *
 * Replaying a changelog through memtables made RocksDB's flush threads
 * sort every memtable with its comparator (and count each comparison in
 * their per-thread perf context): with 10 M records they were the
 * bottleneck. Here a run of up to RUN_BYTES of records is sorted by a
 * radix sort on 8 key bytes, the newest record of each key kept, written
 * with an SstFileWriter and ingested (by a thread of its own, while the
 * next run is gathered; one at a time); each ingested file is newer than
 * everything before it (RocksDB gives it a global sequence number), so a
 * later run's records win over an earlier one's, as in the changelog.
 *
 * The records of a run count as applied: every path that reads or writes
 * the store leaves bulk mode first (tide__store_mode), which ingests the
 * run. Without the WAL nothing of a restore is durable before the
 * snapshot that follows it, as with memtables.
 */
#include "store/store.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The memory of one run; two exist while one is being written. */
#define RUN_BYTES       (64 * 1024 * 1024)

int
tide__run_add(tide_store_t *s, const char *key, size_t klen, const char *val,
              int64_t vlen)
{
    tide__run_t     *r = &s->run;
    tide__runrec_t  *rec;
    size_t           need = klen + (vlen > 0 ? (size_t) vlen : 0);

    if (r->n == r->capn) {
        size_t           capn = r->capn ? r->capn * 2 : 65536;
        tide__runrec_t  *recs = realloc(r->recs, capn * sizeof(*recs));

        if (recs == NULL) {
            return tide__store_msg(s, TIDE_ENOMEM, "store %s: restore: out "
                                   "of memory", s->dir);
        }
        r->recs = recs;
        r->capn = capn;
    }
    if (r->len + need > r->cap) {
        size_t  cap = r->cap ? r->cap : 1024 * 1024;
        char   *buf;

        while (cap < r->len + need) {
            cap *= 2;
        }
        buf = realloc(r->buf, cap);
        if (buf == NULL) {
            return tide__store_msg(s, TIDE_ENOMEM, "store %s: restore: out "
                                   "of memory", s->dir);
        }
        r->buf = buf;
        r->cap = cap;
    }
    rec = &r->recs[r->n++];
    rec->off = r->len;
    rec->klen = klen;
    rec->vlen = vlen;
    memcpy(r->buf + r->len, key, klen);
    if (vlen > 0) {
        memcpy(r->buf + r->len + klen, val, (size_t) vlen);
    }
    r->len += need;
    /* The run's whole memory: bytes, entries and the two sort arrays. */
    if (r->len + r->n * (sizeof(*rec) + 2 * sizeof(tide__sortkey_t))
        >= (s->ing.run_bytes ? s->ing.run_bytes : RUN_BYTES))
    {
        return tide__run_ingest(s, 0);
    }
    return TIDE_OK;
}

static const char *
run_key(const void *ctx, size_t i, size_t *klen)
{
    const tide__run_t  *r = ctx;

    *klen = r->recs[i].klen;
    return r->buf + r->recs[i].off;
}

/* Sorts the run's records by key, the older record of a key first, and
 * returns the order, in one of the run's two sort arrays (kept from run
 * to run: fresh ones cost a page fault every 4 KiB each time). */
static tide__sortkey_t *
run_sort(tide__run_t *r)
{
    if (r->sort_cap < r->n) {
        free(r->sort_a);
        free(r->sort_b);
        r->sort_a = malloc(r->capn * sizeof(tide__sortkey_t));
        r->sort_b = malloc(r->capn * sizeof(tide__sortkey_t));
        r->sort_cap = r->capn;
        if (r->sort_a == NULL || r->sort_b == NULL) {
            free(r->sort_a);
            free(r->sort_b);
            r->sort_a = r->sort_b = NULL;
            r->sort_cap = 0;
            return NULL;
        }
    }
    return tide__key_sort(r->sort_a, r->sort_b, r->n, run_key, r);
}

/* Writes the newest record of each key of run 'r', in 'order', into an
 * SST file and has RocksDB ingest it. Touches nothing of 's' but reads
 * its db, options and folder, so that the writer thread can run it;
 * an error is put into 'err'. */
static int
run_write(tide_store_t *s, tide__run_t *r, const tide__sortkey_t *order,
          char *err, size_t errlen)
{
    rocksdb_envoptions_t                 *eo;
    rocksdb_sstfilewriter_t              *w;
    rocksdb_ingestexternalfileoptions_t  *io;
    char                                 *dberr = NULL;
    char                                  path[PATH_MAX];
    const char                           *paths[1], *what = NULL;
    size_t                                i;

    if (snprintf(path, sizeof(path), "%s/tide-restore.sst", s->dir)
        >= (int) sizeof(path))
    {
        snprintf(err, errlen, "store %s: restore: path too long", s->dir);
        return TIDE_EINVAL;
    }
    eo = rocksdb_envoptions_create();
    w = rocksdb_sstfilewriter_create(eo, s->opts);
    rocksdb_sstfilewriter_open(w, path, &dberr);
    for (i = 0; dberr == NULL && i < r->n; i++) {
        const tide__runrec_t  *rec = &r->recs[order[i].i];
        const char            *k = r->buf + rec->off;

        if (i + 1 < r->n && r->recs[order[i + 1].i].klen == rec->klen
            && memcmp(r->buf + r->recs[order[i + 1].i].off, k,
                      rec->klen) == 0)
        {
            continue;                   /* a newer record of the key */
        }
        if (rec->vlen < 0) {
            rocksdb_sstfilewriter_delete(w, k, rec->klen, &dberr);
        } else {
            rocksdb_sstfilewriter_put(w, k, rec->klen, k + rec->klen,
                                      (size_t) rec->vlen, &dberr);
        }
    }
    if (dberr == NULL) {
        rocksdb_sstfilewriter_finish(w, &dberr);
    }
    rocksdb_sstfilewriter_destroy(w);
    rocksdb_envoptions_destroy(eo);
    if (dberr != NULL) {
        what = "writing an SST file failed";
    } else {
        io = rocksdb_ingestexternalfileoptions_create();
        rocksdb_ingestexternalfileoptions_set_move_files(io, 1);
        paths[0] = path;
        rocksdb_ingest_external_file(s->db, paths, 1, io, &dberr);
        rocksdb_ingestexternalfileoptions_destroy(io);
        if (dberr != NULL) {
            what = "ingesting an SST file failed";
        }
    }
    unlink(path);                       /* moved in, or a failed one */
    if (what != NULL) {
        snprintf(err, errlen, "store %s: restore: %s: %s", s->dir, what,
                 dberr);
        rocksdb_free(dberr);
        return TIDE_EIO;
    }
    return TIDE_OK;
}

static void *
writer_main(void *arg)
{
    tide_store_t  *s = arg;

    /* Perf counters are per thread and on by default (tide_store_new). */
    rocksdb_set_perf_level(rocksdb_disable);
    s->ing.rc = run_write(s, &s->ing.wrun, s->ing.order, s->ing.err,
                          sizeof(s->ing.err));
    return NULL;
}

/* Waits for the run being written, if any; returns its result. */
static int
writer_join(tide_store_t *s)
{
    tide__ingest_t  *g = &s->ing;

    if (!g->running) {
        return TIDE_OK;
    }
    pthread_join(g->thread, NULL);
    g->running = 0;
    g->wrun.n = 0;
    g->wrun.len = 0;
    if (g->rc != TIDE_OK) {
        return tide__store_msg(s, g->rc, "%s", g->err);
    }
    return TIDE_OK;
}

int
tide__run_ingest(tide_store_t *s, int wait)
{
    tide__ingest_t  *g = &s->ing;
    tide__run_t      t;
    tide__sortkey_t        *order;
    int              rc;

    rc = writer_join(s);
    if (rc != TIDE_OK || s->run.n == 0) {
        return rc;
    }
    order = run_sort(&s->run);
    if (order == NULL) {
        return tide__store_msg(s, TIDE_ENOMEM, "store %s: restore: out of "
                               "memory", s->dir);
    }
    /* The sorted run goes to the writer; its old buffers (empty) gather
     * the next one. */
    t = g->wrun;
    g->wrun = s->run;
    s->run = t;
    s->run.n = 0;
    s->run.len = 0;
    g->order = order;
    if (!wait && pthread_create(&g->thread, NULL, writer_main, s) == 0) {
        g->running = 1;
        return TIDE_OK;
    }
    rc = run_write(s, &g->wrun, order, g->err, sizeof(g->err));
    g->wrun.n = 0;
    g->wrun.len = 0;
    if (rc != TIDE_OK) {
        return tide__store_msg(s, rc, "%s", g->err);
    }
    return TIDE_OK;
}

static void
run_release(tide__run_t *r)
{
    free(r->buf);
    free(r->recs);
    free(r->sort_a);
    free(r->sort_b);
    memset(r, 0, sizeof(*r));
}

void
tide__run_free(tide_store_t *s)
{
    writer_join(s);
    run_release(&s->run);
    run_release(&s->ing.wrun);
}
