/*
 * fwd.c - the forwarder's component: transactions from submission to their
 * end, dispatch onto the wire, the completion of each request, waiting for
 * idle, and the draining stop (spec/pipeline.md §3.6).
 *
 * Each submitted payload becomes one transaction per (endpoint, API key);
 * they share the payload body through a refcount. A transaction lives in
 * its endpoint's queue (oldest first) or on the wire, and ends exactly once
 * as delivered, dropped with a counted reason, or abandoned at the stop
 * deadline: nothing is dropped silently.
 *
 * The parts: fwd_queue.c (lists, retry queue cap and eviction,
 * back-pressure), fwd_retry.c (which answers retry, backoff, circuit
 * breaker), fwd_http.c (libcurl load, multi handle, requests, warm start).
 */
#include <string.h>

#include "fwd_internal.h"

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

/* ------------------------------------------------------------------------
 * Dispatch
 */

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

void fwd__wake(struct fwd *f, struct fwd_waiter *w,
               bool (*ready)(const struct fwd *f))
{
    void (*cb)(void *) = w->cb;

    if (cb == NULL || !ready(f))
        return;
    w->cb = NULL; /* before the call: cb may wait again */
    cb(w->data);
}

static void check_idle(struct fwd *f)
{
    fwd__wake(f, &f->idle, is_idle);
}

void fwd_wait_idle(struct fwd *f, fwd_idle_cb cb, void *data)
{
    f->idle = (struct fwd_waiter){cb, data};
    check_idle(f);
}

static void retry_timer_cb(uv_timer_t *h)
{
    dispatch(h->data);
}

static void dispatch(struct fwd *f)
{
    uint64_t now = uv_now(f->loop), wake = UINT64_MAX;

    if (f->state != FWD_RUNNING && f->state != FWD_STOPPING)
        return;
    if (!f->http_ready) {
        fwd__queue_stats(f);
        check_idle(f);
        return; /* load_after dispatches */
    }
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];

        while (ep->queue.head != NULL && fwd__ep_can_send(f, ep, now)) {
            struct fwd_txn *t = ep->queue.head;
            int rc;

            fwd__list_remove(&ep->queue, t);
            rc = fwd__http_send(f, t);
            if (rc != 0) {
                /* local failure (memory): try again shortly */
                fwd__list_insert_sorted(&ep->queue, t);
                ep->blocked_until_ms = now + FWD_STOP_RETRY_MS;
                CMN_LOGW(FWD_COMP, "cannot start a request to %s: %s", ep->url,
                         cmn_strerror(rc));
                break;
            }
            t->attempts++;
            if (ep->tripped)
                ep->probing = true;
            fwd__list_push(&ep->wire, t);
            f->st.inflight++;
        }
        if (ep->queue.head != NULL && ep->blocked_until_ms > now &&
            ep->blocked_until_ms < wake)
            wake = ep->blocked_until_ms;
    }
    fwd__queue_stats(f);
    if (wake != UINT64_MAX)
        uv_timer_start(&f->retry_timer, retry_timer_cb, wake - now, 0);
    else
        uv_timer_stop(&f->retry_timer);
    check_idle(f);
}

/* ------------------------------------------------------------------------
 * Completion (called from the transport)
 */

void fwd__txn_done(struct fwd *f, struct fwd_txn *t, long status, CURLcode res)
{
    struct fwd_ep *ep = t->ep;

    fwd__list_remove(&ep->wire, t);
    f->st.inflight--;
    ep->probing = false;
    fwd__http_release(t);
    switch (fwd__classify(status, res)) {
    case FWD_OUT_DELIVERED:
        f->st.delivered++;
        f->st.bytes_sent += t->body->p->len;
        CMN_LOGD(FWD_COMP, "%s%s: HTTP %ld, %zu bytes", ep->url,
                 t->body->p->route, status, t->body->p->len);
        fwd__ep_success(f, ep);
        fwd__txn_free(t);
        break;
    case FWD_OUT_REJECTED:
        /* the intake answered: the endpoint itself is healthy */
        fwd__ep_success(f, ep);
        fwd__drop(f, t, status);
        break;
    case FWD_OUT_INVALID:
        fwd__drop(f, t, 0);
        break;
    case FWD_OUT_RETRY:
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
        fwd__ep_error(f, ep);
        fwd__enqueue(f, t);
        break;
    }
    dispatch(f);
    fwd__maybe_finish_stop(f);
    fwd__space_check(f);
}

/* ------------------------------------------------------------------------
 * Public API
 */

int fwd_create(uv_loop_t *loop, const struct fwd_config *cfg, struct fwd **out)
{
    struct fwd *f;
    int rc;

    *out = NULL;
    f = cmn_calloc(1, sizeof(*f));
    if (f == NULL)
        return UV_ENOMEM;
    f->loop = loop;
    f->rl_err = (struct cmn_ratelimit)CMN_RATELIMIT_INIT(10000, 10);
    f->rl_evict = (struct cmn_ratelimit)CMN_RATELIMIT_INIT(10000, 10);
    rc = fwd__config_copy(&f->cfg, cfg);
    if (rc != 0)
        goto out_free;
    if (f->cfg.max_concurrent == 0)
        f->cfg.max_concurrent = 1;
    fwd__retry_init(f);
    fwd__http_warn_insecure(&f->cfg);
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
    else
        fwd__http_load(f);
    return 0;
}

void fwd__loaded(struct fwd *f, bool ok)
{
    if (ok) {
        dispatch(f);
    } else {
        /* libcurl cannot be used: every queued transaction is dropped */
        f->load_failed = true;
        fwd__drain(f, FWD_LIST_QUEUE, &f->st.dropped_other);
        check_idle(f);
        fwd__space_check(f);
    }
    fwd__maybe_finish_stop(f);
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
            fwd__enqueue(f, t);
        }
    }
    fwd__body_unref(b);
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
    fwd__http_cancel_warmups(f);
    fwd__drain(f, FWD_LIST_WIRE, &f->st.abandoned);
    fwd__drain(f, FWD_LIST_QUEUE, &f->st.abandoned);
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
    fwd__space_check(f); /* a waiter's payloads now count as dropped_stopped */
    uv_close((uv_handle_t *)&f->curl_timer, close_cb);
    uv_close((uv_handle_t *)&f->retry_timer, close_cb);
    uv_close((uv_handle_t *)&f->stop_timer, close_cb);
}

void fwd__maybe_finish_stop(struct fwd *f)
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

void fwd_stop(struct fwd *f, struct cmn_deadline dl, fwd_stopped_cb cb,
              void *data)
{
    uint64_t budget = (uint64_t)(f->cfg.stop_timeout_s * 1000.0);
    uint64_t left = cmn_deadline_remaining_ms(dl);

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
    if (left < budget)
        budget = left;
    /* the loop's cached time may be stale (a long callback ran before this
     * one): count the budget from now, so the deadline is never early */
    uv_update_time(f->loop);
    CMN_LOGD(FWD_COMP,
             "stopping: %llu transactions queued, %llu in flight, "
             "%llu ms to drain",
             (unsigned long long)f->st.queued,
             (unsigned long long)f->st.inflight, (unsigned long long)budget);
    fwd__http_cancel_warmups(f);
    fwd__space_check(f); /* never full once stop began */
    if (!f->cfg.stop_wait_for_inflight && f->st.inflight > 0) {
        CMN_LOGI(FWD_COMP,
                 "stopping: cancelled %llu in-flight requests "
                 "(forwarder_stop_wait_for_inflight is off)",
                 (unsigned long long)f->st.inflight);
        fwd__drain(f, FWD_LIST_WIRE, &f->st.abandoned);
    }
    for (size_t i = 0; i < f->neps; i++) {
        f->eps[i].blocked_until_ms = 0; /* drain now: no backoff wait */
        f->eps[i].probing = false;
    }
    uv_timer_start(&f->stop_timer, finish_cb, budget, 0);
    dispatch(f);
    fwd__maybe_finish_stop(f);
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
