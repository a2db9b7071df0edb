/*
 * test_inproc.c - in-process submission with no UDP listener: eight
 * threads x 100 000 lines through dp_submit and the typed helpers; the
 * aggregates the intake decodes are exact, and every refusal is counted.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>

#include "dp_test.h"

#define NTHREADS 8
#define NLINES 100000

struct worker {
    dp_pipeline *p;
    int id;
    bool typed;    /* odd workers use dp_count, even ones dp_submit */
    uint64_t full; /* DP_EFULL answers (each retried) */
};

static void *work(void *arg)
{
    struct worker *w = arg;
    char line[64], tag[32];
    snprintf(tag, sizeof(tag), "thread:%d", w->id);
    const char *tags[] = {tag};
    int n = snprintf(line, sizeof(line), "dp.inproc:%d|c|#%s\n", 1, tag);
    for (int i = 0; i < NLINES; i++) {
        double v = (i % 2) ? 2 : 1; /* 1 + 2 alternating: 150 000 */
        int rc;
        do {
            if (w->typed) {
                rc = dp_count(w->p, "dp.inproc", v, tags, 1, 1);
            } else {
                line[10] = (char)('0' + (int)v); /* "dp.inproc:" is 10 */
                rc = dp_submit(w->p, line, (size_t)n);
            }
            if (rc == DP_EFULL) {
                w->full++;
                sched_yield();
            }
        } while (rc == DP_EFULL);
        cr_assert_eq(rc, 0);
    }
    return NULL;
}

Test(inproc, eight_threads_exact_aggregates, .timeout = 120)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    dp_pipeline *p = dpt_start(ti, NULL);
    pthread_t th[NTHREADS];
    struct worker w[NTHREADS];
    for (int i = 0; i < NTHREADS; i++) {
        w[i] = (struct worker){p, i, i % 2 == 1, 0};
        cr_assert_eq(pthread_create(&th[i], NULL, work, &w[i]), 0);
    }
    uint64_t full = 0;
    for (int i = 0; i < NTHREADS; i++) {
        pthread_join(th[i], NULL);
        full += w[i].full;
    }
    cr_assert_eq(dp_flush(p, 30000), 0);

    struct dp_stats st;
    cr_assert_eq(dp_stats(p, &st, sizeof(st)), 0);
    cr_assert_eq(st.submitted, (uint64_t)NTHREADS * NLINES);
    cr_assert_eq(st.metric_lines, (uint64_t)NTHREADS * NLINES);
    cr_assert_eq(st.metric_samples, (uint64_t)NTHREADS * NLINES);
    cr_assert_eq(st.parse_errors, 0);
    cr_assert_eq(st.dropped_queue_full, full);
    cr_assert_eq(st.dropped_too_big, 0);
    cr_assert_eq(st.packets, 0); /* nothing came over a socket */
    cr_assert_eq(st.contexts, NTHREADS);
    for (int i = 0; i < NTHREADS; i++) {
        char tags[32];
        snprintf(tags, sizeof(tags), "thread:%d", i);
        cr_assert_eq(dpt_sum(ti, "dp.inproc", tags), 150000.0, "%s", tags);
    }
    cr_assert_eq(dp_stop(p, 2000, &st, sizeof(st)), 0);
    cr_assert_eq(st.dropped_payloads, 0);
    ti_stop(ti);
}

Test(inproc, typed_helpers_lines)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    dp_pipeline *p = dpt_start(ti, NULL);
    const char *tags[] = {"env:dev", "team:a"};
    cr_assert_eq(dp_gauge(p, "dp.g", 2.5, tags, 2, 1), 0);
    cr_assert_eq(dp_gauge(p, "dp.g", -7.25, tags, 2, 1), 0);
    cr_assert_eq(dp_count(p, "dp.c", 3, NULL, 0, 0.5), 0); /* counts 6 */
    cr_assert_eq(dp_set(p, "dp.s", "alice", NULL, 0, 1), 0);
    cr_assert_eq(dp_set(p, "dp.s", "bob", NULL, 0, 1), 0);
    cr_assert_eq(dp_set(p, "dp.s", "alice", NULL, 0, 1), 0);
    cr_assert_eq(dp_distribution(p, "dp.d", 4, NULL, 0, 1), 0);
    cr_assert_eq(dp_histogram(p, "dp.h", 1e300, NULL, 0, 1), 0);
    /* refused: they would change the line's meaning */
    const char *bad_tag[] = {"a|b"};
    cr_assert_eq(dp_count(p, "dp.c", 1, bad_tag, 1, 1), DP_EINVAL);
    cr_assert_eq(dp_count(p, "dp:c", 1, NULL, 0, 1), DP_EINVAL);
    cr_assert_eq(dp_count(p, "", 1, NULL, 0, 1), DP_EINVAL);
    cr_assert_eq(dp_count(p, "dp.c", 1, NULL, 0, 0), DP_EINVAL);
    cr_assert_eq(dp_gauge(p, "dp.c", 1.0 / 0.0, NULL, 0, 1), DP_EINVAL);
    cr_assert_eq(dp_flush(p, 10000), 0);

    struct ti_point pts[4];
    cr_assert_eq(ti_series_points(ti, "dp.g", "env:dev,team:a", pts, 4, NULL),
                 1);
    cr_assert_eq(pts[0].value, -7.25);
    cr_assert_eq(dpt_sum(ti, "dp.c", ""), 6.0);
    cr_assert_eq(dpt_sum(ti, "dp.s", ""), 2.0);
    cr_assert_eq(dpt_sum(ti, "dp.h.max", ""), 1e300);
    struct ti_sketch_sum sk;
    cr_assert_eq(ti_sketch_find(ti, "dp.d", "", &sk), 1);
    cr_assert_eq(sk.cnt, 1);
    cr_assert_eq(sk.sum, 4.0);
    cr_assert_eq(dp_stop(p, 2000, NULL, 0), 0);
    ti_stop(ti);
}

Test(inproc, refusals_counted)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    const char *extra[] = {"drainpipe_submit_queue_size", "64KiB", NULL};
    dp_pipeline *p = dpt_start(ti, extra);
    static char big[DP_SUBMIT_MAX + 1];
    memset(big, 'a', sizeof(big));
    cr_assert_eq(dp_submit(p, big, sizeof(big)), DP_ETOOBIG);
    /* a quarter of the 64 KiB queue is the largest text */
    cr_assert_eq(dp_submit(p, big, 16 * 1024 + 1), DP_ETOOBIG);
    cr_assert_eq(dp_submit(p, "dp.x:1|c", 8), 0);
    cr_assert_eq(dp_flush(p, 10000), 0);
    struct dp_stats st;
    cr_assert_eq(dp_stop(p, 2000, &st, sizeof(st)), 0);
    cr_assert_eq(st.dropped_too_big, 2);
    cr_assert_eq(st.submitted, 1);
    cr_assert_eq(dpt_sum(ti, "dp.x", ""), 1.0);
    ti_stop(ti);
}

Test(config, keys_and_errors)
{
    dp_config *c;
    cr_assert_eq(dp_config_new(&c), 0);
    cr_assert_eq(dp_config_set(c, "no_such_key", "1"), DP_ENOENT);
    cr_assert_eq(dp_config_set(c, "DD_API_KEY", "k"), DP_ENOENT);
    cr_assert_eq(dp_config_set(c, "dogstatsd_port", "eighty"), DP_EINVAL);
    cr_assert_eq(dp_config_set(c, "dogstatsd_port", "0"), 0);
    cr_assert_eq(dp_config_set(c, "drainpipe_sink", "nowhere"), DP_EINVAL);
    cr_assert_eq(dp_config_set(c, "drainpipe_submit_queue_size", "1KiB"),
                 DP_EINVAL);
    cr_assert_eq(dp_config_set(c, "tags", "a:1 b:2"), 0);
    cr_assert_eq(dp_config_set(c, "tags", NULL), 0);
    cr_assert_str_eq(dp_strerror(DP_EFULL), dp_strerror(-4003));
    dp_config_free(c);
}
