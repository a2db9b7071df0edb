/*
 * test_e2e_metrics.c - the promise: a child that sends counts, gauges,
 * sets, histograms and distributions and exits at once loses nothing. The
 * real serverless-init wraps the real child, the loopback intake decodes
 * the payloads, and every value is checked exactly, on 50 consecutive runs
 * over UDP and on runs over a Unix datagram socket.
 */
#include "e2e.h"

/* One datagram, so every sample lands in the same 10 s bucket. */
#define PACKET                                                                 \
    "e2e.count:3|c|#k:v\\ne2e.count:2|c|#k:v\\n"                               \
    "e2e.gauge:1|g\\ne2e.gauge:42.5|g\\n"                                      \
    "e2e.set:a|s\\ne2e.set:b|s\\ne2e.set:a|s\\n"                               \
    "e2e.hist:1|h\\ne2e.hist:2|h\\ne2e.hist:3|h\\ne2e.hist:4|h\\n"             \
    "e2e.dist:10|d\\ne2e.dist:20|d\\ne2e.dist:30|d"

static void expect_series(struct ti *ti, const char *name, const char *tags,
                          double want, int type)
{
    struct ti_point pts[8];
    struct ti_series_info info;
    size_t n = ti_series_points(ti, name, tags, pts, 8, &info);
    cr_assert_eq(n, 1, "%s {%s}: %zu points", name, tags, n);
    cr_assert_eq(pts[0].value, want, "%s = %g, want %g", name, pts[0].value,
                 want);
    cr_assert_eq(info.type, type, "%s type %d", name, info.type);
    cr_assert_str_eq(info.host, "", "%s host", name);
}

static void expect_sketch(struct ti *ti, const char *name, const char *tags,
                          int64_t cnt, double sum, double min, double max)
{
    struct ti_sketch_sum s;
    size_t n = ti_sketch_find(ti, name, tags, &s);
    cr_assert_eq(n, 1, "%s {%s}: %zu dogsketches", name, tags, n);
    cr_assert_eq(s.cnt, cnt, "%s cnt %lld", name, (long long)s.cnt);
    cr_assert_eq(s.sum, sum, "%s sum %g", name, s.sum);
    cr_assert_eq(s.min, min, "%s min %g", name, s.min);
    cr_assert_eq(s.max, max, "%s max %g", name, s.max);
}

static void check_intake(struct ti *ti, const char *tags)
{
    char kv[600];
    snprintf(kv, sizeof(kv), "k:v,%s", tags);
    expect_series(ti, "e2e.count", kv, 0.5, 2);    /* RATE 5/10 */
    expect_series(ti, "e2e.gauge", tags, 42.5, 3); /* GAUGE last */
    expect_series(ti, "e2e.set", tags, 2, 3);      /* unique a, b */
    expect_series(ti, "e2e.hist.max", tags, 4, 3);
    expect_series(ti, "e2e.hist.median", tags, 2, 3);
    expect_series(ti, "e2e.hist.avg", tags, 2.5, 3);
    expect_series(ti, "e2e.hist.count", tags, 0.4, 2); /* RATE 4/10 */
    expect_series(ti, "e2e.hist.95percentile", tags, 4, 3);
    expect_sketch(ti, "e2e.dist", tags, 3, 60, 10, 30);
    expect_sketch(ti, "datadog.serverless_agent.enhanced.cold_start", tags, 1,
                  1, 1, 1);
    expect_sketch(ti, "datadog.serverless_agent.enhanced.shutdown", tags, 1, 1,
                  1, 1);
    /* serverless-init sends zstd-compressed payloads (level 1); the warm
     * start's GET /api/v1/validate has no body */
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        cr_assert_str_eq(ti_request_header(r, "DD-Api-Key"), "test");
        if (strcmp(r->method, "POST") != 0)
            continue;
        const char *enc = ti_request_header(r, "Content-Encoding");
        cr_assert(enc != NULL && strcmp(enc, "zstd") == 0, "%s %s: %s",
                  r->method, r->path, enc ? enc : "(none)");
    }
}

Test(e2e, udp_every_sample_on_50_runs, .timeout = 240)
{
    for (int run = 0; run < 50; run++) {
        struct ti *ti;
        cr_assert_eq(ti_start(&ti), 0);
        struct e2e e;
        e2e_init(&e);
        e2e_env(&e, "DD_API_KEY=test");
        e2e_env(&e, "DD_DD_URL=%s", ti_url(ti));
        const char *args[] = {e.child, "udp", PACKET, "exit", "0", NULL};
        int code = e2e_run(&e, args, 20000);
        char err[8192];
        e2e_read(e.errpath, err, sizeof(err));
        cr_assert_eq(code, 0, "run %d: exit %d, stderr:\n%s", run, code, err);
        check_intake(ti, e.tags);
        e2e_fini(&e);
        ti_stop(ti);
    }
}

Test(e2e, uds_every_sample, .timeout = 120)
{
    for (int run = 0; run < 5; run++) {
        struct ti *ti;
        cr_assert_eq(ti_start(&ti), 0);
        struct e2e e;
        e2e_init(&e);
        e2e_env(&e, "DD_API_KEY=test");
        e2e_env(&e, "DD_DD_URL=%s", ti_url(ti));
        e2e_env(&e, "DD_DOGSTATSD_SOCKET=%s/dsd.sock", e.dir);
        const char *args[] = {e.child, "uds", PACKET, NULL};
        int code = e2e_run(&e, args, 20000);
        char err[8192];
        e2e_read(e.errpath, err, sizeof(err));
        cr_assert_eq(code, 0, "run %d: exit %d, stderr:\n%s", run, code, err);
        check_intake(ti, e.tags);
        char sock[128];
        snprintf(sock, sizeof(sock), "%s/dsd.sock", e.dir);
        unlink(sock);
        e2e_fini(&e);
        ti_stop(ti);
    }
}

Test(e2e, single_argument_command_is_split, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    char cmd[1200];
    snprintf(cmd, sizeof(cmd), "%s udp e2e.split:1|c exit 3", e.child);
    const char *args[] = {cmd, NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 3);
    double sum;
    cr_assert_eq(e2e_delivered_points(ti, "e2e.split", &sum, NULL), 1);
    cr_assert_eq(sum, 0.1);
    e2e_fini(&e);
    ti_stop(ti);
}

/* With DD_STATSD_METRIC_NAMESPACE the child's metrics get the namespace
 * and the wrapper's own enhanced metrics keep their names: the Agent adds
 * those directly, never through DogStatsD (serverless-init submits them
 * in-process, so the profile exempts their prefixes). */
Test(e2e, namespace_leaves_the_enhanced_metrics_alone, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DD_STATSD_METRIC_NAMESPACE=app");
    const char *args[] = {e.child, "udp", "ns.count:2|c", "exit", "0", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    double sum, last;
    size_t n = e2e_delivered_points(ti, "app.ns.count", &sum, &last);
    cr_assert(n == 1 || (n == 2 && last == 0), "%zu points", n);
    cr_assert_eq(sum, 0.2);
    cr_assert_eq(e2e_delivered_points(ti, "ns.count", &sum, NULL), 0);
    struct ti_sketch_sum s;
    cr_assert_eq(ti_sketch_find(ti,
                                "datadog.serverless_agent.enhanced.cold_start",
                                e.tags, &s),
                 1);
    cr_assert_eq(s.cnt, 1);
    cr_assert_eq(ti_sketch_find(ti,
                                "datadog.serverless_agent.enhanced.shutdown",
                                e.tags, &s),
                 1);
    cr_assert_eq(
        ti_sketch_find(ti, "app.datadog.serverless_agent.enhanced.cold_start",
                       e.tags, &s),
        0);
    e2e_fini(&e);
    ti_stop(ti);
}
