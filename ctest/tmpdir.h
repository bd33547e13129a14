/*
 * Scratch folders for the C tests: tmp_new() makes a fresh folder under
 * $TIDE_TMP (set by CTest) or /tmp, tmp_free() removes it with all it
 * holds. Include after ctest.h; each test is its own executable, hence
 * static functions in a header.
 */
#ifndef TIDE_CTEST_TMPDIR_H
#define TIDE_CTEST_TMPDIR_H

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *
tmp_new(void)
{
    const char  *base = getenv("TIDE_TMP");
    char         path[4096];
    char        *dir;

    if (base == NULL || base[0] == '\0') {
        base = "/tmp";
    }
    if (mkdir(base, 0755) != 0) {
        ASSERT_EQ(errno, EEXIST);
    }
    snprintf(path, sizeof(path), "%s/tide-test-XXXXXX", base);
    dir = strdup(path);
    ASSERT(dir != NULL);
    ASSERT(mkdtemp(dir) != NULL);
    return dir;
}

static int
tmp_rm_one(const char *path, const struct stat *st, int flag,
           struct FTW *ftw)
{
    (void) st;
    (void) ftw;
    return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static void
tmp_free(char *dir)
{
    ASSERT_OK(nftw(dir, tmp_rm_one, 16, FTW_DEPTH | FTW_PHYS));
    free(dir);
}

#endif
