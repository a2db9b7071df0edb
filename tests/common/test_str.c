/*
 * test_str.c - number parsing with Go strconv rules, slices, lists.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static int f64(const char *s, double *v)
{
    return cmn_parse_f64(cmn_slice(s, strlen(s)), v);
}

struct f64_row {
    const char *in;
    int rc;
    double want;
};

Test(str, parse_f64_table)
{
    static const struct f64_row rows[] = {
        {"666", 0, 666},
        {"-1.5", 0, -1.5},
        {"+5", 0, 5},
        {"0.21", 0, 0.21},
        {".5", 0, 0.5},
        {"5.", 0, 5},
        {"2.39283", 0, 2.39283},
        {"1e3", 0, 1000},
        {"1E-2", 0, 0.01},
        {"0x1p-2", 0, 0.25},
        {"0x1.8p1", 0, 3},
        {"1234567890123456789012", 0, 1.2345678901234568e21},
        {"9007199254740993", 0, 9007199254740992.0},
        {"0.1", 0, 0.1},
        {"123456.789012", 0, 123456.789012},
        {"1e400", CMN_ETOOBIG, 0},
        {"-1e400", CMN_ETOOBIG, 0},
        {"1e-400", 0, 0},
        {"", CMN_EPARSE, 0},
        {" 1", CMN_EPARSE, 0},
        {"1 ", CMN_EPARSE, 0},
        {"1,000", CMN_EPARSE, 0},
        {"abc", CMN_EPARSE, 0},
        {"-", CMN_EPARSE, 0},
        {".", CMN_EPARSE, 0},
        {"1e", CMN_EPARSE, 0},
        {"1.2.3", CMN_EPARSE, 0},
        {"0x1.8", CMN_EPARSE, 0}, /* Go needs the p exponent */
        {"nan(1)", CMN_EPARSE, 0},
        {"infinit", CMN_EPARSE, 0},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        double v = -12345;
        int rc = f64(rows[i].in, &v);
        cr_expect_eq(rc, rows[i].rc, "\"%s\": rc %d, want %d", rows[i].in, rc,
                     rows[i].rc);
        if (rows[i].rc == 0)
            cr_expect_eq(v, rows[i].want, "\"%s\": %.17g, want %.17g",
                         rows[i].in, v, rows[i].want);
    }
}

Test(str, parse_f64_special)
{
    double v;
    static const char *const nans[] = {"NaN", "nan", "NAN", "-nan"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(f64(nans[i], &v), 0, "%s", nans[i]);
        cr_expect(isnan(v));
    }
    static const char *const infs[] = {"Inf", "+inf", "Infinity", "INFINITY"};
    for (size_t i = 0; i < 4; i++) {
        cr_assert_eq(f64(infs[i], &v), 0, "%s", infs[i]);
        cr_expect(isinf(v) && v > 0);
    }
    cr_assert_eq(f64("-Inf", &v), 0);
    cr_expect(isinf(v) && v < 0);
}

/* The fast path must agree bit for bit with strtod on plain decimals. */
Test(str, parse_f64_fast_path_matches_strtod)
{
    uint64_t x = 88172645463325252ull;
    char buf[64];
    for (int i = 0; i < 200000; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        unsigned frac = (unsigned)(x >> 59) % 12;
        uint64_t m = x % 100000000000000ull;
        int n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)m);
        if (frac > 0 && (unsigned)n > frac) {
            memmove(buf + n - frac + 1, buf + n - frac, frac + 1);
            buf[n - frac] = '.';
        }
        double got;
        cr_assert_eq(f64(buf, &got), 0, "%s", buf);
        double want = strtod(buf, NULL);
        cr_assert_eq(memcmp(&got, &want, sizeof(got)), 0, "%s: %.17g vs %.17g",
                     buf, got, want);
    }
}

Test(str, parse_f64_long_input)
{
    char buf[100];
    memset(buf, '1', sizeof(buf));
    double v;
    /* 100 digits: no fast path (too many digits), over the 64-byte cap */
    cr_expect_eq(cmn_parse_f64(cmn_slice(buf, sizeof(buf)), &v), CMN_ETOOBIG);
}

Test(str, parse_i64)
{
    int64_t v;
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("1657100430"), &v), 0);
    cr_expect_eq(v, 1657100430);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("-102348932"), &v), 0);
    cr_expect_eq(v, -102348932);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("9223372036854775807"), &v), 0);
    cr_expect_eq(v, INT64_MAX);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("-9223372036854775808"), &v), 0);
    cr_expect_eq(v, INT64_MIN);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("9223372036854775808"), &v),
                 CMN_ETOOBIG);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("ABCD"), &v), CMN_EPARSE);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT(""), &v), CMN_EPARSE);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("-"), &v), CMN_EPARSE);
    cr_expect_eq(cmn_parse_i64(CMN_SLICE_LIT("1.5"), &v), CMN_EPARSE);
}

/* A max below 9: a single digit above max is refused (it used to wrap
 * max - d and pass). Every value of 0..99 against every max of 0..12. */
Test(str, parse_u64_small_max)
{
    char buf[4];
    uint64_t v;

    for (uint64_t max = 0; max <= 12; max++) {
        for (unsigned n = 0; n < 100; n++) {
            snprintf(buf, sizeof(buf), "%u", n);
            v = 777;
            int rc = cmn_parse_u64(cmn_slice_cstr(buf), max, &v);
            if (n <= max) {
                cr_assert_eq(rc, 0, "%s max %llu", buf,
                             (unsigned long long)max);
                cr_assert_eq(v, n);
            } else {
                cr_assert_eq(rc, CMN_ETOOBIG, "%s max %llu gave %d", buf,
                             (unsigned long long)max, rc);
                cr_assert_eq(v, 777, "output untouched on error");
            }
        }
    }
    cr_assert_eq(cmn_parse_u64(CMN_SLICE_LIT("007"), 7, &v), 0);
    cr_assert_eq(v, 7);
    cr_assert_eq(cmn_parse_u64(CMN_SLICE_LIT("0008"), 7, &v), CMN_ETOOBIG);
}

Test(str, parse_u64_max)
{
    uint64_t v;
    cr_expect_eq(cmn_parse_u64(CMN_SLICE_LIT("65535"), 65535, &v), 0);
    cr_expect_eq(v, 65535);
    cr_expect_eq(cmn_parse_u64(CMN_SLICE_LIT("65536"), 65535, &v), CMN_ETOOBIG);
    cr_expect_eq(
        cmn_parse_u64(CMN_SLICE_LIT("18446744073709551615"), UINT64_MAX, &v),
        0);
    cr_expect_eq(v, UINT64_MAX);
    cr_expect_eq(
        cmn_parse_u64(CMN_SLICE_LIT("18446744073709551616"), UINT64_MAX, &v),
        CMN_ETOOBIG);
    cr_expect_eq(cmn_parse_u64(CMN_SLICE_LIT("-1"), 10, &v), CMN_EPARSE);
}

Test(str, parse_bool)
{
    bool b;
    static const char *const t[] = {"1", "t", "T", "TRUE", "true", "True"};
    static const char *const f[] = {"0", "f", "F", "FALSE", "false", "False"};
    for (int i = 0; i < 6; i++) {
        b = false;
        cr_expect_eq(cmn_parse_bool(cmn_slice_cstr(t[i]), &b), 0);
        cr_expect(b);
        b = true;
        cr_expect_eq(cmn_parse_bool(cmn_slice_cstr(f[i]), &b), 0);
        cr_expect(!b);
    }
    cr_expect_eq(cmn_parse_bool(CMN_SLICE_LIT("yes"), &b), CMN_EPARSE);
    cr_expect_eq(cmn_parse_bool(CMN_SLICE_LIT("tRUE"), &b), CMN_EPARSE);
}

static void collect(struct cmn_slice s, void *data)
{
    struct cmn_buf *b = data;
    cr_assert_eq(cmn_buf_append(b, s.p, s.len), 0);
    cr_assert_eq(cmn_buf_append(b, "|", 1), 0);
}

Test(str, split_list)
{
    struct cmn_buf b;
    cmn_buf_init(&b, 1024);
    cmn_split_list(" env:dev, team:a,,b  c ", collect, &b);
    cr_expect_str_eq(b.p, "env:dev|team:a|b|c|");
    cmn_buf_free(&b);
    cr_expect_eq(cmn_alloc_live_bytes(), 0);
}

/* cmn_fcat / cmn_fcat_u64: appends in place, the length follows, and what
 * does not fit is cut with the buffer still NUL-terminated and the length
 * at cap, after which nothing more is appended. */
Test(str, fixed_appends_and_truncation)
{
    char b[16] = "";
    size_t n = 0;
    cmn_fcat(b, sizeof(b), &n, "GET ");
    cmn_fcat_u64(b, sizeof(b), &n, 0);
    cmn_fcat(b, sizeof(b), &n, ":");
    cmn_fcat_u64(b, sizeof(b), &n, 8999);
    cr_assert_str_eq(b, "GET 0:8999");
    cr_assert_eq(n, 10);
    cmn_fcat(b, sizeof(b), &n, "/next");
    cr_assert_str_eq(b, "GET 0:8999/next");
    cr_assert_eq(n, 15, "15 bytes and the NUL fill the 16");
    cmn_fcat(b, sizeof(b), &n, "x");
    cr_assert_str_eq(b, "GET 0:8999/next");
    cr_assert_eq(n, sizeof(b), "truncated");
    cmn_fcat(b, sizeof(b), &n, "y");
    cr_assert_eq(n, sizeof(b));
    char c[24] = "";
    size_t m = 0;
    cmn_fcat_u64(c, sizeof(c), &m, UINT64_MAX);
    cr_assert_str_eq(c, "18446744073709551615");
    cr_assert_eq(m, 20);
    char t[8] = "";
    size_t k = 0;
    cmn_fcat(t, sizeof(t), &k, "abcdefghij");
    cr_assert_str_eq(t, "abcdefg");
    cr_assert_eq(k, sizeof(t));
}
