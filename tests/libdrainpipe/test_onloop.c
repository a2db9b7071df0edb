/*
 * test_onloop.c - a pipeline on the host's libuv loop (dp_start_on_loop):
 * a host timer submits, flushes with dp_flush_async and stops with
 * dp_stop_async; another thread submits meanwhile. The intake gets exact
 * sums, the callbacks come in order with the documented codes, the
 * blocking calls refuse the loop's thread, and once the host's uv_run
 * returns every handle is closed (uv_loop_close succeeds; ASan checks
 * that the pipeline was freed).
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <uv.h>

#include "dp_test.h"

#define THREAD_LINES 500

struct host {
    struct ti *ti;
    dp_pipeline *p;
    uv_timer_t timer;
    pthread_t th;
    int flushed[4]; /* statuses, in callback order */
    int nflushed;
    double sum_at_flush; /* dp.onloop at the intake in the 2nd callback */
    double thread_at_flush;
    int stop_status;
    bool stopped;
    struct dp_stats final;
    int order_error; /* a flush callback after the stop's */
};

static void *submitter(void *arg)
{
    dp_pipeline *p = arg;
    for (int i = 0; i < THREAD_LINES; i++) {
        int rc;
        while ((rc = dp_submit(p, "dp.thread:1|c\n", 14)) == DP_EFULL)
            sched_yield();
        cr_assert_eq(rc, 0);
    }
    return NULL;
}

static void on_stopped(int status, const struct dp_stats *final, void *arg)
{
    struct host *h = arg;
    h->stop_status = status;
    h->final = *final;
    h->stopped = true;
}

static void timer_closed(uv_handle_t *t)
{
    (void)t;
}

static void on_flushed(dp_pipeline *p, int status, void *arg)
{
    struct host *h = arg;
    if (h->stopped)
        h->order_error++;
    h->flushed[h->nflushed++] = status;
    if (h->nflushed < 2)
        return;
    /* both served: what was submitted before them is at the intake */
    h->sum_at_flush = dpt_sum(h->ti, "dp.onloop", "phase:one");
    h->thread_at_flush = dpt_sum(h->ti, "dp.thread", "");
    const char *t[] = {"phase:two"};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(dp_count(p, "dp.onloop", 1, t, 1, 1), 0);
    cr_assert_eq(dp_stop_async(p, 5000, on_stopped, h), 0);
    cr_assert_eq(dp_stop_async(p, 5000, on_stopped, h), DP_EBUSY);
    cr_assert_eq(dp_flush_async(p, on_flushed, h), DP_ESTOPPED);
}

static void on_timer(uv_timer_t *t)
{
    struct host *h = t->data;
    const char *tags[] = {"phase:one"};
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(dp_count(h->p, "dp.onloop", 1, tags, 1, 1), 0);
    cr_assert_eq(pthread_join(h->th, NULL), 0);
    /* the blocking calls would wait for this very thread */
    cr_assert_eq(dp_flush(h->p, 100), DP_EINVAL);
    struct dp_stats st;
    cr_assert_eq(dp_stats(h->p, &st, sizeof(st)), 0);
    cr_assert_eq(st.dropped_queue_full, 0);
    cr_assert_eq(dp_flush_async(h->p, on_flushed, h), 0);
    cr_assert_eq(dp_flush_async(h->p, on_flushed, h), 0);
    cr_assert_eq(dp_flush_async(NULL, on_flushed, h), DP_EINVAL);
    cr_assert_eq(dp_flush_async(h->p, NULL, h), DP_EINVAL);
    uv_close((uv_handle_t *)t, timer_closed);
}

static dp_pipeline *start_on(uv_loop_t *loop, struct ti *ti)
{
    dp_config *c = dpt_config(ti, NULL);
    dp_pipeline *p;
    cr_assert_eq(dp_start_on_loop(c, loop, &p), 0);
    cr_assert_eq(dp_start_on_loop(c, NULL, &p), DP_EINVAL);
    dp_config_free(c);
    return p;
}

Test(onloop, flush_and_stop_on_the_hosts_loop, .timeout = 60)
{
    uv_loop_t loop;
    struct host h = {0};
    cr_assert_eq(ti_start(&h.ti), 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    h.p = start_on(&loop, h.ti);
    cr_assert_eq(dp_stop(h.p, 100, NULL, 0), DP_EINVAL);
    cr_assert_eq(pthread_create(&h.th, NULL, submitter, h.p), 0);
    cr_assert_eq(uv_timer_init(&loop, &h.timer), 0);
    h.timer.data = &h;
    cr_assert_eq(uv_timer_start(&h.timer, on_timer, 0, 0), 0);

    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    /* nothing of the pipeline's is left on the loop */
    cr_assert_eq(uv_loop_close(&loop), 0);

    cr_assert_eq(h.nflushed, 2);
    cr_assert_eq(h.flushed[0], 0);
    cr_assert_eq(h.flushed[1], 0);
    cr_assert_eq(h.order_error, 0);
    cr_assert_eq(h.sum_at_flush, 1000.0);
    cr_assert_eq(h.thread_at_flush, (double)THREAD_LINES);
    cr_assert(h.stopped);
    cr_assert_eq(h.stop_status, 0);
    /* the stop's drain delivered what came after the flushes */
    cr_assert_eq(dpt_sum(h.ti, "dp.onloop", "phase:two"), 5.0);
    cr_assert_eq(h.final.submitted, 1000 + THREAD_LINES + 5);
    cr_assert_eq(h.final.dropped_payloads, 0);
    cr_assert_eq(h.final.queued, 0);
    ti_stop(h.ti);
}

/* A stop begun while a flush is pending: the flush's callback comes
 * first, with DP_ESTOPPED, and the stop's drain delivers its lines. */
struct race {
    dp_pipeline *p;
    int flush_status;
    int calls; /* 1: flush callback, 2: then the stop's */
    int stop_status;
};

static void race_stopped(int status, const struct dp_stats *final, void *arg)
{
    struct race *r = arg;
    (void) final;
    r->calls = r->calls * 10 + 2;
    r->stop_status = status;
}

static void race_flushed(dp_pipeline *p, int status, void *arg)
{
    struct race *r = arg;
    (void)p;
    r->calls = r->calls * 10 + 1;
    r->flush_status = status;
}

static void race_timer(uv_timer_t *t)
{
    struct race *r = t->data;
    cr_assert_eq(dp_gauge(r->p, "dp.race", 42, NULL, 0, 1), 0);
    cr_assert_eq(dp_flush_async(r->p, race_flushed, r), 0);
    cr_assert_eq(dp_stop_async(r->p, 5000, race_stopped, r), 0);
    uv_close((uv_handle_t *)t, timer_closed);
}

Test(onloop, stop_while_a_flush_is_pending, .timeout = 60)
{
    uv_loop_t loop;
    struct ti *ti;
    uv_timer_t timer;
    struct race r = {0};
    cr_assert_eq(ti_start(&ti), 0);
    cr_assert_eq(uv_loop_init(&loop), 0);
    r.p = start_on(&loop, ti);
    cr_assert_eq(uv_timer_init(&loop, &timer), 0);
    timer.data = &r;
    cr_assert_eq(uv_timer_start(&timer, race_timer, 0, 0), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_eq(r.calls, 12);
    cr_assert_eq(r.flush_status, DP_ESTOPPED);
    cr_assert_eq(r.stop_status, 0);
    struct ti_point pts[4];
    cr_assert_eq(ti_series_points(ti, "dp.race", "", pts, 4, NULL), 1);
    cr_assert_eq(pts[0].value, 42.0);
    ti_stop(ti);
}

/* A start that fails (the UDP port is taken) returns the bind error; what
 * it had set up on the host's loop goes on the loop's next iterations. */
Test(onloop, failed_start_leaves_nothing_on_the_loop, .timeout = 60)
{
    uv_loop_t loop;
    uv_udp_t taken;
    struct sockaddr_in a;
    struct sockaddr_storage got;
    int len = sizeof(got);
    char port[16];
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(uv_udp_init(&loop, &taken), 0);
    cr_assert_eq(uv_ip4_addr("127.0.0.1", 0, &a), 0);
    cr_assert_eq(uv_udp_bind(&taken, (const struct sockaddr *)&a, 0), 0);
    cr_assert_eq(uv_udp_getsockname(&taken, (struct sockaddr *)&got, &len), 0);
    snprintf(port, sizeof(port), "%d",
             ntohs(((struct sockaddr_in *)&got)->sin_port));

    dp_config *c;
    dp_pipeline *p = NULL;
    cr_assert_eq(dp_config_new(&c), 0);
    cr_assert_eq(dp_config_set(c, "bind_host", "127.0.0.1"), 0);
    cr_assert_eq(dp_config_set(c, "dogstatsd_port", port), 0);
    cr_assert_eq(dp_start_on_loop(c, &loop, &p), UV_EADDRINUSE);
    cr_assert_null(p);
    dp_config_free(c);
    uv_close((uv_handle_t *)&taken, NULL);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
