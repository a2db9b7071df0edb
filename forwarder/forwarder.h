/*
 * forwarder.h - delivers serialized payloads to the Datadog intake (or any
 * compatible receiver) with the Agent's semantics, from one libuv loop.
 *
 * A payload is a self-contained object (route, headers, body) made by the
 * serializer in aggregator/. The forwarder sends each payload to every
 * (endpoint, API key) pair, retries with backoff, caps its retry queue in
 * bytes, and drains on stop. Every payload ends as delivered, dropped with a
 * reason, or abandoned at the stop deadline, and each outcome is counted.
 *
 * Threading: every function here runs on the loop thread, except
 * fwd_payload_new/fwd_payload_free which any thread may call.
 */
#ifndef DP_FORWARDER_H
#define DP_FORWARDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"

/* ------------------------------------------------------------------------
 * Payloads
 */
enum fwd_kind {
    FWD_KIND_SERIES,         /* /api/v2/series (protobuf) or v1 (JSON) */
    FWD_KIND_SKETCHES,       /* /api/beta/sketches (protobuf) */
    FWD_KIND_EVENTS,         /* /intake/ (JSON) */
    FWD_KIND_SERVICE_CHECKS, /* /api/v1/check_run (JSON) */
    FWD_KIND_MAX
};

struct fwd_payload {
    enum fwd_kind kind;
    const char *route;            /* static string, e.g. "/api/v2/series" */
    const char *content_type;     /* static: "application/x-protobuf" or
                                     "application/json" */
    const char *content_encoding; /* static: "zstd", "deflate", "identity" */
    bool protobuf;                /* adds the DD-Agent-Payload header */
    unsigned char *body;          /* owned (cmn_malloc), compressed bytes */
    size_t len;                   /* bytes in body */
    size_t raw_len;               /* bytes before compression */
    uint32_t items;               /* series / sketches / events / checks */
    uint32_t points;              /* points (series) or dogsketches */
};

/* Allocates a payload and takes ownership of body (allocated with
 * cmn_malloc). Returns NULL on allocation failure, in which case body is
 * freed. Any thread. */
struct fwd_payload *fwd_payload_new(enum fwd_kind kind, unsigned char *body,
                                    size_t len) CMN_MUST_CHECK;
/* Frees the payload and its body. NULL is a no-op. Any thread. */
void fwd_payload_free(struct fwd_payload *p);

/* Where the serializer sends payloads: the forwarder (fwd_sink_submit) or
 * the local sink of lifecycle/. The callee takes ownership of p in every
 * case, including errors. */
typedef void (*fwd_submit_fn)(void *data, struct fwd_payload *p);

/* ------------------------------------------------------------------------
 * Configuration (spec/pipeline.md §3.5, §3.6, §6). fwd_config_defaults
 * fills the Agent's defaults; fwd_config_from_env applies DD_* variables.
 */
struct fwd_endpoint_cfg {
    char *url;   /* owned; "https://host[:port]" without trailing '/' */
    char **keys; /* owned array of owned API keys, each allocated with
                    cmn_secret_strndup (kept out of core dumps) */
    size_t nkeys;
};

struct fwd_config {
    struct fwd_endpoint_cfg *endpoints; /* owned; [0] is the main one */
    size_t nendpoints;
    bool load_on_loop;            /* load libcurl from the loop's first
                                     iteration rather than at fwd_start
                                     (the Lambda extension: not before its
                                     first /next) */
    double timeout_s;             /* forwarder_timeout, 20 */
    uint32_t max_concurrent;      /* forwarder_max_concurrent_requests 10 */
    double backoff_base;          /* forwarder_backoff_base, 2 */
    double backoff_factor;        /* forwarder_backoff_factor, 2 */
    double backoff_max;           /* forwarder_backoff_max, 64 */
    uint32_t recovery_interval;   /* forwarder_recovery_interval, 2 */
    bool recovery_reset;          /* forwarder_recovery_reset: a success
                                     forgives every error */
    size_t retry_queue_max_bytes; /* ..._retry_queue_payloads_max_size */
    double stop_timeout_s;        /* forwarder_stop_timeout, 2 */
    bool stop_wait_for_inflight;  /* forwarder_stop_wait_for_inflight */
    char *proxy_https;            /* owned or NULL: DD_PROXY_HTTPS ... */
    char *proxy_http;             /* owned or NULL */
    char *no_proxy;               /* owned or NULL */
    bool skip_ssl_validation;     /* DD_SKIP_SSL_VALIDATION */
    char *ca_file;                /* owned or NULL: extra CA bundle */
    int min_tls_version;          /* min_tls_version: 10, 11, 12 (the
                                     default) or 13 */
    bool warm_start;              /* resolve + connect at start (one GET
                                     <url>/api/v1/validate per endpoint) */
};

void fwd_config_defaults(struct fwd_config *cfg);
/* Reads DD_API_KEY (trimmed), DD_SITE, DD_DD_URL > DD_URL (else
 * https://app.<site>; Datadog-owned app hosts get the Agent's
 * "7-60-0-app.agent." prefix, custom URLs are untouched),
 * DD_ADDITIONAL_ENDPOINTS (JSON {"url": ["key", ...]}; keys trimmed, urls
 * without a key dropped, a url equal to the main one merges its keys),
 * DD_FORWARDER_TIMEOUT, _MAX_CONCURRENT_REQUESTS, _BACKOFF_BASE/_FACTOR/_MAX,
 * _RECOVERY_INTERVAL, _RECOVERY_RESET, _RETRY_QUEUE_PAYLOADS_MAX_SIZE,
 * _STOP_TIMEOUT, _STOP_WAIT_FOR_INFLIGHT, DD_PROXY_HTTPS/HTTP/NO_PROXY (falling
 * back to HTTPS_PROXY/https_proxy, HTTP_PROXY/http_proxy, NO_PROXY/no_proxy),
 * DD_SKIP_SSL_VALIDATION and DD_MIN_TLS_VERSION (tlsv1.0-tlsv1.3).
 * Endpoints are rebuilt from the environment; other fields keep their value
 * when a variable is unset. Returns 0, UV_ENOMEM, or UV_EINVAL after
 * logging which variable is wrong; on error cfg may be partly filled and
 * must still be freed with fwd_config_free. With no API key, nendpoints is
 * 0. */
int fwd_config_from_env(struct fwd_config *cfg,
                        const struct cmn_env *env) CMN_MUST_CHECK;
void fwd_config_free(struct fwd_config *cfg);

/* ------------------------------------------------------------------------
 * Counters, readable at any time on the loop thread.
 */
struct fwd_stats {
    uint64_t submitted;       /* payloads accepted by fwd_submit */
    uint64_t transactions;    /* payload x endpoint x key created */
    uint64_t delivered;       /* transactions answered 2xx/3xx */
    uint64_t retried;         /* attempts that will be retried */
    uint64_t dropped_400;     /* 400 Bad Request */
    uint64_t dropped_403;     /* 403: API key rejected */
    uint64_t dropped_413;     /* 413 Payload Too Large */
    uint64_t dropped_evicted; /* retry queue over its byte cap, or the
                                 memory budget's eviction step: only
                                 payloads attempted at least once */
    uint64_t dropped_stopped; /* submitted after stop began */
    uint64_t dropped_other;   /* invalid URL, no endpoint, out of memory */
    uint64_t abandoned;       /* undelivered at the stop deadline, or
                                 cancelled at stop (wait_for_inflight off) */
    uint64_t bytes_sent;      /* body bytes of delivered transactions */
    uint64_t inflight;        /* requests on the wire now */
    uint64_t queued;          /* transactions waiting (incl. retries) */
    uint64_t queued_bytes;    /* bytes of those */
};
/* Invariant: transactions == delivered + dropped_400 + dropped_403 +
 * dropped_413 + dropped_evicted + dropped_other + abandoned + inflight +
 * queued. dropped_stopped counts payloads refused before any transaction
 * was made; retried counts attempts, not transactions. */

struct fwd;

/* Creates a forwarder on loop (borrowed; must outlive the forwarder).
 * Copies what it needs from cfg. Returns 0 or a negative error. */
int fwd_create(uv_loop_t *loop, const struct fwd_config *cfg,
               struct fwd **out) CMN_MUST_CHECK;
/* Starts the transport; with cfg->warm_start, begins resolving and
 * connecting to each endpoint without blocking anything: one GET
 * <url>/api/v1/validate per endpoint (DD-Api-Key = its first key) on the
 * forwarder's curl multi handle, so the connection (and TLS session) is in
 * curl's pool for the first flush. Its answer is only logged (debug; a 403
 * is a warning that the key was rejected); it is not a transaction, and it
 * is cancelled if still running at stop. */
int fwd_start(struct fwd *f) CMN_MUST_CHECK;
/* True once the transport can send: fwd_start loads libcurl on the libuv
 * thread pool (so start-up never pays for it) and payloads submitted
 * before then wait in the queue, counted as queued. */
bool fwd_is_ready(const struct fwd *f);
/* Takes ownership of p and queues one transaction per (endpoint, key).
 * Returns 0; CMN_ESTOPPED before fwd_start or once stop began (p is freed
 * and counted as dropped_stopped); UV_ENOMEM (p freed, counted as
 * dropped_other). With no endpoint, p is counted as dropped_other. */
int fwd_submit(struct fwd *f, struct fwd_payload *p);
/* fwd_submit_fn adapter: data is the struct fwd. */
void fwd_sink_submit(void *data, struct fwd_payload *p);

/* Calls cb(data) once, on the loop thread, as soon as no request is in
 * flight and every queued transaction has been attempted at least once
 * (what remains then waits for a retry after a failure: it is kept, not
 * lost). That is "delivered or failed" for everything submitted so far:
 * the Lambda extension's flush-now waits on it. cb may run from inside this
 * call. One waiter at a time: a new call replaces the previous one (which
 * is not called); cb NULL cancels. Stopping or stopped: cb runs at once. */
typedef void (*fwd_idle_cb)(void *data);
void fwd_wait_idle(struct fwd *f, fwd_idle_cb cb, void *data);
/* Back-pressure. The forwarder is full when, for some endpoint, the bytes
 * of transactions never attempted plus the bytes on the wire reach the
 * queue's share of the memory budget: a quarter of cmn_budget_limit(), at
 * most retry_queue_max_bytes (which alone applies with no budget). Transactions
 * that were attempted do not count: the retry queue's byte cap (and the
 * budget's eviction step) bounds them. Never full once stop began. */
bool fwd_is_full(const struct fwd *f);
/* Calls cb(data) once, on the loop thread, as soon as the forwarder is not
 * full (after a request ends or a payload is dropped, or when stop
 * finishes); at once if it is not full now. One waiter: a second call
 * replaces the first. */
typedef void (*fwd_space_cb)(void *data);
void fwd_on_space(struct fwd *f, fwd_space_cb cb, void *data);
/* The same with data = the struct fwd (for the aggregator's
 * agg_set_backpressure). */
bool fwd_sink_full(void *fwd);
void fwd_sink_on_space(void *fwd, fwd_space_cb cb, void *data);

typedef void (*fwd_stopped_cb)(void *data);
/* Drains: refuses new payloads, sends what is queued (ignoring endpoint
 * backoff), lets in-flight requests finish (wait_for_inflight) or cancels
 * them (counted as abandoned), retries failures after 25 ms while time
 * remains, all bounded by the earlier of the cfg stop timeout (from now)
 * and dl (CMN_NO_DEADLINE: the timeout alone); at that bound whatever is
 * left is abandoned. Calls cb exactly once, on the
 * loop thread, when every handle is closed (synchronously if the forwarder
 * was never started), and logs one info line:
 *   forwarder stopped: delivered=N dropped(400=N,403=N,413=N,evicted=N,
 *   stopped=N,other=N) abandoned=N
 * A second call is ignored. cb may call fwd_destroy(f). */
void fwd_stop(struct fwd *f, struct cmn_deadline dl, fwd_stopped_cb cb,
              void *data);
/* Frees everything. Only after the stop callback fired (or if never
 * started); called earlier it logs an error and frees nothing. NULL is a
 * no-op. */
void fwd_destroy(struct fwd *f);
void fwd_get_stats(const struct fwd *f, struct fwd_stats *out);

#endif /* DP_FORWARDER_H */
