/*
 * tide_log_publish (records readable before the flush) and tide_notify_*
 * (a reader woken by another process's append). The other process is a
 * fork with its own log handle, as another 'tide' would be.
 */
#include "tide.h"

#include "ctest.h"
#include "tmpdir.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static tide_log_t *
log_open(const char *dir, int32_t partitions)
{
    tide_log_params_t  p;
    tide_log_t        *log;
    char               err[256];

    memset(&p, 0, sizeof(p));
    p.mode = TIDE_LOG_CREATE;
    p.partitions = partitions;
    if (tide_log_new(&log, dir, "s", &p, err, sizeof(err)) != TIDE_OK) {
        fprintf(stderr, "tide_log_new: %s\n", err);
        ASSERT(0);
    }
    return log;
}

static void
push(tide_log_t *log, int32_t partition, const char *val)
{
    tide_rec_t  rec;

    memset(&rec, 0, sizeof(rec));
    rec.partition = partition;
    rec.klen = -1;
    rec.val = val;
    rec.vlen = (int32_t) strlen(val);
    ASSERT_OK(tide_log_push(log, &rec));
}

/* In a fork: opens its own handle and reads partition 'partition' from
 * the start; exits 0 when it finds exactly 'want' records, the first of
 * value 'first', else 1. */
static pid_t
read_elsewhere(const char *dir, int32_t partition, int want,
               const char *first)
{
    pid_t  pid = fork();

    ASSERT(pid >= 0);
    if (pid == 0) {
        tide_log_t     *log;
        tide_reader_t  *r;
        tide_rec_t      rec;
        char            err[256];
        int             n = 0, ok = 1;

        if (tide_log_new(&log, dir, "s", NULL, err, sizeof(err)) != TIDE_OK
            || tide_reader_new(&r, log, partition, TIDE_OFFSET_BEGINNING)
               != TIDE_OK)
        {
            _exit(2);
        }
        while (tide_reader_poll(r, &rec) == TIDE_OK) {
            if (n == 0) {
                ok = rec.vlen == (int32_t) strlen(first) &&
                     memcmp(rec.val, first, (size_t) rec.vlen) == 0;
            }
            n++;
        }
        _exit(ok && n == want ? 0 : 1);
    }
    return pid;
}

static int
exit_code(pid_t pid)
{
    int  st;

    ASSERT_EQ(waitpid(pid, &st, 0), pid);
    ASSERT(WIFEXITED(st));
    return WEXITSTATUS(st);
}

static void
test_publish(void)
{
    char        *dir = tmp_new();
    tide_log_t  *log = log_open(dir, 2);
    int64_t      start, end;

    push(log, 0, "one");
    push(log, 1, "uno");
    /* Buffered: another process sees nothing yet. */
    ASSERT_EQ(exit_code(read_elsewhere(dir, 0, 0, "")), 0);
    ASSERT_OK(tide_log_publish(log));
    /* Published, not flushed: readable elsewhere. */
    ASSERT_EQ(exit_code(read_elsewhere(dir, 0, 1, "one")), 0);
    ASSERT_EQ(exit_code(read_elsewhere(dir, 1, 1, "uno")), 0);
    ASSERT_OK(tide_log_publish(log));           /* nothing buffered */
    /* The flush makes them durable and writes nothing twice. */
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, 1);
    push(log, 0, "two");
    ASSERT_OK(tide_log_publish(log));
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(end, 2);
    ASSERT_EQ(exit_code(read_elsewhere(dir, 0, 2, "one")), 0);
    tide_log_free(log);
    tmp_free(dir);
}

/* Another process appends between our publishes: offsets stay dense. */
static void
test_publish_two_writers(void)
{
    char        *dir = tmp_new();
    tide_log_t  *log = log_open(dir, 1);
    int64_t      start, end;
    pid_t        pid;

    push(log, 0, "a");
    ASSERT_OK(tide_log_publish(log));
    pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        tide_log_t  *other;
        char         err[256];

        if (tide_log_new(&other, dir, "s", NULL, err, sizeof(err)) !=
            TIDE_OK)
        {
            _exit(2);
        }
        push(other, 0, "b");
        _exit(tide_log_publish(other) == TIDE_OK ? 0 : 1);
    }
    ASSERT_EQ(exit_code(pid), 0);
    push(log, 0, "c");
    ASSERT_OK(tide_log_publish(log));
    ASSERT_OK(tide_log_flush(log));
    ASSERT_OK(tide_log_get_range(log, 0, &start, &end));
    ASSERT_EQ(start, 0);
    ASSERT_EQ(end, 3);
    ASSERT_EQ(exit_code(read_elsewhere(dir, 0, 3, "a")), 0);
    tide_log_free(log);
    tmp_free(dir);
}

static void
test_notify_errors(void)
{
    char           *dir = tmp_new();
    tide_log_t     *log = log_open(dir, 2);
    tide_notify_t  *n;
    int             id = 99;

    ASSERT_EQ(tide_notify_new(NULL), TIDE_EINVAL);
    ASSERT_OK(tide_notify_new(&n));
    ASSERT(tide_notify_fd(n) >= 0);
    ASSERT_EQ(tide_notify_add(n, log, 2, &id), TIDE_ERANGE);
    ASSERT_EQ(id, 0);
    id = 99;
    ASSERT_EQ(tide_notify_add(n, log, -1, &id), TIDE_ERANGE);
    ASSERT_EQ(id, 0);
    ASSERT_EQ(tide_notify_add(n, NULL, 0, &id), TIDE_EINVAL);
    ASSERT_EQ(tide_notify_add(n, log, 0, NULL), TIDE_EINVAL);
    ASSERT_EQ(tide_notify_remove(n, 1), TIDE_ENOENT);
    ASSERT_EQ(tide_notify_remove(n, -5), TIDE_ENOENT);
    ASSERT_EQ(tide_notify_wait(n, -1), TIDE_EINVAL);
    ASSERT_EQ(tide_notify_wait(NULL, 0), TIDE_EINVAL);
    /* Nothing watched: a wait times out. */
    ASSERT_EQ(tide_notify_wait(n, 0), TIDE_EAGAIN);
    ASSERT_EQ(tide_notify_drain(n), 0);
    tide_notify_free(n);
    tide_notify_free(NULL);
    tide_log_free(log);
    tmp_free(dir);
}

/* Appends by another process 'count' records to 'partition', published
 * (not flushed) when 'publish', else flushed. */
static pid_t
append_elsewhere(const char *dir, int32_t partition, int publish)
{
    pid_t  pid = fork();

    ASSERT(pid >= 0);
    if (pid == 0) {
        tide_log_t  *other;
        char         err[256];
        int          rc;

        if (tide_log_new(&other, dir, "s", NULL, err, sizeof(err)) !=
            TIDE_OK)
        {
            _exit(2);
        }
        push(other, partition, "x");
        rc = publish ? tide_log_publish(other) : tide_log_flush(other);
        _exit(rc == TIDE_OK ? 0 : 1);
    }
    return pid;
}

static void
test_notify_wakes(void)
{
    char           *dir = tmp_new();
    tide_log_t     *log = log_open(dir, 2);
    tide_reader_t  *r;
    tide_rec_t      rec;
    tide_notify_t  *n;
    struct pollfd   pfd;
    int             id0, id0b, id1;

    ASSERT_OK(tide_notify_new(&n));
    ASSERT_OK(tide_notify_add(n, log, 0, &id0));
    ASSERT_OK(tide_notify_add(n, log, 0, &id0b));   /* the same folder */
    ASSERT(id0 != id0b);
    ASSERT_OK(tide_reader_new(&r, log, 0, TIDE_OFFSET_BEGINNING));
    ASSERT_EQ(tide_reader_poll(r, &rec), TIDE_EAGAIN);
    /* Nothing happens: the wait times out. */
    ASSERT_EQ(tide_notify_wait(n, 50), TIDE_EAGAIN);

    /* Another process appends (published, not flushed): we wake, and
     * the reader finds the record. */
    ASSERT_EQ(exit_code(append_elsewhere(dir, 0, 1)), 0);
    pfd.fd = tide_notify_fd(n);
    pfd.events = POLLIN;
    ASSERT_EQ(poll(&pfd, 1, 0), 1);
    ASSERT_OK(tide_notify_wait(n, 10000));
    ASSERT_EQ(tide_notify_wait(n, 0), TIDE_EAGAIN);   /* drained */
    ASSERT_OK(tide_reader_poll(r, &rec));
    ASSERT_EQ(rec.offset, 0);

    /* One of two adds removed: the folder is still watched. */
    ASSERT_OK(tide_notify_remove(n, id0));
    ASSERT_EQ(tide_notify_remove(n, id0), TIDE_ENOENT);
    ASSERT_EQ(exit_code(append_elsewhere(dir, 0, 0)), 0);
    ASSERT(tide_notify_drain(n) > 0);
    ASSERT_EQ(tide_notify_drain(n), 0);

    /* An append to a partition not watched wakes nobody... */
    ASSERT_EQ(exit_code(append_elsewhere(dir, 1, 1)), 0);
    ASSERT_EQ(tide_notify_wait(n, 50), TIDE_EAGAIN);
    /* ... until it is, and the last remove of partition 0 ends that. */
    ASSERT_OK(tide_notify_add(n, log, 1, &id1));
    ASSERT_OK(tide_notify_remove(n, id0b));
    ASSERT_EQ(exit_code(append_elsewhere(dir, 0, 1)), 0);
    ASSERT_EQ(tide_notify_wait(n, 50), TIDE_EAGAIN);
    ASSERT_EQ(exit_code(append_elsewhere(dir, 1, 1)), 0);
    ASSERT_OK(tide_notify_wait(n, 10000));

    tide_reader_free(r);
    tide_notify_free(n);
    tide_log_free(log);
    tmp_free(dir);
}

int
main(void)
{
    RUN(test_publish);
    RUN(test_publish_two_writers);
    RUN(test_notify_errors);
    RUN(test_notify_wakes);
    return 0;
}
