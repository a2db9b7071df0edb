/*
 * test_flush.c - buckets and flushing (spec/pipeline.md §2.2, §2.4):
 * bucket boundaries, the flush rule, merging buckets into one series,
 * counter zero-fill, context expiry, the final flush with and without
 * incomplete buckets, the periodic timer; and contexts (§1.4): tag order
 * and duplicates, host:, device:, extra tags, serverless mode, the cap.
 */
#include "agg_test_util.h"

#define T0 1000000.0

TH_SUITE(flush);

/* "<prefix><int>" -> *out; 0 on success. */
static int parse_prefixed(const char *s, const char *prefix, int *out)
{
    size_t n = strlen(prefix);
    int64_t v;
    if (strncmp(s, prefix, n) != 0)
        return -1;
    if (cmn_parse_i64(cmn_slice_cstr(s + n), &v) != 0)
        return -1;
    *out = (int)v;
    return 0;
}

static void check_point(MSeries *s, size_t i, int64_t ts, double v)
{
    cr_assert_not_null(s);
    cr_assert_gt(s->n_points, i);
    cr_assert_eq(s->points[i]->timestamp, ts, "ts %ld != %ld",
                 (long)s->points[i]->timestamp, (long)ts);
    cr_assert_float_eq(s->points[i]->value, v, 1e-12, "value %.17g != %.17g",
                       s->points[i]->value, v);
}

Test(flush, bucket_boundary_and_merge)
{
    th_create(&h);
    h.now = T0 + 9.999;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 1), 0);
    h.now = T0 + 10.0;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 2), 0);
    h.now = T0 + 20;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 1);
    MSeries *s = th_series(&h, "g");
    cr_assert_eq(s->n_points, 2);
    check_point(s, 0, (int64_t)T0, 1);
    check_point(s, 1, (int64_t)T0 + 10, 2);
    cr_assert_eq(h.p[0]->points, 2);
}

Test(flush, open_bucket_waits)
{
    th_create(&h);
    h.now = T0 + 5;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 1), 0);
    h.now = T0 + 9.9; /* cutoff T0: T0 + 10 > T0 */
    th_flush(&h, false);
    cr_assert_eq(h.np, 0);
    h.now = T0 + 15;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 2), 0);
    h.now = T0 + 19.99; /* cutoff T0 + 10: only the first bucket */
    th_flush(&h, false);
    th_decode(&h);
    MSeries *s = th_series(&h, "g");
    cr_assert_eq(s->n_points, 1);
    check_point(s, 0, (int64_t)T0, 1);
    th_clear(&h);
    h.now = T0 + 20;
    th_flush(&h, false);
    th_decode(&h);
    s = th_series(&h, "g");
    cr_assert_eq(s->n_points, 1);
    check_point(s, 0, (int64_t)T0 + 10, 2);
}

Test(flush, force_flushes_open_bucket)
{
    th_create(&h);
    h.now = T0 + 3;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, 1), 0);
    th_flush(&h, true);
    th_decode(&h);
    check_point(th_series(&h, "g"), 0, (int64_t)T0, 1);
    cr_assert_not_null(th_sketch(&h, "d"));
}

Test(flush, counter_zero_fill_300s_then_stop)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "c", NULL, AGG_COUNTER, 10), 0);
    size_t zeros = 0, real = 0;
    int64_t last_zero = 0;
    struct agg_stats st;
    for (int k = 1; k <= 33; k++) {
        h.now = T0 + 10 * k;
        th_flush(&h, false);
        th_decode(&h);
        MSeries *s = th_series(&h, "c");
        if (s != NULL) {
            cr_assert_eq(s->n_points, 1);
            cr_assert_eq(s->type, 2);
            cr_assert_eq(s->points[0]->timestamp, (int64_t)T0 + 10 * (k - 1));
            if (s->points[0]->value == 0) {
                zeros++;
                last_zero = s->points[0]->timestamp;
            } else {
                cr_assert_float_eq(s->points[0]->value, 1.0, 1e-12);
                real++;
            }
        }
        th_clear(&h);
        agg_get_stats(h.a, &st);
        /* zeros bump last_seen to 1000290: kept 20 s longer */
        if (h.now < T0 + 320)
            cr_assert_eq(st.contexts, 1, "at %f", h.now);
        else
            cr_assert_eq(st.contexts, 0, "at %f", h.now);
    }
    cr_assert_eq(real, 1);
    cr_assert_eq(zeros, 29); /* buckets 1000010 .. 1000290 */
    cr_assert_eq(last_zero, (int64_t)T0 + 290);
    cr_assert_eq(st.contexts_expired, 1);
    th_stop(&h);
    cr_assert_eq(h.np, 0);
}

Test(flush, zero_fill_in_real_buckets)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "c", NULL, AGG_COUNTER, 10), 0);
    h.now = T0 + 10;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 1), 0);
    h.now = T0 + 30; /* buckets T0 (c) and T0+10 (g only) */
    th_flush(&h, false);
    th_decode(&h);
    MSeries *s = th_series(&h, "c");
    cr_assert_eq(s->n_points, 2);
    check_point(s, 0, (int64_t)T0, 1);
    check_point(s, 1, (int64_t)T0 + 10, 0);
    check_point(th_series(&h, "g"), 0, (int64_t)T0 + 10, 1);
}

Test(flush, context_expiry)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "g", "a:1", AGG_GAUGE, 1), 0);
    struct agg_stats st;
    h.now = T0 + 10;
    th_flush(&h, false);
    h.now = T0 + 20; /* last seen T0: not before T0 */
    th_flush(&h, false);
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 1);
    h.now = T0 + 20.5; /* T0 < T0 + 0.5 */
    th_flush(&h, false);
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 0);
    cr_assert_eq(st.contexts_expired, 1);
    /* the same line comes back as a new context */
    cr_assert_eq(th_add1(&h, "g", "a:1", AGG_GAUGE, 2), 0);
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 1);
    h.now = T0 + 40;
    th_clear(&h);
    th_flush(&h, false);
    th_decode(&h);
    check_point(th_series(&h, "g"), 0, (int64_t)T0 + 20, 2);
}

Test(flush, final_flush_incomplete_on)
{
    h.cfg.flush_incomplete_buckets = true;
    th_create(&h);
    h.now = T0 + 3;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 5), 0);
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, 5), 0);
    h.now = T0 + 5;
    th_stop(&h);
    th_decode(&h);
    check_point(th_series(&h, "g"), 0, (int64_t)T0, 5);
    cr_assert_eq(th_sketch(&h, "d")->dogsketches[0]->cnt, 1);
}

Test(flush, final_flush_incomplete_off)
{
    th_create(&h);
    h.now = T0 + 3;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 5), 0);
    h.now = T0 + 5;
    th_stop(&h);
    cr_assert_eq(h.np, 0);
}

Test(flush, stop_refuses_samples_and_flushes_complete)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 5), 0);
    h.now = T0 + 12;
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 6), 0);
    agg_stop(h.a, CMN_NO_DEADLINE, th_done, &h.stopped);
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 7), CMN_ESTOPPED);
    while (!h.stopped)
        uv_run(&h.loop, UV_RUN_ONCE);
    agg_destroy(h.a);
    h.a = NULL;
    th_decode(&h);
    MSeries *s = th_series(&h, "g");
    cr_assert_eq(s->n_points, 1);
    check_point(s, 0, (int64_t)T0, 5);
}

static int ticks;
static void count_submit(void *data, struct fwd_payload *p)
{
    ticks++;
    th_submit(data, p);
}

Test(flush, periodic_timer)
{
    h.cfg.flush_interval_s = 0.01;
    cr_assert_eq(agg_create(&h.loop, &h.cfg, count_submit, &h, &h.a), 0);
    agg_set_clock(h.a, th_clock, &h);
    cr_assert_eq(agg_start(h.a), 0);
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 5), 0);
    h.now = T0 + 10;
    while (ticks == 0)
        uv_run(&h.loop, UV_RUN_ONCE);
    th_decode(&h);
    check_point(th_series(&h, "g"), 0, (int64_t)T0, 5);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_geq(st.flushes, 1);
}

Test(flush, tags_order_and_duplicates)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", "b:2,a:1", AGG_COUNTER, 1), 0);
    cr_assert_eq(th_add1(&h, "m", "a:1,b:2,a:1", AGG_COUNTER, 2), 0);
    cr_assert_eq(th_add1(&h, "m", "a:1", AGG_COUNTER, 4), 0);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 2);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 2);
    char buf[256];
    for (size_t i = 0; i < h.mp[0]->n_series; i++) {
        MSeries *s = h.mp[0]->series[i];
        th_tags(s, buf, sizeof(buf));
        if (s->n_tags == 2) {
            cr_assert_str_eq(buf, "a:1,b:2");
            check_point(s, 0, (int64_t)T0, 0.3);
        } else {
            cr_assert_str_eq(buf, "a:1");
            check_point(s, 0, (int64_t)T0, 0.4);
        }
    }
}

Test(flush, empty_tags_kept)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", "a,,b", AGG_GAUGE, 1), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    char buf[64];
    cr_assert_str_eq(th_tags(th_series(&h, "m"), buf, sizeof(buf)), ",a,b");
}

Test(flush, host_tag_and_special_tags)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m",
                         "host:h1,x:1,dd.internal.entity_id:pod,host:h2,"
                         "dd.internal.card:high,"
                         "dd.internal.jmx_check_name:j",
                         AGG_GAUGE, 1),
                 0);
    cr_assert_eq(th_add1(&h, "m", "x:1", AGG_GAUGE, 2), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 2);
    int seen = 0;
    for (size_t i = 0; i < h.mp[0]->n_series; i++) {
        MSeries *s = h.mp[0]->series[i];
        cr_assert_eq(s->n_tags, 1);
        cr_assert_str_eq(s->tags[0], "x:1");
        if (strcmp(s->resources[0]->name, "h2") == 0) {
            check_point(s, 0, (int64_t)T0, 1);
            seen |= 1;
        } else {
            cr_assert_str_eq(s->resources[0]->name, "myhost");
            check_point(s, 0, (int64_t)T0, 2);
            seen |= 2;
        }
    }
    cr_assert_eq(seen, 3);
}

Test(flush, device_tag_becomes_resource)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", "device:sda,z:1", AGG_GAUGE, 1), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    MSeries *s = th_series(&h, "m");
    cr_assert_eq(s->n_resources, 2);
    cr_assert_str_eq(s->resources[0]->type, "host");
    cr_assert_str_eq(s->resources[0]->name, "myhost");
    cr_assert_str_eq(s->resources[1]->type, "device");
    cr_assert_str_eq(s->resources[1]->name, "sda");
    cr_assert_eq(s->n_tags, 1);
    cr_assert_str_eq(s->tags[0], "z:1");
}

Test(flush, extra_tags_appended_and_replaced)
{
    h.cfg.extra_tags = cmn_calloc(2, sizeof(char *));
    h.cfg.extra_tags[0] = cmn_strdup("env:prod");
    h.cfg.extra_tags[1] = cmn_strdup("x:1");
    h.cfg.nextra_tags = 2;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", "x:1", AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, 1), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    char buf[256];
    cr_assert_str_eq(th_tags(th_series(&h, "m"), buf, sizeof(buf)),
                     "x:1,env:prod");
    SSketch *sk = th_sketch(&h, "d");
    cr_assert_eq(sk->n_tags, 2);
    cr_assert_str_eq(sk->tags[0], "env:prod");
    cr_assert_str_eq(sk->tags[1], "x:1");
    th_clear(&h);
    /* cloud tags arriving later replace the list */
    const char *cloud[] = {"region:eu", "team:a", "region:eu"};
    cr_assert_eq(agg_set_extra_tags(h.a, cloud, 3), 0);
    cr_assert_eq(th_add1(&h, "m", "x:1", AGG_GAUGE, 1), 0);
    h.now = T0 + 20;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_str_eq(th_tags(th_series(&h, "m"), buf, sizeof(buf)),
                     "x:1,region:eu,team:a");
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 2); /* extra tags are not part of contexts */
}

Test(flush, serverless_host_empty)
{
    h.cfg.serverless = true;
    h.cfg.origin_product = 1;
    h.cfg.origin_service = 472;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", "host:foo,a:b", AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "d", "host:foo", AGG_DISTRIBUTION, 1), 0);
    struct agg_event ev = {.title = CMN_SLICE_LIT("t"),
                           .text = CMN_SLICE_LIT("x")};
    cr_assert_eq(agg_add_event(h.a, &ev), 0);
    struct agg_service_check sc = {.name = CMN_SLICE_LIT("c")};
    cr_assert_eq(agg_add_service_check(h.a, &sc), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    /* events and checks are delivered in serverless mode too (drainpipe's
     * default, unlike the Agent's serverless batcher) */
    cr_assert_eq(h.np, 4);
    int kinds = 0;
    for (size_t i = 0; i < h.np; i++)
        kinds |= 1 << h.p[i]->kind;
    cr_assert_eq(kinds, (1 << FWD_KIND_SERIES) | (1 << FWD_KIND_SKETCHES) |
                            (1 << FWD_KIND_EVENTS) |
                            (1 << FWD_KIND_SERVICE_CHECKS));
    MSeries *s = th_series(&h, "m");
    cr_assert_str_eq(s->resources[0]->type, "host");
    cr_assert_str_eq(s->resources[0]->name, "");
    cr_assert_eq(s->n_tags, 1);
    cr_assert_str_eq(s->tags[0], "a:b");
    cr_assert_eq(s->metadata->origin->origin_product, 1);
    cr_assert_eq(s->metadata->origin->origin_category, 10);
    cr_assert_eq(s->metadata->origin->origin_service, 472);
    cr_assert_str_eq(th_sketch(&h, "d")->host, "");
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.events_dropped, 0);
    cr_assert_eq(st.service_checks_dropped, 0);
    cr_assert_eq(st.events, 1);
    cr_assert_eq(st.service_checks, 1);
}

/* DRAINPIPE_SERVERLESS_DROP_EVENTS restores the Agent's serverless
 * batcher: events and checks are counted and dropped. */
Test(flush, serverless_drop_events_switch)
{
    h.cfg.serverless = true;
    h.cfg.serverless_drop_events = true;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", NULL, AGG_GAUGE, 1), 0);
    struct agg_event ev = {.title = CMN_SLICE_LIT("t"),
                           .text = CMN_SLICE_LIT("x")};
    cr_assert_eq(agg_add_event(h.a, &ev), 0);
    struct agg_service_check sc = {.name = CMN_SLICE_LIT("c")};
    cr_assert_eq(agg_add_service_check(h.a, &sc), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    cr_assert_eq(h.np, 1);
    cr_assert_eq(h.p[0]->kind, FWD_KIND_SERIES);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.events_dropped, 1);
    cr_assert_eq(st.service_checks_dropped, 1);
    cr_assert_eq(st.events, 0);
    cr_assert_eq(st.service_checks, 0);
}

Test(flush, context_cap_drops_counted)
{
    h.cfg.context_limit = 2;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "a", NULL, AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "b", NULL, AGG_GAUGE, 1), 0);
    double v[] = {1, 2, 3};
    cr_assert_eq(th_add(&h, "c", NULL, AGG_GAUGE, v, 3, 1, 0), CMN_ECAP);
    cr_assert_eq(th_add1(&h, "a", NULL, AGG_GAUGE, 2), 0); /* still in */
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 2);
    cr_assert_eq(st.contexts_dropped, 3);
    cr_assert_eq(st.samples, 3);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 2);
    cr_assert_null(th_series(&h, "c"));
}

Test(flush, tags_per_line_cap)
{
    h.cfg.tags_per_metric_max = 3;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "a", "1,2,3", AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "a", "1,2,3,4", AGG_GAUGE, 1), CMN_ETOOBIG);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.samples, 1);
    cr_assert_eq(st.samples_dropped_cap, 1);
}

Test(flush, own_timestamps_when_no_agg_off)
{
    h.cfg.no_aggregation_pipeline = false;
    th_create(&h);
    double v = 7;
    cr_assert_eq(th_add(&h, "g", NULL, AGG_GAUGE, &v, 1, 1, 999985), 0);
    h.now = T0 + 1;
    th_flush(&h, false);
    th_decode(&h);
    check_point(th_series(&h, "g"), 0, 999980, 7);
}

Test(flush, many_contexts_and_tag_permutations)
{
    th_create(&h);
    char tags[64];
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3000; i++) {
            if (round == 0)
                snprintf(tags, sizeof(tags), "k:%d,z:%d", i, i % 7);
            else
                snprintf(tags, sizeof(tags), "z:%d,k:%d,k:%d", i % 7, i, i);
            cr_assert_eq(th_add1(&h, "many", tags, AGG_COUNTER, i), 0);
        }
    }
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 3000);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 3000);
    size_t checked = 0;
    for (size_t p = 0; p < h.nmp; p++) {
        for (size_t k = 0; k < h.mp[p]->n_series; k++) {
            MSeries *s = h.mp[p]->series[k];
            int i = -1, z = -1;
            cr_assert_eq(s->n_tags, 2);
            cr_assert_eq(parse_prefixed(s->tags[0], "k:", &i), 0);
            cr_assert_eq(parse_prefixed(s->tags[1], "z:", &z), 0);
            cr_assert_eq(z, i % 7);
            /* two samples of value i: 2i / 10 */
            cr_assert_float_eq(s->points[0]->value, 2.0 * i / 10, 1e-9);
            checked++;
        }
    }
    cr_assert_eq(checked, 3000);
}

Test(flush, events_queue_cap)
{
    th_create(&h);
    struct agg_event ev = {.title = CMN_SLICE_LIT("t")};
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(agg_add_event(h.a, &ev), 0);
    cr_assert_eq(agg_add_event(h.a, &ev), CMN_ECAP);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.events, 10000);
    cr_assert_eq(st.events_dropped, 1);
    th_flush(&h, false); /* the flush empties the queue */
    cr_assert_eq(agg_add_event(h.a, &ev), 0);
    size_t items = 0;
    for (size_t i = 0; i < h.np; i++)
        items += h.p[i]->items;
    cr_assert_eq(items, 10000);
}

Test(flush, origin_from_config)
{
    h.cfg.origin_product = 1;
    h.cfg.origin_category = 38;
    h.cfg.origin_service = 473;
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", NULL, AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, 1), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    Datadog__Agentpayload__Origin *o = th_series(&h, "m")->metadata->origin;
    cr_assert_eq(o->origin_product, 1);
    cr_assert_eq(o->origin_category, 38);
    cr_assert_eq(o->origin_service, 473);
    o = th_sketch(&h, "d")->metadata->origin;
    cr_assert_eq(o->origin_product, 1);
    cr_assert_eq(o->origin_category, 38);
    cr_assert_eq(o->origin_service, 473);
}

Test(flush, default_wall_clock)
{
    cr_assert_eq(agg_create(&h.loop, &h.cfg, th_submit, &h, &h.a), 0);
    int64_t before = (int64_t)(cmn_wall_ns() / 1000000000);
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 1), 0);
    int64_t after = (int64_t)(cmn_wall_ns() / 1000000000);
    th_flush(&h, true);
    th_decode(&h);
    MSeries *s = th_series(&h, "g");
    cr_assert_not_null(s);
    int64_t ts = s->points[0]->timestamp;
    cr_assert(ts == before - before % 10 || ts == after - after % 10,
              "ts %ld not the bucket of %ld..%ld", (long)ts, (long)before,
              (long)after);
}

/* Tags are interned once and shared by the contexts that have them: each
 * context still serializes exactly its own tags, and a context that
 * expires leaves the shared tags to the others (and to a new context). */
Test(flush, contexts_sharing_tags_keep_exact_tags)
{
    char buf[256];
    th_create(&h);
    h.now = T0 + 1;
    cr_assert_eq(th_add1(&h, "a", "env:prod,team:x,k:1", AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "b", "team:x,k:2,env:prod,env:prod", AGG_GAUGE, 2),
                 0);
    h.now = T0 + 15;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 2);
    cr_assert_str_eq(th_tags(th_series(&h, "a"), buf, sizeof(buf)),
                     "env:prod,k:1,team:x");
    cr_assert_str_eq(th_tags(th_series(&h, "b"), buf, sizeof(buf)),
                     "env:prod,k:2,team:x");
    th_clear(&h);
    h.now = T0 + 22; /* a stays; b (last seen T0 + 1) expires at T0 + 25 */
    cr_assert_eq(th_add1(&h, "a", "team:x,env:prod,k:1", AGG_GAUGE, 3), 0);
    h.now = T0 + 25;
    th_flush(&h, false);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts_expired, 1);
    cr_assert_eq(st.contexts, 1);
    th_clear(&h);
    h.now = T0 + 26; /* a new context with b's tags but one */
    cr_assert_eq(th_add1(&h, "c", "k:2,env:prod", AGG_GAUGE, 4), 0);
    h.now = T0 + 45;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 2);
    MSeries *a = th_series(&h, "a"), *c = th_series(&h, "c");
    cr_assert_str_eq(th_tags(a, buf, sizeof(buf)), "env:prod,k:1,team:x");
    check_point(a, 0, (int64_t)T0 + 20, 3);
    cr_assert_str_eq(th_tags(c, buf, sizeof(buf)), "env:prod,k:2");
    check_point(c, 0, (int64_t)T0 + 20, 4);
}

/* Contexts hold tag ids: 3 000 contexts with a tag each of their own (ids
 * past the first 1024-slot chunks of the directory) serialize exactly
 * their tags; once they all expire, their ids are freed and handed to the
 * tags of 3 000 new contexts, which serialize exactly theirs. */
Test(flush, tag_ids_reused_across_chunks_keep_exact_tags)
{
    enum { N = 3000 };
    char name[32], tags[64], want[64], buf[256];
    struct agg_stats st;
    th_create(&h);
    h.now = T0 + 1;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        snprintf(tags, sizeof(tags), "u:%d,shared:1", i);
        cr_assert_eq(th_add1(&h, name, tags, AGG_GAUGE, i), 0);
    }
    h.now = T0 + 15;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "u%d", i);
        snprintf(want, sizeof(want), "shared:1,u:%d", i);
        MSeries *s = th_series(&h, name);
        cr_assert_str_eq(th_tags(s, buf, sizeof(buf)), want);
        check_point(s, 0, (int64_t)T0, i);
    }
    th_clear(&h);
    h.now = T0 + 25; /* last seen T0 + 1: all expire */
    th_flush(&h, false);
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts_expired, N);
    cr_assert_eq(st.contexts, 0);
    th_clear(&h);
    h.now = T0 + 26;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "v%d", i);
        snprintf(tags, sizeof(tags), "w:%d,shared:2", i);
        cr_assert_eq(th_add1(&h, name, tags, AGG_GAUGE, i + 0.5), 0);
    }
    h.now = T0 + 45;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), N);
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "v%d", i);
        snprintf(want, sizeof(want), "shared:2,w:%d", i);
        MSeries *s = th_series(&h, name);
        cr_assert_str_eq(th_tags(s, buf, sizeof(buf)), want);
        check_point(s, 0, (int64_t)T0 + 20, i + 0.5);
    }
}
