/*
 * dp_pipeline.c - dp_start, dp_flush, dp_stats and dp_stop: a lifecycle
 * pipeline (lc_pipeline_*) on a thread and libuv loop of its own (or on
 * the host's loop: dp_start_on_loop, dp_flush_async, dp_stop_async), plus
 * the "inproc" component that feeds the submission queue to the
 * DogStatsD server's parser.
 *
 * The queue is drained on the loop thread in steps of DP_DRAIN_STEP bytes
 * (one step is a few thousand lines: well under a millisecond), and at
 * once up to the head when a flush or the stop needs everything accepted
 * so far. "inproc" depends on "dogstatsd": it is started after the server
 * and stopped before it, so the stop drains the queue into a server that
 * still runs, then the server, the aggregator and the forwarder drain in
 * turn under the one budget.
 *
 * Lifetime: p is freed by dp_stop once the loop thread has returned (its
 * loop closed). If the thread does not return within the budget plus
 * DP_EXIT_GRACE_MS (a component that never reports), dp_stop leaves p to
 * the thread, which frees it when it ends.
 */
#include "dp_lib.h"

#include <signal.h>
#include <string.h>
#include <time.h>

#define COMP "libdrainpipe"
#define DP_DRAIN_STEP ((size_t)256 << 10) /* bytes per loop callback */
#define DP_STOP_BUDGET_DEFAULT_MS 2000    /* the Agent's grace */
#define DP_EXIT_GRACE_MS 1000             /* after the budget */
#define DP_INPROC_STOP_TIMEOUT_MS 1000

_Static_assert(DP_ENOENT == UV_ENOENT, "DP_ENOENT");
_Static_assert(DP_ENOMEM == UV_ENOMEM, "DP_ENOMEM");
_Static_assert(DP_EBUSY == UV_EBUSY, "DP_EBUSY");
_Static_assert(DP_EINVAL == UV_EINVAL, "DP_EINVAL");
_Static_assert(DP_ETIMEDOUT == UV_ETIMEDOUT, "DP_ETIMEDOUT");
_Static_assert(DP_ETOOBIG == CMN_ETOOBIG, "DP_ETOOBIG");
_Static_assert(DP_EFULL == CMN_ECAP, "DP_EFULL");
_Static_assert(DP_ESTOPPED == CMN_ESTOPPED, "DP_ESTOPPED");

const char *dp_strerror(int err)
{
    return cmn_strerror(err);
}

const char *dp_version(void)
{
    return CMN_VERSION;
}

/* ------------------------------------------------------------------------
 * The queue's consumer (loop thread)
 */
static void feed(void *data, const char *text, size_t len)
{
    struct dp_pipeline *p = data;
    p->submitted++;
    p->submitted_bytes += len;
    dsd_process_packet(p->dsd, text, len, false);
}

static void on_q_async(uv_async_t *h)
{
    struct dp_pipeline *p = h->data;
    bool more;
    dp__queue_drain(&p->q, DP_DRAIN_STEP, 0, feed, p, &more);
    if (more || dp__queue_sleep(&p->q))
        uv_async_send(&p->q_async); /* the rest on the next iteration */
}

/* Everything reserved before `until`, published or about to be. */
static void drain_all(struct dp_pipeline *p, uint64_t until)
{
    bool more = true;
    while (more)
        dp__queue_drain(&p->q, SIZE_MAX, until, feed, p, &more);
}

/* The "inproc" component */
static int inproc_start(void *self)
{
    (void)self;
    return 0;
}

static void inproc_closed(uv_handle_t *h)
{
    struct dp_pipeline *p = h->data;
    p->handles_open--; /* p is not stopped yet: nothing to free */
    lc_stopped_fn done = p->inproc_done;
    p->inproc_done = NULL;
    if (done != NULL)
        done(p->inproc_arg);
}

/* Closes the queue and drains it to its final head into the server,
 * which still runs, then reports once the wake-up handle is closed. One
 * callback: at most the queue's size of text (4 MiB by default, some
 * 20 ms of parsing), which only the stop pays. */
static void inproc_stop(void *self, struct cmn_deadline dl, lc_stopped_fn done,
                        void *arg)
{
    (void)dl; /* one callback of bounded work (above) */
    struct dp_pipeline *p = self;
    drain_all(p, dp__queue_close(&p->q));
    p->inproc_done = done;
    p->inproc_arg = arg;
    p->q_closed_handle = true;
    uv_close((uv_handle_t *)&p->q_async, inproc_closed);
}

/* The registry never frees p: dp_stop (or the orphaned thread) does. */
static const struct lc_ops inproc_ops = {inproc_start, inproc_stop, NULL};

/* ------------------------------------------------------------------------
 * Stats (loop thread)
 */
void dp__stats_fill(struct dp_pipeline *p, struct dp_stats *st)
{
    struct lc_pipeline_stats ls;
    memset(st, 0, sizeof(*st));
    st->submitted = p->submitted;
    st->submitted_bytes = p->submitted_bytes;
    st->dropped_queue_full = atomic_load(&p->dropped_full);
    st->dropped_too_big = atomic_load(&p->dropped_big);
    st->dropped_stopped = atomic_load(&p->dropped_stopped);
    if (p->lp == NULL)
        return;
    lc_pipeline_get_stats(p->lp, &ls);
    st->packets = ls.dsd.packets;
    st->metric_lines = ls.dsd.metric_lines;
    st->metric_samples = ls.dsd.metric_samples;
    st->event_lines = ls.dsd.event_lines;
    st->service_check_lines = ls.dsd.service_check_lines;
    for (int i = 0; i < DSD_ERR_MAX; i++)
        st->parse_errors += ls.dsd.parse_errors[i];
    st->kernel_drops = ls.dsd.kernel_drops_udp + ls.dsd.kernel_drops_uds;
    st->dropped_listener = ls.dsd.packets_truncated + ls.dsd.unterminated +
                           ls.dsd.blocked + ls.dsd.stop_unread +
                           ls.dsd.stream_frames_too_big;
    st->contexts = ls.agg.contexts;
    st->samples_dropped = ls.agg.samples_nan + ls.agg.contexts_dropped +
                          ls.agg.samples_dropped_oom +
                          ls.agg.samples_dropped_cap +
                          ls.agg.samples_no_agg_unsupported;
    st->series_flushed = ls.agg.series_flushed;
    st->sketches_flushed = ls.agg.sketches_flushed;
    st->payloads = ls.agg.payloads;
    st->delivered = ls.fwd.delivered + ls.local.batches;
    st->dropped_payloads = ls.fwd.dropped_400 + ls.fwd.dropped_403 +
                           ls.fwd.dropped_413 + ls.fwd.dropped_evicted +
                           ls.fwd.dropped_other + ls.fwd.abandoned +
                           ls.fwd.dropped_stopped + ls.agg.payloads_dropped +
                           ls.local.dropped_stopped;
    st->queued = ls.fwd.queued + ls.fwd.inflight;
    st->inflight = ls.fwd.inflight;
    st->retried = ls.fwd.retried;
    st->abandoned = ls.fwd.abandoned;
    st->dropped_400 = ls.fwd.dropped_400;
    st->dropped_403 = ls.fwd.dropped_403;
    st->dropped_413 = ls.fwd.dropped_413;
    st->dropped_evicted = ls.fwd.dropped_evicted;
    st->dropped_after_stop = ls.fwd.dropped_stopped;
    st->dropped_other = ls.fwd.dropped_other;
}

/* ------------------------------------------------------------------------
 * Commands (loop thread)
 */
static void start_flush(struct dp_pipeline *p);

/* Calls the dp_flush_async callbacks of generations up to done_gen, one
 * at a time off the list, so that a callback may call dp_flush_async or
 * dp_stop_async again. */
static void flush_waits_run(struct dp_pipeline *p, uint64_t done_gen, int rc)
{
    while (p->waits != NULL && p->waits->gen <= done_gen) {
        struct dp__flush_wait *w = p->waits;
        p->waits = w->next;
        if (p->waits == NULL)
            p->waits_tail = &p->waits;
        w->done(p, rc, w->arg);
        cmn_free(w);
    }
}

static void flush_finish(struct dp_pipeline *p, int rc)
{
    pthread_mutex_lock(&p->mu);
    uint64_t done_gen = p->flush_done = p->flush_target;
    p->flush_rc = rc;
    bool again = p->flush_req > p->flush_target;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    flush_waits_run(p, done_gen, rc);
    if (again && !p->stopping)
        uv_async_send(&p->cmd_async); /* a later call: flush again */
}

static void on_flushed(void *data)
{
    struct dp_pipeline *p = data;
    p->flushing = false;
    flush_finish(p, 0);
}

/* Serves every dp_flush call made so far: the queue up to its head (all
 * accepted before them), then lc_pipeline_flush. */
static void start_flush(struct dp_pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    p->flush_target = p->flush_req;
    pthread_mutex_unlock(&p->mu);
    drain_all(p, dp__queue_head(&p->q));
    p->flushing = true;
    int rc = lc_pipeline_flush(p->lp, on_flushed, p);
    if (rc != 0) {
        p->flushing = false;
        flush_finish(p, rc);
    }
}

static void pipeline_free(struct dp_pipeline *p);

/* On the host's loop nobody joins a thread: p goes once its drain is over
 * and its last handle is closed. */
static void maybe_free(struct dp_pipeline *p)
{
    if (p->on_loop && p->stopped && p->handles_open == 0)
        pipeline_free(p);
}

static void teardown_closed(uv_handle_t *h)
{
    struct dp_pipeline *p = h->data;
    p->handles_open--;
    maybe_free(p);
}

static void on_stopped(void *arg, bool clean)
{
    struct dp_pipeline *p = arg;
    struct dp_stats st;
    dp__stats_fill(p, &st);
    lc_pipeline_destroy(p->lp); /* may finish on a later iteration */
    p->lp = NULL;
    if (!p->q_closed_handle) { /* "inproc" was never stopped */
        p->q_closed_handle = true;
        uv_close((uv_handle_t *)&p->q_async, teardown_closed);
    }
    uv_close((uv_handle_t *)&p->cmd_async, teardown_closed);
    pthread_mutex_lock(&p->mu);
    p->snap = st;
    p->stopped = true;
    p->stop_clean = clean;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (p->stop_cb != NULL) /* dp_stop_async: p goes after the closes */
        p->stop_cb(clean ? 0 : UV_ETIMEDOUT, &st, p->stop_arg);
}

static void begin_stop(struct dp_pipeline *p, struct cmn_deadline dl)
{
    p->stopping = true;
    if (p->flushing) { /* the stop's drain delivers what it would have */
        lc_pipeline_flush_cancel(p->lp);
        p->flushing = false;
    }
    pthread_mutex_lock(&p->mu);
    p->flush_target = p->flush_req;
    pthread_mutex_unlock(&p->mu);
    flush_finish(p, CMN_ESTOPPED);
    lc_pipeline_stop(p->lp, dl, on_stopped, p);
}

static void on_cmd(uv_async_t *h)
{
    struct dp_pipeline *p = h->data;
    pthread_mutex_lock(&p->mu);
    bool want_stats = p->stats_req > p->stats_done;
    uint64_t stats_gen = p->stats_req;
    bool want_flush = p->flush_req > p->flush_target;
    bool want_stop = p->stop_req;
    struct cmn_deadline dl = p->stop_deadline;
    pthread_mutex_unlock(&p->mu);
    if (p->stopping)
        return;
    if (want_stats) {
        struct dp_stats st;
        dp__stats_fill(p, &st);
        pthread_mutex_lock(&p->mu);
        p->snap = st;
        p->stats_done = stats_gen;
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    if (want_stop)
        begin_stop(p, dl);
    else if (want_flush && !p->flushing)
        start_flush(p);
}

/* ------------------------------------------------------------------------
 * The loop thread
 */
static void settings_free(struct dp__settings *s)
{
    if (s == NULL)
        return;
    lc_pipeline_config_free(&s->lc);
    cmn_free(s);
}

static void pipeline_free(struct dp_pipeline *p)
{
    settings_free(p->pending);
    cmn_strv_free(p->tags, p->ntags);
    dp__queue_free(&p->q);
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
    cmn_free(p);
}

/* Runs the loop until every handle is closed (dp_stop), then closes it. */
static void *loop_main(void *arg)
{
    struct dp_pipeline *p = arg;
    int rc;
    uv_run(p->loop, UV_RUN_DEFAULT);
    for (int i = 0; (rc = uv_loop_close(p->loop)) == UV_EBUSY && i < 8; i++)
        uv_run(p->loop, UV_RUN_DEFAULT);
    if (rc != 0)
        CMN_LOGE(COMP, "pipeline loop not closed: %s", cmn_strerror(rc));
    pthread_mutex_lock(&p->mu);
    p->exited = true;
    bool orphaned = p->orphaned;
    pthread_cond_broadcast(&p->cv);
    pthread_mutex_unlock(&p->mu);
    if (orphaned && rc == 0)
        pipeline_free(p);
    return NULL;
}

/* One wait on p->cv (under p->mu), bounded by dl. false once dl has
 * passed. */
static bool cv_wait(struct dp_pipeline *p, struct cmn_deadline dl)
{
    if (dl.at_ns == UINT64_MAX) {
        pthread_cond_wait(&p->cv, &p->mu);
        return true;
    }
    if (cmn_deadline_expired(dl))
        return false;
    /* dl is on CLOCK_MONOTONIC, the clock of p->cv (sync_init) */
    struct timespec ts = {(time_t)(dl.at_ns / 1000000000u),
                          (long)(dl.at_ns % 1000000000u)};
    pthread_cond_timedwait(&p->cv, &p->mu, &ts);
    return true;
}

/* Waits until *flag or the deadline; under p->mu. */
static bool wait_flag(struct dp_pipeline *p, const bool *flag,
                      struct cmn_deadline dl)
{
    while (!*flag)
        if (!cv_wait(p, dl))
            return false;
    return true;
}

static int sync_init(struct dp_pipeline *p)
{
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return UV_ENOMEM;
    /* cmn_mono_ns is CLOCK_MONOTONIC: deadlines use the same clock */
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&p->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        return UV_ENOMEM;
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        pthread_cond_destroy(&p->cv);
        return UV_ENOMEM;
    }
    return 0;
}

static void on_rollback(void *arg, bool clean)
{
    struct dp_pipeline *p = arg;
    (void)clean;
    lc_pipeline_destroy(p->lp); /* may finish on a later iteration */
    p->lp = NULL;
    p->stopped = true;
    maybe_free(p);
}

/* Undoes a start that failed after the loop was chosen: stops what
 * started and closes everything. With a loop of its own (no loop thread
 * yet) it runs the loop to the end; on the host's loop, which cannot be
 * run from here (this may be one of its callbacks), that happens on its
 * later iterations and p goes with the last close. */
static void start_rollback(struct dp_pipeline *p)
{
    if (p->q_async.data != NULL) {
        /* "inproc" closes q_async when it is stopped, i.e. when the whole
         * pipeline had started (only the thread failed) */
        if (!p->lp_started)
            uv_close((uv_handle_t *)&p->q_async, teardown_closed);
        uv_close((uv_handle_t *)&p->cmd_async, teardown_closed);
    }
    if (p->lp != NULL) {
        lc_pipeline_stop(p->lp, cmn_deadline_in_ms(DP_STOP_BUDGET_DEFAULT_MS),
                         on_rollback, p);
    } else {
        p->stopped = true;
        maybe_free(p);
    }
    if (p->on_loop)
        return;
    uv_run(p->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(p->loop) != 0)
        CMN_LOGE(COMP, "dp_start rollback: loop not closed (leaked)");
}

/* The pipeline's two wake-up handles. */
static void handles_init(struct dp_pipeline *p)
{
    uv_async_init(p->loop, &p->q_async, on_q_async);
    uv_async_init(p->loop, &p->cmd_async, on_cmd);
    p->q_async.data = p->cmd_async.data = p;
    p->handles_open = 2;
}

/* Once the components exist (lc_pipeline_create, or listen + complete):
 * checks the budget, registers "inproc" and starts everything. */
static int pipeline_run(struct dp_pipeline *p, const struct dp__settings *s)
{
    p->dsd = lc_pipeline_dsd(p->lp);
    if (cmn_budget_over(CMN_BUDGET_NO_NEW_CONTEXT)) {
        CMN_LOGE(COMP,
                 "the in-process queue (%zu bytes) leaves too little of "
                 "the memory budget (%zu bytes, DRAINPIPE_MEMORY_LIMIT)",
                 s->queue_size, cmn_budget_limit());
        return UV_ENOMEM;
    }
    const char *const deps[] = {"dogstatsd", NULL};
    int rc = lc_register(lc_pipeline_manager(p->lp), "inproc", deps,
                         &inproc_ops, p, DP_INPROC_STOP_TIMEOUT_MS);
    if (rc == 0)
        rc = lc_pipeline_start(p->lp);
    p->lp_started = rc == 0;
    return rc;
}

/* For dp_get_info: where the metrics go. */
static void note_sink(struct dp_pipeline *p, const struct lc_pipeline_config *c)
{
    p->api_key = lc_pipeline_config_has_api_key(c);
    p->local_sink = c->sink == LC_SINK_LOCAL || !p->api_key;
}

/* Makes the loop, the pipeline and its components, and starts them. */
static int pipeline_build(struct dp_pipeline *p, struct dp__settings *s)
{
    note_sink(p, &s->lc);
    int rc = lc_pipeline_create(p->loop, &s->lc, &p->lp);
    if (rc != 0)
        return rc;
    handles_init(p);
    return pipeline_run(p, s);
}

/* dp_start and dp_start_on_loop: host_loop NULL for a thread and loop of
 * the pipeline's own. */
static int start(const dp_config *cfg, uv_loop_t *host_loop, dp_pipeline **out)
{
    struct dp__settings s;
    if (cfg == NULL || out == NULL)
        return UV_EINVAL;
    int rc = dp__config_build(cfg, &s);
    if (rc != 0)
        goto out_free_settings;
    struct dp_pipeline *p = cmn_calloc(1, sizeof(*p));
    rc = UV_ENOMEM;
    if (p == NULL)
        goto out_free_settings;
    p->waits_tail = &p->waits;
    rc = dp__queue_init(&p->q, s.queue_size);
    if (rc != 0)
        goto out_free_p;
    rc = sync_init(p);
    if (rc != 0)
        goto out_free_queue;
    if (host_loop != NULL) {
        p->loop = host_loop;
        p->on_loop = true;
        p->loop_tid = pthread_self();
    } else {
        p->loop = &p->own_loop;
        rc = uv_loop_init(p->loop);
        if (rc != 0)
            goto out_free_sync;
    }
    rc = pipeline_build(p, &s);
    if (rc != 0)
        goto out_rollback;
    if (p->on_loop)
        goto out_started;
    /* The loop thread takes no signal: the host's handlers stay its own
     * (STYLE: non-loop threads block signals). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    rc = -pthread_create(&p->thread, NULL, loop_main, p);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto out_rollback;
out_started:
    lc_pipeline_config_free(&s.lc);
    *out = p;
    return 0;

out_rollback:
    CMN_LOGE(COMP, "dp_start: %s", cmn_strerror(rc));
    start_rollback(p);
    if (p->on_loop) /* p goes on a later iteration of the host's loop */
        goto out_free_settings;
out_free_sync:
    pthread_cond_destroy(&p->cv);
    pthread_mutex_destroy(&p->mu);
out_free_queue:
    dp__queue_free(&p->q);
out_free_p:
    cmn_free(p);
out_free_settings:
    lc_pipeline_config_free(&s.lc);
    return rc;
}

int dp_start(const dp_config *cfg, dp_pipeline **out)
{
    return start(cfg, NULL, out);
}

int dp_start_on_loop(const dp_config *cfg, struct uv_loop_s *loop,
                     dp_pipeline **out)
{
    if (loop == NULL)
        return UV_EINVAL;
    return start(cfg, loop, out);
}

/* ------------------------------------------------------------------------
 * On the host's loop (its thread)
 */
static bool on_host_loop_thread(const struct dp_pipeline *p)
{
    return p->on_loop && pthread_equal(pthread_self(), p->loop_tid);
}

int dp_flush_async(dp_pipeline *p, dp_flushed_fn done, void *arg)
{
    if (p == NULL || done == NULL || !on_host_loop_thread(p) || !p->lp_started)
        return UV_EINVAL;
    struct dp__flush_wait *w = cmn_malloc(sizeof(*w));
    if (w == NULL)
        return UV_ENOMEM;
    pthread_mutex_lock(&p->mu);
    if (p->stop_req) {
        pthread_mutex_unlock(&p->mu);
        cmn_free(w);
        return CMN_ESTOPPED;
    }
    *w = (struct dp__flush_wait){NULL, ++p->flush_req, done, arg};
    pthread_mutex_unlock(&p->mu);
    *p->waits_tail = w;
    p->waits_tail = &w->next;
    uv_async_send(&p->cmd_async); /* served by on_cmd, never re-entrantly */
    return 0;
}

int dp_stop_async(dp_pipeline *p, uint32_t budget_ms, dp_stopped_fn done,
                  void *arg)
{
    if (p == NULL || done == NULL || !on_host_loop_thread(p))
        return UV_EINVAL;
    pthread_mutex_lock(&p->mu);
    if (p->stop_req) {
        pthread_mutex_unlock(&p->mu);
        return UV_EBUSY;
    }
    p->stop_req = true;
    p->stop_deadline = cmn_deadline_in_ms(
        budget_ms == 0 ? DP_STOP_BUDGET_DEFAULT_MS : budget_ms);
    pthread_mutex_unlock(&p->mu);
    p->stop_cb = done;
    p->stop_arg = arg;
    uv_async_send(&p->cmd_async);
    return 0;
}

/* ------------------------------------------------------------------------
 * Two-step start (the host's loop thread)
 */
static void report_bind(const struct lc_listen_report *l,
                        struct dp_bind_report *rep)
{
    if (rep == NULL)
        return;
    _Static_assert(sizeof(rep->failed) / sizeof(rep->failed[0]) ==
                       sizeof(l->failed) / sizeof(l->failed[0]),
                   "dp_bind_report");
    memset(rep, 0, sizeof(*rep));
    rep->bound = l->bound;
    rep->nfailed = l->nfailed;
    for (size_t i = 0; i < l->nfailed; i++) {
        rep->failed[i].var = l->failed[i].var;
        rep->failed[i].err = l->failed[i].err;
        _Static_assert(sizeof(rep->failed[i].value) ==
                           sizeof(l->failed[i].value),
                       "dp_bind_failure.value");
        memcpy(rep->failed[i].value, l->failed[i].value,
               sizeof(rep->failed[i].value));
    }
}

int dp_bind_on_loop(const dp_config *cfg, struct uv_loop_s *loop,
                    unsigned flags, struct dp_bind_report *rep,
                    dp_pipeline **out)
{
    if (rep != NULL)
        memset(rep, 0, sizeof(*rep));
    if (cfg == NULL || loop == NULL || out == NULL ||
        (flags & ~(DP_BIND_ALL_OR_NOTHING | DP_BIND_RECEIVE_LATE)) != 0)
        return UV_EINVAL;
    struct dp__settings *s = cmn_calloc(1, sizeof(*s));
    if (s == NULL)
        return UV_ENOMEM;
    int rc = dp__config_build(cfg, s);
    if (rc != 0)
        goto out_settings;
    struct dp_pipeline *p = cmn_calloc(1, sizeof(*p));
    rc = UV_ENOMEM;
    if (p == NULL)
        goto out_settings;
    p->waits_tail = &p->waits;
    rc = sync_init(p);
    if (rc != 0)
        goto out_p;
    p->loop = loop;
    p->on_loop = true;
    p->loop_tid = pthread_self();
    struct lc_listen_report lr;
    rc = lc_pipeline_listen(loop, &s->lc, (flags & DP_BIND_ALL_OR_NOTHING) != 0,
                            &lr, &p->lp);
    if (rc != 0) { /* nothing open but what closes as the loop runs */
        pthread_cond_destroy(&p->cv);
        pthread_mutex_destroy(&p->mu);
        goto out_p;
    }
    report_bind(&lr, rep);
    /* The receive threads only move datagrams into the rings; parsing
     * waits for dp_start_bound. With DP_BIND_RECEIVE_LATE and buffers the
     * kernel can hold a start's traffic in, they wait for it too. */
    bool late = (flags & DP_BIND_RECEIVE_LATE) != 0 &&
                lc_pipeline_rcvbuf_min(p->lp) >= DP_RECEIVE_LATE_MIN_RCVBUF;
    if (!late && lc_pipeline_receive(p->lp) != 0)
        CMN_LOGD(COMP, "receive threads start with the pipeline");
    handles_init(p);
    p->pending = s;
    note_sink(p, &s->lc);
    *out = p;
    return 0;

out_p:
    cmn_free(p);
out_settings:
    settings_free(s);
    return rc;
}

/* s->lc.agg's extra tags become dp_set_tags's, when it was called (the
 * list moves: p keeps none once started). */
static void apply_tags(struct dp_pipeline *p, struct dp__settings *s)
{
    if (!p->tags_set)
        return;
    cmn_strv_free(s->lc.agg.extra_tags, s->lc.agg.nextra_tags);
    s->lc.agg.extra_tags = p->tags;
    s->lc.agg.nextra_tags = p->ntags;
    p->tags = NULL;
    p->ntags = 0;
}

int dp_start_bound(dp_pipeline *p)
{
    if (p == NULL || !on_host_loop_thread(p))
        return UV_EINVAL;
    if (p->pending == NULL)
        return UV_EBUSY; /* started, or failed to */
    if (p->stop_req)
        return CMN_ESTOPPED;
    struct dp__settings *s = p->pending;
    p->pending = NULL;
    /* the receive threads first, when DP_BIND_RECEIVE_LATE left them */
    if (lc_pipeline_receive(p->lp) != 0)
        CMN_LOGD(COMP, "receive threads start with the pipeline");
    apply_tags(p, s);
    int rc = dp__queue_init(&p->q, s->queue_size);
    if (rc == 0)
        rc = lc_pipeline_complete(p->lp, &s->lc);
    if (rc == 0)
        rc = pipeline_run(p, s);
    if (rc != 0)
        CMN_LOGE(COMP, "dp_start_bound: %s", cmn_strerror(rc));
    settings_free(s);
    return rc;
}

int dp_set_tags(dp_pipeline *p, const char *const *tags, size_t n)
{
    if (p == NULL || (tags == NULL && n > 0) || !on_host_loop_thread(p))
        return UV_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (tags[i] == NULL)
            return UV_EINVAL;
    if (p->stop_req)
        return CMN_ESTOPPED;
    if (p->lp_started) {
        struct agg *a = lc_pipeline_agg(p->lp);
        return a != NULL ? agg_set_extra_tags(a, tags, n) : CMN_ESTOPPED;
    }
    char **v = NULL;
    int rc = n > 0 ? cmn_strv_dup((char *const *)tags, n, &v) : 0;
    if (rc != 0)
        return rc;
    cmn_strv_free(p->tags, p->ntags);
    p->tags = v;
    p->ntags = n;
    p->tags_set = true;
    return 0;
}

int dp_get_info(dp_pipeline *p, struct dp_info *info, size_t size)
{
    if (p == NULL || info == NULL || (p->on_loop && !on_host_loop_thread(p)))
        return UV_EINVAL;
    struct dp_info in;
    memset(&in, 0, sizeof(in));
    in.started = p->lp_started;
    in.api_key = p->api_key;
    in.local_sink = p->local_sink;
    if (p->lp != NULL)
        in.udp_port = lc_pipeline_udp_port(p->lp);
    memcpy(info, &in, size < sizeof(in) ? size : sizeof(in));
    return 0;
}

/* ------------------------------------------------------------------------
 * Calls from other threads
 */
int dp_flush(dp_pipeline *p, uint32_t timeout_ms)
{
    if (p == NULL || on_host_loop_thread(p)) /* it would wait for itself */
        return UV_EINVAL;
    struct cmn_deadline deadline = timeout_ms == DP_WAIT_FOREVER
                                       ? CMN_NO_DEADLINE
                                       : cmn_deadline_in_ms(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&p->mu);
    if (p->stop_req) {
        pthread_mutex_unlock(&p->mu);
        return CMN_ESTOPPED;
    }
    uint64_t gen = ++p->flush_req;
    uv_async_send(&p->cmd_async);
    while (p->flush_done < gen)
        if (!cv_wait(p, deadline)) {
            rc = UV_ETIMEDOUT;
            break;
        }
    if (rc == 0)
        rc = p->flush_rc;
    pthread_mutex_unlock(&p->mu);
    return rc;
}

int dp_stats(dp_pipeline *p, struct dp_stats *st, size_t size)
{
    if (p == NULL || st == NULL)
        return UV_EINVAL;
    if (on_host_loop_thread(p)) { /* the loop's own: nobody to wait for;
                                     p lives until the stop callback */
        struct dp_stats now;
        dp__stats_fill(p, &now);
        memcpy(st, &now, size < sizeof(now) ? size : sizeof(now));
        return 0;
    }
    pthread_mutex_lock(&p->mu);
    if (p->stop_req) {
        pthread_mutex_unlock(&p->mu);
        return CMN_ESTOPPED;
    }
    uint64_t gen = ++p->stats_req;
    uv_async_send(&p->cmd_async);
    while (p->stats_done < gen && !p->stopped)
        pthread_cond_wait(&p->cv, &p->mu);
    memcpy(st, &p->snap, size < sizeof(p->snap) ? size : sizeof(p->snap));
    pthread_mutex_unlock(&p->mu);
    return 0;
}

int dp_stop(dp_pipeline *p, uint32_t budget_ms, struct dp_stats *final,
            size_t size)
{
    if (p == NULL)
        return 0;
    if (p->on_loop) /* nothing to join: dp_stop_async */
        return UV_EINVAL;
    if (budget_ms == 0)
        budget_ms = DP_STOP_BUDGET_DEFAULT_MS;
    pthread_mutex_lock(&p->mu);
    if (p->stop_req) {
        pthread_mutex_unlock(&p->mu);
        return UV_EBUSY;
    }
    p->stop_req = true;
    /* The budget counts from this call: the loop thread's drain gets this
     * deadline, and this wait the same plus a grace for the close
     * callbacks after it. */
    p->stop_deadline = cmn_deadline_in_ms(budget_ms);
    uv_async_send(&p->cmd_async);
    struct cmn_deadline deadline =
        cmn_deadline_in_ms((uint64_t)budget_ms + DP_EXIT_GRACE_MS);
    bool stopped = wait_flag(p, &p->stopped, deadline);
    bool exited = wait_flag(p, &p->exited, deadline);
    int rc = stopped && p->stop_clean && exited ? 0 : UV_ETIMEDOUT;
    if (final != NULL)
        memcpy(final, &p->snap,
               size < sizeof(p->snap) ? size : sizeof(p->snap));
    if (!exited)
        p->orphaned = true;
    pthread_mutex_unlock(&p->mu);
    if (!exited) {
        CMN_LOGE(COMP, "dp_stop: the pipeline thread did not end within "
                       "the budget; it frees the pipeline when it does");
        pthread_detach(p->thread);
        return rc;
    }
    pthread_join(p->thread, NULL);
    pipeline_free(p);
    return rc;
}
