/*
 * lc_local.c - the local sink: what drainpipe does with payloads when no
 * API key is set. It decodes each payload exactly as the intake would
 * (zstd / deflate / identity; protobuf MetricPayload and SketchPayload, v1
 * JSON series, events and service-check JSON) and either appends one JSON
 * line per series point, sketch point, event and service check to a file,
 * or keeps one summary row per (type, metric, tags) and prints them when
 * it stops: one block per metric, sorted by name, with the full name and
 * tags, then totals and every drop by cause.
 *
 * Invariant: every payload handed to lc_local_submit is freed before the
 * call returns and counted exactly once (decoded, decode error or dropped
 * after stop). The summary table holds at most LC_LOCAL_ROWS_MAX rows;
 * rows past it are counted in dropped_cap, never grown.
 *
 * Writes are synchronous on the loop thread (a developer aid, small
 * volumes); decompression is capped at LC_LOCAL_RAW_MAX bytes.
 */
#include "lifecycle.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include <jansson.h>
#include <zlib.h>
#include <zstd.h>

#include "agent_payload.pb-c.h"
#include "ddsketch.h"

#define COMP "local-sink"

#define LC_LOCAL_RAW_MAX (64u << 20) /* decompressed payload cap */
#define LC_LOCAL_ROWS_MAX 8192       /* summary rows */
#define LC_LOCAL_SLOTS 16384         /* hash slots, power of two > rows */
#define LC_LOCAL_VALUE_MAX 64
#define LC_LOCAL_TAGS_MAX 16384 /* bytes of one item's joined tags shown */

struct row {
    char *key;        /* owned: type \0 metric \0 tags (NUL-joined) */
    const char *type; /* static */
    char *metric;     /* points into key */
    char *tags;       /* owned: "a:b,c:d" or "-" */
    uint64_t points;
    char value[LC_LOCAL_VALUE_MAX];
};

struct lc_local {
    uv_loop_t *loop;
    char *path;    /* owned or NULL */
    FILE *file;    /* open between start and stop */
    FILE *summary; /* borrowed; stderr by default */
    bool started, stopped;
    struct row *rows; /* owned, LC_LOCAL_ROWS_MAX, insertion order */
    uint32_t nrows;
    int32_t *slots; /* owned, LC_LOCAL_SLOTS: row index + 1, 0 = empty */
    struct lc_local_stats stats;
    lc_local_drops_fn drops_fn; /* the pipeline's drop counters, or NULL */
    void *drops_data;
};

/* ------------------------------------------------------------------------
 * Decompression into a bounded buffer
 */
static int inflate_all(const unsigned char *in, size_t len, struct cmn_buf *out)
{
    z_stream zs;
    memset(&zs, 0, sizeof(zs));
    if (inflateInit(&zs) != Z_OK)
        return UV_ENOMEM;
    zs.next_in = (unsigned char *)in;
    zs.avail_in = (uInt)len;
    int rc = 0, zrc = Z_OK;
    while (zrc != Z_STREAM_END) {
        rc = cmn_buf_reserve(out, 64 * 1024);
        if (rc != 0)
            break;
        zs.next_out = (unsigned char *)out->p + out->len;
        zs.avail_out = (uInt)(out->cap - out->len);
        zrc = inflate(&zs, Z_NO_FLUSH);
        out->len = out->cap - zs.avail_out;
        if (zrc != Z_OK && zrc != Z_STREAM_END) {
            rc = CMN_EPARSE;
            break;
        }
        if (zrc == Z_OK && zs.avail_in == 0 && zs.avail_out != 0) {
            rc = CMN_EPARSE; /* truncated stream */
            break;
        }
    }
    inflateEnd(&zs);
    return rc;
}

static int unzstd_all(const unsigned char *in, size_t len, struct cmn_buf *out)
{
    ZSTD_DStream *zs = ZSTD_createDStream();
    if (zs == NULL)
        return UV_ENOMEM;
    ZSTD_inBuffer ib = {in, len, 0};
    int rc = 0;
    size_t zrc = 1;
    while (ib.pos < ib.size || zrc != 0) {
        rc = cmn_buf_reserve(out, 64 * 1024);
        if (rc != 0)
            break;
        ZSTD_outBuffer ob = {out->p + out->len, out->cap - out->len, 0};
        size_t before_in = ib.pos;
        zrc = ZSTD_decompressStream(zs, &ob, &ib);
        out->len += ob.pos;
        if (ZSTD_isError(zrc)) {
            rc = CMN_EPARSE;
            break;
        }
        if (zrc != 0 && ib.pos == ib.size && ob.pos == 0 &&
            before_in == ib.pos) {
            rc = CMN_EPARSE; /* truncated frame */
            break;
        }
    }
    ZSTD_freeDStream(zs);
    return rc;
}

/* Decodes p's body into out (which then owns a copy) per its encoding. */
static int decompress(const struct fwd_payload *p, struct cmn_buf *out)
{
    cmn_buf_init(out, LC_LOCAL_RAW_MAX);
    const char *enc = p->content_encoding ? p->content_encoding : "identity";
    if (strcmp(enc, "zstd") == 0)
        return unzstd_all(p->body, p->len, out);
    if (strcmp(enc, "deflate") == 0)
        return inflate_all(p->body, p->len, out);
    if (p->len == 0)
        return 0;
    return cmn_buf_append(out, p->body, p->len);
}

/* ------------------------------------------------------------------------
 * Summary rows
 */
static uint64_t fnv1a(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The row for (type, metric, tags) or NULL when the table is full (counted)
 * or memory ran out. */
static struct row *row_get(struct lc_local *l, const char *type,
                           const char *metric, const char *tags)
{
    size_t tl = strlen(type), ml = strlen(metric), gl = strlen(tags);
    size_t klen = tl + 1 + ml + 1 + gl;
    char *key = cmn_malloc(klen + 1);
    if (key == NULL) {
        l->stats.write_errors++;
        return NULL;
    }
    memcpy(key, type, tl + 1);
    memcpy(key + tl + 1, metric, ml + 1);
    memcpy(key + tl + 1 + ml + 1, tags, gl + 1);
    uint64_t h = fnv1a(key, klen);
    for (uint32_t i = 0; i < LC_LOCAL_SLOTS; i++) {
        uint32_t s = (uint32_t)((h + i) & (LC_LOCAL_SLOTS - 1));
        int32_t idx = l->slots[s] - 1;
        if (idx < 0) {
            if (l->nrows >= LC_LOCAL_ROWS_MAX) {
                l->stats.dropped_cap++;
                cmn_free(key);
                return NULL;
            }
            struct row *r = &l->rows[l->nrows];
            memset(r, 0, sizeof(*r));
            r->tags = cmn_strdup(gl ? tags : "-");
            if (r->tags == NULL) {
                l->stats.write_errors++;
                cmn_free(key);
                return NULL;
            }
            r->key = key;
            r->type = type;
            r->metric = key + tl + 1;
            l->slots[s] = (int32_t)++l->nrows;
            return r;
        }
        struct row *r = &l->rows[idx];
        if (memcmp(r->key, key, klen + 1) == 0) {
            cmn_free(key);
            return r;
        }
    }
    cmn_free(key);
    return NULL;
}

/* "a,b,c" from a tag array, into buf (truncated at its size). */
static void join_tags(char *buf, size_t size, char **tags, size_t n)
{
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < n && off + 1 < size; i++) {
        int w = snprintf(buf + off, size - off, "%s%s", i ? "," : "",
                         tags[i] ? tags[i] : "");
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

static void join_json_tags(char *buf, size_t size, json_t *tags)
{
    size_t off = 0, i;
    json_t *t;
    buf[0] = '\0';
    json_array_foreach(tags, i, t)
    {
        if (off + 1 >= size)
            break;
        int w = snprintf(buf + off, size - off, "%s%s", i ? "," : "",
                         json_is_string(t) ? json_string_value(t) : "");
        if (w < 0)
            break;
        off += (size_t)w;
    }
}

/* ------------------------------------------------------------------------
 * Output: one JSON line, or a summary row update
 */
static void write_line(struct lc_local *l, json_t *obj)
{
    char stackbuf[4096];
    size_t need = json_dumpb(obj, stackbuf, sizeof(stackbuf), JSON_COMPACT);
    char *heap = NULL;
    const char *out = stackbuf;
    if (need == 0) {
        l->stats.write_errors++;
        return;
    }
    if (need > sizeof(stackbuf)) {
        heap = cmn_malloc(need);
        if (heap == NULL) {
            l->stats.write_errors++;
            return;
        }
        (void)json_dumpb(obj, heap, need, JSON_COMPACT);
        out = heap;
    }
    if (fwrite(out, 1, need, l->file) != need || fputc('\n', l->file) == EOF)
        l->stats.write_errors++;
    cmn_free(heap);
}

static json_t *tags_json(char **tags, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        json_array_append_new(a, json_string(tags[i] ? tags[i] : ""));
    return a;
}

static const char *series_kind(int t)
{
    switch (t) {
    case DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_TYPE__COUNT:
        return "count";
    case DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_TYPE__RATE:
        return "rate";
    case DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_TYPE__GAUGE:
        return "gauge";
    default:
        return "unspecified";
    }
}

/* One series point from either encoding. */
static void emit_point(struct lc_local *l, const char *metric, char **tags,
                       size_t ntags, json_t *jtags, const char *kind,
                       int64_t interval, int64_t ts, double value)
{
    l->stats.series_points++;
    if (l->file != NULL) {
        json_t *o = json_object();
        json_t *pt = json_array();
        json_array_append_new(pt, json_integer(ts));
        json_array_append_new(pt, json_real(value));
        json_t *pts = json_array();
        json_array_append_new(pts, pt);
        json_object_set_new(o, "type", json_string("series"));
        json_object_set_new(o, "metric", json_string(metric));
        json_object_set_new(
            o, "tags", jtags ? json_incref(jtags) : tags_json(tags, ntags));
        json_object_set_new(o, "points", pts);
        json_object_set_new(o, "kind", json_string(kind));
        json_object_set_new(o, "interval", json_integer(interval));
        write_line(l, o);
        json_decref(o);
        return;
    }
    char tagbuf[LC_LOCAL_TAGS_MAX];
    if (jtags != NULL)
        join_json_tags(tagbuf, sizeof(tagbuf), jtags);
    else
        join_tags(tagbuf, sizeof(tagbuf), tags, ntags);
    struct row *r = row_get(l, kind, metric, tagbuf);
    if (r == NULL)
        return;
    r->points++;
    snprintf(r->value, sizeof(r->value), "%.10g", value);
}

static int decode_series_pb(struct lc_local *l, const struct cmn_buf *raw,
                            ProtobufCAllocator *alloc)
{
    Datadog__Agentpayload__MetricPayload *mp =
        datadog__agentpayload__metric_payload__unpack(alloc, raw->len,
                                                      (const uint8_t *)raw->p);
    if (mp == NULL)
        return CMN_EPARSE;
    for (size_t i = 0; i < mp->n_series; i++) {
        Datadog__Agentpayload__MetricPayload__MetricSeries *s = mp->series[i];
        for (size_t j = 0; j < s->n_points; j++)
            emit_point(l, s->metric ? s->metric : "", s->tags, s->n_tags, NULL,
                       series_kind(s->type), s->interval,
                       s->points[j]->timestamp, s->points[j]->value);
    }
    datadog__agentpayload__metric_payload__free_unpacked(mp, alloc);
    return 0;
}

/* A static name for a v1 series type (summary rows keep the pointer). */
static const char *static_kind(const char *k)
{
    static const char *const kinds[] = {"gauge", "rate", "count"};
    for (size_t i = 0; k != NULL && i < 3; i++)
        if (strcmp(k, kinds[i]) == 0)
            return kinds[i];
    return "unspecified";
}

static int decode_series_json(struct lc_local *l, json_t *root)
{
    json_t *series = json_object_get(root, "series");
    if (!json_is_array(series))
        return CMN_EPARSE;
    size_t i, j;
    json_t *s, *pt;
    json_array_foreach(series, i, s)
    {
        const char *metric = json_string_value(json_object_get(s, "metric"));
        const char *kind =
            static_kind(json_string_value(json_object_get(s, "type")));
        json_t *tags = json_object_get(s, "tags");
        json_t *empty = NULL;
        if (!json_is_array(tags))
            tags = empty = json_array();
        json_int_t interval =
            json_integer_value(json_object_get(s, "interval"));
        json_array_foreach(json_object_get(s, "points"), j, pt)
        {
            emit_point(l, metric ? metric : "", NULL, 0, tags, kind, interval,
                       json_integer_value(json_array_get(pt, 0)),
                       json_number_value(json_array_get(pt, 1)));
        }
        json_decref(empty);
    }
    return 0;
}

/* The q-quantile of a dogsketch, as agg_sketch_quantile computes it. */
static double dogsketch_quantile(
    const Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *d, double q)
{
    if (d->cnt <= 0)
        return NAN;
    if (q <= 0)
        return d->min;
    if (q >= 1)
        return d->max;
    double rank = rint(q * (double)(d->cnt - 1));
    double seen = 0;
    size_t n = d->n_k < d->n_n ? d->n_k : d->n_n;
    for (size_t i = 0; i < n; i++) {
        seen += d->n[i];
        if (seen > rank) {
            int32_t k = d->k[i];
            if (k > INT16_MAX)
                k = INT16_MAX;
            if (k < -INT16_MAX)
                k = -INT16_MAX;
            double v = agg_sketch_key_lower((int16_t)k);
            return v < d->min ? d->min : v > d->max ? d->max : v;
        }
    }
    return d->max;
}

static int decode_sketches(struct lc_local *l, const struct cmn_buf *raw,
                           ProtobufCAllocator *alloc)
{
    Datadog__Agentpayload__SketchPayload *sp =
        datadog__agentpayload__sketch_payload__unpack(alloc, raw->len,
                                                      (const uint8_t *)raw->p);
    if (sp == NULL)
        return CMN_EPARSE;
    for (size_t i = 0; i < sp->n_sketches; i++) {
        Datadog__Agentpayload__SketchPayload__Sketch *s = sp->sketches[i];
        const char *metric = s->metric ? s->metric : "";
        for (size_t j = 0; j < s->n_dogsketches; j++) {
            const Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *d =
                s->dogsketches[j];
            double p50 = dogsketch_quantile(d, 0.5);
            double p99 = dogsketch_quantile(d, 0.99);
            l->stats.sketch_points++;
            if (l->file != NULL) {
                json_t *o = json_object();
                json_object_set_new(o, "type", json_string("sketch"));
                json_object_set_new(o, "metric", json_string(metric));
                json_object_set_new(o, "tags", tags_json(s->tags, s->n_tags));
                json_object_set_new(o, "ts", json_integer(d->ts));
                json_object_set_new(o, "cnt", json_integer(d->cnt));
                json_object_set_new(o, "min", json_real(d->min));
                json_object_set_new(o, "max", json_real(d->max));
                json_object_set_new(o, "sum", json_real(d->sum));
                json_object_set_new(o, "avg", json_real(d->avg));
                json_object_set_new(o, "p50", json_real(p50));
                json_object_set_new(o, "p99", json_real(p99));
                write_line(l, o);
                json_decref(o);
                continue;
            }
            char tagbuf[LC_LOCAL_TAGS_MAX];
            join_tags(tagbuf, sizeof(tagbuf), s->tags, s->n_tags);
            struct row *r = row_get(l, "distribution", metric, tagbuf);
            if (r == NULL)
                continue;
            r->points++;
            snprintf(r->value, sizeof(r->value),
                     "cnt=%lld min=%g p50=%g max=%g", (long long)d->cnt, d->min,
                     p50, d->max);
        }
    }
    datadog__agentpayload__sketch_payload__free_unpacked(sp, alloc);
    return 0;
}

/* An event or service check object: written as is with a "type" first. */
static void emit_json_item(struct lc_local *l, const char *line_type,
                           const char *type, json_t *item,
                           const char *name_field, const char *value_field)
{
    if (l->file != NULL) {
        json_t *o = json_object();
        json_object_set_new(o, "type", json_string(line_type));
        json_object_update(o, item);
        write_line(l, o);
        json_decref(o);
        return;
    }
    const char *name = json_string_value(json_object_get(item, name_field));
    char tagbuf[LC_LOCAL_TAGS_MAX];
    json_t *tags = json_object_get(item, "tags");
    if (json_is_array(tags))
        join_json_tags(tagbuf, sizeof(tagbuf), tags);
    else
        tagbuf[0] = '\0';
    struct row *r = row_get(l, type, name ? name : "", tagbuf);
    if (r == NULL)
        return;
    r->points++;
    json_t *v = json_object_get(item, value_field);
    if (json_is_string(v))
        snprintf(r->value, sizeof(r->value), "%s", json_string_value(v));
    else if (json_is_integer(v)) {
        static const char *const st[] = {"OK", "WARNING", "CRITICAL",
                                         "UNKNOWN"};
        json_int_t s = json_integer_value(v);
        snprintf(r->value, sizeof(r->value), "%s",
                 s >= 0 && s <= 3 ? st[s] : "?");
    }
}

static int decode_events(struct lc_local *l, json_t *root)
{
    json_t *groups = json_object_get(root, "events");
    if (!json_is_object(groups))
        return CMN_EPARSE;
    const char *src;
    json_t *list, *e;
    size_t i;
    json_object_foreach(groups, src, list)
    {
        json_array_foreach(list, i, e)
        {
            l->stats.events++;
            emit_json_item(l, "event", "event", e, "msg_title", "msg_text");
        }
    }
    return 0;
}

static int decode_checks(struct lc_local *l, json_t *root)
{
    if (!json_is_array(root))
        return CMN_EPARSE;
    size_t i;
    json_t *c;
    json_array_foreach(root, i, c)
    {
        l->stats.service_checks++;
        emit_json_item(l, "service_check", "check", c, "check", "status");
    }
    return 0;
}

static void *pb_alloc(void *data, size_t size)
{
    return cmn_malloc(size ? size : 1);
}

static void pb_free(void *data, void *p)
{
    cmn_free(p);
}

static int decode(struct lc_local *l, const struct fwd_payload *p)
{
    struct cmn_buf raw;
    int rc = decompress(p, &raw);
    if (rc != 0)
        goto out_free_raw;
    ProtobufCAllocator alloc = {pb_alloc, pb_free, NULL};
    bool pb =
        p->protobuf || (p->content_type && strstr(p->content_type, "protobuf"));
    if (pb) {
        if (p->kind == FWD_KIND_SERIES)
            rc = decode_series_pb(l, &raw, &alloc);
        else if (p->kind == FWD_KIND_SKETCHES)
            rc = decode_sketches(l, &raw, &alloc);
        else
            rc = CMN_EPARSE;
        goto out_free_raw;
    }
    json_error_t jerr;
    json_t *root = json_loadb(raw.p ? raw.p : "", raw.len, 0, &jerr);
    if (root == NULL) {
        rc = CMN_EPARSE;
        goto out_free_raw;
    }
    switch (p->kind) {
    case FWD_KIND_SERIES:
        rc = decode_series_json(l, root);
        break;
    case FWD_KIND_EVENTS:
        rc = decode_events(l, root);
        break;
    case FWD_KIND_SERVICE_CHECKS:
        rc = decode_checks(l, root);
        break;
    default:
        rc = CMN_EPARSE;
    }
    json_decref(root);
out_free_raw:
    cmn_buf_free(&raw);
    return rc;
}

/* ------------------------------------------------------------------------
 * Public API
 */
int lc_local_create(uv_loop_t *loop, const char *path, struct lc_local **out)
{
    struct lc_local *l = cmn_calloc(1, sizeof(*l));
    if (l == NULL)
        return UV_ENOMEM;
    l->loop = loop;
    l->summary = stderr;
    if (path != NULL) {
        l->path = cmn_strdup(path);
        if (l->path == NULL)
            goto out_free;
    } else {
        l->rows = cmn_calloc(LC_LOCAL_ROWS_MAX, sizeof(*l->rows));
        l->slots = cmn_calloc(LC_LOCAL_SLOTS, sizeof(*l->slots));
        /* zeroed by calloc: no page is touched before it is used, which
         * keeps serverless-init's start-up short */
        if (l->rows == NULL || l->slots == NULL)
            goto out_free;
    }
    *out = l;
    return 0;
out_free:
    cmn_free(l->rows);
    cmn_free(l->slots);
    cmn_free(l->path);
    cmn_free(l);
    return UV_ENOMEM;
}

int lc_local_start(struct lc_local *l)
{
    if (l->path != NULL) {
        l->file = fopen(l->path, "ae");
        if (l->file == NULL) {
            int err = -errno;
            CMN_LOGE(COMP, "cannot open %s: %s", l->path, cmn_strerror(err));
            return err;
        }
        CMN_LOGI(COMP,
                 "no DD_API_KEY set: writing metrics as JSON lines to "
                 "%s",
                 l->path);
    }
    l->started = true;
    return 0;
}

void lc_local_submit(void *data, struct fwd_payload *p)
{
    struct lc_local *l = data;
    if (p == NULL)
        return;
    if (l->stopped || !l->started) {
        l->stats.dropped_stopped++;
        fwd_payload_free(p);
        return;
    }
    l->stats.payloads++;
    int rc = decode(l, p);
    if (rc != 0) {
        l->stats.decode_errors++;
        CMN_LOGW(COMP, "could not decode a payload for %s (%s, %zu bytes): %s",
                 p->route ? p->route : "?",
                 p->content_encoding ? p->content_encoding : "identity", p->len,
                 cmn_strerror(rc));
    }
    if (l->file != NULL && fflush(l->file) != 0)
        l->stats.write_errors++;
    fwd_payload_free(p);
}

static int row_cmp(const void *x, const void *y)
{
    const struct row *a = *(const struct row *const *)x;
    const struct row *b = *(const struct row *const *)y;
    int c = strcmp(a->metric, b->metric);
    if (c == 0)
        c = strcmp(a->type, b->type);
    return c != 0 ? c : strcmp(a->tags, b->tags);
}

static bool row_is_metric(const struct row *r)
{
    return strcmp(r->type, "event") != 0 && strcmp(r->type, "check") != 0;
}

static const char *plural(uint64_t n, const char *one, const char *many)
{
    return n == 1 ? one : many;
}

/* One block per metric (and per event title or check name), sorted by
 * name, then type, then tags; names and tags are printed in full:
 *
 *   jobs.done (rate)
 *     tags:   env:dev,team:a
 *     points: 2, last 0.25
 */
static int print_rows(struct lc_local *l, struct cmn_buf *b)
{
    const struct row **v = cmn_calloc(l->nrows, sizeof(*v));
    int rc = 0;

    if (v == NULL)
        return UV_ENOMEM;
    for (uint32_t i = 0; i < l->nrows; i++)
        v[i] = &l->rows[i];
    qsort(v, l->nrows, sizeof(*v), row_cmp);
    for (uint32_t i = 0; i < l->nrows && rc == 0; i++) {
        const struct row *r = v[i];
        bool metric = row_is_metric(r);
        rc |= cmn_buf_printf(b, "\n%s (%s)\n    tags:   %s\n",
                             r->metric[0] ? r->metric : "-", r->type,
                             strcmp(r->tags, "-") == 0 ? "(none)" : r->tags);
        rc |= cmn_buf_printf(b, "    %s %llu, last %s\n",
                             metric ? "points:" : "sent:  ",
                             (unsigned long long)r->points, r->value);
    }
    cmn_free(v);
    return rc;
}

/* "Totals" and "Dropped" lines: what was kept, and every drop by cause
 * (the pipeline's counters, then the sink's own). */
static int print_totals(struct lc_local *l, struct cmn_buf *b)
{
    struct lc_drop drops[LC_LOCAL_DROPS_MAX];
    size_t n = 0;
    uint64_t metrics = 0;
    int rc = 0;

    for (uint32_t i = 0; i < l->nrows; i++)
        metrics += row_is_metric(&l->rows[i]);
    uint64_t points = l->stats.series_points + l->stats.sketch_points;
    rc |= cmn_buf_printf(
        b, "\nTotals: %llu %s, %llu %s, %llu %s, %llu %s\n",
        (unsigned long long)metrics, plural(metrics, "metric", "metrics"),
        (unsigned long long)points, plural(points, "point", "points"),
        (unsigned long long)l->stats.events,
        plural(l->stats.events, "event", "events"),
        (unsigned long long)l->stats.service_checks,
        plural(l->stats.service_checks, "service check", "service checks"));
    if (l->drops_fn != NULL)
        n = l->drops_fn(l->drops_data, drops, LC_LOCAL_DROPS_MAX);
    const struct lc_drop own[] = {
        {"payloads that could not be decoded", l->stats.decode_errors},
        {"lines or rows not written (memory, I/O)", l->stats.write_errors},
        {"payloads that arrived after stop", l->stats.dropped_stopped},
    };
    for (size_t i = 0; i < sizeof(own) / sizeof(own[0]); i++)
        if (own[i].n > 0 && n < LC_LOCAL_DROPS_MAX)
            drops[n++] = own[i];
    size_t shown = 0;
    for (size_t i = 0; i < n; i++)
        shown += drops[i].n > 0;
    rc |= cmn_buf_printf(b, "Dropped:%s\n", shown ? "" : " none");
    for (size_t i = 0; i < n; i++)
        if (drops[i].n > 0)
            rc |=
                cmn_buf_printf(b, "    %llu %s\n",
                               (unsigned long long)drops[i].n, drops[i].cause);
    if (l->stats.dropped_cap > 0)
        rc |= cmn_buf_printf(b,
                             "(%llu more points in metrics not shown: over "
                             "%d metrics)\n",
                             (unsigned long long)l->stats.dropped_cap,
                             LC_LOCAL_ROWS_MAX);
    return rc;
}

static void print_summary(struct lc_local *l)
{
    struct cmn_buf b;
    cmn_buf_init(&b, 64u << 20);
    int rc = 0;
    if (l->nrows == 0) {
        rc |= cmn_buf_printf(&b, "drainpipe: no DD_API_KEY set, so nothing "
                                 "was sent (and no metrics were received).\n");
    } else {
        rc |= cmn_buf_printf(&b, "drainpipe: no DD_API_KEY set, so nothing "
                                 "was sent. This is what would have been "
                                 "sent:\n");
        rc |= print_rows(l, &b);
    }
    rc |= print_totals(l, &b);
    if (rc != 0)
        CMN_LOGW(COMP, "summary truncated");
    if (b.len > 0) {
        (void)fwrite(b.p, 1, b.len, l->summary);
        fflush(l->summary);
    }
    cmn_buf_free(&b);
}

void lc_local_stop(struct lc_local *l, lc_stopped_fn cb, void *data)
{
    if (!l->stopped) {
        l->stopped = true;
        if (l->file != NULL) {
            if (fclose(l->file) != 0)
                l->stats.write_errors++;
            l->file = NULL;
            CMN_LOGI(COMP,
                     "wrote %llu series points, %llu sketch points, %llu "
                     "events and %llu service checks to %s",
                     (unsigned long long)l->stats.series_points,
                     (unsigned long long)l->stats.sketch_points,
                     (unsigned long long)l->stats.events,
                     (unsigned long long)l->stats.service_checks, l->path);
        } else if (l->path == NULL) {
            print_summary(l);
        }
    }
    if (cb != NULL)
        cb(data);
}

void lc_local_destroy(struct lc_local *l)
{
    if (l == NULL)
        return;
    if (l->file != NULL)
        fclose(l->file);
    for (uint32_t i = 0; l->rows != NULL && i < l->nrows; i++) {
        cmn_free(l->rows[i].key);
        cmn_free(l->rows[i].tags);
    }
    cmn_free(l->rows);
    cmn_free(l->slots);
    cmn_free(l->path);
    cmn_free(l);
}

void lc_local_get_stats(const struct lc_local *l, struct lc_local_stats *out)
{
    *out = l->stats;
}

void lc_local_set_drops_fn(struct lc_local *l, lc_local_drops_fn fn, void *data)
{
    l->drops_fn = fn;
    l->drops_data = data;
}

void lc_local_set_summary_stream(struct lc_local *l, FILE *f)
{
    l->summary = f != NULL ? f : stderr;
}
