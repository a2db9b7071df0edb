/*
 * test_deadline.c - struct cmn_deadline: where a deadline lands on the
 * monotonic clock, "none" and its saturation, the earlier of two, and
 * what is left once it has passed. Bounds come from reading the clock
 * around each call, never from how long a step takes.
 */
#include <criterion/criterion.h>

#include "common.h"

Test(deadline, lands_ms_after_now)
{
    uint64_t before = cmn_mono_ns();
    struct cmn_deadline d = cmn_deadline_in_ms(1500);
    uint64_t after = cmn_mono_ns();

    cr_expect_geq(d.at_ns, before + 1500000000ull);
    cr_expect_leq(d.at_ns, after + 1500000000ull);
    cr_expect_leq(cmn_deadline_remaining_ms(d), 1500);
    cr_expect_leq(cmn_deadline_remaining_ns(d), 1500000000ull);
}

Test(deadline, none_is_never_expired)
{
    struct cmn_deadline d = cmn_deadline_in_ms(UINT64_MAX);

    cr_expect_eq(d.at_ns, UINT64_MAX);
    cr_expect_eq(cmn_deadline_remaining_ms(d), UINT64_MAX);
    cr_expect_eq(cmn_deadline_remaining_ns(d), UINT64_MAX);
    cr_expect_not(cmn_deadline_expired(d));
    cr_expect_eq(CMN_NO_DEADLINE.at_ns, UINT64_MAX);
    /* a budget past the clock's range saturates to none, never wraps
     * into the past */
    d = cmn_deadline_in_ms(UINT64_MAX / 1000000u);
    cr_expect_eq(d.at_ns, UINT64_MAX);
}

Test(deadline, passed_has_nothing_left)
{
    struct cmn_deadline past = {1}; /* 1 ns after the clock's origin */
    struct cmn_deadline now = cmn_deadline_in_ms(0);

    cr_expect(cmn_deadline_expired(past));
    cr_expect_eq(cmn_deadline_remaining_ms(past), 0);
    cr_expect_eq(cmn_deadline_remaining_ns(past), 0);
    cr_expect(cmn_deadline_expired(now));
    cr_expect_eq(cmn_deadline_remaining_ms(now), 0);
}

Test(deadline, min_is_the_earlier)
{
    struct cmn_deadline a = {5000}, b = {7000};

    cr_expect_eq(cmn_deadline_min(a, b).at_ns, 5000);
    cr_expect_eq(cmn_deadline_min(b, a).at_ns, 5000);
    cr_expect_eq(cmn_deadline_min(CMN_NO_DEADLINE, b).at_ns, 7000);
    cr_expect_eq(cmn_deadline_min(a, CMN_NO_DEADLINE).at_ns, 5000);
    cr_expect_eq(cmn_deadline_min(CMN_NO_DEADLINE, CMN_NO_DEADLINE).at_ns,
                 UINT64_MAX);
}

/* A part of a millisecond left counts as one: a timer armed with the
 * remaining milliseconds must not fire before the deadline (the
 * forwarder's stop once ended at 299.x ms of a 300 ms budget). Rounded
 * up, the milliseconds read first always cover the nanoseconds read
 * after; rounded down, 10.7 ms would give 10. */
Test(deadline, remaining_ms_rounds_up)
{
    struct cmn_deadline d = {cmn_mono_ns() + 10700000u};
    uint64_t ms = cmn_deadline_remaining_ms(d);
    uint64_t ns = cmn_deadline_remaining_ns(d);

    cr_expect_geq(ms * 1000000u, ns, "%llu ms left, then %llu ns",
                  (unsigned long long)ms, (unsigned long long)ns);
    cr_expect_leq(ms, 11);
}
