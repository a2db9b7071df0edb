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
    agg_stop(h->a, th_done, &h->stopped);
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
    th_clear(h);
    agg_config_free(&h->cfg);
    uv_run(&h->loop, UV_RUN_DEFAULT);
    cr_assert_eq(uv_loop_close(&h->loop), 0);
}

/* Decompressed body (malloc'd, NUL-terminated); *len is set. */
static inline char *th_body(const struct fwd_payload *p, size_t *len)
{
    char *out;
    if (strcmp(p->content_encoding, "zstd") == 0) {
        unsigned long long n = ZSTD_getFrameContentSize(p->body, p->len);
        cr_assert(n != ZSTD_CONTENTSIZE_ERROR && n != ZSTD_CONTENTSIZE_UNKNOWN);
        out = malloc(n + 1);
        size_t r = ZSTD_decompress(out, n, p->body, p->len);
        cr_assert(!ZSTD_isError(r));
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
