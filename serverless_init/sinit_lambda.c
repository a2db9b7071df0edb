/*
 * sinit_lambda.c - the Lambda extension run loop (spec/lambda-cloudrun.md
 * §1-§4, issue 10).
 *
 * Init order, which is the extension's cold-start cost (spec §4.5):
 *   register written -> while the Runtime API answers: configuration,
 *   telemetry listener bound, DogStatsD bound and its receive threads
 *   started -> register's answer read (its identifier, the account) ->
 *   subscribe (blocking round-trip) -> first /next written -> only then
 *   does the loop run, so the forwarder's libcurl load, its DNS lookup and
 *   TLS handshake (queued by fwd_start for the first loop iteration)
 *   overlap the runtime's init instead of delaying it. A failed register
 *   still exits at once (the listeners bound meanwhile are closed).
 *
 * Per invocation (flush strategy "end" and the adaptive default's end
 * phase): INVOKE -> invocations metric -> wait for platform.runtimeDone of
 * that request -> dp_flush_async (queued datagrams, every bucket, wait
 * for delivery or failure, bounded by the invocation's deadline) -> /next.
 *
 * SHUTDOWN: wait <= 300 ms for platform.report of the last invocation,
 * close the telemetry listener, emit shutdowns, then dp_stop_async
 * (DogStatsD read out, final flush, forwarder drain) under what is left
 * of deadlineMs minus a margin; a timer at that bound forces exit 0 after
 * reporting what was not delivered.
 *
 * Fail-open (DESIGN.md "Failure posture"): after a successful register,
 * any failure (no API key, bad configuration, a listener that cannot bind,
 * the subscribe refused) leaves the extension in an idle loop that answers
 * every /next at once and exits 0 at SHUTDOWN. Only a failed register
 * exits at once (non-zero); a /next that fails (the Runtime API is gone)
 * is reported to /extension/init/error (first /next) or /exit/error and
 * ends the process non-zero after a short drain.
 *
 * The pipeline is libdrainpipe's, through its public API only: the
 * profile "lambda" (spec §3's origin, bottlecap's intervals), the
 * two-step start (dp_bind_on_loop, dp_start_bound), dp_set_tags for the
 * account's tags and dp_distribution for the enhanced metrics.
 */
#include "sinit_lambda.h"

#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "drainpipe.h"
#include "sinit.h"

#define COMP "lambda"
#define RAPI_TIMEOUT_MS 5000     /* register / subscribe / error calls */
#define TOMBSTONE_WAIT_MS 300    /* last telemetry at SHUTDOWN (spec §4.3) */
#define SHUTDOWN_MARGIN_MS 200   /* exit this long before deadlineMs */
#define SHUTDOWN_DEFAULT_MS 2000 /* budget when deadlineMs is unusable */
#define SHUTDOWN_MIN_MS 100      /* never less than this to drain */
#define FLUSH_MARGIN_MS 100      /* end flush: stop before the deadline */
#define FLUSH_MAX_MS 30000       /* end flush bound without a deadline */
#define FAIL_DRAIN_MS 1000       /* drain after a failed /next */
#define NEXT_PATH "/2020-01-01/extension/event/next"

#define LX_INIT_CK_MAX 8 /* init checkpoints kept until the first /next */

struct lx_ck {
    const char *phase; /* static */
    uint64_t ns;       /* cmn_mono_ns() at its end */
};

enum lx_state {
    LX_NEXT,         /* /next pending */
    LX_INVOKE,       /* INVOKE received, waiting for runtimeDone */
    LX_FLUSH,        /* blocking flush before /next */
    LX_SHUTDOWN_TEL, /* SHUTDOWN: waiting for the last telemetry */
    LX_DRAIN,        /* dp_stop_async running */
    LX_DONE
};

struct lx {
    uv_loop_t loop;
    struct sinit_rapi rapi;
    char name[256];   /* Lambda-Extension-Name */
    char account[64]; /* from register's body, "" if absent */
    char *reg_body;   /* register's body, parsed after the first /next */
    size_t reg_len;
    bool idle;     /* fail-open: /next only */
    bool enhanced; /* DD_ENHANCED_METRICS */
    int tel_port;  /* DRAINPIPE_TELEMETRY_PORT */
    enum lx_state state;
    uint64_t start_ns, last_ck_ns;
    struct lx_ck ck[LX_INIT_CK_MAX]; /* init phases, logged after /next */
    size_t nck;
    bool ready_logged;
    uint64_t ready_ns;     /* first /next written */
    uint64_t ready_cpu_ns; /* process CPU time then */
    dp_config *cfg;
    dp_pipeline *p; /* NULL once stopped (freed as the loop runs) */
    bool p_started, p_stopping, p_stopped;
    struct sinit_tel *tel;
    struct sinit_le le;
    struct sinit_flush_ctl fc;
    struct sinit_flush_strategy inv_strategy; /* of the current invocation */
    uv_timer_t timer;  /* flush bound / tombstone wait / forced exit */
    uv_timer_t period; /* end,<ms>: flushes during the invocation */
    bool timers_inited;
    char req[64];        /* current requestId */
    char done_early[64]; /* runtimeDone seen before its INVOKE was read */
    int64_t deadline_ms; /* current deadline, unix ms (0 = none) */
    bool flush_running;  /* a flush of ours runs (dp_flush_async) */
    uint64_t flush_sent; /* dp_flush_async calls; their callbacks come */
    uint64_t flush_done; /* in that order: flush_done of them so far */
    uint64_t flush_drop; /* callbacks up to this one are forgotten */
    bool flush_blocking; /* /next waits for it */
    bool flush_again;    /* a blocking flush was asked while one ran */
    uint64_t nnext;      /* /next requests sent */
    struct cmn_deadline budget_end; /* SHUTDOWN: end of the budget */
    int exit_code;
};

/* ------------------------------------------------------------------------
 * Checkpoints (spec §4.5 #1271): phase cost and cumulative ms, debug.
 */
static void log_checkpoint(const struct lx *x, const char *phase, uint64_t prev,
                           uint64_t now)
{
    CMN_LOGD(COMP, "checkpoint %s: took %.3f ms, cumulative %.3f ms", phase,
             (double)(now - prev) / 1e6, (double)(now - x->start_ns) / 1e6);
}

/* Before the first /next the checkpoints are only recorded (a log write
 * would be part of the cost being measured) and logged once it is sent. */
static void checkpoint(struct lx *x, const char *phase)
{
    uint64_t now = cmn_mono_ns();
    if (x->ready_logged)
        log_checkpoint(x, phase, x->last_ck_ns, now);
    else if (x->nck < LX_INIT_CK_MAX)
        x->ck[x->nck++] = (struct lx_ck){phase, now};
    x->last_ck_ns = now;
}

static void log_ready(struct lx *x)
{
    if (!cmn_log_enabled(CMN_LOG_DEBUG)) {
        x->ready_logged = true;
        return;
    }
    struct rusage ru; /* before any log line: the first printf faults */
    getrusage(RUSAGE_SELF, &ru);
    uint64_t prev = x->start_ns;
    for (size_t i = 0; i < x->nck; i++) {
        log_checkpoint(x, x->ck[i].phase, prev, x->ck[i].ns);
        prev = x->ck[i].ns;
    }
    x->ready_logged = true;
    /* CPU time includes the dynamic loader's work before main and does
     * not count waits: the figure to compare on a loaded machine */
    CMN_LOGD(COMP,
             "extension ready in %.3f ms%s (CPU since exec: %.3f ms, %ld page "
             "faults)",
             (double)(x->ready_ns - x->start_ns) / 1e6,
             x->idle ? " (idle)" : "", (double)x->ready_cpu_ns / 1e6,
             ru.ru_minflt + ru.ru_majflt);
}

static uint64_t mono_ms(void)
{
    return cmn_mono_ns() / 1000000u;
}

static int64_t wall_ms(void)
{
    return (int64_t)(cmn_wall_ns() / 1000000u);
}

/* deadlineMs is a unix-ms instant (newer docs) but was once documented
 * as "ms remaining": a value below 1e12 (2001) is read as relative. */
static int64_t ms_until(int64_t deadline_ms)
{
    if (deadline_ms <= 0)
        return -1;
    if (deadline_ms < 1000000000000LL)
        return deadline_ms;
    return deadline_ms - wall_ms();
}

/* ------------------------------------------------------------------------
 * Runtime API calls
 */
static void report_error(struct lx *x, bool init, const char *type,
                         const char *msg)
{
    char hdr[128], body[512];
    snprintf(hdr, sizeof(hdr), "Lambda-Extension-Function-Error-Type: %s\r\n",
             type);
    snprintf(body, sizeof(body),
             "{\"errorMessage\":\"%s\",\"errorType\":\"%s\"}", msg, type);
    struct sinit_http_resp r;
    int err = sinit_rapi_call(&x->rapi, "POST",
                              init ? "/2020-01-01/extension/init/error"
                                   : "/2020-01-01/extension/exit/error",
                              hdr, body, RAPI_TIMEOUT_MS, false, &r);
    CMN_LOGD(COMP, "%s error reported: %s, HTTP %d", init ? "init" : "exit",
             err ? cmn_strerror(err) : "sent", r.status);
    sinit_http_resp_free(&r);
}

static void register_failed(const struct lx *x, int err)
{
    fprintf(stderr,
            "drainpipe extension: register with the Lambda Runtime API at %s "
            "failed: %s\n",
            x->rapi.host, cmn_strerror(err));
}

/* Writes the register request; returns the socket its answer comes on,
 * or a negative error (said on stderr). */
static int register_send(struct lx *x)
{
    char hdr[400] = "";
    size_t n = 0; /* appends: no printf before the first /next */
    cmn_fcat(hdr, sizeof(hdr), &n, "Lambda-Extension-Name: ");
    cmn_fcat(hdr, sizeof(hdr), &n, x->name); /* a basename: fits */
    cmn_fcat(hdr, sizeof(hdr), &n,
             "\r\nLambda-Extension-Accept-Feature: accountId\r\n"
             "Content-Type: application/json\r\n");
    int fd = sinit_rapi_send(&x->rapi, "POST", "/2020-01-01/extension/register",
                             hdr, "{\"events\":[\"INVOKE\",\"SHUTDOWN\"]}",
                             RAPI_TIMEOUT_MS, true);
    if (fd < 0)
        register_failed(x, fd);
    return fd;
}

/* Reads register's answer on fd (closed): the extension's identifier and
 * the account. 0, or an error said on stderr. */
static int register_finish(struct lx *x, int fd)
{
    struct sinit_http_resp r;
    int err = sinit_rapi_recv(&x->rapi, fd, true, &r);
    if (err != 0) {
        register_failed(x, err);
        goto out;
    }
    if (r.status != 200 || r.id[0] == '\0') {
        fprintf(stderr,
                "drainpipe extension: register refused by the Lambda Runtime "
                "API at %s: HTTP %d%s: %.300s\n",
                x->rapi.host, r.status,
                r.id[0] ? "" : " (no Lambda-Extension-Identifier)", r.body);
        err = UV_EPROTO;
        goto out;
    }
    memcpy(x->rapi.id, r.id, sizeof(x->rapi.id));
    /* kept for register_account, after the first /next: jansson's first
     * use (cold code, and /dev/urandom read for its hash seed) is not on
     * the way to it */
    x->reg_body = cmn_memdup(r.body, r.len);
    x->reg_len = x->reg_body != NULL ? r.len : 0;
out:
    sinit_http_resp_free(&r);
    return err;
}

static int do_subscribe(struct lx *x)
{
    char body[512] = "";
    size_t n = 0; /* appends: no printf before the first /next */
    cmn_fcat(body, sizeof(body), &n,
             "{\"schemaVersion\":\"2022-12-13\",\"types\":[\"platform\"],"
             "\"buffering\":{\"maxItems\":1000,\"maxBytes\":262144,"
             "\"timeoutMs\":25},\"destination\":{\"protocol\":\"HTTP\","
             "\"URI\":\"http://sandbox.localdomain:");
    cmn_fcat_u64(body, sizeof(body), &n, (uint64_t)sinit_tel_port(x->tel));
    cmn_fcat(body, sizeof(body), &n, "/\"}}");
    struct sinit_http_resp r;
    int err = sinit_rapi_call(&x->rapi, "PUT", "/2022-07-01/telemetry",
                              "Content-Type: application/json\r\n", body,
                              RAPI_TIMEOUT_MS, true, &r);
    if (err == 0 && r.status != 200) {
        CMN_LOGE(COMP, "telemetry subscribe refused: HTTP %d: %.200s", r.status,
                 r.body);
        err = UV_EPROTO;
    } else if (err != 0) {
        CMN_LOGE(COMP, "telemetry subscribe failed: %s", cmn_strerror(err));
    }
    sinit_http_resp_free(&r);
    return err;
}

static void on_next(void *data, int err, const struct sinit_http_resp *resp);

static void send_next(struct lx *x)
{
    x->state = LX_NEXT;
    x->nnext++;
    int err = sinit_rapi_next(&x->loop, &x->rapi, on_next, x);
    if (err != 0)
        on_next(x, err, NULL);
}

/* ------------------------------------------------------------------------
 * End of the run
 */
static void close_all(struct lx *x)
{
    x->state = LX_DONE;
    if (x->timers_inited) {
        if (!uv_is_closing((uv_handle_t *)&x->timer))
            uv_close((uv_handle_t *)&x->timer, NULL);
        if (!uv_is_closing((uv_handle_t *)&x->period))
            uv_close((uv_handle_t *)&x->period, NULL);
    }
    sinit_tel_close(x->tel);
    x->tel = NULL;
}

/* One stderr line when the forced exit leaves payloads behind. */
static void report_forced(struct lx *x)
{
    struct dp_stats st;
    if (dp_stats(x->p, &st, sizeof(st)) != 0)
        return;
    fprintf(stderr,
            "drainpipe extension: SHUTDOWN deadline reached: exiting with "
            "%llu payload transaction(s) not delivered (queued %llu, in "
            "flight %llu); delivered %llu\n",
            (unsigned long long)st.queued,
            (unsigned long long)(st.queued - st.inflight),
            (unsigned long long)st.inflight, (unsigned long long)st.delivered);
    fflush(stderr);
}

static void on_force_exit(uv_timer_t *t)
{
    struct lx *x = t->data;
    if (x->p != NULL && x->p_started)
        report_forced(x);
    _exit(x->exit_code);
}

static void on_pipeline_stopped(int status, const struct dp_stats *final,
                                void *arg)
{
    struct lx *x = arg;
    (void) final; /* the library has written what was not delivered */
    if (status != 0)
        CMN_LOGW(COMP, "drain ended with an abandoned component");
    x->p = NULL; /* freed as the loop closes its last handles */
    x->p_stopping = false;
    x->p_stopped = true;
    if (x->state == LX_DRAIN) {
        checkpoint(x, "shutdown_drained");
        close_all(x);
    }
}

/* Stops the pipeline within ms (the Runtime API's bounds are ms). */
static void stop_pipeline(struct lx *x, uint64_t ms)
{
    x->p_stopping = true;
    uint32_t b = ms == 0 ? 1 : ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ms;
    int err = dp_stop_async(x->p, b, on_pipeline_stopped, x);
    if (err != 0) /* only one stop is ever begun */
        CMN_LOGE(COMP, "stop: %s", dp_strerror(err));
}

/* The running flush's callback is not waited for any more (the flush
 * itself goes on). */
static void forget_flush(struct lx *x)
{
    if (x->flush_running)
        x->flush_drop = x->flush_sent;
    x->flush_running = false;
}

static uint64_t budget_left_ms(const struct lx *x)
{
    uint64_t left = cmn_deadline_remaining_ms(x->budget_end);
    return left < SHUTDOWN_MIN_MS / 2 ? SHUTDOWN_MIN_MS / 2 : left;
}

static void drain(struct lx *x)
{
    uv_timer_stop(&x->timer);
    sinit_tel_close(x->tel);
    x->tel = NULL;
    checkpoint(x, "telemetry_closed");
    if (x->p_stopping) {
        x->state = LX_DRAIN; /* a fail-open stop: on_pipeline_stopped */
        return;
    }
    if (x->p == NULL || !x->p_started || x->p_stopped) {
        close_all(x);
        return;
    }
    if (!x->idle)
        sinit_le_shutdown(&x->le);
    x->state = LX_DRAIN;
    x->p_stopping = true;
    /* the forced exit is armed on the same bound; the pipeline's own
     * deadline ends earlier by the forwarder's close margin */
    uint64_t left = budget_left_ms(x);
    uv_timer_start(&x->timer, on_force_exit, left, 0);
    cmn_alloc_exiting(); /* the process ends with this drain (common.h) */
    stop_pipeline(x, left);
}

static void on_tombstone_timeout(uv_timer_t *t)
{
    struct lx *x = t->data;
    if (!sinit_le_last_reported(&x->le))
        CMN_LOGD(COMP,
                 "no platform.report for the last invocation within "
                 "%d ms: shutting down without it",
                 TOMBSTONE_WAIT_MS);
    drain(x);
}

static void begin_shutdown(struct lx *x, const char *reason, int64_t deadline)
{
    int64_t left = ms_until(deadline);
    if (left < 0)
        left = SHUTDOWN_DEFAULT_MS;
    left -= SHUTDOWN_MARGIN_MS;
    if (left < SHUTDOWN_MIN_MS)
        left = SHUTDOWN_MIN_MS;
    x->budget_end = cmn_deadline_in_ms((uint64_t)left);
    CMN_LOGD(COMP, "SHUTDOWN (%s): %lld ms to drain", reason, (long long)left);
    checkpoint(x, "shutdown_received");
    uv_timer_stop(&x->period);
    forget_flush(x);
    if (x->idle || sinit_le_last_reported(&x->le)) {
        drain(x);
        return;
    }
    x->state = LX_SHUTDOWN_TEL;
    uint64_t wait = TOMBSTONE_WAIT_MS;
    if (wait > (uint64_t)left / 2)
        wait = (uint64_t)left / 2;
    uv_timer_start(&x->timer, on_tombstone_timeout, wait, 0);
}

/* ------------------------------------------------------------------------
 * Flushes
 */
static void start_flush(struct lx *x, bool blocking);

static void after_blocking_flush(struct lx *x)
{
    uv_timer_stop(&x->timer);
    x->flush_blocking = false;
    if (x->state == LX_FLUSH)
        send_next(x);
}

static void on_flushed(dp_pipeline *p, int status, void *data)
{
    struct lx *x = data;
    (void)p;
    (void)status; /* DP_ESTOPPED: the stop's drain delivers it */
    if (++x->flush_done <= x->flush_drop)
        return; /* given up on (its deadline passed, or SHUTDOWN) */
    x->flush_running = false;
    if (x->flush_again) {
        x->flush_again = false;
        start_flush(x, true);
        return;
    }
    if (x->flush_blocking)
        after_blocking_flush(x);
}

static void on_flush_timeout(uv_timer_t *t)
{
    struct lx *x = t->data;
    CMN_LOGW(COMP, "flush not finished before the invocation's deadline: "
                   "calling /next (what is queued stays for the next flush)");
    forget_flush(x);
    x->flush_again = false;
    after_blocking_flush(x);
}

/* Blocking: /next waits for it (state LX_FLUSH), bounded by the
 * invocation's deadline. Non-blocking: skipped while one runs. */
static void start_flush(struct lx *x, bool blocking)
{
    if (blocking) {
        x->state = LX_FLUSH;
        if (!x->flush_blocking) {
            x->flush_blocking = true;
            int64_t left = ms_until(x->deadline_ms);
            uint64_t bound = FLUSH_MAX_MS;
            if (left >= 0)
                bound = left > 2 * FLUSH_MARGIN_MS
                            ? (uint64_t)(left - FLUSH_MARGIN_MS)
                            : FLUSH_MARGIN_MS;
            uv_timer_start(&x->timer, on_flush_timeout, bound, 0);
        }
        if (x->flush_running) {
            x->flush_again = true; /* after the running one */
            return;
        }
    } else if (x->flush_running) {
        return;
    }
    sinit_flush_did(&x->fc, mono_ms());
    int err = x->p != NULL ? dp_flush_async(x->p, on_flushed, x) : DP_EINVAL;
    if (err != 0) {
        CMN_LOGW(COMP, "flush failed: %s", dp_strerror(err));
        if (blocking)
            after_blocking_flush(x);
        return;
    }
    x->flush_sent++;
    x->flush_running = true;
}

static void on_period(uv_timer_t *t)
{
    start_flush(t->data, false);
}

/* ------------------------------------------------------------------------
 * Events
 */
static void on_invoke(struct lx *x, const json_t *ev)
{
    const char *id = json_string_value(json_object_get(ev, "requestId"));
    snprintf(x->req, sizeof(x->req), "%s", id ? id : "");
    x->deadline_ms =
        (int64_t)json_number_value(json_object_get(ev, "deadlineMs"));
    if (x->idle) {
        send_next(x);
        return;
    }
    uint64_t now = mono_ms();
    sinit_le_invoke(&x->le, x->req, now);
    enum sinit_flush_action a = sinit_flush_on_invoke(&x->fc, now);
    x->inv_strategy = sinit_flush_effective(&x->fc, now);
    switch (a) {
    case SINIT_FLUSH_AT_END:
        x->state = LX_INVOKE;
        if (x->req[0] != '\0' && strcmp(x->done_early, x->req) == 0) {
            /* the telemetry connection was read before /next's answer */
            start_flush(x, true);
            break;
        }
        if (x->inv_strategy.kind == SINIT_FLUSH_END_PERIODIC)
            uv_timer_start(&x->period, on_period, x->inv_strategy.interval_ms,
                           x->inv_strategy.interval_ms);
        break;
    case SINIT_FLUSH_NOW_BLOCKING:
        start_flush(x, true);
        break;
    case SINIT_FLUSH_NOW_ASYNC:
        start_flush(x, false);
        send_next(x);
        break;
    default:
        send_next(x);
        break;
    }
}

static void on_next(void *data, int err, const struct sinit_http_resp *resp)
{
    struct lx *x = data;
    if (x->nnext == 1)
        checkpoint(x, "first_next_answered");
    json_t *ev = NULL;
    if (err == 0 && resp->status == 200)
        ev = json_loadb(resp->body, resp->len, 0, NULL);
    const char *type = json_string_value(json_object_get(ev, "eventType"));
    if (type == NULL) {
        char msg[160];
        snprintf(msg, sizeof(msg), "/next failed: %s (HTTP %d)",
                 err ? cmn_strerror(err) : "no eventType",
                 resp ? resp->status : 0);
        fprintf(stderr, "drainpipe extension: %s; exiting\n", msg);
        report_error(x, x->nnext == 1, "Extension.UnknownReason", msg);
        x->exit_code = 1;
        json_decref(ev);
        begin_shutdown(x, "next failed", FAIL_DRAIN_MS + SHUTDOWN_MARGIN_MS);
        return;
    }
    if (strcmp(type, "INVOKE") == 0) {
        on_invoke(x, ev);
    } else if (strcmp(type, "SHUTDOWN") == 0) {
        const char *why =
            json_string_value(json_object_get(ev, "shutdownReason"));
        begin_shutdown(
            x, why ? why : "?",
            (int64_t)json_number_value(json_object_get(ev, "deadlineMs")));
    } else {
        CMN_LOGW(COMP, "unknown event type %s: ignored", type);
        send_next(x);
    }
    json_decref(ev);
}

static void on_telemetry(void *data, const char *type, const json_t *record)
{
    struct lx *x = data;
    if (x->idle)
        return;
    sinit_le_event(&x->le, type, record);
    if (x->state == LX_SHUTDOWN_TEL && sinit_le_last_reported(&x->le)) {
        /* on the next iteration: this batch's answer is written first */
        uv_timer_start(&x->timer, on_tombstone_timeout, 0, 0);
        return;
    }
    if (strcmp(type, "platform.runtimeDone") != 0)
        return;
    const char *id = json_string_value(json_object_get(record, "requestId"));
    if (x->state != LX_INVOKE || (id != NULL && strcmp(id, x->req) != 0)) {
        /* an older invocation's, or one whose INVOKE is still unread */
        snprintf(x->done_early, sizeof(x->done_early), "%s", id ? id : "");
        return;
    }
    uv_timer_stop(&x->period);
    start_flush(x, true);
}

/* ------------------------------------------------------------------------
 * Configuration and start
 */
bool sinit_lambda_detect(int argc, char *const *argv)
{
    (void)argv;
    const char *api = getenv("AWS_LAMBDA_RUNTIME_API");
    return argc <= 1 && api != NULL && api[0] != '\0';
}

static int read_config(struct lx *x)
{
    x->enhanced = true;
    if (cmn_env_bool(NULL, "DD_ENHANCED_METRICS", &x->enhanced) != 0)
        return UV_EINVAL;
    int64_t port = SINIT_TELEMETRY_PORT_DEFAULT;
    if (cmn_env_i64(NULL, "DRAINPIPE_TELEMETRY_PORT", 0, 65535, &port) != 0)
        return UV_EINVAL;
    x->tel_port = (int)port;
    struct sinit_flush_strategy fs;
    const char *v = cmn_env_get(NULL, "DD_SERVERLESS_FLUSH_STRATEGY");
    if (sinit_flush_parse(v, &fs) != 0) {
        CMN_LOGE(COMP,
                 "DD_SERVERLESS_FLUSH_STRATEGY: expected end, end,<ms>, "
                 "periodically,<ms> or continuously,<ms>, got \"%s\"",
                 v);
        return UV_EINVAL;
    }
    sinit_flush_init(&x->fc, &fs);

    /* the "lambda" profile: spec §3's origin, bottlecap's intervals, the
     * full DogStatsD (events and service checks kept) */
    return sinit_dp_config("lambda", &x->cfg);
}

/* The account from register's body (kept by register_finish). */
static void register_account(struct lx *x)
{
    json_t *j =
        x->reg_body ? json_loadb(x->reg_body, x->reg_len, 0, NULL) : NULL;
    const char *acc = json_string_value(json_object_get(j, "accountId"));
    size_t n = 0;
    x->account[0] = '\0';
    cmn_fcat(x->account, sizeof(x->account), &n, acc ? acc : "");
    json_decref(j);
    cmn_free(x->reg_body);
    x->reg_body = NULL;
}

/* The Lambda tags over the configuration's, with the account register
 * answered; after the first /next, before dp_start_bound. */
static int lambda_tags(struct lx *x)
{
    register_account(x);
    char **base = NULL, **tags = NULL;
    size_t nbase = 0, n = 0;
    int err = sinit_config_tags(&base, &nbase);
    if (err == 0)
        err = sinit_lambda_tags(NULL, x->account, base, nbase, &tags, &n);
    if (err == 0)
        err = dp_set_tags(x->p, (const char *const *)tags, n);
    cmn_strv_free(base, nbase);
    cmn_strv_free(tags, n);
    return err;
}

#define LX_EMIT_TAGS_MAX 8

/* One enhanced metric: a distribution at now, its tags split out of the
 * comma-separated list the telemetry code builds. */
static void emit_enhanced(void *data, const char *name, double v,
                          const char *tags)
{
    struct lx *x = data;
    char buf[512];
    const char *tv[LX_EMIT_TAGS_MAX];
    size_t n = 0;
    int err = 0;
    if (tags != NULL && tags[0] != '\0') {
        if (strlen(tags) >= sizeof(buf))
            err = DP_EINVAL;
        else
            memcpy(buf, tags, strlen(tags) + 1);
        for (char *t = buf, *end; err == 0 && t != NULL; t = end) {
            end = strchr(t, ',');
            if (end != NULL)
                *end++ = '\0';
            if (t[0] == '\0')
                continue;
            if (n == LX_EMIT_TAGS_MAX)
                err = DP_EINVAL;
            else
                tv[n++] = t;
        }
    }
    if (err == 0)
        err = x->p != NULL ? dp_distribution(x->p, name, v, tv, n, 1)
                           : DP_ESTOPPED;
    if (err != 0)
        CMN_LOGW(COMP, "enhanced metric %s dropped: %s", name,
                 dp_strerror(err));
}

static void go_idle(struct lx *x, const char *why)
{
    fprintf(stderr,
            "drainpipe extension: %s; running idle (the function is not "
            "affected, no metrics are sent)\n",
            why);
    x->idle = true;
    if (x->p != NULL && x->p_started && !x->p_stopping)
        stop_pipeline(x, FAIL_DRAIN_MS);
}

/* While register's answer is on its way (the Runtime API on the other
 * side of a loopback round-trip): the configuration, then the listeners
 * bound and the DogStatsD receive threads reading into their rings.
 * Nothing else: the aggregator and the sink are built by finish_active,
 * after the first /next is written. A failure is only recorded (why):
 * going idle needs the identifier register gives. */
static void prepare_active(struct lx *x, const char **why)
{
    int err = read_config(x);
    checkpoint(x, "config_parsed");
    if (err != 0) {
        *why = "invalid configuration";
        return;
    }
    sinit_le_init(&x->le, x->enhanced, cmn_process_start_ns() / 1000000u,
                  emit_enhanced, x);
    /* the listener first: Lambda may post right after the subscribe */
    err = sinit_tel_start(&x->loop, x->tel_port, on_telemetry, x, &x->tel);
    if (err != 0) {
        *why = "the telemetry listener cannot bind";
        return;
    }
    checkpoint(x, "telemetry_listening");
    /* all or nothing: a listener that cannot bind is a failed start, as
     * before; nothing is left open then */
    err = dp_bind_on_loop(x->cfg, &x->loop,
                          DP_BIND_ALL_OR_NOTHING | DP_BIND_RECEIVE_LATE, NULL,
                          &x->p);
    if (err != 0) {
        x->p = NULL;
        *why = "the DogStatsD listener cannot bind";
        return;
    }
    checkpoint(x, "dogstatsd_listening");
    /* No API key: idle, unless the local sink was asked for (a test of
     * the extension's output without an intake). */
    struct dp_info info;
    const char *sink = getenv("DRAINPIPE_SINK");
    if (dp_get_info(x->p, &info, sizeof(info)) != 0 ||
        (!info.api_key && (sink == NULL || strcmp(sink, "local") != 0)))
        *why = "DD_API_KEY is not set";
}

/* A pipeline that will not run: closed as the loop runs. */
static void discard(struct lx *x)
{
    if (x->p != NULL && !x->p_stopping)
        stop_pipeline(x, FAIL_DRAIN_MS);
}

/* After register answered: the account's tags, then the subscription; a
 * failure (or one prepare_active recorded) goes idle. Returns true when
 * finish_active is to run. */
static bool start_active(struct lx *x, const char *why)
{
    if (why == NULL && do_subscribe(x) != 0)
        why = "the telemetry subscription failed";
    if (why != NULL) {
        go_idle(x, why);
        discard(x);              /* closes the listeners as the loop runs */
        sinit_tel_close(x->tel); /* nothing subscribed to it */
        x->tel = NULL;
        return false;
    }
    checkpoint(x, "telemetry_subscribed");
    return true;
}

/* Right after the first /next is written (the runtime's init goes on
 * meanwhile): the sink and the aggregator with its tables, then the
 * pipeline starts and parses what the receive threads already hold. The
 * loop has not run since start_active, so no telemetry or /next answer is
 * handled before the aggregator exists. */
static void finish_active(struct lx *x)
{
    /* libcurl (and with it DNS and TLS) only once the loop runs: its
     * dlopen would compete with the runtime's init for the CPU and the
     * dynamic loader's lock */
    int err = lambda_tags(x);
    if (err != 0) {
        go_idle(x, "invalid configuration (tags)");
        discard(x);
        return;
    }
    err = dp_start_bound(x->p);
    if (err != 0) {
        go_idle(x, "the DogStatsD pipeline cannot start");
        discard(x); /* the rollback's end: on_pipeline_stopped */
        return;
    }
    x->p_started = true;
    checkpoint(x, "pipeline_started");
}

static void basename_of(const char *argv0, char *out, size_t cap)
{
    const char *b = argv0 ? strrchr(argv0, '/') : NULL;
    size_t n = 0;
    out[0] = '\0';
    cmn_fcat(out, cap, &n, b ? b + 1 : (argv0 ? argv0 : "drainpipe"));
}

int sinit_lambda_main(int argc, char **argv)
{
    (void)argc;
    struct lx *x = cmn_calloc(1, sizeof(*x));
    if (x == NULL)
        return 1;
    /* the start is main's first line (main.c) */
    x->start_ns = x->last_ck_ns = cmn_process_start_ns();
    cmn_log_set_logger("DD_EXTENSION");
    enum cmn_log_level lvl;
    const char *ll = getenv("DD_LOG_LEVEL");
    if (ll != NULL && cmn_log_level_parse(ll, &lvl) == 0)
        cmn_log_set_level(lvl);
    /* our own writes report EPIPE instead of killing us (no handler: the
     * mask is inherited by the threads libuv and libcurl start later) */
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe, NULL);
    basename_of(argv[0], x->name, sizeof(x->name));
    int rc = 1;
    if (sinit_rapi_init(&x->rapi, getenv("AWS_LAMBDA_RUNTIME_API")) != 0) {
        fprintf(stderr,
                "drainpipe extension: AWS_LAMBDA_RUNTIME_API=\"%s\" is not "
                "a numeric host:port\n",
                getenv("AWS_LAMBDA_RUNTIME_API"));
        goto out_free;
    }
    int rfd = register_send(x);
    if (rfd < 0)
        goto out_free; /* spec §1.2: exit promptly */
    checkpoint(x, "register_sent");
    if (uv_loop_init(&x->loop) != 0) {
        close(rfd);
        goto out_free;
    }
    uv_timer_init(&x->loop, &x->timer);
    uv_timer_init(&x->loop, &x->period);
    x->timer.data = x->period.data = x;
    x->timers_inited = true;
    const char *why = NULL;
    prepare_active(x, &why);
    if (register_finish(x, rfd) != 0) {
        x->exit_code = 1; /* spec §1.2: exit promptly */
        goto out_close;
    }
    checkpoint(x, "register_ready");
    bool finish = start_active(x, why);
    send_next(x);
    x->ready_ns = cmn_mono_ns();
    struct timespec cpu;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &cpu);
    x->ready_cpu_ns =
        (uint64_t)cpu.tv_sec * 1000000000u + (uint64_t)cpu.tv_nsec;
    log_ready(x);
    if (finish)
        finish_active(x);
    uv_run(&x->loop, UV_RUN_DEFAULT);
out_close:
    rc = x->exit_code;
    close_all(x);
    discard(x); /* stopped by now, or never run */
    uv_run(&x->loop, UV_RUN_DEFAULT);
    if (uv_loop_close(&x->loop) != 0)
        CMN_LOGD(COMP, "loop still has handles at exit");
out_free:
    sinit_rapi_close(&x->rapi); /* a kept connection never used */
    dp_config_free(x->cfg);
    cmn_free(x->reg_body);
    cmn_free(x);
    return rc;
}
