/*
 * Folder helpers for stores: recursive removal, the hard-link copy of a
 * snapshot that a store starts from, and swapping a freshly built folder
 * in place of an old one.
 */
#include "store/store.h"
#include "util/errors.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

int
tide__path_exists(const char *path)
{
    struct stat  st;

    return lstat(path, &st) == 0;
}

static int
rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void) st;
    (void) ftw;
    if (flag == FTW_DP) {
        return rmdir(path);
    }
    return unlink(path);
}

int
tide_path_remove(const char *path, char *err, size_t errlen)
{
    struct stat  st;

    if (path == NULL || path[0] == '\0') {
        return tide__set_err(err, errlen, TIDE_EINVAL, "no path given");
    }
    if (lstat(path, &st) != 0) {
        if (errno == ENOENT) {
            return TIDE_OK;
        }
        return tide__set_err(err, errlen, TIDE_EIO, "%s: %s", path,
                             strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) {
        if (unlink(path) != 0) {
            return tide__set_err(err, errlen, TIDE_EIO, "cannot remove %s: %s",
                                 path, strerror(errno));
        }
        return TIDE_OK;
    }
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0) {
        return tide__set_err(err, errlen, TIDE_EIO, "cannot remove %s: %s",
                             path, strerror(errno));
    }
    return TIDE_OK;
}

static int
fsync_path(const char *path)
{
    int  fd, rc;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    rc = fsync(fd);
    close(fd);
    return rc;
}

static int
copy_file(const char *from, const char *to)
{
    char     buf[65536];
    ssize_t  n, w, off;
    int      in, out, rc = -1;

    in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        return -1;
    }
    out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (out < 0) {
        close(in);
        return -1;
    }
    for (;;) {
        n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            rc = n == 0 ? 0 : -1;
            break;
        }
        for (off = 0; off < n; off += w) {
            w = write(out, buf + off, (size_t) (n - off));
            if (w < 0 && errno == EINTR) {
                w = 0;
            } else if (w < 0) {
                goto done;
            }
        }
    }
    if (rc == 0) {
        rc = fsync(out);
    }
done:
    close(in);
    if (close(out) != 0) {
        rc = -1;
    }
    return rc;
}

static int
ends_with(const char *s, const char *suffix)
{
    size_t  n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* Makes 'to' (which must not exist) a copy of the folder 'from': RocksDB's
 * immutable table and blob files are hard-linked (copied when linking is
 * impossible, e.g. across file systems), everything else (MANIFEST,
 * CURRENT, OPTIONS, which RocksDB may rewrite) is copied. */
int
tide__dir_copy_links(const char *from, const char *to, char *err,
                     size_t errlen)
{
    DIR            *d;
    struct dirent  *de;
    struct stat     st;
    char            src[PATH_MAX], dst[PATH_MAX];
    int             rc = TIDE_OK;

    d = opendir(from);
    if (d == NULL) {
        return tide__set_err(err, errlen,
                             errno == ENOENT ? TIDE_ENOENT : TIDE_EIO,
                             "cannot open snapshot %s: %s", from,
                             strerror(errno));
    }
    if (mkdir(to, 0755) != 0) {
        closedir(d);
        return tide__set_err(err, errlen, TIDE_EIO, "cannot create %s: %s", to,
                             strerror(errno));
    }
    while (rc == TIDE_OK && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0) {
            continue;
        }
        if (snprintf(src, sizeof(src), "%s/%s", from, de->d_name)
                >= (int) sizeof(src) ||
            snprintf(dst, sizeof(dst), "%s/%s", to, de->d_name)
                >= (int) sizeof(dst))
        {
            rc = tide__set_err(err, errlen, TIDE_EINVAL, "path too long in %s",
                               from);
            break;
        }
        if (lstat(src, &st) != 0) {
            rc = tide__set_err(err, errlen, TIDE_EIO, "%s: %s", src,
                               strerror(errno));
        } else if (S_ISDIR(st.st_mode)) {
            rc = tide__dir_copy_links(src, dst, err, errlen);
        } else if (!S_ISREG(st.st_mode)) {
            continue;
        } else if ((ends_with(src, ".sst") || ends_with(src, ".blob")) &&
                   link(src, dst) == 0)
        {
            continue;
        } else if (copy_file(src, dst) != 0) {
            rc = tide__set_err(err, errlen, TIDE_EIO, "cannot copy %s to %s: "
                               "%s", src, dst, strerror(errno));
        }
    }
    closedir(d);
    if (rc == TIDE_OK && fsync_path(to) != 0) {
        rc = tide__set_err(err, errlen, TIDE_EIO, "cannot fsync %s: %s", to,
                           strerror(errno));
    }
    return rc;
}

/* Puts the folder 'tmp' in the place of 'dir' and removes what 'dir' held
 * before. With an existing 'dir' the two are exchanged atomically
 * (renameat2), so a crash leaves either the old or the new folder at
 * 'dir', never none; file systems without the exchange fall back to
 * remove-then-rename. The parent folder is fsync'ed. */
int
tide__dir_swap_in(const char *tmp, const char *dir, char *err, size_t errlen)
{
    char         parent[PATH_MAX];
    char        *slash;
    int          rc;

    if (tide__path_exists(dir)) {
        if (renameat2(AT_FDCWD, tmp, AT_FDCWD, dir, RENAME_EXCHANGE) != 0) {
            if (errno != EINVAL && errno != ENOSYS) {
                return tide__set_err(err, errlen, TIDE_EIO, "cannot replace "
                                     "%s with %s: %s", dir, tmp,
                                     strerror(errno));
            }
            rc = tide_path_remove(dir, err, errlen);
            if (rc != TIDE_OK) {
                return rc;
            }
            if (rename(tmp, dir) != 0) {
                return tide__set_err(err, errlen, TIDE_EIO, "cannot rename %s "
                                     "to %s: %s", tmp, dir, strerror(errno));
            }
        } else {
            /* 'tmp' now holds the old folder. */
            rc = tide_path_remove(tmp, err, errlen);
            if (rc != TIDE_OK) {
                return rc;
            }
        }
    } else if (rename(tmp, dir) != 0) {
        return tide__set_err(err, errlen, TIDE_EIO, "cannot rename %s to %s: "
                             "%s", tmp, dir, strerror(errno));
    }
    snprintf(parent, sizeof(parent), "%s", dir);
    slash = strrchr(parent, '/');
    if (slash == parent) {
        slash[1] = '\0';
    } else if (slash != NULL) {
        *slash = '\0';
    } else {
        snprintf(parent, sizeof(parent), ".");
    }
    if (fsync_path(parent) != 0) {
        return tide__set_err(err, errlen, TIDE_EIO, "cannot fsync %s: %s",
                             parent, strerror(errno));
    }
    return TIDE_OK;
}

