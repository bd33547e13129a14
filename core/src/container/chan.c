/*
 * Channels: frames of up to TIDE_CHAN_FRAME_MAX bytes over a stream
 * socket between the supervisor and a worker. A frame is a 4-byte
 * little-endian length and that many bytes. A stream socket rather than
 * SOCK_SEQPACKET: a packet cannot be larger than the socket's buffer
 * (about 200 KiB by default), and frames go up to 16 MiB.
 *
 * The descriptor is non-blocking. Receiving reads as much as the kernel
 * has into 'in' and hands out whole frames from it, so a frame may wait
 * there while the descriptor is no longer readable: callers receive until
 * TIDE_EAGAIN. Sending writes straight from the caller's buffer and
 * queues in 'out' only what the socket did not take in time; while it
 * waits for room it also reads, so that two peers sending big frames to
 * each other at once cannot deadlock.
 */
#include "tide.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <unistd.h>

#define HDR 4
#define READ_CHUNK 65536

/* Frames up to this size are copied with their header and sent in one
 * write. */
#define SMALL_FRAME 65536

/* Bytes [start, end) of 'p' (malloc'ed, 'cap' bytes) are pending. */
typedef struct chanbuf_s {
    char    *p;
    size_t   start, end, cap;
} chanbuf_t;

struct tide_chan_s {
    int        fd;         /* ours */
    int        closed;     /* the peer's end was read */
    int        failed;     /* errno of a failed read, else 0 */
    chanbuf_t  in;         /* received, not yet handed out */
    chanbuf_t  out;        /* queued, not yet sent */
};

int tide__chan_new(tide_chan_t **out, int fd);

int
tide__chan_new(tide_chan_t **out, int fd)
{
    tide_chan_t  *c;
    int           fl;

    *out = NULL;
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return TIDE_ENOMEM;
    }
    fl = fcntl(fd, F_GETFL);
    if (fl >= 0) {
        (void) fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    }
    c->fd = fd;
    *out = c;
    return TIDE_OK;
}

int
tide_chan_open(tide_chan_t **out, int fd)
{
    struct stat  st;

    if (out != NULL) {
        *out = NULL;
    }
    if (out == NULL || fd < 0 || fstat(fd, &st) != 0 ||
        !S_ISSOCK(st.st_mode))
    {
        return TIDE_EINVAL;
    }
    return tide__chan_new(out, fd);
}

void
tide_chan_free(tide_chan_t *c)
{
    if (c == NULL) {
        return;
    }
    (void) close(c->fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

int
tide_chan_fd(const tide_chan_t *c)
{
    return c->fd;
}

static uint32_t
ld32(const char *p)
{
    const unsigned char  *u = (const unsigned char *) p;

    return (uint32_t) u[0] | (uint32_t) u[1] << 8 | (uint32_t) u[2] << 16 |
           (uint32_t) u[3] << 24;
}

/* Makes room for 'need' more bytes after b->end, moving the pending
 * bytes to the front first. */
static int
buf_reserve(chanbuf_t *b, size_t need)
{
    size_t  len = b->end - b->start, cap;
    char   *p;

    if (b->start > 0) {
        memmove(b->p, b->p + b->start, len);
        b->start = 0;
        b->end = len;
    }
    if (b->cap - b->end >= need) {
        return TIDE_OK;
    }
    cap = b->cap == 0 ? READ_CHUNK : b->cap;
    while (cap - len < need) {
        cap *= 2;
    }
    p = realloc(b->p, cap);
    if (p == NULL) {
        return TIDE_ENOMEM;
    }
    b->p = p;
    b->cap = cap;
    return TIDE_OK;
}

static int64_t in_frame(const tide_chan_t *c);

/* Reads what the kernel has, without waiting: up to the first whole
 * frame, or with 'greedy' all of it (while a send waits for room, so
 * that the peer's own send can finish). Returns TIDE_OK (maybe nothing
 * read), or TIDE_ENOMEM; end-of-file and errors are noted in 'closed'
 * and 'failed'. */
static int
in_fill(tide_chan_t *c, int greedy)
{
    ssize_t  n;
    size_t   want;
    int      rc;

    while (!c->closed && c->failed == 0) {
        if (!greedy && in_frame(c) != 0) {
            break;
        }
        want = READ_CHUNK;
        if (c->in.end - c->in.start >= HDR) {
            /* Room for the whole frame in front, within reason. */
            size_t  flen = (size_t) ld32(c->in.p + c->in.start) + HDR;

            if (flen <= (size_t) TIDE_CHAN_FRAME_MAX + HDR &&
                flen > c->in.end - c->in.start)
            {
                want = flen - (c->in.end - c->in.start);
            }
        }
        if (c->in.cap - c->in.end < want) {
            rc = buf_reserve(&c->in, want);
            if (rc != TIDE_OK) {
                return rc;
            }
        }
        n = read(c->fd, c->in.p + c->in.end, c->in.cap - c->in.end);
        if (n > 0) {
            c->in.end += (size_t) n;
            continue;
        }
        if (n == 0) {
            c->closed = 1;
        } else if (errno == EINTR) {
            continue;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            break;
        } else if (errno == ECONNRESET) {
            c->closed = 1;
        } else {
            c->failed = errno;
        }
    }
    return TIDE_OK;
}

/* Returns the size of the whole frame at in_start (header included), 0
 * when there is none yet, or TIDE_ECORRUPT. */
static int64_t
in_frame(const tide_chan_t *c)
{
    size_t    have = c->in.end - c->in.start;
    uint32_t  flen;

    if (have < HDR) {
        return 0;
    }
    flen = ld32(c->in.p + c->in.start);
    if (flen > (uint32_t) TIDE_CHAN_FRAME_MAX) {
        return TIDE_ECORRUPT;
    }
    return have >= (size_t) flen + HDR ? (int64_t) flen + HDR : 0;
}

int
tide_chan_recv(tide_chan_t *c, char **buf, size_t *len)
{
    int64_t  f;
    int      rc;

    if (buf != NULL) {
        *buf = NULL;
    }
    if (len != NULL) {
        *len = 0;
    }
    if (c == NULL || buf == NULL || len == NULL) {
        return TIDE_EINVAL;
    }
    f = in_frame(c);
    if (f == 0) {
        rc = in_fill(c, 0);
        if (rc != TIDE_OK) {
            return rc;
        }
        f = in_frame(c);
    }
    if (f < 0) {
        return (int) f;
    }
    if (f == 0) {
        if (c->failed != 0) {
            return TIDE_EIO;
        }
        return c->closed ? TIDE_ECLOSED : TIDE_EAGAIN;
    }
    /* The frame stays where it is until the next call moves the rest. */
    *buf = c->in.p + c->in.start + HDR;
    *len = (size_t) f - HDR;
    c->in.start += (size_t) f;
    return TIDE_OK;
}

int
tide_chan_wait(tide_chan_t *c, int timeout_ms)
{
    struct pollfd  pfd;
    int64_t        deadline, now;
    int            rc, left;

    if (c == NULL || timeout_ms < 0) {
        return TIDE_EINVAL;
    }
    deadline = tide_time_get(TIDE_TIME_MONO) + timeout_ms;
    for (;;) {
        if (in_frame(c) != 0 || c->closed || c->failed != 0) {
            return TIDE_OK;
        }
        rc = in_fill(c, 0);
        if (rc != TIDE_OK) {
            return TIDE_OK;         /* recv reports it */
        }
        if (in_frame(c) != 0 || c->closed || c->failed != 0) {
            return TIDE_OK;
        }
        now = tide_time_get(TIDE_TIME_MONO);
        if (now >= deadline) {
            return TIDE_EAGAIN;
        }
        left = (int) (deadline - now);
        pfd.fd = c->fd;
        pfd.events = POLLIN;
        pfd.revents = 0;
        rc = poll(&pfd, 1, left);
        if (rc < 0 && errno == EINTR) {
            return TIDE_EAGAIN;
        }
        if (rc < 0) {
            c->failed = errno;
        }
    }
}

/* Writes from 'p' (n bytes) until done, the deadline (-1: none) or an
 * error, reading meanwhile. Returns the bytes written (>= 0), or
 * TIDE_ECLOSED, TIDE_EIO, TIDE_ENOMEM. */
static int64_t
out_write(tide_chan_t *c, const char *p, size_t n, int64_t deadline)
{
    struct pollfd  pfd;
    size_t         done = 0;
    ssize_t        w;
    int64_t        now;
    int            rc, left, reading = 1;

    while (done < n) {
        w = send(c->fd, p + done, n - done, MSG_NOSIGNAL);
        if (w > 0) {
            done += (size_t) w;
            continue;
        }
        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return TIDE_ECLOSED;
        }
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK) {
            return TIDE_EIO;
        }
        if (deadline < 0) {
            left = -1;
        } else {
            now = tide_time_get(TIDE_TIME_MONO);
            if (now >= deadline) {
                break;
            }
            left = (int) (deadline - now);
        }
        pfd.fd = c->fd;
        pfd.events = reading ? POLLOUT | POLLIN : POLLOUT;
        pfd.revents = 0;
        rc = poll(&pfd, 1, left);
        if (rc < 0 && errno != EINTR) {
            return TIDE_EIO;
        }
        if (rc > 0 && (pfd.revents & POLLIN)) {
            /* Out of memory for what the peer sends: wait for room only;
             * the frame under way must go out whole. */
            if (in_fill(c, 1) != TIDE_OK || c->closed || c->failed != 0) {
                reading = 0;
            }
        }
    }
    return (int64_t) done;
}

/* Sends what is queued. Returns TIDE_OK (nothing left), TIDE_EAGAIN, or
 * an error of out_write. */
static int
out_drain(tide_chan_t *c, int64_t deadline)
{
    int64_t  w;

    if (c->out.end == c->out.start) {
        return TIDE_OK;
    }
    w = out_write(c, c->out.p + c->out.start, c->out.end - c->out.start,
                  deadline);
    if (w < 0) {
        return (int) w;
    }
    c->out.start += (size_t) w;
    if (c->out.start == c->out.end) {
        c->out.start = c->out.end = 0;
        return TIDE_OK;
    }
    return TIDE_EAGAIN;
}

/* Queues 'n' bytes of 'p' after what is queued already. */
static int
out_queue(tide_chan_t *c, const char *p, size_t n)
{
    int  rc = buf_reserve(&c->out, n);

    if (rc != TIDE_OK) {
        return rc;
    }
    memcpy(c->out.p + c->out.end, p, n);
    c->out.end += n;
    return TIDE_OK;
}

static int64_t
deadline_of(int timeout_ms)
{
    return timeout_ms < 0 ? -1 : tide_time_get(TIDE_TIME_MONO) + timeout_ms;
}

int
tide_chan_send(tide_chan_t *c, const char *buf, size_t len, int timeout_ms)
{
    unsigned char  hdr[HDR];
    int64_t        deadline, w;
    int            rc;

    if (c == NULL || len > (size_t) TIDE_CHAN_FRAME_MAX ||
        (buf == NULL && len > 0))
    {
        return TIDE_EINVAL;
    }
    hdr[0] = (unsigned char) len;
    hdr[1] = (unsigned char) (len >> 8);
    hdr[2] = (unsigned char) (len >> 16);
    hdr[3] = (unsigned char) (len >> 24);
    deadline = deadline_of(timeout_ms);
    if ((buf != NULL && c->in.p != NULL && buf >= c->in.p &&
         buf < c->in.p + c->in.cap) || len <= SMALL_FRAME)
    {
        /* A frame just received, sent on: reading while the send waits
         * may move it, so it goes through the queue. A small frame goes
         * too: one write for header and body, one wake-up for the peer. */
        rc = out_queue(c, (const char *) hdr, HDR);
        if (rc == TIDE_OK) {
            rc = out_queue(c, buf, len);
            if (rc != TIDE_OK) {
                c->out.end -= HDR;
            }
        }
        return rc == TIDE_OK ? out_drain(c, deadline) : rc;
    }
    rc = out_drain(c, deadline);
    if (rc != TIDE_OK && rc != TIDE_EAGAIN) {
        return rc;
    }
    if (rc == TIDE_EAGAIN) {
        /* Earlier bytes still wait: the whole frame goes behind them. */
        rc = out_queue(c, (const char *) hdr, HDR);
        if (rc == TIDE_OK && len > 0) {
            rc = out_queue(c, buf, len);
            if (rc != TIDE_OK) {
                c->out.end -= HDR;
            }
        }
        return rc == TIDE_OK ? TIDE_EAGAIN : rc;
    }
    /* Nothing queued: the header, then the body from the caller's buffer,
     * queueing only what the socket has not taken by the deadline. Room
     * is reserved first, so that a frame is never half sent and the rest
     * lost to ENOMEM. */
    rc = buf_reserve(&c->out, HDR + len);
    if (rc != TIDE_OK) {
        return rc;
    }
    w = out_write(c, (const char *) hdr, HDR, deadline);
    if (w < 0) {
        return (int) w;
    }
    if (w < HDR) {
        (void) out_queue(c, (const char *) hdr + w, HDR - (size_t) w);
        if (len > 0) {
            (void) out_queue(c, buf, len);
        }
        return TIDE_EAGAIN;
    }
    if (len == 0) {
        return TIDE_OK;
    }
    w = out_write(c, buf, len, deadline);
    if (w < 0) {
        return (int) w;
    }
    if ((size_t) w < len) {
        (void) out_queue(c, buf + w, len - (size_t) w);
        return TIDE_EAGAIN;
    }
    return TIDE_OK;
}

int
tide_chan_flush(tide_chan_t *c, int timeout_ms)
{
    if (c == NULL) {
        return TIDE_EINVAL;
    }
    return out_drain(c, deadline_of(timeout_ms));
}
