/*
 * dsd_loop.h - loop and socket helpers shared by the listener tests
 * (test_listeners.c, test_uds_safety.c).
 */
#ifndef DP_TEST_DSD_LOOP_H
#define DP_TEST_DSD_LOOP_H

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include <uv.h>

static inline void dl_tick(uv_timer_t *t)
{
    (void)t;
}

/* Runs loop until *counter >= want, or about 10 s (a hang guard, not a
 * speed assertion). */
static inline void dl_run_until(uv_loop_t *loop, const uint64_t *counter,
                                uint64_t want)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, dl_tick, 5, 5);
    for (int i = 0; i < 2000 && *counter < want; i++)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

/* Runs n loop iterations (each at most ~2 ms) for effects that have no
 * counter, like a close reaching the peer. */
static inline void dl_run_rounds(uv_loop_t *loop, int n)
{
    uv_timer_t t;
    uv_timer_init(loop, &t);
    uv_timer_start(&t, dl_tick, 2, 2);
    for (int i = 0; i < n; i++)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static inline void dl_unix_addr(struct sockaddr_un *a, const char *path)
{
    memset(a, 0, sizeof(*a));
    a->sun_family = AF_UNIX;
    snprintf(a->sun_path, sizeof(a->sun_path), "%s", path);
}

#endif /* DP_TEST_DSD_LOOP_H */
