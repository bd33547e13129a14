/*
 * Files: the durable, atomic replace of a small file (checkpoints, store
 * metadata) and the per-job process lock that keeps a second 'tide run'
 * of one job off the same data dir.
 */
#include "tide.h"
#include "util/errors.h"
#include "util/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct tide_lock_s {
    int  fd;                    /* open, flock'ed; closing releases it */
};

/* fsyncs a folder, so that entries created, renamed or removed in it
 * survive a crash. Returns 0, or -1 with errno set. */
static int
dir_sync(const char *dir)
{
    int  fd, rc, saved;

    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = fsync(fd);
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* Splits 'path' into its folder (written into 'dir', "." when it has
 * none) and returns a pointer to its last component inside 'path'.
 * Returns NULL when 'path' does not name a file or does not fit. */
static const char *
path_split(const char *path, char *dir, size_t dirlen)
{
    const char  *slash, *base;
    size_t       n;

    if (path == NULL || path[0] == '\0' || strlen(path) >= PATH_MAX) {
        return NULL;
    }
    slash = strrchr(path, '/');
    base = slash == NULL ? path : slash + 1;
    if (base[0] == '\0' || strcmp(base, ".") == 0 || strcmp(base, "..") == 0) {
        return NULL;
    }
    if (slash == NULL) {
        n = 1;
        dir[0] = '.';
    } else if (slash == path) {
        n = 1;                  /* a file in the root folder */
        dir[0] = '/';
    } else {
        n = (size_t) (slash - path);
    }
    if (n >= dirlen) {
        return NULL;
    }
    if (slash != NULL && slash != path) {
        memcpy(dir, path, n);
    }
    dir[n] = '\0';
    return base;
}

/* Creates folder 'dir' unless it exists, then fsyncs its parent so that
 * the new entry is durable before anything is written inside it.
 * Returns 0, or -1 with 'err' set. */
static int
dir_make(char *dir, char *err, size_t errlen)
{
    char  *slash;
    int    rc;

    if (mkdir(dir, 0755) != 0) {
        if (errno == EEXIST) {
            return 0;
        }
        tide__set_err(err, errlen, 0, "cannot create folder '%s': %s", dir,
                      strerror(errno));
        return -1;
    }
    slash = strrchr(dir, '/');
    if (slash == NULL) {
        rc = dir_sync(".");
    } else if (slash == dir) {
        rc = dir_sync("/");
    } else {
        *slash = '\0';
        rc = dir_sync(dir);
        *slash = '/';
    }
    if (rc != 0) {
        tide__set_err(err, errlen, 0, "cannot sync the folder holding '%s': "
                      "%s", dir, strerror(errno));
        return -1;
    }
    return 0;
}

/* Creates folder 'dir' and its missing parents. 'dir' is cut at each
 * '/' in turn during the call and restored. Returns 0, or -1 with 'err'
 * set. */
static int
dirs_make(char *dir, char *err, size_t errlen)
{
    struct stat   st;
    char         *p;
    int           last, rc;

    if (stat(dir, &st) == 0 && S_ISDIR(st.st_mode)) {
        return 0;               /* the common case: nothing to do */
    }
    for (p = dir + 1; ; p++) {
        if (*p != '/' && *p != '\0') {
            continue;
        }
        last = *p == '\0';
        *p = '\0';
        rc = dir_make(dir, err, errlen);
        if (!last) {
            *p = '/';
        }
        if (rc != 0) {
            return -1;
        }
        if (last) {
            return 0;
        }
    }
}

/* Writes all 'len' bytes, retrying short writes and EINTR. */
static int
write_all(int fd, const char *data, size_t len)
{
    ssize_t  n;

    while (len > 0) {
        n = write(fd, data, len);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return -1;
        }
        data += n;
        len -= (size_t) n;
    }
    return 0;
}

int
tide_file_set(const char *path, const char *data, size_t len, char *err,
              size_t errlen)
{
    static unsigned int  seq;
    char                 dir[PATH_MAX], tmp[PATH_MAX];
    const char          *base;
    struct stat          st;
    int                  fd, n;

    tide__set_err(err, errlen, 0, "%s", "");
    if (data == NULL && len > 0) {
        tide__set_err(err, errlen, 0, "no data to write to '%s'",
                      path != NULL ? path : "(null)");
        return TIDE_EINVAL;
    }
    base = path_split(path, dir, sizeof(dir));
    if (base == NULL) {
        tide__set_err(err, errlen, 0, "bad file path '%s': a file name "
                      "expected", path != NULL ? path : "(null)");
        return TIDE_EINVAL;
    }
    /* A unique name per process and call: concurrent writers of one path
     * in several threads or processes never share a temporary file. */
    n = snprintf(tmp, sizeof(tmp), "%s/.%s.tmp.%ld.%u", dir, base,
                 (long) getpid(), __sync_fetch_and_add(&seq, 1));
    if (n < 0 || (size_t) n >= sizeof(tmp)) {
        tide__set_err(err, errlen, 0, "bad file path '%s': too long", path);
        return TIDE_EINVAL;
    }
    if (dirs_make(dir, err, errlen) != 0) {
        return TIDE_EIO;
    }

    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        tide__set_err(err, errlen, 0, "cannot create '%s': %s", tmp,
                      strerror(errno));
        return TIDE_EIO;
    }
    /* Keep the permissions of the file being replaced. */
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
        (void) fchmod(fd, st.st_mode & 07777);
    }
    if (write_all(fd, data, len) != 0) {
        tide__set_err(err, errlen, 0, "cannot write '%s': %s", tmp,
                      strerror(errno));
        goto fail;
    }
    if (fsync(fd) != 0) {
        tide__set_err(err, errlen, 0, "cannot sync '%s': %s", tmp,
                      strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        tide__set_err(err, errlen, 0, "cannot close '%s': %s", tmp,
                      strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        tide__set_err(err, errlen, 0, "cannot rename '%s' to '%s': %s", tmp,
                      path, strerror(errno));
        goto fail;
    }
    if (dir_sync(dir) != 0) {
        tide__set_err(err, errlen, 0, "cannot sync folder '%s' after "
                      "replacing '%s': %s", dir, base, strerror(errno));
        return TIDE_EIO;
    }
    return TIDE_OK;

fail:
    if (fd >= 0) {
        close(fd);
    }
    unlink(tmp);
    return TIDE_EIO;
}

/* Reads the pid a lock holder wrote into its file, or 0 when there is
 * none yet: the holder writes it just after taking the lock, so an empty
 * file is retried for a short while. */
static long
lock_pid_get(int fd)
{
    struct timespec  pause = { 0, 1000000 };
    char             buf[32];
    ssize_t          n;
    long             pid;
    int              tries;

    for (tries = 0; tries < 50; tries++) {
        n = pread(fd, buf, sizeof(buf) - 1, 0);
        if (n > 0) {
            buf[n] = '\0';
            pid = strtol(buf, NULL, 10);
            if (pid > 0) {
                return pid;
            }
        } else if (n < 0 && errno != EINTR) {
            return 0;
        }
        nanosleep(&pause, NULL);
    }
    return 0;
}

int
tide_lock_new(tide_lock_t **out, const char *path, char *err, size_t errlen)
{
    char          dir[PATH_MAX], buf[32];
    tide_lock_t  *lk;
    long          pid;
    int           fd, rc, n;

    tide__set_err(err, errlen, 0, "%s", "");
    if (out == NULL) {
        tide__set_err(err, errlen, 0, "no place for the lock handle");
        return TIDE_EINVAL;
    }
    *out = NULL;
    if (path_split(path, dir, sizeof(dir)) == NULL) {
        tide__set_err(err, errlen, 0, "bad lock path '%s': a file name "
                      "expected", path != NULL ? path : "(null)");
        return TIDE_EINVAL;
    }
    if (dirs_make(dir, err, errlen) != 0) {
        return TIDE_EIO;
    }

    fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        tide__set_err(err, errlen, 0, "cannot open lock '%s': %s", path,
                      strerror(errno));
        return TIDE_EIO;
    }
    do {
        rc = flock(fd, LOCK_EX | LOCK_NB);
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        if (errno == EWOULDBLOCK) {
            pid = lock_pid_get(fd);
            if (pid > 0) {
                tide__set_err(err, errlen, 0, "lock '%s' is held by pid %ld",
                              path, pid);
            } else {
                tide__set_err(err, errlen, 0, "lock '%s' is held by another "
                              "process", path);
            }
            close(fd);
            return TIDE_EBUSY;
        }
        tide__set_err(err, errlen, 0, "cannot lock '%s': %s", path,
                      strerror(errno));
        close(fd);
        return TIDE_EIO;
    }

    n = snprintf(buf, sizeof(buf), "%ld\n", (long) getpid());
    if (ftruncate(fd, 0) != 0 || pwrite(fd, buf, (size_t) n, 0) != n) {
        tide__set_err(err, errlen, 0, "cannot write the pid into lock '%s': "
                      "%s", path, strerror(errno));
        close(fd);
        return TIDE_EIO;
    }

    lk = malloc(sizeof(*lk));
    if (lk == NULL) {
        tide__set_err(err, errlen, 0, "out of memory");
        close(fd);
        return TIDE_ENOMEM;
    }
    lk->fd = fd;
    *out = lk;
    return TIDE_OK;
}

void
tide_lock_free(tide_lock_t *lk)
{
    if (lk == NULL) {
        return;
    }
    /* Still the holder here: nobody else writes the file meanwhile. */
    (void) ftruncate(lk->fd, 0);
    close(lk->fd);
    free(lk);
}

/* Creates 'path' and its missing parents (no fsync: see dirs_make for
 * durable folders). Returns 0 or -1 with errno. */
int
tide__mkdir_p(const char *path)
{
    char   tmp[PATH_MAX];
    char  *p;

    if (snprintf(tmp, sizeof(tmp), "%s", path) >= (int) sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
                return -1;
            }
            *p = '/';
        }
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST) {
        return -1;
    }
    return 0;
}

int
tide_lock_fd(const tide_lock_t *lk)
{
    return lk != NULL ? lk->fd : -1;
}
