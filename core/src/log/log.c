/*
 * The embedded log: streams of partitions of segment files under
 * <data-dir>/streams/<name>/<partition>/, plus 'stream.conf'.
 *
 * Appends are buffered per partition and written by tide_log_flush with
 * one write and one fdatasync per partition (group commit), under an
 * flock on the partition's 'lock' file. A partition that fills its buffer
 * between flushes is written at once without waiting for the disk: the
 * write-back is started (sync_file_range) and the next tide_log_flush
 * waits for it, so the disk works while the caller goes on. The lock is
 * held per flush, not per process, so several processes may append to one stream: offsets and
 * CRCs are filled in at flush time, once the writer holds the lock and
 * knows the true tail. A writer that died mid-write leaves a torn tail;
 * the next writer (or any tide_log_new) cuts it back under the lock.
 */
#include "log/log.h"
#include "log/format.h"
#include "util/crc32c.h"
#include "util/errors.h"
#include "util/fs.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_SEGMENT_BYTES   (1024LL * 1024 * 1024)
#define DEFAULT_RETENTION_MS    (7LL * 24 * 3600 * 1000)
#define DEFAULT_DELETE_RET_MS   (24LL * 3600 * 1000)
#define DEFAULT_FLUSH_BYTES     (1024LL * 1024)
#define MAX_PARTITIONS          4096
/* Index entries hold 32-bit positions; Kafka caps segment.bytes alike. */
#define MAX_SEGMENT_BYTES       (2LL * 1024 * 1024 * 1024 - 1)

void *tide__clean_main(void *arg);   /* clean.c */
static int flush_part(tide_log_t *log, int32_t i, int durable);
static int log_load(tide_log_t **out, const char *sdir, const char *name,
                    const tide_log_params_t *params, int mode, char *err,
                    size_t errlen);
static int stream_remove(const char *sdir, int32_t nparts);

void
tide__warn(const char *fmt, ...)
{
    va_list  ap;
    char     line[1024];

    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "tide: %s\n", line);
}

static int
name_ok(const char *name)
{
    size_t  i, n = strlen(name);

    if (n == 0 || n > 200 || name[0] == '.') {
        return 0;
    }
    for (i = 0; i < n; i++) {
        if (!isalnum((unsigned char) name[i]) && name[i] != '-' &&
            name[i] != '_' && name[i] != '.')
        {
            return 0;
        }
    }
    return 1;
}

/* ---- stream.conf ------------------------------------------------------ */

static int
meta_write(const char *dir, const tide_log_params_t *p)
{
    char   path[4400];
    FILE  *f;
    int    ok;

    snprintf(path, sizeof(path), "%s/stream.conf", dir);
    f = fopen(path, "w");
    if (f == NULL) {
        return -1;
    }
    fprintf(f, "# tide stream settings; partitions, compact and "
               "segment_bytes are fixed\n");
    fprintf(f, "partitions=%d\ncompact=%d\nfsync=%s\nsegment_bytes=%lld\n"
               "retention_ms=%lld\nretention_bytes=%lld\n"
               "delete_retention_ms=%lld\n",
            p->partitions, p->compact,
            p->fsync == TIDE_FSYNC_NONE ? "none" : "batch",
            (long long) p->segment_bytes, (long long) p->retention_ms,
            (long long) p->retention_bytes,
            (long long) p->delete_retention_ms);
    ok = fflush(f) == 0 && fdatasync(fileno(f)) == 0;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : -1;
}

static int
meta_read(const char *dir, tide_log_params_t *p, char *err, size_t errlen)
{
    char       path[4200], line[256], *eq, *end;
    FILE      *f;
    long long  v;
    int        lineno = 0;

    snprintf(path, sizeof(path), "%s/stream.conf", dir);
    f = fopen(path, "r");
    if (f == NULL) {
        return tide__set_err(err, errlen,
                             errno == ENOENT ? TIDE_ENOENT : TIDE_EIO,
                             "cannot read %s: %s", path, strerror(errno));
    }
    p->partitions = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        eq = strchr(line, '=');
        if (eq == NULL) {
            fclose(f);
            return tide__set_err(err, errlen, TIDE_ECORRUPT, "%s:%d: expected "
                                 "key=value; fix or restore the file", path,
                                 lineno);
        }
        *eq++ = '\0';
        if (strcmp(line, "fsync") == 0) {
            p->fsync = strcmp(eq, "none") == 0 ? TIDE_FSYNC_NONE
                                                : TIDE_FSYNC_BATCH;
            continue;
        }
        errno = 0;
        v = strtoll(eq, &end, 10);
        if (errno != 0 || *end != '\0' || end == eq) {
            fclose(f);
            return tide__set_err(err, errlen, TIDE_ECORRUPT, "%s:%d: '%s' is "
                                 "not a number; fix or restore the file", path,
                                 lineno, eq);
        }
        if (strcmp(line, "partitions") == 0) {
            p->partitions = (int32_t) v;
        } else if (strcmp(line, "compact") == 0) {
            p->compact = v != 0;
        } else if (strcmp(line, "segment_bytes") == 0) {
            p->segment_bytes = v;
        } else if (strcmp(line, "retention_ms") == 0) {
            p->retention_ms = v;
        } else if (strcmp(line, "retention_bytes") == 0) {
            p->retention_bytes = v;
        } else if (strcmp(line, "delete_retention_ms") == 0) {
            p->delete_retention_ms = v;
        }
    }
    fclose(f);
    if (p->partitions < 1 || p->partitions > MAX_PARTITIONS ||
        p->segment_bytes < 4096)
    {
        return tide__set_err(err, errlen, TIDE_ECORRUPT, "%s: partitions or "
                             "segment_bytes out of range; fix or restore the "
                             "file", path);
    }
    return TIDE_OK;
}

static void
params_defaults(tide_log_params_t *p)
{
    if (p->partitions == 0) {
        p->partitions = 1;
    }
    if (p->segment_bytes == 0) {
        p->segment_bytes = DEFAULT_SEGMENT_BYTES;
    }
    if (p->retention_ms == 0) {
        p->retention_ms = p->compact ? -1 : DEFAULT_RETENTION_MS;
    }
    if (p->retention_bytes == 0) {
        p->retention_bytes = -1;
    }
    if (p->delete_retention_ms == 0) {
        p->delete_retention_ms = DEFAULT_DELETE_RET_MS;
    }
    if (p->fsync != TIDE_FSYNC_NONE) {
        p->fsync = TIDE_FSYNC_BATCH;
    }
    if (p->flush_bytes <= 0) {
        p->flush_bytes = DEFAULT_FLUSH_BYTES;
    }
}

/* Creates the stream folder complete (meta and partition folders) under a
 * temporary name, then renames it into place, so a stream either exists
 * whole or not at all, even when two processes create it at once. */
static int
stream_create(const char *sdir, const tide_log_params_t *p, char *err,
              size_t errlen)
{
    char     tmp[4200], part[4300];
    int32_t  i;

    snprintf(tmp, sizeof(tmp), "%s.tmp-%ld", sdir, (long) getpid());
    if (mkdir(tmp, 0755) != 0) {
        return tide__set_err(err, errlen, TIDE_EIO, "cannot create %s: %s",
                             tmp, strerror(errno));
    }
    for (i = 0; i < p->partitions; i++) {
        snprintf(part, sizeof(part), "%s/%d", tmp, i);
        if (mkdir(part, 0755) != 0) {
            int  e = errno;

            stream_remove(tmp, i);
            return tide__set_err(err, errlen, TIDE_EIO, "cannot create %s: %s",
                                 part, strerror(e));
        }
    }
    if (meta_write(tmp, p) != 0) {
        int  e = errno;

        stream_remove(tmp, p->partitions);
        return tide__set_err(err, errlen, TIDE_EIO, "cannot write "
                             "%s/stream.conf: %s", tmp, strerror(e));
    }
    if (rename(tmp, sdir) != 0) {
        int  e = errno;
        char cmd[4300];

        /* Lost a race with another creator: drop our copy. */
        for (i = 0; i < p->partitions; i++) {
            snprintf(part, sizeof(part), "%s/%d", tmp, i);
            rmdir(part);
        }
        snprintf(cmd, sizeof(cmd), "%s/stream.conf", tmp);
        unlink(cmd);
        rmdir(tmp);
        if (e == EEXIST || e == ENOTEMPTY) {
            return TIDE_EEXIST;
        }
        return tide__set_err(err, errlen, TIDE_EIO, "cannot create %s: %s",
                             sdir, strerror(e));
    }
    return TIDE_OK;
}

/* Takes away a stream that stream_create made and nobody wrote to: the
 * files an open makes in each partition, the folders, the settings.
 * Returns 0 when the stream is gone. */
static int
stream_remove(const char *sdir, int32_t nparts)
{
    static const char *const  files[] = {
        "lock", "clean.lock", "00000000000000000000.log",
        "00000000000000000000.index", NULL
    };
    char     path[4400];
    int32_t  i;
    int      k;

    for (i = 0; i < nparts; i++) {
        for (k = 0; files[k] != NULL; k++) {
            snprintf(path, sizeof(path), "%s/%d/%s", sdir, i, files[k]);
            unlink(path);
        }
        snprintf(path, sizeof(path), "%s/%d", sdir, i);
        rmdir(path);
    }
    snprintf(path, sizeof(path), "%s/stream.conf", sdir);
    unlink(path);
    return rmdir(sdir);
}

/* What to do when out of descriptors ('e' an errno), or "". */
static const char *
fd_hint(int e)
{
    if (e == EMFILE || e == ENFILE) {
        return " (an open stream holds a descriptor per partition, and two "
               "more per partition written to); raise the limit with "
               "'ulimit -n', or use fewer partitions";
    }
    return "";
}

/* ---- the writer's view of a partition's tail -------------------------- */

/* Makes the records written to the active segment without a sync
 * durable before its descriptor goes away; a failure is kept for the next
 * tide_log_flush to report. */
static void
seg_settle(tide__part_t *pt)
{
    if (pt->unsynced && pt->segfd >= 0) {
        if (fdatasync(pt->segfd) != 0 && pt->sync_err == 0) {
            pt->sync_err = errno;
        }
        pt->unsynced = 0;
    }
}

static void
tail_close(tide__part_t *pt)
{
    seg_settle(pt);
    if (pt->segfd >= 0) {
        close(pt->segfd);
    }
    if (pt->idxfd >= 0) {
        close(pt->idxfd);
    }
    pt->segfd = -1;
    pt->idxfd = -1;
    pt->known = 0;
}

/* Loads the tail of partition 'i' from its files: finds the last segment,
 * checks its index and records, cuts a torn tail back to the last whole
 * record (saying so on stderr) and sets seg_*, idx_* and 'next'. Called
 * with the partition lock held. */
static int
tail_load(tide_log_t *log, int32_t i)
{
    tide__part_t  *pt = &log->parts[i];
    int64_t       *bases;
    size_t         n;
    int64_t        base, start;
    struct stat    st;
    tide__scan_t   res;
    int            rc;

    tail_close(pt);
    rc = tide__seg_bases(pt->dirfd, &bases, &n);
    if (rc != TIDE_OK) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d: cannot list "
                 "segments: %s", log->dir, i, strerror(errno));
        return rc;
    }
    base = n > 0 ? bases[n - 1] : 0;
    free(bases);
    if (n > 0) {
        char  name[40];

        tide__seg_name(name, sizeof(name), base, "log");
        if (fstatat(pt->dirfd, name, &st, 0) == 0 &&
            st.st_size < TIDE__SEG_HDR)
        {
            /* A crash while the segment was made, or a cut: its header is
             * written again below, and whatever it held is gone. */
            tide__warn("stream '%s' partition %d: segment %s holds %lld "
                       "bytes, less than its header; it is made again, "
                       "empty, and offsets go on from %lld", log->name, i,
                       name, (long long) st.st_size, (long long) base);
        }
    }

    rc = tide__seg_create(pt->dirfd, base, &pt->segfd, &pt->idxfd);
    if (rc != TIDE_OK) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d/%020lld.log: %s",
                 log->dir, i, (long long) base,
                 rc == TIDE_ECORRUPT ? "not a tide segment (bad header at "
                 "byte 0); restore it from a copy, or move it away to "
                 "append after the segment before it" : strerror(errno));
        tail_close(pt);
        return rc;
    }
    if (fstat(pt->segfd, &st) != 0) {
        tail_close(pt);
        return TIDE_EIO;
    }
    rc = tide__idx_trim(pt->idxfd, pt->segfd, base, st.st_size, &pt->idx_end,
                        &pt->idx_pos);
    if (rc != TIDE_OK) {
        tail_close(pt);
        return rc;
    }
    start = pt->idx_pos > 0 ? pt->idx_pos : TIDE__SEG_HDR;
    rc = tide__seg_scan(pt->segfd, start, base, &res, pt->idxfd, &pt->idx_pos,
                        &pt->idx_end);
    if (rc != TIDE_OK) {
        tail_close(pt);
        return rc;
    }
    if (res.last < 0 && start > TIDE__SEG_HDR) {
        /* The indexed record itself failed: rescan the whole segment. */
        pt->idx_pos = 0;
        pt->idx_end = 0;
        if (ftruncate(pt->idxfd, 0) != 0) {
            tail_close(pt);
            return TIDE_EIO;
        }
        return tail_load(log, i);
    }
    if (res.end < st.st_size) {
        int64_t  at;

        rc = tide__seg_resync(pt->segfd, res.end + 1, st.st_size,
                              res.last >= 0 ? res.last : base - 1, &at);
        if (rc < 0) {
            tail_close(pt);
            return rc;
        }
        if (rc == 1) {
            /* Whole records follow the bytes that failed: damage, not a
             * crashed writer's tail. Cutting would drop them. */
            snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d/%020lld.log: "
                     "corrupt record at byte %lld (after offset %lld), with "
                     "whole records after it (at byte %lld), so it is not a "
                     "torn tail and nothing was cut; restore the file from a "
                     "copy, or cut it with 'truncate -s %lld' to drop every "
                     "record from there on", log->dir, i, (long long) base,
                     (long long) res.end,
                     (long long) (res.last >= 0 ? res.last : base - 1),
                     (long long) at, (long long) res.end);
            pt->damaged = 1;
            tail_close(pt);
            return TIDE_ECORRUPT;
        }
        tide__warn("stream '%s' partition %d: cut a torn tail of %lld bytes "
                   "from segment %020lld.log at byte %lld (after offset "
                   "%lld); every record before it is intact",
                   log->name, i, (long long) (st.st_size - res.end),
                   (long long) base, (long long) res.end,
                   (long long) (res.last >= 0 ? res.last : base - 1));
        if (ftruncate(pt->segfd, res.end) != 0 || fdatasync(pt->segfd) != 0) {
            tail_close(pt);
            return TIDE_EIO;
        }
    }
    /* The index is written again only at flushes that add entries; it
     * is opened then, so an idle partition holds no descriptor for it. */
    close(pt->idxfd);
    pt->idxfd = -1;
    pt->damaged = 0;
    pt->seg_base = base;
    pt->seg_end = res.end;
    pt->next = res.last >= 0 ? res.last + 1 : base;
    pt->known = 1;
    return TIDE_OK;
}

/* Returns whether the cached tail still matches the files: nobody else
 * appended to the active segment or rolled a new one. */
static int
tail_fresh(tide_log_t *log, tide__part_t *pt)
{
    struct stat  st;
    char         name[40];

    (void) log;
    if (!pt->known || fstat(pt->segfd, &st) != 0 || st.st_size != pt->seg_end) {
        return 0;
    }
    tide__seg_name(name, sizeof(name), pt->next, "log");
    if (pt->next != pt->seg_base &&
        fstatat(pt->dirfd, name, &st, 0) == 0)
    {
        return 0;
    }
    return 1;
}

static int
lock_part(tide__part_t *pt)
{
    while (flock(pt->lockfd, LOCK_EX) != 0) {
        if (errno != EINTR) {
            return TIDE_EIO;
        }
    }
    return TIDE_OK;
}

static void
unlock_part(tide__part_t *pt)
{
    flock(pt->lockfd, LOCK_UN);
}

/* ---- open and free ---------------------------------------------------- */

static void
log_destroy(tide_log_t *log)
{
    int32_t  i;

    if (log->parts != NULL) {
        for (i = 0; i < log->nparts; i++) {
            tail_close(&log->parts[i]);
            if (log->parts[i].dirfd >= 0) {
                close(log->parts[i].dirfd);
            }
            if (log->parts[i].lockfd >= 0) {
                close(log->parts[i].lockfd);
            }
            free(log->parts[i].buf);
        }
    }
    free(log->parts);
    free(log->dir);
    free(log->name);
    free(log);
}

int
tide_log_new(tide_log_t **out, const char *dir, const char *name,
             const tide_log_params_t *params, char *err, size_t errlen)
{
    tide_log_params_t   p;
    char                sdir[4096], path[4200];
    struct stat         st;
    int                 rc, mode, created = 0;

    *out = NULL;
    if (err != NULL && errlen > 0) {
        err[0] = '\0';
    }
    if (dir == NULL || name == NULL) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "no data dir or stream "
                             "name");
    }
    if (!name_ok(name)) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "bad stream name '%s': "
                             "use letters, digits, '.', '_' and '-' (not "
                             "first '.'), at most 200", name);
    }
    memset(&p, 0, sizeof(p));
    if (params != NULL) {
        p = *params;
    }
    mode = p.mode;
    if (p.partitions < 0 || p.partitions > MAX_PARTITIONS ||
        (p.segment_bytes != 0 && (p.segment_bytes < 4096 ||
                                  p.segment_bytes > MAX_SEGMENT_BYTES)) ||
        mode < TIDE_LOG_OPEN || mode > TIDE_LOG_EXCL ||
        p.fsync < TIDE_FSYNC_DEFAULT || p.fsync > TIDE_FSYNC_NONE)
    {
        return tide__set_err(err, errlen, TIDE_EINVAL, "bad stream settings: "
                             "partitions must be 1..%d, segment_bytes "
                             "4096..%lld, mode and fsync one of their TIDE_* "
                             "values", MAX_PARTITIONS,
                             (long long) MAX_SEGMENT_BYTES);
    }
    if (snprintf(sdir, sizeof(sdir), "%s/streams/%s", dir, name) >=
        (int) sizeof(sdir))
    {
        return tide__set_err(err, errlen, TIDE_EINVAL, "data dir path too "
                             "long");
    }

    if (stat(dir, &st) == 0 && !S_ISDIR(st.st_mode)) {
        return tide__set_err(err, errlen, TIDE_EINVAL, "data dir '%s' is not "
                             "a folder; check --data-dir or $TIDE_DATA_DIR",
                             dir);
    }
    if (stat(sdir, &st) != 0) {
        if (errno != ENOENT) {
            return tide__set_err(err, errlen, TIDE_EIO, "cannot read stream "
                                 "'%s' in data dir '%s': %s", name, dir,
                                 strerror(errno));
        }
        if (mode == TIDE_LOG_OPEN) {
            if (stat(dir, &st) != 0) {
                return tide__set_err(err, errlen, TIDE_ENOENT, "data dir '%s' "
                                     "does not exist (%s); check --data-dir",
                                     dir, strerror(errno));
            }
            return tide__set_err(err, errlen, TIDE_ENOENT, "no stream '%s' in "
                                 "data dir '%s'; create it with 'tide streams "
                                 "create %s --partitions N'", name, dir, name);
        }
        snprintf(path, sizeof(path), "%s/streams", dir);
        if (tide__mkdir_p(path) != 0) {
            return tide__set_err(err, errlen, TIDE_EIO, "cannot create data "
                                 "dir '%s': %s", path, strerror(errno));
        }
        params_defaults(&p);
        rc = stream_create(sdir, &p, err, errlen);
        created = rc == TIDE_OK;
        if (rc == TIDE_EEXIST && mode == TIDE_LOG_EXCL) {
            return tide__set_err(err, errlen, rc, "stream '%s' already exists "
                                 "in '%s'", name, dir);
        }
        if (rc != TIDE_OK && rc != TIDE_EEXIST) {
            return rc;
        }
    } else if (mode == TIDE_LOG_EXCL) {
        return tide__set_err(err, errlen, TIDE_EEXIST, "stream '%s' already "
                             "exists in '%s'", name, dir);
    }

    rc = log_load(out, sdir, name, params, mode, err, errlen);
    if (rc != TIDE_OK && created) {
        /* All or nothing: a stream this call made and cannot open (say,
         * out of descriptors partway) is taken away again. */
        size_t  n = err != NULL ? strlen(err) : 0;

        if (stream_remove(sdir, p.partitions) == 0 && err != NULL &&
            n + 1 < errlen)
        {
            snprintf(err + n, errlen - n, "; the stream was not created");
        }
    }
    return rc;
}

/* Opens the existing stream in 'sdir': reads its settings, opens its
 * partition folders and cuts torn tails. Holds one descriptor per
 * partition; writers open theirs at the first append. */
static int
log_load(tide_log_t **out, const char *sdir, const char *name,
         const tide_log_params_t *params, int mode, char *err,
         size_t errlen)
{
    tide_log_params_t   p;
    tide_log_t         *log;
    char                path[4200];
    int32_t             i;
    int                 rc, e;

    memset(&p, 0, sizeof(p));
    rc = meta_read(sdir, &p, err, errlen);
    if (rc != TIDE_OK) {
        return rc;
    }
    if (params != NULL && params->fsync != TIDE_FSYNC_DEFAULT) {
        p.fsync = params->fsync;
    }
    if (params != NULL && params->flush_bytes > 0) {
        p.flush_bytes = params->flush_bytes;
    }
    params_defaults(&p);
    p.mode = mode;

    {
        struct stat  st;

        /* A damaged count must not hide partitions from readers. */
        snprintf(path, sizeof(path), "%s/%d", sdir, p.partitions);
        if (stat(path, &st) == 0) {
            rc = tide__set_err(err, errlen, TIDE_ECORRUPT, "%s/stream.conf "
                               "says %d partitions, but partition folder %s "
                               "exists; fix the file", sdir, p.partitions,
                               path);
            return rc;
        }
    }
    log = calloc(1, sizeof(*log));
    if (log == NULL) {
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    log->refs = 1;
    log->params = p;
    log->nparts = p.partitions;
    log->dir = strdup(sdir);
    log->name = strdup(name);
    log->parts = calloc((size_t) p.partitions, sizeof(tide__part_t));
    if (log->dir == NULL || log->name == NULL || log->parts == NULL) {
        log_destroy(log);
        return tide__set_err(err, errlen, TIDE_ENOMEM, "out of memory");
    }
    for (i = 0; i < log->nparts; i++) {
        log->parts[i].dirfd = -1;
        log->parts[i].lockfd = -1;
        log->parts[i].segfd = -1;
        log->parts[i].idxfd = -1;
    }
    for (i = 0; i < log->nparts; i++) {
        tide__part_t  *pt = &log->parts[i];

        snprintf(path, sizeof(path), "%s/%d", sdir, i);
        pt->dirfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pt->dirfd < 0 && errno == ENOENT) {
            rc = tide__set_err(err, errlen, TIDE_ECORRUPT, "%s/stream.conf "
                               "says %d partitions, but partition folder %s "
                               "is missing; fix the file or restore the "
                               "folder", sdir, p.partitions, path);
            log_destroy(log);
            return rc;
        }
        if (pt->dirfd < 0) {
            e = errno;
            rc = tide__set_err(err, errlen, TIDE_EIO, "cannot open partition "
                               "folder %s: %s%s", path, strerror(e),
                               fd_hint(e));
            log_destroy(log);
            return rc;
        }
        pt->lockfd = openat(pt->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC,
                            0644);
        if (pt->lockfd < 0 && (errno == EACCES || errno == EROFS)) {
            /* A data dir we may read but not write: readers work, appends
             * fail, and a torn tail is left for a writer to cut. */
            continue;
        }
        if (pt->lockfd < 0) {
            e = errno;
            rc = tide__set_err(err, errlen, TIDE_EIO, "cannot open %s/lock: "
                               "%s%s", path, strerror(e), fd_hint(e));
            log_destroy(log);
            return rc;
        }
        /* Recovery: cut a torn tail now, under the lock. Damage that is not
         * a torn tail leaves the partition to readers, which report it
         * where they meet it; appends to it are refused. */
        rc = lock_part(pt);
        if (rc == TIDE_OK) {
            rc = tail_load(log, i);
            unlock_part(pt);
        }
        e = errno;
        /* Writers open the files again at their first append: a stream of
         * many partitions holds one descriptor per partition until then. */
        tail_close(pt);
        close(pt->lockfd);
        pt->lockfd = -1;
        if (rc == TIDE_ECORRUPT && pt->damaged) {
            continue;
        }
        if (rc != TIDE_OK) {
            tide__set_err(err, errlen, rc, "%s%s",
                          log->errmsg[0] ? log->errmsg : strerror(e),
                          fd_hint(e));
            log_destroy(log);
            return rc;
        }
    }
    *out = log;
    return TIDE_OK;
}

void
tide__log_unref(tide_log_t *log)
{
    if (--log->refs == 0) {
        log_destroy(log);
    }
}

void
tide_log_free(tide_log_t *log)
{
    int32_t  i;

    if (log == NULL || log->freed) {
        return;
    }
    log->freed = 1;
    if (tide_log_flush(log) != TIDE_OK) {
        int64_t  pending = 0;

        for (i = 0; i < log->nparts; i++) {
            pending += log->parts[i].count;
        }
        /* Say what is true: a job's outputs are made again from its last
         * checkpoint after a restart; only other writers lose them. */
        tide__warn("stream '%s': %lld buffered record%s not written at "
                   "close: %s; a job's outputs are written again when it "
                   "restarts from its last checkpoint, other writers must "
                   "send them again", log->name, (long long) pending,
                   pending == 1 ? " was" : "s were", log->errmsg);
    }
    for (i = 0; i < log->nparts; i++) {
        if (log->parts[i].cleaning) {
            pthread_join(log->parts[i].cleaner, NULL);
            log->parts[i].cleaning = 0;
        }
    }
    tide__log_unref(log);
}

int32_t
tide_log_count(const tide_log_t *log)
{
    return log->nparts;
}

int
tide_log_get_params(const tide_log_t *log, tide_log_params_t *out)
{
    *out = log->params;
    return TIDE_OK;
}

const char *
tide_log_errmsg(const tide_log_t *log)
{
    return log->errmsg[0] ? log->errmsg : "no error";
}

/* ---- append ----------------------------------------------------------- */

int
tide_log_push(tide_log_t *log, tide_rec_t *rec)
{
    tide__part_t  *pt;
    int32_t        part = rec->partition;
    size_t         need, klen, vlen, hlen;
    char          *p;

    klen = rec->key != NULL && rec->klen > 0 ? (size_t) rec->klen : 0;
    vlen = rec->val != NULL && rec->vlen > 0 ? (size_t) rec->vlen : 0;
    hlen = rec->hdrs != NULL && rec->hlen > 0 ? (size_t) rec->hlen : 0;
    if (klen + vlen + hlen > TIDE__REC_MAX - TIDE__REC_HDR) {
        snprintf(log->errmsg, sizeof(log->errmsg), "record of %zu bytes is "
                 "over the limit of %d", klen + vlen + hlen, TIDE__REC_MAX);
        return TIDE_EINVAL;
    }
    if (log->params.compact && rec->key == NULL) {
        snprintf(log->errmsg, sizeof(log->errmsg), "stream '%s' is compacted "
                 "and needs a key on every record", log->name);
        return TIDE_EINVAL;
    }
    if (part < 0) {
        if (log->nparts == 1) {
            part = 0;                   /* nothing to choose: skip the hash */
        } else if (rec->key != NULL) {
            part = tide_partition_get(rec->key, klen, log->nparts);
        } else {
            part = (int32_t) (log->rr++ % (uint32_t) log->nparts);
        }
    } else if (part >= log->nparts) {
        snprintf(log->errmsg, sizeof(log->errmsg), "partition %d out of range: "
                 "stream '%s' has %d", part, log->name, log->nparts);
        return TIDE_ERANGE;
    }
    rec->partition = part;
    pt = &log->parts[part];

    need = TIDE__REC_HDR + klen + vlen + hlen;
    if (pt->len + need > pt->cap) {
        size_t  cap = pt->cap ? pt->cap : 64 * 1024;
        char   *nb;

        while (cap < pt->len + need) {
            cap *= 2;
        }
        nb = realloc(pt->buf, cap);
        if (nb == NULL) {
            snprintf(log->errmsg, sizeof(log->errmsg), "out of memory "
                     "buffering %zu bytes for partition %d", cap, part);
            return TIDE_ENOMEM;
        }
        pt->buf = nb;
        pt->cap = cap;
    }
    p = pt->buf + pt->len;
    tide__st32(p, (uint32_t) (need - 4));
    tide__st64(p + 16, rec->ts != 0 ? rec->ts : tide__now_ms());
    tide__st32(p + 24, rec->key != NULL ? (uint32_t) klen : (uint32_t) -1);
    tide__st32(p + 28, rec->val != NULL ? (uint32_t) vlen : (uint32_t) -1);
    tide__st32(p + 32, (uint32_t) hlen);
    p += TIDE__REC_HDR;
    if (klen) {
        memcpy(p, rec->key, klen);
        p += klen;
    }
    if (vlen) {
        memcpy(p, rec->val, vlen);
        p += vlen;
    }
    if (hlen) {
        memcpy(p, rec->hdrs, hlen);
    }
    pt->len += need;
    pt->count++;
    if ((int64_t) pt->len >= log->params.flush_bytes) {
        return flush_part(log, part, 0);
    }
    return TIDE_OK;
}

/* Rolls to a new segment named after the next offset. Lock held. */
static int
roll(tide_log_t *log, int32_t i)
{
    tide__part_t  *pt = &log->parts[i];
    int            rc;

    if (pt->idxfd >= 0) {
        close(pt->idxfd);
    }
    seg_settle(pt);
    close(pt->segfd);
    pt->segfd = -1;
    pt->idxfd = -1;
    pt->known = 0;
    rc = tide__seg_create(pt->dirfd, pt->next, &pt->segfd, &pt->idxfd);
    if (rc != TIDE_OK) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d: cannot create "
                 "segment %020lld.log: %s", log->dir, i, (long long) pt->next,
                 strerror(errno));
        tail_close(pt);
        return rc;
    }
    if (ftruncate(pt->idxfd, 0) != 0) {
        tail_close(pt);
        return TIDE_EIO;
    }
    close(pt->idxfd);
    pt->idxfd = -1;
    pt->seg_base = pt->next;
    pt->seg_end = TIDE__SEG_HDR;
    pt->idx_end = 0;
    pt->idx_pos = 0;
    pt->known = 1;
    return TIDE_OK;
}

/* Starts retention/compaction of partition 'i' in the background after a
 * roll; clean.c takes its own lock, so appends go on meanwhile. */
static void
clean_start(tide_log_t *log, int32_t i)
{
    tide__part_t  *pt = &log->parts[i];
    struct {
        tide_log_t *log;
        int32_t     part;
    } *arg;

    if (!log->params.compact && log->params.retention_ms < 0 &&
        log->params.retention_bytes < 0)
    {
        return;
    }
    if (pt->cleaning) {
        /* Still at work: it, or the next roll, will see this segment too.
         * Never wait for it here, or appends would. */
        if (pthread_tryjoin_np(pt->cleaner, NULL) != 0) {
            return;
        }
        pt->cleaning = 0;
    }
    arg = malloc(sizeof(*arg));
    if (arg == NULL) {
        return;
    }
    arg->log = log;
    arg->part = i;
    if (pthread_create(&pt->cleaner, NULL, tide__clean_main, arg) == 0) {
        pt->cleaning = 1;
    } else {
        free(arg);
    }
}

/* Waits until what was written to partition i's active segment is on the
 * disk, and reports (once) a sync that failed when a segment was closed.
 * Returns TIDE_OK or TIDE_EIO with errmsg set. */
static int
part_sync(tide_log_t *log, int32_t i)
{
    tide__part_t  *pt = &log->parts[i];
    int            e = pt->sync_err;

    pt->sync_err = 0;
    if (e == 0 && fdatasync(pt->segfd) != 0) {
        e = errno;
    }
    if (e != 0) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d: fdatasync failed: "
                 "%s", log->dir, i, strerror(e));
        return TIDE_EIO;
    }
    pt->unsynced = 0;
    return TIDE_OK;
}

/* Writes partition i's buffered records. 'durable': fdatasync before
 * returning (with TIDE_FSYNC_BATCH); otherwise only start the write-back
 * and leave the wait to the next durable flush. */
static int
flush_part(tide_log_t *log, int32_t i, int durable)
{
    tide__part_t  *pt = &log->parts[i];
    char          *p, *end, *idx = NULL;
    size_t         nidx = 0;
    int64_t        off, pos, idx_pos;
    uint32_t       len;
    int            rc, rolled = 0;

    if (pt->lockfd < 0) {
        /* Opened at the first append, kept until the log is freed. */
        pt->lockfd = openat(pt->dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC,
                            0644);
    }
    if (pt->lockfd < 0) {
        int  e = errno;

        if (e == EACCES || e == EROFS) {
            snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d: the data dir "
                     "is read-only for this process; cannot append",
                     log->dir, i);
        } else {
            snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d/lock: %s%s",
                     log->dir, i, strerror(e), fd_hint(e));
        }
        return TIDE_EIO;
    }
    rc = lock_part(pt);
    if (rc != TIDE_OK) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d/lock: %s",
                 log->dir, i, strerror(errno));
        return rc;
    }
    if (!tail_fresh(log, pt)) {
        rc = tail_load(log, i);
        if (rc != TIDE_OK) {
            goto out;
        }
    }
    if (pt->seg_end > TIDE__SEG_HDR &&
        pt->seg_end + (int64_t) pt->len > log->params.segment_bytes)
    {
        rc = roll(log, i);
        if (rc != TIDE_OK) {
            goto out;
        }
        rolled = 1;
    }

    /* Fill in offsets and CRCs, and collect index entries. */
    idx = malloc((pt->len / TIDE__INDEX_EVERY + 2) * TIDE__INDEX_ENTRY);
    if (idx == NULL) {
        rc = TIDE_ENOMEM;
        goto out;
    }
    off = pt->next;
    pos = pt->seg_end;
    idx_pos = pt->idx_pos;
    for (p = pt->buf, end = pt->buf + pt->len; p < end; p += len + 4) {
        len = tide__ld32(p);
        tide__st64(p + 8, off);
        tide__st32(p + 4, tide__crc32c(0, p + 8, len - 4));
        if (pos - idx_pos >= TIDE__INDEX_EVERY) {
            tide__st32(idx + nidx * TIDE__INDEX_ENTRY,
                       (uint32_t) (off - pt->seg_base));
            tide__st32(idx + nidx * TIDE__INDEX_ENTRY + 4, (uint32_t) pos);
            nidx++;
            idx_pos = pos;
        }
        off++;
        pos += len + 4;
    }

    {
        size_t   done = 0;
        ssize_t  n;

        while (done < pt->len) {
            n = pwrite(pt->segfd, pt->buf + done, pt->len - done,
                       pt->seg_end + (int64_t) done);
            if (n < 0 && errno == EINTR) {
                continue;
            }
            if (n <= 0) {
                snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d: write "
                         "failed: %s", log->dir, i,
                         n < 0 ? strerror(errno) : "no progress");
                rc = TIDE_EIO;
                goto undo;
            }
            done += (size_t) n;
        }
    }
    if (nidx > 0) {
        char  iname[40];
        int   ifd;

        tide__seg_name(iname, sizeof(iname), pt->seg_base, "index");
        ifd = openat(pt->dirfd, iname, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
        if (ifd < 0 ||
            pwrite(ifd, idx, nidx * TIDE__INDEX_ENTRY, pt->idx_end) !=
            (ssize_t) (nidx * TIDE__INDEX_ENTRY))
        {
            /* The index is a hint; the next tail_load rebuilds it. */
            pt->known = 0;
        } else {
            pt->idx_end += (int64_t) (nidx * TIDE__INDEX_ENTRY);
            pt->idx_pos = idx_pos;
        }
        if (ifd >= 0) {
            close(ifd);
        }
    }
    if (log->params.fsync == TIDE_FSYNC_BATCH) {
        if (durable) {
            rc = part_sync(log, i);
            if (rc != TIDE_OK) {
                goto undo;
            }
        } else {
            /* Only a hint to start the I/O, once a flush's worth (1 MiB by
             * default) is written: publishing after every small batch must
             * not start a disk write each time. fdatasync does the rest. */
            if (pt->wb_from > pt->seg_end) {
                pt->wb_from = pt->seg_end;     /* a new segment */
            }
            if (pos - pt->wb_from >= log->params.flush_bytes) {
                (void) sync_file_range(pt->segfd, pt->wb_from,
                                       pos - pt->wb_from,
                                       SYNC_FILE_RANGE_WRITE);
                pt->wb_from = pos;
            }
            pt->unsynced = 1;
        }
    }
    pt->seg_end = pos;
    pt->next = off;
    pt->len = 0;
    pt->count = 0;
    rc = TIDE_OK;
    goto out;
undo:
    /* The batch stays buffered for a retry: take back whatever part of it
     * reached the file, or the retry would write those records twice. */
    if (ftruncate(pt->segfd, pt->seg_end) != 0) {
        tide__warn("stream '%s' partition %d: cannot take back a failed "
                   "write (%s); the next open cuts it", log->name, i,
                   strerror(errno));
    }
    pt->known = 0;
out:
    unlock_part(pt);
    free(idx);
    if (rc == TIDE_OK && rolled) {
        clean_start(log, i);
    }
    return rc;
}

int
tide_log_flush(tide_log_t *log)
{
    int32_t  i;
    int      rc, first = TIDE_OK;

    for (i = 0; i < log->nparts; i++) {
        tide__part_t  *pt = &log->parts[i];

        if (pt->len > 0) {
            rc = flush_part(log, i, 1);
        } else if (pt->unsynced || pt->sync_err != 0) {
            rc = part_sync(log, i);     /* automatic flushes wrote it all */
        } else {
            continue;
        }
        if (rc != TIDE_OK && first == TIDE_OK) {
            first = rc;
        }
    }
    return first;
}

/* Writes what each partition buffers, without the fdatasync: readers see
 * it at once; part_sync at the next tide_log_flush makes it durable
 * (flush_part marks the partition 'unsynced' for that). */
int
tide_log_publish(tide_log_t *log)
{
    int32_t  i;
    int      rc, first = TIDE_OK;

    for (i = 0; i < log->nparts; i++) {
        if (log->parts[i].len == 0) {
            continue;
        }
        rc = flush_part(log, i, 0);
        if (rc != TIDE_OK && first == TIDE_OK) {
            first = rc;
        }
    }
    return first;
}

/* ---- range ------------------------------------------------------------ */

int
tide_log_get_range(tide_log_t *log, int32_t partition, int64_t *start,
                   int64_t *end)
{
    tide__part_t  *pt;
    int64_t       *bases;
    size_t         n;
    int            rc, fd, ifd;
    char           name[40];
    struct stat    st;
    tide__scan_t   res;
    int64_t        pos, dummy_pos = 0, dummy_end = 0;
    char           hdr[TIDE__REC_HDR];
    size_t         k;
    ssize_t        got;

    *start = 0;
    *end = 0;
    if (partition < 0 || partition >= log->nparts) {
        snprintf(log->errmsg, sizeof(log->errmsg), "partition %d out of range: "
                 "stream '%s' has %d", partition, log->name, log->nparts);
        return TIDE_ERANGE;
    }
    pt = &log->parts[partition];
    rc = tide__seg_bases(pt->dirfd, &bases, &n);
    if (rc != TIDE_OK) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d: cannot list "
                 "segments: %s", log->dir, partition, strerror(errno));
        return rc;
    }
    if (n == 0) {
        free(bases);
        return TIDE_OK;
    }

    /* End: scan the last segment from its last index entry. */
    tide__seg_name(name, sizeof(name), bases[n - 1], "log");
    fd = openat(pt->dirfd, name, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d/%s: %s", log->dir,
                 partition, name, strerror(errno));
        if (fd >= 0) {
            close(fd);
        }
        free(bases);
        return TIDE_EIO;
    }
    tide__seg_name(name, sizeof(name), bases[n - 1], "index");
    ifd = openat(pt->dirfd, name, O_RDONLY | O_CLOEXEC);
    pos = tide__idx_seek(ifd, fd, bases[n - 1], INT64_MAX, st.st_size);
    if (ifd >= 0) {
        close(ifd);
    }
    rc = tide__seg_scan(fd, pos, bases[n - 1], &res, -1, &dummy_pos,
                        &dummy_end);
    if (rc == TIDE_OK && res.last < 0 && pos > TIDE__SEG_HDR) {
        rc = tide__seg_scan(fd, TIDE__SEG_HDR, bases[n - 1], &res, -1,
                            &dummy_pos, &dummy_end);
    }
    close(fd);
    if (rc != TIDE_OK) {
        snprintf(log->errmsg, sizeof(log->errmsg), "%s/%d/%s: cannot read: "
                 "%s", log->dir, partition, name, tide_strerror(rc));
        free(bases);
        return rc;
    }
    *end = res.last >= 0 ? res.last + 1 : bases[n - 1];

    /* Start: the first record stored (compaction may empty segments). */
    *start = *end;
    for (k = 0; k < n; k++) {
        tide__seg_name(name, sizeof(name), bases[k], "log");
        fd = openat(pt->dirfd, name, O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            continue;        /* deleted by retention meanwhile */
        }
        got = pread(fd, hdr, sizeof(hdr), TIDE__SEG_HDR);
        close(fd);
        if (got == (ssize_t) sizeof(hdr)) {
            *start = tide__ld64(hdr + 8);
            if (*start < bases[k] || *start > *end) {
                *start = bases[k];
            }
            break;
        }
    }
    free(bases);
    return TIDE_OK;
}
