/*
 * Notify: wakes an idle reader when a partition changes, instead of a
 * polling timer. One inotify instance per notifier; each watched
 * partition folder is one inotify watch. A write by any process to a
 * segment (IN_MODIFY), a new segment (IN_CREATE), a file renamed in
 * (IN_MOVED_TO) or removed (IN_DELETE) queues an event on the
 * descriptor, so an append made after the watch was added is never
 * missed: a reader that read to EAGAIN and then waits finds it there.
 *
 * inotify gives one watch descriptor per folder and instance: adding a
 * folder twice returns the same one. Each add here gets its own id and a
 * reference on that watch; the last remove ends it.
 */
#include "tide.h"
#include "log/log.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <unistd.h>

#define NOTIFY_MASK (IN_MODIFY | IN_CREATE | IN_MOVED_TO | IN_DELETE | \
                     IN_DELETE_SELF | IN_MOVE_SELF)

/* One add: 'wd' is the inotify watch it holds a reference on, -1 for a
 * free slot. Its id is its index + 1. */
typedef struct notify_add_s {
    int  wd;
} notify_add_t;

struct tide_notify_s {
    int            fd;       /* the inotify instance; ours */
    notify_add_t  *adds;     /* malloc'ed, 'cap' slots */
    int            cap;
};

int
tide_notify_new(tide_notify_t **out)
{
    tide_notify_t  *n;

    if (out == NULL) {
        return TIDE_EINVAL;
    }
    *out = NULL;
    n = calloc(1, sizeof(*n));
    if (n == NULL) {
        return TIDE_ENOMEM;
    }
    n->fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    if (n->fd < 0) {
        free(n);
        return errno == ENOMEM ? TIDE_ENOMEM : TIDE_EIO;
    }
    *out = n;
    return TIDE_OK;
}

void
tide_notify_free(tide_notify_t *n)
{
    if (n == NULL) {
        return;
    }
    (void) close(n->fd);        /* ends every watch */
    free(n->adds);
    free(n);
}

int
tide_notify_add(tide_notify_t *n, tide_log_t *log, int32_t partition,
                int *id)
{
    char           path[PATH_MAX];
    notify_add_t  *adds;
    int            i, wd, cap;

    if (id != NULL) {
        *id = 0;
    }
    if (n == NULL || log == NULL || id == NULL) {
        return TIDE_EINVAL;
    }
    if (partition < 0 || partition >= log->nparts) {
        return TIDE_ERANGE;
    }
    for (i = 0; i < n->cap && n->adds[i].wd >= 0; i++) {
    }
    if (i == n->cap) {
        cap = n->cap == 0 ? 8 : n->cap * 2;
        adds = realloc(n->adds, (size_t) cap * sizeof(*adds));
        if (adds == NULL) {
            return TIDE_ENOMEM;
        }
        for (i = n->cap; i < cap; i++) {
            adds[i].wd = -1;
        }
        i = n->cap;
        n->adds = adds;
        n->cap = cap;
    }
    if (snprintf(path, sizeof(path), "%s/%d", log->dir, (int) partition) >=
        (int) sizeof(path))
    {
        return TIDE_EINVAL;
    }
    wd = inotify_add_watch(n->fd, path, NOTIFY_MASK);
    if (wd < 0) {
        return errno == ENOMEM ? TIDE_ENOMEM : TIDE_EIO;
    }
    n->adds[i].wd = wd;
    *id = i + 1;
    return TIDE_OK;
}

int
tide_notify_remove(tide_notify_t *n, int id)
{
    int  i, wd;

    if (n == NULL || id < 1 || id > n->cap || n->adds[id - 1].wd < 0) {
        return TIDE_ENOENT;
    }
    wd = n->adds[id - 1].wd;
    n->adds[id - 1].wd = -1;
    for (i = 0; i < n->cap; i++) {
        if (n->adds[i].wd == wd) {
            return TIDE_OK;     /* another add still holds the watch */
        }
    }
    /* EINVAL here means the kernel ended it already (the folder went). */
    (void) inotify_rm_watch(n->fd, wd);
    return TIDE_OK;
}

int
tide_notify_fd(const tide_notify_t *n)
{
    return n->fd;
}

/* Whether event 'ev' may mean new records. Not IN_IGNORED (a watch
 * ended: a remove), nor a change to an index file: a log handle being
 * opened anywhere touches the index of every partition, and an append
 * writes its segment besides its index anyway. */
static int
counts(const struct inotify_event *ev)
{
    size_t  len;

    if (ev->mask & IN_IGNORED) {
        return 0;
    }
    if (ev->len == 0) {
        return 1;
    }
    len = strlen(ev->name);
    return !(len >= 6 && strcmp(ev->name + len - 6, ".index") == 0);
}

int
tide_notify_drain(tide_notify_t *n)
{
    char                          buf[4096]
        __attribute__ ((aligned(__alignof__(struct inotify_event))));
    char                         *p;
    const struct inotify_event   *ev = NULL;
    ssize_t                       got;
    int                           count = 0;

    for (;;) {
        got = read(n->fd, buf, sizeof(buf));
        if (got < 0) {
            if (errno == EINTR) {
                continue;
            }
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return count;
            }
            return TIDE_EIO;
        }
        if (got == 0) {
            return count;
        }
        for (p = buf; p < buf + got;
             p += sizeof(struct inotify_event) + ev->len)
        {
            ev = (const struct inotify_event *) (const void *) p;
            if (counts(ev) && count < INT_MAX) {
                count++;
            }
        }
    }
}

int
tide_notify_wait(tide_notify_t *n, int timeout_ms)
{
    struct pollfd  pfd;
    int64_t        deadline, now;
    int            rc;

    if (n == NULL || timeout_ms < 0) {
        return TIDE_EINVAL;
    }
    deadline = tide_time_get(TIDE_TIME_MONO) + timeout_ms;
    for (;;) {
        now = tide_time_get(TIDE_TIME_MONO);
        pfd.fd = n->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        rc = poll(&pfd, 1, now < deadline ? (int) (deadline - now) : 0);
        if (rc < 0) {
            return errno == EINTR ? TIDE_EAGAIN : TIDE_EIO;
        }
        if (rc == 0) {
            return TIDE_EAGAIN;
        }
        rc = tide_notify_drain(n);
        if (rc != 0) {
            return rc > 0 ? TIDE_OK : rc;
        }
        /* Only the ends of removed watches: wait on. */
    }
}
