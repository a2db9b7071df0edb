/*
 * test_serialize.c - payloads (spec/pipeline.md §2.6, §3.2-§3.4, §3.7):
 * the no-aggregation path, events and service-check JSON bodies, payload
 * splitting, zstd / zlib / none round trips and the v1 JSON body.
 */
#include "agg_test_util.h"

#include "agg_internal.h" /* the serializer's kept scratch */

#define T0 1000000.0

TH_SUITE(ser);

static char *body_of(size_t i)
{
    size_t len;
    cr_assert_lt(i, h.np);
    return th_body(h.p[i], &len);
}

Test(ser, no_agg_gauge_counter_and_dropped_types)
{
    th_create(&h);
    double v = 3;
    /* the no-agg batch is allocated with the first timestamped sample,
     * not with the aggregator: a process without them never maps it */
    cr_assert_eq(th_add(&h, "g", "a:1", AGG_GAUGE, &v, 1, 1, 0), 0);
    size_t before = cmn_alloc_live_bytes();
    cr_assert_eq(th_add(&h, "g", "a:1", AGG_GAUGE, &v, 1, 1, 999950), 0);
    cr_expect_eq(cmn_alloc_live_bytes() - before,
                 h.cfg.no_agg_batch_size * sizeof(struct agg__noagg));
    v = 5;
    cr_assert_eq(th_add(&h, "c", NULL, AGG_COUNTER, &v, 1, 0.5, 999960), 0);
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, &v, 1, 1, 999960), 0);
    cr_assert_eq(th_add(&h, "t", NULL, AGG_TIMING, &v, 1, 1, 999960), 0);
    cr_assert_eq(th_add(&h, "d", NULL, AGG_DISTRIBUTION, &v, 1, 1, 999960), 0);
    struct agg_metric m = {.name = CMN_SLICE_LIT("s"),
                           .type = AGG_SET,
                           .set_member = CMN_SLICE_LIT("x"),
                           .rate = 1,
                           .timestamp = 999960};
    cr_assert_eq(agg_add_metric(h.a, &m), 0);
    th_flush(&h, false); /* open bucket: only the no-agg batch goes */
    th_decode(&h);
    cr_assert_eq(h.np, 1);
    cr_assert_eq(th_nseries(&h), 2);
    MSeries *g = th_series(&h, "g");
    cr_assert_eq(g->type, 3);
    cr_assert_eq(g->interval, 10);
    cr_assert_eq(g->n_points, 1);
    cr_assert_eq(g->points[0]->timestamp, 999950);
    cr_assert_float_eq(g->points[0]->value, 3, 1e-12);
    cr_assert_eq(g->n_tags, 1);
    cr_assert_str_eq(g->tags[0], "a:1");
    cr_assert_str_eq(g->resources[0]->name, "myhost");
    MSeries *c = th_series(&h, "c");
    cr_assert_eq(c->type, 2);
    cr_assert_eq(c->interval, 10);
    cr_assert_eq(c->points[0]->timestamp, 999960);
    cr_assert_float_eq(c->points[0]->value, 0.5, 1e-12);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.samples_no_agg, 2);
    cr_assert_eq(st.samples_no_agg_unsupported, 4);
}

Test(ser, no_agg_batches_cut)
{
    h.cfg.no_agg_batch_size = 2;
    th_create(&h);
    for (int i = 0; i < 5; i++) {
        double v = i;
        cr_assert_eq(th_add(&h, "g", NULL, AGG_GAUGE, &v, 1, 1, 999900 + i), 0);
    }
    while (h.np < 2)
        uv_run(&h.loop, UV_RUN_ONCE);
    cr_assert_eq(h.np, 2);
    cr_assert_eq(h.p[0]->items, 2);
    cr_assert_eq(h.p[1]->items, 2);
    th_stop(&h); /* the stop flush sends the last one */
    cr_assert_eq(h.np, 3);
    cr_assert_eq(h.p[2]->items, 1);
    th_decode(&h);
    int64_t seen = 0;
    for (size_t i = 0; i < h.nmp; i++) {
        for (size_t k = 0; k < h.mp[i]->n_series; k++) {
            MSeries *s = h.mp[i]->series[k];
            int64_t off = s->points[0]->timestamp - 999900;
            cr_assert_float_eq(s->points[0]->value, (double)off, 1e-12);
            cr_assert_eq(off, seen, "order");
            seen++;
        }
    }
    cr_assert_eq(seen, 5);
}

Test(ser, events_json_exact)
{
    h.cfg.extra_tags = cmn_calloc(1, sizeof(char *));
    h.cfg.extra_tags[0] = cmn_strdup("env:prod");
    h.cfg.nextra_tags = 1;
    th_create(&h);
    struct agg_event e1 = {
        .title = CMN_SLICE_LIT("t"),
        .text = CMN_SLICE_LIT("line1\nline2"),
        .timestamp = 1234,
        .priority = AGG_PRIO_LOW,
        .aggregation_key = CMN_SLICE_LIT("k"),
        .source_type_name = CMN_SLICE_LIT("src"),
        .alert_type = AGG_ALERT_ERROR,
        .tags = CMN_SLICE_LIT("a:b,host:evhost,env:prod"),
    };
    struct agg_event e2 = {.title = CMN_SLICE_LIT("t2"),
                           .text = CMN_SLICE_LIT("x")};
    struct agg_event e3 = {.title = CMN_SLICE_LIT("t3"),
                           .text = CMN_SLICE_LIT(""),
                           .timestamp = 5,
                           .priority = AGG_PRIO_NORMAL,
                           .host = CMN_SLICE_LIT("explicit"),
                           .tags = CMN_SLICE_LIT("host:ignored")};
    cr_assert_eq(agg_add_event(h.a, &e1), 0);
    cr_assert_eq(agg_add_event(h.a, &e2), 0);
    cr_assert_eq(agg_add_event(h.a, &e3), 0);
    th_flush(&h, false);
    cr_assert_eq(h.np, 1);
    cr_assert_eq(h.p[0]->kind, FWD_KIND_EVENTS);
    cr_assert_str_eq(h.p[0]->route, "/intake/");
    cr_assert_str_eq(h.p[0]->content_type, "application/json");
    cr_assert_eq(h.p[0]->items, 3);
    char *b = body_of(0);
    cr_assert_str_eq(
        b, "{\"apiKey\":\"\",\"events\":{\"api\":["
           "{\"msg_title\":\"t2\",\"msg_text\":\"x\",\"timestamp\":1000000,"
           "\"host\":\"myhost\",\"tags\":[\"env:prod\"]},"
           "{\"msg_title\":\"t3\",\"msg_text\":\"\",\"timestamp\":5,"
           "\"priority\":\"normal\",\"host\":\"explicit\","
           "\"tags\":[\"env:prod\"]}],"
           "\"src\":[{\"msg_title\":\"t\",\"msg_text\":\"line1\\nline2\","
           "\"timestamp\":1234,\"priority\":\"low\",\"host\":\"evhost\","
           "\"tags\":[\"a:b\",\"env:prod\"],\"alert_type\":\"error\","
           "\"aggregation_key\":\"k\",\"source_type_name\":\"src\"}]},"
           "\"internalHostname\":\"myhost\"}");
    free(b);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.events, 3);
}

Test(ser, service_checks_json_exact)
{
    th_create(&h);
    struct agg_service_check c1 = {.name = CMN_SLICE_LIT("chk"),
                                   .status = 2,
                                   .message = CMN_SLICE_LIT("m")};
    struct agg_service_check c2 = {.name = CMN_SLICE_LIT("chk2"),
                                   .status = 0,
                                   .timestamp = 77,
                                   .host = CMN_SLICE_LIT("hh"),
                                   .tags = CMN_SLICE_LIT("x:1,y")};
    cr_assert_eq(agg_add_service_check(h.a, &c1), 0);
    cr_assert_eq(agg_add_service_check(h.a, &c2), 0);
    th_flush(&h, false);
    cr_assert_eq(h.np, 1);
    cr_assert_eq(h.p[0]->kind, FWD_KIND_SERVICE_CHECKS);
    cr_assert_str_eq(h.p[0]->route, "/api/v1/check_run");
    cr_assert_eq(h.p[0]->items, 2);
    char *b = body_of(0);
    cr_assert_str_eq(
        b, "[{\"check\":\"chk\",\"host_name\":\"myhost\","
           "\"timestamp\":1000000,\"status\":2,\"message\":\"m\","
           "\"tags\":null},"
           "{\"check\":\"chk2\",\"host_name\":\"hh\",\"timestamp\":77,"
           "\"status\":0,\"message\":\"\",\"tags\":[\"x:1\",\"y\"]}]");
    free(b);
}

Test(ser, split_by_points)
{
    h.cfg.max_series_points_per_payload = 3;
    th_create(&h);
    const char *names[] = {"a", "b", "c", "d", "e"};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(th_add1(&h, names[i], NULL, AGG_GAUGE, i), 0);
    /* "big" gets 4 points: over the limit alone, dropped */
    for (int k = 0; k < 4; k++) {
        h.now = T0 + 10 * k;
        cr_assert_eq(th_add1(&h, "big", NULL, AGG_GAUGE, k), 0);
    }
    h.now = T0 + 40;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(h.np, 2);
    cr_assert_eq(h.p[0]->items, 3);
    cr_assert_eq(h.p[0]->points, 3);
    cr_assert_eq(h.p[1]->items, 2);
    cr_assert_eq(h.mp[0]->n_series, 3);
    cr_assert_eq(h.mp[1]->n_series, 2);
    cr_assert_str_eq(h.mp[0]->series[0]->metric, "a");
    cr_assert_str_eq(h.mp[1]->series[1]->metric, "e");
    cr_assert_null(th_series(&h, "big"));
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.items_too_big, 1);
    cr_assert_eq(st.payloads, 2);
}

/* Payloads full by points are packed as the series are written: the
 * serializer's scratch holds about one payload (here 100 series of ~40
 * bytes), not the flush (5 000 series, ~200 kB: the byte limit alone
 * never cut). The payloads are the ones a packing of the whole flush
 * makes: 50 of exactly 100 points, every series once. */
Test(ser, scratch_holds_one_payload_when_cut_by_points)
{
    h.cfg.max_series_points_per_payload = 100;
    th_create(&h);
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof(name), "g%04d", i);
        cr_assert_eq(th_add1(&h, name, NULL, AGG_GAUGE, i), 0);
    }
    h.now = T0 + 40;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(h.np, 50);
    static bool seen[5000];
    for (size_t p = 0; p < h.np; p++) {
        cr_assert_eq(h.p[p]->points, 100, "payload %zu", p);
        cr_assert_eq(h.mp[p]->n_series, 100, "payload %zu", p);
        for (size_t k = 0; k < h.mp[p]->n_series; k++) {
            const MSeries *m = h.mp[p]->series[k];
            int64_t i;
            cr_assert_eq(cmn_parse_i64(cmn_slice_cstr(m->metric + 1), &i), 0);
            cr_assert(i >= 0 && i < 5000, "%s", m->metric);
            cr_assert(!seen[i], "%s twice", m->metric);
            seen[i] = true;
            cr_assert_eq(m->n_points, 1);
            cr_assert_eq(m->points[0]->value, (double)i);
        }
    }
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.payloads, 50);
    cr_assert_eq(st.items_too_big, 0);
    cr_assert_leq(h.a->sch.data.cap, 16384, "kept scratch %zu bytes",
                  h.a->sch.data.cap);
}

Test(ser, split_by_uncompressed_and_compressed_size)
{
    h.cfg.max_series_uncompressed_payload_size = 200;
    th_create(&h);
    char name[64];
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "metric.number.%02d", i);
        cr_assert_eq(th_add1(&h, name, "some:tag,other:tag", AGG_GAUGE, i), 0);
    }
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_gt(h.np, 2);
    size_t total = 0;
    for (size_t i = 0; i < h.np; i++) {
        cr_assert_leq(h.p[i]->raw_len, 200);
        total += h.p[i]->items;
    }
    cr_assert_eq(total, 20);
    cr_assert_eq(th_nseries(&h), 20);
    th_clear(&h);

    /* compressed limit: zstd output over 120 bytes is split in halves */
    struct th *hp = &h;
    th_stop(hp);
    agg_config_free(&h.cfg);
    agg_config_defaults(&h.cfg);
    cmn_free(h.cfg.hostname);
    h.cfg.hostname = cmn_strdup("myhost");
    h.cfg.max_series_payload_size = 120;
    h.stopped = 0;
    h.now = T0;
    th_create(&h);
    for (int i = 0; i < 20; i++) {
        snprintf(name, sizeof(name), "metric.number.%02d", i);
        cr_assert_eq(th_add1(&h, name, "some:tag,other:tag", AGG_GAUGE, i), 0);
    }
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_gt(h.np, 1);
    total = 0;
    for (size_t i = 0; i < h.np; i++) {
        cr_assert_str_eq(h.p[i]->content_encoding, "zstd");
        cr_assert_leq(h.p[i]->len, 120);
        total += h.p[i]->items;
    }
    cr_assert_eq(total, 20);
    cr_assert_eq(th_nseries(&h), 20);
}

static void roundtrip(enum agg_compressor comp, const char *enc)
{
    h.cfg.compressor = comp;
    th_create(&h);
    char name[64];
    for (int i = 0; i < 50; i++) {
        snprintf(name, sizeof(name), "rt.%d", i);
        cr_assert_eq(th_add1(&h, name, "a:b", AGG_COUNTER, i), 0);
    }
    cr_assert_eq(th_add1(&h, "dist", NULL, AGG_DISTRIBUTION, 1), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    cr_assert_eq(h.np, 2);
    for (size_t i = 0; i < h.np; i++)
        cr_assert_str_eq(h.p[i]->content_encoding, enc);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 50);
    MSeries *s = th_series(&h, "rt.49");
    cr_assert_float_eq(s->points[0]->value, 4.9, 1e-12);
    cr_assert_eq(th_sketch(&h, "dist")->dogsketches[0]->cnt, 1);
    if (comp != AGG_COMPRESS_NONE)
        cr_assert_lt(h.p[0]->len, h.p[0]->raw_len);
}

Test(ser, roundtrip_zstd)
{
    roundtrip(AGG_COMPRESS_ZSTD, "zstd");
}

Test(ser, roundtrip_zlib)
{
    roundtrip(AGG_COMPRESS_ZLIB, "deflate");
}

Test(ser, roundtrip_none)
{
    roundtrip(AGG_COMPRESS_NONE, "identity");
}

Test(ser, v1_json_body)
{
    h.cfg.use_v2_series = false;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "x", "a:1,device:sdb", AGG_COUNTER, 5), 0);
    h.now = T0 + 10;
    cr_assert_eq(th_add1(&h, "x", "a:1,device:sdb", AGG_COUNTER, 10), 0);
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 2), 0);
    h.now = T0 + 20;
    th_flush(&h, false);
    cr_assert_eq(h.np, 1);
    cr_assert_str_eq(h.p[0]->route, "/api/v1/series");
    cr_assert_str_eq(h.p[0]->content_type, "application/json");
    cr_assert(!h.p[0]->protobuf);
    cr_assert_eq(h.p[0]->items, 2);
    cr_assert_eq(h.p[0]->points, 3);
    char *b = body_of(0);
    cr_assert_str_eq(
        b, "{\"series\":["
           "{\"metric\":\"x\",\"points\":[[1000000,0.5],[1000010,1.0]],"
           "\"tags\":[\"a:1\"],\"host\":\"myhost\",\"device\":\"sdb\","
           "\"type\":\"rate\",\"interval\":10},"
           "{\"metric\":\"g\",\"points\":[[1000010,2.0]],\"tags\":[],"
           "\"host\":\"myhost\",\"type\":\"gauge\",\"interval\":10}]}");
    free(b);
}

Test(ser, nothing_to_send_sends_nothing)
{
    th_create(&h);
    h.now = T0 + 100;
    th_flush(&h, false);
    th_flush(&h, true);
    cr_assert_eq(h.np, 0);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.flushes, 2);
    cr_assert_eq(st.payloads, 0);
}

Test(ser, disabled_payload_kinds)
{
    h.cfg.enable_series = false;
    h.cfg.enable_events = false;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, 1), 0);
    struct agg_event ev = {.title = CMN_SLICE_LIT("t")};
    cr_assert_eq(agg_add_event(h.a, &ev), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    cr_assert_eq(h.np, 1);
    cr_assert_eq(h.p[0]->kind, FWD_KIND_SKETCHES);
}

static int order[8], norder;
static void flush_cb(void *data)
{
    order[norder++] = (int)(intptr_t)data;
}

Test(ser, flushes_complete_in_order)
{
    th_create(&h);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%d", i);
        cr_assert_eq(th_add1(&h, name, NULL, AGG_GAUGE, i), 0);
        cr_assert_eq(agg_flush(h.a, true, flush_cb, (void *)(intptr_t)i), 0);
    }
    while (norder < 4)
        uv_run(&h.loop, UV_RUN_ONCE);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(order[i], i);
    th_decode(&h);
    cr_assert_eq(h.nmp, 4);
    for (int i = 0; i < 4; i++) {
        char name[16];
        snprintf(name, sizeof(name), "m%d", i);
        cr_assert_str_eq(h.mp[i]->series[0]->metric, name);
    }
}

Test(ser, no_agg_jobs_capped_when_pool_is_behind)
{
    h.cfg.no_agg_batch_size = 1;
    th_create(&h);
    /* the loop does not run: no job can finish meanwhile */
    for (int i = 0; i < 200; i++) {
        double v = i;
        cr_assert_eq(th_add(&h, "g", NULL, AGG_GAUGE, &v, 1, 1, 999000 + i), 0);
    }
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    /* 1 running + 64 waiting jobs, one sample kept in the batch */
    cr_assert_eq(st.samples_no_agg, 66);
    cr_assert_eq(st.samples_dropped_cap, 134);
    /* a periodic flush refuses to queue more; the final one goes */
    cr_assert_eq(agg_flush(h.a, false, NULL, NULL), CMN_ECAP);
    th_stop(&h);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 66);
    cr_assert_eq(h.np, 66);
}

Test(ser, invalid_utf8_becomes_replacement_char)
{
    h.cfg.use_v2_series = false;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "bad\xff", "t:\xc3\x28,ok:\xc3\xa9", AGG_GAUGE, 1),
                 0);
    struct agg_event e = {.title = CMN_SLICE_LIT("x\xfe"),
                          .text = CMN_SLICE_LIT("y"),
                          .timestamp = 1,
                          .source_type_name = CMN_SLICE_LIT("s\xff")};
    cr_assert_eq(agg_add_event(h.a, &e), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    cr_assert_eq(h.np, 2);
    char *b = body_of(0);
    cr_assert_str_eq(b, "{\"series\":[{\"metric\":\"bad\xef\xbf\xbd\","
                        "\"points\":[[1000000,1.0]],"
                        "\"tags\":[\"ok:\xc3\xa9\",\"t:\xef\xbf\xbd(\"],"
                        "\"host\":\"myhost\",\"type\":\"gauge\","
                        "\"interval\":10}]}");
    free(b);
    b = body_of(1);
    cr_assert_str_eq(b, "{\"apiKey\":\"\",\"events\":{\"s\xef\xbf\xbd\":["
                        "{\"msg_title\":\"x\xef\xbf\xbd\",\"msg_text\":\"y\","
                        "\"timestamp\":1,\"host\":\"myhost\","
                        "\"source_type_name\":\"s\xef\xbf\xbd\"}]},"
                        "\"internalHostname\":\"myhost\"}");
    free(b);
}

/* The zstd stream at a small compressed limit: 600 series with 64 random
 * hex digits of tags fill payloads of at most 8 000 compressed bytes. The
 * stream is flushed to learn its exact size when the bound of what it
 * holds would pass the limit, and a payload is cut only then: every
 * payload is within the limit, all but the last are filled past 7 000
 * bytes, and every series arrives exactly once with its value. */
Test(ser, zstd_stream_cut_at_the_compressed_limit)
{
    enum { N = 600 };
    h.cfg.compressor = AGG_COMPRESS_ZSTD;
    h.cfg.max_series_payload_size = 8000;
    th_create(&h);
    char name[32], tags[96];
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < N; i++) {
        int w = snprintf(tags, sizeof(tags), "r:");
        for (int k = 0; k < 4; k++) { /* xorshift: not compressible */
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            w += snprintf(tags + w, sizeof(tags) - (size_t)w, "%016llx",
                          (unsigned long long)x);
        }
        snprintf(name, sizeof(name), "z.%d", i);
        cr_assert_eq(th_add1(&h, name, tags, AGG_GAUGE, i), 0);
    }
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.items_too_big, 0);
    cr_assert_eq(st.payloads_dropped, 0);
    /* 600 series of ~120 raw bytes compress to ~26 kB: cut by the
     * compressed limit alone (raw bytes and points are far from theirs) */
    cr_assert_geq(h.np, 4, "%zu payloads", h.np);
    size_t total = 0;
    for (size_t i = 0; i < h.np; i++) {
        cr_assert_str_eq(h.p[i]->content_encoding, "zstd");
        cr_assert_leq(h.p[i]->len, 8000);
        if (i + 1 < h.np) /* cut close to the limit, not early */
            cr_assert_gt(h.p[i]->len, 7000, "payload %zu: %zu bytes", i,
                         h.p[i]->len);
        total += h.p[i]->items;
    }
    cr_assert_eq(total, N);
    cr_assert_eq(th_nseries(&h), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "z.%d", i);
        MSeries *s = th_series(&h, name);
        cr_assert_not_null(s, "%s missing", name);
        cr_assert_eq(s->n_points, 1);
        cr_assert_eq(s->points[0]->value, i);
    }
}
