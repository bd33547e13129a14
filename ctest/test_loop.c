/*
 * The container loop's contract, without Lua: handles and their errors,
 * signals turned into event bits (raised here, or sent by another
 * process while a poll waits), the wait bounded by its timeout, the
 * folder watch, the control socket with its client, and the clocks.
 */
#include "tide.h"

#include "ctest.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SENTINEL ((tide_loop_t *) (uintptr_t) 0x1)

static tide_loop_t *
loop_open(void)
{
    tide_loop_t  *l = SENTINEL;

    ASSERT_OK(tide_loop_new(&l));
    ASSERT(l != NULL && l != SENTINEL);
    return l;
}

static int64_t
mono(void)
{
    int64_t  t = tide_time_get(TIDE_TIME_MONO);

    ASSERT(t >= 0);
    return t;
}

static void
test_new_and_free(void)
{
    tide_loop_t  *l = loop_open();

    ASSERT_EQ(tide_loop_poll(l, 0), 0);
    tide_loop_free(l);
    tide_loop_free(NULL);
}

static void
test_new_rejects_null(void)
{
    ASSERT_EQ(tide_loop_new(NULL), TIDE_EINVAL);
}

/* With no file descriptor left libuv cannot make its epoll and pipes. */
static void
test_new_fails_without_descriptors(void)
{
    struct rlimit   saved, none;
    tide_loop_t    *l = SENTINEL;

    ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
    none = saved;
    none.rlim_cur = 0;
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &none));
    ASSERT_EQ(tide_loop_new(&l), TIDE_EIO);
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
    ASSERT(l == NULL);
}

static void
test_poll_rejects_bad_args(void)
{
    tide_loop_t  *l = loop_open();

    ASSERT_EQ(tide_loop_poll(NULL, 0), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_poll(NULL, 10), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_poll(l, -1), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_poll(l, 0), 0);       /* still usable */
    tide_loop_free(l);
}

static void
test_poll_waits_for_the_timeout(void)
{
    tide_loop_t  *l = loop_open();
    int64_t       t0, dt;

    t0 = mono();
    ASSERT_EQ(tide_loop_poll(l, 0), 0);
    dt = mono() - t0;
    ASSERT(dt < 1000);

    t0 = mono();
    ASSERT_EQ(tide_loop_poll(l, 60), 0);
    dt = mono() - t0;
    /* libuv counts from its cached loop time, which can lag the clock by
     * a millisecond; an upper bound only catches a poll that hangs. */
    ASSERT(dt >= 50);
    ASSERT(dt < 10000);
    tide_loop_free(l);
}

static void
test_raised_signals_become_events(void)
{
    tide_loop_t  *l = loop_open();

    ASSERT_OK(raise(SIGTERM));
    ASSERT_EQ(tide_loop_poll(l, 0), TIDE_LOOP_STOP);
    ASSERT_EQ(tide_loop_poll(l, 0), 0);       /* polled bits are cleared */

    ASSERT_OK(raise(SIGINT));
    ASSERT_EQ(tide_loop_poll(l, 1000), TIDE_LOOP_STOP);

    ASSERT_OK(raise(SIGHUP));
    ASSERT_EQ(tide_loop_poll(l, 1000), TIDE_LOOP_RELOAD);

    /* Events add up until the next poll. */
    ASSERT_OK(raise(SIGHUP));
    ASSERT_OK(raise(SIGTERM));
    ASSERT_OK(raise(SIGHUP));
    ASSERT_EQ(tide_loop_poll(l, 0), TIDE_LOOP_STOP | TIDE_LOOP_RELOAD);
    ASSERT_EQ(tide_loop_poll(l, 0), 0);
    tide_loop_free(l);
}

static void
test_every_loop_sees_a_signal(void)
{
    tide_loop_t  *a = loop_open();
    tide_loop_t  *b = loop_open();

    ASSERT_OK(raise(SIGHUP));
    ASSERT_EQ(tide_loop_poll(a, 0), TIDE_LOOP_RELOAD);
    ASSERT_EQ(tide_loop_poll(b, 0), TIDE_LOOP_RELOAD);
    tide_loop_free(a);

    /* b keeps watching after a is gone. */
    ASSERT_OK(raise(SIGINT));
    ASSERT_EQ(tide_loop_poll(b, 0), TIDE_LOOP_STOP);
    tide_loop_free(b);
}

/* A signal from another process ends a long wait early. */
static void
test_signal_ends_the_wait(void)
{
    struct timespec   pause = { 0, 100 * 1000000 };
    tide_loop_t      *l = loop_open();
    pid_t             child, parent = getpid();
    int64_t           t0, dt;
    int               status;

    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        nanosleep(&pause, NULL);
        kill(parent, SIGTERM);
        _exit(0);
    }
    t0 = mono();
    ASSERT_EQ(tide_loop_poll(l, 60000), TIDE_LOOP_STOP);
    dt = mono() - t0;
    ASSERT(dt < 30000);
    /* Wait for the child before the loop goes, so that its signal cannot
     * land in a later test's loop, and take whatever is left. */
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    (void) tide_loop_poll(l, 10);
    tide_loop_free(l);
}

static void
test_many_loops(void)
{
    tide_loop_t  *l;
    int           i;

    /* Handles and descriptors are released each time. The first poll may
     * still report a signal sent to an earlier test's loop: libuv's signal
     * pipe is per process, and tide run has one loop per process. */
    for (i = 0; i < 200; i++) {
        l = loop_open();
        if (i % 2 == 0) {
            ASSERT(tide_loop_poll(l, 1) >= 0);
        }
        tide_loop_free(l);
    }
}

/* ---- Folder watch and control socket ------------------------------- */

/* Under /tmp rather than $TIDE_TMP: a socket path must fit in 107
 * bytes, and the children that drop to 'nobody' must reach the files. */
static char  tmpdir[64];

static void
tmp_make(void)
{
    strcpy(tmpdir, "/tmp/tide-loop-XXXXXX");
    ASSERT(mkdtemp(tmpdir) != NULL);
}

static void
tmp_remove(void)
{
    char  cmd[128];

    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    ASSERT_OK(system(cmd));
}

static void
file_write(const char *path, const char *text)
{
    FILE  *f = fopen(path, "w");

    ASSERT(f != NULL);
    ASSERT(fputs(text, f) >= 0);
    ASSERT_OK(fclose(f));
}

/* Polls for up to ~5 s until every bit of 'want' was seen; returns the
 * bits seen. */
static int
poll_for(tide_loop_t *l, int want)
{
    int64_t  deadline = mono() + 5000;
    int      seen = 0, ev;

    while ((seen & want) != want && mono() < deadline) {
        ev = tide_loop_poll(l, 100);
        ASSERT(ev >= 0);
        seen |= ev;
    }
    return seen;
}

/* Lets pending changes arrive, then forgets them. */
static void
poll_drain(tide_loop_t *l)
{
    ASSERT(tide_loop_poll(l, 50) >= 0);
    ASSERT(tide_loop_poll(l, 0) >= 0);
}

static void
test_watch_rejects_bad_args(void)
{
    tide_loop_t  *l = loop_open();
    char          path[128];
    pid_t         child;
    int           status;

    tmp_make();
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    file_write(path, "x");
    ASSERT_EQ(tide_loop_set_watch(NULL, tmpdir), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_set_watch(l, NULL), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_set_watch(l, ""), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_set_watch(l, path), TIDE_EINVAL);    /* a file */
    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    ASSERT_EQ(tide_loop_set_watch(l, path), TIDE_ENOENT);
    snprintf(path, sizeof(path), "%s/file/sub", tmpdir);
    ASSERT_EQ(tide_loop_set_watch(l, path), TIDE_ENOENT);

    /* EIO: a folder this user may not look into. As root, drop to
     * 'nobody' in a child; otherwise the mode alone does it. */
    snprintf(path, sizeof(path), "%s/closed", tmpdir);
    ASSERT_OK(mkdir(path, 0755));
    snprintf(path, sizeof(path), "%s/closed/inner", tmpdir);
    ASSERT_OK(mkdir(path, 0755));
    snprintf(path, sizeof(path), "%s/closed", tmpdir);
    ASSERT_OK(chmod(path, 0000));
    snprintf(path, sizeof(path), "%s/closed/inner", tmpdir);
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        tide_loop_t  *cl = NULL;

        if (geteuid() == 0 && setuid(65534) != 0) {
            _exit(2);
        }
        if (tide_loop_new(&cl) != TIDE_OK) {
            _exit(3);
        }
        _exit(tide_loop_set_watch(cl, path) == TIDE_EIO ? 0 : 1);
    }
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);

    ASSERT_EQ(tide_loop_poll(l, 0), 0);      /* still usable */
    tide_loop_free(l);
    snprintf(path, sizeof(path), "%s/closed", tmpdir);
    ASSERT_OK(chmod(path, 0755));
    tmp_remove();
}

static void
test_watch_raises_change(void)
{
    tide_loop_t  *l = loop_open();
    char          path[128], tmp[128], other[128];

    tmp_make();
    snprintf(path, sizeof(path), "%s/job.lua", tmpdir);
    snprintf(tmp, sizeof(tmp), "%s/.job.lua.swp", tmpdir);
    snprintf(other, sizeof(other), "%s/other", tmpdir);
    ASSERT_OK(mkdir(other, 0755));

    ASSERT_OK(tide_loop_set_watch(l, tmpdir));
    ASSERT_EQ(tide_loop_poll(l, 0), 0);

    /* A new file. */
    file_write(path, "return 1\n");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_CHANGE), TIDE_LOOP_CHANGE);
    poll_drain(l);

    /* A save through a rename, as vim and many editors do. */
    file_write(tmp, "return 2\n");
    ASSERT_OK(rename(tmp, path));
    ASSERT_EQ(poll_for(l, TIDE_LOOP_CHANGE), TIDE_LOOP_CHANGE);
    poll_drain(l);

    /* A write in place. */
    file_write(path, "return 3\n");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_CHANGE), TIDE_LOOP_CHANGE);
    poll_drain(l);

    /* A second call replaces the watch. */
    ASSERT_OK(tide_loop_set_watch(l, other));
    file_write(path, "return 4\n");
    ASSERT_EQ(tide_loop_poll(l, 200), 0);
    snprintf(path, sizeof(path), "%s/other/x.lua", tmpdir);
    file_write(path, "return 5\n");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_CHANGE), TIDE_LOOP_CHANGE);
    poll_drain(l);

    /* A failed call leaves the watch in place. */
    ASSERT_EQ(tide_loop_set_watch(l, "/nonexistent/tide"), TIDE_ENOENT);
    file_write(path, "return 6\n");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_CHANGE), TIDE_LOOP_CHANGE);

    tide_loop_free(l);
    tmp_remove();
}

static tide_loop_t *
control_open(const char *path)
{
    tide_loop_t  *l = loop_open();
    char          err[256] = "x";

    ASSERT_OK(tide_loop_set_control(l, path, err, sizeof(err)));
    ASSERT_EQ(err[0], '\0');
    return l;
}

/* Sends 'cmd' from a child process, which exits 0 when the reply equals
 * 'want', 1 when it differs, 2 when the call failed. */
static pid_t
client_fork(const char *path, const char *cmd, const char *want)
{
    char    reply[256], err[256];
    size_t  len = sizeof(reply);
    pid_t   child;
    int     rc, fd;

    fflush(stdout);
    fflush(stderr);
    child = fork();
    ASSERT(child >= 0);
    if (child != 0) {
        return child;
    }
    /* Drop the copies of the parent's descriptors, among them earlier
     * clients' connections: while a copy is open, closing it in the
     * parent would not end that client's reply. (A real job execs its
     * children, and every descriptor of the loop is close-on-exec.) */
    for (fd = 3; fd < 1024; fd++) {
        (void) close(fd);
    }
    rc = tide_control_send(path, cmd, reply, &len, 10000, err, sizeof(err));
    if (rc != TIDE_OK) {
        fprintf(stderr, "child: %s (%d)\n", err, rc);
        _exit(2);
    }
    if (len != strlen(want) || memcmp(reply, want, len) != 0) {
        fprintf(stderr, "child: reply '%.*s'\n", (int) len, reply);
        _exit(1);
    }
    _exit(0);
}

static void
child_wait(pid_t child)
{
    int  status;

    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* Pops the next command and checks it against 'want'. */
static void
command_pop(tide_loop_t *l, const char *want)
{
    char    buf[64];
    size_t  len = sizeof(buf);

    ASSERT_OK(tide_loop_pop_command(l, buf, &len));
    ASSERT_EQ(len, strlen(want));
    ASSERT_OK(memcmp(buf, want, len));
}

static void
test_control_round_trip(void)
{
    struct stat   st;
    tide_loop_t  *l;
    char          path[128];
    pid_t         child;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);

    ASSERT_OK(lstat(path, &st));
    ASSERT(S_ISSOCK(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0600);

    child = client_fork(path, "reload", "ok: reloaded\n");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "reload");
    ASSERT_OK(tide_loop_push_reply(l, "ok: reloaded\n", 13));
    child_wait(child);

    /* Answered: no current client any more. */
    ASSERT_EQ(tide_loop_push_reply(l, "again", 5), TIDE_EINVAL);

    tide_loop_free(l);
    ASSERT_EQ(lstat(path, &st), -1);
    ASSERT_EQ(errno, ENOENT);
    tmp_remove();
}

static void
test_control_queues_clients(void)
{
    tide_loop_t  *l;
    char          path[128], buf[8];
    size_t        len;
    pid_t         a, b, c;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);

    /* One after the other, so that the order is known. */
    a = client_fork(path, "first", "A");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    b = client_fork(path, "second command", "B");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    c = client_fork(path, "", "");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);

    /* ENOBUFS reports the size and leaves the command queued. */
    len = 0;
    ASSERT_EQ(tide_loop_pop_command(l, NULL, &len), TIDE_ENOBUFS);
    ASSERT_EQ(len, 5);
    len = 4;
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_ENOBUFS);
    ASSERT_EQ(len, 5);
    ASSERT_EQ(tide_loop_push_reply(l, "x", 1), TIDE_EINVAL);  /* none yet */
    command_pop(l, "first");
    ASSERT_OK(tide_loop_push_reply(l, "A", 1));
    child_wait(a);

    command_pop(l, "second command");
    ASSERT_OK(tide_loop_push_reply(l, "B", 1));
    child_wait(b);

    /* An empty line is a command too. Taking the next command without
     * answering disconnects the current client: it gets an empty reply. */
    command_pop(l, "");
    len = sizeof(buf);
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_EAGAIN);
    ASSERT_EQ(len, 0);
    ASSERT_OK(tide_loop_push_reply(l, NULL, 0));
    child_wait(c);

    tide_loop_free(l);
    tmp_remove();
}

static void
test_control_rejects_bad_args(void)
{
    tide_loop_t  *l = loop_open();
    char          path[256], err[256], buf[8];
    size_t        len;

    tmp_make();
    ASSERT_EQ(tide_loop_set_control(NULL, "/tmp/x.sock", err, sizeof(err)),
              TIDE_EINVAL);
    ASSERT(err[0] != '\0');
    ASSERT_EQ(tide_loop_set_control(l, NULL, err, sizeof(err)),
              TIDE_EINVAL);
    ASSERT_EQ(tide_loop_set_control(l, "", NULL, 0), TIDE_EINVAL);
    memset(path, 'a', 200);
    path[0] = '/';
    path[200] = '\0';
    ASSERT_EQ(tide_loop_set_control(l, path, err, sizeof(err)),
              TIDE_EINVAL);
    ASSERT(strstr(err, "too long") != NULL);

    /* A file that is not a socket is never removed. */
    snprintf(path, sizeof(path), "%s/plain", tmpdir);
    file_write(path, "keep");
    ASSERT_EQ(tide_loop_set_control(l, path, err, sizeof(err)), TIDE_EIO);
    ASSERT(strstr(err, "not a socket") != NULL);
    ASSERT_OK(access(path, F_OK));

    snprintf(path, sizeof(path), "%s/missing/control.sock", tmpdir);
    ASSERT_EQ(tide_loop_set_control(l, path, err, sizeof(err)), TIDE_EIO);

    /* One socket per loop. */
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    ASSERT_OK(tide_loop_set_control(l, path, err, sizeof(err)));
    ASSERT_EQ(tide_loop_set_control(l, path, err, sizeof(err)),
              TIDE_EINVAL);
    ASSERT(strstr(err, "already") != NULL);

    len = sizeof(buf);
    ASSERT_EQ(tide_loop_pop_command(NULL, buf, &len), TIDE_EINVAL);
    ASSERT_EQ(len, 0);
    ASSERT_EQ(tide_loop_pop_command(l, buf, NULL), TIDE_EINVAL);
    len = 4;
    ASSERT_EQ(tide_loop_pop_command(l, NULL, &len), TIDE_EINVAL);
    len = sizeof(buf);
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_EAGAIN);
    ASSERT_EQ(tide_loop_push_reply(NULL, "x", 1), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_push_reply(l, "x", 1), TIDE_EINVAL);

    tide_loop_free(l);
    ASSERT_EQ(access(path, F_OK), -1);
    tmp_remove();
}

/* Makes a socket file nobody listens on: what a job that died leaves. */
static void
stale_make(const char *path)
{
    struct sockaddr_un  sa;
    int                 fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ASSERT(fd >= 0);
    ASSERT_OK(bind(fd, (struct sockaddr *) &sa, sizeof(sa)));
    ASSERT_OK(close(fd));
}

static void
test_control_replaces_a_stale_socket(void)
{
    struct stat   st;
    tide_loop_t  *l, *other;
    char          path[128], err[256];
    pid_t         child;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    stale_make(path);
    ASSERT_OK(lstat(path, &st));
    ASSERT(S_ISSOCK(st.st_mode));

    l = control_open(path);
    child = client_fork(path, "ping", "pong");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "ping");
    ASSERT_OK(tide_loop_push_reply(l, "pong", 4));
    child_wait(child);

    /* A live one is left alone. */
    other = loop_open();
    ASSERT_EQ(tide_loop_set_control(other, path, err, sizeof(err)),
              TIDE_EBUSY);
    ASSERT(strstr(err, "another process serves ") != NULL);
    ASSERT(strstr(err, path) != NULL);
    tide_loop_free(other);
    ASSERT_OK(access(path, F_OK));

    /* ... and still serves. */
    child = client_fork(path, "ping", "pong");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "ping");
    ASSERT_OK(tide_loop_push_reply(l, "pong", 4));
    child_wait(child);

    /* A file put in our place is not removed by free. */
    ASSERT_OK(unlink(path));
    stale_make(path);
    tide_loop_free(l);
    ASSERT_OK(access(path, F_OK));
    tmp_remove();
}

/* Connects a raw client without waiting for the job to accept it. */
static int
client_connect(const char *path)
{
    struct sockaddr_un  sa;
    int                 fd;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    strcpy(sa.sun_path, path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0);
    ASSERT(fd >= 0);
    ASSERT_OK(connect(fd, (struct sockaddr *) &sa, sizeof(sa)));
    return fd;
}

/* A raw client that connects, sends 'len' bytes and disconnects. */
static void
client_raw(const char *path, const char *data, size_t len)
{
    int  fd = client_connect(path);

    if (len > 0) {
        ASSERT_EQ(send(fd, data, len, MSG_NOSIGNAL), len);
    }
    ASSERT_OK(close(fd));
}

static void
test_control_drops_early_clients(void)
{
    static char   big[5000];
    tide_loop_t  *l;
    char          path[128], buf[8];
    size_t        len;
    int           i;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);

    client_raw(path, "", 0);
    client_raw(path, "half a line", 11);
    memset(big, 'x', sizeof(big));
    client_raw(path, big, sizeof(big));       /* no '\n' within 4 KiB */
    for (i = 0; i < 5; i++) {
        ASSERT_EQ(tide_loop_poll(l, 20), 0);
    }
    len = sizeof(buf);
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_EAGAIN);

    /* A client that leaves after a full line still counts; answering it
     * does not raise SIGPIPE. */
    client_raw(path, "stop\n", 5);
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "stop");
    ASSERT_OK(tide_loop_push_reply(l, "bye", 3));

    /* Data after the '\n' is ignored. */
    client_raw(path, "one\ntwo\n", 8);
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "one");
    len = sizeof(buf);
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_EAGAIN);

    /* Free with a current client and queued ones. */
    client_raw(path, "q1\n", 3);
    client_raw(path, "q2\n", 3);
    (void) poll_for(l, TIDE_LOOP_COMMAND);
    (void) tide_loop_poll(l, 50);
    tide_loop_free(l);
    tmp_remove();
}

static void
test_control_send_errors(void)
{
    tide_loop_t  *l;
    char          path[128], err[256], reply[16];
    size_t        len;
    pid_t         child;
    int           status;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);

    /* Nobody there. */
    len = sizeof(reply);
    ASSERT_EQ(tide_control_send(path, "reload", reply, &len, 1000, err,
                                sizeof(err)), TIDE_ENOENT);
    ASSERT_EQ(len, 0);
    ASSERT(strstr(err, "no job is listening on ") != NULL);
    ASSERT(strstr(err, "(is it running?)") != NULL);

    /* A socket file left by a dead job. */
    stale_make(path);
    len = sizeof(reply);
    ASSERT_EQ(tide_control_send(path, "reload", reply, &len, 1000, err,
                                sizeof(err)), TIDE_ENOENT);
    ASSERT(strstr(err, "no job is listening on ") != NULL);
    ASSERT_OK(unlink(path));

    /* Bad arguments. */
    len = sizeof(reply);
    ASSERT_EQ(tide_control_send(NULL, "x", reply, &len, 10, err,
                                sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide_control_send("", "x", reply, &len, 10, NULL, 0),
              TIDE_EINVAL);
    ASSERT_EQ(tide_control_send(path, NULL, reply, &len, 10, err,
                                sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide_control_send(path, "a\nb", reply, &len, 10, err,
                                sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide_control_send(path, "x", reply, NULL, 10, err,
                                sizeof(err)), TIDE_EINVAL);
    len = sizeof(reply);
    ASSERT_EQ(tide_control_send(path, "x", NULL, &len, 10, err,
                                sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(len, 0);
    len = sizeof(reply);
    ASSERT_EQ(tide_control_send(path, "x", reply, &len, -1, err,
                                sizeof(err)), TIDE_EINVAL);
    {
        /* One byte over the longest command. */
        static char  huge[TIDE_CONTROL_LINE_MAX + 2];

        memset(huge, 'x', sizeof(huge) - 1);
        len = sizeof(reply);
        ASSERT_EQ(tide_control_send(path, huge, reply, &len, 10, err,
                                    sizeof(err)), TIDE_EINVAL);
        ASSERT(strstr(err, "at most 1048576 bytes") != NULL);
    }

    /* A live job that does not answer in time: this process never runs
     * its loop, yet the kernel accepts the connection and the line. */
    l = control_open(path);
    len = sizeof(reply);
    ASSERT_EQ(tide_control_send(path, "reload", reply, &len, 100, err,
                                sizeof(err)), TIDE_EAGAIN);
    ASSERT_EQ(len, 0);
    ASSERT(strstr(err, "within 100 ms") != NULL);

    /* A socket of another user. As root the child becomes 'nobody';
     * otherwise the socket's mode keeps us out the same way. */
    ASSERT_OK(chmod(tmpdir, 0755));
    if (geteuid() != 0) {
        ASSERT_OK(chmod(path, 0));
    }
    fflush(stdout);
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        if (geteuid() == 0 && setuid(65534) != 0) {
            _exit(3);
        }
        len = sizeof(reply);
        if (tide_control_send(path, "reload", reply, &len, 1000, err,
                              sizeof(err)) != TIDE_EIO) {
            _exit(1);
        }
        _exit(strstr(err, "permission denied on ") != NULL
              && strstr(err, "the job runs as another user") != NULL
              ? 0 : 2);
    }
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    tide_loop_free(l);
    tmp_remove();
}

/* A reply longer than the buffer is cut to it. */
static void
test_control_send_truncates(void)
{
    tide_loop_t  *l;
    char          path[128], err[256], reply[4];
    size_t        len;
    pid_t         child;
    int           status;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);
    fflush(stdout);
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        len = 3;
        if (tide_control_send(path, "status", reply, &len, 10000, err,
                              sizeof(err)) != TIDE_OK) {
            _exit(1);
        }
        _exit(len == 3 && memcmp(reply, "hel", 3) == 0 ? 0 : 2);
    }
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "status");
    ASSERT_OK(tide_loop_push_reply(l, "hello, world", 12));
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    tide_loop_free(l);
    tmp_remove();
}

/* A client of another uid is refused at accept, root or not: the mode
 * of the socket is opened up so that only the uid check keeps it out. It
 * gets one line, and nothing it sends is queued. Needs root, to become
 * 'nobody' (CI runs as root). */
static void
test_control_refuses_other_uid(void)
{
    static const char  want[] = "error: permission denied: this job runs "
                                "as uid 0 (root); connect as that user\n";
    tide_loop_t       *l;
    char               path[128], err[256], reply[256], buf[64];
    size_t             len;
    pid_t              child;
    int                status, i;

    if (geteuid() != 0) {
        printf("# skip test_control_refuses_other_uid: needs root\n");
        return;
    }
    tmp_make();
    ASSERT_OK(chmod(tmpdir, 0755));
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);
    ASSERT_OK(chmod(path, 0666));
    fflush(stdout);
    fflush(stderr);
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        if (setgid(65534) != 0 || setuid(65534) != 0) {
            _exit(3);
        }
        len = sizeof(reply);
        if (tide_control_send(path, "reload", reply, &len, 10000, err,
                              sizeof(err)) != TIDE_OK) {
            fprintf(stderr, "child: %s\n", err);
            _exit(1);
        }
        if (len != strlen(want) || memcmp(reply, want, len) != 0) {
            fprintf(stderr, "child: reply '%.*s'\n", (int) len, reply);
            _exit(2);
        }
        _exit(0);
    }
    /* Run the loop until the child is done, then a little more. */
    while (waitpid(child, &status, WNOHANG) == 0) {
        ASSERT_EQ(tide_loop_poll(l, 20) & TIDE_LOOP_COMMAND, 0);
    }
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    for (i = 0; i < 5; i++) {
        ASSERT_EQ(tide_loop_poll(l, 20) & TIDE_LOOP_COMMAND, 0);
    }
    len = sizeof(buf);
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_EAGAIN);

    /* Our own user is still served. */
    child = client_fork(path, "reload", "ok\n");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "reload");
    ASSERT_OK(tide_loop_push_reply(l, "ok\n", 3));
    child_wait(child);
    tide_loop_free(l);
    tmp_remove();
}

/* ---- Control clients that never finish a line ---------------------- */

/* Runs loop 'l' until client 'fd' sees end-of-file (hang guard: 30 s),
 * dropping any COMMAND events; returns what the client read. */
static size_t
client_read_to_eof(tide_loop_t *l, int fd, char *buf, size_t cap)
{
    int64_t  deadline = mono() + 30000;
    size_t   got = 0;
    ssize_t  n;

    for (;;) {
        ASSERT(tide_loop_poll(l, 20) >= 0);
        n = recv(fd, buf + got, cap - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t) n;
            ASSERT(got < cap);
            continue;
        }
        if (n == 0) {
            break;
        }
        ASSERT(errno == EAGAIN || errno == EWOULDBLOCK);
        ASSERT(mono() < deadline);
    }
    buf[got] = '\0';
    return got;
}

/* Whether client 'fd' is still connected and has nothing to read. */
static int
client_waiting(int fd)
{
    char     c;
    ssize_t  n = recv(fd, &c, 1, MSG_DONTWAIT);

    return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

/* Waits for raw client 'fd''s command "reload", answers "ok\n", checks
 * that the client reads just that, and closes 'fd'. */
static void
reload_answer(tide_loop_t *l, int fd)
{
    char  buf[64];

    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "reload");
    ASSERT_OK(tide_loop_push_reply(l, "ok\n", 3));
    ASSERT_EQ(client_read_to_eof(l, fd, buf, sizeof(buf)), 3);
    ASSERT_OK(strcmp(buf, "ok\n"));
    ASSERT_OK(close(fd));
}

/* ---- Long commands and replies --------------------------------------- */

/* A command of 900 KiB arrives whole, through tide_control_send, and a
 * reply of 3 MiB goes back whole: the reply's write goes on as long as
 * the client reads. */
static void
test_control_long_command_and_reply(void)
{
    static const size_t  cmd_len = 900 * 1024, reply_len = 3 * 1024 * 1024;
    tide_loop_t         *l;
    char                 path[128], err[256], *cmd, *buf, *reply;
    size_t               len, i;
    pid_t                child;
    int                  status;

    cmd = malloc(cmd_len + 1);
    reply = malloc(reply_len);
    buf = malloc(cmd_len);
    ASSERT(cmd != NULL && reply != NULL && buf != NULL);
    for (i = 0; i < cmd_len; i++) {
        cmd[i] = (char) ('a' + i % 26);
    }
    cmd[cmd_len] = '\0';
    for (i = 0; i < reply_len; i++) {
        reply[i] = (char) (i % 251);
    }
    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);
    fflush(stdout);
    fflush(stderr);
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        /* One byte more than the reply: a cut would show. */
        char  *got = malloc(reply_len + 1);

        len = reply_len + 1;
        if (got == NULL || tide_control_send(path, cmd, got, &len, 30000,
                                             err, sizeof(err)) != TIDE_OK) {
            fprintf(stderr, "child: %s\n", err);
            _exit(1);
        }
        _exit(len == reply_len && memcmp(got, reply, len) == 0 ? 0 : 2);
    }
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    len = 4096;
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_ENOBUFS);
    ASSERT_EQ(len, cmd_len);
    ASSERT_OK(tide_loop_pop_command(l, buf, &len));
    ASSERT_EQ(len, cmd_len);
    ASSERT_OK(memcmp(buf, cmd, cmd_len));
    ASSERT_OK(tide_loop_push_reply(l, reply, reply_len));
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);

    /* A client that reads slowly, 64 KiB every 20 ms, gets it whole too:
     * only a client that reads nothing for a second is cut. */
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        struct timespec  pause = { 0, 20 * 1000000 };
        char             chunk[65536];
        size_t           got = 0;
        ssize_t          n;
        int              fd = client_connect(path);

        (void) fcntl(fd, F_SETFL, 0);           /* blocking reads */
        if (send(fd, "slow\n", 5, MSG_NOSIGNAL) != 5) {
            _exit(1);
        }
        for (;;) {
            nanosleep(&pause, NULL);
            n = recv(fd, chunk, sizeof(chunk), 0);
            if (n <= 0) {
                break;
            }
            if (memcmp(chunk, reply + got, (size_t) n) != 0) {
                _exit(2);
            }
            got += (size_t) n;
        }
        _exit(n == 0 && got == reply_len ? 0 : 3);
    }
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "slow");
    ASSERT_OK(tide_loop_push_reply(l, reply, reply_len));
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
    tide_loop_free(l);
    tmp_remove();
    free(cmd);
    free(reply);
    free(buf);
}

/* Sends 'len' bytes on non-blocking client 'fd' while running loop 'l'
 * (which reads them); stops early when the loop closes the client. */
static void
client_send_all(tide_loop_t *l, int fd, const char *data, size_t len)
{
    int64_t  deadline = mono() + 30000;
    ssize_t  n;

    while (len > 0) {
        n = send(fd, data, len, MSG_NOSIGNAL);
        if (n > 0) {
            data += n;
            len -= (size_t) n;
            continue;
        }
        if (n < 0 && (errno == EPIPE || errno == ECONNRESET)) {
            return;
        }
        ASSERT(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
        ASSERT(tide_loop_poll(l, 1) >= 0);
        ASSERT(mono() < deadline);
    }
}

/* A command of TIDE_CONTROL_LINE_MAX bytes is taken; one byte more gets
 * one error line, and nothing is queued. */
static void
test_control_line_max(void)
{
    static const char  want[] = "error: command longer than 1048576 bytes\n";
    tide_loop_t       *l;
    char               path[128], *line, *buf, got[256];
    size_t             len;
    int                fd;

    line = malloc(TIDE_CONTROL_LINE_MAX + 2);
    buf = malloc(TIDE_CONTROL_LINE_MAX);
    ASSERT(line != NULL && buf != NULL);
    memset(line, 'x', TIDE_CONTROL_LINE_MAX + 1);
    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);

    /* The longest: taken whole. */
    line[TIDE_CONTROL_LINE_MAX] = '\n';
    fd = client_connect(path);
    client_send_all(l, fd, line, TIDE_CONTROL_LINE_MAX + 1);
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    len = TIDE_CONTROL_LINE_MAX;
    ASSERT_OK(tide_loop_pop_command(l, buf, &len));
    ASSERT_EQ(len, TIDE_CONTROL_LINE_MAX);
    ASSERT_OK(memcmp(buf, line, len));
    ASSERT_OK(tide_loop_push_reply(l, "ok\n", 3));
    ASSERT_EQ(client_read_to_eof(l, fd, got, sizeof(got)), 3);
    ASSERT_OK(close(fd));

    /* One byte more. */
    line[TIDE_CONTROL_LINE_MAX] = 'x';
    line[TIDE_CONTROL_LINE_MAX + 1] = '\n';
    fd = client_connect(path);
    client_send_all(l, fd, line, TIDE_CONTROL_LINE_MAX + 2);
    client_read_to_eof(l, fd, got, sizeof(got));
    ASSERT_OK(strcmp(got, want));
    ASSERT_OK(close(fd));
    len = TIDE_CONTROL_LINE_MAX;
    ASSERT_EQ(tide_loop_pop_command(l, buf, &len), TIDE_EAGAIN);

    tide_loop_free(l);
    tmp_remove();
    free(line);
    free(buf);
}

/* A client that sends its line slowly, in parts less than 5 s apart but
 * more than 5 s in all, is not cut: each byte restarts its deadline. */
static void
test_control_slow_line(void)
{
    static const char  *parts[] = { "rel", "oa", "d\n" };
    tide_loop_t        *l;
    char                path[128];
    int64_t             until;
    int                 fd, i;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);
    fd = client_connect(path);
    for (i = 0; i < 3; i++) {
        if (i > 0) {
            until = mono() + 3000;
            while (mono() < until) {
                ASSERT_EQ(tide_loop_poll(l, 50), 0);
            }
            ASSERT(client_waiting(fd));
        }
        ASSERT_EQ(send(fd, parts[i], strlen(parts[i]), MSG_NOSIGNAL),
                  strlen(parts[i]));
    }
    reload_answer(l, fd);
    tide_loop_free(l);
    tmp_remove();
}

/* Beyond 16 open clients, a new one gets one line and is closed; the 16
 * still count until they go, then a client is served again. */
static void
test_control_caps_clients(void)
{
    tide_loop_t  *l;
    char          path[128], buf[256];
    int           fds[16], extra, i;
    pid_t         child;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);
    for (i = 0; i < 16; i++) {
        fds[i] = client_connect(path);
        ASSERT_EQ(send(fds[i], "half", 4, MSG_NOSIGNAL), 4);
    }
    for (i = 0; i < 5; i++) {
        ASSERT_EQ(tide_loop_poll(l, 20), 0);
    }

    extra = client_connect(path);
    client_read_to_eof(l, extra, buf, sizeof(buf));
    ASSERT_OK(strcmp(buf, "busy: too many control clients\n"));
    ASSERT_OK(close(extra));
    for (i = 0; i < 16; i++) {
        ASSERT(client_waiting(fds[i]));
    }

    /* One leaves: room for one more, served as usual. */
    ASSERT_OK(close(fds[0]));
    child = client_fork(path, "reload", "ok\n");
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);
    command_pop(l, "reload");
    ASSERT_OK(tide_loop_push_reply(l, "ok\n", 3));
    child_wait(child);

    for (i = 1; i < 16; i++) {
        ASSERT_OK(close(fds[i]));
    }
    tide_loop_free(l);
    tmp_remove();
}

/* A client without a complete line is told so and closed after 5 s; a
 * client whose line is complete waits for its reply however long. */
static void
test_control_times_out_idle_clients(void)
{
    tide_loop_t  *l;
    char          path[128], buf[256];
    int           idle, silent, done;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    l = control_open(path);
    idle = client_connect(path);
    ASSERT_EQ(send(idle, "rel", 3, MSG_NOSIGNAL), 3);
    silent = client_connect(path);
    done = client_connect(path);
    ASSERT_EQ(send(done, "reload\n", 7, MSG_NOSIGNAL), 7);
    ASSERT_EQ(poll_for(l, TIDE_LOOP_COMMAND), TIDE_LOOP_COMMAND);

    client_read_to_eof(l, idle, buf, sizeof(buf));
    ASSERT(strncmp(buf, "timeout: ", 9) == 0);
    client_read_to_eof(l, silent, buf, sizeof(buf));
    ASSERT(strncmp(buf, "timeout: ", 9) == 0);
    ASSERT(client_waiting(done));

    command_pop(l, "reload");
    ASSERT_OK(tide_loop_push_reply(l, "ok\n", 3));
    ASSERT_EQ(client_read_to_eof(l, done, buf, sizeof(buf)), 3);
    ASSERT_OK(close(idle));
    ASSERT_OK(close(silent));
    ASSERT_OK(close(done));
    tide_loop_free(l);
    tmp_remove();
}

/* Counts the lines of file 'path' that contain 'text'. */
static int
file_count(const char *path, const char *text)
{
    char   line[1024];
    FILE  *f = fopen(path, "r");
    int    n = 0;

    ASSERT(f != NULL);
    while (fgets(line, sizeof(line), f) != NULL) {
        n += strstr(line, text) != NULL;
    }
    ASSERT_OK(fclose(f));
    return n;
}

/* With no descriptor left, accept fails: the loop says so once, with the
 * system's words, keeps polling, and serves the waiting client once
 * descriptors are back. */
static void
test_control_survives_emfile(void)
{
    struct rlimit   saved, low;
    tide_loop_t    *l;
    char            path[128], logpath[128];
    static int      fill[1024];
    int             fd, errfd, saved_err, nfill = 0, i;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    snprintf(logpath, sizeof(logpath), "%s/stderr", tmpdir);
    l = control_open(path);
    fd = client_connect(path);
    ASSERT_EQ(send(fd, "reload\n", 7, MSG_NOSIGNAL), 7);

    fflush(stderr);
    saved_err = dup(2);
    ASSERT(saved_err >= 0);
    errfd = open(logpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    ASSERT(errfd >= 0);
    ASSERT(dup2(errfd, 2) == 2);
    ASSERT_OK(close(errfd));

    /* Fill every descriptor below a limit just above the highest open
     * one (inherited ones may leave holes below it). */
    ASSERT_OK(getrlimit(RLIMIT_NOFILE, &saved));
    low = saved;
    low.rlim_cur = 0;
    for (i = 0; i < 1024; i++) {
        if (fcntl(i, F_GETFD) >= 0) {
            low.rlim_cur = (rlim_t) i + 1;
        }
    }
    low.rlim_cur += 8;
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &low));
    while ((i = dup(0)) >= 0) {
        ASSERT(nfill < 1024);
        fill[nfill++] = i;
    }
    ASSERT_EQ(errno, EMFILE);

    for (i = 0; i < 20; i++) {
        ASSERT_EQ(tide_loop_poll(l, 20), 0);
    }
    ASSERT(client_waiting(fd));

    while (nfill > 0) {
        ASSERT_OK(close(fill[--nfill]));
    }
    ASSERT_OK(setrlimit(RLIMIT_NOFILE, &saved));
    fflush(stderr);
    ASSERT(dup2(saved_err, 2) == 2);
    ASSERT_OK(close(saved_err));
    ASSERT_EQ(file_count(logpath, "Too many open files"), 1);

    reload_answer(l, fd);
    tide_loop_free(l);
    tmp_remove();
}

static void
test_many_loops_with_control(void)
{
    tide_loop_t  *l;
    char          path[128];
    int           i;

    tmp_make();
    snprintf(path, sizeof(path), "%s/control.sock", tmpdir);
    for (i = 0; i < 100; i++) {
        l = control_open(path);
        ASSERT_OK(tide_loop_set_watch(l, tmpdir));
        if (i % 3 == 0) {
            client_raw(path, "x\n", 2);
            ASSERT(tide_loop_poll(l, 1) >= 0);
        }
        tide_loop_free(l);
        ASSERT_EQ(access(path, F_OK), -1);
    }
    tmp_remove();
}

static void
test_clocks(void)
{
    struct timespec  pause = { 0, 20 * 1000000 };
    int64_t          m0, m1, real, now;

    m0 = mono();
    nanosleep(&pause, NULL);
    m1 = mono();
    ASSERT(m1 - m0 >= 19);
    ASSERT(m1 - m0 < 10000);

    real = tide_time_get(TIDE_TIME_REAL);
    now = (int64_t) time(NULL) * 1000;
    ASSERT(real > now - 2000 && real < now + 2000);

    ASSERT_EQ(tide_time_get(2), TIDE_EINVAL);
    ASSERT_EQ(tide_time_get(-1), TIDE_EINVAL);
}

int
main(void)
{
    RUN(test_new_and_free);
    RUN(test_new_rejects_null);
    RUN(test_new_fails_without_descriptors);
    RUN(test_poll_rejects_bad_args);
    RUN(test_poll_waits_for_the_timeout);
    RUN(test_raised_signals_become_events);
    RUN(test_every_loop_sees_a_signal);
    RUN(test_signal_ends_the_wait);
    RUN(test_many_loops);
    RUN(test_watch_rejects_bad_args);
    RUN(test_watch_raises_change);
    RUN(test_control_round_trip);
    RUN(test_control_queues_clients);
    RUN(test_control_rejects_bad_args);
    RUN(test_control_replaces_a_stale_socket);
    RUN(test_control_drops_early_clients);
    RUN(test_control_send_errors);
    RUN(test_control_send_truncates);
    RUN(test_control_refuses_other_uid);
    RUN(test_control_caps_clients);
    RUN(test_control_times_out_idle_clients);
    RUN(test_control_long_command_and_reply);
    RUN(test_control_line_max);
    RUN(test_control_slow_line);
    RUN(test_control_survives_emfile);
    RUN(test_many_loops_with_control);
    RUN(test_clocks);
    return 0;
}
