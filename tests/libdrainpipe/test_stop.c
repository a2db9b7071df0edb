/*
 * test_stop.c - dp_stop under a budget with an intake that never answers:
 * it returns (the registry cuts the forwarder at the budget) and reports
 * every payload it could not deliver. Asserts on the counts, not on time.
 */
#include "dp_test.h"

Test(stop, hung_intake_reports_drops, .timeout = 60)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    struct ti_plan hang = {.count = TI_ALL, .fault = TI_FAULT_HANG};
    ti_set_plan(ti, &hang);
    dp_pipeline *p = dpt_start(ti, NULL);
    for (int i = 0; i < 100; i++)
        cr_assert_eq(dp_count(p, "dp.hung", 1, NULL, 0, 1), 0);
    cr_assert_eq(dp_gauge(p, "dp.hung.g", 3, NULL, 0, 1), 0);
    /* the flush cannot complete: the intake never answers */
    cr_assert_eq(dp_flush(p, 300), DP_ETIMEDOUT);
    struct dp_stats st;
    int rc = dp_stop(p, 1500, &st, sizeof(st));
    cr_assert(rc == 0 || rc == DP_ETIMEDOUT, "%d", rc);
    cr_assert_eq(st.submitted, 101);
    cr_assert_eq(st.metric_lines, 101);
    cr_assert_eq(st.delivered, 0);
    cr_assert_geq(st.payloads, 1);
    /* every payload built is reported undelivered */
    cr_assert_eq(st.dropped_payloads, st.payloads);
    cr_assert_eq(st.queued, 0);
    cr_assert_geq(ti_request_count(ti), 1);
    ti_stop(ti);
}

Test(stop, refuses_after_stop_begins)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    dp_pipeline *p = dpt_start(ti, NULL);
    cr_assert_eq(dp_submit(p, "dp.s:1|c", 8), 0);
    struct dp_stats st;
    cr_assert_eq(dp_stop(p, 2000, &st, sizeof(st)), 0);
    /* the stop's drain delivered the open bucket */
    cr_assert_eq(st.delivered, st.payloads);
    cr_assert_eq(dpt_sum(ti, "dp.s", ""), 1.0);
    cr_assert_eq(dp_stop(NULL, 0, NULL, 0), 0);
    ti_stop(ti);
}
