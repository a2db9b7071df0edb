/*
 * test_stop.c - the draining stop: wait-for-inflight on and off, a hung
 * intake bounded by the deadline, prompt retries while draining, refusal
 * after stop, and clean closes in every state.
 */
#include "fwd_test.h"

struct env {
    uv_loop_t loop;
    struct ti *ti;
    struct fwd *f;
    struct fwd_config cfg;
    size_t live0; /* cmn bytes live before the test */
};

static const char *const key1[] = {"stop-key-00000000000000000000001"};

static void env_start(struct env *e, const struct ti_plan *plan)
{
    memset(e, 0, sizeof(*e));
    e->live0 = cmn_alloc_live_bytes();
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    cr_assert_eq(ti_start(&e->ti), 0);
    if (plan != NULL)
        ti_set_plan(e->ti, plan);
    cfg_one(&e->cfg, ti_url(e->ti), key1, 1);
}

static void env_fwd(struct env *e)
{
    cr_assert_eq(fwd_create(&e->loop, &e->cfg, &e->f), 0);
    start_ready(&e->loop, e->f);
}

static void env_free(struct env *e)
{
    fwd_destroy(e->f);
    fwd_config_free(&e->cfg);
    ti_stop(e->ti);
    cr_assert_eq(uv_loop_close(&e->loop), 0);
    cr_assert_eq(cmn_alloc_live_bytes(), e->live0, "leaked %zu bytes",
                 cmn_alloc_live_bytes() - e->live0);
}

static bool got_request(void *arg)
{
    struct env *e = arg;
    return ti_request_count(e->ti) >= 1;
}

/* Slow intake (300 ms): with wait_for_inflight the request in flight at
 * stop is delivered. */
Test(stop, wait_for_inflight_on_delivers)
{
    struct env e;
    struct ti_plan plan = {.delay_ms = 300, .count = TI_ALL};
    struct fwd_stats st;

    env_start(&e, &plan);
    e.cfg.stop_wait_for_inflight = true;
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "in", 2)), 0);
    cr_assert(run_until(&e.loop, got_request, &e, 5000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.inflight, 1);
    stop_and_wait(&e.loop, e.f, 5000);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    cr_assert_eq(st.abandoned, 0);
    assert_accounted(&st);
    env_free(&e);
}

/* Same, wait_for_inflight off: the request is cancelled as the Agent does
 * and counted as abandoned; the queued one is still sent. */
Test(stop, wait_for_inflight_off_cancels)
{
    struct env e;
    struct ti_plan plan = {.delay_ms = 300, .count = 1};
    struct fwd_stats st;

    env_start(&e, &plan);
    e.cfg.stop_wait_for_inflight = false;
    e.cfg.max_concurrent = 1;
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "in", 2)), 0);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "q", 1)), 0);
    cr_assert(run_until(&e.loop, got_request, &e, 5000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.inflight, 1);
    cr_assert_eq(st.queued, 1);
    stop_and_wait(&e.loop, e.f, 5000);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.abandoned, 1);
    cr_assert_eq(st.delivered, 1);
    assert_accounted(&st);
    /* the delivered one is the queued payload */
    const struct ti_request *last =
        ti_request_get(e.ti, ti_request_count(e.ti) - 1);
    cr_assert_eq(last->body_len, 1);
    cr_assert_eq(last->body[0], 'q');
    env_free(&e);
}

/* A hung intake: stop returns at its deadline, every transaction
 * abandoned. The assertion is on the bound, with slack for a busy box. */
Test(stop, hung_intake_stops_at_deadline)
{
    struct env e;
    struct ti_plan plan = {.fault = TI_FAULT_HANG, .count = TI_ALL};
    struct fwd_stats st;
    struct capture cap;
    char *log;

    env_start(&e, &plan);
    e.cfg.stop_wait_for_inflight = true;
    e.cfg.max_concurrent = 2;
    env_fwd(&e);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "h", 1)),
                     0);
    cr_assert(run_until(&e.loop, got_request, &e, 5000));
    capture_start(&cap);
    double ms = stop_and_wait(&e.loop, e.f, 300);
    log = capture_end(&cap);
    cr_assert(ms >= 299.0, "stopped after %.1f ms, before the deadline", ms);
    cr_assert(ms < 300.0 + 700.0, "stopped after %.1f ms", ms);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.abandoned, 3);
    cr_assert_eq(st.delivered, 0);
    assert_accounted(&st);
    cr_assert_not_null(strstr(log, "abandoned=3"), "%s", log);
    cmn_free(log);
    env_free(&e);
}

/* The stop budget is min(stop_timeout, deadline_ms). */
Test(stop, stop_timeout_bounds_the_deadline)
{
    struct env e;
    struct ti_plan plan = {.fault = TI_FAULT_HANG, .count = TI_ALL};
    struct fwd_stats st;

    env_start(&e, &plan);
    e.cfg.stop_wait_for_inflight = true;
    e.cfg.stop_timeout_s = 0.2;
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "h", 1)), 0);
    cr_assert(run_until(&e.loop, got_request, &e, 5000));
    double ms = stop_and_wait(&e.loop, e.f, 60000);
    cr_assert(ms >= 199.0 && ms < 200.0 + 700.0, "%.1f ms", ms);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.abandoned, 1);
    env_free(&e);
}

/* While draining, a failed attempt is retried within tens of ms instead
 * of the 32-64 s backoff the endpoint earned. */
Test(stop, drain_retries_promptly)
{
    struct env e;
    struct ti_plan plan = {.status = 503, .count = 3};
    struct fwd_stats st;

    env_start(&e, &plan);
    e.cfg.backoff_base = 32;
    e.cfg.backoff_max = 64;
    /* the intake may have answered the first 503 before the forwarder has
     * read it: the request can still be in flight when stop begins, and
     * must then finish (and be retried), not be cancelled */
    e.cfg.stop_wait_for_inflight = true;
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "d", 1)), 0);
    cr_assert(run_until(&e.loop, got_request, &e, 5000));
    /* the endpoint is now blocked for >= 32 s */
    stop_and_wait(&e.loop, e.f, 1500);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    cr_assert_eq(st.retried, 3);
    cr_assert_eq(ti_request_count(e.ti), 4);
    assert_accounted(&st);
    env_free(&e);
}

/* Queued payloads are sent by the drain: 20 payloads, 10 at a time. */
Test(stop, drain_sends_everything_queued)
{
    struct env e;
    struct fwd_stats st;

    env_start(&e, NULL);
    e.cfg.stop_wait_for_inflight = true;
    env_fwd(&e);
    for (int i = 0; i < 20; i++)
        cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "s", 1)),
                     0);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.inflight, 10);
    cr_assert_eq(st.queued, 10);
    stop_and_wait(&e.loop, e.f, 5000);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 20);
    cr_assert_eq(ti_request_count(e.ti), 20);
    assert_accounted(&st);
    env_free(&e);
}

Test(stop, submit_after_stop_is_refused)
{
    struct env e;
    struct fwd_stats st;
    struct stop_ctx s = {0, 0};

    env_start(&e, NULL);
    env_fwd(&e);
    fwd_stop(e.f, cmn_deadline_in_ms(1000), stopped_cb, &s);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "x", 1)),
                 CMN_ESTOPPED);
    fwd_sink_submit(e.f, payload_bytes(FWD_KIND_SERIES, "y", 1));
    fwd_stop(e.f, cmn_deadline_in_ms(1000), stopped_cb,
             &s); /* second call ignored */
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_assert_eq(s.calls, 1);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.dropped_stopped, 2);
    cr_assert_eq(st.submitted, 0);
    cr_assert_eq(ti_request_count(e.ti), 0);
    env_free(&e);
}

Test(stop, never_started)
{
    uv_loop_t loop;
    struct fwd_config cfg;
    struct fwd *f;
    struct stop_ctx s = {0, 0};
    static const char *const k[] = {"k"};

    cr_assert_eq(uv_loop_init(&loop), 0);
    cfg_one(&cfg, "http://127.0.0.1:9", k, 1);
    cr_assert_eq(fwd_create(&loop, &cfg, &f), 0);
    fwd_stop(f, cmn_deadline_in_ms(100), stopped_cb, &s);
    cr_assert_eq(s.calls, 1);
    fwd_destroy(f);
    fwd_destroy(NULL);
    fwd_config_free(&cfg);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* No endpoint (no API key): payloads are counted as dropped_other and
 * stop completes at once. */
Test(stop, no_endpoint)
{
    uv_loop_t loop;
    struct fwd_config cfg;
    struct fwd *f;
    struct fwd_stats st;

    cr_assert_eq(uv_loop_init(&loop), 0);
    fwd_config_defaults(&cfg);
    cr_assert_eq(fwd_create(&loop, &cfg, &f), 0);
    cr_assert_eq(fwd_start(f), 0);
    cr_assert_eq(fwd_submit(f, payload_bytes(FWD_KIND_SERIES, "x", 1)), 0);
    stop_and_wait(&loop, f, 1000);
    fwd_get_stats(f, &st);
    cr_assert_eq(st.dropped_other, 1);
    cr_assert_eq(st.transactions, 0);
    fwd_destroy(f);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* A refused connection (nothing listens) is a network error: retried, then
 * abandoned at the deadline. Port 9 on loopback is assumed closed. */
Test(stop, connection_refused_is_retried_then_abandoned)
{
    uv_loop_t loop;
    struct fwd_config cfg;
    struct fwd *f;
    struct fwd_stats st;
    static const char *const k[] = {"refused-key-0000000000000000000"};
    struct ti *ti;

    /* find a closed port: start and stop an intake */
    cr_assert_eq(ti_start(&ti), 0);
    char url[64];
    snprintf(url, sizeof(url), "%s", ti_url(ti));
    ti_stop(ti);
    cr_assert_eq(uv_loop_init(&loop), 0);
    cfg_one(&cfg, url, k, 1);
    cfg.stop_wait_for_inflight = true;
    cr_assert_eq(fwd_create(&loop, &cfg, &f), 0);
    start_ready(&loop, f);
    cr_assert_eq(fwd_submit(f, payload_bytes(FWD_KIND_SERIES, "x", 1)), 0);
    stop_and_wait(&loop, f, 150);
    fwd_get_stats(f, &st);
    cr_assert(st.retried >= 1);
    cr_assert_eq(st.abandoned, 1);
    assert_accounted(&st);
    fwd_destroy(f);
    fwd_config_free(&cfg);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

static void destroy_in_cb(void *data)
{
    struct fwd **f = data;
    fwd_destroy(*f);
    *f = NULL;
}

/* The stop callback may destroy the forwarder (nothing touches it after). */
Test(stop, destroy_from_stop_callback)
{
    struct env e;

    env_start(&e, NULL);
    e.cfg.stop_wait_for_inflight = true;
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "c", 1)), 0);
    fwd_stop(e.f, cmn_deadline_in_ms(2000), destroy_in_cb, &e.f);
    uv_run(&e.loop, UV_RUN_DEFAULT);
    cr_assert_null(e.f);
    cr_assert_eq(ti_request_count(e.ti), 1);
    env_free(&e); /* fwd_destroy(NULL) is a no-op */
}

/* Stop right after start, before libcurl has finished loading on the thread
 * pool: payloads queued meanwhile are either delivered (the load won the
 * race) or abandoned at the deadline, never lost or touched after free. */
Test(stop, stop_while_libcurl_loads)
{
    struct env e;
    struct fwd_stats st;

    env_start(&e, NULL);
    e.cfg.stop_wait_for_inflight = true;
    cr_assert_eq(fwd_create(&e.loop, &e.cfg, &e.f), 0);
    cr_assert_eq(fwd_start(e.f), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "s", 1)),
                     0);
    fwd_get_stats(e.f, &st);
    if (!fwd_is_ready(e.f))
        cr_assert_eq(st.queued, 3, "waiting for libcurl, not dropped");
    stop_and_wait(&e.loop, e.f, 1);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered + st.abandoned, 3);
    cr_assert_eq(st.queued, 0);
    assert_accounted(&st);
    env_free(&e);
}
