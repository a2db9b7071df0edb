/*
 * fwd.c - transactions, per-endpoint queues, the circuit breaker with the
 * Agent's exponential backoff, the retry queue byte cap, and the draining
 * stop (spec/pipeline.md §3.6).
 *
 * Each submitted payload becomes one transaction per (endpoint, API key);
 * they share the payload body through a refcount. A transaction lives in
 * its endpoint's queue (oldest first) or on the wire, and ends exactly once
 * as delivered, dropped with a counted reason, or abandoned at the stop
 * deadline: nothing is dropped silently.
 *
 * Circuit breaker, per endpoint (the Agent keys it by domain + route; we
 * key it by domain), with the Agent's transitions: an error while closed
 * or half-open sets nerrors = min(nerrors + 1, max_errors) and blocks the
 * endpoint for fwd__backoff_s(nerrors) (the Agent's pkg/util/backoff
 * formula, for every setting); answers arriving while blocked are ignored;
 * once the time has passed it is half-open, with one probe on the wire
 * until it answers. A probe answered other than with a retryable error
 * forgives recovery_interval errors: at 0 the breaker closes, otherwise it
 * blocks again for the backoff of the errors left.
 */
#include <math.h>
#include <string.h>
#include <strings.h>

#include "fwd_internal.h"

/* ------------------------------------------------------------------------
 * Small helpers
 */

double fwd__backoff_s(const struct fwd_config *cfg, uint32_t n, double r)
{
    double b, lo, hi;

    if (n == 0)
        return 0;
    b = cfg->backoff_base * pow(2, (double)n);
    if (b > cfg->backoff_max)
        return cfg->backoff_max;
    lo = b / cfg->backoff_factor;
    hi = b; /* min(max, b): b <= max here */
    return lo + r * (hi - lo);
}

uint32_t fwd__max_errors(const struct fwd_config *cfg)
{
    double m = floor(log2(cfg->backoff_max / cfg->backoff_base)) + 1;

    /* bounded: max <= 86400 and base >= 0.001 (fwd_config_from_env) give
     * at most 27; the clamp guards programmatic configs */
    if (!(m > 0))
        return 0;
    return m > 64 ? 64 : (uint32_t)m;
}

void fwd__redact(const char *key, char out[16])
{
    size_t len = strlen(key);
    const char *tail = len > 5 ? key + len - 5 : key;

    /* the Agent shows "***************" + last 5; short keys show nothing */
    if (len <= 5)
        tail = "";
    memcpy(out, "***", 3);
    memcpy(out + 3, tail, strlen(tail) + 1);
}

static double rand01(struct fwd *f)
{
    uint64_t x;

    if (f->rand01 != NULL)
        return f->rand01();
    /* xorshift64*: jitter only, not security */
    x = f->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    f->rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

/* Inserts t in creation order (retries go back among their peers), so the
 * head is always the oldest transaction: the first sent and the first
 * evicted. */
static void list_insert_sorted(struct fwd_txn_list *l, struct fwd_txn *t)
{
    struct fwd_txn *after = l->tail;

    while (after != NULL && after->seq > t->seq)
        after = after->prev;
    t->prev = after;
    t->next = after != NULL ? after->next : l->head;
    if (t->next != NULL)
        t->next->prev = t;
    else
        l->tail = t;
    if (after != NULL)
        after->next = t;
    else
        l->head = t;
    l->n++;
    l->bytes += t->body->p->len;
    if (t->attempts == 0)
        l->fresh_bytes += t->body->p->len;
}

static void list_push(struct fwd_txn_list *l, struct fwd_txn *t)
{
    t->next = NULL;
    t->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    l->n++;
    l->bytes += t->body->p->len;
    if (t->attempts == 0)
        l->fresh_bytes += t->body->p->len;
}

static void list_remove(struct fwd_txn_list *l, struct fwd_txn *t)
{
    if (t->prev != NULL)
        t->prev->next = t->next;
    else
        l->head = t->next;
    if (t->next != NULL)
        t->next->prev = t->prev;
    else
        l->tail = t->prev;
    t->next = t->prev = NULL;
    l->n--;
    l->bytes -= t->body->p->len;
    if (t->attempts == 0)
        l->fresh_bytes -= t->body->p->len;
}

static void body_unref(struct fwd_body *b)
{
    if (b == NULL || --b->refs > 0)
        return;
    fwd_payload_free(b->p);
    cmn_free(b);
}

static void txn_free(struct fwd_txn *t)
{
    fwd__http_release(t);
    body_unref(t->body);
    cmn_free(t);
}

static void update_queue_stats(struct fwd *f)
{
    uint64_t n = 0, bytes = 0;

    for (size_t i = 0; i < f->neps; i++) {
        n += f->eps[i].queue.n;
        bytes += f->eps[i].queue.bytes;
    }
    f->st.queued = n;
    f->st.queued_bytes = bytes;
}

/* ------------------------------------------------------------------------
 * Dispatch
 */

static void maybe_finish_stop(struct fwd *f);
static void dispatch(struct fwd *f);

/* Idle for fwd_wait_idle: nothing on the wire, nothing never attempted. */
static bool is_idle(const struct fwd *f)
{
    if (f->state != FWD_RUNNING || f->load_failed)
        return true;
    for (size_t i = 0; i < f->neps; i++) {
        const struct fwd_ep *ep = &f->eps[i];
        if (ep->wire.n > 0)
            return false;
        for (const struct fwd_txn *t = ep->queue.head; t != NULL; t = t->next)
            if (t->attempts == 0)
                return false;
    }
    return true;
}

static void check_idle(struct fwd *f)
{
    if (f->idle_cb == NULL || !is_idle(f))
        return;
    fwd_idle_cb cb = f->idle_cb;
    f->idle_cb = NULL;
    cb(f->idle_data);
}

void fwd_wait_idle(struct fwd *f, fwd_idle_cb cb, void *data)
{
    f->idle_cb = cb;
    f->idle_data = data;
    check_idle(f);
}

static void retry_timer_cb(uv_timer_t *h)
{
    dispatch(h->data);
}

/* May ep start a payload request now? */
static bool ep_can_send(struct fwd *f, struct fwd_ep *ep, uint64_t now)
{
    if (ep->wire.n >= f->cfg.max_concurrent)
        return false;
    if (now < ep->blocked_until_ms)
        return false; /* blocked */
    if (!ep->tripped || f->state == FWD_STOPPING)
        return true;     /* closed, or draining: no probing */
    return !ep->probing; /* half-open: one probe */
}

static void dispatch(struct fwd *f)
{
    uint64_t now = uv_now(f->loop), wake = UINT64_MAX;

    if (f->state != FWD_RUNNING && f->state != FWD_STOPPING)
        return;
    if (!f->http_ready) {
        update_queue_stats(f);
        check_idle(f);
        return; /* load_after dispatches */
    }
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];

        while (ep->queue.head != NULL && ep_can_send(f, ep, now)) {
            struct fwd_txn *t = ep->queue.head;
            int rc;

            list_remove(&ep->queue, t);
            rc = fwd__http_send(f, t);
            if (rc != 0) {
                /* local failure (memory): try again shortly */
                list_insert_sorted(&ep->queue, t);
                ep->blocked_until_ms = now + FWD_STOP_RETRY_MS;
                CMN_LOGW(FWD_COMP, "cannot start a request to %s: %s", ep->url,
                         cmn_strerror(rc));
                break;
            }
            t->attempts++;
            if (ep->tripped)
                ep->probing = true;
            list_push(&ep->wire, t);
            f->st.inflight++;
        }
        if (ep->queue.head != NULL && ep->blocked_until_ms > now &&
            ep->blocked_until_ms < wake)
            wake = ep->blocked_until_ms;
    }
    update_queue_stats(f);
    if (wake != UINT64_MAX)
        uv_timer_start(&f->retry_timer, retry_timer_cb, wake - now, 0);
    else
        uv_timer_stop(&f->retry_timer);
    check_idle(f);
}

/* The oldest transaction of l that was attempted at least once, or NULL.
 * O(n) in the worst case, with n bounded by the queue's byte caps. */
static struct fwd_txn *oldest_attempted(const struct fwd_txn_list *l)
{
    struct fwd_txn *t = l->head;

    while (t != NULL && t->attempts == 0)
        t = t->next;
    return t;
}

static void evict(struct fwd *f, struct fwd_ep *ep, struct fwd_txn *old,
                  const char *why)
{
    list_remove(&ep->queue, old);
    f->st.dropped_evicted++;
    cmn_log_rl(&f->rl_evict, CMN_LOG_WARN, FWD_COMP,
               "%s for %s: dropped the oldest retried payload (%s, %zu "
               "bytes, %u attempts)",
               why, ep->url, old->body->p->route, old->body->p->len,
               old->attempts);
    txn_free(old);
}

/* Adds t to its endpoint's queue. Past the retry queue's byte cap (§3.6),
 * counted over the transactions already attempted, or past the memory
 * budget's eviction step, the oldest attempted transactions are evicted.
 * A transaction that was never attempted is never evicted: back-pressure
 * on the serializer (fwd_is_full) bounds those instead. */
static void enqueue(struct fwd *f, struct fwd_txn *t)
{
    struct fwd_ep *ep = t->ep;
    struct fwd_txn *old;

    list_insert_sorted(&ep->queue, t);
    while (ep->queue.bytes - ep->queue.fresh_bytes >
               f->cfg.retry_queue_max_bytes &&
           (old = oldest_attempted(&ep->queue)) != NULL)
        evict(f, ep, old, "retry queue over its byte cap");
    while (cmn_budget_over(CMN_BUDGET_EVICT_RETRY) &&
           (old = oldest_attempted(&ep->queue)) != NULL) {
        cmn_budget_note(CMN_BUDGET_EVICT_RETRY);
        evict(f, ep, old, "memory budget");
    }
}

/* ------------------------------------------------------------------------
 * Back-pressure
 */

/* The most bytes of never-attempted and on-the-wire transactions before
 * the serializer waits: a quarter of the memory budget, and never more
 * than the retry queue's byte cap. */
static size_t queue_share(const struct fwd *f)
{
    size_t lim = cmn_budget_limit() / 4, cap = f->cfg.retry_queue_max_bytes;

    return lim != 0 && lim < cap ? lim : cap;
}

bool fwd_is_full(const struct fwd *f)
{
    size_t share;

    if (f->state != FWD_RUNNING || f->neps == 0 || f->load_failed)
        return false; /* nothing will wait for these: never hold data */
    share = queue_share(f);
    for (size_t i = 0; i < f->neps; i++) {
        const struct fwd_ep *ep = &f->eps[i];
        if (ep->queue.fresh_bytes + ep->wire.bytes >= share)
            return true;
    }
    return false;
}

/* Wakes the waiter of fwd_on_space when there is room. */
static void space_check(struct fwd *f)
{
    fwd_space_cb cb = f->space_cb;

    if (cb == NULL || fwd_is_full(f))
        return;
    f->space_cb = NULL;
    cb(f->space_data);
}

void fwd_on_space(struct fwd *f, fwd_space_cb cb, void *data)
{
    f->space_cb = cb;
    f->space_data = data;
    space_check(f);
}

bool fwd_sink_full(void *fwd)
{
    return fwd_is_full(fwd);
}

void fwd_sink_on_space(void *fwd, fwd_space_cb cb, void *data)
{
    fwd_on_space(fwd, cb, data);
}

/* ------------------------------------------------------------------------
 * Completion (called from the transport)
 */

/* Blocks ep for the backoff of its error count (promptly while draining:
 * the stop deadline bounds the retries). */
static void ep_block(struct fwd *f, struct fwd_ep *ep, uint64_t now)
{
    uint64_t wait_ms =
        (uint64_t)(fwd__backoff_s(&f->cfg, ep->nerrors, rand01(f)) * 1000.0);

    if (f->state == FWD_STOPPING)
        wait_ms = FWD_STOP_RETRY_MS;
    ep->blocked_until_ms = now + wait_ms;
}

/* The Agent's circuit breaker (blocked_endpoints.go): a success while
 * closed changes nothing; while blocked it is ignored (the request may
 * have left before the error that blocked the endpoint); the half-open
 * probe's success forgives recovery errors, closing the breaker at 0 and
 * blocking again for the backoff of what is left otherwise. */
static void ep_success(struct fwd *f, struct fwd_ep *ep)
{
    uint64_t now = uv_now(f->loop);
    uint32_t r = f->recovery;

    if (!ep->tripped || now < ep->blocked_until_ms)
        return;
    ep->nerrors = ep->nerrors > r ? ep->nerrors - r : 0;
    if (ep->nerrors == 0) {
        ep->tripped = false;
        ep->blocked_until_ms = 0;
        return;
    }
    ep_block(f, ep, now);
}

/* An error while closed or half-open counts (up to max_errors) and blocks
 * for the backoff; one while already blocked is ignored, as in the Agent:
 * it comes from a request sent before the breaker opened. */
static void ep_error(struct fwd *f, struct fwd_ep *ep)
{
    uint64_t now = uv_now(f->loop);

    if (ep->tripped && now < ep->blocked_until_ms)
        return;
    if (ep->nerrors < f->max_errors)
        ep->nerrors++;
    ep->tripped = true;
    ep_block(f, ep, now);
}

static void warmup_done(struct fwd *f, struct fwd_txn *t, long status,
                        CURLcode res)
{
    char red[16];

    t->ep->warmup = NULL;
    fwd__redact(t->ep->keys[t->key], red);
    if (res != CURLE_OK)
        CMN_LOGD(FWD_COMP, "warm start to %s failed: %s", t->ep->url,
                 t->errbuf[0] ? t->errbuf : curl_easy_strerror(res));
    else if (status == 403)
        CMN_LOGW(FWD_COMP, "API key %s rejected by %s/api/v1/validate", red,
                 t->ep->url);
    else
        CMN_LOGD(FWD_COMP, "warm start to %s done (HTTP %ld)", t->ep->url,
                 status);
    fwd__http_release(t);
    cmn_free(t);
}

static void drop(struct fwd *f, struct fwd_txn *t, long status)
{
    const struct fwd_payload *p = t->body->p;
    char red[16];

    fwd__redact(t->ep->keys[t->key], red);
    switch (status) {
    case 400:
        f->st.dropped_400++;
        CMN_LOGE(FWD_COMP,
                 "%s%s answered 400 Bad Request: payload dropped "
                 "(%zu bytes)",
                 t->ep->url, p->route, p->len);
        break;
    case 413:
        f->st.dropped_413++;
        CMN_LOGE(FWD_COMP,
                 "%s%s answered 413 Payload Too Large: payload "
                 "dropped (%zu bytes)",
                 t->ep->url, p->route, p->len);
        break;
    case 403:
        f->st.dropped_403++;
        CMN_LOGE(FWD_COMP,
                 "%s%s answered 403 Forbidden: API key %s was "
                 "rejected; payload dropped (%zu bytes)",
                 t->ep->url, p->route, red, p->len);
        break;
    default:
        f->st.dropped_other++;
        CMN_LOGE(FWD_COMP,
                 "%s%s: request cannot be sent (%s): payload "
                 "dropped",
                 t->ep->url, p->route,
                 t->errbuf[0] ? t->errbuf : "invalid request");
        break;
    }
    txn_free(t);
}

void fwd__txn_done(struct fwd *f, struct fwd_txn *t, long status, CURLcode res)
{
    struct fwd_ep *ep = t->ep;

    if (t->warmup) {
        warmup_done(f, t, status, res);
        maybe_finish_stop(f);
        return;
    }
    list_remove(&ep->wire, t);
    f->st.inflight--;
    ep->probing = false;
    fwd__http_release(t);
    if (res == CURLE_OK && status > 0 && status < 400) {
        f->st.delivered++;
        f->st.bytes_sent += t->body->p->len;
        CMN_LOGD(FWD_COMP, "%s%s: HTTP %ld, %zu bytes", ep->url,
                 t->body->p->route, status, t->body->p->len);
        ep_success(f, ep);
        txn_free(t);
    } else if (res == CURLE_OK &&
               (status == 400 || status == 403 || status == 413)) {
        /* the intake answered: the endpoint itself is healthy */
        ep_success(f, ep);
        drop(f, t, status);
    } else if (res == CURLE_URL_MALFORMAT ||
               res == CURLE_UNSUPPORTED_PROTOCOL) {
        drop(f, t, 0);
    } else {
        f->st.retried++;
        if (res != CURLE_OK)
            cmn_log_rl(&f->rl_err, CMN_LOG_WARN, FWD_COMP,
                       "%s%s failed: %s; will retry (attempt %u)", ep->url,
                       t->body->p->route,
                       t->errbuf[0] ? t->errbuf : curl_easy_strerror(res),
                       t->attempts);
        else
            cmn_log_rl(&f->rl_err, CMN_LOG_WARN, FWD_COMP,
                       "%s%s answered HTTP %ld; will retry (attempt %u)",
                       ep->url, t->body->p->route, status, t->attempts);
        ep_error(f, ep);
        enqueue(f, t);
    }
    dispatch(f);
    maybe_finish_stop(f);
    space_check(f);
}

/* ------------------------------------------------------------------------
 * Public API
 */

bool fwd__url_is_plain_remote(const char *url)
{
    static const char *const loopback[] = {"localhost", "[::1]", "127."};
    const char *host = url + 7;

    if (strncasecmp(url, "http://", 7) != 0)
        return false;
    for (size_t i = 0; i < sizeof(loopback) / sizeof(loopback[0]); i++) {
        size_t n = strlen(loopback[i]);
        if (strncasecmp(host, loopback[i], n) != 0)
            continue;
        /* a whole host: "localhost.example.com" or "127.evil.com" is not
         * loopback; 127.x.y.z must be digits and dots */
        const char *p = host + n;
        if (loopback[i][n - 1] == '.')
            p += strspn(p, "0123456789.");
        if (*p == '\0' || *p == ':' || *p == '/')
            return false;
    }
    return true;
}

/* One warning per weakened protection, at creation (once per pipeline):
 * the API key travels in a header, so verification off or plain HTTP to
 * another host exposes it. */
static void fwd_warn_insecure(const struct fwd_config *cfg)
{
    if (cfg->skip_ssl_validation && cfg->nendpoints > 0)
        CMN_LOGW(FWD_COMP, "TLS certificate verification is off "
                           "(DD_SKIP_SSL_VALIDATION): the intake's identity "
                           "is not checked");
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        if (fwd__url_is_plain_remote(cfg->endpoints[i].url))
            CMN_LOGW(FWD_COMP,
                     "intake URL %s is plain http:// to a host that is not "
                     "loopback: the API key and the payloads travel "
                     "unencrypted",
                     cfg->endpoints[i].url);
    }
}

int fwd_create(uv_loop_t *loop, const struct fwd_config *cfg, struct fwd **out)
{
    struct fwd *f;
    int rc;

    *out = NULL;
    f = cmn_calloc(1, sizeof(*f));
    if (f == NULL)
        return UV_ENOMEM;
    f->loop = loop;
    f->rng = cmn_mono_ns() | 1;
    f->rl_err = (struct cmn_ratelimit)CMN_RATELIMIT_INIT(10000, 10);
    f->rl_evict = (struct cmn_ratelimit)CMN_RATELIMIT_INIT(10000, 10);
    rc = fwd__config_copy(&f->cfg, cfg);
    if (rc != 0)
        goto out_free;
    if (f->cfg.max_concurrent == 0)
        f->cfg.max_concurrent = 1;
    if (f->cfg.backoff_factor < 2) {
        /* as the Agent's forwarder (blocked_endpoints.go) */
        CMN_LOGW(FWD_COMP,
                 "forwarder_backoff_factor %g is less than 2; 2 is used",
                 f->cfg.backoff_factor);
        f->cfg.backoff_factor = 2;
    }
    fwd_warn_insecure(&f->cfg);
    f->max_errors = fwd__max_errors(&f->cfg);
    f->recovery =
        f->cfg.recovery_reset ? f->max_errors : f->cfg.recovery_interval;
    if (f->cfg.nendpoints > 0) {
        f->eps = cmn_calloc(f->cfg.nendpoints, sizeof(*f->eps));
        if (f->eps == NULL) {
            rc = UV_ENOMEM;
            goto out_cfg;
        }
    }
    f->neps = f->cfg.nendpoints;
    for (size_t i = 0; i < f->neps; i++) {
        f->eps[i].url = f->cfg.endpoints[i].url;
        f->eps[i].keys = f->cfg.endpoints[i].keys;
        f->eps[i].nkeys = f->cfg.endpoints[i].nkeys;
    }
    f->state = FWD_CREATED;
    *out = f;
    return 0;

out_cfg:
    fwd_config_free(&f->cfg);
out_free:
    cmn_free(f);
    return rc;
}

static void warm_start(struct fwd *f)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];
        struct fwd_txn *t;

        if (ep->nkeys == 0)
            continue;
        t = cmn_calloc(1, sizeof(*t));
        if (t == NULL)
            return; /* optional: nothing waits for it */
        t->f = f;
        t->ep = ep;
        t->warmup = true;
        if (fwd__http_send(f, t) != 0) {
            cmn_free(t);
            continue;
        }
        ep->warmup = t;
    }
}

/* Thread pool: the blocking part of start-up (see fwd_curl.c). */
static void load_work(uv_work_t *req)
{
    int rc = fwd__curl_load(); /* the result is read again in load_after */
    (void)rc;
}

/* Drops every queued transaction: libcurl cannot be used. */
static void drop_all_queued(struct fwd *f)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];
        while (ep->queue.head != NULL) {
            struct fwd_txn *t = ep->queue.head;
            list_remove(&ep->queue, t);
            f->st.dropped_other++;
            txn_free(t);
        }
    }
    update_queue_stats(f);
    check_idle(f);
    space_check(f);
}

/* Loop thread, once libcurl is loaded (or not). load_req counts as an open
 * handle so the stop callback, and with it fwd_destroy, waits for it. */
static void load_after(uv_work_t *req, int status)
{
    struct fwd *f = req->data;
    int lrc = status != 0 ? status : fwd__curl_load();
    if (lrc == 0)
        lrc = fwd__curl_global_init();
    int rc = lrc;

    f->loading = false;
    cmn_checkpoint_log(FWD_COMP, "load", "libcurl",
                       cmn_mono_ns() - f->load_begin_ns);
    if (f->state == FWD_RUNNING || f->state == FWD_STOPPING) {
        if (rc == 0)
            rc = fwd__http_init(f);
        if (rc == 0) {
            f->http_ready = true;
            CMN_LOGD(FWD_COMP, "libcurl loaded");
            if (f->cfg.warm_start && f->state == FWD_RUNNING)
                warm_start(f);
            dispatch(f);
        } else {
            f->load_failed = true;
            CMN_LOGE(FWD_COMP,
                     "cannot use libcurl (%s): payloads cannot be sent and "
                     "are dropped",
                     lrc != 0 && status == 0 ? fwd__curl_load_error()
                                             : cmn_strerror(rc));
            drop_all_queued(f);
        }
        maybe_finish_stop(f);
    }
    fwd__handle_closed(f);
}

/* Queues the libcurl load on the thread pool, from fwd_start: as early as
 * possible, since a short job's final flush waits for it. (serverless-init
 * starts the forwarder after it spawned the child, so the load overlaps
 * the child's start; deferring it to the first loop iteration, as before,
 * only made the flush wait longer: measured in bench/coldstart.) */
static void load_kick(struct fwd *f)
{
    f->load_begin_ns = cmn_mono_ns();
    fwd__curl_choose();
    f->load_req.data = f;
    if (uv_queue_work(f->loop, &f->load_req, load_work, load_after) != 0) {
        f->load_failed = true;
        CMN_LOGE(FWD_COMP, "cannot queue the libcurl load: payloads are "
                           "dropped");
        drop_all_queued(f);
        maybe_finish_stop(f);
        return;
    }
    f->loading = true;
    f->handles_open++;
}

static void load_kick_cb(uv_timer_t *t)
{
    load_kick(t->data);
}

int fwd_start(struct fwd *f)
{
    if (f->state != FWD_CREATED)
        return UV_EINVAL;
    uv_timer_init(f->loop, &f->curl_timer);
    uv_timer_init(f->loop, &f->retry_timer);
    uv_timer_init(f->loop, &f->stop_timer);
    f->curl_timer.data = f->retry_timer.data = f->stop_timer.data = f;
    f->handles_open += 3;
    f->state = FWD_RUNNING;
    if (f->neps == 0)
        CMN_LOGW(FWD_COMP, "no endpoint configured: payloads are dropped");
    else if (f->cfg.load_on_loop) /* curl_timer is idle until then */
        uv_timer_start(&f->curl_timer, load_kick_cb, 0, 0);
    else
        load_kick(f);
    return 0;
}

bool fwd_is_ready(const struct fwd *f)
{
    return f->http_ready;
}

int fwd_submit(struct fwd *f, struct fwd_payload *p)
{
    struct fwd_body *b;

    if (p == NULL)
        return UV_EINVAL;
    if (f->state != FWD_RUNNING) {
        f->st.dropped_stopped++;
        cmn_log_rl(&f->rl_err, CMN_LOG_WARN, FWD_COMP,
                   "payload for %s submitted after stop: dropped", p->route);
        fwd_payload_free(p);
        return CMN_ESTOPPED;
    }
    f->st.submitted++;
    if (f->neps == 0 || f->load_failed) {
        f->st.dropped_other++;
        fwd_payload_free(p);
        return 0;
    }
    b = cmn_calloc(1, sizeof(*b));
    if (b == NULL) {
        /* counted as one dropped transaction per (endpoint, key) */
        for (size_t i = 0; i < f->neps; i++) {
            f->st.transactions += f->eps[i].nkeys;
            f->st.dropped_other += f->eps[i].nkeys;
        }
        cmn_log_rl(&f->rl_err, CMN_LOG_ERROR, FWD_COMP,
                   "out of memory: payload for %s dropped", p->route);
        fwd_payload_free(p);
        return UV_ENOMEM;
    }
    b->p = p;
    b->refs = 1; /* held by this function until the end */
    for (size_t i = 0; i < f->neps; i++) {
        for (size_t k = 0; k < f->eps[i].nkeys; k++) {
            struct fwd_txn *t = cmn_calloc(1, sizeof(*t));
            f->st.transactions++;
            if (t == NULL) {
                f->st.dropped_other++;
                cmn_log_rl(&f->rl_err, CMN_LOG_ERROR, FWD_COMP,
                           "out of memory: payload for %s dropped",
                           f->eps[i].url);
                continue;
            }
            t->f = f;
            t->ep = &f->eps[i];
            t->key = k;
            t->body = b;
            t->seq = ++f->seq;
            b->refs++;
            enqueue(f, t);
        }
    }
    body_unref(b);
    dispatch(f);
    return 0;
}

void fwd_sink_submit(void *data, struct fwd_payload *p)
{
    (void)fwd_submit(data, p);
}

/* ------------------------------------------------------------------------
 * Stop
 */

static void close_cb(uv_handle_t *h)
{
    fwd__handle_closed(h->data);
}

void fwd__handle_closed(struct fwd *f)
{
    if (--f->handles_open > 0 || f->state != FWD_CLOSING)
        return;
    f->state = FWD_STOPPED;
    if (f->stop_cb != NULL)
        f->stop_cb(f->stop_data);
}

static void cancel_warmups(struct fwd *f)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_txn *t = f->eps[i].warmup;
        if (t == NULL)
            continue;
        fwd__http_cancel(f, t);
        fwd__http_release(t);
        cmn_free(t);
        f->eps[i].warmup = NULL;
    }
}

/* Cancels every payload request on the wire: each counts as abandoned. */
static void cancel_inflight(struct fwd *f)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];
        while (ep->wire.head != NULL) {
            struct fwd_txn *t = ep->wire.head;
            list_remove(&ep->wire, t);
            fwd__http_cancel(f, t);
            f->st.inflight--;
            f->st.abandoned++;
            txn_free(t);
        }
        ep->probing = false;
    }
}

static void abandon_queued(struct fwd *f)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];
        while (ep->queue.head != NULL) {
            struct fwd_txn *t = ep->queue.head;
            list_remove(&ep->queue, t);
            f->st.abandoned++;
            txn_free(t);
        }
    }
    update_queue_stats(f);
}

/* Runs on stop_timer: either the deadline or "drained" (timeout 0). Never
 * inside a curl callback, so the multi handle may be cleaned up here. */
static void finish_cb(uv_timer_t *h)
{
    struct fwd *f = h->data;
    const struct fwd_stats *s = &f->st;

    uint64_t before;

    if (f->state != FWD_STOPPING)
        return;
    before = s->abandoned;
    cancel_warmups(f);
    cancel_inflight(f);
    abandon_queued(f);
    if (s->abandoned > before)
        CMN_LOGW(FWD_COMP,
                 "stop deadline reached: %llu transactions not "
                 "delivered, abandoned",
                 (unsigned long long)(s->abandoned - before));
    f->state = FWD_CLOSING;
    CMN_LOGI(
        FWD_COMP,
        "forwarder stopped: delivered=%llu dropped(400=%llu,403=%llu,"
        "413=%llu,evicted=%llu,stopped=%llu,other=%llu) abandoned=%llu",
        (unsigned long long)s->delivered, (unsigned long long)s->dropped_400,
        (unsigned long long)s->dropped_403, (unsigned long long)s->dropped_413,
        (unsigned long long)s->dropped_evicted,
        (unsigned long long)s->dropped_stopped,
        (unsigned long long)s->dropped_other, (unsigned long long)s->abandoned);
    fwd__http_shutdown(f);
    space_check(f); /* a waiter's payloads now count as dropped_stopped */
    uv_close((uv_handle_t *)&f->curl_timer, close_cb);
    uv_close((uv_handle_t *)&f->retry_timer, close_cb);
    uv_close((uv_handle_t *)&f->stop_timer, close_cb);
}

static void maybe_finish_stop(struct fwd *f)
{
    if (f->state != FWD_STOPPING || f->finishing)
        return;
    for (size_t i = 0; i < f->neps; i++) {
        const struct fwd_ep *ep = &f->eps[i];
        if (ep->queue.n > 0 || ep->wire.n > 0 || ep->warmup != NULL)
            return;
    }
    f->finishing = true;
    uv_timer_start(&f->stop_timer, finish_cb, 0, 0);
}

void fwd_stop(struct fwd *f, uint64_t deadline_ms, fwd_stopped_cb cb,
              void *data)
{
    uint64_t budget = (uint64_t)(f->cfg.stop_timeout_s * 1000.0);

    if (f->state == FWD_CREATED) {
        /* never started: no handle to close */
        f->state = FWD_STOPPED;
        if (cb != NULL)
            cb(data);
        return;
    }
    if (f->state != FWD_RUNNING) {
        CMN_LOGW(FWD_COMP, "fwd_stop called twice: ignored");
        return;
    }
    f->state = FWD_STOPPING;
    f->stop_cb = cb;
    f->stop_data = data;
    if (deadline_ms < budget)
        budget = deadline_ms;
    /* the loop's cached time may be stale (a long callback ran before this
     * one): count the budget from now, so the deadline is never early */
    uv_update_time(f->loop);
    f->stop_deadline_ms = uv_now(f->loop) + budget;
    CMN_LOGD(FWD_COMP,
             "stopping: %llu transactions queued, %llu in flight, "
             "%llu ms to drain",
             (unsigned long long)f->st.queued,
             (unsigned long long)f->st.inflight, (unsigned long long)budget);
    cancel_warmups(f);
    space_check(f); /* never full once stop began */
    if (!f->cfg.stop_wait_for_inflight && f->st.inflight > 0) {
        CMN_LOGI(FWD_COMP,
                 "stopping: cancelled %llu in-flight requests "
                 "(forwarder_stop_wait_for_inflight is off)",
                 (unsigned long long)f->st.inflight);
        cancel_inflight(f);
    }
    for (size_t i = 0; i < f->neps; i++) {
        f->eps[i].blocked_until_ms = 0; /* drain now: no backoff wait */
        f->eps[i].probing = false;
    }
    uv_timer_start(&f->stop_timer, finish_cb, budget, 0);
    dispatch(f);
    maybe_finish_stop(f);
}

void fwd_destroy(struct fwd *f)
{
    if (f == NULL)
        return;
    if (f->state != FWD_CREATED && f->state != FWD_STOPPED) {
        CMN_LOGE(FWD_COMP, "fwd_destroy before the stop callback: leaked");
        return;
    }
    cmn_free(f->eps);
    fwd_config_free(&f->cfg);
    cmn_free(f);
}

void fwd_get_stats(const struct fwd *f, struct fwd_stats *out)
{
    *out = f->st;
}
