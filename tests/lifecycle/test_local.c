/*
 * test_local.c - the local sink decodes every payload kind and encoding the
 * serializer makes, and writes exact JSON lines or an exact summary table.
 * Payloads are built here by hand (protobuf-c, zstd, zlib, JSON) so the
 * sink is tested on its own.
 */
#include <criterion/criterion.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <zlib.h>
#include <zstd.h>

#include "agent_payload.pb-c.h"
#include "ddsketch.h"
#include "lifecycle.h"

static char tmpdir[256];
static char outpath[300];

static void setup(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/lc_local_XXXXXX");
    cr_assert_not_null(mkdtemp(tmpdir));
    snprintf(outpath, sizeof(outpath), "%s/out.jsonl", tmpdir);
}

static void teardown(void)
{
    unlink(outpath);
    rmdir(tmpdir);
}

TestSuite(local, .init = setup, .fini = teardown);

static unsigned char *dup_body(const void *p, size_t n)
{
    unsigned char *b = cmn_malloc(n ? n : 1);
    cr_assert_not_null(b);
    memcpy(b, p, n);
    return b;
}

/* A payload with body encoded as enc ("zstd", "deflate", "identity"). */
static struct fwd_payload *make_payload(enum fwd_kind kind, const void *raw,
                                        size_t rawlen, const char *enc)
{
    unsigned char *body;
    size_t len;
    if (strcmp(enc, "zstd") == 0) {
        size_t cap = ZSTD_compressBound(rawlen);
        body = cmn_malloc(cap);
        cr_assert_not_null(body);
        len = ZSTD_compress(body, cap, raw, rawlen, 1);
        cr_assert_not(ZSTD_isError(len));
    } else if (strcmp(enc, "deflate") == 0) {
        uLongf cap = compressBound(rawlen);
        body = cmn_malloc(cap);
        cr_assert_not_null(body);
        cr_assert_eq(compress2(body, &cap, raw, rawlen, 6), Z_OK);
        len = cap;
    } else {
        body = dup_body(raw, rawlen);
        len = rawlen;
    }
    struct fwd_payload *p = fwd_payload_new(kind, body, len);
    cr_assert_not_null(p);
    p->content_encoding = enc;
    p->raw_len = rawlen;
    return p;
}

/* MetricPayload with one series and its points. */
static struct fwd_payload *series_payload(const char *metric, char **tags,
                                          size_t ntags, int type,
                                          const int64_t *ts, const double *vals,
                                          size_t npoints, const char *enc)
{
    Datadog__Agentpayload__MetricPayload mp =
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__INIT;
    Datadog__Agentpayload__MetricPayload__MetricSeries s =
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_SERIES__INIT;
    Datadog__Agentpayload__MetricPayload__MetricPoint pts[8];
    Datadog__Agentpayload__MetricPayload__MetricPoint *ptp[8];
    Datadog__Agentpayload__MetricPayload__MetricSeries *sp = &s;
    for (size_t i = 0; i < npoints; i++) {
        Datadog__Agentpayload__MetricPayload__MetricPoint init =
            DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_POINT__INIT;
        pts[i] = init;
        pts[i].timestamp = ts[i];
        pts[i].value = vals[i];
        ptp[i] = &pts[i];
    }
    s.metric = (char *)metric;
    s.tags = tags;
    s.n_tags = ntags;
    s.points = ptp;
    s.n_points = npoints;
    s.type = type;
    s.interval = 10;
    mp.series = &sp;
    mp.n_series = 1;
    size_t n = datadog__agentpayload__metric_payload__get_packed_size(&mp);
    unsigned char buf[4096];
    cr_assert_leq(n, sizeof(buf));
    datadog__agentpayload__metric_payload__pack(&mp, buf);
    return make_payload(FWD_KIND_SERIES, buf, n, enc);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "cannot open %s", path);
    static char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

static void stopped(void *arg)
{
    (*(int *)arg)++;
}

Test(local, series_protobuf_zstd_to_json_lines)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, outpath, &l), 0);
    cr_assert_eq(lc_local_start(l), 0);
    char *tags[] = {"env:dev", "team:a"};
    int64_t ts[] = {1764072000, 1764072010};
    double v[] = {0.5, 1e-7};
    lc_local_submit(l,
                    series_payload("jobs.done", tags, 2, 2, ts, v, 2, "zstd"));
    lc_local_submit(l, series_payload("mem", NULL, 0, 3, ts, v, 1, "identity"));
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    cr_assert_eq(calls, 1);
    cr_assert_str_eq(
        read_file(outpath),
        "{\"type\":\"series\",\"metric\":\"jobs.done\",\"tags\":[\"env:dev\","
        "\"team:a\"],\"points\":[[1764072000,0.5]],\"kind\":\"rate\","
        "\"interval\":10}\n"
        "{\"type\":\"series\",\"metric\":\"jobs.done\",\"tags\":[\"env:dev\","
        "\"team:a\"],\"points\":[[1764072010,9.9999999999999995e-8]],"
        "\"kind\":\"rate\",\"interval\":10}\n"
        "{\"type\":\"series\",\"metric\":\"mem\",\"tags\":[],\"points\":[["
        "1764072000,0.5]],\"kind\":\"gauge\",\"interval\":10}\n");
    struct lc_local_stats st;
    lc_local_get_stats(l, &st);
    cr_assert_eq(st.payloads, 2);
    cr_assert_eq(st.series_points, 3);
    cr_assert_eq(st.decode_errors, 0);
    /* after stop: counted, freed */
    lc_local_submit(l,
                    series_payload("late", NULL, 0, 3, ts, v, 1, "identity"));
    lc_local_get_stats(l, &st);
    cr_assert_eq(st.dropped_stopped, 1);
    lc_local_destroy(l);
}

static struct fwd_payload *sketch_payload(const char *enc)
{
    struct agg_sketch sk;
    agg_sketch_init(&sk);
    cr_assert_eq(agg_sketch_insert(&sk, 1, 1), 0);
    cr_assert_eq(agg_sketch_insert(&sk, 2, 1), 0);
    cr_assert_eq(agg_sketch_insert(&sk, 3, 1), 0);
    cr_assert_eq(agg_sketch_finish(&sk), 0);
    int32_t k[16];
    uint32_t n[16];
    cr_assert_leq(sk.nbins, 16);
    for (uint32_t i = 0; i < sk.nbins; i++) {
        k[i] = sk.bins[i].k;
        n[i] = sk.bins[i].n;
    }
    Datadog__Agentpayload__SketchPayload sp =
        DATADOG__AGENTPAYLOAD__SKETCH_PAYLOAD__INIT;
    Datadog__Agentpayload__SketchPayload__Sketch s =
        DATADOG__AGENTPAYLOAD__SKETCH_PAYLOAD__SKETCH__INIT;
    Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch d =
        DATADOG__AGENTPAYLOAD__SKETCH_PAYLOAD__SKETCH__DOGSKETCH__INIT;
    Datadog__Agentpayload__SketchPayload__Sketch *spp = &s;
    Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *dp = &d;
    d.ts = 1764072000;
    d.cnt = sk.cnt;
    d.min = sk.min;
    d.max = sk.max;
    d.sum = sk.sum;
    d.avg = sk.avg;
    d.k = k;
    d.n_k = sk.nbins;
    d.n = n;
    d.n_n = sk.nbins;
    s.metric = "latency";
    s.host = "";
    s.dogsketches = &dp;
    s.n_dogsketches = 1;
    sp.sketches = &spp;
    sp.n_sketches = 1;
    unsigned char buf[4096];
    size_t len = datadog__agentpayload__sketch_payload__get_packed_size(&sp);
    cr_assert_leq(len, sizeof(buf));
    datadog__agentpayload__sketch_payload__pack(&sp, buf);
    agg_sketch_free(&sk);
    return make_payload(FWD_KIND_SKETCHES, buf, len, enc);
}

Test(local, sketch_deflate_to_json_line)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, outpath, &l), 0);
    cr_assert_eq(lc_local_start(l), 0);
    lc_local_submit(l, sketch_payload("deflate"));
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    /* p50 is the bin value of 2 (within 1/128), p99 the max (3) */
    double p50 = agg_sketch_key_lower(agg_sketch_key(2.0));
    cr_assert(p50 > 2.0 * (1 - 1.0 / 128) && p50 < 2.0 * (1 + 1.0 / 128));
    char want[512];
    snprintf(want, sizeof(want),
             "{\"type\":\"sketch\",\"metric\":\"latency\",\"tags\":[],"
             "\"ts\":1764072000,\"cnt\":3,\"min\":1.0,\"max\":3.0,"
             "\"sum\":6.0,\"avg\":2.0,\"p50\":%.17g,\"p99\":3.0}\n",
             p50);
    cr_assert_str_eq(read_file(outpath), want);
    struct lc_local_stats st;
    lc_local_get_stats(l, &st);
    cr_assert_eq(st.sketch_points, 1);
    lc_local_destroy(l);
}

Test(local, v1_json_events_and_service_checks)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, outpath, &l), 0);
    cr_assert_eq(lc_local_start(l), 0);
    const char *v1 = "{\"series\":[{\"metric\":\"m.v1\",\"points\":[[17640720"
                     "00,2.5]],\"tags\":[\"a:b\"],\"host\":\"\",\"type\":"
                     "\"count\",\"interval\":10}]}";
    struct fwd_payload *p =
        make_payload(FWD_KIND_SERIES, v1, strlen(v1), "deflate");
    p->protobuf = false;
    p->content_type = "application/json";
    p->route = "/api/v1/series";
    lc_local_submit(l, p);
    const char *ev = "{\"apiKey\":\"\",\"events\":{\"api\":[{\"msg_title\":"
                     "\"deploy\",\"msg_text\":\"v2\",\"timestamp\":1764072000,"
                     "\"host\":\"\",\"tags\":[\"env:dev\"]}]},"
                     "\"internalHostname\":\"\"}";
    lc_local_submit(l, make_payload(FWD_KIND_EVENTS, ev, strlen(ev), "zstd"));
    const char *sc = "[{\"check\":\"app.ok\",\"host_name\":\"\",\"timestamp\":"
                     "1764072000,\"status\":2,\"message\":\"down\",\"tags\":"
                     "null}]";
    lc_local_submit(
        l, make_payload(FWD_KIND_SERVICE_CHECKS, sc, strlen(sc), "identity"));
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    cr_assert_str_eq(
        read_file(outpath),
        "{\"type\":\"series\",\"metric\":\"m.v1\",\"tags\":[\"a:b\"],"
        "\"points\":[[1764072000,2.5]],\"kind\":\"count\",\"interval\":10}\n"
        "{\"type\":\"event\",\"msg_title\":\"deploy\",\"msg_text\":\"v2\","
        "\"timestamp\":1764072000,\"host\":\"\",\"tags\":[\"env:dev\"]}\n"
        "{\"type\":\"service_check\",\"check\":\"app.ok\",\"host_name\":\"\","
        "\"timestamp\":1764072000,\"status\":2,\"message\":\"down\","
        "\"tags\":null}\n");
    struct lc_local_stats st;
    lc_local_get_stats(l, &st);
    cr_assert_eq(st.payloads, 3);
    cr_assert_eq(st.series_points, 1);
    cr_assert_eq(st.events, 1);
    cr_assert_eq(st.service_checks, 1);
    lc_local_destroy(l);
}

Test(local, summary_table)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, NULL, &l), 0);
    FILE *tab = tmpfile();
    cr_assert_not_null(tab);
    lc_local_set_summary_stream(l, tab);
    cr_assert_eq(lc_local_start(l), 0);
    char *tags[] = {"env:dev", "team:a"};
    int64_t ts[] = {1764072000, 1764072010};
    double v[] = {0.5, 0.25};
    lc_local_submit(l,
                    series_payload("jobs.done", tags, 2, 2, ts, v, 2, "zstd"));
    lc_local_submit(l, sketch_payload("identity"));
    char *longtags[] = {"a-rather-long-tag:with-a-long-value", "x:y"};
    lc_local_submit(
        l, series_payload("a.metric.name.that.is.far.too.long.for.its.column",
                          longtags, 2, 3, ts, v, 1, "deflate"));
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    cr_assert_eq(calls, 1);
    double p50 = agg_sketch_key_lower(agg_sketch_key(2.0));
    char want[2048];
    snprintf(want, sizeof(want),
             "drainpipe: no DD_API_KEY set, so nothing was sent. This is "
             "what would have been sent:\n"
             "\n"
             "a.metric.name.that.is.far.too.long.for.its.column (gauge)\n"
             "    tags:   a-rather-long-tag:with-a-long-value,x:y\n"
             "    points: 1, last 0.5\n"
             "\n"
             "jobs.done (rate)\n"
             "    tags:   env:dev,team:a\n"
             "    points: 2, last 0.25\n"
             "\n"
             "latency (distribution)\n"
             "    tags:   (none)\n"
             "    points: 1, last cnt=3 min=1 p50=%g max=3\n"
             "\n"
             "Totals: 3 metrics, 4 points, 0 events, 0 service checks\n"
             "Dropped: none\n",
             p50);
    rewind(tab);
    char got[2048];
    size_t n = fread(got, 1, sizeof(got) - 1, tab);
    got[n] = '\0';
    fclose(tab);
    cr_assert_str_eq(got, want);
    lc_local_destroy(l);
}

Test(local, undecodable_payloads_are_counted)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, outpath, &l), 0);
    cr_assert_eq(lc_local_start(l), 0);
    const char junk[] = "not a zstd frame";
    lc_local_submit(
        l, make_payload(FWD_KIND_SERIES, junk, sizeof(junk), "identity"));
    struct fwd_payload *p =
        make_payload(FWD_KIND_SERIES, junk, sizeof(junk), "identity");
    p->content_encoding = "zstd";
    lc_local_submit(l, p);
    p = make_payload(FWD_KIND_EVENTS, junk, sizeof(junk), "identity");
    lc_local_submit(l, p);
    struct lc_local_stats st;
    lc_local_get_stats(l, &st);
    cr_assert_eq(st.payloads, 3);
    cr_assert_eq(st.decode_errors, 3);
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    cr_assert_str_eq(read_file(outpath), "");
    lc_local_destroy(l);
}

Test(local, unwritable_file_fails_start)
{
    struct lc_local *l;
    char bad[400];
    snprintf(bad, sizeof(bad), "%s/no/such/dir/out.jsonl", tmpdir);
    cr_assert_eq(lc_local_create(NULL, bad, &l), 0);
    cr_assert_eq(lc_local_start(l), UV_ENOENT);
    lc_local_destroy(l);
}

/* OOM loop: a decode that runs out of memory is a counted decode error,
 * never a crash or a leak. */
Test(local, decode_survives_allocation_failures)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, NULL, &l), 0);
    FILE *tab = tmpfile();
    lc_local_set_summary_stream(l, tab);
    cr_assert_eq(lc_local_start(l), 0);
    char *tags[] = {"env:dev"};
    int64_t ts[] = {1764072000};
    double v[] = {0.5};
    uint64_t ok = 0, failed = 0;
    for (uint64_t n = 1; n < 64; n++) {
        struct fwd_payload *p =
            series_payload("jobs.done", tags, 1, 2, ts, v, 1, "zstd");
        cmn_alloc_fail_after(n);
        lc_local_submit(l, p);
        cmn_alloc_fail_reset();
        struct lc_local_stats st;
        lc_local_get_stats(l, &st);
        if (st.decode_errors > failed)
            failed++;
        else
            ok++;
    }
    cr_assert_gt(failed, 0);
    cr_assert_gt(ok, 0);
    struct lc_local_stats st;
    lc_local_get_stats(l, &st);
    cr_assert_eq(st.payloads, 63);
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    fclose(tab);
    lc_local_destroy(l);
}

Test(local, summary_with_nothing_received)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, NULL, &l), 0);
    FILE *tab = tmpfile();
    cr_assert_not_null(tab);
    lc_local_set_summary_stream(l, tab);
    cr_assert_eq(lc_local_start(l), 0);
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    lc_local_stop(l, stopped, &calls); /* idempotent: printed once */
    cr_assert_eq(calls, 2);
    rewind(tab);
    char got[512];
    size_t n = fread(got, 1, sizeof(got) - 1, tab);
    got[n] = '\0';
    fclose(tab);
    cr_assert_str_eq(got, "drainpipe: no DD_API_KEY set, so nothing was sent "
                          "(and no metrics were received).\n"
                          "\n"
                          "Totals: 0 metrics, 0 points, 0 events, 0 service "
                          "checks\n"
                          "Dropped: none\n");
    lc_local_destroy(l);
}

static size_t fake_drops(void *data, struct lc_drop *out, size_t max)
{
    (void)data;
    cr_assert_geq(max, 3);
    out[0] = (struct lc_drop){"lines not parsed: invalid metric type", 2};
    out[1] = (struct lc_drop){"NaN/Inf values", 0}; /* not printed */
    out[2] = (struct lc_drop){"samples over the context limit", 1};
    return 3;
}

/* Events and service checks are blocks of their own; a long tag list is
 * printed whole; the totals count them; every non-zero drop is listed by
 * cause, the pipeline's first, then the sink's own. */
Test(local, summary_lists_events_checks_and_drops_by_cause)
{
    struct lc_local *l;
    cr_assert_eq(lc_local_create(NULL, NULL, &l), 0);
    FILE *tab = tmpfile();
    cr_assert_not_null(tab);
    lc_local_set_summary_stream(l, tab);
    lc_local_set_drops_fn(l, fake_drops, NULL);
    cr_assert_eq(lc_local_start(l), 0);
    char *tags[12];
    char tagv[12][40];
    for (int i = 0; i < 12; i++) {
        snprintf(tagv[i], sizeof(tagv[i]), "gcrj.some_long_tag_%02d:value", i);
        tags[i] = tagv[i];
    }
    int64_t ts[] = {1764072000};
    double v[] = {7};
    lc_local_submit(
        l, series_payload("job.rows", tags, 12, 3, ts, v, 1, "identity"));
    const char ev[] = "{\"apiKey\":\"\",\"events\":{\"api\":[{\"msg_title\":"
                      "\"batch failed\",\"msg_text\":\"3 rows\","
                      "\"timestamp\":5,\"host\":\"\"}]},"
                      "\"internalHostname\":\"\"}";
    lc_local_submit(l,
                    make_payload(FWD_KIND_EVENTS, ev, strlen(ev), "identity"));
    const char sc[] = "[{\"check\":\"job.done\",\"host_name\":\"\","
                      "\"timestamp\":5,\"status\":2,\"message\":\"\","
                      "\"tags\":[\"a:b\"]}]";
    lc_local_submit(
        l, make_payload(FWD_KIND_SERVICE_CHECKS, sc, strlen(sc), "identity"));
    const char junk[] = "not a zstd frame";
    struct fwd_payload *p =
        make_payload(FWD_KIND_SERIES, junk, sizeof(junk), "identity");
    p->content_encoding = "zstd";
    lc_local_submit(l, p);
    int calls = 0;
    lc_local_stop(l, stopped, &calls);
    rewind(tab);
    char got[4096];
    size_t n = fread(got, 1, sizeof(got) - 1, tab);
    got[n] = '\0';
    fclose(tab);
    cr_assert_str_eq(
        got,
        "drainpipe: no DD_API_KEY set, so nothing was sent. This is what "
        "would have been sent:\n"
        "\n"
        "batch failed (event)\n"
        "    tags:   (none)\n"
        "    sent:   1, last 3 rows\n"
        "\n"
        "job.done (check)\n"
        "    tags:   a:b\n"
        "    sent:   1, last CRITICAL\n"
        "\n"
        "job.rows (gauge)\n"
        "    tags:   gcrj.some_long_tag_00:value,gcrj.some_long_tag_01:value,"
        "gcrj.some_long_tag_02:value,gcrj.some_long_tag_03:value,"
        "gcrj.some_long_tag_04:value,gcrj.some_long_tag_05:value,"
        "gcrj.some_long_tag_06:value,gcrj.some_long_tag_07:value,"
        "gcrj.some_long_tag_08:value,gcrj.some_long_tag_09:value,"
        "gcrj.some_long_tag_10:value,gcrj.some_long_tag_11:value\n"
        "    points: 1, last 7\n"
        "\n"
        "Totals: 1 metric, 1 point, 1 event, 1 service check\n"
        "Dropped:\n"
        "    2 lines not parsed: invalid metric type\n"
        "    1 samples over the context limit\n"
        "    1 payloads that could not be decoded\n");
    lc_local_destroy(l);
}
