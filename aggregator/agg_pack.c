/*
 * agg_pack.c - turning serialized items into compressed payloads
 * (spec/pipeline.md §3.3-§3.4).
 *
 * Items are byte chunks (one protobuf MetricSeries/Sketch field, one JSON
 * object) written back to back; a payload is prefix + items joined by sep +
 * suffix. Payloads are cut greedily by points and uncompressed bytes, then
 * compressed; a payload whose compressed body is over the limit is split
 * in two and retried. An item that is too big on its own is dropped and
 * counted (items_too_big), as the Agent's ItemTooBig. Runs on a pool
 * thread; touches only the job.
 *
 * Series compressed with zstd (the default) take the streaming packer at
 * the end of this file instead (agg__zpack_*): each item goes into the
 * open payload's zstd stream as soon as it is written, as the Agent's
 * streaming compressor does, so the serializer never holds a payload's
 * raw bytes.
 */
#include "agg_serialize.h"

#include <string.h>

#include <zlib.h>
#define ZSTD_STATIC_LINKING_ONLY /* ZSTD_customMem: routes zstd through        \
                                    cmn_alloc */
#include <zstd.h>

void agg__chunks_init(struct agg__chunks *c)
{
    memset(c, 0, sizeof(*c));
    cmn_buf_init(&c->data, (size_t)1 << 30);
}

void agg__chunks_free(struct agg__chunks *c)
{
    cmn_buf_free(&c->data);
    cmn_free(c->end);
    cmn_free(c->points);
    memset(c, 0, sizeof(*c));
}

void agg__chunks_abort(struct agg__chunks *c)
{
    c->data.len = c->n ? c->end[c->n - 1] : 0;
    c->failed = true;
}

int agg__chunks_close(struct agg__chunks *c, uint32_t points)
{
    if (c->n == c->cap) {
        size_t ncap = c->cap ? c->cap * 2 : 64;
        size_t *ne = cmn_reallocarray(c->end, ncap, sizeof(*ne));
        if (ne == NULL) {
            agg__chunks_abort(c);
            return UV_ENOMEM;
        }
        c->end = ne;
        uint32_t *np = cmn_reallocarray(c->points, ncap, sizeof(*np));
        if (np == NULL) {
            agg__chunks_abort(c);
            return UV_ENOMEM;
        }
        c->points = np;
        c->cap = ncap;
    }
    c->end[c->n] = c->data.len;
    c->points[c->n] = points;
    c->n++;
    c->pts += points;
    return 0;
}

static inline size_t agg_chunk_start(const struct agg__chunks *c, size_t i)
{
    return i == 0 ? 0 : c->end[i - 1];
}

static inline size_t agg_chunk_len(const struct agg__chunks *c, size_t i)
{
    return c->end[i] - agg_chunk_start(c, i);
}

void agg__job_out(struct agg__job *j, struct fwd_payload *p)
{
    if (j->nout == j->capout) {
        size_t ncap = j->capout ? j->capout * 2 : 8;
        void *no = cmn_reallocarray(j->out, ncap, sizeof(*j->out));
        if (no == NULL) {
            fwd_payload_free(p);
            j->st.payloads_dropped++;
            return;
        }
        j->out = no;
        j->capout = ncap;
    }
    j->out[j->nout++] = p;
}

/* zstd with its working memory from cmn_alloc (counted in the budget, and
 * failing like ours under the OOM tests). 0 or UV_ENOMEM. */
static int agg_zstd(const char *raw, size_t len, int level, unsigned char **out,
                    size_t *out_len, void **keep)
{
    ZSTD_customMem mem = {cmn_zstd_alloc, cmn_zstd_free, NULL};
    ZSTD_CCtx *cx = keep && *keep ? *keep : ZSTD_createCCtx_advanced(mem);
    size_t bound = ZSTD_compressBound(len), n;
    unsigned char *body;

    if (cx == NULL)
        return UV_ENOMEM;
    if (keep != NULL)
        *keep = cx;
    body = cmn_malloc(bound);
    if (body == NULL) {
        if (keep == NULL)
            ZSTD_freeCCtx(cx);
        return UV_ENOMEM;
    }
    n = ZSTD_compressCCtx(cx, body, bound, raw, len, level);
    if (keep == NULL)
        ZSTD_freeCCtx(cx);
    if (ZSTD_isError(n)) {
        cmn_free(body);
        return UV_ENOMEM;
    }
    *out = body;
    *out_len = n;
    return 0;
}

/* zlib deflate (what compress2 does) with zalloc/zfree from cmn_alloc. */
static int agg_deflate(const char *raw, size_t len, unsigned char **out,
                       size_t *out_len)
{
    z_stream zs;
    uLong bound = compressBound((uLong)len);
    unsigned char *body;
    int zrc;

    if ((uLong)len != len)
        return CMN_ETOOBIG;
    body = cmn_malloc(bound);
    if (body == NULL)
        return UV_ENOMEM;
    memset(&zs, 0, sizeof(zs));
    zs.zalloc = cmn_zlib_alloc;
    zs.zfree = cmn_zlib_free;
    if (deflateInit(&zs, Z_DEFAULT_COMPRESSION) != Z_OK) {
        cmn_free(body);
        return UV_ENOMEM;
    }
    zs.next_in = (Bytef *)(uintptr_t)raw;
    zs.avail_in = (uInt)len;
    zs.next_out = body;
    zs.avail_out = (uInt)bound;
    zrc = deflate(&zs, Z_FINISH);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    if (zrc != Z_STREAM_END) {
        cmn_free(body);
        return UV_ENOMEM;
    }
    *out = body;
    return 0;
}

void agg__zcx_free(void *zcx)
{
    ZSTD_freeCCtx(zcx);
}

struct fwd_payload *agg__make_payload(const struct agg_config *cfg,
                                      enum fwd_kind kind, const char *raw,
                                      size_t len)
{
    return agg__make_payload_cx(cfg, kind, raw, len, NULL);
}

struct fwd_payload *agg__make_payload_cx(const struct agg_config *cfg,
                                         enum fwd_kind kind, const char *raw,
                                         size_t len, void **zcx)
{
    unsigned char *body = NULL;
    size_t blen = 0;
    const char *enc = "identity";

    switch (cfg->compressor) {
    case AGG_COMPRESS_ZSTD:
        if (agg_zstd(raw, len, cfg->zstd_level, &body, &blen, zcx) != 0)
            return NULL;
        enc = "zstd";
        break;
    case AGG_COMPRESS_ZLIB:
        if (agg_deflate(raw, len, &body, &blen) != 0)
            return NULL;
        enc = "deflate";
        break;
    default:
        body = cmn_malloc(len ? len : 1);
        if (body == NULL)
            return NULL;
        if (len)
            memcpy(body, raw, len);
        blen = len;
        break;
    }
    if (blen > 0 && blen < len) {
        unsigned char *shrunk = cmn_reallocarray(body, blen, 1);
        if (shrunk != NULL)
            body = shrunk;
    }
    struct fwd_payload *p = fwd_payload_new(kind, body, blen);
    if (p == NULL)
        return NULL;
    p->content_encoding = enc;
    p->raw_len = len;
    return p;
}

/* Gives p the spec's route and content type and its counts, and hands
 * it to the job (both packers). */
static void agg_payload_out(struct agg__job *j, const struct agg__pack_spec *s,
                            struct fwd_payload *p, uint32_t items,
                            uint32_t points)
{
    if (s->route != NULL)
        p->route = s->route;
    if (s->content_type != NULL) {
        p->content_type = s->content_type;
        p->protobuf = strcmp(s->content_type, "application/x-protobuf") == 0;
    }
    p->items = items;
    p->points = points;
    j->st.payloads++;
    agg__job_out(j, p);
}

static void agg_emit_range(struct agg__job *j, struct agg__chunks *c,
                           const struct agg__pack_spec *s, size_t lo, size_t hi)
{
    size_t from = agg_chunk_start(c, lo), to = c->end[hi - 1];
    size_t raw_len = s->prefix_len + s->suffix_len + (to - from) +
                     (hi - lo - 1) * s->sep_len;
    uint32_t points = 0;
    char *raw = NULL, *w;
    const char *body = c->data.p + from;

    for (size_t i = lo; i < hi; i++)
        points += c->points[i];
    /* protobuf items are back to back already: compressed from the
     * chunks in place, without a copy of up to 5 MB per payload */
    if (s->prefix_len + s->sep_len + s->suffix_len > 0) {
        raw = w = cmn_malloc(raw_len ? raw_len : 1);
        if (raw == NULL) {
            j->st.payloads_dropped++;
            return;
        }
        memcpy(w, s->prefix, s->prefix_len);
        w += s->prefix_len;
        for (size_t i = lo; i < hi; i++) {
            if (i > lo) {
                memcpy(w, s->sep, s->sep_len);
                w += s->sep_len;
            }
            memcpy(w, c->data.p + agg_chunk_start(c, i), agg_chunk_len(c, i));
            w += agg_chunk_len(c, i);
        }
        memcpy(w, s->suffix, s->suffix_len);
        body = raw;
    }
    struct fwd_payload *p =
        agg__make_payload_cx(&j->a->cfg, s->kind, body, raw_len, &j->a->zcx);
    cmn_free(raw);
    if (p == NULL) {
        j->st.payloads_dropped++;
        return;
    }
    if (p->len > s->max_comp) {
        fwd_payload_free(p);
        if (hi - lo == 1) {
            j->st.items_too_big++;
            return;
        }
        size_t mid = lo + (hi - lo) / 2;
        agg_emit_range(j, c, s, lo, mid);
        agg_emit_range(j, c, s, mid, hi);
        return;
    }
    agg_payload_out(j, s, p, (uint32_t)(hi - lo), points);
}

/* Packs items from the first greedily into payloads; with `all` false,
 * stops before the last payload (the one no following item closed) and
 * returns the index of its first item, else returns c->n. */
static size_t agg_pack_from(struct agg__job *j, struct agg__chunks *c,
                            const struct agg__pack_spec *s, bool all)
{
    size_t fixed = s->prefix_len + s->suffix_len;
    size_t i = 0;

    while (i < c->n) {
        size_t raw = fixed + agg_chunk_len(c, i);
        uint64_t pts = c->points[i];
        if ((s->max_points && pts > s->max_points) || raw > s->max_raw) {
            j->st.items_too_big++;
            i++;
            continue;
        }
        size_t k = i + 1;
        for (; k < c->n; k++) {
            size_t add = s->sep_len + agg_chunk_len(c, k);
            if (s->max_points && pts + c->points[k] > s->max_points)
                break;
            if (raw + add > s->max_raw)
                break;
            raw += add;
            pts += c->points[k];
        }
        if (k == c->n && !all)
            return i;
        agg_emit_range(j, c, s, i, k);
        i = k;
    }
    return c->n;
}

void agg__pack(struct agg__job *j, struct agg__chunks *c,
               const struct agg__pack_spec *s)
{
    (void)agg_pack_from(j, c, s, true);
}

void agg__pack_closed(struct agg__job *j, struct agg__chunks *c,
                      const struct agg__pack_spec *s)
{
    size_t i = agg_pack_from(j, c, s, false);
    size_t from = agg_chunk_start(c, i);
    if (from == 0)
        return; /* no payload was closed */
    /* the items left move to the front (less than one payload's bytes) */
    memmove(c->data.p, c->data.p + from, c->data.len - from);
    c->data.len -= from;
    c->pts = 0;
    for (size_t k = i; k < c->n; k++) {
        c->end[k - i] = c->end[k] - from;
        c->points[k - i] = c->points[k];
        c->pts += c->points[k];
    }
    c->n -= i;
}

/* ---- streaming zstd ---------------------------------------------------- */

/* Slack on top of ZSTD_compressBound for the frame's end (the last block's
 * header and no checksum): a payload checked against the bound never
 * passes max_comp once ended. */
#define AGG_ZPACK_SLACK 32

void agg__zpack_init(struct agg__zpack *z, void **cx)
{
    memset(z, 0, sizeof(*z));
    z->cx = cx;
    cmn_buf_init(&z->out, (size_t)1 << 30);
}

void agg__zpack_free(struct agg__zpack *z)
{
    cmn_buf_free(&z->out);
}

/* Runs the stream on in (may be empty) with op until the input is
 * consumed and, for a flush or end, until zstd has nothing left. 0 or an
 * error (the payload is then abandoned). */
static int agg_zpack_run(struct agg__zpack *z, const void *in, size_t len,
                         ZSTD_EndDirective op)
{
    ZSTD_inBuffer ib = {in, len, 0};
    for (;;) {
        size_t room = ZSTD_CStreamOutSize();
        if (cmn_buf_reserve(&z->out, room) != 0)
            return UV_ENOMEM;
        ZSTD_outBuffer ob = {z->out.p + z->out.len, room, 0};
        size_t left = ZSTD_compressStream2(*z->cx, &ob, &ib, op);
        z->out.len += ob.pos;
        if (ZSTD_isError(left))
            return UV_ENOMEM;
        if (ib.pos == ib.size && (op == ZSTD_e_continue || left == 0))
            return 0;
    }
}

/* Ends the open payload and hands it to the job. */
static void agg_zpack_close(struct agg__job *j, struct agg__zpack *z,
                            const struct agg__pack_spec *s)
{
    if (!z->open)
        return;
    z->open = false;
    int rc = agg_zpack_run(z, s->suffix, s->suffix_len, ZSTD_e_end);
    size_t raw = z->raw + s->suffix_len;
    if (rc == 0 && z->out.len > s->max_comp) {
        /* only a lone item (a bound is checked before each next one) */
        j->st.items_too_big++;
        z->out.len = 0;
        return;
    }
    unsigned char *body = rc == 0 ? cmn_malloc(z->out.len) : NULL;
    if (body == NULL) {
        j->st.payloads_dropped++;
        z->out.len = 0;
        return;
    }
    memcpy(body, z->out.p, z->out.len);
    struct fwd_payload *p = fwd_payload_new(s->kind, body, z->out.len);
    z->out.len = 0;
    if (p == NULL) {
        j->st.payloads_dropped++;
        return;
    }
    p->content_encoding = "zstd";
    p->raw_len = raw;
    agg_payload_out(j, s, p, z->items, (uint32_t)z->pts);
}

static int agg_zpack_open(struct agg__job *j, struct agg__zpack *z,
                          const struct agg__pack_spec *s)
{
    if (*z->cx == NULL) {
        ZSTD_customMem mem = {cmn_zstd_alloc, cmn_zstd_free, NULL};
        *z->cx = ZSTD_createCCtx_advanced(mem);
        if (*z->cx == NULL)
            return UV_ENOMEM;
    }
    if (ZSTD_isError(
            ZSTD_CCtx_reset(*z->cx, ZSTD_reset_session_and_parameters)) ||
        ZSTD_isError(ZSTD_CCtx_setParameter(*z->cx, ZSTD_c_compressionLevel,
                                            j->a->cfg.zstd_level)))
        return UV_ENOMEM;
    z->out.len = 0;
    z->pts = 0;
    z->items = 0;
    z->open = true;
    int rc = agg_zpack_run(z, s->prefix, s->prefix_len, ZSTD_e_continue);
    if (rc != 0) {
        z->open = false;
        return rc;
    }
    z->raw = z->unflushed = s->prefix_len;
    return 0;
}

/* Whether one more item of len raw bytes and pts points keeps a payload
 * of raw bytes and npts points, unflushed of them not yet flushed by the
 * stream, within every limit. */
static bool agg_zpack_within(const struct agg__zpack *z,
                             const struct agg__pack_spec *s, size_t raw,
                             size_t unflushed, uint64_t npts, size_t len,
                             uint32_t pts)
{
    size_t more = s->sep_len + len + s->suffix_len;
    return raw + more <= s->max_raw &&
           (!s->max_points || npts + pts <= s->max_points) &&
           z->out.len + ZSTD_compressBound(unflushed + more) +
                   AGG_ZPACK_SLACK <=
               s->max_comp;
}

/* Whether an item fits the open payload; flushes the stream first when
 * only the bound of its unflushed bytes is in the way. */
static bool agg_zpack_fits(struct agg__zpack *z, const struct agg__pack_spec *s,
                           size_t len, uint32_t pts)
{
    if (agg_zpack_within(z, s, z->raw, z->unflushed, z->pts, len, pts))
        return true;
    if (z->unflushed == 0 || agg_zpack_run(z, NULL, 0, ZSTD_e_flush) != 0)
        return false;
    z->unflushed = 0;
    return agg_zpack_within(z, s, z->raw, 0, z->pts, len, pts);
}

/* Feeds items [i, k) of c, which fit the open payload, in one call of the
 * stream (k > i + 1 only for items without a separator: protobuf). 0 or an
 * error (the payload is then lost). */
static int agg_zpack_put(struct agg__zpack *z, const struct agg__pack_spec *s,
                         const struct agg__chunks *c, size_t i, size_t k)
{
    size_t from = agg_chunk_start(c, i), len = c->end[k - 1] - from;
    size_t sep = z->items > 0 ? s->sep_len : 0;
    int rc = sep ? agg_zpack_run(z, s->sep, sep, ZSTD_e_continue) : 0;
    if (rc == 0)
        rc = agg_zpack_run(z, c->data.p + from, len, ZSTD_e_continue);
    if (rc != 0)
        return rc;
    z->raw += sep + len;
    z->unflushed += sep + len;
    for (size_t n = i; n < k; n++)
        z->pts += c->points[n];
    z->items += (uint32_t)(k - i);
    return 0;
}

/* Whether an item is too big for any payload. */
static bool agg_zpack_too_big(const struct agg__pack_spec *s, size_t len,
                              uint32_t pts)
{
    return (s->max_points && pts > s->max_points) ||
           s->prefix_len + len + s->suffix_len > s->max_raw;
}

void agg__zpack_feed(struct agg__job *j, struct agg__zpack *z,
                     struct agg__chunks *c, const struct agg__pack_spec *spec)
{
    size_t i = 0;
    while (i < c->n) {
        size_t len = agg_chunk_len(c, i);
        if (agg_zpack_too_big(spec, len, c->points[i])) {
            j->st.items_too_big++;
            i++;
            continue;
        }
        if (z->open && !agg_zpack_fits(z, spec, len, c->points[i]))
            agg_zpack_close(j, z, spec);
        if (!z->open && agg_zpack_open(j, z, spec) != 0) {
            j->st.payloads_dropped++;
            i++;
            continue;
        }
        /* item i fits; so do the next ones that fit without a flush */
        size_t k = i + 1, raw = z->raw + len, unfl = z->unflushed + len;
        uint64_t pts = z->pts + c->points[i];
        while (spec->sep_len == 0 && k < c->n) {
            size_t lk = agg_chunk_len(c, k);
            if (agg_zpack_too_big(spec, lk, c->points[k]) ||
                !agg_zpack_within(z, spec, raw, unfl, pts, lk, c->points[k]))
                break; /* a too-big item is counted by the next round */
            raw += lk;
            unfl += lk;
            pts += c->points[k];
            k++;
        }
        if (agg_zpack_put(z, spec, c, i, k) != 0) {
            z->open = false; /* the stream is broken: the payload is lost */
            z->out.len = 0;
            j->st.payloads_dropped++;
        }
        i = k;
    }
    c->data.len = 0;
    c->n = 0;
    c->pts = 0;
}

void agg__zpack_finish(struct agg__job *j, struct agg__zpack *z,
                       const struct agg__pack_spec *spec)
{
    agg_zpack_close(j, z, spec);
}
