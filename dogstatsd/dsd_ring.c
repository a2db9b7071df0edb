/*
 * dsd_ring.c - the receive ring of dsd_ring.h: a single-producer
 * single-consumer ring of length-prefixed records in one anonymous
 * mapping.
 *
 * Ordering: the producer writes records, then publishes them with a
 * release store of head; the consumer acquires head before it reads a
 * record and releases tail only after it is done with the bytes. Sleep and
 * wake-up for a full ring use the store-then-load pattern on both sides
 * (producer: prod_waiting = 1 then load tail; consumer: store tail then
 * load prod_waiting), all sequentially consistent, so at least one side
 * sees the other and the producer is never left asleep on a freed ring.
 */
#include "dsd_ring.h"

#include "common.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

/* The monotonic clock in milliseconds: the keep windows, the shedding's
 * quiet second. Read once a wrap (and once a DSD_RING_AHEAD mapping). */
static uint64_t mono_ms(void)
{
    return cmn_mono_ns() / 1000000u;
}

static size_t page_size(void)
{
    long p = sysconf(_SC_PAGESIZE);
    return p > 0 ? (size_t)p : 4096;
}

int dsd__ring_init(struct dsd__ring *r, size_t cap)
{
    size_t pg = page_size();
    memset(r, 0, sizeof(*r));
    if (cap < pg)
        cap = pg;
    cap = (cap + pg - 1) / pg * pg;
    /* one page more, past the ring: it never holds data, and priming it
     * before a rewrite of the address space (common.h) lets the ring's
     * later faults skip the address-space lock */
    char *m = mmap(NULL, cap + pg, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return -errno;
    (void)cmn_prime_register(m + cap);
    r->base = m;
    r->cap = cap;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->prod_waiting, 0);
    r->keep_ms = DSD_RING_KEEP_MS;
    r->keep_hold = DSD_RING_KEEP_HOLD;
    r->shed_quiet_ms = DSD_RING_SHED_QUIET_MS;
    r->depth_at_ms = mono_ms();
    return 0;
}

void dsd__ring_free(struct dsd__ring *r)
{
    cmn_budget_release(r->budgeted);
    r->budgeted = 0;
    /* past its touched pages the mapping holds none: the exit takes it
     * when that much may be left to it */
    if (r->base != NULL) {
        cmn_prime_unregister(r->base + r->cap);
        if (!cmn_alloc_keep_at_exit(r->touched))
            munmap(r->base, r->cap + page_size());
    }
    r->base = NULL;
    r->cap = 0;
}

static void put_hdr(char *at, uint32_t len, uint32_t flags)
{
    memcpy(at, &len, 4);
    memcpy(at + 4, &flags, 4);
}

/* The first DSD_RING_FLOOR bytes of the mapping are always usable; the
 * memory budget covers the r->budgeted bytes after them, reserved in
 * DSD_RING_BUDGET_STEP steps as the head first goes past. When the budget
 * refuses more, n shrinks to what the covered part holds (0: wait for the
 * loop to free room; the head then wraps into the covered part). */
static size_t budget_slots(struct dsd__ring *r, size_t off, size_t slot,
                           size_t n)
{
    size_t end = off + n * slot, have = DSD_RING_FLOOR + r->budgeted;
    if (end <= have)
        return n;
    size_t grow = (end - have + DSD_RING_BUDGET_STEP - 1) /
                  DSD_RING_BUDGET_STEP * DSD_RING_BUDGET_STEP;
    if (cmn_budget_reserve(grow) == 0) {
        r->budgeted += grow;
        return n;
    }
    atomic_fetch_add_explicit(&r->budget_refused, 1, memory_order_relaxed);
    return have > off ? (have - off) / slot : 0;
}

/* The second largest of a, b and c: a depth reached in two of three
 * windows. */
static size_t second_largest(size_t a, size_t b, size_t c)
{
    size_t lo = a < b ? a : b, hi = a < b ? b : a;
    size_t m = hi < c ? hi : c;
    return lo > m ? lo : m;
}

/* Ends the keep window if it is over (and the empty windows after it). */
static void depth_roll(struct dsd__ring *r, uint64_t now)
{
    uint64_t gone = (now - r->depth_at_ms) / r->keep_ms;
    if (gone == 0)
        return;
    const size_t n = DSD_RING_KEEP_WINDOWS;
    size_t g = gone < n ? (size_t)gone : n;
    memmove(r->depth + g, r->depth, (n - g) * sizeof(r->depth[0]));
    memset(r->depth, 0, g * sizeof(r->depth[0]));
    r->depth_at_ms = now;
}

/* The depth to keep resident: the deepest that recurred (two of three
 * consecutive windows) within the last keep_hold windows. */
static size_t depth_keep(const struct dsd__ring *r)
{
    size_t keep = 0, hold = r->keep_hold;
    if (hold > DSD_RING_KEEP_HOLD)
        hold = DSD_RING_KEEP_HOLD;
    for (size_t i = 0; i < hold; i++) {
        size_t d =
            second_largest(r->depth[i], r->depth[i + 1], r->depth[i + 2]);
        if (d > keep)
            keep = d;
    }
    return keep;
}

/* At an early wrap (the consumer keeps up again) the pages from `from` to
 * the highest offset ever written hold only a past backlog's data, and the
 * consumer will not read them in this lap: those past the depth that
 * recurs (depth_keep) are given back (and their budget reservation) when they
 * are DSD_RING_SHED_MIN or more and the head has mapped no page in for
 * DSD_RING_SHED_QUIET_MS, DSD_RING_SHED_STEP at a time from the top, an
 * early wrap each. Without this the ring's resident size is the largest
 * backlog since the last idle trim, which under steady traffic never comes:
 * RSS that only grows. */
static void ring_shed(struct dsd__ring *r, size_t from, uint64_t now_ms)
{
    size_t keep = 0;
    if (r->keep_ms > 0)
        keep = depth_keep(r);
    if (keep > from)
        from = keep;
    size_t pg = page_size();
    size_t lo = (from + pg - 1) / pg * pg;
    size_t hi = (r->touched + pg - 1) / pg * pg;
    if (hi > r->cap)
        hi = r->cap;
    if (!r->shedding) {
        if (hi < lo + DSD_RING_SHED_MIN ||
            now_ms - r->grew_ms < r->shed_quiet_ms)
            return;
        r->shedding = true;
    }
    if (hi <= lo) {
        r->shedding = false;
        return;
    }
    if (hi - lo > DSD_RING_SHED_STEP)
        lo = hi - DSD_RING_SHED_STEP;
    else
        r->shedding = false; /* the last step */
    if (madvise(r->base + lo, hi - lo, MADV_DONTNEED) != 0) {
        r->shedding = false;
        return;
    }
    r->touched = lo;
    size_t held = lo > DSD_RING_FLOOR ? lo - DSD_RING_FLOOR : 0;
    held = (held + DSD_RING_BUDGET_STEP - 1) / DSD_RING_BUDGET_STEP *
           DSD_RING_BUDGET_STEP;
    if (held < r->budgeted) {
        cmn_budget_release(r->budgeted - held);
        r->budgeted = held;
    }
}

/* Whether an early wrap leaves the producer room enough. Until the
 * consumer reads the PAD, the room is only the tail's offset (the rest of
 * the mapping lies behind the PAD), and the consumer first reads the
 * head - tail bytes before it: the wrap needs the consumer within
 * DSD_RING_EARLY_LAG of the head, and room for twice what it has to read
 * plus the batch asked for. A consumer that reads as fast as the producer
 * writes, or half as fast, then reaches the PAD before the producer
 * reaches it. */
static bool early_room(const struct dsd__ring *r, uint64_t head, uint64_t tail,
                       size_t want)
{
    uint64_t lag = head - tail;
    return lag <= DSD_RING_EARLY_LAG && head / r->cap == tail / r->cap &&
           tail % r->cap >= want + 2 * lag;
}

size_t dsd__ring_reserve(struct dsd__ring *r, size_t slot_data,
                         size_t max_slots, size_t reset_at, char **at)
{
    size_t slot = DSD_RING_HDR + ALIGN8(slot_data);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    for (int pass = 0; pass < 2; pass++) {
        uint64_t tail = atomic_load_explicit(&r->tail, memory_order_seq_cst);
        r->tail_cache = tail;
        size_t free_b = r->cap - (size_t)(head - tail);
        size_t off = (size_t)(head % r->cap);
        size_t contig = r->cap - off;
        /* Wrap early, past reset_at, when the consumer keeps up and the
         * start of the mapping is free (early_room): a ring that keeps up
         * reuses its first pages, which stay in cache, and touches the
         * rest only under a backlog. */
        size_t want = slot * max_slots;
        bool early =
            off != 0 && off >= reset_at && early_room(r, head, tail, want);
        bool wrap = contig < slot || early;
        if (wrap) {
            /* The PAD needs the rest of the mapping, and a slot must fit
             * after it. */
            if (free_b < contig + slot)
                return 0;
            put_hdr(r->base + off, 0, DSD_RING_F_PAD);
            uint64_t now_ms = mono_ms();
            if (r->keep_ms > 0) { /* the lap went as deep as off */
                depth_roll(r, now_ms);
                if (off > r->depth[0])
                    r->depth[0] = off;
            }
            if (early) {
                r->early_wraps++;
                ring_shed(r, off + DSD_RING_HDR, now_ms);
            }
            head += contig;
            atomic_store_explicit(&r->head, head, memory_order_release);
            continue;
        }
        size_t n = contig / slot;
        if (free_b / slot < n)
            n = free_b / slot;
        if (max_slots < n)
            n = max_slots;
        n = budget_slots(r, off, slot, n);
        *at = r->base + off;
        return n;
    }
    return 0; /* not reached: after a wrap off is 0 and a slot fits */
}

/* Before the head writes up to end, past the pages touched so far: maps
 * the pages from touched up to the next multiple of DSD_RING_AHEAD in
 * (within what the memory budget covers) and counts them as touched, so
 * that trim and shed give them back. On failure (an old kernel) the pages
 * are faulted in as they are written. While a rewrite of the address space
 * is announced (common.h), only the pages up to end, by touching them. */
static void ring_populate(struct dsd__ring *r, size_t end)
{
    size_t pg = page_size();
    size_t lo = r->touched / pg * pg;
    size_t upto = (end + pg - 1) / pg * pg; /* the pages written next */
    if (cmn_mm_rewriting()) {
        /* one fault each, without waiting for the address-space lock
         * (common.h) */
        cmn_touch_pages(r->base + lo, upto - lo);
        r->touched = upto;
    } else {
        size_t hi =
            (end + DSD_RING_AHEAD - 1) / DSD_RING_AHEAD * DSD_RING_AHEAD;
        size_t limit = DSD_RING_FLOOR + r->budgeted;
        if (limit > r->cap)
            limit = r->cap;
        if (hi > limit)
            hi = limit;
        if (hi < end) /* the budget covers what is written (budget_slots) */
            hi = upto;
        if (hi > lo && cmn_populate(r->base + lo, hi - lo) == 0)
            r->touched = hi;
    }
    r->grew_ms = mono_ms();
    r->shedding = false; /* the head needs the pages again */
}

size_t dsd__ring_pack(struct dsd__ring *r, char *at,
                      const struct dsd__ring_src *src, size_t n,
                      const uint32_t *lens, const uint32_t *flags)
{
    return dsd__ring_pack_slots(r, at, src, n, lens, flags, NULL);
}

size_t dsd__ring_pack_slots(struct dsd__ring *r, char *at,
                            const struct dsd__ring_src *src, size_t n,
                            const uint32_t *lens, const uint32_t *flags,
                            const uint32_t *slots)
{
    char *w = at;
    for (size_t i = 0; i < n; i++) {
        size_t k = slots != NULL ? slots[i] : i;
        uint32_t len = (flags[k] & DSD_RING_F_TRUNC) ? 0 : lens[k];
        size_t end = (size_t)(w - r->base) + DSD_RING_HDR + ALIGN8(len);
        if (end > r->touched)
            ring_populate(r, end);
        put_hdr(w, len, flags[k]);
        size_t h = len < src->head_len ? len : src->head_len;
        if (h > 0)
            memcpy(w + DSD_RING_HDR, src->head + k * src->head_len, h);
        if (len > h)
            memcpy(w + DSD_RING_HDR + h, src->tail + k * src->tail_len,
                   len - h);
        w += DSD_RING_HDR + ALIGN8(len);
    }
    size_t hi = (size_t)(w - r->base);
    if (hi > r->touched)
        r->touched = hi;
    size_t bytes = (size_t)(w - at);
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    atomic_store_explicit(&r->head, head + bytes, memory_order_release);
    return bytes;
}

static void get_hdr(const char *at, uint32_t *len, uint32_t *flags)
{
    memcpy(len, at, 4);
    memcpy(flags, at + 4, 4);
}

bool dsd__ring_peek(struct dsd__ring *r, uint64_t pos, uint64_t head,
                    struct dsd__ring_rec *out)
{
    if (pos == head)
        return false;
    size_t off = (size_t)(pos % r->cap);
    uint32_t len, flags;
    get_hdr(r->base + off, &len, &flags);
    if (flags & DSD_RING_F_PAD) {
        pos += r->cap - off;
        if (pos == head) {
            out->data = NULL;
            out->len = 0;
            out->flags = DSD_RING_F_PAD;
            out->next = pos;
            return true;
        }
        off = 0;
        get_hdr(r->base, &len, &flags);
    }
    out->data = r->base + off + DSD_RING_HDR;
    out->len = len;
    out->flags = flags;
    out->next = pos + DSD_RING_HDR + ALIGN8(len);
    return true;
}

bool dsd__ring_release(struct dsd__ring *r, uint64_t pos)
{
    atomic_store_explicit(&r->tail, pos, memory_order_seq_cst);
    return atomic_load_explicit(&r->prod_waiting, memory_order_seq_cst) != 0;
}

uint64_t dsd__ring_used(struct dsd__ring *r)
{
    uint64_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    uint64_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    return h - t;
}

size_t dsd__ring_trim(struct dsd__ring *r)
{
    uint64_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
    if (r->touched == 0 ||
        atomic_load_explicit(&r->tail, memory_order_acquire) != head)
        return 0;
    size_t pg = page_size();
    size_t n = (r->touched + pg - 1) / pg * pg;
    if (n > r->cap)
        n = r->cap;
    if (madvise(r->base, n, MADV_DONTNEED) != 0)
        return 0;
    r->touched = 0;
    r->shedding = false;
    memset(r->depth, 0, sizeof(r->depth)); /* idle: nothing to keep */
    cmn_budget_release(r->budgeted);
    r->budgeted = 0;
    return n;
}
