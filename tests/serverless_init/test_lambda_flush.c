/*
 * test_lambda_flush.c - DD_SERVERLESS_FLUSH_STRATEGY (spec §4.2): parsing,
 * and the action taken at each INVOKE of a scripted clock, for every
 * strategy, including the adaptive default's switch after 20 invocations.
 */
#include <criterion/criterion.h>

#include "sinit_lambda.h"

Test(flush, parse)
{
    static const struct {
        const char *in;
        int rc;
        enum sinit_flush_kind kind;
        uint64_t ms;
    } rows[] = {
        {NULL, 0, SINIT_FLUSH_DEFAULT, 0},
        {"", 0, SINIT_FLUSH_DEFAULT, 0},
        {"end", 0, SINIT_FLUSH_END, 0},
        {"end,1000", 0, SINIT_FLUSH_END_PERIODIC, 1000},
        {"periodically,60000", 0, SINIT_FLUSH_PERIODICALLY, 60000},
        {"continuously,5", 0, SINIT_FLUSH_CONTINUOUSLY, 5},
        {"continuously,86400000", 0, SINIT_FLUSH_CONTINUOUSLY, 86400000},
        {"continuously,86400001", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"periodically", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"periodically,", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"periodically,0", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"periodically,-5", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"periodically,10s", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"End", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"end,", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
        {"sometimes", UV_EINVAL, SINIT_FLUSH_DEFAULT, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        struct sinit_flush_strategy s;
        int rc = sinit_flush_parse(rows[i].in, &s);
        cr_assert_eq(rc, rows[i].rc, "%s: rc %d", rows[i].in, rc);
        if (rc != 0)
            continue;
        cr_assert_eq(s.kind, rows[i].kind, "%s: kind %d", rows[i].in, s.kind);
        cr_assert_eq(s.interval_ms, rows[i].ms, "%s", rows[i].in);
    }
}

/* Runs INVOKEs at the scripted times; after each, a flush that the
 * action asks for is recorded at the same time. */
static void script(const char *strategy, const uint64_t *times, size_t n,
                   const enum sinit_flush_action *want)
{
    struct sinit_flush_strategy s;
    cr_assert_eq(sinit_flush_parse(strategy, &s), 0);
    struct sinit_flush_ctl c;
    sinit_flush_init(&c, &s);
    for (size_t i = 0; i < n; i++) {
        enum sinit_flush_action a = sinit_flush_on_invoke(&c, times[i]);
        cr_assert_eq(a, want[i],
                     "%s: invoke %zu at %llu ms: action %d, want "
                     "%d",
                     strategy ? strategy : "(default)", i,
                     (unsigned long long)times[i], a, want[i]);
        if (a != SINIT_FLUSH_NONE)
            sinit_flush_did(&c, times[i]);
    }
}

#define END SINIT_FLUSH_AT_END
#define NOW SINIT_FLUSH_NOW_BLOCKING
#define ASYNC SINIT_FLUSH_NOW_ASYNC
#define NONE SINIT_FLUSH_NONE

Test(flush, end_flushes_at_every_end)
{
    static const uint64_t t[] = {1000, 1001, 5000, 900000};
    static const enum sinit_flush_action w[] = {END, END, END, END};
    script("end", t, 4, w);
    script("end,100", t, 4, w); /* plus ticks during the call */
}

Test(flush, periodically_blocks_once_per_interval)
{
    /* interval 10 s: flush at 1 s, not at 5 s or 10.9 s, at 11 s (10 s
     * after the last flush), not at 20 s, at 21.5 s */
    static const uint64_t t[] = {1000, 5000, 10999, 11000, 20000, 21500};
    static const enum sinit_flush_action w[] = {NOW, NONE, NONE,
                                                NOW, NONE, NOW};
    script("periodically,10000", t, 6, w);
}

Test(flush, continuously_does_not_block)
{
    static const uint64_t t[] = {1000, 1500, 2000, 2999, 3000};
    static const enum sinit_flush_action w[] = {ASYNC, NONE, ASYNC, NONE,
                                                ASYNC};
    script("continuously,1000", t, 5, w);
}

Test(flush, default_is_end_for_the_first_20_invocations)
{
    uint64_t t[20];
    enum sinit_flush_action w[20];
    for (size_t i = 0; i < 20; i++) {
        t[i] = 1000 + i * 100; /* busy, but too few seen */
        w[i] = END;
    }
    script(NULL, t, 19, w);
}

/* 20 invocations spaced `gap` ms apart, then a 21st `gap` later. */
static struct sinit_flush_strategy after_20(uint64_t gap)
{
    struct sinit_flush_strategy s = {SINIT_FLUSH_DEFAULT, 0};
    struct sinit_flush_ctl c;
    sinit_flush_init(&c, &s);
    uint64_t now = 1000;
    for (int i = 0; i < 20; i++, now += gap)
        (void)sinit_flush_on_invoke(&c, now);
    return sinit_flush_effective(&c, now - gap);
}

Test(flush, default_adapts_after_20_invocations)
{
    /* 20 invocations 1 s apart span 19 s < 30 s: continuously, 20 s */
    struct sinit_flush_strategy s = after_20(1000);
    cr_assert_eq(s.kind, SINIT_FLUSH_CONTINUOUSLY);
    cr_assert_eq(s.interval_ms, 20000);
    /* 10 s apart: mean gap 10 s < 120 s but span 190 s: periodically */
    s = after_20(10000);
    cr_assert_eq(s.kind, SINIT_FLUSH_PERIODICALLY);
    cr_assert_eq(s.interval_ms, 20000);
    /* 119.999 s apart: still busy */
    s = after_20(119999);
    cr_assert_eq(s.kind, SINIT_FLUSH_PERIODICALLY);
    /* 120 s apart: quiet: end */
    s = after_20(120000);
    cr_assert_eq(s.kind, SINIT_FLUSH_END);
}

Test(flush, default_actions_follow_the_adaptive_choice)
{
    /* 25 invocations 500 ms apart: 19 x end, then the 20th sees a full
     * ring (continuously 20 s): an async flush (never flushed since the
     * end flushes count), then nothing until 20 s passed */
    struct sinit_flush_strategy s = {SINIT_FLUSH_DEFAULT, 0};
    struct sinit_flush_ctl c;
    sinit_flush_init(&c, &s);
    for (int i = 0; i < 19; i++) {
        uint64_t now = 1000 + (uint64_t)i * 500;
        cr_assert_eq(sinit_flush_on_invoke(&c, now), END, "invoke %d", i);
        sinit_flush_did(&c, now);
    }
    /* last end flush at 10 000 ms */
    cr_assert_eq(sinit_flush_on_invoke(&c, 10500), NONE);
    cr_assert_eq(sinit_flush_on_invoke(&c, 29999), NONE);
    cr_assert_eq(sinit_flush_on_invoke(&c, 30000), ASYNC);
}
