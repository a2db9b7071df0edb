/*
 * agg_hist.c - a flush job's records: the per-type value of every bucket
 * entry (counter sum/10 as a rate, gauge, set size, the histogram
 * aggregates and percentiles, finished sketches with their summary) and
 * the order they are written in (spec/pipeline.md §2.3). Runs on a pool
 * thread, before the serializer (agg_serialize.c, which only writes
 * fields) or the record sink (agg_records.c) reads them.
 *
 * Invariant: every record built here has finite values; a point or sketch
 * whose aggregate overflowed to +/-Inf is counted (nonfinite) and left
 * out, never sent. Records point at the job's contexts (alive until the
 * job is reaped) and, for sketches, at the bucket's sketch (alive until
 * the bucket is scrubbed on the same worker).
 */
#include "agg_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int agg_rec_cmp(const void *x, const void *y)
{
    const struct agg__rec *r = x, *s = y;
    if (r->ctx->id != s->ctx->id)
        return r->ctx->id < s->ctx->id ? -1 : 1;
    if (r->suffix != s->suffix)
        return r->suffix < s->suffix ? -1 : 1;
    if (r->api != s->api)
        return r->api < s->api ? -1 : 1;
    return r->ts < s->ts ? -1 : r->ts > s->ts;
}

static int agg_hs_cmp(const void *x, const void *y)
{
    const struct agg__hsample *r = x, *s = y;
    return r->v < s->v ? -1 : r->v > s->v;
}

/* a + b, saturating at INT64_MAX / INT64_MIN instead of wrapping. Weights
 * are bounded by the rate floor, so this only guards the invariant. */
static inline int64_t agg_sat_add(int64_t a, int64_t b)
{
    int64_t r;
    if (__builtin_add_overflow(a, b, &r))
        return b > 0 ? INT64_MAX : INT64_MIN;
    return r;
}

/* First sorted sample whose running weight is greater than target. */
static double agg_hist_rank(const struct agg__hist *h, int64_t target)
{
    int64_t run = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        run = agg_sat_add(run, h->s[i].w);
        if (run > target)
            return h->s[i].v;
    }
    return h->s[h->n - 1].v;
}

/* Appends the records of a histogram entry (histogram.go flush). Exact
 * storage: the samples sorted, ranked by weight. Past the exact-storage
 * threshold: count, sum, min, max and avg from the exact summaries, the
 * median and the percentiles from the sketch (1/128 relative error). */
static size_t agg_hist_recs(const struct agg *a, struct agg__hist *h,
                            struct agg__rec *out, struct agg__rec proto)
{
    int64_t count = 0;
    double sum = h->sum + h->comp; /* Σ value/rate, not Σ value×w */
    double min, max;
    size_t n = 0;

    if (h->sk != NULL) {
        if (h->count == 0 || agg_sketch_finish(h->sk) != 0)
            return 0;
        count = h->count;
        min = h->min;
        max = h->max;
    } else {
        if (h->n == 0)
            return 0;
        qsort(h->s, h->n, sizeof(*h->s), agg_hs_cmp);
        for (uint32_t i = 0; i < h->n; i++)
            count = agg_sat_add(count, h->s[i].w);
        if (count == 0)
            return 0;
        min = h->s[0].v;
        max = h->s[h->n - 1].v;
    }
    for (size_t k = 1; k < a->nsuffix; k++) {
        const struct agg__suffix *s = &a->suffix[k];
        struct agg__rec r = proto;
        r.suffix = (uint16_t)k;
        r.api = s->api_type;
        switch (s->what) {
        case AGG__H_MAX:
            r.v = max;
            break;
        case AGG__H_MIN:
            r.v = min;
            break;
        case AGG__H_MEDIAN:
            r.v = h->sk ? agg_sketch_quantile(h->sk, 0.5)
                        : agg_hist_rank(h, (count - 1) / 2);
            break;
        case AGG__H_AVG:
            r.v = sum / (double)count;
            break;
        case AGG__H_SUM:
            r.v = sum;
            break;
        case AGG__H_COUNT:
            r.v = (double)count / AGG_BUCKET_SECS;
            break;
        default: /* AGG__H_PCT */
            r.v = h->sk
                      ? agg_sketch_quantile(h->sk, (double)s->pct / 100.0)
                      : agg_hist_rank(
                            h, (int64_t)(((__int128)s->pct * count - 1) / 100));
            break;
        }
        out[n++] = r;
    }
    return n;
}

/* The series records of the job's buckets, sorted by (context, suffix, API
 * type, time), so that the records of one series are adjacent. */
static void agg_series_recs(struct agg__job *j)
{
    const struct agg *a = j->a;
    size_t cap = 0, w = 0;

    /* exact: nseries * nsuffix was 8 times the records of a flush of
     * counters (19 MB of the memory budget at 100 000 contexts) */
    for (size_t i = 0; i < j->nbuckets; i++) {
        const struct agg__bucket *b = j->buckets[i];
        for (uint32_t k = 0; k < b->n; k++) {
            uint8_t kind = b->ents[k].kind;
            if (kind == AGG_HISTOGRAM || kind == AGG_TIMING)
                cap += a->nsuffix;
            else if (kind != AGG_DISTRIBUTION)
                cap++;
        }
    }
    if (cap == 0)
        return;
    struct agg__rec *r = cmn_calloc(cap, sizeof(*r));
    if (r == NULL) {
        for (size_t i = 0; i < j->nbuckets; i++) {
            if (j->buckets[i]->nseries > 0)
                j->st.payloads_dropped++; /* records lost to OOM */
        }
        return;
    }
    for (size_t i = 0; i < j->nbuckets; i++) {
        const struct agg__bucket *b = j->buckets[i];
        for (uint32_t k = 0; k < b->n; k++) {
            const struct agg__entry *e = &b->ents[k];
            struct agg__rec p = {e->ctx, b->start, 0, 0, AGG__API_GAUGE};
            switch (e->kind) {
            case AGG_GAUGE:
                p.v = e->u.gauge;
                break;
            case AGG_COUNTER:
                p.v = e->u.sum / AGG_BUCKET_SECS;
                p.api = AGG__API_RATE;
                break;
            case AGG_SET:
                p.v = (double)e->u.set->n;
                break;
            case AGG_HISTOGRAM:
            case AGG_TIMING:
                w += agg_hist_recs(a, e->u.hist, r + w, p);
                continue;
            default:
                continue; /* sketches */
            }
            r[w++] = p;
        }
    }
    /* A sum can overflow to +/-Inf (ten c:1e308, two h:1e308): such a
     * point is dropped and counted, never sent. */
    size_t f = 0;
    for (size_t i = 0; i < w; i++) {
        if (isfinite(r[i].v))
            r[f++] = r[i];
        else
            j->st.nonfinite++;
    }
    if (f > 1)
        qsort(r, f, sizeof(*r), agg_rec_cmp);
    j->recs = r;
    j->nrecs = f;
}

static int agg_skrec_cmp(const void *x, const void *y)
{
    const struct agg__skrec *r = x, *s = y;
    if (r->ctx->id != s->ctx->id)
        return r->ctx->id < s->ctx->id ? -1 : 1;
    return r->ts < s->ts ? -1 : r->ts > s->ts;
}

/* The finished sketches of the job, sorted by (context, time). With
 * quantiles, p50 and p99 are computed too (the record sink shows them; the
 * intake computes its own from the bins). */
static void agg_sketch_recs(struct agg__job *j, bool quantiles)
{
    size_t n = 0, cap = 0;

    for (size_t i = 0; i < j->nbuckets; i++)
        cap += j->buckets[i]->n - j->buckets[i]->nseries;
    if (cap == 0)
        return;
    struct agg__skrec *r = cmn_calloc(cap, sizeof(*r));
    if (r == NULL) {
        j->st.payloads_dropped++;
        return;
    }
    for (size_t i = 0; i < j->nbuckets; i++) {
        struct agg__bucket *b = j->buckets[i];
        for (uint32_t k = 0; k < b->n; k++) {
            struct agg__entry *e = &b->ents[k];
            if (e->kind != AGG_DISTRIBUTION || e->u.sk->cnt == 0)
                continue;
            if (agg_sketch_finish(e->u.sk) != 0) {
                j->st.payloads_dropped++;
                continue;
            }
            if (!isfinite(e->u.sk->sum) || !isfinite(e->u.sk->avg)) {
                j->st.nonfinite++; /* two d:1e308: the sum overflowed */
                continue;
            }
            struct agg__skrec *s = &r[n++];
            s->ctx = e->ctx;
            s->ts = b->start;
            s->sk = e->u.sk;
            s->cnt = e->u.sk->cnt;
            s->min = e->u.sk->min;
            s->max = e->u.sk->max;
            s->sum = e->u.sk->sum;
            s->avg = e->u.sk->avg;
            if (quantiles) {
                s->p50 = agg_sketch_quantile(e->u.sk, 0.5);
                s->p99 = agg_sketch_quantile(e->u.sk, 0.99);
            }
        }
    }
    if (n > 1)
        qsort(r, n, sizeof(*r), agg_skrec_cmp);
    j->skrecs = r;
    j->nskrecs = n;
}

/* Events by source type ("api" when unset), arrival order within one: the
 * order the events payload groups them in. */
static int agg_ev_cmp(const void *x, const void *y)
{
    const struct agg__event *const *e = x, *const *f = y;
    struct cmn_slice s = (*e)->source.len ? (*e)->source : CMN_SLICE_LIT("api");
    struct cmn_slice t = (*f)->source.len ? (*f)->source : CMN_SLICE_LIT("api");
    size_t n = s.len < t.len ? s.len : t.len;
    int c = memcmp(s.p, t.p, n);
    if (c == 0 && s.len != t.len)
        c = s.len < t.len ? -1 : 1;
    if (c == 0) /* stable: keep arrival order within a source */
        c = (*e)->seq < (*f)->seq ? -1 : (*e)->seq > (*f)->seq;
    return c;
}

void agg__job_records(struct agg__job *j, bool quantiles)
{
    const struct agg_config *cfg = &j->a->cfg;
    if (cfg->enable_series) {
        agg_series_recs(j);
        for (size_t i = 0; i < j->nnoagg; i++) {
            if (!isfinite(j->noagg[i].value)) /* finite at intake: an
                                                 invariant */
                j->st.nonfinite++;
        }
    }
    if (cfg->enable_sketches)
        agg_sketch_recs(j, quantiles);
    if (cfg->enable_events && j->nevents > 1)
        qsort(j->events, j->nevents, sizeof(*j->events), agg_ev_cmp);
}

void agg__job_records_free(struct agg__job *j)
{
    cmn_free(j->recs);
    j->recs = NULL;
    j->nrecs = 0;
    cmn_free(j->skrecs);
    j->skrecs = NULL;
    j->nskrecs = 0;
}
