/*
 * The container loop: a libuv loop that turns SIGINT, SIGTERM and SIGHUP,
 * changes in a watched folder and command lines from control clients into
 * event bits, and waits with a timeout. Lua drives it (tide_loop_poll
 * between batches) and pulls the commands (tide_loop_pop_command); libuv's
 * callbacks only set bits and queue clients in the struct, so nothing here
 * ever calls into Lua. The client side of the control socket is in
 * control.c.
 *
 * The control socket must never hurt processing (issue 10, D9): at most
 * CLIENTS_MAX clients are open at once (one more is told "busy" and
 * closed), a client that sends nothing for IDLE_MS before its line is
 * complete is told so and closed, and a failed accept (EMFILE, ENFILE
 * ...) is reported once with the system's words, then retried after
 * BACKOFF_MS while the job goes on. 300 idle clients once took every
 * descriptor of a job.
 *
 * Only the job's own user may send commands (issue 12): the socket file
 * is mode 0600, and each client's uid is checked with SO_PEERCRED at
 * accept, in case the file's mode or its folder let someone else in.
 * Root is not exempt. A refused client gets one line and nothing it
 * sends is queued.
 */
#include "tide.h"
#include "log/log.h"
#include "util/errors.h"

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <uv.h>

/* A client's line buffer starts this big and doubles on demand up to
 * TIDE_CONTROL_LINE_MAX + 1 bytes (room to see the '\n' of the longest
 * command). */
#define LINE_START_BYTES 4096

/* Control clients open at once: a person or two, and scripts. Each holds
 * one descriptor and a line buffer. */
#define CLIENTS_MAX 16

/* How long a client may send nothing before its line is complete: the
 * deadline restarts whenever bytes arrive, so that a long line over a
 * slow pipe is not cut. A client that was told it is refused or its line
 * is too long gets IDLE_MS in all to end its line or leave. */
#define IDLE_MS 5000

/* The pause before accepting again after a failed accept. */
#define BACKOFF_MS 1000

/* Clients accepted per turn of the loop: a flood of connections cannot
 * hold the job in one callback. */
#define ACCEPTS_PER_TURN 64

enum {
    WATCH_INT = 0,
    WATCH_TERM,
    WATCH_HUP,
    WATCH_COUNT
};

/* A connected control client. It is on the loop's list of clients from
 * accept until its handle is closed, and on the queue of commands between
 * its complete line and tide_loop_pop_command. The loop owns it and its
 * line buffer; the close callback frees both. */
typedef struct client_s  client_t;

struct client_s {
    uv_pipe_t     pipe;          /* first: the handle's address is ours */
    tide_loop_t  *l;
    client_t     *prev, *next;   /* the loop's list of open clients */
    client_t     *qnext;         /* the queue of complete commands */
    uint64_t      deadline;      /* uv_now() by which it must send more */
    char         *line;          /* malloc'ed, 'cap' bytes, or NULL */
    size_t        cap;
    size_t        len;           /* bytes in 'line' */
    int           done;          /* the line is complete; reading stopped */
    int           told;          /* answered already (refused, too long):
                                    its bytes are dropped until its '\n',
                                    then it is closed */
};

/* A descriptor of tide_loop_watch_fd. The poll handle comes first: the
 * handle's address is the allocation, freed by on_close_free. */
typedef struct fdwatch_s  fdwatch_t;

struct fdwatch_s {
    uv_poll_t    poll;
    int          id;
    int          fd;            /* the caller's */
    fdwatch_t   *next;
};

struct tide_loop_s {
    uv_loop_t        uv;
    uv_signal_t      sig[WATCH_COUNT];
    uv_timer_t       timer;      /* bounds the wait of a poll */
    int              events;     /* TIDE_LOOP_* bits not yet polled */
    int              timed_out;  /* the current poll's timer fired */
    int              nopen;      /* handles initialised, not yet closed */
    uv_fs_event_t   *watch;      /* the folder watch, or NULL */
    uv_timer_t       idle;       /* closes clients past their deadline */
    uv_timer_t       backoff;    /* restarts accepting after a failure */
    uv_poll_t       *server;     /* the control socket, or NULL */
    int              server_fd;  /* its descriptor (ours, not libuv's) */
    int              accept_failing; /* a failed accept was reported */
    int              nclients;   /* open clients, at most CLIENTS_MAX */
    char            *ctl_path;   /* its file, made by us (malloc'ed) */
    dev_t            ctl_dev;    /* ... and its identity, so that free */
    ino_t            ctl_ino;    /* removes only the file it made */
    client_t        *clients;    /* every open client */
    client_t        *qhead;      /* the oldest queued command */
    client_t        *qtail;
    client_t        *current;    /* popped, waiting for its reply */
    char            *refusal;    /* the line for a client of another uid
                                    (malloc'ed with ctl_path) */
    char             sink[4096]; /* where told clients' bytes are read */
    fdwatch_t       *fds;        /* tide_loop_watch_fd's watches */
    int              fd_ids;     /* the last id given */
    uv_signal_t     *child;      /* the SIGCHLD watch, or NULL */
};

static void
on_signal(uv_signal_t *h, int signum)
{
    tide_loop_t  *l = h->data;

    l->events |= signum == SIGHUP ? TIDE_LOOP_RELOAD : TIDE_LOOP_STOP;
}

static void
on_timer(uv_timer_t *h)
{
    tide_loop_t  *l = h->data;

    l->timed_out = 1;
}

static void
on_close(uv_handle_t *h)
{
    tide_loop_t  *l = h->data;

    l->nopen--;
}

/* For the handles the loop allocates itself (the watch, the server):
 * their 'data' is the loop, and the handle is the allocation. */
static void
on_close_free(uv_handle_t *h)
{
    tide_loop_t  *l = h->data;

    l->nopen--;
    free(h);
}

static void
on_fs_event(uv_fs_event_t *h, const char *filename, int events, int status)
{
    tide_loop_t  *l = h->data;

    (void) filename;
    (void) events;
    /* An error (status < 0) is reported as a change too: whoever polls
     * then looks at the folder and finds out. */
    (void) status;
    l->events |= TIDE_LOOP_CHANGE;
}

/* ---- Control clients ---------------------------------------------- */

static void
on_client_close(uv_handle_t *h)
{
    client_t     *c = h->data;
    tide_loop_t  *l = c->l;

    l->nopen--;
    free(c->line);
    free(c);
}

/* Disconnects client 'c' and forgets it. It must not be on the queue. */
static void
client_close(client_t *c)
{
    tide_loop_t  *l = c->l;

    if (c->prev != NULL) {
        c->prev->next = c->next;
    } else {
        l->clients = c->next;
    }
    if (c->next != NULL) {
        c->next->prev = c->prev;
    }
    c->prev = c->next = NULL;
    l->nclients--;
    if (l->current == c) {
        l->current = NULL;
    }
    /* uv_close closes the descriptor now; the client sees end-of-file at
     * once, and on_client_close frees 'c' on a later turn of the loop. */
    uv_close((uv_handle_t *) &c->pipe, on_client_close);
}

static void
on_client_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client_t     *c = h->data;
    tide_loop_t  *l = c->l;
    size_t        cap;
    char         *line;

    (void) suggested;
    if (c->told) {
        /* Dropped: read into the loop's sink, which libuv hands straight
         * to on_client_read before it asks again. */
        *buf = uv_buf_init(l->sink, sizeof(l->sink));
        return;
    }
    if (c->len == c->cap) {
        /* Grow: a line may hold TIDE_CONTROL_LINE_MAX bytes and its
         * '\n'. Nothing past that is read into it (on_client_read tells
         * the client its line is too long once it is full). */
        cap = c->cap == 0 ? LINE_START_BYTES : c->cap * 2;
        if (cap > (size_t) TIDE_CONTROL_LINE_MAX + 1) {
            cap = (size_t) TIDE_CONTROL_LINE_MAX + 1;
        }
        line = realloc(c->line, cap);
        if (line == NULL) {
            *buf = uv_buf_init(NULL, 0);    /* libuv reports UV_ENOBUFS */
            return;
        }
        c->line = line;
        c->cap = cap;
    }
    *buf = uv_buf_init(c->line + c->len, (unsigned int) (c->cap - c->len));
}

/* Sends 'text' to client 'c' (that gets nothing else), and from now on
 * drops what it sends until its line ends; then it is closed. It has
 * IDLE_MS from now to end its line or leave. Reading on past the line
 * (rather than closing at once) spares the client an EPIPE on the rest of
 * its line, or an ECONNRESET instead of our text. */
static void
client_tell_drop(client_t *c, const char *text)
{
    uv_os_fd_t  fd;

    if (uv_fileno((uv_handle_t *) &c->pipe, &fd) == 0) {
        (void) send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    c->told = 1;
    free(c->line);
    c->line = NULL;
    c->cap = c->len = 0;
    c->deadline = uv_now(&c->l->uv) + IDLE_MS;
}

static void
on_client_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    client_t     *c = s->data;
    tide_loop_t  *l = c->l;
    char         *nl, text[64];

    if (nread == 0) {
        return;                 /* EAGAIN; libuv calls again */
    }
    if (nread < 0) {
        client_close(c);        /* gone, or out of memory for its line */
        return;
    }
    if (c->told) {
        if (memchr(buf->base, '\n', (size_t) nread) != NULL) {
            client_close(c);    /* its line has ended: it has our answer */
        }
        return;
    }
    c->deadline = uv_now(&l->uv) + IDLE_MS;
    nl = memchr(c->line + c->len, '\n', (size_t) nread);
    c->len += (size_t) nread;
    if (nl == NULL) {
        if (c->len > (size_t) TIDE_CONTROL_LINE_MAX) {
            snprintf(text, sizeof(text), "error: command longer than %d "
                     "bytes\n", (int) TIDE_CONTROL_LINE_MAX);
            client_tell_drop(c, text);
        }
        return;
    }
    /* Whatever follows the '\n' is ignored: one command per connection.
     * Reading stops so that a client which closes its writing side (as
     * some tools do after the line) still gets its reply. */
    c->len = (size_t) (nl - c->line);
    c->done = 1;
    (void) uv_read_stop(s);
    if (l->qtail != NULL) {
        l->qtail->qnext = c;
    } else {
        l->qhead = c;
    }
    l->qtail = c;
    l->events |= TIDE_LOOP_COMMAND;
}

/* Sends 'text' to a client that gets nothing else, without waiting. */
static void
client_tell(int fd, const char *text)
{
    (void) send(fd, text, strlen(text), MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Closes every client that has not sent its line by its deadline, and
 * sets the timer for the next deadline, if any. */
static void
on_idle(uv_timer_t *h)
{
    tide_loop_t  *l = h->data;
    client_t     *c, *next;
    uv_os_fd_t    fd;
    uint64_t      now = uv_now(&l->uv), first = 0;
    char          text[96];

    for (c = l->clients; c != NULL; c = next) {
        next = c->next;
        if (c->done) {
            continue;           /* queued: Lua answers it between batches */
        }
        if (c->deadline <= now) {
            if (!c->told
                && uv_fileno((uv_handle_t *) &c->pipe, &fd) == 0)
            {
                snprintf(text, sizeof(text), "timeout: nothing received for "
                         "%d s and no complete command line\n",
                         IDLE_MS / 1000);
                client_tell(fd, text);
            }
            client_close(c);
        } else if (first == 0 || c->deadline < first) {
            first = c->deadline;
        }
    }
    if (first != 0) {
        (void) uv_timer_start(&l->idle, on_idle, first - now, 0);
    }
}

/* Whether the peer of connection 'fd' runs as this process's user; when
 * not, logs it. A peer whose credentials cannot be read is refused. */
static int
peer_allowed(tide_loop_t *l, int fd)
{
    struct ucred  cred;
    socklen_t     n = sizeof(cred);

    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &n) != 0
        || n != sizeof(cred))
    {
        tide__warn("control socket %s: refused a client whose user cannot "
                   "be told: %s", l->ctl_path, strerror(errno));
        return 0;
    }
    if (cred.uid == geteuid()) {
        return 1;
    }
    tide__warn("control socket %s: refused a client of uid %u (pid %ld): "
               "only uid %u may send commands", l->ctl_path,
               (unsigned) cred.uid, (long) cred.pid, (unsigned) geteuid());
    return 0;
}

/* Takes connection 'fd' as a client, or tells it the job is busy. */
static void
client_add(tide_loop_t *l, int fd)
{
    client_t  *c;
    char       sink[512];

    if (l->nclients >= CLIENTS_MAX) {
        client_tell(fd, "busy: too many control clients\n");
        /* Read what the client sent first: closing a Unix socket with
         * unread bytes makes the client's read fail with ECONNRESET
         * instead of ending after our line. */
        while (recv(fd, sink, sizeof(sink), MSG_DONTWAIT) > 0) {
        }
        (void) close(fd);
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL) {
        (void) close(fd);
        return;
    }
    /* uv_pipe_init cannot fail for a loop that is alive. */
    (void) uv_pipe_init(&l->uv, &c->pipe, 0);
    c->pipe.data = c;
    c->l = l;
    c->deadline = uv_now(&l->uv) + IDLE_MS;
    l->nopen++;
    l->nclients++;
    c->next = l->clients;
    if (l->clients != NULL) {
        l->clients->prev = c;
    }
    l->clients = c;
    if (uv_pipe_open(&c->pipe, fd) != 0) {
        (void) close(fd);       /* not the handle's: uv_close leaves it */
        client_close(c);
        return;
    }
    if (uv_read_start((uv_stream_t *) &c->pipe, on_client_alloc,
                      on_client_read) != 0)
    {
        client_close(c);
        return;
    }
    if (!peer_allowed(l, fd)) {
        client_tell_drop(c, l->refusal);
    }
    if (!uv_is_active((uv_handle_t *) &l->idle)) {
        (void) uv_timer_start(&l->idle, on_idle, IDLE_MS, 0);
    }
}

static void on_server(uv_poll_t *h, int status, int events);

static void
on_backoff(uv_timer_t *h)
{
    tide_loop_t  *l = h->data;

    if (l->server != NULL) {
        (void) uv_poll_start(l->server, UV_READABLE, on_server);
    }
}

/* Stops accepting for BACKOFF_MS after error 'e' (an errno), saying so
 * once until an accept succeeds again. The waiting client stays in the
 * backlog. */
static void
accept_failed(tide_loop_t *l, int e)
{
    if (!l->accept_failing) {
        tide__warn("control socket %s: cannot accept a client: %s; the job "
                   "goes on and retries every %d s (raise 'ulimit -n' if "
                   "this is about descriptors)", l->ctl_path, strerror(e),
                   BACKOFF_MS / 1000);
        l->accept_failing = 1;
    }
    (void) uv_poll_stop(l->server);
    (void) uv_timer_start(&l->backoff, on_backoff, BACKOFF_MS, 0);
}

static void
on_server(uv_poll_t *h, int status, int events)
{
    tide_loop_t  *l = h->data;
    int           fd, i;

    (void) events;
    if (status < 0) {
        accept_failed(l, -status);      /* libuv codes are -errno */
        return;
    }
    for (i = 0; i < ACCEPTS_PER_TURN; i++) {
        fd = accept4(l->server_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                accept_failed(l, errno);
            }
            return;
        }
        if (l->accept_failing) {
            tide__warn("control socket %s: accepting clients again",
                       l->ctl_path);
            l->accept_failing = 0;
        }
        client_add(l, fd);
    }
}

/* Closes the server and every client; the file stays (loop_close). */
static void
control_close(tide_loop_t *l)
{
    if (l->server != NULL) {
        /* uv_close stops the poll at once; the descriptor is ours. */
        uv_close((uv_handle_t *) l->server, on_close_free);
        l->server = NULL;
        (void) close(l->server_fd);
        l->server_fd = -1;
    }
    l->qhead = l->qtail = NULL;
    while (l->clients != NULL) {
        client_close(l->clients);
    }
}

/* Looks at what is at 'path' before binding. Returns 0 when the path is
 * free (a stale socket was removed), else a TIDE_E* code with 'err'
 * set. */
static int
control_path_clear(const char *path, const struct sockaddr_un *sa,
                   char *err, size_t errlen)
{
    struct stat  st;
    int          fd, rc, saved;

    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) {
            return 0;
        }
        tide__set_err(err, errlen, 0, "cannot look at '%s': %s", path,
                      strerror(errno));
        return TIDE_EIO;
    }
    if (!S_ISSOCK(st.st_mode)) {
        tide__set_err(err, errlen, 0, "'%s' exists and is not a socket; "
                      "remove it or choose another path", path);
        return TIDE_EIO;
    }
    /* Non-blocking: a live server with a full backlog answers EAGAIN
     * rather than making us wait, and counts as live. */
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        tide__set_err(err, errlen, 0, "cannot make a socket: %s",
                      strerror(errno));
        return TIDE_EIO;
    }
    do {
        rc = connect(fd, (const struct sockaddr *) sa, sizeof(*sa));
    } while (rc != 0 && errno == EINTR);
    saved = errno;
    close(fd);
    if (rc == 0 || saved == EAGAIN || saved == EINPROGRESS) {
        tide__set_err(err, errlen, 0, "another process serves %s", path);
        return TIDE_EBUSY;
    }
    if (saved != ECONNREFUSED && saved != ENOENT) {
        tide__set_err(err, errlen, 0, "cannot check the socket '%s': %s", path,
                      strerror(saved));
        return TIDE_EIO;
    }
    /* Nobody listens: a socket left by a job that died. */
    if (unlink(path) != 0 && errno != ENOENT) {
        tide__set_err(err, errlen, 0, "cannot remove the stale socket '%s': "
                      "%s", path, strerror(errno));
        return TIDE_EIO;
    }
    return 0;
}

/* Returns the line told to a client of another user (malloc'ed; the
 * caller owns it), or NULL when out of memory. The user's name is looked
 * up here, once, rather than at each refusal: a name service may be
 * slow, and the loop must not wait on it. */
static char *
refusal_make(void)
{
    struct passwd   pw, *found = NULL;
    uid_t           uid = geteuid();
    char            names[1024], *text;
    size_t          n;

    if (getpwuid_r(uid, &pw, names, sizeof(names), &found) != 0) {
        found = NULL;
    }
    n = 128 + (found != NULL ? strlen(found->pw_name) : 0);
    text = malloc(n);
    if (text == NULL) {
        return NULL;
    }
    if (found != NULL) {
        snprintf(text, n, "error: permission denied: this job runs as uid "
                 "%u (%s); connect as that user\n", (unsigned) uid,
                 found->pw_name);
    } else {
        snprintf(text, n, "error: permission denied: this job runs as uid "
                 "%u; connect as that user\n", (unsigned) uid);
    }
    return text;
}

int
tide_loop_set_control(tide_loop_t *l, const char *path, char *err,
                      size_t errlen)
{
    struct sockaddr_un  sa;
    struct stat         st;
    uv_poll_t          *server = NULL;
    mode_t              mask;
    size_t              n;
    char               *copy = NULL, *refusal = NULL;
    int                 fd = -1, rc, bound = 0;

    tide__set_err(err, errlen, 0, "%s", "");
    if (l == NULL || path == NULL || path[0] == '\0') {
        tide__set_err(err, errlen, 0, "bad control socket path: a path "
                      "expected");
        return TIDE_EINVAL;
    }
    n = strlen(path);
    if (n >= sizeof(sa.sun_path)) {
        tide__set_err(err, errlen, 0, "control socket path '%s' is too long "
                      "(%zu bytes; at most %zu)", path, n,
                      sizeof(sa.sun_path) - 1);
        return TIDE_EINVAL;
    }
    if (l->server != NULL) {
        tide__set_err(err, errlen, 0, "the loop serves '%s' already",
                      l->ctl_path);
        return TIDE_EINVAL;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, path, n + 1);

    rc = control_path_clear(path, &sa, err, errlen);
    if (rc != 0) {
        return rc;
    }
    copy = strdup(path);
    refusal = refusal_make();
    server = malloc(sizeof(*server));
    if (copy == NULL || refusal == NULL || server == NULL) {
        tide__set_err(err, errlen, 0, "out of memory");
        free(copy);
        free(refusal);
        free(server);
        return TIDE_ENOMEM;
    }

    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        tide__set_err(err, errlen, 0, "cannot make a socket: %s",
                      strerror(errno));
        goto fail;
    }
    /* The file gets mode 0600 from its birth: the umask is narrowed for
     * the bind only. The chmod below repeats it in case another thread
     * changed the umask meanwhile; both happen before listen(), and
     * nobody can connect before that. */
    mask = umask(0177);
    rc = bind(fd, (const struct sockaddr *) &sa, sizeof(sa));
    (void) umask(mask);
    if (rc != 0) {
        if (errno == EADDRINUSE) {
            /* Another job bound it between our check and our bind. */
            tide__set_err(err, errlen, 0, "another process serves %s", path);
            close(fd);
            free(copy);
            free(refusal);
            free(server);
            return TIDE_EBUSY;
        }
        tide__set_err(err, errlen, 0, "cannot bind '%s': %s", path,
                      strerror(errno));
        goto fail;
    }
    bound = 1;
    if (chmod(path, 0600) != 0 || lstat(path, &st) != 0) {
        tide__set_err(err, errlen, 0, "cannot set the mode of '%s': %s", path,
                      strerror(errno));
        goto fail;
    }

    if (listen(fd, 64) != 0) {
        tide__set_err(err, errlen, 0, "cannot listen on '%s': %s", path,
                      strerror(errno));
        goto fail;
    }
    /* The loop accepts by itself (on_server) rather than through
     * uv_listen, so that it chooses what a failed accept does: libuv
     * would drop waiting clients silently on EMFILE. The descriptor
     * stays ours; the poll handle only watches it. */
    rc = uv_poll_init(&l->uv, server, fd);
    if (rc == 0) {
        server->data = l;
        l->nopen++;
        rc = uv_poll_start(server, UV_READABLE, on_server);
        if (rc != 0) {
            uv_close((uv_handle_t *) server, on_close_free);
            server = NULL;
        }
    }
    if (rc != 0) {
        tide__set_err(err, errlen, 0, "cannot watch '%s': %s", path,
                      uv_strerror(rc));
        goto fail;
    }

    l->server = server;
    l->server_fd = fd;
    l->ctl_path = copy;
    l->refusal = refusal;
    l->ctl_dev = st.st_dev;
    l->ctl_ino = st.st_ino;
    return TIDE_OK;

fail:
    if (fd >= 0) {
        close(fd);
    }
    if (bound) {
        (void) unlink(path);
    }
    free(copy);
    free(refusal);
    free(server);
    return TIDE_EIO;
}

int
tide_loop_pop_command(tide_loop_t *l, char *buf, size_t *len)
{
    client_t  *c;

    if (l == NULL || len == NULL || (buf == NULL && *len > 0)) {
        if (len != NULL) {
            *len = 0;
        }
        return TIDE_EINVAL;
    }
    c = l->qhead;
    if (c == NULL) {
        *len = 0;
        return TIDE_EAGAIN;
    }
    if (c->len > *len) {
        *len = c->len;
        return TIDE_ENOBUFS;
    }
    if (c->len > 0) {
        memcpy(buf, c->line, c->len);
    }
    *len = c->len;
    /* The line is Lua's now: up to 1 MiB need not wait for the reply. */
    free(c->line);
    c->line = NULL;
    c->cap = c->len = 0;
    l->qhead = c->qnext;
    if (l->qhead == NULL) {
        l->qtail = NULL;
    }
    c->qnext = NULL;
    if (l->current != NULL) {
        client_close(l->current);       /* never answered */
    }
    l->current = c;
    return TIDE_OK;
}

int
tide_loop_push_reply(tide_loop_t *l, const char *text, size_t len)
{
    struct pollfd  pfd;
    uv_os_fd_t     fd;
    ssize_t        n;
    int            waits = 0;

    if (l == NULL || l->current == NULL || (text == NULL && len > 0)) {
        return TIDE_EINVAL;
    }
    /* A plain write on the client's (non-blocking) descriptor: replies
     * are short and usually fit the socket buffer at once, and this way
     * the client is answered and closed within the call. A long reply (a
     * REPL's, up to a few MiB) goes on as long as the client reads; one
     * that reads nothing for about a second is cut. MSG_NOSIGNAL: a
     * client that left must not kill the job with SIGPIPE. */
    if (uv_fileno((uv_handle_t *) &l->current->pipe, &fd) == 0) {
        while (len > 0) {
            n = send(fd, text, len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n >= 0) {
                text += n;
                len -= (size_t) n;
                waits = 0;      /* it reads: a long reply goes on */
                continue;
            }
            if (errno == EINTR) {
                continue;
            }
            if ((errno != EAGAIN && errno != EWOULDBLOCK) || waits >= 10) {
                break;          /* gone, or nothing read for a second */
            }
            pfd.fd = fd;
            pfd.events = POLLOUT;
            pfd.revents = 0;
            (void) poll(&pfd, 1, 100);
            waits++;
        }
    }
    client_close(l->current);
    return TIDE_OK;
}

/* ---- Folder watch ------------------------------------------------- */

int
tide_loop_set_watch(tide_loop_t *l, const char *dir)
{
    uv_fs_event_t  *w;
    struct stat     st;
    int             rc;

    if (l == NULL || dir == NULL || dir[0] == '\0') {
        return TIDE_EINVAL;
    }
    if (stat(dir, &st) != 0) {
        return errno == ENOENT || errno == ENOTDIR ? TIDE_ENOENT : TIDE_EIO;
    }
    if (!S_ISDIR(st.st_mode)) {
        return TIDE_EINVAL;
    }
    /* The new watch is started before the old one goes, so that a
     * failure leaves the old one in place. */
    w = malloc(sizeof(*w));
    if (w == NULL) {
        return TIDE_ENOMEM;
    }
    /* uv_fs_event_init cannot fail for a loop that is alive. */
    (void) uv_fs_event_init(&l->uv, w);
    w->data = l;
    l->nopen++;
    rc = uv_fs_event_start(w, on_fs_event, dir, 0);
    if (rc != 0) {
        uv_close((uv_handle_t *) w, on_close_free);
        return rc == UV_ENOENT || rc == UV_ENOTDIR ? TIDE_ENOENT : TIDE_EIO;
    }
    if (l->watch != NULL) {
        uv_close((uv_handle_t *) l->watch, on_close_free);
    }
    l->watch = w;
    return TIDE_OK;
}

/* Closes every handle that was initialised, runs the loop until libuv
 * has called every close callback, then closes the loop itself. */
static void
handle_close(uv_handle_t *h)
{
    if (h->data != NULL && !uv_is_closing(h)) {
        uv_close(h, on_close);
    }
}

static void
on_fd(uv_poll_t *h, int status, int events)
{
    tide_loop_t  *l = h->data;

    (void) status;
    (void) events;
    /* Readable, hung up or failed: the caller's read finds out which. */
    l->events |= TIDE_LOOP_INPUT;
}

static void
on_child(uv_signal_t *h, int signum)
{
    tide_loop_t  *l = h->data;

    (void) signum;
    l->events |= TIDE_LOOP_CHILD;
}

int
tide_loop_watch_fd(tide_loop_t *l, int fd, int *id)
{
    fdwatch_t  *w;
    int         rc;

    if (id != NULL) {
        *id = 0;
    }
    if (l == NULL || id == NULL || fd < 0) {
        return TIDE_EINVAL;
    }
    for (w = l->fds; w != NULL; w = w->next) {
        if (w->fd == fd) {
            return TIDE_EINVAL;
        }
    }
    w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return TIDE_ENOMEM;
    }
    rc = uv_poll_init(&l->uv, &w->poll, fd);
    if (rc != 0) {
        free(w);
        return rc == UV_EEXIST ? TIDE_EINVAL : rc == UV_ENOMEM ? TIDE_ENOMEM
               : TIDE_EIO;
    }
    w->poll.data = l;
    l->nopen++;
    rc = uv_poll_start(&w->poll, UV_READABLE | UV_DISCONNECT, on_fd);
    if (rc != 0) {
        uv_close((uv_handle_t *) &w->poll, on_close_free);
        return TIDE_EIO;
    }
    w->fd = fd;
    w->id = ++l->fd_ids;
    w->next = l->fds;
    l->fds = w;
    *id = w->id;
    return TIDE_OK;
}

int
tide_loop_unwatch_fd(tide_loop_t *l, int id)
{
    fdwatch_t  **pw, *w;

    if (l == NULL) {
        return TIDE_EINVAL;
    }
    for (pw = &l->fds; *pw != NULL; pw = &(*pw)->next) {
        if ((*pw)->id == id) {
            w = *pw;
            *pw = w->next;
            /* uv_close stops polling now; the descriptor stays open. The
             * close callback runs on a later turn of the loop. */
            uv_close((uv_handle_t *) &w->poll, on_close_free);
            return TIDE_OK;
        }
    }
    return TIDE_ENOENT;
}

int
tide_loop_watch_children(tide_loop_t *l)
{
    uv_signal_t  *h;

    if (l == NULL) {
        return TIDE_EINVAL;
    }
    if (l->child != NULL) {
        return TIDE_OK;
    }
    h = calloc(1, sizeof(*h));
    if (h == NULL) {
        return TIDE_ENOMEM;
    }
    if (uv_signal_init(&l->uv, h) != 0) {
        free(h);
        return TIDE_EIO;
    }
    h->data = l;
    l->nopen++;
    if (uv_signal_start(h, on_child, SIGCHLD) != 0) {
        uv_close((uv_handle_t *) h, on_close_free);
        return TIDE_EIO;
    }
    l->child = h;
    return TIDE_OK;
}

static void
loop_close(tide_loop_t *l)
{
    struct stat  st;
    int          i;

    while (l->fds != NULL) {
        (void) tide_loop_unwatch_fd(l, l->fds->id);
    }
    if (l->child != NULL) {
        uv_close((uv_handle_t *) l->child, on_close_free);
        l->child = NULL;
    }

    for (i = 0; i < WATCH_COUNT; i++) {
        handle_close((uv_handle_t *) &l->sig[i]);
    }
    handle_close((uv_handle_t *) &l->timer);
    handle_close((uv_handle_t *) &l->idle);
    handle_close((uv_handle_t *) &l->backoff);
    if (l->watch != NULL) {
        uv_close((uv_handle_t *) l->watch, on_close_free);
        l->watch = NULL;
    }
    control_close(l);
    if (l->ctl_path != NULL) {
        /* Remove the socket file only if it is still the one we made: a
         * job started after ours may have replaced it. */
        if (lstat(l->ctl_path, &st) == 0 && st.st_dev == l->ctl_dev
            && st.st_ino == l->ctl_ino)
        {
            (void) unlink(l->ctl_path);
        }
        free(l->ctl_path);
        l->ctl_path = NULL;
        free(l->refusal);
        l->refusal = NULL;
    }
    while (l->nopen > 0) {
        uv_run(&l->uv, UV_RUN_NOWAIT);
    }
    /* Every handle is closed, so this cannot fail with UV_EBUSY. */
    (void) uv_loop_close(&l->uv);
}

int
tide_loop_new(tide_loop_t **out)
{
    static const int  signums[WATCH_COUNT] = { SIGINT, SIGTERM, SIGHUP };
    tide_loop_t      *l;
    int               i;

    if (out == NULL) {
        return TIDE_EINVAL;
    }
    *out = NULL;

    /* calloc: a handle whose 'data' is still NULL was never initialised,
     * which loop_close relies on after a partial set-up. */
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return TIDE_ENOMEM;
    }
    if (uv_loop_init(&l->uv) != 0) {
        free(l);
        return TIDE_EIO;
    }

    l->server_fd = -1;
    if (uv_timer_init(&l->uv, &l->timer) != 0) {
        goto fail;
    }
    l->timer.data = l;
    l->nopen++;
    if (uv_timer_init(&l->uv, &l->idle) != 0) {
        goto fail;
    }
    l->idle.data = l;
    l->nopen++;
    if (uv_timer_init(&l->uv, &l->backoff) != 0) {
        goto fail;
    }
    l->backoff.data = l;
    l->nopen++;

    for (i = 0; i < WATCH_COUNT; i++) {
        if (uv_signal_init(&l->uv, &l->sig[i]) != 0) {
            goto fail;
        }
        l->sig[i].data = l;
        l->nopen++;
        if (uv_signal_start(&l->sig[i], on_signal, signums[i]) != 0) {
            goto fail;
        }
    }

    *out = l;
    return TIDE_OK;

fail:
    loop_close(l);
    free(l);
    return TIDE_EIO;
}

void
tide_loop_free(tide_loop_t *l)
{
    if (l == NULL) {
        return;
    }
    loop_close(l);
    free(l);
}

int
tide_loop_poll(tide_loop_t *l, int timeout_ms)
{
    int  events;

    if (l == NULL || timeout_ms < 0) {
        return TIDE_EINVAL;
    }

    /* Collect what is already there (a signal that arrived since the last
     * poll sits in libuv's signal pipe until the loop runs). */
    uv_run(&l->uv, UV_RUN_NOWAIT);

    if (l->events == 0 && timeout_ms > 0) {
        /* UV_RUN_ONCE returns after one round of callbacks: the timer's,
         * a signal's, or none after an interrupted wait; hence the loop.
         * libuv 1.44 runs due timers *before* it polls: a timer already
         * due when uv_run starts (a busy machine) fires there, and the
         * poll that follows would then wait with no timer at all, for
         * good. So the timer repeats every millisecond until stopped
         * below, and the deadline is checked here too. */
        uint64_t  deadline;

        uv_update_time(&l->uv);
        deadline = uv_now(&l->uv) + (uint64_t) timeout_ms;
        l->timed_out = 0;
        while (l->events == 0 && !l->timed_out) {
            uint64_t  now = uv_now(&l->uv);

            if (now >= deadline) {
                break;
            }
            if (!uv_is_active((uv_handle_t *) &l->timer)) {
                (void) uv_timer_start(&l->timer, on_timer, deadline - now, 1);
            }
            uv_run(&l->uv, UV_RUN_ONCE);
            uv_update_time(&l->uv);
        }
        (void) uv_timer_stop(&l->timer);
    }

    events = l->events;
    l->events = 0;
    return events;
}
