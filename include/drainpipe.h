/*
 * drainpipe.h - libdrainpipe, the embedding API of the drainpipe
 * DogStatsD pipeline. This is the only installed header: every type is
 * opaque or a plain struct of integers, and every exported name starts
 * with dp_ (or DP_ for macros).
 *
 * A program creates a configuration (dp_config_new, dp_config_from_env,
 * dp_config_set with the Datadog Agent's key names), starts a pipeline
 * (dp_start: its own thread and libuv loop), hands it metrics in-process
 * (dp_submit with DogStatsD text, or the typed helpers dp_count,
 * dp_gauge, ...) or over UDP/Unix sockets as any DogStatsD client does,
 * flushes on demand (dp_flush) and stops it (dp_stop: drain under a
 * budget, then free). A libuv program may run the pipeline on its own
 * loop instead (dp_start_on_loop, dp_flush_async, dp_stop_async).
 *
 * Errors: every int-returning function returns 0 on success or a negative
 * code: one of the DP_E* below, or another negative errno value (a bind
 * error, say). dp_strerror names any of them.
 *
 * Versions and ABI: see docs/libdrainpipe.md. In short, the SONAME
 * major (libdrainpipe.so.0) changes only when an existing function or
 * struct changes incompatibly; new functions and new fields appended to
 * struct dp_stats keep it (dp_stats takes the caller's sizeof).
 */
#ifndef DRAINPIPE_H
#define DRAINPIPE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define DP_EXPORT __attribute__((visibility("default")))
#define DP_MUST_CHECK __attribute__((warn_unused_result))
#else
#define DP_EXPORT
#define DP_MUST_CHECK
#endif

/* The library's version, as built (dp_version() gives the one linked). */
#define DP_VERSION_MAJOR 0
#define DP_VERSION_MINOR 3
#define DP_VERSION_PATCH 1

/* Error codes. The errno-based ones are the values libuv uses on Linux
 * (negated errno), so a libuv host sees the same numbers. */
#define DP_ENOENT (-2)      /* dp_config_set: unknown key */
#define DP_ENOMEM (-12)     /* out of memory, or over the memory budget */
#define DP_EBUSY (-16)      /* already running / already stopping */
#define DP_EINVAL (-22)     /* bad argument or configuration value */
#define DP_ETIMEDOUT (-110) /* dp_flush: not all delivered in time */
#define DP_ETOOBIG (-4002)  /* dp_submit: text over DP_SUBMIT_MAX */
#define DP_EFULL (-4003)    /* dp_submit: queue full, text dropped */
#define DP_ESTOPPED (-4004) /* the pipeline is stopping */
#define DP_WAIT_FOREVER UINT32_MAX /* a timeout of dp_flush */
#define DP_SUBMIT_MAX 65536        /* bytes one dp_submit call may hand over */

typedef struct dp_config dp_config;
typedef struct dp_pipeline dp_pipeline;

/* Static English text for any code above or any negative errno; never
 * NULL. Any thread. */
DP_EXPORT const char *dp_strerror(int err);
/* "0.3.1": the version of the library linked. Any thread. */
DP_EXPORT const char *dp_version(void);

/* ------------------------------------------------------------------------
 * Configuration. A dp_config is used by one thread at a time; it is
 * borrowed by dp_start (read during the call only) and may be freed or
 * reused right after.
 */

/* Creates a configuration with the Agent's defaults (docs/configuration.md):
 * dogstatsd_port 8125 on 127.0.0.1, no API key (metrics then go to the
 * local sink: a summary on stderr at stop), site datadoghq.com; and, as
 * serverless-init does, dogstatsd_flush_incomplete_buckets and
 * forwarder_stop_wait_for_inflight true, so that dp_stop delivers the
 * last samples. Returns
 * 0 or DP_ENOMEM; *out is owned by the caller (dp_config_free). */
DP_EXPORT int dp_config_new(dp_config **out) DP_MUST_CHECK;
/* Frees cfg (zeroing any API key it holds). NULL is a no-op. */
DP_EXPORT void dp_config_free(dp_config *cfg);

/* Reads the process environment with the same DD_* and DRAINPIPE_*
 * variables, defaults and errors as serverless-init (docs/
 * configuration.md): a malformed value logs an error naming the variable
 * and returns DP_EINVAL. The values are read again at dp_start (the
 * environment is not copied); values given with dp_config_set take
 * precedence over the environment, whichever call came first. Also
 * applies DD_LOG_LEVEL to the library's log (process-wide), and moves the
 * environment's DD_API_KEY and DD_ADDITIONAL_ENDPOINTS values to pages
 * kept out of core dumps (getenv still returns them; the original
 * strings are zeroed): call it before other threads read those two. */
DP_EXPORT int dp_config_from_env(dp_config *cfg) DP_MUST_CHECK;

/* Sets one setting by its Datadog Agent key name, the value as it would
 * be written in the environment (key "api_key" is DD_API_KEY, "tags" is
 * DD_TAGS: "a:1 b:2" or "a:1,b:2"; booleans "true"/"false"; durations in
 * the Agent's unit). Keys are lower case: api_key, dd_url, site,
 * hostname, tags, dogstatsd_port (0 = no UDP listener: in-process
 * submission only), dogstatsd_socket, dogstatsd_stream_socket,
 * bind_host, dogstatsd_buffer_size, forwarder_timeout,
 * forwarder_stop_timeout, forwarder_stop_wait_for_inflight,
 * dogstatsd_flush_incomplete_buckets, log_level, ... (the full list in
 * docs/libdrainpipe.md), plus the drainpipe settings drainpipe_sink,
 * drainpipe_local_file, drainpipe_memory_limit and
 * drainpipe_submit_queue_size (bytes of the in-process queue, default
 * 4MiB). key and value are copied (the API key into a page kept out of
 * core dumps). A NULL value removes an earlier setting. Returns 0,
 * DP_ENOENT (unknown key), DP_EINVAL (malformed value, logged naming the
 * key) or DP_ENOMEM. */
DP_EXPORT int dp_config_set(dp_config *cfg, const char *key,
                            const char *value) DP_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Pipeline
 */

/* Starts a pipeline on its own thread with its own libuv loop (the thread
 * blocks every signal, so the host's signal handling is unchanged).
 * Returns once the listeners are bound: from then on no packet sent to
 * them is lost, and dp_submit is accepted. cfg is borrowed for the call.
 * Returns 0 with *out owned by the caller (release with dp_stop),
 * DP_EINVAL (a setting is malformed), DP_ENOMEM (the in-process queue
 * does not fit the memory budget), or the bind error of a listener.
 * Several pipelines may run in one process; the memory budget and the log
 * level are process-wide (the last started sets them). */
DP_EXPORT int dp_start(const dp_config *cfg, dp_pipeline **out) DP_MUST_CHECK;

/* Hands DogStatsD text (one or more lines separated by '\n': metrics,
 * events, service checks) to the pipeline. Any thread, concurrently;
 * never blocks and never allocates: the text is copied into a bounded
 * queue (drainpipe_submit_queue_size) that the pipeline's thread drains.
 * Returns 0 (accepted: the lines are parsed and counted like a datagram's;
 * a malformed line is counted as a parse error, not reported here),
 * DP_EFULL (queue full: dropped and counted; the caller may retry),
 * DP_ETOOBIG (len > DP_SUBMIT_MAX, or larger than a quarter of the
 * queue: dropped and counted), DP_ESTOPPED (dp_stop has begun: dropped
 * and counted) or DP_EINVAL (NULL). buf is borrowed for the call. */
DP_EXPORT int dp_submit(dp_pipeline *p, const char *buf, size_t len);

/* Typed helpers: one metric sample with name, tags ("key:value" strings,
 * ntags of them; may be NULL when ntags is 0) and a sample rate in (0, 1]
 * (1 = every sample sent). They take dp_submit's path and return its
 * codes, plus DP_EINVAL when the name or a tag holds '|', ',' (tags),
 * '\n', ':' (name) or is empty, or the rate is out of range, or the value
 * is not finite. Any thread; never block. Everything is borrowed for the
 * call. The name and tags together must fit in 4 KiB. */
DP_EXPORT int dp_count(dp_pipeline *p, const char *name, double value,
                       const char *const *tags, size_t ntags, double rate);
DP_EXPORT int dp_gauge(dp_pipeline *p, const char *name, double value,
                       const char *const *tags, size_t ntags, double rate);
DP_EXPORT int dp_histogram(dp_pipeline *p, const char *name, double value,
                           const char *const *tags, size_t ntags, double rate);
DP_EXPORT int dp_distribution(dp_pipeline *p, const char *name, double value,
                              const char *const *tags, size_t ntags,
                              double rate);
/* A set counts distinct members per flush interval; member is text (no
 * '|' or '\n'). */
DP_EXPORT int dp_set(dp_pipeline *p, const char *name, const char *member,
                     const char *const *tags, size_t ntags, double rate);

/* Flushes now and waits: everything accepted before this call (by
 * dp_submit and the helpers, and every datagram already received by the
 * listeners) is parsed, every bucket is flushed including the open one,
 * and the call returns once the forwarder has attempted every payload
 * (delivered, or failed and kept for a retry) - or at once after writing
 * to the local sink. The pipeline keeps running. Any thread except the
 * pipeline's own; concurrent calls are served by one or more flushes.
 * timeout_ms bounds the wait (DP_WAIT_FOREVER: none); on timeout the
 * flush goes on in the background. Returns 0, DP_ETIMEDOUT or
 * DP_ESTOPPED. */
DP_EXPORT int dp_flush(dp_pipeline *p, uint32_t timeout_ms);

/* Counters since dp_start. Fields are only ever appended. */
struct dp_stats {
    /* in-process submission */
    uint64_t submitted;          /* dp_submit / helper calls accepted */
    uint64_t submitted_bytes;    /* their bytes */
    uint64_t dropped_queue_full; /* calls refused: queue full */
    uint64_t dropped_too_big;    /* calls refused: over the size cap */
    uint64_t dropped_stopped;    /* calls refused: stopping */
    /* listeners and parsing (sockets and in-process alike) */
    uint64_t packets;        /* datagrams / frames read */
    uint64_t metric_lines;   /* metric lines parsed */
    uint64_t metric_samples; /* samples (one per value) */
    uint64_t event_lines;
    uint64_t service_check_lines;
    uint64_t parse_errors;     /* lines rejected by the parser */
    uint64_t kernel_drops;     /* datagrams the kernel dropped */
    uint64_t dropped_listener; /* other listener drops: truncated,
                                  blocklisted, unterminated, left
                                  unread at stop */
    /* aggregation */
    uint64_t contexts;        /* live contexts */
    uint64_t samples_dropped; /* NaN, context and cap limits, memory */
    uint64_t series_flushed;
    uint64_t sketches_flushed;
    uint64_t payloads; /* payloads built */
    /* delivery */
    uint64_t delivered;        /* payloads accepted by the intake (or
                                  written by the local sink) */
    uint64_t dropped_payloads; /* refused (4xx), evicted, abandoned at
                                  the stop deadline, other */
    uint64_t queued;           /* payloads waiting or in flight */
    /* since 0.3: the forwarder's detail (zero with the local sink);
       dropped_payloads above is their sum plus payloads the serializer
       or the local sink could not hand over */
    uint64_t inflight;           /* requests in flight (also in queued) */
    uint64_t retried;            /* attempts failed and retried */
    uint64_t abandoned;          /* left at the stop deadline */
    uint64_t dropped_400;        /* refused by the intake: 400 */
    uint64_t dropped_403;        /* 403 (API key) */
    uint64_t dropped_413;        /* 413 (too large) */
    uint64_t dropped_evicted;    /* evicted from the retry queue */
    uint64_t dropped_after_stop; /* submitted after the forwarder stopped */
    uint64_t dropped_other;      /* other errors past the retries */
};

/* Copies the counters into *st, filling at most size bytes (pass
 * sizeof(struct dp_stats): a program built against an older header gets
 * the fields it knows). Any thread except the pipeline's own (waits for
 * the pipeline thread to take the snapshot: a few microseconds unless it
 * is busy with one step of work, at most about a millisecond); on a
 * dp_start_on_loop pipeline, the loop's thread too (no wait; there also
 * while dp_stop_async drains, until its callback). Returns 0, DP_EINVAL
 * or DP_ESTOPPED (another thread, once a stop has begun). */
DP_EXPORT int dp_stats(dp_pipeline *p, struct dp_stats *st, size_t size);

/* Stops and frees the pipeline: refuses new submissions, then drains in
 * reverse (the in-process queue, the listeners' sockets, the aggregator's
 * final flush including the open bucket, the forwarder) within budget_ms
 * (0 = the Agent's default of 2000 ms), then frees everything. Whatever
 * could not be delivered in the budget is counted in *final (may be NULL;
 * filled like dp_stats, size bytes) and written as one line on stderr.
 * Any thread except the pipeline's own, once no other thread uses p any
 * more (a dp_submit still running when p is freed would touch freed
 * memory); p is invalid afterwards. Returns
 * 0 when every component finished its drain, DP_ETIMEDOUT when one was
 * cut off by the budget, DP_EINVAL for a dp_start_on_loop pipeline (use
 * dp_stop_async). NULL is a no-op returning 0. */
DP_EXPORT int dp_stop(dp_pipeline *p, uint32_t budget_ms,
                      struct dp_stats *final, size_t size);

/* ------------------------------------------------------------------------
 * On the host's libuv loop (since 0.2). For a program that already runs
 * libuv: the pipeline's handles join the host's loop instead of a thread
 * and loop of their own. dp_submit and the typed helpers work as above
 * from any thread; dp_flush and dp_stats work from any other thread; the
 * calls below replace dp_flush and dp_stop on the loop's own thread,
 * where a blocking call would wait for itself.
 */

struct uv_loop_s; /* libuv's uv_loop_t */

/* Called on the loop's thread when a dp_flush_async is served: status 0
 * (everything accepted before the call was flushed and attempted, as for
 * dp_flush) or DP_ESTOPPED (a stop began first; its drain delivers it). */
typedef void (*dp_flushed_fn)(dp_pipeline *p, int status, void *arg);
/* Called on the loop's thread once dp_stop_async's drain is over: status
 * as dp_stop's return, final the last counters (borrowed for the call).
 * p must not be used from then on; its memory is released once the loop
 * has closed its last handle, a later iteration of the host's loop. */
typedef void (*dp_stopped_fn)(int status, const struct dp_stats *final,
                              void *arg);

/* Starts a pipeline whose handles run on loop (a uv_loop_t *), which the
 * host runs. Call on the loop's thread, outside any other pipeline call;
 * returns once the listeners are bound, like dp_start, with the same
 * codes. The host keeps running the loop until dp_stop_async's callback
 * and the handle closes after it (uv_run returns when nothing else is
 * active). */
DP_EXPORT int dp_start_on_loop(const dp_config *cfg, struct uv_loop_s *loop,
                               dp_pipeline **out) DP_MUST_CHECK;

/* Starts a flush and returns at once; done(p, status, arg) follows on a
 * later loop iteration. Concurrent calls are served by one or more
 * flushes, in order. Loop thread of a dp_start_on_loop pipeline only.
 * Returns 0, DP_EINVAL (not such a pipeline or thread, done NULL),
 * DP_ESTOPPED (a stop has begun) or DP_ENOMEM. */
DP_EXPORT int dp_flush_async(dp_pipeline *p, dp_flushed_fn done, void *arg);

/* Begins dp_stop's drain (budget_ms: 0 = 2000 ms) and returns at once;
 * done(status, final, arg) follows on a later loop iteration. Pending
 * dp_flush_async callbacks get DP_ESTOPPED first. Loop thread of a
 * dp_start_on_loop pipeline only; no other thread may use p any more.
 * Returns 0, DP_EINVAL or DP_EBUSY (already stopping). */
DP_EXPORT int dp_stop_async(dp_pipeline *p, uint32_t budget_ms,
                            dp_stopped_fn done, void *arg);

/* ------------------------------------------------------------------------
 * Two-step start on the host's loop (since 0.3). For a program whose
 * first work after binding is latency-critical (serverless-init binds,
 * spawns the job it wraps, and only then builds the rest): dp_bind_on_loop
 * binds the listeners and starts the receive threads, which move what
 * clients send into the receive rings (nothing is parsed yet); then
 * dp_start_bound builds the sink and the aggregator and starts parsing.
 * Until dp_start_bound, the pipeline takes no dp_submit (DP_ESTOPPED) and
 * no dp_flush_async (DP_EINVAL); dp_stop_async closes it at any step.
 */

/* One listener that could not bind. */
struct dp_bind_failure {
    const char *var; /* static: the environment variable that configured
                        it: "DD_DOGSTATSD_PORT", "DD_DOGSTATSD_SOCKET" or
                        "DD_DOGSTATSD_STREAM_SOCKET" */
    char value[112]; /* the port or the path (cut to fit) */
    int err;         /* the bind error (negative errno) */
};
struct dp_bind_report {
    int bound;      /* 1: at least one listener is bound */
    size_t nfailed; /* entries of failed[] */
    struct dp_bind_failure failed[3];
};

/* dp_bind_on_loop flag: any listener that cannot bind fails the call
 * (its error returned, nothing left open). Without it, the listeners
 * that bind run and the others are listed in the report; when none binds
 * the pipeline still starts (fed by dp_submit only). */
#define DP_BIND_ALL_OR_NOTHING 1u
/* dp_bind_on_loop flag (since 0.3.1): when every datagram listener's socket
 * got a receive buffer of at least DP_RECEIVE_LATE_MIN_RCVBUF bytes, the
 * receive threads start with dp_start_bound instead of at the bind, and
 * the kernel holds what clients send until then (4 MiB: 5 000 datagrams
 * of one short line, 832 bytes each in the kernel's count); with a smaller
 * buffer they start at the bind, as without the flag. For a host whose
 * first work after binding is latency-critical and that calls
 * dp_start_bound soon after it: serverless-init spawns its child in
 * between (with an API key it then gives the child a head start of up to
 * 2 ms), and creating the threads
 * (their stacks, rings and scratch) cost that spawn 0.3-0.6 ms. (0.3.1:
 * 1 MiB.) */
#define DP_BIND_RECEIVE_LATE 2u
#define DP_RECEIVE_LATE_MIN_RCVBUF (4 << 20)

/* Step one: binds the listeners of cfg on loop (the host's, as
 * dp_start_on_loop) and starts their receive threads. Call on the loop's
 * thread. rep (may be NULL) says which listeners failed; their errors are
 * logged too. Without DP_BIND_ALL_OR_NOTHING the check of which listener
 * failed runs the loop for a moment (to close what it bound alone): call
 * it outside the loop's callbacks then. Returns 0 with *out owned by the
 * caller (dp_start_bound next, or dp_stop_async), DP_EINVAL (a setting is
 * malformed), DP_ENOMEM, or with DP_BIND_ALL_OR_NOTHING the bind error.
 * cfg is borrowed for the call: the settings are read now. */
DP_EXPORT int dp_bind_on_loop(const dp_config *cfg, struct uv_loop_s *loop,
                              unsigned flags, struct dp_bind_report *rep,
                              dp_pipeline **out) DP_MUST_CHECK;

/* Step two: creates the sink (forwarder, or the local sink without an
 * API key) and the aggregator, with the tags of dp_set_tags if it was
 * called, and starts the pipeline: what the receive rings hold is parsed
 * as the loop runs. Loop thread. Returns 0, DP_EBUSY (already started),
 * DP_EINVAL, DP_ENOMEM or a component's start error (logged); after an
 * error only dp_stop_async is left. */
DP_EXPORT int dp_start_bound(dp_pipeline *p) DP_MUST_CHECK;

/* Replaces the tags added to every metric, event and service check
 * (initially those of dogstatsd_tags and tags: DD_DOGSTATSD_TAGS and
 * DD_TAGS), from the next sample on. tags are "key:value" strings, n of
 * them (NULL when n is 0); copied. Loop thread of a dp_bind_on_loop or
 * dp_start_on_loop pipeline, before or after dp_start_bound. Returns 0,
 * DP_EINVAL (another thread, or a dp_start pipeline), DP_ESTOPPED or
 * DP_ENOMEM. */
DP_EXPORT int dp_set_tags(dp_pipeline *p, const char *const *tags, size_t n);

/* What a pipeline is, as started. */
struct dp_info {
    int udp_port;   /* the bound UDP port, 0 when none */
    int api_key;    /* 1: an API key is configured (api_key, or one of
                       additional_endpoints) */
    int local_sink; /* 1: metrics go to the local sink, not to an intake
                       (no API key, or drainpipe_sink local); known from
                       dp_bind_on_loop on */
    int started;    /* 1: running (dp_start, dp_start_on_loop, or
                       dp_start_bound done) */
};

/* Fills *info (size bytes of it, as dp_stats). Loop thread of a host-loop
 * pipeline, or any thread for dp_start's (udp_port and local_sink do not
 * change once started). Returns 0 or DP_EINVAL. */
DP_EXPORT int dp_get_info(dp_pipeline *p, struct dp_info *info, size_t size);

#ifdef __cplusplus
}
#endif

#endif /* DRAINPIPE_H */
