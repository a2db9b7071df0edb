/*
 * dp_test.h - helpers shared by the libdrainpipe tests: a pipeline with
 * no UDP listener that forwards to the loopback test intake.
 */
#ifndef DP_TEST_H
#define DP_TEST_H

#include <math.h>

#include <criterion/criterion.h>

#include "drainpipe.h"
#include "intake.h"

/* A configuration with dogstatsd_port 0 (in-process only) sending to ti
 * with API key "k"; extra is a NULL-terminated list of key, value pairs
 * (may be NULL). */
static inline dp_config *dpt_config(struct ti *ti, const char *const *extra)
{
    dp_config *c;
    cr_assert_eq(dp_config_new(&c), 0);
    cr_assert_eq(dp_config_set(c, "api_key", "k"), 0);
    cr_assert_eq(dp_config_set(c, "dd_url", ti_url(ti)), 0);
    cr_assert_eq(dp_config_set(c, "dogstatsd_port", "0"), 0);
    for (size_t i = 0; extra != NULL && extra[i] != NULL; i += 2)
        cr_assert_eq(dp_config_set(c, extra[i], extra[i + 1]), 0, "%s",
                     extra[i]);
    return c;
}

/* Starts a pipeline with dpt_config's configuration. */
static inline dp_pipeline *dpt_start(struct ti *ti, const char *const *extra)
{
    dp_config *c = dpt_config(ti, extra);
    dp_pipeline *p;
    cr_assert_eq(dp_start(c, &p), 0);
    dp_config_free(c);
    return p;
}

/* Sum of the values of every point of series name with tags; a RATE
 * (a DogStatsD counter: count / interval) is turned back into its count,
 * rounded to the nearest integer (the division is not exact in binary). */
static inline double dpt_sum(struct ti *ti, const char *name, const char *tags)
{
    struct ti_point pts[256];
    struct ti_series_info info;
    size_t n = ti_series_points(ti, name, tags, pts, 256, &info);
    cr_assert_leq(n, 256);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += info.type == 2 ? pts[i].value * (double)info.interval
                              : pts[i].value;
    return info.type == 2 ? (double)llround(sum) : sum;
}

#endif /* DP_TEST_H */
