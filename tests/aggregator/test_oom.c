/*
 * test_oom.c - allocation failure everywhere (STYLE.md rule 10): for
 * n = 1, 2, ... the n-th allocation from the first sample on fails (and
 * every later one), samples of every kind are added and flushed. Never a
 * crash, every sample is either accepted or counted as dropped, payloads
 * that do go out decode, the aggregator works again once memory is back,
 * and every byte is returned (cmn_alloc_live_bytes; ASan checks the rest).
 */
#include "agg_test_util.h"

#define T0 1000000.0

struct counts {
    uint64_t values, events, checks;
};

static void workload(struct th *h, struct counts *c)
{
    char name[32];
    double v3[] = {1, 2, 3};
    for (int i = 0; i < 6; i++) {
        snprintf(name, sizeof(name), "m.%d", i);
        (void)th_add(h, name, "a:1,b:2,host:x,device:d", AGG_COUNTER, v3, 3,
                     0.5, 0);
        (void)th_add(h, name, "c:3", AGG_GAUGE, v3, 3, 1, 0);
        (void)th_add(h, name, NULL, AGG_HISTOGRAM, v3, 3, 0.25, 0);
        (void)th_add(h, name, NULL, AGG_TIMING, v3, 1, 1, 0);
        (void)th_add(h, name, "d:1", AGG_DISTRIBUTION, v3, 3, 1, 0);
        (void)th_add(h, name, "nt:1", AGG_GAUGE, v3, 2, 1, 999990);
        (void)th_set(h, name, NULL, "member");
        (void)th_set(h, name, NULL, name);
        c->values += 3 + 3 + 3 + 1 + 3 + 2 + 2;
        struct agg_event e = {.title = CMN_SLICE_LIT("t"),
                              .text = CMN_SLICE_LIT("x"),
                              .tags = CMN_SLICE_LIT("e:1,host:h")};
        (void)agg_add_event(h->a, &e);
        struct agg_service_check s = {.name = CMN_SLICE_LIT("c"),
                                      .tags = CMN_SLICE_LIT("s:1")};
        (void)agg_add_service_check(h->a, &s);
        c->events++;
        c->checks++;
    }
}

static bool one_round(uint64_t n, enum agg_compressor comp, bool v2)
{
    struct th h;
    struct counts c = {0};
    size_t live0 = cmn_alloc_live_bytes();

    th_setup(&h);
    h.cfg.compressor = comp;
    h.cfg.use_v2_series = v2;
    h.cfg.no_agg_batch_size = 4;
    const char *extra[] = {"x:1"};
    th_create(&h);
    cr_assert_eq(agg_set_extra_tags(h.a, extra, 1), 0);
    uint64_t calls0 = cmn_alloc_count();
    cmn_alloc_fail_after(n);
    workload(&h, &c);
    h.now = T0 + 10;
    int before = h.flushed;
    if (agg_flush(h.a, false, th_done, &h.flushed) == 0) {
        while (h.flushed == before)
            uv_run(&h.loop, UV_RUN_ONCE);
    }
    uv_run(&h.loop, UV_RUN_NOWAIT);
    bool failed = cmn_alloc_count() - calls0 >= n;
    cmn_alloc_fail_reset();

    struct agg_stats st;
    agg_get_stats(h.a, &st);
    cr_assert_eq(st.samples + st.samples_no_agg + st.samples_dropped_oom +
                     st.samples_dropped_cap + st.contexts_dropped,
                 c.values, "n=%lu: %lu %lu %lu %lu %lu of %lu",
                 (unsigned long)n, (unsigned long)st.samples,
                 (unsigned long)st.samples_no_agg,
                 (unsigned long)st.samples_dropped_oom,
                 (unsigned long)st.samples_dropped_cap,
                 (unsigned long)st.contexts_dropped, (unsigned long)c.values);
    cr_assert_eq(st.events + st.events_dropped, c.events);
    cr_assert_eq(st.service_checks + st.service_checks_dropped, c.checks);
    if (v2)
        th_decode(&h); /* whatever went out is well formed */

    /* memory is back: the aggregator works again */
    th_clear(&h);
    cr_assert_eq(th_add1(&h, "after", NULL, AGG_GAUGE, 42), 0);
    h.now = T0 + 20;
    th_flush(&h, true);
    if (v2) {
        th_decode(&h);
        MSeries *s = th_series(&h, "after");
        cr_assert_not_null(s, "n=%lu", (unsigned long)n);
        cr_assert_float_eq(s->points[0]->value, 42, 1e-12);
    } else {
        cr_assert_geq(h.np, 1);
    }
    th_teardown(&h);
    cr_assert_eq(cmn_alloc_live_bytes(), live0, "leak at n=%lu",
                 (unsigned long)n);
    return failed;
}

Test(oom, loop_v2_zstd, .timeout = 240)
{
    uint64_t n = 1;
    while (one_round(n, AGG_COMPRESS_ZSTD, true))
        n += n < 400 ? 1 : 7;
    cr_assert_gt(n, 50); /* the workload allocates: the loop did run */
}

Test(oom, loop_v1_zlib, .timeout = 240)
{
    uint64_t n = 1;
    while (one_round(n, AGG_COMPRESS_ZLIB, false))
        n += n < 400 ? 3 : 11;
    cr_assert_gt(n, 50);
}

Test(oom, create_fails_cleanly)
{
    for (uint64_t n = 1; n < 64; n++) {
        uv_loop_t loop;
        struct agg_config cfg;
        struct agg *a = NULL;
        size_t live0;
        cr_assert_eq(uv_loop_init(&loop), 0);
        agg_config_defaults(&cfg);
        live0 = cmn_alloc_live_bytes();
        cmn_alloc_fail_after(n);
        int rc = agg_create(&loop, &cfg, th_submit, NULL, &a);
        cmn_alloc_fail_reset();
        if (rc == 0) {
            agg_destroy(a); /* never started: destroy directly */
            cr_assert_eq(cmn_alloc_live_bytes(), live0);
            agg_config_free(&cfg);
            cr_assert_eq(uv_loop_close(&loop), 0);
            break;
        }
        cr_assert_eq(rc, UV_ENOMEM);
        cr_assert_null(a);
        cr_assert_eq(cmn_alloc_live_bytes(), live0);
        agg_config_free(&cfg);
        cr_assert_eq(uv_loop_close(&loop), 0);
    }
}
