/*
 * agg_records.c - the tags an item carries (its own, then the extra tags it
 * lacks), and handing a flush's records to a record sink instead of
 * serializing them (aggregator.h, "Records"). The record sink is the local
 * sink's way in: it sees the values the payloads would carry, in the same
 * order, without any payload being built or decoded.
 *
 * Runs on the loop thread, in the job's after-work callback: the job still
 * holds its context references (released later, in steps), its events and
 * checks, and the records agg_hist.c built on the worker. Scratch arrays
 * (tags, points) grow to the largest item of the flush and are freed at its
 * end; an item whose scratch cannot grow is dropped and counted in
 * payloads_dropped.
 */
#include "agg_internal.h"

#include <math.h>

bool agg__has_tag(const struct cmn_slice *tags, size_t n, struct cmn_slice t)
{
    for (size_t i = 0; i < n; i++) {
        if (cmn_slice_eq(tags[i], t))
            return true;
    }
    return false;
}

/* Makes room for need slices in *out. */
static int agg_tags_room(struct cmn_slice **out, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    struct cmn_slice *nt = cmn_reallocarray(*out, need, sizeof(*nt));
    if (nt == NULL)
        return UV_ENOMEM;
    *out = nt;
    *cap = need;
    return 0;
}

/* Appends the job's extra tags that the first n of out lack; returns the
 * new count. out has room for them. */
static size_t agg_tags_extra(const struct agg__job *j, struct cmn_slice *out,
                             size_t n)
{
    size_t w = n;
    for (size_t i = 0; j->extra && i < j->extra->n; i++) {
        if (!agg__has_tag(out, n, j->extra->tags[i]))
            out[w++] = j->extra->tags[i];
    }
    return w;
}

long agg__tags(const struct agg__job *j, const struct agg__ctx *c,
               struct cmn_slice **out, size_t *cap, bool take_device,
               struct cmn_slice *device)
{
    size_t n = 0;
    if (agg_tags_room(out, cap, c->ntags + (j->extra ? j->extra->n : 0)))
        return -1;
    device->p = NULL;
    device->len = 0;
    for (uint32_t i = 0; i < c->ntags; i++)
        (*out)[n++] = agg__ctx_tag(j->a, c, i);
    n = agg_tags_extra(j, *out, n);
    if (take_device) {
        size_t w = 0;
        for (size_t i = 0; i < n; i++) {
            if (cmn_slice_has_prefix((*out)[i], "device:")) {
                *device = cmn_slice((*out)[i].p + 7, (*out)[i].len - 7);
                continue;
            }
            (*out)[w++] = (*out)[i];
        }
        n = w;
    }
    return (long)n;
}

long agg__tags_merge(const struct agg__job *j, const struct cmn_slice *tags,
                     size_t n, struct cmn_slice **out, size_t *cap)
{
    if (agg_tags_room(out, cap, n + (j->extra ? j->extra->n : 0)))
        return -1;
    for (size_t i = 0; i < n; i++)
        (*out)[i] = tags[i];
    return (long)agg_tags_extra(j, *out, n);
}

/* Scratch of one emission. */
struct agg_emit {
    struct agg__job *j;
    const struct agg_record_sink *sink;
    struct cmn_slice *tags;
    size_t tcap;
    struct agg_point *pts;
    size_t pcap;
    uint64_t n; /* records handed over */
};

static void agg_emit_series(struct agg_emit *e, const struct agg__ctx *c,
                            const char *suffix, uint8_t api,
                            const struct agg_point *pts, size_t npts)
{
    struct agg_series_rec r = {.name = agg__ctx_name(c), .suffix = suffix};
    long nt = agg__tags(e->j, c, &e->tags, &e->tcap, true, &r.device);
    if (nt < 0) {
        e->j->st.payloads_dropped++;
        return;
    }
    r.host = agg__ctx_host(e->j->a, c);
    r.tags = e->tags;
    r.ntags = (size_t)nt;
    r.type = (enum agg_series_type)api;
    r.interval = AGG_BUCKET_SECS;
    r.points = pts;
    r.npoints = npts;
    e->sink->series(e->sink->data, &r);
    e->j->st.series++;
    e->j->st.points += npts;
    e->n++;
}

/* The series records, one call per series, then the no-aggregation
 * samples, one series each. */
static void agg_emit_all_series(struct agg_emit *e)
{
    struct agg__job *j = e->j;
    const struct agg__rec *r = j->recs;

    for (size_t i = 0; i < j->nrecs;) {
        size_t k = i + 1;
        while (k < j->nrecs && r[k].ctx == r[i].ctx &&
               r[k].suffix == r[i].suffix && r[k].api == r[i].api)
            k++;
        if (k - i > e->pcap) {
            struct agg_point *np = cmn_reallocarray(e->pts, k - i, sizeof(*np));
            if (np == NULL) {
                j->st.payloads_dropped++;
                i = k;
                continue;
            }
            e->pts = np;
            e->pcap = k - i;
        }
        for (size_t p = i; p < k; p++)
            e->pts[p - i] = (struct agg_point){r[p].ts, r[p].v};
        agg_emit_series(e, r[i].ctx, j->a->suffix[r[i].suffix].name, r[i].api,
                        e->pts, k - i);
        i = k;
    }
    for (size_t i = 0; i < j->nnoagg; i++) {
        const struct agg__noagg *na = &j->noagg[i];
        if (!isfinite(na->value)) /* counted by agg__job_records */
            continue;
        struct agg_point pt = {na->ts, na->value};
        agg_emit_series(e, na->ctx, "", na->api_type, &pt, 1);
    }
}

static void agg_emit_sketches(struct agg_emit *e)
{
    struct agg__job *j = e->j;
    for (size_t i = 0; i < j->nskrecs; i++) {
        const struct agg__skrec *s = &j->skrecs[i];
        struct cmn_slice dev;
        long nt = agg__tags(j, s->ctx, &e->tags, &e->tcap, false, &dev);
        if (nt < 0) {
            j->st.payloads_dropped++;
            continue;
        }
        struct agg_sketch_rec r = {
            .name = agg__ctx_name(s->ctx),
            .host = agg__ctx_host(j->a, s->ctx),
            .tags = e->tags,
            .ntags = (size_t)nt,
            .ts = s->ts,
            .cnt = s->cnt,
            .min = s->min,
            .max = s->max,
            .sum = s->sum,
            .avg = s->avg,
            .p50 = s->p50,
            .p99 = s->p99,
        };
        e->sink->sketch(e->sink->data, &r);
        if (i == 0 || j->skrecs[i - 1].ctx != s->ctx)
            j->st.sketches++; /* one per context, as in the payload */
        e->n++;
    }
}

static void agg_emit_events_checks(struct agg_emit *e)
{
    struct agg__job *j = e->j;
    const struct agg_config *cfg = &j->a->cfg;

    for (size_t i = 0; cfg->enable_events && i < j->nevents; i++) {
        const struct agg__event *v = j->events[i];
        long nt = agg__tags_merge(j, v->tags, v->ntags, &e->tags, &e->tcap);
        if (nt < 0) {
            j->st.payloads_dropped++;
            continue;
        }
        struct agg_event_rec r = {
            .title = v->title,
            .text = v->text,
            .host = v->host,
            .aggregation_key = v->agg_key,
            .source_type_name = v->source,
            .ts = v->ts,
            .priority = v->priority,
            .alert_type = v->alert_type,
            .tags = e->tags,
            .ntags = (size_t)nt,
        };
        e->sink->event(e->sink->data, &r);
        e->n++;
    }
    for (size_t i = 0; cfg->enable_service_checks && i < j->nchecks; i++) {
        const struct agg__check *c = j->checks[i];
        long nt = agg__tags_merge(j, c->tags, c->ntags, &e->tags, &e->tcap);
        if (nt < 0) {
            j->st.payloads_dropped++;
            continue;
        }
        struct agg_check_rec r = {
            .name = c->name,
            .host = c->host,
            .message = c->message,
            .status = c->status,
            .ts = c->ts,
            .tags = e->tags,
            .ntags = (size_t)nt,
        };
        e->sink->check(e->sink->data, &r);
        e->n++;
    }
}

void agg__records_emit(struct agg__job *j)
{
    struct agg_emit e = {.j = j, .sink = &j->a->rsink};

    if (j->a->cfg.enable_series)
        agg_emit_all_series(&e);
    agg_emit_sketches(&e);
    agg_emit_events_checks(&e);
    if (e.n > 0 && e.sink->flushed != NULL)
        e.sink->flushed(e.sink->data);
    cmn_free(e.tags);
    cmn_free(e.pts);
    agg__job_records_free(j);
}
