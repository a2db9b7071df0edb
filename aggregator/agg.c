/*
 * agg.c - the aggregator's public face: create/start/stop/destroy, the hot
 * path (agg_add_metric), the no-aggregation path (spec/pipeline.md §2.6),
 * events and service checks, and flushing off the loop.
 *
 * A flush swaps the due buckets, the no-agg batch and the queued events
 * into a job on the loop thread and serializes it on the libuv pool. Jobs
 * run one at a time in creation order, so payloads reach submit in flush
 * order; the after-work callback (loop thread) submits them, releases the
 * job's context references and calls the flush's callback.
 *
 * Stop (STYLE.md rule 5): the timer is closed, the final flush is queued,
 * and the stop callback fires once the timer's close callback has run and
 * no job is left; nothing of the aggregator is touched after it.
 */
#include "agg_serialize.h"

#include <math.h>
#include <string.h>

static struct cmn_ratelimit agg_rl = CMN_RATELIMIT_INIT(60000, 5);

static double agg_wall_now(void)
{
    return (double)cmn_wall_ns() / 1e9;
}

static double agg_clock_now(struct agg *a)
{
    return a->clock ? a->clock(a->clock_data) : agg_wall_now();
}

void agg_set_clock(struct agg *a, agg_clock_fn fn, void *data)
{
    a->clock = fn;
    a->clock_data = data;
}

/* Sample time with the default clock: the wall clock re-read once per loop
 * iteration (when the loop's cached time moves) or every 4096 samples (for
 * an embedder feeding samples without running the loop), so the hot path
 * makes no system call. */
static double agg_clock_sample(struct agg *a)
{
    if (a->clock)
        return a->clock(a->clock_data);
    uint64_t n = uv_now(a->loop);
    if (n != a->clock_at || (++a->clock_uses & 4095) == 0 ||
        a->clock_cached == 0) {
        a->clock_at = n;
        a->clock_cached = agg_wall_now();
    }
    return a->clock_cached;
}

int agg_create(uv_loop_t *loop, const struct agg_config *cfg,
               fwd_submit_fn submit, void *submit_data, struct agg **out)
{
    struct agg *a;
    int rc;

    *out = NULL;
    if (loop == NULL || cfg == NULL || cfg->context_limit == 0 ||
        cfg->no_agg_batch_size == 0 || cfg->tags_per_metric_max == 0 ||
        !(cfg->flush_interval_s > 0))
        return UV_EINVAL;
    a = cmn_calloc(1, sizeof(*a));
    if (a == NULL)
        return UV_ENOMEM;
    a->loop = loop;
    a->submit = submit;
    a->submit_data = submit_data;
    rc = agg__config_copy(&a->cfg, cfg);
    if (rc) {
        cmn_free(a);
        return rc;
    }
    a->host = a->cfg.serverless ? "" : a->cfg.hostname;
    agg__chunks_init(&a->sch);
    rc = agg__suffix_build(a);
    if (rc == 0)
        rc = agg__ctx_init(a);
    if (rc)
        goto out_destroy;
    const char *const *tags = (const char *const *)a->cfg.extra_tags;
    rc = agg_set_extra_tags(a, tags, a->cfg.nextra_tags);
    if (rc)
        goto out_destroy;
    *out = a; /* the no-agg batch is allocated with its first sample */
    return 0;
out_destroy:
    agg_destroy(a);
    return rc;
}

int agg_set_extra_tags(struct agg *a, const char *const *tags, size_t n)
{
    struct cmn_slice small[16] = {{NULL, 0}}, *sl = small;
    if (n > 16) {
        sl = cmn_calloc(n, sizeof(*sl));
        if (sl == NULL)
            return UV_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        sl[i] = cmn_slice_cstr(tags[i]);
    struct agg__tagset *t = agg__tagset_new(sl, n);
    if (sl != small)
        cmn_free(sl);
    if (t == NULL)
        return UV_ENOMEM;
    agg__tagset_unref(a->extra);
    a->extra = t;
    return 0;
}

/* ---- jobs ---------------------------------------------------------------- */

void agg__job_free(struct agg *a, struct agg__job *j)
{
    for (size_t i = 0; i < j->nbuckets; i++) {
        struct agg__bucket *b = j->buckets[i];
        for (uint32_t k = 0; k < b->n; k++)
            agg__ctx_unref(b->ents[k].ctx);
        agg__bucket_recycle(a, b);
    }
    cmn_free(j->buckets);
    for (size_t i = 0; i < j->nnoagg; i++)
        agg__ctx_unref(j->noagg[i].ctx);
    cmn_free(j->noagg);
    for (size_t i = 0; i < j->nevents; i++)
        cmn_free(j->events[i]);
    cmn_free(j->events);
    for (size_t i = 0; i < j->nchecks; i++)
        cmn_free(j->checks[i]);
    cmn_free(j->checks);
    for (size_t i = 0; i < j->nout; i++)
        fwd_payload_free(j->out[i]);
    cmn_free(j->out);
    agg__job_records_free(j);
    agg__tagset_unref(j->extra);
    cmn_free(j);
}

/* A free for the thread pool (agg__free_off_loop). */
struct agg__bg {
    uv_work_t work;
    struct agg *a;
    void *p;
    bool big;
};

static void agg_bg_work(uv_work_t *w)
{
    struct agg__bg *b = w->data;
    if (b->big)
        cmn_free_big(b->p);
    else
        cmn_free(b->p);
}

static void agg_bg_after(uv_work_t *w, int status)
{
    (void)status; /* never cancelled */
    struct agg__bg *b = w->data;
    struct agg *a = b->a;
    cmn_free(b);
    if (--a->nbg == 0 && a->destroy_pending) {
        cmn_free(a);
        return;
    }
    agg__maybe_stopped(a);
}

void agg__free_off_loop(struct agg *a, void *p, bool big)
{
    struct agg__bg *b = NULL;
    if (a != NULL && a->started && !a->stopping &&
        cmn_alloc_size(p) >= AGG_FREE_OFF_LOOP)
        b = cmn_malloc(sizeof(*b));
    if (b != NULL) {
        *b = (struct agg__bg){.a = a, .p = p, .big = big};
        b->work.data = b;
        if (uv_queue_work(a->loop, &b->work, agg_bg_work, agg_bg_after) == 0) {
            a->nbg++;
            return;
        }
        cmn_free(b);
    }
    if (big)
        cmn_free_big(p);
    else
        cmn_free(p);
}

void agg__maybe_stopped(struct agg *a)
{
    if (!a->stopping || !a->timer_closed || a->running != NULL ||
        a->pend_head != NULL || a->stop_reported || agg__steps_pending(a) ||
        a->nbg > 0)
        return;
    if (!a->handles_closing) {
        a->handles_closing = true;
        a->nclosing = agg__handles_close(a);
    }
    if (a->nclosing > 0)
        return;
    a->stop_reported = true;
    if (a->stop_cb)
        a->stop_cb(a->stop_data); /* may destroy a: nothing after this */
}

static void agg_job_start(struct agg *a, struct agg__job *j);

void agg__handle_closed(struct agg *a)
{
    a->nclosing--;
    agg__maybe_stopped(a);
}

/* Worker: builds the records (agg_hist.c), serializes them unless a
 * record sink takes them (then they are kept for the loop), then frees
 * the entries' state (histogram samples, sets, sketches) and clears the
 * buckets' indexes, so that the loop only releases context references, in
 * steps (agg_step.c). */
static void agg_work_cb(uv_work_t *req)
{
    struct agg__job *j = req->data;
    agg__job_records(j, j->a->has_rsink);
    if (!j->a->has_rsink) {
        agg__serialize_job(j);
        agg__job_records_free(j); /* only the payloads wait for the loop */
    }
    for (size_t i = 0; i < j->nbuckets; i++)
        agg__bucket_scrub(j->buckets[i]);
}

void agg__job_done(struct agg *a, struct agg__job *j)
{
    agg_done_cb cb = j->cb;
    void *cb_data = j->cb_data;

    agg__job_free(a, j);
    if (cb)
        cb(cb_data);
}

void agg__job_after(struct agg__job *j)
{
    struct agg *a = j->a;

    if (a->has_rsink)
        agg__records_emit(j);
    for (size_t i = 0; i < j->nout; i++) {
        a->st.payloads++;
        a->submit(a->submit_data, j->out[i]);
    }
    j->nout = 0;
    a->st.series_flushed += j->st.series;
    a->st.points_flushed += j->st.points;
    a->st.sketches_flushed += j->st.sketches;
    a->st.items_too_big += j->st.items_too_big;
    a->st.payloads_dropped += j->st.payloads_dropped;
    if (j->st.nonfinite > 0) {
        a->st.points_nonfinite += j->st.nonfinite;
        cmn_log_rl(&agg_rl, CMN_LOG_WARN, AGG_COMP,
                   "dropped %llu points or sketches whose aggregate is not "
                   "finite (a sum past the range of a double)",
                   (unsigned long long)j->st.nonfinite);
    }
    a->running = NULL;
    if (a->pend_head != NULL) {
        struct agg__job *n = a->pend_head;
        a->pend_head = n->next;
        a->npending--;
        if (a->pend_head == NULL)
            a->pend_tail = NULL;
        agg_job_start(a, n);
    }
    agg__reap(a, j); /* its callback comes once its references are gone */
}

static void agg_after_work_cb(uv_work_t *req, int status)
{
    (void)status; /* never cancelled */
    agg__job_after(req->data);
}

/* Entries, events and checks a job holds: its serialization's size. */
static size_t agg_job_items(const struct agg__job *j)
{
    size_t n = j->nnoagg + j->nevents + j->nchecks;
    for (size_t i = 0; i < j->nbuckets && n <= AGG_INLINE_ITEMS; i++)
        n += j->buckets[i]->n;
    return n;
}

void agg_set_record_sink(struct agg *a, const struct agg_record_sink *sink)
{
    a->rsink = *sink;
    a->has_rsink = true;
}

void agg_set_backpressure(struct agg *a, agg_full_fn full,
                          agg_on_space_fn on_space, void *data)
{
    a->bp_full = on_space != NULL ? full : NULL;
    a->bp_on_space = on_space;
    a->bp_data = data;
}

/* fwd_space_cb: the sink has room for the held job. */
static void agg_space_cb(void *data)
{
    struct agg *a = data;

    if (!a->held)
        return;
    a->held = false;
    agg_job_start(a, a->running);
}

static void agg_job_start(struct agg *a, struct agg__job *j)
{
    a->running = j;
    if (a->bp_full != NULL && a->bp_full(a->bp_data)) {
        /* the sink's queue is at its share of the memory budget: hold the
         * job (its buckets are aggregated state, not payloads yet) */
        if (!a->held)
            a->st.backpressure_waits++;
        a->held = true;
        a->bp_on_space(a->bp_data, agg_space_cb, a);
        return;
    }
    j->work.data = j;
    if (a->stopping && agg_job_items(j) <= AGG_INLINE_ITEMS) {
        agg_work_cb(&j->work);
        agg__steps_after(a, j);
        return;
    }
    if (uv_queue_work(a->loop, &j->work, agg_work_cb, agg_after_work_cb)) {
        /* cannot happen with valid callbacks; stay correct anyway */
        agg_work_cb(&j->work);
        agg_after_work_cb(&j->work, 0);
    }
}

void agg__job_enqueue(struct agg *a, struct agg__job *j)
{
    j->a = a;
    j->extra = a->extra;
    a->extra->refs++;
    a->st.flushes++;
    if (a->running == NULL) {
        agg_job_start(a, j);
        return;
    }
    a->npending++;
    if (a->pend_tail)
        a->pend_tail->next = j;
    else
        a->pend_head = j;
    a->pend_tail = j;
}

/* Hands the no-agg batch to j; the next timestamped sample allocates a
 * new one. */
static void agg_take_noagg(struct agg *a, struct agg__job *j)
{
    if (a->nnoagg == 0)
        return;
    j->noagg = a->noagg;
    j->nnoagg = a->nnoagg;
    a->noagg = NULL;
    a->nnoagg = 0;
}

/* Cuts the no-agg batch on its own (batch size reached). */
static int agg_cut_noagg(struct agg *a)
{
    if (a->npending >= AGG_JOBS_MAX)
        return CMN_ECAP;         /* the pool is behind: do not queue more */
    agg__steps_finish(a, false); /* keeps jobs in flush order */
    struct agg__job *j = cmn_calloc(1, sizeof(*j));
    if (j == NULL)
        return UV_ENOMEM;
    agg_take_noagg(a, j);
    agg__job_enqueue(a, j);
    return 0;
}

static int agg_flush_internal(struct agg *a, bool force, agg_done_cb cb,
                              void *data)
{
    double now = agg_clock_now(a);
    int64_t cutoff = agg__bucket_start(now);
    struct agg__job *j;
    bool synth;
    int rc;

    /* the final flush always goes; a periodic one waits for the pool */
    if (a->npending >= AGG_JOBS_MAX && !a->stopping)
        return CMN_ECAP;
    agg__steps_finish(a, true); /* the previous zero-fill and expiry */
    j = cmn_calloc(1, sizeof(*j));
    if (j == NULL)
        return UV_ENOMEM;
    rc = agg__take_buckets(a, j, cutoff, force, &synth);
    if (rc) {
        cmn_free(j);
        return rc;
    }
    agg_take_noagg(a, j);
    j->events = a->events;
    j->nevents = a->nevents;
    a->events = NULL;
    a->nevents = a->capevents = 0;
    j->checks = a->checks;
    j->nchecks = a->nchecks;
    a->checks = NULL;
    a->nchecks = a->capchecks = 0;
    j->cb = cb;
    j->cb_data = data;
    /* zero-fill, then expiry, in steps; the job is queued between them */
    return agg__zf_begin(a, j, cutoff, synth,
                         now - (double)a->cfg.context_expiry_seconds);
}

int agg_add_value(struct agg *a, const char *name, enum agg_mtype type,
                  double v, const char *tags)
{
    const struct agg_metric m = {
        .name = cmn_slice_cstr(name),
        .tags = cmn_slice_cstr(tags != NULL ? tags : ""),
        .type = type,
        .values = &v,
        .nvalues = 1,
        .rate = 1,
    };
    return agg_add_metric(a, &m);
}

int agg_flush(struct agg *a, bool force, agg_done_cb cb, void *data)
{
    if (a->stop_reported || a->handles_closing) /* the step handle closes */
        return CMN_ESTOPPED;
    return agg_flush_internal(a, force, cb, data);
}

static void agg_timer_cb(uv_timer_t *t)
{
    struct agg *a = t->data;
    int rc = agg_flush_internal(a, false, NULL, NULL);
    if (rc)
        cmn_log_rl(&agg_rl, CMN_LOG_WARN, AGG_COMP, "flush failed: %s",
                   cmn_strerror(rc));
}

int agg_start(struct agg *a)
{
    if (a->started || a->stopping || (a->submit == NULL && !a->has_rsink))
        return UV_EINVAL;
    int rc = uv_timer_init(a->loop, &a->timer);
    if (rc)
        return rc;
    a->timer_inited = true;
    a->timer.data = a;
    uint64_t ms = (uint64_t)(a->cfg.flush_interval_s * 1000);
    if (ms == 0)
        ms = 1;
    rc = uv_timer_start(&a->timer, agg_timer_cb, ms, ms);
    if (rc)
        return rc;
    rc = agg__meter_start(a);
    if (rc)
        return rc;
    a->started = true;
    return 0;
}

static void agg_timer_close_cb(uv_handle_t *h)
{
    struct agg *a = h->data;
    a->timer_closed = true;
    agg__maybe_stopped(a);
}

void agg_stop(struct agg *a, struct cmn_deadline dl, agg_done_cb cb, void *data)
{
    (void)dl; /* see aggregator.h: nothing here is cut short */
    if (a->stopping)
        return;
    a->stopping = true;
    a->stop_cb = cb;
    a->stop_data = data;
    int rc = agg_flush_internal(a, a->cfg.flush_incomplete_buckets, NULL, NULL);
    if (rc)
        CMN_LOGE(AGG_COMP, "final flush failed: %s", cmn_strerror(rc));
    if (!a->timer_inited) {
        /* a handle to close makes the callback asynchronous always */
        if (uv_timer_init(a->loop, &a->timer) != 0) {
            a->timer_closed = true;
            agg__maybe_stopped(a);
            return;
        }
        a->timer_inited = true;
        a->timer.data = a;
    }
    uv_timer_stop(&a->timer);
    uv_close((uv_handle_t *)&a->timer, agg_timer_close_cb);
}

void agg_destroy(struct agg *a)
{
    if (a == NULL)
        return;
    if (a->held) /* a job waiting for the sink: never serialized */
        agg__job_free(a, a->running);
    agg__steps_fini(a);
    while (a->pend_head != NULL) { /* only if never run: be tidy */
        struct agg__job *j = a->pend_head;
        a->pend_head = j->next;
        agg__job_free(a, j);
    }
    for (size_t i = 0; i < a->nbuckets; i++)
        agg__bucket_free(a->buckets[i]);
    cmn_free(a->buckets);
    agg__bucket_free(a->spare);
    cmn_free(a->noagg);
    for (size_t i = 0; i < a->nevents; i++)
        cmn_free(a->events[i]);
    cmn_free(a->events);
    for (size_t i = 0; i < a->nchecks; i++)
        cmn_free(a->checks[i]);
    cmn_free(a->checks);
    agg__ctx_fini(a);
    agg__chunks_free(&a->sch);
    agg__zcx_free(a->zcx);
    cmn_free(a->suffix);
    agg__tagset_unref(a->extra);
    agg_config_free(&a->cfg);
    if (a->nbg > 0) { /* destroyed before its stop ended: freed by the
                         last of its thread-pool jobs (agg_bg_after) */
        a->destroy_pending = true;
        return;
    }
    cmn_free(a);
}

void agg_get_stats(const struct agg *a, struct agg_stats *out)
{
    *out = a->st;
    out->contexts = a->nctx;
}

/* ---- input ------------------------------------------------------------- */

void agg__count_nan(struct agg *a, const struct agg_metric *m, uint64_t n)
{
    a->st.samples_nan += n;
    cmn_log_rl(&agg_rl, CMN_LOG_WARN, AGG_COMP,
               "dropping %llu NaN/Inf values of %.*s: not finite",
               (unsigned long long)n,
               (int)(m->name.len > 200 ? 200 : m->name.len), m->name.p);
}

static void agg_count_ctx_err(struct agg *a, int rc, uint64_t n)
{
    if (rc == CMN_ECAP)
        a->st.contexts_dropped += n;
    else if (rc == CMN_ETOOBIG)
        a->st.samples_dropped_cap += n;
    else
        a->st.samples_dropped_oom += n;
}

/* A no-agg batch, filled in order: malloc, not calloc, so that its pages
 * are touched only as samples arrive (a process that never sees a
 * timestamped line never maps them). */
static struct agg__noagg *agg_noagg_new(const struct agg *a)
{
    size_t n = a->cfg.no_agg_batch_size;
    if (n > SIZE_MAX / sizeof(struct agg__noagg))
        return NULL;
    return cmn_malloc(n * sizeof(struct agg__noagg));
}

static int agg_add_noagg(struct agg *a, const struct agg_metric *m)
{
    struct agg__ctx *c;
    uint8_t api;
    int rc;

    if (m->type == AGG_GAUGE)
        api = AGG__API_GAUGE;
    else if (m->type == AGG_COUNTER)
        api = AGG__API_RATE;
    else {
        a->st.samples_no_agg_unsupported += m->type == AGG_SET ? 1 : m->nvalues;
        cmn_log_rl(&agg_rl, CMN_LOG_WARN, AGG_COMP,
                   "dropping timestamped %.*s: only gauges and counters "
                   "may carry a timestamp",
                   (int)(m->name.len > 200 ? 200 : m->name.len), m->name.p);
        return 0;
    }
    rc = agg__ctx_get(a, m->name, m->tags, &c);
    if (rc) {
        agg_count_ctx_err(a, rc, m->nvalues);
        return rc;
    }
    double now = agg_clock_sample(a);
    if (now > c->last_seen)
        c->last_seen = now;
    for (size_t i = 0; i < m->nvalues; i++) {
        double v = m->values[i];
        if (!isfinite(v)) {
            agg__count_nan(a, m, 1);
            continue;
        }
        if (a->nnoagg >= a->cfg.no_agg_batch_size) {
            rc = agg_cut_noagg(a);
            if (rc) {
                if (rc == CMN_ECAP)
                    a->st.samples_dropped_cap++;
                else
                    a->st.samples_dropped_oom++;
                continue;
            }
        }
        if (c->refs == UINT32_MAX) {
            a->st.samples_dropped_cap++;
            continue;
        }
        if (a->noagg == NULL && (a->noagg = agg_noagg_new(a)) == NULL) {
            a->st.samples_dropped_oom++;
            continue;
        }
        struct agg__noagg *s = &a->noagg[a->nnoagg++];
        s->ctx = c;
        c->refs++;
        s->value = api == AGG__API_RATE ? v / AGG_BUCKET_SECS : v;
        s->ts = m->timestamp;
        s->api_type = api;
        a->st.samples_no_agg++;
    }
    if (a->nnoagg >= a->cfg.no_agg_batch_size && agg_cut_noagg(a) != 0)
        cmn_log_rl(&agg_rl, CMN_LOG_WARN, AGG_COMP,
                   "could not cut the no-aggregation batch (memory, or "
                   "too many flushes waiting); kept");
    return 0;
}

/* A sample rate below AGG_RATE_FLOOR. Rates of 0 and below (and NaN)
 * have no weight 1/rate to give, so the line is refused (the parser never
 * passes them; an embedder may); a positive rate below the floor is
 * raised to it, so that no weight exceeds 1/AGG_RATE_FLOOR and the sums
 * and counts built from the weights stay in range (docs/limits.md). */
static __attribute__((noinline)) int agg_clamp_rate(struct agg *a,
                                                    struct agg_metric *m)
{
    size_t n = m->type == AGG_SET ? 1 : m->nvalues;
    int ml = (int)(m->name.len > 200 ? 200 : m->name.len);
    if (!(m->rate > 0)) {
        a->st.samples_rate_refused += n;
        cmn_log_rl(&agg_rl, CMN_LOG_WARN, AGG_COMP,
                   "dropping %.*s: sample rate %g is not above 0", ml,
                   m->name.p, m->rate);
        return CMN_EPARSE;
    }
    a->st.rates_clamped++;
    cmn_log_rl(&agg_rl, CMN_LOG_WARN, AGG_COMP,
               "%.*s: sample rate %g raised to the floor %g", ml, m->name.p,
               m->rate, AGG_RATE_FLOOR);
    m->rate = AGG_RATE_FLOOR;
    return 0;
}

static AGG_LINE_PATH int agg_add_one(struct agg *a, const struct agg_metric *m)
{
    struct agg__ctx *c;
    int rc;

    if (m->timestamp > 0 && a->cfg.no_aggregation_pipeline)
        return agg_add_noagg(a, m);
    rc = agg__ctx_get(a, m->name, m->tags, &c);
    if (rc) {
        agg_count_ctx_err(a, rc, m->type == AGG_SET ? 1 : m->nvalues);
        return rc;
    }
    double t = m->timestamp > 0 ? (double)m->timestamp : agg_clock_sample(a);
    return agg__sample(a, c, m, t);
}

/* histogram_copy_to_distribution: the line again as a distribution named
 * prefix + name. The Agent hands its copy to the aggregating batcher even
 * when the sample is timestamped, so the copy is bucketed at its timestamp
 * rather than sent down the no-aggregation path. The name buffer grows to
 * the longest name seen (names are capped by the server, prefixes by
 * AGG_HIST_COPY_PREFIX_MAX), so it is allocated only a few times. */
static int agg_add_copy(struct agg *a, const struct agg_metric *m)
{
    const char *pre = a->cfg.hist_copy_prefix ? a->cfg.hist_copy_prefix : "";
    size_t plen = strlen(pre), n = plen + m->name.len;
    struct agg_metric d = *m;
    struct agg__ctx *c;
    int rc;

    if (n > a->copy_cap) {
        char *p = cmn_reallocarray(a->copy_name, n, 1);
        if (p == NULL) {
            a->st.samples_dropped_oom += m->nvalues;
            return UV_ENOMEM;
        }
        a->copy_name = p;
        a->copy_cap = n;
    }
    memcpy(a->copy_name, pre, plen);
    memcpy(a->copy_name + plen, m->name.p, m->name.len);
    d.name = cmn_slice(a->copy_name, n);
    d.type = AGG_DISTRIBUTION;
    rc = agg__ctx_get(a, d.name, d.tags, &c);
    if (rc) {
        agg_count_ctx_err(a, rc, d.nvalues);
        return rc;
    }
    double t = d.timestamp > 0 ? (double)d.timestamp : agg_clock_sample(a);
    return agg__sample(a, c, &d, t);
}

int agg_add_metric(struct agg *a, const struct agg_metric *m)
{
    if (a->stopping)
        return CMN_ESTOPPED;
    struct agg_metric clamped;
    if (!(m->rate >= AGG_RATE_FLOOR)) { /* also NaN */
        clamped = *m;
        int rc = agg_clamp_rate(a, &clamped);
        if (rc)
            return rc;
        m = &clamped;
    }
    if (!a->cfg.hist_copy_to_dist ||
        (m->type != AGG_HISTOGRAM && m->type != AGG_TIMING))
        return agg_add_one(a, m);
    int rc = agg_add_one(a, m);
    int rc2 = agg_add_copy(a, m);
    return rc ? rc : rc2;
}

/* Appends item to a capped array grown by doubling. */
static int agg_push(void ***arr, size_t *n, size_t *cap, size_t max, void *item)
{
    if (*n >= max)
        return CMN_ECAP;
    if (*n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 8;
        void **na = cmn_reallocarray(*arr, ncap, sizeof(void *));
        if (na == NULL)
            return UV_ENOMEM;
        *arr = na;
        *cap = ncap;
    }
    (*arr)[(*n)++] = item;
    return 0;
}

int agg_add_event(struct agg *a, const struct agg_event *e)
{
    struct agg__event *v;
    int rc;

    if (a->stopping)
        return CMN_ESTOPPED;
    if (a->cfg.serverless && a->cfg.serverless_drop_events) {
        a->st.events_dropped++;
        return 0;
    }
    if (a->nevents >= AGG_EVENTS_MAX) {
        a->st.events_dropped++;
        return CMN_ECAP;
    }
    rc = agg__event_copy(a, e, agg_clock_sample(a), &v);
    if (rc == 0) {
        v->seq = a->st.events;
        rc = agg_push((void ***)&a->events, &a->nevents, &a->capevents,
                      AGG_EVENTS_MAX, v);
        if (rc)
            cmn_free(v);
    }
    if (rc) {
        a->st.events_dropped++;
        return rc;
    }
    a->st.events++;
    return 0;
}

int agg_add_service_check(struct agg *a, const struct agg_service_check *sc)
{
    struct agg__check *v;
    int rc;

    if (a->stopping)
        return CMN_ESTOPPED;
    if (a->cfg.serverless && a->cfg.serverless_drop_events) {
        a->st.service_checks_dropped++;
        return 0;
    }
    rc = agg__check_copy(a, sc, agg_clock_sample(a), &v);
    if (rc == 0) {
        rc = agg_push((void ***)&a->checks, &a->nchecks, &a->capchecks,
                      AGG_CHECKS_MAX, v);
        if (rc)
            cmn_free(v);
    }
    if (rc) {
        a->st.service_checks_dropped++;
        return rc;
    }
    a->st.service_checks++;
    return 0;
}
