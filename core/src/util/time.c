/* Clocks in milliseconds (tide_time_get). */
#include "tide.h"

#include <time.h>

int64_t
tide_time_get(int clock)
{
    struct timespec  ts;
    clockid_t        id;

    switch (clock) {
    case TIDE_TIME_MONO:
        id = CLOCK_MONOTONIC;
        break;
    case TIDE_TIME_REAL:
        id = CLOCK_REALTIME;
        break;
    default:
        return TIDE_EINVAL;
    }
    /* clock_gettime cannot fail for these two clocks. */
    (void) clock_gettime(id, &ts);
    return (int64_t) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
