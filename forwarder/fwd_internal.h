/*
 * fwd_internal.h - private structures shared by the forwarder's files:
 * fwd.c (transactions, queues, backoff, stop), fwd_http.c (libcurl multi
 * driven by libuv) and fwd_config.c. Nothing here is public.
 *
 * Ownership: a payload is wrapped once in a refcounted fwd_body; each
 * transaction (payload x endpoint x key) holds one reference. A transaction
 * is in exactly one place at a time: an endpoint's queue, on the wire
 * (inflight), or freed.
 */
#ifndef DP_FWD_INTERNAL_H
#define DP_FWD_INTERNAL_H

#include <curl/curl.h>

#include "forwarder.h"

#define FWD_COMP "forwarder"
#define FWD_AGENT_PAYLOAD_VERSION "5.0.4"
#define FWD_MAX_ERRORS 6     /* backoff error count cap (§3.6) */
#define FWD_STOP_RETRY_MS 25 /* retry delay while draining at stop */

struct fwd_body {
    struct fwd_payload *p; /* owned */
    uint32_t refs;         /* transactions holding it */
};

struct fwd_txn {
    struct fwd_txn *next, *prev; /* links in the endpoint queue */
    struct fwd *f;
    struct fwd_ep *ep;
    struct fwd_body *body;      /* one reference */
    size_t key;                 /* index into ep->keys */
    uint64_t seq;               /* creation order */
    uint32_t attempts;          /* requests sent so far */
    bool warmup;                /* warm-start request, not a payload */
    CURL *easy;                 /* while on the wire */
    struct curl_slist *headers; /* while on the wire */
    char *url;                  /* while on the wire */
    char errbuf[CURL_ERROR_SIZE];
};

struct fwd_txn_list {
    struct fwd_txn *head, *tail;
    size_t n;
    size_t bytes;
};

struct fwd_ep {
    char *url;   /* owned, no trailing '/' */
    char **keys; /* owned */
    size_t nkeys;
    struct fwd_txn_list queue; /* waiting transactions, oldest first */
    struct fwd_txn_list wire;  /* payload requests on the wire */
    uint32_t nerrors;          /* backoff error count, <= FWD_MAX_ERRORS */
    uint64_t blocked_until_ms; /* uv_now time; breaker blocked before */
    bool tripped;              /* breaker open: blocked, then half-open */
    bool probing;              /* half-open: the probe is on the wire */
    struct fwd_txn *warmup;    /* warm-start request on the wire, or NULL */
};

struct fwd_sock {
    uv_poll_t poll;
    struct fwd *f;
    curl_socket_t fd;
    struct fwd_sock *next, *prev; /* all live socket contexts */
};

enum fwd_state {
    FWD_CREATED,  /* fwd_create done; no handle yet */
    FWD_RUNNING,  /* fwd_start done */
    FWD_STOPPING, /* fwd_stop: draining */
    FWD_CLOSING,  /* drained or out of time: handles closing */
    FWD_STOPPED   /* stop callback called */
};

struct fwd {
    uv_loop_t *loop;
    struct fwd_config cfg; /* deep copy; endpoints live in eps */
    struct fwd_ep *eps;
    size_t neps;
    enum fwd_state state;
    CURLM *multi;
    uv_timer_t curl_timer;  /* CURLMOPT_TIMERFUNCTION */
    uv_timer_t retry_timer; /* wakes blocked endpoints */
    uv_timer_t stop_timer;  /* stop deadline */
    struct fwd_sock *socks;
    uint32_t handles_open; /* uv handles not yet closed */
    uint64_t seq;
    uint64_t stop_deadline_ms;
    bool finishing; /* close scheduled on stop_timer */
    fwd_stopped_cb stop_cb;
    void *stop_data;
    struct fwd_stats st;
    struct cmn_ratelimit rl_err;   /* retry warnings */
    struct cmn_ratelimit rl_evict; /* eviction warnings */
    double (*rand01)(void);        /* test hook; NULL = drand48-like */
    uint64_t rng;                  /* xorshift state */
};

/* fwd_http.c: transport */
int fwd__http_init(struct fwd *f) CMN_MUST_CHECK;
/* Puts t on the wire. 0 or a negative error (t untouched). */
int fwd__http_send(struct fwd *f, struct fwd_txn *t) CMN_MUST_CHECK;
/* Removes t from the multi handle without completing it. */
void fwd__http_cancel(struct fwd *f, struct fwd_txn *t);
/* Releases t's curl resources (easy, headers, url). */
void fwd__http_release(struct fwd_txn *t);
/* Cleans up the multi handle and closes every socket poll handle. */
void fwd__http_shutdown(struct fwd *f);

/* fwd.c: called by the transport when a request ends. status is the HTTP
 * code (0 when none), res the CURLcode. */
void fwd__txn_done(struct fwd *f, struct fwd_txn *t, long status, CURLcode res);
/* Called when a handle owned by f finished closing. */
void fwd__handle_closed(struct fwd *f);

/* Backoff after n errors (§3.6, unverified): b = base * factor^n; b > max
 * gives max, otherwise uniform in [b/2, b). r is uniform in [0, 1).
 * n is capped at FWD_MAX_ERRORS. Seconds. */
double fwd__backoff_s(const struct fwd_config *cfg, uint32_t n, double r);

/* Copies the last 5 characters of key for log lines ("***abcde"). */
void fwd__redact(const char *key, char out[16]);

/* fwd_config.c */
int fwd__config_copy(struct fwd_config *dst,
                     const struct fwd_config *src) CMN_MUST_CHECK;
/* Version-prefixed rewrite of Datadog-owned app URLs (§3.5). Returns a new
 * string (cmn_malloc) or NULL on allocation failure. */
char *fwd__agent_url(const char *url) CMN_MUST_CHECK;

#endif /* DP_FWD_INTERNAL_H */
