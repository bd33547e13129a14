/*
 * Segment files: naming, creation, record parsing, scanning and the sparse
 * offset index. Everything here works on file descriptors owned by the
 * caller; nothing here takes locks.
 */
#include "log/log.h"
#include "log/format.h"
#include "util/crc32c.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCAN_CHUNK (1024 * 1024)

int64_t
tide__now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void
tide__seg_name(char *buf, size_t len, int64_t base, const char *ext)
{
    snprintf(buf, len, "%020lld.%s", (long long) base, ext);
}

static int
cmp_i64(const void *a, const void *b)
{
    int64_t  x = *(const int64_t *) a;
    int64_t  y = *(const int64_t *) b;

    return (x > y) - (x < y);
}

/* Lists the base offsets of the segments in 'dirfd', sorted. Caller owns
 * *bases (free). Returns TIDE_OK, TIDE_EIO or TIDE_ENOMEM. */
int
tide__seg_bases(int dirfd, int64_t **bases, size_t *n)
{
    DIR            *d;
    struct dirent  *de;
    int64_t        *v = NULL, *nv;
    size_t          cnt = 0, cap = 0, i;
    int             fd;
    char           *end;
    long long       base;

    *bases = NULL;
    *n = 0;
    fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return TIDE_EIO;
    }
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return TIDE_EIO;
    }
    while ((de = readdir(d)) != NULL) {
        if (strlen(de->d_name) != 24 || strcmp(de->d_name + 20, ".log")) {
            continue;
        }
        for (i = 0; i < 20; i++) {
            if (de->d_name[i] < '0' || de->d_name[i] > '9') {
                break;
            }
        }
        if (i != 20) {
            continue;
        }
        base = strtoll(de->d_name, &end, 10);
        if (cnt == cap) {
            cap = cap ? cap * 2 : 16;
            nv = realloc(v, cap * sizeof(*v));
            if (nv == NULL) {
                free(v);
                closedir(d);
                return TIDE_ENOMEM;
            }
            v = nv;
        }
        v[cnt++] = base;
    }
    closedir(d);
    if (cnt > 1) {
        qsort(v, cnt, sizeof(*v), cmp_i64);
    }
    *bases = v;
    *n = cnt;
    return TIDE_OK;
}

/* Checks the 16-byte header of a segment of 'size' bytes. Returns TIDE_OK,
 * TIDE_ECORRUPT or TIDE_EIO. */
int
tide__seg_check_hdr(int fd, int64_t size)
{
    char  hdr[TIDE__SEG_HDR];

    if (size < TIDE__SEG_HDR) {
        return TIDE_ECORRUPT;
    }
    if (pread(fd, hdr, sizeof(hdr), 0) != (ssize_t) sizeof(hdr)) {
        return TIDE_EIO;
    }
    if (memcmp(hdr, TIDE__SEG_MAGIC, 8) != 0 ||
        tide__ld32(hdr + 8) != TIDE__SEG_VERSION)
    {
        return TIDE_ECORRUPT;
    }
    return TIDE_OK;
}

/* Makes segment file 'name' in 'dirfd' with its header, whole: written
 * and synced under a temporary name first, then renamed, so that a
 * follower in another process never opens a new segment before its
 * header is there. (A crash between the two leaves a ".tmp" file, which
 * no listing takes for a segment and the next creation overwrites.)
 * Returns the file opened for writing, or -1 with errno set. */
static int
seg_new(int dirfd, const char *name)
{
    char  tmp[48], hdr[TIDE__SEG_HDR];
    int   fd, e;

    snprintf(tmp, sizeof(tmp), "%s.tmp", name);
    fd = openat(dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        return -1;
    }
    memset(hdr, 0, sizeof(hdr));
    memcpy(hdr, TIDE__SEG_MAGIC, 8);
    tide__st32(hdr + 8, TIDE__SEG_VERSION);
    if (pwrite(fd, hdr, sizeof(hdr), 0) != (ssize_t) sizeof(hdr) ||
        fdatasync(fd) != 0 || renameat(dirfd, tmp, dirfd, name) != 0 ||
        fsync(dirfd) != 0)
    {
        e = errno;
        close(fd);
        (void) unlinkat(dirfd, tmp, 0);
        errno = e;
        return -1;
    }
    return fd;
}

/* Opens (creating when missing) segment 'base' and its index for writing.
 * A segment shorter than its header (a crash during creation) gets its
 * header written again. The new files' folder entry is made durable.
 * Returns TIDE_OK, TIDE_ECORRUPT (bad header) or TIDE_EIO. */
int
tide__seg_create(int dirfd, int64_t base, int *logfd, int *idxfd)
{
    char         name[40], hdr[TIDE__SEG_HDR];
    struct stat  st;
    int          lfd, ifd, rc;

    *logfd = -1;
    *idxfd = -1;
    tide__seg_name(name, sizeof(name), base, "log");
    lfd = openat(dirfd, name, O_RDWR | O_CLOEXEC);
    if (lfd < 0 && errno == ENOENT) {
        lfd = seg_new(dirfd, name);
        if (lfd < 0) {
            return TIDE_EIO;
        }
        st.st_size = TIDE__SEG_HDR;
    } else if (lfd < 0) {
        return TIDE_EIO;
    } else if (fstat(lfd, &st) != 0) {
        close(lfd);
        return TIDE_EIO;
    }
    if (st.st_size < TIDE__SEG_HDR) {
        memset(hdr, 0, sizeof(hdr));
        memcpy(hdr, TIDE__SEG_MAGIC, 8);
        tide__st32(hdr + 8, TIDE__SEG_VERSION);
        if (ftruncate(lfd, 0) != 0 ||
            pwrite(lfd, hdr, sizeof(hdr), 0) != (ssize_t) sizeof(hdr) ||
            fdatasync(lfd) != 0 || fsync(dirfd) != 0)
        {
            close(lfd);
            return TIDE_EIO;
        }
    } else if ((rc = tide__seg_check_hdr(lfd, st.st_size)) != TIDE_OK) {
        close(lfd);
        return rc;
    }
    tide__seg_name(name, sizeof(name), base, "index");
    ifd = openat(dirfd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (ifd < 0) {
        close(lfd);
        return TIDE_EIO;
    }
    *logfd = lfd;
    *idxfd = ifd;
    return TIDE_OK;
}

/* Parses one record at 'p' with 'avail' bytes readable. Returns 1 with
 * *rec and *size (bytes taken) set, 0 when the record is not all there
 * yet, -1 when the bytes are not a valid record. */
int
tide__rec_parse(const char *p, size_t avail, tide_rec_t *rec, size_t *size)
{
    uint32_t  len;
    int32_t   klen, vlen, hlen;
    int64_t   body;

    if (avail < 4) {
        return 0;
    }
    len = tide__ld32(p);
    if (len < TIDE__REC_HDR - 4 || len > TIDE__REC_MAX) {
        return -1;
    }
    if (avail < (size_t) len + 4) {
        return 0;
    }
    if (tide__crc32c(0, p + 8, len - 4) != tide__ld32(p + 4)) {
        return -1;
    }
    memcpy(&klen, p + 24, 4);
    memcpy(&vlen, p + 28, 4);
    memcpy(&hlen, p + 32, 4);
    body = (int64_t) len - (TIDE__REC_HDR - 4);
    if (klen < -1 || vlen < -1 || hlen < 0 ||
        (int64_t) (klen > 0 ? klen : 0) + (vlen > 0 ? vlen : 0) + hlen != body)
    {
        return -1;
    }
    rec->offset = tide__ld64(p + 8);
    rec->ts = tide__ld64(p + 16);
    rec->klen = klen;
    rec->vlen = vlen;
    rec->hlen = hlen;
    p += TIDE__REC_HDR;
    rec->key = klen >= 0 ? p : NULL;
    p += klen > 0 ? klen : 0;
    rec->val = vlen >= 0 ? p : NULL;
    p += vlen > 0 ? vlen : 0;
    rec->hdrs = hlen > 0 ? p : NULL;
    *size = (size_t) len + 4;
    return 1;
}

/* Scans the records of a segment from byte 'pos' to its end, checking each
 * CRC and that offsets rise and are >= 'base'. With idxfd >= 0, appends an
 * index entry for every record that starts TIDE__INDEX_EVERY bytes or more
 * after *idx_pos, at *idx_end, and updates both. Returns TIDE_OK (res->torn
 * says whether bytes after res->end failed), TIDE_EIO or TIDE_ENOMEM. */
int
tide__seg_scan(int fd, int64_t pos, int64_t base, tide__scan_t *res,
               int idxfd, int64_t *idx_pos, int64_t *idx_end)
{
    char        *buf, ent[TIDE__INDEX_ENTRY];
    size_t       cap = SCAN_CHUNK, have = 0, off, size;
    ssize_t      n = 0;
    int64_t      fpos = pos, prev = base - 1;
    tide_rec_t   rec;
    int          r, eof = 0;

    memset(res, 0, sizeof(*res));
    res->end = pos;
    res->last = -1;
    res->first = -1;
    buf = malloc(cap);
    if (buf == NULL) {
        return TIDE_ENOMEM;
    }
    for (;;) {
        if (!eof && have < cap) {
            n = pread(fd, buf + have, cap - have, fpos);
            if (n < 0) {
                free(buf);
                return TIDE_EIO;
            }
            if (n == 0) {
                eof = 1;
            }
            have += (size_t) n;
            fpos += n;
        }
        off = 0;
        for (;;) {
            r = tide__rec_parse(buf + off, have - off, &rec, &size);
            if (r <= 0) {
                break;
            }
            if (rec.offset <= prev) {
                r = -1;
                break;
            }
            if (idxfd >= 0 && res->end - *idx_pos >= TIDE__INDEX_EVERY) {
                tide__st32(ent, (uint32_t) (rec.offset - base));
                tide__st32(ent + 4, (uint32_t) res->end);
                if (pwrite(idxfd, ent, sizeof(ent), *idx_end) !=
                    (ssize_t) sizeof(ent))
                {
                    free(buf);
                    return TIDE_EIO;
                }
                *idx_end += TIDE__INDEX_ENTRY;
                *idx_pos = res->end;
            }
            prev = rec.offset;
            if (res->first < 0) {
                res->first = rec.offset;
            }
            res->last = rec.offset;
            res->count++;
            res->end += (int64_t) size;
            off += size;
        }
        memmove(buf, buf + off, have - off);
        have -= off;
        if (r < 0) {
            res->torn = 1;
            break;
        }
        if (eof) {
            res->torn = have > 0;
            break;
        }
        if (have == cap) {
            /* One record larger than the buffer: grow to hold it. */
            size = (size_t) tide__ld32(buf) + 4;
            if (size > TIDE__REC_MAX + 4u) {
                res->torn = 1;
                break;
            }
            cap = size > cap * 2 ? size : cap * 2;
            {
                char  *nb = realloc(buf, cap);
                if (nb == NULL) {
                    free(buf);
                    return TIDE_ENOMEM;
                }
                buf = nb;
            }
        }
    }
    free(buf);
    return TIDE_OK;
}

/* Reads the index of a segment into a new array of 'n' entries. */
static char *
idx_load(int idxfd, size_t *n)
{
    struct stat  st;
    char        *v;
    size_t       len;

    *n = 0;
    if (idxfd < 0 || fstat(idxfd, &st) != 0 || st.st_size < TIDE__INDEX_ENTRY) {
        return NULL;
    }
    len = (size_t) st.st_size / TIDE__INDEX_ENTRY * TIDE__INDEX_ENTRY;
    v = malloc(len);
    if (v == NULL) {
        return NULL;
    }
    if (pread(idxfd, v, len, 0) != (ssize_t) len) {
        free(v);
        return NULL;
    }
    *n = len / TIDE__INDEX_ENTRY;
    return v;
}

/* Reads the record at byte 'pos' of a segment of 'size' bytes and returns
 * its offset when it is a whole, valid record (CRC checked), else -1. */
static int64_t
rec_check_at(int logfd, int64_t pos, int64_t size)
{
    char        hdr[TIDE__REC_HDR], *buf;
    uint32_t    len;
    size_t      got;
    tide_rec_t  rec;
    int64_t     off = -1;

    if (pos < TIDE__SEG_HDR || pos + TIDE__REC_HDR > size ||
        pread(logfd, hdr, sizeof(hdr), pos) != (ssize_t) sizeof(hdr))
    {
        return -1;
    }
    len = tide__ld32(hdr);
    if (len < TIDE__REC_HDR - 4 || len > TIDE__REC_MAX ||
        pos + 4 + (int64_t) len > size)
    {
        return -1;
    }
    buf = malloc((size_t) len + 4);
    if (buf == NULL) {
        return -1;
    }
    if (pread(logfd, buf, (size_t) len + 4, pos) == (ssize_t) len + 4 &&
        tide__rec_parse(buf, (size_t) len + 4, &rec, &got) == 1)
    {
        off = rec.offset;
    }
    free(buf);
    return off;
}

/* Returns a byte position in the segment at or before the first record
 * with an offset >= 'offset', from the index; TIDE__SEG_HDR without one.
 * The index is a hint: an entry is used only when the record it points
 * to is whole and has the offset the entry claims; otherwise the entries
 * before it are tried, a few of them, then the segment's start. */
int64_t
tide__idx_seek(int idxfd, int logfd, int64_t base, int64_t offset,
               int64_t size)
{
    char     *v;
    size_t    n, lo, hi, mid, tries;
    int64_t   pos = TIDE__SEG_HDR, p, off;

    v = idx_load(idxfd, &n);
    if (v == NULL) {
        return pos;
    }
    lo = 0;
    hi = n;
    while (lo < hi) {
        mid = lo + (hi - lo) / 2;
        if ((int64_t) tide__ld32(v + mid * TIDE__INDEX_ENTRY) + base <= offset) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    for (tries = 0; lo > 0 && tries < 8; lo--, tries++) {
        off = (int64_t) tide__ld32(v + (lo - 1) * TIDE__INDEX_ENTRY) + base;
        p = tide__ld32(v + (lo - 1) * TIDE__INDEX_ENTRY + 4);
        if (p >= TIDE__SEG_HDR && p < size &&
            (logfd < 0 || rec_check_at(logfd, p, size) == off))
        {
            pos = p;
            break;
        }
    }
    free(v);
    return pos;
}

/* Searches bytes [from, size) of a segment for a whole, valid record
 * (CRC checked) with an offset above 'after'. Such a record after bytes
 * that do not parse means the bytes are damage, not a torn tail: a
 * writer that dies mid-write leaves a prefix of its batch and nothing
 * after it. Returns 1 with *at set when one is found, 0 when none, or
 * TIDE_EIO / TIDE_ENOMEM. */
int
tide__seg_resync(int fd, int64_t from, int64_t size, int64_t after,
                 int64_t *at)
{
    char      *buf;
    size_t     cap = SCAN_CHUNK, have, k;
    ssize_t    n;
    int64_t    pos, maxoff, off;
    uint32_t   len;

    *at = -1;
    if (from < TIDE__SEG_HDR) {
        from = TIDE__SEG_HDR;
    }
    /* An offset further above 'after' than records could fit is noise. */
    maxoff = after + 1 + (size - from) / TIDE__REC_HDR + 1;
    buf = malloc(cap);
    if (buf == NULL) {
        return TIDE_ENOMEM;
    }
    for (pos = from; pos + TIDE__REC_HDR <= size; ) {
        n = pread(fd, buf, cap, pos);
        if (n < 0) {
            free(buf);
            return TIDE_EIO;
        }
        have = (size_t) n;
        if (have < TIDE__REC_HDR) {
            break;
        }
        for (k = 0; k + TIDE__REC_HDR <= have; k++) {
            len = tide__ld32(buf + k);
            if (len < TIDE__REC_HDR - 4 || len > TIDE__REC_MAX ||
                pos + (int64_t) k + 4 + len > size)
            {
                continue;
            }
            off = tide__ld64(buf + k + 8);
            if (off <= after || off > maxoff) {
                continue;
            }
            if (rec_check_at(fd, pos + (int64_t) k, size) == off) {
                *at = pos + (int64_t) k;
                free(buf);
                return 1;
            }
        }
        pos += (int64_t) (have - TIDE__REC_HDR + 1);
    }
    free(buf);
    return 0;
}

/* Cuts the index back to its entries that point at a record inside the
 * first 'log_end' bytes of the log with the offset the entry claims.
 * Sets *idx_end to its new size and *last_pos to the position of its last
 * entry (0 when empty). Returns TIDE_OK or TIDE_EIO. */
int
tide__idx_trim(int idxfd, int logfd, int64_t base, int64_t log_end,
               int64_t *idx_end, int64_t *last_pos)
{
    char      *v, hdr[TIDE__REC_HDR];
    size_t     n;
    int64_t    pos, off;

    *idx_end = 0;
    *last_pos = 0;
    v = idx_load(idxfd, &n);
    while (n > 0) {
        off = base + tide__ld32(v + (n - 1) * TIDE__INDEX_ENTRY);
        pos = tide__ld32(v + (n - 1) * TIDE__INDEX_ENTRY + 4);
        if (pos >= TIDE__SEG_HDR && pos + TIDE__REC_HDR <= log_end &&
            pread(logfd, hdr, sizeof(hdr), pos) == (ssize_t) sizeof(hdr) &&
            tide__ld64(hdr + 8) == off &&
            pos + 4 + (int64_t) tide__ld32(hdr) <= log_end)
        {
            *last_pos = pos;
            break;
        }
        n--;
    }
    free(v);
    *idx_end = (int64_t) n * TIDE__INDEX_ENTRY;
    if (idxfd >= 0 && ftruncate(idxfd, *idx_end) != 0) {
        return TIDE_EIO;
    }
    return TIDE_OK;
}
