/*
 * dp_queue.c - the in-process submission queue: a bounded lock-free
 * multi-producer single-consumer byte ring (layout and protocol in
 * dp_int.h).
 *
 * Invariant: a header reads 0 until its producer publishes it. The buffer
 * starts zeroed and the consumer zeroes every byte it consumes before it
 * releases them, so whatever a later record's header lands on reads 0.
 * The cost is one memset of the consumed bytes, which are cache-hot.
 */
#include "dp_int.h"

#include <sched.h>
#include <string.h>

#include "common.h"

static inline size_t round8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

static inline _Atomic uint32_t *hdr_at(struct dp__queue *q, uint64_t pos)
{
    return (_Atomic uint32_t *)(void *)(q->base + pos % q->cap);
}

int dp__queue_init(struct dp__queue *q, size_t cap)
{
    memset(q, 0, sizeof(*q));
    cap &= ~(size_t)7u;
    if (cap < DP_Q_MIN_SIZE)
        return UV_EINVAL;
    /* at least DP_Q_MIN_SIZE: cmn_calloc maps it as fresh zero pages,
     * touched only as records reach them */
    q->base = cmn_calloc(1, cap);
    if (q->base == NULL)
        return UV_ENOMEM;
    q->cap = cap;
    q->max_record = cap / 4;
    atomic_init(&q->head, 0);
    atomic_init(&q->tail, 0);
    atomic_init(&q->wake, 1);
    return 0;
}

void dp__queue_free(struct dp__queue *q)
{
    cmn_free(q->base);
    q->base = NULL;
    q->cap = 0;
}

int dp__queue_push(struct dp__queue *q, const char *buf, size_t len, bool *wake)
{
    if (len > q->max_record)
        return CMN_ETOOBIG;
    size_t need = DP_Q_HDR + round8(len);
    uint64_t h = atomic_load_explicit(&q->head, memory_order_relaxed);
    size_t off, total;
    for (;;) {
        if (h & DP_Q_CLOSED)
            return CMN_ESTOPPED;
        off = (size_t)(h % q->cap);
        total = need;
        if (q->cap - off < need)
            total += q->cap - off; /* PAD to the end, then wrap */
        uint64_t t = atomic_load_explicit(&q->tail, memory_order_acquire);
        if (h + total - t > q->cap)
            return CMN_ECAP;
        if (atomic_compare_exchange_weak_explicit(&q->head, &h, h + total,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed))
            break;
    }
    char *at = q->base + off;
    if (total != need) {
        atomic_store_explicit((_Atomic uint32_t *)(void *)at, DP_Q_PAD,
                              memory_order_release);
        at = q->base;
    }
    memcpy(at + DP_Q_HDR, buf, len);
    atomic_store_explicit((_Atomic uint32_t *)(void *)at, (uint32_t)len + 1,
                          memory_order_release);
    /* Pairs with the fence in dp__queue_sleep: either the consumer sees
     * this record, or this thread sees that it sleeps. */
    atomic_thread_fence(memory_order_seq_cst);
    *wake = atomic_load_explicit(&q->wake, memory_order_relaxed) &&
            atomic_exchange_explicit(&q->wake, 0, memory_order_relaxed);
    return 0;
}

size_t dp__queue_drain(struct dp__queue *q, size_t max_bytes, uint64_t until,
                       dp__queue_fn fn, void *data, bool *more)
{
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    uint64_t start = t, released = t;
    uint64_t h = dp__queue_head(q);
    if (until != 0 && h > until)
        h = until; /* never past it: producers may outrun the parser */
    *more = false;
    while (t < h) {
        if (t - start >= max_bytes) {
            *more = true;
            break;
        }
        _Atomic uint32_t *hp = hdr_at(q, t);
        uint32_t s = atomic_load_explicit(hp, memory_order_acquire);
        if (s == 0) {
            if (t >= until)
                break;
            sched_yield(); /* reserved, being copied: wait for it */
            continue;
        }
        size_t off = (size_t)(t % q->cap);
        size_t size;
        if (s == DP_Q_PAD) {
            size = q->cap - off;
        } else {
            size = DP_Q_HDR + round8((size_t)s - 1);
            fn(data, q->base + off + DP_Q_HDR, (size_t)s - 1);
        }
        memset(q->base + off, 0, size);
        t += size;
        if (t - released >= ((uint64_t)64 << 10)) { /* room for producers */
            atomic_store_explicit(&q->tail, t, memory_order_release);
            released = t;
        }
        if (t >= h && until == 0)
            h = dp__queue_head(q);
    }
    atomic_store_explicit(&q->tail, t, memory_order_release);
    return (size_t)(t - start);
}

bool dp__queue_sleep(struct dp__queue *q)
{
    atomic_store_explicit(&q->wake, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    uint64_t t = atomic_load_explicit(&q->tail, memory_order_relaxed);
    if (t >= dp__queue_head(q))
        return false;
    if (atomic_load_explicit(hdr_at(q, t), memory_order_acquire) == 0)
        return false; /* its producer will see wake = 1 */
    /* Published meanwhile: take the wake back, unless a producer already
     * did (it then sends the wake-up). */
    return atomic_exchange_explicit(&q->wake, 0, memory_order_relaxed) == 1;
}

uint64_t dp__queue_head(struct dp__queue *q)
{
    return atomic_load_explicit(&q->head, memory_order_acquire) & ~DP_Q_CLOSED;
}

uint64_t dp__queue_close(struct dp__queue *q)
{
    return atomic_fetch_or_explicit(&q->head, DP_Q_CLOSED,
                                    memory_order_acq_rel) &
           ~DP_Q_CLOSED;
}
