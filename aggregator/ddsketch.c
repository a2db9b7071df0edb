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
static double sk_tab_log[SK_TAB + 1], sk_tab_inv[SK_TAB + 1];

/* At load: 129 of Go's logs (a few microseconds), no lock on the path. */
__attribute__((constructor)) static void sk_tab_init(void)
{
    for (int i = 0; i <= SK_TAB; i++) {
        double c = 1 + (double)i / SK_TAB;
        sk_tab_log[i] = i == 0 ? 0 : sk_go_log(c);
        sk_tab_inv[i] = 1 / c;
    }
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
    /* ln(DBL_MAX) / lnGamma ~= 45780 + bias: no int overflow. rint()
     * rounds half to even in the default rounding mode, as Go's
     * math.RoundToEven. */
    double t = fast ? sk_ratio_fast(v) : 0, r = rint(t);
    if (!fast || 0.5 - fabs(t - r) < SK_TIE_MARGIN)
        r = rint(sk_go_log(v) / SK_LN_GAMMA);
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
    double want = rint(q * (double)(s->cnt - 1));
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
