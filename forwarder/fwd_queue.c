/*
 * fwd_queue.c - the forwarder's transaction lists, the retry queue's byte
 * cap and eviction, and back-pressure on the serializer (spec/pipeline.md
 * §3.6).
 *
 * A transaction is in exactly one list at a time: its endpoint's queue
 * (waiting, oldest first) or its wire list (on the wire). Each list keeps
 * its count and bytes, and the bytes of the transactions never attempted
 * (fresh_bytes): those are never evicted, back-pressure bounds them.
 */
#include "fwd_internal.h"

/* Counts t into l's totals (add) or out of them. */
static void list_count(struct fwd_txn_list *l, const struct fwd_txn *t,
                       bool add)
{
    size_t len = t->body->p->len;

    if (add) {
        l->n++;
        l->bytes += len;
        if (t->attempts == 0)
            l->fresh_bytes += len;
        return;
    }
    l->n--;
    l->bytes -= len;
    if (t->attempts == 0)
        l->fresh_bytes -= len;
}

/* Inserts t in creation order (retries go back among their peers), so the
 * head is always the oldest transaction: the first sent and the first
 * evicted. */
void fwd__list_insert_sorted(struct fwd_txn_list *l, struct fwd_txn *t)
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
    list_count(l, t, true);
}

void fwd__list_push(struct fwd_txn_list *l, struct fwd_txn *t)
{
    t->next = NULL;
    t->prev = l->tail;
    if (l->tail != NULL)
        l->tail->next = t;
    else
        l->head = t;
    l->tail = t;
    list_count(l, t, true);
}

void fwd__list_remove(struct fwd_txn_list *l, struct fwd_txn *t)
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
    list_count(l, t, false);
}

void fwd__body_unref(struct fwd_body *b)
{
    if (b == NULL || --b->refs > 0)
        return;
    fwd_payload_free(b->p);
    cmn_free(b);
}

void fwd__txn_free(struct fwd_txn *t)
{
    fwd__http_release(t);
    fwd__body_unref(t->body);
    cmn_free(t);
}

void fwd__queue_stats(struct fwd *f)
{
    uint64_t n = 0, bytes = 0;

    for (size_t i = 0; i < f->neps; i++) {
        n += f->eps[i].queue.n;
        bytes += f->eps[i].queue.bytes;
    }
    f->st.queued = n;
    f->st.queued_bytes = bytes;
}

/* The one loop that empties lists: every endpoint's queue, or every
 * endpoint's wire list (each request is then taken off the multi handle
 * first). Each transaction ends counted once in *counter. */
void fwd__drain(struct fwd *f, enum fwd_list which, uint64_t *counter)
{
    for (size_t i = 0; i < f->neps; i++) {
        struct fwd_ep *ep = &f->eps[i];
        struct fwd_txn_list *l =
            which == FWD_LIST_WIRE ? &ep->wire : &ep->queue;

        while (l->head != NULL) {
            struct fwd_txn *t = l->head;

            fwd__list_remove(l, t);
            if (which == FWD_LIST_WIRE) {
                fwd__http_cancel(f, t);
                f->st.inflight--;
            }
            (*counter)++;
            fwd__txn_free(t);
        }
        if (which == FWD_LIST_WIRE)
            ep->probing = false;
    }
    fwd__queue_stats(f);
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
    fwd__list_remove(&ep->queue, old);
    f->st.dropped_evicted++;
    cmn_log_rl(&f->rl_evict, CMN_LOG_WARN, FWD_COMP,
               "%s for %s: dropped the oldest retried payload (%s, %zu "
               "bytes, %u attempts)",
               why, ep->url, old->body->p->route, old->body->p->len,
               old->attempts);
    fwd__txn_free(old);
}

/* Adds t to its endpoint's queue. Past the retry queue's byte cap (§3.6),
 * counted over the transactions already attempted, or past the memory
 * budget's eviction step, the oldest attempted transactions are evicted.
 * A transaction that was never attempted is never evicted: back-pressure
 * on the serializer (fwd_is_full) bounds those instead. */
void fwd__enqueue(struct fwd *f, struct fwd_txn *t)
{
    struct fwd_ep *ep = t->ep;
    struct fwd_txn *old;

    fwd__list_insert_sorted(&ep->queue, t);
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

static bool has_space(const struct fwd *f)
{
    return !fwd_is_full(f);
}

void fwd__space_check(struct fwd *f)
{
    fwd__wake(f, &f->space, has_space);
}

void fwd_on_space(struct fwd *f, fwd_space_cb cb, void *data)
{
    f->space = (struct fwd_waiter){cb, data};
    fwd__space_check(f);
}

bool fwd_sink_full(void *fwd)
{
    return fwd_is_full(fwd);
}

void fwd_sink_on_space(void *fwd, fwd_space_cb cb, void *data)
{
    fwd_on_space(fwd, cb, data);
}
