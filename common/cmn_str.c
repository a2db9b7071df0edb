/*
 * cmn_str.c - byte slices and bounded number parsing.
 *
 * The only file allowed to call strtod/strtol (STYLE.md rule 8). Every
 * parser takes a (ptr, len) slice, needs no NUL, never writes to its input
 * and accepts the whole slice or nothing.
 *
 * Float grammar accepted (Go strconv.ParseFloat, 64 bits):
 *
 *     [+-] digits [. digits] [(e|E) [+-] digits]
 *     [+-] . digits [(e|E) [+-] digits]
 *     [+-] 0x hexdigits [. hexdigits] p [+-] digits
 *     [+-] (inf | infinity | nan)           any case
 *
 * Plain decimals with at most 19 significant digits, a mantissa below 2^53
 * and at most 22 fraction digits take the fast path: one exact division by
 * a power of ten, which IEEE 754 rounds correctly. Everything else is copied
 * into a 64-byte stack buffer and handed to strtod.
 */
#include "common.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define F64_MAX_TEXT 64

struct cmn_slice cmn_slice_cstr(const char *s)
{
    return cmn_slice(s, s ? strlen(s) : 0);
}

bool cmn_slice_eq(struct cmn_slice a, struct cmn_slice b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.p, b.p, a.len) == 0);
}

bool cmn_slice_eq_cstr(struct cmn_slice a, const char *s)
{
    return cmn_slice_eq(a, cmn_slice_cstr(s));
}

bool cmn_slice_has_prefix(struct cmn_slice a, const char *prefix)
{
    size_t n = strlen(prefix);
    return a.len >= n && memcmp(a.p, prefix, n) == 0;
}

static const double pow10_tab[] = {
    1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
};

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* The fast path. Returns true and sets *out when the text is a plain
 * decimal it can convert exactly; false means "use the slow path", not
 * "invalid". */
static bool f64_fast(const char *p, size_t len, double *out)
{
    size_t i = 0;
    bool neg = false;
    if (i < len && (p[i] == '+' || p[i] == '-'))
        neg = p[i++] == '-';
    uint64_t mant = 0;
    unsigned sig = 0, frac = 0, ndig = 0;
    for (; i < len && is_digit(p[i]); i++, ndig++) {
        if (mant == 0 && p[i] == '0')
            continue;
        if (++sig > 19)
            return false;
        mant = mant * 10 + (uint64_t)(p[i] - '0');
    }
    if (i < len && p[i] == '.') {
        i++;
        for (; i < len && is_digit(p[i]); i++, ndig++, frac++) {
            if (mant == 0 && p[i] == '0')
                continue;
            if (++sig > 19)
                return false;
            mant = mant * 10 + (uint64_t)(p[i] - '0');
        }
    }
    if (i != len || ndig == 0 || frac > 22 || mant > (1ull << 53))
        return false;
    double v = (double)mant;
    if (frac)
        v /= pow10_tab[frac];
    *out = neg ? -v : v;
    return true;
}

/* The fast path's fast path: at most 15 bytes, all digits but for at most
 * one '.', no sign. Then there are at most 15 significant digits, so the
 * mantissa is below 10^15 < 2^53 and at most 14 fraction digits: exactly
 * the value f64_fast computes (same mantissa, same one division), in one
 * tight loop. Returns false to defer to f64_fast. */
static inline bool f64_short(const char *p, size_t len, double *out)
{
    if (len > 15)
        return false;
    uint64_t mant = 0;
    size_t dot = len;
    for (size_t i = 0; i < len; i++) {
        unsigned d = (unsigned)(unsigned char)p[i] - '0';
        if (d < 10) {
            mant = mant * 10 + d;
        } else if (p[i] == '.' && dot == len) {
            dot = i;
        } else {
            return false;
        }
    }
    if (dot == len) { /* an integer, at least one digit (len > 0) */
        *out = (double)mant;
        return true;
    }
    if (len == 1) /* "." alone */
        return false;
    double v = (double)mant;
    size_t frac = len - dot - 1;
    if (frac)
        v /= pow10_tab[frac];
    *out = v;
    return true;
}

/* Grammar check for what we hand to strtod, so strtod's extensions (leading
 * spaces, "nan(...)", hex without exponent) are refused as Go refuses them. */
static bool f64_grammar_ok(const char *p, size_t len)
{
    size_t i = 0;
    if (i < len && (p[i] == '+' || p[i] == '-'))
        i++;
    const char *r = p + i;
    size_t rl = len - i;
    if ((rl == 3 &&
         (strncasecmp(r, "inf", 3) == 0 || strncasecmp(r, "nan", 3) == 0)) ||
        (rl == 8 && strncasecmp(r, "infinity", 8) == 0))
        return true;
    if (rl >= 2 && r[0] == '0' && (r[1] == 'x' || r[1] == 'X')) {
        size_t j = 2, nd = 0;
        for (; j < rl && (isxdigit((unsigned char)r[j]) || r[j] == '.'); j++)
            nd += r[j] != '.';
        if (nd == 0 || j >= rl || (r[j] != 'p' && r[j] != 'P'))
            return false;
        j++;
        if (j < rl && (r[j] == '+' || r[j] == '-'))
            j++;
        if (j >= rl)
            return false;
        for (; j < rl; j++)
            if (!is_digit(r[j]))
                return false;
        return true;
    }
    size_t j = 0, nd = 0, dots = 0;
    for (; j < rl && (is_digit(r[j]) || r[j] == '.'); j++) {
        if (r[j] == '.')
            dots++;
        else
            nd++;
    }
    if (nd == 0 || dots > 1)
        return false;
    if (j < rl && (r[j] == 'e' || r[j] == 'E')) {
        j++;
        if (j < rl && (r[j] == '+' || r[j] == '-'))
            j++;
        if (j >= rl || !is_digit(r[j]))
            return false;
        while (j < rl && is_digit(r[j]))
            j++;
    }
    return j == rl;
}

/* Everything but the shortest texts; out of line so that the common call
 * sets up no stack frame for the strtod buffer. */
static __attribute__((noinline)) int f64_long(struct cmn_slice s, double *out)
{
    if (f64_fast(s.p, s.len, out))
        return 0;
    if (s.len > F64_MAX_TEXT)
        return CMN_ETOOBIG;
    if (!f64_grammar_ok(s.p, s.len))
        return CMN_EPARSE;
    char buf[F64_MAX_TEXT + 1];
    memcpy(buf, s.p, s.len);
    buf[s.len] = '\0';
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end != buf + s.len)
        return CMN_EPARSE;
    if (errno == ERANGE && isinf(v))
        return CMN_ETOOBIG;
    *out = v;
    return 0;
}

int cmn_parse_f64(struct cmn_slice s, double *out)
{
    if (s.len == 0)
        return CMN_EPARSE;
    if (f64_short(s.p, s.len, out))
        return 0;
    return f64_long(s, out);
}

int cmn_parse_i64(struct cmn_slice s, int64_t *out)
{
    size_t i = 0;
    bool neg = false;
    if (s.len > 0 && (s.p[0] == '+' || s.p[0] == '-')) {
        neg = s.p[0] == '-';
        i = 1;
    }
    if (i == s.len)
        return CMN_EPARSE;
    /* accumulate as a negative number so INT64_MIN fits */
    int64_t v = 0;
    for (; i < s.len; i++) {
        if (!is_digit(s.p[i]))
            return CMN_EPARSE;
        int d = s.p[i] - '0';
        if (v < (INT64_MIN + d) / 10)
            return CMN_ETOOBIG;
        v = v * 10 - d;
    }
    if (!neg) {
        if (v == INT64_MIN)
            return CMN_ETOOBIG;
        v = -v;
    }
    *out = v;
    return 0;
}

int cmn_parse_u64(struct cmn_slice s, uint64_t max, uint64_t *out)
{
    if (s.len == 0)
        return CMN_EPARSE;
    uint64_t v = 0;
    for (size_t i = 0; i < s.len; i++) {
        if (!is_digit(s.p[i]))
            return CMN_EPARSE;
        uint64_t d = (uint64_t)(s.p[i] - '0');
        /* v * 10 + d <= max, without wrapping: d > max alone is too big
         * (max - d would wrap when max < 9) */
        if (d > max || v > (max - d) / 10)
            return CMN_ETOOBIG;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

int cmn_parse_bool(struct cmn_slice s, bool *out)
{
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
        if (cmn_slice_eq_cstr(s, t[i])) {
            *out = true;
            return 0;
        }
        if (cmn_slice_eq_cstr(s, f[i])) {
            *out = false;
            return 0;
        }
    }
    return CMN_EPARSE;
}

void cmn_split_list(const char *s, void (*fn)(struct cmn_slice, void *),
                    void *data)
{
    if (s == NULL)
        return;
    const char *p = s;
    while (*p) {
        while (*p == ' ' || *p == ',' || *p == '\t' || *p == '\n')
            p++;
        const char *b = p;
        while (*p && *p != ' ' && *p != ',' && *p != '\t' && *p != '\n')
            p++;
        if (p > b)
            fn(cmn_slice(b, (size_t)(p - b)), data);
    }
}

void cmn_strv_add(struct cmn_slice item, void *data)
{
    struct cmn_strv *l = data;
    if (l->err != 0)
        return;
    char **nv = cmn_reallocarray(l->v, l->n + 1, sizeof(*nv));
    if (nv == NULL) {
        l->err = UV_ENOMEM;
        return;
    }
    l->v = nv;
    l->v[l->n] = cmn_strndup(item.p, item.len);
    if (l->v[l->n] == NULL) {
        l->err = UV_ENOMEM;
        return;
    }
    l->n++;
}

int cmn_strv_dup(char *const *src, size_t n, char ***out)
{
    *out = NULL;
    if (src == NULL || n == 0)
        return 0;
    char **v = cmn_calloc(n, sizeof(*v));
    if (v == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        v[i] = cmn_strdup(src[i]);
        if (v[i] == NULL) {
            cmn_strv_free(v, i);
            return UV_ENOMEM;
        }
    }
    *out = v;
    return 0;
}

void cmn_strv_free(char **v, size_t n)
{
    if (v == NULL)
        return;
    for (size_t i = 0; i < n; i++)
        cmn_free(v[i]);
    cmn_free(v);
}

static int cmp_str(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

void cmn_strv_sort_unique(char **v, size_t *n)
{
    if (*n < 2)
        return;
    qsort(v, *n, sizeof(*v), cmp_str);
    size_t w = 1;
    for (size_t i = 1; i < *n; i++) {
        if (strcmp(v[i], v[w - 1]) == 0)
            cmn_free(v[i]);
        else
            v[w++] = v[i];
    }
    *n = w;
}

int cmn_env_tags_add(const struct cmn_env *env, char ***v, size_t *n)
{
    static const char *const names[] = {"DD_DOGSTATSD_TAGS", "DD_TAGS"};
    struct cmn_strv l = {*v, *n, 0};
    for (size_t i = 0; i < 2; i++) {
        const char *val = cmn_env_get(env, names[i]);
        if (val != NULL)
            cmn_split_list(val, cmn_strv_add, &l);
    }
    *v = l.v;
    *n = l.n;
    if (l.err)
        return l.err;
    cmn_strv_sort_unique(*v, n);
    return 0;
}

/* ------------------------------------------------------------------------
 * Fixed-buffer appends without printf (see common.h)
 */
void cmn_fcat(char *buf, size_t cap, size_t *len, const char *s)
{
    if (*len >= cap)
        return; /* already truncated */
    size_t n = strlen(s), room = cap - *len - 1;
    if (n > room) {
        memcpy(buf + *len, s, room);
        buf[cap - 1] = '\0';
        *len = cap;
        return;
    }
    memcpy(buf + *len, s, n + 1);
    *len += n;
}

void cmn_fcat_u64(char *buf, size_t cap, size_t *len, uint64_t v)
{
    char d[21];
    size_t i = sizeof(d) - 1;
    d[i] = '\0';
    do {
        d[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    cmn_fcat(buf, cap, len, d + i);
}
