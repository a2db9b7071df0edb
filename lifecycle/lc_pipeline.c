/*
 * lc_pipeline.c - the embedding API: builds forwarder (or local sink) ->
 * aggregator -> dogstatsd server as lifecycle components, starts them in
 * that order and drains them in reverse under one budget.
 *
 * Each component is registered with its own object as `self` (never the
 * pipeline), so a component abandoned at stop and destroyed later by the
 * registry never reaches into the freed pipeline. The forwarder's wrapper
 * reads the time left from the registry at the moment its stop begins, so
 * fwd_stop gets "what is left of the budget" as its deadline.
 */
#include "lifecycle.h"

#include <string.h>
#include <unistd.h>

#define COMP "lifecycle"

/* The forwarder's stop deadline leaves it this much of its slot to close
 * its handles and report. */
#define LC_FWD_CLOSE_MARGIN_MS 100
/* Registry timeout of the forwarder: its own stop timeout plus a grace to
 * close handles once that timeout cut its requests. */
#define LC_FWD_GRACE_MS 1000
#define LC_LOCAL_STOP_TIMEOUT_MS 1000

struct lc_fwd_comp {
    struct fwd *f;
    struct lc_manager *m; /* borrowed: only used while stopping */
};

struct lc_pipeline {
    uv_loop_t *loop;
    struct lc_manager *m;
    struct fwd *fwd;        /* owned by the registry once registered */
    struct lc_local *local; /* idem */
    struct agg *agg;        /* idem */
    struct dsd *dsd;        /* idem */
    bool local_mode;
    bool started;
    bool start_failed; /* clean = false then says nothing more */
    lc_done_cb cb;
    void *cb_arg;
};

/* ------------------------------------------------------------------------
 * Component adapters
 */
static int fwdc_start(void *self)
{
    struct lc_fwd_comp *fc = self;
    return fwd_start(fc->f);
}

static void fwdc_stop(void *self, lc_stopped_fn done, void *arg)
{
    struct lc_fwd_comp *fc = self;
    uint64_t rem = lc_stop_remaining_ms(fc->m);
    uint64_t deadline = rem;
    if (rem != LC_NO_TIMEOUT)
        deadline = rem > 2 * LC_FWD_CLOSE_MARGIN_MS
                       ? rem - LC_FWD_CLOSE_MARGIN_MS
                       : rem / 2;
    fwd_stop(fc->f, deadline, done, arg);
}

static void fwdc_destroy(void *self)
{
    struct lc_fwd_comp *fc = self;
    fwd_destroy(fc->f);
    cmn_free(fc);
}

static const struct lc_ops fwd_ops = {fwdc_start, fwdc_stop, fwdc_destroy};

static int localc_start(void *self)
{
    return lc_local_start(self);
}

static void localc_stop(void *self, lc_stopped_fn done, void *arg)
{
    lc_local_stop(self, done, arg);
}

static void localc_destroy(void *self)
{
    lc_local_destroy(self);
}

static const struct lc_ops local_ops = {localc_start, localc_stop,
                                        localc_destroy};

static int aggc_start(void *self)
{
    return agg_start(self);
}

static void aggc_stop(void *self, lc_stopped_fn done, void *arg)
{
    agg_stop(self, done, arg);
}

static void aggc_destroy(void *self)
{
    agg_destroy(self);
}

static const struct lc_ops agg_ops = {aggc_start, aggc_stop, aggc_destroy};

static int dsdc_start(void *self)
{
    return dsd_start(self);
}

static void dsdc_stop(void *self, lc_stopped_fn done, void *arg)
{
    dsd_stop(self, done, arg);
}

static void dsdc_destroy(void *self)
{
    dsd_destroy(self);
}

static const struct lc_ops dsd_ops = {dsdc_start, dsdc_stop, dsdc_destroy};

/* ------------------------------------------------------------------------
 * Create
 */
static bool has_api_key(const struct fwd_config *c)
{
    for (size_t i = 0; i < c->nendpoints; i++)
        if (c->endpoints[i].nkeys > 0)
            return true;
    return false;
}

static int create_sink(struct lc_pipeline *p,
                       const struct lc_pipeline_config *c,
                       fwd_submit_fn *submit, void **data, const char **name)
{
    int rc;
    if (p->local_mode) {
        rc = lc_local_create(p->loop, c->local_file, &p->local);
        if (rc != 0)
            return rc;
        rc = lc_register(p->m, "local-sink", NULL, &local_ops, p->local,
                         LC_LOCAL_STOP_TIMEOUT_MS);
        if (rc != 0) {
            lc_local_destroy(p->local);
            p->local = NULL;
            return rc;
        }
        *submit = lc_local_submit;
        *data = p->local;
        *name = "local-sink";
        if (c->local_file == NULL)
            CMN_LOGI(COMP, "no DD_API_KEY set: metrics are not sent; a "
                           "summary is printed on stderr at exit");
        return 0;
    }
    struct lc_fwd_comp *fc = cmn_calloc(1, sizeof(*fc));
    if (fc == NULL)
        return UV_ENOMEM;
    fc->m = p->m;
    rc = fwd_create(p->loop, &c->fwd, &fc->f);
    if (rc != 0) {
        cmn_free(fc);
        return rc;
    }
    double t = c->fwd.stop_timeout_s > 0 ? c->fwd.stop_timeout_s : 0;
    uint64_t timeout = (uint64_t)(t * 1000.0) + LC_FWD_GRACE_MS;
    rc = lc_register(p->m, "forwarder", NULL, &fwd_ops, fc, timeout);
    if (rc != 0) {
        fwdc_destroy(fc);
        return rc;
    }
    p->fwd = fc->f;
    *submit = fwd_sink_submit;
    *data = fc->f;
    *name = "forwarder";
    return 0;
}

int lc_pipeline_create(uv_loop_t *loop, const struct lc_pipeline_config *c,
                       struct lc_pipeline **out)
{
    bool key = has_api_key(&c->fwd);
    if (c->sink == LC_SINK_FORWARDER && !key) {
        CMN_LOGE(COMP, "the forwarder sink needs an API key (DD_API_KEY)");
        return UV_EINVAL;
    }
    struct lc_pipeline *p = cmn_calloc(1, sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    p->loop = loop;
    p->local_mode = c->sink == LC_SINK_LOCAL || !key;
    int rc = lc_create(loop, &p->m);
    if (rc != 0)
        goto out_free;

    fwd_submit_fn submit;
    void *data;
    const char *sink_name;
    rc = create_sink(p, c, &submit, &data, &sink_name);
    if (rc != 0)
        goto out_destroy_m;

    rc = agg_create(loop, &c->agg, submit, data, &p->agg);
    if (rc != 0)
        goto out_destroy_m;
    const char *const agg_deps[] = {sink_name, NULL};
    rc = lc_register(p->m, "aggregator", agg_deps, &agg_ops, p->agg,
                     c->aggregator_stop_timeout_ms);
    if (rc != 0) {
        agg_destroy(p->agg);
        goto out_destroy_m;
    }

    struct dsd_sink sink;
    dsd_sink_from_agg(&sink, p->agg);
    rc = dsd_create(loop, &c->dsd, &sink, &p->dsd);
    if (rc != 0)
        goto out_destroy_m;
    const char *const dsd_deps[] = {"aggregator", NULL};
    rc = lc_register(p->m, "dogstatsd", dsd_deps, &dsd_ops, p->dsd,
                     c->dogstatsd_stop_timeout_ms);
    if (rc != 0) {
        dsd_destroy(p->dsd);
        goto out_destroy_m;
    }
    *out = p;
    return 0;

out_destroy_m:
    CMN_LOGE(COMP, "cannot create the pipeline: %s", cmn_strerror(rc));
    lc_destroy(p->m); /* destroys what was registered (nothing started) */
out_free:
    cmn_free(p);
    return rc;
}

struct lc_manager *lc_pipeline_manager(struct lc_pipeline *p)
{
    return p->m;
}

int lc_pipeline_start(struct lc_pipeline *p)
{
    int rc = lc_start_all(p->m);
    if (rc == 0)
        p->started = true;
    else
        p->start_failed = true;
    return rc;
}

struct agg *lc_pipeline_agg(struct lc_pipeline *p)
{
    return p->agg;
}

int lc_pipeline_udp_port(const struct lc_pipeline *p)
{
    if (!p->started || !lc_is_running(p->m, "dogstatsd"))
        return 0;
    return dsd_udp_port(p->dsd);
}

bool lc_pipeline_is_local(const struct lc_pipeline *p)
{
    return p->local_mode;
}

/* ------------------------------------------------------------------------
 * Stop
 */

/* Appends ", <n> <label>" to the report when n > 0. */
static void add_count(char *buf, size_t size, size_t *off, const char *label,
                      uint64_t n)
{
    if (n == 0 || *off >= size)
        return;
    int w = snprintf(buf + *off, size - *off, "%s%llu %s",
                     buf[0] != '\0' ? ", " : "", (unsigned long long)n, label);
    if (w > 0)
        *off += (size_t)w;
}

/* One line on stderr when anything was not delivered (never silently). */
static void report_undelivered(const struct lc_pipeline *p, bool clean)
{
    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    char buf[768] = "";
    size_t off = 0;
    add_count(buf, sizeof(buf), &off, "payloads refused by the intake (400)",
              st.fwd.dropped_400);
    add_count(buf, sizeof(buf), &off,
              "payloads refused: API key rejected (403)", st.fwd.dropped_403);
    add_count(buf, sizeof(buf), &off, "payloads too large (413)",
              st.fwd.dropped_413);
    add_count(buf, sizeof(buf), &off, "payloads evicted from the retry queue",
              st.fwd.dropped_evicted);
    add_count(buf, sizeof(buf), &off, "payloads submitted after stop",
              st.fwd.dropped_stopped + st.local.dropped_stopped);
    add_count(buf, sizeof(buf), &off, "payloads dropped for other reasons",
              st.fwd.dropped_other);
    add_count(buf, sizeof(buf), &off, "payloads abandoned at the deadline",
              st.fwd.abandoned);
    add_count(buf, sizeof(buf), &off, "payloads that could not be decoded",
              st.local.decode_errors);
    add_count(buf, sizeof(buf), &off, "local write errors",
              st.local.write_errors);
    add_count(buf, sizeof(buf), &off, "samples over the context limit",
              st.agg.contexts_dropped);
    add_count(buf, sizeof(buf), &off, "samples lost to memory",
              st.agg.samples_dropped_oom);
    add_count(buf, sizeof(buf), &off, "items too big", st.agg.items_too_big);
    add_count(buf, sizeof(buf), &off, "samples over a cap (docs/limits.md)",
              st.agg.samples_dropped_cap);
    add_count(buf, sizeof(buf), &off, "points not finite",
              st.agg.points_nonfinite);
    if (!clean && !p->start_failed && off < sizeof(buf)) {
        int w = snprintf(buf + off, sizeof(buf) - off, "%s%s",
                         buf[0] != '\0' ? ", " : "",
                         "a component did not finish its drain in time");
        if (w > 0)
            off += (size_t)w;
    }
    if (buf[0] == '\0')
        return;
    char line[896];
    int n = snprintf(line, sizeof(line),
                     "drainpipe: not everything was delivered: %s\n", buf);
    if (n > 0) {
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        ssize_t w = write(2, line, len); /* one write: one line */
        (void)w;
    }
}

static void on_stopped_all(void *arg, bool clean)
{
    struct lc_pipeline *p = arg;
    report_undelivered(p, clean);
    lc_done_cb cb = p->cb;
    p->cb = NULL;
    if (cb != NULL)
        cb(p->cb_arg, clean); /* may destroy p */
}

void lc_pipeline_stop(struct lc_pipeline *p, uint64_t budget_ms, lc_done_cb cb,
                      void *arg)
{
    p->cb = cb;
    p->cb_arg = arg;
    lc_stop_all(p->m, budget_ms, on_stopped_all, p);
}

void lc_pipeline_destroy(struct lc_pipeline *p)
{
    if (p == NULL)
        return;
    lc_destroy(p->m);
    cmn_free(p);
}

void lc_pipeline_get_stats(const struct lc_pipeline *p,
                           struct lc_pipeline_stats *out)
{
    memset(out, 0, sizeof(*out));
    if (p->dsd != NULL)
        dsd_get_stats(p->dsd, &out->dsd);
    if (p->agg != NULL)
        agg_get_stats(p->agg, &out->agg);
    if (p->fwd != NULL)
        fwd_get_stats(p->fwd, &out->fwd);
    if (p->local != NULL)
        lc_local_get_stats(p->local, &out->local);
}
