/*
 * test_bounded.c - bounded aggregation state: histograms keep exact
 * samples up to AGG_HIST_EXACT_MAX per context and bucket, then a DDSketch
 * (percentiles within its 1/128 relative error; count, sum, min, max and
 * avg exact in both cases); the memory budget's first step (histograms to
 * sketches) and second step (no new contexts, existing ones keep
 * updating), each counted.
 */
#include "agg_internal.h" /* AGG_FLUSH_ROOM */
#include "agg_test_util.h"

#include <math.h>

#define T0 1000000.0

static struct th h;

static void setup(void)
{
    th_setup(&h);
    /* every aggregate, and three percentiles */
    const char *aggs[] = {"min", "max", "median", "avg", "sum", "count"};
    h.cfg.histogram_aggregates = cmn_calloc(6, sizeof(char *));
    for (int i = 0; i < 6; i++)
        h.cfg.histogram_aggregates[i] = cmn_strdup(aggs[i]);
    h.cfg.nhistogram_aggregates = 6;
    h.cfg.histogram_percentiles = cmn_calloc(3, sizeof(double));
    h.cfg.histogram_percentiles[0] = 0.5;
    h.cfg.histogram_percentiles[1] = 0.95;
    h.cfg.histogram_percentiles[2] = 0.99;
    h.cfg.nhistogram_percentiles = 3;
}

static void teardown(void)
{
    th_teardown(&h);
    cmn_budget_set_limit(0);
}

TestSuite(bounded, .init = setup, .fini = teardown);

static double point(const char *name)
{
    MSeries *s = th_series(&h, name);
    cr_assert_not_null(s, "no series %s", name);
    cr_assert_eq(s->n_points, 1);
    cr_assert_eq(s->points[0]->timestamp, (int64_t)T0);
    return s->points[0]->value;
}

/* values 1..n in a scrambled order (a stride prime to n), so neither
 * storage sees sorted input */
static void add_scrambled(const char *name, int n, double rate)
{
    int stride = 7919; /* prime, and no n below is a multiple of it */
    for (int i = 0; i < n; i++) {
        double v = (double)((i * stride) % n + 1);
        cr_assert_eq(th_add(&h, name, NULL, AGG_HISTOGRAM, &v, 1, rate, 0), 0);
    }
}

static void flush_decode(void)
{
    h.now = T0 + 10;
    th_flush(&h, false);
    th_decode(&h);
}

Test(bounded, exact_at_the_threshold)
{
    th_create(&h);
    int n = AGG_HIST_EXACT_MAX; /* 2048 */
    cr_assert_eq(n, 2048);
    add_scrambled("h", n, 1);
    flush_decode();
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.hist_to_sketch, 0);
    cr_assert_eq(point("h.min"), 1);
    cr_assert_eq(point("h.max"), 2048);
    cr_assert_eq(point("h.sum"), 2098176); /* 2048 * 2049 / 2 */
    cr_assert_eq(point("h.avg"), 1024.5);
    cr_assert_eq(point("h.count"), 204.8); /* 2048 / 10 s */
    cr_assert_eq(point("h.median"), 1024); /* rank (2048-1)/2 = 1023 */
    cr_assert_eq(point("h.50percentile"), 1024);
    /* ranks (95*2048-1)/100 = 1945 and (99*2048-1)/100 = 2027 */
    cr_assert_eq(point("h.95percentile"), 1946);
    cr_assert_eq(point("h.99percentile"), 2028);
}

/* |got - exact| within the sketch's relative accuracy (1/128), plus one
 * rank of rounding difference (the sketch rounds the rank to even) */
static void expect_near(const char *name, double exact)
{
    double got = point(name);
    double tol = exact / 128 + 1;
    cr_expect(fabs(got - exact) <= tol, "%s: %.17g vs exact %.17g", name, got,
              exact);
}

Test(bounded, sketch_past_the_threshold)
{
    th_create(&h);
    int n = 10000;
    add_scrambled("h", n, 1);
    flush_decode();
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.hist_to_sketch, 1);
    cr_assert_eq(st.samples, 10000);
    /* exact in both storages */
    cr_assert_eq(point("h.min"), 1);
    cr_assert_eq(point("h.max"), 10000);
    cr_assert_eq(point("h.sum"), 50005000);
    cr_assert_eq(point("h.avg"), 5000.5);
    cr_assert_eq(point("h.count"), 1000);
    /* percentiles within the sketch's error of the exact ranks */
    expect_near("h.median", 5000);
    expect_near("h.50percentile", 5000);
    expect_near("h.95percentile", 9500);
    expect_near("h.99percentile", 9900);
}

Test(bounded, sketch_keeps_weighted_count_and_sum_exact)
{
    th_create(&h);
    add_scrambled("h", 3000, 0.25); /* weight 4 each */
    flush_decode();
    cr_assert_eq(point("h.count"), 1200);   /* 3000 * 4 / 10 */
    cr_assert_eq(point("h.sum"), 18006000); /* 4 * 3000 * 3001 / 2 */
    cr_assert_eq(point("h.avg"), 1500.5);
    cr_assert_eq(point("h.min"), 1);
    cr_assert_eq(point("h.max"), 3000);
    expect_near("h.median", 1500);
    expect_near("h.99percentile", 2970);
}

/* Budget step 1: past half of the limit, a histogram moves to a sketch
 * when its exact storage would grow (here at 8 samples), long before the
 * threshold; the step is counted. */
Test(bounded, budget_moves_histograms_to_sketches)
{
    th_create(&h);
    double v = 1;
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, &v, 1, 1, 0), 0);
    cmn_budget_reset_counts();
    /* used is now just over half of the limit */
    cmn_budget_set_limit(cmn_budget_used() * 2 - 64);
    cr_assert(cmn_budget_over(CMN_BUDGET_SKETCH));
    cr_assert_not(cmn_budget_over(CMN_BUDGET_NO_NEW_CONTEXT));
    for (int i = 2; i <= 20; i++) {
        v = i;
        cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, &v, 1, 1, 0), 0);
    }
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.hist_to_sketch, 1);
    cr_assert_eq(cmn_budget_count(CMN_BUDGET_SKETCH), 1);
    cmn_budget_set_limit(0);
    flush_decode();
    cr_assert_eq(point("h.count"), 2);
    cr_assert_eq(point("h.sum"), 210);
    cr_assert_eq(point("h.min"), 1);
    cr_assert_eq(point("h.max"), 20);
    cr_assert_eq(point("h.avg"), 10.5);
}

/* Budget step 2: past three quarters of the limit a line that needs a new
 * context is refused and counted, while an existing context keeps
 * updating; below it again, new contexts are accepted. */
Test(bounded, budget_refuses_new_contexts_only)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "old", NULL, AGG_GAUGE, 1), 0);
    cmn_budget_reset_counts();
    cmn_budget_set_limit(cmn_budget_used() * 4 / 3 - 64);
    cr_assert(cmn_budget_over(CMN_BUDGET_NO_NEW_CONTEXT));
    cr_assert_eq(th_add1(&h, "new", NULL, AGG_GAUGE, 5), CMN_ECAP);
    cr_assert_eq(th_add1(&h, "new", "a:b", AGG_COUNTER, 5), CMN_ECAP);
    cr_assert_eq(th_add1(&h, "old", NULL, AGG_GAUGE, 2), 0);
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts, 1);
    cr_assert_eq(st.contexts_refused_budget, 2);
    cr_assert_eq(st.contexts_dropped, 2);
    cr_assert_eq(cmn_budget_count(CMN_BUDGET_NO_NEW_CONTEXT), 2);
    cmn_budget_set_limit(0);
    cr_assert_eq(th_add1(&h, "late", NULL, AGG_GAUGE, 7), 0);
    flush_decode();
    cr_assert_eq(point("old"), 2);
    cr_assert_eq(point("late"), 7);
    cr_assert_null(th_series(&h, "new"));
}

/* Every context holds AGG_FLUSH_ROOM bytes of the budget for its share of
 * a flush (its records, the payloads they become), reserved in chunks as
 * contexts are created, so the context step counts the flush's working
 * set before the flush. Expiry gives the chunks back, keeping one of
 * slack; destroy gives back the rest. Nothing else reserves here (no
 * receive ring), so the budget's reservations are exactly the room. */
Test(bounded, contexts_hold_their_flush_room)
{
    enum { N = 3000 };
    const size_t chunk = AGG_FLUSH_ROOM_CHUNK;
    char name[32];
    struct agg_stats st;
    _Static_assert(N * AGG_FLUSH_ROOM > 2 * AGG_FLUSH_ROOM_CHUNK &&
                       N * AGG_FLUSH_ROOM <= 3 * AGG_FLUSH_ROOM_CHUNK,
                   "N contexts take three chunks");
    th_create(&h);
    cr_assert_eq(cmn_budget_reserved(), 0);
    h.now = T0 + 1;
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof(name), "r%d", i);
        cr_assert_eq(th_add1(&h, name, NULL, AGG_GAUGE, i), 0);
        size_t want = ((size_t)(i + 1) * AGG_FLUSH_ROOM + chunk - 1) / chunk;
        cr_assert_eq(cmn_budget_reserved(), want * chunk, "context %d", i);
    }
    /* an existing context reserves nothing more */
    cr_assert_eq(th_add1(&h, "r0", NULL, AGG_GAUGE, 1), 0);
    cr_assert_eq(cmn_budget_reserved(), 3 * chunk);
    h.now = T0 + 15;
    th_flush(&h, false);
    th_decode(&h);
    cr_assert_eq(th_nseries(&h), N);
    th_clear(&h);
    h.now = T0 + 25; /* last seen T0 + 1: all expire */
    th_flush(&h, false);
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.contexts_expired, N);
    cr_assert_eq(st.contexts, 0);
    cr_assert_eq(cmn_budget_reserved(), chunk, "one chunk of slack");
    th_stop(&h);
    cr_assert_eq(cmn_budget_reserved(), 0);
}
