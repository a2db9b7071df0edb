/*
 * agg_internal.h - the aggregator's private types, shared by its .c files
 * (agg__ names, STYLE.md rule 2).
 *
 * Ownership in one picture:
 *
 *   struct agg (loop thread)
 *     ctx table   agg__ctx *  (interned name + host + sorted unique tags)
 *     raw cache   hash(raw name, raw tags) -> agg__ctx *   (a cache only)
 *     buckets     agg__bucket *  keyed by 10 s start; entries point at ctxs
 *     no-agg      agg__noagg samples (ctx + point)
 *     events / service checks: private copies
 *   agg__job (built on the loop, serialized on the pool, freed on the loop)
 *     takes the due buckets, the no-agg batch and the queued events by
 *     swapping; holds one reference on every ctx its entries point at, so
 *     context expiry never frees a ctx a worker is reading. On the pool
 *     its records are built (agg_hist.c), then serialized into payloads,
 *     or, with a record sink, kept for the loop to hand over
 *     (agg_records.c).
 */
#ifndef DP_AGG_INTERNAL_H
#define DP_AGG_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "aggregator.h"
#include "ddsketch.h"

#define AGG_COMP "aggregator"
#define AGG_BUCKET_SECS 10
/* Caps on state fed by input (STYLE.md rule 9); going over is a counted
 * drop (agg_stats.samples_dropped_cap). */
#define AGG_SET_MEMBERS_MAX 65536 /* distinct members per set per bucket */
#define AGG_BUCKETS_MAX 4096      /* open buckets (own timestamps) */
#define AGG_EVENTS_MAX 10000      /* events queued between flushes */
#define AGG_CHECKS_MAX 10000      /* service checks queued */
#define AGG_RAW_CACHE_MAX ((size_t)1 << 22) /* raw-line cache slots */
#define AGG_JOBS_MAX 64 /* flush jobs waiting for the thread pool */
/* Lowest sample rate used: a lower positive rate is raised to it (counted
 * in rates_clamped). Bounds every weight 1/rate to 1e6, so a histogram
 * bucket's count (at most AGG_HIST_SAMPLES_MAX samples) stays below 2^53
 * and a sketch's below its cap. */
#define AGG_RATE_FLOOR 1e-6

/* Entry kinds are enum agg_mtype; sketches are AGG_DISTRIBUTION. */

/* An interned tag, shared by every context that has it (issue 8: 100 000
 * contexts with 5-20 tags drawn from a few thousand distinct tags). The
 * table and the counts are the loop thread's; the bytes never change while
 * a context holds the tag, so workers read them freely. */
struct agg__itag {
    uint64_t h;    /* XXH3 seeded with seed[2]: the context key's term */
    uint32_t refs; /* contexts holding it */
    uint32_t len;
    uint32_t id; /* its index in agg.itag_dir */
    char b[];    /* NUL-terminated */
};

static inline struct cmn_slice agg__itag_slice(const struct agg__itag *t)
{
    return cmn_slice(t->b, t->len);
}

/* Interned tags by id: contexts hold 4-byte ids, not 8-byte pointers (at
 * 100 000 contexts with 5-20 tags, 5 MB less). agg.itag_dir is a fixed
 * directory of AGG_ITAG_DIR chunks of AGG_ITAG_CHUNK slots; neither ever
 * moves while the aggregator lives, so a pool thread serializing a job
 * reads the slots of its contexts' tags while the loop thread fills other
 * slots. Id 0 is none; a free slot holds the next free id, tagged with
 * bit 0. At most AGG_ITAG_DIR * AGG_ITAG_CHUNK - 1 distinct tags live at
 * once (far past any memory budget: each takes 32 bytes or more). */
#define AGG_ITAG_CHUNK_BITS 10
#define AGG_ITAG_CHUNK ((uint32_t)1 << AGG_ITAG_CHUNK_BITS)
#define AGG_ITAG_DIR ((size_t)1 << 15)

/* The interned tag of id (a live one). */
#define AGG_ITAG(a, id)                                                        \
    ((a)->itag_dir[(id) >> AGG_ITAG_CHUNK_BITS][(id) & (AGG_ITAG_CHUNK - 1)])

/* An interned context. One allocation (cmn_malloc_sized, of agg__ctx_size
 * bytes): the struct, then the ids of ntags interned tags, then the
 * NUL-terminated name. The host is an interned tag too (most contexts
 * share the default host's). Kept compact: at 100 000 contexts with 5-20
 * tags the contexts are most of the heap. */
struct agg__ctx {
    uint64_t key; /* order-independent context key */
    union {
        uint64_t id;                /* creation number: stable output order */
        struct agg__ctx *next_dead; /* once dead: the expiry's free list */
    };
    double last_seen;      /* latest sample (or zero-fill) time */
    double counter_last;   /* latest counter sample time; NAN = untracked */
    uint32_t cache_gen[2]; /* bucket generation of cache_idx: [0] series,
                              [1] sketch; 0 = none */
    uint32_t cache_idx[2]; /* entry index in that bucket */
    uint32_t refs;         /* bucket entries, no-agg samples and jobs */
    uint32_t ntags;
    uint32_t name_len;
    uint8_t zf_epoch; /* a->zf_epoch once the running zero-fill visited it */
    bool dead;        /* expired: out of the table, freed once the raw
                         cache no longer points at it */
    uint32_t host;    /* tag id; one reference */
    uint32_t tags[];  /* tag ids, sorted by their bytes, unique; one
                         reference each */
};

static inline size_t agg__ctx_size(uint32_t ntags, size_t name_len)
{
    return offsetof(struct agg__ctx, tags) + ntags * sizeof(uint32_t) +
           name_len + 1;
}

static inline struct cmn_slice agg__ctx_name(const struct agg__ctx *c)
{
    return cmn_slice((const char *)&c->tags[c->ntags], c->name_len);
}

/* Raw-line cache slot: XXH3(raw name, raw tags) -> context, 16 bytes.
 * A hit is checked byte for byte, so a forged hash collision cannot send a
 * line to another context. Most lines are checked against the context
 * itself (AGG_RC_VIA_CTX: the raw name is the context's name and the raw
 * tags a permutation of its tags), which costs no copy; only the other
 * lines (special or host: tags, repaired UTF-8, over 64 tags) keep a copy
 * of their raw bytes in agg.rc_bytes: {u32 name len, u32 tags len, name,
 * tags} at off. At 100 000 contexts with 5-20 tags that copy was ~15 MB. */
struct agg__rc_slot {
    uint32_t h;           /* low half of the raw hash (slot home) */
    uint32_t off;         /* AGG_RC_VIA_CTX, or the copy at rc_bytes + off */
    struct agg__ctx *ctx; /* NULL = empty */
};
#define AGG_RC_VIA_CTX UINT32_MAX
/* Raw keys copied before the cache checks lines against their contexts
 * instead (agg_context.c agg_rc_put). */
#define AGG_RC_COPY_BYTES ((size_t)1 << 20)
#define AGG_RAW_CACHE_BYTES ((size_t)64 << 20)

struct agg__set {
    uint64_t *slots; /* member hashes, 0 = empty */
    uint32_t n, mask;
};

struct agg__hsample {
    double v;
    int64_t w; /* int64(1/rate) */
};

struct agg__hist {
    struct agg__hsample *s; /* exact samples; NULL once sketched */
    uint32_t n, cap;
    struct agg_sketch *sk; /* NULL: exact; else every sample is in it */
    int64_t count;         /* sketched: exact weighted count */
    double min, max;       /* sketched: min and max over every sample */
    /* sum of value * (1/rate) over every sample, in arrival order
     * (Neumaier compensated: the true sum is sum + comp). Not value * w:
     * with a rate whose inverse is not whole (0.21 -> 4.76..) the Agent
     * adds the exact 1/rate to the sum but int64(1/rate) to the count
     * (pkg/metrics/histogram.go), see docs/conformance.md. */
    double sum, comp;
};

struct agg__entry {
    struct agg__ctx *ctx;
    uint8_t kind; /* enum agg_mtype of the entry's first sample */
    uint32_t h;   /* low half of the index hash (a growing index copies
                     by it without reading the context) */
    union {
        double gauge;           /* last value */
        double sum;             /* counter: sum of value / rate */
        struct agg__set *set;   /* owned */
        struct agg__hist *hist; /* owned (histogram and timing) */
        struct agg_sketch *sk;  /* owned (distribution) */
    } u;
};

struct agg__bucket {
    int64_t start; /* epoch-aligned bucket start */
    uint32_t gen;  /* unique per bucket (2^32 - 1 buckets before a repeat:
                      over a thousand years of 10 s buckets), never 0 */
    struct agg__entry *ents; /* owned */
    uint32_t n, cap;
    uint32_t *idx; /* open addressing: entry index + 1, 0 = empty */
    uint32_t idx_mask;
    /* the index before its doubling, copied in steps as ctab_old */
    uint32_t *idx_old, *idx_next;
    uint32_t idx_omask, idx_mig;
    size_t idx_pf;
    uint32_t nseries; /* entries that are not sketches */
    bool scrubbed;    /* entries own nothing, index cleared (worker) */
    struct agg *a;    /* its aggregator (agg__free_off_loop) */
};

/* One timestamped sample of the no-aggregation path. */
struct agg__noagg {
    struct agg__ctx *ctx; /* holds a reference */
    double value;         /* already value/10 for counters */
    int64_t ts;           /* the client's T */
    uint8_t api_type;     /* AGG__API_* */
};

enum { AGG__API_COUNT = 1, AGG__API_RATE = 2, AGG__API_GAUGE = 3 };

/* Immutable, reference-counted list of extra tags (loop thread counts). */
struct agg__tagset {
    uint32_t refs;
    size_t n;
    struct cmn_slice tags[]; /* bytes follow */
};

/* A private copy of an event. */
struct agg__event {
    struct cmn_slice title, text, host, agg_key, source;
    uint64_t seq; /* arrival order, for a stable sort */
    int64_t ts;
    enum agg_event_priority priority;
    enum agg_alert_type alert_type;
    size_t ntags;
    struct cmn_slice tags[]; /* bytes follow */
};

struct agg__check {
    struct cmn_slice name, host, message;
    int status;
    int64_t ts;
    size_t ntags;
    struct cmn_slice tags[];
};

/* Name suffixes of histogram series: [0] "" then one per aggregate, then
 * one per percentile. */
struct agg__suffix {
    char name[24]; /* ".max", ".95percentile" */
    uint8_t api_type;
    uint8_t what; /* AGG__H_* */
    int pct;      /* percentiles: int(p * 100 + 0.5) */
};
enum {
    AGG__H_NONE,
    AGG__H_MAX,
    AGG__H_MIN,
    AGG__H_MEDIAN,
    AGG__H_AVG,
    AGG__H_SUM,
    AGG__H_COUNT,
    AGG__H_PCT
};

/* One series point of a flush (agg_hist.c): the value of one bucket entry
 * for one name suffix. The records of one series (same context, suffix and
 * API type) are adjacent, by time. */
struct agg__rec {
    struct agg__ctx *ctx;
    int64_t ts;
    double v;
    uint16_t suffix; /* index in agg.suffix */
    uint8_t api;     /* AGG__API_* */
};

/* One finished sketch of a flush, with its summary copied out (the sketch
 * itself is freed when the worker scrubs the bucket). */
struct agg__skrec {
    struct agg__ctx *ctx;
    int64_t ts;
    const struct agg_sketch *sk; /* the bins: valid on the worker only */
    int64_t cnt;
    double min, max, sum, avg;
    double p50, p99; /* only with a record sink (agg__job_records) */
};

/* Counters a worker fills; added into agg_stats on the loop thread. */
struct agg__job_stats {
    uint64_t series, points, sketches, payloads, items_too_big,
        payloads_dropped, nonfinite;
};

struct agg__job {
    struct agg__job *next; /* pending queue */
    struct agg *a;
    uv_work_t work;
    struct agg__bucket **buckets; /* owned */
    size_t nbuckets;
    struct agg__noagg *noagg; /* owned */
    size_t nnoagg;
    struct agg__event **events; /* owned */
    size_t nevents;
    struct agg__check **checks; /* owned */
    size_t nchecks;
    struct agg__tagset *extra; /* one reference */
    struct agg__rec *recs;     /* owned: series records (agg_hist.c) */
    size_t nrecs;
    struct agg__skrec *skrecs; /* owned: sketch records */
    size_t nskrecs;
    struct fwd_payload **out; /* built by the worker, in order */
    size_t nout, capout;
    struct agg__job_stats st;
    agg_done_cb cb;
    void *cb_data;
};

/* Generic payload packer: items are byte chunks joined by sep between
 * prefix and suffix; payloads are cut by item points, uncompressed bytes
 * and compressed bytes; an item too big alone is dropped and counted. */
struct agg__chunks {
    struct cmn_buf data; /* the items' bytes back to back */
    size_t *end;         /* end offset of item i */
    uint32_t *points;    /* points of item i */
    size_t n, cap;
    uint64_t pts; /* points of the n items */
    bool failed;  /* an allocation failed: some items are missing */
};
struct agg {
    uv_loop_t *loop;
    struct agg_config cfg; /* deep copy */
    const char *host;      /* "" in serverless mode, else cfg.hostname */
    fwd_submit_fn submit;  /* NULL with a record sink */
    void *submit_data;
    struct agg_record_sink rsink; /* rsink.data NULL: none */
    bool has_rsink;
    agg_clock_fn clock; /* NULL = wall clock */
    void *clock_data;
    uint64_t clock_at;   /* uv_now() when clock_cached was read */
    double clock_cached; /* wall clock, unix seconds */
    uint32_t clock_uses; /* samples stamped since clock_cached */
    struct agg_stats st;

    /* contexts */
    struct agg__ctx **ctab; /* open addressing by key */
    size_t ctab_mask, nctx;
    /* Bytes of the memory budget reserved for flushing the contexts:
     * AGG_FLUSH_ROOM per context, in AGG_FLUSH_ROOM_CHUNK steps. */
    size_t flush_room;
    /* Growth in steps (AGG_GROW_STEP slots per insert): the table before
     * its doubling, whose slots below ctab_mig are copied into ctab. Until
     * it is freed lookups try ctab, then it; nothing is deleted from
     * either (expiry first finishes the copy), so its copied slots stay
     * valid duplicates. NULL = no growth running. Same for rc_old. */
    struct agg__ctx **ctab_old;
    size_t ctab_omask, ctab_mig;
    /* The array of the next doubling, allocated at 7/16 load and faulted
     * in a little per insert (agg__prefault), so that neither the inserts
     * nor the copy fault a page each. Same for rc_next and idx_next. */
    struct agg__ctx **ctab_next;
    size_t ctab_pf;
    uint64_t next_ctx_id;
    struct agg__rc_slot *rc; /* raw-line cache: open addressing */
    size_t rc_mask, rc_n;    /* rc_n: distinct slots of rc and rc_old */
    struct agg__rc_slot *rc_old, *rc_next;
    size_t rc_omask, rc_mig, rc_pf;
    struct cmn_buf rc_bytes;        /* raw keys of the slots not VIA_CTX */
    uint32_t host_tag;              /* host interned (one reference), or
                                       0 before its first context */
    uint64_t seed[4];               /* per-process hash seeds (getrandom): name,
                                       host, tag, set member */
    struct cmn_slice *scratch_tags; /* tags_per_metric_max + specials */
    uint64_t *scratch_hash;         /* the hashes of scratch_tags */
    size_t scratch_cap;
    struct agg__itag **ttab; /* interned tags: open addressing by h */
    size_t ttab_mask, ntag;
    struct agg__itag **itag_dir[AGG_ITAG_DIR]; /* see AGG_ITAG */
    uint32_t itag_free;                        /* first free id, or 0 */
    uint32_t itag_next;                        /* ids handed out: 1.. */
    char *copy_name; /* histogram_copy_to_distribution: prefix + name */
    size_t copy_cap;

    /* time sampler */
    struct agg__bucket **buckets;
    size_t nbuckets, capbuckets;
    struct agg__bucket *last;  /* bucket of the previous sample */
    struct agg__bucket *spare; /* a flushed bucket's arrays, for reuse */
    uint32_t next_gen;
    int64_t last_cutoff;
    struct agg__suffix *suffix;
    size_t nsuffix;

    /* no-aggregation path */
    struct agg__noagg *noagg;
    size_t nnoagg;

    /* events and service checks */
    struct agg__event **events;
    size_t nevents, capevents;
    struct agg__check **checks;
    size_t nchecks, capchecks;

    struct agg__tagset *extra;

    /* The series packer's buffers and the zstd context, kept from one
     * flush to the next: one job serializes at a time (running), and a
     * flush's scratch (the raw series, about 180 bytes a context, up to a
     * payload's 5 MB) no longer comes and goes as several MiB of RSS. Only
     * that job's worker touches them. */
    struct agg__chunks sch;
    void *zcx;

    /* flushing */
    uv_timer_t timer;
    bool timer_inited, timer_closed, started, stopping, stop_reported;
    struct agg__job *running;     /* in the thread pool, or held */
    struct agg__job *inline_done; /* small, worked on the loop: its
                                     after-work waits for the next step */
    bool held;           /* running waits for the sink (back-pressure) */
    agg_full_fn bp_full; /* NULL: no back-pressure */
    agg_on_space_fn bp_on_space;
    void *bp_data;
    struct agg__job *pend_head, *pend_tail; /* waiting for it */
    size_t npending;
    agg_done_cb stop_cb;
    void *stop_data;

    /* Bounded loop steps (agg_step.c): the flush-time walks over the
     * context table run a few thousand contexts per loop iteration from
     * an idle handle, each step ending by AGG_STEP_NS. */
    uv_idle_t idle;
    bool idle_inited, idle_active;
    uint32_t step_items; /* tests: cap items per step; 0 = time only */
    /* counter zero-fill of the job being prepared (one at a time) */
    struct agg__job *zf_job;
    struct agg__ctx **zf_tab; /* the table the cursor walks */
    size_t zf_cursor;
    uint64_t zf_id_limit; /* contexts created since are not visited */
    uint8_t zf_epoch;
    bool zf_synth; /* the job's last bucket is the synthetic one */
    int64_t zf_cutoff;
    double zf_expire_before; /* the expiry that follows it */
    /* context expiry: 1 unlink from the table, 2 scrub the raw cache,
     * 3 free; 0 = none running */
    int ex_phase;
    size_t ex_cursor;
    const void *ex_tab; /* the table phase 1 or 2 walks */
    double ex_before;
    struct agg__ctx *dead; /* unlinked by the expiry, to be freed; linked
                              through next_dead */
    size_t ndead;
    /* jobs serialized and submitted, releasing their context references */
    struct agg__job *reap_head, *reap_tail;
    size_t reap_b, reap_k;
    /* loop busy meter: check (after poll) -> prepare (before the next
     * poll) is a stretch of callbacks; prepare -> check is the I/O
     * callbacks of one poll (plus the poll's sleep, left out: the CPU
     * time of the thread does not count it, the wall time subtracts
     * uv_metrics_idle_time) */
    uv_check_t meter_chk;
    uv_prepare_t meter_prep;
    bool meter_inited;
    uint64_t meter_chk_at, meter_prep_at, meter_idle_at; /* wall */
    uint64_t meter_chk_cpu, meter_prep_cpu;              /* thread CPU time */
    bool meter_cpu;       /* read the CPU clock (debug level, tests) */
    size_t nbg;           /* agg__free_off_loop jobs not yet done */
    bool destroy_pending; /* agg_destroy came first: the last job frees */
    int nclosing;         /* handles closing at stop */
    bool handles_closing; /* their close has started */
    bool stopping_closed; /* no step handle may be created any more */
};

/* The interned tags of c (ids) as bytes; readable by the pool thread of a
 * job that holds c. */
static inline struct cmn_slice
agg__ctx_tag(const struct agg *a, const struct agg__ctx *c, uint32_t i)
{
    return agg__itag_slice(AGG_ITAG(a, c->tags[i]));
}

static inline struct cmn_slice agg__ctx_host(const struct agg *a,
                                             const struct agg__ctx *c)
{
    return agg__itag_slice(AGG_ITAG(a, c->host));
}

/* Frees p (cmn_free, or cmn_free_big when big) on the thread pool when
 * it is at least AGG_FREE_OFF_LOOP bytes and the aggregator runs: giving
 * tens of MiB back to the kernel (a table that doubled, a bucket of a
 * million entries) costs the loop thread milliseconds of page freeing and
 * TLB shootdowns. Elsewhere, or when the work cannot be queued, it frees
 * at once. agg_stop's callback waits for these frees. */
#define AGG_FREE_OFF_LOOP ((size_t)1 << 20)
void agg__free_off_loop(struct agg *a, void *p, bool big);

/* agg_step.c */
/* Budget of one step (ns): steps leave room for the rest of the loop's
 * callbacks within 1 ms. The first step of a flush runs in the flush's
 * own callback (a timer), and the idle handle's step follows it in the
 * same loop iteration: that one is shorter, so the two stay well under
 * 1 ms together. */
#define AGG_STEP_NS 250000
#define AGG_FIRST_STEP_NS 100000
/* The final flush (agg_stop) of at most this many entries, events and
 * checks is serialized on the loop thread (well under AGG_STEP_NS) instead
 * of the thread pool: a short job's exit then never starts the pool's
 * threads (four thread creations, 0.3-1 ms on the test VM). Flushes while
 * running keep the pool. */
#define AGG_INLINE_ITEMS 256
/* Starts the zero-fill of j (buckets already taken); enqueues j and starts
 * the expiry once it is done. Returns 0 or UV_ENOMEM. */
int agg__zf_begin(struct agg *a, struct agg__job *j, int64_t cutoff, bool synth,
                  double expire_before) CMN_MUST_CHECK;
/* A counter sample for c while a zero-fill runs: visits c first, so that
 * the zero-fill sees its counter state as of the flush. */
void agg__zf_touch(struct agg *a, struct agg__ctx *c);
/* Hands a serialized job over for its references to be released in steps;
 * its callback is called once they are. */
void agg__reap(struct agg *a, struct agg__job *j);
/* A small job serialized on the loop thread (AGG_INLINE_ITEMS): its
 * after-work (agg__job_after) runs at the next step, never inside the
 * call that started it. */
void agg__steps_after(struct agg *a, struct agg__job *j);
void agg__job_after(struct agg__job *j);
/* Runs the pending zero-fill (and with ex the expiry) to the end: a new
 * flush needs them done. */
void agg__steps_finish(struct agg *a, bool ex);
/* True while a zero-fill, an expiry, a reap or an inline job's after-work
 * is pending. */
bool agg__steps_pending(const struct agg *a);
void agg__steps_fini(struct agg *a);
/* The loop busy meter (agg_start) and closing the step handles (stop):
 * returns the handles to wait for (their close callbacks call
 * agg__handle_closed). */
int agg__meter_start(struct agg *a) CMN_MUST_CHECK;
/* The full meter: CPU time, and the poll's I/O callbacks (debug level). */
void agg__meter_full(struct agg *a);
int agg__handles_close(struct agg *a);
void agg__handle_closed(struct agg *a);
/* agg.c: frees j (releasing what it still holds). */
void agg__job_free(struct agg *a, struct agg__job *j);
/* agg.c: reports the stop once nothing is left to do. */
void agg__maybe_stopped(struct agg *a);
/* agg.c: frees a job whose references are released; calls its cb. */
void agg__job_done(struct agg *a, struct agg__job *j);
/* agg.c: enqueues a prepared job (serialization on the pool). */
void agg__job_enqueue(struct agg *a, struct agg__job *j);
/* agg_sampler.c: zero-fills c into the job's buckets (§2.4). */
void agg__zero_fill_ctx(struct agg *a, struct agg__job *j, struct agg__ctx *c);
/* agg_sampler.c: the worker frees b's per-entry state and clears its
 * index, keeping the entries' context pointers for the loop to release. */
void agg__bucket_scrub(struct agg__bucket *b);
/* Slots an insert copies from a growing table's old array: at 64 a
 * doubling is done after a quarter of the old array's size in inserts,
 * before the new array is half full, and no insert copies for more than a
 * few microseconds. */
#define AGG_GROW_STEP 16

/* The memory budget's room for one context's share of a flush, reserved
 * while the context lives: the flush's working set grows with the
 * contexts (a 32-byte record per series, the payloads it builds, raw and
 * compressed, queued for the forwarder, and the next bucket's entries
 * meanwhile); about 85 bytes a context in the cardinality flood of
 * test_e2e_memory.c (200 000 gauge and counter contexts: 17 MB).
 * Histogram and distribution contexts flush more, but hold much more. */
#define AGG_FLUSH_ROOM ((size_t)64)
#define AGG_FLUSH_ROOM_CHUNK ((size_t)64 << 10)

/* Whether a table of size slots holding n + 1 prepares its next array:
 * at 7/16 load, late, as the prepared array is resident memory (at 3/8 a
 * sidecar with 100 000 contexts held 8 MiB of next arrays for nothing). */
static inline bool agg__grow_prepare(size_t n, size_t size)
{
    return (n + 1) * 16 > size * 7;
}

/* Faults in the next bytes of a table's next array p (bytes in all, *done
 * so far) by writing one byte per 4 KiB: 64 slots' worth per insert
 * (slot bytes), so the whole array (twice the table) is in by 15/32 load,
 * before the table is half full: one page every 4 to 16 inserts. */
static inline void agg__prefault(void *p, size_t bytes, size_t *done,
                                 size_t slot)
{
    size_t end = *done + 64 * slot;
    if (end > bytes)
        end = bytes;
    for (size_t o = (*done + 4095) & ~(size_t)4095; o < end; o += 4096)
        ((volatile char *)p)[o] = 0;
    *done = end;
}
/* agg_context.c: finishes the growth of the context table and of the raw
 * cache, *budget counting down the slots copied; true when done. */
bool agg__grow_finish(struct agg *a, long *budget);
/* agg_context.c: expiry steps; each returns true when its phase is done.
 * *budget counts down the items visited. */
bool agg__ex_unlink(struct agg *a, long *budget);
bool agg__ex_scrub(struct agg *a, long *budget);

/* agg_hist.c: builds the job's records (series with the histogram
 * aggregates, finished sketches, events sorted) on the worker; quantiles:
 * also each sketch's p50 and p99. */
void agg__job_records(struct agg__job *j, bool quantiles);
void agg__job_records_free(struct agg__job *j);

/* agg_records.c */
/* Hands the job's records to the record sink (loop thread, before the job's
 * context references are released). */
void agg__records_emit(struct agg__job *j);
/* The tags of ctx plus the job's extra tags it lacks, into *out (grown as
 * needed); with take_device, a device: tag is removed and returned in
 * *device. Returns the count, or -1 when memory ran out. */
long agg__tags(const struct agg__job *j, const struct agg__ctx *c,
               struct cmn_slice **out, size_t *cap, bool take_device,
               struct cmn_slice *device);
/* tags + the job's extra tags they lack, into *out (grown as needed).
 * Returns the count, or -1 when memory ran out. */
long agg__tags_merge(const struct agg__job *j, const struct cmn_slice *tags,
                     size_t n, struct cmn_slice **out, size_t *cap);

/* agg_config.c */
int agg__config_copy(struct agg_config *dst,
                     const struct agg_config *src) CMN_MUST_CHECK;
int agg__suffix_build(struct agg *a) CMN_MUST_CHECK;
struct agg__tagset *agg__tagset_new(const struct cmn_slice *tags, size_t n);
void agg__tagset_unref(struct agg__tagset *t);

/* The definition of a function on every metric line's path, always
 * inlined where its body is seen: agg_add_one in agg.c, and agg__ctx_get
 * and agg__sample, defined in other files than their caller (agg.c), by
 * link-time optimization (Release builds; without it, ordinary calls).
 * Kept out of line, the three cost each line a call, six saved registers
 * and their restore: about 45 of (a)'s ~460 instructions a line
 * (bench/README.md). */
#define AGG_LINE_PATH __attribute__((always_inline)) inline

/* agg_context.c */
int agg__ctx_init(struct agg *a) CMN_MUST_CHECK;
void agg__ctx_fini(struct agg *a);
/* XXH3_64bits_withSeed with its short-key path inlined (the hash of the
 * context table and raw-line cache). */
uint64_t agg__hash(const void *p, size_t n, uint64_t seed);
/* Finds or interns the context of (name, raw tags). Returns 0, CMN_ECAP,
 * CMN_ETOOBIG or UV_ENOMEM. */
int agg__ctx_get(struct agg *a, struct cmn_slice name, struct cmn_slice tags,
                 struct agg__ctx **out) CMN_MUST_CHECK;
/* The expiry of contexts unused since before `before`, in steps. */
void agg__ctx_expire_begin(struct agg *a, double before);
/* Splits a raw tag field on ','; an empty field gives none. Returns the
 * count or -1 when there are more than max. */
long agg__split_tags(struct cmn_slice raw, struct cmn_slice *out, size_t max);
/* Frees an expired context and releases its tags. */
void agg__ctx_free(struct agg *a, struct agg__ctx *c);
static inline void agg__ctx_unref(struct agg__ctx *c)
{
    c->refs--;
}

/* agg.c: counts n NaN/Inf values of m dropped, logs (rate-limited). */
void agg__count_nan(struct agg *a, const struct agg_metric *m, uint64_t n);

/* agg_sampler.c */
int agg__sample(struct agg *a, struct agg__ctx *c, const struct agg_metric *m,
                double t) CMN_MUST_CHECK;
void agg__bucket_free(struct agg__bucket *b);
/* Frees b's entries and keeps its arrays as the spare bucket (or frees it
 * when there is one already). Loop thread. */
void agg__bucket_recycle(struct agg *a, struct agg__bucket *b);
/* Moves the due buckets (all with force) into the job, and a synthetic
 * empty bucket (*synth) when no bucket holds series, for the counter
 * zeros (§2.4) that agg__zf_begin adds. */
int agg__take_buckets(struct agg *a, struct agg__job *j, int64_t cutoff,
                      bool force, bool *synth) CMN_MUST_CHECK;
void agg__synth_drop_empty(struct agg__job *j);
int64_t agg__bucket_start(double t);

/* agg_events.c */
int agg__event_copy(struct agg *a, const struct agg_event *e, double now,
                    struct agg__event **out) CMN_MUST_CHECK;
int agg__check_copy(struct agg *a, const struct agg_service_check *sc,
                    double now, struct agg__check **out) CMN_MUST_CHECK;

/* agg_serialize.c: UTF-8 (contexts are repaired at intake with these). */
char *agg__utf8_fix(struct cmn_slice s, size_t *out_len);
/* True when s is valid UTF-8 (no overlong forms, no surrogates). */
bool agg__utf8_valid(struct cmn_slice s);
/* Writes s with each invalid byte replaced by U+FFFD into o (at least
 * 3 * s.len bytes); returns the bytes written. */
size_t agg__utf8_fix_into(struct cmn_slice s, char *o);
/* The tags a series carries: ctx tags then extra tags it lacks. */
bool agg__has_tag(const struct cmn_slice *tags, size_t n, struct cmn_slice t);

#endif /* DP_AGG_INTERNAL_H */
