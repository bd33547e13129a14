/*
 * The container loop: a libuv loop whose only job, for now, is to turn
 * SIGINT, SIGTERM and SIGHUP into event bits and to wait with a timeout.
 * Lua drives it (tide_loop_poll between batches); libuv's callbacks only
 * set bits in the struct, so nothing here ever calls into Lua.
 */
#include "tide.h"

#include <signal.h>
#include <stdlib.h>

#include <uv.h>

enum {
    WATCH_INT = 0,
    WATCH_TERM,
    WATCH_HUP,
    WATCH_COUNT
};

struct tide_loop_s {
    uv_loop_t    uv;
    uv_signal_t  sig[WATCH_COUNT];
    uv_timer_t   timer;          /* bounds the wait of a poll */
    int          events;         /* TIDE_LOOP_* bits not yet polled */
    int          timed_out;      /* the current poll's timer fired */
    int          nopen;          /* handles initialised, not yet closed */
};

static void
on_signal(uv_signal_t *h, int signum)
{
    tide_loop_t  *l = h->data;

    l->events |= signum == SIGHUP ? TIDE_LOOP_RELOAD : TIDE_LOOP_STOP;
}

static void
on_timer(uv_timer_t *h)
{
    tide_loop_t  *l = h->data;

    l->timed_out = 1;
}

static void
on_close(uv_handle_t *h)
{
    tide_loop_t  *l = h->data;

    l->nopen--;
}

/* Closes every handle that was initialised, runs the loop until libuv
 * has called every close callback, then closes the loop itself. */
static void
handle_close(uv_handle_t *h)
{
    if (h->data != NULL && !uv_is_closing(h)) {
        uv_close(h, on_close);
    }
}

static void
loop_close(tide_loop_t *l)
{
    int  i;

    for (i = 0; i < WATCH_COUNT; i++) {
        handle_close((uv_handle_t *) &l->sig[i]);
    }
    handle_close((uv_handle_t *) &l->timer);
    while (l->nopen > 0) {
        uv_run(&l->uv, UV_RUN_NOWAIT);
    }
    /* Every handle is closed, so this cannot fail with UV_EBUSY. */
    (void) uv_loop_close(&l->uv);
}

int
tide_loop_new(tide_loop_t **out)
{
    static const int  signums[WATCH_COUNT] = { SIGINT, SIGTERM, SIGHUP };
    tide_loop_t      *l;
    int               i;

    if (out == NULL) {
        return TIDE_EINVAL;
    }
    *out = NULL;

    /* calloc: a handle whose 'data' is still NULL was never initialised,
     * which loop_close relies on after a partial set-up. */
    l = calloc(1, sizeof(*l));
    if (l == NULL) {
        return TIDE_ENOMEM;
    }
    if (uv_loop_init(&l->uv) != 0) {
        free(l);
        return TIDE_EIO;
    }

    if (uv_timer_init(&l->uv, &l->timer) != 0) {
        goto fail;
    }
    l->timer.data = l;
    l->nopen++;

    for (i = 0; i < WATCH_COUNT; i++) {
        if (uv_signal_init(&l->uv, &l->sig[i]) != 0) {
            goto fail;
        }
        l->sig[i].data = l;
        l->nopen++;
        if (uv_signal_start(&l->sig[i], on_signal, signums[i]) != 0) {
            goto fail;
        }
    }

    *out = l;
    return TIDE_OK;

fail:
    loop_close(l);
    free(l);
    return TIDE_EIO;
}

void
tide_loop_free(tide_loop_t *l)
{
    if (l == NULL) {
        return;
    }
    loop_close(l);
    free(l);
}

int
tide_loop_poll(tide_loop_t *l, int timeout_ms)
{
    int  events;

    if (l == NULL || timeout_ms < 0) {
        return TIDE_EINVAL;
    }

    /* Collect what is already there (a signal that arrived since the last
     * poll sits in libuv's signal pipe until the loop runs). */
    uv_run(&l->uv, UV_RUN_NOWAIT);

    if (l->events == 0 && timeout_ms > 0) {
        /* UV_RUN_ONCE returns after one round of callbacks: the timer's,
         * a signal's, or none after an interrupted wait; hence the loop.
         * uv_timer_start cannot fail on an initialised, open timer. */
        l->timed_out = 0;
        (void) uv_timer_start(&l->timer, on_timer, (uint64_t) timeout_ms, 0);
        while (l->events == 0 && !l->timed_out) {
            uv_run(&l->uv, UV_RUN_ONCE);
        }
        (void) uv_timer_stop(&l->timer);
    }

    events = l->events;
    l->events = 0;
    return events;
}
