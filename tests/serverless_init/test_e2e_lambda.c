/*
 * test_e2e_lambda.c - the real serverless-init binary as a Lambda
 * extension (issue 10): started with no command and AWS_LAMBDA_RUNTIME_API
 * pointing at the fake Runtime API of tests/support/fake_lambda.c, which
 * scripts INVOKE / SHUTDOWN events and delivers telemetry batches to the
 * extension's listener; the "function" is this test sending DogStatsD
 * over UDP; the loopback intake decodes what is delivered.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "e2e.h"
#include "fake_lambda.h"

/* The static tags of every metric with the environment of lx_env, as
 * written for an x86-64 extension: lx_tags puts the architecture of the
 * binary under test in (DP_EXPECT_ARCH, for a cross-built one run under
 * qemu-user: scripts/test-layer.sh --arch arm64). */
#define LX_ARCH_X86 "architecture:x86_64"
#define LX_TAGS                                                                \
    "region:eu-west-1,account_id:123456789012,aws_account:123456789012,"       \
    "functionname:orders,resource:orders,"                                     \
    "function_arn:arn:aws:lambda:eu-west-1:123456789012:function:orders,"      \
    "memorysize:512," LX_ARCH_X86 ",dd_extension_version:" CMN_VERSION

/* tags with the architecture tag of the binary under test; the result
 * lives until the 8th call after this one. */
static const char *lx_tags(const char *tags)
{
    static char bufs[8][1024];
    static unsigned next;
    const char *arch = getenv("DP_EXPECT_ARCH");
#if defined(__aarch64__)
    const char *own = "arm64";
#else
    const char *own = "x86_64";
#endif
    const char *at = strstr(tags, LX_ARCH_X86);
    if (at == NULL)
        return tags;
    char *b = bufs[next++ % 8];
    snprintf(b, sizeof(bufs[0]), "%.*sarchitecture:%s%s", (int)(at - tags),
             tags, arch != NULL && arch[0] != '\0' ? arch : own,
             at + strlen(LX_ARCH_X86));
    return b;
}

struct lx_test {
    struct e2e e;
    struct ti *ti;
    struct fl *fl;
    int udp_port;
    int udp_fd;
    pid_t pid;
};

static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t sl = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &sl), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Intake (unless no_key), fake Runtime API answering register with
 * register_status, and the extension's environment. */
static void lx_setup(struct lx_test *t, int register_status, bool no_key)
{
    memset(t, 0, sizeof(*t));
    if (no_key) {
        e2e_init(&t->e);
    } else {
        t->ti = e2e_with_intake(&t->e);
    }
    cr_assert_eq(fl_start(register_status, &t->fl), 0);
    t->udp_port = free_udp_port();
    e2e_env(&t->e, "DD_DOGSTATSD_PORT=%d", t->udp_port);
    e2e_env(&t->e, "AWS_LAMBDA_RUNTIME_API=%s", fl_addr(t->fl));
    e2e_env(&t->e, "DRAINPIPE_TELEMETRY_PORT=0");
    e2e_env(&t->e, "AWS_REGION=eu-west-1");
    e2e_env(&t->e, "AWS_LAMBDA_FUNCTION_NAME=orders");
    e2e_env(&t->e, "AWS_LAMBDA_FUNCTION_VERSION=$LATEST");
    e2e_env(&t->e, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE=512");
    t->udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert_geq(t->udp_fd, 0);
}

static void lx_teardown(struct lx_test *t)
{
    close(t->udp_fd);
    fl_stop(t->fl);
    e2e_fini(&t->e);
    ti_stop(t->ti);
}

static void lx_send(struct lx_test *t, const char *packet)
{
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)t->udp_port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ssize_t n = sendto(t->udp_fd, packet, strlen(packet), 0,
                       (struct sockaddr *)&sa, sizeof(sa));
    cr_assert_eq(n, (ssize_t)strlen(packet));
}

static void lx_stderr(struct lx_test *t, char *buf, size_t cap)
{
    e2e_read(t->e.errpath, buf, cap);
}

/* Waits until the answer to the i-th /next (0-based) was written. */
static void wait_answered(struct lx_test *t, size_t i)
{
    uint64_t end = e2e_now_ms() + 5000;
    while (fl_next_answered_ns(t->fl, i) == 0) {
        cr_assert_lt(e2e_now_ms(), end, "/next %zu never answered", i);
        e2e_sleep_ms(1);
    }
}

static void post(struct lx_test *t, const char *fmt, ...) CMN_PRINTF(2, 3);
static void post(struct lx_test *t, const char *fmt, ...)
{
    char buf[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    int st = fl_post_telemetry(t->fl, buf);
    char err[16384];
    lx_stderr(t, err, sizeof(err));
    cr_assert_eq(st, 200, "status %d for %s\nstderr:\n%s", st, buf, err);
}

#define EV_START                                                               \
    "{\"time\":\"2026-01-01T00:00:00.100Z\",\"type\":\"platform.start\","      \
    "\"record\":{\"requestId\":\"req-%d\",\"version\":\"$LATEST\"}}"
#define EV_DONE                                                                \
    "{\"time\":\"2026-01-01T00:00:00.400Z\",\"type\":\"platform."              \
    "runtimeDone\","                                                           \
    "\"record\":{\"requestId\":\"req-%d\",\"status\":\"success\","             \
    "\"metrics\":{\"durationMs\":%d.5,\"producedBytes\":52}}}"
#define EV_REPORT                                                              \
    "{\"time\":\"2026-01-01T00:00:00.450Z\",\"type\":\"platform.report\","     \
    "\"record\":{\"requestId\":\"req-%d\",\"status\":\"success\","             \
    "\"metrics\":{\"durationMs\":%d.5,\"billedDurationMs\":%d,"                \
    "\"memorySizeMB\":512,\"maxMemoryUsedMB\":%d}}}"

/* Earliest arrival at the intake of a series or sketch named name with
 * tag (one "k:v") among its tags; UINT64_MAX when none arrived. */
static uint64_t first_arrival(struct ti *ti, const char *name, const char *tag)
{
    uint64_t best = UINT64_MAX;
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        bool found = false;
        if (strcmp(r->path, "/api/v2/series") == 0) {
            Datadog__Agentpayload__MetricPayload *p = ti_decode_series(r);
            cr_assert_not_null(p);
            for (size_t s = 0; s < p->n_series && !found; s++) {
                if (strcmp(p->series[s]->metric, name) != 0)
                    continue;
                for (size_t k = 0; k < p->series[s]->n_tags; k++)
                    found |= strcmp(p->series[s]->tags[k], tag) == 0;
            }
            datadog__agentpayload__metric_payload__free_unpacked(p, NULL);
        } else if (strcmp(r->path, "/api/beta/sketches") == 0) {
            Datadog__Agentpayload__SketchPayload *p = ti_decode_sketches(r);
            cr_assert_not_null(p);
            for (size_t s = 0; s < p->n_sketches && !found; s++) {
                if (strcmp(p->sketches[s]->metric, name) != 0)
                    continue;
                for (size_t k = 0; k < p->sketches[s]->n_tags; k++)
                    found |= strcmp(p->sketches[s]->tags[k], tag) == 0;
            }
            datadog__agentpayload__sketch_payload__free_unpacked(p, NULL);
        }
        if (found && r->recv_ns < best)
            best = r->recv_ns;
    }
    return best;
}

static void expect_point(struct ti *ti, const char *name, const char *tags,
                         double want, int type)
{
    struct ti_point pts[8];
    struct ti_series_info info;
    tags = lx_tags(tags);
    size_t n = ti_series_points(ti, name, tags, pts, 8, &info);
    cr_assert_geq(n, 1, "%s {%s}: no point", name, tags);
    cr_assert_eq(pts[0].value, want, "%s {%s} = %.17g, want %.17g", name, tags,
                 pts[0].value, want);
    /* later flushes carry the Agent's zero for an idle counter (until
     * dogstatsd_expiry_seconds), nothing else */
    for (size_t i = 1; i < n && i < 8; i++)
        cr_assert_eq(pts[i].value, 0, "%s {%s} point %zu = %g", name, tags, i,
                     pts[i].value);
    cr_assert(n == 1 || type == 2, "%s {%s}: %zu points", name, tags, n);
    cr_assert_eq(info.type, type, "%s type %d", name, info.type);
}

static void expect_dist(struct ti *ti, const char *name, const char *tags,
                        int64_t cnt, double sum)
{
    struct ti_sketch_sum s;
    tags = lx_tags(tags);
    size_t n = ti_sketch_find(ti, name, tags, &s);
    cr_assert_geq(n, 1, "%s {%s}: no dogsketch", name, tags);
    cr_assert_eq(s.cnt, cnt, "%s {%s} cnt %lld, want %lld", name, tags,
                 (long long)s.cnt, (long long)cnt);
    cr_assert_eq(s.sum, sum, "%s {%s} sum %.17g, want %.17g", name, tags, s.sum,
                 sum);
}

/* Every DogStatsD type, multi-value lines, a sample rate, an event and a
 * service check, all tagged with the invocation. */
static void send_function_metrics(struct lx_test *t, int i)
{
    char p[1024];
    snprintf(p, sizeof(p),
             "fn.count:1|c|#inv:%d\nfn.count:2:3|c|#inv:%d\n"
             "fn.sampled:1|c|@0.5|#inv:%d\n"
             "fn.gauge:%d|g|#inv:%d\n"
             "fn.set:a|s|#inv:%d\nfn.set:b|s|#inv:%d\nfn.set:a|s|#inv:%d\n"
             "fn.hist:1:2:3:4|h|#inv:%d\n"
             "fn.timer:10|ms|#inv:%d\n"
             "fn.dist:10:20|d|#inv:%d\nfn.dist:30|d|#inv:%d\n"
             "_e{6,4}:deploy|text|#inv:%d\n"
             "_sc|fn.check|1|#inv:%d",
             i, i, i, i + 1, i, i, i, i, i, i, i, i, i, i);
    lx_send(t, p);
}

static void check_function_metrics(struct ti *ti, int i)
{
    char tags[512];
    snprintf(tags, sizeof(tags), "inv:%d," LX_TAGS, i);
    expect_point(ti, "fn.count", tags, 0.6, 2);   /* RATE (1+2+3)/10 */
    expect_point(ti, "fn.sampled", tags, 0.2, 2); /* 1/0.5 = 2 per 10 s */
    expect_point(ti, "fn.gauge", tags, i + 1, 3);
    expect_point(ti, "fn.set", tags, 2, 3);
    expect_point(ti, "fn.hist.max", tags, 4, 3);
    expect_point(ti, "fn.hist.avg", tags, 2.5, 3);
    expect_point(ti, "fn.hist.count", tags, 0.4, 2);
    expect_point(ti, "fn.timer.max", tags, 10, 3);
    expect_dist(ti, "fn.dist", tags, 3, 60);
}

/* The event and service check of invocation i reached their routes. */
static void check_events(struct ti *ti, int n)
{
    int events = 0, checks = 0;
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        if (strcmp(r->path, "/intake/") != 0 &&
            strcmp(r->path, "/api/v1/check_run") != 0)
            continue;
        json_t *j = ti_decode_json(r);
        cr_assert_not_null(j, "%s does not decode", r->path);
        /* freed with jansson's own free: a program that links the
         * aggregator (Bazel links libdrainpipe whole) routes jansson
         * through drainpipe's allocator */
        json_free_t jfree;
        json_get_alloc_funcs(NULL, &jfree);
        char *s = json_dumps(j, 0);
        cr_assert_not_null(s);
        for (const char *p = s; (p = strstr(p, "\"deploy\"")) != NULL; p++)
            events++;
        for (const char *p = s; (p = strstr(p, "\"fn.check\"")) != NULL; p++)
            checks++;
        jfree(s);
        json_decref(j);
    }
    cr_assert_eq(events, n, "events: %d", events);
    cr_assert_eq(checks, n, "service checks: %d", checks);
}

Test(lambda, five_invocations_with_end, .timeout = 60)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_SERVERLESS_FLUSH_STRATEGY=end");
    t.pid = e2e_start(&t.e, NULL);
    cr_assert_eq(fl_wait_next(t.fl, 1, 5000), 1, "no first /next");

    struct fl_info in;
    fl_get_info(t.fl, &in);
    cr_assert_eq(in.nregister, 1);
    cr_assert_str_eq(in.ext_name, "serverless-init");
    cr_assert_str_eq(in.ext_feature, "accountId");
    cr_assert_str_eq(in.reg_body, "{\"events\":[\"INVOKE\",\"SHUTDOWN\"]}");
    cr_assert_eq(in.nsubscribe, 1);
    cr_assert_str_eq(in.sub_id, FL_EXT_ID);
    cr_assert_str_eq(in.next_id, FL_EXT_ID);
    cr_assert(strstr(in.sub_body, "\"types\":[\"platform\"]") != NULL);
    cr_assert(strstr(in.sub_body, "\"maxItems\":1000,\"maxBytes\":262144,"
                                  "\"timeoutMs\":25") != NULL,
              "%s", in.sub_body);

    for (int i = 0; i < 5; i++) {
        char id[16];
        snprintf(id, sizeof(id), "req-%d", i);
        fl_push_invoke(t.fl, id, 30000);
        wait_answered(&t, (size_t)i);
        send_function_metrics(&t, i);
        if (i == 0)
            post(&t, "[" EV_START "," EV_DONE "]", i, i, 100 + i);
        else /* the previous report comes after the previous /next */
            post(&t, "[" EV_REPORT "," EV_START "," EV_DONE "]", i - 1,
                 150 + i - 1, 151 + i - 1, 60 + i - 1, i, i, 100 + i);
        cr_assert_eq(fl_wait_next(t.fl, (size_t)i + 2, 10000), (size_t)i + 2,
                     "no /next after invocation %d", i);
    }
    fl_push_shutdown(t.fl, 2000);
    wait_answered(&t, 5);
    char last[1024];
    snprintf(last, sizeof(last), "[" EV_REPORT "]", 4, 154, 155, 64);
    cr_assert_eq(fl_post_telemetry(t.fl, last), 200);
    int code = e2e_wait(t.pid, 3000);
    char err[8192];
    lx_stderr(&t, err, sizeof(err));
    cr_assert_eq(code, 0, "exit %d, stderr:\n%s", code, err);

    /* every custom metric of invocation i arrived before /next i+1 */
    static const char *const names[] = {
        "fn.count",    "fn.sampled",   "fn.gauge", "fn.set",
        "fn.hist.max", "fn.timer.max", "fn.dist"};
    for (int i = 0; i < 5; i++) {
        char tag[16];
        snprintf(tag, sizeof(tag), "inv:%d", i);
        uint64_t next = fl_next_ns(t.fl, (size_t)i + 1);
        for (size_t k = 0; k < sizeof(names) / sizeof(names[0]); k++) {
            uint64_t at = first_arrival(t.ti, names[k], tag);
            cr_assert_lt(at, next, "%s of invocation %d after its /next",
                         names[k], i);
        }
        check_function_metrics(t.ti, i);
    }
    check_events(t.ti, 5);

    /* enhanced metrics: 5 invocations, cold_start only on the first */
    expect_dist(t.ti, "aws.lambda.enhanced.invocations",
                "cold_start:true," LX_TAGS, 1, 1);
    expect_dist(t.ti, "aws.lambda.enhanced.invocations",
                "cold_start:false," LX_TAGS, 4, 4);
    /* report values: duration 150.5..154.5 ms in s, billed 151..155 ms,
     * max memory 60..64 MB, runtime 100.5..104.5 ms */
    expect_dist(t.ti, "aws.lambda.enhanced.duration",
                "cold_start:true," LX_TAGS, 1, 150.5 * 0.001);
    expect_dist(t.ti, "aws.lambda.enhanced.billed_duration",
                "cold_start:true," LX_TAGS, 1, 151 * 0.001);
    expect_dist(t.ti, "aws.lambda.enhanced.max_memory_used",
                "cold_start:true," LX_TAGS, 1, 60);
    expect_dist(t.ti, "aws.lambda.enhanced.max_memory_used",
                "cold_start:false," LX_TAGS, 4, 61 + 62 + 63 + 64);
    double billed = 0; /* summed as the intake sums the dogsketches */
    for (int k = 152; k <= 155; k++)
        billed += k * 0.001;
    expect_dist(t.ti, "aws.lambda.enhanced.billed_duration",
                "cold_start:false," LX_TAGS, 4, billed);
    expect_dist(t.ti, "aws.lambda.enhanced.memorysize",
                "cold_start:false," LX_TAGS, 4, 4 * 512);
    expect_dist(t.ti, "aws.lambda.enhanced.runtime_duration",
                "cold_start:true," LX_TAGS, 1, 100.5);
    expect_dist(t.ti, "aws.lambda.enhanced.post_runtime_duration",
                "cold_start:true," LX_TAGS, 1, 50);
    expect_dist(t.ti, "aws.lambda.enhanced.shutdowns", LX_TAGS, 1, 1);
    struct ti_sketch_sum s;
    cr_assert_eq(ti_sketch_find(t.ti, "aws.lambda.enhanced.errors",
                                lx_tags("cold_start:false," LX_TAGS), &s),
                 0);
    lx_teardown(&t);
}

/* The Runtime API calls the fake received. */
static struct fl_info expect_calls(struct lx_test *t, int reg, int sub,
                                   int init_err, int exit_err)
{
    struct fl_info in;
    fl_get_info(t->fl, &in);
    cr_assert_eq(in.nregister, reg);
    cr_assert_eq(in.nsubscribe, sub);
    cr_assert_eq(in.ninit_error, init_err);
    cr_assert_eq(in.nexit_error, exit_err);
    return in;
}

/* Starts the extension and waits for its first /next. */
static void lx_run(struct lx_test *t)
{
    t->pid = e2e_start(&t->e, NULL);
    cr_assert_eq(fl_wait_next(t->fl, 1, 5000), 1, "no first /next");
}

/* SHUTDOWN with deadline_in_ms; returns the exit code and the time from
 * the SHUTDOWN answer to the exit in *took_ms. */
static int lx_shutdown(struct lx_test *t, size_t nth_next, int64_t deadline,
                       uint64_t *took_ms)
{
    fl_push_shutdown(t->fl, deadline);
    wait_answered(t, nth_next);
    uint64_t at = fl_next_answered_ns(t->fl, nth_next);
    int code = e2e_wait(t->pid, (uint32_t)deadline + 3000);
    *took_ms = (cmn_mono_ns() - at) / 1000000u;
    return code;
}

Test(lambda, telemetry_right_after_subscribe_is_not_lost, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    /* the fake posts this batch as soon as it answered the subscribe */
    fl_set_post_on_subscribe(
        t.fl, "[{\"time\":\"2026-01-01T00:00:00.000Z\",\"type\":"
              "\"platform.initStart\",\"record\":{\"initializationType\":"
              "\"on-demand\",\"phase\":\"init\"}},"
              "{\"time\":\"2026-01-01T00:00:00.200Z\",\"type\":"
              "\"platform.initReport\",\"record\":{\"initializationType\":"
              "\"on-demand\",\"phase\":\"init\",\"metrics\":{\"durationMs\":"
              "211.4}}}]");
    lx_run(&t);
    uint64_t end = e2e_now_ms() + 5000;
    while (fl_post_on_subscribe_status(t.fl) == 0 && e2e_now_ms() < end)
        e2e_sleep_ms(1); /* the fake's POST may still be in progress */
    cr_assert_eq(fl_post_on_subscribe_status(t.fl), 200);
    uint64_t took;
    int code = lx_shutdown(&t, 0, 2000, &took);
    cr_assert_eq(code, 0);
    expect_dist(t.ti, "aws.lambda.enhanced.init_duration",
                "init_type:on-demand," LX_TAGS, 1, 211.4 * 0.001);
    /* no INVOKE came: the sandbox was initialised for nothing */
    expect_dist(t.ti, "aws.lambda.enhanced.unused_init", LX_TAGS, 1, 1);
    expect_dist(t.ti, "aws.lambda.enhanced.shutdowns", LX_TAGS, 1, 1);
    lx_teardown(&t);
}

/* One invocation whose report never comes (the extension waits for it at
 * most 300 ms at SHUTDOWN). */
static void one_invocation(struct lx_test *t)
{
    fl_push_invoke(t->fl, "req-0", 30000);
    wait_answered(t, 0);
    lx_send(t, "fn.last:7|c\nfn.last_dist:5|d");
    post(t, "[" EV_START "," EV_DONE "]", 0, 0, 100);
    cr_assert_eq(fl_wait_next(t->fl, 2, 10000), 2);
}

Test(lambda, shutdown_within_2s_delivers_everything, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_SERVERLESS_FLUSH_STRATEGY=periodically,600000");
    lx_run(&t);
    one_invocation(&t);
    /* sent after the last /next: only the SHUTDOWN drain delivers it */
    lx_send(&t, "fn.at_shutdown:3|c|#k:v\nfn.at_shutdown_dist:9|d");
    uint64_t took;
    int code = lx_shutdown(&t, 1, 2000, &took);
    char err[8192];
    lx_stderr(&t, err, sizeof(err));
    cr_assert_eq(code, 0, "exit %d\n%s", code, err);
    cr_assert_lt(took, 2000, "exit %llu ms after SHUTDOWN",
                 (unsigned long long)took);
    cr_assert_eq(strstr(err, "not delivered"), NULL, "%s", err);
    expect_point(t.ti, "fn.last", LX_TAGS, 0.7, 2);
    expect_point(t.ti, "fn.at_shutdown", "k:v," LX_TAGS, 0.3, 2);
    expect_dist(t.ti, "fn.last_dist", LX_TAGS, 1, 5);
    expect_dist(t.ti, "fn.at_shutdown_dist", LX_TAGS, 1, 9);
    expect_dist(t.ti, "aws.lambda.enhanced.invocations",
                "cold_start:true," LX_TAGS, 1, 1);
    expect_dist(t.ti, "aws.lambda.enhanced.shutdowns", LX_TAGS, 1, 1);
    lx_teardown(&t);
}

Test(lambda, intake_down_exits_before_deadline_and_says_so, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    struct ti_plan plan = {.status = 503, .count = TI_ALL};
    ti_set_plan(t.ti, &plan);
    e2e_env(&t.e, "DD_SERVERLESS_FLUSH_STRATEGY=end");
    lx_run(&t);
    one_invocation(&t);
    uint64_t took;
    int code = lx_shutdown(&t, 1, 2000, &took);
    char err[8192];
    lx_stderr(&t, err, sizeof(err));
    cr_assert_eq(code, 0, "exit %d\n%s", code, err);
    cr_assert_lt(took, 2000, "exit %llu ms after SHUTDOWN",
                 (unsigned long long)took);
    cr_assert(strstr(err, "not everything was delivered") != NULL, "%s", err);
    cr_assert(strstr(err, "abandoned at the deadline") != NULL, "%s", err);
    double sum;
    cr_assert_eq(e2e_delivered_points(t.ti, "fn.last", &sum, NULL), 0);
    lx_teardown(&t);
}

Test(lambda, no_api_key_answers_every_next_at_once, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, true);
    lx_run(&t);
    for (int i = 0; i < 3; i++) {
        char id[16];
        snprintf(id, sizeof(id), "req-%d", i);
        fl_push_invoke(t.fl, id, 30000);
        wait_answered(&t, (size_t)i);
        lx_send(&t, "fn.idle:1|c");
        /* the runtime is done now; an idle extension did not subscribe,
         * so no telemetry can tell it */
        uint64_t done = cmn_mono_ns();
        cr_assert_eq(fl_wait_next(t.fl, (size_t)i + 2, 5000), (size_t)i + 2);
        uint64_t next = fl_next_ns(t.fl, (size_t)i + 1);
        cr_assert(next < done + 50 * 1000000ull,
                  "/next %d came %lld us after runtimeDone", i + 1,
                  (long long)(next - done) / 1000);
    }
    uint64_t took;
    int code = lx_shutdown(&t, 3, 2000, &took);
    char err[8192];
    lx_stderr(&t, err, sizeof(err));
    cr_assert_eq(code, 0, "exit %d\n%s", code, err);
    cr_assert(strstr(err, "DD_API_KEY is not set; running idle") != NULL, "%s",
              err);
    (void)expect_calls(&t, 1, 0, 0, 0);
    lx_teardown(&t);
}

Test(lambda, register_refused_exits_at_once_non_zero, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 500, false);
    uint64_t start = e2e_now_ms();
    t.pid = e2e_start(&t.e, NULL);
    int code = e2e_wait(t.pid, 1000);
    uint64_t took = e2e_now_ms() - start;
    char err[8192];
    lx_stderr(&t, err, sizeof(err));
    cr_assert_neq(code, -1, "still running after 1 s");
    cr_assert_neq(code, 0);
    cr_assert_lt(took, 1000);
    cr_assert(strstr(err, "register refused by the Lambda Runtime API") != NULL,
              "%s", err);
    cr_assert(strstr(err, "HTTP 500") != NULL, "%s", err);
    (void)expect_calls(&t, 1, 0, 0, 0);
    cr_assert_eq(fl_wait_next(t.fl, 1, 0), 0);
    lx_teardown(&t);
}

Test(lambda, enhanced_metrics_off, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_ENHANCED_METRICS=false");
    lx_run(&t);
    one_invocation(&t);
    uint64_t took;
    cr_assert_eq(lx_shutdown(&t, 1, 2000, &took), 0);
    expect_point(t.ti, "fn.last", LX_TAGS, 0.7, 2);
    struct ti_sketch_sum s;
    cr_assert_eq(ti_sketch_find(t.ti, "aws.lambda.enhanced.invocations",
                                lx_tags("cold_start:true," LX_TAGS), &s),
                 0);
    cr_assert_eq(ti_sketch_find(t.ti, "aws.lambda.enhanced.shutdowns",
                                lx_tags(LX_TAGS), &s),
                 0);
    lx_teardown(&t);
}

/* A /next answered 500 after one invocation: the Runtime API is gone.
 * The extension reports it to /extension/exit/error, drains what it has
 * and exits non-zero. The same on the first /next goes to init/error. */
Test(lambda, next_error_reports_exit_error, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    lx_run(&t);
    one_invocation(&t);
    lx_send(&t, "fn.before_error:2|c");
    fl_push_next_error(t.fl, 500);
    int code = e2e_wait(t.pid, 3000);
    char err[8192];
    lx_stderr(&t, err, sizeof(err));
    cr_assert_eq(code, 1, "exit %d\n%s", code, err);
    cr_assert(strstr(err, "/next failed") != NULL, "%s", err);
    struct fl_info in = expect_calls(&t, 1, 1, 0, 1);
    cr_assert_str_eq(in.error_type, "Extension.UnknownReason");
    expect_point(t.ti, "fn.before_error", LX_TAGS, 0.2, 2);
    lx_teardown(&t);
}

Test(lambda, first_next_error_reports_init_error, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    fl_push_next_error(t.fl, 500);
    t.pid = e2e_start(&t.e, NULL);
    int code = e2e_wait(t.pid, 3000);
    cr_assert_eq(code, 1);
    (void)expect_calls(&t, 1, 1, 1, 0);
    lx_teardown(&t);
}

/* The intake drops the connection the extension kept from the previous
 * invocation (what a freeze does to an idle connection): the payload is
 * sent again at once on a new connection, before the next /next. */
Test(lambda, stale_connection_is_retried_at_once, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_SERVERLESS_FLUSH_STRATEGY=end");
    lx_run(&t);
    one_invocation(&t);
    struct ti_plan plan = {.fault = TI_FAULT_RESET, .count = 1};
    ti_set_plan(t.ti, &plan);
    fl_push_invoke(t.fl, "req-1", 30000);
    wait_answered(&t, 1);
    lx_send(&t, "fn.after_freeze:4|c");
    post(&t, "[" EV_START "," EV_DONE "]", 1, 1, 100);
    cr_assert_eq(fl_wait_next(t.fl, 3, 10000), 3);
    uint64_t next = fl_next_ns(t.fl, 2);
    /* one request was reset, and the series still arrived, answered,
     * before the extension asked for the next event */
    size_t reset = 0, delivered = 0;
    for (size_t i = 0; i < ti_request_count(t.ti); i++) {
        const struct ti_request *r = ti_request_get(t.ti, i);
        if (r->answered == 0)
            reset++;
        if (r->answered != 202 || r->recv_ns > next ||
            strcmp(r->path, "/api/v2/series") != 0)
            continue;
        Datadog__Agentpayload__MetricPayload *p = ti_decode_series(r);
        for (size_t k = 0; p != NULL && k < p->n_series; k++)
            delivered += strcmp(p->series[k]->metric, "fn.after_freeze") == 0;
        datadog__agentpayload__metric_payload__free_unpacked(p, NULL);
    }
    cr_assert_eq(reset, 1);
    cr_assert_eq(delivered, 1);
    lx_teardown(&t);
}

/* Two invocations and a SHUTDOWN with every metric delivered: what the
 * Runtime API connection tests below check after their own set-up. */
static void two_invocations_delivered(struct lx_test *t)
{
    for (int i = 0; i < 2; i++) {
        char id[16];
        snprintf(id, sizeof(id), "req-%d", i);
        fl_push_invoke(t->fl, id, 30000);
        wait_answered(t, (size_t)i);
        char line[64];
        snprintf(line, sizeof(line), "fn.conn:%d|c|#inv:%d", i + 1, i);
        lx_send(t, line);
        post(t, "[" EV_START "," EV_DONE "]", i, i, 100);
        cr_assert_eq(fl_wait_next(t->fl, (size_t)i + 2, 10000), (size_t)i + 2);
    }
    uint64_t took;
    int code = lx_shutdown(t, 2, 2000, &took);
    char err[16384];
    lx_stderr(t, err, sizeof(err));
    cr_assert_eq(code, 0, "exit %d\n%s", code, err);
    expect_point(t->ti, "fn.conn", "inv:0," LX_TAGS, 0.1, 2);
    expect_point(t->ti, "fn.conn", "inv:1," LX_TAGS, 0.2, 2);
    (void)expect_calls(t, 1, 1, 0, 0);
}

/* Register keeps its connection for the subscribe, and the subscribe for
 * the first /next: one connect for the init's three round-trips. Every
 * /next says "Connection: close", so the later ones each come on a new
 * connection and none is left idle across a freeze. */
Test(lambda, init_requests_share_one_connection, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_SERVERLESS_FLUSH_STRATEGY=end");
    lx_run(&t);
    cr_assert_eq(fl_next_conn(t.fl, 0), 1, "first /next on connection %d",
                 fl_next_conn(t.fl, 0));
    two_invocations_delivered(&t);
    cr_assert_eq(fl_next_conn(t.fl, 1), 2);
    cr_assert_eq(fl_next_conn(t.fl, 2), 3); /* answered SHUTDOWN */
    cr_assert_eq(fl_connections(t.fl), 3);
    lx_teardown(&t);
}

/* A Runtime API that closes a kept connection as it is reused (reads the
 * request, answers nothing): the subscribe and the first /next are each
 * sent again on a new connection, once, and nothing is lost or doubled. */
Test(lambda, kept_connection_closed_by_the_runtime_api_is_replaced,
     .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_SERVERLESS_FLUSH_STRATEGY=end");
    e2e_env(&t.e, "DD_LOG_LEVEL=debug");
    fl_set_drop_reused(t.fl, true);
    lx_run(&t);
    /* register on 1 (kept); subscribe dropped on 1, answered on 2 (kept);
     * /next dropped on 2, answered on 3 */
    cr_assert_eq(fl_next_conn(t.fl, 0), 3, "first /next on connection %d",
                 fl_next_conn(t.fl, 0));
    two_invocations_delivered(&t);
    cr_assert_eq(fl_next_conn(t.fl, 1), 4);
    cr_assert_eq(fl_next_conn(t.fl, 2), 5);
    char err[65536];
    lx_stderr(&t, err, sizeof(err));
    cr_assert(strstr(err, "kept connection closed by the Runtime API (end of "
                          "file): PUT /2022-07-01/telemetry again on a new "
                          "one") != NULL,
              "%s", err);
    cr_assert(strstr(err, "/next again on a new one") != NULL, "%s", err);
    lx_teardown(&t);
}

/* A Runtime API that writes an answer's head and body apart: Nagle's
 * algorithm holds the body until the head is acknowledged, and Linux
 * delays that acknowledgement by at least 40 ms on a connection past its
 * first exchanges. The extension acknowledges at once: the subscribe on
 * the kept connection must not cost those 40 ms. The bound is 38 ms: a
 * delayed acknowledgement alone takes 40.
 *
 * A delayed acknowledgement costs its 40 ms on every start: without the
 * quick ack, 12 of 12 runs here took 44.6-56.4 ms. A busy machine costs
 * them only sometimes: with it, register to /next took 1.0-4.9 ms here
 * under AddressSanitizer (20 runs), up to 21.9 ms beside two busy
 * processes (150 runs, and a capture of 60 showed no acknowledgement on
 * these connections later than 15 ms), and in fresh-clone CI runs once
 * 31.6 ms (b5de899) and once 40.7 ms (eb9dff9). So the extension is
 * started up to three times, and the fastest start must be under the
 * bound: a defect fails all three, a stall must hit all three. */
#define SPLIT_TRIES 3
#define SPLIT_BOUND_US 38000u
Test(lambda, split_answers_on_a_kept_connection_are_not_delayed, .timeout = 60)
{
    char took[SPLIT_TRIES * 24] = "";
    for (int i = 0; i < SPLIT_TRIES; i++) {
        struct lx_test t;
        lx_setup(&t, 0, false);
        fl_set_split_answers(t.fl, true);
        lx_run(&t);
        struct fl_info in = expect_calls(&t, 1, 1, 0, 0);
        uint64_t us = (fl_next_ns(t.fl, 0) - in.register_ns) / 1000;
        cr_assert_eq(fl_next_conn(t.fl, 0), 1);
        if (us < SPLIT_BOUND_US) {
            two_invocations_delivered(&t);
            lx_teardown(&t);
            return;
        }
        size_t at = strlen(took);
        snprintf(took + at, sizeof(took) - at, " %llu us",
                 (unsigned long long)us);
        uint64_t down;
        cr_assert_eq(lx_shutdown(&t, 0, 2000, &down), 0);
        lx_teardown(&t);
    }
    cr_assert_fail("register to first /next, each start:%s", took);
}

/* Each of n needles is in log, in this order; returns the last one. */
static const char *in_order(const char *log, const char *const *needles,
                            size_t n)
{
    const char *prev = log;
    for (size_t i = 0; i < n; i++) {
        const char *p = strstr(log, needles[i]);
        cr_assert_not_null(p, "%s missing:\n%s", needles[i], log);
        cr_assert_geq(p, prev, "%s out of order:\n%s", needles[i], log);
        prev = p;
    }
    return prev;
}

/* libcurl (and with it DNS and TLS) is loaded only after the first /next
 * was sent: the debug log shows the checkpoints in that order. */
Test(lambda, no_libcurl_before_first_next, .timeout = 30)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_LOG_LEVEL=debug");
    lx_run(&t);
    char err[16384];
    cr_assert(e2e_wait_stderr(&t.e, "libcurl loaded", 5000, err, sizeof(err)),
              "%s", err);
    const char *ready = strstr(err, "extension ready in ");
    const char *curl = strstr(err, "libcurl loaded");
    cr_assert_not_null(ready, "%s", err);
    cr_assert_lt(ready, curl, "%s", err);
    /* every init phase has its checkpoint, in order: the configuration
     * and the listeners while register's answer is on its way, the
     * listeners bound before the subscribe and the first /next, the
     * aggregator and the sink built only after it */
    cr_assert_lt(strstr(err, "checkpoint bind dogstatsd"), ready, "%s", err);
    static const char *const phases[] = {
        "checkpoint register_sent",       "checkpoint config_parsed",
        "checkpoint telemetry_listening", "checkpoint dogstatsd_listening",
        "checkpoint register_ready",      "checkpoint telemetry_subscribed"};
    cr_assert_lt(in_order(err, phases, 6), ready);
    static const char *const after[] = {
        "extension ready in ", "checkpoint create forwarder",
        "checkpoint create aggregator",
        "checkpoint start dogstatsd:", "checkpoint pipeline_started"};
    (void)in_order(err, after, 5);
    uint64_t took;
    cr_assert_eq(lx_shutdown(&t, 0, 2000, &took), 0);
    e2e_read(t.e.errpath, err, sizeof(err));
    static const char *const down[] = {
        "checkpoint shutdown_received", "checkpoint telemetry_closed",
        "checkpoint stop dogstatsd", "checkpoint shutdown_drained"};
    (void)in_order(err, down, 4);
    lx_teardown(&t);
}

/* With periodically,<ms> and continuously,<ms> the extension does not wait
 * for runtimeDone: /next follows each INVOKE at once (after a blocking
 * flush for periodically, when the interval passed); the metrics of an
 * invocation are sent by the flush at a later INVOKE. */
static void strategy_does_not_wait(const char *strategy, bool blocking)
{
    struct lx_test t;
    lx_setup(&t, 0, false);
    e2e_env(&t.e, "DD_SERVERLESS_FLUSH_STRATEGY=%s", strategy);
    lx_run(&t);
    for (int i = 0; i < 3; i++) {
        char id[16], m[64];
        snprintf(id, sizeof(id), "req-%d", i);
        fl_push_invoke(t.fl, id, 30000);
        /* no telemetry at all: the next /next must come anyway */
        cr_assert_eq(fl_wait_next(t.fl, (size_t)i + 2, 5000), (size_t)i + 2,
                     "%s: no /next after INVOKE %d", strategy, i);
        snprintf(m, sizeof(m), "fn.strategy:%d|c|#inv:%d", i + 1, i);
        lx_send(&t, m);
        e2e_sleep_ms(5); /* the interval (1 ms) passes before the next */
    }
    uint64_t took;
    cr_assert_eq(lx_shutdown(&t, 3, 2000, &took), 0);
    for (int i = 0; i < 3; i++) {
        char tags[512];
        snprintf(tags, sizeof(tags), "inv:%d," LX_TAGS, i);
        expect_point(t.ti, "fn.strategy", tags, (i + 1) / 10.0, 2);
    }
    /* with a 1 ms interval every INVOKE flushes: invocation 0's metrics
     * leave at INVOKE 1; periodically waits for them before /next 2 */
    uint64_t at = first_arrival(t.ti, "fn.strategy", "inv:0");
    cr_assert_neq(at, UINT64_MAX);
    if (blocking)
        cr_assert_lt(at, fl_next_ns(t.fl, 2));
    lx_teardown(&t);
}

Test(lambda, periodically_and_continuously_do_not_wait, .timeout = 60)
{
    strategy_does_not_wait("periodically,1", true);
    strategy_does_not_wait("continuously,1", false);
}
