/*
 * sinit_run.c - the serverless-init program: configuration, the pipeline,
 * the child process, signals, cloud tags and enhanced metrics, and the
 * drain cascade (spec/pipeline.md §5, DESIGN.md "Lifecycle").
 *
 * Start-up order is the readiness path and must stay short. Before the
 * child is spawned only: block the handled signals (first thing, so no
 * thread ever sees them) -> parse the configuration -> bind the listeners
 * (lc_pipeline_listen) -> open the signalfd -> start the DogStatsD receive
 * threads (lc_pipeline_receive: they move datagrams into the receive
 * rings, nothing more) -> posix_spawn the child. After the spawn, while
 * the child starts: cloud detection and tags, the sink (forwarder, which
 * loads libcurl on the thread pool, or local sink) and the aggregator with
 * its tables, the cold-start metric and the GCP metadata lookup. The loop
 * runs only after all of that, so the child's first packets wait in the
 * receive rings, never lost. With
 * DRAINPIPE_FAIL_CLOSED the whole pipeline is built before the spawn, so
 * that any failure still exits 1 without running the command.
 *
 * Fail-open (the default): a configuration error, a listener that cannot
 * bind or a pipeline that cannot start is one error line on stderr saying
 * that metrics (or those of that listener) are off for this run; the
 * command runs anyway and its exit code is ours. A sidecar whose listeners
 * cannot bind retries with backoff instead.
 *
 * End: when the child exits (wrapper) or on SIGTERM/SIGINT (sidecar), the
 * shutdown metrics are added, the metadata lookup is awaited (it is bounded
 * by its own 300 ms), then lc_pipeline_stop drains under what is left of
 * the budget. The budget runs from the first SIGTERM/SIGINT or the child's
 * exit, whichever comes first, so that it fits the platform's grace period;
 * the drain always gets at least MIN_DRAIN_MS. A second SIGTERM/SIGINT
 * during the drain, or the budget plus a small grace, forces the exit with
 * the child's code after reporting what was not delivered.
 */
#include "sinit.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lifecycle.h"
#include "sinit_control.h"

#define COMP "sinit"
#define MD_TIMEOUT_MS 300
#define FORCE_GRACE_MS 250  /* after the budget, before we give up on stop */
#define MIN_DRAIN_MS 500    /* drain floor when the child used the budget */
#define RETRY_FIRST_MS 1000 /* sidecar: first listener retry */
#define RETRY_MAX_MS 30000  /* sidecar: backoff cap */
#define FAIL_CLOSED_ENV "DRAINPIPE_FAIL_CLOSED"
#define STRIP_KEY_ENV "DRAINPIPE_STRIP_API_KEY"

enum app_state {
    ST_RUNNING,  /* child running (wrapper) or waiting for SIGTERM */
    ST_WAIT_MD,  /* child ended; waiting for the metadata lookup */
    ST_DRAINING, /* lc_pipeline_stop running */
    ST_DONE
};

struct app {
    uv_loop_t loop;
    struct sinit_cli cli;
    bool sidecar;
    bool enhanced;
    bool fail_closed; /* DRAINPIPE_FAIL_CLOSED: any failure exits 1 */
    bool strip_key;   /* DRAINPIPE_STRIP_API_KEY: the child has none */
    bool metrics_off; /* the configuration is invalid: no pipeline */
    enum sinit_cloud cloud;
    uint64_t budget_ms;
    uint64_t start_ns;       /* process start (monotonic) */
    uint64_t budget_from_ns; /* 0 until the budget started */
    uint64_t spawned_ns;     /* when the child was spawned */
    struct lc_pipeline_config cfg;
    struct lc_pipeline *p; /* NULL: metrics off */
    int child_pid;
    bool child_alive;
    int exit_code;
    struct sinit_sig *sig;
    uv_timer_t budget_timer;
    bool budget_timer_inited;
    uv_timer_t retry_timer; /* sidecar: listeners that could not bind */
    bool retry_timer_inited;
    uint64_t retry_ms;
    struct sinit_md *md;
    bool md_pending;
    enum app_state state;
    struct sinit_ctl *ctl; /* DRAINPIPE_CONTROL_PORT, or NULL */
};

/* ------------------------------------------------------------------------
 * Enhanced metrics (spec §5.5): distributions of value v at now.
 */
static void add_enhanced(struct app *a, const char *name, double v,
                         const char *tags)
{
    if (name == NULL || a->p == NULL)
        return;
    struct agg_metric m;
    memset(&m, 0, sizeof(m));
    m.name = cmn_slice_cstr(name);
    m.tags = tags ? cmn_slice_cstr(tags) : cmn_slice(NULL, 0);
    m.type = AGG_DISTRIBUTION;
    m.values = &v;
    m.nvalues = 1;
    m.rate = 1;
    m.timestamp = 0; /* aggregated at now (a |T sample would be dropped) */
    int err = agg_add_metric(lc_pipeline_agg(a->p), &m);
    if (err != 0)
        CMN_LOGW(COMP, "enhanced metric %s dropped: %s", name,
                 cmn_strerror(err));
}

static void enhanced_start(struct app *a)
{
    if (!a->enhanced)
        return;
    struct sinit_enhanced_names n;
    sinit_enhanced_names(a->cloud, &n);
    add_enhanced(a, n.start[0], 1, NULL);
    add_enhanced(a, n.start[1], 1, NULL);
}

static void enhanced_shutdown(struct app *a)
{
    if (!a->enhanced)
        return;
    struct sinit_enhanced_names n;
    sinit_enhanced_names(a->cloud, &n);
    if (a->cloud == SINIT_CLOUD_RUN_JOB) {
        add_enhanced(a, n.shutdown[0], 1,
                     a->exit_code == 0 ? "succeeded:true" : "succeeded:false");
        double ms = (double)(cmn_mono_ns() - a->start_ns) / 1e6;
        add_enhanced(a, n.duration, ms, NULL);
        return;
    }
    add_enhanced(a, n.shutdown[0], 1, NULL);
    add_enhanced(a, n.shutdown[1], 1, NULL);
}

/* ------------------------------------------------------------------------
 * Tags
 */
/* Builds the metric tags: the aggregator's own extra tags (from its env)
 * first, then the serverless tag map over them. */
static int metric_tags(struct app *a, char *const *prev, size_t nprev,
                       const struct sinit_gcp_md *md, char ***out, size_t *n)
{
    struct sinit_tags t;
    sinit_tags_init(&t);
    int err = 0;
    for (size_t i = 0; i < nprev && err == 0; i++)
        err = sinit_tags_set_raw(&t, cmn_slice_cstr(prev[i]));
    if (err == 0)
        err = sinit_tags_build(&t, NULL, a->cloud, a->sidecar, md);
    if (err == 0)
        err = sinit_tags_metric_list(&t, out, n);
    sinit_tags_free(&t);
    return err;
}

static char **base_extra; /* the aggregator env's own extra tags (owned) */
static size_t nbase_extra;

static void begin_stop(struct app *a);

static void on_metadata(void *data, const struct sinit_gcp_md *md)
{
    struct app *a = data;
    char **v = NULL;
    size_t n = 0;
    CMN_LOGD(COMP, "metadata: container_id=%s region=%s project_id=%s",
             md->container_id, md->region, md->project_id);
    if (metric_tags(a, base_extra, nbase_extra, md, &v, &n) == 0) {
        if (agg_set_extra_tags(lc_pipeline_agg(a->p), (const char *const *)v,
                               n) != 0)
            CMN_LOGW(COMP, "could not apply the metadata tags");
    }
    cmn_strv_free(v, n);
    sinit_md_close(a->md);
    a->md = NULL;
    a->md_pending = false;
    if (a->state == ST_WAIT_MD)
        begin_stop(a);
}

/* ------------------------------------------------------------------------
 * End of the run
 */
static void close_handles(struct app *a)
{
    sinit_ctl_close(a->ctl);
    a->ctl = NULL;
    sinit_sig_close(a->sig);
    a->sig = NULL;
    if (a->budget_timer_inited &&
        !uv_is_closing((uv_handle_t *)&a->budget_timer))
        uv_close((uv_handle_t *)&a->budget_timer, NULL);
    if (a->retry_timer_inited && !uv_is_closing((uv_handle_t *)&a->retry_timer))
        uv_close((uv_handle_t *)&a->retry_timer, NULL);
    if (a->md != NULL) {
        sinit_md_close(a->md);
        a->md = NULL;
    }
}

/* Transactions that will never be delivered, from the forwarder's
 * counters (zero with the local sink). */
static uint64_t undelivered(const struct lc_pipeline_stats *st)
{
    const struct fwd_stats *f = &st->fwd;
    return f->queued + f->inflight + f->abandoned + f->dropped_400 +
           f->dropped_403 + f->dropped_413 + f->dropped_evicted +
           f->dropped_stopped + f->dropped_other;
}

/* One stderr line with the counts when something was not delivered (or
 * always, with a reason, on a forced exit). */
static void report_undelivered(struct app *a, const char *why)
{
    struct lc_pipeline_stats st;
    if (a->p == NULL)
        return;
    lc_pipeline_get_stats(a->p, &st);
    uint64_t n = undelivered(&st);
    if (n == 0 && why == NULL)
        return;
    fprintf(stderr,
            "serverless-init: %s%s%llu payload transaction(s) not delivered "
            "(queued %llu, in flight %llu, abandoned %llu, dropped: 400 "
            "%llu, 403 %llu, 413 %llu, evicted %llu, after stop %llu, "
            "other %llu); delivered %llu\n",
            why ? why : "", why ? ": " : "", (unsigned long long)n,
            (unsigned long long)st.fwd.queued,
            (unsigned long long)st.fwd.inflight,
            (unsigned long long)st.fwd.abandoned,
            (unsigned long long)st.fwd.dropped_400,
            (unsigned long long)st.fwd.dropped_403,
            (unsigned long long)st.fwd.dropped_413,
            (unsigned long long)st.fwd.dropped_evicted,
            (unsigned long long)st.fwd.dropped_stopped,
            (unsigned long long)st.fwd.dropped_other,
            (unsigned long long)st.fwd.delivered);
    fflush(stderr);
}

static void on_pipeline_stopped(void *arg, bool clean)
{
    struct app *a = arg;
    if (!clean)
        CMN_LOGW(COMP, "drain ended with an abandoned component");
    report_undelivered(a, NULL);
    a->state = ST_DONE;
    lc_checkpoint_log("stop", "pipeline", a->budget_from_ns);
    close_handles(a);
}

/* Forced exit: reports what was not delivered and leaves now. */
static void force_exit(struct app *a, const char *why)
{
    char msg[128];
    snprintf(msg, sizeof(msg), "%s, exiting with code %d", why, a->exit_code);
    report_undelivered(a, msg);
    _exit(a->exit_code);
}

static void on_budget_timer(uv_timer_t *t)
{
    force_exit(t->data, "drain budget exceeded");
}

/* The budget runs from the first SIGTERM/SIGINT or the child's exit. */
static void start_budget(struct app *a)
{
    if (a->budget_from_ns == 0)
        a->budget_from_ns = cmn_mono_ns();
}

/* What is left of the budget, never less than MIN_DRAIN_MS (a child that
 * used the whole budget for its own shutdown still gets a short drain)
 * nor more than the budget. */
static uint64_t budget_left_ms(const struct app *a)
{
    uint64_t used = (cmn_mono_ns() - a->budget_from_ns) / 1000000u;
    uint64_t left = used >= a->budget_ms ? 0 : a->budget_ms - used;
    uint64_t floor = a->budget_ms < MIN_DRAIN_MS ? a->budget_ms : MIN_DRAIN_MS;
    return left < floor ? floor : left;
}

/* Arms the forced exit once we drain (never while the child runs: it may
 * take its time over its own shutdown). */
static void arm_budget_timer(struct app *a)
{
    start_budget(a);
    if (a->budget_timer_inited)
        return;
    if (uv_timer_init(&a->loop, &a->budget_timer) == 0) {
        a->budget_timer_inited = true;
        a->budget_timer.data = a;
        (void)uv_timer_start(&a->budget_timer, on_budget_timer,
                             budget_left_ms(a) + FORCE_GRACE_MS, 0);
    }
}

static void begin_stop(struct app *a)
{
    arm_budget_timer(a);
    a->state = ST_DRAINING;
    if (a->p == NULL) { /* metrics off: nothing to drain */
        a->state = ST_DONE;
        close_handles(a);
        return;
    }
    lc_pipeline_stop(a->p, budget_left_ms(a), on_pipeline_stopped, a);
}

/* Child ended (or never started) or sidecar got SIGTERM: drain. */
static void begin_drain(struct app *a)
{
    if (a->state != ST_RUNNING)
        return;
    arm_budget_timer(a);
    enhanced_shutdown(a);
    if (a->md_pending) {
        a->state = ST_WAIT_MD; /* on_metadata continues */
        return;
    }
    begin_stop(a);
}

/* ------------------------------------------------------------------------
 * Child and signals
 */
/* Reaps the child if it exited; returns true then. */
static bool reap_child(struct app *a)
{
    int st;
    pid_t r;
    if (!a->child_alive)
        return false;
    do {
        r = waitpid(a->child_pid, &st, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r != a->child_pid)
        return false;
    a->child_alive = false;
    int sig = WIFSIGNALED(st) ? WTERMSIG(st) : 0;
    a->exit_code = sinit_exit_code(WIFEXITED(st) ? WEXITSTATUS(st) : 0, sig);
    lc_checkpoint_log("exit", "child", a->spawned_ns);
    if (sig > 0)
        CMN_LOGI(COMP, "child killed by signal %d: exit code %d", sig,
                 a->exit_code);
    else
        CMN_LOGD(COMP, "child exited with code %d", a->exit_code);
    return true;
}

static void on_signal(void *data, int signum)
{
    struct app *a = data;
    bool term = signum == SIGTERM || signum == SIGINT;
    if (signum == SIGCHLD) {
        /* the child first: orphans queued behind it wait for its reap */
        bool ended = reap_child(a);
        (void)sinit_reap_orphans(a->child_alive ? a->child_pid : 0);
        if (ended)
            begin_drain(a);
        return;
    }
    if (term && a->state != ST_RUNNING)
        force_exit(a, "second termination signal during the drain");
    if (term)
        start_budget(a);
    if (a->child_alive) {
        /* SIGPIPE is ours (a write to a closed socket), not the child's */
        if (signum != SIGPIPE && kill(a->child_pid, signum) != 0)
            CMN_LOGD(COMP, "forwarding signal %d: %s", signum,
                     uv_strerror(-errno));
        return;
    }
    if (term)
        begin_drain(a);
}

/* ------------------------------------------------------------------------
 * Configuration
 */
static void setenv_default(const char *name, const char *value)
{
    if (getenv(name) == NULL)
        (void)setenv(name, value, 0);
}

/* spec §5.1: set only when unset; the child inherits them too. */
static void env_defaults(bool sidecar)
{
    setenv_default("DD_INSTRUMENTATION_TELEMETRY_ENABLED", "false");
    setenv_default("DD_REMOTE_CONFIGURATION_ENABLED", "false");
    setenv_default("DD_HOSTNAME", "none");
    setenv_default("DD_APM_ENABLED", "true");
    setenv_default("DD_TRACE_ENABLED", "true");
    if (sidecar) {
        setenv_default("DD_LOGS_ENABLED", "true");
        setenv_default("DD_APM_NON_LOCAL_TRAFFIC", "true");
        setenv_default("DD_DOGSTATSD_NON_LOCAL_TRAFFIC", "true");
    }
}

/* spec §5.2 overrides, applied as defaults before the environment. */
static void serverless_defaults(struct lc_pipeline_config *c)
{
    c->fwd.stop_timeout_s = 3;
    c->fwd.stop_wait_for_inflight = true;
    /* The forwarder loads libcurl and opens its first connection after the
     * child is spawned (fwd_start defers both to the loop), so the first
     * flush finds a warm connection and start-up pays nothing for it. */
    c->fwd.warm_start = true;
    c->aggregator_stop_timeout_ms = 2000;
    c->agg.flush_incomplete_buckets = true;
    c->agg.flush_interval_s = 3;
    c->agg.use_v2_series = true;
    cmn_free(c->dsd.socket_path);
    cmn_free(c->dsd.stream_socket_path);
    c->dsd.socket_path = c->dsd.stream_socket_path = NULL;
}

/* Forced after the environment: serverless mode (spec §5.2 step 5). */
static int serverless_force(struct lc_pipeline_config *c)
{
    c->agg.serverless = true;
    c->agg.origin_product = 1;
    c->agg.origin_service = 472;
    cmn_free(c->agg.hostname);
    c->agg.hostname = cmn_strdup("");
    return c->agg.hostname == NULL ? UV_ENOMEM : 0;
}

/* True when the pipeline will send to Datadog (forwarder sink with a
 * key), false when it shows what it got locally (lc_pipeline_complete
 * decides the same way). */
static bool will_forward(const struct lc_pipeline_config *c)
{
    if (c->sink == LC_SINK_LOCAL)
        return false;
    for (size_t i = 0; i < c->fwd.nendpoints; i++)
        if (c->fwd.endpoints[i].nkeys > 0)
            return true;
    return false;
}

static int read_config(struct app *a, struct lc_pipeline_config *c)
{
    int64_t budget = SINIT_BUDGET_DEFAULT_MS;
    if (cmn_env_i64(NULL, SINIT_BUDGET_ENV, 1, 600000, &budget) != 0)
        return UV_EINVAL;
    a->budget_ms = (uint64_t)budget;
    a->enhanced = true;
    if (cmn_env_bool(NULL, "DD_ENHANCED_METRICS", &a->enhanced) != 0)
        return UV_EINVAL;
    if (cmn_env_bool(NULL, STRIP_KEY_ENV, &a->strip_key) != 0)
        return UV_EINVAL;
    lc_pipeline_config_defaults(c);
    serverless_defaults(c);
    int err = lc_pipeline_config_from_env(c, NULL);
    if (err != 0)
        return err;
    /* The local sink decodes every payload it gets in this process:
     * compressing them only to decompress them cost a trivial job's exit
     * a zstd context each way (bench/coldstart.sh). Unless asked for. */
    if (!will_forward(c) && getenv("DD_SERIALIZER_COMPRESSOR_KIND") == NULL)
        c->agg.compressor = AGG_COMPRESS_NONE;
    return serverless_force(c);
}

/* Cloud detection and the static tags (metadata tags replace them once
 * known). After the spawn: the child's first packet needs neither. */
static int detect_cloud(struct app *a, struct lc_pipeline_config *c)
{
    uint64_t t0 = cmn_mono_ns();
    a->cloud = sinit_cloud_detect(NULL);
    if (a->cloud == SINIT_CLOUD_LOCAL)
        CMN_LOGD(COMP, "no cloud environment detected: local tags");
    char **v = NULL;
    size_t n = 0;
    int err =
        metric_tags(a, c->agg.extra_tags, c->agg.nextra_tags, NULL, &v, &n);
    if (err != 0)
        return err;
    base_extra = c->agg.extra_tags;
    nbase_extra = c->agg.nextra_tags;
    c->agg.extra_tags = v;
    c->agg.nextra_tags = n;
    lc_checkpoint_log("detect", "cloud", t0);
    return 0;
}

/* ------------------------------------------------------------------------
 * main
 */
static int print_and_exit(enum sinit_action act)
{
    if (act == SINIT_HELP)
        fputs(sinit_usage(), stdout);
    else
        printf("serverless-init (drainpipe) %s\n", CMN_VERSION);
    return 0;
}

/* Makes the child see the bound port when DD_DOGSTATSD_PORT=__random__. */
static void export_random_port(struct app *a)
{
    const char *v = getenv("DD_DOGSTATSD_PORT");
    if (a->p == NULL || v == NULL || strcmp(v, "__random__") != 0)
        return;
    int port = lc_pipeline_udp_port(a->p);
    if (port == 0)
        return;
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", port);
    (void)setenv("DD_DOGSTATSD_PORT", buf, 1);
}

/* The one line of a fail-open error: what failed, and what it costs. */
static void fail_open_line(const char *what, const char *consequence)
{
    fprintf(stderr, "serverless-init: error: %s; %s\n", what, consequence);
    fflush(stderr);
}

/* Binds the listeners. Returns 0 when every configured listener is bound;
 * otherwise 1 after one error line per listener that is not (a->p then
 * runs with the others, or is NULL when none bound), or a negative error
 * (out of memory: a->p is NULL). */
static int listen_all(struct app *a, bool retry)
{
    struct lc_listen_report rep;
    char diverted[512];
    cmn_log_divert_errors(diverted, sizeof(diverted)); /* said below */
    /* a retry (in a timer callback) is all or nothing: the start-up
     * already said which listener fails */
    int err = lc_pipeline_listen(&a->loop, &a->cfg, retry, &rep, &a->p);
    cmn_log_divert_errors(NULL, 0);
    if (err != 0) {
        a->p = NULL;
        return retry && err != UV_ENOMEM ? 1 : err;
    }
    for (size_t i = 0; i < rep.nfailed; i++) {
        const struct lc_listen_failure *f = &rep.failed[i];
        bool path = strcmp(f->var, "DD_DOGSTATSD_PORT") != 0;
        char what[320];
        snprintf(
            what, sizeof(what), "%s=%s: cannot listen: %s", f->var, f->value,
            path && f->err == UV_EEXIST ? "the path exists and is not a socket"
                                        : uv_strerror(f->err));
        fail_open_line(
            what, a->fail_closed ? "nothing was started (" FAIL_CLOSED_ENV ")"
                  : a->sidecar   ? "DogStatsD is off until it binds "
                                   "(retrying)"
                  : rep.bound ? "metrics sent there are off for this run (the "
                                "other listeners work); the command runs anyway"
                              : "DogStatsD metrics are off for this run; the "
                                "command runs anyway");
    }
    return rep.nfailed > 0 ? 1 : 0;
}

/* After the listeners: cloud, tags, sink and aggregator, then start. On
 * failure (one error line) the pipeline is gone: metrics are off. */
static int finish_pipeline(struct app *a)
{
    if (a->p == NULL)
        return 0;
    int err = detect_cloud(a, &a->cfg);
    if (err == 0)
        err = lc_pipeline_complete(a->p, &a->cfg);
    if (err == 0) {
        if (lc_pipeline_is_local(a->p))
            CMN_LOGI(COMP, "DD_API_KEY is not set: nothing is sent to Datadog; "
                           "the metrics that would have been sent are shown "
                           "locally (stderr, or DRAINPIPE_LOCAL_FILE)");
        err = lc_pipeline_start(a->p);
    }
    if (err != 0) {
        char what[160];
        snprintf(what, sizeof(what), "the metrics pipeline cannot start (%s)",
                 cmn_strerror(err));
        fail_open_line(what, a->fail_closed
                                 ? "nothing was started"
                                 : "metrics are off for this run; the "
                                   "command runs anyway");
        lc_pipeline_destroy(a->p); /* frees as the loop runs */
        a->p = NULL;
        return err;
    }
    CMN_LOGI(COMP, "DogStatsD listening on UDP port %d%s",
             lc_pipeline_udp_port(a->p), a->sidecar ? " (sidecar mode)" : "");
    enhanced_start(a);
    if (sinit_cloud_is_gcp(a->cloud)) {
        err = sinit_md_fetch(&a->loop, NULL, MD_TIMEOUT_MS, on_metadata, a,
                             &a->md);
        a->md_pending = err == 0 && a->md != NULL;
    }
    return 0;
}

static void on_retry_timer(uv_timer_t *t);

/* Sidecar: the listeners are retried with backoff until they all bind. */
static void arm_retry(struct app *a)
{
    lc_pipeline_destroy(a->p); /* closes what did bind, as the loop runs */
    a->p = NULL;
    if (!a->retry_timer_inited) {
        if (uv_timer_init(&a->loop, &a->retry_timer) != 0)
            return;
        a->retry_timer_inited = true;
        a->retry_timer.data = a;
        a->retry_ms = RETRY_FIRST_MS;
    }
    fprintf(stderr,
            "serverless-init: sidecar: retrying the DogStatsD listeners in "
            "%llu ms\n",
            (unsigned long long)a->retry_ms);
    (void)uv_timer_start(&a->retry_timer, on_retry_timer, a->retry_ms, 0);
    a->retry_ms =
        a->retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : a->retry_ms * 2;
}

static void on_retry_timer(uv_timer_t *t)
{
    struct app *a = t->data;
    if (a->state != ST_RUNNING)
        return;
    int rc = listen_all(a, true);
    if (rc == 0) {
        fprintf(stderr, "serverless-init: sidecar: DogStatsD listeners "
                        "bound\n");
        (void)finish_pipeline(a);
        return;
    }
    if (rc > 0)
        arm_retry(a);
    else
        fail_open_line("the DogStatsD listeners: out of memory",
                       "metrics are off");
}

/* Runs the child. Returns 0, or sets the exit code (127) and returns the
 * spawn error. */
static int spawn_child(struct app *a)
{
    export_random_port(a);
    if (a->strip_key)
        (void)unsetenv("DD_API_KEY"); /* the forwarder has its copy */
    uint64_t t0 = cmn_mono_ns();
    int err = sinit_spawn(a->cli.argv, &a->child_pid);
    a->spawned_ns = cmn_mono_ns();
    if (err != 0) {
        fprintf(stderr, "serverless-init: cannot run \"%s\": %s\n",
                a->cli.argv[0], strerror(-err));
        a->exit_code = SINIT_EXIT_NOT_FOUND;
        return err;
    }
    a->child_alive = true;
    lc_checkpoint_log("spawn", "child", t0);
    if (cmn_log_enabled(CMN_LOG_DEBUG)) {
        /* CPU time includes the dynamic loader's work before main */
        struct timespec cpu;
        struct rusage ru;
        clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
        getrusage(RUSAGE_SELF, &ru); /* a first touch: ~14 us on a VM */
        CMN_LOGD(COMP,
                 "child spawned: %.3f ms CPU since exec, %.3f ms wall since "
                 "main, %ld page faults",
                 (double)cpu.tv_sec * 1e3 + (double)cpu.tv_nsec / 1e6,
                 (double)(a->spawned_ns - a->start_ns) / 1e6,
                 ru.ru_minflt + ru.ru_majflt);
    }
    return 0;
}

/* The control port acts on the pipeline only while it runs. */
static struct lc_pipeline *ctl_pipeline(void *data)
{
    struct app *a = data;
    return a->state == ST_RUNNING ? a->p : NULL;
}

/* Everything from the configuration on. Returns an exit code now (nothing
 * to run), or -1: run the loop. */
static int run(struct app *a, int config_err, const char *config_msg)
{
    uint64_t t0;
    int err;
    bool retry = false;

    if (config_err != 0) {
        char what[600];
        snprintf(what, sizeof(what), "invalid configuration: %s",
                 config_msg[0] != '\0' ? config_msg : cmn_strerror(config_err));
        if (a->fail_closed) {
            fail_open_line(what, "nothing was started (" FAIL_CLOSED_ENV ")");
            return SINIT_EXIT_CONFIG;
        }
        fail_open_line(what, a->sidecar ? "metrics are off"
                                        : "metrics are off for this run; the "
                                          "command runs anyway");
        a->metrics_off = true;
    }
    if (!a->metrics_off) {
        err = listen_all(a, false);
        if (err != 0 && a->fail_closed)
            return SINIT_EXIT_CONFIG; /* main destroys a->p */
        if (err < 0)
            fail_open_line("the DogStatsD listeners: out of memory",
                           "metrics are off for this run");
        retry = err > 0 && a->sidecar;
    }
    t0 = cmn_mono_ns();
    err = sinit_sig_open(&a->loop, a->sidecar, on_signal, a, &a->sig);
    if (err != 0) {
        fprintf(stderr, "serverless-init: signal handling: %s\n",
                uv_strerror(err));
        return SINIT_EXIT_CONFIG; /* nothing spawned yet */
    }
    lc_checkpoint_log("install", "signals", t0);
    if (sinit_ctl_open(&a->loop, NULL, ctl_pipeline, a, &a->ctl) != 0)
        CMN_LOGW(COMP, "no control port for this run");
    if (a->fail_closed && finish_pipeline(a) != 0)
        return SINIT_EXIT_CONFIG;
    /* The receive threads run before the child does: a child that sends
     * its burst the moment it starts would otherwise overflow a small
     * socket buffer (a kernel whose rmem_max is the stock 212992) before
     * the threads exist. They only fill the receive rings; parsing starts
     * with the pipeline, after the spawn. */
    if (a->p != NULL && lc_pipeline_receive(a->p) != 0)
        CMN_LOGW(COMP, "receive threads not started yet: the listeners are "
                       "read once the pipeline starts");
    bool spawned = a->sidecar || spawn_child(a) == 0;
    if (retry)
        arm_retry(a);
    else if (!a->fail_closed)
        (void)finish_pipeline(a); /* fail-open: the child runs anyway */
    if (!spawned)
        begin_drain(a); /* nothing to wait for */
    return -1;
}

int sinit_main(int argc, char **argv)
{
    struct app *a;
    int rc;

    cmn_process_start_set(cmn_mono_ns());
    a = cmn_calloc(1, sizeof(*a));
    if (a == NULL)
        return SINIT_EXIT_CONFIG;
    a->start_ns = cmn_process_start_ns();
    a->budget_ms = SINIT_BUDGET_DEFAULT_MS;
    if (sinit_cli_parse(argc, argv, &a->cli) != 0) {
        fprintf(stderr, "serverless-init: invalid command (see --help)\n");
        cmn_free(a);
        return SINIT_EXIT_CONFIG;
    }
    if (a->cli.action != SINIT_RUN) {
        rc = print_and_exit(a->cli.action);
        cmn_free(a);
        return rc;
    }
    a->sidecar = a->cli.argv == NULL;
    /* Before anything else, and before any thread exists: the handled
     * signals wait for the signalfd from here on. */
    sinit_sig_block(a->sidecar);
    cmn_log_set_logger(a->sidecar ? "SERVERLESS_SIDECAR" : "SERVERLESS_INIT");
    /* Harmless when we are PID 1; makes orphans ours otherwise. */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    env_defaults(a->sidecar);

    uint64_t t0 = cmn_mono_ns();
    char msg[512] = "";
    int cerr = 0;
    if (cmn_env_bool(NULL, FAIL_CLOSED_ENV, &a->fail_closed) != 0) {
        /* unreadable: the user asked for something; take the safe side */
        a->fail_closed = true;
        snprintf(msg, sizeof(msg), "%s: expected true or false",
                 FAIL_CLOSED_ENV);
        cerr = UV_EINVAL;
    }
    if (cerr == 0) {
        cmn_log_divert_errors(msg, sizeof(msg)); /* said in one line */
        cerr = read_config(a, &a->cfg);
        cmn_log_divert_errors(NULL, 0);
    }
    lc_checkpoint_log("parse", "config", t0);
    rc = uv_loop_init(&a->loop);
    if (rc != 0) {
        lc_pipeline_config_free(&a->cfg);
        rc = SINIT_EXIT_CONFIG;
        goto out_free;
    }
    rc = run(a, cerr, msg);
    if (rc < 0) {
        uv_run(&a->loop, UV_RUN_DEFAULT);
        rc = a->exit_code;
    }
    uint64_t t1 = cmn_mono_ns();
    close_handles(a);
    /* stopped by now, or never started (its listeners close as the loop
     * runs) */
    lc_pipeline_destroy(a->p);
    a->p = NULL;
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a->loop) != 0)
        CMN_LOGD(COMP, "loop still has handles at exit");
    lc_checkpoint_log("teardown", "loop", t1);
    lc_pipeline_config_free(&a->cfg);
out_free:
    cmn_strv_free(base_extra, nbase_extra);
    sinit_cli_free(&a->cli);
    cmn_free(a);
    return rc;
}
