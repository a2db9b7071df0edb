/*
 * test_fp.c - cmn_frexp and cmn_ldexp (cmn_fp.c) against libm's frexp and
 * ldexp, bit for bit: normal, subnormal and special values, and results
 * that overflow, underflow or round into the subnormal range.
 */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common.h"

static uint64_t bits_of(double d)
{
    uint64_t u;
    memcpy(&u, &d, sizeof(u));
    return u;
}

static double from_bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* xorshift64: the same values on every run */
static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

Test(fp, frexp_matches_libm)
{
    const double special[] = {
        1.0,          -1.0,          0.5,    3.0,   DBL_MAX, -DBL_MAX, DBL_MIN,
        DBL_TRUE_MIN, -DBL_TRUE_MIN, 1e-310, 1e300, 0.0,     -0.0};
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++) {
        int e1 = -7, e2 = -7;
        double a = cmn_frexp(special[i], &e1), b = frexp(special[i], &e2);
        cr_expect_eq(bits_of(a), bits_of(b), "frexp(%a)", special[i]);
        cr_expect_eq(e1, e2, "frexp(%a): exponent", special[i]);
    }
    int e;
    cr_expect(isinf(cmn_frexp(INFINITY, &e)));
    cr_expect(isnan(cmn_frexp(NAN, &e)));
    uint64_t s = 88172645463325252u;
    for (int i = 0; i < 1000000; i++) {
        double x = from_bits(next(&s));
        if (isnan(x) || isinf(x))
            continue;
        int e1, e2;
        double a = cmn_frexp(x, &e1), b = frexp(x, &e2);
        if (bits_of(a) != bits_of(b) || e1 != e2)
            cr_assert_fail("frexp(%a): %a 2^%d, libm %a 2^%d", x, a, e1, b, e2);
    }
}

Test(fp, ldexp_matches_libm)
{
    const int exps[] = {0,     1,     -1,   52,    -52,  1023,  -1022, 1024,
                        -1074, -1075, 2000, -2000, 2046, -2098, 3000,  -3000};
    const double xs[] = {1.0,
                         -1.0,
                         0.75,
                         1.5,
                         DBL_MAX,
                         DBL_MIN,
                         DBL_TRUE_MIN,
                         0.0,
                         -0.0,
                         0.9999999999999999,
                         3.0000000000000004};
    for (size_t i = 0; i < sizeof(xs) / sizeof(xs[0]); i++)
        for (size_t k = 0; k < sizeof(exps) / sizeof(exps[0]); k++) {
            double a = cmn_ldexp(xs[i], exps[k]), b = ldexp(xs[i], exps[k]);
            cr_expect_eq(bits_of(a), bits_of(b), "ldexp(%a, %d): %a, libm %a",
                         xs[i], exps[k], a, b);
        }
    uint64_t s = 2463534242u;
    for (int i = 0; i < 1000000; i++) {
        double x = from_bits(next(&s));
        if (isnan(x) || isinf(x))
            continue;
        int n = (int)(next(&s) % 4400) - 2200;
        double a = cmn_ldexp(x, n), b = ldexp(x, n);
        if (bits_of(a) != bits_of(b))
            cr_assert_fail("ldexp(%a, %d): %a, libm %a", x, n, a, b);
    }
}

/* cmn_rint (common.h) against libm's rint, bit for bit: ties to even, the
 * sign of a zero result, values past 2^52, Inf and NaN, then random bit
 * patterns and random values near the integers. */
static void expect_rint(double x)
{
    double want = rint(x), got = cmn_rint(x);
    if (isnan(want)) {
        cr_assert(isnan(got), "cmn_rint(%a) = %a, want NaN", x, got);
        return;
    }
    cr_assert_eq(bits_of(got), bits_of(want), "cmn_rint(%a) = %a, want %a", x,
                 got, want);
}

Test(fp, rint_matches_libm)
{
    const double special[] = {0.5,
                              1.5,
                              2.5,
                              -0.5,
                              -1.5,
                              -2.5,
                              0.4,
                              -0.4,
                              0.0,
                              -0.0,
                              0.49999999999999994,
                              4503599627370495.5,
                              -4503599627370495.5,
                              4503599627370496.0,
                              9007199254740993.0,
                              DBL_MAX,
                              -DBL_MAX,
                              DBL_MIN,
                              -DBL_MIN,
                              4.9406564584124654e-324,
                              INFINITY,
                              -INFINITY,
                              NAN,
                              1e300,
                              -1e-300,
                              45780.5,
                              -1337.5,
                              1337.4999999999998};
    /* the edge values above by name: the two halves exactly at a tie */
    cr_assert_eq(cmn_rint(2.5), 2.0);
    cr_assert_eq(cmn_rint(3.5), 4.0);
    cr_assert(signbit(cmn_rint(-0.4)));
    for (size_t i = 0; i < sizeof(special) / sizeof(special[0]); i++)
        expect_rint(special[i]);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < 200000; i++) {
        expect_rint(from_bits(next(&s)));
        /* near an integer, where the ties are */
        double base = (double)(int64_t)(next(&s) % 2000001) - 1000000.0;
        expect_rint(base + (double)(next(&s) % 9) * 0.125);
    }
}
