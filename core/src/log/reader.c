/*
 * Readers: sequential reads of one partition from any offset. A reader
 * owns its file descriptor and a buffer that records are parsed in place
 * from; it follows appends of any process and moves to the next segment
 * once the writer has rolled (a writer never appends to a segment after
 * creating the next one, so a reader that sees a newer segment re-reads
 * its current one to the end before moving on).
 */
#include "log/log.h"
#include "log/format.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define READ_CHUNK (1024 * 1024)

struct tide_reader_s {
    tide_log_t  *log;
    int32_t      part;
    int          fd;          /* current segment, -1 before the first */
    int64_t      seg_base;
    int64_t      fpos;        /* file position of buf[hi] */
    int64_t      want;        /* skip records below this offset */
    int64_t      next;        /* offset after the last record returned */
    char        *buf;
    size_t       cap;
    size_t       lo;          /* first unparsed byte */
    size_t       hi;          /* end of the bytes read */
    int          hinted;      /* fpos came from the index: check it */
    int64_t      seg_last;    /* offset of the last record parsed in this
                               * segment, -1 before the first */
    int64_t      chk_pos;     /* a partial record at chk_pos with bytes up
                               * to chk_end was found to be no damage */
    int64_t      chk_end;
    int64_t      reread_pos;  /* unparsed bytes at this position were read
                               * again from the file, -1: not yet */
    int          idle;        /* fd closed at the end of the log; ino and
                               * dev say which file to open again */
    ino_t        ino;
    dev_t        dev;
    char         errmsg[TIDE__ERRLEN];
};

static int
reader_open_seg(tide_reader_t *r, int64_t base, int64_t offset)
{
    tide__part_t  *pt = &r->log->parts[r->part];
    char           name[40];
    struct stat    st;
    int            fd, ifd, rc;

    tide__seg_name(name, sizeof(name), base, "log");
    fd = openat(pt->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%s: %s", r->log->dir,
                 r->part, name, strerror(errno));
        return errno == ENOENT ? TIDE_ENOENT : TIDE_EIO;
    }
    if (fstat(fd, &st) != 0) {
        close(fd);
        return TIDE_EIO;
    }
    rc = tide__seg_check_hdr(fd, st.st_size);
    if (rc != TIDE_OK) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%s: not a tide segment "
                 "(bad header at byte 0)", r->log->dir, r->part, name);
        close(fd);
        return rc;
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    r->fd = fd;
    r->seg_base = base;
    r->lo = r->hi = 0;
    r->fpos = TIDE__SEG_HDR;
    r->hinted = 0;
    r->seg_last = -1;
    r->chk_pos = r->chk_end = -1;
    r->reread_pos = -1;
    if (offset > base) {
        tide__seg_name(name, sizeof(name), base, "index");
        ifd = openat(pt->dirfd, name, O_RDONLY | O_CLOEXEC);
        r->fpos = tide__idx_seek(ifd, fd, base, offset, st.st_size);
        r->hinted = r->fpos > TIDE__SEG_HDR;
        if (ifd >= 0) {
            close(ifd);
        }
    }
    return TIDE_OK;
}

/* Opens the current segment again and finds 'want' in it. */
static int
reader_reopen(tide_reader_t *r)
{
    int  rc = reader_open_seg(r, r->seg_base, r->want);

    return rc == TIDE_OK ? 1 : rc;
}

/* Finds the segment after the current one; 0 with *base set, or 1 when
 * there is none yet. */
static int
next_seg(tide_reader_t *r, int64_t *base)
{
    int64_t  *bases;
    size_t    n, i;
    int       rc;

    rc = tide__seg_bases(r->log->parts[r->part].dirfd, &bases, &n);
    if (rc != TIDE_OK) {
        return rc;
    }
    rc = 1;
    for (i = 0; i < n; i++) {
        if (bases[i] > r->seg_base) {
            *base = bases[i];
            rc = 0;
            break;
        }
    }
    free(bases);
    return rc;
}

/* Positions the reader at the segment holding 'offset' (or the first one
 * when the offset is gone). */
static int
reader_seek(tide_reader_t *r, int64_t offset)
{
    int64_t  *bases, base;
    size_t    n, i;
    int       rc;

    rc = tide__seg_bases(r->log->parts[r->part].dirfd, &bases, &n);
    if (rc != TIDE_OK) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d: cannot list segments",
                 r->log->dir, r->part);
        return rc;
    }
    if (n == 0) {
        free(bases);
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d: no segments",
                 r->log->dir, r->part);
        return TIDE_ENOENT;
    }
    base = bases[0];
    for (i = 0; i < n; i++) {
        if (bases[i] <= offset) {
            base = bases[i];
        }
    }
    free(bases);
    r->want = offset;
    return reader_open_seg(r, base, offset);
}

int
tide_reader_new(tide_reader_t **out, tide_log_t *log, int32_t partition,
                int64_t offset)
{
    tide_reader_t  *r;
    int64_t         start, end;
    int             rc;

    *out = NULL;
    if (partition < 0 || partition >= log->nparts) {
        snprintf(log->errmsg, sizeof(log->errmsg), "partition %d out of range: "
                 "stream '%s' has %d", partition, log->name, log->nparts);
        return TIDE_ERANGE;
    }
    if (offset < TIDE_OFFSET_BEGINNING) {
        snprintf(log->errmsg, sizeof(log->errmsg), "bad offset %lld: use an "
                 "offset >= 0, TIDE_OFFSET_BEGINNING or TIDE_OFFSET_END",
                 (long long) offset);
        return TIDE_EINVAL;
    }
    if (offset == TIDE_OFFSET_END) {
        rc = tide_log_get_range(log, partition, &start, &end);
        if (rc != TIDE_OK) {
            return rc;
        }
        offset = end;
    } else if (offset == TIDE_OFFSET_BEGINNING) {
        offset = 0;
    }
    r = calloc(1, sizeof(*r));
    if (r != NULL) {
        r->cap = READ_CHUNK;
        r->buf = malloc(r->cap);
    }
    if (r == NULL || r->buf == NULL) {
        free(r);
        snprintf(log->errmsg, sizeof(log->errmsg), "out of memory for a "
                 "reader of partition %d", partition);
        return TIDE_ENOMEM;
    }
    r->log = log;
    r->part = partition;
    r->fd = -1;
    rc = reader_seek(r, offset);
    if (rc != TIDE_OK) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s", r->errmsg);
        free(r->buf);
        free(r);
        return rc;
    }
    r->next = offset;
    log->refs++;
    *out = r;
    return TIDE_OK;
}

void
tide_reader_free(tide_reader_t *r)
{
    if (r == NULL) {
        return;
    }
    if (r->fd >= 0) {
        close(r->fd);
    }
    free(r->buf);
    tide__log_unref(r->log);
    free(r);
}

/* Byte position in the segment of the first unparsed byte. */
static int64_t
unparsed_pos(const tide_reader_t *r)
{
    return r->fpos - (int64_t) (r->hi - r->lo);
}

/* Drops the bytes read after the last whole record, to read them again
 * from the file: another writer may have cut a torn tail this reader had
 * read, and written new records there. */
static void
reread(tide_reader_t *r)
{
    r->reread_pos = unparsed_pos(r);
    r->fpos = r->reread_pos;
    r->hi = r->lo;
}

/* Called at the end of the file: notices that the file shrank below the
 * bytes read (a torn tail was cut), and reads again from the last whole
 * record, or, when records already returned were cut too (a failed
 * write taken back), from the index, skipping offsets already returned.
 * Returns 1 when the reader moved back, 0 when the file did not shrink,
 * or a negative code. */
static int
shrunk(tide_reader_t *r)
{
    struct stat  st;

    if (fstat(r->fd, &st) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d: stat failed: %s",
                 r->log->dir, r->part, strerror(errno));
        return TIDE_EIO;
    }
    if (st.st_size >= r->fpos) {
        return 0;
    }
    if (st.st_size >= unparsed_pos(r)) {
        reread(r);
        return 1;
    }
    return reader_reopen(r);
}

/* Reads more bytes of the current segment. Returns 1 when some arrived,
 * 0 at its end, or a negative code. Moves parsed-past bytes out first, so
 * it invalidates every record pointer handed out. */
static int
fill(tide_reader_t *r)
{
    ssize_t  n;
    size_t   need;

    if (r->lo > 0) {
        memmove(r->buf, r->buf + r->lo, r->hi - r->lo);
        r->hi -= r->lo;
        r->lo = 0;
    }
    if (r->hi >= 4) {
        need = (size_t) tide__ld32(r->buf) + 4;
        if (need > r->cap && need <= TIDE__REC_MAX + 4u) {
            char  *nb = realloc(r->buf, need);

            if (nb == NULL) {
                return TIDE_ENOMEM;
            }
            r->buf = nb;
            r->cap = need;
        }
    }
    if (r->hi == r->cap) {
        return 0;
    }
    for (;;) {
        n = pread(r->fd, r->buf + r->hi, r->cap - r->hi, r->fpos);
        if (n >= 0) {
            break;
        }
        if (errno != EINTR) {
            snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d: read failed: %s",
                     r->log->dir, r->part, strerror(errno));
            return TIDE_EIO;
        }
    }
    if (n == 0) {
        return shrunk(r);
    }
    r->hi += (size_t) n;
    r->fpos += n;
    return 1;
}

static int64_t
last_parsed(const tide_reader_t *r)
{
    return r->seg_last >= 0 ? r->seg_last : r->seg_base - 1;
}

/* Called at the end of the active segment with a partial record pending:
 * a writer may be writing it (or died writing it: the next writer cuts
 * it), but when whole records follow it, its length field is damaged;
 * unless the bytes were read before another writer cut them and wrote
 * new ones, so they are read again first. Returns 0 (wait), 1 (read
 * again) or TIDE_ECORRUPT with errmsg set. */
static int
check_partial(tide_reader_t *r)
{
    int64_t  pos = unparsed_pos(r), at;
    int      rc;

    if (pos == r->chk_pos && r->fpos == r->chk_end) {
        return 0;
    }
    rc = tide__seg_resync(r->fd, pos + 1, r->fpos, last_parsed(r), &at);
    if (rc < 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%020lld.log: cannot "
                 "read: %s", r->log->dir, r->part, (long long) r->seg_base,
                 tide_strerror(rc));
        return rc;
    }
    if (rc == 1 && r->reread_pos != pos) {
        reread(r);
        return 1;
    }
    if (rc == 1) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%020lld.log: corrupt "
                 "record at byte %lld (after offset %lld): its length runs "
                 "past the end of the file, yet whole records follow it (at "
                 "byte %lld); the records before it are readable",
                 r->log->dir, r->part, (long long) r->seg_base,
                 (long long) pos, (long long) last_parsed(r), (long long) at);
        return TIDE_ECORRUPT;
    }
    r->chk_pos = pos;
    r->chk_end = r->fpos;
    return 0;
}

/* Offsets of an ordinary stream are dense: the next segment must start
 * right after the last record of this one. Retention deletes whole
 * segments from the start only, and the one a reader holds open is then
 * gone from the folder too, so a gap after a segment that is still there
 * is damage: a closed segment cut short, or a middle one deleted.
 * Compaction leaves gaps on purpose, so compacted streams are not
 * checked. Returns TIDE_OK or TIDE_ECORRUPT with errmsg set. */
static int
gap_check(tide_reader_t *r, int64_t base)
{
    int64_t      expected = r->seg_last >= 0 ? r->seg_last + 1 : r->seg_base;
    struct stat  st;

    if (r->log->params.compact || base == expected) {
        return TIDE_OK;
    }
    if (fstat(r->fd, &st) == 0 && st.st_nlink == 0) {
        return TIDE_OK;                 /* deleted by retention meanwhile */
    }
    snprintf(r->errmsg, sizeof(r->errmsg), "partition %d: offsets %lld to "
             "%lld are missing: expected offset %lld after segment "
             "%s/%d/%020lld.log, but the next segment is %020lld.log; a "
             "segment was cut short or deleted; restore it from a copy",
             r->part, (long long) expected, (long long) (base - 1),
             (long long) expected, r->log->dir, r->part,
             (long long) r->seg_base, (long long) base);
    return TIDE_ECORRUPT;
}

/* Called at the end of the current segment's bytes: moves to the next
 * segment when one exists. Returns 1 when it moved, 0 when there is no
 * newer segment yet, or a negative code. */
static int
advance(tide_reader_t *r)
{
    int64_t  base = 0;
    int      rc;

    rc = next_seg(r, &base);
    if (rc < 0) {
        return rc;
    }
    if (rc == 1) {
        return r->hi > r->lo ? check_partial(r) : 0;
    }
    /* The writer rolled: read what it wrote to this segment before. */
    rc = fill(r);
    if (rc != 0) {
        return rc < 0 ? rc : 1;
    }
    if (r->hi > r->lo) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%020lld.log: corrupt "
                 "record at byte %lld (after offset %lld): its length runs "
                 "past the end of this closed segment (%zu bytes left); the "
                 "records before it are readable", r->log->dir, r->part,
                 (long long) r->seg_base, (long long) unparsed_pos(r),
                 (long long) last_parsed(r), r->hi - r->lo);
        return TIDE_ECORRUPT;
    }
    rc = gap_check(r, base);
    if (rc != TIDE_OK) {
        return rc;
    }
    rc = reader_open_seg(r, base, r->want);
    return rc == TIDE_OK ? 1 : rc;
}

/* Parses the next record without refilling. Returns 1, 0 (need bytes) or
 * TIDE_ECORRUPT. */
static int
parse_next(tide_reader_t *r, tide_rec_t *rec)
{
    size_t  size;
    int     p;

    for (;;) {
        p = tide__rec_parse(r->buf + r->lo, r->hi - r->lo, rec, &size);
        if (p == 0) {
            return 0;
        }
        if (r->hinted && (p < 0 || rec->offset > r->want)) {
            /* A stale index (a segment being compacted): scan instead. */
            r->hinted = 0;
            r->lo = r->hi = 0;
            r->fpos = TIDE__SEG_HDR;
            return 0;
        }
        r->hinted = 0;
        if (p < 0 && r->reread_pos != unparsed_pos(r)) {
            /* Perhaps bytes of a torn tail that was cut and written over
             * since they were read: read them again before judging. */
            reread(r);
            return 0;
        }
        if (p < 0) {
            snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%020lld.log: "
                     "corrupt record at byte %lld (after offset %lld); the "
                     "records before it are readable",
                     r->log->dir, r->part, (long long) r->seg_base,
                     (long long) unparsed_pos(r), (long long) last_parsed(r));
            return TIDE_ECORRUPT;
        }
        if (!r->log->params.compact &&
            (r->seg_last >= 0 || unparsed_pos(r) == TIDE__SEG_HDR) &&
            rec->offset != last_parsed(r) + 1)
        {
            /* Offsets of an ordinary stream are dense, from the base in
             * the segment's name on. */
            snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%020lld.log: the "
                     "record at byte %lld has offset %lld, expected offset "
                     "%lld; records are missing or out of place",
                     r->log->dir, r->part, (long long) r->seg_base,
                     (long long) unparsed_pos(r), (long long) rec->offset,
                     (long long) (last_parsed(r) + 1));
            return TIDE_ECORRUPT;
        }
        r->lo += size;
        r->seg_last = rec->offset;
        r->reread_pos = -1;
        if (rec->offset < r->want) {
            continue;
        }
        rec->partition = r->part;
        r->want = rec->offset + 1;
        r->next = rec->offset + 1;
        return 1;
    }
}

/* A reader at the end of the log holds no descriptor, so that a process
 * may follow many partitions: it closes its segment once it has read it
 * all, and opens it again at the next poll. The same file goes on where
 * it stopped; a file replaced meanwhile (compacted) or gone (retention,
 * or emptied by compaction) is looked up again by offset. */
static void
reader_sleep(tide_reader_t *r)
{
    struct stat  st;

    if (r->lo == r->hi && fstat(r->fd, &st) == 0) {
        r->ino = st.st_ino;
        r->dev = st.st_dev;
        close(r->fd);
        r->fd = -1;
        r->idle = 1;
    }
}

static int
reader_wake(tide_reader_t *r)
{
    tide__part_t  *pt = &r->log->parts[r->part];
    char           name[40];
    struct stat    st;
    int            fd;

    r->idle = 0;
    tide__seg_name(name, sizeof(name), r->seg_base, "log");
    fd = openat(pt->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT) {
        return reader_seek(r, r->want);
    }
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(r->errmsg, sizeof(r->errmsg), "%s/%d/%s: %s", r->log->dir,
                 r->part, name, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        return TIDE_EIO;
    }
    if (st.st_ino == r->ino && st.st_dev == r->dev) {
        r->fd = fd;
        return TIDE_OK;
    }
    close(fd);
    return reader_open_seg(r, r->seg_base, r->want);
}

int
tide_reader_poll_batch(tide_reader_t *r, tide_rec_t *recs, int n)
{
    int  got = 0, rc;

    if (n < 1) {
        return TIDE_EINVAL;
    }
    if (r->idle) {
        rc = reader_wake(r);
        if (rc != TIDE_OK) {
            r->idle = r->fd < 0;        /* try again at the next poll */
            return rc;
        }
    }
    for (;;) {
        while (got < n) {
            rc = parse_next(r, &recs[got]);
            if (rc < 0) {
                return got > 0 ? got : rc;
            }
            if (rc == 0) {
                break;
            }
            got++;
        }
        if (got > 0) {
            /* Refilling would move the bytes the records point into. */
            return got;
        }
        rc = fill(r);
        if (rc < 0) {
            return rc;
        }
        if (rc > 0) {
            continue;
        }
        rc = advance(r);
        if (rc < 0) {
            return rc;
        }
        if (rc == 0) {
            reader_sleep(r);
            return 0;
        }
    }
}

int
tide_reader_poll(tide_reader_t *r, tide_rec_t *rec)
{
    int  rc = tide_reader_poll_batch(r, rec, 1);

    if (rc == 0) {
        return TIDE_EAGAIN;
    }
    return rc < 0 ? rc : TIDE_OK;
}

int64_t
tide_reader_get_offset(const tide_reader_t *r)
{
    return r->next;
}

const char *
tide_reader_errmsg(const tide_reader_t *r)
{
    return r->errmsg[0] ? r->errmsg : "no error";
}
