/*
 * test_deliver.c - what reaches the intake: exact bytes and headers, dual
 * shipping, retries, drops by status, eviction, backoff bounds, warm start.
 */
#include <zstd.h>

#include "fwd_test.h"

struct env {
    uv_loop_t loop;
    struct ti *ti;
    struct fwd *f;
    struct fwd_config cfg;
    size_t live0;  /* cmn bytes live before the test */
    uint64_t want; /* delivered_n target */
};

static void env_start(struct env *e, const char *const *keys, size_t nkeys)
{
    memset(e, 0, sizeof(*e));
    e->live0 = cmn_alloc_live_bytes();
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    cr_assert_eq(ti_start(&e->ti), 0);
    cfg_one(&e->cfg, ti_url(e->ti), keys, nkeys);
}

static void env_fwd(struct env *e)
{
    cr_assert_eq(fwd_create(&e->loop, &e->cfg, &e->f), 0);
    start_ready(&e->loop, e->f);
}

static void env_end(struct env *e)
{
    struct fwd_stats st;
    stop_and_wait(&e->loop, e->f, 2000);
    fwd_get_stats(e->f, &st);
    assert_accounted(&st);
    fwd_destroy(e->f);
    fwd_config_free(&e->cfg);
    ti_stop(e->ti);
    cr_assert_eq(uv_loop_close(&e->loop), 0);
    cr_assert_eq(cmn_alloc_live_bytes(), e->live0, "leaked %zu bytes",
                 cmn_alloc_live_bytes() - e->live0);
}

static bool settled(void *arg)
{
    struct fwd_stats st;
    fwd_get_stats(arg, &st);
    return st.inflight == 0 && st.queued == 0 && st.transactions > 0;
}

static bool delivered_n(void *arg)
{
    struct env *e = arg;
    struct fwd_stats st;
    fwd_get_stats(e->f, &st);
    return st.delivered >= e->want;
}

static const char *const key1[] = {"0123456789abcdef0123456789abcdef"};

Test(deliver, payload_defaults)
{
    static const struct {
        enum fwd_kind kind;
        const char *route, *ct;
        bool pb;
    } rows[] = {
        {FWD_KIND_SERIES, "/api/v2/series", "application/x-protobuf", true},
        {FWD_KIND_SKETCHES, "/api/beta/sketches", "application/x-protobuf",
         true},
        {FWD_KIND_EVENTS, "/intake/", "application/json", false},
        {FWD_KIND_SERVICE_CHECKS, "/api/v1/check_run", "application/json",
         false},
    };
    for (size_t i = 0; i < 4; i++) {
        struct fwd_payload *p = payload_bytes(rows[i].kind, "x", 1);
        cr_assert_str_eq(p->route, rows[i].route);
        cr_assert_str_eq(p->content_type, rows[i].ct);
        cr_assert_str_eq(p->content_encoding, "identity");
        cr_assert_eq(p->protobuf, rows[i].pb);
        cr_assert_eq(p->len, 1);
        cr_assert_eq(p->raw_len, 1);
        fwd_payload_free(p);
    }
    unsigned char *b = cmn_malloc(4);
    cr_assert_null(fwd_payload_new(FWD_KIND_MAX, b, 4)); /* b freed */
    fwd_payload_free(NULL);
}

Test(deliver, exact_bytes_and_headers)
{
    struct env e;
    static const unsigned char bin[] = {0x0a, 0x00, 0xff, 0x10, 'a', 0};
    static const char json[] = "[{\"check\":\"x\",\"status\":0}]";
    char raw[1000];
    unsigned char zbuf[2000];
    size_t zlen;
    struct fwd_payload *p;

    env_start(&e, key1, 1);
    env_fwd(&e);
    cr_assert_eq(
        fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, bin, sizeof(bin))), 0);
    cr_assert(run_until(&e.loop, settled, e.f, 5000));
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERVICE_CHECKS, json,
                                               strlen(json))),
                 0);
    cr_assert(run_until(&e.loop, settled, e.f, 5000));
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (char)('a' + i % 7);
    zlen = ZSTD_compress(zbuf, sizeof(zbuf), raw, sizeof(raw), 1);
    cr_assert(!ZSTD_isError(zlen));
    p = payload_bytes(FWD_KIND_SKETCHES, zbuf, zlen);
    p->content_encoding = "zstd";
    p->raw_len = sizeof(raw);
    cr_assert_eq(fwd_submit(e.f, p), 0);
    cr_assert(run_until(&e.loop, settled, e.f, 5000));

    cr_assert_eq(ti_request_count(e.ti), 3);
    const struct ti_request *r = ti_request_get(e.ti, 0);
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(r->path, "/api/v2/series");
    cr_assert_eq(r->body_len, sizeof(bin));
    cr_assert_eq(memcmp(r->body, bin, sizeof(bin)), 0);
    cr_assert_str_eq(ti_request_header(r, "DD-Api-Key"), key1[0]);
    cr_assert_str_eq(ti_request_header(r, "Content-Type"),
                     "application/x-protobuf");
    cr_assert_str_eq(ti_request_header(r, "Content-Encoding"), "identity");
    cr_assert_str_eq(ti_request_header(r, "DD-Agent-Version"), "7.60.0");
    cr_assert_str_eq(ti_request_header(r, "User-Agent"),
                     "datadog-agent/7.60.0");
    cr_assert_str_eq(ti_request_header(r, "DD-Agent-Payload"), "5.0.4");
    cr_assert_str_eq(ti_request_header(r, "Content-Length"), "6");
    cr_assert_null(ti_request_header(r, "Expect"));

    r = ti_request_get(e.ti, 1);
    cr_assert_str_eq(r->path, "/api/v1/check_run");
    cr_assert_str_eq(ti_request_header(r, "Content-Type"), "application/json");
    cr_assert_null(ti_request_header(r, "DD-Agent-Payload"));
    cr_assert_eq(r->body_len, strlen(json));
    cr_assert_eq(memcmp(r->body, json, strlen(json)), 0);
    json_t *j = ti_decode_json(r);
    cr_assert_not_null(j);
    cr_assert_str_eq(
        json_string_value(json_object_get(json_array_get(j, 0), "check")), "x");
    json_decref(j);

    r = ti_request_get(e.ti, 2);
    cr_assert_str_eq(r->path, "/api/beta/sketches");
    cr_assert_str_eq(ti_request_header(r, "Content-Encoding"), "zstd");
    cr_assert_eq(r->body_len, zlen);
    cr_assert(r->decode_ok);
    cr_assert_eq(r->decoded_len, sizeof(raw));
    cr_assert_eq(memcmp(r->decoded, raw, sizeof(raw)), 0);
    /* keep-alive: one connection for all three */
    cr_assert_eq(ti_connection_count(e.ti), 1);

    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.submitted, 3);
    cr_assert_eq(st.transactions, 3);
    cr_assert_eq(st.delivered, 3);
    cr_assert_eq(st.bytes_sent, sizeof(bin) + strlen(json) + zlen);
    cr_assert_eq(st.retried, 0);
    env_end(&e);
}

Test(deliver, dual_shipping_four_deliveries)
{
    struct env e;
    struct ti *ti2;
    static const char *const ka[] = {"key-a1-000000000000000000000000",
                                     "key-a2-000000000000000000000000"};
    static const char *const kb[] = {"key-b1-000000000000000000000000",
                                     "key-b2-000000000000000000000000"};
    static const char body[] = "dual";

    env_start(&e, ka, 2);
    cr_assert_eq(ti_start(&ti2), 0);
    cfg_add_ep(&e.cfg, ti_url(ti2), kb, 2);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, body, 4)), 0);
    e.want = 4;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));

    cr_assert_eq(ti_request_count(e.ti), 2);
    cr_assert_eq(ti_request_count(ti2), 2);
    struct ti *tis[2] = {e.ti, ti2};
    const char *const *keys[2] = {ka, kb};
    for (int t = 0; t < 2; t++) {
        bool seen[2] = {false, false};
        for (size_t i = 0; i < 2; i++) {
            const struct ti_request *r = ti_request_get(tis[t], i);
            const char *k = ti_request_header(r, "DD-Api-Key");
            cr_assert_not_null(k);
            for (int j = 0; j < 2; j++)
                if (strcmp(k, keys[t][j]) == 0)
                    seen[j] = true;
            cr_assert_eq(r->body_len, 4);
            cr_assert_eq(memcmp(r->body, body, 4), 0);
            cr_assert_str_eq(r->path, "/api/v2/series");
            cr_assert_str_eq(ti_request_header(r, "DD-Agent-Version"),
                             "7.60.0");
        }
        cr_assert(seen[0] && seen[1], "intake %d missed a key", t);
    }
    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.submitted, 1);
    cr_assert_eq(st.transactions, 4);
    cr_assert_eq(st.delivered, 4);
    ti_stop(ti2);
    env_end(&e);
}

Test(deliver, status_503_then_success_delivers_once)
{
    struct env e;
    struct ti_plan plan = {.status = 503, .count = 1};

    env_start(&e, key1, 1);
    ti_set_plan(e.ti, &plan);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "abc", 3)), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert(run_until(&e.loop, settled, e.f, 1000));
    cr_assert_eq(ti_request_count(e.ti), 2);
    cr_assert_eq(ti_request_get(e.ti, 0)->answered, 503);
    cr_assert_eq(ti_request_get(e.ti, 1)->answered, 202);
    cr_assert_eq(memcmp(ti_request_get(e.ti, 1)->body, "abc", 3), 0);
    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    cr_assert_eq(st.retried, 1);
    cr_assert_eq(st.transactions, 1);
    env_end(&e);
}

/* 400, 413 and 403 are dropped at once, each counted and logged; the 403
 * line says the key was rejected and shows only its last 5 characters. */
Test(deliver, drops_400_413_403)
{
    static const int codes[] = {400, 413, 403};
    struct env e;
    struct capture cap;
    char *log;

    env_start(&e, key1, 1);
    env_fwd(&e);
    capture_start(&cap);
    for (int i = 0; i < 3; i++) {
        struct ti_plan plan = {.status = codes[i], .count = 1};
        ti_set_plan(e.ti, &plan);
        cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "p", 1)),
                     0);
        cr_assert(run_until(&e.loop, settled, e.f, 5000));
    }
    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    env_end(&e);
    log = capture_end(&cap);
    cr_assert_eq(st.dropped_400, 1);
    cr_assert_eq(st.dropped_413, 1);
    cr_assert_eq(st.dropped_403, 1);
    cr_assert_eq(st.delivered, 0);
    cr_assert_eq(st.retried, 0);
    cr_assert_eq(st.transactions, 3);
    cr_assert_not_null(strstr(log, "answered 400 Bad Request: payload "
                                   "dropped"),
                       "%s", log);
    cr_assert_not_null(strstr(log, "answered 413 Payload Too Large: payload"
                                   " dropped"),
                       "%s", log);
    cr_assert_not_null(strstr(log, "answered 403 Forbidden: API key "
                                   "***bcdef was rejected"),
                       "%s", log);
    cr_assert_not_null(strstr(log, "forwarder stopped: delivered=0 "
                                   "dropped(400=1,403=1,413=1,evicted=0,"
                                   "stopped=0,other=0) abandoned=0"),
                       "%s", log);
    cr_assert_null(strstr(log, key1[0]), "API key leaked: %s", log);
    cmn_free(log);
}

static bool requests_n(void *arg)
{
    struct env *e = arg;
    return ti_request_count(e->ti) >= e->want;
}

static bool retried_1(void *arg)
{
    struct fwd_stats st;
    fwd_get_stats(arg, &st);
    return st.retried >= 1;
}

static bool retried_5(void *arg)
{
    struct fwd_stats st;
    fwd_get_stats(arg, &st);
    return st.retried >= 5;
}

/* A byte cap of 250 with 100-byte payloads holds 2 retried transactions:
 * past it the oldest retried ones are evicted, but a transaction that was
 * never attempted is never evicted, whatever the queue holds; the
 * forwarder reports itself full instead (back-pressure). */
Test(deliver, retry_queue_eviction)
{
    struct env e;
    struct ti_plan plan = {.status = 503, .count = TI_ALL};
    char body[100];

    memset(body, 'z', sizeof(body));
    env_start(&e, key1, 1);
    ti_set_plan(e.ti, &plan);
    e.cfg.retry_queue_max_bytes = 250;
    e.cfg.max_concurrent = 5;
    e.cfg.backoff_base = 30; /* stays blocked for the test */
    e.cfg.backoff_max = 60;
    env_fwd(&e);
    cr_assert_not(fwd_is_full(e.f));
    for (int i = 0; i < 5; i++) {
        body[0] = (char)('0' + i);
        cr_assert_eq(
            fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, body, sizeof(body))),
            0);
    }
    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.inflight, 5);
    cr_assert_eq(st.dropped_evicted, 0);
    /* 500 bytes on the wire: over the queue's share (the byte cap, as the
     * budget is unlimited here) */
    cr_assert(fwd_is_full(e.f));
    cr_assert(run_until(&e.loop, retried_5, e.f, 5000));
    fwd_get_stats(e.f, &st);
    /* all five failed and came back retried: #0, #1, #2 evicted */
    cr_assert_eq(st.retried, 5);
    cr_assert_eq(st.dropped_evicted, 3);
    cr_assert_eq(st.queued, 2);
    cr_assert_eq(st.queued_bytes, 200);
    cr_assert_not(fwd_is_full(e.f));
    /* the endpoint is blocked for 30 s: three fresh payloads wait, over
     * the byte cap, and none is evicted */
    for (int i = 5; i < 8; i++) {
        body[0] = (char)('0' + i);
        cr_assert_eq(
            fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, body, sizeof(body))),
            0);
    }
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.dropped_evicted, 3);
    cr_assert_eq(st.queued, 5);
    cr_assert_eq(st.queued_bytes, 500);
    cr_assert(fwd_is_full(e.f)); /* 300 fresh bytes >= 250 */
    /* stop: the drain ignores the 30 s backoff; 503 forever, so each is
     * sent, fails, and is evicted once retried past the cap, or abandoned
     * at the deadline */
    stop_and_wait(&e.loop, e.f, 200);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 0);
    cr_assert_eq(st.transactions, 8);
    cr_assert_eq(st.abandoned + st.dropped_evicted, 8);
    cr_assert_geq(st.abandoned, 2); /* the cap holds two retried ones */
    assert_accounted(&st);
    for (size_t i = 5; i < ti_request_count(e.ti); i++) {
        char c = (char)ti_request_get(e.ti, i)->body[0];
        cr_assert(c >= '3' && c <= '7', "evicted payload %c was sent", c);
    }
    fwd_destroy(e.f);
    fwd_config_free(&e.cfg);
    ti_stop(e.ti);
    cr_assert_eq(uv_loop_close(&e.loop), 0);
    cr_assert_eq(cmn_alloc_live_bytes(), e.live0);
}

/* The space callback fires once the queue drains below its share, and at
 * once when there is room already. */
static int space_calls;
static void on_space(void *data)
{
    (void)data;
    space_calls++;
}

static bool space_called(void *arg)
{
    (void)arg;
    return space_calls > 0;
}

Test(deliver, backpressure_space_callback)
{
    struct env e;
    char body[100];

    memset(body, 'y', sizeof(body));
    env_start(&e, key1, 1);
    e.cfg.retry_queue_max_bytes = 250;
    e.cfg.max_concurrent = 1;
    env_fwd(&e);
    space_calls = 0;
    fwd_on_space(e.f, on_space, NULL);
    cr_assert_eq(space_calls, 1); /* room now: called at once */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(
            fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, body, sizeof(body))),
            0);
    space_calls = 0;
    cr_assert(fwd_is_full(e.f));
    fwd_on_space(e.f, on_space, NULL);
    cr_assert_eq(space_calls, 0);
    e.want = 2;
    cr_assert(run_until(&e.loop, space_called, NULL, 5000));
    cr_assert_eq(space_calls, 1);
    cr_assert_not(fwd_is_full(e.f));
    /* the rest is delivered before the stop (which, with
     * forwarder_stop_wait_for_inflight off, would cancel a request still
     * in flight) */
    e.want = 4;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    stop_and_wait(&e.loop, e.f, 2000);
    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 4);
    cr_assert_eq(st.dropped_evicted, 0);
    assert_accounted(&st);
    cr_assert_eq(ti_request_count(e.ti), 4);
    fwd_destroy(e.f);
    fwd_config_free(&e.cfg);
    ti_stop(e.ti);
    cr_assert_eq(uv_loop_close(&e.loop), 0);
    cr_assert_eq(cmn_alloc_live_bytes(), e.live0);
}

/* The Agent's pkg/util/backoff formula: after n errors, b = base * 2^n;
 * b > max gives max, otherwise uniform in [b / factor, min(max, b)); n = 0
 * waits 0; n is capped at floor(log2(max / base)) + 1. Every expected
 * value below is computed by hand from that formula. */
struct bo_case {
    double base, factor, max;
    uint32_t max_errors;
    double lo[8], hi[8]; /* n = 0..7; lo == hi: exactly that */
};

static const struct bo_case bo_cases[] = {
    /* defaults 2 / 2 / 64: log2(32) = 5 -> 6 errors */
    {2, 2, 64, 6, {0, 2, 4, 8, 16, 32, 64, 64}, {0, 4, 8, 16, 32, 64, 64, 64}},
    /* base 1, factor 3, max 30: log2(30) = 4.9 -> 5 errors; lower bound
     * b / 3 */
    {1,
     3,
     30,
     5,
     {0, 2.0 / 3, 4.0 / 3, 8.0 / 3, 16.0 / 3, 30, 30, 30},
     {0, 2, 4, 8, 16, 30, 30, 30}},
    /* base 0.5, factor 4, max 10: log2(20) = 4.3 -> 5 errors */
    {0.5,
     4,
     10,
     5,
     {0, 0.25, 0.5, 1, 2, 10, 10, 10},
     {0, 1, 2, 4, 8, 10, 10, 10}},
    /* the Agent's own backoff_test.go: (factor 1, base 1, max 9) waits
     * exactly 2, 4, 8, then 9; 4 errors */
    {1, 1, 9, 4, {0, 2, 4, 8, 9, 9, 9, 9}, {0, 2, 4, 8, 9, 9, 9, 9}},
};

Test(deliver, backoff_formula_every_setting)
{
    struct fwd_config cfg;

    fwd_config_defaults(&cfg);
    for (size_t c = 0; c < sizeof(bo_cases) / sizeof(bo_cases[0]); c++) {
        const struct bo_case *k = &bo_cases[c];
        cfg.backoff_base = k->base;
        cfg.backoff_factor = k->factor;
        cfg.backoff_max = k->max;
        cr_assert_eq(fwd__max_errors(&cfg), k->max_errors, "case %zu", c);
        for (uint32_t n = 0; n <= 7; n++) {
            double a = fwd__backoff_s(&cfg, n, 0.0);
            double b = fwd__backoff_s(&cfg, n, 0.999999);
            double m = fwd__backoff_s(&cfg, n, 0.5);
            cr_assert_float_eq(a, k->lo[n], 1e-9, "case %zu n=%u: %g", c, n, a);
            cr_assert_float_eq(m, (k->lo[n] + k->hi[n]) / 2, 1e-9,
                               "case %zu n=%u: %g", c, n, m);
            if (k->lo[n] == k->hi[n])
                cr_assert_float_eq(b, k->hi[n], 1e-9, "case %zu n=%u", c, n);
            else
                cr_assert(b < k->hi[n] && b > k->hi[n] - 1e-4,
                          "case %zu n=%u: %g", c, n, b);
        }
    }
    fwd_config_free(&cfg);
}

/* The forwarder applies the Agent forwarder's guards and derived values:
 * a factor below 2 becomes 2, the error cap follows base and max, and
 * forwarder_recovery_reset forgives every error on a success. */
Test(deliver, backoff_policy_derived_at_create)
{
    uv_loop_t loop;
    struct fwd_config cfg;
    struct fwd *f;

    cr_assert_eq(uv_loop_init(&loop), 0);
    fwd_config_defaults(&cfg);
    cfg.backoff_base = 1;
    cfg.backoff_factor = 1.5;
    cfg.backoff_max = 30;
    cr_assert_eq(fwd_create(&loop, &cfg, &f), 0);
    cr_assert_float_eq(f->cfg.backoff_factor, 2, 1e-12);
    cr_assert_eq(f->max_errors, 5);
    cr_assert_eq(f->recovery, 2);
    fwd_destroy(f);
    cfg.recovery_reset = true;
    cr_assert_eq(fwd_create(&loop, &cfg, &f), 0);
    cr_assert_eq(f->recovery, 5);
    fwd_destroy(f);
    fwd_config_free(&cfg);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* The wait after one error with base 0.2 s, factor 2 is in [0.2, 0.4) s,
 * measured between the two requests the intake received. */
Test(deliver, observed_retry_delay_within_bounds)
{
    struct env e;
    struct ti_plan plan = {.status = 500, .count = 1};

    env_start(&e, key1, 1);
    e.cfg.backoff_base = 0.2;
    e.cfg.backoff_max = 10;
    ti_set_plan(e.ti, &plan);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "r", 1)), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ti_request_count(e.ti), 2);
    double ms = (double)(ti_request_get(e.ti, 1)->recv_ns -
                         ti_request_get(e.ti, 0)->recv_ns) /
                1e6;
    cr_assert(ms >= 199.0, "retried after %.1f ms, before 200 ms", ms);
    /* upper bound of the formula plus scheduling slack on a busy box */
    cr_assert(ms < 400.0 + 250.0, "retried after %.1f ms", ms);
    env_end(&e);
}

/* Warm start: a GET /api/v1/validate opens the connection at start, and
 * the first payload reuses it. */
Test(deliver, warm_start_reuses_connection)
{
    struct env e;

    env_start(&e, key1, 1);
    e.cfg.warm_start = true;
    env_fwd(&e);
    e.want = 1;
    cr_assert(run_until(&e.loop, requests_n, &e, 5000));
    /* let the warm-up finish (the answer is read) */
    cr_assert(!run_until(&e.loop, settled, e.f, 100));
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "w", 1)), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ti_request_count(e.ti), 2);
    const struct ti_request *w = ti_request_get(e.ti, 0);
    const struct ti_request *p = ti_request_get(e.ti, 1);
    cr_assert_str_eq(w->method, "GET");
    cr_assert_str_eq(w->path, "/api/v1/validate");
    cr_assert_str_eq(ti_request_header(w, "DD-Api-Key"), key1[0]);
    cr_assert_str_eq(p->path, "/api/v2/series");
    cr_assert_eq(p->conn_id, w->conn_id);
    cr_assert_eq(ti_connection_count(e.ti), 1);
    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.transactions, 1); /* the warm-up is not a payload */
    env_end(&e);
}

/* Stopping while the warm-up hangs cancels it cleanly. */
Test(deliver, stop_during_warm_start)
{
    struct env e;
    struct ti_plan plan = {.fault = TI_FAULT_HANG, .count = TI_ALL};

    env_start(&e, key1, 1);
    ti_set_plan(e.ti, &plan);
    e.cfg.warm_start = true;
    env_fwd(&e);
    e.want = 1;
    cr_assert(run_until(&e.loop, requests_n, &e, 5000));
    env_end(&e);
}

/* Connection resets are network errors: retried until delivered. (curl
 * itself may resend once on a fresh connection when a reused one dies, so
 * the intake can see more requests than the forwarder counts.) */
Test(deliver, reset_then_success)
{
    struct env e;
    struct ti_plan plan = {.fault = TI_FAULT_RESET, .count = 2};

    env_start(&e, key1, 1);
    ti_set_plan(e.ti, &plan);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "rs", 2)), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    struct fwd_stats st;
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    cr_assert(st.retried >= 1 && st.retried <= 2, "%llu",
              (unsigned long long)st.retried);
    size_t n = ti_request_count(e.ti);
    cr_assert_eq(n, 3);
    cr_assert_eq(ti_request_get(e.ti, n - 1)->answered, 202);
    env_end(&e);
}

/* A slow trickled answer still counts as delivered. */
Test(deliver, trickle_answer)
{
    struct env e;
    struct ti_plan plan = {
        .fault = TI_FAULT_TRICKLE, .trickle_ms = 2, .count = 1};

    env_start(&e, key1, 1);
    ti_set_plan(e.ti, &plan);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "t", 1)), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 10000));
    cr_assert_eq(ti_request_count(e.ti), 1);
    env_end(&e);
}

/* "localhost" goes through curl's threaded resolver (never blocking the
 * loop) and is delivered like 127.0.0.1. */
Test(deliver, hostname_resolution)
{
    struct env e;
    char url[64];

    env_start(&e, key1, 1);
    snprintf(url, sizeof(url), "http://localhost:%d", ti_port(e.ti));
    cmn_free(e.cfg.endpoints[0].url);
    e.cfg.endpoints[0].url = cmn_strdup(url);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "l", 1)), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ti_request_count(e.ti), 1);
    env_end(&e);
}

static bool probe_arrived(void *arg)
{
    struct env *e = arg;
    return ti_request_count(e->ti) >= 2;
}

/* Circuit breaker: after an error the endpoint is blocked (nothing is
 * sent), then half-open lets exactly one probe through; once it succeeds
 * everything flows again. */
Test(deliver, circuit_breaker_half_open_single_probe)
{
    struct env e;
    struct ti_plan fail = {.status = 503, .count = 1};
    struct ti_plan slow = {.delay_ms = 300, .count = 1};
    struct fwd_stats st;

    env_start(&e, key1, 1);
    e.cfg.backoff_base = 0.2; /* first wait in [0.2, 0.4) s */
    e.cfg.backoff_max = 10;
    ti_set_plan(e.ti, &fail);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "0", 1)), 0);
    cr_assert(run_until(&e.loop, retried_1, e.f, 5000));
    ti_set_plan(e.ti, &slow);
    for (int i = 1; i <= 5; i++) {
        char c = (char)('0' + i);
        cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, &c, 1)), 0);
    }
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.inflight, 0, "blocked endpoint sent a request");
    cr_assert_eq(st.queued, 6);
    cr_assert(run_until(&e.loop, probe_arrived, &e, 5000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.inflight, 1, "half-open must send one probe only");
    cr_assert_eq(st.queued, 5);
    /* the probe is the oldest transaction */
    cr_assert_eq(ti_request_get(e.ti, 1)->body[0], '0');
    e.want = 6;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ti_request_count(e.ti), 7);
    env_end(&e);
}

/* OOM loop: the n-th allocation and all later ones fail (the intake's
 * too), for every n until a run completes without hitting a failure.
 * Whatever fails, stop completes, every transaction is accounted for and
 * nothing leaks. */
Test(deliver, oom_loop, .timeout = 120)
{
    bool clean = false;

    for (uint64_t n = 1; n < 400 && !clean; n++) {
        struct env e;
        struct fwd_stats st;
        struct stop_ctx s = {0, 0};
        uint64_t calls0;
        int rc;

        env_start(&e, key1, 1);
        e.cfg.stop_wait_for_inflight = true;
        calls0 = cmn_alloc_count();
        cmn_alloc_fail_after(n);
        rc = fwd_create(&e.loop, &e.cfg, &e.f);
        if (rc == 0) {
            rc = fwd_start(e.f);
            if (rc == 0) {
                unsigned char *b = cmn_malloc(3);
                struct fwd_payload *p =
                    b != NULL ? fwd_payload_new(FWD_KIND_SERIES, b, 3) : NULL;
                if (p != NULL) {
                    memcpy(p->body, "oom", 3);
                    (void)fwd_submit(e.f, p);
                }
                e.want = 1;
                (void)run_until(&e.loop, delivered_n, &e, 150);
            }
            fwd_stop(e.f, cmn_deadline_in_ms(50), stopped_cb, &s);
            uv_run(&e.loop, UV_RUN_DEFAULT);
            cr_assert_eq(s.calls, 1, "n=%llu", (unsigned long long)n);
            fwd_get_stats(e.f, &st);
            assert_accounted(&st);
            clean = st.delivered == 1 &&
                    cmn_alloc_count() - calls0 < n; /* never hit */
        } else {
            cr_assert_eq(rc, UV_ENOMEM);
            e.f = NULL;
        }
        cmn_alloc_fail_reset();
        fwd_destroy(e.f);
        fwd_config_free(&e.cfg);
        ti_stop(e.ti);
        cr_assert_eq(uv_loop_close(&e.loop), 0);
        cr_assert_eq(cmn_alloc_live_bytes(), e.live0, "n=%llu leaked %zu",
                     (unsigned long long)n, cmn_alloc_live_bytes() - e.live0);
    }
    cr_assert(clean, "never ran without an allocation failure");
}

/* A 3 MiB body goes out whole, without an "Expect: 100-continue" round
 * trip (curl adds one above 1 MiB unless disabled). */
Test(deliver, large_body_no_expect)
{
    struct env e;
    size_t len = 3u << 20;
    unsigned char *big;

    env_start(&e, key1, 1);
    big = cmn_malloc(len);
    cr_assert_not_null(big);
    for (size_t i = 0; i < len; i++)
        big[i] = (unsigned char)(i * 131 + 17);
    env_fwd(&e);
    struct fwd_payload *p = fwd_payload_new(FWD_KIND_SERIES, big, len);
    cr_assert_not_null(p);
    cr_assert_eq(fwd_submit(e.f, p), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 10000));
    cr_assert_eq(ti_request_count(e.ti), 1);
    const struct ti_request *r = ti_request_get(e.ti, 0);
    cr_assert_null(ti_request_header(r, "Expect"));
    cr_assert_eq(r->body_len, len);
    for (size_t i = 0; i < len; i += 4099)
        cr_assert_eq(r->body[i], (unsigned char)(i * 131 + 17));
    cr_assert_eq(r->body[len - 1], (unsigned char)((len - 1) * 131 + 17));
    env_end(&e);
}

static uint64_t retried_want;
static bool retried_n(void *arg)
{
    struct fwd_stats st;
    fwd_get_stats(arg, &st);
    return st.retried >= retried_want;
}

static double rand_zero(void)
{
    return 0;
}

/* The Agent's circuit-breaker transitions (blocked_endpoints.go), checked
 * on the error count: errors answered while the endpoint is blocked do not
 * count (they left before it blocked); each half-open probe's success
 * forgives recovery_interval errors and blocks again until none are left. */
Test(deliver, breaker_counts_errors_like_the_agent)
{
    struct env e;
    struct ti_plan plan = {.status = 500, .count = 3};

    env_start(&e, key1, 1);
    /* the first block lasts 250 ms (base 0.25 s x 2 / factor 2, random
     * part 0): long enough for the other two answers to arrive inside it
     * even on a loaded machine */
    e.cfg.backoff_base = 0.25;
    e.cfg.backoff_max = 10;
    e.cfg.recovery_interval = 1;
    e.cfg.max_concurrent = 3;
    ti_set_plan(e.ti, &plan);
    env_fwd(&e);
    e.f->rand01 = rand_zero;
    struct fwd_ep *ep = &e.f->eps[0];
    /* three requests on the wire at once, all answered 500: the first
     * opens the breaker, the other two arrive while it is blocked */
    for (int i = 0; i < 3; i++)
        cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "b", 1)),
                     0);
    retried_want = 3;
    cr_assert(run_until(&e.loop, retried_n, e.f, 5000));
    cr_assert_eq(ti_request_count(e.ti), 3);
    cr_assert_eq(ep->nerrors, 1, "errors while blocked counted: %u",
                 ep->nerrors);
    cr_assert(ep->tripped);
    /* the probes then succeed one at a time (half-open): 1 - 1 = 0, the
     * breaker closes and the rest go */
    e.want = 3;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ep->nerrors, 0);
    cr_assert_not(ep->tripped);
    env_end(&e);
}

/* With recovery_interval 1 and three errors counted (sequential probes),
 * a successful probe leaves 2 errors and blocks again (the breaker stays
 * open); later successes ease it to 1, then close it. */
Test(deliver, breaker_probe_success_forgives_recovery_interval)
{
    struct env e;
    struct ti_plan plan = {.status = 500, .count = 3};

    env_start(&e, key1, 1);
    e.cfg.backoff_base = 0.01;
    e.cfg.backoff_max = 10;
    e.cfg.recovery_interval = 1;
    e.cfg.max_concurrent = 1;
    ti_set_plan(e.ti, &plan);
    env_fwd(&e);
    e.f->rand01 = rand_zero;
    struct fwd_ep *ep = &e.f->eps[0];
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "p", 1)), 0);
    e.want = 1;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ti_request_count(e.ti), 4); /* 3 x 500, then 202 */
    cr_assert_eq(ep->nerrors, 2);
    cr_assert(ep->tripped);
    cr_assert_gt(ep->blocked_until_ms, 0);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "q", 1)), 0);
    e.want = 2;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ep->nerrors, 1);
    cr_assert(ep->tripped);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "r", 1)), 0);
    e.want = 3;
    cr_assert(run_until(&e.loop, delivered_n, &e, 5000));
    cr_assert_eq(ep->nerrors, 0);
    cr_assert_not(ep->tripped);
    env_end(&e);
}
