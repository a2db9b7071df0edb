/*
 * test_parse_metric.c - dsd_parse_metric against every metric row (1-48) of
 * spec/pipeline.md §1.10, plus the edge rows of STYLE.md rule 19, and the
 * packet splitting of §1.2 through dsd_process_packet.
 */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dogstatsd.h"
#include "dogstatsd/dsd_rec.h"

/* error rows leave the expected-result fields out */
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

#define NOAGG_OFF 1 /* row flag: dogstatsd_no_aggregation_pipeline=false */
#define ORIGIN 2    /* row flag: dogstatsd_origin_detection_client=true */
#define HEX64 "2a25f7fc8fbf573d62053d7263dd2d440c07b6ab4d2b107e50b0d4df1f2ee15f"

struct row {
    int spec; /* §1.10 row number, 0 for edge rows */
    const char *line;
    int flags;
    enum dsd_err err;
    const char *name;
    enum agg_mtype type;
    size_t nvals;
    double vals[4];
    const char *set;  /* set member (sets only) */
    const char *tags; /* exact tag field text; NULL = no tags */
    double rate;
    long long ts;
    const char *local; /* c: (origin rows) */
};

#define OK DSD_OK
static const struct row rows[] = {
    /* clang-format off */
    {1, "daemon:666|g", 0, OK, "daemon", AGG_GAUGE, 1, {666}, NULL, NULL, 1, 0,
     NULL},
    {2, "daemon:666:777|g", 0, OK, "daemon", AGG_GAUGE, 2, {666, 777}, NULL,
     NULL, 1, 0, NULL},
    {3, "daemon:21|c", 0, OK, "daemon", AGG_COUNTER, 1, {21}, NULL, NULL, 1, 0,
     NULL},
    {4, "daemon:666:777|c", 0, OK, "daemon", AGG_COUNTER, 2, {666, 777}, NULL,
     NULL, 1, 0, NULL},
    {5, "custom_counter:1|c|#protocol:http,bench", 0, OK, "custom_counter",
     AGG_COUNTER, 1, {1}, NULL, "protocol:http,bench", 1, 0, NULL},
    {6, "daemon:21|h", 0, OK, "daemon", AGG_HISTOGRAM, 1, {21}, NULL, NULL, 1,
     0, NULL},
    {7, "daemon:21:22|h", 0, OK, "daemon", AGG_HISTOGRAM, 2, {21, 22}, NULL,
     NULL, 1, 0, NULL},
    {8, "daemon:21|ms", 0, OK, "daemon", AGG_TIMING, 1, {21}, NULL, NULL, 1, 0,
     NULL},
    {9, "daemon:21:22|ms", 0, OK, "daemon", AGG_TIMING, 2, {21, 22}, NULL,
     NULL, 1, 0, NULL},
    {10, "daemon:abc|s", 0, OK, "daemon", AGG_SET, 0, {0}, "abc", NULL, 1, 0,
     NULL},
    {11, "daemon:abc:def|s", 0, OK, "daemon", AGG_SET, 0, {0}, "abc:def", NULL,
     1, 0, NULL},
    {12, "daemon:3.5|d", 0, OK, "daemon", AGG_DISTRIBUTION, 1, {3.5}, NULL,
     NULL, 1, 0, NULL},
    {13, "daemon:3.5:4.5|d", 0, OK, "daemon", AGG_DISTRIBUTION, 2, {3.5, 4.5},
     NULL, NULL, 1, 0, NULL},
    {14, "daemon:♬†øU†øU¥ºuT0♪|s", 0, OK, "daemon", AGG_SET, 0, {0},
     "♬†øU†øU¥ºuT0♪", NULL, 1, 0, NULL},
    {15, "daemon:666|g|#sometag1:somevalue1,sometag2:somevalue2", 0, OK,
     "daemon", AGG_GAUGE, 1, {666}, NULL,
     "sometag1:somevalue1,sometag2:somevalue2", 1, 0, NULL},
    {16, "daemon:666|g", 0, OK, "daemon", AGG_GAUGE, 1, {666}, NULL, NULL, 1,
     0, NULL},
    {17, "daemon:666|g|@0.21", 0, OK, "daemon", AGG_GAUGE, 1, {666}, NULL,
     NULL, 0.21, 0, NULL},
    {18, "daemon:666|g|#", 0, OK, "daemon", AGG_GAUGE, 1, {666}, NULL, NULL, 1,
     0, NULL},
    {19, "♬†øU†øU¥ºuT0♪:666|g|#intitulé:T0µ", 0, OK, "♬†øU†øU¥ºuT0♪",
     AGG_GAUGE, 1, {666}, NULL, "intitulé:T0µ", 1, 0, NULL},
    {20, "daemon:666", 0, DSD_ERR_NO_PIPE},
    {21, "daemon:666|", 0, DSD_ERR_BAD_TYPE},
    {22, "daemon:|g", 0, DSD_ERR_EMPTY_VALUE},
    {23, ":666|g", 0, DSD_ERR_EMPTY_NAME},
    {24, "abc666|g", 0, DSD_ERR_NO_COLON},
    {25, "daemon:666|g|m:test", 0, OK, "daemon", AGG_GAUGE, 1, {666}, NULL,
     NULL, 1, 0, NULL},
    {26, "daemon:abc|g", 0, DSD_ERR_BAD_VALUE},
    {27, "daemon:666|unknown", 0, DSD_ERR_BAD_TYPE},
    {28, "daemon:666|g|@abc", 0, DSD_ERR_BAD_RATE},
    {29, "metric:1234|g|#onetag|T1657100430", NOAGG_OFF, OK, "metric",
     AGG_GAUGE, 1, {1234}, NULL, "onetag", 1, 0, NULL},
    {30, "metric:1234|g|#onetag|T1657100430", 0, OK, "metric", AGG_GAUGE, 1,
     {1234}, NULL, "onetag", 1, 1657100430, NULL},
    {31, "metric:1234|g|#|T1657100430", 0, OK, "metric", AGG_GAUGE, 1, {1234},
     NULL, NULL, 1, 1657100430, NULL},
    {32, "metric:1234|g|@0.21|T1657100440", 0, OK, "metric", AGG_GAUGE, 1,
     {1234}, NULL, NULL, 0.21, 1657100440, NULL},
    {33, "metric:1234|g|#thereisatag|@0.21|T1657100440", 0, OK, "metric",
     AGG_GAUGE, 1, {1234}, NULL, "thereisatag", 0.21, 1657100440, NULL},
    {34, "metric:1234|g|#thereisatag|T1657100540|@0.21", 0, OK, "metric",
     AGG_GAUGE, 1, {1234}, NULL, "thereisatag", 0.21, 1657100540, NULL},
    {35, "metric:1234|g|@0.21|T1657100540|#thereisatag", 0, OK, "metric",
     AGG_GAUGE, 1, {1234}, NULL, "thereisatag", 0.21, 1657100540, NULL},
    {36, "metric:1234|g|T1657100540|@0.25|#atag", 0, OK, "metric", AGG_GAUGE,
     1, {1234}, NULL, "atag", 0.25, 1657100540, NULL},
    {37, "metric:1234|g|T1657100540|#atag|@0.25", 0, OK, "metric", AGG_GAUGE,
     1, {1234}, NULL, "atag", 0.25, 1657100540, NULL},
    {38, "metric:1234|g|#onetag|TABCD", 0, DSD_ERR_BAD_TIMESTAMP},
    {39, "metric:1234|g|#onetag|T", 0, DSD_ERR_BAD_TIMESTAMP},
    {40, "metric:1234|g|#onetag|T-102348932", 0, DSD_ERR_BAD_TIMESTAMP},
    {41, "example.metric:2.39283|d|@1.000000|#environment:dev|c:" HEX64, 0, OK,
     "example.metric", AGG_DISTRIBUTION, 1, {2.39283}, NULL, "environment:dev",
     1, 0, NULL},
    {42,
     "example.metric:2.39283|d|T1657100540|@1.000000|#environment:dev|c:" HEX64,
     0, OK, "example.metric", AGG_DISTRIBUTION, 1, {2.39283}, NULL,
     "environment:dev", 1, 1657100540, NULL},
    {43,
     "example.metric:2.39283|d|T1657100540|@1.000000|#environment:dev|c:" HEX64 "|f:wowthisisacoolfeature",
     0, OK, "example.metric", AGG_DISTRIBUTION, 1, {2.39283}, NULL,
     "environment:dev", 1, 1657100540, NULL},
    {44,
     "example.metric:2.39283|d|T1657100540|@1.000000|#environment:dev|c:" HEX64 "|f:wowthisisacoolfeature|f2:omgthisoneiscooler",
     0, OK, "example.metric", AGG_DISTRIBUTION, 1, {2.39283}, NULL,
     "environment:dev", 1, 1657100540, NULL},
    {45, "metric:1234|g|c:1234567890abcdef", ORIGIN, OK, "metric", AGG_GAUGE,
     1, {1234}, NULL, NULL, 1, 0, "1234567890abcdef"},
    {46, "d:1.1234:21.5:13|g", 0, OK, "d", AGG_GAUGE, 3, {1.1234, 21.5, 13},
     NULL, NULL, 1, 0, NULL},
    {46, "d:1.1234|g", 0, OK, "d", AGG_GAUGE, 1, {1.1234}, NULL, NULL, 1, 0,
     NULL},
    {46, "d:1.1234:41:|g", 0, OK, "d", AGG_GAUGE, 2, {1.1234, 41}, NULL, NULL,
     1, 0, NULL},
    {46, "d:1.1234::41|g", 0, OK, "d", AGG_GAUGE, 2, {1.1234, 41}, NULL, NULL,
     1, 0, NULL},
    {46, "d::1.1234::41|g", 0, OK, "d", AGG_GAUGE, 2, {1.1234, 41}, NULL, NULL,
     1, 0, NULL},
    {46, "d:|g", 0, DSD_ERR_EMPTY_VALUE},
    {46, "d:::|g", 0, DSD_ERR_EMPTY_VALUE},
    {47, "m:1|c|#tag:test,mytag,good:boy", 0, OK, "m", AGG_COUNTER, 1, {1},
     NULL, "tag:test,mytag,good:boy", 1, 0, NULL},
    {47, "m:1|c|#", 0, OK, "m", AGG_COUNTER, 1, {1}, NULL, NULL, 1, 0, NULL},
    {48, "song.length:240|h|@0.5", 0, OK, "song.length", AGG_HISTOGRAM, 1,
     {240}, NULL, NULL, 0.5, 0, NULL},
    /* edge rows (STYLE.md rule 19) */
    {0, "", 0, DSD_ERR_NO_PIPE},
    {0, ":", 0, DSD_ERR_NO_PIPE},
    {0, ":|g", 0, DSD_ERR_EMPTY_NAME},
    {0, "|", 0, DSD_ERR_NO_COLON},
    {0, "daemon:1", 0, DSD_ERR_NO_PIPE},
    {0, "daemon:1|x", 0, DSD_ERR_BAD_TYPE},
    {0, "daemon:1|gg", 0, DSD_ERR_BAD_TYPE},
    {0, "daemon:1|G", 0, DSD_ERR_BAD_TYPE},
    {0, "daemon:1|m", 0, DSD_ERR_BAD_TYPE},
    {0, "daemon:1|c\r", 0, DSD_ERR_BAD_TYPE},
    {0, "name:x|", 0, DSD_ERR_BAD_TYPE}, /* type checked before value */ 
    /* rates of 0 and below are refused (docs/limits.md), not the Agent's
     * +Inf weights */
    {0, "daemon:1|g|@0", 0, DSD_ERR_BAD_RATE},
    {0, "daemon:1|g|@0.0", 0, DSD_ERR_BAD_RATE},
    {0, "daemon:1|g|@-0", 0, DSD_ERR_BAD_RATE},
    {0, "daemon:1|c|@-1", 0, DSD_ERR_BAD_RATE},
    {0, "daemon:1|c|@nan", 0, DSD_ERR_BAD_RATE},
    {0, "daemon:1|c|@1e-16", 0, OK, "daemon", AGG_COUNTER, 1, {1}, NULL, NULL,
     1e-16, 0, NULL},
    {0, "daemon:1|c|@1.5", 0, OK, "daemon", AGG_COUNTER, 1, {1}, NULL, NULL,
     1.5, 0, NULL},
    {0, "daemon:1|c|@", 0, DSD_ERR_BAD_RATE},
    {0, "daemon:1|c|@0.5|@0.25", 0, OK, "daemon", AGG_COUNTER, 1, {1}, NULL,
     NULL, 0.25, 0, NULL},
    {0, "daemon:1|c|#a|#b,c", 0, OK, "daemon", AGG_COUNTER, 1, {1}, NULL,
     "b,c", 1, 0, NULL},
    {0, "daemon:1|c|#a,,b", 0, OK, "daemon", AGG_COUNTER, 1, {1}, NULL, "a,,b",
     1, 0, NULL},
    {0, "daemon:1|c||", 0, OK, "daemon", AGG_COUNTER, 1, {1}, NULL, NULL, 1, 0,
     NULL},
    {0, "daemon:12345678901234567890|c", 0, OK, "daemon", AGG_COUNTER, 1,
     {12345678901234567890.0}, NULL, NULL, 1, 0, NULL},
    {0, "daemon:1234567890123456789012|g", 0, OK, "daemon", AGG_GAUGE, 1,
     {1.2345678901234568e21}, NULL, NULL, 1, 0, NULL},
    {0, "daemon:1e400|g", 0, DSD_ERR_BAD_VALUE},
    {0, "daemon:-1e400|g", 0, DSD_ERR_BAD_VALUE},
    {0, "daemon:1e-400|g", 0, OK, "daemon", AGG_GAUGE, 1, {0}, NULL, NULL, 1,
     0, NULL},
    {0, "daemon:0x1p-2|g", 0, OK, "daemon", AGG_GAUGE, 1, {0.25}, NULL, NULL,
     1, 0, NULL},
    {0, "daemon:0x1.8p1|g", 0, OK, "daemon", AGG_GAUGE, 1, {3}, NULL, NULL, 1,
     0, NULL},
    {0, "daemon:+5|g", 0, OK, "daemon", AGG_GAUGE, 1, {5}, NULL, NULL, 1, 0,
     NULL},
    {0, "daemon:-5|g", 0, OK, "daemon", AGG_GAUGE, 1, {-5}, NULL, NULL, 1, 0,
     NULL},
    {0, "daemon:1.5e3|g", 0, OK, "daemon", AGG_GAUGE, 1, {1500}, NULL, NULL, 1,
     0, NULL},
    {0, "daemon:.5|g", 0, OK, "daemon", AGG_GAUGE, 1, {0.5}, NULL, NULL, 1, 0,
     NULL},
    {0, "daemon:1 2|g", 0, DSD_ERR_BAD_VALUE},
    {0, "daemon: 1|g", 0, DSD_ERR_BAD_VALUE},
    {0, "daemon:1 |g", 0, DSD_ERR_BAD_VALUE},
    {0, "daemon:1,000|g", 0, DSD_ERR_BAD_VALUE},
    {0, "daemon:0x10|g", 0, DSD_ERR_BAD_VALUE}, /* hex needs an exponent */ {0,
     "daemon:1:x:2|g", 0, DSD_ERR_BAD_VALUE},
    {0, "my metric name.x:1|c", 0, OK, "my metric name.x", AGG_COUNTER, 1, {1},
     NULL, NULL, 1, 0, NULL},
    {0, "\xff\xfe:1|c|#\xc3(,b", 0, OK, "\xff\xfe", AGG_COUNTER, 1, {1}, NULL,
     "\xc3(,b", 1, 0, NULL},
    {0, "m:1|g|TABCD", NOAGG_OFF, OK, "m", AGG_GAUGE, 1, {1}, NULL, NULL, 1, 0,
     NULL},
    {0, "m:1|g|T0", 0, DSD_ERR_BAD_TIMESTAMP},
    {0, "m:1|g|T+5", 0, OK, "m", AGG_GAUGE, 1, {1}, NULL, NULL, 1, 5, NULL},
    {0, "m:1|g|T99999999999999999999", 0, DSD_ERR_BAD_TIMESTAMP},
    {0, "m:1|g|c:abc", 0, OK, "m", AGG_GAUGE, 1, {1}, NULL, NULL, 1, 0, NULL},
    {0, "m:1|g|card:high|e:it-false,cn-x|c:ci-1", ORIGIN, OK, "m", AGG_GAUGE,
     1, {1}, NULL, NULL, 1, 0, "ci-1"},
    /* clang-format on */
};

static void check_row(size_t i, const struct row *r)
{
    struct dsd_parse_opts o = {!(r->flags & NOAGG_OFF),
                               (r->flags & ORIGIN) != 0};
    struct dsd_metric m;
    double vals[4] = {-1, -1, -1, -1};
    enum dsd_err e =
        dsd_parse_metric(r->line, strlen(r->line), &o, &m, vals, 4);
    cr_expect_eq(e, r->err, "row %zu (spec %d) \"%s\": err %s, want %s", i,
                 r->spec, r->line, dsd_err_str(e), dsd_err_str(r->err));
    if (e != DSD_OK || r->err != DSD_OK)
        return;
    cr_expect(cmn_slice_eq_cstr(m.m.name, r->name),
              "row %zu \"%s\": name \"%.*s\"", i, r->line, (int)m.m.name.len,
              m.m.name.p);
    cr_expect_eq(m.m.type, r->type, "row %zu \"%s\": type", i, r->line);
    cr_expect_eq(m.m.nvalues, r->nvals, "row %zu \"%s\": %zu values", i,
                 r->line, m.m.nvalues);
    for (size_t k = 0; k < r->nvals && k < m.m.nvalues; k++)
        cr_expect_eq(m.m.values[k], r->vals[k],
                     "row %zu \"%s\": value %zu is %.17g, want %.17g", i,
                     r->line, k, m.m.values[k], r->vals[k]);
    if (r->type == AGG_SET)
        cr_expect(cmn_slice_eq_cstr(m.m.set_member, r->set),
                  "row %zu: set member \"%.*s\"", i, (int)m.m.set_member.len,
                  m.m.set_member.p);
    else
        cr_expect_eq(m.m.set_member.len, 0, "row %zu: set member", i);
    cr_expect(cmn_slice_eq_cstr(m.m.tags, r->tags ? r->tags : ""),
              "row %zu \"%s\": tags \"%.*s\"", i, r->line, (int)m.m.tags.len,
              m.m.tags.p);
    cr_expect_eq(m.m.rate, r->rate, "row %zu \"%s\": rate %g", i, r->line,
                 m.m.rate);
    cr_expect_eq(m.m.timestamp, r->ts, "row %zu \"%s\": ts %lld", i, r->line,
                 (long long)m.m.timestamp);
    cr_expect(cmn_slice_eq_cstr(m.local_data, r->local ? r->local : ""),
              "row %zu: local data \"%.*s\"", i, (int)m.local_data.len,
              m.local_data.p);
}

Test(parse_metric, spec_and_edge_rows)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        check_row(i, &rows[i]);
}

Test(parse_metric, origin_fields)
{
    struct dsd_parse_opts o = {true, true};
    struct dsd_metric m;
    double v[2];
    const char *l = "m:1|g|c:ci-1|e:it-false,cn-x|card:high|c:ci-2";
    cr_assert_eq(dsd_parse_metric(l, strlen(l), &o, &m, v, 2), DSD_OK);
    cr_expect(cmn_slice_eq_cstr(m.local_data, "ci-2")); /* last wins */
    cr_expect(cmn_slice_eq_cstr(m.external_data, "it-false,cn-x"));
    cr_expect(cmn_slice_eq_cstr(m.cardinality, "high"));
    o.origin_detection_client = false;
    cr_assert_eq(dsd_parse_metric(l, strlen(l), &o, &m, v, 2), DSD_OK);
    cr_expect_eq(m.local_data.len, 0);
    cr_expect_eq(m.external_data.len, 0);
    cr_expect_eq(m.cardinality.len, 0);
}

Test(parse_metric, nan_and_inf_accepted)
{
    static const char *const l[] = {"m:nan|g",      "m:NaN|g",  "m:Inf|g",
                                    "m:+Inf|g",     "m:-inf|g", "m:Infinity|g",
                                    "m:-INFINITY|g"};
    static const int sign[] = {0, 0, 1, 1, -1, 1, -1};
    for (size_t i = 0; i < sizeof(l) / sizeof(l[0]); i++) {
        struct dsd_metric m;
        double v[1];
        cr_assert_eq(dsd_parse_metric(l[i], strlen(l[i]), NULL, &m, v, 1),
                     DSD_OK, "%s", l[i]);
        if (sign[i] == 0)
            cr_expect(isnan(v[0]), "%s", l[i]);
        else
            cr_expect(isinf(v[0]) && (v[0] > 0) == (sign[i] > 0), "%s", l[i]);
    }
    struct dsd_metric m;
    double v[1];
    cr_expect_eq(dsd_parse_metric("m:nan(1)|g", 10, NULL, &m, v, 1),
                 DSD_ERR_BAD_VALUE);
    cr_expect_eq(dsd_parse_metric("m:infin|g", 9, NULL, &m, v, 1),
                 DSD_ERR_BAD_VALUE);
}

Test(parse_metric, too_many_values)
{
    struct dsd_metric m;
    double v[4];
    const char *l = "m:1:2:3:4:5|g";
    cr_expect_eq(dsd_parse_metric(l, strlen(l), NULL, &m, v, 4),
                 DSD_ERR_TOO_MANY_VALUES);
    cr_expect_eq(dsd_parse_metric(l, strlen(l) - 4, NULL, &m, v, 4),
                 DSD_ERR_NO_PIPE);
    const char *l4 = "m:1:2:3:4|g";
    cr_assert_eq(dsd_parse_metric(l4, strlen(l4), NULL, &m, v, 4), DSD_OK);
    cr_expect_eq(m.m.nvalues, 4);
    cr_expect_eq(v[3], 4.0);
    cr_expect_eq(dsd_parse_metric("m:1|g", 5, NULL, &m, v, 0),
                 DSD_ERR_TOO_MANY_VALUES);
}

/* The parser reads only [line, line + len): bytes after it never matter. */
Test(parse_metric, no_nul_needed)
{
    const char buf[] = "page:7|c|#a:b|GARBAGE";
    struct dsd_metric m;
    double v[1];
    cr_assert_eq(dsd_parse_metric(buf, 13, NULL, &m, v, 1), DSD_OK);
    cr_expect(cmn_slice_eq_cstr(m.m.tags, "a:b"));
    cr_expect_eq(dsd_parse_metric(buf, 6, NULL, &m, v, 1), DSD_ERR_NO_PIPE);
}

/* Lines of 1 to 80 bytes, with the ':' and the '|'s at every position: the
 * lines of 16 to 64 bytes take the one-pass path (16-byte blocks, the last
 * one overlapping), the others the general one, and both must find the
 * same fields. name:V|c|#TAGS, the name k bytes, the tags padded to make
 * the length; a value with a second ':' (two values) in half of them. */
Test(parse_metric, separators_at_every_position)
{
    char line[96], name[96], tags[96];
    for (size_t len = 1; len <= 80; len++) {
        for (size_t k = 1; k + 6 <= len; k++) {
            for (int two = 0; two < 2; two++) {
                const char *val = two ? "1:2" : "7";
                size_t head = k + 1 + strlen(val) + 2; /* name:V|c */
                memset(name, 'n', k);
                name[k] = '\0';
                size_t t = len > head + 2 ? len - head - 2 : 0; /* |#TAGS */
                memset(tags, 't', t);
                tags[t] = '\0';
                if (t > 1)
                    tags[t / 2] = ','; /* two tags */
                int n = t ? snprintf(line, sizeof(line), "%s:%s|c|#%s", name,
                                     val, tags)
                          : snprintf(line, sizeof(line), "%s:%s|c", name, val);
                if (t == 0 && len != head)
                    continue; /* no room for "|#" and one tag byte */
                cr_assert_eq((size_t)n, len, "%s", line);
                struct dsd_metric m;
                double v[2];
                cr_assert_eq(dsd_parse_metric(line, len, NULL, &m, v, 2),
                             DSD_OK, "%s", line);
                cr_assert_eq(m.m.name.len, k, "%s", line);
                cr_assert_eq(m.m.type, AGG_COUNTER, "%s", line);
                cr_assert_eq(m.m.nvalues, two ? 2u : 1u, "%s", line);
                cr_assert_eq(v[0], two ? 1.0 : 7.0, "%s", line);
                cr_assert(cmn_slice_eq_cstr(m.m.tags, tags), "%s", line);
            }
        }
    }
}

Test(parse_metric, line_64k)
{
    static char line[70000];
    size_t n = 0;
    n += (size_t)snprintf(line, sizeof(line), "big.metric:42|c|#");
    size_t tags_start = n;
    while (n < 65536 - 8)
        n += (size_t)snprintf(line + n, sizeof(line) - n, "t%05zu,", n % 99999);
    line[n - 1] = '\0'; /* drop the last ',' */
    n--;
    struct dsd_metric m;
    double v[1];
    cr_assert_eq(dsd_parse_metric(line, n, NULL, &m, v, 1), DSD_OK);
    cr_expect_eq(m.m.tags.len, n - tags_start);
    cr_expect_eq(m.m.tags.p, line + tags_start);
    cr_expect_eq(v[0], 42);
    /* a 64 KiB set member */
    memset(line, 'x', 65536);
    memcpy(line, "s:", 2);
    memcpy(line + 65536, "|s", 2);
    cr_assert_eq(dsd_parse_metric(line, 65538, NULL, &m, v, 1), DSD_OK);
    cr_expect_eq(m.m.set_member.len, 65536 - 2);
    /* a 64 KiB number is refused, not read past */
    memset(line, '1', 65536);
    memcpy(line, "n:", 2);
    memcpy(line + 65536, "|g", 2);
    cr_expect_eq(dsd_parse_metric(line, 65538, NULL, &m, v, 1),
                 DSD_ERR_BAD_VALUE);
}

Test(parse_metric, msg_type)
{
    const char *ev = "_e{4,5}:title|text|#shell,bash";
    const char *sc = "_sc|NAME|STATUS|d:123";
    const char *mt = "song.length:240|h|@0.5";
    cr_expect_eq(dsd_msg_type(ev, strlen(ev)), DSD_MSG_EVENT);
    cr_expect_eq(dsd_msg_type(sc, strlen(sc)), DSD_MSG_SERVICE_CHECK);
    cr_expect_eq(dsd_msg_type(mt, strlen(mt)), DSD_MSG_METRIC);
    cr_expect_eq(dsd_msg_type("_e", 2), DSD_MSG_METRIC);
    cr_expect_eq(dsd_msg_type("_sc", 3), DSD_MSG_SERVICE_CHECK);
    cr_expect_eq(dsd_msg_type("_e{", 2), DSD_MSG_METRIC);
    cr_expect_eq(dsd_msg_type("", 0), DSD_MSG_METRIC);
}

/* ------------------------------------------------------------------------
 * Packet splitting (§1.2) through a server with no listener.
 */
static struct rec rec;

static struct dsd *server(struct dsd_config *cfg)
{
    struct dsd_sink sink = rec_sink(&rec);
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(uv_default_loop(), cfg, &sink, &s), 0);
    return s;
}

Test(packet, split_cr_empty_and_unterminated)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    struct dsd *s = server(&cfg);
    const char pkt[] = "a:1|c\nb:2|g\r\n\n\r\nbad\nc:3|c";
    dsd_process_packet(s, pkt, sizeof(pkt) - 1, false);
    cr_assert_eq(rec.n, 3);
    cr_expect_str_eq(rec.rows[0], "c a 1 # @1 T0");
    cr_expect_str_eq(rec.rows[1], "g b 2 # @1 T0");
    cr_expect_str_eq(rec.rows[2], "c c 3 # @1 T0");
    dsd_process_packet(s, pkt, sizeof(pkt) - 1, true);
    cr_assert_eq(rec.n, 5); /* c:3|c dropped */
    cr_expect_str_eq(rec.rows[4], "g b 2 # @1 T0");
    dsd_process_packet(s, "d:4|c\n", 6, true);
    cr_expect_str_eq(rec.rows[5], "c d 4 # @1 T0");
    dsd_process_packet(s, "", 0, true);
    dsd_process_packet(s, "\n\n", 2, true);
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.unterminated, 1);
    cr_expect_eq(st.metric_lines, 6);
    cr_expect_eq(st.metric_samples, 6);
    cr_expect_eq(st.parse_errors[DSD_ERR_NO_PIPE], 2); /* "bad" twice */
    dsd_destroy(s);
    dsd_config_free(&cfg);
}

Test(packet, thousand_lines_bad_ones_do_not_spoil)
{
    static char pkt[64 * 1024];
    size_t n = 0;
    for (int i = 0; i < 1000; i++) {
        if (i % 100 == 99)
            n += (size_t)snprintf(pkt + n, sizeof(pkt) - n, "bad%d|x\n", i);
        else
            n += (size_t)snprintf(pkt + n, sizeof(pkt) - n, "m%d:%d|c|#k:v%d\n",
                                  i, i, i % 7);
    }
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    struct dsd *s = server(&cfg);
    dsd_process_packet(s, pkt, n, true);
    cr_assert_eq(rec.n, 990);
    cr_expect_str_eq(rec.rows[0], "c m0 0 #k:v0 @1 T0");
    cr_expect_str_eq(rec.rows[98], "c m98 98 #k:v0 @1 T0");
    cr_expect_str_eq(rec.rows[99], "c m100 100 #k:v2 @1 T0");
    cr_expect_str_eq(rec.rows[989], "c m998 998 #k:v4 @1 T0");
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.metric_lines, 990);
    cr_expect_eq(st.parse_errors[DSD_ERR_NO_COLON], 10);
    cr_expect_eq(st.unterminated, 0);
    dsd_destroy(s);
    dsd_config_free(&cfg);
}

Test(packet, events_and_service_checks_dispatched)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    struct dsd *s = server(&cfg);
    const char pkt[] = "_e{5,4}:title|t\\nx|#a\n_sc|up|2|m:down\r\n_e{9,1}:x|y";
    dsd_process_packet(s, pkt, sizeof(pkt) - 1, false);
    cr_assert_eq(rec.n, 2);
    cr_expect_str_eq(rec.rows[0], "event title|t\nx #a p1 a1 T0 h");
    cr_expect_str_eq(rec.rows[1], "sc up 2 # T0 h mdown");
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.event_lines, 1);
    cr_expect_eq(st.service_check_lines, 1);
    cr_expect_eq(st.parse_errors[DSD_ERR_BAD_EVENT], 1);
    dsd_destroy(s);
    dsd_config_free(&cfg);
}

static char *xstrdup(const char *s)
{
    char *c = cmn_strdup(s);
    cr_assert_not_null(c);
    return c;
}

Test(packet, namespace_and_blocklist)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.metric_namespace = xstrdup("app");
    cfg.metric_blocklist = cmn_calloc(2, sizeof(char *));
    cfg.metric_blocklist[0] = xstrdup("app.secret");
    cfg.metric_blocklist[1] = xstrdup("jvm.gc");
    cfg.nmetric_blocklist = 2;
    struct dsd *s = server(&cfg);
    const char pkt[] = "hits:1|c\njvm.heap:5|g\nsecret:1|c\nsecret.x:1|c\n"
                       "datadog.agent.up:1|g\njvm.gc:1|c\n";
    dsd_process_packet(s, pkt, sizeof(pkt) - 1, false);
    cr_assert_eq(rec.n, 4);
    cr_expect_str_eq(rec.rows[0], "c app.hits 1 # @1 T0");
    cr_expect_str_eq(rec.rows[1], "g jvm.heap 5 # @1 T0");
    cr_expect_str_eq(rec.rows[2], "c app.secret.x 1 # @1 T0");
    cr_expect_str_eq(rec.rows[3], "g datadog.agent.up 1 # @1 T0");
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.blocked, 2);
    cr_expect_eq(st.metric_lines, 6);
    dsd_destroy(s);

    /* prefix matching, and a custom namespace blacklist */
    dsd_config_free(&cfg);
    dsd_config_defaults(&cfg);
    cfg.blocklist_match_prefix = true;
    cfg.metric_namespace = xstrdup("ns.");
    cfg.namespace_blacklist = cmn_calloc(1, sizeof(char *));
    cfg.namespace_blacklist[0] = xstrdup("sys.");
    cfg.nnamespace_blacklist = 1;
    cfg.metric_blocklist = cmn_calloc(2, sizeof(char *));
    cfg.metric_blocklist[0] = xstrdup("sys.mem");
    cfg.metric_blocklist[1] = xstrdup("ns.secret");
    cfg.nmetric_blocklist = 2;
    rec.n = 0;
    s = server(&cfg);
    const char pkt2[] = "a:1|c\nsys.cpu:1|g\nsys.memory:1|g\nsecret.x:1|c\n"
                        "jvm.x:1|g\nsecre:1|c\n";
    dsd_process_packet(s, pkt2, sizeof(pkt2) - 1, false);
    cr_assert_eq(rec.n, 4);
    cr_expect_str_eq(rec.rows[0], "c ns.a 1 # @1 T0");
    cr_expect_str_eq(rec.rows[1], "g sys.cpu 1 # @1 T0");
    cr_expect_str_eq(rec.rows[2], "g ns.jvm.x 1 # @1 T0");
    cr_expect_str_eq(rec.rows[3], "c ns.secre 1 # @1 T0");
    dsd_get_stats(s, &st);
    cr_expect_eq(st.blocked, 2);
    dsd_destroy(s);
    dsd_config_free(&cfg);
}

Test(packet, name_too_long_with_namespace)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.metric_namespace = xstrdup("ns");
    struct dsd *s = server(&cfg);
    static char line[DSD_NAME_MAX + 16];
    memset(line, 'n', DSD_NAME_MAX - 3); /* "ns." + name = DSD_NAME_MAX */
    memcpy(line + DSD_NAME_MAX - 3, ":1|c\n", 5);
    size_t ok_len = DSD_NAME_MAX - 3 + 5;
    dsd_process_packet(s, line, ok_len, false);
    cr_assert_eq(rec.n, 1);
    memset(line, 'n', DSD_NAME_MAX - 2);
    memcpy(line + DSD_NAME_MAX - 2, ":1|c\n", 5);
    dsd_process_packet(s, line, ok_len + 1, false);
    cr_expect_eq(rec.n, 1);
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.parse_errors[DSD_ERR_NAME_TOO_LONG], 1);
    dsd_destroy(s);
    dsd_config_free(&cfg);
}

Test(packet, sink_refusal_counted)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    struct dsd *s = server(&cfg);
    rec.refuse = CMN_ECAP;
    dsd_process_packet(s, "a:1|c\nb:2|c", 11, false);
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.agg_rejected, 2);
    cr_expect_eq(st.metric_lines, 2);
    dsd_destroy(s);
    dsd_config_free(&cfg);
}

/* Every allocation of dsd_create may fail; each failure is reported and
 * leaks nothing. */
Test(packet, create_oom_loop)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.metric_namespace = xstrdup("ns");
    cfg.metric_blocklist = cmn_calloc(1, sizeof(char *));
    cfg.metric_blocklist[0] = xstrdup("x");
    cfg.nmetric_blocklist = 1;
    size_t base = cmn_alloc_live_bytes();
    struct dsd_sink sink = rec_sink(&rec);
    int failures = 0;
    for (uint64_t n = 1; n < 100; n++) {
        struct dsd *s = NULL;
        cmn_alloc_fail_after(n);
        int rc = dsd_create(uv_default_loop(), &cfg, &sink, &s);
        cmn_alloc_fail_reset();
        if (rc == 0) {
            dsd_destroy(s);
            break;
        }
        cr_expect_eq(rc, UV_ENOMEM);
        cr_expect_eq(cmn_alloc_live_bytes(), base, "leak after failure %d",
                     (int)n);
        failures++;
    }
    cr_expect_gt(failures, 5);
    cr_expect_eq(cmn_alloc_live_bytes(), base);
    dsd_config_free(&cfg);
}

#define XS(x) ((x) ^= (x) << 13, (x) ^= (x) >> 7, (x) ^= (x) << 17)

/* Random packets over the protocol's alphabet: no crash, no read outside
 * the packet (run under ASan), and every non-empty line is accounted for
 * exactly once, as an item or as one parse error. */
Test(packet, random_lines_all_accounted)
{
    static const char alpha[] = "ab:|#@Tcdgshm.e{}_,\r\n01-+\\5xnN";
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.parse.origin_detection_client = true;
    struct dsd *s = server(&cfg);
    uint64_t x = 0x9e3779b97f4a7c15ull;
    size_t want_lines = 0;
    for (int iter = 0; iter < 20000; iter++) {
        char pkt[96];
        XS(x);
        size_t len = x % sizeof(pkt);
        /* a heap copy of exactly len bytes, so ASan sees any overread */
        char *p = cmn_malloc(len ? len : 1);
        cr_assert_not_null(p);
        /* valid lines, then a few bytes changed at random */
        static const char *const tpl[] = {
            "m:1|c\n",           "a.b:2.5:3|g|#x:y,z|@0.5\n",
            "s:abc:d|s|T12\r\n", "_e{2,3}:ti|t\\nx|#a\n",
            "_sc|up|1|m:ok\n",   "h:1e3|ms|c:ci-1|card:low\n",
            "d::4::|d|#\n",      "\n",
        };
        size_t i = 0;
        while (i < len) {
            XS(x);
            const char *f = tpl[x % (sizeof(tpl) / sizeof(tpl[0]))];
            for (; *f && i < len; f++)
                pkt[i++] = *f;
        }
        for (int k = (int)(x >> 60) % 3; k > 0 && len > 0; k--) {
            XS(x);
            pkt[x % len] = (x & 0x10000)
                               ? (char)(x >> 24)
                               : alpha[(x >> 24) % (sizeof(alpha) - 1)];
        }
        memcpy(p, pkt, len);
        /* count the non-empty lines the way §1.2 splits them */
        size_t b = 0;
        for (size_t k = 0; k <= len; k++) {
            if (k == len || pkt[k] == '\n') {
                size_t l = k - b;
                if (l > 0 && pkt[k - 1] == '\r')
                    l--;
                want_lines += l > 0;
                b = k + 1;
            }
        }
        dsd_process_packet(s, p, len, false);
        cmn_free(p);
    }
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    uint64_t got = st.metric_lines + st.event_lines + st.service_check_lines;
    for (int e = 0; e < DSD_ERR_MAX; e++)
        got += st.parse_errors[e];
    cr_expect_eq(got, want_lines);
    cr_expect_gt(st.metric_lines, 100,
                 "the generator must produce valid "
                 "lines too (%llu)",
                 (unsigned long long)st.metric_lines);
    dsd_destroy(s);
    dsd_config_free(&cfg);
}
