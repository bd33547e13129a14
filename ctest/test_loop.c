/*
 * The container loop's contract, without Lua: handles and their errors,
 * signals turned into event bits (raised here, or sent by another
 * process while a poll waits), the wait bounded by its timeout, and the
 * clocks.
 */
#include "tide.h"

#include "ctest.h"

#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
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
    RUN(test_clocks);
    return 0;
}
