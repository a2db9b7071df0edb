/*
 * test_ring.c - the receive ring (dogstatsd/dsd_ring.h) on its own, in one
 * thread: records come out in order with their lengths and flags, a record
 * never wraps (a PAD sends the consumer to offset 0), a full ring reserves
 * nothing, an empty ring restarts at offset 0 once past reset_at (giving
 * back a past backlog's pages), and trim gives the pages back only when
 * the ring is empty. The two-thread use is
 * covered by the listener and end-to-end burst tests.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"
#include "dsd_ring.h"

#define CAP 65536
#define SLOT 120 /* slot data bytes: a slot is 8 + 120 = 128 bytes */

static struct dsd__ring r;

static void setup(void)
{
    cr_assert_eq(dsd__ring_init(&r, CAP), 0);
    cr_assert_eq(r.cap, CAP);
}

static void teardown(void)
{
    dsd__ring_free(&r);
}

TestSuite(ring, .init = setup, .fini = teardown);

/* Publishes one batch of the given strings; returns the bytes published. */
static size_t put(const char *const *items, size_t n, uint32_t flag)
{
    char scratch[8][SLOT];
    uint32_t lens[8], flags[8];
    cr_assert_leq(n, 8);
    for (size_t i = 0; i < n; i++) {
        lens[i] = (uint32_t)strlen(items[i]);
        memcpy(scratch[i], items[i], lens[i]);
        flags[i] = flag;
    }
    char *at;
    cr_assert_geq(dsd__ring_reserve(&r, SLOT, n, CAP, &at), n);
    struct dsd__ring_src src = {&scratch[0][0], SLOT, NULL, 0};
    return dsd__ring_pack(&r, at, &src, n, lens, flags);
}

Test(ring, records_in_order_packed_by_length)
{
    const char *a[] = {"a:1|c", "", "hello:2|g|#x:y"};
    size_t bytes = put(a, 3, 0);
    /* 8 + 8 (5 bytes), 8 + 0, 8 + 16 (14 bytes) */
    cr_assert_eq(bytes, 16 + 8 + 24);
    uint64_t head = atomic_load(&r.head), pos = 0;
    struct dsd__ring_rec rec;
    for (int i = 0; i < 3; i++) {
        cr_assert(dsd__ring_peek(&r, pos, head, &rec));
        cr_assert_eq(rec.len, strlen(a[i]));
        cr_assert_eq(memcmp(rec.data, a[i], rec.len), 0);
        cr_assert_eq(rec.flags, 0);
        pos = rec.next;
    }
    cr_assert_not(dsd__ring_peek(&r, pos, head, &rec));
    cr_assert_eq(dsd__ring_used(&r), bytes);
    cr_assert_not(dsd__ring_release(&r, pos), "nobody waits");
    cr_assert_eq(dsd__ring_used(&r), 0);
}

Test(ring, truncated_datagram_keeps_flag_drops_data)
{
    const char *a[] = {"too-long-for-its-slot"};
    size_t bytes = put(a, 1, DSD_RING_F_TRUNC);
    cr_assert_eq(bytes, 8);
    struct dsd__ring_rec rec;
    cr_assert(dsd__ring_peek(&r, 0, atomic_load(&r.head), &rec));
    cr_assert_eq(rec.flags, DSD_RING_F_TRUNC);
    cr_assert_eq(rec.len, 0);
}

Test(ring, full_ring_reserves_nothing_until_released)
{
    char *at;
    uint64_t released = 0;
    /* Full 128-byte records until no slot fits. */
    char big[SLOT + 1];
    memset(big, 'x', SLOT);
    big[SLOT] = '\0';
    const char *one[] = {big};
    size_t n = 0;
    while (dsd__ring_reserve(&r, SLOT, 1, CAP, &at) > 0) {
        cr_assert_eq(put(one, 1, 0), 128);
        n++;
    }
    cr_assert_eq(n, CAP / 128);
    cr_assert_eq(dsd__ring_used(&r), CAP);
    /* The consumer frees one record: exactly one slot fits again. */
    struct dsd__ring_rec rec;
    cr_assert(dsd__ring_peek(&r, released, atomic_load(&r.head), &rec));
    released = rec.next;
    dsd__ring_release(&r, released);
    cr_assert_eq(dsd__ring_reserve(&r, SLOT, 8, CAP, &at), 1);
}

Test(ring, record_never_wraps_pad_skips_to_start)
{
    char *at;
    /* Fill to 100 bytes before the end with short records. */
    const char *s40 = "0123456789012345678901234567890123456789";
    const char *one[] = {s40}; /* 8 + 40 = 48 bytes */
    size_t fill = (CAP - 100) / 48;
    for (size_t i = 0; i < fill; i++)
        put(one, 1, 0);
    uint64_t head = atomic_load(&r.head);
    cr_assert_gt(CAP - head, 0);
    cr_assert_lt(CAP - head, 128);
    /* Free everything but the last record, so there is room at the start. */
    dsd__ring_release(&r, head - 48);
    /* The next 128-byte slot does not fit before the end: PAD, then 0. */
    cr_assert_eq(dsd__ring_reserve(&r, SLOT, 1, CAP, &at), 1);
    cr_assert_eq(at, r.base);
    const char *b[] = {"after-wrap:1|c"};
    size_t bytes = put(b, 1, 0);
    cr_assert_eq(bytes, 24);
    /* The consumer reads the last record before the end, then the wrapped
     * one (the PAD is skipped inside peek). */
    uint64_t h = atomic_load(&r.head), pos = head - 48;
    struct dsd__ring_rec rec;
    cr_assert(dsd__ring_peek(&r, pos, h, &rec));
    cr_assert_eq(rec.len, 40);
    pos = rec.next;
    cr_assert(dsd__ring_peek(&r, pos, h, &rec));
    cr_assert_eq(rec.len, strlen(b[0]));
    cr_assert_eq(memcmp(rec.data, b[0], rec.len), 0);
    cr_assert_eq(rec.next, h);
}

Test(ring, empty_ring_restarts_at_zero_past_reset_at)
{
    char *at;
    const char *one[] = {"x:1|c"};
    for (int i = 0; i < 100; i++)
        put(one, 1, 0); /* 16 bytes each */
    uint64_t head = atomic_load(&r.head);
    cr_assert_eq(head, 1600);
    dsd__ring_release(&r, head); /* empty */
    /* Below reset_at the head stays where it is... */
    cr_assert_gt(dsd__ring_reserve(&r, SLOT, 1, 4096, &at), 0);
    cr_assert_eq(at, r.base + 1600);
    /* ...past it, an empty ring starts over at offset 0. */
    cr_assert_gt(dsd__ring_reserve(&r, SLOT, 1, 1024, &at), 0);
    cr_assert_eq(at, r.base);
    cr_assert_eq(atomic_load(&r.head), CAP, "a PAD took the rest");
    /* The consumer skips the PAD and reaches the head. */
    struct dsd__ring_rec rec;
    cr_assert(dsd__ring_peek(&r, head, atomic_load(&r.head), &rec));
    cr_assert_eq(rec.flags, DSD_RING_F_PAD);
    cr_assert_eq(rec.next, CAP);
}

Test(ring, trim_only_when_empty)
{
    const char *one[] = {"x:1|c"};
    put(one, 1, 0);
    cr_assert_eq(dsd__ring_trim(&r), 0, "not empty: nothing given back");
    dsd__ring_release(&r, atomic_load(&r.head));
    /* what the first record mapped in: DSD_RING_AHEAD, here the whole
     * 64 KiB ring */
    cr_assert_eq(dsd__ring_trim(&r), CAP);
    cr_assert_eq(dsd__ring_trim(&r), 0, "nothing touched since");
}

Test(ring, keeps_up_ring_wraps_early_when_the_start_is_free)
{
    char *at;
    const char *one[] = {"x:1|c"};
    for (int i = 0; i < 100; i++)
        put(one, 1, 0); /* 16 bytes each: head 1600 */
    /* The consumer is 6 records in (tail 96 < a 128-byte slot): the start
     * is not free yet, the head goes on. */
    dsd__ring_release(&r, 96);
    cr_assert_gt(dsd__ring_reserve(&r, SLOT, 1, 1024, &at), 0);
    cr_assert_eq(at, r.base + 1600);
    /* Tail 800: the start is free, but the loop has 800 bytes to read
     * before it reaches the PAD, and room for 800: it needs 128 + 2 x 800
     * (early_room). The head goes on. */
    dsd__ring_release(&r, 800);
    cr_assert_gt(dsd__ring_reserve(&r, SLOT, 1, 1024, &at), 0);
    cr_assert_eq(at, r.base + 1600);
    /* Tail 1400: 200 bytes to read, 1400 >= 128 + 2 x 200: the ring wraps
     * there although it is not empty. */
    dsd__ring_release(&r, 1400);
    cr_assert_gt(dsd__ring_reserve(&r, SLOT, 1, 1024, &at), 0);
    cr_assert_eq(at, r.base);
    cr_assert_eq(r.early_wraps, 1);
    /* ...but not for a batch of 8 slots: 1024 + 2 x 200 > 1400. */
    dsd__ring_free(&r);
    cr_assert_eq(dsd__ring_init(&r, CAP), 0);
    for (int i = 0; i < 100; i++)
        put(one, 1, 0);
    dsd__ring_release(&r, 1400);
    cr_assert_gt(dsd__ring_reserve(&r, SLOT, 8, 1024, &at), 0);
    cr_assert_eq(at, r.base + 1600, "8 slots (1024 bytes) need more");
}

/* As the head first reaches untouched pages, the next DSD_RING_AHEAD bytes
 * are mapped in with one call instead of a page fault each: after one
 * small record the first 64 KiB are resident and counted as touched, the
 * rest is not; the head's next 64 KiB are mapped as it gets there; trim
 * gives them all back. */
Test(ring, head_maps_the_next_pages_in_ahead)
{
    struct dsd__ring big;
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    char scratch[SLOT];
    memset(scratch, 'z', sizeof(scratch));
    uint32_t len = 5, flag = 0;
    char *at;
    struct dsd__ring_src src = {scratch, SLOT, NULL, 0};
    cr_assert_eq(dsd__ring_reserve(&big, SLOT, 1, big.cap, &at), 1);
    dsd__ring_pack(&big, at, &src, 1, &len, &flag);
    unsigned char vec[32];
    cr_assert_eq(mincore(big.base, sizeof(vec) * 4096, vec), 0);
    for (size_t i = 0; i < sizeof(vec); i++)
        cr_assert_eq(vec[i] & 1, i < DSD_RING_AHEAD / 4096, "page %zu", i);
    cr_assert_eq(big.touched, DSD_RING_AHEAD);
    /* records up to the end of the mapped part map nothing more... */
    len = SLOT;
    while (atomic_load(&big.head) + DSD_RING_HDR + SLOT <= DSD_RING_AHEAD) {
        cr_assert_eq(dsd__ring_reserve(&big, SLOT, 1, big.cap, &at), 1);
        dsd__ring_pack(&big, at, &src, 1, &len, &flag);
    }
    cr_assert_eq(big.touched, DSD_RING_AHEAD);
    /* ...the first past it maps the next 64 KiB */
    cr_assert_eq(dsd__ring_reserve(&big, SLOT, 1, big.cap, &at), 1);
    dsd__ring_pack(&big, at, &src, 1, &len, &flag);
    cr_assert_eq(big.touched, 2 * DSD_RING_AHEAD);
    cr_assert_eq(mincore(big.base, sizeof(vec) * 4096, vec), 0);
    for (size_t i = 0; i < sizeof(vec); i++)
        cr_assert_eq(vec[i] & 1, 1, "page %zu", i);
    dsd__ring_release(&big, atomic_load(&big.head));
    cr_assert_eq(dsd__ring_trim(&big), 2 * DSD_RING_AHEAD);
    cr_assert_eq(mincore(big.base, sizeof(vec) * 4096, vec), 0);
    for (size_t i = 0; i < sizeof(vec); i++)
        cr_assert_eq(vec[i] & 1, 0, "page %zu given back", i);
    dsd__ring_free(&big);
}

/* The memory budget: past its first MiB the ring reserves pages from the
 * budget as it first reaches them; when the budget refuses, the ring holds
 * only what it has (counted), and trimming gives the reservation back. */
Test(ring, memory_budget_bounds_the_ring)
{
    struct dsd__ring big;
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    size_t used0 = cmn_budget_used();
    cmn_budget_set_limit(used0 + (512u << 10));
    char scratch[SLOT];
    memset(scratch, 'x', sizeof(scratch));
    uint32_t len = SLOT, flag = 0;
    size_t bytes = 0;
    char *at;
    struct dsd__ring_src src = {scratch, SLOT, NULL, 0};
    while (dsd__ring_reserve(&big, SLOT, 1, (size_t)4 << 20, &at) > 0)
        bytes += dsd__ring_pack(&big, at, &src, 1, &len, &flag);
    /* 1 MiB always usable + the 512 KiB the budget allowed */
    cr_assert_eq(bytes, (size_t)1536 << 10, "ring held %zu bytes", bytes);
    cr_assert_eq(big.budgeted, (size_t)512 << 10);
    cr_assert_eq(cmn_budget_reserved(), (size_t)512 << 10);
    cr_assert_geq(atomic_load(&big.budget_refused), 1);
    dsd__ring_release(&big, atomic_load(&big.head));
    cr_assert_gt(dsd__ring_trim(&big), 0);
    cr_assert_eq(cmn_budget_reserved(), 0, "trim gives the pages back");
    cmn_budget_set_limit(0);
    dsd__ring_free(&big);
}

/* Publishes one SLOT-byte record into q (early wraps past reset_at) and,
 * with consume, releases everything published. */
static void put_one_at(struct dsd__ring *q, bool consume, size_t reset_at)
{
    char scratch[SLOT];
    memset(scratch, 'y', sizeof(scratch));
    uint32_t len = SLOT, flag = 0;
    char *at;
    cr_assert_eq(dsd__ring_reserve(q, SLOT, 1, reset_at, &at), 1);
    struct dsd__ring_src src = {scratch, SLOT, NULL, 0};
    dsd__ring_pack(q, at, &src, 1, &len, &flag);
    if (consume)
        dsd__ring_release(q, atomic_load(&q->head));
}

/* The same with reset_at 512 KiB, as the listeners. */
static void put_one(struct dsd__ring *q, bool consume)
{
    put_one_at(q, consume, (size_t)512 << 10);
}

/* Whether the page at offset off of q's mapping is resident. */
static bool resident(const struct dsd__ring *q, size_t off)
{
    unsigned char v = 0;
    cr_assert_eq(mincore(q->base + off, 4096, &v), 0);
    return v & 1;
}

/* A backlog takes the ring to 3 MiB; once the consumer keeps up again the
 * ring wraps early at 512 KiB and gives the backlog's pages back at that
 * wrap: RSS follows the traffic down, not only up (the soak's growth).
 * Here without the keep window (keep_ms 0). */
Test(ring, early_wrap_gives_a_past_backlog_back)
{
    struct dsd__ring big;
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    big.keep_ms = 0;
    big.shed_quiet_ms = 0; /* the backlog's pages were mapped just now */
    while (atomic_load(&big.head) < ((uint64_t)3 << 20))
        put_one(&big, false); /* nothing consumed: no early wrap */
    cr_assert_geq(big.touched, (size_t)3 << 20);
    cr_assert(resident(&big, (size_t)2 << 20));
    dsd__ring_release(&big, atomic_load(&big.head));
    put_one(&big, true); /* wraps at 3 MiB: nothing past it to give */
    cr_assert_lt(atomic_load(&big.head) % big.cap, (size_t)4096);
    cr_assert_geq(big.touched, (size_t)3 << 20);
    while (atomic_load(&big.head) / big.cap < 3)
        put_one(&big, true); /* the next laps, consumed as they go */
    /* wrapped early just past 512 KiB, twice: the pages past it were given
     * back, DSD_RING_SHED_STEP (2 MiB) at each early wrap */
    cr_assert_lt(big.touched, (size_t)600 << 10, "touched %zu", big.touched);
    cr_assert_not(resident(&big, (size_t)2 << 20));
    cr_assert_not(resident(&big, ((size_t)3 << 20) - 4096));
    dsd__ring_free(&big);
}

/* Fills big to 3 MiB into its lap with nothing consumed (and no early
 * wrap: the loop falls behind), then consumes it all. */
static void backlog_3mib(struct dsd__ring *big)
{
    uint64_t lap = atomic_load(&big->head) / big->cap;
    while (atomic_load(&big->head) - lap * big->cap < ((uint64_t)3 << 20))
        put_one_at(big, false, big->cap);
    dsd__ring_release(big, atomic_load(&big->head));
}

/* Runs laps consumed as they go until head reaches lap n. */
static void laps_to(struct dsd__ring *big, uint64_t n)
{
    while (atomic_load(&big->head) / big->cap < n)
        put_one(big, true);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* At the default window, a backlog seen once (a sidecar's start interning
 * 100 000 new contexts) is given back at the early wrap that follows it:
 * it must not add 3 MiB to every peak of the next minute. */
Test(ring, early_wrap_gives_a_one_off_backlog_back)
{
    struct dsd__ring big;
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    cr_assert_eq(big.keep_ms, DSD_RING_KEEP_MS);
    big.shed_quiet_ms = 0; /* DSD_RING_SHED_QUIET_MS: its own test */
    backlog_3mib(&big);
    laps_to(&big, 3); /* wraps at 4 MiB, then early past 512 KiB, twice */
    cr_assert_lt(big.touched, (size_t)600 << 10, "touched %zu", big.touched);
    cr_assert_not(resident(&big, (size_t)2 << 20));
    cr_assert_not(resident(&big, ((size_t)3 << 20) - 4096));
    dsd__ring_free(&big);
}

/* A depth reached in two of three consecutive windows recurs (at every
 * flush, while the loop serializes): its pages stay resident at the early
 * wraps that follow (flat RSS) for keep_hold windows after it last
 * recurred, and are given back after that. */
Test(ring, early_wrap_keeps_a_recurring_depth)
{
    struct dsd__ring big;
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    cr_assert_eq(big.keep_hold, DSD_RING_KEEP_HOLD);
    big.keep_ms = 200; /* the test's windows */
    big.keep_hold = 3;
    big.shed_quiet_ms = 0;
    backlog_3mib(&big);
    laps_to(&big, 3);
    cr_assert_lt(big.touched, (size_t)600 << 10, "once: given back");
    sleep_ms(220); /* the next window: the backlog comes again */
    backlog_3mib(&big);
    laps_to(&big, 5);
    cr_assert_geq(big.touched, (size_t)3 << 20, "touched %zu", big.touched);
    cr_assert(resident(&big, (size_t)2 << 20));
    cr_assert(resident(&big, ((size_t)3 << 20) - 4096));
    sleep_ms(450); /* two windows without it: still held */
    laps_to(&big, 6);
    cr_assert_geq(big.touched, (size_t)3 << 20, "touched %zu", big.touched);
    cr_assert(resident(&big, (size_t)2 << 20));
    sleep_ms(1100); /* past the hold */
    laps_to(&big, 8);
    cr_assert_lt(big.touched, (size_t)600 << 10, "touched %zu", big.touched);
    cr_assert_not(resident(&big, (size_t)2 << 20));
    cr_assert_not(resident(&big, ((size_t)3 << 20) - 4096));
    dsd__ring_free(&big);
}

/* The loop is catching up on a 3 MiB backlog: its tail is past reset_at
 * (and past the room a reservation asks for) but far behind the head. The
 * head must not wrap early there: until the consumer read the PAD, the
 * producer's room would be only the tail's offset (here 600 KiB) instead
 * of the 3.4 MiB the ring has free. Once the consumer is within
 * DSD_RING_EARLY_LAG of the head, it does wrap early. */
Test(ring, no_early_wrap_under_a_backlog)
{
    struct dsd__ring big;
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    while (atomic_load(&big.head) < ((uint64_t)3 << 20))
        put_one(&big, false);
    uint64_t head = atomic_load(&big.head);
    dsd__ring_release(&big, (uint64_t)600 << 10);
    /* a stall now: the producer fills all the room there is */
    size_t room = 0;
    char *at;
    while (dsd__ring_reserve(&big, SLOT, 1, (size_t)512 << 10, &at) == 1) {
        if (room == 0)
            cr_assert_eq(at, big.base + head, "went on, no early wrap");
        put_one(&big, false);
        room += 8 + SLOT;
    }
    cr_assert_eq(big.early_wraps, 0);
    /* all but the last partial slot of the 1 MiB + 600 KiB left free */
    uint64_t free_b = big.cap - (head - ((uint64_t)600 << 10));
    cr_assert_geq(room, free_b - 2 * (8 + SLOT), "room %zu of %llu", room,
                  (unsigned long long)free_b);
    dsd__ring_free(&big);

    /* The same backlog read up to 32 KiB short of the head: the consumer
     * keeps up, the head wraps early to offset 0. */
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    while (atomic_load(&big.head) < ((uint64_t)3 << 20))
        put_one(&big, false);
    head = atomic_load(&big.head);
    dsd__ring_release(&big, head - (32u << 10));
    cr_assert_eq(dsd__ring_reserve(&big, SLOT, 1, (size_t)512 << 10, &at), 1);
    cr_assert_eq(at, big.base, "wrapped early");
    cr_assert_eq(big.early_wraps, 1);
    dsd__ring_free(&big);
}

/* A ring whose laps go deep now and then keeps its pages: they are given
 * back only once the head has mapped no page in for
 * DSD_RING_SHED_QUIET_MS, and then DSD_RING_SHED_STEP at a time, one step
 * an early wrap (one madvise of 15 MiB held the receive thread for
 * 1.0-1.5 ms on the test VM, and the next deep lap mapped them in again). */
Test(ring, early_wrap_sheds_after_a_quiet_spell_in_steps)
{
    struct dsd__ring big;
    cr_assert_eq(dsd__ring_init(&big, (size_t)4 << 20), 0);
    cr_assert_eq(big.shed_quiet_ms, DSD_RING_SHED_QUIET_MS);
    big.keep_ms = 0;
    backlog_3mib(&big);
    size_t top = big.touched;
    cr_assert_geq(top, (size_t)3 << 20);
    laps_to(&big, 4); /* early wraps within the spell: nothing given back */
    cr_assert_eq(big.touched, top);
    cr_assert(resident(&big, top - 4096));
    /* the spell later (the clock the ring reads, moved back) */
    big.grew_ms = cmn_mono_ns() / 1000000u - DSD_RING_SHED_QUIET_MS;
    laps_to(&big, 5); /* one early wrap: one step */
    cr_assert_eq(big.touched, top - DSD_RING_SHED_STEP, "touched %zu",
                 big.touched);
    cr_assert_not(resident(&big, top - 4096));
    cr_assert(resident(&big, top - DSD_RING_SHED_STEP - 4096));
    laps_to(&big, 6); /* the next: the rest, down to the lap's depth */
    cr_assert_lt(big.touched, (size_t)600 << 10, "touched %zu", big.touched);
    cr_assert_not(resident(&big, (size_t)1 << 20));
    dsd__ring_free(&big);
}
