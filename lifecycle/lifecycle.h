/*
 * lifecycle.h - the component registry (ordered start, reverse drain-stop,
 * checkpoints) and the pipeline embedding API (forwarder or local sink ->
 * aggregator -> dogstatsd; the local sink, used when no API key is set, is
 * its own component in localsink/).
 *
 * See DESIGN.md "Lifecycle: the heart of the design" and spec/pipeline.md
 * §4, §5.2, §5.6.
 *
 * Threading: every function here runs on the loop thread of the loop given
 * at creation, except the config functions, which any thread may call.
 */
#ifndef DP_LIFECYCLE_H
#define DP_LIFECYCLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "aggregator.h"
#include "common.h"
#include "dogstatsd.h"
#include "forwarder.h"
#include "localsink.h"

/* ========================================================================
 * 1. Registry
 * ======================================================================== */

#define LC_NAME_MAX 32       /* component name, including the NUL */
#define LC_DEPS_MAX 16       /* dependencies per component */
#define LC_COMPONENTS_MAX 64 /* components per manager */
/* recorded checkpoints; later ones are only logged */
#define LC_CHECKPOINTS_MAX 256
#define LC_NO_TIMEOUT UINT64_MAX /* as a timeout or deadline: unbounded */
#define LC_LATE_GRACE_MS 2 /* per component once the deadline has passed */

/* A component reports "stopped" by calling this once, with the arg it was
 * given, on the loop thread. It may call it from inside its stop op. */
typedef void (*lc_stopped_fn)(void *arg);

/* The operations of one component. The table is borrowed and must outlive
 * the manager (normally a static const). */
struct lc_ops {
    /* Synchronous; 0 or a negative error. Called once, after every
     * dependency started. A component whose start fails is never stopped,
     * only destroyed. */
    int (*start)(void *self);
    /* Asynchronous: begins draining and closing, then calls done(arg)
     * exactly once, on a later loop iteration (every component of this
     * project does; the registry also copes with a call from inside). dl
     * is its deadline: the earlier of its own timeout and the overall one
     * (CMN_NO_DEADLINE when unbounded); what it bounds is the component's
     * to say, and past it the registry abandons the component. May be
     * NULL: stopped at once. Called only after a successful start. */
    void (*stop)(void *self, struct cmn_deadline dl, lc_stopped_fn done,
                 void *arg);
    /* Frees the component. Called after it reported stopped, or if it was
     * never started (or its start failed). May be NULL. */
    void (*destroy)(void *self);
};

struct lc_manager;

/* Creates an empty manager on loop (borrowed; must outlive it). Allocates
 * but opens no handle. Returns 0 or UV_ENOMEM. */
int lc_create(uv_loop_t *loop, struct lc_manager **out) CMN_MUST_CHECK;

/* Registers a component. name is copied (at most LC_NAME_MAX-1 bytes);
 * deps is a NULL-terminated list of names (copied; NULL = none); ops is
 * borrowed; self is handed to the ops. stop_timeout_ms bounds its stop
 * (LC_NO_TIMEOUT or 0 = bounded only by the overall deadline).
 *
 * Validation: duplicate names give UV_EEXIST; a dependency on itself, or
 * one that closes a cycle through components already registered, gives
 * UV_ELOOP (cycles are therefore rejected at register time). A dependency
 * on a name not registered yet is allowed here and checked by lc_start_all
 * (UV_ENOENT), so components may be registered in any order. Too long a
 * name or too many deps/components: UV_EINVAL. Must be called before
 * lc_start_all. On error nothing is registered and the reason is logged.
 * On success the manager owns the registration: lc_destroy calls
 * ops->destroy(self). */
int lc_register(struct lc_manager *m, const char *name, const char *const *deps,
                const struct lc_ops *ops, void *self,
                uint64_t stop_timeout_ms) CMN_MUST_CHECK;

/* Starts every component in dependency order (ties broken by registration
 * order). Checks first that every dependency exists (UV_ENOENT, nothing
 * started). If a start fails, logs "component <name> failed to start:
 * <reason>", begins stopping the ones already started in reverse (each
 * bounded by its own timeout), and returns that error: the rollback runs as
 * the loop runs; lc_stop_all's callback (or lc_destroy, which then waits)
 * covers it. Called at most once. */
int lc_start_all(struct lc_manager *m) CMN_MUST_CHECK;

/* clean = false: some component did not report stopped in time (it was
 * abandoned and logged), or the start had failed. */
typedef void (*lc_done_cb)(void *arg, bool clean);

/* Stops every started component in exact reverse start order, each only
 * after the previous one reported stopped. Each step is bounded by the
 * component's own timeout and by the overall deadline dl
 * (CMN_NO_DEADLINE = none). A component that does not report in time is
 * abandoned (logged) and the next one is stopped anyway; once the deadline
 * has passed the remaining components are still asked to stop, but each is
 * abandoned unless it reports within LC_LATE_GRACE_MS (enough for its
 * uv_close callbacks to run). cb is always called exactly once, on a
 * later loop iteration, never from inside this call. Calling it again, or
 * during a rollback, only updates cb (the earlier one is not called) and
 * tightens the deadline. */
void lc_stop_all(struct lc_manager *m, struct cmn_deadline dl, lc_done_cb cb,
                 void *arg);

/* Destroys components in reverse dependency order (reverse registration
 * order when the dependencies do not resolve), then the manager.
 * If a stop sequence is still running (e.g. a rollback), or a component
 * abandoned during stop has not reported yet, the whole destruction is
 * deferred: it runs on a later loop iteration once the sequence ended and
 * every abandoned component reported, so nothing is freed under live
 * handles or under a component that may still call its dependencies
 * (STYLE rules 5, 6). Keep running the loop after this call; the stop
 * callback is not called any more. A component that never reports is
 * leaked (logged), never freed. NULL is a no-op. */
void lc_destroy(struct lc_manager *m);

/* One start or stop step. phase is a static string: "start",
 * "start-failed", "stop", "abandon" (stop timed out), "late-stop" (reported
 * after being abandoned). */
struct lc_checkpoint {
    const char *phase;      /* static */
    char name[LC_NAME_MAX]; /* component */
    uint64_t took_us;       /* the step's own cost, microseconds */
    uint64_t cumulative_us; /* end of the step since cmn_process_start_ns */
};

/* The checkpoints recorded so far, in order (also logged at debug level as
 * "checkpoint <phase> <name>: took X.XXX ms, cumulative Y.YYY ms").
 * *out is valid until the next registry call. Returns the count. */
size_t lc_checkpoints(const struct lc_manager *m,
                      const struct lc_checkpoint **out);

/* Logs a checkpoint of a step outside the registry (the wrapper's own
 * phases: config, signals, spawn, ...) in the same format, at debug level:
 * took = now - begin_ns (monotonic). phase and name are any strings; the
 * line is "checkpoint <phase> <name>: took X.XXX ms, cumulative Y.YYY ms".
 * Not recorded in any manager. Any thread. */
void lc_checkpoint_log(const char *phase, const char *name, uint64_t begin_ns);

/* True while the named component is started and not yet stopped (for
 * tests and diagnostics). */
bool lc_is_running(const struct lc_manager *m, const char *name);

/* ========================================================================
 * 2. Pipeline: the embedding API
 * ======================================================================== */

enum lc_sink_mode {
    LC_SINK_AUTO,      /* forwarder if an API key is set, else local */
    LC_SINK_FORWARDER, /* forwarder; UV_EINVAL at create with no API key */
    LC_SINK_LOCAL      /* local sink even when a key is set */
};

struct lc_pipeline_config {
    struct fwd_config fwd;
    struct agg_config agg;
    struct dsd_config dsd;
    enum lc_sink_mode sink;              /* AUTO */
    char *local_file;                    /* owned or NULL: JSON lines file for
                                            the local sink
                                            (DRAINPIPE_LOCAL_FILE); NULL =
                                            summary table on stderr */
    uint64_t aggregator_stop_timeout_ms; /* aggregator_stop_timeout 2 s
                                            (DD_AGGREGATOR_STOP_TIMEOUT, s) */
    uint64_t dogstatsd_stop_timeout_ms;  /* the server's own stop timeout:
                                            0 (default) = the overall
                                            deadline alone; its drain of
                                            the listeners gets a quarter
                                            of its deadline */
    enum cmn_log_level log_level;        /* DD_LOG_LEVEL, info; applied by
                                            lc_pipeline_config_from_env */
    size_t memory_limit;                 /* DRAINPIPE_MEMORY_LIMIT, 64 MiB;
                                            applied (process-wide, see
                                            cmn_budget_set_limit) by
                                            lc_pipeline_create */
    bool no_listener_ok;                 /* false; the embedding library
                                            (libdrainpipe): a server with
                                            no listener configured starts
                                            empty, fed only through
                                            dsd_process_packet */
};

/* Fills the Agent's defaults (fwd_/agg_/dsd_config_defaults, sink AUTO,
 * no local file, aggregator stop timeout 2000 ms, dogstatsd 1000 ms). The
 * component defaults may allocate (the aggregator's hostname): always
 * release with lc_pipeline_config_free. */
void lc_pipeline_config_defaults(struct lc_pipeline_config *c);
/* Applies DD_LOG_LEVEL first (also applied with cmn_log_set_level), then
 * fwd_/agg_/dsd_config_from_env, DD_AGGREGATOR_STOP_TIMEOUT (seconds,
 * 0-3600), DRAINPIPE_SINK (auto, forwarder or local),
 * DRAINPIPE_LOCAL_FILE and DRAINPIPE_MEMORY_LIMIT. Returns 0 or UV_EINVAL after
 * logging the variable at fault (c may then hold some applied values; free it
 * as usual). */
int lc_pipeline_config_from_env(struct lc_pipeline_config *c,
                                const struct cmn_env *env) CMN_MUST_CHECK;
/* Frees every owned field (and resets them). */
void lc_pipeline_config_free(struct lc_pipeline_config *c);
/* true when some endpoint has an API key (the forwarder can run). */
bool lc_pipeline_config_has_api_key(const struct lc_pipeline_config *c);

struct lc_pipeline;

/* Creates the components (forwarder or local sink, aggregator, dogstatsd
 * server) and registers them as "forwarder" (or "local-sink"),
 * "aggregator" and "dogstatsd". c is borrowed for this call only. Opens no
 * socket yet. Returns 0, UV_EINVAL (LC_SINK_FORWARDER with no API key) or
 * a component's create error. */
int lc_pipeline_create(uv_loop_t *loop, const struct lc_pipeline_config *c,
                       struct lc_pipeline **out) CMN_MUST_CHECK;

/* The listeners that could not bind in lc_pipeline_listen. */
struct lc_listen_failure {
    const char *var; /* static: "DD_DOGSTATSD_PORT", "DD_DOGSTATSD_SOCKET"
                        or "DD_DOGSTATSD_STREAM_SOCKET" */
    char value[112]; /* the port or the path (cut to fit) */
    int err;         /* the bind error */
};
struct lc_listen_report {
    bool bound; /* at least one listener is bound */
    size_t nfailed;
    struct lc_listen_failure failed[3];
};

/* The two-step create for a fast start (a wrapper that spawns its child
 * in between): creates the pipeline with its DogStatsD server only and
 * binds its listeners now, so that a client's first packet finds them.
 * Nothing else is allocated: no aggregator tables, no sink. When some
 * listeners cannot bind, each is tried alone, the failures are written to
 * *rep, and the server runs with the others; when none binds the
 * pipeline has no server. That check runs the loop (to close what it
 * bound): never call this from a loop callback unless all_or_nothing,
 * which skips the check: any failure returns the bind error with nothing
 * open and no pipeline (a retry timer's use).
 * The bind errors are logged by the server; a caller that reports them in
 * its own words may divert them (cmn_log_divert_errors). Then
 * lc_pipeline_complete, lc_pipeline_start; a
 * pipeline that is never completed is freed with lc_pipeline_destroy
 * (which closes the listeners; run the loop afterwards). c is borrowed.
 * Returns 0 (see rep), UV_ENOMEM, or with all_or_nothing the bind error. */
int lc_pipeline_listen(uv_loop_t *loop, const struct lc_pipeline_config *c,
                       bool all_or_nothing, struct lc_listen_report *rep,
                       struct lc_pipeline **out) CMN_MUST_CHECK;
/* Between the two steps, right after the child is spawned: starts the
 * DogStatsD receive threads (dsd_receive), so what the child sends first
 * is moved out of the socket buffers while the rest of the pipeline is
 * built. No-op without a bound server. Returns 0 or the error (the
 * receive threads are then started again by lc_pipeline_start). */
int lc_pipeline_receive(struct lc_pipeline *p) CMN_MUST_CHECK;
/* Second step: creates the sink (forwarder or local sink) and the
 * aggregator, and connects the server to it. Returns 0, UV_EALREADY,
 * UV_EINVAL (LC_SINK_FORWARDER with no API key) or a create error (the
 * pipeline is then only fit for lc_pipeline_destroy). c is borrowed. */
int lc_pipeline_complete(struct lc_pipeline *p,
                         const struct lc_pipeline_config *c) CMN_MUST_CHECK;
/* The pipeline's registry: register more components (e.g. one depending on
 * "dogstatsd") before lc_pipeline_start; they are stopped before it (the
 * reverse order) by lc_pipeline_stop and destroyed by
 * lc_pipeline_destroy. Borrowed. */
struct lc_manager *lc_pipeline_manager(struct lc_pipeline *p);
/* Starts forwarder (or local sink) -> aggregator -> dogstatsd. When it
 * returns 0 the listeners are bound. On error (logged, naming the
 * component) the started ones are being stopped: call lc_pipeline_stop
 * (its cb fires once that rollback ends) or lc_pipeline_destroy. */
int lc_pipeline_start(struct lc_pipeline *p) CMN_MUST_CHECK;
/* The aggregator, to inject enhanced metrics (borrowed). */
struct agg *lc_pipeline_agg(struct lc_pipeline *p);
/* The bound UDP port, 0 if UDP is off or not started. */
int lc_pipeline_udp_port(const struct lc_pipeline *p);
/* The smallest effective receive buffer of the bound datagram sockets
 * (dsd_rcvbuf_min); INT_MAX when none is bound. */
int lc_pipeline_rcvbuf_min(const struct lc_pipeline *p);
/* true when the pipeline sends to the local sink, not the forwarder. */
bool lc_pipeline_is_local(const struct lc_pipeline *p);
/* Flush now (the Lambda extension's end-of-invocation flush): (a) parses
 * every datagram received so far (kernel socket buffers and receive
 * rings: dsd_sync) into the aggregator,
 * (b) flushes every bucket and sketch, the open ones included, (c) waits
 * until the forwarder has no request in flight and has attempted every
 * payload at least once (delivered, or failed and kept for a retry), then
 * calls cb(data) on the loop thread (possibly from inside this call with
 * the local sink). No timeout here: the caller bounds the wait with its own
 * timer and lc_pipeline_flush_cancel. Returns 0 (cb will be called once
 * unless cancelled; when the aggregator's flush fails after the sync, cb
 * is still called and the failure logged), UV_EBUSY while an earlier flush
 * runs, or CMN_ESTOPPED when not running (cb not called). */
typedef void (*lc_flush_cb)(void *data);
int lc_pipeline_flush(struct lc_pipeline *p, lc_flush_cb cb,
                      void *data) CMN_MUST_CHECK;
/* Forgets the running flush's callback (it is not called any more); the
 * flush itself goes on. No-op when none runs. */
void lc_pipeline_flush_cancel(struct lc_pipeline *p);
/* The forwarder (borrowed), NULL with the local sink. */
struct fwd *lc_pipeline_fwd(struct lc_pipeline *p);
/* The DogStatsD server (borrowed; NULL when none could bind), for
 * in-process submission through dsd_process_packet on the loop thread. */
struct dsd *lc_pipeline_dsd(struct lc_pipeline *p);

/* Reverse drain by one deadline (CMN_NO_DEADLINE = none): dogstatsd
 * (reads what is queued in the kernel, for a quarter of the time left) ->
 * aggregator (final flush, incl. the open bucket when configured) ->
 * forwarder (deadline = what is left of it) or local sink. At the end, if
 * anything was not delivered, writes one line to stderr with the counts. cb is
 * called once, on a later loop iteration; clean = false if a component was
 * abandoned. */
void lc_pipeline_stop(struct lc_pipeline *p, struct cmn_deadline dl,
                      lc_done_cb cb, void *arg);
/* Frees the pipeline now and its components through lc_destroy: at once,
 * or, if a component was abandoned and has not reported yet (or a rollback
 * is still running), on a later loop iteration, so run the loop once more
 * before uv_loop_close. Call after the stop callback, or if never started.
 * NULL is a no-op. */
void lc_pipeline_destroy(struct lc_pipeline *p);

struct lc_pipeline_stats {
    struct dsd_stats dsd;
    struct agg_stats agg;
    struct fwd_stats fwd;  /* zero with the local sink */
    struct ls_stats local; /* zero with the forwarder */
};
void lc_pipeline_get_stats(const struct lc_pipeline *p,
                           struct lc_pipeline_stats *out);

#endif /* DP_LIFECYCLE_H */
