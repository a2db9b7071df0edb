/*
 * test_records.c - the record sink (agg_set_record_sink): a flush hands
 * over exactly the values the payloads would carry, in their order, with
 * no payload built: counter rates, the histogram aggregates and
 * percentiles by suffix, the timestamped samples, finished sketches with
 * their p50 and p99, events by source type, service checks, the extra tags
 * appended and a device: tag taken out of a series' tags.
 */
#include "agg_test_util.h"

#include "ddsketch.h"

#define T0 1000000.0

TH_SUITE(records);

Test(records, every_kind_exact_and_in_order)
{
    th_create_records(&h);
    const char *extra[] = {"x:1"};
    cr_assert_eq(agg_set_extra_tags(h.a, extra, 1), 0);
    double v3[] = {1, 2, 3}, v4[] = {4, 1, 3, 2};
    cr_assert_eq(
        th_add(&h, "c", "b:2,a:1,device:sda", AGG_COUNTER, v3, 3, 1, 0), 0);
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, v4, 4, 1, 0), 0);
    cr_assert_eq(th_add(&h, "d", "device:nvme", AGG_DISTRIBUTION, v3, 3, 1, 0),
                 0);
    cr_assert_eq(th_add(&h, "g", NULL, AGG_GAUGE, v3, 1, 1, 999990), 0);
    struct agg_event z = {.title = CMN_SLICE_LIT("z"),
                          .text = CMN_SLICE_LIT("zt"),
                          .timestamp = 5,
                          .source_type_name = CMN_SLICE_LIT("zzz"),
                          .priority = AGG_PRIO_LOW,
                          .tags = CMN_SLICE_LIT("e:1,host:eh")};
    struct agg_event a = {.title = CMN_SLICE_LIT("a"),
                          .text = CMN_SLICE_LIT("at"),
                          .timestamp = 6,
                          .aggregation_key = CMN_SLICE_LIT("k"),
                          .alert_type = AGG_ALERT_ERROR};
    cr_assert_eq(agg_add_event(h.a, &z), 0);
    cr_assert_eq(agg_add_event(h.a, &a), 0);
    struct agg_service_check sc = {.name = CMN_SLICE_LIT("up"),
                                   .status = 2,
                                   .timestamp = 7,
                                   .message = CMN_SLICE_LIT("down"),
                                   .tags = CMN_SLICE_LIT("x:1")};
    cr_assert_eq(agg_add_service_check(h.a, &sc), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    /* the sketch of 1, 2, 3: p50 is the bin value of 2, p99 the max */
    double p50 = agg_sketch_key_lower(agg_sketch_key(2.0));
    char want[4096];
    snprintf(want, sizeof(want),
             "S c host=myhost device=sda [a:1,b:2,x:1] type=2 interval=10 "
             "1000000:0.59999999999999998\n"
             "S h.max host=myhost [x:1] type=3 interval=10 1000000:4\n"
             "S h.median host=myhost [x:1] type=3 interval=10 1000000:2\n"
             "S h.avg host=myhost [x:1] type=3 interval=10 1000000:2.5\n"
             "S h.count host=myhost [x:1] type=2 interval=10 "
             "1000000:0.40000000000000002\n"
             "S h.95percentile host=myhost [x:1] type=3 interval=10 "
             "1000000:4\n"
             "S g host=myhost [x:1] type=3 interval=10 999990:1\n"
             "K d host=myhost [device:nvme,x:1] 1000000 cnt=3 min=1 max=3 "
             "sum=6 avg=2 p50=%.17g p99=3\n"
             "E a|at host=myhost key=k src= ts=6 p=0 a=3 [x:1]\n"
             "E z|zt host=eh key= src=zzz ts=5 p=2 a=0 [e:1,x:1]\n"
             "C up host=myhost msg=down status=2 ts=7 [x:1]\n"
             "F\n",
             p50);
    cr_assert_str_eq(h.rlog, want);
    cr_assert_eq(h.np, 0); /* no payload */
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.series_flushed, 7);
    cr_assert_eq(st.points_flushed, 7);
    cr_assert_eq(st.sketches_flushed, 1);
    cr_assert_eq(st.payloads, 0);
}

/* A flush with nothing in it hands nothing over, not even "flushed". */
Test(records, empty_flush_hands_nothing)
{
    th_create_records(&h);
    h.now = T0 + 10;
    th_flush(&h, false);
    cr_assert_eq(h.nrec, 0);
    cr_assert_null(h.rlog);
}

/* The kinds turned off (enable_payloads.*) are not handed over either. */
Test(records, disabled_kinds_are_left_out)
{
    h.cfg.enable_series = false;
    h.cfg.enable_events = false;
    th_create_records(&h);
    cr_assert_eq(th_add1(&h, "g", NULL, AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "d", NULL, AGG_DISTRIBUTION, 1), 0);
    struct agg_event e = {.title = CMN_SLICE_LIT("t"),
                          .text = CMN_SLICE_LIT("x"),
                          .timestamp = 1};
    cr_assert_eq(agg_add_event(h.a, &e), 0);
    h.now = T0 + 10;
    th_flush(&h, false);
    cr_assert_eq(h.nrec, 1);
    cr_assert_str_eq(h.rlog, "K d host=myhost [] 1000000 cnt=1 min=1 max=1 "
                             "sum=1 avg=1 p50=1 p99=1\nF\n");
}

/* No submit function and no record sink: the aggregator cannot start. */
Test(records, start_needs_a_submit_or_a_record_sink)
{
    cr_assert_eq(agg_create(&h.loop, &h.cfg, NULL, NULL, &h.a), 0);
    cr_assert_eq(agg_start(h.a), UV_EINVAL);
}
