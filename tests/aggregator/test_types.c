/*
 * test_types.c - per-type aggregation (spec/pipeline.md §2.3) checked on
 * the decoded v2 payloads: counter, gauge, set, histogram, timing,
 * distribution, NaN handling and the metadata every series carries.
 */
#include "agg_test_util.h"

#include "ddsketch.h"

#define T0 1000000.0

TH_SUITE(types);

static void check_common(MSeries *s, int type, const char *host)
{
    cr_assert_not_null(s);
    cr_assert_eq((int)s->type, type);
    cr_assert_eq(s->interval, 10);
    cr_assert_geq(s->n_resources, 1);
    cr_assert_str_eq(s->resources[0]->type, "host");
    cr_assert_str_eq(s->resources[0]->name, host);
    cr_assert_not_null(s->metadata);
    cr_assert_not_null(s->metadata->origin);
    cr_assert_eq(s->metadata->origin->origin_product, 10);
    cr_assert_eq(s->metadata->origin->origin_category, 10);
    cr_assert_eq(s->metadata->origin->origin_service, 0);
}

static void check_point(MSeries *s, size_t i, int64_t ts, double v)
{
    cr_assert_gt(s->n_points, i);
    cr_assert_eq(s->points[i]->timestamp, ts, "ts %ld != %ld",
                 (long)s->points[i]->timestamp, (long)ts);
    cr_assert_float_eq(s->points[i]->value, v, 1e-12, "value %.17g != %.17g",
                       s->points[i]->value, v);
}

Test(types, counter_with_rates)
{
    th_create(&h);
    h.now = T0 + 1;
    cr_assert_eq(th_add1(&h, "x", NULL, AGG_COUNTER, 5), 0);
    h.now = T0 + 2;
    double v = 2;
    cr_assert_eq(th_add(&h, "x", NULL, AGG_COUNTER, &v, 1, 0.5, 0), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(h.np, 1);
    cr_assert_str_eq(h.p[0]->route, "/api/v2/series");
    cr_assert_str_eq(h.p[0]->content_encoding, "identity");
    cr_assert_eq(h.p[0]->items, 1);
    cr_assert_eq(h.p[0]->points, 1);
    MSeries *s = th_series(&h, "x");
    check_common(s, 2 /* RATE */, "myhost");
    cr_assert_eq(s->n_points, 1);
    check_point(s, 0, (int64_t)T0, 0.9); /* (5 + 2/0.5) / 10 */
    cr_assert_eq(s->n_tags, 0);
}

Test(types, single_counter_is_rate_half)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "x", NULL, AGG_COUNTER, 5), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    MSeries *s = th_series(&h, "x");
    check_common(s, 2, "myhost");
    check_point(s, 0, (int64_t)T0, 0.5);
}

Test(types, gauge_last_value)
{
    th_create(&h);
    double v[] = {1, 7, 3};
    cr_assert_eq(th_add(&h, "g", NULL, AGG_GAUGE, v, 3, 1, 0), 0);
    cr_assert_eq(th_add1(&h, "g2", NULL, AGG_GAUGE, 4), 0);
    cr_assert_eq(th_add1(&h, "g2", NULL, AGG_GAUGE, -2.5), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    check_common(th_series(&h, "g"), 3 /* GAUGE */, "myhost");
    check_point(th_series(&h, "g"), 0, (int64_t)T0, 3);
    check_point(th_series(&h, "g2"), 0, (int64_t)T0, -2.5);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.samples, 5);
    cr_assert_eq(st.series_flushed, 2);
    cr_assert_eq(st.points_flushed, 2);
    cr_assert_eq(st.payloads, 1);
}

Test(types, set_distinct_count)
{
    th_create(&h);
    const char *m[] = {"a", "b", "a", "c", "b", ""};
    for (size_t i = 0; i < 6; i++)
        cr_assert_eq(th_set(&h, "s", NULL, m[i]), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    MSeries *s = th_series(&h, "s");
    check_common(s, 3, "myhost");
    check_point(s, 0, (int64_t)T0, 4); /* a b c "" */
}

Test(types, histogram_aggregates_with_weights)
{
    th_create(&h);
    double v[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, v, 10, 1, 0), 0);
    double big = 100;
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, &big, 1, 0.25, 0), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    /* weights: 1 each, 4 for 100; count 14, sum 455 */
    cr_assert_eq(th_nseries(&h), 5);
    check_common(th_series(&h, "h.max"), 3, "myhost");
    check_point(th_series(&h, "h.max"), 0, (int64_t)T0, 100);
    /* median: first running weight > (14-1)/2 = 6 -> 7 */
    check_point(th_series(&h, "h.median"), 0, (int64_t)T0, 7);
    check_point(th_series(&h, "h.avg"), 0, (int64_t)T0, 32.5);
    check_common(th_series(&h, "h.count"), 2, "myhost");
    check_point(th_series(&h, "h.count"), 0, (int64_t)T0, 1.4);
    /* p95: target (95*14-1)/100 = 13 -> running 14 at 100 */
    check_common(th_series(&h, "h.95percentile"), 3, "myhost");
    check_point(th_series(&h, "h.95percentile"), 0, (int64_t)T0, 100);
    cr_assert_null(th_series(&h, "h"));
    cr_assert_null(th_series(&h, "h.min"));
}

Test(types, histogram_unweighted_and_all_aggregates)
{
    agg_config_free(&h.cfg);
    agg_config_defaults(&h.cfg);
    h.cfg.compressor = AGG_COMPRESS_NONE;
    const char *aggs[] = {"min", "max", "median", "avg", "sum", "count"};
    h.cfg.histogram_aggregates = cmn_calloc(6, sizeof(char *));
    for (int i = 0; i < 6; i++)
        h.cfg.histogram_aggregates[i] = cmn_strdup(aggs[i]);
    h.cfg.nhistogram_aggregates = 6;
    h.cfg.histogram_percentiles = cmn_calloc(2, sizeof(double));
    h.cfg.histogram_percentiles[0] = 0.5;
    h.cfg.histogram_percentiles[1] = 0.99;
    h.cfg.nhistogram_percentiles = 2;
    th_create(&h);
    double v[] = {10, 9, 8, 7, 6, 5, 4, 3, 2, 1};
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, v, 10, 1, 0), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 8);
    check_point(th_series(&h, "h.min"), 0, (int64_t)T0, 1);
    check_point(th_series(&h, "h.max"), 0, (int64_t)T0, 10);
    check_point(th_series(&h, "h.median"), 0, (int64_t)T0, 5); /* >4 */
    check_point(th_series(&h, "h.avg"), 0, (int64_t)T0, 5.5);
    check_point(th_series(&h, "h.sum"), 0, (int64_t)T0, 55);
    check_point(th_series(&h, "h.count"), 0, (int64_t)T0, 1);
    /* p50: (50*10-1)/100 = 4 -> 5th; p99: (990-1)/100 = 9 -> 10th */
    check_point(th_series(&h, "h.50percentile"), 0, (int64_t)T0, 5);
    check_point(th_series(&h, "h.99percentile"), 0, (int64_t)T0, 10);
}

Test(types, timing_is_a_histogram)
{
    th_create(&h);
    double v[] = {20, 10};
    cr_assert_eq(th_add(&h, "t", NULL, AGG_TIMING, v, 2, 1, 0), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), 5);
    check_point(th_series(&h, "t.max"), 0, (int64_t)T0, 20);
    check_point(th_series(&h, "t.median"), 0, (int64_t)T0, 10);
    check_point(th_series(&h, "t.avg"), 0, (int64_t)T0, 15);
    check_point(th_series(&h, "t.count"), 0, (int64_t)T0, 0.2);
    check_point(th_series(&h, "t.95percentile"), 0, (int64_t)T0, 20);
}

Test(types, distribution_sketch)
{
    th_create(&h);
    double v[] = {3, 1, 2};
    cr_assert_eq(th_add(&h, "d", "env:a", AGG_DISTRIBUTION, v, 3, 1, 0), 0);
    double w = 1;
    cr_assert_eq(th_add(&h, "d", "env:a", AGG_DISTRIBUTION, &w, 1, 0.5, 0), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(h.np, 1);
    cr_assert_str_eq(h.p[0]->route, "/api/beta/sketches");
    cr_assert_eq(h.p[0]->kind, FWD_KIND_SKETCHES);
    cr_assert(h.p[0]->protobuf);
    SSketch *s = th_sketch(&h, "d");
    cr_assert_not_null(s);
    cr_assert_str_eq(s->host, "myhost");
    cr_assert_eq(s->n_tags, 1);
    cr_assert_str_eq(s->tags[0], "env:a");
    cr_assert_eq(s->n_dogsketches, 1);
    Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *d =
        s->dogsketches[0];
    cr_assert_eq(d->ts, (int64_t)T0);
    cr_assert_eq(d->cnt, 5); /* 3 + 2 copies at rate 0.5 */
    cr_assert_float_eq(d->min, 1, 1e-12);
    cr_assert_float_eq(d->max, 3, 1e-12);
    cr_assert_float_eq(d->sum, 8, 1e-12);
    cr_assert_float_eq(d->avg, 1.6, 1e-12);
    cr_assert_eq(d->n_k, 3);
    cr_assert_eq(d->n_n, 3);
    cr_assert_eq(d->k[0], agg_sketch_key(1));
    cr_assert_eq(d->k[1], agg_sketch_key(2));
    cr_assert_eq(d->k[2], agg_sketch_key(3));
    cr_assert_eq(d->n[0], 3);
    cr_assert_eq(d->n[1], 1);
    cr_assert_eq(d->n[2], 1);
    cr_assert_not_null(s->metadata);
    cr_assert_eq(s->metadata->origin->origin_product, 10);
    cr_assert_eq(s->metadata->origin->origin_category, 10);
    cr_assert_not_null(h.sp[0]->metadata); /* the CommonMetadata footer */
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.sketches_flushed, 1);
}

Test(types, distribution_two_buckets_one_sketch)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, -4), 0);
    h.now = T0 + 10;
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, 0), 0);
    h.now = T0 + 20;
    th_flush(&h, false);
    th_decode(&h);
    SSketch *s = th_sketch(&h, "d");
    cr_assert_not_null(s);
    cr_assert_eq(s->n_dogsketches, 2);
    cr_assert_eq(s->dogsketches[0]->ts, (int64_t)T0);
    cr_assert_eq(s->dogsketches[1]->ts, (int64_t)T0 + 10);
    cr_assert_eq(s->dogsketches[0]->k[0], agg_sketch_key(-4));
    cr_assert_lt(s->dogsketches[0]->k[0], 0);
    cr_assert_eq(s->dogsketches[1]->k[0], 0);
}

Test(types, nan_and_inf_dropped)
{
    th_create(&h);
    double v[] = {NAN, 1, INFINITY, -INFINITY};
    cr_assert_eq(th_add(&h, "g", NULL, AGG_GAUGE, v, 4, 1, 0), 0);
    double d[] = {NAN, 2};
    cr_assert_eq(th_add(&h, "d", NULL, AGG_DISTRIBUTION, d, 2, 1, 0), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    check_point(th_series(&h, "g"), 0, (int64_t)T0, 1);
    cr_assert_eq(th_sketch(&h, "d")->dogsketches[0]->cnt, 1);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.samples_nan, 4);
    cr_assert_eq(st.samples, 2);
}

Test(types, same_name_different_types_in_one_bucket)
{
    /* the context's first type in a bucket wins (context_metrics.go) */
    th_create(&h);
    cr_assert_eq(th_add1(&h, "m", NULL, AGG_GAUGE, 3), 0);
    cr_assert_eq(th_add1(&h, "m", NULL, AGG_GAUGE, 4), 0);
    cr_assert_eq(th_add1(&h, "m", NULL, AGG_DISTRIBUTION, 4), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
    check_point(th_series(&h, "m"), 0, (int64_t)T0, 4);
    cr_assert_eq(th_sketch(&h, "m")->dogsketches[0]->cnt, 1);
}

Test(types, nan_only_line_sends_nothing)
{
    th_create(&h);
    double v[] = {NAN, INFINITY};
    cr_assert_eq(th_add(&h, "g", NULL, AGG_GAUGE, v, 2, 1, 0), 0);
    cr_assert_eq(th_add(&h, "c", NULL, AGG_COUNTER, v, 1, 1, 0), 0);
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, v, 2, 1, 0), 0);
    cr_assert_eq(th_add(&h, "d", NULL, AGG_DISTRIBUTION, v, 2, 1, 0), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    cr_assert_eq(h.np, 0);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.samples_nan, 7);
    cr_assert_eq(st.samples, 0);
}
