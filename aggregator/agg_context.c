/*
 * agg_context.c - contexts: (name, host, tag set) interned once.
 *
 * Hot path: XXH3 of the raw name and the raw tag bytes indexes a
 * hash table of context pointers, so a line seen before costs two
 * hashes and one compare. A miss splits the tags, pulls out the special
 * tags (host:, dd.internal.entity_id:, dd.internal.card:,
 * dd.internal.jmx_check_name:), sorts and de-duplicates the rest, and
 * combines per-tag hashes with a sum (order-independent) into the context
 * key; the context table compares the full identity, and the raw cache
 * compares the raw bytes of a hit, so no hash is trusted alone. Every hash
 * is seeded per process from getrandom, so a client cannot precompute
 * colliding names to flood a table.
 *
 * A name or tag that is not valid UTF-8 is repaired when its context is
 * resolved: each invalid byte becomes U+FFFD (as Go's encoding/json and
 * protobuf's strict decoders expect), counted in utf8_repaired. The line is
 * kept; only its context's bytes change (docs/limits.md).
 *
 * Invariants: nctx <= context_limit; a context is freed only by expiry,
 * when nothing references it (refs == 0) and it is no tracked counter; the
 * raw cache is cleared whenever a context is freed; a context's name, host
 * and tags are valid UTF-8.
 */
#include "agg_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#define XXH_INLINE_ALL /* short keys: inlined XXH3 avoids the call */
#include <xxhash.h>

/* XXH3_64bits_withSeed, with its paths for keys of up to 128 bytes (metric
 * names, most tag sets) inlined at the call: the compiler keeps the whole
 * function out of line, and the call and its dispatch on the length cost
 * as much as the hash of a short key. Same value (test
 * hostile::short_keys_inline_is_xxh3). */
static inline __attribute__((always_inline)) uint64_t
agg_hash(const void *p, size_t n, uint64_t seed)
{
    if (n <= 16)
        return XXH3_len_0to16_64b((const xxh_u8 *)p, n, XXH3_kSecret, seed);
    if (n <= 128)
        return XXH3_len_17to128_64b((const xxh_u8 *)p, n, XXH3_kSecret,
                                    sizeof(XXH3_kSecret), seed);
    return XXH3_64bits_withSeed(p, n, seed);
}

uint64_t agg__hash(const void *p, size_t n, uint64_t seed)
{
    return agg_hash(p, n, seed);
}

/* memcmp(x, y, n) == 0, inline for the lengths of most names and short
 * tag sets (8 to 32 bytes): two overlapping loads from each side, never
 * outside [x, x + n) or [y, y + n); memcmp for the rest. */
static inline bool agg_bytes_eq(const char *x, const char *y, size_t n)
{
    if (n >= 8 && n <= 16) {
        uint64_t a0, a1, b0, b1;
        memcpy(&a0, x, 8);
        memcpy(&b0, y, 8);
        memcpy(&a1, x + n - 8, 8);
        memcpy(&b1, y + n - 8, 8);
        return ((a0 ^ b0) | (a1 ^ b1)) == 0;
    }
#ifdef __SSE2__
    if (n > 16 && n <= 32) {
        __m128i a0 = _mm_loadu_si128((const __m128i *)(const void *)x);
        __m128i b0 = _mm_loadu_si128((const __m128i *)(const void *)y);
        __m128i a1 =
            _mm_loadu_si128((const __m128i *)(const void *)(x + n - 16));
        __m128i b1 =
            _mm_loadu_si128((const __m128i *)(const void *)(y + n - 16));
        __m128i eq =
            _mm_and_si128(_mm_cmpeq_epi8(a0, b0), _mm_cmpeq_epi8(a1, b1));
        return _mm_movemask_epi8(eq) == 0xffff;
    }
#endif
    return memcmp(x, y, n) == 0;
}

#define AGG_TAB_MIN 128 /* first size of the three hash tables */

static struct cmn_ratelimit agg_utf8_rl = CMN_RATELIMIT_INIT(60000, 5);

long agg__split_tags(struct cmn_slice raw, struct cmn_slice *out, size_t max)
{
    size_t n = 0;

    if (raw.len == 0)
        return 0; /* raw.p may be NULL: NULL + 0 is undefined in C */
    const char *p = raw.p, *end = raw.p + raw.len;
    for (;;) {
        const char *c = memchr(p, ',', (size_t)(end - p));
        const char *e = c ? c : end;
        if (n == max)
            return -1;
        out[n++] = cmn_slice(p, (size_t)(e - p));
        if (c == NULL)
            break;
        p = c + 1;
    }
    return (long)n;
}

int agg__ctx_init(struct agg *a)
{
    if (cmn_random_bytes(a->seed, sizeof(a->seed)) != 0)
        CMN_LOGW(AGG_COMP, "getrandom: entropy not ready; hash seeds "
                           "taken from the clocks");
    cmn_buf_init(&a->rc_bytes, AGG_RAW_CACHE_BYTES);
    a->host_tag = 0; /* interned with the first context of the default
                        host (agg_ctx_new) */
    /* Small first tables (they double in steps as contexts arrive), and
     * scratch arrays from malloc, written before they are read: a job
     * with a handful of contexts touches a few pages, not 56 KiB. */
    a->ctab_mask = AGG_TAB_MIN - 1;
    a->ctab = cmn_calloc(a->ctab_mask + 1, sizeof(*a->ctab));
    a->rc_mask = AGG_TAB_MIN - 1;
    a->rc = cmn_calloc(a->rc_mask + 1, sizeof(*a->rc));
    a->scratch_cap =
        a->cfg.tags_per_metric_max ? a->cfg.tags_per_metric_max : 1;
    if (a->scratch_cap <= SIZE_MAX / sizeof(*a->scratch_tags)) {
        a->scratch_tags = cmn_malloc(a->scratch_cap * sizeof(*a->scratch_tags));
        a->scratch_hash = cmn_malloc(a->scratch_cap * sizeof(*a->scratch_hash));
    }
    a->ttab_mask = AGG_TAB_MIN - 1;
    a->ttab = cmn_calloc(a->ttab_mask + 1, sizeof(*a->ttab));
    a->next_ctx_id = 1;
    if (a->ctab == NULL || a->rc == NULL || a->scratch_tags == NULL ||
        a->scratch_hash == NULL || a->ttab == NULL)
        return UV_ENOMEM;
    return 0;
}

/* Keeps a->flush_room in step with a->nctx + grow (0 or 1); nonzero when
 * the budget refuses the room for one more context. */
static int agg_flush_room(struct agg *a, size_t grow)
{
    size_t need = (a->nctx + grow) * AGG_FLUSH_ROOM;
    if (need > a->flush_room) {
        if (cmn_budget_reserve(AGG_FLUSH_ROOM_CHUNK) != 0)
            return CMN_ECAP;
        a->flush_room += AGG_FLUSH_ROOM_CHUNK;
    } else if (a->flush_room - need >= 2 * AGG_FLUSH_ROOM_CHUNK) {
        /* a chunk's hysteresis: no reserve and release at every context
         * that comes and goes at a chunk's edge */
        cmn_budget_release(AGG_FLUSH_ROOM_CHUNK);
        a->flush_room -= AGG_FLUSH_ROOM_CHUNK;
    }
    return 0;
}

void agg__ctx_fini(struct agg *a)
{
    cmn_budget_release(a->flush_room);
    a->flush_room = 0;
    long all = LONG_MAX;
    if (a->ctab != NULL)
        (void)agg__grow_finish(a, &all); /* no duplicate left to free */
    if (a->ctab != NULL) {
        for (size_t i = 0; i <= a->ctab_mask; i++) {
            struct agg__ctx *c = a->ctab[i];
            if (c != NULL)
                cmn_free_sized(c, agg__ctx_size(c->ntags, c->name_len));
        }
    }
    if (a->ttab != NULL) { /* every context is gone: the tags too */
        for (size_t i = 0; i <= a->ttab_mask; i++)
            cmn_free(a->ttab[i]);
    }
    for (size_t i = 0; i < AGG_ITAG_DIR && a->itag_dir[i] != NULL; i++) {
        cmn_free(a->itag_dir[i]);
        a->itag_dir[i] = NULL;
    }
    a->itag_free = a->itag_next = 0;
    cmn_free(a->ttab);
    a->ttab = NULL;
    cmn_free(a->ctab);
    cmn_free(a->rc);
    cmn_free(a->rc_old);
    a->rc_old = NULL;
    cmn_free(a->rc_next);
    a->rc_next = NULL;
    cmn_free(a->ctab_next);
    a->ctab_next = NULL;
    cmn_buf_free(&a->rc_bytes);
    cmn_free(a->scratch_tags);
    cmn_free(a->scratch_hash);
    a->scratch_hash = NULL;
    cmn_free(a->copy_name);
    a->copy_name = NULL;
    a->copy_cap = 0;
    a->ctab = NULL;
    a->rc = NULL;
    a->scratch_tags = NULL;
}

static int agg_slice_cmp(const void *x, const void *y)
{
    const struct cmn_slice *s = x, *t = y;
    size_t n = s->len < t->len ? s->len : t->len;
    int c = n ? memcmp(s->p, t->p, n) : 0;
    if (c != 0)
        return c;
    return s->len < t->len ? -1 : s->len > t->len;
}

static bool agg_ctx_same(const struct agg *a, const struct agg__ctx *c,
                         struct cmn_slice name, struct cmn_slice host,
                         const struct cmn_slice *tags, size_t ntags)
{
    if (c->ntags != ntags || !cmn_slice_eq(agg__ctx_name(c), name) ||
        !cmn_slice_eq(agg__ctx_host(a, c), host))
        return false;
    for (size_t i = 0; i < ntags; i++) {
        if (!cmn_slice_eq(agg__itag_slice(AGG_ITAG(a, c->tags[i])), tags[i]))
            return false;
    }
    return true;
}

/* ---- interned tags ------------------------------------------------------- */

static void agg_ttab_put(struct agg__itag **tab, size_t mask,
                         struct agg__itag *t)
{
    size_t i = (size_t)t->h & mask;
    while (tab[i] != NULL)
        i = (i + 1) & mask;
    tab[i] = t;
}

/* A free id for a new interned tag (its slot is then set), or 0 when
 * memory or the directory runs out. */
static uint32_t agg_itag_id(struct agg *a)
{
    uint32_t id = a->itag_free;
    if (id != 0) {
        a->itag_free = (uint32_t)((uintptr_t)AGG_ITAG(a, id) >> 1);
        return id;
    }
    if (a->itag_next == 0)
        a->itag_next = 1; /* id 0 is none */
    id = a->itag_next;
    size_t d = id >> AGG_ITAG_CHUNK_BITS;
    if (d >= AGG_ITAG_DIR)
        return 0;
    if (a->itag_dir[d] == NULL) {
        a->itag_dir[d] = cmn_malloc(AGG_ITAG_CHUNK * sizeof(**a->itag_dir));
        if (a->itag_dir[d] == NULL)
            return 0;
    }
    a->itag_next++;
    return id;
}

/* Releases id (its tag freed): the slot joins the free list. */
static void agg_itag_id_free(struct agg *a, uint32_t id)
{
    AGG_ITAG(a, id) = (struct agg__itag *)((uintptr_t)a->itag_free << 1 | 1);
    a->itag_free = id;
}

/* The id of the interned tag of bytes s (hash h), with one more reference;
 * 0 when memory runs out. The table is kept at most half full; it holds
 * distinct tags only, far fewer than contexts, so its doubling is short. */
static uint32_t agg_tag_intern(struct agg *a, struct cmn_slice s, uint64_t h)
{
    size_t i = (size_t)h & a->ttab_mask;
    for (struct agg__itag *t; (t = a->ttab[i]) != NULL;
         i = (i + 1) & a->ttab_mask) {
        if (t->h == h && t->len == s.len &&
            (s.len == 0 || memcmp(t->b, s.p, s.len) == 0)) {
            if (t->refs == UINT32_MAX)
                return 0;
            t->refs++;
            return t->id;
        }
    }
    if ((a->ntag + 1) * 2 > a->ttab_mask + 1) {
        size_t nmask = a->ttab_mask * 2 + 1;
        struct agg__itag **nt = cmn_calloc(nmask + 1, sizeof(*nt));
        if (nt == NULL)
            return 0;
        for (size_t k = 0; k <= a->ttab_mask; k++) {
            if (a->ttab[k] != NULL)
                agg_ttab_put(nt, nmask, a->ttab[k]);
        }
        cmn_free(a->ttab);
        a->ttab = nt;
        a->ttab_mask = nmask;
    }
    struct agg__itag *t = cmn_malloc(sizeof(*t) + s.len + 1);
    if (t == NULL)
        return 0;
    t->id = agg_itag_id(a);
    if (t->id == 0) {
        cmn_free(t);
        return 0;
    }
    AGG_ITAG(a, t->id) = t;
    t->h = h;
    t->refs = 1;
    t->len = (uint32_t)s.len;
    if (s.len)
        memcpy(t->b, s.p, s.len);
    t->b[s.len] = '\0';
    agg_ttab_put(a->ttab, a->ttab_mask, t);
    a->ntag++;
    return t->id;
}

static void agg_ctab_put(struct agg__ctx **tab, size_t mask, struct agg__ctx *c)
{
    size_t i = (size_t)c->key & mask;
    while (tab[i] != NULL)
        i = (i + 1) & mask;
    tab[i] = c;
}

/* Copies up to *budget slots of the old context table into ctab; frees
 * it when every slot is copied (then returns true). */
static bool agg_ctab_migrate(struct agg *a, long *budget)
{
    while (a->ctab_old != NULL) {
        if (a->ctab_mig > a->ctab_omask) {
            agg__free_off_loop(a, a->ctab_old, false);
            a->ctab_old = NULL;
            break;
        }
        if ((*budget)-- <= 0)
            return false;
        struct agg__ctx *c = a->ctab_old[a->ctab_mig++];
        if (c != NULL)
            agg_ctab_put(a->ctab, a->ctab_mask, c);
    }
    return true;
}

/* Prepares (at 7/16 load) and faults in the next array of the context
 * table. Its allocation failing only leaves it for the doubling. */
static void agg_ctab_prepare(struct agg *a)
{
    size_t size = a->ctab_mask + 1;
    if (a->ctab_next == NULL && a->ctab_old == NULL &&
        agg__grow_prepare(a->nctx, size)) {
        a->ctab_next = cmn_calloc(size * 2, sizeof(*a->ctab_next));
        a->ctab_pf = 0;
    }
    if (a->ctab_next != NULL)
        agg__prefault(a->ctab_next, size * 2 * sizeof(*a->ctab_next),
                      &a->ctab_pf, sizeof(*a->ctab_next));
}

/* Starts a doubling of the context table (the copy runs in steps). */
static int agg_ctab_grow(struct agg *a)
{
    long all = LONG_MAX;
    (void)agg_ctab_migrate(a, &all); /* not reached: see AGG_GROW_STEP */
    size_t nmask = a->ctab_mask * 2 + 1;
    struct agg__ctx **nt = a->ctab_next;
    a->ctab_next = NULL;
    if (nt == NULL)
        nt = cmn_calloc(nmask + 1, sizeof(*nt));
    if (nt == NULL)
        return UV_ENOMEM;
    a->ctab_old = a->ctab;
    a->ctab_omask = a->ctab_mask;
    a->ctab_mig = 0;
    a->ctab = nt;
    a->ctab_mask = nmask;
    return 0;
}

/* The context of key in tab equal to (name, host, tags), or NULL. */
static struct agg__ctx *agg_ctab_find(const struct agg *a,
                                      struct agg__ctx **tab, size_t mask,
                                      uint64_t key, struct cmn_slice name,
                                      struct cmn_slice host,
                                      const struct cmn_slice *t, size_t n)
{
    size_t i = (size_t)key & mask;
    for (struct agg__ctx *c; (c = tab[i]) != NULL; i = (i + 1) & mask) {
        if (c->key == key && agg_ctx_same(a, c, name, host, t, n))
            return c;
    }
    return NULL;
}

static void agg_rc_clear(struct agg *a)
{
    memset(a->rc, 0, (a->rc_mask + 1) * sizeof(*a->rc));
    cmn_free(a->rc_old);
    a->rc_old = NULL;
    cmn_free(a->rc_next);
    a->rc_next = NULL;
    a->rc_n = 0;
    cmn_buf_reset(&a->rc_bytes);
}

static void agg_rc_slot_copy(struct agg *a, const struct agg__rc_slot *s)
{
    size_t i = (size_t)s->h & a->rc_mask;
    while (a->rc[i].ctx != NULL)
        i = (i + 1) & a->rc_mask;
    a->rc[i] = *s;
}

static void agg_rc_slot_put(struct agg *a, const struct agg__rc_slot *s)
{
    agg_rc_slot_copy(a, s);
    a->rc_n++;
}

/* As agg_ctab_migrate, for the raw cache. */
static bool agg_rc_migrate(struct agg *a, long *budget)
{
    while (a->rc_old != NULL) {
        if (a->rc_mig > a->rc_omask) {
            agg__free_off_loop(a, a->rc_old, false);
            a->rc_old = NULL;
            break;
        }
        if ((*budget)-- <= 0)
            return false;
        const struct agg__rc_slot *o = &a->rc_old[a->rc_mig++];
        if (o->ctx != NULL)
            agg_rc_slot_copy(a, o);
    }
    return true;
}

bool agg__grow_finish(struct agg *a, long *budget)
{
    return agg_ctab_migrate(a, budget) && agg_rc_migrate(a, budget);
}

/* The index of the tag of bytes (p, len) among c's sorted tags, or -1. */
static long agg_ctx_tag_find(const struct agg *a, const struct agg__ctx *c,
                             const char *p, size_t len)
{
    size_t lo = 0, hi = c->ntags;
    struct cmn_slice k = cmn_slice(p, len);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        struct cmn_slice t = agg__itag_slice(AGG_ITAG(a, c->tags[mid]));
        int d = agg_slice_cmp(&k, &t);
        if (d == 0)
            return (long)mid;
        if (d < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return -1;
}

/* Whether the raw line (name, tags) resolves to c, checked against c's own
 * bytes: the name is c's, c has the default host, and the raw tags are a
 * permutation of c's tags (as many, each found, none twice). That is
 * exactly the identity agg_ctx_resolve would give: c's tags hold no
 * special or host: tag, so a raw line with one fails here. Tags sent in
 * sorted order cost one compare each; others a binary search. */
static bool agg_rc_via_ctx(const struct agg *a, const struct agg__ctx *c,
                           struct cmn_slice name, struct cmn_slice tags)
{
    uint32_t n = c->ntags;
    if (c->host != a->host_tag || !cmn_slice_eq(agg__ctx_name(c), name))
        return false; /* interned: the default host's tag is one object */
    if (tags.len == 0)
        return n == 0;
    if (n == 0 || n > 64)
        return false;
    uint64_t seen = 0;
    uint32_t next = 0; /* the tag expected next when sent sorted */
    const char *p = tags.p, *end = tags.p + tags.len;
    for (uint32_t k = 0; k < n; k++) {
        const char *e = memchr(p, ',', (size_t)(end - p));
        size_t len = (size_t)((e ? e : end) - p);
        long i = -1;
        const struct agg__itag *t =
            next < n ? AGG_ITAG(a, c->tags[next]) : NULL;
        if (t != NULL && t->len == len &&
            (len == 0 || memcmp(t->b, p, len) == 0))
            i = next;
        else
            i = agg_ctx_tag_find(a, c, p, len);
        if (i < 0 || (seen >> i) & 1)
            return false;
        seen |= (uint64_t)1 << i;
        next = (uint32_t)i + 1;
        if (e == NULL)
            return k + 1 == n;
        p = e + 1;
    }
    return false; /* more raw tags than c has */
}

/* Inserts (raw name + tags -> c, hash rh) in the raw cache, an
 * open-addressing table kept at most half full: it doubles up to
 * AGG_RAW_CACHE_MAX slots, and past that, or past AGG_RAW_CACHE_BYTES of
 * raw keys copied (many spellings of the same contexts), it is emptied and
 * refilled. A line whose key cannot be stored is simply not cached. */
static void agg_rc_put(struct agg *a, uint64_t rh, struct cmn_slice name,
                       struct cmn_slice tags, struct agg__ctx *c)
{
    size_t size = a->rc_mask + 1;
    long step = AGG_GROW_STEP;
    (void)agg_rc_migrate(a, &step);
    if (a->rc_next == NULL && a->rc_old == NULL && size < AGG_RAW_CACHE_MAX &&
        agg__grow_prepare(a->rc_n, size)) {
        a->rc_next = cmn_calloc(size * 2, sizeof(*a->rc));
        a->rc_pf = 0;
    }
    if (a->rc_next != NULL)
        agg__prefault(a->rc_next, size * 2 * sizeof(*a->rc), &a->rc_pf,
                      sizeof(*a->rc));
    if ((a->rc_n + 1) * 2 > size) {
        long all = LONG_MAX;
        (void)agg_rc_migrate(a, &all); /* not reached: see AGG_GROW_STEP */
        struct agg__rc_slot *n = a->rc_next;
        a->rc_next = NULL;
        if (n == NULL && size < AGG_RAW_CACHE_MAX)
            n = cmn_calloc(size * 2, sizeof(*a->rc));
        if (n != NULL) { /* the copy runs in steps */
            a->rc_old = a->rc;
            a->rc_omask = a->rc_mask;
            a->rc_mig = 0;
            a->rc = n;
            a->rc_mask = size * 2 - 1;
        } else {
            agg_rc_clear(a);
        }
    }
    struct agg__rc_slot slot = {(uint32_t)rh, AGG_RC_VIA_CTX, c};
    uint32_t len[2] = {(uint32_t)name.len, (uint32_t)tags.len};
    size_t need = sizeof(len) + name.len + tags.len;
    /* the first AGG_RC_COPY_BYTES of keys are copies (one memcmp per hit,
     * the fastest check: a working set of a few thousand lines fits);
     * past them a line that resolves to its context's own bytes costs no
     * copy */
    if (a->rc_bytes.len + need > AGG_RC_COPY_BYTES &&
        agg_rc_via_ctx(a, c, name, tags)) {
        agg_rc_slot_put(a, &slot);
        return;
    }
    if (need > AGG_RAW_CACHE_BYTES / 64)
        return; /* a huge line: not worth a cache entry */
    if (a->rc_bytes.len + need > AGG_RAW_CACHE_BYTES)
        agg_rc_clear(a);
    slot.off = (uint32_t)a->rc_bytes.len;
    if (cmn_buf_append(&a->rc_bytes, len, sizeof(len)) != 0 ||
        cmn_buf_append(&a->rc_bytes, name.p, name.len) != 0 ||
        cmn_buf_append(&a->rc_bytes, tags.p, tags.len) != 0) {
        a->rc_bytes.len = slot.off;
        return;
    }
    agg_rc_slot_put(a, &slot);
}

/* Whether slot s (hash already matched) is the raw line (name, tags). */
static inline bool agg_rc_same(const struct agg *a,
                               const struct agg__rc_slot *s,
                               struct cmn_slice name, struct cmn_slice tags)
{
    if (s->off == AGG_RC_VIA_CTX)
        return agg_rc_via_ctx(a, s->ctx, name, tags);
    uint32_t len[2];
    const char *k = a->rc_bytes.p + s->off;
    memcpy(len, k, sizeof(len));
    k += sizeof(len);
    return len[0] == name.len && len[1] == tags.len &&
           agg_bytes_eq(k, name.p, name.len) &&
           (tags.len == 0 || agg_bytes_eq(k + name.len, tags.p, tags.len));
}

static void agg_tag_unref(struct agg *a, uint32_t id);

static struct agg__ctx *agg_ctx_new(struct agg *a, uint64_t key,
                                    struct cmn_slice name,
                                    struct cmn_slice host,
                                    const struct cmn_slice *tags,
                                    const uint64_t *th, size_t n)
{
    size_t size = agg__ctx_size((uint32_t)n, name.len);
    struct agg__ctx *c = cmn_malloc_sized(size);
    if (c == NULL)
        return NULL;
    char *p = (char *)&c->tags[n];
    memset(c, 0, offsetof(struct agg__ctx, tags));
    c->host = agg_tag_intern(
        a, host, XXH3_64bits_withSeed(host.p, host.len, a->seed[2]));
    if (c->host == 0) {
        cmn_free_sized(c, size);
        return NULL;
    }
    if (a->host_tag == 0 && host.p == a->host) {
        a->host_tag = c->host; /* held by one more reference */
        AGG_ITAG(a, c->host)->refs++;
    }
    for (size_t i = 0; i < n; i++) {
        c->tags[i] = agg_tag_intern(a, tags[i], th[i]);
        if (c->tags[i] == 0) {
            while (i-- > 0)
                agg_tag_unref(a, c->tags[i]);
            agg_tag_unref(a, c->host);
            cmn_free_sized(c, size);
            return NULL;
        }
    }
    c->key = key;
    c->id = a->next_ctx_id++;
    c->counter_last = NAN;
    c->ntags = (uint32_t)n;
    c->zf_epoch = a->zf_epoch;
    c->name_len = (uint32_t)name.len;
    if (name.len)
        memcpy(p, name.p, name.len);
    p[name.len] = '\0';
    return c;
}

/* Repairs the name and the split tags t[0, n) in place when any is not
 * valid UTF-8: the repaired bytes go to one new buffer (*fixed, which the
 * caller frees) and the slices are pointed at it. Rare, so one allocation
 * of the worst case (3 bytes per input byte) is fine. */
static int agg_utf8_repair(struct agg *a, struct cmn_slice *name,
                           struct cmn_slice *t, size_t n, char **fixed)
{
    size_t total = name->len;
    bool bad = !agg__utf8_valid(*name);
    for (size_t i = 0; i < n; i++) {
        bad = bad || !agg__utf8_valid(t[i]);
        total += t[i].len;
    }
    if (!bad)
        return 0;
    char *p = cmn_calloc(total + 1, 3);
    if (p == NULL)
        return UV_ENOMEM;
    *fixed = p;
    size_t k = agg__utf8_fix_into(*name, p);
    *name = cmn_slice(p, k);
    p += k;
    for (size_t i = 0; i < n; i++) {
        k = agg__utf8_fix_into(t[i], p);
        t[i] = cmn_slice(p, k);
        p += k;
    }
    a->st.utf8_repaired++;
    cmn_log_rl(&agg_utf8_rl, CMN_LOG_WARN, AGG_COMP,
               "invalid UTF-8 in the name or tags of %.*s: repaired to "
               "U+FFFD",
               (int)(name->len > 200 ? 200 : name->len), name->p);
    return 0;
}

/* The slow path: resolves the tags and finds or interns the context. */
static int agg_ctx_resolve(struct agg *a, struct cmn_slice name, uint64_t nh,
                           struct cmn_slice raw, struct agg__ctx **out)
{
    struct cmn_slice *t = a->scratch_tags;
    struct cmn_slice host = cmn_slice_cstr(a->host);
    long n = agg__split_tags(raw, t, a->scratch_cap);
    size_t w = 0;

    if (n < 0)
        return CMN_ETOOBIG;
    char *fixed = NULL; /* repaired copies of invalid UTF-8, if any */
    int rc = agg_utf8_repair(a, &name, t, (size_t)n, &fixed);
    if (rc)
        return rc;
    for (long i = 0; i < n; i++) {
        if (cmn_slice_has_prefix(t[i], "host:")) {
            if (!a->cfg.serverless)
                host = cmn_slice(t[i].p + 5, t[i].len - 5);
        } else if (cmn_slice_has_prefix(t[i], "dd.internal.entity_id:") ||
                   cmn_slice_has_prefix(t[i], "dd.internal.card:") ||
                   cmn_slice_has_prefix(t[i], "dd.internal.jmx_check_name:")) {
            continue;
        } else {
            t[w++] = t[i];
        }
    }
    if (w > 1) {
        qsort(t, w, sizeof(*t), agg_slice_cmp);
        size_t u = 1;
        for (size_t i = 1; i < w; i++) {
            if (!cmn_slice_eq(t[i], t[u - 1]))
                t[u++] = t[i];
        }
        w = u;
    }
    if (fixed != NULL) /* the repaired name hashes differently */
        nh = XXH3_64bits_withSeed(name.p, name.len, a->seed[0]);
    uint64_t key = XXH3_64bits_withSeed(host.p, host.len, nh ^ a->seed[1]);
    uint64_t *th = a->scratch_hash;
    for (size_t i = 0; i < w; i++) {
        th[i] = XXH3_64bits_withSeed(t[i].p, t[i].len, a->seed[2]);
        key += th[i];
    }

    struct agg__ctx *c =
        agg_ctab_find(a, a->ctab, a->ctab_mask, key, name, host, t, w);
    if (c == NULL && a->ctab_old != NULL)
        c = agg_ctab_find(a, a->ctab_old, a->ctab_omask, key, name, host, t, w);
    if (c != NULL) {
        *out = c;
        goto out_free;
    }
    rc = CMN_ECAP;
    if (a->nctx >= a->cfg.context_limit)
        goto out_free;
    if (cmn_budget_over(CMN_BUDGET_NO_NEW_CONTEXT) ||
        agg_flush_room(a, 1) != 0) {
        /* the memory budget's second step: existing contexts keep
         * updating, new ones wait until expiry frees room */
        a->st.contexts_refused_budget++;
        cmn_budget_note(CMN_BUDGET_NO_NEW_CONTEXT);
        goto out_free;
    }
    rc = UV_ENOMEM;
    long step = AGG_GROW_STEP;
    (void)agg_ctab_migrate(a, &step);
    agg_ctab_prepare(a);
    if ((a->nctx + 1) * 2 > a->ctab_mask + 1 && agg_ctab_grow(a) != 0)
        goto out_free;
    c = agg_ctx_new(a, key, name, host, t, th, w);
    if (c == NULL)
        goto out_free;
    agg_ctab_put(a->ctab, a->ctab_mask, c);
    a->nctx++;
    a->st.contexts = a->nctx;
    *out = c;
    rc = 0;
out_free:
    cmn_free(fixed);
    return rc;
}

/* A raw-cache miss: resolve, then remember the line. Out of line so that
 * a hit saves no registers for it. */
static __attribute__((noinline)) int
agg_ctx_miss(struct agg *a, struct cmn_slice name, uint64_t nh,
             struct cmn_slice tags, uint64_t rh, struct agg__ctx **out)
{
    int rc = agg_ctx_resolve(a, name, nh, tags, out);
    if (rc)
        return rc;
    agg_rc_put(a, rh, name, tags, *out);
    return 0;
}

/* The slot of tab for the raw line (name, tags) of hash rh, or NULL. */
static inline struct agg__rc_slot *
agg_rc_find(const struct agg *a, struct agg__rc_slot *tab, size_t mask,
            uint64_t rh, struct cmn_slice name, struct cmn_slice tags)
{
    for (size_t i = (size_t)rh & mask; tab[i].ctx != NULL; i = (i + 1) & mask) {
        if (tab[i].h == (uint32_t)rh && agg_rc_same(a, &tab[i], name, tags))
            return &tab[i];
    }
    return NULL;
}

AGG_LINE_PATH int agg__ctx_get(struct agg *a, struct cmn_slice name,
                               struct cmn_slice tags, struct agg__ctx **out)
{
    uint64_t nh = agg_hash(name.p, name.len, a->seed[0]);
    /* a line without tags is keyed by its name's hash alone (as good a
     * 64-bit hash of the raw line as any), saving the second pass */
    uint64_t rh = tags.len ? agg_hash(tags.p, tags.len, nh) : nh;

    struct agg__rc_slot *s = agg_rc_find(a, a->rc, a->rc_mask, rh, name, tags);
    if (__builtin_expect(s == NULL && a->rc_old != NULL, 0))
        s = agg_rc_find(a, a->rc_old, a->rc_omask, rh, name, tags);
    if (s != NULL) {
        if (__builtin_expect(s->ctx->dead, 0)) {
            /* expired, and the cache not yet scrubbed: intern it again
             * and point the slot at the new context */
            int rc = agg_ctx_resolve(a, name, nh, tags, out);
            if (rc == 0)
                s->ctx = *out;
            return rc;
        }
        *out = s->ctx;
        return 0;
    }
    return agg_ctx_miss(a, name, nh, tags, rh, out);
}

/* Whether c expires now: unused since before `before`, referenced by no
 * bucket entry, no-agg sample or job, and no tracked counter. */
static inline bool agg_ctx_expired(const struct agg__ctx *c, double before)
{
    return c->refs == 0 && isnan(c->counter_last) && c->last_seen < before;
}

/* Linear-probing deletion by backward shift: the entries of the run after
 * slot i that may live earlier move back, so no tombstone is needed. An
 * entry only moves back within its run, never from a slot the cursor has
 * not reached to one it has passed: a cursor that re-examines slot i after
 * a deletion still sees every entry once. */
#define AGG_DEL_SHIFT(tab, mask, i, empty, is_empty, home)                     \
    do {                                                                       \
        size_t hole_ = (i), j_ = (i);                                          \
        for (;;) {                                                             \
            j_ = (j_ + 1) & (mask);                                            \
            if (is_empty((tab)[j_]))                                           \
                break;                                                         \
            size_t h_ = (size_t)(home((tab)[j_])) & (mask);                    \
            if (((j_ - h_) & (mask)) >= ((j_ - hole_) & (mask))) {             \
                (tab)[hole_] = (tab)[j_];                                      \
                hole_ = j_;                                                    \
            }                                                                  \
        }                                                                      \
        (tab)[hole_] = (empty);                                                \
    } while (0)
#define AGG_CTX_EMPTY(c) ((c) == NULL)
#define AGG_CTX_HOME(c) ((c)->key)
#define AGG_RC_EMPTY(s) ((s).ctx == NULL)
#define AGG_TAG_EMPTY(t) ((t) == NULL)
#define AGG_TAG_HOME(t) ((t)->h)

static void agg_tag_unref(struct agg *a, uint32_t id)
{
    struct agg__itag *t = AGG_ITAG(a, id);
    if (--t->refs > 0)
        return;
    agg_itag_id_free(a, id);
    size_t i = (size_t)t->h & a->ttab_mask;
    while (a->ttab[i] != t)
        i = (i + 1) & a->ttab_mask;
    AGG_DEL_SHIFT(a->ttab, a->ttab_mask, i, NULL, AGG_TAG_EMPTY, AGG_TAG_HOME);
    a->ntag--;
    cmn_free(t);
}

void agg__ctx_free(struct agg *a, struct agg__ctx *c)
{
    for (uint32_t i = 0; i < c->ntags; i++)
        agg_tag_unref(a, c->tags[i]);
    agg_tag_unref(a, c->host);
    cmn_free_sized(c, agg__ctx_size(c->ntags, c->name_len));
}

#define AGG_RC_HOME(s) ((s).h)

void agg__ctx_expire_begin(struct agg *a, double before)
{
    a->ex_phase = 1;
    a->ex_cursor = 0;
    a->ex_tab = a->ctab;
    a->ex_before = before;
}

/* Phase 1: takes the expired contexts out of the table (a table grown
 * meanwhile is walked again from its start) into the list to free, linked
 * through the contexts themselves: no array grows with the expiry. */
bool agg__ex_unlink(struct agg *a, long *budget)
{
    if (!agg_ctab_migrate(a, budget))
        return false; /* deletion needs one table */
    if (a->ex_tab != a->ctab) {
        a->ex_tab = a->ctab;
        a->ex_cursor = 0;
    }
    while (a->ex_cursor <= a->ctab_mask) {
        if ((*budget)-- <= 0)
            return false;
        struct agg__ctx *c = a->ctab[a->ex_cursor];
        if (c == NULL || !agg_ctx_expired(c, a->ex_before)) {
            a->ex_cursor++;
            continue;
        }
        AGG_DEL_SHIFT(a->ctab, a->ctab_mask, a->ex_cursor, NULL, AGG_CTX_EMPTY,
                      AGG_CTX_HOME);
        c->dead = true;
        c->next_dead = a->dead; /* its id is not read once it is dead */
        a->dead = c;
        a->ndead++;
        a->nctx--;
        (void)agg_flush_room(a, 0);
        a->st.contexts = a->nctx;
        a->st.contexts_expired++;
        /* the slot is examined again: an entry may have moved into it */
    }
    return true;
}

/* Phase 2: removes the raw cache's slots that point at dead contexts (a
 * cache regrown meanwhile is walked again). */
bool agg__ex_scrub(struct agg *a, long *budget)
{
    if (a->ndead == 0)
        return true;
    if (!agg_rc_migrate(a, budget))
        return false; /* deletion needs one table */
    if (a->ex_tab != a->rc) {
        a->ex_tab = a->rc;
        a->ex_cursor = 0;
    }
    while (a->ex_cursor <= a->rc_mask) {
        if ((*budget)-- <= 0)
            return false;
        struct agg__rc_slot *s = &a->rc[a->ex_cursor];
        if (s->ctx == NULL || !s->ctx->dead) {
            a->ex_cursor++;
            continue;
        }
        struct agg__rc_slot empty = {0, 0, NULL};
        AGG_DEL_SHIFT(a->rc, a->rc_mask, a->ex_cursor, empty, AGG_RC_EMPTY,
                      AGG_RC_HOME);
        a->rc_n--;
    }
    return true;
}
