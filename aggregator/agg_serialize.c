/*
 * agg_serialize.c - a flush job's buckets into series and sketch payloads
 * (spec/pipeline.md §2.3, §3.2-§3.3). Runs on a pool thread and reads only
 * the job (its buckets, its no-agg batch, its extra-tag snapshot) and the
 * immutable parts of the aggregator (config, suffix table) and contexts
 * (name, host, tags never change after interning).
 *
 * The values are the job's records, computed and sorted before by
 * agg_hist.c (counter sum/10 as RATE, histogram aggregates and
 * percentiles, finished sketches); this file only writes fields. Records
 * of one (context, suffix, API type) across buckets merge into one series
 * with one point per bucket. The protobuf wire format is written by hand
 * in the order of iterable_series.go; tests decode it with protobuf-c.
 *
 * Wire notes: key = field << 3 | wire type; 0 varint, 1 fixed64, 2 length
 * delimited. E.g. MetricPoint {value 0.5, ts 1700000000} is
 *   09 <8 bytes LE double> 10 <varint ts>
 * Every key is K(MESSAGE_FIELD): the field number and wire type generated
 * from the .proto (agg_serialize.h), never a literal.
 */
#include "agg_serialize.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

/* ---- protobuf writer -------------------------------------------------- */

static size_t pb_varint_len(uint64_t v)
{
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static size_t pb_put_varint(unsigned char *p, uint64_t v)
{
    size_t n = 0;
    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

static int pb_varint(struct cmn_buf *b, uint64_t v)
{
    unsigned char tmp[10];
    return cmn_buf_append(b, tmp, pb_put_varint(tmp, v));
}

/* The key of field MESSAGE_FIELD of agent_payload_fields.h. */
#define K(F) AGG_PB_KEY(AGG_PB_##F)
/* Keys written as one byte (fields 1-15). */
#define K1(F) ((unsigned char)K(F))
_Static_assert(K(METRIC_POINT_VALUE) < 0x80 &&
                   K(METRIC_POINT_TIMESTAMP) < 0x80 &&
                   K(ORIGIN_ORIGIN_SERVICE) < 0x80 &&
                   K(METADATA_ORIGIN) < 0x80 &&
                   K(SKETCH_PAYLOAD_METADATA) < 0x80,
               "one-byte keys");

static int pb_key(struct cmn_buf *b, unsigned key)
{
    return pb_varint(b, key);
}

/* key: a length-delimited field's */
static int pb_bytes(struct cmn_buf *b, unsigned key, const void *p, size_t len)
{
    int rc = pb_key(b, key);
    if (rc == 0)
        rc = pb_varint(b, len);
    if (rc == 0)
        rc = cmn_buf_append(b, p, len);
    return rc;
}

/* key: a fixed64 field's */
static int pb_double(struct cmn_buf *b, unsigned key, double v)
{
    unsigned char tmp[8];
    uint64_t u;
    memcpy(&u, &v, 8);
    for (int i = 0; i < 8; i++)
        tmp[i] = (unsigned char)(u >> (8 * i));
    int rc = pb_key(b, key);
    return rc ? rc : cmn_buf_append(b, tmp, 8);
}

/* key: a varint field's */
static int pb_uint(struct cmn_buf *b, unsigned key, uint64_t v)
{
    int rc = pb_key(b, key);
    return rc ? rc : pb_varint(b, v);
}

/* sint32 zigzag: 0 -> 0, -1 -> 1, 1 -> 2, -2 -> 3 ... */
static uint32_t pb_zigzag(int32_t v)
{
    return ((uint32_t)v << 1) ^ (v < 0 ? UINT32_MAX : 0);
}

/* A length-delimited field whose body is already in src. */
static int pb_embed(struct cmn_buf *b, unsigned key, const struct cmn_buf *src)
{
    return pb_bytes(b, key, src->p, src->len);
}

/* Metadata { origin { product, category, service } } */
static int pb_metadata(struct cmn_buf *b, unsigned key,
                       const struct agg_config *cfg)
{
    unsigned char o[32], m[40];
    size_t on = 0, mn = 0;
    o[on++] = K1(ORIGIN_ORIGIN_PRODUCT);
    on += pb_put_varint(o + on, cfg->origin_product);
    o[on++] = K1(ORIGIN_ORIGIN_CATEGORY);
    on += pb_put_varint(o + on, cfg->origin_category);
    o[on++] = K1(ORIGIN_ORIGIN_SERVICE);
    on += pb_put_varint(o + on, cfg->origin_service);
    m[mn++] = K1(METADATA_ORIGIN);
    mn += pb_put_varint(m + mn, on);
    memcpy(m + mn, o, on);
    mn += on;
    return pb_bytes(b, key, m, mn);
}

/* ---- v2 series ----------------------------------------------------------- */

struct agg_ser {
    struct agg__job *j;
    struct agg__chunks ch;
    struct cmn_buf sb, tb; /* series body, scratch */
    struct cmn_slice *tags;
    size_t tcap;
    bool v1;
    struct agg__zpack *zp; /* zstd: the streaming packer, else NULL */
};

static int agg_res(struct cmn_buf *b, const char *type, struct cmn_slice name)
{
    struct cmn_buf r;
    int rc;
    cmn_buf_init(&r, (size_t)1 << 30);
    rc = pb_bytes(&r, K(RESOURCE_TYPE), type, strlen(type));
    if (rc == 0)
        rc = pb_bytes(&r, K(RESOURCE_NAME), name.p, name.len);
    if (rc == 0)
        rc = pb_embed(b, K(METRIC_SERIES_RESOURCES), &r);
    cmn_buf_free(&r);
    return rc;
}

/* One MetricSeries as field 1 of MetricPayload, into the chunks. */
static int agg_v2_series(struct agg_ser *s, const struct agg__ctx *c,
                         const char *suffix, uint8_t api,
                         const struct agg__rec *pts, size_t npts,
                         const struct agg__noagg *na)
{
    struct cmn_slice dev, nm = agg__ctx_name(c);
    struct cmn_buf *b = &s->sb;
    long nt = agg__tags(s->j, c, &s->tags, &s->tcap, true, &dev);
    size_t sl = strlen(suffix);
    int rc;

    if (nt < 0)
        return UV_ENOMEM;
    cmn_buf_reset(b);
    rc = agg_res(b, "host", agg__ctx_host(s->j->a, c));
    if (rc == 0 && dev.p != NULL)
        rc = agg_res(b, "device", dev);
    if (rc == 0)
        rc = pb_key(b, K(METRIC_SERIES_METRIC));
    if (rc == 0)
        rc = pb_varint(b, nm.len + sl);
    if (rc == 0)
        rc = cmn_buf_append(b, nm.p, nm.len);
    if (rc == 0)
        rc = cmn_buf_append(b, suffix, sl);
    for (long i = 0; rc == 0 && i < nt; i++)
        rc = pb_bytes(b, K(METRIC_SERIES_TAGS), s->tags[i].p, s->tags[i].len);
    if (rc == 0)
        rc = pb_uint(b, K(METRIC_SERIES_TYPE), api);
    if (rc == 0)
        rc = pb_uint(b, K(METRIC_SERIES_INTERVAL), AGG_BUCKET_SECS);
    for (size_t i = 0; rc == 0 && i < (na ? 1 : npts); i++) {
        unsigned char pt[24];
        double v = na ? na->value : pts[i].v;
        int64_t ts = na ? na->ts : pts[i].ts;
        uint64_t u;
        size_t n = 0;
        memcpy(&u, &v, 8);
        pt[n++] = K1(METRIC_POINT_VALUE);
        for (int k = 0; k < 8; k++)
            pt[n++] = (unsigned char)(u >> (8 * k));
        pt[n++] = K1(METRIC_POINT_TIMESTAMP);
        n += pb_put_varint(pt + n, (uint64_t)ts);
        rc = pb_bytes(b, K(METRIC_SERIES_POINTS), pt, n);
    }
    if (rc == 0)
        rc = pb_metadata(b, K(METRIC_SERIES_METADATA), &s->j->a->cfg);
    if (rc == 0)
        rc = pb_embed(&s->ch.data, K(METRIC_PAYLOAD_SERIES), b);
    if (rc == 0)
        rc = agg__chunks_close(&s->ch, (uint32_t)(na ? 1 : npts));
    return rc;
}

/* ---- v1 JSON series ------------------------------------------------------ */

/* jansson's memory goes through cmn_alloc, so JSON working memory is in the
 * memory budget and fails like ours in the OOM tests. Set before main:
 * every jansson object of the process (the config's JSON included) must
 * come from the same allocator it is freed with. */
__attribute__((constructor)) static void agg_json_alloc_init(void)
{
    json_set_alloc_funcs(cmn_lib_malloc, cmn_free);
}

struct agg_json_out {
    struct cmn_buf *b;
    bool failed; /* sticky: jansson ignores some write errors (an object
                    key's), so every write after a failure fails too */
};

static int agg_json_cb(const char *p, size_t n, void *data)
{
    struct agg_json_out *o = data;
    if (o->failed || cmn_buf_append(o->b, p, n) != 0) {
        o->failed = true;
        return -1;
    }
    return 0;
}

int agg__json_append(struct cmn_buf *b, const json_t *o)
{
    struct agg_json_out out = {b, false};
    size_t before = b->len;
    if (json_dump_callback(o, agg_json_cb, &out, JSON_COMPACT) != 0 ||
        out.failed) {
        b->len = before;
        return UV_ENOMEM;
    }
    return 0;
}

/* Length of the valid UTF-8 sequence at p (n > 0 bytes left), 0 if none. */
static size_t agg_utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0], cp, min;
    size_t len;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    cp = c & (0x7Fu >> len);
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

bool agg__utf8_valid(struct cmn_slice s)
{
    const unsigned char *p = (const unsigned char *)s.p;
    size_t i = 0;
    while (i < s.len) {
        if (p[i] < 0x80) { /* ASCII: the common case, one compare */
            i++;
            continue;
        }
        size_t n = agg_utf8_seq(p + i, s.len - i);
        if (n == 0)
            return false;
        i += n;
    }
    return true;
}

size_t agg__utf8_fix_into(struct cmn_slice s, char *o)
{
    const unsigned char *p = (const unsigned char *)s.p;
    char *w = o;
    for (size_t i = 0; i < s.len;) {
        size_t n = agg_utf8_seq(p + i, s.len - i);
        if (n == 0) {
            memcpy(w, "\xEF\xBF\xBD", 3);
            w += 3;
            i++;
            continue;
        }
        memcpy(w, p + i, n);
        w += n;
        i += n;
    }
    return (size_t)(w - o);
}

/* s with every byte that is not valid UTF-8 replaced by U+FFFD, as Go's
 * encoding/json writes it (cmn_free it). NULL on allocation failure. */
char *agg__utf8_fix(struct cmn_slice s, size_t *out_len)
{
    char *o = cmn_malloc(s.len * 3 + 1);
    if (o == NULL)
        return NULL;
    *out_len = agg__utf8_fix_into(s, o);
    o[*out_len] = '\0';
    return o;
}

void agg__jset(json_t *o, const char *key, json_t *v, bool *ok)
{
    if (json_object_set_new(o, key, v) != 0) /* consumes v even then */
        *ok = false;
}

void agg__jpush(json_t *arr, json_t *v, bool *ok)
{
    if (json_array_append_new(arr, v) != 0)
        *ok = false;
}

json_t *agg__jstr(struct cmn_slice s)
{
    json_t *j = json_stringn(s.p ? s.p : "", s.len);
    if (j != NULL || s.len == 0)
        return j;
    size_t n;
    char *fixed = agg__utf8_fix(s, &n); /* invalid UTF-8 from a client */
    if (fixed == NULL)
        return NULL;
    j = json_stringn(fixed, n);
    cmn_free(fixed);
    return j;
}

static int agg_v1_series(struct agg_ser *s, const struct agg__ctx *c,
                         const char *suffix, uint8_t api,
                         const struct agg__rec *pts, size_t npts,
                         const struct agg__noagg *na)
{
    static const char *const types[] = {"", "count", "rate", "gauge"};
    struct cmn_slice dev;
    long nt = agg__tags(s->j, c, &s->tags, &s->tcap, true, &dev);
    json_t *o = json_object(), *jp = json_array(), *jt = json_array();
    char *name = NULL;
    int rc = UV_ENOMEM;

    if (nt < 0 || o == NULL || jp == NULL || jt == NULL)
        goto out;
    size_t sl = strlen(suffix);
    struct cmn_slice nm = agg__ctx_name(c);
    name = cmn_malloc(nm.len + sl + 1);
    if (name == NULL)
        goto out;
    memcpy(name, nm.p, nm.len);
    memcpy(name + nm.len, suffix, sl + 1);
    bool ok = true;
    for (size_t i = 0; i < (na ? 1 : npts); i++) {
        /* json_real refuses NaN/Inf (NULL): then the series is dropped
         * rather than written with a point that has no value */
        json_t *pt = json_array();
        agg__jpush(pt, json_integer(na ? na->ts : pts[i].ts), &ok);
        agg__jpush(pt, json_real(na ? na->value : pts[i].v), &ok);
        agg__jpush(jp, pt, &ok);
    }
    for (long i = 0; i < nt; i++)
        agg__jpush(jt, agg__jstr(s->tags[i]), &ok);
    agg__jset(o, "metric", agg__jstr(cmn_slice(name, nm.len + sl)), &ok);
    agg__jset(o, "points", jp, &ok);
    agg__jset(o, "tags", jt, &ok);
    jp = jt = NULL;
    agg__jset(o, "host", agg__jstr(agg__ctx_host(s->j->a, c)), &ok);
    if (dev.p != NULL)
        agg__jset(o, "device", agg__jstr(dev), &ok);
    agg__jset(o, "type", json_string(types[api & 3]), &ok);
    agg__jset(o, "interval", json_integer(AGG_BUCKET_SECS), &ok);
    if (!ok) /* an incomplete series is never sent */
        goto out;
    rc = agg__json_append(&s->ch.data, o);
    if (rc == 0)
        rc = agg__chunks_close(&s->ch, (uint32_t)(na ? 1 : npts));
out:
    cmn_free(name);
    json_decref(jp);
    json_decref(jt);
    json_decref(o);
    return rc;
}

/* The packing rules of series payloads (v1 JSON or v2 protobuf). */
static void agg_series_spec(const struct agg_config *cfg, bool v1,
                            struct agg__pack_spec *spec)
{
    memset(spec, 0, sizeof(*spec));
    spec->kind = FWD_KIND_SERIES;
    if (v1) {
        spec->prefix = "{\"series\":[";
        spec->sep = ",";
        spec->suffix = "]}";
        spec->max_raw = cfg->max_uncompressed_payload_size;
        spec->max_comp = cfg->max_payload_size;
        spec->route = "/api/v1/series";
        spec->content_type = "application/json";
    } else {
        spec->prefix = spec->sep = spec->suffix = "";
        spec->max_raw = cfg->max_series_uncompressed_payload_size;
        spec->max_comp = cfg->max_series_payload_size;
        spec->max_points = cfg->max_series_points_per_payload;
        spec->route = "/api/v2/series";
        spec->content_type = "application/x-protobuf";
    }
    /* uncompressed, the body is the raw bytes: cutting at the smaller
     * limit packs each payload once, where cutting at the raw limit
     * (5 MB) made a body ten times over the 512 kB limit, split in halves
     * and packed again four times over */
    if (cfg->compressor == AGG_COMPRESS_NONE && spec->max_comp < spec->max_raw)
        spec->max_raw = spec->max_comp;
    spec->prefix_len = strlen(spec->prefix);
    spec->sep_len = strlen(spec->sep);
    spec->suffix_len = strlen(spec->suffix);
}

/* zstd: feeds the items into the streaming packer as they are written
 * (the scratch holds AGG_ZPACK_BATCH bytes of them). Otherwise packs the items
 * written so far once they fill a payload, by bytes or by points, so the
 * serializer's scratch stays near one payload's raw size (at most max_raw plus
 * one item) whatever the number of series: its working memory is bounded, not
 * proportional to the contexts. The items of a payload that is not full yet
 * stay for the next ones to join. (Cut by bytes alone, the scratch grew to 5 MB
 * at 100 000 contexts, where a payload of 10 000 points is about 1.7 MB.) */
static void agg_series_cut(struct agg__job *j, struct agg_ser *s,
                           const struct agg__pack_spec *spec, bool last)
{
    if (s->zp != NULL) { /* zstd: the items into the stream, 64 KiB at a
                            time (one call of the stream per series cost
                            15 % more CPU) */
        if (last || s->ch.data.len >= AGG_ZPACK_BATCH)
            agg__zpack_feed(j, s->zp, &s->ch, spec);
        if (last)
            agg__zpack_finish(j, s->zp, spec);
        return;
    }
    if (last) {
        agg__pack(j, &s->ch, spec);
        s->ch.data.len = 0;
        s->ch.n = 0;
        s->ch.pts = 0;
        return;
    }
    if (s->ch.data.len > spec->max_raw ||
        (spec->max_points && s->ch.pts > spec->max_points))
        agg__pack_closed(j, &s->ch, spec);
}

static void agg_serialize_series(struct agg__job *j)
{
    struct agg_ser s = {.j = j, .v1 = !j->a->cfg.use_v2_series};
    size_t nrec = j->nrecs;
    const struct agg__rec *r = j->recs;
    int (*one)(struct agg_ser *, const struct agg__ctx *, const char *, uint8_t,
               const struct agg__rec *, size_t, const struct agg__noagg *) =
        s.v1 ? agg_v1_series : agg_v2_series;
    struct agg__pack_spec spec;

    agg_series_spec(&j->a->cfg, s.v1, &spec);
    struct agg__zpack zp;
    if (j->a->cfg.compressor == AGG_COMPRESS_ZSTD) {
        agg__zpack_init(&zp, &j->a->zcx);
        s.zp = &zp;
    }
    s.ch = j->a->sch; /* the kept buffers, empty */
    cmn_buf_init(&s.sb, (size_t)1 << 30);
    cmn_buf_init(&s.tb, (size_t)1 << 30);
    for (size_t i = 0; i < nrec;) {
        size_t k = i + 1;
        while (k < nrec && r[k].ctx == r[i].ctx && r[k].suffix == r[i].suffix &&
               r[k].api == r[i].api)
            k++;
        if (one(&s, r[i].ctx, j->a->suffix[r[i].suffix].name, r[i].api, r + i,
                k - i, NULL) != 0)
            agg__chunks_abort(&s.ch);
        else {
            j->st.series++;
            j->st.points += k - i;
        }
        i = k;
        agg_series_cut(j, &s, &spec, false);
    }
    for (size_t i = 0; i < j->nnoagg; i++) {
        const struct agg__noagg *na = &j->noagg[i];
        if (!isfinite(na->value)) /* counted by agg__job_records */
            continue;
        if (one(&s, na->ctx, "", na->api_type, NULL, 0, na) != 0)
            agg__chunks_abort(&s.ch);
        else {
            j->st.series++;
            j->st.points++;
        }
        agg_series_cut(j, &s, &spec, false);
    }
    if (s.ch.failed)
        j->st.payloads_dropped++;
    agg_series_cut(j, &s, &spec, true);
    s.ch.failed = false;
    j->a->sch = s.ch; /* kept for the next flush */
    if (s.zp != NULL)
        agg__zpack_free(s.zp);
    cmn_buf_free(&s.sb);
    cmn_buf_free(&s.tb);
    cmn_free(s.tags);
}

/* ---- sketches -------------------------------------------------------------
 */

static int agg_dogsketch(struct cmn_buf *b, struct cmn_buf *tmp,
                         const struct agg__skrec *r)
{
    const struct agg_sketch *k = r->sk;
    int rc;

    cmn_buf_reset(tmp);
    rc = pb_uint(tmp, K(DOGSKETCH_TS), (uint64_t)r->ts);
    if (rc == 0)
        rc = pb_uint(tmp, K(DOGSKETCH_CNT), (uint64_t)r->cnt);
    if (rc == 0)
        rc = pb_double(tmp, K(DOGSKETCH_MIN), r->min);
    if (rc == 0)
        rc = pb_double(tmp, K(DOGSKETCH_MAX), r->max);
    if (rc == 0)
        rc = pb_double(tmp, K(DOGSKETCH_AVG), r->avg);
    if (rc == 0)
        rc = pb_double(tmp, K(DOGSKETCH_SUM), r->sum);
    if (rc == 0 && k->nbins > 0) {
        size_t len = 0;
        for (uint32_t i = 0; i < k->nbins; i++) {
            len += pb_varint_len(pb_zigzag(k->bins[i].k));
        }
        rc = pb_key(tmp, K(DOGSKETCH_K));
        if (rc == 0)
            rc = pb_varint(tmp, len);
        for (uint32_t i = 0; rc == 0 && i < k->nbins; i++) {
            rc = pb_varint(tmp, pb_zigzag(k->bins[i].k));
        }
        len = 0;
        for (uint32_t i = 0; i < k->nbins; i++)
            len += pb_varint_len(k->bins[i].n);
        if (rc == 0)
            rc = pb_key(tmp, K(DOGSKETCH_N));
        if (rc == 0)
            rc = pb_varint(tmp, len);
        for (uint32_t i = 0; rc == 0 && i < k->nbins; i++)
            rc = pb_varint(tmp, k->bins[i].n);
    }
    if (rc == 0)
        rc = pb_embed(b, K(SKETCH_DOGSKETCHES), tmp);
    return rc;
}

static void agg_serialize_sketches(struct agg__job *j)
{
    struct agg_ser s = {.j = j};
    struct cmn_buf tmp;
    const struct agg__skrec *r = j->skrecs;
    size_t n = j->nskrecs;

    if (n == 0)
        return;
    agg__chunks_init(&s.ch);
    cmn_buf_init(&s.sb, (size_t)1 << 30);
    cmn_buf_init(&tmp, (size_t)1 << 30);
    for (size_t i = 0; i < n;) {
        size_t k = i + 1;
        struct cmn_slice dev;
        const struct agg__ctx *c = r[i].ctx;
        while (k < n && r[k].ctx == c)
            k++;
        long nt = agg__tags(j, c, &s.tags, &s.tcap, false, &dev);
        int rc = nt < 0 ? UV_ENOMEM : 0;
        cmn_buf_reset(&s.sb);
        if (rc == 0)
            rc = pb_bytes(&s.sb, K(SKETCH_METRIC), agg__ctx_name(c).p,
                          c->name_len);
        struct cmn_slice host = agg__ctx_host(j->a, c);
        if (rc == 0)
            rc = pb_bytes(&s.sb, K(SKETCH_HOST), host.p, host.len);
        for (long t = 0; rc == 0 && t < nt; t++)
            rc = pb_bytes(&s.sb, K(SKETCH_TAGS), s.tags[t].p, s.tags[t].len);
        for (size_t p = i; rc == 0 && p < k; p++)
            rc = agg_dogsketch(&s.sb, &tmp, &r[p]);
        if (rc == 0)
            rc = pb_metadata(&s.sb, K(SKETCH_METADATA), &j->a->cfg);
        if (rc == 0)
            rc = pb_embed(&s.ch.data, K(SKETCH_PAYLOAD_SKETCHES), &s.sb);
        if (rc == 0)
            rc = agg__chunks_close(&s.ch, (uint32_t)(k - i));
        if (rc == 0)
            j->st.sketches++;
        else
            agg__chunks_abort(&s.ch);
        i = k;
    }
    if (s.ch.failed)
        j->st.payloads_dropped++;
    /* footer: an empty CommonMetadata */
    static const char footer[] = {K1(SKETCH_PAYLOAD_METADATA), 0};
    struct agg__pack_spec spec = {
        .kind = FWD_KIND_SKETCHES,
        .prefix = "",
        .sep = "",
        .suffix = footer,
        .suffix_len = 2,
        .max_raw = j->a->cfg.max_uncompressed_payload_size,
        .max_comp = j->a->cfg.max_payload_size,
        .route = "/api/beta/sketches",
        .content_type = "application/x-protobuf",
    };
    agg__pack(j, &s.ch, &spec);
    agg__chunks_free(&s.ch);
    cmn_buf_free(&s.sb);
    cmn_buf_free(&tmp);
    cmn_free(s.tags);
}

void agg__serialize_job(struct agg__job *j)
{
    const struct agg_config *cfg = &j->a->cfg;
    if (cfg->enable_series)
        agg_serialize_series(j);
    if (cfg->enable_sketches)
        agg_serialize_sketches(j);
    if (cfg->enable_events && j->nevents > 0)
        agg__serialize_events(j);
    if (cfg->enable_service_checks && j->nchecks > 0)
        agg__serialize_checks(j);
}
