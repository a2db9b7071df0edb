/*
 * ddsketch.c - the Agent's DDSketch (spec/pipeline.md §2.3 "Distribution"
 * and §2.5), as DataDog/opentelemetry-mapping-go pkg/quantile implements it
 * for the Agent (agent.go, sparse.go, store.go, config.go), with the Agent's
 * 16-bit bin counts.
 *
 * Key invariant: after agg_sketch_finish, s->bins[0..nbins) is sorted by key
 * (non-decreasing; one key may span several bins when its count is above
 * 65535, the remainder bin first), and the bins' counts add up to s->cnt.
 * Until then, s->cnt also counts the nbuf keys still waiting in s->buf.
 *
 * Keys: with gamma = 1 + 2/128 and lnGamma = log1p(2/128),
 *
 *   key(v) = round_half_even(ln(v) / lnGamma) + bias      for v >= min
 *          = 0                                           for |v| < min
 *          = -key(-v)                                    for v < 0
 *
 * clamped to >= 1 and to the Inf key 32767 above 32766. emin =
 * floor(ln(1e-9) / lnGamma) = -1337, bias = 1 - emin = 1338 and min =
 * gamma^emin ~= 9.94e-10 (the Agent's norm.min: the power of gamma just
 * below 1e-9, which gets key 1). Because the key rounds, a key k covers
 * [gamma^(j-1/2), gamma^(j+1/2)) with j = k - bias, and its "lower bound"
 * gamma^j (the Agent's f64/binLow) is really the geometric centre of the
 * bin: returning it as a quantile is within sqrt(gamma) - 1 ~= 0.778% of
 * the true value, under the 1/128 = 0.781% accuracy the sketch promises.
 *
 * Caps (STYLE.md rule 9): the total count is capped at the Agent's MaxCount
 * (4096 x 65535), which bounds the bins at 2 x 4096 (+1): an insert or merge
 * that would pass it is refused with CMN_ECAP and changes nothing.
 */
#include "ddsketch.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------------
 * Go's math.Log and math.Pow, which the Agent calls for the keys
 * (logGamma) and the bins' values (powGamma). Written out here so that
 * the keys and values are Go's own bit for bit (glibc's pow is more
 * accurate than Go's, which squares: 32 722 of the 32 766 bin values
 * differed in their last bits; glibc's log gave the same keys in 2.1 M
 * samples), and so that the binary needs no libm: loading it cost every
 * serverless-init start 0.25-0.3 ms and 0.35 MiB of RSS. frexp and ldexp
 * are common's (cmn_fp.c). Plain IEEE double arithmetic in Go's order of
 * operations: the build must not contract a * b + c into an FMA (the
 * default x86-64 target has none).
 */

/* ln 2 split so that k * hi is exact for any exponent k (Go's Ln2Hi and
 * Ln2Lo) */
#define SK_LN2_HI 6.93147180369123816490e-01 /* 3fe62e42 fee00000 */
#define SK_LN2_LO 1.90821492927058770002e-10 /* 3dea39ef 35793c76 */

/* math.Log (log.go, the fdlibm method; log_amd64.s computes the same
 * operations in the same order), for finite, normal v > 0. */
static double sk_go_log(double v)
{
    const double l1 = 6.666666666666735130e-01, /* 3FE55555 55555593 */
        l2 = 3.999999999940941908e-01,          /* 3FD99999 9997FA04 */
        l3 = 2.857142874366239149e-01,          /* 3FD24924 94229359 */
        l4 = 2.222219843214978396e-01,          /* 3FCC71C5 1D8E78AF */
        l5 = 1.818357216161805012e-01,          /* 3FC74664 96CB03DE */
        l6 = 1.531383769920937332e-01,          /* 3FC39A09 D078C69F */
        l7 = 1.479819860511658591e-01;          /* 3FC2F112 DF3E5244 */
    /* off the hot path since sk_ratio_fast: the table at load, and keys
     * within SK_TIE_MARGIN of a half-integer */
    int ki;
    double f1 = cmn_frexp(v, &ki);
    if (f1 < 0.70710678118654752440) { /* Sqrt2 / 2 */
        f1 *= 2;
        ki--;
    }
    double f = f1 - 1, k = (double)ki;
    double s = f / (2 + f), s2 = s * s, s4 = s2 * s2;
    double t1 = s2 * (l1 + s4 * (l3 + s4 * (l5 + s4 * l7)));
    double t2 = s4 * (l2 + s4 * (l4 + s4 * l6));
    double r = t1 + t2, hfsq = 0.5 * f * f;
    return k * SK_LN2_HI - ((hfsq - (s * (hfsq + r) + k * SK_LN2_LO)) - f);
}

/* math.Pow(x, y) for finite x > 0, x != 1, and an integer y (pow.go:
 * successive squarings of frexp(x), the powers of two kept apart). */
static double sk_go_pow_int(double x, int y)
{
    double a1 = 1.0;
    int ae = 0, xe;
    double x1 = cmn_frexp(x, &xe);
    for (long i = y < 0 ? -(long)y : y; i != 0; i >>= 1) {
        if (xe < -(1 << 12) || (1 << 12) < xe) {
            ae += xe; /* under- or overflow: 0 or Inf */
            break;
        }
        if (i & 1) {
            a1 *= x1;
            ae += xe;
        }
        x1 *= x1;
        xe <<= 1;
        if (x1 < .5) {
            x1 += x1;
            xe--;
        }
    }
    if (y < 0) {
        a1 = 1 / a1;
        ae = -ae;
    }
    return cmn_ldexp(a1, ae);
}

/* ln(1.015625) = log1p(2/128); checked against log1p() by the tests. The
 * literal is the exact double log1p returns, so keys match Go bit for bit
 * (Go divides by the same value in logGamma). */
#define SK_LN_GAMMA 0.015504186535965254
#define SK_GAMMA 1.015625
#define SK_BIAS 1338 /* 1 - floor(ln(1e-9) / SK_LN_GAMMA) */
#define SK_MAX_BIN_N 65535u
/* gamma^emin = Go's math.Pow(1.015625, -1337): the smallest value with a
 * non-zero key (key 1), the Agent's norm.min (c.f64(1)); a literal so the
 * hot path needs no pow. Checked against agg_sketch_key_lower(1) and
 * pow() by the tests. */
#define SK_MIN_VALUE 9.9418540891213681e-10

/* One (key, count) run to merge into the bins. Counts are at most
 * AGG_SKETCH_MAX_COUNT, so a run's count plus one bin's fits 32 bits. */
struct sk_run {
    int16_t k;
    uint32_t n;
};

_Static_assert((uint64_t)AGG_SKETCH_MAX_COUNT + SK_MAX_BIN_N <= UINT32_MAX,
               "run counts must fit uint32");

void agg_sketch_init(struct agg_sketch *s)
{
    memset(s, 0, sizeof(*s));
}

void agg_sketch_free(struct agg_sketch *s)
{
    if (s == NULL)
        return;
    cmn_free(s->bins);
    cmn_free(s->buf);
    agg_sketch_init(s);
}

/* ------------------------------------------------------------------------
 * The key's fast path. Go's log costs two divisions; a key needs only the
 * half-integer nearest to ln(v) / lnGamma. sk_ratio_fast computes that
 * ratio without a division, from a table of ln(c) and 1/c for c = 1 +
 * i/128 and a degree-6 series of log1p(r), |r| <= 1/256: within 2e-11 of
 * ln(v) / SK_LN_GAMMA (truncation 2e-18 and the table's ulp in ln(v), the
 * rounding of the sum at |ln v| <= 745: 1.2e-13, times 1/lnGamma = 64.5,
 * then the product's own rounding at |ratio| <= 48 100: 5e-12). Go's ratio
 * (ln within 1 ulp, then a rounded division) is within 1.2e-11 of it too,
 * so both round to the same integer unless the ratio lies within 3.2e-11
 * of a half-integer. There (SK_TIE_MARGIN, far wider) the key is Go's own
 * division. Against Go 1.19: the same keys on 2.1 M log-spaced values and
 * on 517 392 values around every bin boundary, where glibc's log gave a
 * different key 211 times.
 */
#define SK_TAB 128
#define SK_TIE_MARGIN 1e-9
#define SK_INV_LN_GAMMA (1 / SK_LN_GAMMA)
/* sk_tab_log[i] = sk_go_log(1 + i / SK_TAB) and sk_tab_inv[i] = its
 * 1 / (1 + i / SK_TAB), written out bit for bit (hexadecimal floats). They
 * were computed by a constructor at load until 2026-12-02: 129 of Go's logs
 * on cold code before main, 0.05-0.08 ms of every serverless-init start on
 * the test VM, before the child was spawned. agg__sketch_tab_check (the
 * ddsketch tests) recomputes them. */
// clang-format off
static const double sk_tab_log[SK_TAB + 1] = {
    0x0p+0, 0x1.fe02a6b106789p-8, 0x1.fc0a8b0fc03e4p-7,
    0x1.7b91b07d5b11bp-6, 0x1.f829b0e7833p-6, 0x1.39e87b9febd6p-5,
    0x1.77458f632dcfcp-5, 0x1.b42dd711971bfp-5, 0x1.f0a30c01162a6p-5,
    0x1.16536eea37ae1p-4, 0x1.341d7961bd1d1p-4, 0x1.51b073f06183fp-4,
    0x1.6f0d28ae56b4cp-4, 0x1.8c345d6319b21p-4, 0x1.a926d3a4ad563p-4,
    0x1.c5e548f5bc743p-4, 0x1.e27076e2af2e6p-4, 0x1.fec9131dbeabbp-4,
    0x1.0d77e7cd08e59p-3, 0x1.1b72ad52f67ap-3, 0x1.29552f81ff523p-3,
    0x1.371fc201e8f74p-3, 0x1.44d2b6ccb7d1ep-3, 0x1.526e5e3a1b438p-3,
    0x1.5ff3070a793d4p-3, 0x1.6d60fe719d21cp-3, 0x1.7ab890210d909p-3,
    0x1.87fa06520c911p-3, 0x1.9525a9cf456b4p-3, 0x1.a23bc1fe2b563p-3,
    0x1.af3c94e80bff3p-3, 0x1.bc286742d8cd6p-3, 0x1.c8ff7c79a9a22p-3,
    0x1.d5c216b4fbb91p-3, 0x1.e27076e2af2e6p-3, 0x1.ef0adcbdc5936p-3,
    0x1.fb9186d5e3e2ap-3, 0x1.0402594b4d041p-2, 0x1.0a324e27390e3p-2,
    0x1.1058bf9ae4ad5p-2, 0x1.1675cababa60ep-2, 0x1.1c898c16999fbp-2,
    0x1.22941fbcf7966p-2, 0x1.2895a13de86a3p-2, 0x1.2e8e2bae11d31p-2,
    0x1.347dd9a987d55p-2, 0x1.3a64c556945eap-2, 0x1.404308686a7e4p-2,
    0x1.4618bc21c5ec2p-2, 0x1.4be5f957778a1p-2, 0x1.51aad872df82dp-2,
    0x1.5767717455a6cp-2, 0x1.5d1bdbf5809cap-2, 0x1.62c82f2b9c795p-2,
    0x1.686c81e9b14afp-2, 0x1.6e08eaa2ba1e4p-2, 0x1.739d7f6bbd007p-2,
    0x1.792a55fdd47a2p-2, 0x1.7eaf83b82afc3p-2, 0x1.842d1da1e8b17p-2,
    0x1.89a3386c1425bp-2, 0x1.8f11e873662c8p-2, 0x1.947941c2116fbp-2,
    0x1.99d958117e08bp-2, 0x1.9f323ecbf984cp-2, 0x1.a484090e5bb0ap-2,
    0x1.a9cec9a9a084ap-2, 0x1.af1293247786bp-2, 0x1.b44f77bcc8f62p-2,
    0x1.b9858969310fbp-2, 0x1.beb4d9da71b7cp-2, 0x1.c3dd7a7cdad4ep-2,
    0x1.c8ff7c79a9a22p-2, 0x1.ce1af0b85f3ecp-2, 0x1.d32fe7e00ebd6p-2,
    0x1.d83e7258a2f3ep-2, 0x1.dd46a04c1c4a1p-2, 0x1.e24881a7c6c26p-2,
    0x1.e744261d68788p-2, 0x1.ec399d2468ccp-2, 0x1.f128f5faf06ecp-2,
    0x1.f6123fa7028acp-2, 0x1.faf588f78f31fp-2, 0x1.ffd2e0857f498p-2,
    0x1.02552a5a5d0ffp-1, 0x1.04bdf9da926d2p-1, 0x1.0723e5c1cdf4p-1,
    0x1.0986f4f573521p-1, 0x1.0be72e4252a83p-1, 0x1.0e44985d1cc8cp-1,
    0x1.109f39e2d4c97p-1, 0x1.12f719593efbcp-1, 0x1.154c3d2f4d5eap-1,
    0x1.179eabbd899a1p-1, 0x1.19ee6b467c96fp-1, 0x1.1c3b81f713c25p-1,
    0x1.1e85f5e7040dp-1, 0x1.20cdcd192ab6ep-1, 0x1.23130d7bebf42p-1,
    0x1.2555bce98f7cbp-1, 0x1.2795e1289b11bp-1, 0x1.29d37fec2b08bp-1,
    0x1.2c0e9ed448e8cp-1, 0x1.2e47436e40268p-1, 0x1.307d7334f10bep-1,
    0x1.32b1339121d71p-1, 0x1.34e289d9ce1d3p-1, 0x1.37117b54747b6p-1,
    0x1.393e0d3562a1ap-1, 0x1.3b68449fffc23p-1, 0x1.3d9026a7156fbp-1,
    0x1.3fb5b84d16f42p-1, 0x1.41d8fe84672aep-1, 0x1.43f9fe2f9ce68p-1,
    0x1.4618bc21c5ec2p-1, 0x1.48353d1ea88dfp-1, 0x1.4a4f85db03ebbp-1,
    0x1.4c679afccee3ap-1, 0x1.4e7d811b75bb1p-1, 0x1.50913cc01686bp-1,
    0x1.52a2d265bc5abp-1, 0x1.54b2467999498p-1, 0x1.56bf9d5b3f399p-1,
    0x1.58cadb5cd7989p-1, 0x1.5ad404c359f2dp-1, 0x1.5cdb1dc6c1765p-1,
    0x1.5ee02a9241675p-1, 0x1.60e32f44788d9p-1, 0x1.62e42fefa39efp-1,
};
static const double sk_tab_inv[SK_TAB + 1] = {
    0x1p+0, 0x1.fc07f01fc07fp-1, 0x1.f81f81f81f82p-1,
    0x1.f44659e4a4271p-1, 0x1.f07c1f07c1f08p-1, 0x1.ecc07b301eccp-1,
    0x1.e9131abf0b767p-1, 0x1.e573ac901e574p-1, 0x1.e1e1e1e1e1e1ep-1,
    0x1.de5d6e3f8868ap-1, 0x1.dae6076b981dbp-1, 0x1.d77b654b82c34p-1,
    0x1.d41d41d41d41dp-1, 0x1.d0cb58f6ec074p-1, 0x1.cd85689039b0bp-1,
    0x1.ca4b3055ee191p-1, 0x1.c71c71c71c71cp-1, 0x1.c3f8f01c3f8fp-1,
    0x1.c0e070381c0ep-1, 0x1.bdd2b899406f7p-1, 0x1.bacf914c1badp-1,
    0x1.b7d6c3dda338bp-1, 0x1.b4e81b4e81b4fp-1, 0x1.b2036406c80d9p-1,
    0x1.af286bca1af28p-1, 0x1.ac5701ac5701bp-1, 0x1.a98ef606a63bep-1,
    0x1.a6d01a6d01a6dp-1, 0x1.a41a41a41a41ap-1, 0x1.a16d3f97a4b02p-1,
    0x1.9ec8e951033d9p-1, 0x1.9c2d14ee4a102p-1, 0x1.999999999999ap-1,
    0x1.970e4f80cb872p-1, 0x1.948b0fcd6e9ep-1, 0x1.920fb49d0e229p-1,
    0x1.8f9c18f9c18fap-1, 0x1.8d3018d3018d3p-1, 0x1.8acb90f6bf3aap-1,
    0x1.886e5f0abb04ap-1, 0x1.8618618618618p-1, 0x1.83c977ab2beddp-1,
    0x1.8181818181818p-1, 0x1.7f405fd017f4p-1, 0x1.7d05f417d05f4p-1,
    0x1.7ad2208e0ecc3p-1, 0x1.78a4c8178a4c8p-1, 0x1.767dce434a9b1p-1,
    0x1.745d1745d1746p-1, 0x1.724287f46debcp-1, 0x1.702e05c0b817p-1,
    0x1.6e1f76b4337c7p-1, 0x1.6c16c16c16c17p-1, 0x1.6a13cd153729p-1,
    0x1.6816816816817p-1, 0x1.661ec6a5122f9p-1, 0x1.642c8590b2164p-1,
    0x1.623fa7701624p-1, 0x1.6058160581606p-1, 0x1.5e75bb8d015e7p-1,
    0x1.5c9882b931057p-1, 0x1.5ac056b015acp-1, 0x1.58ed2308158edp-1,
    0x1.571ed3c506b3ap-1, 0x1.5555555555555p-1, 0x1.5390948f40febp-1,
    0x1.51d07eae2f815p-1, 0x1.5015015015015p-1, 0x1.4e5e0a72f0539p-1,
    0x1.4cab88725af6ep-1, 0x1.4afd6a052bf5bp-1, 0x1.49539e3b2d067p-1,
    0x1.47ae147ae147bp-1, 0x1.460cbc7f5cf9ap-1, 0x1.446f86562d9fbp-1,
    0x1.42d6625d51f87p-1, 0x1.4141414141414p-1, 0x1.3fb013fb013fbp-1,
    0x1.3e22cbce4a902p-1, 0x1.3c995a47babe7p-1, 0x1.3b13b13b13b14p-1,
    0x1.3991c2c187f63p-1, 0x1.3813813813814p-1, 0x1.3698df3de0748p-1,
    0x1.3521cfb2b78c1p-1, 0x1.33ae45b57bcb2p-1, 0x1.323e34a2b10bfp-1,
    0x1.30d190130d19p-1, 0x1.2f684bda12f68p-1, 0x1.2e025c04b8097p-1,
    0x1.2c9fb4d812cap-1, 0x1.2b404ad012b4p-1, 0x1.29e4129e4129ep-1,
    0x1.288b01288b013p-1, 0x1.27350b8812735p-1, 0x1.25e22708092f1p-1,
    0x1.2492492492492p-1, 0x1.23456789abcdfp-1, 0x1.21fb78121fb78p-1,
    0x1.20b470c67c0d9p-1, 0x1.1f7047dc11f7p-1, 0x1.1e2ef3b3fb874p-1,
    0x1.1cf06ada2811dp-1, 0x1.1bb4a4046ed29p-1, 0x1.1a7b9611a7b96p-1,
    0x1.19453808ca29cp-1, 0x1.1811811811812p-1, 0x1.16e0689427379p-1,
    0x1.15b1e5f75270dp-1, 0x1.1485f0e0acd3bp-1, 0x1.135c81135c811p-1,
    0x1.12358e75d3033p-1, 0x1.1111111111111p-1, 0x1.0fef010fef011p-1,
    0x1.0ecf56be69c9p-1, 0x1.0db20a88f4696p-1, 0x1.0c9714fbcda3bp-1,
    0x1.0b7e6ec259dc8p-1, 0x1.0a6810a6810a7p-1, 0x1.0953f39010954p-1,
    0x1.0842108421084p-1, 0x1.073260a47f7c6p-1, 0x1.0624dd2f1a9fcp-1,
    0x1.05197f7d73404p-1, 0x1.041041041041p-1, 0x1.03091b51f5e1ap-1,
    0x1.0204081020408p-1, 0x1.010101010101p-1, 0x1p-1,
};
// clang-format on

int agg__sketch_tab_check(void)
{
    for (int i = 0; i <= SK_TAB; i++) {
        double c = 1 + (double)i / SK_TAB;
        double l = i == 0 ? 0 : sk_go_log(c), v = 1 / c;
        if (memcmp(&l, &sk_tab_log[i], sizeof(l)) != 0 ||
            memcmp(&v, &sk_tab_inv[i], sizeof(v)) != 0)
            return i;
    }
    return -1;
}

/* ln(v) / SK_LN_GAMMA within 2e-11, for finite, normal v > 0. */
static inline double sk_ratio_fast(double v)
{
    uint64_t u;
    memcpy(&u, &v, sizeof(u));
    uint64_t frac = u & 0x000fffffffffffffu;
    int e = (int)(u >> 52) - 1023;
    int i = (int)((frac + ((uint64_t)1 << 44)) >> 45); /* nearest c: 0..128 */
    uint64_t mu = frac | 0x3ff0000000000000u; /* v = m 2^e, m in [1, 2) */
    double m;
    memcpy(&m, &mu, sizeof(m));
    double c = 1 + (double)i / SK_TAB;  /* exact */
    double r = (m - c) * sk_tab_inv[i]; /* m - c exact: c <= m <= 2c */
    double p =
        r * (1 + r * (-0.5 + r * (1.0 / 3 +
                                  r * (-0.25 + r * (0.2 + r * (-1.0 / 6))))));
    double de = (double)e;
    double l = de * SK_LN2_HI + (sk_tab_log[i] + (p + de * SK_LN2_LO));
    return l * SK_INV_LN_GAMMA;
}

int16_t agg__sketch_key_go(double v, bool fast)
{
    if (v < 0)
        return (int16_t)-agg__sketch_key_go(-v, fast);
    /* NaN compares false everywhere: it gets key 0 here, but inserts
     * reject it before asking for a key. */
    if (!(v >= SK_MIN_VALUE))
        return 0;
    if (isinf(v))
        return AGG_SKETCH_INF_KEY;
    /* ln(DBL_MAX) / lnGamma ~= 45780 + bias: no int overflow. rint
     * rounds half to even in the default rounding mode, as Go's
     * math.RoundToEven. */
    double t = fast ? sk_ratio_fast(v) : 0, r = cmn_rint(t);
    if (!fast || 0.5 - fabs(t - r) < SK_TIE_MARGIN)
        r = cmn_rint(sk_go_log(v) / SK_LN_GAMMA);
    if (r + SK_BIAS > AGG_SKETCH_MAX_KEY)
        return AGG_SKETCH_INF_KEY;
    int i = (int)r + SK_BIAS;
    if (i < 1)
        return 1; /* cannot happen for v >= min; the Agent guards it too */
    return (int16_t)i;
}

int16_t agg_sketch_key(double v)
{
    return agg__sketch_key_go(v, true);
}

double agg_sketch_key_lower(int16_t k)
{
    if (k <= -AGG_SKETCH_INF_KEY)
        return -INFINITY;
    if (k < 0)
        return -agg_sketch_key_lower((int16_t)-k);
    if (k == 0)
        return 0;
    if (k >= AGG_SKETCH_INF_KEY)
        return INFINITY;
    if (k == SK_BIAS)
        return 1; /* Go: Pow(x, 0) = 1 */
    return sk_go_pow_int(SK_GAMMA, k - SK_BIAS);
}

/* ------------------------------------------------------------------------
 * Summary (summary.go): Insert, InsertN and Merge, same arithmetic.
 */
static void sk_summary_insert(struct agg_sketch *s, double v)
{
    if (v > s->max || s->cnt == 0)
        s->max = v;
    if (v < s->min || s->cnt == 0)
        s->min = v;
    s->cnt++;
    s->sum += v;
    s->avg += (v - s->avg) / (double)s->cnt; /* incremental, as the Agent */
}

static void sk_summary_merge(struct agg_sketch *s, int64_t cnt, double min,
                             double max, double sum, double avg)
{
    if (cnt == 0)
        return;
    if (s->cnt == 0) {
        s->cnt = cnt;
        s->min = min;
        s->max = max;
        s->sum = sum;
        s->avg = avg;
        return;
    }
    if (max > s->max)
        s->max = max;
    if (min < s->min)
        s->min = min;
    s->cnt += cnt;
    s->sum += sum;
    s->avg = s->avg + (avg - s->avg) * (double)cnt / (double)s->cnt;
}

/* ------------------------------------------------------------------------
 * Bins (store.go, bin.go).
 */

/* appendSafe: one bin for n <= 65535, else the remainder n % 65535 (if
 * any) then n / 65535 full bins. Returns the new length; the caller sized
 * out for it. */
static uint32_t sk_append_safe(struct agg_sketch_bin *out, uint32_t len,
                               int16_t k, uint32_t n)
{
    if (n <= SK_MAX_BIN_N) {
        out[len].k = k;
        out[len].n = (uint16_t)n;
        return len + 1;
    }
    uint32_t r = n % SK_MAX_BIN_N;
    if (r != 0) {
        out[len].k = k;
        out[len].n = (uint16_t)r;
        len++;
    }
    for (uint32_t i = 0; i < n / SK_MAX_BIN_N; i++) {
        out[len].k = k;
        out[len].n = (uint16_t)SK_MAX_BIN_N;
        len++;
    }
    return len;
}

/* trimLeft, in place: when there are more than 4096 bins, the counts of
 * the lowest len - 4096 bins are added into the next bin up. While the
 * running sum of removed counts passes 65535, a full bin is kept at the
 * key being removed; what bin nRemove cannot take becomes one more bin at
 * its key, before it. Writes only land below the index being read (at most
 * one bin per removed bin after the first, plus one), so in place is safe.
 * Returns the new length (never more than len). */
static uint32_t sk_trim_left(struct agg_sketch_bin *a, uint32_t len)
{
    if (len <= AGG_SKETCH_BIN_LIMIT)
        return len;
    uint32_t nremove = len - AGG_SKETCH_BIN_LIMIT;
    uint32_t missing = 0, nover = 0;

    for (uint32_t i = 0; i < nremove; i++) {
        missing += a[i].n;
        if (missing > SK_MAX_BIN_N) {
            int16_t k = a[i].k;
            a[nover].k = k;
            a[nover].n = (uint16_t)SK_MAX_BIN_N;
            nover++;
            missing -= SK_MAX_BIN_N;
        }
    }
    uint32_t next = missing + a[nremove].n; /* incrSafe */
    if (next > SK_MAX_BIN_N) {
        a[nremove].n = (uint16_t)SK_MAX_BIN_N;
        a[nover].k = a[nremove].k;
        a[nover].n = (uint16_t)(next - SK_MAX_BIN_N);
        nover++;
    } else {
        a[nremove].n = (uint16_t)next;
    }
    memmove(a + nover, a + nremove, (size_t)(len - nremove) * sizeof(*a));
    return AGG_SKETCH_BIN_LIMIT + nover;
}

/* Merges sorted runs into the sorted bins (insert, insertCounts and merge
 * of store.go are this one walk), then collapses. Allocates the result
 * before touching the sketch, so on UV_ENOMEM nothing has changed. */
static int sk_merge_runs(struct agg_sketch *s, const struct sk_run *runs,
                         uint32_t nruns)
{
    if (nruns == 0)
        return 0;
    /* Upper bound: every bin once, and per run n / 65535 + 2 (a run that
     * meets a bin appends b.n + r.n). Bounded by the count cap. */
    uint64_t bound = s->nbins;
    for (uint32_t i = 0; i < nruns; i++)
        bound += runs[i].n / SK_MAX_BIN_N + 2;
    if (bound > UINT32_MAX)
        return CMN_ETOOBIG; /* unreachable under AGG_SKETCH_MAX_COUNT */
    struct agg_sketch_bin *out = cmn_reallocarray(NULL, bound, sizeof(*out));
    if (out == NULL)
        return UV_ENOMEM;

    uint32_t len = 0, si = 0, ri = 0;
    while (si < s->nbins && ri < nruns) {
        const struct agg_sketch_bin *b = &s->bins[si];
        const struct sk_run *r = &runs[ri];
        if (b->k < r->k) {
            out[len++] = *b;
            si++;
        } else if (b->k > r->k) {
            len = sk_append_safe(out, len, r->k, r->n);
            ri++;
        } else {
            len = sk_append_safe(out, len, b->k, (uint32_t)b->n + r->n);
            si++;
            ri++;
        }
    }
    for (; si < s->nbins; si++)
        out[len++] = s->bins[si];
    for (; ri < nruns; ri++)
        len = sk_append_safe(out, len, runs[ri].k, runs[ri].n);

    len = sk_trim_left(out, len);
    cmn_free(s->bins);
    s->bins = out;
    s->nbins = len;
    s->cap = (uint32_t)bound;
    return 0;
}

/* Sorts up to AGG_SKETCH_BUF_KEYS keys: an LSD radix sort on the keys
 * biased to uint16 (two byte passes), insertion sort for short buffers.
 * Replaces qsort, which took half the cost of a rate-1 insert. */
static void sk_sort_keys(int16_t *k, uint32_t n)
{
    if (n < 32) {
        for (uint32_t i = 1; i < n; i++) {
            int16_t x = k[i];
            uint32_t j = i;
            while (j > 0 && k[j - 1] > x) {
                k[j] = k[j - 1];
                j--;
            }
            k[j] = x;
        }
        return;
    }
    uint16_t tmp[AGG_SKETCH_BUF_KEYS];
    uint32_t lo[257] = {0}, hi[257] = {0};
    for (uint32_t i = 0; i < n; i++) {
        uint16_t u = (uint16_t)((uint16_t)k[i] ^ 0x8000u); /* order kept */
        lo[(u & 0xff) + 1]++;
        hi[(u >> 8) + 1]++;
    }
    for (int b = 0; b < 256; b++) {
        lo[b + 1] += lo[b];
        hi[b + 1] += hi[b];
    }
    for (uint32_t i = 0; i < n; i++) {
        uint16_t u = (uint16_t)((uint16_t)k[i] ^ 0x8000u);
        tmp[lo[u & 0xff]++] = u;
    }
    for (uint32_t i = 0; i < n; i++) {
        uint16_t u = tmp[i];
        k[hi[u >> 8]++] = (int16_t)(uint16_t)(u ^ 0x8000u);
    }
}

/* Moves the buffered keys into the bins, keeping the buffer. */
static int sk_flush(struct agg_sketch *s)
{
    if (s->nbuf == 0)
        return 0;
    struct sk_run runs[AGG_SKETCH_BUF_KEYS];
    uint32_t nruns = 0;

    sk_sort_keys(s->buf, s->nbuf);
    for (uint32_t i = 0; i < s->nbuf;) {
        uint32_t j = i + 1;
        while (j < s->nbuf && s->buf[j] == s->buf[i])
            j++;
        runs[nruns].k = s->buf[i];
        runs[nruns].n = j - i;
        nruns++;
        i = j;
    }
    int err = sk_merge_runs(s, runs, nruns);
    if (err != 0)
        return err; /* buffer kept (sorted) for a later retry */
    s->nbuf = 0;
    return 0;
}

/* Flushes and releases the buffer: a finished sketch is normally read and
 * dropped, and a live context should not hold 1 KiB of idle buffer. */
int agg_sketch_finish(struct agg_sketch *s)
{
    int err = sk_flush(s);
    if (err != 0)
        return err;
    cmn_free(s->buf);
    s->buf = NULL;
    s->bufcap = 0;
    return 0;
}

int agg_sketch_insert(struct agg_sketch *s, double v, double rate)
{
    if (!isfinite(v))
        return CMN_EPARSE;
    if (!(rate > 0 && rate <= 1)) /* also NaN */
        rate = 1;
    int16_t k = agg_sketch_key(v);
    int err;

    if (rate == 1) {
        if (s->cnt >= AGG_SKETCH_MAX_COUNT)
            return CMN_ECAP;
        /* The Agent flushes right after the 512th key; flushing before
         * the 513th gives the same bins and lets a failed flush leave the
         * sketch as it was. The buffer grows 8, 16, ... 512 keys so that a
         * context with a few samples holds a few bytes. */
        if (s->nbuf == AGG_SKETCH_BUF_KEYS) {
            err = sk_flush(s);
            if (err != 0)
                return err;
        }
        if (s->nbuf == s->bufcap) {
            uint32_t ncap = s->bufcap ? 2 * s->bufcap : 8;
            if (ncap > AGG_SKETCH_BUF_KEYS)
                ncap = AGG_SKETCH_BUF_KEYS;
            int16_t *nb = cmn_reallocarray(s->buf, ncap, sizeof(*nb));
            if (nb == NULL)
                return UV_ENOMEM;
            s->buf = nb;
            s->bufcap = ncap;
        }
        s->buf[s->nbuf++] = k;
        sk_summary_insert(s, v);
        return 0;
    }

    /* rate < 1: the summary gets InsertN(v, 1/rate) (Sum += v/rate, Cnt +=
     * int64(1/rate)) and the bins get uint(1/rate) copies, so cnt stays
     * the bins' total. The Agent also flushes the rate-1 buffer first. */
    double nf = 1 / rate;
    if (nf > (double)(AGG_SKETCH_MAX_COUNT - s->cnt))
        return CMN_ECAP;
    struct sk_run run = {k, (uint32_t)nf};
    err = sk_flush(s);
    if (err != 0)
        return err;
    err = sk_merge_runs(s, &run, 1);
    if (err != 0)
        return err;
    sk_summary_merge(s, (int64_t)nf, v, v, nf * v, v);
    return 0;
}

int agg_sketch_merge(struct agg_sketch *dst, const struct agg_sketch *src)
{
    if (src->nbuf != 0)
        return UV_EINVAL; /* src not finished: its buffered keys would be
                             lost */
    if (src->cnt == 0)
        return 0;
    if (src->cnt > AGG_SKETCH_MAX_COUNT - dst->cnt)
        return CMN_ECAP;
    int err = sk_flush(dst);
    if (err != 0)
        return err;
    if (src->nbins > 0) {
        struct sk_run *runs = cmn_reallocarray(NULL, src->nbins, sizeof(*runs));
        if (runs == NULL)
            return UV_ENOMEM;
        for (uint32_t i = 0; i < src->nbins; i++) {
            runs[i].k = src->bins[i].k;
            runs[i].n = src->bins[i].n;
        }
        err = sk_merge_runs(dst, runs, src->nbins);
        cmn_free(runs);
        if (err != 0)
            return err;
    }
    sk_summary_merge(dst, src->cnt, src->min, src->max, src->sum, src->avg);
    return 0;
}

double agg_sketch_quantile(const struct agg_sketch *s, double q)
{
    if (s->cnt == 0 || s->nbins == 0 || isnan(q))
        return NAN;
    if (q <= 0)
        return s->min;
    if (q >= 1)
        return s->max;

    /* sparse.go rank(): RoundToEven(q * (count - 1)); the first bin whose
     * running count passes it holds the wanted sample. */
    double want = cmn_rint(q * (double)(s->cnt - 1));
    double n = 0, v = s->max;
    for (uint32_t i = 0; i < s->nbins; i++) {
        n += s->bins[i].n;
        if (n > want) {
            v = agg_sketch_key_lower(s->bins[i].k);
            break;
        }
    }
    if (v < s->min)
        v = s->min;
    if (v > s->max)
        v = s->max;
    return v;
}
