/*
 * test_pipeline.c - the whole pipeline on a real loop: UDP on 127.0.0.1 in,
 * the local sink's JSON lines or the loopback test intake out, with exact
 * values; the stop drains datagrams still in the kernel; a failed start
 * rolls back; configuration from the environment.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lifecycle.h"
#include "support/intake.h"
#include "support/ti_tmpdir.h"

#define TS 1764072000

TI_TMPDIR_FIXTURE("/tmp/lc_pipe_XXXXXX", "out.jsonl");
TestSuite(pipeline, .init = ti_tmpdir_setup, .fini = ti_tmpdir_teardown,
          .timeout = 60);

/* A fake environment: NULL-terminated name/value pairs. */
struct kv {
    const char *k, *v;
};

static const char *kv_get(const char *name, void *data)
{
    for (const struct kv *e = data; e->k != NULL; e++)
        if (strcmp(e->k, name) == 0)
            return e->v;
    return NULL;
}

static double fixed_clock(void *data)
{
    return TS + 3.5;
}

static void send_udp(int port, const char *msg)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert(fd >= 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ssize_t n =
        sendto(fd, msg, strlen(msg), 0, (struct sockaddr *)&sa, sizeof(sa));
    cr_assert_eq(n, (ssize_t)strlen(msg));
    close(fd);
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

struct done_rec {
    int calls;
    bool clean;
};

static void on_done(void *arg, bool clean)
{
    struct done_rec *d = arg;
    d->calls++;
    d->clean = clean;
}

/* Builds a pipeline from env with the fixed clock. */
static struct lc_pipeline *make_pipeline(uv_loop_t *loop, struct kv *env)
{
    struct lc_pipeline_config c;
    lc_pipeline_config_defaults(&c);
    struct cmn_env e = {kv_get, env};
    cr_assert_eq(lc_pipeline_config_from_env(&c, &e), 0);
    struct lc_pipeline *p;
    cr_assert_eq(lc_pipeline_create(loop, &c, &p), 0);
    lc_pipeline_config_free(&c);
    agg_set_clock(lc_pipeline_agg(p), fixed_clock, NULL);
    return p;
}

static void stop_and_run(uv_loop_t *loop, struct lc_pipeline *p,
                         struct done_rec *done)
{
    lc_pipeline_stop(p, cmn_deadline_in_ms(5000), on_done, done);
    cr_assert_eq(uv_run(loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done->calls, 1);
}

Test(pipeline, udp_in_local_file_out)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DRAINPIPE_LOCAL_FILE", outpath},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert(lc_pipeline_is_local(p));
    cr_assert_eq(lc_pipeline_udp_port(p), 0);
    cr_assert_eq(lc_pipeline_start(p), 0);
    int port = lc_pipeline_udp_port(p);
    cr_assert_gt(port, 0);
    send_udp(port, "x:5|c");
    send_udp(port, "x:5|c");
    /* let the listener read them the normal way */
    for (int i = 0; i < 50; i++) {
        struct lc_pipeline_stats st;
        lc_pipeline_get_stats(p, &st);
        if (st.dsd.metric_lines == 2)
            break;
        uv_run(&loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert(done.clean);
    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    cr_assert_eq(st.dsd.metric_lines, 2);
    cr_assert_eq(st.local.series_points, 1);
    cr_assert_eq(st.local.batches, 1);
    cr_assert_str_eq(ti_read_file(outpath),
                     "{\"type\":\"series\",\"metric\":\"x\",\"tags\":[],"
                     "\"points\":[[1764072000,1.0]],\"kind\":\"rate\","
                     "\"interval\":10}\n");
    const struct lc_checkpoint *cps;
    size_t n = lc_checkpoints(lc_pipeline_manager(p), &cps);
    cr_assert_eq(n, 6);
    const char *names[] = {"local-sink", "aggregator", "dogstatsd",
                           "dogstatsd",  "aggregator", "local-sink"};
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(cps[i].phase, i < 3 ? "start" : "stop");
        cr_assert_str_eq(cps[i].name, names[i]);
    }
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(pipeline, stop_drains_datagrams_still_in_the_kernel)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DRAINPIPE_LOCAL_FILE", outpath},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert_eq(lc_pipeline_start(p), 0);
    int port = lc_pipeline_udp_port(p);
    /* the loop never runs before the stop: all of these sit in the
     * socket's receive buffer */
    send_udp(port, "a:1|c|#k:v");
    send_udp(port, "b:2|g\nb:7|g");
    send_udp(port, "c:3|d");
    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert(done.clean);
    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    cr_assert_eq(st.dsd.packets, 3);
    cr_assert_eq(st.dsd.metric_lines, 4);
    const char *out = ti_read_file(outpath);
    cr_assert_eq(count_lines(out), 3, "%s", out);
    cr_assert_not_null(strstr(out, "{\"type\":\"series\",\"metric\":\"a\","
                                   "\"tags\":[\"k:v\"],\"points\":[["
                                   "1764072000,0.10000000000000001]],"
                                   "\"kind\":\"rate\",\"interval\":10}\n"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "{\"type\":\"series\",\"metric\":\"b\","
                                   "\"tags\":[],\"points\":[[1764072000,"
                                   "7.0]],\"kind\":\"gauge\","
                                   "\"interval\":10}\n"),
                       "%s", out);
    cr_assert_not_null(strstr(out, "{\"type\":\"sketch\",\"metric\":\"c\","
                                   "\"tags\":[],\"ts\":1764072000,\"cnt\":1,"
                                   "\"min\":3.0,\"max\":3.0,\"sum\":3.0,"
                                   "\"avg\":3.0,\"p50\":3.0,\"p99\":3.0}\n"),
                       "%s", out);
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* What the aggregator hands the local sink for each kind of record, in
 * the order the payloads would carry them: histogram aggregates and
 * percentiles by suffix, a device: tag taken out of a series' tags, the
 * extra tags appended, the timestamped (no-aggregation) sample, events by
 * source type, service checks. */
Test(pipeline, local_file_has_every_record_kind)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DD_TAGS", "team:t"},
                       {"DD_HISTOGRAM_AGGREGATES", "max,count"},
                       {"DD_HISTOGRAM_PERCENTILES", "0.5"},
                       {"DRAINPIPE_LOCAL_FILE", outpath},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert_eq(lc_pipeline_start(p), 0);
    int port = lc_pipeline_udp_port(p);
    send_udp(port, "h.a:3|h|#device:sda\nh.a:1|h|#device:sda");
    send_udp(port, "g.t:2|g|T1764071000");
    send_udp(port, "_e{5,4}:title|text|d:5|h:hh|s:jenkins|#a:b");
    send_udp(port, "_e{3,2}:two|tx|d:6|h:hh|p:low|t:error");
    send_udp(port, "_sc|svc.up|1|d:7|h:hh|m:ok");
    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert(done.clean);
    cr_assert_str_eq(
        ti_read_file(outpath),
        "{\"type\":\"series\",\"metric\":\"h.a.max\",\"tags\":[\"team:t\"],"
        "\"points\":[[1764072000,3.0]],\"kind\":\"gauge\",\"interval\":10}\n"
        "{\"type\":\"series\",\"metric\":\"h.a.count\",\"tags\":[\"team:t\"],"
        "\"points\":[[1764072000,0.20000000000000001]],\"kind\":\"rate\","
        "\"interval\":10}\n"
        "{\"type\":\"series\",\"metric\":\"h.a.50percentile\",\"tags\":["
        "\"team:t\"],\"points\":[[1764072000,1.0]],\"kind\":\"gauge\","
        "\"interval\":10}\n"
        "{\"type\":\"series\",\"metric\":\"g.t\",\"tags\":[\"team:t\"],"
        "\"points\":[[1764071000,2.0]],\"kind\":\"gauge\",\"interval\":10}\n"
        "{\"type\":\"event\",\"msg_title\":\"two\",\"msg_text\":\"tx\","
        "\"timestamp\":6,\"priority\":\"low\",\"host\":\"hh\",\"tags\":["
        "\"team:t\"],\"alert_type\":\"error\"}\n"
        "{\"type\":\"event\",\"msg_title\":\"title\",\"msg_text\":\"text\","
        "\"timestamp\":5,\"priority\":\"normal\",\"host\":\"hh\",\"tags\":["
        "\"a:b\",\"team:t\"],\"alert_type\":\"info\","
        "\"source_type_name\":\"jenkins\"}\n"
        "{\"type\":\"service_check\",\"check\":\"svc.up\",\"host_name\":"
        "\"hh\",\"timestamp\":7,\"status\":1,\"message\":\"ok\",\"tags\":["
        "\"team:t\"]}\n");
    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    cr_assert_eq(st.local.series_points, 4);
    cr_assert_eq(st.local.events, 2);
    cr_assert_eq(st.local.service_checks, 1);
    cr_assert_eq(st.agg.series_flushed, 4);
    cr_assert_eq(st.agg.points_flushed, 4);
    cr_assert_eq(st.agg.payloads, 0); /* records, never payloads */
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* Captures fd 2 into a temporary file. */
static int stderr_begin(FILE **tmp)
{
    fflush(stderr);
    *tmp = tmpfile();
    cr_assert_not_null(*tmp);
    int saved = dup(2);
    cr_assert(saved >= 0);
    cr_assert(dup2(fileno(*tmp), 2) >= 0);
    return saved;
}

static void stderr_end(FILE *tmp, int saved, char *out, size_t outlen)
{
    fflush(stderr);
    cr_assert(dup2(saved, 2) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
}

Test(pipeline, summary_table_on_stderr_without_a_file)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DD_LOG_LEVEL", "off"},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert_eq(lc_pipeline_start(p), 0);
    send_udp(lc_pipeline_udp_port(p), "jobs.done:3|c|#env:dev,team:a");
    send_udp(lc_pipeline_udp_port(p), "temp:21.5|g");
    send_udp(lc_pipeline_udp_port(p), "bad:1|zz");
    send_udp(lc_pipeline_udp_port(p), "nanv:NaN|g");
    FILE *tmp;
    int saved = stderr_begin(&tmp);
    struct done_rec done = {0};
    lc_pipeline_stop(p, cmn_deadline_in_ms(5000), on_done, &done);
    int rc = uv_run(&loop, UV_RUN_DEFAULT);
    char err[8192];
    stderr_end(tmp, saved, err, sizeof(err));
    cmn_log_set_level(CMN_LOG_INFO);
    cr_assert_eq(rc, 0);
    cr_assert_eq(done.calls, 1);
    cr_assert_not_null(
        strstr(err, "drainpipe: no DD_API_KEY set, so nothing was sent. This "
                    "is what would have been sent:\n"
                    "\n"
                    "jobs.done (rate)\n"
                    "    tags:   env:dev,team:a\n"
                    "    points: 1, last 0.3\n"
                    "\n"
                    "temp (gauge)\n"
                    "    tags:   (none)\n"
                    "    points: 1, last 21.5\n"
                    "\n"
                    "Totals: 2 metrics, 2 points, 0 events, 0 service "
                    "checks\n"
                    "Dropped:\n"
                    "    1 lines not parsed: invalid metric type\n"
                    "    1 NaN/Inf values\n"),
        "%s", err);
    cr_assert_null(strstr(err, "not everything was delivered"), "%s", err);
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(pipeline, forwarder_to_test_intake_exact_values)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_API_KEY", "testkey"},
                       {"DD_DD_URL", ti_url(ti)},
                       {"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DD_FORWARDER_STOP_WAIT_FOR_INFLIGHT", "true"},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert_not(lc_pipeline_is_local(p));
    cr_assert_eq(lc_pipeline_start(p), 0);
    int port = lc_pipeline_udp_port(p);
    send_udp(port, "x:5|c\nx:5|c");
    send_udp(port, "g:1.5|g|#env:dev,team:a");
    send_udp(port, "lat:1|d\nlat:2|d\nlat:3|d");
    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert(done.clean);

    struct ti_point pts[4];
    struct ti_series_info info;
    cr_assert_eq(ti_series_points(ti, "x", "", pts, 4, &info), 1);
    cr_assert_eq(pts[0].ts, TS);
    cr_assert_eq(pts[0].value, 1.0);
    cr_assert_eq(info.type, 2); /* RATE */
    cr_assert_eq(info.interval, 10);
    cr_assert_eq(ti_series_points(ti, "g", "team:a,env:dev", pts, 4, &info), 1);
    cr_assert_eq(pts[0].value, 1.5);
    cr_assert_eq(info.type, 3); /* GAUGE */
    struct ti_sketch_sum sk;
    cr_assert_eq(ti_sketch_find(ti, "lat", "", &sk), 1);
    cr_assert_eq(sk.cnt, 3);
    cr_assert_eq(sk.sum, 6.0);
    cr_assert_eq(sk.min, 1.0);
    cr_assert_eq(sk.max, 3.0);
    const struct ti_request *r = ti_request_get(ti, 0);
    cr_assert_not_null(r);
    cr_assert_str_eq(ti_request_header(r, "DD-Api-Key"), "testkey");

    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    cr_assert_eq(st.fwd.delivered, ti_request_count(ti));
    cr_assert_eq(st.fwd.abandoned, 0);
    cr_assert_eq(st.local.batches, 0);
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
    ti_stop(ti);
}

Test(pipeline, failed_start_rolls_back)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    char sock[400];
    snprintf(sock, sizeof(sock), "%s/no/such/dir/dsd.sock", tmpdir);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "0"},
                       {"DD_DOGSTATSD_SOCKET", sock},
                       {"DRAINPIPE_LOCAL_FILE", outpath},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert_neq(lc_pipeline_start(p), 0);
    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert_not(done.clean);
    const struct lc_checkpoint *cps;
    size_t n = lc_checkpoints(lc_pipeline_manager(p), &cps);
    cr_assert_eq(n, 5);
    const char *phases[] = {"start", "start", "start-failed", "stop", "stop"};
    const char *names[] = {"local-sink", "aggregator", "dogstatsd",
                           "aggregator", "local-sink"};
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(cps[i].phase, phases[i]);
        cr_assert_str_eq(cps[i].name, names[i]);
    }
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* An extra component registered on the pipeline's manager, depending on
 * dogstatsd, is started last and stopped first. */
static int child_start(void *self)
{
    return 0;
}

static const struct lc_ops child_ops = {child_start, NULL, NULL};

Test(pipeline, extra_component_stops_first)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DRAINPIPE_LOCAL_FILE", outpath},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    const char *const deps[] = {"dogstatsd", NULL};
    cr_assert_eq(lc_register(lc_pipeline_manager(p), "child", deps, &child_ops,
                             NULL, 100),
                 0);
    cr_assert_eq(lc_pipeline_start(p), 0);
    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert(done.clean);
    const struct lc_checkpoint *cps;
    size_t n = lc_checkpoints(lc_pipeline_manager(p), &cps);
    cr_assert_eq(n, 8);
    cr_assert_str_eq(cps[3].name, "child");
    cr_assert_str_eq(cps[4].name, "child");
    cr_assert_str_eq(cps[4].phase, "stop");
    cr_assert_str_eq(cps[5].name, "dogstatsd");
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(pipeline, config_from_env)
{
    struct lc_pipeline_config c;
    lc_pipeline_config_defaults(&c);
    cr_assert_eq(c.aggregator_stop_timeout_ms, 2000);
    cr_assert_eq(c.sink, LC_SINK_AUTO);
    cr_assert_null(c.local_file);
    struct kv good[] = {{"DD_AGGREGATOR_STOP_TIMEOUT", "1.5"},
                        {"DD_LOG_LEVEL", "WARN"},
                        {"DRAINPIPE_SINK", "local"},
                        {"DRAINPIPE_LOCAL_FILE", "/tmp/x.jsonl"},
                        {NULL, NULL}};
    struct cmn_env e = {kv_get, good};
    cr_assert_eq(lc_pipeline_config_from_env(&c, &e), 0);
    cr_assert_eq(c.aggregator_stop_timeout_ms, 1500);
    cr_assert_eq(c.log_level, CMN_LOG_WARN);
    cr_assert_eq(cmn_log_get_level(), CMN_LOG_WARN);
    cr_assert_eq(c.sink, LC_SINK_LOCAL);
    cr_assert_str_eq(c.local_file, "/tmp/x.jsonl");
    lc_pipeline_config_free(&c);
    cr_assert_null(c.local_file);

    struct kv bad[][2] = {
        {{"DD_AGGREGATOR_STOP_TIMEOUT", "soon"}, {NULL, NULL}},
        {{"DD_AGGREGATOR_STOP_TIMEOUT", "-1"}, {NULL, NULL}},
        {{"DD_LOG_LEVEL", "loud"}, {NULL, NULL}},
        {{"DRAINPIPE_SINK", "printer"}, {NULL, NULL}},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        lc_pipeline_config_defaults(&c);
        struct cmn_env be = {kv_get, bad[i]};
        cr_assert_eq(lc_pipeline_config_from_env(&c, &be), UV_EINVAL, "%s=%s",
                     bad[i][0].k, bad[i][0].v);
        lc_pipeline_config_free(&c);
    }
}

Test(pipeline, forwarder_sink_needs_a_key)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_pipeline_config c;
    lc_pipeline_config_defaults(&c);
    c.sink = LC_SINK_FORWARDER;
    struct lc_pipeline *p = NULL;
    cr_assert_eq(lc_pipeline_create(&loop, &c, &p), UV_EINVAL);
    cr_assert_null(p);
    lc_pipeline_config_free(&c);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(pipeline, budget_bounds_the_drain_and_losses_are_reported)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    struct ti_plan plan = {
        .status = 0, .count = TI_ALL, .fault = TI_FAULT_HANG};
    ti_set_plan(ti, &plan);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_API_KEY", "testkey"},
                       {"DD_DD_URL", ti_url(ti)},
                       {"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DD_FORWARDER_STOP_WAIT_FOR_INFLIGHT", "true"},
                       {"DD_FORWARDER_STOP_TIMEOUT", "30"},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert_eq(lc_pipeline_start(p), 0);
    send_udp(lc_pipeline_udp_port(p), "x:5|c");
    FILE *tmp;
    int saved = stderr_begin(&tmp);
    struct done_rec done = {0};
    uint64_t t0 = cmn_mono_ns();
    /* the intake never answers; the forwarder's own stop timeout (30 s)
     * is far beyond the 800 ms budget, which must hold */
    lc_pipeline_stop(p, cmn_deadline_in_ms(800), on_done, &done);
    int rc = uv_run(&loop, UV_RUN_DEFAULT);
    uint64_t took_ms = (cmn_mono_ns() - t0) / 1000000u;
    char err[16384];
    stderr_end(tmp, saved, err, sizeof(err));
    cr_assert_eq(rc, 0);
    cr_assert_eq(done.calls, 1);
    cr_assert_lt(took_ms, 5000, "%llu", (unsigned long long)took_ms);
    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    cr_assert_eq(st.fwd.delivered, 0);
    cr_assert_geq(st.fwd.abandoned, 1);
    cr_assert_not_null(strstr(err, "drainpipe: not everything was "
                                   "delivered: "),
                       "%s", err);
    cr_assert_not_null(strstr(err, "drainpipe: not everything was delivered: "
                                   "1 payloads abandoned at the deadline\n"),
                       "%s", err);
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
    ti_stop(ti);
}

/* OOM loop (STYLE rule 10): every allocation of create may fail; each
 * failure is reported and leaves nothing behind (ASan checks the leaks). */
Test(pipeline, create_survives_every_allocation_failure)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DRAINPIPE_LOCAL_FILE", outpath},
                       {"DD_LOG_LEVEL", "off"},
                       {NULL, NULL}};
    struct lc_pipeline_config c;
    lc_pipeline_config_defaults(&c);
    struct cmn_env e = {kv_get, env};
    cr_assert_eq(lc_pipeline_config_from_env(&c, &e), 0);
    bool created = false;
    for (uint64_t n = 1; n < 10000 && !created; n++) {
        struct lc_pipeline *p = NULL;
        cmn_alloc_fail_after(n);
        int rc = lc_pipeline_create(&loop, &c, &p);
        cmn_alloc_fail_reset();
        if (rc == 0) {
            created = true;
            cr_assert_gt(n, 3);
            lc_pipeline_destroy(p);
        } else {
            cr_assert_eq(rc, UV_ENOMEM, "n=%llu: %s", (unsigned long long)n,
                         cmn_strerror(rc));
            cr_assert_null(p);
        }
    }
    cr_assert(created);
    lc_pipeline_config_free(&c);
    cmn_log_set_level(CMN_LOG_INFO);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* Config from env into *c (free it), then lc_pipeline_listen. */
static struct lc_pipeline *listen_from_env(uv_loop_t *loop, struct kv *env,
                                           struct lc_pipeline_config *c,
                                           struct lc_listen_report *rep)
{
    lc_pipeline_config_defaults(c);
    struct cmn_env e = {kv_get, env};
    cr_assert_eq(lc_pipeline_config_from_env(c, &e), 0);
    struct lc_pipeline *p;
    cr_assert_eq(lc_pipeline_listen(loop, c, false, rep, &p), 0);
    return p;
}

/* The two-step create of a fast start: listeners bound before the
 * aggregator exists; a datagram sent then is counted once completed. */
Test(pipeline, listen_before_the_aggregator_exists)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DRAINPIPE_LOCAL_FILE", outpath},
                       {NULL, NULL}};
    struct lc_pipeline_config c;
    struct lc_listen_report rep;
    struct lc_pipeline *p = listen_from_env(&loop, env, &c, &rep);
    cr_assert(rep.bound);
    cr_assert_eq(rep.nfailed, 0);
    cr_assert_null(lc_pipeline_agg(p)); /* no aggregator yet */
    int port = lc_pipeline_udp_port(p);
    cr_assert_gt(port, 0);
    send_udp(port, "early:5|c");
    cr_assert_eq(lc_pipeline_complete(p, &c), 0);
    cr_assert_eq(lc_pipeline_complete(p, &c), UV_EALREADY);
    lc_pipeline_config_free(&c);
    agg_set_clock(lc_pipeline_agg(p), fixed_clock, NULL);
    cr_assert_eq(lc_pipeline_start(p), 0);
    cr_assert_eq(lc_pipeline_udp_port(p), port);
    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert(done.clean);
    cr_assert_str_eq(ti_read_file(outpath),
                     "{\"type\":\"series\",\"metric\":\"early\",\"tags\":[],"
                     "\"points\":[[1764072000,0.5]],\"kind\":\"rate\","
                     "\"interval\":10}\n");
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* A socket path that is a regular file: reported, UDP still bound; a
 * pipeline never completed closes its listeners at destroy. */
Test(pipeline, listen_reports_the_listener_that_cannot_bind)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    char path[320];
    snprintf(path, sizeof(path), "%s/file", tmpdir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fclose(f);
    /* a fixed free port: the probe binds it and must release it at once
     * for the final bind */
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {0};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &slen), 0);
    char port[16];
    snprintf(port, sizeof(port), "%d", ntohs(sa.sin_port));
    close(fd);
    struct kv env[] = {{"DD_DOGSTATSD_PORT", port},
                       {"DD_DOGSTATSD_SOCKET", path},
                       {NULL, NULL}};
    struct lc_pipeline_config c;
    struct lc_listen_report rep;
    struct lc_pipeline *p = listen_from_env(&loop, env, &c, &rep);
    lc_pipeline_config_free(&c);
    cr_assert(rep.bound);
    cr_assert_eq(rep.nfailed, 1);
    cr_assert_str_eq(rep.failed[0].var, "DD_DOGSTATSD_SOCKET");
    cr_assert_str_eq(rep.failed[0].value, path);
    cr_assert_eq(rep.failed[0].err, UV_EEXIST);
    cr_assert_eq(lc_pipeline_udp_port(p), ntohs(sa.sin_port));
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    unlink(path);
}

/* Runs the loop (non-blocking steps) until pred holds, up to ~10 s. */
static bool pump_until(uv_loop_t *loop, struct lc_pipeline *p,
                       bool (*pred)(const struct lc_pipeline_stats *))
{
    for (int i = 0; i < 5000; i++) {
        struct lc_pipeline_stats st;
        lc_pipeline_get_stats(p, &st);
        if (pred(&st))
            return true;
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return false;
}

/* Runs the loop until *flag reaches want, up to ~10 s (a flush reports
 * done from a later loop iteration than the one that hands its payload to
 * the forwarder). */
static bool pump_flag(uv_loop_t *loop, const int *flag, int want)
{
    for (int i = 0; i < 5000 && *flag != want; i++) {
        uv_run(loop, UV_RUN_NOWAIT);
        usleep(2000);
    }
    return *flag == want;
}

static bool one_line(const struct lc_pipeline_stats *st)
{
    return st->dsd.metric_lines == 1;
}

static bool two_lines(const struct lc_pipeline_stats *st)
{
    return st->dsd.metric_lines == 2;
}

static bool one_in_flight(const struct lc_pipeline_stats *st)
{
    return st->fwd.inflight == 1;
}

static void flush_done(void *data)
{
    (*(int *)data)++;
}

/* Back-pressure: while the forwarder holds its share of unsent bytes (here
 * the retry queue cap of 1 byte: anything on the wire), the next flush
 * waits with its buckets instead of adding payloads; once the intake
 * answers, it is serialized and delivered. Nothing is evicted or lost. */
Test(pipeline, serializer_waits_for_a_full_forwarder)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    /* the first request is answered after 300 ms: the payload stays on
     * the wire meanwhile */
    struct ti_plan plan = {.status = 202, .count = 1, .delay_ms = 300};
    ti_set_plan(ti, &plan);
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct kv env[] = {{"DD_API_KEY", "testkey"},
                       {"DD_DD_URL", ti_url(ti)},
                       {"DD_DOGSTATSD_PORT", "__random__"},
                       {"DD_BIND_HOST", "127.0.0.1"},
                       {"DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true"},
                       {"DD_FORWARDER_STOP_WAIT_FOR_INFLIGHT", "true"},
                       {"DD_FORWARDER_RETRY_QUEUE_PAYLOADS_MAX_SIZE", "1"},
                       {NULL, NULL}};
    struct lc_pipeline *p = make_pipeline(&loop, env);
    cr_assert_eq(lc_pipeline_start(p), 0);
    int port = lc_pipeline_udp_port(p);
    struct agg *agg = lc_pipeline_agg(p);
    int flushed = 0;

    send_udp(port, "a:1|c");
    cr_assert(pump_until(&loop, p, one_line));
    cr_assert_eq(agg_flush(agg, true, flush_done, &flushed), 0);
    cr_assert(pump_until(&loop, p, one_in_flight));
    cr_assert(pump_flag(&loop, &flushed, 1));

    send_udp(port, "b:2|c");
    cr_assert(pump_until(&loop, p, two_lines));
    cr_assert_eq(agg_flush(agg, true, flush_done, &flushed), 0);
    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    cr_assert_eq(st.agg.backpressure_waits, 1);
    cr_assert_eq(st.agg.payloads, 1); /* the second job is held */
    cr_assert_eq(st.fwd.submitted, 1);
    cr_assert_eq(flushed, 1);

    struct done_rec done = {0};
    stop_and_run(&loop, p, &done);
    cr_assert(done.clean);
    cr_assert_eq(flushed, 2);
    lc_pipeline_get_stats(p, &st);
    /* the final flush may have waited as well */
    cr_assert_geq(st.agg.backpressure_waits, 1);
    cr_assert_eq(st.fwd.dropped_evicted, 0);
    cr_assert_eq(st.fwd.abandoned, 0);
    cr_assert_eq(st.fwd.delivered, st.fwd.submitted);
    struct ti_point pts[4];
    /* a's later flushes carry the counter's zero-fill (§2.4) */
    size_t na = ti_series_points(ti, "a", "", pts, 4, NULL);
    cr_assert_geq(na, 1);
    cr_assert_eq(pts[0].value, 0.1);
    for (size_t i = 1; i < na; i++)
        cr_assert_eq(pts[i].value, 0.0);
    size_t nb = ti_series_points(ti, "b", "", pts, 4, NULL);
    cr_assert_geq(nb, 1);
    cr_assert_eq(pts[0].value, 0.2);
    for (size_t i = 1; i < nb; i++)
        cr_assert_eq(pts[i].value, 0.0);
    lc_pipeline_destroy(p);
    cr_assert_eq(uv_loop_close(&loop), 0);
    ti_stop(ti);
}
