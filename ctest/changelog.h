/*
 * A changelog stream for store tests: compacted, no fsync, named
 * "changelog" under data dir 'dir'. Include after ctest.h.
 */
#ifndef TIDE_CTEST_CHANGELOG_H
#define TIDE_CTEST_CHANGELOG_H

#include <string.h>

static tide_log_t *
log_open(const char *dir, int32_t partitions)
{
    tide_log_params_t  p;
    tide_log_t        *log;
    char               err[256];

    memset(&p, 0, sizeof(p));
    p.mode = TIDE_LOG_CREATE;
    p.partitions = partitions;
    p.fsync = TIDE_FSYNC_NONE;
    p.compact = 1;
    ASSERT_OK(tide_log_new(&log, dir, "changelog", &p, err, sizeof(err)));
    return log;
}

#endif
