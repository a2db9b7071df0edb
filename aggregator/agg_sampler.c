/*
 * agg_sampler.c - the time sampler (spec/pipeline.md §2.2-§2.4): 10 s
 * epoch-aligned buckets keyed by their start, one entry per (context,
 * series-or-sketch) in a bucket, per-type state, and the flush-time work
 * that must run on the loop thread: choosing the due buckets, counter
 * zero-fill and the synthetic zero bucket.
 *
 * Invariants: a bucket entry holds one reference on its context; an entry's
 * kind is fixed by its first sample; a context's cache_gen/cache_idx name
 * its entry in the live bucket with that generation, so a repeated line
 * finds its entry without hashing. Generations are 32 bits and skip 0;
 * after 2^32 - 1 buckets one could repeat, so a cached index is used only
 * when the entry it names is c's.
 */
#include "agg_internal.h"

#include <limits.h>
#include <math.h>
#include <string.h>

#define XXH_INLINE_ALL /* short keys: inlined XXH3 avoids the call */
#include <xxhash.h>

#define AGG_SKETCH_SEED 0xC2B2AE3D27D4EB4FULL

int64_t agg__bucket_start(double t)
{
    int64_t s = (int64_t)t; /* truncates toward 0: floor for t >= 0 */
    if ((double)s > t)
        s--;
    int64_t r = s % AGG_BUCKET_SECS;
    if (r < 0)
        r += AGG_BUCKET_SECS;
    return s - r;
}

static void agg_entry_free(struct agg__entry *e)
{
    switch (e->kind) {
    case AGG_SET:
        if (e->u.set)
            cmn_free(e->u.set->slots);
        cmn_free(e->u.set);
        break;
    case AGG_HISTOGRAM:
    case AGG_TIMING:
        if (e->u.hist) {
            cmn_free(e->u.hist->s);
            if (e->u.hist->sk)
                agg_sketch_free(e->u.hist->sk);
            cmn_free(e->u.hist->sk);
        }
        cmn_free(e->u.hist);
        break;
    case AGG_DISTRIBUTION:
        if (e->u.sk)
            agg_sketch_free(e->u.sk);
        cmn_free(e->u.sk);
        break;
    default:
        break;
    }
}

void agg__bucket_free(struct agg__bucket *b)
{
    if (b == NULL)
        return;
    for (uint32_t i = 0; i < b->n; i++)
        agg_entry_free(&b->ents[i]);
    agg__free_off_loop(b->a, b->ents, true);
    agg__free_off_loop(b->a, b->idx, false);
    agg__free_off_loop(b->a, b->idx_old, false);
    agg__free_off_loop(b->a, b->idx_next, false);
    cmn_free(b);
}

void agg__bucket_scrub(struct agg__bucket *b)
{
    for (uint32_t i = 0; i < b->n; i++) {
        agg_entry_free(&b->ents[i]);
        b->ents[i].kind = AGG_GAUGE; /* nothing owned any more */
    }
    memset(b->idx, 0, ((size_t)b->idx_mask + 1) * sizeof(*b->idx));
    cmn_free(b->idx_old);
    b->idx_old = NULL;
    b->scrubbed = true;
}

/* A spare bucket keeps its arrays whatever their size: at a million
 * contexts the next bucket then grows no index on the loop (a doubling of
 * a million entries would take tens of milliseconds). */
void agg__bucket_recycle(struct agg *a, struct agg__bucket *b)
{
    if (a->spare != NULL) {
        agg__bucket_free(b);
        return;
    }
    if (!b->scrubbed)
        agg__bucket_scrub(b);
    b->scrubbed = false;
    b->n = 0;
    b->nseries = 0;
    a->spare = b;
}

static uint32_t agg_gen_next(struct agg *a)
{
    if (++a->next_gen == 0)
        a->next_gen = 1;
    return a->next_gen;
}

/* c's entry of kind sk in b from c's cache, or NULL. */
static inline struct agg__entry *agg_cached(struct agg__bucket *b,
                                            const struct agg__ctx *c, int sk)
{
    uint32_t i = c->cache_idx[sk];
    if (c->cache_gen[sk] != b->gen || i >= b->n || b->ents[i].ctx != c ||
        (b->ents[i].kind == AGG_DISTRIBUTION) != sk)
        return NULL;
    return &b->ents[i];
}

static struct agg__bucket *agg_bucket_new(struct agg *a, int64_t start)
{
    struct agg__bucket *b = a->spare;
    if (b != NULL) { /* the arrays of a flushed bucket, reused */
        a->spare = NULL;
        b->start = start;
        b->gen = agg_gen_next(a);
        return b;
    }
    b = cmn_calloc(1, sizeof(*b));
    if (b == NULL)
        return NULL;
    b->a = a;
    b->idx_mask = 15;
    b->idx = cmn_calloc(b->idx_mask + 1, sizeof(*b->idx));
    if (b->idx == NULL) {
        cmn_free(b);
        return NULL;
    }
    b->start = start;
    b->gen = agg_gen_next(a);
    return b;
}

/* The live bucket starting at start, created if needed. */
static int agg_bucket_get(struct agg *a, int64_t start,
                          struct agg__bucket **out)
{
    if (a->last != NULL && a->last->start == start) {
        *out = a->last;
        return 0;
    }
    for (size_t i = 0; i < a->nbuckets; i++) {
        if (a->buckets[i]->start == start) {
            *out = a->last = a->buckets[i];
            return 0;
        }
    }
    if (a->nbuckets >= AGG_BUCKETS_MAX)
        return CMN_ECAP;
    if (a->nbuckets == a->capbuckets) {
        size_t ncap = a->capbuckets ? a->capbuckets * 2 : 4;
        void *nb = cmn_reallocarray(a->buckets, ncap, sizeof(*a->buckets));
        if (nb == NULL)
            return UV_ENOMEM;
        a->buckets = nb;
        a->capbuckets = ncap;
    }
    struct agg__bucket *b = agg_bucket_new(a, start);
    if (b == NULL)
        return UV_ENOMEM;
    a->buckets[a->nbuckets++] = b;
    *out = a->last = b;
    return 0;
}

static inline uint64_t agg_ent_hash(const struct agg__ctx *c, int sk)
{
    return c->key + (sk ? AGG_SKETCH_SEED : 0);
}

static void agg_idx_put(struct agg__bucket *b, uint32_t h, uint32_t v)
{
    uint32_t i = h & b->idx_mask;
    while (b->idx[i] != 0)
        i = (i + 1) & b->idx_mask;
    b->idx[i] = v;
}

/* Copies up to budget slots of the old index into idx (as the context
 * table grows, agg_context.c); frees it once every slot is copied. */
static void agg_idx_migrate(struct agg__bucket *b, long budget)
{
    while (b->idx_old != NULL) {
        if ((uint64_t)b->idx_mig > b->idx_omask) {
            agg__free_off_loop(b->a, b->idx_old, false);
            b->idx_old = NULL;
            return;
        }
        if (budget-- <= 0)
            return;
        uint32_t v = b->idx_old[b->idx_mig++];
        if (v != 0)
            agg_idx_put(b, b->ents[v - 1].h, v);
    }
}

/* Starts a doubling of b's index (the copy runs in steps). */
static int agg_idx_grow(struct agg__bucket *b)
{
    agg_idx_migrate(b, LONG_MAX); /* not reached: see AGG_GROW_STEP */
    uint32_t nmask = b->idx_mask * 2 + 1;
    uint32_t *ni = b->idx_next;
    b->idx_next = NULL;
    if (ni == NULL)
        ni = cmn_calloc((size_t)nmask + 1, sizeof(*ni));
    if (ni == NULL)
        return UV_ENOMEM;
    b->idx_old = b->idx;
    b->idx_omask = b->idx_mask;
    b->idx_mig = 0;
    b->idx = ni;
    b->idx_mask = nmask;
    return 0;
}

/* The entry of (c, sk) of hash h in index idx, or NULL. */
static inline struct agg__entry *agg_idx_find(struct agg__bucket *b,
                                              const uint32_t *idx,
                                              uint32_t mask, uint32_t h,
                                              const struct agg__ctx *c, int sk)
{
    for (uint32_t i = h & mask; idx[i] != 0; i = (i + 1) & mask) {
        struct agg__entry *e = &b->ents[idx[i] - 1];
        if (e->ctx == c && (e->kind == AGG_DISTRIBUTION) == sk)
            return e;
    }
    return NULL;
}

static int agg_entry_init(struct agg__entry *e, uint8_t kind)
{
    memset(e, 0, sizeof(*e));
    e->kind = kind;
    switch (kind) {
    case AGG_SET:
        e->u.set = cmn_calloc(1, sizeof(*e->u.set));
        if (e->u.set == NULL)
            return UV_ENOMEM;
        e->u.set->mask = 15;
        e->u.set->slots = cmn_calloc(16, sizeof(uint64_t));
        if (e->u.set->slots == NULL) {
            cmn_free(e->u.set);
            return UV_ENOMEM;
        }
        return 0;
    case AGG_HISTOGRAM:
    case AGG_TIMING:
        e->u.hist = cmn_calloc(1, sizeof(*e->u.hist));
        return e->u.hist ? 0 : UV_ENOMEM;
    case AGG_DISTRIBUTION:
        e->u.sk = cmn_malloc(sizeof(*e->u.sk));
        if (e->u.sk == NULL)
            return UV_ENOMEM;
        agg_sketch_init(e->u.sk);
        return 0;
    default:
        return 0;
    }
}

/* The entry of c in b (sketch or series), created with kind if absent.
 * The pointer is valid until the next entry is added to b. */
static int agg_entry_get(struct agg__bucket *b, struct agg__ctx *c,
                         uint8_t kind, struct agg__entry **out)
{
    int sk = kind == AGG_DISTRIBUTION;
    struct agg__entry *ce = agg_cached(b, c, sk);
    if (ce != NULL) {
        *out = ce;
        return 0;
    }
    uint32_t h = (uint32_t)agg_ent_hash(c, sk);
    struct agg__entry *f = agg_idx_find(b, b->idx, b->idx_mask, h, c, sk);
    if (f == NULL && b->idx_old != NULL)
        f = agg_idx_find(b, b->idx_old, b->idx_omask, h, c, sk);
    if (f != NULL) {
        c->cache_gen[sk] = b->gen;
        c->cache_idx[sk] = (uint32_t)(f - b->ents);
        *out = f;
        return 0;
    }
    if (c->refs == UINT32_MAX)
        return CMN_ECAP;
    if (b->n == b->cap) {
        uint32_t ncap = b->cap ? b->cap * 2 : 8;
        void *ne = cmn_realloc_big(b->ents, ncap, sizeof(*b->ents));
        if (ne == NULL)
            return UV_ENOMEM;
        b->ents = ne;
        b->cap = ncap;
    }
    agg_idx_migrate(b, AGG_GROW_STEP);
    size_t isize = (size_t)b->idx_mask + 1;
    if (b->idx_next == NULL && b->idx_old == NULL &&
        agg__grow_prepare(b->n, isize)) {
        b->idx_next = cmn_calloc(isize * 2, sizeof(*b->idx_next));
        b->idx_pf = 0;
    }
    if (b->idx_next != NULL)
        agg__prefault(b->idx_next, isize * 2 * sizeof(*b->idx_next), &b->idx_pf,
                      sizeof(*b->idx_next));
    if ((b->n + 1) * 2 > b->idx_mask + 1 && agg_idx_grow(b) != 0)
        return UV_ENOMEM;
    struct agg__entry *e = &b->ents[b->n];
    if (agg_entry_init(e, kind) != 0)
        return UV_ENOMEM;
    e->ctx = c;
    e->h = h;
    c->refs++;
    agg_idx_put(b, h, b->n + 1);
    c->cache_gen[sk] = b->gen;
    c->cache_idx[sk] = b->n;
    b->n++;
    if (!sk)
        b->nseries++;
    *out = e;
    return 0;
}

static int agg_set_add(struct agg__set *s, uint64_t h)
{
    if (h == 0)
        h = 1; /* 0 marks an empty slot */
    uint32_t i = (uint32_t)h & s->mask;
    for (; s->slots[i] != 0; i = (i + 1) & s->mask) {
        if (s->slots[i] == h)
            return 0;
    }
    if (s->n >= AGG_SET_MEMBERS_MAX)
        return CMN_ECAP;
    if ((s->n + 1) * 2 > s->mask + 1) {
        uint32_t nmask = s->mask * 2 + 1;
        uint64_t *ns = cmn_calloc((size_t)nmask + 1, sizeof(*ns));
        if (ns == NULL)
            return UV_ENOMEM;
        for (uint32_t k = 0; k <= s->mask; k++) {
            if (s->slots[k] == 0)
                continue;
            uint32_t j = (uint32_t)s->slots[k] & nmask;
            while (ns[j] != 0)
                j = (j + 1) & nmask;
            ns[j] = s->slots[k];
        }
        cmn_free(s->slots);
        s->slots = ns;
        s->mask = nmask;
        i = (uint32_t)h & nmask;
        while (s->slots[i] != 0)
            i = (i + 1) & nmask;
    }
    s->slots[i] = h;
    s->n++;
    return 0;
}

/* The sample weight int64(1/rate). */
static int64_t agg_hist_weight(double rate)
{
    /* w = int64(1/rate), rate 0 -> 1 (histogram.go); clamped so the
     * conversion is defined in C. */
    double w = rate == 0 ? 1 : 1 / rate;
    if (!(w > -9007199254740992.0)) /* also NaN */
        w = w < 0 ? -9007199254740992.0 : 1;
    if (w > 9007199254740992.0)
        w = 9007199254740992.0;
    return (int64_t)w;
}

/* Adds v * (1/rate) to the histogram's sum (the Agent's, exact or
 * sketched alike). */
static void agg_hist_sum(struct agg__hist *h, double v, double rate)
{
    double x = v * (rate == 0 ? 1 : 1 / rate), t = h->sum + x;

    h->comp += fabs(h->sum) >= fabs(x) ? (h->sum - t) + x : (x - t) + h->sum;
    h->sum = t;
}

/* Adds a sample of weight w to the count, min and max a sketched
 * histogram keeps exact. */
static void agg_hist_track(struct agg__hist *h, double v, int64_t w)
{
    h->count += w;
    if (v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
}

/* Inserts one weighted sample into the sketch (weight w as rate 1/w). */
static int agg_hist_sk_insert(struct agg__hist *h, double v, int64_t w)
{
    return agg_sketch_insert(h->sk, v, w > 1 ? 1.0 / (double)w : 1);
}

/* Moves the exact samples into a new sketch and frees them. 0, or an error
 * with h unchanged. */
static int agg_hist_to_sketch(struct agg__hist *h)
{
    struct agg_sketch *sk = cmn_malloc(sizeof(*sk));
    int rc = 0;

    if (sk == NULL)
        return UV_ENOMEM;
    agg_sketch_init(sk);
    h->sk = sk;
    for (uint32_t i = 0; i < h->n && rc == 0; i++)
        rc = agg_hist_sk_insert(h, h->s[i].v, h->s[i].w);
    if (rc != 0) {
        agg_sketch_free(sk);
        cmn_free(sk);
        h->sk = NULL;
        return rc;
    }
    h->count = 0;
    h->min = INFINITY;
    h->max = -INFINITY;
    for (uint32_t i = 0; i < h->n; i++)
        agg_hist_track(h, h->s[i].v, h->s[i].w);
    cmn_free(h->s);
    h->s = NULL;
    h->n = h->cap = 0;
    return 0;
}

static int agg_hist_add(struct agg *a, struct agg__hist *h, double v,
                        double rate)
{
    int64_t w = agg_hist_weight(rate);
    int rc;

    if (h->sk == NULL && h->n == h->cap) {
        bool full = h->n >= AGG_HIST_EXACT_MAX;
        bool budget = !full && h->n > 0 && cmn_budget_over(CMN_BUDGET_SKETCH);
        if (full || budget) {
            rc = agg_hist_to_sketch(h);
            if (rc != 0)
                return rc;
            a->st.hist_to_sketch++;
            if (budget)
                cmn_budget_note(CMN_BUDGET_SKETCH);
        } else {
            uint32_t ncap = h->cap ? h->cap * 2 : 8;
            void *ns = cmn_reallocarray(h->s, ncap, sizeof(*h->s));
            if (ns == NULL)
                return UV_ENOMEM;
            h->s = ns;
            h->cap = ncap;
        }
    }
    if (h->sk != NULL) {
        rc = agg_hist_sk_insert(h, v, w);
        if (rc != 0)
            return rc;
        agg_hist_track(h, v, w);
    } else {
        h->s[h->n].v = v;
        h->s[h->n].w = w;
        h->n++;
    }
    agg_hist_sum(h, v, rate);
    return 0;
}

static struct cmn_ratelimit agg_cap_rl = CMN_RATELIMIT_INIT(60000, 5);

/* Counts n samples dropped at a per-bucket cap or for memory, and logs it
 * (rate-limited): a cap is never passed silently (docs/limits.md). */
static void agg_count_err(struct agg *a, int rc, uint64_t n)
{
    if (rc == CMN_ECAP)
        a->st.samples_dropped_cap += n;
    else
        a->st.samples_dropped_oom += n;
    cmn_log_rl(&agg_cap_rl, CMN_LOG_WARN, AGG_COMP, "dropped %llu samples: %s",
               (unsigned long long)n,
               rc == CMN_ECAP ? "over a per-bucket cap (set members, "
                                "histogram samples or open buckets)"
                              : "out of memory");
}

/* A counter's sample weighted by its rate: v * (1 / rate), the Agent's
 * rounding. Most lines carry no rate, and v * (1 / 1.0) is v exactly: the
 * division (a long-latency instruction on every counter line) is skipped
 * for them. */
static inline double agg_weighted(double v, double rate)
{
    return rate == 1.0 ? v : v * (1 / rate);
}

/* Applies one value to an entry. An entry keeps the type of its first
 * sample; like the Agent, a later sample of another type is fed to it (a
 * set member counts as the value 0, a number into a set is a member). */
static int agg_apply(struct agg *a, struct agg__entry *e, double v,
                     const uint64_t *member, double rate)
{
    switch (e->kind) {
    case AGG_GAUGE:
        e->u.gauge = v;
        return 0;
    case AGG_COUNTER:
        e->u.sum += agg_weighted(v, rate);
        return 0;
    case AGG_SET: {
        uint64_t h;
        if (member == NULL)
            memcpy(&h, &v, sizeof(h));
        return agg_set_add(e->u.set, member ? *member : h);
    }
    case AGG_HISTOGRAM:
    case AGG_TIMING:
        return agg_hist_add(a, e->u.hist, v, rate);
    default:
        return agg_sketch_insert(e->u.sk, v, rate);
    }
}

/* The common line: one finite value of a number type, at a time inside
 * the bucket of the previous sample, for a context whose entry there is
 * cached. Does what the general path does for it without re-deriving the
 * bucket start or scanning the values. Returns false (nothing done) when
 * the line is not of that kind. */
static inline bool agg_sample_fast(struct agg *a, struct agg__ctx *c,
                                   const struct agg_metric *m, double t)
{
    struct agg__bucket *b = a->last;
    if (b == NULL || m->nvalues != 1 || m->type == AGG_SET)
        return false;
    /* floor(t) lies in [start, start + 10) iff t does: start is an integer
     * (NaN fails both comparisons) */
    if (!(t >= (double)b->start && t < (double)(b->start + AGG_BUCKET_SECS)))
        return false;
    int sk = m->type == AGG_DISTRIBUTION;
    double v = m->values[0];
    struct agg__entry *e = agg_cached(b, c, sk);
    if (e == NULL || !isfinite(v))
        return false;
    if (t > c->last_seen)
        c->last_seen = t;
    if (m->type == AGG_COUNTER) {
        if (__builtin_expect(a->zf_job != NULL, 0))
            agg__zf_touch(a, c); /* before its counter state changes */
        if (!(c->counter_last >= t))
            c->counter_last = t;
    }
    if (e->kind == AGG_COUNTER) {
        e->u.sum += agg_weighted(v, m->rate);
    } else {
        int rc = agg_apply(a, e, v, NULL, m->rate);
        if (rc) {
            agg_count_err(a, rc, 1);
            return true;
        }
    }
    a->st.samples++;
    return true;
}

/* The general path (kept out of line so that the fast path's caller saves
 * no registers for it). */
static __attribute__((noinline)) int agg_sample_slow(struct agg *a,
                                                     struct agg__ctx *c,
                                                     const struct agg_metric *m,
                                                     double t)
{
    struct agg__bucket *b;
    struct agg__entry *e;
    int rc;
    uint8_t kind = (uint8_t)m->type;
    bool set = m->type == AGG_SET;
    size_t nv = set ? 1 : m->nvalues;

    if (!set) { /* a line of NaN/Inf only must not create an entry */
        size_t finite = 0;
        for (size_t i = 0; i < m->nvalues; i++)
            finite += isfinite(m->values[i]) != 0;
        if (finite == 0) {
            agg__count_nan(a, m, m->nvalues);
            return 0;
        }
    }
    rc = agg_bucket_get(a, agg__bucket_start(t), &b);
    if (rc == 0)
        rc = agg_entry_get(b, c, kind, &e);
    if (rc) {
        agg_count_err(a, rc, nv);
        return rc;
    }
    if (t > c->last_seen)
        c->last_seen = t;
    if (m->type == AGG_COUNTER) {
        if (__builtin_expect(a->zf_job != NULL, 0))
            agg__zf_touch(a, c); /* before its counter state changes */
        if (!(c->counter_last >= t))
            c->counter_last = t;
    }
    if (set) {
        uint64_t h = XXH3_64bits_withSeed(m->set_member.p, m->set_member.len,
                                          a->seed[3]);
        rc = agg_apply(a, e, 0, &h, 1);
        if (rc) {
            agg_count_err(a, rc, 1);
            return rc;
        }
        a->st.samples++;
        return 0;
    }
    for (size_t i = 0; i < m->nvalues; i++) {
        double v = m->values[i];
        if (!isfinite(v)) {
            agg__count_nan(a, m, 1);
            continue;
        }
        rc = agg_apply(a, e, v, NULL, m->rate);
        if (rc) {
            agg_count_err(a, rc, 1);
            continue;
        }
        a->st.samples++;
    }
    return 0;
}

AGG_LINE_PATH int agg__sample(struct agg *a, struct agg__ctx *c,
                              const struct agg_metric *m, double t)
{
    if (agg_sample_fast(a, c, m, t))
        return 0;
    return agg_sample_slow(a, c, m, t);
}

/* Counter zero-fill (§2.4) of one context over the job's buckets that
 * hold series. */
void agg__zero_fill_ctx(struct agg *a, struct agg__job *j, struct agg__ctx *c)
{
    double expiry = (double)a->cfg.expiry_seconds;
    bool expired = false;

    if (isnan(c->counter_last))
        return;
    for (size_t k = 0; k < j->nbuckets; k++) {
        struct agg__bucket *b = j->buckets[k];
        struct agg__entry *e;
        if (b->nseries == 0 && b->n != 0)
            continue; /* sketches only: no series bucket */
        if (!(expiry + c->counter_last > (double)b->start)) {
            expired = true;
            continue;
        }
        if (agg_entry_get(b, c, AGG_COUNTER, &e) != 0)
            continue; /* a zero lost to OOM: the series has a gap */
        if ((double)b->start > c->last_seen)
            c->last_seen = (double)b->start;
    }
    if (expired)
        c->counter_last = NAN;
}

int agg__take_buckets(struct agg *a, struct agg__job *j, int64_t cutoff,
                      bool force, bool *synth_out)
{
    size_t ndue = 0;
    bool any_series = false, synth;

    *synth_out = false;
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct agg__bucket *b = a->buckets[i];
        if (force || b->start + AGG_BUCKET_SECS <= cutoff)
            ndue++;
        if (b->nseries > 0)
            any_series = true;
    }
    synth = !any_series && a->last_cutoff + AGG_BUCKET_SECS <= cutoff;
    a->last_cutoff = cutoff;
    if (ndue + synth == 0)
        return 0;
    j->buckets = cmn_calloc(ndue + synth, sizeof(*j->buckets));
    if (j->buckets == NULL)
        return UV_ENOMEM; /* nothing moved: the next flush retries */
    size_t w = 0;
    for (size_t i = 0; i < a->nbuckets; i++) {
        struct agg__bucket *b = a->buckets[i];
        if (force || b->start + AGG_BUCKET_SECS <= cutoff)
            j->buckets[j->nbuckets++] = b;
        else
            a->buckets[w++] = b;
    }
    a->nbuckets = w;
    a->last = NULL;
    if (synth) {
        struct agg__bucket *b = agg_bucket_new(a, cutoff - AGG_BUCKET_SECS);
        if (b != NULL) {
            j->buckets[j->nbuckets++] = b;
            *synth_out = true;
        }
    }
    return 0;
}

/* After the zero-fill: the synthetic bucket goes when it got no zeros. */
void agg__synth_drop_empty(struct agg__job *j)
{
    if (j->nbuckets > 0 && j->buckets[j->nbuckets - 1]->n == 0)
        agg__bucket_free(j->buckets[--j->nbuckets]);
}
