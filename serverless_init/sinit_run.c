/*
 * sinit_run.c - the serverless-init program: configuration, the pipeline,
 * the child process, signals, cloud tags and enhanced metrics, and the
 * drain cascade (spec/pipeline.md §5, DESIGN.md "Lifecycle").
 *
 * Start-up order is the readiness path and must stay short: parse config
 * -> create and start the pipeline (listeners bound) -> block signals ->
 * uv_spawn the child -> install the signal watchers and unblock -> only
 * then the things the child's first packet does not need: the cold-start
 * metric and the GCP metadata lookup.
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

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <time.h>
#include <unistd.h>

#include "lifecycle.h"

#define COMP "sinit"
#define MD_TIMEOUT_MS 300
#define FORCE_GRACE_MS 250 /* after the budget, before we give up on stop */
#define MIN_DRAIN_MS 500   /* drain floor when the child used the budget */
#define MAX_SIGS 96

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
    enum sinit_cloud cloud;
    uint64_t budget_ms;
    uint64_t start_ns;       /* process start (monotonic) */
    uint64_t budget_from_ns; /* 0 until the budget started */
    struct lc_pipeline *p;
    uv_process_t child;
    bool child_inited, child_alive;
    int exit_code;
    uv_signal_t sigs[MAX_SIGS];
    int nsigs;
    uv_timer_t budget_timer;
    bool budget_timer_inited;
    struct sinit_md *md;
    bool md_pending;
    enum app_state state;
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
    for (int i = 0; i < a->nsigs; i++)
        if (!uv_is_closing((uv_handle_t *)&a->sigs[i]))
            uv_close((uv_handle_t *)&a->sigs[i], NULL);
    if (a->budget_timer_inited &&
        !uv_is_closing((uv_handle_t *)&a->budget_timer))
        uv_close((uv_handle_t *)&a->budget_timer, NULL);
    if (a->child_inited && !uv_is_closing((uv_handle_t *)&a->child))
        uv_close((uv_handle_t *)&a->child, NULL);
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
static void on_child_exit(uv_process_t *p, int64_t status, int term_signal)
{
    struct app *a = p->data;
    a->child_alive = false;
    a->exit_code = sinit_exit_code(status, term_signal);
    if (term_signal > 0)
        CMN_LOGI(COMP, "child killed by signal %d: exit code %d", term_signal,
                 a->exit_code);
    else
        CMN_LOGD(COMP, "child exited with code %d", a->exit_code);
    uv_close((uv_handle_t *)&a->child, NULL);
    (void)sinit_reap_orphans(0); /* those queued behind the child */
    begin_drain(a);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct app *a = h->data;
    bool term = signum == SIGTERM || signum == SIGINT;
    if (signum == SIGCHLD) {
        (void)sinit_reap_orphans(a->child_alive ? a->child.pid : 0);
        return;
    }
    if (term && a->state != ST_RUNNING)
        force_exit(a, "second termination signal during the drain");
    if (term)
        start_budget(a);
    if (a->child_alive) {
        if (signum != SIGPIPE) {
            int err = uv_process_kill(&a->child, signum);
            if (err != 0)
                CMN_LOGD(COMP, "forwarding signal %d: %s", signum,
                         uv_strerror(err));
        }
        return;
    }
    if (term)
        begin_drain(a);
}

/* Every catchable signal but the synchronous fault signals (which cannot
 * be handled from the loop), SIGKILL and SIGSTOP. SIGCHLD is watched for
 * reaping, never forwarded; SIGPIPE (our own writes) is swallowed. */
static bool forwardable(int s)
{
    switch (s) {
    case SIGKILL:
    case SIGSTOP:
    case SIGSEGV:
    case SIGBUS:
    case SIGFPE:
    case SIGILL:
    case SIGTRAP:
    case SIGSYS:
        return false;
    default:
        return true;
    }
}

static int install_signals(struct app *a)
{
    int last = a->sidecar ? 31 : SIGRTMAX;
    for (int s = 1; s <= last && a->nsigs < MAX_SIGS; s++) {
        if (s > 31 && s < SIGRTMIN)
            continue; /* reserved by the C library */
        if (!forwardable(s))
            continue;
        if (a->sidecar && s != SIGTERM && s != SIGINT && s != SIGCHLD &&
            s != SIGPIPE)
            continue;
        uv_signal_t *h = &a->sigs[a->nsigs];
        int err = uv_signal_init(&a->loop, h);
        if (err != 0)
            return err;
        a->nsigs++;
        h->data = a;
        err = uv_signal_start(h, on_signal, s);
        if (err != 0)
            return err;
    }
    return 0;
}

static int spawn_child(struct app *a)
{
    uv_stdio_container_t stdio[3];
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = i;
    }
    uv_process_options_t o;
    memset(&o, 0, sizeof(o));
    o.exit_cb = on_child_exit;
    o.file = a->cli.argv[0];
    o.args = a->cli.argv;
    o.env = NULL; /* inherit */
    o.stdio = stdio;
    o.stdio_count = 3;
    a->child.data = a;
    int err = uv_spawn(&a->loop, &a->child, &o);
    a->child_inited = true; /* initialized even on error: must be closed */
    if (err != 0)
        return err;
    a->child_alive = true;
    return 0;
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

static int read_config(struct app *a, struct lc_pipeline_config *c)
{
    int64_t budget = SINIT_BUDGET_DEFAULT_MS;
    if (cmn_env_i64(NULL, SINIT_BUDGET_ENV, 1, 600000, &budget) != 0)
        return UV_EINVAL;
    a->budget_ms = (uint64_t)budget;
    a->enhanced = true;
    if (cmn_env_bool(NULL, "DD_ENHANCED_METRICS", &a->enhanced) != 0)
        return UV_EINVAL;
    lc_pipeline_config_defaults(c);
    serverless_defaults(c);
    int err = lc_pipeline_config_from_env(c, NULL);
    if (err != 0)
        return err;
    err = serverless_force(c);
    if (err != 0)
        return err;
    a->cloud = sinit_cloud_detect(NULL);
    if (a->cloud == SINIT_CLOUD_LOCAL)
        CMN_LOGD(COMP, "no cloud environment detected: local tags");

    /* Static tags now; metadata tags replace them once known. */
    char **v = NULL;
    size_t n = 0;
    err = metric_tags(a, c->agg.extra_tags, c->agg.nextra_tags, NULL, &v, &n);
    if (err != 0)
        return err;
    base_extra = c->agg.extra_tags;
    nbase_extra = c->agg.nextra_tags;
    c->agg.extra_tags = v;
    c->agg.nextra_tags = n;
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
    if (v == NULL || strcmp(v, "__random__") != 0)
        return;
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", lc_pipeline_udp_port(a->p));
    (void)setenv("DD_DOGSTATSD_PORT", buf, 1);
}

/* Returns an exit code now (nothing to run), or -1: run the loop. */
static int run(struct app *a, struct lc_pipeline_config *c)
{
    int err = lc_pipeline_create(&a->loop, c, &a->p);
    if (err != 0) {
        fprintf(stderr, "serverless-init: cannot create the pipeline: %s\n",
                cmn_strerror(err));
        return SINIT_EXIT_CONFIG;
    }
    if (lc_pipeline_is_local(a->p))
        CMN_LOGI(COMP, "DD_API_KEY is not set: nothing is sent to Datadog; "
                       "the metrics that would have been sent are shown "
                       "locally (stderr, or DRAINPIPE_LOCAL_FILE)");
    err = lc_pipeline_start(a->p);
    if (err != 0) {
        fprintf(stderr, "serverless-init: cannot start the pipeline: %s\n",
                cmn_strerror(err));
        a->exit_code = SINIT_EXIT_CONFIG;
        begin_stop(a);
        return -1; /* run the loop for the rollback */
    }
    /* Signals are blocked from here until their watchers are installed,
     * so that installing ~60 of them happens after the spawn without
     * losing one (a pending signal is delivered at the unblock). libuv
     * resets the child's mask and dispositions before exec. No other
     * thread exists yet: nothing has used the thread pool. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    if (!a->sidecar) {
        export_random_port(a);
        err = spawn_child(a);
        if (err != 0) {
            fprintf(stderr, "serverless-init: cannot run \"%s\": %s\n",
                    a->cli.argv[0], uv_strerror(err));
            a->exit_code = SINIT_EXIT_NOT_FOUND;
        }
    }
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    uint64_t spawned_ns = cmn_mono_ns();
    err = install_signals(a);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err != 0) {
        fprintf(stderr, "serverless-init: signal handlers: %s\n",
                uv_strerror(err));
        if (a->child_alive)
            (void)uv_process_kill(&a->child, SIGKILL);
        else
            a->exit_code = SINIT_EXIT_CONFIG;
        begin_stop(a);
        return -1;
    }
    /* Off the critical path from here. CPU time includes the dynamic
     * loader's work before main; wall time is from main. */
    CMN_LOGD(COMP,
             "child spawned: %.3f ms CPU since exec, %.3f ms wall since main",
             (double)cpu.tv_sec * 1e3 + (double)cpu.tv_nsec / 1e6,
             (double)(spawned_ns - a->start_ns) / 1e6);
    CMN_LOGI(COMP, "DogStatsD listening on UDP port %d%s",
             lc_pipeline_udp_port(a->p), a->sidecar ? " (sidecar mode)" : "");
    enhanced_start(a);
    if (sinit_cloud_is_gcp(a->cloud)) {
        err = sinit_md_fetch(&a->loop, NULL, MD_TIMEOUT_MS, on_metadata, a,
                             &a->md);
        a->md_pending = err == 0 && a->md != NULL;
    }
    if (!a->sidecar && !a->child_alive)
        begin_drain(a); /* spawn failed */
    return -1;
}

int sinit_main(int argc, char **argv)
{
    struct app *a;
    struct lc_pipeline_config cfg;
    int rc;

    cmn_process_start_set(cmn_mono_ns());
    a = cmn_calloc(1, sizeof(*a));
    if (a == NULL)
        return SINIT_EXIT_CONFIG;
    a->start_ns = cmn_process_start_ns();
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
    cmn_log_set_logger(a->sidecar ? "SERVERLESS_SIDECAR" : "SERVERLESS_INIT");
    /* Harmless when we are PID 1; makes orphans ours otherwise. */
    (void)prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    env_defaults(a->sidecar);

    memset(&cfg, 0, sizeof(cfg));
    rc = read_config(a, &cfg);
    if (rc != 0) {
        fprintf(stderr,
                "serverless-init: invalid configuration (%s); "
                "nothing was started\n",
                cmn_strerror(rc));
        rc = SINIT_EXIT_CONFIG;
        goto out_free_cfg;
    }
    rc = uv_loop_init(&a->loop);
    if (rc != 0) {
        rc = SINIT_EXIT_CONFIG;
        goto out_free_cfg;
    }
    rc = run(a, &cfg);
    lc_pipeline_config_free(&cfg);
    if (rc < 0) {
        uv_run(&a->loop, UV_RUN_DEFAULT);
        rc = a->exit_code;
    }
    close_handles(a);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    lc_pipeline_destroy(a->p);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a->loop) != 0)
        CMN_LOGD(COMP, "loop still has handles at exit");
    cmn_strv_free(base_extra, nbase_extra);
    sinit_cli_free(&a->cli);
    cmn_free(a);
    return rc;

out_free_cfg:
    lc_pipeline_config_free(&cfg);
    cmn_strv_free(base_extra, nbase_extra);
    sinit_cli_free(&a->cli);
    cmn_free(a);
    return rc;
}
