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

#include <limits.h>
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
};

/* The DogStatsD server's component. The server may be bound before the
 * aggregator exists (lc_pipeline_listen: dsd_bind, sockets only, so the
 * kernel queues what clients send); lc_pipeline_complete gives it the
 * aggregator as its sink, and the registry's start runs its receive
 * threads (dsd_start). */
struct lc_dsd_comp {
    struct dsd *d;
    bool bound;       /* sockets bound (dsd_bind or dsd_start) */
    bool receiving;   /* dsd_receive done */
    bool started;     /* dsd_start done */
    bool stop_called; /* stopped through the registry */
    bool empty;       /* no listener configured, and that is fine
                         (no_listener_ok): never bound nor started */
};

struct lc_pipeline {
    uv_loop_t *loop;
    struct lc_manager *m;
    struct fwd *fwd;        /* owned by the registry once registered */
    struct ls_sink *local;  /* idem */
    struct agg *agg;        /* idem */
    struct dsd *dsd;        /* idem; NULL when no listener could bind */
    struct lc_dsd_comp *dc; /* idem */
    bool completed;         /* sink and aggregator created */
    bool listened;          /* made by lc_pipeline_listen */
    bool local_mode;
    bool started;
    bool start_failed; /* clean = false then says nothing more */
    lc_done_cb cb;
    void *cb_arg;
    bool flushing;        /* lc_pipeline_flush running */
    lc_flush_cb flush_cb; /* NULL once cancelled */
    void *flush_data;
};

/* ------------------------------------------------------------------------
 * Component adapters
 */
static int fwdc_start(void *self)
{
    struct lc_fwd_comp *fc = self;
    return fwd_start(fc->f);
}

static void fwdc_stop(void *self, struct cmn_deadline dl, lc_stopped_fn done,
                      void *arg)
{
    struct lc_fwd_comp *fc = self;
    uint64_t rem = cmn_deadline_remaining_ms(dl);
    if (rem != UINT64_MAX)
        dl = cmn_deadline_in_ms(rem > 2 * LC_FWD_CLOSE_MARGIN_MS
                                    ? rem - LC_FWD_CLOSE_MARGIN_MS
                                    : rem / 2);
    fwd_stop(fc->f, dl, done, arg);
}

static void fwdc_destroy(void *self)
{
    struct lc_fwd_comp *fc = self;
    fwd_destroy(fc->f);
    cmn_free(fc);
}

static const struct lc_ops fwd_ops = {fwdc_start, fwdc_stop, fwdc_destroy};

/* The local summary's "Dropped" list: every loss counter of the server
 * and the aggregator, by cause (dogstatsd parse errors by reason). The
 * server's agg_rejected is left out: the aggregator counts those lines
 * under their own cause. */
static size_t pipeline_drops(void *data, struct ls_drop *out, size_t max)
{
    static const char *const parse[DSD_ERR_MAX] = {
        [DSD_ERR_NO_PIPE] = "lines not parsed: no '|'",
        [DSD_ERR_NO_COLON] = "lines not parsed: no ':' after the name",
        [DSD_ERR_EMPTY_NAME] = "lines not parsed: empty metric name",
        [DSD_ERR_EMPTY_VALUE] = "lines not parsed: empty value",
        [DSD_ERR_BAD_TYPE] = "lines not parsed: invalid metric type",
        [DSD_ERR_BAD_VALUE] = "lines not parsed: invalid value",
        [DSD_ERR_TOO_MANY_VALUES] = "lines not parsed: too many values",
        [DSD_ERR_BAD_RATE] = "lines not parsed: invalid sample rate",
        [DSD_ERR_BAD_TIMESTAMP] = "lines not parsed: invalid timestamp",
        [DSD_ERR_BAD_EVENT] = "events not parsed",
        [DSD_ERR_BAD_SERVICE_CHECK] = "service checks not parsed",
        [DSD_ERR_NAME_TOO_LONG] = "lines not parsed: name too long",
    };
    const struct lc_pipeline *p = data;
    struct lc_pipeline_stats st;
    size_t n = 0;

    lc_pipeline_get_stats(p, &st);
    for (int i = 1; i < DSD_ERR_MAX && n < max; i++)
        out[n++] = (struct ls_drop){parse[i] ? parse[i] : dsd_err_str(i),
                                    st.dsd.parse_errors[i]};
    const struct ls_drop rest[] = {
        {"unterminated last lines (dogstatsd_eol_required)",
         st.dsd.unterminated},
        {"datagrams over dogstatsd_buffer_size", st.dsd.packets_truncated},
        {"stream frames over dogstatsd_buffer_size",
         st.dsd.stream_frames_too_big},
        {"socket read errors", st.dsd.read_errors},
        {"datagrams dropped by the kernel (udp: socket buffer full)",
         st.dsd.kernel_drops_udp},
        {"datagrams dropped by the kernel (uds)", st.dsd.kernel_drops_uds},
        {"datagrams left unread when the stop drain ran out of time",
         st.dsd.stop_unread},
        {"lines blocked by statsd_metric_blocklist", st.dsd.blocked},
        {"NaN/Inf values", st.agg.samples_nan},
        {"timestamped h/ms/s/d samples (only g and c take |T)",
         st.agg.samples_no_agg_unsupported},
        {"samples over the context limit", st.agg.contexts_dropped},
        {"samples over a per-bucket cap", st.agg.samples_dropped_cap},
        {"samples lost to memory", st.agg.samples_dropped_oom},
        {"series, sketches or events too big for a payload",
         st.agg.items_too_big},
        {"payloads lost to memory or compression", st.agg.payloads_dropped},
        {"events dropped (DRAINPIPE_SERVERLESS_DROP_EVENTS or the cap)",
         st.agg.events_dropped},
        {"service checks dropped (DRAINPIPE_SERVERLESS_DROP_EVENTS or the cap)",
         st.agg.service_checks_dropped},
    };
    for (size_t i = 0; i < sizeof(rest) / sizeof(rest[0]) && n < max; i++)
        out[n++] = rest[i];
    return n;
}

static int localc_start(void *self)
{
    return ls_start(self);
}

static void localc_stop(void *self, struct cmn_deadline dl, lc_stopped_fn done,
                        void *arg)
{
    ls_stop(self, dl, done, arg);
}

static void localc_destroy(void *self)
{
    ls_destroy(self);
}

static const struct lc_ops local_ops = {localc_start, localc_stop,
                                        localc_destroy};

static int aggc_start(void *self)
{
    return agg_start(self);
}

static void aggc_stop(void *self, struct cmn_deadline dl, lc_stopped_fn done,
                      void *arg)
{
    agg_stop(self, dl, done, arg);
}

static void aggc_destroy(void *self)
{
    agg_destroy(self);
}

static const struct lc_ops agg_ops = {aggc_start, aggc_stop, aggc_destroy};

static int dsdc_start(void *self)
{
    struct lc_dsd_comp *dc = self;
    if (dc->empty)
        return 0;
    int rc = dsd_start(dc->d); /* binds too unless lc_pipeline_listen did */
    dc->started = dc->bound = rc == 0;
    return rc;
}

/* Reading what is still queued in the sockets and the receive rings gets
 * a quarter of what is left of the deadline (the server is stopped first
 * and has no stop timeout of its own by default, so a quarter of the
 * whole budget); the flush and the delivery that follow need the rest. */
static void dsdc_stop(void *self, struct cmn_deadline dl, lc_stopped_fn done,
                      void *arg)
{
    struct lc_dsd_comp *dc = self;
    dc->stop_called = true;
    uint64_t rem = cmn_deadline_remaining_ms(dl);
    dsd_stop(dc->d, rem == UINT64_MAX ? dl : cmn_deadline_in_ms(rem / 4), done,
             arg);
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
    if (dc->started && !dc->stop_called) {
        /* Started but never stopped by the registry: close the listeners,
         * free after the last close callback. What they still hold goes
         * nowhere. A server only bound is freed at once (its sockets are
         * closed by dsd_destroy). */
        dc->stop_called = true;
        dsd_stop(dc->d, cmn_deadline_in_ms(0), dsdc_free, dc);
        return;
    }
    dsdc_free(dc);
}

static const struct lc_ops dsd_ops = {dsdc_start, dsdc_stop, dsdc_destroy};

/* A sink that refuses everything: a server bound before its aggregator
 * exists reads nothing until lc_pipeline_complete replaces it. */
static int refuse_metric(void *data, const struct agg_metric *m)
{
    (void)data;
    (void)m;
    return UV_ECANCELED;
}

static int refuse_event(void *data, const struct agg_event *e)
{
    (void)data;
    (void)e;
    return UV_ECANCELED;
}

static int refuse_service_check(void *data, const struct agg_service_check *sc)
{
    (void)data;
    (void)sc;
    return UV_ECANCELED;
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

bool lc_pipeline_config_has_api_key(const struct lc_pipeline_config *c)
{
    return has_api_key(&c->fwd);
}

static int create_sink(struct lc_pipeline *p,
                       const struct lc_pipeline_config *c,
                       fwd_submit_fn *submit, void **data, const char **name)
{
    int rc;
    if (p->local_mode) {
        rc = ls_create(p->loop, c->local_file, &p->local);
        if (rc != 0)
            return rc;
        ls_set_drops_fn(p->local, pipeline_drops, p);
        rc = lc_register(p->m, "local-sink", NULL, &local_ops, p->local,
                         LC_LOCAL_STOP_TIMEOUT_MS);
        if (rc != 0) {
            ls_destroy(p->local);
            p->local = NULL;
            return rc;
        }
        *submit = NULL; /* records go to the local sink (see below) */
        *data = NULL;
        *name = "local-sink";
        if (c->local_file == NULL)
            CMN_LOGI(COMP, "no DD_API_KEY set: metrics are not sent; a "
                           "summary is printed on stderr at exit");
        return 0;
    }
    struct lc_fwd_comp *fc = cmn_calloc(1, sizeof(*fc));
    if (fc == NULL)
        return UV_ENOMEM;
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

/* Creates a server for cfg (not registered) feeding agg, or, with agg
 * NULL (not created yet), nothing until lc_pipeline_complete sets it. */
static int dsd_comp_create(uv_loop_t *loop, const struct dsd_config *cfg,
                           struct agg *agg, struct lc_dsd_comp **out)
{
    struct lc_dsd_comp *dc = cmn_calloc(1, sizeof(*dc));
    if (dc == NULL)
        return UV_ENOMEM;
    struct dsd_sink sink = {refuse_metric, refuse_event, refuse_service_check,
                            NULL};
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

/* A server with no listener, feeding p's aggregator, registered. */
static int empty_server(struct lc_pipeline *p,
                        const struct lc_pipeline_config *c)
{
    struct dsd_config none = c->dsd;
    none.port = 0;
    none.socket_path = none.stream_socket_path = NULL;
    struct lc_dsd_comp *dc;
    int rc = dsd_comp_create(p->loop, &none, p->agg, &dc);
    if (rc != 0)
        return rc;
    dc->empty = true;
    return dsd_comp_register(p, dc, c->dogstatsd_stop_timeout_ms);
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
    /* one process-wide budget: the last pipeline completed sets it */
    cmn_budget_set_limit(c->memory_limit);
    cmn_alloc_tune();

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
    if (p->fwd != NULL) /* the serializer waits while the queue is full */
        agg_set_backpressure(p->agg, fwd_sink_full, fwd_sink_on_space, p->fwd);
    if (p->local != NULL) { /* the flush's records, never payloads */
        struct agg_record_sink rs;
        ls_record_sink(p->local, &rs);
        agg_set_record_sink(p->agg, &rs);
    }
    const char *const agg_deps[] = {sink_name, NULL};
    rc = lc_register(p->m, "aggregator", agg_deps, &agg_ops, p->agg,
                     c->aggregator_stop_timeout_ms);
    if (rc != 0) {
        agg_destroy(p->agg);
        p->agg = NULL;
        return rc;
    }
    lc_checkpoint_log("create", "aggregator", t0);
    if (p->dc != NULL) {
        struct dsd_sink sink;
        dsd_sink_from_agg(&sink, p->agg);
        rc = dsd_set_sink(p->dc->d, &sink);
        if (rc != 0)
            return rc;
    } else if (c->no_listener_ok && p->listened) {
        /* no listener bound (or none configured): an empty server still
         * parses what the embedder submits in-process */
        rc = empty_server(p, c);
        if (rc != 0)
            return rc;
    }
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
    dc->empty =
        c->no_listener_ok && c->dsd.port == 0 &&
        (c->dsd.socket_path == NULL || !c->dsd.socket_path[0]) &&
        (c->dsd.stream_socket_path == NULL || !c->dsd.stream_socket_path[0]);
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

/* Closes and frees a server that is not registered and only bound: its
 * sockets are closed at once, so the same port or path can be bound again
 * right after. */
static void close_unregistered(struct lc_dsd_comp *dc)
{
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
    rc = dsd_bind(dc->d);
    if (rc == 0) {
        dc->bound = true;
        *out = dc;
        return 0;
    }
    dsdc_free(dc); /* dsd_bind leaves nothing open on failure */
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
    p->listened = true;
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
            close_unregistered(probe);
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

int lc_pipeline_receive(struct lc_pipeline *p)
{
    if (p->dc == NULL || !p->dc->bound || p->dc->stop_called ||
        p->dc->receiving)
        return 0;
    uint64_t t0 = cmn_mono_ns();
    int rc = dsd_receive(p->dc->d);
    p->dc->receiving = rc == 0;
    lc_checkpoint_log("start", "dogstatsd receive threads", t0);
    return rc;
}

struct lc_manager *lc_pipeline_manager(struct lc_pipeline *p)
{
    return p->m;
}

int lc_pipeline_start(struct lc_pipeline *p)
{
    /* The DogStatsD receive threads first, before the forwarder queues
     * libcurl's dlopen on the thread pool: creating a thread takes the
     * dynamic loader's lock, which that dlopen holds for ~15 ms. A bind
     * failure here is reported by the registry's start below. */
    struct lc_dsd_comp *dc = p->dc;
    if (dc != NULL && !dc->stop_called && !dc->empty) {
        if (!dc->bound && dsd_bind(dc->d) == 0)
            dc->bound = true;
        if (dc->bound && lc_pipeline_receive(p) != 0)
            CMN_LOGD(COMP, "receive threads start with the pipeline");
    }
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

int lc_pipeline_rcvbuf_min(const struct lc_pipeline *p)
{
    if (p->dc == NULL || !p->dc->bound || p->dc->stop_called)
        return INT_MAX;
    return dsd_rcvbuf_min(p->dsd);
}

bool lc_pipeline_is_local(const struct lc_pipeline *p)
{
    return p->local_mode;
}

/* ------------------------------------------------------------------------
 * Flush now
 */
static void flush_done(void *data)
{
    struct lc_pipeline *p = data;
    lc_flush_cb cb = p->flush_cb;
    p->flushing = false;
    p->flush_cb = NULL;
    if (cb != NULL)
        cb(p->flush_data);
}

static void flush_submitted(void *data)
{
    struct lc_pipeline *p = data;
    if (p->fwd != NULL && lc_is_running(p->m, "forwarder"))
        fwd_wait_idle(p->fwd, flush_done, p);
    else
        flush_done(p);
}

/* Everything received before the flush call is parsed: flush it all. */
static void flush_synced(void *data)
{
    struct lc_pipeline *p = data;
    int rc = agg_flush(p->agg, true, flush_submitted, p);
    if (rc != 0) {
        CMN_LOGW(COMP, "flush now: %s", cmn_strerror(rc));
        flush_done(p);
    }
}

int lc_pipeline_flush(struct lc_pipeline *p, lc_flush_cb cb, void *data)
{
    if (!p->started || !lc_is_running(p->m, "aggregator"))
        return CMN_ESTOPPED;
    if (p->flushing)
        return UV_EBUSY;
    p->flushing = true;
    p->flush_cb = cb;
    p->flush_data = data;
    /* First every datagram already received (kernel buffers and receive
     * rings) is parsed, then the aggregator flushes. */
    int rc = 0;
    if (lc_is_running(p->m, "dogstatsd"))
        rc = dsd_sync(p->dsd, flush_synced, p);
    else
        flush_synced(p);
    if (rc != 0) {
        p->flushing = false;
        p->flush_cb = NULL;
    }
    return rc;
}

void lc_pipeline_flush_cancel(struct lc_pipeline *p)
{
    p->flush_cb = NULL;
}

struct fwd *lc_pipeline_fwd(struct lc_pipeline *p)
{
    return p->fwd;
}

struct dsd *lc_pipeline_dsd(struct lc_pipeline *p)
{
    return p->dsd;
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
    char buf[1024] = "";
    size_t off = 0;
    const char *const kinds[2] = {"udp", "uds"};
    const uint64_t drops[2] = {st.dsd.kernel_drops_udp,
                               st.dsd.kernel_drops_uds};
    const uint64_t pause[2] = {st.dsd.rx_max_gap_ns_udp,
                               st.dsd.rx_max_gap_ns_uds};
    const uint64_t asleep[2] = {st.dsd.rx_asleep_drops_udp,
                                st.dsd.rx_asleep_drops_uds};
    /* udp: what the second reader did (it reads while the receive thread
     * cannot, with two or more usable CPUs) */
    char rescue[96] = "";
    if (st.dsd.rx_rescues != 0)
        snprintf(rescue, sizeof(rescue),
                 "; the rescuer read %llu datagrams in %llu rescues",
                 (unsigned long long)st.dsd.rx_rescued,
                 (unsigned long long)st.dsd.rx_rescues);
    for (int i = 0; i < 2; i++) {
        if (drops[i] == 0 || off >= sizeof(buf))
            continue;
        /* why: the drops that happened before the receive thread ran
         * (it had not started yet, or slept and a datagram's wake-up had
         * not got it running yet), and the longest time it went without
         * reading while awake. Either is the thread kept off its CPU (by
         * the host or another task) for longer than the socket buffer
         * lasts */
        int w =
            snprintf(buf + off, sizeof(buf) - off,
                     "%s%s: kernel dropped %llu datagrams (%llu before "
                     "the receive thread ran, at its start or a wake-up; "
                     "longest pause between reads %.2f ms%s)",
                     off ? ", " : "", kinds[i], (unsigned long long)drops[i],
                     (unsigned long long)asleep[i], pause[i] / 1e6,
                     i == 0 ? rescue : "");
        if (w > 0)
            off += (size_t)w;
    }
    /* a third why: the loop fell behind and the ring was full, so the
     * thread stopped reading (the kernel buffer then takes what comes) */
    if ((drops[0] | drops[1]) != 0 && st.dsd.ring_full != 0 &&
        off < sizeof(buf)) {
        int w = snprintf(buf + off, sizeof(buf) - off,
                         ", the receive ring full %llu times for %.2f ms",
                         (unsigned long long)st.dsd.ring_full,
                         st.dsd.ring_full_ns / 1e6);
        if (w > 0)
            off += (size_t)w;
    }
    add_count(buf, sizeof(buf), &off,
              "datagrams left unread when the stop drain ran out of time",
              st.dsd.stop_unread);
    add_count(buf, sizeof(buf), &off, "payloads refused by the intake (400)",
              st.fwd.dropped_400);
    add_count(buf, sizeof(buf), &off,
              "payloads refused: API key rejected (403)", st.fwd.dropped_403);
    add_count(buf, sizeof(buf), &off, "payloads too large (413)",
              st.fwd.dropped_413);
    add_count(buf, sizeof(buf), &off, "payloads evicted from the retry queue",
              st.fwd.dropped_evicted);
    add_count(buf, sizeof(buf), &off, "payloads submitted after stop",
              st.fwd.dropped_stopped);
    add_count(buf, sizeof(buf), &off,
              "records that reached the local sink "
              "after its stop",
              st.local.dropped_stopped);
    add_count(buf, sizeof(buf), &off, "payloads dropped for other reasons",
              st.fwd.dropped_other);
    add_count(buf, sizeof(buf), &off, "payloads abandoned at the deadline",
              st.fwd.abandoned);
    add_count(buf, sizeof(buf), &off, "local write errors",
              st.local.write_errors);
    add_count(buf, sizeof(buf), &off, "samples over the context limit",
              st.agg.contexts_dropped);
    add_count(buf, sizeof(buf), &off,
              "lines whose new context was refused by the memory budget",
              st.agg.contexts_refused_budget);
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
    char line[1152];
    int n = snprintf(line, sizeof(line),
                     "drainpipe: not everything was delivered: %s\n", buf);
    if (n > 0) {
        size_t len = (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1;
        ssize_t w = write(2, line, len); /* one write: one line */
        (void)w;
    }
}

/* The debug stats, one line at debug level when the pipeline stops. The
 * longest loop callback is the aggregator's meter (agg_stats): the
 * longest stretch of callbacks on the loop between two polls, in CPU time
 * of the loop thread (docs/limits.md). */
static void log_debug_stats(const struct lc_pipeline *p)
{
    struct lc_pipeline_stats st;
    lc_pipeline_get_stats(p, &st);
    CMN_LOGD(COMP,
             "stats: %llu samples, %llu live contexts, %llu expired, %llu "
             "series and %llu sketches flushed in %llu payloads; longest "
             "loop callback %.3f ms (CPU time; %.3f ms wall)",
             (unsigned long long)st.agg.samples,
             (unsigned long long)st.agg.contexts,
             (unsigned long long)st.agg.contexts_expired,
             (unsigned long long)st.agg.series_flushed,
             (unsigned long long)st.agg.sketches_flushed,
             (unsigned long long)st.agg.payloads,
             (double)st.agg.loop_longest_cb_ns / 1e6,
             (double)st.agg.loop_longest_cb_wall_ns / 1e6);
}

static void on_stopped_all(void *arg, bool clean)
{
    struct lc_pipeline *p = arg;
    log_debug_stats(p);
    report_undelivered(p, clean);
    lc_done_cb cb = p->cb;
    p->cb = NULL;
    if (cb != NULL)
        cb(p->cb_arg, clean); /* may destroy p */
}

void lc_pipeline_stop(struct lc_pipeline *p, struct cmn_deadline dl,
                      lc_done_cb cb, void *arg)
{
    p->cb = cb;
    p->cb_arg = arg;
    lc_stop_all(p->m, dl, on_stopped_all, p);
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
        ls_get_stats(p->local, &out->local);
}
