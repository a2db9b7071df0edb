/*
 * test_oom.c - allocation failure everywhere (STYLE.md rule 10): for
 * n = 1, 2, ... the n-th allocation from the first sample on fails (and
 * every later one), samples of every kind are added and flushed. Never a
 * crash, every sample is either accepted or counted as dropped, payloads
 * that do go out decode, the aggregator works again once memory is back,
 * and every byte is returned (cmn_alloc_live_bytes; ASan checks the rest).
 */
#include "agg_test_util.h"

#include "agg_serialize.h" /* agg__make_payload */

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

/* records: a record sink instead of payloads (the local sink's way). */
static bool one_round(uint64_t n, enum agg_compressor comp, bool v2,
                      bool records)
{
    struct th h;
    struct counts c = {0};
    size_t live0 = cmn_alloc_live_bytes();

    th_setup(&h);
    h.cfg.compressor = comp;
    h.cfg.use_v2_series = v2;
    h.cfg.no_agg_batch_size = 4;
    const char *extra[] = {"x:1"};
    if (records)
        th_create_records(&h);
    else
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
    if (v2 && !records)
        th_decode(&h); /* whatever went out is well formed */

    /* memory is back: the aggregator works again */
    th_clear(&h);
    cr_assert_eq(th_add1(&h, "after", NULL, AGG_GAUGE, 42), 0);
    h.now = T0 + 20;
    th_flush(&h, true);
    if (records) {
        cr_assert_eq(h.np, 0);
        cr_assert_not_null(h.rlog, "n=%lu", (unsigned long)n);
        cr_assert_not_null(strstr(h.rlog, "S after host=myhost [x:1] type=3 "
                                          "interval=10 1000010:42\n"),
                           "n=%lu: %s", (unsigned long)n, h.rlog);
    } else if (v2) {
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
    while (one_round(n, AGG_COMPRESS_ZSTD, true, false))
        n += n < 400 ? 1 : 7;
    cr_assert_gt(n, 50); /* the workload allocates: the loop did run */
}

Test(oom, loop_v1_zlib, .timeout = 240)
{
    uint64_t n = 1;
    while (one_round(n, AGG_COMPRESS_ZLIB, false, false))
        n += n < 400 ? 3 : 11;
    cr_assert_gt(n, 50);
}

/* The record sink's path: records built on the worker, handed over on the
 * loop (agg_records.c); a record whose scratch cannot grow is dropped and
 * counted, never half handed over. */
Test(oom, loop_record_sink, .timeout = 240)
{
    uint64_t n = 1;
    while (one_round(n, AGG_COMPRESS_ZSTD, true, true))
        n += n < 400 ? 1 : 7;
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

/* zstd's and zlib's working memory comes from cmn_alloc: compressing
 * allocates more through it than copying does, and every one of those
 * allocations may fail without a crash or a leak (the payload is then
 * not made: its caller counts it in payloads_dropped). */
Test(oom, compression_working_memory_is_ours)
{
    struct agg_config cfg;
    char raw[4096];
    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (char)('a' + (i * 7) % 13);
    agg_config_defaults(&cfg);
    const enum agg_compressor kinds[] = {AGG_COMPRESS_NONE, AGG_COMPRESS_ZSTD,
                                         AGG_COMPRESS_ZLIB};
    uint64_t calls[3];
    for (int k = 0; k < 3; k++) {
        cfg.compressor = kinds[k];
        size_t live0 = cmn_alloc_live_bytes();
        uint64_t c0 = cmn_alloc_count();
        struct fwd_payload *p =
            agg__make_payload(&cfg, FWD_KIND_SERIES, raw, sizeof(raw));
        calls[k] = cmn_alloc_count() - c0;
        cr_assert_not_null(p);
        cr_assert_eq(p->raw_len, sizeof(raw));
        fwd_payload_free(p);
        cr_assert_eq(cmn_alloc_live_bytes(), live0);
        /* every allocation of this path fails in turn */
        for (uint64_t n = 1; n <= calls[k]; n++) {
            cmn_alloc_fail_after(n);
            p = agg__make_payload(&cfg, FWD_KIND_SERIES, raw, sizeof(raw));
            cmn_alloc_fail_reset();
            /* only the last, the payload's shrink, may fail and still
             * give a payload (the body is kept at its larger size) */
            if (p != NULL)
                cr_assert_eq(p->raw_len, sizeof(raw), "n=%lu",
                             (unsigned long)n);
            fwd_payload_free(p);
            cr_assert_eq(cmn_alloc_live_bytes(), live0, "leak at n=%lu",
                         (unsigned long)n);
        }
    }
    /* none: body + payload; zstd and zlib add their contexts' memory */
    cr_assert_geq(calls[1], calls[0] + 2, "zstd %lu vs %lu",
                  (unsigned long)calls[1], (unsigned long)calls[0]);
    cr_assert_geq(calls[2], calls[0] + 2, "zlib %lu vs %lu",
                  (unsigned long)calls[2], (unsigned long)calls[0]);
    agg_config_free(&cfg);
}

/* JSON (jansson) allocates through cmn_alloc: under allocation failure an
 * events or service-check payload is either complete or not sent (and
 * counted), never a payload with missing fields. */
static void check_json_payloads(struct th *h, uint64_t n)
{
    for (size_t i = 0; i < h->np; i++) {
        const struct fwd_payload *p = h->p[i];
        if (p->kind != FWD_KIND_EVENTS && p->kind != FWD_KIND_SERVICE_CHECKS)
            continue;
        size_t len;
        char *b = th_body(p, &len);
        json_error_t jerr;
        json_t *root = json_loadb(b, len, 0, &jerr);
        cr_assert_not_null(root, "n=%lu: %s: %.*s", (unsigned long)n, jerr.text,
                           (int)len, b);
        free(b);
        if (p->kind == FWD_KIND_EVENTS) {
            json_t *ev =
                json_object_get(json_object_get(root, "events"), "api");
            cr_assert(json_is_array(ev), "n=%lu", (unsigned long)n);
            cr_assert_geq(json_array_size(ev), 1);
            for (size_t k = 0; k < json_array_size(ev); k++) {
                json_t *e = json_array_get(ev, k);
                cr_assert_str_eq(
                    json_string_value(json_object_get(e, "msg_title")), "t");
                cr_assert_str_eq(
                    json_string_value(json_object_get(e, "msg_text")), "x");
                cr_assert_str_eq(json_string_value(json_object_get(e, "host")),
                                 "h");
                cr_assert_eq(json_array_size(json_object_get(e, "tags")), 2,
                             "n=%lu", (unsigned long)n);
            }
            cr_assert_str_eq(
                json_string_value(json_object_get(root, "internalHostname")),
                "myhost");
        } else {
            cr_assert(json_is_array(root));
            for (size_t k = 0; k < json_array_size(root); k++) {
                json_t *c = json_array_get(root, k);
                cr_assert_str_eq(json_string_value(json_object_get(c, "check")),
                                 "c");
                cr_assert_str_eq(
                    json_string_value(json_object_get(c, "message")), "");
                cr_assert(json_is_integer(json_object_get(c, "status")));
                cr_assert_eq(json_array_size(json_object_get(c, "tags")), 2,
                             "n=%lu", (unsigned long)n);
            }
        }
        json_decref(root);
    }
}

/* Each allocation of the flush fails alone, in turn (the ones after it
 * succeed): a missed jansson failure would leave a field out. */
Test(oom, json_payloads_complete_or_absent, .timeout = 240)
{
    bool failed = true;
    uint64_t n = 1;
    for (; failed; n++) {
        struct th h;
        size_t live0 = cmn_alloc_live_bytes();
        th_setup(&h);
        h.cfg.compressor = AGG_COMPRESS_ZSTD;
        th_create(&h);
        const char *extra[] = {"x:1"};
        cr_assert_eq(agg_set_extra_tags(h.a, extra, 1), 0);
        for (int i = 0; i < 4; i++) {
            struct agg_event e = {.title = CMN_SLICE_LIT("t"),
                                  .text = CMN_SLICE_LIT("x"),
                                  .host = CMN_SLICE_LIT("h"),
                                  .tags = CMN_SLICE_LIT("e:1")};
            cr_assert_eq(agg_add_event(h.a, &e), 0);
            struct agg_service_check s = {.name = CMN_SLICE_LIT("c"),
                                          .tags = CMN_SLICE_LIT("s:1")};
            cr_assert_eq(agg_add_service_check(h.a, &s), 0);
        }
        uint64_t calls0 = cmn_alloc_count();
        cmn_alloc_fail_once(n);
        h.now = T0 + 10;
        int before = h.flushed;
        int rc = agg_flush(h.a, false, th_done, &h.flushed);
        if (rc == 0) {
            while (h.flushed == before)
                uv_run(&h.loop, UV_RUN_ONCE);
        }
        failed = cmn_alloc_count() - calls0 >= n;
        cmn_alloc_fail_reset();
        check_json_payloads(&h, n);
        struct agg_stats st;
        agg_get_stats(h.a, &st);
        /* once the job exists, both payloads went out or each missing one
         * (or part of one) is counted */
        if (rc == 0)
            cr_assert_geq(st.payloads + st.payloads_dropped, 2, "n=%lu",
                          (unsigned long)n);
        th_teardown(&h);
        cr_assert_eq(cmn_alloc_live_bytes(), live0, "leak at n=%lu",
                     (unsigned long)n);
    }
    cr_assert_gt(n, 30); /* jansson's and zstd's allocations were reached */
}
