/*
 * test_flush.c - dp_flush while other threads keep submitting: everything
 * submitted before the call is at the intake when it returns, round after
 * round, and nothing the background threads had accepted is lost.
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>

#include "dp_test.h"

#define NBG 2
#define ROUNDS 5
#define PER_ROUND 1000

struct bg {
    dp_pipeline *p;
    atomic_bool *stop;
    uint64_t accepted;
};

static void *background(void *arg)
{
    struct bg *b = arg;
    while (!atomic_load(b->stop)) {
        int rc = dp_submit(b->p, "dp.bg:1|c\n", 10);
        if (rc == 0)
            b->accepted++;
        else if (rc == DP_EFULL)
            sched_yield();
        else
            cr_assert_fail("dp_submit: %s", dp_strerror(rc));
    }
    return NULL;
}

Test(flush, delivers_everything_before_the_call, .timeout = 120)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    dp_pipeline *p = dpt_start(ti, NULL);
    atomic_bool stop = false;
    struct bg b[NBG];
    pthread_t th[NBG];
    for (int i = 0; i < NBG; i++) {
        b[i] = (struct bg){p, &stop, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, background, &b[i]), 0);
    }
    for (int r = 0; r < ROUNDS; r++) {
        char tags[16];
        snprintf(tags, sizeof(tags), "round:%d", r);
        const char *t[] = {tags};
        /* the background threads fill the queue: retry what it refuses */
        int rc;
        for (int i = 0; i < PER_ROUND; i++) {
            while ((rc = dp_count(p, "dp.before", 1, t, 1, 1)) == DP_EFULL)
                sched_yield();
            cr_assert_eq(rc, 0);
        }
        while ((rc = dp_gauge(p, "dp.round", r, NULL, 0, 1)) == DP_EFULL)
            sched_yield();
        cr_assert_eq(rc, 0);
        rc = dp_flush(p, 30000);
        cr_assert_eq(rc, 0, "round %d: %s", r, dp_strerror(rc));
        /* no waiting: already at the intake */
        cr_assert_eq(dpt_sum(ti, "dp.before", tags), (double)PER_ROUND,
                     "round %d", r);
        struct ti_point pts[16];
        size_t n = ti_series_points(ti, "dp.round", "", pts, 16, NULL);
        cr_assert_eq(n, (size_t)r + 1);
        cr_assert_eq(pts[n - 1].value, (double)r);
    }
    atomic_store(&stop, true);
    uint64_t accepted = 0;
    for (int i = 0; i < NBG; i++) {
        pthread_join(th[i], NULL);
        accepted += b[i].accepted;
    }
    struct dp_stats st;
    cr_assert_eq(dp_stop(p, 5000, &st, sizeof(st)), 0);
    cr_assert_eq(st.dropped_payloads, 0);
    cr_assert_gt(accepted, 0);
    cr_assert_eq(dpt_sum(ti, "dp.bg", ""), (double)accepted);
    ti_stop(ti);
}

/* Flushes from several threads at once are all served. */
static void *flusher(void *arg)
{
    dp_pipeline *p = arg;
    for (int i = 0; i < 20; i++)
        cr_assert_eq(dp_flush(p, 30000), 0);
    return NULL;
}

Test(flush, concurrent_callers)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    dp_pipeline *p = dpt_start(ti, NULL);
    pthread_t th[3];
    cr_assert_eq(dp_count(p, "dp.once", 5, NULL, 0, 1), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, flusher, p), 0);
    for (int i = 0; i < 3; i++)
        pthread_join(th[i], NULL);
    cr_assert_eq(dpt_sum(ti, "dp.once", ""), 5.0);
    cr_assert_eq(dp_stop(p, 2000, NULL, 0), 0);
    ti_stop(ti);
}
