/*
 * test_net.c - HTTPS to the loopback intake behind a TLS front (socat with
 * the test CA), certificate verification failure, the CONNECT proxy and
 * no_proxy, and the API key never appearing in any log line.
 */
#include "fwd_test.h"

struct env {
    uv_loop_t loop;
    struct ti *ti;
    struct tt tls;
    struct fwd *f;
    struct fwd_config cfg;
    size_t live0; /* cmn bytes live before the test */
};

static const char *const key1[] = {"net-key-0000000000000000000fedcba"};

static void env_start(struct env *e)
{
    memset(e, 0, sizeof(*e));
    e->live0 = cmn_alloc_live_bytes();
    cr_assert_eq(uv_loop_init(&e->loop), 0);
    cr_assert_eq(ti_start(&e->ti), 0);
    cr_assert_eq(tt_start(ti_port(e->ti), &e->tls), 0);
    cfg_one(&e->cfg, e->tls.url, key1, 1);
    e->cfg.stop_wait_for_inflight = true;
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
    tt_stop(&e->tls);
    ti_stop(e->ti);
    cr_assert_eq(uv_loop_close(&e->loop), 0);
    cr_assert_eq(cmn_alloc_live_bytes(), e->live0, "leaked %zu bytes",
                 cmn_alloc_live_bytes() - e->live0);
}

static bool done(void *arg)
{
    struct fwd_stats st;
    fwd_get_stats(arg, &st);
    return st.delivered + st.retried > 0 && st.inflight == 0;
}

Test(net, https_with_test_ca)
{
    struct env e;
    struct fwd_stats st;

    env_start(&e);
    e.cfg.ca_file = cmn_strdup(TI_CA_FILE);
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "tls", 3)), 0);
    cr_assert(run_until(&e.loop, done, e.f, 10000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    cr_assert_eq(ti_request_count(e.ti), 1);
    const struct ti_request *r = ti_request_get(e.ti, 0);
    cr_assert_eq(memcmp(r->body, "tls", 3), 0);
    cr_assert_str_eq(ti_request_header(r, "DD-Api-Key"), key1[0]);
    stop_and_wait(&e.loop, e.f, 2000);
    env_free(&e);
}

Test(net, https_min_tls_13)
{
    struct env e;
    struct fwd_stats st;

    env_start(&e);
    e.cfg.ca_file = cmn_strdup(TI_CA_FILE);
    e.cfg.min_tls_version = 13;
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "t", 1)), 0);
    cr_assert(run_until(&e.loop, done, e.f, 10000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    stop_and_wait(&e.loop, e.f, 2000);
    env_free(&e);
}

/* Without the test CA the certificate does not verify: nothing reaches the
 * intake; the error is retried and abandoned at stop. With
 * skip_ssl_validation it goes through. */
Test(net, https_verification_failure)
{
    struct env e;
    struct fwd_stats st;
    struct capture cap;
    char *log;

    env_start(&e);
    env_fwd(&e);
    capture_start(&cap);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "x", 1)), 0);
    cr_assert(run_until(&e.loop, done, e.f, 10000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 0);
    cr_assert(st.retried >= 1);
    cr_assert_eq(ti_request_count(e.ti), 0);
    stop_and_wait(&e.loop, e.f, 100);
    log = capture_end(&cap);
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.abandoned, 1);
    cr_assert_not_null(strstr(log, "certificate"), "%s", log);
    cmn_free(log);
    env_free(&e);

    env_start(&e);
    e.cfg.skip_ssl_validation = true;
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "y", 1)), 0);
    cr_assert(run_until(&e.loop, done, e.f, 10000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    stop_and_wait(&e.loop, e.f, 2000);
    env_free(&e);
}

/* HTTPS through the CONNECT proxy, then no_proxy bypassing it. */
Test(net, https_through_connect_proxy)
{
    struct env e;
    struct tp *tp;
    struct fwd_stats st;

    cr_assert_eq(tp_start(&tp), 0);
    env_start(&e);
    e.cfg.ca_file = cmn_strdup(TI_CA_FILE);
    e.cfg.proxy_https = cmn_strdup(tp_url(tp));
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "px", 2)), 0);
    cr_assert(run_until(&e.loop, done, e.f, 10000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    cr_assert_eq(tp_tunnel_count(tp), 1);
    cr_assert_eq(ti_request_count(e.ti), 1);
    cr_assert_eq(memcmp(ti_request_get(e.ti, 0)->body, "px", 2), 0);
    stop_and_wait(&e.loop, e.f, 2000);
    env_free(&e);

    env_start(&e);
    e.cfg.ca_file = cmn_strdup(TI_CA_FILE);
    e.cfg.proxy_https = cmn_strdup(tp_url(tp));
    e.cfg.no_proxy = cmn_strdup("localhost,127.0.0.1");
    env_fwd(&e);
    cr_assert_eq(fwd_submit(e.f, payload_bytes(FWD_KIND_SERIES, "np", 2)), 0);
    cr_assert(run_until(&e.loop, done, e.f, 10000));
    fwd_get_stats(e.f, &st);
    cr_assert_eq(st.delivered, 1);
    cr_assert_eq(tp_tunnel_count(tp), 1); /* unchanged: bypassed */
    stop_and_wait(&e.loop, e.f, 2000);
    env_free(&e);
    tp_stop(tp);
}

/* The proxy refuses non-loopback targets (so a misconfigured test can never
 * reach out). */
Test(net, proxy_refuses_remote_targets)
{
    struct tp *tp;
    cr_assert_eq(tp_start(&tp), 0);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)tp_port(tp))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    static const char req[] = "CONNECT example.com:443 HTTP/1.1\r\n\r\n";
    cr_assert_eq(write(fd, req, sizeof(req) - 1), (ssize_t)sizeof(req) - 1);
    char buf[256] = {0};
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    cr_assert(n > 12);
    cr_assert_eq(strncmp(buf, "HTTP/1.1 403", 12), 0, "%s", buf);
    close(fd);
    cr_assert_eq(tp_refused_count(tp), 1);
    cr_assert_eq(tp_tunnel_count(tp), 0);
    tp_stop(tp);
}

static bool got_request(void *arg)
{
    return ti_request_count(arg) >= 1;
}

static bool all_ended(void *arg)
{
    struct fwd_stats s;
    fwd_get_stats(arg, &s);
    return s.delivered + s.dropped_400 + s.dropped_403 + s.dropped_413 +
               s.dropped_evicted + s.dropped_other + s.abandoned ==
           s.transactions;
}

/* The API key never appears in any log line, at trace level, across
 * warm start, 403, 5xx and 404 retries, timeouts and stop. */
Test(net, api_key_never_logged)
{
    uv_loop_t loop;
    struct ti *ti;
    struct fwd *f;
    struct fwd_config cfg;
    struct capture cap;
    char *log;
    struct fwd_stats st;
    static const char *const k[] = {"SUPERSECRETKEY0123456789abcdefXYZ"};
    static const struct ti_plan plans[] = {
        {.status = 403, .count = 2},
        {.status = 500, .count = 1},
        {.status = 404, .count = 1},
    };

    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(ti_start(&ti), 0);
    cfg_one(&cfg, ti_url(ti), k, 1);
    cfg.warm_start = true;
    cfg.timeout_s = 0.3;
    cfg.stop_wait_for_inflight = true;
    cmn_log_set_level(CMN_LOG_TRACE);
    capture_start(&cap);
    ti_set_plan(ti, &plans[0]); /* the warm-up and the first payload */
    cr_assert_eq(fwd_create(&loop, &cfg, &f), 0);
    cr_assert_eq(fwd_start(f), 0);
    cr_assert(run_until(&loop, got_request, ti, 3000));
    for (size_t i = 0; i < sizeof(plans) / sizeof(plans[0]); i++) {
        if (i > 0)
            ti_set_plan(ti, &plans[i]);
        cr_assert_eq(fwd_submit(f, payload_bytes(FWD_KIND_SERIES, "k", 1)), 0);
        cr_assert(run_until(&loop, all_ended, f, 3000));
    }
    struct ti_plan hang = {.fault = TI_FAULT_HANG, .count = 1};
    ti_set_plan(ti, &hang);
    cr_assert_eq(fwd_submit(f, payload_bytes(FWD_KIND_SERIES, "h", 1)), 0);
    cr_assert(run_until(&loop, all_ended, f, 3000));
    stop_and_wait(&loop, f, 2000);
    log = capture_end(&cap);
    cmn_log_set_level(CMN_LOG_INFO);
    fwd_get_stats(f, &st);
    cr_assert_eq(st.dropped_403, 1, "%s", log);
    cr_assert_eq(st.retried, 3, "%s", log); /* 500, 404, timeout */
    cr_assert_eq(st.delivered, 3, "%s", log);
    cr_assert_not_null(strstr(log, "rejected by"), "%s", log);
    cr_assert_not_null(strstr(log, "timed out"), "%s", log);
    cr_assert_null(strstr(log, k[0]), "API key in log:\n%s", log);
    cr_assert_null(strstr(log, "SUPERSECRET"), "key prefix in log");
    cr_assert_not_null(strstr(log, "***efXYZ"), "%s", log);
    assert_accounted(&st);
    cmn_free(log);
    fwd_destroy(f);
    fwd_config_free(&cfg);
    ti_stop(ti);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
