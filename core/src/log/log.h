/*
 * Internals shared by the files of core/src/log/: the stream handle, the
 * per-partition writer state, and segment helpers (segment.c).
 */
#ifndef TIDE_LOG_LOG_H
#define TIDE_LOG_LOG_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "tide.h"

#define TIDE__ERRLEN 512

/* Writer state of one partition. 'known' says whether seg_* and 'next'
 * match the files; another process's append makes them stale, which the
 * next flush notices under the lock (see tail_check in log.c). */
typedef struct tide__part_s {
    int          dirfd;       /* the partition folder */
    int          lockfd;      /* 'lock': flock'ed by appends and recovery */
    int          segfd;       /* active segment, -1 until known */
    int          idxfd;       /* its index */
    int          known;
    int64_t      seg_base;
    int64_t      seg_end;     /* bytes in the active segment */
    int64_t      idx_end;     /* bytes in its index */
    int64_t      idx_pos;     /* log position of the last index entry */
    int64_t      next;        /* offset of the next record */
    char        *buf;         /* pending records, offsets and CRCs unset */
    size_t       len;
    size_t       cap;
    int32_t      count;
    int          unsynced;    /* auto-flushed records not yet fdatasync'ed */
    int64_t      wb_from;     /* active segment: write-back not started
                               * from here on (a hint; see flush_part) */
    int          sync_err;    /* errno of a failed sync at a close, or 0 */
    int          damaged;     /* the active segment holds damage that is
                               * not a torn tail: appends are refused */
    pthread_t    cleaner;     /* background retention/compaction */
    int          cleaning;
} tide__part_t;

struct tide_log_s {
    char                *dir;       /* <data-dir>/streams/<name> */
    char                *name;
    tide_log_params_t    params;
    tide__part_t        *parts;
    int32_t              nparts;
    uint32_t             rr;        /* round-robin cursor for nil keys */
    int                  refs;      /* 1 for the owner + 1 per reader */
    int                  freed;     /* tide_log_free was called */
    char                 errmsg[TIDE__ERRLEN];
};

/* Result of scanning records of one segment. */
typedef struct tide__scan_s {
    int64_t      end;         /* byte position after the last whole record */
    int64_t      last;        /* offset of the last record, -1 if none */
    int64_t      first;       /* offset of the first record, -1 if none */
    int64_t      count;
    int          torn;        /* bytes after 'end' failed to parse */
} tide__scan_t;

/* segment.c */
int   tide__seg_bases(int dirfd, int64_t **bases, size_t *n);
void  tide__seg_name(char *buf, size_t len, int64_t base, const char *ext);
int   tide__seg_create(int dirfd, int64_t base, int *logfd, int *idxfd);
int   tide__seg_check_hdr(int fd, int64_t size);
int   tide__rec_parse(const char *p, size_t avail, tide_rec_t *rec,
                      size_t *size);
int   tide__seg_scan(int fd, int64_t pos, int64_t base, tide__scan_t *res,
                     int idxfd, int64_t *idx_pos, int64_t *idx_end);
int64_t tide__idx_seek(int idxfd, int logfd, int64_t base, int64_t offset,
                       int64_t size);
int   tide__seg_resync(int fd, int64_t from, int64_t size, int64_t after,
                       int64_t *at);
int   tide__idx_trim(int idxfd, int logfd, int64_t base, int64_t log_end,
                     int64_t *idx_end, int64_t *last_pos);
int64_t tide__now_ms(void);

/* log.c */
void  tide__log_unref(tide_log_t *log);
void  tide__warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
