/*
 * test_hostile.c - the aggregator's checked arithmetic and clean text
 * (docs/limits.md), on the real payloads: the sample-rate floor and the
 * refusal of rates <= 0, exact histogram counts at the floor, sums that
 * overflow dropped and counted (series, v1 JSON, sketches), invalid UTF-8
 * repaired to U+FFFD, and a forged raw-line cache collision that must not
 * send a line to another context; the inlined hash and comparison of
 * short names.
 */
#include "agg_test_util.h"

#include "agg_internal.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

#define T0 1000000.0

static struct th h;

static void setup(void)
{
    th_setup(&h);
    h.now = T0;
}

static void teardown(void)
{
    th_teardown(&h);
}

TestSuite(hostile, .init = setup, .fini = teardown);

static struct agg_stats stats(void)
{
    struct agg_stats st;
    agg_get_stats(h.a, &st);
    return st;
}

Test(hostile, rate_floor_and_refusal)
{
    th_create(&h);
    double v[1024];
    for (int i = 0; i < 1024; i++)
        v[i] = i;
    cr_assert_eq(th_add(&h, "h", NULL, AGG_HISTOGRAM, v, 1024, 1e-16, 0), 0);
    double one = 1;
    cr_expect_eq(th_add(&h, "c0", NULL, AGG_COUNTER, &one, 1, 0, 0),
                 CMN_EPARSE);
    cr_expect_eq(th_add(&h, "cn", NULL, AGG_COUNTER, &one, 1, -2, 0),
                 CMN_EPARSE);
    cr_expect_eq(th_add(&h, "cnan", NULL, AGG_COUNTER, &one, 1, NAN, 0),
                 CMN_EPARSE);
    cr_assert_eq(th_add(&h, "c", NULL, AGG_COUNTER, &one, 1, 1e-9, 0), 0);
    struct agg_stats st = stats();
    cr_expect_eq(st.rates_clamped, 2);
    cr_expect_eq(st.samples_rate_refused, 3);
    cr_expect_eq(st.samples, 1025);
    th_flush(&h, true);
    th_decode(&h);
    int64_t w = (int64_t)(1 / 1e-6);
    MSeries *s = th_series(&h, "h.count");
    cr_assert_not_null(s);
    cr_expect_eq(s->points[0]->value, (double)(w * 1024) / 10);
    cr_expect_eq(th_series(&h, "h.max")->points[0]->value, 1023);
    cr_expect_eq(th_series(&h, "h.median")->points[0]->value, 511);
    cr_expect_eq(th_series(&h, "c")->points[0]->value, (1 / 1e-6) / 10);
    cr_expect_null(th_series(&h, "c0"));
    cr_expect_null(th_series(&h, "cn"));
    cr_expect_null(th_series(&h, "cnan"));
}

Test(hostile, overflowing_sums_are_dropped_and_counted)
{
    th_create(&h);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(th_add1(&h, "cbig", NULL, AGG_COUNTER, 1e308), 0);
    cr_assert_eq(th_add1(&h, "cok", NULL, AGG_COUNTER, 5), 0);
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(th_add1(&h, "dbig", NULL, AGG_DISTRIBUTION, 1e308), 0);
        cr_assert_eq(th_add1(&h, "hbig", NULL, AGG_HISTOGRAM, 1e308), 0);
    }
    th_flush(&h, true);
    th_decode(&h);
    cr_expect_null(th_series(&h, "cbig"));
    cr_expect_eq(th_series(&h, "cok")->points[0]->value, 0.5);
    cr_expect_null(th_sketch(&h, "dbig"));
    cr_expect_null(th_series(&h, "hbig.avg"));
    cr_expect_eq(th_series(&h, "hbig.max")->points[0]->value, 1e308);
    cr_expect_eq(th_series(&h, "hbig.count")->points[0]->value, 0.2);
    /* cbig, hbig.avg and the dbig sketch */
    cr_expect_eq(stats().points_nonfinite, 3);
}

Test(hostile, v1_json_never_writes_a_point_without_a_value)
{
    h.cfg.use_v2_series = false;
    th_create(&h);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(th_add1(&h, "cbig", NULL, AGG_COUNTER, 1e308), 0);
    cr_assert_eq(th_add1(&h, "cok", NULL, AGG_COUNTER, 5), 0);
    th_flush(&h, true);
    size_t nseries = 0;
    for (size_t i = 0; i < h.np; i++) {
        if (h.p[i]->kind != FWD_KIND_SERIES)
            continue;
        size_t len;
        char *b = th_body(h.p[i], &len);
        json_t *j = json_loadb(b, len, 0, NULL);
        cr_assert_not_null(j, "%s", b);
        json_t *series = json_object_get(j, "series");
        for (size_t k = 0; k < json_array_size(series); k++) {
            json_t *s = json_array_get(series, k);
            const char *name = json_string_value(json_object_get(s, "metric"));
            cr_expect_str_neq(name, "cbig");
            json_t *pts = json_object_get(s, "points");
            for (size_t p = 0; p < json_array_size(pts); p++)
                cr_expect_eq(json_array_size(json_array_get(pts, p)), 2,
                             "%s: a point without a value", name);
            nseries++;
        }
        json_decref(j);
        free(b);
    }
    cr_expect_eq(nseries, 1, "only cok");
    cr_expect_eq(stats().points_nonfinite, 1);
}

Test(hostile, invalid_utf8_is_repaired_and_counted)
{
    cmn_free(h.cfg.hostname);
    h.cfg.hostname = cmn_strdup("myhost");
    th_create(&h);
    cr_assert_eq(th_add1(&h, "bad\xff", "t:\xc3(,host:h\xfe", AGG_GAUGE, 1), 0);
    cr_assert_eq(th_add1(&h, "bad\xff", "t:\xc3(,host:h\xfe", AGG_GAUGE, 2),
                 0); /* the same raw line: a cache hit, counted once */
    cr_assert_eq(th_add1(&h, "ok\xc3\xa9", NULL, AGG_GAUGE, 3), 0);
    cr_expect_eq(stats().utf8_repaired, 1);
    th_flush(&h, true);
    th_decode(&h);
    MSeries *s = th_series(&h, "bad\xEF\xBF\xBD");
    cr_assert_not_null(s);
    cr_expect_eq(s->points[0]->value, 2);
    cr_assert_eq(s->n_tags, 1);
    cr_expect_str_eq(s->tags[0], "t:\xEF\xBF\xBD(");
    cr_expect_str_eq(s->resources[0]->name, "h\xEF\xBF\xBD");
    cr_expect_not_null(th_series(&h, "ok\xc3\xa9"));
}

/* Forges a collision: the raw-line cache slot of the one context interned
 * so far claims the hash of (name, tags) and moves where a lookup of that
 * hash starts, as the slot of a colliding line would. */
static void forge_slot(const char *name, const char *tags)
{
    struct agg *a = h.a;
    uint64_t nh = XXH3_64bits_withSeed(name, strlen(name), a->seed[0]);
    uint64_t rh = *tags ? XXH3_64bits_withSeed(tags, strlen(tags), nh) : nh;
    size_t forged = 0;
    for (size_t i = 0; i <= a->rc_mask; i++) {
        if (a->rc[i].ctx != NULL) {
            a->rc[i].h = (uint32_t)rh;
            forged++;
        }
    }
    cr_assert_eq(forged, 1);
    size_t want = (size_t)rh & a->rc_mask;
    for (size_t i = 0; i <= a->rc_mask; i++) {
        if (a->rc[i].ctx != NULL && i != want) {
            a->rc[want] = a->rc[i];
            memset(&a->rc[i], 0, sizeof(a->rc[i]));
        }
    }
}

Test(hostile, forged_raw_cache_collision_is_caught)
{
    th_create(&h);
    cr_assert_eq(th_add1(&h, "victim", "env:prod", AGG_COUNTER, 1), 0);
    forge_slot("attacker", "env:dev");
    cr_assert_eq(th_add1(&h, "attacker", "env:dev", AGG_COUNTER, 7), 0);
    th_flush(&h, true);
    th_decode(&h);
    MSeries *v = th_series(&h, "victim");
    MSeries *x = th_series(&h, "attacker");
    cr_assert_not_null(v);
    cr_assert_not_null(x, "the attacker's line went to the victim");
    cr_expect_eq(v->points[0]->value, 0.1);
    cr_expect_eq(x->points[0]->value, 0.7);
}

/* The same forged collision between names of the same length, 1 to 40
 * bytes, that differ only in their first or their last byte: the cache's
 * comparison of the bytes, not its lengths, must tell them apart. */
Test(hostile, forged_collision_of_names_one_byte_apart_is_caught)
{
    for (size_t len = 1; len <= 40; len++) {
        for (int last = 0; last < 2; last++) {
            char victim[48], attacker[48];
            memset(victim, 'a', len);
            victim[len] = '\0';
            memcpy(attacker, victim, len + 1);
            attacker[last ? len - 1 : 0] = 'Z';
            th_create(&h);
            cr_assert_eq(th_add1(&h, victim, NULL, AGG_COUNTER, 1), 0);
            forge_slot(attacker, "");
            cr_assert_eq(th_add1(&h, attacker, NULL, AGG_COUNTER, 7), 0);
            th_flush(&h, true);
            th_decode(&h);
            MSeries *v = th_series(&h, victim);
            MSeries *x = th_series(&h, attacker);
            cr_assert_not_null(v, "%s", victim);
            cr_assert_not_null(x, "%s went to %s", attacker, victim);
            cr_expect_eq(v->points[0]->value, 0.1, "%s", victim);
            cr_expect_eq(x->points[0]->value, 0.7, "%s", attacker);
            th_stop(&h);
            th_clear(&h);
            h.stopped = 0;
        }
    }
}

Test(hostile, hash_seeds_differ_between_aggregators)
{
    th_create(&h);
    struct agg *b;
    cr_assert_eq(agg_create(&h.loop, &h.cfg, th_submit, &h, &b), 0);
    cr_expect(memcmp(h.a->seed, b->seed, sizeof(b->seed)) != 0);
    agg_stop(b, CMN_NO_DEADLINE, th_done, &h.flushed);
    while (h.flushed == 0)
        uv_run(&h.loop, UV_RUN_ONCE);
    agg_destroy(b);
}

Test(hostile, short_keys_inline_is_xxh3)
{
    char buf[40];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (char)(0x41 + 7 * i);
    const uint64_t seeds[] = {0, 1, 0x9e3779b97f4a7c15ull, UINT64_MAX};
    for (size_t s = 0; s < sizeof(seeds) / sizeof(seeds[0]); s++)
        for (size_t n = 0; n <= sizeof(buf); n++)
            cr_assert_eq(agg__hash(buf, n, seeds[s]),
                         XXH3_64bits_withSeed(buf, n, seeds[s]),
                         "length %zu, seed %zu", n, s);
}
