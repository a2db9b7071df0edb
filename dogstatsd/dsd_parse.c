/*
 * dsd_parse.c - the DogStatsD metric line parser (spec/pipeline.md §1.3),
 * the message-type sniffer (§1.2) and the names of the parse errors.
 *
 * This is the hot path of the whole pipeline: every metric line of every
 * packet goes through dsd_parse_metric. It is a pure function over a
 * (ptr, len) slice: no NUL needed, no write to the input, no allocation,
 * and each byte of the line is visited a bounded number of times (a
 * 16-byte-wide scan for the separators: one pass giving bit masks of every
 * ':' and '|' for a line of 16 to 64 bytes, forward searches otherwise;
 * one pass of the number parser per value). The steps run in the Agent's
 * order so that a line with several faults reports the same reason as the
 * Agent, whichever scan found the separators.
 */
#include "dogstatsd.h"

#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

const char *dsd_err_str(enum dsd_err e)
{
    switch (e) {
    case DSD_OK:
        return "ok";
    case DSD_ERR_NO_PIPE:
        return "invalid dogstatsd message format";
    case DSD_ERR_NO_COLON:
        return "invalid name and value";
    case DSD_ERR_EMPTY_NAME:
        return "invalid metric name";
    case DSD_ERR_EMPTY_VALUE:
        return "invalid metric value";
    case DSD_ERR_BAD_TYPE:
        return "invalid metric type";
    case DSD_ERR_BAD_VALUE:
        return "could not parse dogstatsd metric value";
    case DSD_ERR_TOO_MANY_VALUES:
        return "too many values in one line";
    case DSD_ERR_BAD_RATE:
        return "could not parse dogstatsd sample rate";
    case DSD_ERR_BAD_TIMESTAMP:
        return "could not parse dogstatsd timestamp";
    case DSD_ERR_BAD_EVENT:
        return "invalid event";
    case DSD_ERR_BAD_SERVICE_CHECK:
        return "invalid service check";
    case DSD_ERR_NAME_TOO_LONG:
        return "metric name too long for the namespace buffer";
    case DSD_ERR_MAX:
        break;
    }
    return "unknown error";
}

enum dsd_msg_type dsd_msg_type(const char *line, size_t len)
{
    if (len >= 3 && line[0] == '_') {
        if (line[1] == 'e' && line[2] == '{')
            return DSD_MSG_EVENT;
        if (line[1] == 's' && line[2] == 'c')
            return DSD_MSG_SERVICE_CHECK;
    }
    return DSD_MSG_METRIC;
}

/* Parses the value text of a non-set line into vals.
 *
 *     1.5            one value (no ':')
 *     1.5:2::3:      several; empty pieces skipped
 *     ^   ^ ^^ ^
 *     pieces split on ':'
 *
 * At least one value must result. */
static enum dsd_err parse_values(const char *p, size_t len, double *vals,
                                 size_t max_vals, size_t *nvals)
{
    const char *c = memchr(p, ':', len);
    if (c == NULL) {
        if (max_vals == 0)
            return DSD_ERR_TOO_MANY_VALUES;
        if (cmn_parse_f64(cmn_slice(p, len), &vals[0]) != 0)
            return DSD_ERR_BAD_VALUE;
        *nvals = 1;
        return DSD_OK;
    }
    const char *end = p + len;
    size_t n = 0;
    while (p < end) {
        if (c == NULL)
            c = end;
        if (c > p) {
            if (n == max_vals)
                return DSD_ERR_TOO_MANY_VALUES;
            if (cmn_parse_f64(cmn_slice(p, (size_t)(c - p)), &vals[n]) != 0)
                return DSD_ERR_BAD_VALUE;
            n++;
        }
        p = c + 1;
        c = p < end ? memchr(p, ':', (size_t)(end - p)) : NULL;
    }
    if (n == 0)
        return DSD_ERR_EMPTY_VALUE; /* "no value found" */
    *nvals = n;
    return DSD_OK;
}

/* First byte in [p, end) equal to a or b, or end. Lines are short, so a
 * libc memchr call per separator costs more than the bytes it skips; this
 * compares 16 bytes at a time while at least 16 remain (never reading past
 * end), then finishes byte by byte. */
static inline const char *find2(const char *p, const char *end, char a, char b)
{
#ifdef __SSE2__
    const __m128i va = _mm_set1_epi8(a), vb = _mm_set1_epi8(b);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        int m = _mm_movemask_epi8(
            _mm_or_si128(_mm_cmpeq_epi8(x, va), _mm_cmpeq_epi8(x, vb)));
        if (m != 0)
            return p + __builtin_ctz((unsigned)m);
        p += 16;
    }
#endif
    while (p < end && *p != a && *p != b)
        p++;
    return p;
}

static bool type_of(const char *t, size_t len, enum agg_mtype *out)
{
    if (len == 1) {
        switch (t[0]) {
        case 'g':
            *out = AGG_GAUGE;
            return true;
        case 'c':
            *out = AGG_COUNTER;
            return true;
        case 'h':
            *out = AGG_HISTOGRAM;
            return true;
        case 'd':
            *out = AGG_DISTRIBUTION;
            return true;
        case 's':
            *out = AGG_SET;
            return true;
        default:
            return false;
        }
    }
    if (len == 2 && t[0] == 'm' && t[1] == 's') {
        *out = AGG_TIMING;
        return true;
    }
    return false;
}

static bool has_prefix(const char *f, size_t len, const char *pfx, size_t n)
{
    return len >= n && memcmp(f, pfx, n) == 0;
}

/* One optional field (the bytes between two '|'), matched by prefix in the
 * Agent's order; unknown and empty fields are ignored, the last of a kind
 * wins. */
static enum dsd_err parse_field(const char *f, size_t len,
                                const struct dsd_parse_opts *o,
                                struct dsd_metric *out)
{
    if (len == 0)
        return DSD_OK;
    switch (f[0]) {
    case '#':
        out->m.tags = cmn_slice(f + 1, len - 1);
        return DSD_OK;
    case '@':
        /* A rate of 0 or below has no meaning (1/rate is the weight of a
         * sample: infinite or negative), so unlike the Agent, which turns
         * @0 into +Inf counts, it is refused here (docs/limits.md). A rate
         * above 1 is kept (the Agent's histograms give it weight 0); tiny
         * positive rates are clamped by the aggregator. */
        if (cmn_parse_f64(cmn_slice(f + 1, len - 1), &out->m.rate) != 0 ||
            !(out->m.rate > 0))
            return DSD_ERR_BAD_RATE;
        return DSD_OK;
    case 'T':
        if (o->no_aggregation_pipeline) {
            int64_t ts;
            if (cmn_parse_i64(cmn_slice(f + 1, len - 1), &ts) != 0 || ts < 1)
                return DSD_ERR_BAD_TIMESTAMP;
            out->m.timestamp = ts;
        }
        return DSD_OK;
    default:
        break;
    }
    if (!o->origin_detection_client)
        return DSD_OK;
    if (has_prefix(f, len, "c:", 2))
        out->local_data = cmn_slice(f + 2, len - 2);
    else if (has_prefix(f, len, "e:", 2))
        out->external_data = cmn_slice(f + 2, len - 2);
    else if (has_prefix(f, len, "card:", 5))
        out->cardinality = cmn_slice(f + 5, len - 5);
    return DSD_OK;
}

/* Plain digits, at most 15 (below 2^53, so exact in a double): the value
 * cmn_parse_f64 gives them, without the call. False means "ask
 * cmn_parse_f64", not "invalid". */
static inline bool plain_uint(const char *p, size_t len, double *out)
{
    if (len == 0 || len > 15)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d > 9)
            return false;
        v = v * 10 + d;
    }
    *out = (double)v;
    return true;
}

/* Everything after the separators are found: name and value checks, the
 * type (tbeg = bar + 1 to tend, the next '|' or the end, or where the scan
 * of at most 3 bytes stopped), the values, and the defaults of out. */
static inline enum dsd_err parse_head(const char *line, const char *end,
                                      const char *colon, const char *bar,
                                      bool multi, const char *tend,
                                      struct dsd_metric *out, double *vals,
                                      size_t max_vals)
{
    if (colon == line)
        return DSD_ERR_EMPTY_NAME;
    const char *vbeg = colon + 1;
    if (vbeg == bar)
        return DSD_ERR_EMPTY_VALUE;

    /* the type: one or two bytes, then '|' or the end */
    const char *tbeg = bar + 1;
    if (tend < end && *tend != '|')
        return DSD_ERR_BAD_TYPE;
    enum agg_mtype type;
    if (!type_of(tbeg, (size_t)(tend - tbeg), &type))
        return DSD_ERR_BAD_TYPE;

    out->m.name = cmn_slice(line, (size_t)(colon - line));
    out->m.tags = cmn_slice(NULL, 0);
    out->m.type = type;
    out->m.rate = 1.0;
    out->m.timestamp = 0;
    out->local_data = cmn_slice(NULL, 0);
    out->external_data = cmn_slice(NULL, 0);
    out->cardinality = cmn_slice(NULL, 0);
    size_t vlen = (size_t)(bar - vbeg);
    if (type == AGG_SET) {
        out->m.set_member = cmn_slice(vbeg, vlen);
        out->m.values = NULL;
        out->m.nvalues = 0;
    } else {
        size_t n = 1;
        if (!multi && max_vals > 0) { /* the common case: one value */
            if (!plain_uint(vbeg, vlen, &vals[0]) &&
                cmn_parse_f64(cmn_slice(vbeg, vlen), &vals[0]) != 0)
                return DSD_ERR_BAD_VALUE;
        } else {
            enum dsd_err e = parse_values(vbeg, vlen, vals, max_vals, &n);
            if (e != DSD_OK)
                return e;
        }
        out->m.set_member = cmn_slice(NULL, 0);
        out->m.values = vals;
        out->m.nvalues = n;
    }
    return DSD_OK;
}

#ifdef __SSE2__
#define DSD_SHORT_MIN 16
#define DSD_SHORT_MAX 64

/* A line of 16 to 64 bytes in one pass: bit i of colons / bars is set when
 * line[i] is ':' / '|'. Every 16-byte load lies inside the line (the last
 * one ends at its end, overlapping the one before), and the separators are
 * then taken from the masks in the same order as the general path. */
static inline __attribute__((always_inline)) enum dsd_err
parse_short(const char *line, size_t len, const struct dsd_parse_opts *o,
            struct dsd_metric *out, double *vals, size_t max_vals)
{
    const __m128i vc = _mm_set1_epi8(':'), vb = _mm_set1_epi8('|');
    /* the first 16 bytes apart: most lines end within them or the next */
    __m128i x = _mm_loadu_si128((const __m128i *)(const void *)line);
    uint64_t colons =
        (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vc));
    uint64_t bars =
        (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vb));
    for (size_t off = 16; off < len; off += 16) {
        size_t at = off + 16 > len ? len - 16 : off;
        x = _mm_loadu_si128((const __m128i *)(const void *)(line + at));
        colons |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vc))
                  << at;
        bars |= (uint64_t)(unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(x, vb))
                << at;
    }
    if (bars == 0)
        return DSD_ERR_NO_PIPE;
    unsigned fb = (unsigned)__builtin_ctzll(bars);
    uint64_t before = colons & ((1ull << fb) - 1); /* ':' in the first field */
    if (before == 0)
        return DSD_ERR_NO_COLON; /* no ':' before the first '|' */
    unsigned fc = (unsigned)__builtin_ctzll(before);
    bool multi = (before & (before - 1)) != 0; /* a ':' in the value text */
    uint64_t rest = bars & (bars - 1);         /* the '|' after the type on */
    const char *end = line + len;
    const char *tend = rest ? line + __builtin_ctzll(rest) : end;
    enum dsd_err e = parse_head(line, end, line + fc, line + fb, multi, tend,
                                out, vals, max_vals);
    if (e != DSD_OK)
        return e;
    while (rest != 0) {
        unsigned q = (unsigned)__builtin_ctzll(rest);
        rest &= rest - 1;
        size_t fe = rest ? (size_t)__builtin_ctzll(rest) : len;
        e = parse_field(line + q + 1, fe - q - 1, o, out);
        if (e != DSD_OK)
            return e;
    }
    return DSD_OK;
}
#endif

/*
 * A metric line, fields separated by '|':
 *
 *     page.views:1:2|c|@0.5|#env:prod,web|T1657100430|c:ci-abc
 *     ^         ^   ^ ^    ^              ^           ^
 *     name      |   | type optional fields in any order, by prefix
 *               |   first '|': end of the name:values field
 *               first ':' splits name from the value text
 *
 * Order of checks: a '|' somewhere; a ':' in the first field; non-empty
 * name and value text; the type; the values; then each optional field.
 * This is the general path: forward searches, any length. Out of line so
 * that the short path's callers save no registers for it.
 */
static __attribute__((noinline)) enum dsd_err
parse_long(const char *line, size_t len, const struct dsd_parse_opts *o,
           struct dsd_metric *out, double *vals, size_t max_vals)
{
    const char *end = line + len;
    /* One pass over name and value for the separators. */
    const char *p = find2(line, end, ':', '|');
    if (p == end)
        return DSD_ERR_NO_PIPE;
    if (*p == '|')
        return DSD_ERR_NO_COLON; /* no ':' before the first '|' */
    const char *colon = p;
    p = find2(p + 1, end, ':', '|');
    bool multi = p < end && *p == ':'; /* a ':' in the value text */
    if (multi)
        p = find2(p + 1, end, '|', '|');
    if (p == end)
        return DSD_ERR_NO_PIPE;
    const char *bar = p;

    /* the type ends at '|' or the end; at most 3 bytes are looked at */
    const char *tbeg = bar + 1;
    const char *tend = tbeg;
    while (tend < end && *tend != '|' && tend - tbeg < 3)
        tend++;
    enum dsd_err e =
        parse_head(line, end, colon, bar, multi, tend, out, vals, max_vals);
    if (e != DSD_OK)
        return e;

    p = tend;
    while (p < end) {
        const char *f = p + 1;
        const char *fe = find2(f, end, '|', '|');
        e = parse_field(f, (size_t)(fe - f), o, out);
        if (e != DSD_OK)
            return e;
        p = fe;
    }
    return DSD_OK;
}

__attribute__((always_inline)) inline enum dsd_err
dsd_parse_metric(const char *line, size_t len,
                 const struct dsd_parse_opts *opts, struct dsd_metric *out,
                 double *vals, size_t max_vals)
{
    static const struct dsd_parse_opts defaults = {true, false};
    const struct dsd_parse_opts *o = opts ? opts : &defaults;
    if (len == 0)
        return DSD_ERR_NO_PIPE;
#ifdef __SSE2__
    if (len >= DSD_SHORT_MIN && len <= DSD_SHORT_MAX)
        return parse_short(line, len, o, out, vals, max_vals);
#endif
    return parse_long(line, len, o, out, vals, max_vals);
}
