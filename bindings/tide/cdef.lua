-- GENERATED from core/include/tide.h by 'make cdef'; never edit.
return [==[
/*
 * tide.h -- the only exported C surface of libtide.
 *
 * Rules: this file minus its '#' lines is valid
 * ffi.cdef input, so it has no macros, no varargs, no bitfields and no
 * struct arguments by value. Every change bumps tide_abi_version().
 *
 * Errors: functions return TIDE_OK (0) or a negative TIDE_E* code. Details
 * are on the handle (tide_<noun>_errmsg) or, before a handle exists, in a
 * caller buffer 'err' of 'errlen' bytes.
 */



enum {
    TIDE_OK       = 0,
    TIDE_EINVAL   = -1,   /* bad argument */
    TIDE_ENOMEM   = -2,   /* out of memory */
    TIDE_EIO      = -3,   /* a system call failed; see errmsg */
    TIDE_ENOENT   = -4,   /* no such stream, partition or file */
    TIDE_EEXIST   = -5,   /* the stream exists already */
    TIDE_ECORRUPT = -6,   /* a record or file failed its check */
    TIDE_EAGAIN   = -7,   /* nothing to read yet */
    TIDE_ENOBUFS  = -8,   /* caller buffer too small; size needed is set */
    TIDE_EBUSY    = -9,   /* held by another process */
    TIDE_ERANGE   = -10,  /* offset or partition out of range */
    TIDE_ECLOSED  = -11   /* the peer closed its end (a channel) */
};

/* Returns the ABI version; bindings refuse to load on a mismatch. */
int tide_abi_version(void);

/* Returns the release version, e.g. "0.1.0". Static storage. */
const char *tide_version(void);

/* Returns static text for a TIDE_E* code; never NULL ("unknown error"). */
const char *tide_strerror(int rc);

/* ------------------------------------------------------------------ */
/* Partitioning                                                        */

/* Returns Kafka's murmur2 hash (seed 0x9747b28c) of 'len' bytes of 'key'. */
uint32_t tide_murmur2(const char *key, size_t len);

/* Returns the partition Kafka's default partitioner gives 'key' among 'n'
 * partitions: (murmur2(key) & 0x7fffffff) % n. Returns TIDE_EINVAL when
 * n < 1. */
int32_t tide_partition_get(const char *key, size_t len, int32_t n);

/* ------------------------------------------------------------------ */
/* Records                                                             */

/* One message. A public layout because Lua reads its fields on the hot
 * path. When read from a reader, every pointer points into the reader's
 * buffer and stays valid until the next call on that reader. When pushed,
 * the pointers are borrowed for the duration of the call.
 *
 * key == NULL means a nil key (klen is then -1); val == NULL means a nil
 * value, a tombstone in a compacted stream (vlen is then -1). 'hdrs' is the
 * opaque encoded header block (hlen bytes, 0 when there are none). */
typedef struct tide_rec_s {
    int64_t      offset;
    int64_t      ts;          /* milliseconds since the epoch */
    const char  *key;
    const char  *val;
    const char  *hdrs;
    int32_t      klen;
    int32_t      vlen;
    int32_t      hlen;
    int32_t      partition;
} tide_rec_t;

/* ------------------------------------------------------------------ */
/* The embedded log: one stream in a data dir, all its partitions.     */

typedef struct tide_log_s     tide_log_t;
typedef struct tide_reader_s  tide_reader_t;

enum {
    TIDE_LOG_OPEN    = 0,     /* the stream must exist */
    TIDE_LOG_CREATE  = 1,     /* create it when missing */
    TIDE_LOG_EXCL    = 2      /* create it; TIDE_EEXIST when it exists */
};

enum {
    TIDE_FSYNC_DEFAULT = 0,   /* the stream's setting (batch when new) */
    TIDE_FSYNC_BATCH   = 1,   /* fdatasync at every flush (group commit) */
    TIDE_FSYNC_NONE    = 2    /* leave it to the OS; survives kill -9 only */
};

enum {
    TIDE_OFFSET_END       = -1,
    TIDE_OFFSET_BEGINNING = -2
};

/* Stream settings. A value of 0 picks the default (-1 means "none" where
 * noted). 'partitions', 'compact' and 'segment_bytes' (4096 .. 2 GiB - 1)
 * are fixed at creation and the others stored then too; on open, a
 * non-default 'fsync' or 'flush_bytes' applies to this handle only. */
typedef struct tide_log_params_s {
    int32_t      mode;                /* TIDE_LOG_OPEN, _CREATE or _EXCL */
    int32_t      partitions;          /* default 1 */
    int32_t      compact;             /* 1: keep the newest record per key */
    int32_t      fsync;               /* TIDE_FSYNC_*; default batch */
    int64_t      segment_bytes;       /* roll size; default 1 GiB */
    int64_t      retention_ms;        /* -1: forever; default 7 days */
    int64_t      retention_bytes;     /* per partition; -1 (default): none */
    int64_t      delete_retention_ms; /* tombstone lifetime; default 1 day */
    int64_t      flush_bytes;         /* auto-flush size; default 1 MiB */
} tide_log_params_t;

/* Opens stream 'name' under data dir 'dir' (created as needed with
 * TIDE_LOG_CREATE/EXCL). 'params' may be NULL (TIDE_LOG_OPEN, defaults).
 * Opening cuts a torn or corrupt tail of each partition back to its last
 * whole record and logs a line on stderr saying what was cut.
 * On success *out is the new handle; the caller owns it (tide_log_free).
 * On failure *out is NULL and 'err' holds one line: TIDE_ENOENT (no such
 * stream or data dir), TIDE_EEXIST (TIDE_LOG_EXCL), TIDE_EINVAL (bad name
 * or params, or 'dir' is not a folder), TIDE_EIO, TIDE_ECORRUPT (bad meta
 * file), TIDE_ENOMEM. A data dir that can be read but not written opens
 * for reading only: readers work, tide_log_flush fails with TIDE_EIO. */
int tide_log_new(tide_log_t **out, const char *dir, const char *name,
                 const tide_log_params_t *params, char *err, size_t errlen);

/* Flushes pending records (see tide_log_flush) and frees the handle once
 * its last reader is freed too. NULL is a no-op. */
void tide_log_free(tide_log_t *log);

/* Returns the number of partitions. */
int32_t tide_log_count(const tide_log_t *log);

/* Writes the stream's settings into *out. */
int tide_log_get_params(const tide_log_t *log, tide_log_params_t *out);

/* Writes the first offset still stored in 'partition' into *start and the
 * offset the next record will get into *end (end - start records at most,
 * fewer after compaction). Sees appends of other processes.
 * Returns TIDE_OK, TIDE_ERANGE (partition), TIDE_EIO. */
int tide_log_get_range(tide_log_t *log, int32_t partition, int64_t *start,
                       int64_t *end);

/* Buffers one record for appending. rec->partition < 0 picks one: murmur2
 * of the key when keyed, round-robin when not. rec->ts == 0 means now.
 * Key, value and headers are copied. On return rec->partition holds the
 * partition chosen. Records become readable at the next flush, which is
 * automatic once a partition buffers params.flush_bytes; an automatic
 * flush writes without waiting for the disk (it starts the write-back),
 * so records are durable only once tide_log_flush returns. Returns
 * TIDE_OK, TIDE_EINVAL, TIDE_ERANGE, TIDE_EIO or TIDE_ECORRUPT (from an
 * automatic flush), TIDE_ENOMEM. */
int tide_log_push(tide_log_t *log, tide_rec_t *rec);

/* Appends every buffered record: per partition, one write and (with
 * TIDE_FSYNC_BATCH) one fdatasync under the partition's file lock, so
 * several processes can append to one stream. When it returns TIDE_OK
 * every record pushed before is durable. On TIDE_EIO the records stay
 * buffered and errmsg says what failed. TIDE_ECORRUPT: a partition's
 * active segment is damaged before its end (not a torn tail), so appends
 * are refused until it is restored or cut; errmsg names file and byte. */
int tide_log_flush(tide_log_t *log);

/* Writes every buffered record of every partition to its file, as
 * tide_log_flush does, but without waiting for the disk: when it returns
 * TIDE_OK the records are readable by every reader, in this process or
 * another, and they become durable at the next tide_log_flush (or are
 * lost by a machine crash before it; a kill -9 of this process loses
 * nothing published). Offsets are assigned under the partition lock, so
 * other processes appending meanwhile keep them dense. Returns TIDE_OK,
 * TIDE_EIO (the records stay buffered; errmsg says what failed),
 * TIDE_ECORRUPT (as tide_log_flush), TIDE_ENOMEM. */
int tide_log_publish(tide_log_t *log);

/* Runs retention (by age and size) and, for compacted streams, compaction
 * on the closed segments of 'partition' (-1: all). Offsets never change
 * and appends are never blocked. Returns the number of bytes freed (>= 0),
 * or TIDE_EBUSY (another process is cleaning it), TIDE_EIO, TIDE_ERANGE,
 * TIDE_ECORRUPT (a closed segment does not read to its end: nothing was
 * changed, errmsg names file and byte).
 * Waits for this handle's own background cleaning first. */
int64_t tide_log_clean(tide_log_t *log, int32_t partition);

/* Sets the stable offset of 'partition': records at or past it are not
 * committed yet (a job wrote them but has not checkpointed them), so
 * compaction never lets them supersede older records, and keeps them.
 * Like Kafka's last stable offset. Without one, every record counts.
 * Returns TIDE_OK, TIDE_ERANGE (partition), TIDE_EINVAL (offset < 0),
 * TIDE_EIO. */
int tide_log_set_stable(tide_log_t *log, int32_t partition, int64_t offset);

/* Returns the last error detail on this handle; valid until the next call
 * on it. Never NULL. */
const char *tide_log_errmsg(const tide_log_t *log);

/* Opens a reader on 'partition' of 'log' at 'offset' (>= 0, or
 * TIDE_OFFSET_BEGINNING / TIDE_OFFSET_END). An offset below the first one
 * still stored starts at the first; one past the end waits for it. The
 * reader keeps 'log' alive. Caller owns *out (tide_reader_free).
 * Returns TIDE_OK, TIDE_EINVAL (offset below TIDE_OFFSET_BEGINNING),
 * TIDE_ERANGE (partition), TIDE_EIO, TIDE_ECORRUPT (a segment's header
 * is damaged; errmsg names the file), TIDE_ENOMEM; the log's errmsg says
 * more. */
int tide_reader_new(tide_reader_t **out, tide_log_t *log, int32_t partition,
                    int64_t offset);

/* NULL is a no-op. */
void tide_reader_free(tide_reader_t *r);

/* Reads the next record into *rec; its pointers stay valid until the next
 * call on 'r'. Returns TIDE_OK, TIDE_EAGAIN (nothing more yet: records
 * appended later, by any process, show up on a later call), TIDE_ECORRUPT
 * (a whole record failed its CRC; errmsg says where), TIDE_EIO. */
int tide_reader_poll(tide_reader_t *r, tide_rec_t *rec);

/* Reads up to 'n' records into recs[0..n-1]; their pointers stay valid
 * until the next call on 'r'. Returns the count (>= 0, 0 meaning nothing
 * yet), TIDE_EINVAL when n < 1, or a negative code as tide_reader_poll. */
int tide_reader_poll_batch(tide_reader_t *r, tide_rec_t *recs, int n);

/* Returns the offset the next record read will have at least. */
int64_t tide_reader_get_offset(const tide_reader_t *r);

/* Returns the last error detail on this reader; valid until the next call
 * on it. Never NULL. */
const char *tide_reader_errmsg(const tide_reader_t *r);

/* ------------------------------------------------------------------ */
/* Notify: wake a reader when a partition changes (inotify).          */
/*                                                                     */
/* Use: add the partitions first, then read until TIDE_EAGAIN, then    */
/* tide_notify_wait (or poll tide_notify_fd). An append made after the  */
/* add, by any process, is never missed: its event waits in the queue. */
/* Events are hints: a wake-up may find nothing new (an index write, a  */
/* retention pass); read and wait again.                               */

typedef struct tide_notify_s  tide_notify_t;

/* Makes a notifier. On success *out is the new one and the caller owns it
 * (tide_notify_free). Returns TIDE_OK, TIDE_EINVAL (out NULL), TIDE_ENOMEM,
 * TIDE_EIO (no inotify instance left: fs.inotify.max_user_instances). */
int tide_notify_new(tide_notify_t **out);

/* Closes the notifier and its descriptor. NULL is a no-op. */
void tide_notify_free(tide_notify_t *n);

/* Watches the folder of 'partition' of 'log' (its segments and index
 * files): an append (a write by any process), a new segment, a file moved
 * in, or a removal makes the notifier readable. 'log' is borrowed for
 * the call. Watching one partition twice is allowed: each add gives its
 * own *id, and the watch ends with the last remove. *id is written (0 on
 * failure). Returns TIDE_OK, TIDE_EINVAL (n, log or id NULL),
 * TIDE_ERANGE (partition), TIDE_ENOMEM, TIDE_EIO (out of inotify watches:
 * fs.inotify.max_user_watches; the folder is gone). */
int tide_notify_add(tide_notify_t *n, tide_log_t *log, int32_t partition,
                    int *id);

/* Ends watch 'id' (from tide_notify_add). Returns TIDE_OK or TIDE_ENOENT
 * (no such watch, or removed already). Events already queued stay. */
int tide_notify_remove(tide_notify_t *n, int id);

/* Returns the notifier's descriptor, readable while events are pending
 * (for poll(2), epoll or tide_loop_watch_fd). It belongs to 'n': do not
 * close or read it; tide_notify_drain reads it. */
int tide_notify_fd(const tide_notify_t *n);

/* Reads every pending event without waiting. Returns the count of those
 * that may mean new records (>= 0; 0: none), or TIDE_EIO. Not counted:
 * the end of a removed watch, and changes to index files (opening a log
 * handle touches those of every partition). Drain before reading, so that an event for
 * data the read then takes does not cause a wasted wake-up. */
int tide_notify_drain(tide_notify_t *n);

/* Waits until an event that counts (see tide_notify_drain) is pending
 * or 'timeout_ms' (>= 0; 0: do not wait) milliseconds have passed, and
 * drains the events. Returns TIDE_OK (there
 * were events), TIDE_EAGAIN (timeout), TIDE_EINVAL (n NULL, timeout < 0),
 * TIDE_EIO. A signal that interrupts the wait returns TIDE_EAGAIN early,
 * so that the caller can look at its flags. */
int tide_notify_wait(tide_notify_t *n, int timeout_ms);

/* ------------------------------------------------------------------ */
/* Clocks                                                              */

enum {
    TIDE_TIME_MONO = 0,       /* ms since an arbitrary point; never jumps */
    TIDE_TIME_REAL = 1        /* ms since the epoch; may jump (NTP, admin) */
};

/* Returns the time of 'clock' in milliseconds (>= 0), or TIDE_EINVAL for
 * an unknown clock. TIDE_TIME_MONO is for intervals and deadlines,
 * TIDE_TIME_REAL for timestamps. */
int64_t tide_time_get(int clock);

/* ------------------------------------------------------------------ */
/* The container loop: libuv, with signals turned into events.         */

typedef struct tide_loop_s  tide_loop_t;

/* Event bits returned by tide_loop_poll. */
enum {
    TIDE_LOOP_STOP    = 1,    /* SIGINT or SIGTERM arrived */
    TIDE_LOOP_RELOAD  = 2,    /* SIGHUP arrived */
    TIDE_LOOP_CHANGE  = 4,    /* something changed in the watched folder */
    TIDE_LOOP_COMMAND = 8,    /* a control client sent a command line */
    TIDE_LOOP_INPUT   = 16,   /* a descriptor of tide_loop_watch_fd is
                                 readable, closed or failed */
    TIDE_LOOP_CHILD   = 32    /* SIGCHLD arrived (tide_loop_watch_children) */
};

/* Makes a loop that watches SIGINT, SIGTERM (TIDE_LOOP_STOP) and SIGHUP
 * (TIDE_LOOP_RELOAD). While at least one loop exists these signals no
 * longer take their default action; once the last loop is freed they do
 * again. Several loops may exist; each sees every signal. On success
 * *out is the new loop and the caller owns it (tide_loop_free). On
 * failure *out is NULL: TIDE_EINVAL (out is NULL), TIDE_ENOMEM, TIDE_EIO
 * (libuv could not set up, e.g. out of file descriptors). */
int tide_loop_new(tide_loop_t **out);

/* Closes the loop's handles, waits until libuv has released them and
 * frees the loop. NULL is a no-op. */
void tide_loop_free(tide_loop_t *l);

/* Runs the loop once and returns the TIDE_LOOP_* bits of the events seen
 * since the previous poll (>= 0; 0: none), clearing them. With
 * 'timeout_ms' 0 it only collects what is already there; otherwise it
 * waits until an event arrives or 'timeout_ms' milliseconds have passed,
 * whichever comes first. Returns TIDE_EINVAL when 'l' is NULL or
 * 'timeout_ms' is negative. Never calls back into the caller. */
int tide_loop_poll(tide_loop_t *l, int timeout_ms);

/* Watches folder 'dir' (not its subfolders): from now on a file created,
 * written, renamed, moved in or out, or removed directly inside it, or a
 * change to the folder itself, raises TIDE_LOOP_CHANGE. Watching the
 * folder rather than a file is what catches editors that save through a
 * rename. Changes are not coalesced here: one save may raise several
 * events before the next poll, which sees one bit. A second call replaces
 * the watch; on failure the previous watch stays in place. 'dir' is
 * borrowed for the call. Returns TIDE_OK, TIDE_EINVAL ('l' or 'dir' NULL,
 * 'dir' empty or not a folder), TIDE_ENOENT (no such folder) or TIDE_EIO
 * (no permission, out of inotify watches, ...). */
int tide_loop_set_watch(tide_loop_t *l, const char *dir);

/* The longest control command, in bytes, without its '\n' (1 MiB: a
 * REPL sends code chunks and saved jobs as one JSON line). */
enum {
    TIDE_CONTROL_LINE_MAX = 1048576
};

/* Serves control clients on a Unix stream socket made at 'path', mode
 * 0600. Only this process's user (its effective uid) may send commands:
 * each client's uid is checked at accept (SO_PEERCRED), root included,
 * in case the file's mode was changed. A client of another user gets one
 * line, "error: permission denied: this job runs as uid N (NAME);
 * connect as that user" (without " (NAME)" when the name is unknown), is
 * closed once its line ends (or after 5 s), nothing it sends is queued,
 * and one warning naming its uid and pid goes to stderr. A socket file
 * already at 'path' is removed first only when nothing answers on it;
 * when a live process answers the call fails with TIDE_EBUSY and 'err'
 * "another process serves PATH". A client sends one command line of at
 * most TIDE_CONTROL_LINE_MAX bytes ending in '\n'; each complete line
 * queues the client and raises TIDE_LOOP_COMMAND (one bit may stand for
 * several commands: pop until TIDE_EAGAIN). The loop owns each client's
 * line buffer: it starts at 4 KiB and grows as the line arrives. A
 * longer line gets "error: command longer than 1048576 bytes" and the
 * client is closed once its line ends (or after 5 s). A client that disconnects before its line is
 * complete is dropped silently; one that sends nothing for 5 s before
 * its line is complete gets a line starting "timeout: " and is closed
 * (every byte that arrives restarts the 5 s). At most 16 clients are
 * open at once; one more gets "busy: too many control clients".
 * 'path' is borrowed for the call; 'err' (may be NULL) receives a
 * message on failure and "" on success. A loop serves one socket:
 * tide_loop_free closes it and removes the file it made (unless another
 * file has replaced it meanwhile). Returns TIDE_OK, TIDE_EINVAL ('l' or
 * 'path' NULL or empty, 'path' longer than 107 bytes, the loop serves a
 * socket already), TIDE_EBUSY, TIDE_ENOMEM or TIDE_EIO ('path' exists and
 * is not a socket, no permission, ...). */
int tide_loop_set_control(tide_loop_t *l, const char *path, char *err,
                          size_t errlen);

/* Takes the oldest queued command, copies it without its '\n' into 'buf'
 * and makes its client the current one, to be answered by
 * tide_loop_push_reply. On entry *len is the capacity of 'buf' (a
 * command is at most TIDE_CONTROL_LINE_MAX bytes). Returns TIDE_OK with
 * *len set to the command's size; TIDE_EAGAIN when no command is queued
 * (*len set to 0); TIDE_ENOBUFS with *len set to the size needed, the
 * command staying queued; TIDE_EINVAL when 'l' or 'len' is NULL, or
 * 'buf' is NULL with *len > 0. A current client that has not been
 * answered yet is disconnected without a reply when the next command is
 * taken. Does not keep 'buf'. */
int tide_loop_pop_command(tide_loop_t *l, char *buf, size_t *len);

/* Writes 'len' bytes of 'text' to the current client, then disconnects
 * it; the client sees the reply followed by end-of-file. The call
 * returns once the whole reply is written (a long one takes as long as
 * the client takes to read it) or the client has read nothing for about
 * a second (the reply is cut); a client that has gone away is dropped
 * silently (still TIDE_OK). 'text' is borrowed for the call and may be
 * NULL when 'len' is 0. Returns TIDE_OK, or TIDE_EINVAL when 'l' is
 * NULL, 'text' is NULL with len > 0, or there is no current client
 * (nothing popped, or already answered). */
int tide_loop_push_reply(tide_loop_t *l, const char *text, size_t len);

/* The client side: connects to the control socket at 'path', sends 'cmd'
 * followed by '\n', and reads the reply until the job disconnects. The
 * whole exchange (connect, send, reply) takes at most 'timeout_ms'
 * milliseconds. On entry *len is the capacity of 'reply' (the caller
 * owns it; it is written up to that many bytes); on return *len holds
 * the number of bytes stored (0 on failure). A longer reply is read to
 * its end and cut to the capacity, and *len is the capacity: the command
 * has run, so it cannot be asked for again; a caller that must know
 * passes one byte more than it wants. 'path' and 'cmd' are borrowed for
 * the call; 'err' (may be NULL) receives a message on failure and "" on
 * success. Returns TIDE_OK; TIDE_ENOENT when the socket file is missing
 * or nothing answers on it, with 'err' "no job is listening on PATH (is
 * it running?)"; TIDE_EAGAIN when no complete reply came within
 * 'timeout_ms'; TIDE_EIO with 'err' "permission denied on control socket
 * PATH: the job runs as another user; run this as the job's user" when
 * connect() fails with EACCES or EPERM (the socket is not ours), or for
 * another failure; TIDE_EINVAL ('path' NULL, empty or longer than 107
 * bytes; 'cmd' NULL, longer than TIDE_CONTROL_LINE_MAX bytes or holding
 * a '\n'; 'len' NULL; 'reply' NULL with *len > 0; 'timeout_ms'
 * negative). A job that refuses this user (SO_PEERCRED) answers with a
 * line starting "error: permission denied: ", returned as the reply. */
int tide_control_send(const char *path, const char *cmd, char *reply,
                      size_t *len, int timeout_ms, char *err, size_t errlen);

/* Watches descriptor 'fd' (borrowed: the caller keeps it open and owns
 * it) for reading: while it is readable, at end-of-file, or failed, every
 * tide_loop_poll returns TIDE_LOOP_INPUT (level-triggered: read it to
 * EAGAIN, or unwatch it at end-of-file, or the next poll returns at
 * once). The bit does not say which descriptor: look at each. A channel
 * (tide_chan_*) may hold whole frames already read from its descriptor:
 * receive until TIDE_EAGAIN before polling again. Unwatch before closing
 * 'fd'. *id is written (0 on failure). Returns TIDE_OK, TIDE_EINVAL (l or
 * id NULL, fd < 0, fd watched already by this loop), TIDE_ENOMEM,
 * TIDE_EIO (libuv refused it: not pollable, e.g. a regular file). */
int tide_loop_watch_fd(tide_loop_t *l, int fd, int *id);

/* Ends watch 'id' of tide_loop_watch_fd. Returns TIDE_OK, TIDE_ENOENT (no
 * such watch), TIDE_EINVAL (l NULL). */
int tide_loop_unwatch_fd(tide_loop_t *l, int id);

/* From now on SIGCHLD raises TIDE_LOOP_CHILD: a child process exited,
 * stopped or continued (see tide_proc_reap). Several children may stand
 * behind one bit: reap every child. A second call does nothing. Returns
 * TIDE_OK, TIDE_EINVAL (l NULL), TIDE_EIO. */
int tide_loop_watch_children(tide_loop_t *l);

/* ------------------------------------------------------------------ */
/* Worker processes, their message channels and shared memory.         */
/*                                                                     */
/* The supervisor spawns each worker with tide_proc_spawn: this program */
/* again (or o->path), with fd 3 its end of a channel and fd 4 a shared */
/* memory region. The worker's main calls tide_proc_worker_init first. */
/* A proc, a chan and their buffers are used by one thread at a time.  */

typedef struct tide_proc_s  tide_proc_t;
typedef struct tide_chan_s  tide_chan_t;

/* The largest frame a channel carries. */
enum {
    TIDE_CHAN_FRAME_MAX = 16777216,
    TIDE_PROC_CHAN_FD   = 3,   /* the worker's channel descriptor */
    TIDE_PROC_SHM_FD    = 4,   /* the worker's shared memory descriptor */
    TIDE_PROC_KEEP_FD   = 5    /* the descriptor of opts.keep_fd */
};

typedef struct tide_proc_opts_s {
    const char          *title;   /* the worker's argv[0], as ps and
                                     pgrep -f show it ("tide: JOB worker
                                     2"); required */
    const char *const   *env;     /* NULL, or "K=V" strings ending with
                                     NULL, added to (or replacing) ours */
    const char          *path;    /* the program; NULL: this process's
                                     own (/proc/self/exe, resolved, so that
                                     its name is "tide" in ps and top) */
    int64_t              shm_bytes;      /* shared region; 0: none */
    int64_t              max_data_bytes; /* RLIMIT_DATA of the worker,
                                            set by tide_proc_worker_init;
                                            0: unlimited */
    int32_t              keep_fd;  /* > 2: a descriptor the worker gets
                                      as fd 5 (TIDE_PROC_KEEP_FD), e.g.
                                      the job's run lock, which it then
                                      holds for as long as it lives;
                                      0: none */
} tide_proc_opts_t;

/* Starts a worker: fork and exec of o->path (argv { o->title }) with our
 * environment plus o->env plus TIDE_WORKER=1, TIDE_PARENT_PID=<our pid>
 * and, when set, TIDE_WORKER_MAX_DATA=<o->max_data_bytes>. In the child,
 * fd 3 is its end of a stream socket pair (see tide_chan_*), fd 4 the
 * shared region when o->shm_bytes > 0, and every other descriptor but 0,
 * 1 and 2 is closed; its signal mask is empty, and it gets SIGKILL when
 * the thread that spawned it ends (PR_SET_PDEATHSIG: spawn from the main
 * thread). Returns once the exec succeeded. On success *out is the new
 * proc and the caller owns it (tide_proc_free). On failure *out is NULL,
 * no child is left, and 'err' (errlen bytes; may be NULL when errlen is
 * 0) holds one line: TIDE_EINVAL (out or o NULL, title NULL or empty,
 * shm_bytes or max_data_bytes < 0), TIDE_ENOENT (no such program, or not
 * executable), TIDE_ENOMEM, TIDE_EIO (fork, socketpair, memfd...). */
int tide_proc_spawn(tide_proc_t **out, const tide_proc_opts_t *o,
                    char *err, size_t errlen);

/* Closes the channel, unmaps the shared region and frees the proc. Does
 * not kill the child, nor reap it (a child never reaped stays a zombie
 * until this process exits). NULL is a no-op. */
void tide_proc_free(tide_proc_t *p);

/* Returns the child's pid. */
int tide_proc_pid(const tide_proc_t *p);

/* Returns the channel's descriptor (for tide_loop_watch_fd); owned by the
 * proc. */
int tide_proc_fd(const tide_proc_t *p);

/* Returns the proc's channel to the worker: owned by the proc, valid
 * until tide_proc_free. */
tide_chan_t *tide_proc_chan(tide_proc_t *p);

/* Returns the start of the shared region (o->shm_bytes bytes, zeroed at
 * spawn, suitably aligned for tide_watch_t), or NULL when there is none.
 * Valid until tide_proc_free. */
void *tide_proc_shm(tide_proc_t *p);

/* Sends signal 'sig' to the child. Returns TIDE_OK, TIDE_ENOENT (reaped
 * already: its pid may belong to another process by now, so nothing is
 * sent), TIDE_EINVAL (bad signal), TIDE_EIO. */
int tide_proc_kill(tide_proc_t *p, int sig);

/* Collects the child's exit without waiting. Returns TIDE_EAGAIN while it
 * runs, TIDE_OK once it has ended, with *status its exit code (>= 0) or
 * minus the signal that killed it (-9 for SIGKILL); later calls return
 * TIDE_OK and the same status. TIDE_EIO: waitpid failed (someone else
 * reaped it; *status is then 0). *status is always written (0 while it
 * runs). */
int tide_proc_reap(tide_proc_t *p, int *status);

/* Returns the resident set size of the child in bytes (from
 * /proc/PID/statm), TIDE_ENOENT when it has ended (or was reaped), or
 * TIDE_EIO. */
int64_t tide_proc_rss(const tide_proc_t *p);

/* In a worker, first thing in main: when TIDE_WORKER=1 is set, asks for
 * SIGKILL when the parent dies (PR_SET_PDEATHSIG), checks that the parent
 * is still TIDE_PARENT_PID (it may have died before the request),
 * removes TIDE_WORKER, TIDE_PARENT_PID and TIDE_WORKER_MAX_DATA from the
 * environment (a grandchild is no worker), sets RLIMIT_DATA from
 * TIDE_WORKER_MAX_DATA (not in an AddressSanitizer build, whose shadow
 * memory counts against it), and makes fds 3 and 4 close-on-exec. Returns
 * TIDE_OK (a worker: open the channel with tide_chan_open(3) and map the
 * region with tide_shm_map(4)), TIDE_ENOENT (not a worker: nothing
 * done), TIDE_EIO (the parent is gone, or fd 3 is not a socket: exit). On
 * failure 'err' holds one line. */
int tide_proc_worker_init(char *err, size_t errlen);

/* Makes a channel on stream socket 'fd' and takes ownership of 'fd'
 * (tide_chan_free closes it); 'fd' is made non-blocking. On success *out
 * is the new channel and the caller owns it. Returns TIDE_OK, TIDE_EINVAL
 * (out NULL, fd not a socket: *out NULL and fd left open), TIDE_ENOMEM
 * (fd left open). */
int tide_chan_open(tide_chan_t **out, int fd);

/* Closes the channel's descriptor and frees it. NULL is a no-op. Never
 * call it on the channel of a proc (tide_proc_free does). */
void tide_chan_free(tide_chan_t *c);

/* Returns the channel's descriptor; owned by the channel. */
int tide_chan_fd(const tide_chan_t *c);

/* Sends one frame of 'len' bytes (0 .. TIDE_CHAN_FRAME_MAX) of 'buf'
 * (borrowed for the call; it may be a frame just received from 'c',
 * which is then copied first). The frame is taken whole, in order after the
 * frames before it: TIDE_OK when all of it reached the socket,
 * TIDE_EAGAIN when part of it (or of an earlier frame) is still queued in
 * the channel after 'timeout_ms' (-1: no limit): the rest goes out on the
 * next send or tide_chan_flush. While it waits it reads what the peer
 * sends, so that two peers sending at once never deadlock (receive those
 * frames with tide_chan_recv). Returns TIDE_ECLOSED when the peer is
 * gone (no SIGPIPE), TIDE_EINVAL (len too big, buf NULL with len > 0;
 * nothing queued), TIDE_ENOMEM, TIDE_EIO. */
int tide_chan_send(tide_chan_t *c, const char *buf, size_t len,
                   int timeout_ms);

/* Writes out what tide_chan_send left queued, waiting at most 'timeout_ms'
 * (-1: no limit; 0: no wait). Returns TIDE_OK (nothing queued any more),
 * TIDE_EAGAIN, TIDE_ECLOSED, TIDE_EIO. */
int tide_chan_flush(tide_chan_t *c, int timeout_ms);

/* Takes the next whole frame without waiting: TIDE_OK with *buf and *len
 * set to it (owned by the channel, valid until the next call on 'c');
 * TIDE_EAGAIN when no whole frame is there yet (a part stays buffered
 * for the next call); TIDE_ECLOSED at the peer's end (after every whole
 * frame it sent); TIDE_ECORRUPT when the peer announced a frame over
 * TIDE_CHAN_FRAME_MAX (not a channel: close it); TIDE_ENOMEM; TIDE_EIO.
 * *buf and *len are always written (NULL and 0 on failure). */
int tide_chan_recv(tide_chan_t *c, char **buf, size_t *len);

/* Waits until tide_chan_recv would not return TIDE_EAGAIN (a whole frame,
 * the peer's end or an error) or 'timeout_ms' (>= 0) passed. Returns
 * TIDE_OK, TIDE_EAGAIN (timeout or a signal), TIDE_EINVAL. */
int tide_chan_wait(tide_chan_t *c, int timeout_ms);

/* Maps shared region 'fd' (a worker's fd 4) read-write. *size gets its
 * size (from fstat), *ptr its start; unmap with tide_shm_free. Both are
 * always written (0 and NULL on failure). Does not keep 'fd'. Returns
 * TIDE_OK, TIDE_EINVAL (size or ptr NULL), TIDE_ENOENT (fd not open or
 * not a region of tide_proc_spawn: not a worker), TIDE_EIO. */
int tide_shm_map(int fd, size_t *size, void **ptr);

/* Unmaps a region of tide_shm_map. NULL is a no-op. */
void tide_shm_free(void *ptr, size_t size);

/* A watch slot: what a worker is running now, for the supervisor's
 * max_process_time watchdog. The worker writes it in the shared region
 * with plain stores (no lock): seq changes (incremented) at every call
 * start and end, in_call is 1 during a call. The supervisor reads it
 * without a lock either: it may see a slot half written, e.g. a torn
 * 'version' or an offset of the next call; it reads seq before and after
 * and trusts the fields only when both match and are the same as at its
 * previous look. 'version' is not necessarily NUL-terminated. 64 bytes. */
typedef struct tide_watch_s {
    uint64_t     seq;          /* changes at every start and end of call */
    int32_t      in_call;      /* 1: inside a call of the job's code */
    int32_t      task;         /* the task's partition, -1: none */
    int32_t      input;        /* index of the input, -1: none */
    int32_t      kind;         /* which call (process, window ...): the
                                  runtime's numbering */
    int64_t      offset;       /* input offset of the message, -1: none */
    int64_t      started_ms;   /* TIDE_TIME_MONO at the call's start */
    char         version[24];  /* the code version */
} tide_watch_t;

/* ------------------------------------------------------------------ */
/* Files                                                               */

typedef struct tide_lock_s  tide_lock_t;

/* Replaces the file at 'path' with 'len' bytes of 'data', atomically and
 * durably: the bytes go to a temporary file in the same folder, which is
 * fsync'ed, renamed over 'path', and then the folder is fsync'ed. Missing
 * parent folders are created (mode 0755, subject to the umask). After a
 * crash at any point 'path' holds either its old or its new content,
 * never a mix; a leftover temporary file ('.<name>.tmp.*') may remain
 * only after a crash. 'data' is borrowed for the call; it may be NULL
 * when 'len' is 0. Returns TIDE_OK, TIDE_EINVAL (path NULL, empty, a
 * folder name or too long; data NULL with len > 0), TIDE_EIO (a system
 * call failed; the temporary file is removed and 'path' is unchanged,
 * except when only the final folder fsync failed: then 'path' has the new
 * content, which a crash may still undo). On failure 'err' (errlen bytes;
 * may be NULL when errlen is 0) holds one line saying what failed and
 * where. */
int tide_file_set(const char *path, const char *data, size_t len,
                  char *err, size_t errlen);

/* Takes an exclusive process lock on the file at 'path' (flock, so it is
 * released when the process exits, even by SIGKILL), creating the file
 * and its missing parent folders, and writes the holder's pid into it.
 * The lock belongs to the open file: a second tide_lock_new on the same
 * path, even in the same process, fails with TIDE_EBUSY. The descriptor
 * is close-on-exec; a forked child shares the lock until it exits.
 * On success *out is the new lock and the caller owns it
 * (tide_lock_free). On failure *out is NULL and 'err' holds one line:
 * TIDE_EBUSY (another holder; "held by pid N" when its pid is readable),
 * TIDE_EINVAL (path NULL or empty, out NULL), TIDE_EIO, TIDE_ENOMEM. */
int tide_lock_new(tide_lock_t **out, const char *path, char *err,
                  size_t errlen);

/* Empties the lock file (the pid), releases the lock and frees the
 * handle. The file itself stays: removing it would let two processes
 * lock different files of one name. NULL is a no-op. */
void tide_lock_free(tide_lock_t *lk);

/* Returns the lock's descriptor (owned by the lock). A process that
 * inherits it (tide_proc_opts_t.keep_fd) holds the lock too, until it
 * exits: the lock is released when the last holder is gone. */
int tide_lock_fd(const tide_lock_t *lk);

/* ------------------------------------------------------------------ */
/* Stores: a task's local key-value state, RocksDB behind a write      */
/* cache, changelogged to a log partition.                             */
/*                                                                     */
/* A store and its iterators are used by one thread at a time. Keys    */
/* and values are byte strings (any bytes, \0 included); keys sort by  */
/* their bytes (memcmp, shorter first on a tie).                       */

typedef struct tide_store_s  tide_store_t;
typedef struct tide_iter_s   tide_iter_t;

enum {
    TIDE_STORE_ROCKSDB = 0,   /* RocksDB in 'dir' */
    TIDE_STORE_MEMORY  = 1    /* RocksDB on an in-memory env: nothing on
                                 disk, gone at tide_store_free */
};

/* Store settings; all zero is a RocksDB store without a changelog and
 * the default cache. */
typedef struct tide_store_params_s {
    int32_t      engine;         /* TIDE_STORE_* */
    int32_t      partition;      /* changelog partition (the task's) */
    int64_t      cache_entries;  /* write cache size in keys; 0: 100000 */
    tide_log_t  *changelog;      /* NULL: none; else borrowed for the call
                                    and kept alive by the store (a
                                    reference, like a reader's) */
    const char  *from;           /* NULL, or a snapshot folder made by
                                    tide_store_snapshot: 'dir' is replaced
                                    by a hard-link copy of it before
                                    opening (RocksDB engine only) */
    struct tide_kafka_s *kafka_changelog;  /* instead of 'changelog': a
                                    Kafka client whose producer takes the
                                    changelog records (borrowed: it must
                                    outlive the store); NULL: none */
    const char  *kafka_topic;    /* its topic (copied) */
} tide_store_params_t;

/* Opens (creating as needed, parents included) the store in folder 'dir'.
 * 'p' may be NULL (all defaults). With the MEMORY engine 'dir' is only a
 * name and may be NULL. RocksDB runs without its WAL: the changelog is
 * the durable record, so after a crash a store may be behind its last
 * writes (tide_store_snapshot makes them durable); a clean
 * tide_store_free after tide_store_flush loses nothing.
 * On success *out is the new store; the caller owns it (tide_store_free).
 * On failure *out is NULL and 'err' (errlen bytes; may be NULL when errlen
 * is 0) holds one line: TIDE_EINVAL (out NULL, dir NULL for RocksDB, bad
 * engine, negative cache_entries, a partition the changelog does not
 * have, 'from' with the MEMORY engine), TIDE_ENOENT ('from' missing),
 * TIDE_EBUSY (the store is open already, in this or another process),
 * TIDE_EIO (RocksDB could not open it, or a file operation failed),
 * TIDE_ENOMEM. */
int tide_store_new(tide_store_t **out, const char *dir,
                   const tide_store_params_t *p, char *err, size_t errlen);

/* Drops cached writes not yet flushed and frees the store once its last
 * iterator is freed too (iterators keep it alive; it never waits). Then
 * releases the changelog; when the log's owner has freed it already, the
 * records this store pushed since are flushed first (a failure is logged
 * on stderr). NULL is a no-op. */
void tide_store_free(tide_store_t *s);

/* Copies the value of 'key' (klen bytes) into 'buf'. On entry *len is the
 * capacity of 'buf'; on TIDE_OK it is the value size. Returns TIDE_OK,
 * TIDE_ENOENT (absent or deleted), TIDE_ENOBUFS (*len set to the size
 * needed, nothing else changed), TIDE_EINVAL (key NULL, len NULL, or buf
 * NULL with *len > 0), TIDE_EIO (RocksDB failed; errmsg says why). Sees
 * writes still in the cache. Keeps neither 'key' nor 'buf'. */
int tide_store_get(tide_store_t *s, const char *key, size_t klen, char *buf,
                   size_t *len);

/* Sets 'key' to 'vlen' bytes of 'val'; val NULL deletes it. Both are
 * copied into the cache (the write coalesces with earlier ones to the key
 * since the last flush). When the cache is full of keys it is first
 * written out: its changelog records are pushed here, and a thread of
 * the store's writes it into RocksDB while the caller goes on with a
 * fresh cache that keeps those read since the last fill (up to half the
 * cache); reads see the write-out meanwhile, and tide_store_flush waits
 * for it. Returns TIDE_OK, TIDE_EINVAL (key NULL; a key or value of 4 GiB
 * or more; with a changelog, key + value over the log's record limit of
 * 64 MiB), or an error of that write-out or of the previous one (nothing
 * changed then), TIDE_ENOMEM. */
int tide_store_set(tide_store_t *s, const char *key, size_t klen,
                   const char *val, size_t vlen);

/* Writes every dirty cache entry into RocksDB in one WriteBatch (no WAL)
 * and, with a changelog, pushes one record per key written since the last
 * flush (key, latest value or a nil value for a delete, to
 * params.partition) with tide_log_push: buffered, the caller flushes the
 * log. Cached entries stay cached, clean. Returns TIDE_OK, TIDE_EIO (the
 * WriteBatch failed: nothing changed; or the log failed to write out a
 * full buffer: the records stay buffered there, see tide_log_flush),
 * TIDE_EINVAL, TIDE_ENOMEM (from tide_log_push: the keys not yet pushed
 * stay dirty for the next flush). errmsg says more. */
int tide_store_flush(tide_store_t *s);

/* Flushes (tide_store_flush), makes RocksDB write its memtables out, then
 * puts a RocksDB checkpoint of the store (hard links to its files) at
 * folder 'dir', replacing what was there (atomically when the file system
 * can exchange folders). When it returns TIDE_OK the store's content so
 * far is durable, in the store and in 'dir'. 'dir' must be on the same
 * file system as the store for the links. Returns TIDE_OK, TIDE_EINVAL
 * (dir NULL; MEMORY engine), TIDE_EIO, or an error of the flush; 'err'
 * (errlen bytes; may be NULL when errlen is 0) and errmsg say more. */
int tide_store_snapshot(tide_store_t *s, const char *dir, char *err,
                        size_t errlen);

/* Applies changelog records read from 'r' with offsets below 'until'
 * straight into RocksDB (bypassing the cache), at most 'max' of them: a
 * record sets its key to its value, a nil value deletes it. A RocksDB
 * store gathers them into sorted runs that RocksDB ingests as SST files
 * (a run goes in when it reaches 64 MiB, when a call reaches 'until',
 * and before any other use of the store); a memory store writes
 * WriteBatches. The cache must hold no unflushed writes (TIDE_EINVAL otherwise);
 * its clean entries are dropped. *records and *bytes are always written:
 * the records applied by this call and their size as stored in the log.
 * Returns TIDE_OK when it stopped after 'max' records (call again for
 * more), TIDE_ENOENT when it reached 'until' or the end of what 'r' can
 * read now (nothing more to apply; a record at or past 'until' may then
 * have been read from 'r' and not applied), TIDE_EINVAL (r NULL, until <
 * 0, max < 1, dirty cache), TIDE_ECORRUPT (from the reader, or a record
 * without a key: not a changelog), TIDE_EIO (reader or RocksDB), with
 * errmsg saying more. Records counted were applied (or are in the run
 * that the next use of the store ingests first), even on an error.
 * Borrows 'r' for the call. */
int tide_store_restore(tide_store_t *s, tide_reader_t *r, int64_t until,
                       int64_t max, int64_t *records, int64_t *bytes);

/* What tide_store_count reads. */
enum {
    TIDE_STORE_COUNT_KEYS      = 0,  /* RocksDB's estimate of its keys
                                        (rocksdb.estimate-num-keys: keys
                                        written again since the last
                                        compaction may count twice) */
    TIDE_STORE_COUNT_BYTES     = 1,  /* RocksDB's SST files plus memtables,
                                        in bytes */
    TIDE_STORE_COUNT_HITS      = 2,  /* tide_store_get calls the cache
                                        answered, since the store opened */
    TIDE_STORE_COUNT_MISSES    = 3,  /* tide_store_get calls that read
                                        RocksDB, since the store opened */
    TIDE_STORE_COUNT_LOG_BYTES = 4   /* key and value bytes pushed to the
                                        changelog, since the store opened */
};

/* Sets *out to count 'what' (TIDE_STORE_COUNT_*) of the store. KEYS and
 * BYTES are RocksDB's own figures: cached writes count once a flush or a
 * write-out put them into RocksDB (a write-out in flight may not show
 * yet); they read RocksDB's properties and wait for nothing. *out is
 * always written (0 on failure). Returns TIDE_OK, TIDE_EINVAL (s or out
 * NULL, unknown 'what'), TIDE_EAGAIN (KEYS or BYTES while a restore's
 * records are not all in RocksDB yet: ask again after the next read or
 * write). */
int tide_store_count(tide_store_t *s, int what, int64_t *out);

/* Returns the last error detail on this store; valid until the next call
 * on it or one of its iterators. Never NULL. */
const char *tide_store_errmsg(const tide_store_t *s);

/* Opens an iterator over the keys in [from, to) in key order; from NULL
 * starts at the first key, to NULL has no end (flen, tlen are ignored
 * then). The view is a consistent snapshot taken now, including cached
 * writes (written to RocksDB first; they are still pushed to the
 * changelog by the next tide_store_flush): later writes do not show. The
 * iterator keeps 's' alive. 'from' and 'to' are copied. On success *out
 * is the iterator; the caller owns it (tide_iter_free). On failure *out is
 * NULL: TIDE_EINVAL (out NULL), TIDE_EIO (RocksDB; errmsg says why),
 * TIDE_ENOMEM. */
int tide_iter_new(tide_iter_t **out, tide_store_t *s, const char *from,
                  size_t flen, const char *to, size_t tlen);

/* Reads the next key and value. Returns TIDE_OK with *key, *klen, *val,
 * *vlen set to bytes owned by the iterator, valid until the next call on
 * 'it'; TIDE_ENOENT at the end (and on every later call); TIDE_EIO
 * (RocksDB; the store's errmsg says why). */
int tide_iter_poll(tide_iter_t *it, const char **key, size_t *klen,
                   const char **val, size_t *vlen);

/* Frees the iterator and releases its store. NULL is a no-op. */
void tide_iter_free(tide_iter_t *it);

/* Removes 'path': a file, or a folder with everything in it (symbolic
 * links are removed, not followed). Returns TIDE_OK (also when 'path' is
 * missing), TIDE_EINVAL (path NULL or empty), TIDE_EIO with one line in
 * 'err' (errlen bytes; may be NULL when errlen is 0). */
int tide_path_remove(const char *path, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Kafka (librdkafka): the kafka: system's client                      */

/* One client: a producer (idempotent, acks=all, murmur2_random
 * partitioner) and a consumer of group 'group' (manual assignment, no
 * auto-commit, read_committed). 'conf' holds 'nconf' pairs of librdkafka
 * property names and values, given to both (e.g. "bootstrap.servers",
 * "localhost:9092"). Nothing connects until it is used. Returns
 * TIDE_OK, or TIDE_EINVAL (bad or unknown property: one line in 'err'),
 * TIDE_ENOMEM. Free with tide_kafka_free. */
typedef struct tide_kafka_s    tide_kafka_t;
typedef struct tide_kreader_s  tide_kreader_t;

int tide_kafka_new(tide_kafka_t **out, const char *group,
                   const char *const *conf, int nconf, char *err,
                   size_t errlen);

/* Frees the client (records not flushed are dropped); its consumer is
 * closed once the last of its readers is freed too, in any order (as
 * garbage collectors free them). NULL is a no-op. */
void tide_kafka_free(tide_kafka_t *k);

/* The last error detail of the client; valid until its next call. */
const char *tide_kafka_errmsg(const tide_kafka_t *k);

/* Sets *partitions and *replication (of partition 0) of 'topic'.
 * Returns TIDE_OK, TIDE_ENOENT (no such topic), TIDE_EIO (no broker
 * answered within timeout_ms). */
int tide_kafka_topic_info(tide_kafka_t *k, const char *topic,
                          int32_t *partitions, int32_t *replication,
                          int timeout_ms);

/* Creates 'topic' with 'partitions' partitions, 'replication' replicas
 * (0 or less: the broker's default) and cleanup.policy=compact when
 * 'compact'. Returns TIDE_OK, TIDE_EEXIST, TIDE_EIO. */
int tide_kafka_create_topic(tide_kafka_t *k, const char *topic,
                            int32_t partitions, int32_t replication,
                            int compact, int timeout_ms);

/* Sets *lo and *hi to the first offset and the high watermark of a
 * partition. Returns TIDE_OK, TIDE_ENOENT, TIDE_EIO. */
int tide_kafka_watermarks(tide_kafka_t *k, const char *topic,
                          int32_t partition, int64_t *lo, int64_t *hi,
                          int timeout_ms);

/* Queues one record (copied) to 'partition' of 'topic' (-1: the
 * partitioner's choice); rec->offset and rec->partition are ignored.
 * Waits while the queue is full. Returns TIDE_OK or TIDE_EIO. */
int tide_kafka_produce(tide_kafka_t *k, const char *topic, int32_t partition,
                       const tide_rec_t *rec);

/* Waits until every queued record is acknowledged by all in-sync
 * replicas. Returns TIDE_OK, or TIDE_EIO when a record was not delivered
 * (errmsg names the first) or timeout_ms passed. */
int tide_kafka_flush(tide_kafka_t *k, int timeout_ms);

/* The offset after the last record this client's producer delivered to
 * a partition (from its delivery reports: no request), or -1 when it
 * delivered none there. After tide_kafka_flush it is the partition's end
 * for a partition only this client writes, such as a task's changelog. */
int64_t tide_kafka_written_end(tide_kafka_t *k, const char *topic,
                               int32_t partition);

/* Commits 'n' offsets (the next offset to read) of partitions of topics
 * to the client's group, each with its metadata string (metadata NULL,
 * or an entry NULL: none), in one request. Returns TIDE_OK or TIDE_EIO. */
int tide_kafka_commit(tide_kafka_t *k, const char *const *topics,
                      const int32_t *partitions, const int64_t *offsets,
                      const char *const *metadata, int n);

/* Exactly-once. A client made with the property transactional.id has a
 * transactional producer: call tide_kafka_txn_init once before the first
 * record (it fences an older producer with the same id and aborts the
 * transaction that one left open). The first record after a commit
 * opens a transaction; tide_kafka_txn_commit commits it with the input
 * offsets (as tide_kafka_commit's arguments) sent to the group named by
 * 'gmeta' (gmlen bytes from tide_kafka_group_meta of the group member;
 * NULL: the client's group, outside membership). Retriable errors are
 * tried again until timeout_ms. On failure the transaction is aborted
 * (its records are never seen by read_committed consumers) and TIDE_EIO
 * is returned: the caller must go back to its last commit. Both return
 * TIDE_EAGAIN when the cluster did not answer in time (init only),
 * TIDE_EINVAL without a transactional.id. */
int tide_kafka_txn_init(tide_kafka_t *k, int timeout_ms);
int tide_kafka_txn_commit(tide_kafka_t *k, const char *const *topics,
                          const int32_t *partitions, const int64_t *offsets,
                          const char *const *metadata, int n,
                          const void *gmeta, size_t gmlen, int timeout_ms);

/* Aborts the open transaction, if any. Returns TIDE_OK or TIDE_EIO. */
int tide_kafka_txn_abort(tide_kafka_t *k, int timeout_ms);

/* Writes the group member's metadata (group, generation, member id) to
 * buf[cap], its size to *len. Returns TIDE_OK, TIDE_ENOBUFS (*len says
 * the size), TIDE_ENOENT (not a member: no tide_kafka_subscribe), or
 * TIDE_EIO. */
int tide_kafka_group_meta(tide_kafka_t *k, void *buf, size_t cap,
                          size_t *len);

/* Reads the group's committed offset of a partition into *offset (-1001
 * when there is none) and its metadata into metadata[metalen] (NUL
 * ended; metalen 0: not read). Returns TIDE_OK, TIDE_ENOBUFS (metadata
 * longer), TIDE_EIO. */
int tide_kafka_committed(tide_kafka_t *k, const char *topic,
                         int32_t partition, int64_t *offset, char *metadata,
                         size_t metalen, int timeout_ms);

/* Group events of tide_kafka_group_poll. */
enum {
    TIDE_KAFKA_ASSIGN = 1,    /* partitions given to this member */
    TIDE_KAFKA_REVOKE = 2,    /* partitions to give back (commit first) */
    TIDE_KAFKA_LOST   = 3     /* partitions lost (session timed out,
                                 fenced): do not commit them */
};

/* Joins the client's group as a member subscribed to 'topic', with the
 * cooperative-sticky assignor and the properties in 'conf' (nconf
 * pairs, as tide_kafka_new). From then on offsets are committed and read
 * through the member. Returns TIDE_OK, TIDE_EINVAL, TIDE_EIO. */
int tide_kafka_subscribe(tide_kafka_t *k, const char *topic,
                         const char *const *conf, int nconf);

/* Waits up to timeout_ms for a group event. Returns 1 with *kind one of
 * TIDE_KAFKA_* and parts[0..*n) the partitions (at most max), held until
 * tide_kafka_rebalance_done; 0 when none came; TIDE_EIO on a fatal group
 * error (errmsg). Passing errors are logged and retried. */
int tide_kafka_group_poll(tide_kafka_t *k, int timeout_ms, int32_t *kind,
                          int32_t *parts, int32_t max, int32_t *n);

/* Tells the group the held event is handled: takes assigned partitions
 * (paused: the member only holds them), gives back revoked ones. */
int tide_kafka_rebalance_done(tide_kafka_t *k);

/* Names the member of the client's group that holds 'partition' of
 * 'topic' now, as "client.id=... host=...", in who[wholen]. Returns
 * TIDE_OK, TIDE_ENOENT (no member holds it), TIDE_EIO. */
int tide_kafka_group_owner(tide_kafka_t *k, const char *topic,
                           int32_t partition, char *who, size_t wholen,
                           int timeout_ms);

/* The group's assignment of 'topic' as the coordinator has it: for each
 * partition below nparts, owner[p] is the place of the member that holds
 * it among the *members members in the order of their ids (-1: none),
 * and *self is this client's place (-1: not a member). Returns TIDE_OK or
 * TIDE_EIO. */
int tide_kafka_group_assignment(tide_kafka_t *k, const char *topic,
                                int32_t *owner, int32_t nparts,
                                int32_t *members, int32_t *self,
                                int timeout_ms);

/* A reader of one partition from 'offset' (a real offset; resolve
 * beginning and end with tide_kafka_watermarks). 'k' must outlive it. */
int tide_kreader_new(tide_kreader_t **out, tide_kafka_t *k,
                     const char *topic, int32_t partition, int64_t offset);

/* Reads up to n (at most 256) records into recs, waiting up to
 * timeout_ms for the first. Returns the count (0: none yet), or
 * TIDE_EIO (errmsg). Pointers in recs stay valid until the next call or
 * the free. */
int tide_kreader_poll_batch(tide_kreader_t *r, tide_rec_t *recs, int n,
                            int timeout_ms);

/* The offset the next record read will have at least. */
int64_t tide_kreader_offset(const tide_kreader_t *r);

/* The partition's high watermark as the last fetch saw it (no request):
 * -1 when no fetch has answered yet. */
int64_t tide_kreader_cached_end(const tide_kreader_t *r);

/* The last error detail of the reader. */
const char *tide_kreader_errmsg(const tide_kreader_t *r);

/* Stops reading the partition and frees the reader. NULL is a no-op. */
void tide_kreader_free(tide_kreader_t *r);

/* As tide_store_restore, reading the changelog from Kafka reader 'r':
 * each poll waits up to 500 ms for records, and TIDE_ENOENT means none
 * came in that time (the caller checks the reader's offset against
 * 'until' to tell the end from a slow broker). */
int tide_store_restore_kafka(tide_store_t *s, tide_kreader_t *r,
                             int64_t until, int64_t max, int64_t *records,
                             int64_t *bytes);

/* ------------------------------------------------------------------ */
/* The HTTP endpoint (tide run --http): a small server on a libuv loop  */
/* of its own, whose requests are parsed by http-parser and pulled by  */
/* the supervisor between its other work.                              */

typedef struct tide_http_s  tide_http_t;

enum {
    TIDE_HTTP_TARGET_MAX  = 2048, /* longest request target (path and
                                     query); a longer one gets 414 */
    TIDE_HTTP_CLIENTS_MAX = 64    /* clients open at once; one more gets
                                     503 and is closed */
};

/* Listens on 'addr': "PORT" (binds 127.0.0.1), "HOST:PORT", ":PORT" (every
 * interface) or "[IPV6]:PORT"; HOST is an address or a name, PORT 0 to
 * 65535 (0: any free port, see tide_http_get_port). Clients send HTTP/1.x
 * requests; each complete request is queued for tide_http_pop_request.
 * A malformed request gets 400, one whose head passes 80 KiB 431, whose
 * target passes TIDE_HTTP_TARGET_MAX 414, whose body passes 64 KiB 413,
 * all answered here; a client that has not sent a whole request within
 * 10 s is closed. Every answer ends with "Connection: close". On success
 * *out is the server and the caller owns it (tide_http_free). On failure
 * *out is NULL and 'err' (may be NULL) holds one line: TIDE_EINVAL (a bad
 * 'addr', a host that does not resolve or is not on this machine),
 * TIDE_EBUSY (the address is in use), TIDE_EIO (no permission, out of
 * descriptors ...), TIDE_ENOMEM. 'addr' is borrowed for the call. */
int tide_http_new(tide_http_t **out, const char *addr, char *err,
                  size_t errlen);

/* Closes the listening socket and every client and frees the server.
 * NULL is a no-op. */
void tide_http_free(tide_http_t *h);

/* Returns a descriptor that is readable whenever the server has work
 * (its libuv loop's backend): watch it (tide_loop_watch_fd) and call
 * tide_http_poll when it is. It belongs to the server: do not close it.
 * TIDE_EINVAL when 'h' is NULL. */
int tide_http_get_fd(const tide_http_t *h);

/* Returns the port the server listens on (>= 1), or TIDE_EINVAL. */
int tide_http_get_port(const tide_http_t *h);

/* Accepts, reads and writes what is ready, without waiting, and closes
 * idle clients. Returns the number of complete requests queued (>= 0),
 * or TIDE_EINVAL when 'h' is NULL. Never calls back into the caller. */
int tide_http_poll(tide_http_t *h);

/* Takes the oldest queued request, copies "METHOD TARGET" (e.g.
 * "GET /metrics") into 'buf' and makes its client the current one, to be
 * answered by tide_http_push_reply. On entry *len is the capacity of
 * 'buf'. Returns TIDE_OK with *len set to the size; TIDE_EAGAIN when none
 * is queued (*len set to 0); TIDE_ENOBUFS with *len set to the size
 * needed, the request staying queued; TIDE_EINVAL when 'h' or 'len' is
 * NULL, or 'buf' is NULL with *len > 0. A current client not answered
 * yet is closed without an answer when the next request is taken. Does
 * not keep 'buf'. */
int tide_http_pop_request(tide_http_t *h, char *buf, size_t *len);

/* Answers the current client with status 'status' (100 to 599), header
 * Content-Type 'ctype' and the 'len' bytes of 'body' (none are sent to a
 * HEAD request), then closes it once written. 'ctype' and 'body' are
 * copied; a client that has gone away is dropped silently (still
 * TIDE_OK). Returns TIDE_OK, TIDE_EINVAL ('h' or 'ctype' NULL, 'ctype'
 * empty or holding a control character, 'body' NULL with len > 0, a bad
 * status, no current client), TIDE_ENOMEM. */
int tide_http_push_reply(tide_http_t *h, int status, const char *ctype,
                         const char *body, size_t len);


]==]
