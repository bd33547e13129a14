/*
 * Minimal test harness for the C tests, modelled on libuv's test/task.h:
 * a failed check prints where and both operands, then aborts, so CTest
 * reports the test as failed and a core dump or sanitizer trace shows why.
 */
#ifndef TIDE_CTEST_H
#define TIDE_CTEST_H

#include <stdio.h>
#include <stdlib.h>

#define ASSERT(c)                                                            \
    do {                                                                     \
        if (!(c)) {                                                          \
            fprintf(stderr, "%s:%d: assertion failed: %s\n", __FILE__,       \
                    __LINE__, #c);                                           \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define ASSERT_EQ(a, b)                                                      \
    do {                                                                     \
        long long  a_ = (long long) (a), b_ = (long long) (b);               \
        if (a_ != b_) {                                                      \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n",        \
                    __FILE__, __LINE__, #a, #b, a_, b_);                     \
            abort();                                                         \
        }                                                                    \
    } while (0)

#define ASSERT_OK(rc) ASSERT_EQ((rc), 0)

#define RUN(t)                                                               \
    do {                                                                     \
        t();                                                                 \
        printf("ok - %s\n", #t);                                             \
        fflush(stdout);                                                      \
    } while (0)

#endif
