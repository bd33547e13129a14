/*
 * Worker processes: the supervisor's side (spawn, kill, reap, RSS) and
 * the worker's first steps (tide_proc_worker_init). A worker is this
 * program executed again, so that it is "tide" in ps and top, with its
 * title as argv[0]; fd 3 is its end of a channel (chan.c), fd 4 a shared
 * memory region (a sealed memfd) holding its watch slots.
 *
 * Between fork and exec the child calls only async-signal-safe functions
 * (the supervisor may have threads: RocksDB's, libuv's): the environment
 * and argv are built before the fork, and an exec failure goes back to
 * the parent through a close-on-exec pipe as an errno.
 */
#include "tide.h"
#include "util/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* chan.c */
int   tide__chan_new(tide_chan_t **out, int fd);

struct tide_proc_s {
    pid_t         pid;
    int           reaped;     /* waitpid has returned it */
    int           status;     /* exit code, or -signal, once reaped */
    tide_chan_t  *chan;       /* owns the parent's socket end */
    void         *shm;        /* the mapped region, or NULL */
    size_t        shm_len;
};

/* The variables the supervisor sets; a worker removes them. */
static const char *const worker_vars[] = {
    "TIDE_WORKER", "TIDE_PARENT_PID", "TIDE_WORKER_MAX_DATA", NULL
};

/* Whether "K=V" string 'kv' sets the variable named by "K=..." 'other'. */
static int
same_var(const char *kv, const char *other)
{
    size_t  n = strcspn(other, "=");

    return strncmp(kv, other, n) == 0 && kv[n] == '=';
}

static int
is_worker_var(const char *kv)
{
    size_t  i, n;

    for (i = 0; worker_vars[i] != NULL; i++) {
        n = strlen(worker_vars[i]);
        if (strncmp(kv, worker_vars[i], n) == 0 && kv[n] == '=') {
            return 1;
        }
    }
    return 0;
}

/* Builds the child's environment: ours minus what o->env replaces and the
 * worker variables, then o->env, then the worker variables. The array
 * and 'vars' (the three strings it points at) are malloc'ed; free both. */
static char **
env_build(const tide_proc_opts_t *o, char **vars)
{
    const char *const  *e;
    char              **envp, **kv;
    size_t              n = 0, m = 0, k;
    int                 replaced;

    for (kv = environ; kv != NULL && *kv != NULL; kv++) {
        n++;
    }
    for (e = o->env; e != NULL && *e != NULL; e++) {
        m++;
    }
    envp = malloc((n + m + 4) * sizeof(*envp));
    *vars = malloc(3 * 64);
    if (envp == NULL || *vars == NULL) {
        free(envp);
        free(*vars);
        *vars = NULL;
        return NULL;
    }
    k = 0;
    for (kv = environ; kv != NULL && *kv != NULL; kv++) {
        if (is_worker_var(*kv)) {
            continue;
        }
        replaced = 0;
        for (e = o->env; e != NULL && *e != NULL; e++) {
            if (same_var(*kv, *e)) {
                replaced = 1;
                break;
            }
        }
        if (!replaced) {
            envp[k++] = *kv;
        }
    }
    for (e = o->env; e != NULL && *e != NULL; e++) {
        envp[k++] = (char *) *e;
    }
    snprintf(*vars, 64, "TIDE_WORKER=1");
    envp[k++] = *vars;
    snprintf(*vars + 64, 64, "TIDE_PARENT_PID=%ld", (long) getpid());
    envp[k++] = *vars + 64;
    if (o->max_data_bytes > 0) {
        snprintf(*vars + 128, 64, "TIDE_WORKER_MAX_DATA=%" PRId64,
                 o->max_data_bytes);
        envp[k++] = *vars + 128;
    }
    envp[k] = NULL;
    return envp;
}

/* Closes descriptors lo .. hi; async-signal-safe. */
static void
close_from(int lo, int hi)
{
    int  fd;

    if (syscall(SYS_close_range, (unsigned int) lo, (unsigned int) hi, 0)
        == 0)
    {
        return;
    }
    for (fd = lo; fd <= hi && fd < 65536; fd++) {
        (void) close(fd);
    }
}

/* Runs in the child between fork and exec: async-signal-safe calls only.
 * Never returns: execs, or writes errno to 'errfd' and exits with 127. */
static void
child_exec(const char *path, char *const argv[], char *const envp[],
           int sockfd, int shmfd, int keepfd, int errfd, pid_t parent)
{
    sigset_t  none;
    int       e, s, m = -1, k, ef, first;

    /* Ask for SIGKILL when the parent goes, then check it has not gone
     * already (we would be the child of init or a subreaper then). */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) {
        e = ESRCH;
        goto fail;
    }
    sigemptyset(&none);
    (void) sigprocmask(SIG_SETMASK, &none, NULL);
    (void) signal(SIGPIPE, SIG_DFL);
    /* Copies above 4 first, so that dup2 onto 3 and 4 cannot close one
     * we still need; dup2 clears close-on-exec on 3 and 4. */
    ef = fcntl(errfd, F_DUPFD_CLOEXEC, 10);
    if (ef >= 0) {
        errfd = ef;
    }
    k = -1;
    if (keepfd > 2) {
        k = fcntl(keepfd, F_DUPFD_CLOEXEC, 10);
        if (k < 0) {
            e = errno;
            goto fail;
        }
    }
    s = fcntl(sockfd, F_DUPFD_CLOEXEC, 10);
    if (s < 0 || dup2(s, TIDE_PROC_CHAN_FD) < 0) {
        e = errno;
        goto fail;
    }
    if (shmfd >= 0) {
        m = fcntl(shmfd, F_DUPFD_CLOEXEC, 10);
        if (m < 0 || dup2(m, TIDE_PROC_SHM_FD) < 0) {
            e = errno;
            goto fail;
        }
    } else if (keepfd > 2) {
        (void) close(TIDE_PROC_SHM_FD);
    }
    if (k >= 0 && dup2(k, TIDE_PROC_KEEP_FD) < 0) {
        e = errno;
        goto fail;
    }
    /* Everything else the supervisor had open: descriptors a library
     * made without close-on-exec must not leak into the workers. Not the
     * error pipe, which close-on-exec closes at the exec. */
    first = keepfd > 2 ? TIDE_PROC_KEEP_FD + 1
            : shmfd >= 0 ? TIDE_PROC_SHM_FD + 1 : TIDE_PROC_SHM_FD;
    if (first < errfd) {
        close_from(first, errfd - 1);
    }
    close_from(errfd + 1, INT_MAX);
    execve(path, argv, envp);
    e = errno;
fail:
    while (write(errfd, &e, sizeof(e)) < 0 && errno == EINTR) {
    }
    _exit(127);
}

int
tide_proc_spawn(tide_proc_t **out, const tide_proc_opts_t *o, char *err,
                size_t errlen)
{
    tide_proc_t  *p = NULL;
    char          path[PATH_MAX];
    char         *argv[2];
    char        **envp = NULL, *vars = NULL;
    int           sv[2] = { -1, -1 }, pipefd[2] = { -1, -1 }, shmfd = -1;
    int           rc, e = 0;
    ssize_t       n;
    pid_t         pid, parent = getpid();

    tide__set_err(err, errlen, 0, "%s", "");
    if (out != NULL) {
        *out = NULL;
    }
    if (out == NULL || o == NULL || o->title == NULL || o->title[0] == '\0'
        || o->shm_bytes < 0 || o->max_data_bytes < 0)
    {
        tide__set_err(err, errlen, 0, "tide_proc_spawn: bad arguments "
                      "(out, opts and a title are needed; sizes >= 0)");
        return TIDE_EINVAL;
    }
    if (o->path != NULL) {
        if (snprintf(path, sizeof(path), "%s", o->path) >=
            (int) sizeof(path))
        {
            tide__set_err(err, errlen, 0, "program path too long");
            return TIDE_EINVAL;
        }
    } else {
        n = readlink("/proc/self/exe", path, sizeof(path) - 1);
        if (n < 0) {
            tide__set_err(err, errlen, 0, "cannot find this program "
                          "(/proc/self/exe): %s", strerror(errno));
            return TIDE_EIO;
        }
        path[n] = '\0';
    }

    p = calloc(1, sizeof(*p));
    envp = env_build(o, &vars);
    if (p == NULL || envp == NULL) {
        rc = TIDE_ENOMEM;
        tide__set_err(err, errlen, 0, "out of memory");
        goto fail;
    }
    p->pid = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        e = errno;
        tide__set_err(err, errlen, 0, "cannot make a channel (socketpair): "
                      "%s", strerror(e));
        rc = TIDE_EIO;
        goto fail;
    }
    if (o->shm_bytes > 0) {
        shmfd = memfd_create("tide-worker", MFD_CLOEXEC | MFD_ALLOW_SEALING);
        if (shmfd < 0 || ftruncate(shmfd, (off_t) o->shm_bytes) != 0 ||
            fcntl(shmfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW |
                  F_SEAL_SEAL) != 0)
        {
            e = errno;
            tide__set_err(err, errlen, 0, "cannot make a shared region of "
                          "%" PRId64 " bytes (memfd): %s", o->shm_bytes,
                          strerror(e));
            rc = TIDE_EIO;
            goto fail;
        }
        p->shm = mmap(NULL, (size_t) o->shm_bytes, PROT_READ | PROT_WRITE,
                      MAP_SHARED, shmfd, 0);
        if (p->shm == MAP_FAILED) {
            e = errno;
            p->shm = NULL;
            tide__set_err(err, errlen, 0, "cannot map a shared region of "
                          "%" PRId64 " bytes: %s", o->shm_bytes, strerror(e));
            rc = e == ENOMEM ? TIDE_ENOMEM : TIDE_EIO;
            goto fail;
        }
        p->shm_len = (size_t) o->shm_bytes;
    }
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        e = errno;
        tide__set_err(err, errlen, 0, "cannot make a pipe: %s", strerror(e));
        rc = TIDE_EIO;
        goto fail;
    }
    argv[0] = (char *) o->title;
    argv[1] = NULL;

    pid = fork();
    if (pid < 0) {
        e = errno;
        tide__set_err(err, errlen, 0, "cannot start a worker (fork): %s",
                      strerror(e));
        rc = e == ENOMEM || e == EAGAIN ? TIDE_ENOMEM : TIDE_EIO;
        goto fail;
    }
    if (pid == 0) {
        child_exec(path, argv, envp, sv[1], shmfd, o->keep_fd, pipefd[1],
                   parent);
    }
    p->pid = pid;
    (void) close(pipefd[1]);
    pipefd[1] = -1;
    /* EOF: the exec closed the pipe. An errno: the child failed first. */
    do {
        n = read(pipefd[0], &e, sizeof(e));
    } while (n < 0 && errno == EINTR);
    if (n == (ssize_t) sizeof(e)) {
        int  st;

        while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
        }
        p->pid = -1;
        tide__set_err(err, errlen, 0, "cannot run '%s': %s", path,
                      e == ESRCH ? "this process is ending" : strerror(e));
        rc = e == ENOENT || e == EACCES || e == ENOEXEC || e == ENOTDIR ?
             TIDE_ENOENT : TIDE_EIO;
        goto fail;
    }
    (void) close(sv[1]);
    sv[1] = -1;
    rc = tide__chan_new(&p->chan, sv[0]);
    if (rc != TIDE_OK) {
        (void) kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
        }
        p->pid = -1;
        tide__set_err(err, errlen, 0, "out of memory");
        goto fail;
    }
    sv[0] = -1;
    (void) close(pipefd[0]);
    if (shmfd >= 0) {
        (void) close(shmfd);
    }
    free(envp);
    free(vars);
    *out = p;
    return TIDE_OK;

fail:
    if (p != NULL && p->shm != NULL) {
        (void) munmap(p->shm, p->shm_len);
    }
    free(p);
    free(envp);
    free(vars);
    if (sv[0] >= 0) {
        (void) close(sv[0]);
    }
    if (sv[1] >= 0) {
        (void) close(sv[1]);
    }
    if (pipefd[0] >= 0) {
        (void) close(pipefd[0]);
    }
    if (pipefd[1] >= 0) {
        (void) close(pipefd[1]);
    }
    if (shmfd >= 0) {
        (void) close(shmfd);
    }
    return rc;
}

void
tide_proc_free(tide_proc_t *p)
{
    if (p == NULL) {
        return;
    }
    tide_chan_free(p->chan);
    if (p->shm != NULL) {
        (void) munmap(p->shm, p->shm_len);
    }
    free(p);
}

int
tide_proc_pid(const tide_proc_t *p)
{
    return (int) p->pid;
}

int
tide_proc_fd(const tide_proc_t *p)
{
    return tide_chan_fd(p->chan);
}

tide_chan_t *
tide_proc_chan(tide_proc_t *p)
{
    return p->chan;
}

void *
tide_proc_shm(tide_proc_t *p)
{
    return p->shm;
}

int
tide_proc_kill(tide_proc_t *p, int sig)
{
    if (p == NULL || sig < 0 || sig >= 65) {
        return TIDE_EINVAL;
    }
    if (p->reaped) {
        return TIDE_ENOENT;
    }
    if (kill(p->pid, sig) != 0) {
        return errno == EINVAL ? TIDE_EINVAL : errno == ESRCH ? TIDE_ENOENT
               : TIDE_EIO;
    }
    return TIDE_OK;
}

int
tide_proc_reap(tide_proc_t *p, int *status)
{
    pid_t  r;
    int    st;

    if (status != NULL) {
        *status = 0;
    }
    if (p == NULL || status == NULL) {
        return TIDE_EINVAL;
    }
    if (!p->reaped) {
        do {
            r = waitpid(p->pid, &st, WNOHANG);
        } while (r < 0 && errno == EINTR);
        if (r == 0) {
            return TIDE_EAGAIN;
        }
        if (r < 0) {
            return TIDE_EIO;
        }
        p->reaped = 1;
        p->status = WIFEXITED(st) ? WEXITSTATUS(st) :
                    WIFSIGNALED(st) ? -WTERMSIG(st) : 0;
    }
    *status = p->status;
    return TIDE_OK;
}

int64_t
tide_proc_rss(const tide_proc_t *p)
{
    char       path[64], buf[128];
    long long  size, resident;
    ssize_t    n;
    int        fd;

    if (p == NULL) {
        return TIDE_EINVAL;
    }
    if (p->reaped) {
        return TIDE_ENOENT;
    }
    snprintf(path, sizeof(path), "/proc/%ld/statm", (long) p->pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return errno == ENOENT ? TIDE_ENOENT : TIDE_EIO;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    (void) close(fd);
    if (n <= 0) {
        /* A zombie's statm reads as zeros; a vanished one as nothing. */
        return TIDE_ENOENT;
    }
    buf[n] = '\0';
    if (sscanf(buf, "%lld %lld", &size, &resident) != 2) {
        return TIDE_EIO;
    }
    return (int64_t) resident * (int64_t) sysconf(_SC_PAGESIZE);
}

int
tide_proc_worker_init(char *err, size_t errlen)
{
    const char    *w, *pp, *md;
    struct stat    st;
    struct rlimit  rl;
    long long      parent = 0, max = 0;
    char          *end;
    int            i;

    tide__set_err(err, errlen, 0, "%s", "");
    w = getenv("TIDE_WORKER");
    if (w == NULL || strcmp(w, "1") != 0) {
        return TIDE_ENOENT;
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) {
        tide__set_err(err, errlen, 0, "worker: cannot ask for the parent's "
                      "death signal: %s", strerror(errno));
        return TIDE_EIO;
    }
    pp = getenv("TIDE_PARENT_PID");
    if (pp != NULL) {
        parent = strtoll(pp, &end, 10);
    }
    if (pp == NULL || parent <= 0 || (long long) getppid() != parent) {
        tide__set_err(err, errlen, 0, "worker: the supervisor (pid %s) is "
                      "gone; exiting", pp != NULL ? pp : "?");
        return TIDE_EIO;
    }
    md = getenv("TIDE_WORKER_MAX_DATA");
#if defined(__SANITIZE_ADDRESS__)
    /* AddressSanitizer maps terabytes of shadow memory, which RLIMIT_DATA
     * counts: in the sanitizer build only the supervisor's RSS checks
     * enforce max_memory. */
    md = NULL;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
    md = NULL;
#endif
#endif
    if (md != NULL) {
        max = strtoll(md, &end, 10);
        if (max > 0) {
            rl.rlim_cur = rl.rlim_max = (rlim_t) max;
            if (setrlimit(RLIMIT_DATA, &rl) != 0) {
                tide__set_err(err, errlen, 0, "worker: cannot set its memory "
                              "limit to %lld bytes: %s", max,
                              strerror(errno));
                return TIDE_EIO;
            }
        }
    }
    for (i = 0; worker_vars[i] != NULL; i++) {
        (void) unsetenv(worker_vars[i]);
    }
    if (fstat(TIDE_PROC_CHAN_FD, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        tide__set_err(err, errlen, 0, "worker: fd %d is not the "
                      "supervisor's channel; start workers with 'tide run'",
                      TIDE_PROC_CHAN_FD);
        return TIDE_EIO;
    }
    (void) fcntl(TIDE_PROC_CHAN_FD, F_SETFD, FD_CLOEXEC);
    /* The job's run lock, when given: held, but not passed on. */
    (void) fcntl(TIDE_PROC_KEEP_FD, F_SETFD, FD_CLOEXEC);
    if (fcntl(TIDE_PROC_SHM_FD, F_GET_SEALS) >= 0) {
        (void) fcntl(TIDE_PROC_SHM_FD, F_SETFD, FD_CLOEXEC);
    }
    return TIDE_OK;
}

int
tide_shm_map(int fd, size_t *size, void **ptr)
{
    struct stat  st;
    int          seals;
    void        *m;

    if (size != NULL) {
        *size = 0;
    }
    if (ptr != NULL) {
        *ptr = NULL;
    }
    if (size == NULL || ptr == NULL) {
        return TIDE_EINVAL;
    }
    /* Ours is a memfd sealed against resizing: anything else at 'fd' (no
     * worker, a file a shell opened) is refused rather than mapped. */
    seals = fcntl(fd, F_GET_SEALS);
    if (seals < 0 || (seals & (F_SEAL_SHRINK | F_SEAL_GROW)) !=
        (F_SEAL_SHRINK | F_SEAL_GROW))
    {
        return TIDE_ENOENT;
    }
    if (fstat(fd, &st) != 0) {
        return TIDE_EIO;
    }
    if (st.st_size <= 0) {
        return TIDE_ENOENT;
    }
    m = mmap(NULL, (size_t) st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED,
             fd, 0);
    if (m == MAP_FAILED) {
        return errno == ENOMEM ? TIDE_ENOMEM : TIDE_EIO;
    }
    *size = (size_t) st.st_size;
    *ptr = m;
    return TIDE_OK;
}

void
tide_shm_free(void *ptr, size_t size)
{
    if (ptr != NULL) {
        (void) munmap(ptr, size);
    }
}
