/*
 * The log cleaner: retention (by age and size) for ordinary streams and
 * compaction for '--compact' streams, on closed segments only (never the
 * last one, which writers append to). It takes 'clean.lock', not the
 * append lock, so appends never wait for it.
 *
 * Compaction keeps, per key, only the record with the newest offset, and
 * drops tombstones (nil values) older than delete_retention_ms. A segment
 * is rewritten next to itself and renamed over the old file, so offsets
 * never change and readers holding the old file read it to its end.
 */
#include "log/log.h"
#include "log/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK (1024 * 1024)

/* ---- key -> newest offset ---------------------------------------------- */

typedef struct {
    uint64_t     hash;
    const char  *key;
    int32_t      klen;
    int64_t      offset;
} slot_t;

typedef struct {
    slot_t      *slots;
    size_t       cap;         /* a power of two */
    size_t       count;
    char       **arenas;      /* key copies */
    size_t       narenas;
    size_t       arena_left;
    char        *arena_ptr;
    int64_t      stable;      /* records at or past it are not committed */
} keymap_t;

static uint64_t
fnv1a(const char *p, size_t n)
{
    uint64_t  h = 1469598103934665603ULL;
    size_t    i;

    for (i = 0; i < n; i++) {
        h ^= (unsigned char) p[i];
        h *= 1099511628211ULL;
    }
    return h;
}

static void
keymap_free(keymap_t *m)
{
    size_t  i;

    for (i = 0; i < m->narenas; i++) {
        free(m->arenas[i]);
    }
    free(m->arenas);
    free(m->slots);
}

static slot_t *
keymap_find(keymap_t *m, const char *key, int32_t klen, uint64_t h)
{
    size_t   i = (size_t) h & (m->cap - 1);
    slot_t  *s;

    for (;;) {
        s = &m->slots[i];
        if (s->key == NULL ||
            (s->hash == h && s->klen == klen &&
             memcmp(s->key, key, (size_t) klen) == 0))
        {
            return s;
        }
        i = (i + 1) & (m->cap - 1);
    }
}

static int
keymap_grow(keymap_t *m)
{
    keymap_t  n = *m;
    size_t    i;
    slot_t   *s;

    n.cap = m->cap ? m->cap * 2 : 1024;
    n.slots = calloc(n.cap, sizeof(slot_t));
    if (n.slots == NULL) {
        return -1;
    }
    for (i = 0; i < m->cap; i++) {
        if (m->slots[i].key != NULL) {
            s = keymap_find(&n, m->slots[i].key, m->slots[i].klen,
                            m->slots[i].hash);
            *s = m->slots[i];
        }
    }
    free(m->slots);
    *m = n;
    return 0;
}

/* Records 'offset' as the newest for 'key'. Empty keys get a static
 * non-NULL pointer so that NULL keeps meaning "free slot". */
static int
keymap_put(keymap_t *m, const char *key, int32_t klen, int64_t offset)
{
    uint64_t  h = fnv1a(key, (size_t) klen);
    slot_t   *s;
    char    **na;

    if ((m->count + 1) * 2 > m->cap && keymap_grow(m) != 0) {
        return -1;
    }
    s = keymap_find(m, key, klen, h);
    if (s->key != NULL) {
        s->offset = offset;
        return 0;
    }
    if ((size_t) klen > m->arena_left) {
        size_t  sz = (size_t) klen > CHUNK ? (size_t) klen : CHUNK;

        na = realloc(m->arenas, (m->narenas + 1) * sizeof(char *));
        if (na == NULL) {
            return -1;
        }
        m->arenas = na;
        m->arenas[m->narenas] = malloc(sz);
        if (m->arenas[m->narenas] == NULL) {
            return -1;
        }
        m->arena_ptr = m->arenas[m->narenas++];
        m->arena_left = sz;
    }
    /* Before the first arena exists arena_ptr is NULL, and memcpy to NULL
     * is undefined even for 0 bytes. */
    if (klen > 0) {
        memcpy(m->arena_ptr, key, (size_t) klen);
    }
    s->key = klen > 0 ? m->arena_ptr : "";
    s->klen = klen;
    s->hash = h;
    s->offset = offset;
    m->arena_ptr += klen;
    m->arena_left -= (size_t) klen;
    m->count++;
    return 0;
}

static int64_t
keymap_get(keymap_t *m, const char *key, int32_t klen)
{
    slot_t  *s = keymap_find(m, key, klen, fnv1a(key, (size_t) klen));

    return s->key != NULL ? s->offset : -1;
}

/* ---- segment walking ---------------------------------------------------- */

typedef int (*visit_fn)(void *ctx, const tide_rec_t *rec, const char *raw,
                        size_t size);

/* Calls 'fn' for every whole record of segment 'base' in order, checking
 * that offsets rise from 'base'. Returns 0 when the records run to the
 * end of the file, 1 when bytes at *bad do not parse as a whole record
 * (the caller decides whether that is a torn tail or damage), or -1 with
 * errno set when the file cannot be read or 'fn' failed. */
static int
walk(int dirfd, int64_t base, visit_fn fn, void *ctx, int64_t *bad)
{
    char         name[40], *buf, *nb;
    int          fd, r = 0, rc = 0;
    size_t       cap = CHUNK, have = 0, off, size;
    int64_t      fpos = TIDE__SEG_HDR, prev = base - 1;
    ssize_t      n;
    tide_rec_t   rec;

    *bad = -1;
    tide__seg_name(name, sizeof(name), base, "log");
    fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    buf = malloc(cap);
    if (buf == NULL) {
        close(fd);
        return -1;
    }
    for (;;) {
        n = pread(fd, buf + have, cap - have, fpos);
        if (n < 0) {
            rc = -1;
            break;
        }
        if (n == 0) {
            if (have > 0) {
                *bad = fpos - (int64_t) have;
                rc = 1;
            }
            break;
        }
        have += (size_t) n;
        fpos += n;
        off = 0;
        while ((r = tide__rec_parse(buf + off, have - off, &rec, &size)) > 0) {
            if (rec.offset <= prev) {
                r = -1;
                break;
            }
            prev = rec.offset;
            if (fn(ctx, &rec, buf + off, size) != 0) {
                rc = -1;
                goto out;
            }
            off += size;
        }
        if (r < 0) {
            *bad = fpos - (int64_t) (have - off);
            rc = 1;
            break;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (have == cap) {
            cap *= 2;
            nb = realloc(buf, cap);
            if (nb == NULL) {
                rc = -1;
                break;
            }
            buf = nb;
        }
    }
out:
    free(buf);
    close(fd);
    return rc;
}

static int
visit_map(void *ctx, const tide_rec_t *rec, const char *raw, size_t size)
{
    keymap_t  *m = ctx;

    (void) raw;
    (void) size;
    if (rec->key == NULL || rec->offset >= m->stable) {
        return 0;       /* an uncommitted record supersedes nothing */
    }
    return keymap_put(m, rec->key, rec->klen, rec->offset);
}

typedef struct {
    keymap_t    *map;
    int64_t      base;
    int64_t      tomb_before;  /* tombstones older than this go */
    int          fd;
    int          ifd;
    char        *out;
    size_t       len;
    int64_t      pos;         /* file position of out[0] */
    int64_t      idx_pos;
    int64_t      kept;
    int64_t      dropped;
    int          count_only;
} rewrite_t;

static int
out_flush(rewrite_t *w)
{
    if (w->len > 0 &&
        write(w->fd, w->out, w->len) != (ssize_t) w->len)
    {
        return -1;
    }
    w->pos += (int64_t) w->len;
    w->len = 0;
    return 0;
}

static int
visit_rewrite(void *ctx, const tide_rec_t *rec, const char *raw, size_t size)
{
    rewrite_t  *w = ctx;
    int64_t     newest;
    char        ent[TIDE__INDEX_ENTRY];
    int64_t     at;

    newest = rec->key != NULL && rec->offset < w->map->stable
             ? keymap_get(w->map, rec->key, rec->klen) : rec->offset;
    if (newest != rec->offset ||
        (rec->val == NULL && rec->ts < w->tomb_before))
    {
        w->dropped++;
        return 0;
    }
    w->kept++;
    if (w->count_only) {
        return 0;
    }
    at = w->pos + (int64_t) w->len;
    if (at - w->idx_pos >= TIDE__INDEX_EVERY) {
        tide__st32(ent, (uint32_t) (rec->offset - w->base));
        tide__st32(ent + 4, (uint32_t) at);
        if (write(w->ifd, ent, sizeof(ent)) != (ssize_t) sizeof(ent)) {
            return -1;
        }
        w->idx_pos = at;
    }
    if (w->len + size > CHUNK && out_flush(w) != 0) {
        return -1;
    }
    if (size > CHUNK) {
        return write(w->fd, raw, size) == (ssize_t) size
               ? (w->pos += (int64_t) size, 0) : -1;
    }
    memcpy(w->out + w->len, raw, size);
    w->len += size;
    return 0;
}

/* Rewrites closed segment 'base' keeping only the newest record per key.
 * Returns the bytes freed, or -1. */
static int64_t
compact_seg(int dirfd, int64_t base, keymap_t *map, int64_t tomb_before,
            char *err, size_t errlen)
{
    rewrite_t    w;
    char         name[40], tmp[64], iname[40], itmp[64];
    char         hdr[TIDE__SEG_HDR];
    struct stat  st;
    int64_t      before, bad;

    memset(&w, 0, sizeof(w));
    w.map = map;
    w.base = base;
    w.tomb_before = tomb_before;
    w.count_only = 1;
    if (walk(dirfd, base, visit_rewrite, &w, &bad) != 0) {
        snprintf(err, errlen, "segment %020lld.log: cannot read: %s",
                 (long long) base, bad >= 0 ? "damaged" : strerror(errno));
        return -1;
    }
    if (w.dropped == 0) {
        return 0;
    }
    tide__seg_name(name, sizeof(name), base, "log");
    tide__seg_name(iname, sizeof(iname), base, "index");
    if (w.kept == 0) {
        /* Nothing left: drop the segment; readers skip to the next. */
        if (fstatat(dirfd, name, &st, 0) != 0 ||
            unlinkat(dirfd, name, 0) != 0)
        {
            snprintf(err, errlen, "segment %s: cannot delete: %s", name,
                     strerror(errno));
            return -1;
        }
        unlinkat(dirfd, iname, 0);
        fsync(dirfd);
        return st.st_size;
    }
    snprintf(tmp, sizeof(tmp), "%s.cleaned", name);
    snprintf(itmp, sizeof(itmp), "%s.cleaned", iname);
    if (fstatat(dirfd, name, &st, 0) != 0) {
        return -1;
    }
    before = st.st_size;

    w.count_only = 0;
    w.kept = w.dropped = 0;
    w.out = malloc(CHUNK);
    w.fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    w.ifd = openat(dirfd, itmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                   0644);
    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, TIDE__SEG_MAGIC, 8);
    tide__st32(hdr + 8, TIDE__SEG_VERSION);
    if (w.out == NULL || w.fd < 0 || w.ifd < 0 ||
        write(w.fd, hdr, sizeof(hdr)) != (ssize_t) sizeof(hdr))
    {
        goto fail;
    }
    w.pos = TIDE__SEG_HDR;
    if (walk(dirfd, base, visit_rewrite, &w, &bad) != 0 ||
        out_flush(&w) != 0 ||
        fdatasync(w.fd) != 0)
    {
        goto fail;
    }
    /* Log first: a reader that pairs the new log with the old index sees
     * offsets that do not match and falls back to a scan. */
    if (renameat(dirfd, tmp, dirfd, name) != 0 ||
        renameat(dirfd, itmp, dirfd, iname) != 0)
    {
        goto fail;
    }
    fsync(dirfd);
    close(w.fd);
    close(w.ifd);
    free(w.out);
    return before - w.pos;

fail:
    snprintf(err, errlen, "segment %020lld.log: compaction failed: %s",
             (long long) base, strerror(errno));
    if (w.fd >= 0) {
        close(w.fd);
    }
    if (w.ifd >= 0) {
        close(w.ifd);
    }
    unlinkat(dirfd, tmp, 0);
    unlinkat(dirfd, itmp, 0);
    free(w.out);
    return -1;
}

/* ---- one partition ---------------------------------------------------- */

/* Returns the partition's stable offset (tide_log_set_stable), or
 * INT64_MAX when none was set. */
static int64_t
read_stable(int dirfd)
{
    char       buf[32];
    int        fd;
    ssize_t    n;
    long long  v;

    fd = openat(dirfd, "stable", O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return INT64_MAX;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return 0;                 /* damaged: compact nothing */
    }
    buf[n] = '\0';
    if (sscanf(buf, "%lld", &v) != 1 || v < 0) {
        return 0;
    }
    return v;
}

static int64_t
clean_part(tide_log_t *log, int32_t i, char *err, size_t errlen)
{
    tide__part_t       *pt = &log->parts[i];
    tide_log_params_t  *p = &log->params;
    int64_t            *bases = NULL, freed = 0, total = 0, r, now, bad;
    size_t              n = 0, k;
    int                 fd, rc;
    char                name[40];
    struct stat         st;
    keymap_t            map;

    fd = openat(pt->dirfd, "clean.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        snprintf(err, errlen, "%s/%d/clean.lock: %s", log->dir, i,
                 strerror(errno));
        return TIDE_EIO;
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        snprintf(err, errlen, "%s/%d: another process is cleaning it",
                 log->dir, i);
        return TIDE_EBUSY;
    }
    rc = tide__seg_bases(pt->dirfd, &bases, &n);
    if (rc != TIDE_OK) {
        snprintf(err, errlen, "%s/%d: cannot list segments: %s", log->dir, i,
                 strerror(errno));
        freed = rc;
        goto done;
    }
    if (n < 2) {
        goto done;
    }
    now = tide__now_ms();

    if (!p->compact) {
        for (k = 0; k < n; k++) {
            tide__seg_name(name, sizeof(name), bases[k], "log");
            if (fstatat(pt->dirfd, name, &st, 0) == 0) {
                total += st.st_size;
            }
        }
        /* Delete a prefix of closed segments: old ones, then while the
         * partition is over its size limit. */
        for (k = 0; k + 1 < n; k++) {
            int  old, big;

            tide__seg_name(name, sizeof(name), bases[k], "log");
            if (fstatat(pt->dirfd, name, &st, 0) != 0) {
                break;
            }
            old = p->retention_ms >= 0 &&
                  (int64_t) st.st_mtime * 1000 < now - p->retention_ms;
            big = p->retention_bytes >= 0 &&
                  total - st.st_size >= p->retention_bytes;
            if (!old && !big) {
                break;
            }
            if (unlinkat(pt->dirfd, name, 0) != 0) {
                break;
            }
            tide__seg_name(name, sizeof(name), bases[k], "index");
            unlinkat(pt->dirfd, name, 0);
            total -= st.st_size;
            freed += st.st_size;
        }
        goto done;
    }

    memset(&map, 0, sizeof(map));
    /* Only what was written before this clean started counts: a record
     * appended meanwhile may belong to a commit that sets the stable
     * offset only later. */
    map.stable = read_stable(pt->dirfd);
    {
        int64_t  first, end;

        if (tide_log_get_range(log, i, &first, &end) == TIDE_OK &&
            end < map.stable)
        {
            map.stable = end;
        }
    }
    /* Every closed segment must parse to its end before anything is
     * rewritten: a record that does not parse hides the keys after it, and
     * a rewrite would drop those records and the damage with them. The
     * active segment may end in a record being written. */
    for (k = 0; k < n; k++) {
        rc = walk(pt->dirfd, bases[k], visit_map, &map, &bad);
        if (rc < 0) {
            snprintf(err, errlen, "%s/%d: cannot read segment %020lld.log: "
                     "%s", log->dir, i, (long long) bases[k], strerror(errno));
            keymap_free(&map);
            freed = TIDE_EIO;
            goto done;
        }
        if (rc > 0 && k + 1 < n) {
            snprintf(err, errlen, "%s/%d/%020lld.log: corrupt record at "
                     "byte %lld of a closed segment; compaction stopped and "
                     "changed nothing in this partition; restore the file "
                     "from a copy", log->dir, i, (long long) bases[k],
                     (long long) bad);
            keymap_free(&map);
            freed = TIDE_ECORRUPT;
            goto done;
        }
    }
    for (k = 0; k + 1 < n; k++) {
        r = compact_seg(pt->dirfd, bases[k], &map,
                        now - p->delete_retention_ms, err, errlen);
        if (r < 0) {
            freed = TIDE_EIO;
            break;
        }
        freed += r;
    }
    keymap_free(&map);

done:
    free(bases);
    flock(fd, LOCK_UN);
    close(fd);
    return freed;
}

void *
tide__clean_main(void *arg)
{
    struct {
        tide_log_t *log;
        int32_t     part;
    } *a = arg;
    char  err[TIDE__ERRLEN];
    int64_t r;

    r = clean_part(a->log, a->part, err, sizeof(err));
    if (r < 0 && r != TIDE_EBUSY) {
        tide__warn("stream '%s': background clean failed: %s", a->log->name,
                   err);
    }
    free(a);
    return NULL;
}

int64_t
tide_log_clean(tide_log_t *log, int32_t partition)
{
    int64_t  total = 0, r;
    int32_t  i, from = partition, to = partition + 1;

    if (partition < -1 || partition >= log->nparts) {
        snprintf(log->errmsg, sizeof(log->errmsg), "partition %d out of range: "
                 "stream '%s' has %d", partition, log->name, log->nparts);
        return TIDE_ERANGE;
    }
    if (partition == -1) {
        from = 0;
        to = log->nparts;
    }
    for (i = from; i < to; i++) {
        if (log->parts[i].cleaning) {
            /* Our own background clean holds the lock: let it finish. */
            pthread_join(log->parts[i].cleaner, NULL);
            log->parts[i].cleaning = 0;
        }
        r = clean_part(log, i, log->errmsg, sizeof(log->errmsg));
        if (r < 0) {
            return r;
        }
        total += r;
    }
    return total;
}

int
tide_log_set_stable(tide_log_t *log, int32_t partition, int64_t offset)
{
    tide__part_t  *pt;
    char           buf[32], tmp[48];
    int            fd, n;

    if (partition < 0 || partition >= log->nparts || offset < 0) {
        snprintf(log->errmsg, sizeof(log->errmsg), "bad partition %d or "
                 "offset %lld", partition, (long long) offset);
        return partition < 0 || partition >= log->nparts ? TIDE_ERANGE
                                                         : TIDE_EINVAL;
    }
    pt = &log->parts[partition];
    n = snprintf(buf, sizeof(buf), "%lld\n", (long long) offset);
    snprintf(tmp, sizeof(tmp), "stable.tmp-%ld", (long) getpid());
    fd = openat(pt->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                0644);
    /* No fsync: a barrier lost in a power cut falls back to an older one,
     * which only makes the cleaner keep more. */
    if (fd < 0 || write(fd, buf, (size_t) n) != n || close(fd) != 0 ||
        renameat(pt->dirfd, tmp, pt->dirfd, "stable") != 0)
    {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d/stable: %s",
                 log->dir, partition, strerror(errno));
        if (fd >= 0) {
            unlinkat(pt->dirfd, tmp, 0);
        }
        return TIDE_EIO;
    }
    return TIDE_OK;
}
