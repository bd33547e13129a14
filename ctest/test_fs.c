/*
 * The file helpers' contract, without Lua: tide_file_set (creates
 * folders, replaces whole, keeps the mode, never shows a mix of old and
 * new, leaves no temporary file, and its errors) and the process lock
 * (pid in the file, EBUSY with the holder's pid from this process or a
 * forked child, released by free and by the holder's exit).
 */
#include "tide.h"

#include "ctest.h"
#include "tmpdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SENTINEL ((tide_lock_t *) (uintptr_t) 0x1)

/* ---- helpers ------------------------------------------------------------ */

/* Reads the whole file into 'buf' (capacity 'cap'); returns its size. */
static size_t
file_get(const char *path, char *buf, size_t cap)
{
    FILE    *f = fopen(path, "rb");
    size_t   n;

    ASSERT(f != NULL);
    n = fread(buf, 1, cap, f);
    ASSERT(ferror(f) == 0);
    ASSERT(n < cap);
    fclose(f);
    return n;
}

/* Counts the entries of folder 'dir' (without . and ..). */
static int
dir_count(const char *dir)
{
    DIR            *d = opendir(dir);
    struct dirent  *e;
    int             n = 0;

    ASSERT(d != NULL);
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0) {
            n++;
        }
    }
    closedir(d);
    return n;
}

static void
file_set_ok(const char *path, const char *data, size_t len)
{
    char  err[256];
    int   rc;

    rc = tide_file_set(path, data, len, err, sizeof(err));
    if (rc != TIDE_OK) {
        fprintf(stderr, "tide_file_set: %s\n", err);
    }
    ASSERT_OK(rc);
}

/* ---- tide_file_set ------------------------------------------------------ */

static void
test_set_creates_file_and_folders(void)
{
    char  *dir = tmp_new();
    char   path[4096], buf[256];

    snprintf(path, sizeof(path), "%s/a/b/c/checkpoint.json", dir);
    file_set_ok(path, "{\"v\":1}", 7);
    ASSERT_EQ(file_get(path, buf, sizeof(buf)), 7);
    ASSERT(memcmp(buf, "{\"v\":1}", 7) == 0);

    snprintf(path, sizeof(path), "%s/a/b/c", dir);
    ASSERT_EQ(dir_count(path), 1);
    tmp_free(dir);
}

static void
test_set_replaces_whole_and_leaves_no_temp(void)
{
    char  *dir = tmp_new();
    char   path[4096], buf[256];
    char   bin[5] = { 'a', '\0', 'b', '\0', 'c' };

    snprintf(path, sizeof(path), "%s/f", dir);
    file_set_ok(path, "a much longer old content", 25);
    file_set_ok(path, "new", 3);
    ASSERT_EQ(file_get(path, buf, sizeof(buf)), 3);
    ASSERT(memcmp(buf, "new", 3) == 0);

    file_set_ok(path, bin, sizeof(bin));
    ASSERT_EQ(file_get(path, buf, sizeof(buf)), 5);
    ASSERT(memcmp(buf, bin, 5) == 0);

    /* Empty content, with and without a data pointer. */
    file_set_ok(path, NULL, 0);
    ASSERT_EQ(file_get(path, buf, sizeof(buf)), 0);
    file_set_ok(path, "", 0);
    ASSERT_EQ(file_get(path, buf, sizeof(buf)), 0);

    ASSERT_EQ(dir_count(dir), 1);
    tmp_free(dir);
}

static void
test_set_relative_path(void)
{
    char  *dir = tmp_new();
    char   cwd[4096], buf[16];
    int    fd;

    ASSERT(getcwd(cwd, sizeof(cwd)) != NULL);
    fd = open(".", O_RDONLY | O_DIRECTORY);
    ASSERT(fd >= 0);
    ASSERT_OK(chdir(dir));
    file_set_ok("plain", "x", 1);
    file_set_ok("sub/dir/nested", "yz", 2);
    ASSERT_EQ(file_get("plain", buf, sizeof(buf)), 1);
    ASSERT_EQ(file_get("sub/dir/nested", buf, sizeof(buf)), 2);
    ASSERT_OK(fchdir(fd));
    close(fd);
    ASSERT_EQ(dir_count(dir), 2);
    tmp_free(dir);
}

static void
test_set_keeps_the_mode(void)
{
    char         *dir = tmp_new();
    char          path[4096];
    struct stat   st;

    snprintf(path, sizeof(path), "%s/secret", dir);
    file_set_ok(path, "1", 1);
    ASSERT_OK(chmod(path, 0600));
    file_set_ok(path, "2", 1);
    ASSERT_OK(stat(path, &st));
    ASSERT_EQ(st.st_mode & 07777, 0600);
    tmp_free(dir);
}

static void
test_set_rejects_bad_args(void)
{
    char  *dir = tmp_new();
    char   path[4096], err[256];

    ASSERT_EQ(tide_file_set(NULL, "x", 1, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(strstr(err, "bad file path") != NULL);
    ASSERT_EQ(tide_file_set("", "x", 1, err, sizeof(err)), TIDE_EINVAL);
    snprintf(path, sizeof(path), "%s/", dir);
    ASSERT_EQ(tide_file_set(path, "x", 1, err, sizeof(err)), TIDE_EINVAL);
    snprintf(path, sizeof(path), "%s/..", dir);
    ASSERT_EQ(tide_file_set(path, "x", 1, err, sizeof(err)), TIDE_EINVAL);
    snprintf(path, sizeof(path), "%s/f", dir);
    ASSERT_EQ(tide_file_set(path, NULL, 1, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(strstr(err, "no data") != NULL);
    /* No error buffer is fine too. */
    ASSERT_EQ(tide_file_set(path, NULL, 1, NULL, 0), TIDE_EINVAL);
    ASSERT_EQ(dir_count(dir), 0);
    tmp_free(dir);
}

static void
test_set_reports_io_errors(void)
{
    char  *dir = tmp_new();
    char   path[4096], err[512], buf[64];

    /* A parent that is a file, not a folder. */
    snprintf(path, sizeof(path), "%s/file", dir);
    file_set_ok(path, "old", 3);
    snprintf(path, sizeof(path), "%s/file/child", dir);
    ASSERT_EQ(tide_file_set(path, "x", 1, err, sizeof(err)), TIDE_EIO);
    ASSERT(strstr(err, "file") != NULL);

    /* A path that is a folder: the rename fails, the temporary file is
     * removed and the folder is untouched. */
    snprintf(path, sizeof(path), "%s/folder", dir);
    ASSERT_OK(mkdir(path, 0755));
    ASSERT_EQ(tide_file_set(path, "x", 1, err, sizeof(err)), TIDE_EIO);
    ASSERT(strstr(err, "rename") != NULL);
    ASSERT_EQ(dir_count(dir), 2);
    ASSERT_EQ(dir_count(path), 0);

    snprintf(path, sizeof(path), "%s/file", dir);
    ASSERT_EQ(file_get(path, buf, sizeof(buf)), 3);
    ASSERT(memcmp(buf, "old", 3) == 0);
    tmp_free(dir);
}

/* A reader racing a writer sees only whole versions: every read of the
 * file is entirely one of the two contents. */
static void
test_set_never_shows_a_mix(void)
{
    enum { SIZE = 64 * 1024, ROUNDS = 40 };
    char    *dir = tmp_new();
    char    *a, *b, *buf;
    char     path[4096];
    pid_t    child;
    int      status, i, reads = 0;
    size_t   n;

    a = malloc(SIZE);
    b = malloc(SIZE + 1);
    buf = malloc(SIZE + 2);
    ASSERT(a != NULL && b != NULL && buf != NULL);
    memset(a, 'a', SIZE);
    memset(b, 'b', SIZE + 1);           /* differs in size too */
    snprintf(path, sizeof(path), "%s/f", dir);
    file_set_ok(path, a, SIZE);

    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        for (i = 0; i < ROUNDS; i++) {
            if (tide_file_set(path, i % 2 ? a : b, i % 2 ? SIZE : SIZE + 1,
                              NULL, 0) != TIDE_OK)
            {
                _exit(1);
            }
        }
        _exit(0);
    }
    do {
        n = file_get(path, buf, SIZE + 2);
        if (n == SIZE) {
            ASSERT(memcmp(buf, a, SIZE) == 0);
        } else {
            ASSERT_EQ(n, SIZE + 1);
            ASSERT(memcmp(buf, b, SIZE + 1) == 0);
        }
        reads++;
    } while (waitpid(child, &status, WNOHANG) == 0);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    ASSERT(reads > 0);
    /* The last round (ROUNDS - 1, odd) wrote 'a'. */
    ASSERT_EQ(file_get(path, buf, SIZE + 2), SIZE);
    ASSERT(memcmp(buf, a, SIZE) == 0);
    ASSERT_EQ(dir_count(dir), 1);
    free(a);
    free(b);
    free(buf);
    tmp_free(dir);
}

/* ---- tide_lock ---------------------------------------------------------- */

static void
lock_path(char *buf, size_t len, const char *dir)
{
    snprintf(buf, len, "%s/jobs/counter/run.lock", dir);
}

static long
lock_file_pid(const char *path)
{
    char    buf[64];
    size_t  n = file_get(path, buf, sizeof(buf));

    buf[n] = '\0';
    return n == 0 ? 0 : strtol(buf, NULL, 10);
}

static void
test_lock_writes_pid_and_releases(void)
{
    char         *dir = tmp_new();
    char          path[4096], err[256];
    tide_lock_t  *lk = SENTINEL;

    lock_path(path, sizeof(path), dir);
    ASSERT_OK(tide_lock_new(&lk, path, err, sizeof(err)));
    ASSERT(lk != NULL && lk != SENTINEL);
    ASSERT_EQ(lock_file_pid(path), getpid());
    tide_lock_free(lk);
    ASSERT_EQ(lock_file_pid(path), 0);  /* emptied, but still there */

    /* Free for the next holder. */
    ASSERT_OK(tide_lock_new(&lk, path, err, sizeof(err)));
    ASSERT_EQ(lock_file_pid(path), getpid());
    tide_lock_free(lk);
    tide_lock_free(NULL);
    tmp_free(dir);
}

static void
test_lock_busy_in_same_process(void)
{
    char         *dir = tmp_new();
    char          path[4096], err[256], want[64];
    tide_lock_t  *lk, *again = SENTINEL;

    lock_path(path, sizeof(path), dir);
    ASSERT_OK(tide_lock_new(&lk, path, err, sizeof(err)));
    ASSERT_EQ(tide_lock_new(&again, path, err, sizeof(err)), TIDE_EBUSY);
    ASSERT(again == NULL);
    snprintf(want, sizeof(want), "held by pid %ld", (long) getpid());
    ASSERT(strstr(err, want) != NULL);
    /* The failed attempt left the holder's pid in place. */
    ASSERT_EQ(lock_file_pid(path), getpid());
    tide_lock_free(lk);
    tmp_free(dir);
}

static void
test_lock_busy_in_child(void)
{
    char         *dir = tmp_new();
    char          path[4096], err[256], want[64], c;
    tide_lock_t  *lk = SENTINEL;
    pid_t         child;
    int           ready[2], done[2], status;

    lock_path(path, sizeof(path), dir);
    ASSERT_OK(pipe(ready));
    ASSERT_OK(pipe(done));
    child = fork();
    ASSERT(child >= 0);
    if (child == 0) {
        tide_lock_t  *mine;

        close(ready[0]);
        close(done[1]);
        if (tide_lock_new(&mine, path, NULL, 0) != TIDE_OK) {
            _exit(1);
        }
        c = 'r';
        if (write(ready[1], &c, 1) != 1) {
            _exit(2);
        }
        /* Hold the lock until the parent closes its end. */
        while (read(done[0], &c, 1) > 0) {
        }
        _exit(0);               /* exiting releases the lock */
    }
    close(ready[1]);
    close(done[0]);
    ASSERT_EQ(read(ready[0], &c, 1), 1);

    ASSERT_EQ(tide_lock_new(&lk, path, err, sizeof(err)), TIDE_EBUSY);
    ASSERT(lk == NULL);
    snprintf(want, sizeof(want), "held by pid %ld", (long) child);
    ASSERT(strstr(err, want) != NULL);

    close(done[1]);
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    close(ready[0]);

    ASSERT_OK(tide_lock_new(&lk, path, err, sizeof(err)));
    ASSERT_EQ(lock_file_pid(path), getpid());
    tide_lock_free(lk);
    tmp_free(dir);
}

static void
test_lock_rejects_bad_args(void)
{
    char         *dir = tmp_new();
    char          path[4096], err[256];
    tide_lock_t  *lk = SENTINEL;

    lock_path(path, sizeof(path), dir);
    ASSERT_EQ(tide_lock_new(NULL, path, err, sizeof(err)), TIDE_EINVAL);
    ASSERT_EQ(tide_lock_new(&lk, NULL, err, sizeof(err)), TIDE_EINVAL);
    ASSERT(lk == NULL);
    lk = SENTINEL;
    ASSERT_EQ(tide_lock_new(&lk, "", err, sizeof(err)), TIDE_EINVAL);
    ASSERT(lk == NULL);
    ASSERT(strstr(err, "bad lock path") != NULL);
    ASSERT_EQ(dir_count(dir), 0);
    tmp_free(dir);
}

static void
test_lock_reports_io_errors(void)
{
    char         *dir = tmp_new();
    char          path[4096], err[512];
    tide_lock_t  *lk = SENTINEL;

    /* The path is a folder. */
    snprintf(path, sizeof(path), "%s/folder", dir);
    ASSERT_OK(mkdir(path, 0755));
    ASSERT_EQ(tide_lock_new(&lk, path, err, sizeof(err)), TIDE_EIO);
    ASSERT(lk == NULL);
    ASSERT(strstr(err, "cannot open lock") != NULL);

    /* A parent is a file. */
    snprintf(path, sizeof(path), "%s/file", dir);
    file_set_ok(path, "x", 1);
    snprintf(path, sizeof(path), "%s/file/run.lock", dir);
    lk = SENTINEL;
    ASSERT_EQ(tide_lock_new(&lk, path, err, sizeof(err)), TIDE_EIO);
    ASSERT(lk == NULL);
    tmp_free(dir);
}

int
main(void)
{
    RUN(test_set_creates_file_and_folders);
    RUN(test_set_replaces_whole_and_leaves_no_temp);
    RUN(test_set_relative_path);
    RUN(test_set_keeps_the_mode);
    RUN(test_set_rejects_bad_args);
    RUN(test_set_reports_io_errors);
    RUN(test_set_never_shows_a_mix);
    RUN(test_lock_writes_pid_and_releases);
    RUN(test_lock_busy_in_same_process);
    RUN(test_lock_busy_in_child);
    RUN(test_lock_rejects_bad_args);
    RUN(test_lock_reports_io_errors);
    return 0;
}
