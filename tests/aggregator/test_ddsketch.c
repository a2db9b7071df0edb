/*
 * test_ddsketch.c - the Agent's DDSketch (spec/pipeline.md §2.3, §2.5):
 * keys against hand-computed values, uint16 count splitting, collapse at
 * 4096 bins, merge, sample rates, summary, caps, OOM, and quantile accuracy
 * (within 1/128 of the exact sample) on three distributions.
 *
 * Hand computations use lnG = ln(1.015625) = log1p(1/64) =
 * 0.015504186535965254 and bias = 1 - floor(ln(1e-9) / lnG) = 1 - (-1337)
 * = 1338 (ln(1e-9) / lnG = -20.7232658 / 0.0155041865 = -1336.62).
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ddsketch.h"

#define BIAS 1338

static double bits(uint64_t u)
{
    double d;
    memcpy(&d, &u, sizeof(d));
    return d;
}

/* Sum of all bin counts. */
static uint64_t bins_total(const struct agg_sketch *s)
{
    uint64_t t = 0;
    for (uint32_t i = 0; i < s->nbins; i++)
        t += s->bins[i].n;
    return t;
}

static bool bins_sorted(const struct agg_sketch *s)
{
    for (uint32_t i = 1; i < s->nbins; i++)
        if (s->bins[i - 1].k > s->bins[i].k)
            return false;
    return true;
}

Test(ddsketch, constants)
{
    /* The literal lnG in ddsketch.c must be log1p(2/128) exactly, and the
     * bias must follow from it. */
    double lng = log1p(2.0 / 128);
    cr_expect_eq(lng, 0.015504186535965254);
    cr_expect_eq(floor(log(1e-9) / lng), -1337.0);
    cr_expect_eq(AGG_SKETCH_MAX_COUNT, 4096LL * 65535);
    /* the minimum (ddsketch.c SK_MIN_VALUE) is g^-1337 as Go computes it
     * (the Agent's norm.min = c.f64(1) = math.Pow(g, -1337)), a few ulp
     * below glibc's pow */
    cr_expect_eq(agg_sketch_key_lower(1), bits(0x3e111479426012e9));
    cr_expect(fabs(agg_sketch_key_lower(1) / pow(1.015625, -1337) - 1) < 1e-14);
}

/* The bins' values are Go's math.Pow(1.015625, k - 1338) bit for bit,
 * as the Agent's binLow computes them: math.Pow by successive squarings,
 * which is a few ulp off glibc's pow for most keys. Reference bits from
 * Go 1.19 (linux/amd64), fmt.Printf("%x", math.Float64bits(
 * math.Pow(1+2.0/128, float64(j)))); all 32 766 finite keys were compared
 * when ddsketch.c's copy was written, and 32 722 of glibc's values
 * differed. */
Test(ddsketch, bin_values_are_go_math_pow)
{
    static const struct {
        int j;
        uint64_t go;
    } ref[] = {
        {-1337, 0x3e111479426012e9}, {-1229, 0x3e36c8bd2b093a7c},
        {-45, 0x3fdfdae1fa01eca0},   {-1, 0x3fef81f81f81f820},
        {1, 0x3ff0400000000000},     {2, 0x3ff0810000000000},
        {45, 0x400012a4a2d92b35},    {127, 0x401ca7aa849596da},
        {128, 0x401d1a492ea7ed37},   {720, 0x40f134b11dc0fe1d},
        {1175, 0x419374dd30131eb7},  {31428, 0x6bdf76c560693f41},
    };
    for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
        double v = agg_sketch_key_lower((int16_t)(ref[i].j + BIAS));
        cr_expect_eq(v, bits(ref[i].go), "g^%d: %.17g, Go has %.17g", ref[i].j,
                     v, bits(ref[i].go));
        cr_expect_eq(agg_sketch_key_lower((int16_t) - (ref[i].j + BIAS)), -v);
    }
    /* glibc's pow is not what the Agent computes (the test would pass
     * with it otherwise) */
    cr_expect_neq(pow(1.015625, 45), bits(0x400012a4a2d92b35));
}

Test(ddsketch, keys_hand_computed)
{
    /* ln(1) = 0 -> round(0) + 1338 */
    cr_expect_eq(agg_sketch_key(1.0), BIAS);
    /* ln(g) / lnG = 1 -> 1339 */
    cr_expect_eq(agg_sketch_key(1.015625), BIAS + 1);
    /* ln 2 / lnG = 0.693147 / 0.0155042 = 44.707 -> 45 -> 1383 */
    cr_expect_eq(agg_sketch_key(2.0), 1383);
    /* ln 0.5 / lnG = -44.707 -> -45 -> 1293 */
    cr_expect_eq(agg_sketch_key(0.5), 1293);
    /* ln 3 / lnG = 1.098612 / 0.0155042 = 70.859 -> 71 -> 1409 */
    cr_expect_eq(agg_sketch_key(3.0), 1409);
    /* ln 100 / lnG = 4.605170 / 0.0155042 = 297.03 -> 297 -> 1635 */
    cr_expect_eq(agg_sketch_key(100.0), 1635);
    /* ln 1e-9 / lnG = -1336.62 -> -1337 -> 1: the smallest key */
    cr_expect_eq(agg_sketch_key(1e-9), 1);
    /* below min = g^-1337 = 9.9419e-10 -> 0 (ln 9.9e-10 / lnG = -1337.27) */
    cr_expect_eq(agg_sketch_key(9.9e-10), 0);
    cr_expect_eq(agg_sketch_key(1e-10), 0);
    cr_expect_eq(agg_sketch_key(0.0), 0);
    cr_expect_eq(agg_sketch_key(-0.0), 0);
    /* negatives mirror */
    cr_expect_eq(agg_sketch_key(-1.0), -BIAS);
    cr_expect_eq(agg_sketch_key(-2.0), -1383);
    cr_expect_eq(agg_sketch_key(-1e-10), 0);
    /* ln 1e211 / lnG = 31336.40 -> 31336 + 1338 = 32674: still finite */
    cr_expect_eq(agg_sketch_key(1e211), 32674);
    /* ln 1e300 / lnG = 44554.13 -> 45892 > 32766 -> the Inf key */
    cr_expect_eq(agg_sketch_key(1e300), AGG_SKETCH_INF_KEY);
    cr_expect_eq(agg_sketch_key(-1e300), -AGG_SKETCH_INF_KEY);
    cr_expect_eq(agg_sketch_key(INFINITY), AGG_SKETCH_INF_KEY);
    cr_expect_eq(agg_sketch_key(1.7976931348623157e308), AGG_SKETCH_INF_KEY);
}

Test(ddsketch, key_lower_round_trips)
{
    cr_expect_eq(agg_sketch_key_lower(BIAS), 1.0);
    cr_expect_eq(agg_sketch_key_lower(BIAS + 1), 1.015625);
    cr_expect_eq(agg_sketch_key_lower(0), 0.0);
    cr_expect_eq(agg_sketch_key_lower(-BIAS), -1.0);
    cr_expect(isinf(agg_sketch_key_lower(AGG_SKETCH_INF_KEY)));
    cr_expect(agg_sketch_key_lower(-AGG_SKETCH_INF_KEY) < 0);
    cr_expect(isinf(agg_sketch_key_lower(-AGG_SKETCH_INF_KEY)));
    /* key(lower(k)) == k for every finite key, both signs */
    for (int k = 1; k <= AGG_SKETCH_MAX_KEY; k++) {
        double v = agg_sketch_key_lower((int16_t)k);
        if (agg_sketch_key(v) != k || agg_sketch_key(-v) != -k)
            cr_assert_fail("round trip broke at key %d (v=%g)", k, v);
    }
    /* g^-1337 (Go's) is the minimum: key 1; the double below it: key 0 */
    double min = agg_sketch_key_lower(1);
    cr_expect_eq(agg_sketch_key(min), 1);
    cr_expect_eq(agg_sketch_key(nextafter(min, 0)), 0);
    cr_expect_eq(agg_sketch_key(pow(1.015625, -1337)), 1);
}

/* Keys right at bin boundaries are Go's: values within a few ulp of
 * gamma^(j + 1/2), where the rounding of ln(v) decides the key. Reference
 * keys from Go 1.19 (linux/amd64): RoundToEven(math.Log(v) /
 * math.Log1p(2.0/128)) + 1338 for v = the bits below; glibc's log gives
 * the other neighbour for every one of them (211 of 517 392 boundary
 * probes differed), so this fails with libm's log. The division-free fast
 * path and Go's own arithmetic must agree on each. */
Test(ddsketch, boundary_keys_are_go_math_log)
{
    static const struct {
        uint64_t v;
        int go; /* Go's RoundToEven(Log(v) / lnG), before the bias */
    } ref[] = {
        {0x3e8512b134a4dcf6, -1011}, {0x3ed2bfd8b3341c3f, -795},
        {0x3f052f79c6eb0570, -653},  {0x3f3579de682f515e, -517},
        {0x3f7588842962b77d, -338},  {0x3fb59733e80fa2d7, -159},
        {0x3fddb551f1f5b1cf, -50},   {0x403663b24ffc4d16, 200},
        {0x4091f40679737bfb, 454},   {0x40d711b582e45a67, 650},
        {0x410406e688c55af4, 775},   {0x4143c57960c639ba, 952},
    };
    for (size_t i = 0; i < sizeof(ref) / sizeof(ref[0]); i++) {
        double v = bits(ref[i].v);
        cr_expect_eq(agg_sketch_key(v), ref[i].go + BIAS, "key(%.17g)", v);
        cr_expect_eq(agg__sketch_key_go(v, false), ref[i].go + BIAS,
                     "exact key(%.17g)", v);
        cr_expect_eq(agg_sketch_key(-v), -(ref[i].go + BIAS));
        cr_expect_neq((int)rint(log(v) / 0.015504186535965254), ref[i].go,
                      "glibc agrees at %.17g: not a boundary case", v);
    }
}

/* The fast path (no division) and Go's arithmetic give the same key
 * everywhere: 1 M log-spaced values over the whole range, and 16 doubles
 * around each of the first 3 000 bin boundaries. */
Test(ddsketch, fast_key_matches_go_arithmetic)
{
    double v = 9.95e-10;
    for (int i = 0; i < 1000000; i++, v *= 1.0000457) {
        if (agg_sketch_key(v) != agg__sketch_key_go(v, false))
            cr_assert_fail("key(%a): fast %d, Go %d", v, agg_sketch_key(v),
                           agg__sketch_key_go(v, false));
    }
    for (int k = 2; k < 3000; k++) {
        /* the boundary between key k - 1 and k, as a double */
        double b = sqrt(agg_sketch_key_lower((int16_t)(k - 1)) *
                        agg_sketch_key_lower((int16_t)k));
        for (int t = 0; t < 8; t++)
            b = nextafter(b, 0);
        for (int t = 0; t < 16; t++, b = nextafter(b, INFINITY)) {
            if (agg_sketch_key(b) != agg__sketch_key_go(b, false))
                cr_assert_fail("key(%a): fast %d, Go %d", b, agg_sketch_key(b),
                               agg__sketch_key_go(b, false));
        }
    }
}

Test(ddsketch, rejects_nan_inf)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    cr_expect_eq(agg_sketch_insert(&s, NAN, 1), CMN_EPARSE);
    cr_expect_eq(agg_sketch_insert(&s, INFINITY, 1), CMN_EPARSE);
    cr_expect_eq(agg_sketch_insert(&s, -INFINITY, 0.5), CMN_EPARSE);
    cr_expect_eq(s.cnt, 0);
    cr_expect_eq(s.nbuf, 0);
    cr_expect_eq(agg_sketch_finish(&s), 0);
    cr_expect_eq(s.nbins, 0);
    cr_expect(isnan(agg_sketch_quantile(&s, 0.5)));
    agg_sketch_free(&s);
}

Test(ddsketch, summary_and_buffer)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    double vals[] = {3, -1, 2, 2, 0};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(agg_sketch_insert(&s, vals[i], 1), 0);
    cr_expect_eq(s.nbuf, 5);   /* buffered, not binned yet */
    cr_expect_eq(s.bufcap, 8); /* the buffer starts small */
    cr_expect_eq(s.nbins, 0);
    cr_expect_eq(s.cnt, 5);
    cr_expect_eq(s.min, -1);
    cr_expect_eq(s.max, 3);
    cr_expect_eq(s.sum, 6);
    cr_expect_float_eq(s.avg, 1.2, 1e-12);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_expect_eq(s.nbuf, 0);
    cr_expect_eq(s.buf, NULL); /* released by finish */
    cr_expect_eq(s.bufcap, 0);
    /* keys: -1338 (-1), 0 (0), 1383 x2 (2), 1409 (3) */
    cr_assert_eq(s.nbins, 4);
    cr_expect_eq(s.bins[0].k, -BIAS);
    cr_expect_eq(s.bins[0].n, 1);
    cr_expect_eq(s.bins[1].k, 0);
    cr_expect_eq(s.bins[1].n, 1);
    cr_expect_eq(s.bins[2].k, 1383);
    cr_expect_eq(s.bins[2].n, 2);
    cr_expect_eq(s.bins[3].k, 1409);
    cr_expect_eq(s.bins[3].n, 1);
    agg_sketch_free(&s);
    cr_expect_eq(s.bins, NULL);
    agg_sketch_free(NULL);
}

Test(ddsketch, buffer_flushes_at_512)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    for (int i = 0; i < 512; i++)
        cr_assert_eq(agg_sketch_insert(&s, 1.0, 1), 0);
    cr_expect_eq(s.nbuf, 512);
    cr_expect_eq(s.bufcap, 512); /* grew 8, 16, ... 512 */
    cr_assert_eq(agg_sketch_insert(&s, 2.0, 1), 0);
    /* the full buffer went into the bins before the 513th key */
    cr_expect_eq(s.nbuf, 1);
    cr_expect_eq(s.bufcap, 512); /* kept while inserting */
    cr_assert_eq(s.nbins, 1);
    cr_expect_eq(s.bins[0].k, BIAS);
    cr_expect_eq(s.bins[0].n, 512);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_assert_eq(s.nbins, 2);
    cr_expect_eq(s.bins[1].k, 1383);
    cr_expect_eq(s.cnt, 513);
    agg_sketch_free(&s);
}

/* Keys of both signs, zero and the Inf keys, in random order across several
 * 512-key buffers: the bins must equal a per-key count computed here. */
Test(ddsketch, mixed_keys_match_reference_counts)
{
    static uint32_t ref[65536];
    struct agg_sketch s;
    uint64_t x = 88172645463325252ULL; /* xorshift64 */
    agg_sketch_init(&s);
    memset(ref, 0, sizeof(ref));
    for (int i = 0; i < 5000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        double v;
        switch (x % 8) {
        case 0:
            v = 0;
            break;
        case 1:
            v = 1e300; /* +Inf key */
            break;
        case 2:
            v = -1e300; /* -Inf key */
            break;
        default:
            /* magnitudes 1e-12 .. 1e12, either sign */
            v = pow(10, (double)(x >> 11 & 0xffff) / 65535.0 * 24 - 12);
            if (x & 0x100000)
                v = -v;
        }
        cr_assert_eq(agg_sketch_insert(&s, v, 1), 0);
        ref[agg_sketch_key(v) + 32768]++;
    }
    cr_assert_eq(agg_sketch_finish(&s), 0);
    uint32_t j = 0;
    for (int k = 0; k < 65536; k++) {
        if (ref[k] == 0)
            continue;
        cr_assert_lt(j, s.nbins);
        cr_expect_eq(s.bins[j].k, k - 32768, "bin %u", j);
        cr_expect_eq(s.bins[j].n, ref[k], "bin %u key %d", j, k - 32768);
        j++;
    }
    cr_expect_eq(j, s.nbins);
    cr_expect_eq(s.bins[0].k, -AGG_SKETCH_INF_KEY);
    cr_expect_eq(s.bins[s.nbins - 1].k, AGG_SKETCH_INF_KEY);
    agg_sketch_free(&s);
}

Test(ddsketch, sample_rates)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    /* rate 0.5: 2 copies in the bins, summary InsertN(2, 2) */
    cr_assert_eq(agg_sketch_insert(&s, 2.0, 0.5), 0);
    cr_expect_eq(s.cnt, 2);
    cr_expect_eq(s.sum, 4);
    cr_assert_eq(s.nbins, 1);
    cr_expect_eq(s.bins[0].k, 1383);
    cr_expect_eq(s.bins[0].n, 2);
    /* rate 1 after: avg = 2 + (4 - 2) / 3 */
    cr_assert_eq(agg_sketch_insert(&s, 4.0, 1), 0);
    cr_expect_eq(s.cnt, 3);
    cr_expect_eq(s.sum, 8);
    cr_expect_float_eq(s.avg, 8.0 / 3, 1e-12);
    /* rate 0.3: 1/0.3 = 3.33 -> 3 copies and cnt + 3, but sum + 3.33 * 1 */
    cr_assert_eq(agg_sketch_insert(&s, 1.0, 0.3), 0);
    cr_expect_eq(s.cnt, 6);
    cr_expect_float_eq(s.sum, 8 + 1 / 0.3, 1e-12);
    /* rates outside (0, 1] count as 1 */
    cr_assert_eq(agg_sketch_insert(&s, 1.0, 0), 0);
    cr_assert_eq(agg_sketch_insert(&s, 1.0, 2), 0);
    cr_assert_eq(agg_sketch_insert(&s, 1.0, -0.5), 0);
    cr_assert_eq(agg_sketch_insert(&s, 1.0, NAN), 0);
    cr_expect_eq(s.cnt, 10);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    /* keys 1338 (1: 3 + 4), 1383 (2: 2), key(4) = 1338 + round(89.41) */
    cr_assert_eq(s.nbins, 3);
    cr_expect_eq(s.bins[0].k, BIAS);
    cr_expect_eq(s.bins[0].n, 7);
    cr_expect_eq(s.bins[1].k, 1383);
    cr_expect_eq(s.bins[1].n, 2);
    cr_expect_eq(s.bins[2].k, BIAS + 89);
    cr_expect_eq(s.bins[2].n, 1);
    cr_expect_eq(bins_total(&s), (uint64_t)s.cnt);
    agg_sketch_free(&s);
}

Test(ddsketch, uint16_overflow_splits)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    /* 70000 rate-1 ones: 70000 = 65535 + 4465, remainder first */
    for (int i = 0; i < 70000; i++)
        cr_assert_eq(agg_sketch_insert(&s, 1.0, 1), 0);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_assert_eq(s.nbins, 2);
    cr_expect_eq(s.bins[0].k, BIAS);
    cr_expect_eq(s.bins[0].n, 4465);
    cr_expect_eq(s.bins[1].k, BIAS);
    cr_expect_eq(s.bins[1].n, 65535);
    agg_sketch_free(&s);

    /* rate 1/131072: 131072 = 2 x 65535 + 2 -> [2, 65535, 65535] */
    agg_sketch_init(&s);
    cr_assert_eq(agg_sketch_insert(&s, 2.0, 1.0 / 131072), 0);
    cr_assert_eq(s.nbins, 3);
    cr_expect_eq(s.bins[0].n, 2);
    cr_expect_eq(s.bins[1].n, 65535);
    cr_expect_eq(s.bins[2].n, 65535);
    cr_expect_eq(s.bins[2].k, 1383);
    cr_expect_eq(s.cnt, 131072);
    /* one more at the same key: the remainder bin grows, 2 + 1 = 3 */
    cr_assert_eq(agg_sketch_insert(&s, 2.0, 1), 0);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_assert_eq(s.nbins, 3);
    cr_expect_eq(s.bins[0].n, 3);
    cr_expect_eq(bins_total(&s), 131073);
    /* quantiles of a single key are that key's value (2), clamped */
    cr_expect_eq(agg_sketch_quantile(&s, 0.5), 2.0);
    agg_sketch_free(&s);
}

Test(ddsketch, collapse_keeps_total)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    /* 5000 distinct keys 1338..6337 (values g^0 .. g^4999) */
    for (int j = 0; j < 5000; j++)
        cr_assert_eq(agg_sketch_insert(&s, pow(1.015625, j), 1), 0);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_expect_eq(s.nbins, AGG_SKETCH_BIN_LIMIT);
    cr_expect(bins_sorted(&s));
    cr_expect_eq(bins_total(&s), 5000);
    cr_expect_eq(s.cnt, 5000);
    /* the lowest 904 keys were folded into key 1338 + 904 */
    cr_expect_eq(s.bins[0].k, BIAS + 904);
    cr_expect_eq(s.bins[0].n, 905);
    cr_expect_eq(s.bins[1].k, BIAS + 905);
    cr_expect_eq(s.bins[1].n, 1);
    cr_expect_eq(s.bins[4095].k, BIAS + 4999);
    /* the high end keeps its precision */
    /* rank RoundToEven(0.99 * 4999) = 4949: 905 + i > 4949 at bin 4045,
     * key 1338 + 904 + 4045 */
    double q99 = agg_sketch_quantile(&s, 0.99);
    cr_expect_eq(q99, agg_sketch_key_lower(BIAS + 4949));
    cr_expect(fabs(q99 / pow(1.015625, 4949) - 1) < 1e-13); /* Go's pow */
    agg_sketch_free(&s);
}

Test(ddsketch, collapse_overflows_into_full_bins)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    /* two full bins at the bottom (keys 1338 and 1383), then 4095 more keys
     * above: 4097 bins. Collapsing the lowest one: missing = 65535 is added
     * to key 1383's 65535 -> 131070 -> one full bin plus a leftover bin of
     * 65535 at key 1383 placed before it: 4097 bins, total kept. */
    cr_assert_eq(agg_sketch_insert(&s, 1.0, 1.0 / 65535), 0);
    cr_assert_eq(agg_sketch_insert(&s, 2.0, 1.0 / 65535), 0);
    for (int j = 0; j < 4095; j++)
        cr_assert_eq(agg_sketch_insert(&s, pow(1.015625, 100 + j), 1), 0);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_expect_eq(s.nbins, 4097);
    cr_expect_eq(s.bins[0].k, 1383);
    cr_expect_eq(s.bins[0].n, 65535);
    cr_expect_eq(s.bins[1].k, 1383);
    cr_expect_eq(s.bins[1].n, 65535);
    cr_expect_eq(s.bins[2].k, BIAS + 100);
    cr_expect_eq(s.bins[2].n, 1);
    cr_expect_eq(bins_total(&s), 2 * 65535 + 4095);
    cr_expect_eq(s.cnt, 2 * 65535 + 4095);
    cr_expect(bins_sorted(&s));
    agg_sketch_free(&s);
}

Test(ddsketch, merge)
{
    struct agg_sketch a, b;
    agg_sketch_init(&a);
    agg_sketch_init(&b);
    double va[] = {1, 2, 3}, vb[] = {2, 4, -1};
    for (int i = 0; i < 3; i++) {
        cr_assert_eq(agg_sketch_insert(&a, va[i], 1), 0);
        cr_assert_eq(agg_sketch_insert(&b, vb[i], 1), 0);
    }
    /* src must be finished */
    cr_expect_eq(agg_sketch_merge(&a, &b), UV_EINVAL);
    cr_assert_eq(agg_sketch_finish(&b), 0);
    cr_assert_eq(agg_sketch_merge(&a, &b), 0);
    cr_expect_eq(a.nbuf, 0);
    cr_expect_eq(a.cnt, 6);
    cr_expect_eq(a.min, -1);
    cr_expect_eq(a.max, 4);
    cr_expect_eq(a.sum, 11);
    cr_expect_float_eq(a.avg, 11.0 / 6, 1e-12);
    /* -1338:1, 1338:1, 1383:2, 1409:1, 1427:1 */
    cr_assert_eq(a.nbins, 5);
    int16_t k[] = {-BIAS, BIAS, 1383, 1409, BIAS + 89};
    uint16_t n[] = {1, 1, 2, 1, 1};
    for (int i = 0; i < 5; i++) {
        cr_expect_eq(a.bins[i].k, k[i], "bin %d", i);
        cr_expect_eq(a.bins[i].n, n[i], "bin %d", i);
    }
    /* b is untouched; merging an empty sketch changes nothing */
    cr_expect_eq(b.cnt, 3);
    struct agg_sketch e;
    agg_sketch_init(&e);
    cr_assert_eq(agg_sketch_merge(&a, &e), 0);
    cr_expect_eq(a.cnt, 6);
    /* merging into an empty sketch copies the summary */
    cr_assert_eq(agg_sketch_merge(&e, &b), 0);
    cr_expect_eq(e.cnt, 3);
    cr_expect_eq(e.min, -1);
    cr_expect_eq(e.max, 4);
    cr_expect_eq(e.nbins, 3);
    agg_sketch_free(&a);
    agg_sketch_free(&b);
    agg_sketch_free(&e);
}

Test(ddsketch, merge_overflow_and_collapse)
{
    struct agg_sketch a, b;
    agg_sketch_init(&a);
    agg_sketch_init(&b);
    /* 40000 + 40000 at one key = 80000 -> [14465, 65535] */
    cr_assert_eq(agg_sketch_insert(&a, 5.0, 1.0 / 40000), 0);
    cr_assert_eq(agg_sketch_insert(&b, 5.0, 1.0 / 40000), 0);
    cr_assert_eq(agg_sketch_merge(&a, &b), 0);
    cr_assert_eq(a.nbins, 2);
    cr_expect_eq(a.bins[0].n, 14465);
    cr_expect_eq(a.bins[1].n, 65535);
    cr_expect_eq(a.cnt, 80000);
    agg_sketch_free(&a);
    agg_sketch_free(&b);

    /* 3000 + 3000 distinct keys (interleaved): 6000 bins collapse to 4096 */
    agg_sketch_init(&a);
    agg_sketch_init(&b);
    for (int j = 0; j < 3000; j++) {
        cr_assert_eq(agg_sketch_insert(&a, pow(1.015625, 2 * j), 1), 0);
        cr_assert_eq(agg_sketch_insert(&b, pow(1.015625, 2 * j + 1), 1), 0);
    }
    cr_assert_eq(agg_sketch_finish(&a), 0);
    cr_assert_eq(agg_sketch_finish(&b), 0);
    cr_assert_eq(agg_sketch_merge(&a, &b), 0);
    cr_expect_eq(a.nbins, 4096);
    cr_expect_eq(bins_total(&a), 6000);
    cr_expect_eq(a.cnt, 6000);
    /* lowest 1904 folded into the 1905th key, 1338 + 1904 */
    cr_expect_eq(a.bins[0].k, BIAS + 1904);
    cr_expect_eq(a.bins[0].n, 1905);
    cr_expect(bins_sorted(&a));
    agg_sketch_free(&a);
    agg_sketch_free(&b);
}

Test(ddsketch, count_cap)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    /* 1/1e-300 copies would be 1e300 bins' worth: refused, unchanged */
    cr_expect_eq(agg_sketch_insert(&s, 1.0, 1e-300), CMN_ECAP);
    cr_expect_eq(s.cnt, 0);
    cr_expect_eq(s.nbins, 0);
    /* up to MaxCount exactly is fine */
    cr_assert_eq(agg_sketch_insert(&s, 1.0, 1.0 / 65535), 0);
    for (int i = 0; i < 4095; i++)
        cr_assert_eq(agg_sketch_insert(&s, 1.0, 1.0 / 65535), 0);
    cr_expect_eq(s.cnt, AGG_SKETCH_MAX_COUNT);
    cr_expect_eq(agg_sketch_insert(&s, 1.0, 1), CMN_ECAP);
    cr_expect_eq(agg_sketch_insert(&s, 1.0, 0.5), CMN_ECAP);
    cr_expect_eq(s.cnt, AGG_SKETCH_MAX_COUNT);
    cr_expect_eq(s.nbins, 4096);
    struct agg_sketch t;
    agg_sketch_init(&t);
    cr_assert_eq(agg_sketch_insert(&t, 1.0, 1), 0);
    cr_assert_eq(agg_sketch_finish(&t), 0);
    cr_expect_eq(agg_sketch_merge(&s, &t), CMN_ECAP);
    cr_expect_eq(s.cnt, AGG_SKETCH_MAX_COUNT);
    agg_sketch_free(&s);
    agg_sketch_free(&t);
}

Test(ddsketch, quantile_edges)
{
    struct agg_sketch s;
    agg_sketch_init(&s);
    cr_expect(isnan(agg_sketch_quantile(&s, 0.5)));
    cr_assert_eq(agg_sketch_insert(&s, 3.0, 1), 0);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    /* lower(1409) = g^71 = 3.0106, clamped to max 3 */
    cr_expect_eq(agg_sketch_quantile(&s, 0.5), 3.0);
    for (int i = 0; i < 9; i++)
        cr_assert_eq(agg_sketch_insert(&s, (double)(i + 10), 1), 0);
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_expect_eq(agg_sketch_quantile(&s, 0), 3.0);
    cr_expect_eq(agg_sketch_quantile(&s, -1), 3.0);
    cr_expect_eq(agg_sketch_quantile(&s, 1), 18.0);
    cr_expect_eq(agg_sketch_quantile(&s, 7), 18.0);
    cr_expect(isnan(agg_sketch_quantile(&s, NAN)));
    /* 10 samples {3, 10..18}: rank RoundToEven(0.5 * 9) = 4 -> 13;
     * key(13) = 1338 + round(165.44) = 1503, lower = g^165 = 12.91 */
    cr_expect_eq(agg_sketch_key(13.0), 1503);
    cr_expect_float_eq(agg_sketch_quantile(&s, 0.5), pow(1.015625, 165), 1e-12);
    /* negative values: quantile(0.5) of {-3, -2, -1} is lower(-1383) = -2
     * (g^45 = 2.0085 mirrored and kept within [min, max]) */
    struct agg_sketch n;
    agg_sketch_init(&n);
    for (int i = 1; i <= 3; i++)
        cr_assert_eq(agg_sketch_insert(&n, -(double)i, 1), 0);
    cr_assert_eq(agg_sketch_finish(&n), 0);
    cr_expect_float_eq(agg_sketch_quantile(&n, 0.5), -pow(1.015625, 45), 1e-12);
    agg_sketch_free(&n);
    agg_sketch_free(&s);
}

/* ------------------------------------------------------------------------
 * Accuracy on 100 000 samples: xorshift64* PRNG with a fixed seed.
 */
struct rng {
    uint64_t s;
};

static uint64_t rng_next(struct rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 2685821657736338717ULL;
}

/* Uniform in (0, 1). */
static double rng_unit(struct rng *r)
{
    return ((double)(rng_next(r) >> 11) + 0.5) / 9007199254740992.0;
}

static double gen_uniform(struct rng *r)
{
    return 1 + 999 * rng_unit(r); /* [1, 1000) */
}

static double gen_exponential(struct rng *r)
{
    return -log(rng_unit(r)); /* mean 1 */
}

static double gen_lognormal(struct rng *r)
{
    /* Box-Muller normal, then exp */
    double u1 = rng_unit(r), u2 = rng_unit(r);
    return exp(sqrt(-2 * log(u1)) * cos(2 * M_PI * u2));
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void check_accuracy(double (*gen)(struct rng *), const char *name)
{
    enum { N = 100000 };
    double *v = malloc(N * sizeof(*v));
    cr_assert_not_null(v);
    struct rng r = {0x9E3779B97F4A7C15ULL};
    struct agg_sketch s;
    agg_sketch_init(&s);
    for (int i = 0; i < N; i++) {
        v[i] = gen(&r);
        cr_assert_eq(agg_sketch_insert(&s, v[i], 1), 0);
    }
    cr_assert_eq(agg_sketch_finish(&s), 0);
    cr_expect(s.nbins < AGG_SKETCH_BIN_LIMIT, "%s: no collapse", name);
    qsort(v, N, sizeof(*v), cmp_double);
    double qs[] = {0.5, 0.9, 0.99};
    for (int i = 0; i < 3; i++) {
        double exact = v[(size_t)rint(qs[i] * (N - 1))];
        double got = agg_sketch_quantile(&s, qs[i]);
        double rel = fabs(got - exact) / exact;
        cr_expect(rel <= 1.0 / 128, "%s p%g: got %.9g exact %.9g rel %.6f",
                  name, qs[i] * 100, got, exact, rel);
    }
    cr_expect_eq(s.cnt, N);
    cr_expect_eq(s.min, v[0]);
    cr_expect_eq(s.max, v[N - 1]);
    agg_sketch_free(&s);
    free(v);
}

Test(ddsketch, accuracy_uniform)
{
    check_accuracy(gen_uniform, "uniform");
}

Test(ddsketch, accuracy_exponential)
{
    check_accuracy(gen_exponential, "exponential");
}

Test(ddsketch, accuracy_lognormal)
{
    check_accuracy(gen_lognormal, "lognormal");
}

/* Every allocation failure leaves a usable sketch with nothing leaked. */
Test(ddsketch, oom_loop)
{
    size_t base = cmn_alloc_live_bytes();
    bool completed = false;
    for (uint64_t fail = 1; fail < 400 && !completed; fail++) {
        struct agg_sketch s, t;
        agg_sketch_init(&s);
        agg_sketch_init(&t);
        cmn_alloc_fail_after(fail);
        int err = 0;
        for (int i = 0; i < 120 && err == 0; i++)
            err = agg_sketch_insert(&s, 1.0 + i, i % 3 ? 1 : 0.25);
        if (err == 0)
            err = agg_sketch_finish(&s);
        if (err == 0)
            err = agg_sketch_insert(&t, 7.0, 1);
        if (err == 0)
            err = agg_sketch_finish(&t);
        if (err == 0)
            err = agg_sketch_merge(&s, &t);
        cmn_alloc_fail_reset();
        if (err == 0) {
            completed = true;
            cr_expect_eq(s.cnt, 80 + 40 * 4 + 1);
            cr_expect_eq(bins_total(&s), (uint64_t)s.cnt);
        } else {
            cr_expect_eq(err, UV_ENOMEM);
            /* still consistent: finishing now works and counts agree */
            cr_assert_eq(agg_sketch_finish(&s), 0);
            cr_expect_eq(bins_total(&s), (uint64_t)s.cnt);
        }
        agg_sketch_free(&s);
        agg_sketch_free(&t);
        cr_expect_eq(cmn_alloc_live_bytes(), base);
    }
    cr_expect(completed);
}

/* The fast path's table of Go's logs, written out in the source, is Go's
 * log recomputed now, bit for bit. */
Test(ddsketch, log_table_is_gos_log)
{
    cr_assert_eq(agg__sketch_tab_check(), -1);
}
