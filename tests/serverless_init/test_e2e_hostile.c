/*
 * test_e2e_hostile.c - hostile input through the real binary: every case
 * sends its bad lines in the same datagram as a valid control line, from a
 * real child the real serverless-init wraps, to the loopback intake. For
 * each case: the child's exit code comes back, the control arrives exactly,
 * the bad lines have exactly the documented effect (docs/limits.md), the
 * drops are logged, and every payload passes the strict decoder
 * (ti_strict.c: protobuf-c, no unknown fields, valid UTF-8, finite
 * doubles). The sanitizer build runs the same cases: a report in the
 * wrapper's stderr fails them.
 */
#include "e2e.h"

#include <math.h>

#define H_EXIT 3

/* Datagrams written to a frames file for the child's uds-frames op. */
struct frames {
    FILE *f;
    char *buf; /* the datagram being built */
    size_t n, cap;
};

static void fr_open(struct frames *fr, const char *path)
{
    fr->f = fopen(path, "wb");
    cr_assert_not_null(fr->f);
    fr->cap = 65536;
    fr->buf = malloc(fr->cap);
    fr->n = 0;
}

static void fr_add(struct frames *fr, const char *p, size_t n)
{
    cr_assert_leq(fr->n + n, fr->cap);
    memcpy(fr->buf + fr->n, p, n);
    fr->n += n;
}

static void fr_str(struct frames *fr, const char *s)
{
    fr_add(fr, s, strlen(s));
}

/* Ends the datagram being built. */
static void fr_send(struct frames *fr)
{
    unsigned char h[4] = {(unsigned char)fr->n, (unsigned char)(fr->n >> 8),
                          (unsigned char)(fr->n >> 16),
                          (unsigned char)(fr->n >> 24)};
    cr_assert_eq(fwrite(h, 1, 4, fr->f), 4);
    cr_assert_eq(fwrite(fr->buf, 1, fr->n, fr->f), fr->n);
    fr->n = 0;
}

static void fr_close(struct frames *fr)
{
    if (fr->n > 0)
        fr_send(fr);
    fclose(fr->f);
    free(fr->buf);
}

/* Series points named name, whatever their tags (delivered ones). */
static size_t points_named(struct ti *ti, const char *name)
{
    double sum;
    return e2e_delivered_points(ti, name, &sum, NULL);
}

static size_t sketches_named(struct ti *ti, const char *name)
{
    size_t n = 0;
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        if (strcmp(r->path, "/api/beta/sketches") != 0)
            continue;
        Datadog__Agentpayload__SketchPayload *p = ti_decode_sketches(r);
        cr_assert_not_null(p);
        for (size_t s = 0; s < p->n_sketches; s++) {
            if (strcmp(p->sketches[s]->metric, name) == 0)
                n += p->sketches[s]->n_dogsketches;
        }
        datadog__agentpayload__sketch_payload__free_unpacked(p, NULL);
    }
    return n;
}

struct hctx {
    struct ti *ti;
    struct e2e *e;
    const char *err; /* the wrapper's stderr */
};

/* The one point of series name with tags extra (may be "") + the local
 * tags every metric carries. A counter may also get a zero-filled point
 * of the next bucket when a 10 s bucket boundary falls inside the test (a
 * live counter is sent as 0, spec §2.4): one such later zero is allowed. */
static double one_point(const struct hctx *h, const char *name,
                        const char *extra)
{
    static char tags[8192];
    snprintf(tags, sizeof(tags), "%s%s%s", extra, extra[0] ? "," : "",
             h->e->tags);
    struct ti_point pt[4];
    size_t n = ti_series_points(h->ti, name, tags, pt, 4, NULL);
    if (n == 2 && pt[1].value == 0 && pt[1].ts == pt[0].ts + 10)
        n = 1;
    cr_assert_eq(n, 1, "%s {%.200s}: %zu points", name, tags, n);
    return pt[0].value;
}

static void expect_log(const struct hctx *h, const char *needle)
{
    cr_expect(strstr(h->err, needle) != NULL, "stderr lacks \"%s\":\n%.2000s",
              needle, h->err);
}

/* ---- the cases -------------------------------------------------------- */

static void b_hist_tiny_rate(struct frames *fr)
{
    char num[16];
    fr_str(fr, "\nhostile.h:0");
    for (int i = 1; i < 1024; i++) {
        snprintf(num, sizeof(num), ":%d", i);
        fr_str(fr, num);
    }
    fr_str(fr, "|h|@1e-16\n");
}

static void c_hist_tiny_rate(const struct hctx *h)
{
    /* the rate is raised to the floor 1e-6: each sample weighs
     * int64(1/1e-6), and 1 024 of them do not overflow */
    int64_t w = (int64_t)(1.0 / 1e-6);
    cr_expect_eq(one_point(h, "hostile.h.count", ""), (double)(w * 1024) / 10);
    cr_expect_eq(one_point(h, "hostile.h.max", ""), 1023);
    cr_expect_eq(one_point(h, "hostile.h.median", ""), 511);
    cr_expect_eq(one_point(h, "hostile.h.avg", ""), 511.5);
    cr_expect_eq(one_point(h, "hostile.h.95percentile", ""), 972);
    expect_log(h, "raised to the floor");
}

static void b_rate_zero(struct frames *fr)
{
    fr_str(fr, "\nhostile.c0:1|c|@0\nhostile.cneg:1|c|@-1\n"
               "hostile.h0:1|h|@0\nhostile.cok:1|c|@0.5\n");
}

static void c_rate_zero(const struct hctx *h)
{
    cr_expect_eq(points_named(h->ti, "hostile.c0"), 0);
    cr_expect_eq(points_named(h->ti, "hostile.cneg"), 0);
    cr_expect_eq(points_named(h->ti, "hostile.h0.count"), 0);
    cr_expect_eq(one_point(h, "hostile.cok", ""), 0.2);
    expect_log(h, "could not parse dogstatsd sample rate");
}

static void b_counter_overflow(struct frames *fr)
{
    fr_str(fr, "\n");
    for (int i = 0; i < 10; i++)
        fr_str(fr, "hostile.cbig:1e308|c\n");
    fr_str(fr, "hostile.cfin:1e307|c\n");
}

static void c_counter_overflow(const struct hctx *h)
{
    cr_expect_eq(points_named(h->ti, "hostile.cbig"), 0);
    cr_expect_eq(one_point(h, "hostile.cfin", ""), 1e307 / 10);
    expect_log(h, "not finite");
    expect_log(h, "1 points not finite"); /* the report at exit */
}

static void b_dist_overflow(struct frames *fr)
{
    fr_str(fr, "\nhostile.dbig:1e308|d\nhostile.dbig:1e308|d\n"
               "hostile.dfin:5|d\n");
}

static void c_dist_overflow(const struct hctx *h)
{
    cr_expect_eq(sketches_named(h->ti, "hostile.dbig"), 0);
    struct ti_sketch_sum s;
    char tags[600];
    snprintf(tags, sizeof(tags), "%s", h->e->tags);
    cr_expect_eq(ti_sketch_find(h->ti, "hostile.dfin", tags, &s), 1);
    cr_expect_eq(s.cnt, 1);
    cr_expect_eq(s.sum, 5);
    expect_log(h, "not finite");
}

static void b_hist_overflow(struct frames *fr)
{
    fr_str(fr, "\nhostile.hbig:1e308|h\nhostile.hbig:1e308|h\n");
}

static void c_hist_overflow(const struct hctx *h)
{
    /* the sum overflows: .avg is dropped, the rest is exact */
    cr_expect_eq(points_named(h->ti, "hostile.hbig.avg"), 0);
    cr_expect_eq(one_point(h, "hostile.hbig.max", ""), 1e308);
    cr_expect_eq(one_point(h, "hostile.hbig.median", ""), 1e308);
    cr_expect_eq(one_point(h, "hostile.hbig.count", ""), 0.2);
}

static void b_nonfinite_values(struct frames *fr)
{
    fr_str(fr, "\nhostile.g:nan|g\nhostile.g:inf|g\nhostile.g:-inf|g\n"
               "hostile.g2:1:nan:2|g\n");
}

static void c_nonfinite_values(const struct hctx *h)
{
    cr_expect_eq(points_named(h->ti, "hostile.g"), 0);
    cr_expect_eq(one_point(h, "hostile.g2", ""), 2); /* NaN skipped */
    expect_log(h, "NaN/Inf values of hostile.g: not finite");
}

static void b_utf8_name(struct frames *fr)
{
    fr_str(fr, "\nhostile.bad\xff\xfe:1|c\nhostile.ok\xc3\xa9:2|c\n");
}

static void c_utf8_name(const struct hctx *h)
{
    cr_expect_eq(one_point(h, "hostile.bad\xEF\xBF\xBD\xEF\xBF\xBD", ""), 0.1);
    cr_expect_eq(one_point(h, "hostile.ok\xc3\xa9", ""), 0.2);
    expect_log(h, "invalid UTF-8");
}

static void b_utf8_tag(struct frames *fr)
{
    /* a bad continuation, a surrogate, a truncated sequence */
    fr_str(fr, "\nhostile.utf8tag:1|c|#k:\xc3(,ok,\xed\xa0\x80,z:\xe2\x82\n");
}

static void c_utf8_tag(const struct hctx *h)
{
    cr_expect_eq(one_point(h, "hostile.utf8tag",
                           "k:\xEF\xBF\xBD(,ok,"
                           "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD,"
                           "z:\xEF\xBF\xBD\xEF\xBF\xBD"),
                 0.1);
}

static char long_name[320];

static void b_name_300(struct frames *fr)
{
    snprintf(long_name, sizeof(long_name), "hostile.long.");
    size_t n = strlen(long_name);
    memset(long_name + n, 'n', 300 - n);
    long_name[300] = '\0';
    fr_str(fr, "\n");
    fr_str(fr, long_name);
    fr_str(fr, ":4|g\n");
}

static void c_name_300(const struct hctx *h)
{
    cr_expect_eq(one_point(h, long_name, ""), 4);
}

/* One datagram of exactly 65 507 bytes (the largest UDP payload): the
 * control line, then one line with 2 000 tags, padded to the size. */
static void b_tags_2000(struct frames *fr)
{
    char t[32];
    fr_str(fr, "\nhostile.wide2000:1|c|#");
    for (int i = 0; i < 2000; i++) {
        snprintf(t, sizeof(t), "%st%04d", i ? "," : "", i);
        fr_str(fr, t);
    }
    fr_str(fr, ",pad:");
    cr_assert_lt(fr->n, 65507);
    while (fr->n < 65507)
        fr_str(fr, "p");
}

static void c_tags_2000(const struct hctx *h)
{
    cr_expect_eq(points_named(h->ti, "hostile.wide2000"), 0);
    expect_log(h, "more tags than the per-line cap");
    expect_log(h, "1 samples over a cap (docs/limits.md)"); /* at exit */
}

/* 1 000 lines of one counter with 200 tags each, the tags rotated by the
 * line number: one context, counted exactly. */
static void b_lines_1000x200(struct frames *fr)
{
    static char line[4096];
    fr_send(fr); /* the control datagram */
    for (int l = 0; l < 1000; l++) {
        size_t n = (size_t)snprintf(line, sizeof(line), "hostile.many:1|c|#");
        for (int k = 0; k < 200; k++)
            n += (size_t)snprintf(line + n, sizeof(line) - n, "%sa%03d",
                                  k ? "," : "", (k + l) % 200);
        line[n++] = '\n';
        if (fr->n + n > 8192) /* the default dogstatsd_buffer_size */
            fr_send(fr);
        fr_add(fr, line, n);
    }
}

static void c_lines_1000x200(const struct hctx *h)
{
    static char tags[2048];
    size_t n = 0;
    for (int k = 0; k < 200; k++)
        n += (size_t)snprintf(tags + n, sizeof(tags) - n, "%sa%03d",
                              k ? "," : "", k);
    cr_expect_eq(one_point(h, "hostile.many", tags), 100);
}

static void b_values_over_cap(struct frames *fr)
{
    fr_str(fr, "\nhostile.vals:1");
    for (int i = 0; i < 1024; i++)
        fr_str(fr, ":1");
    fr_str(fr, "|c\n");
}

static void c_values_over_cap(const struct hctx *h)
{
    cr_expect_eq(points_named(h->ti, "hostile.vals"), 0);
    expect_log(h, "too many values in one line");
}

struct hcase {
    const char *id;
    void (*build)(struct frames *fr); /* after the control line */
    void (*check)(const struct hctx *h);
    const char *env; /* one extra variable, or NULL */
};

static const struct hcase cases[] = {
    {"hist_tiny_rate", b_hist_tiny_rate, c_hist_tiny_rate, NULL},
    {"rate_zero", b_rate_zero, c_rate_zero, NULL},
    {"counter_overflow", b_counter_overflow, c_counter_overflow, NULL},
    {"dist_overflow", b_dist_overflow, c_dist_overflow, NULL},
    {"hist_overflow", b_hist_overflow, c_hist_overflow, NULL},
    {"nonfinite_values", b_nonfinite_values, c_nonfinite_values, NULL},
    {"utf8_name", b_utf8_name, c_utf8_name, NULL},
    {"utf8_tag", b_utf8_tag, c_utf8_tag, NULL},
    {"name_300", b_name_300, c_name_300, NULL},
    {"tags_2000_64k", b_tags_2000, c_tags_2000,
     "DD_DOGSTATSD_BUFFER_SIZE=65535"},
    {"lines_1000x200", b_lines_1000x200, c_lines_1000x200, NULL},
    {"values_over_cap", b_values_over_cap, c_values_over_cap, NULL},
};

static void run_case(const struct hcase *c)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DD_DOGSTATSD_SOCKET=%s/dsd.sock", e.dir);
    if (c->env != NULL)
        e2e_env(&e, "%s", c->env);
    char path[128], ctl[128];
    snprintf(path, sizeof(path), "%s/frames", e.dir);
    snprintf(ctl, sizeof(ctl), "hostile.control:1|c|#case:%s", c->id);
    struct frames fr;
    fr_open(&fr, path);
    fr_str(&fr, ctl);
    c->build(&fr);
    fr_close(&fr);

    const char *args[] = {e.child, "uds-frames", path, "exit", "3", NULL};
    int code = e2e_run(&e, args, 60000);
    static char err[65536];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, H_EXIT, "%s: exit %d, stderr:\n%.3000s", c->id, code,
                 err);
    cr_expect(strstr(err, "runtime error") == NULL &&
                  strstr(err, "Sanitizer") == NULL,
              "%s: sanitizer report:\n%.3000s", c->id, err);
    char why[256];
    size_t bad = ti_strict_check_all(ti, why, sizeof(why));
    cr_expect_eq(bad, 0, "%s: %zu payloads fail the strict decoder: %s", c->id,
                 bad, why);

    struct hctx h = {ti, &e, err};
    char tag[64];
    snprintf(tag, sizeof(tag), "case:%s", c->id);
    cr_expect_eq(one_point(&h, "hostile.control", tag), 0.1, "%s: control",
                 c->id);
    c->check(&h);

    unlink(path);
    snprintf(path, sizeof(path), "%s/dsd.sock", e.dir);
    unlink(path);
    e2e_fini(&e);
    ti_stop(ti);
}

#define HOSTILE_TEST(i, name)                                                  \
    Test(e2e_hostile, name, .timeout = 120)                                    \
    {                                                                          \
        cr_assert_str_eq(cases[i].id, #name);                                  \
        run_case(&cases[i]);                                                   \
    }

HOSTILE_TEST(0, hist_tiny_rate)
HOSTILE_TEST(1, rate_zero)
HOSTILE_TEST(2, counter_overflow)
HOSTILE_TEST(3, dist_overflow)
HOSTILE_TEST(4, hist_overflow)
HOSTILE_TEST(5, nonfinite_values)
HOSTILE_TEST(6, utf8_name)
HOSTILE_TEST(7, utf8_tag)
HOSTILE_TEST(8, name_300)
HOSTILE_TEST(9, tags_2000_64k)
HOSTILE_TEST(10, lines_1000x200)
HOSTILE_TEST(11, values_over_cap)
