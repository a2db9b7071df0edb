/*
 * agg_test_util.h - helpers for the aggregator tests: a harness with a
 * controlled clock, a submit function that keeps every payload, and
 * decoders (zstd / zlib / none, then protobuf-c or jansson) so tests check
 * the real payloads.
 */
#ifndef AGG_TEST_UTIL_H
#define AGG_TEST_UTIL_H

#include <criterion/criterion.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>
#include <zlib.h>
#include <zstd.h>

#include "agent_payload.pb-c.h"
#include "aggregator.h"

#define TH_MAXP 512

typedef Datadog__Agentpayload__MetricPayload MPayload;
typedef Datadog__Agentpayload__MetricPayload__MetricSeries MSeries;
typedef Datadog__Agentpayload__SketchPayload SPayload;
typedef Datadog__Agentpayload__SketchPayload__Sketch SSketch;

struct th {
    uv_loop_t loop;
    struct agg_config cfg;
    struct agg *a;
    double now;
    struct fwd_payload *p[TH_MAXP];
    size_t np;
    MPayload *mp[TH_MAXP]; /* decoded series payloads */
    size_t nmp;
    SPayload *sp[TH_MAXP];
    size_t nsp;
    int flushed;
    int stopped;
    char *rlog; /* th_create_records: one line per record (malloc'd) */
    size_t rlen, rcap;
    uint64_t nrec; /* records received */
};

static inline void th_submit(void *data, struct fwd_payload *p)
{
    struct th *h = data;
    cr_assert_lt(h->np, TH_MAXP);
    h->p[h->np++] = p;
}

static inline double th_clock(void *data)
{
    return ((struct th *)data)->now;
}

/* Defaults for tests: fixed hostname, no compression. */
static inline void th_setup(struct th *h)
{
    memset(h, 0, sizeof(*h));
    cr_assert_eq(uv_loop_init(&h->loop), 0);
    agg_config_defaults(&h->cfg);
    cmn_free(h->cfg.hostname);
    h->cfg.hostname = cmn_strdup("myhost");
    h->cfg.compressor = AGG_COMPRESS_NONE;
    h->now = 1000000.0;
}

static inline void th_create(struct th *h)
{
    cr_assert_eq(agg_create(&h->loop, &h->cfg, th_submit, h, &h->a), 0);
    agg_set_clock(h->a, th_clock, h);
}

/* ---- a record sink (agg_set_record_sink) that logs what it gets ---- */

__attribute__((format(printf, 2, 3))) static inline void
th_log(struct th *h, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    cr_assert_geq(n, 0);
    if (h->rlen + (size_t)n + 1 > h->rcap) {
        h->rcap = (h->rlen + (size_t)n + 1) * 2;
        h->rlog = realloc(h->rlog, h->rcap);
        cr_assert_not_null(h->rlog);
    }
    va_start(ap, fmt);
    vsnprintf(h->rlog + h->rlen, (size_t)n + 1, fmt, ap);
    va_end(ap);
    h->rlen += (size_t)n;
}

static inline void th_log_tags(struct th *h, const struct cmn_slice *t,
                               size_t n)
{
    th_log(h, " [");
    for (size_t i = 0; i < n; i++)
        th_log(h, "%s%.*s", i ? "," : "", (int)t[i].len, t[i].p);
    th_log(h, "]");
}

static inline void th_rec_series(void *data, const struct agg_series_rec *r)
{
    struct th *h = data;
    h->nrec++;
    th_log(h, "S %.*s%s host=%.*s", (int)r->name.len, r->name.p, r->suffix,
           (int)r->host.len, r->host.p);
    if (r->device.p != NULL)
        th_log(h, " device=%.*s", (int)r->device.len, r->device.p);
    th_log_tags(h, r->tags, r->ntags);
    th_log(h, " type=%d interval=%lld", (int)r->type, (long long)r->interval);
    for (size_t i = 0; i < r->npoints; i++)
        th_log(h, " %lld:%.17g", (long long)r->points[i].ts, r->points[i].v);
    th_log(h, "\n");
}

static inline void th_rec_sketch(void *data, const struct agg_sketch_rec *r)
{
    struct th *h = data;
    h->nrec++;
    th_log(h, "K %.*s host=%.*s", (int)r->name.len, r->name.p, (int)r->host.len,
           r->host.p);
    th_log_tags(h, r->tags, r->ntags);
    th_log(h,
           " %lld cnt=%lld min=%g max=%g sum=%g avg=%g p50=%.17g p99=%.17g\n",
           (long long)r->ts, (long long)r->cnt, r->min, r->max, r->sum, r->avg,
           r->p50, r->p99);
}

static inline void th_rec_event(void *data, const struct agg_event_rec *r)
{
    struct th *h = data;
    h->nrec++;
    th_log(h, "E %.*s|%.*s host=%.*s key=%.*s src=%.*s ts=%lld p=%d a=%d",
           (int)r->title.len, r->title.p, (int)r->text.len, r->text.p,
           (int)r->host.len, r->host.p, (int)r->aggregation_key.len,
           r->aggregation_key.p, (int)r->source_type_name.len,
           r->source_type_name.p, (long long)r->ts, (int)r->priority,
           (int)r->alert_type);
    th_log_tags(h, r->tags, r->ntags);
    th_log(h, "\n");
}

static inline void th_rec_check(void *data, const struct agg_check_rec *r)
{
    struct th *h = data;
    h->nrec++;
    th_log(h, "C %.*s host=%.*s msg=%.*s status=%d ts=%lld", (int)r->name.len,
           r->name.p, (int)r->host.len, r->host.p, (int)r->message.len,
           r->message.p, r->status, (long long)r->ts);
    th_log_tags(h, r->tags, r->ntags);
    th_log(h, "\n");
}

static inline void th_rec_flushed(void *data)
{
    th_log(data, "F\n");
}

/* Creates the aggregator with a record sink instead of payloads. */
static inline void th_create_records(struct th *h)
{
    struct agg_record_sink rs = {th_rec_series, th_rec_sketch,  th_rec_event,
                                 th_rec_check,  th_rec_flushed, h};
    cr_assert_eq(agg_create(&h->loop, &h->cfg, NULL, NULL, &h->a), 0);
    agg_set_record_sink(h->a, &rs);
    agg_set_clock(h->a, th_clock, h);
}

static inline void th_done(void *data)
{
    (*(int *)data)++;
}

/* Flushes and runs the loop until the flush's payloads are submitted. */
static inline void th_flush(struct th *h, bool force)
{
    int before = h->flushed;
    cr_assert_eq(agg_flush(h->a, force, th_done, &h->flushed), 0);
    while (h->flushed == before)
        uv_run(&h->loop, UV_RUN_ONCE);
}

static inline void th_free_decoded(struct th *h)
{
    for (size_t i = 0; i < h->nmp; i++)
        datadog__agentpayload__metric_payload__free_unpacked(h->mp[i], NULL);
    for (size_t i = 0; i < h->nsp; i++)
        datadog__agentpayload__sketch_payload__free_unpacked(h->sp[i], NULL);
    h->nmp = h->nsp = 0;
}

static inline void th_clear(struct th *h)
{
    th_free_decoded(h);
    for (size_t i = 0; i < h->np; i++)
        fwd_payload_free(h->p[i]);
    h->np = 0;
}

/* Stops, destroys and closes the loop (asserting it closes cleanly). */
static inline void th_stop(struct th *h)
{
    agg_stop(h->a, CMN_NO_DEADLINE, th_done, &h->stopped);
    while (!h->stopped)
        uv_run(&h->loop, UV_RUN_ONCE);
    cr_assert_eq(h->stopped, 1);
    agg_destroy(h->a);
    h->a = NULL;
}

static inline void th_teardown(struct th *h)
{
    if (h->a)
        th_stop(h);
    free(h->rlog);
    h->rlog = NULL;
    h->rlen = h->rcap = 0;
    th_clear(h);
    agg_config_free(&h->cfg);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&h->loop), 0);
}

/* A suite whose tests share one harness `h`, set up and torn down around
 * each test with nothing else. */
#define TH_SUITE(name)                                                         \
    static struct th h;                                                        \
    static void th_suite_setup(void)                                           \
    {                                                                          \
        th_setup(&h);                                                          \
    }                                                                          \
    static void th_suite_teardown(void)                                        \
    {                                                                          \
        th_teardown(&h);                                                       \
    }                                                                          \
    TestSuite(name, .init = th_suite_setup, .fini = th_suite_teardown)

/* Decompressed body (malloc'd, NUL-terminated); *len is set. */
static inline char *th_body(const struct fwd_payload *p, size_t *len)
{
    char *out;
    if (strcmp(p->content_encoding, "zstd") == 0) {
        /* a streamed frame does not carry its content size (as the
         * Agent's streaming compressor): raw_len is what it must give */
        size_t n = p->raw_len;
        out = malloc(n + 1);
        size_t r = ZSTD_decompress(out, n, p->body, p->len);
        cr_assert(!ZSTD_isError(r), "%s", ZSTD_getErrorName(r));
        cr_assert_eq(r, n, "decompressed %zu bytes, raw_len %zu", r, n);
        *len = r;
    } else if (strcmp(p->content_encoding, "deflate") == 0) {
        uLongf n = p->raw_len;
        out = malloc(n + 1);
        cr_assert_eq(uncompress((Bytef *)out, &n, p->body, p->len), Z_OK);
        *len = n;
    } else {
        cr_assert_str_eq(p->content_encoding, "identity");
        out = malloc(p->len + 1);
        memcpy(out, p->body, p->len);
        *len = p->len;
    }
    cr_assert_eq(*len, p->raw_len);
    out[*len] = '\0';
    return out;
}

/* Decodes every captured series and sketch payload (v2 protobuf). */
static inline void th_decode(struct th *h)
{
    th_free_decoded(h);
    for (size_t i = 0; i < h->np; i++) {
        size_t len;
        char *b = th_body(h->p[i], &len);
        if (h->p[i]->kind == FWD_KIND_SERIES &&
            strcmp(h->p[i]->route, "/api/v2/series") == 0) {
            cr_assert_str_eq(h->p[i]->content_type, "application/x-protobuf");
            MPayload *m = datadog__agentpayload__metric_payload__unpack(
                NULL, len, (uint8_t *)b);
            cr_assert_not_null(m);
            h->mp[h->nmp++] = m;
        } else if (h->p[i]->kind == FWD_KIND_SKETCHES) {
            SPayload *s = datadog__agentpayload__sketch_payload__unpack(
                NULL, len, (uint8_t *)b);
            cr_assert_not_null(s);
            h->sp[h->nsp++] = s;
        }
        free(b);
    }
}

static inline size_t th_nseries(struct th *h)
{
    size_t n = 0;
    for (size_t i = 0; i < h->nmp; i++)
        n += h->mp[i]->n_series;
    return n;
}

/* The only series named name (asserts there is exactly one). */
static inline MSeries *th_series(struct th *h, const char *name)
{
    MSeries *found = NULL;
    for (size_t i = 0; i < h->nmp; i++) {
        for (size_t k = 0; k < h->mp[i]->n_series; k++) {
            MSeries *s = h->mp[i]->series[k];
            if (strcmp(s->metric, name) == 0) {
                cr_assert_null(found, "two series named %s", name);
                found = s;
            }
        }
    }
    return found;
}

static inline SSketch *th_sketch(struct th *h, const char *name)
{
    SSketch *found = NULL;
    for (size_t i = 0; i < h->nsp; i++) {
        for (size_t k = 0; k < h->sp[i]->n_sketches; k++) {
            SSketch *s = h->sp[i]->sketches[k];
            if (strcmp(s->metric, name) == 0) {
                cr_assert_null(found, "two sketches named %s", name);
                found = s;
            }
        }
    }
    return found;
}

/* Adds one line: values is a list of n doubles. */
static inline int th_add(struct th *h, const char *name, const char *tags,
                         enum agg_mtype type, const double *values, size_t n,
                         double rate, int64_t ts)
{
    struct agg_metric m = {0};
    m.name = cmn_slice_cstr(name);
    m.tags = tags ? cmn_slice_cstr(tags) : cmn_slice(NULL, 0);
    m.type = type;
    m.values = values;
    m.nvalues = n;
    m.rate = rate;
    m.timestamp = ts;
    return agg_add_metric(h->a, &m);
}

static inline int th_add1(struct th *h, const char *name, const char *tags,
                          enum agg_mtype type, double v)
{
    return th_add(h, name, tags, type, &v, 1, 1.0, 0);
}

static inline int th_set(struct th *h, const char *name, const char *tags,
                         const char *member)
{
    struct agg_metric m = {0};
    m.name = cmn_slice_cstr(name);
    m.tags = tags ? cmn_slice_cstr(tags) : cmn_slice(NULL, 0);
    m.type = AGG_SET;
    m.set_member = cmn_slice_cstr(member);
    m.rate = 1;
    return agg_add_metric(h->a, &m);
}

/* Joins a series' tags with ',' into buf. */
static inline const char *th_tags(const MSeries *s, char *buf, size_t len)
{
    size_t w = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < s->n_tags; i++)
        w += (size_t)snprintf(buf + w, len - w, "%s%s", i ? "," : "",
                              s->tags[i]);
    return buf;
}

#endif /* AGG_TEST_UTIL_H */
