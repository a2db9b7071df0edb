/*
 * dsd_ring.h - private to dogstatsd/: the receive ring, a single-producer
 * single-consumer byte ring of length-prefixed records that extends a
 * datagram socket's kernel buffer into user space.
 *
 * The producer (a listener's receive thread) reserves contiguous room for
 * up to N slots of slot_data bytes, lets recvmmsg fill N slots of a
 * scratch buffer, then copies the datagrams into the ring packed by length
 * (dsd__ring_pack) and publishes them with one release store of `head`.
 * (Receiving straight into ring slots would fault in a fresh page per
 * datagram as the head moves through untouched memory; the scratch stays
 * hot and the ring is touched only as densely as the data.) The consumer (the
 * loop thread) reads records from `tail` up to an acquired `head` and releases
 * the space with a release store of `tail`. No lock is taken per datagram.
 *
 *   offset: tail                                     head
 *           v                                        v
 *   ...  [hdr|datagram....][hdr|dgram][pad......]  | free ... |
 *
 * A record is an 8-byte header (length, flags) and the data rounded up to
 * 8 bytes. A record never wraps: when the room left before the end of the
 * mapping is too small, the producer writes a PAD header that tells the
 * consumer to skip to offset 0. `head` and `tail` are byte counters that
 * only grow (64 bits: they never wrap); the offset is counter % cap.
 *
 * Memory: the ring is one anonymous mapping of cap bytes made with
 * MAP_NORESERVE. Pages are first touched by the producer as it writes (mapped
 * in DSD_RING_AHEAD at a time), and
 * dsd__ring_trim gives them back (MADV_DONTNEED) when the ring is empty, so
 * an idle ring costs no resident memory.
 */
#ifndef DP_DSD_RING_H
#define DP_DSD_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DSD_RING_HDR 8u
/* The memory budget (cmn_budget_*, DRAINPIPE_MEMORY_LIMIT) covers the
 * ring's pages beyond its first DSD_RING_FLOOR bytes (always usable: part
 * of the fixed overhead), reserved in DSD_RING_BUDGET_STEP steps as the
 * ring first reaches them and released when it is trimmed or freed. */
#define DSD_RING_FLOOR ((size_t)1 << 20)
#define DSD_RING_BUDGET_STEP ((size_t)256 << 10)
/* Past backlog pages given back at an early wrap, when at least this many
 * bytes (dsd_ring.c ring_shed): one shedding per large backlog, not per
 * lap. */
#define DSD_RING_SHED_MIN ((size_t)1 << 20)
/* ...and only once the head has mapped no new page for this long: a ring
 * whose laps go deep now and then (a loop that falls behind for a moment
 * at 15 M lines/s) keeps its pages instead of giving 15 MiB back at the
 * next early wrap and mapping them in again at the next deep lap. On a
 * guest whose host shadows its page tables a page mapped in again costs
 * ~5.5 us at its first write even after MADV_POPULATE_WRITE (bench_pages:
 * ~1.8 us a datagram of (a)), and on one CPU that starves the loop into
 * another deep lap: at 15 M lines/s and SO_RCVBUF 212992 on the test VM,
 * 17 of 25 runs were lossless at 10 s against 7 of 25 at 1 s (2026-12-04,
 * alternated). A one-off backlog's pages then stay 10 s after the ring
 * last grew; an idle ring is still trimmed after 5 s (dsd_dgram.c,
 * DSD_IDLE_TRIM_MS). */
#define DSD_RING_SHED_QUIET_MS 10000u
/* ...at most this many bytes an early wrap, from the top: on the test VM
 * one madvise of 15 MiB held the receive thread for 1.0-1.5 ms, as long
 * as a 212992-byte socket buffer lasts at 15 M lines/s. */
#define DSD_RING_SHED_STEP ((size_t)2 << 20)
/* As the head first reaches untouched pages, the producer maps the next
 * DSD_RING_AHEAD bytes in with one call (cmn_populate) instead of taking a
 * page fault per 4 KiB: on the test VM a fault is an exit to the
 * hypervisor (~11 us), so the first 512 KiB of a burst cost the receive
 * thread ~1.4 ms of faults, longer than a 212992-byte socket buffer holds
 * at 15 M lines/s. */
#define DSD_RING_AHEAD ((size_t)64 << 10)
/* Keep windows of DSD_RING_KEEP_MS: at an early wrap, a depth the ring
 * reached in two of three consecutive windows (a backlog that recurs: the
 * loop serializing a flush every 10 s) is kept resident for
 * DSD_RING_KEEP_HOLD windows after it last recurred. Such a backlog then
 * finds its pages in place, and RSS stays flat instead of following each
 * backlog up and down by megabytes (the soak); a backlog seen once (the
 * start of a sidecar interning 100 000 new contexts, one stall of the
 * loop's CPU) is given back at the next early wrap instead of adding its
 * megabytes to every later peak. */
#define DSD_RING_KEEP_MS 30000u
/* An early wrap (dsd__ring_reserve) needs the consumer within this many
 * bytes of the head, and the tail's offset at least twice that plus the
 * batch asked for. Until the consumer reads the PAD, the producer's room
 * is only the tail's offset: the rest of the mapping lies behind the PAD.
 * Wrapping early whenever the tail was past reset_at, however far behind
 * (a backlog), cut a 16 MiB ring to that offset, half a megabyte or so,
 * for as long as the loop took to read up to the PAD. 1 MiB: with one CPU
 * the loop is woken every 256 KiB, so it is often more than that behind
 * at the end of a lap; a tighter bound sent most laps through the whole
 * mapping. */
#define DSD_RING_EARLY_LAG ((size_t)1 << 20)
#define DSD_RING_KEEP_HOLD 10u
#define DSD_RING_KEEP_WINDOWS (DSD_RING_KEEP_HOLD + 2)
#define DSD_RING_F_TRUNC 1u /* the datagram did not fit: data dropped */
#define DSD_RING_F_PAD 2u   /* skip to the start of the mapping */
#define DSD_RING_F_MARK 4u  /* the rescuer: an episode begins (dsd_int.h) */
#define DSD_RING_F_END 8u   /* the rescuer: the episode ends */

/* The producer's and the consumer's fields are kept 64 bytes apart (no
 * _Alignas: the ring lives inside heap objects with malloc's alignment),
 * so the two threads never write the same cache line. */
struct dsd__ring {
    /* producer's fields */
    _Atomic uint64_t head; /* bytes ever published */
    uint64_t tail_cache;   /* producer's view of tail */
    size_t touched;        /* highest offset written since the last trim */
    uint64_t early_wraps;  /* early wraps so far (the producer wakes the
                              consumer to read the PAD at once) */
    /* deepest lap (its wrap offset) in each keep window: [0] this one,
     * [1] the one before... */
    size_t depth[DSD_RING_KEEP_WINDOWS];
    uint64_t depth_at_ms;     /* when this keep window started */
    uint64_t keep_ms;         /* DSD_RING_KEEP_MS (0: keep nothing) */
    uint64_t grew_ms;         /* when the head last mapped pages in */
    uint64_t shed_quiet_ms;   /* DSD_RING_SHED_QUIET_MS (tests: 0) */
    bool shedding;            /* giving a backlog's pages back, a step an
                                 early wrap */
    uint32_t keep_hold;       /* DSD_RING_KEEP_HOLD (tests: fewer) */
    _Atomic int prod_waiting; /* producer sleeps until space is freed */
    size_t budgeted;          /* bytes after DSD_RING_FLOOR reserved from the
                                 memory budget */
    _Atomic uint64_t budget_refused; /* reserves the budget cut short */
    char pad1[64];
    /* consumer's field */
    _Atomic uint64_t tail; /* bytes ever released */
    char pad2[64];
    /* shared, read-only after init */
    char *base; /* the mapping, cap bytes */
    size_t cap; /* multiple of the page size and of 8 */
};

/* One record handed to the consumer: data borrows the ring until the
 * consumer releases past it. */
struct dsd__ring_rec {
    const char *data;
    uint32_t len;
    uint32_t flags;
    uint64_t next; /* the tail after this record */
};

/* Maps cap bytes (rounded up to the page size; touches nothing). Returns 0
 * or a negative error. */
int dsd__ring_init(struct dsd__ring *r, size_t cap);
/* Unmaps. Safe on a zeroed or already freed ring. */
void dsd__ring_free(struct dsd__ring *r);

/* Producer: the room for up to max_slots slots of slot_data bytes of data
 * each, contiguous, at the head. Writes a PAD and wraps when the end of the
 * mapping is too close, and starts again at offset 0 (an early wrap,
 * counted in early_wraps) once the head is past reset_at, the consumer is
 * within DSD_RING_EARLY_LAG of it and the start of the mapping is free for
 * max_slots slots (so a ring that keeps up reuses the same cache-warm
 * pages and touches the rest only under a backlog). Returns the number of slots
 * (0 = full) and sets *at to the first slot's start (its header). */
size_t dsd__ring_reserve(struct dsd__ring *r, size_t slot_data,
                         size_t max_slots, size_t reset_at, char **at);
/* Where a batch of received datagrams lies: datagram i's first head_len
 * bytes (or fewer) at head + i * head_len, the rest (if any) at
 * tail + i * tail_len (tail NULL: datagrams never exceed head_len). */
struct dsd__ring_src {
    const char *head;
    size_t head_len;
    const char *tail;
    size_t tail_len;
};
/* Producer: copies n received datagrams from src into consecutive records
 * from `at` (as returned by dsd__ring_reserve for at least n slots),
 * writes their headers and publishes them. lens and flags are per
 * datagram. Returns the bytes published. */
size_t dsd__ring_pack(struct dsd__ring *r, char *at,
                      const struct dsd__ring_src *src, size_t n,
                      const uint32_t *lens, const uint32_t *flags);
/* The same, datagram i taken from src's slot slots[i] (its head at
 * src->head + slots[i] * head_len, its tail likewise), its length and
 * flags from lens and flags at that slot. */
size_t dsd__ring_pack_slots(struct dsd__ring *r, char *at,
                            const struct dsd__ring_src *src, size_t n,
                            const uint32_t *lens, const uint32_t *flags,
                            const uint32_t *slots);

/* Consumer: the record at position pos (a tail value), or false when
 * pos == head (acquired). PAD records are skipped internally. */
bool dsd__ring_peek(struct dsd__ring *r, uint64_t pos, uint64_t head,
                    struct dsd__ring_rec *out);
/* Consumer: releases everything before pos; returns true when the
 * producer waits for space and must be woken. */
bool dsd__ring_release(struct dsd__ring *r, uint64_t pos);

/* Bytes published and not yet released (either side, approximate). */
uint64_t dsd__ring_used(struct dsd__ring *r);
/* Producer: gives the pages back to the kernel when the ring is empty.
 * Returns the bytes given back. */
size_t dsd__ring_trim(struct dsd__ring *r);

#endif /* DP_DSD_RING_H */
