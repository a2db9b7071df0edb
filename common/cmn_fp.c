/*
 * cmn_fp.c - frexp and ldexp without libm (rint: cmn_rint in common.h).
 *
 * serverless-init links no libm (loading it cost every start 0.25-0.3 ms
 * and 0.35 MiB). libc exports frexp and ldexp too, but a link line that
 * names -lm first (Bazel's toolchain always does) binds them to libm and
 * makes it a dependency again. These two are exact bit operations, the
 * same results as C's and Go's for every input the callers pass.
 */
#include "common.h"

#include <string.h>

#define FP_EXP_MASK ((uint64_t)0x7ff << 52)

double cmn_frexp(double x, int *e)
{
    uint64_t u;
    memcpy(&u, &x, sizeof(u));
    int be = (int)((u & FP_EXP_MASK) >> 52), adj = 0;
    if (be == 0x7ff || x == 0) { /* Inf, NaN, +-0: as C's, exponent 0 */
        *e = 0;
        return x;
    }
    if (be == 0) { /* subnormal: scale into the normal range first */
        x *= 18014398509481984.0; /* 2^54 */
        memcpy(&u, &x, sizeof(u));
        be = (int)((u & FP_EXP_MASK) >> 52);
        adj = -54;
    }
    *e = be - 1022 + adj;
    u = (u & ~FP_EXP_MASK) | ((uint64_t)1022 << 52); /* into [0.5, 1) */
    memcpy(&x, &u, sizeof(x));
    return x;
}

/* 2^e for -1022 <= e <= 1023, exactly. */
static double fp_pow2(int e)
{
    uint64_t u = (uint64_t)(e + 1023) << 52;
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

double cmn_ldexp(double x, int e)
{
    /* at most three multiplications by powers of two, each exact until
     * the result leaves the normal range, where the last one rounds once
     * (the usual scalbn) */
    if (e > 1023) {
        x *= fp_pow2(1023);
        e -= 1023;
        if (e > 1023) {
            x *= fp_pow2(1023);
            e -= 1023;
            if (e > 1023)
                e = 1023;
        }
    } else if (e < -1022) {
        /* 2^-1022 * 2^53: keeps 53 bits clear of the subnormal range */
        x *= fp_pow2(-1022 + 53);
        e += 1022 - 53;
        if (e < -1022) {
            x *= fp_pow2(-1022 + 53);
            e += 1022 - 53;
            if (e < -1022)
                e = -1022;
        }
    }
    return x * fp_pow2(e);
}
