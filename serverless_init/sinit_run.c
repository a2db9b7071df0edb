/*
 * sinit_run.c - the serverless-init program: configuration, the
 * pipeline's start-up, cloud tags and enhanced metrics, and main
 * (spec/pipeline.md §5, DESIGN.md "Lifecycle"). The wrapped command and
 * the signals are sinit_wrap.c's, the drain at the end sinit_drain.c's.
 *
 * The program is a client of libdrainpipe's public API (drainpipe.h) and
 * of nothing else of the pipeline: the profile "serverless" gives the
 * settings of spec §5.2, dp_bind_on_loop and dp_start_bound the two-step
 * start, dp_set_tags the cloud tags, dp_distribution the enhanced metrics.
 *
 * Start-up order is the readiness path and must stay short. Before the
 * child is spawned only: block the handled signals (first thing, so no
 * thread ever sees them) -> parse the configuration -> bind the listeners
 * and start their receive threads (dp_bind_on_loop: they move datagrams
 * into the receive rings, nothing more) -> open the signalfd ->
 * posix_spawn the child. After the spawn, while the child starts: cloud
 * detection and tags, then dp_start_bound: the sink (forwarder, which
 * loads libcurl on the thread pool, or local sink) and the aggregator with
 * its tables; then the cold-start metric and the GCP metadata lookup. The loop
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
 */
#include "sinit_app.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#define MD_TIMEOUT_MS 300
#define RETRY_FIRST_MS 1000 /* sidecar: first listener retry */
#define RETRY_MAX_MS 30000  /* sidecar: backoff cap */
#define FAIL_CLOSED_ENV "DRAINPIPE_FAIL_CLOSED"
#define STRIP_KEY_ENV "DRAINPIPE_STRIP_API_KEY"

/* ------------------------------------------------------------------------
 * Enhanced metrics (spec §5.5): distributions of value v at now.
 */
static void add_enhanced(struct sinit_app *a, const char *name, double v,
                         const char *tag)
{
    if (name == NULL || a->p == NULL || !a->p_started)
        return;
    /* aggregated at now, like any sample without a timestamp */
    int err = dp_distribution(a->p, name, v, tag ? &tag : NULL, tag ? 1 : 0, 1);
    if (err != 0)
        CMN_LOGW(SINIT_COMP, "enhanced metric %s dropped: %s", name,
                 dp_strerror(err));
}

static void enhanced_start(struct sinit_app *a)
{
    if (!a->enhanced)
        return;
    struct sinit_enhanced_names n;
    sinit_enhanced_names(a->cloud, &n);
    add_enhanced(a, n.start[0], 1, NULL);
    add_enhanced(a, n.start[1], 1, NULL);
}

void sinit__enhanced_shutdown(struct sinit_app *a)
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
/* Builds the metric tags: the configured ones (a->base_tags) first, then
 * the serverless tag map over them. */
static int metric_tags(struct sinit_app *a, const struct sinit_gcp_md *md,
                       char ***out, size_t *n)
{
    struct sinit_tags t;
    sinit_tags_init(&t);
    int err = 0;
    for (size_t i = 0; i < a->nbase_tags && err == 0; i++)
        err = sinit_tags_set_raw(&t, cmn_slice_cstr(a->base_tags[i]));
    if (err == 0)
        err = sinit_tags_build(&t, NULL, a->cloud, a->sidecar, md);
    if (err == 0)
        err = sinit_tags_metric_list(&t, out, n);
    sinit_tags_free(&t);
    return err;
}

static void on_metadata(void *data, const struct sinit_gcp_md *md)
{
    struct sinit_app *a = data;
    char **v = NULL;
    size_t n = 0;
    CMN_LOGD(SINIT_COMP, "metadata: container_id=%s region=%s project_id=%s",
             md->container_id, md->region, md->project_id);
    if (a->p != NULL && metric_tags(a, md, &v, &n) == 0) {
        if (dp_set_tags(a->p, (const char *const *)v, n) != 0)
            CMN_LOGW(SINIT_COMP, "could not apply the metadata tags");
    }
    cmn_strv_free(v, n);
    sinit_md_close(a->md);
    a->md = NULL;
    a->md_pending = false;
    if (a->state == SINIT_ST_WAIT_MD)
        sinit__begin_stop(a);
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

/* The settings: the environment under the "serverless" profile (spec
 * §5.2's defaults and forced values), checked now so that an error is
 * one line before anything runs. */
static int read_config(struct sinit_app *a)
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
    int err = sinit_dp_config("serverless", &a->cfg);
    if (err == 0)
        err = sinit_config_tags(&a->base_tags, &a->nbase_tags);
    return err;
}

/* Cloud detection and the static tags (metadata tags replace them once
 * known). After the spawn: the child's first packet needs neither. */
static int detect_cloud(struct sinit_app *a)
{
    uint64_t t0 = cmn_mono_ns();
    a->cloud = sinit_cloud_detect(NULL);
    if (a->cloud == SINIT_CLOUD_LOCAL)
        CMN_LOGD(SINIT_COMP, "no cloud environment detected: local tags");
    char **v = NULL;
    size_t n = 0;
    int err = metric_tags(a, NULL, &v, &n);
    if (err == 0)
        err = dp_set_tags(a->p, (const char *const *)v, n);
    cmn_strv_free(v, n);
    sinit_checkpoint("detect", "cloud", t0);
    return err;
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
static int listen_all(struct sinit_app *a, bool retry)
{
    struct dp_bind_report rep;
    char diverted[512];
    cmn_log_divert_errors(diverted, sizeof(diverted)); /* said below */
    /* a retry (in a timer callback) is all or nothing: the start-up
     * already said which listener fails */
    int err = dp_bind_on_loop(a->cfg, &a->loop,
                              DP_BIND_RECEIVE_LATE |
                                  (retry ? DP_BIND_ALL_OR_NOTHING : 0),
                              &rep, &a->p);
    cmn_log_divert_errors(NULL, 0);
    if (err != 0) {
        a->p = NULL;
        return retry && err != UV_ENOMEM ? 1 : err;
    }
    for (size_t i = 0; i < rep.nfailed; i++) {
        const struct dp_bind_failure *f = &rep.failed[i];
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
static int finish_pipeline(struct sinit_app *a)
{
    if (a->p == NULL)
        return 0;
    int err = detect_cloud(a);
    if (err == 0)
        err = dp_start_bound(a->p);
    struct dp_info info;
    if (err == 0)
        err = dp_get_info(a->p, &info, sizeof(info));
    if (err != 0) {
        char what[160];
        snprintf(what, sizeof(what), "the metrics pipeline cannot start (%s)",
                 dp_strerror(err));
        fail_open_line(what, a->fail_closed
                                 ? "nothing was started"
                                 : "metrics are off for this run; the "
                                   "command runs anyway");
        sinit__discard_pipeline(a);
        return err;
    }
    a->p_started = true;
    if (info.local_sink)
        CMN_LOGI(SINIT_COMP,
                 "DD_API_KEY is not set: nothing is sent to Datadog; "
                 "the metrics that would have been sent are shown "
                 "locally (stderr, or DRAINPIPE_LOCAL_FILE)");
    CMN_LOGI(SINIT_COMP, "DogStatsD listening on UDP port %d%s", info.udp_port,
             a->sidecar ? " (sidecar mode)" : "");
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
static void arm_retry(struct sinit_app *a)
{
    sinit__discard_pipeline(a); /* closes what did bind, as the loop runs */
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
    struct sinit_app *a = t->data;
    if (a->state != SINIT_ST_RUNNING)
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

/* The child's start-up comes first when the wrapper's own start after the
 * spawn is heavy, that is with an API key: libcurl's load (15-20 ms of CPU
 * here) then begins with the pipeline. On a small VM whatever the wrapper
 * does right after the spawn slows the child's exec and dynamic loading
 * even from the other CPU: a wrapper that wrote 2 MiB right after its
 * spawn delayed its child's main by 1.3 ms. So the rest of the start
 * waits up to SINIT_HEAD_START_MS, or until a signal is pending (the
 * child's exit, a stop): readiness -1.6 to -2.5 ms with an API key
 * (bench/README.md, "The child's head start"). Without one the rest is
 * small, and the wait only moved a trivial job's exit later (readiness
 * -0.3 ms, wall +0.3 ms): none then. The job itself never waits.
 * Datagrams sent meanwhile wait in the receive rings (a socket buffer
 * under DP_RECEIVE_LATE_MIN_RCVBUF: their threads run before the spawn)
 * or in the kernel (a larger one holds 5 000 small datagrams or more). */
#define SINIT_HEAD_START_MS 2

static void head_start(struct sinit_app *a)
{
    struct dp_info info;
    if (dp_get_info(a->p, &info, sizeof(info)) != 0 || !info.api_key)
        return;
    uint64_t t0 = cmn_mono_ns();
    if (sinit_sig_wait(a->sig, SINIT_HEAD_START_MS))
        CMN_LOGD(SINIT_COMP, "head start ended by a signal");
    sinit_checkpoint("head_start", "child", t0);
}

/* The control port acts on the pipeline only while it runs. */
static dp_pipeline *ctl_pipeline(void *data)
{
    struct sinit_app *a = data;
    return a->state == SINIT_ST_RUNNING && a->p_started ? a->p : NULL;
}

/* Everything from the configuration on. Returns an exit code now (nothing
 * to run), or -1: run the loop. */
static int run(struct sinit_app *a, int config_err, const char *config_msg)
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
    err = sinit_sig_open(&a->loop, a->sidecar, sinit__on_signal, a, &a->sig);
    if (err != 0) {
        fprintf(stderr, "serverless-init: signal handling: %s\n",
                uv_strerror(err));
        return SINIT_EXIT_CONFIG; /* nothing spawned yet */
    }
    sinit_checkpoint("install", "signals", t0);
    if (sinit_ctl_open(&a->loop, NULL, ctl_pipeline, a, &a->ctl) != 0)
        CMN_LOGW(SINIT_COMP, "no control port for this run");
    if (a->fail_closed && finish_pipeline(a) != 0)
        return SINIT_EXIT_CONFIG;
    /* The receive threads (started by dp_bind_on_loop) run before the
     * child does: a child that sends its burst the moment it starts would
     * otherwise overflow a small socket buffer (a kernel whose rmem_max is
     * the stock 212992) before the threads exist. They only fill the
     * receive rings; parsing starts with the pipeline, after the spawn. */
    bool spawned = a->sidecar || sinit__spawn_child(a) == 0;
    if (retry)
        arm_retry(a);
    else if (!a->fail_closed) {
        if (spawned && !a->sidecar && a->p != NULL)
            head_start(a);
        (void)finish_pipeline(a); /* fail-open: the child runs anyway */
    }
    if (!spawned)
        sinit__begin_drain(a); /* nothing to wait for */
    return -1;
}

int sinit_main(int argc, char **argv)
{
    struct sinit_app *a;
    int rc;

    (void)cmn_process_start_ns(); /* set by main, else now */
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
        cerr = read_config(a);
        cmn_log_divert_errors(NULL, 0);
    }
    sinit_checkpoint("parse", "config", t0);
    rc = uv_loop_init(&a->loop);
    if (rc != 0) {
        rc = SINIT_EXIT_CONFIG;
        goto out_free;
    }
    rc = run(a, cerr, msg);
    if (rc < 0) {
        uv_run(&a->loop, UV_RUN_DEFAULT);
        rc = a->exit_code;
    }
    uint64_t t1 = cmn_mono_ns();
    sinit__close_handles(a);
    /* stopped by now (a->p NULL), or never started: stopped now, and gone
     * as the loop runs */
    sinit__discard_pipeline(a);
    uv_run(&a->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&a->loop) != 0)
        CMN_LOGD(SINIT_COMP, "loop still has handles at exit");
    sinit_checkpoint("teardown", "loop", t1);
out_free:
    dp_config_free(a->cfg);
    cmn_strv_free(a->base_tags, a->nbase_tags);
    sinit_cli_free(&a->cli);
    cmn_free(a);
    return rc;
}
