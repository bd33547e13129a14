/*
 * The client side of a job's control socket ('tide reload JOB', the
 * REPL): one command line out, the reply back until the job disconnects.
 * The server side lives in loop.c, inside the container loop. Plain
 * blocking-free system calls with poll(), so that it needs no libuv loop
 * and works in any process.
 */
#include "tide.h"
#include "util/errors.h"

#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static int64_t
now_ms(void)
{
    struct timespec  ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits until 'fd' is ready for 'events' or 'deadline' (monotonic ms)
 * has passed. Returns 1 when ready, 0 on timeout, -1 on error. */
static int
wait_fd(int fd, short events, int64_t deadline)
{
    struct pollfd  pfd;
    int64_t        left;
    int            rc;

    for (;;) {
        left = deadline - now_ms();
        if (left < 0) {
            left = 0;
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int) left);
        if (rc > 0) {
            return 1;
        }
        if (rc == 0) {
            return 0;
        }
        if (errno != EINTR) {
            return -1;
        }
    }
}

/* Maps a failed connect to the caller's code and message. */
static int
connect_error(int e, const char *path, char *err, size_t errlen)
{
    switch (e) {
    case ENOENT:
    case ECONNREFUSED:
    case ENOTDIR:
        tide__set_err(err, errlen, 0, "no job is listening on %s (is it "
                      "running?)", path);
        return TIDE_ENOENT;
    case EACCES:
    case EPERM:
        tide__set_err(err, errlen, 0, "permission denied on control socket "
                      "%s: the job runs as another user; run this as the "
                      "job's user", path);
        return TIDE_EIO;
    default:
        tide__set_err(err, errlen, 0, "cannot connect to %s: %s", path,
                      strerror(e));
        return TIDE_EIO;
    }
}

int
tide_control_send(const char *path, const char *cmd, char *reply,
                  size_t *len, int timeout_ms, char *err, size_t errlen)
{
    struct sockaddr_un  sa;
    size_t              cap, got = 0, n, sent;
    ssize_t             r;
    int64_t             deadline;
    char                sink[512];
    int                 fd, rc, e, ready, send_err = 0;

    tide__set_err(err, errlen, 0, "%s", "");
    if (len == NULL) {
        tide__set_err(err, errlen, 0, "no place for the reply length");
        return TIDE_EINVAL;
    }
    cap = *len;
    *len = 0;
    if (path == NULL || path[0] == '\0'
        || strlen(path) >= sizeof(sa.sun_path))
    {
        tide__set_err(err, errlen, 0, "bad control socket path '%s': at most "
                      "%zu bytes expected", path != NULL ? path : "(null)",
                      sizeof(sa.sun_path) - 1);
        return TIDE_EINVAL;
    }
    if (cmd == NULL || strchr(cmd, '\n') != NULL
        || strlen(cmd) > (size_t) TIDE_CONTROL_LINE_MAX)
    {
        tide__set_err(err, errlen, 0, "bad command: one line of at most %d "
                      "bytes expected", (int) TIDE_CONTROL_LINE_MAX);
        return TIDE_EINVAL;
    }
    if ((reply == NULL && cap > 0) || timeout_ms < 0) {
        tide__set_err(err, errlen, 0, "bad reply buffer or timeout");
        return TIDE_EINVAL;
    }
    deadline = now_ms() + timeout_ms;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, strlen(path) + 1);
    n = strlen(cmd) + 1;        /* 'cmd', then its '\n' */

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        tide__set_err(err, errlen, 0, "cannot make a socket: %s",
                      strerror(errno));
        return TIDE_EIO;
    }
    /* A Unix socket connects at once or fails at once; EAGAIN means the
     * job's backlog is full, so try again until the deadline. */
    for (;;) {
        rc = connect(fd, (const struct sockaddr *) &sa, sizeof(sa));
        if (rc == 0) {
            break;
        }
        e = errno;
        if (e == EINTR) {
            continue;
        }
        if (e == EAGAIN && now_ms() < deadline) {
            struct timespec  pause = { 0, 5 * 1000000 };

            nanosleep(&pause, NULL);
            continue;
        }
        close(fd);
        if (e == EAGAIN) {
            tide__set_err(err, errlen, 0, "the job at %s did not accept "
                          "within %d ms", path, timeout_ms);
            return TIDE_EAGAIN;
        }
        return connect_error(e, path, err, errlen);
    }

    /* The command goes straight from 'cmd' (up to 1 MiB, not copied);
     * its '\n' goes last, on its own. */
    for (sent = 0; sent < n; ) {
        if (sent < n - 1) {
            r = send(fd, cmd + sent, n - 1 - sent, MSG_NOSIGNAL);
        } else {
            r = send(fd, "\n", 1, MSG_NOSIGNAL);
        }
        if (r >= 0) {
            sent += (size_t) r;
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ready = wait_fd(fd, POLLOUT, deadline);
            if (ready > 0) {
                continue;
            }
            if (ready == 0) {
                close(fd);
                tide__set_err(err, errlen, 0, "no reply from %s within %d ms",
                              path, timeout_ms);
                return TIDE_EAGAIN;
            }
        }
        e = errno;
        if (e == EPIPE || e == ECONNRESET) {
            /* The job closed before taking the whole line: it may have
             * said why first ("busy: ...", "error: ..."); read that. */
            send_err = e;
            break;
        }
        close(fd);
        tide__set_err(err, errlen, 0, "cannot send to %s: %s", path,
                      strerror(e));
        return TIDE_EIO;
    }

    /* Read until end-of-file. Bytes beyond 'cap' are read and dropped,
     * so that the job's write never waits for us. */
    for (;;) {
        if (got < cap) {
            r = recv(fd, reply + got, cap - got, 0);
        } else {
            r = recv(fd, sink, sizeof(sink), 0);
        }
        if (r > 0) {
            if (got < cap) {
                got += (size_t) r;
            }
            continue;
        }
        if (r == 0) {
            break;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            ready = wait_fd(fd, POLLIN, deadline);
            if (ready > 0) {
                continue;
            }
            if (ready == 0) {
                close(fd);
                tide__set_err(err, errlen, 0, "no reply from %s within %d ms",
                              path, timeout_ms);
                return TIDE_EAGAIN;
            }
        }
        e = errno;
        if (e == ECONNRESET && got > 0) {
            break;      /* closed after its answer, with our bytes unread */
        }
        close(fd);
        if (send_err != 0) {
            e = send_err;
        }
        tide__set_err(err, errlen, 0, "cannot %s %s: %s", send_err != 0
                      ? "send to" : "read the reply from", path, strerror(e));
        return TIDE_EIO;
    }
    close(fd);
    if (send_err != 0 && got == 0) {
        tide__set_err(err, errlen, 0, "cannot send to %s: %s", path,
                      strerror(send_err));
        return TIDE_EIO;
    }
    *len = got;
    return TIDE_OK;
}
