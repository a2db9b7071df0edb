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

/* The DogStatsD server's component. The server may be bound before the
 * aggregator exists (lc_pipeline_listen): it then feeds a relay sink that
 * reaches the aggregator once lc_pipeline_complete set `inner`. Nothing is
 * read before the loop runs, and the loop runs after completion. */
struct lc_dsd_comp {
    struct dsd *d;
    struct dsd_sink inner; /* the aggregator's ops; metric == NULL: none */
    bool bound;            /* dsd_start already done (listen) */
    bool stop_called;      /* stopped through the registry */
};

struct lc_pipeline {
    uv_loop_t *loop;
    struct lc_manager *m;
    struct fwd *fwd;        /* owned by the registry once registered */
    struct lc_local *local; /* idem */
    struct agg *agg;        /* idem */
    struct dsd *dsd;        /* idem; NULL when no listener could bind */
    struct lc_dsd_comp *dc; /* idem */
    bool completed;         /* sink and aggregator created */
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
    struct lc_dsd_comp *dc = self;
    if (dc->bound)
        return 0; /* bound by lc_pipeline_listen */
    int rc = dsd_start(dc->d);
    dc->bound = rc == 0;
    return rc;
}

static void dsdc_stop(void *self, lc_stopped_fn done, void *arg)
{
    struct lc_dsd_comp *dc = self;
    dc->stop_called = true;
    dsd_stop(dc->d, done, arg);
}

static void dsdc_free(void *self)
{
    struct lc_dsd_comp *dc = self;
    dsd_destroy(dc->d);
    cmn_free(dc);
}

static void dsdc_destroy(void *self)
{
    struct lc_dsd_comp *dc = self;
    if (dc->bound && !dc->stop_called) {
        /* Bound early but never started by the registry (the rest of the
         * pipeline failed): close the listeners, free after the last
         * close callback. What they still hold goes nowhere. */
        dc->stop_called = true;
        dc->inner.metric = NULL;
        dsd_stop(dc->d, dsdc_free, dc);
        return;
    }
    dsdc_free(dc);
}

static const struct lc_ops dsd_ops = {dsdc_start, dsdc_stop, dsdc_destroy};

/* Relay sink: the aggregator once it exists, else a refusal. */
static int relay_metric(void *data, const struct agg_metric *m)
{
    struct lc_dsd_comp *dc = data;
    if (dc->inner.metric == NULL)
        return UV_ECANCELED;
    return dc->inner.metric(dc->inner.data, m);
}

static int relay_event(void *data, const struct agg_event *e)
{
    struct lc_dsd_comp *dc = data;
    if (dc->inner.metric == NULL)
        return UV_ECANCELED;
    return dc->inner.event(dc->inner.data, e);
}

static int relay_service_check(void *data, const struct agg_service_check *sc)
{
    struct lc_dsd_comp *dc = data;
    if (dc->inner.metric == NULL)
        return UV_ECANCELED;
    return dc->inner.service_check(dc->inner.data, sc);
}

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

/* Allocates the pipeline and its registry, nothing else. */
static int pipeline_new(uv_loop_t *loop, struct lc_pipeline **out)
{
    struct lc_pipeline *p = cmn_calloc(1, sizeof(*p));
    if (p == NULL)
        return UV_ENOMEM;
    p->loop = loop;
    int rc = lc_create(loop, &p->m);
    if (rc != 0) {
        cmn_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* Creates a server for cfg (not registered) feeding agg directly, or,
 * with agg NULL (not created yet), a relay: one more indirect call per
 * item, the price of binding before the aggregator exists. */
static int dsd_comp_create(uv_loop_t *loop, const struct dsd_config *cfg,
                           struct agg *agg, struct lc_dsd_comp **out)
{
    struct lc_dsd_comp *dc = cmn_calloc(1, sizeof(*dc));
    if (dc == NULL)
        return UV_ENOMEM;
    struct dsd_sink sink = {relay_metric, relay_event, relay_service_check, dc};
    if (agg != NULL)
        dsd_sink_from_agg(&sink, agg);
    int rc = dsd_create(loop, cfg, &sink, &dc->d);
    if (rc != 0) {
        cmn_free(dc);
        return rc;
    }
    *out = dc;
    return 0;
}

/* Registers dc as "dogstatsd", after the aggregator. Takes ownership. */
static int dsd_comp_register(struct lc_pipeline *p, struct lc_dsd_comp *dc,
                             uint64_t stop_timeout_ms)
{
    const char *const dsd_deps[] = {"aggregator", NULL};
    int rc =
        lc_register(p->m, "dogstatsd", dsd_deps, &dsd_ops, dc, stop_timeout_ms);
    if (rc != 0) {
        dsdc_destroy(dc);
        return rc;
    }
    p->dc = dc;
    p->dsd = dc->d;
    return 0;
}

int lc_pipeline_complete(struct lc_pipeline *p,
                         const struct lc_pipeline_config *c)
{
    if (p->completed)
        return UV_EALREADY;
    bool key = has_api_key(&c->fwd);
    if (c->sink == LC_SINK_FORWARDER && !key) {
        CMN_LOGE(COMP, "the forwarder sink needs an API key (DD_API_KEY)");
        return UV_EINVAL;
    }
    p->local_mode = c->sink == LC_SINK_LOCAL || !key;

    fwd_submit_fn submit;
    void *data;
    const char *sink_name;
    uint64_t t0 = cmn_mono_ns();
    int rc = create_sink(p, c, &submit, &data, &sink_name);
    if (rc != 0)
        return rc;
    lc_checkpoint_log("create", sink_name, t0);

    t0 = cmn_mono_ns();
    rc = agg_create(p->loop, &c->agg, submit, data, &p->agg);
    if (rc != 0)
        return rc;
    const char *const agg_deps[] = {sink_name, NULL};
    rc = lc_register(p->m, "aggregator", agg_deps, &agg_ops, p->agg,
                     c->aggregator_stop_timeout_ms);
    if (rc != 0) {
        agg_destroy(p->agg);
        p->agg = NULL;
        return rc;
    }
    lc_checkpoint_log("create", "aggregator", t0);
    if (p->dc != NULL)
        dsd_sink_from_agg(&p->dc->inner, p->agg);
    p->completed = true;
    return 0;
}

int lc_pipeline_create(uv_loop_t *loop, const struct lc_pipeline_config *c,
                       struct lc_pipeline **out)
{
    struct lc_pipeline *p;
    int rc = pipeline_new(loop, &p);
    if (rc != 0)
        return rc;
    rc = lc_pipeline_complete(p, c);
    if (rc != 0)
        goto out_destroy;
    struct lc_dsd_comp *dc;
    rc = dsd_comp_create(loop, &c->dsd, p->agg, &dc);
    if (rc != 0)
        goto out_destroy;
    rc = dsd_comp_register(p, dc, c->dogstatsd_stop_timeout_ms);
    if (rc != 0)
        goto out_destroy;
    *out = p;
    return 0;

out_destroy:
    CMN_LOGE(COMP, "cannot create the pipeline: %s", cmn_strerror(rc));
    lc_pipeline_destroy(p); /* destroys what was registered (nothing
                               started) */
    return rc;
}

/* ------------------------------------------------------------------------
 * Listen: bind the listeners before the rest exists, and find out which
 * ones cannot bind when the whole set fails.
 */
enum { LST_UDP, LST_UDS, LST_STREAM, LST_N };

static const char *const lst_var[LST_N] = {
    "DD_DOGSTATSD_PORT", "DD_DOGSTATSD_SOCKET", "DD_DOGSTATSD_STREAM_SOCKET"};

static bool lst_present(const struct dsd_config *c, int i)
{
    switch (i) {
    case LST_UDP:
        return c->port != 0;
    case LST_UDS:
        return c->socket_path != NULL && c->socket_path[0] != '\0';
    default:
        return c->stream_socket_path != NULL &&
               c->stream_socket_path[0] != '\0';
    }
}

/* A shallow copy of src with only the listeners in keep (dsd_create
 * deep-copies what it keeps, so the copy owns nothing). */
static void lst_only(struct dsd_config *dst, const struct dsd_config *src,
                     const bool keep[LST_N])
{
    *dst = *src;
    if (!keep[LST_UDP])
        dst->port = 0;
    if (!keep[LST_UDS])
        dst->socket_path = NULL;
    if (!keep[LST_STREAM])
        dst->stream_socket_path = NULL;
}

static void probe_stopped(void *arg)
{
    *(bool *)arg = true;
}

/* Closes and frees a server that is not registered. Runs the loop until
 * its handles are closed (a started listener releases its socket only in
 * its close callback), so that the same port or path can be bound again
 * right after: never call it from a loop callback. */
static void close_unregistered(uv_loop_t *loop, struct lc_dsd_comp *dc)
{
    bool done = false;
    dc->stop_called = true;
    dsd_stop(dc->d, probe_stopped, &done);
    while (!done)
        (void)uv_run(loop, UV_RUN_ONCE);
    dsdc_free(dc);
}

/* Binds a server for cfg: 0 with *out bound, or the error (*out NULL,
 * nothing left open). */
static int try_bind(uv_loop_t *loop, const struct dsd_config *cfg,
                    struct lc_dsd_comp **out)
{
    struct lc_dsd_comp *dc;
    *out = NULL;
    int rc = dsd_comp_create(loop, cfg, NULL, &dc);
    if (rc != 0)
        return rc;
    rc = dsd_start(dc->d);
    if (rc == 0) {
        dc->bound = true;
        *out = dc;
        return 0;
    }
    /* nothing bound is left open (dsd_start closes what it opened), bar
     * a handle libuv refused: close it and free as the loop runs */
    dc->stop_called = true;
    dsd_stop(dc->d, dsdc_free, dc);
    return rc;
}

/* Records one failed listener. */
static void report_failure(struct lc_listen_report *rep,
                           const struct dsd_config *c, int i, int err)
{
    struct lc_listen_failure *f = &rep->failed[rep->nfailed++];
    f->var = lst_var[i];
    f->err = err;
    if (i == LST_UDP)
        snprintf(f->value, sizeof(f->value), "%d", c->port);
    else
        snprintf(f->value, sizeof(f->value), "%s",
                 i == LST_UDS ? c->socket_path : c->stream_socket_path);
}

int lc_pipeline_listen(uv_loop_t *loop, const struct lc_pipeline_config *c,
                       bool all_or_nothing, struct lc_listen_report *rep,
                       struct lc_pipeline **out)
{
    struct lc_pipeline *p;
    memset(rep, 0, sizeof(*rep));
    int rc = pipeline_new(loop, &p);
    if (rc != 0)
        return rc;
    uint64_t t0 = cmn_mono_ns();
    struct lc_dsd_comp *dc = NULL;
    if (!lst_present(&c->dsd, LST_UDP) && !lst_present(&c->dsd, LST_UDS) &&
        !lst_present(&c->dsd, LST_STREAM)) {
        /* DD_DOGSTATSD_PORT=0 and no socket: the user turned DogStatsD
         * off; the rest of the pipeline still runs */
        CMN_LOGW(COMP, "no DogStatsD listener configured "
                       "(DD_DOGSTATSD_PORT=0, no socket)");
        *out = p;
        return 0;
    }
    rc = try_bind(loop, &c->dsd, &dc);
    if (rc != 0 && all_or_nothing)
        goto out_destroy;
    if (rc != 0 && rc != UV_ENOMEM) {
        /* Which ones? Each alone (bound and closed again), then the set
         * of those that can bind. */
        bool keep[LST_N];
        int errs[LST_N];
        for (int i = 0; i < LST_N; i++) {
            keep[i] = false;
            errs[i] = rc;
            if (!lst_present(&c->dsd, i))
                continue;
            bool only[LST_N] = {false, false, false};
            only[i] = true;
            struct dsd_config one;
            lst_only(&one, &c->dsd, only);
            struct lc_dsd_comp *probe;
            int err = try_bind(loop, &one, &probe);
            if (err == UV_ENOMEM) {
                rc = err;
                goto out_destroy;
            }
            if (err != 0) {
                errs[i] = err;
                report_failure(rep, &c->dsd, i, err);
                continue;
            }
            close_unregistered(loop, probe);
            keep[i] = true;
        }
        struct dsd_config rest;
        lst_only(&rest, &c->dsd, keep);
        rc = UV_EINVAL;
        if (rep->nfailed > 0 && (keep[0] || keep[1] || keep[2]))
            rc = try_bind(loop, &rest, &dc);
        if (rc != 0) {
            /* none binds, or only together they fail: all are off */
            dc = NULL;
            rep->nfailed = 0;
            for (int i = 0; i < LST_N; i++)
                if (lst_present(&c->dsd, i))
                    report_failure(rep, &c->dsd, i, errs[i]);
        }
        rc = 0;
    }
    if (rc != 0)
        goto out_destroy;
    if (dc != NULL) {
        rc = dsd_comp_register(p, dc, c->dogstatsd_stop_timeout_ms);
        if (rc != 0)
            goto out_destroy;
        rep->bound = true;
    }
    lc_checkpoint_log("bind", "dogstatsd", t0);
    *out = p;
    return 0;

out_destroy:
    lc_pipeline_destroy(p);
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
    if (p->dc == NULL || !p->dc->bound || p->dc->stop_called)
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
