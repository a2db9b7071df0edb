/*
 * dp_int.h - private to libdrainpipe/: the in-process submission queue
 * and the internals shared by the library's files.
 *
 * The queue is a bounded multi-producer single-consumer byte ring of
 * length-prefixed records. Producers (any thread calling dp_submit)
 * reserve room by advancing `head` with a compare-and-swap, copy their
 * text, then publish the record with one release store of its header.
 * The consumer (the pipeline's loop thread) reads records from `tail` in
 * order, stops at the first one not yet published, zeroes what it read
 * (a header reads 0 until its producer publishes it) and releases the
 * space with a release store of `tail`. No lock, no allocation and no
 * system call per submission: the loop is woken through a uv_async_t only
 * when it has said it sleeps (`wake`).
 *
 *   offset: tail                              head
 *           v                                 v
 *   ...  [hdr|text....][hdr|text][0000 ...]   | free ... |
 *                              ^ reserved, not published yet
 *
 * A record never wraps: a producer whose record does not fit before the
 * end of the buffer reserves the rest of it as a PAD record too. Bit 63 of
 * `head` closes the queue: once set no reservation succeeds, so the
 * consumer can drain to a final head knowing nothing will follow.
 */
#ifndef DP_INT_H
#define DP_INT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DP_Q_HDR 8u
#define DP_Q_CLOSED ((uint64_t)1 << 63)
#define DP_Q_PAD UINT32_MAX /* header value of a PAD record */
#define DP_Q_DEFAULT_SIZE ((size_t)4 << 20)
#define DP_Q_MIN_SIZE ((size_t)64 << 10)

/* Producer and consumer fields 64 bytes apart: they never share a cache
 * line (the struct lives in a heap object). */
struct dp__queue {
    _Atomic uint64_t head; /* bytes ever reserved | DP_Q_CLOSED */
    char pad1[56];
    _Atomic uint64_t tail; /* bytes ever released */
    _Atomic int wake;      /* 1: the consumer sleeps, wake it */
    char pad2[52];
    char *base;        /* cap bytes, zeroed */
    size_t cap;        /* multiple of 8 */
    size_t max_record; /* largest text accepted: cap / 4 */
};

/* Allocates cap bytes (rounded down to 8) through cmn_calloc: counted in
 * the memory budget's used bytes. 0, UV_EINVAL (below DP_Q_MIN_SIZE) or
 * UV_ENOMEM. */
int dp__queue_init(struct dp__queue *q, size_t cap);
void dp__queue_free(struct dp__queue *q);

/* Producer, any thread: copies len bytes in. 0, CMN_ECAP (full),
 * CMN_ETOOBIG (len > max_record) or CMN_ESTOPPED (closed). On 0, *wake
 * says that the caller must wake the consumer (uv_async_send). */
int dp__queue_push(struct dp__queue *q, const char *buf, size_t len,
                   bool *wake);

/* Consumer: one published record's text, borrowed until dp__queue_pop. */
typedef void (*dp__queue_fn)(void *data, const char *text, size_t len);

/* Consumer: hands published records in order to fn until max_bytes were
 * consumed, the queue is empty, or the next record is not published yet.
 * With `until` != 0, stops at position `until` (a head read earlier) and
 * waits (yielding) for unpublished records before it instead of stopping
 * at them: a producer publishes microseconds after it reserved. Returns
 * the bytes consumed; *more is true when max_bytes stopped it. */
size_t dp__queue_drain(struct dp__queue *q, size_t max_bytes, uint64_t until,
                       dp__queue_fn fn, void *data, bool *more);
/* Consumer: declares it goes to sleep. Returns true when a record was
 * published meanwhile (the caller must drain again instead). */
bool dp__queue_sleep(struct dp__queue *q);
/* The current head (without the closed bit), for `until`. */
uint64_t dp__queue_head(struct dp__queue *q);
/* Closes the queue: later pushes fail with CMN_ESTOPPED. Returns the
 * final head. */
uint64_t dp__queue_close(struct dp__queue *q);

#endif /* DP_INT_H */
