/*
 * fwd_internal.h - private structures shared by the forwarder's files:
 * fwd.c (the component: submission, dispatch, completion, stop),
 * fwd_queue.c (transaction lists, retry queue cap and eviction,
 * back-pressure), fwd_retry.c (which answers retry, backoff, circuit
 * breaker), fwd_http.c (transport: libcurl load, multi handle driven by
 * libuv, requests, warm start), fwd_curl.c (the dlopen table) and
 * fwd_config.c. Nothing here is public.
 *
 * Ownership: a payload is wrapped once in a refcounted fwd_body; each
 * transaction (payload x endpoint x key) holds one reference. A transaction
 * is in exactly one place at a time: an endpoint's queue, on the wire
 * (inflight), or freed.
 */
#ifndef DP_FWD_INTERNAL_H
#define DP_FWD_INTERNAL_H

/* libcurl is loaded with dlopen (fwd_curl.c), so its gcc type-checking
 * macros, which wrap the real symbols, are turned off. */
#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "forwarder.h"

/* The libcurl functions the forwarder calls, resolved by fwd__curl_load.
 * The macros below route the ordinary curl_* names through this table, so
 * the transport code reads like plain libcurl code. */
struct fwd_curl_api {
    CURLcode (*global_init)(long flags);
    CURLcode (*global_init_mem)(long flags, curl_malloc_callback m,
                                curl_free_callback f, curl_realloc_callback r,
                                curl_strdup_callback s, curl_calloc_callback c);
    CURL *(*easy_init)(void);
    CURLcode (*easy_setopt)(CURL *h, CURLoption opt, ...);
    CURLcode (*easy_getinfo)(CURL *h, CURLINFO info, ...);
    void (*easy_cleanup)(CURL *h);
    const char *(*easy_strerror)(CURLcode rc);
    CURLM *(*multi_init)(void);
    CURLMcode (*multi_setopt)(CURLM *m, CURLMoption opt, ...);
    CURLMcode (*multi_add_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_remove_handle)(CURLM *m, CURL *h);
    CURLMcode (*multi_assign)(CURLM *m, curl_socket_t s, void *p);
    CURLMcode (*multi_socket_action)(CURLM *m, curl_socket_t s, int ev,
                                     int *running);
    CURLMsg *(*multi_info_read)(CURLM *m, int *left);
    CURLMcode (*multi_cleanup)(CURLM *m);
    struct curl_slist *(*slist_append)(struct curl_slist *l, const char *s);
    void (*slist_free_all)(struct curl_slist *l);
    curl_version_info_data *(*version_info)(CURLversion v);
};
extern struct fwd_curl_api fwd__curl;

/* Loads libcurl and resolves its functions, once per process.
 * Blocking: call it on the thread pool. 0, or a negative error with the reason
 * in fwd__curl_load_error(). Any thread. */
int fwd__curl_load(void) CMN_MUST_CHECK;
/* Chooses the libraries fwd__curl_load tries: DRAINPIPE_LIBCURL, else the
 * private build in <program's directory>/../lib/drainpipe, then the
 * system's libcurl.so.4. Loop thread, before the load is queued. */
void fwd__curl_choose(void);
/* curl_global_init, once per process. Loop thread, after fwd__curl_load. */
int fwd__curl_global_init(void) CMN_MUST_CHECK;
const char *fwd__curl_load_error(void);
/* The library fwd__curl_load opened (or tried last). After the load. */
const char *fwd__curl_loaded_name(void);
/* The CA bundle used when fwd_config.ca_file is NULL ($SSL_CERT_FILE, else
 * the first usual bundle that exists), or NULL: libcurl's default. Chosen
 * with the library, by fwd__curl_choose. */
const char *fwd__ca_default(void);

#undef curl_easy_init
#define curl_easy_init fwd__curl.easy_init
#undef curl_easy_setopt
#define curl_easy_setopt fwd__curl.easy_setopt
#undef curl_easy_getinfo
#define curl_easy_getinfo fwd__curl.easy_getinfo
#undef curl_easy_cleanup
#define curl_easy_cleanup fwd__curl.easy_cleanup
#undef curl_easy_strerror
#define curl_easy_strerror fwd__curl.easy_strerror
#undef curl_multi_init
#define curl_multi_init fwd__curl.multi_init
#undef curl_multi_setopt
#define curl_multi_setopt fwd__curl.multi_setopt
#undef curl_multi_add_handle
#define curl_multi_add_handle fwd__curl.multi_add_handle
#undef curl_multi_remove_handle
#define curl_multi_remove_handle fwd__curl.multi_remove_handle
#undef curl_multi_assign
#define curl_multi_assign fwd__curl.multi_assign
#undef curl_multi_socket_action
#define curl_multi_socket_action fwd__curl.multi_socket_action
#undef curl_multi_info_read
#define curl_multi_info_read fwd__curl.multi_info_read
#undef curl_multi_cleanup
#define curl_multi_cleanup fwd__curl.multi_cleanup
#undef curl_slist_append
#define curl_slist_append fwd__curl.slist_append
#undef curl_slist_free_all
#define curl_slist_free_all fwd__curl.slist_free_all
#undef curl_version_info
#define curl_version_info fwd__curl.version_info

#define FWD_COMP "forwarder"
#define FWD_AGENT_PAYLOAD_VERSION "5.0.4"
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
    size_t fresh_bytes; /* bytes of transactions never attempted: these
                           are never evicted, and are what back-pressure
                           bounds */
};

struct fwd_ep {
    char *url;   /* owned, no trailing '/' */
    char **keys; /* owned */
    size_t nkeys;
    struct fwd_txn_list queue; /* waiting transactions, oldest first */
    struct fwd_txn_list wire;  /* payload requests on the wire */
    uint32_t nerrors;          /* backoff error count, <= max_errors */
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

/* One waiter for a condition of the forwarder (idle, room in the queue):
 * called once, then cleared, when the condition holds. */
struct fwd_waiter {
    void (*cb)(void *data); /* NULL = nobody waits */
    void *data;
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
    CURLM *multi;           /* NULL until libcurl is loaded */
    uv_work_t load_req;     /* fwd__curl_load on the thread pool */
    bool loading;           /* load_req queued, its after-cb not run yet */
    uint64_t load_begin_ns; /* when it was queued (checkpoint) */
    bool http_ready;        /* multi handle made: requests can go */
    bool load_failed;       /* libcurl unusable: payloads are dropped */
    uv_timer_t curl_timer;  /* CURLMOPT_TIMERFUNCTION */
    uv_timer_t retry_timer; /* wakes blocked endpoints */
    uv_timer_t stop_timer;  /* stop deadline */
    struct fwd_sock *socks;
    uint32_t handles_open; /* uv handles not yet closed */
    uint64_t seq;
    bool finishing; /* close scheduled on stop_timer */
    fwd_stopped_cb stop_cb;
    void *stop_data;
    struct fwd_waiter idle; /* fwd_wait_idle */
    struct fwd_stats st;
    struct cmn_ratelimit rl_err;   /* retry warnings */
    struct cmn_ratelimit rl_evict; /* eviction warnings */
    uint32_t max_errors;           /* fwd__max_errors(&cfg) */
    uint32_t recovery;             /* errors forgiven per success */
    struct fwd_waiter space;       /* fwd_on_space */
    double (*rand01)(void);        /* test hook; NULL = drand48-like */
    uint64_t rng;                  /* xorshift state */
};

/* fwd_http.c: transport. fwd__http_init needs libcurl loaded. */
int fwd__http_init(struct fwd *f) CMN_MUST_CHECK;
/* Puts t on the wire. 0 or a negative error (t untouched). */
int fwd__http_send(struct fwd *f, struct fwd_txn *t) CMN_MUST_CHECK;
/* Removes t from the multi handle without completing it. */
void fwd__http_cancel(struct fwd *f, struct fwd_txn *t);
/* Releases t's curl resources (easy, headers, url). */
void fwd__http_release(struct fwd_txn *t);
/* Cleans up the multi handle and closes every socket poll handle. */
void fwd__http_shutdown(struct fwd *f);
/* Loads libcurl on the thread pool (on the loop's next iteration with
 * load_on_loop), then calls fwd__loaded. From fwd_start only. */
void fwd__http_load(struct fwd *f);
/* Cancels and frees every warm-start request on the wire. */
void fwd__http_cancel_warmups(struct fwd *f);
/* One warning per weakened protection, at creation (once per pipeline):
 * the API key travels in a header, so verification off or plain HTTP to
 * another host exposes it. */
void fwd__http_warn_insecure(const struct fwd_config *cfg);
/* True for an http:// URL whose host is not literally loopback
 * (localhost, 127.0.0.0/8, [::1]). */
bool fwd__url_is_plain_remote(const char *url);

/* fwd.c: called by the transport when a payload request ends. status is
 * the HTTP code (0 when none), res the CURLcode. */
void fwd__txn_done(struct fwd *f, struct fwd_txn *t, long status, CURLcode res);
/* Called by the transport once libcurl is usable (ok, http_ready set) or
 * cannot be (every queued transaction is then dropped). */
void fwd__loaded(struct fwd *f, bool ok);
/* Calls w's waiter, once, if there is one and ready(f) holds. */
void fwd__wake(struct fwd *f, struct fwd_waiter *w,
               bool (*ready)(const struct fwd *f));
/* Called when a handle owned by f finished closing. */
void fwd__handle_closed(struct fwd *f);
/* While stopping, schedules the end once nothing is queued or on the
 * wire. */
void fwd__maybe_finish_stop(struct fwd *f);
/* Copies the last 5 characters of key for log lines ("***abcde"). */
void fwd__redact(const char *key, char out[16]);

/* fwd_queue.c: the lists keep n, bytes and fresh_bytes. */
/* Inserts t in creation order, so the head is the oldest. */
void fwd__list_insert_sorted(struct fwd_txn_list *l, struct fwd_txn *t);
void fwd__list_push(struct fwd_txn_list *l, struct fwd_txn *t);
void fwd__list_remove(struct fwd_txn_list *l, struct fwd_txn *t);
/* Drops one reference; the last frees the payload. NULL is allowed. */
void fwd__body_unref(struct fwd_body *b);
/* Frees t, its curl resources and its body reference. */
void fwd__txn_free(struct fwd_txn *t);
/* Recomputes st.queued and st.queued_bytes over every endpoint. */
void fwd__queue_stats(struct fwd *f);
/* Adds t to its endpoint's queue, evicting the oldest attempted
 * transactions past the retry queue's byte cap or the memory budget. */
void fwd__enqueue(struct fwd *f, struct fwd_txn *t);
enum fwd_list {
    FWD_LIST_QUEUE, /* the endpoints' queues */
    FWD_LIST_WIRE   /* the requests on the wire, cancelled first */
};
/* Frees every transaction of the chosen lists, each counted once in
 * *counter (a field of f->st). */
void fwd__drain(struct fwd *f, enum fwd_list which, uint64_t *counter);
/* Wakes the waiter of fwd_on_space when there is room. */
void fwd__space_check(struct fwd *f);

/* fwd_retry.c */
/* What a finished request means for its transaction. */
enum fwd_outcome {
    FWD_OUT_DELIVERED, /* HTTP 1xx-3xx */
    FWD_OUT_REJECTED,  /* HTTP 400, 403, 413: dropped, endpoint healthy */
    FWD_OUT_INVALID,   /* the request cannot be sent (URL): dropped */
    FWD_OUT_RETRY      /* anything else: back in the queue */
};
enum fwd_outcome fwd__classify(long status, CURLcode res);
/* Counts t as dropped for status (400, 403, 413, or 0 for a request that
 * cannot be sent), logs why, and frees it. */
void fwd__drop(struct fwd *f, struct fwd_txn *t, long status);
/* Clamps backoff_factor to 2 as the Agent does, and sets max_errors,
 * recovery and the jitter's seed. From fwd_create. */
void fwd__retry_init(struct fwd *f);
/* May ep start a payload request now (concurrency, breaker)? */
bool fwd__ep_can_send(const struct fwd *f, const struct fwd_ep *ep,
                      uint64_t now);
/* The breaker's transitions on a healthy answer and on a retryable
 * error (fwd_retry.c's comment). */
void fwd__ep_success(struct fwd *f, struct fwd_ep *ep);
void fwd__ep_error(struct fwd *f, struct fwd_ep *ep);

/* The Agent's exponential backoff (pkg/util/backoff ExpBackoffPolicy, with
 * MinBackoffFactor = backoff_factor, BaseBackoffTime = backoff_base,
 * MaxBackoffTime = backoff_max). The wait after n errors, in seconds:
 * 0 for n = 0; else b = base * 2^n (the exponent's base is always 2, the
 * factor only sets the lower bound), max if b > max, otherwise uniform in
 * [b / factor, min(max, b)). r is uniform in [0, 1). */
double fwd__backoff_s(const struct fwd_config *cfg, uint32_t n, double r);
/* The error count cap: floor(log2(max / base)) + 1 (6 with the defaults
 * 64 / 2), 0 when max < base / 2 (the Agent then never blocks). */
uint32_t fwd__max_errors(const struct fwd_config *cfg);

/* fwd_config.c */
int fwd__config_copy(struct fwd_config *dst,
                     const struct fwd_config *src) CMN_MUST_CHECK;
#define FWD_URL_MAX 4096 /* bytes in an intake URL (DD_DD_URL, DD_SITE...) */
/* Version-prefixed rewrite of Datadog-owned app URLs (§3.5). Returns a new
 * string (cmn_malloc) or NULL on allocation failure. */
char *fwd__agent_url(const char *url) CMN_MUST_CHECK;

#endif /* DP_FWD_INTERNAL_H */
