/*
 * Worker processes, channels, watch slots and the loop's descriptor and
 * child watches. The workers are this test program executed again by
 * tide_proc_spawn (o->path NULL, as 'tide run' does): main() sees
 * TIDE_WORKER=1, calls tide_proc_worker_init as the tide binary does,
 * and plays the role TEST_PROC_MODE names.
 */
#include "ctest.h"
#include "tide.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define MIB (1024 * 1024)

/* ---- the worker side ---------------------------------------------------- */

static void
w_send(tide_chan_t *c, const char *s)
{
    if (tide_chan_send(c, s, strlen(s), -1) != TIDE_OK) {
        _exit(90);
    }
}

/* Waits for the next frame; exits 0 when the supervisor closes. */
static void
w_recv(tide_chan_t *c, char **buf, size_t *len)
{
    int  rc;

    for (;;) {
        rc = tide_chan_recv(c, buf, len);
        if (rc == TIDE_OK) {
            return;
        }
        if (rc == TIDE_ECLOSED) {
            tide_chan_free(c);
            _exit(0);
        }
        if (rc != TIDE_EAGAIN) {
            _exit(91);
        }
        (void) tide_chan_wait(c, 1000);
    }
}

/* Sends every frame back; "exit:N" exits with N. */
static void
w_echo(tide_chan_t *c)
{
    char    *buf;
    size_t   len;

    for (;;) {
        w_recv(c, &buf, &len);
        if (len > 5 && memcmp(buf, "exit:", 5) == 0) {
            _exit(atoi(buf + 5));
        }
        if (tide_chan_send(c, buf, len, -1) != TIDE_OK) {
            _exit(92);
        }
    }
}

/* Reports what a worker sees of its set-up. */
static void
w_env(tide_chan_t *c)
{
    struct rlimit  rl;
    const char    *leak = getenv("TEST_LEAK_FD");
    char           msg[512];

    (void) getrlimit(RLIMIT_DATA, &rl);
    snprintf(msg, sizeof(msg), "worker=%s parent=%s max=%s foo=%s "
             "leak_open=%d cloexec3=%d data=%lld",
             getenv("TIDE_WORKER") ? getenv("TIDE_WORKER") : "-",
             getenv("TIDE_PARENT_PID") ? "set" : "-",
             getenv("TIDE_WORKER_MAX_DATA") ? "set" : "-",
             getenv("FOO") ? getenv("FOO") : "-",
             leak != NULL && fcntl(atoi(leak), F_GETFD) >= 0,
             (fcntl(3, F_GETFD) & FD_CLOEXEC) != 0,
             rl.rlim_cur == RLIM_INFINITY ? -1LL : (long long) rl.rlim_cur);
    w_send(c, msg);
    w_echo(c);
}

/* Writes a watch slot and reads one the supervisor wrote. */
static void
w_shm(tide_chan_t *c)
{
    tide_watch_t  *slots;
    size_t         size;
    void          *ptr;
    char          *buf, msg[64];
    size_t         len;

    if (tide_shm_map(TIDE_PROC_SHM_FD, &size, &ptr) != TIDE_OK) {
        w_send(c, "no region");
        w_echo(c);
    }
    slots = ptr;
    slots[0].task = 3;
    slots[0].input = 1;
    slots[0].offset = 123456789012LL;
    slots[0].in_call = 1;
    memcpy(slots[0].version, "v42", 4);
    slots[0].seq = 7;
    w_recv(c, &buf, &len);              /* the supervisor wrote slot 1 */
    snprintf(msg, sizeof(msg), "size=%zu slot1.task=%d", size,
             (int) slots[1].task);
    tide_shm_free(ptr, size);
    w_send(c, msg);
    w_echo(c);
}

/* Sends 8 frames of 1 MiB at once on "go", then reads 8 of them. */
static void
w_blast(tide_chan_t *c)
{
    char    *buf, *big;
    size_t   len;
    int      i;

    w_recv(c, &buf, &len);
    big = malloc(MIB);
    if (big == NULL) {
        _exit(93);
    }
    memset(big, 'w', MIB);
    for (i = 0; i < 8; i++) {
        if (tide_chan_send(c, big, MIB, -1) != TIDE_OK) {
            _exit(94);
        }
    }
    free(big);
    for (i = 0; i < 8; i++) {
        w_recv(c, &buf, &len);
        if (len != MIB || buf[0] != 's' || buf[MIB - 1] != 's') {
            _exit(95);
        }
    }
    w_send(c, "got 8");
    w_echo(c);
}

static int
worker_main(void)
{
    const char   *mode = getenv("TEST_PROC_MODE");
    tide_chan_t  *c;
    char          err[256];

    if (tide_proc_worker_init(err, sizeof(err)) != TIDE_OK) {
        fprintf(stderr, "worker: %s\n", err);
        _exit(80);
    }
    if (mode != NULL && strcmp(mode, "sleep") == 0) {
        for (;;) {
            pause();
        }
    }
    if (tide_chan_open(&c, TIDE_PROC_CHAN_FD) != TIDE_OK) {
        _exit(81);
    }
    if (mode != NULL && strcmp(mode, "env") == 0) {
        w_env(c);
    } else if (mode != NULL && strcmp(mode, "shm") == 0) {
        w_shm(c);
    } else if (mode != NULL && strcmp(mode, "blast") == 0) {
        w_blast(c);
    }
    w_echo(c);
    return 0;
}

/* ---- the supervisor side ------------------------------------------------ */

static tide_proc_t *
spawn(const char *mode, int64_t shm_bytes, const char *const *extra)
{
    const char       *env[8];
    char              m[64];
    tide_proc_opts_t  o;
    tide_proc_t      *p;
    char              err[256];
    int               i = 0;

    snprintf(m, sizeof(m), "TEST_PROC_MODE=%s", mode);
    env[i++] = m;
    while (extra != NULL && *extra != NULL && i < 7) {
        env[i++] = *extra++;
    }
    env[i] = NULL;
    memset(&o, 0, sizeof(o));
    o.title = "tide: test worker 1";
    o.env = env;
    o.shm_bytes = shm_bytes;
    if (tide_proc_spawn(&p, &o, err, sizeof(err)) != TIDE_OK) {
        fprintf(stderr, "spawn: %s\n", err);
        ASSERT(0);
    }
    return p;
}

/* Receives one frame, waiting for it. */
static void
recv_one(tide_chan_t *c, char **buf, size_t *len)
{
    int  rc;

    for (;;) {
        rc = tide_chan_recv(c, buf, len);
        if (rc != TIDE_EAGAIN) {
            ASSERT_OK(rc);
            return;
        }
        ASSERT_OK(tide_chan_wait(c, 10000) == TIDE_OK ? 0 : -1);
    }
}

static int
reap_wait(tide_proc_t *p)
{
    int  st, rc, i;

    for (i = 0; i < 10000; i++) {
        rc = tide_proc_reap(p, &st);
        if (rc == TIDE_OK) {
            return st;
        }
        ASSERT_EQ(rc, TIDE_EAGAIN);
        usleep(1000);
    }
    ASSERT(0);
    return 0;
}

static void
test_spawn_errors(void)
{
    tide_proc_opts_t  o;
    tide_proc_t      *p = (tide_proc_t *) 1;
    char              err[256];

    memset(&o, 0, sizeof(o));
    ASSERT_EQ(tide_proc_spawn(&p, &o, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(p == NULL);
    ASSERT(strstr(err, "title") != NULL);
    ASSERT_EQ(tide_proc_spawn(NULL, &o, err, sizeof(err)), TIDE_EINVAL);
    o.title = "x";
    o.shm_bytes = -1;
    ASSERT_EQ(tide_proc_spawn(&p, &o, err, sizeof(err)), TIDE_EINVAL);
    o.shm_bytes = 0;
    o.path = "/nonexistent/tide";
    p = (tide_proc_t *) 1;
    ASSERT_EQ(tide_proc_spawn(&p, &o, err, sizeof(err)), TIDE_ENOENT);
    ASSERT(p == NULL);
    ASSERT(strstr(err, "/nonexistent/tide") != NULL);
    /* No child was left behind. */
    ASSERT_EQ(waitpid(-1, NULL, WNOHANG), -1);
    ASSERT_EQ(errno, ECHILD);
    tide_proc_free(NULL);
    tide_chan_free(NULL);
    tide_shm_free(NULL, 0);
}

static void
test_echo_frames(void)
{
    tide_proc_t  *p = spawn("echo", 0, NULL);
    tide_chan_t  *c = tide_proc_chan(p);
    char         *buf, *big;
    size_t        len;
    int           i;

    ASSERT(tide_proc_pid(p) > 0);
    ASSERT_EQ(tide_proc_fd(p), tide_chan_fd(c));
    ASSERT(tide_proc_shm(p) == NULL);
    ASSERT_EQ(tide_chan_recv(c, &buf, &len), TIDE_EAGAIN);
    ASSERT(buf == NULL);
    ASSERT_EQ(len, 0);

    ASSERT_OK(tide_chan_send(c, "hello", 5, -1));
    ASSERT_OK(tide_chan_send(c, "", 0, -1));
    ASSERT_OK(tide_chan_send(c, "a\0b", 3, -1));
    recv_one(c, &buf, &len);
    ASSERT_EQ(len, 5);
    ASSERT(memcmp(buf, "hello", 5) == 0);
    recv_one(c, &buf, &len);
    ASSERT_EQ(len, 0);
    recv_one(c, &buf, &len);
    ASSERT_EQ(len, 3);
    ASSERT(memcmp(buf, "a\0b", 3) == 0);

    /* 1 MiB frames both ways: the kernel passes them in pieces. */
    big = malloc(MIB);
    ASSERT(big != NULL);
    for (i = 0; i < MIB; i++) {
        big[i] = (char) (i * 7);
    }
    for (i = 0; i < 3; i++) {
        ASSERT_OK(tide_chan_send(c, big, MIB, -1));
    }
    for (i = 0; i < 3; i++) {
        recv_one(c, &buf, &len);
        ASSERT_EQ(len, MIB);
        ASSERT(memcmp(buf, big, MIB) == 0);
    }
    ASSERT_EQ(tide_chan_send(c, big, (size_t) TIDE_CHAN_FRAME_MAX + 1, -1),
              TIDE_EINVAL);
    ASSERT_EQ(tide_chan_send(c, NULL, 1, -1), TIDE_EINVAL);
    free(big);

    ASSERT(tide_proc_rss(p) > 0);
    ASSERT_OK(tide_chan_send(c, "exit:7", 6, -1));
    ASSERT_EQ(reap_wait(p), 7);
    ASSERT_EQ(tide_chan_recv(c, &buf, &len), TIDE_ECLOSED);
    ASSERT_EQ(tide_chan_send(c, "x", 1, -1), TIDE_ECLOSED);
    ASSERT_EQ(tide_proc_kill(p, SIGTERM), TIDE_ENOENT);
    ASSERT_EQ(tide_proc_rss(p), TIDE_ENOENT);
    tide_proc_free(p);
}

static void
test_signal_status(void)
{
    tide_proc_t  *p = spawn("echo", 0, NULL);
    int           st = 99;

    ASSERT_EQ(tide_proc_reap(p, &st), TIDE_EAGAIN);
    ASSERT_EQ(st, 0);
    ASSERT_EQ(tide_proc_kill(p, -1), TIDE_EINVAL);
    ASSERT_OK(tide_proc_kill(p, SIGKILL));
    ASSERT_EQ(reap_wait(p), -SIGKILL);
    ASSERT_OK(tide_proc_reap(p, &st));         /* the same, again */
    ASSERT_EQ(st, -SIGKILL);
    tide_proc_free(p);
}

/* The worker is named after the program (not "exe"), its cmdline is the
 * title, and it sees its set-up. */
static void
test_names_env_fds(void)
{
    const char   *extra[3];
    char          leak[32], path[64], text[256], *buf;
    tide_proc_t  *p;
    size_t        len;
    ssize_t       n;
    int           fd, lfd;

    /* No O_CLOEXEC: a leak, unless spawn closes it. Above 4, which the
     * worker's channel and region take. */
    fd = open("/dev/null", O_RDONLY);
    ASSERT(fd >= 0);
    lfd = fcntl(fd, F_DUPFD, 20);
    ASSERT(lfd >= 20);
    close(fd);
    snprintf(leak, sizeof(leak), "TEST_LEAK_FD=%d", lfd);
    extra[0] = leak;
    extra[1] = "FOO=bar";
    extra[2] = NULL;
    p = spawn("env", 0, extra);

    snprintf(path, sizeof(path), "/proc/%d/cmdline", tide_proc_pid(p));
    fd = open(path, O_RDONLY);
    ASSERT(fd >= 0);
    n = read(fd, text, sizeof(text));
    close(fd);
    ASSERT_EQ(n, (ssize_t) strlen("tide: test worker 1") + 1);
    ASSERT(strcmp(text, "tide: test worker 1") == 0);

    recv_one(tide_proc_chan(p), &buf, &len);
    ASSERT(len < sizeof(text));
    memcpy(text, buf, len);
    text[len] = '\0';
    if (strcmp(text, "worker=- parent=- max=- foo=bar leak_open=0 "
               "cloexec3=1 data=-1") != 0) {
        fprintf(stderr, "worker says: %s\n", text);
    }
    ASSERT(strcmp(text, "worker=- parent=- max=- foo=bar leak_open=0 "
                  "cloexec3=1 data=-1") == 0);

    /* comm: the basename of the resolved program, as exec set it. */
    snprintf(path, sizeof(path), "/proc/%d/comm", tide_proc_pid(p));
    fd = open(path, O_RDONLY);
    ASSERT(fd >= 0);
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    ASSERT(n > 0);
    text[n] = '\0';
    ASSERT(strncmp(text, "test_proc", 9) == 0);

    ASSERT_OK(tide_proc_kill(p, SIGTERM));
    ASSERT_EQ(reap_wait(p), -SIGTERM);
    tide_proc_free(p);
    close(lfd);
}

static void
test_max_data(void)
{
    tide_proc_opts_t  o;
    tide_proc_t      *p;
    const char       *env[] = { "TEST_PROC_MODE=env", NULL };
    char              err[256], text[256], *buf;
    size_t            len;

    memset(&o, 0, sizeof(o));
    o.title = "tide: test worker 2";
    o.env = env;
    o.max_data_bytes = 1LL << 50;
    ASSERT_OK(tide_proc_spawn(&p, &o, err, sizeof(err)));
    recv_one(tide_proc_chan(p), &buf, &len);
    memcpy(text, buf, len);
    text[len] = '\0';
    ASSERT(strstr(text, "max=- ") != NULL);
#if defined(__SANITIZE_ADDRESS__)
    /* The sanitizer build sets no limit (tide_proc_worker_init). */
    ASSERT(strstr(text, "data=-1") != NULL);
#else
    ASSERT(strstr(text, "data=1125899906842624") != NULL);
#endif
    ASSERT_OK(tide_chan_send(tide_proc_chan(p), "exit:0", 6, -1));
    ASSERT_EQ(reap_wait(p), 0);
    tide_proc_free(p);
}

static void
test_shm(void)
{
    tide_proc_t   *p = spawn("shm", 4096, NULL);
    tide_watch_t  *w = tide_proc_shm(p);
    char          *buf, text[64];
    size_t         len;

    ASSERT_EQ(sizeof(tide_watch_t), 64);
    ASSERT(w != NULL);
    w[1].task = 11;
    /* The worker writes slot 0, then waits for our frame. */
    while (w[0].seq != 7) {
        usleep(1000);
    }
    ASSERT_EQ(w[0].task, 3);
    ASSERT_EQ(w[0].input, 1);
    ASSERT_EQ(w[0].offset, 123456789012LL);
    ASSERT_EQ(w[0].in_call, 1);
    ASSERT(strcmp(w[0].version, "v42") == 0);
    ASSERT_OK(tide_chan_send(tide_proc_chan(p), "go", 2, -1));
    recv_one(tide_proc_chan(p), &buf, &len);
    memcpy(text, buf, len);
    text[len] = '\0';
    ASSERT(strcmp(text, "size=4096 slot1.task=11") == 0);
    ASSERT_OK(tide_proc_kill(p, SIGKILL));
    ASSERT_EQ(reap_wait(p), -SIGKILL);
    tide_proc_free(p);
}

static void
test_shm_map_errors(void)
{
    size_t   size = 1;
    void    *ptr = (void *) 1;
    int      fd;

    ASSERT_EQ(tide_shm_map(-1, &size, &ptr), TIDE_ENOENT);
    ASSERT_EQ(size, 0);
    ASSERT(ptr == NULL);
    fd = open("/dev/null", O_RDONLY);
    ASSERT_EQ(tide_shm_map(fd, &size, &ptr), TIDE_ENOENT);
    close(fd);
    ASSERT_EQ(tide_shm_map(0, NULL, &ptr), TIDE_EINVAL);
}

/* Both sides send 8 MiB at once: each send reads while it waits, so
 * neither blocks the other for good. */
static void
test_both_ways_at_once(void)
{
    tide_proc_t  *p = spawn("blast", 0, NULL);
    tide_chan_t  *c = tide_proc_chan(p);
    char         *big, *buf;
    size_t        len;
    int           i;

    big = malloc(MIB);
    ASSERT(big != NULL);
    memset(big, 's', MIB);
    ASSERT_OK(tide_chan_send(c, "go", 2, -1));
    for (i = 0; i < 8; i++) {
        ASSERT_OK(tide_chan_send(c, big, MIB, -1));
    }
    for (i = 0; i < 8; i++) {
        recv_one(c, &buf, &len);
        ASSERT_EQ(len, MIB);
        ASSERT(buf[0] == 'w' && buf[MIB - 1] == 'w');
    }
    recv_one(c, &buf, &len);
    ASSERT_EQ(len, 5);
    ASSERT(memcmp(buf, "got 8", 5) == 0);
    free(big);
    tide_proc_free(p);                   /* the worker sees the end */
}

/* A worker that does not read: sends queue after their timeout, flush
 * reports what is left, and the worker's death turns it into ECLOSED. */
static void
test_send_timeout(void)
{
    tide_proc_t  *p = spawn("sleep", 0, NULL);
    tide_chan_t  *c = tide_proc_chan(p);
    char         *big;
    int           rc, i;

    big = calloc(1, MIB);
    ASSERT(big != NULL);
    for (i = 0, rc = TIDE_OK; rc == TIDE_OK && i < 64; i++) {
        rc = tide_chan_send(c, big, MIB, 20);
    }
    ASSERT_EQ(rc, TIDE_EAGAIN);
    ASSERT_EQ(tide_chan_flush(c, 0), TIDE_EAGAIN);
    ASSERT_EQ(tide_chan_send(c, big, 10, 0), TIDE_EAGAIN);   /* queued */
    ASSERT_OK(tide_proc_kill(p, SIGKILL));
    ASSERT_EQ(reap_wait(p), -SIGKILL);
    ASSERT_EQ(tide_chan_flush(c, -1), TIDE_ECLOSED);
    free(big);
    tide_proc_free(p);
}

/* Partial frames stay buffered across calls; a bad length is refused. */
static void
test_partial_frames(void)
{
    tide_chan_t  *c;
    int           sv[2];
    char         *buf;
    size_t        len;
    unsigned char hdr[4] = { 6, 0, 0, 0 };

    c = (tide_chan_t *) 1;
    ASSERT_EQ(tide_chan_open(&c, -1), TIDE_EINVAL);
    ASSERT(c == NULL);
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_OK(tide_chan_open(&c, sv[0]));
    ASSERT_EQ(write(sv[1], hdr, 2), 2);
    ASSERT_EQ(tide_chan_recv(c, &buf, &len), TIDE_EAGAIN);
    ASSERT_EQ(tide_chan_wait(c, 0), TIDE_EAGAIN);
    ASSERT_EQ(write(sv[1], hdr + 2, 2), 2);
    ASSERT_EQ(write(sv[1], "abc", 3), 3);
    ASSERT_EQ(tide_chan_recv(c, &buf, &len), TIDE_EAGAIN);
    ASSERT_EQ(write(sv[1], "def", 3), 3);
    ASSERT_OK(tide_chan_wait(c, 1000));
    ASSERT_OK(tide_chan_recv(c, &buf, &len));
    ASSERT_EQ(len, 6);
    ASSERT(memcmp(buf, "abcdef", 6) == 0);
    /* A length over the limit: not a channel. */
    hdr[3] = 2;                                 /* 32 MiB + 6 */
    ASSERT_EQ(write(sv[1], hdr, 4), 4);
    ASSERT_EQ(tide_chan_recv(c, &buf, &len), TIDE_ECORRUPT);
    tide_chan_free(c);
    close(sv[1]);

    /* A whole frame sent before the end is received, then ECLOSED. */
    ASSERT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    ASSERT_OK(tide_chan_open(&c, sv[0]));
    hdr[0] = 1;
    hdr[3] = 0;
    ASSERT_EQ(write(sv[1], hdr, 4), 4);
    ASSERT_EQ(write(sv[1], "z", 1), 1);
    ASSERT_EQ(write(sv[1], hdr, 2), 2);         /* a torn frame */
    close(sv[1]);
    ASSERT_OK(tide_chan_wait(c, 1000));
    ASSERT_OK(tide_chan_recv(c, &buf, &len));
    ASSERT_EQ(len, 1);
    ASSERT_EQ(tide_chan_recv(c, &buf, &len), TIDE_ECLOSED);
    ASSERT_OK(tide_chan_wait(c, 1000));
    tide_chan_free(c);
}

/* SIGKILL the worker's parent: the worker is gone at once (reparented to
 * us, a subreaper, we see it die of SIGKILL). */
static void
test_pdeathsig(void)
{
    int    pfd[2], st, worker = 0, i;
    pid_t  mid, r;

    ASSERT_OK(prctl(PR_SET_CHILD_SUBREAPER, 1));
    ASSERT_OK(pipe(pfd));
    mid = fork();
    ASSERT(mid >= 0);
    if (mid == 0) {
        tide_proc_t  *p;

        close(pfd[0]);
        p = spawn("sleep", 0, NULL);
        worker = tide_proc_pid(p);
        if (write(pfd[1], &worker, sizeof(worker)) != sizeof(worker)) {
            _exit(1);
        }
        for (;;) {
            pause();
        }
    }
    close(pfd[1]);
    ASSERT_EQ(read(pfd[0], &worker, sizeof(worker)), sizeof(worker));
    close(pfd[0]);
    ASSERT(worker > 0);
    ASSERT_OK(kill(worker, 0));
    ASSERT_OK(kill(mid, SIGKILL));
    ASSERT_EQ(waitpid(mid, &st, 0), mid);
    for (i = 0; i < 10000; i++) {
        r = waitpid(worker, &st, WNOHANG);
        if (r == worker) {
            break;
        }
        ASSERT_EQ(r, 0);
        usleep(1000);
    }
    ASSERT_EQ(r, worker);
    ASSERT(WIFSIGNALED(st));
    ASSERT_EQ(WTERMSIG(st), SIGKILL);
    printf("# worker gone %d ms after its parent\n", i);
    ASSERT_OK(prctl(PR_SET_CHILD_SUBREAPER, 0));
}

/* Not a worker: nothing done. A worker whose parent is not the one
 * named: refused (the parent died before the worker could ask for its
 * death signal). In a child, since the call sets PDEATHSIG. */
static void
test_worker_init(void)
{
    char   err[256];
    pid_t  pid;
    int    st;

    unsetenv("TIDE_WORKER");
    ASSERT_EQ(tide_proc_worker_init(err, sizeof(err)), TIDE_ENOENT);
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        setenv("TIDE_WORKER", "1", 1);
        setenv("TIDE_PARENT_PID", "1", 1);
        _exit(tide_proc_worker_init(err, sizeof(err)) == TIDE_EIO &&
              strstr(err, "gone") != NULL ? 0 : 1);
    }
    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st));
    ASSERT_EQ(WEXITSTATUS(st), 0);
}

/* The loop: INPUT when a channel has data, CHILD when a worker ends. */
static void
test_loop_fd_and_child(void)
{
    tide_loop_t  *l;
    tide_proc_t  *p;
    char         *buf;
    size_t        len;
    int           id, id2, ev, rc, i;

    ASSERT_OK(tide_loop_new(&l));
    ASSERT_OK(tide_loop_watch_children(l));
    ASSERT_OK(tide_loop_watch_children(l));
    p = spawn("echo", 0, NULL);
    ASSERT_OK(tide_loop_watch_fd(l, tide_proc_fd(p), &id));
    ASSERT(id > 0);
    ASSERT_EQ(tide_loop_watch_fd(l, tide_proc_fd(p), &id2), TIDE_EINVAL);
    ASSERT_EQ(id2, 0);
    ASSERT_EQ(tide_loop_watch_fd(l, -1, &id2), TIDE_EINVAL);
    ASSERT_EQ(tide_loop_poll(l, 0) & TIDE_LOOP_INPUT, 0);
    ASSERT_OK(tide_chan_send(tide_proc_chan(p), "ping", 4, -1));
    for (ev = 0, i = 0; !(ev & TIDE_LOOP_INPUT) && i < 100; i++) {
        ev |= tide_loop_poll(l, 100);
    }
    ASSERT(ev & TIDE_LOOP_INPUT);
    ASSERT_OK(tide_chan_recv(tide_proc_chan(p), &buf, &len));
    ASSERT_EQ(len, 4);
    ASSERT_EQ(tide_loop_poll(l, 0) & TIDE_LOOP_INPUT, 0);

    /* The worker's end comes as INPUT (the channel's end of file: the
     * supervisor unwatches it), and as CHILD. */
    ASSERT_OK(tide_chan_send(tide_proc_chan(p), "exit:3", 6, -1));
    for (ev = 0, i = 0; !(ev & TIDE_LOOP_CHILD) && i < 100; i++) {
        rc = tide_loop_poll(l, 100);
        if ((rc & TIDE_LOOP_INPUT) && id != 0) {
            ASSERT_EQ(tide_chan_recv(tide_proc_chan(p), &buf, &len),
                      TIDE_ECLOSED);
            ASSERT_OK(tide_loop_unwatch_fd(l, id));
            ASSERT_EQ(tide_loop_unwatch_fd(l, id), TIDE_ENOENT);
            id = 0;
        }
        ev |= rc;
    }
    ASSERT(ev & TIDE_LOOP_CHILD);
    ASSERT(ev & TIDE_LOOP_INPUT);
    ASSERT_EQ(id, 0);
    ASSERT_EQ(reap_wait(p), 3);
    tide_proc_free(p);
    /* A watch left in place is closed with the loop. */
    p = spawn("echo", 0, NULL);
    ASSERT_OK(tide_loop_watch_fd(l, tide_proc_fd(p), &id));
    tide_loop_free(l);
    ASSERT_OK(tide_chan_send(tide_proc_chan(p), "exit:0", 6, -1));
    ASSERT_EQ(reap_wait(p), 0);
    tide_proc_free(p);
}

int
main(void)
{
    if (getenv("TIDE_WORKER") != NULL) {
        return worker_main();
    }
    RUN(test_spawn_errors);
    RUN(test_partial_frames);
    RUN(test_echo_frames);
    RUN(test_signal_status);
    RUN(test_names_env_fds);
    RUN(test_max_data);
    RUN(test_shm);
    RUN(test_shm_map_errors);
    RUN(test_both_ways_at_once);
    RUN(test_send_timeout);
    RUN(test_worker_init);
    RUN(test_loop_fd_and_child);
    RUN(test_pdeathsig);
    return 0;
}
