/*
 * cmn_alloc.c - the one allocation choke point (STYLE.md rule 10).
 *
 * Every block carries a 16-byte header holding its size, so live bytes can
 * be counted exactly and a test can make the n-th allocation fail (OOM
 * loops). Invariant: live_bytes equals the sum of the sizes of the blocks
 * handed out and not yet freed. This is the only file that may call
 * malloc/realloc/free.
 */
#include "common.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define CMN_ALLOC_MAX ((size_t)1 << 30) /* 1 GiB: larger is a bug */
#define HDR 16

_Static_assert(HDR >= 2 * sizeof(size_t),
               "header holds the size (and a big block's reservation)");

static atomic_size_t live_bytes;
static atomic_uint_fast64_t alloc_calls;
static atomic_uint_fast64_t fail_at; /* 0 = off; else call number */
static atomic_bool fail_one;         /* only fail_at fails, not later */

static bool should_fail(void)
{
    uint64_t n = atomic_fetch_add(&alloc_calls, 1) + 1;
    uint64_t f = atomic_load(&fail_at);
    if (f == 0)
        return false;
    return atomic_load(&fail_one) ? n == f : n >= f;
}

void *cmn_malloc(size_t size)
{
    if (size == 0 || size > CMN_ALLOC_MAX || should_fail())
        return NULL;
    unsigned char *p = malloc(size + HDR);
    if (p == NULL)
        return NULL;
    memcpy(p, &size, sizeof(size));
    memset(p + sizeof(size), 0, sizeof(size_t)); /* not big: no reservation */
    atomic_fetch_add(&live_bytes, size);
    return p + HDR;
}

void cmn_heap_warm(const void *first, size_t len)
{
    uintptr_t lo = (uintptr_t)first, end = (uintptr_t)sbrk(0);
    if (first == NULL || end == (uintptr_t)-1 || lo >= end)
        return;
    if (len > end - lo)
        len = end - lo;
    (void)cmn_populate((void *)lo, len);
}

static size_t big_map_size(size_t size);

/* Zeroed blocks of CMN_CALLOC_MAP_MIN bytes and more are mappings of
 * their own: fresh zero pages that cost a page fault only where they are
 * used. glibc maps only past its mmap threshold (256 KiB, cmn_alloc_tune)
 * and only when the heap's top cannot serve the request; otherwise
 * calloc clears the block, touching every page: the local sink's 64 KiB
 * hash slots and the aggregator's 64 KiB tables were 16 page faults and
 * 64 KiB of RSS each at every serverless-init start. The header records
 * the mapping's size where a big block (cmn_realloc_big) records its
 * reservation, so cmn_free, cmn_reallocarray and cmn_realloc_big all
 * know it for what it is. */
#define CMN_CALLOC_MAP_MIN ((size_t)32 << 10)
/* Under AddressSanitizer every block comes from its allocator, so that
 * overflows hit redzones and LeakSanitizer sees every block. */
#if defined(__SANITIZE_ADDRESS__)
#define CMN_CALLOC_MAPS 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CMN_CALLOC_MAPS 0
#endif
#endif
#ifndef CMN_CALLOC_MAPS
#define CMN_CALLOC_MAPS 1
#endif

/* cmn_alloc_exiting: a process that exits after its drain keeps its big
 * blocks instead of unmapping each (the kernel frees them at exit). */
static atomic_bool exiting;
static atomic_size_t exit_kept; /* bytes kept so far */

void cmn_alloc_exiting(void)
{
    if (CMN_CALLOC_MAPS) /* not under AddressSanitizer */
        atomic_store_explicit(&exiting, true, memory_order_relaxed);
}

bool cmn_alloc_keep_at_exit(size_t bytes)
{
    if (!atomic_load_explicit(&exiting, memory_order_relaxed))
        return false;
    size_t k = atomic_load_explicit(&exit_kept, memory_order_relaxed);
    do {
        if (bytes > CMN_EXIT_KEEP_MAX - k)
            return false;
    } while (!atomic_compare_exchange_weak_explicit(
        &exit_kept, &k, k + bytes, memory_order_relaxed, memory_order_relaxed));
    return true;
}

void *cmn_calloc(size_t n, size_t size)
{
    if (size == 0 || n == 0 || n > CMN_ALLOC_MAX / size || should_fail())
        return NULL;
    size_t total = n * size;
    unsigned char *p;
    if (CMN_CALLOC_MAPS && total >= CMN_CALLOC_MAP_MIN) {
        size_t m = big_map_size(total);
        p = mmap(NULL, m, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                 -1, 0);
        if (p == MAP_FAILED)
            return NULL;
        memcpy(p + sizeof(size_t), &m, sizeof(m));
    } else {
        p = calloc(1, total + HDR);
        if (p == NULL)
            return NULL;
    }
    memcpy(p, &total, sizeof(total));
    atomic_fetch_add(&live_bytes, total);
    return p + HDR;
}

/* The bytes mapped for p's block, 0 when it came from malloc. */
static size_t mapped_size(const unsigned char *base)
{
    size_t m;
    memcpy(&m, base + sizeof(size_t), sizeof(m));
    return m;
}

void *cmn_reallocarray(void *p, size_t n, size_t size)
{
    if (p == NULL)
        return cmn_calloc(n, size);
    if (size != 0 && n > CMN_ALLOC_MAX / size)
        return NULL;
    size_t nsize = n * size;
    if (nsize == 0)
        return NULL;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t old;
    memcpy(&old, base, sizeof(old));
    if (mapped_size(base) != 0 && nsize < CMN_CALLOC_MAP_MIN) {
        void *np = cmn_calloc(n, size); /* a mapping shrunk: to the heap */
        if (np == NULL)
            return NULL;
        memcpy(np, p, nsize);
        cmn_free(p);
        return np;
    }
    if (should_fail())
        return NULL;
    if (mapped_size(base) != 0) { /* as glibc does its own mappings */
        size_t m = mapped_size(base), nm = big_map_size(nsize);
        unsigned char *nb = mremap(base, m, nm, MREMAP_MAYMOVE);
        if (nb == MAP_FAILED)
            return NULL;
        memcpy(nb, &nsize, sizeof(nsize));
        memcpy(nb + sizeof(size_t), &nm, sizeof(nm));
        atomic_fetch_sub(&live_bytes, old);
        atomic_fetch_add(&live_bytes, nsize);
        return nb + HDR;
    }
    unsigned char *nb = realloc(base, nsize + HDR);
    if (nb == NULL)
        return NULL;
    memcpy(nb, &nsize, sizeof(nsize));
    atomic_fetch_sub(&live_bytes, old);
    atomic_fetch_add(&live_bytes, nsize);
    return nb + HDR;
}

void cmn_free(void *p)
{
    if (p == NULL)
        return;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t size, m = mapped_size(base);
    memcpy(&size, base, sizeof(size));
    atomic_fetch_sub(&live_bytes, size);
    if ((m != 0 || size >= CMN_EXIT_KEEP_MIN) &&
        cmn_alloc_keep_at_exit(m != 0 ? m : size))
        return; /* exit takes it */
    if (m != 0)
        munmap(base, m);
    else
        free(base);
}

void *cmn_malloc_sized(size_t size)
{
    if (size == 0 || size > CMN_ALLOC_MAX || should_fail())
        return NULL;
    void *p = malloc(size);
    if (p != NULL)
        atomic_fetch_add(&live_bytes, size);
    return p;
}

void cmn_free_sized(void *p, size_t size)
{
    if (p == NULL)
        return;
    atomic_fetch_sub(&live_bytes, size);
    free(p);
}

size_t cmn_alloc_size(const void *p)
{
    size_t size = 0;
    if (p != NULL)
        memcpy(&size, (const unsigned char *)p - HDR, sizeof(size));
    return size;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* linux/mman.h, Linux 5.14 */
#endif

static _Atomic int mm_rewrites; /* cmn_mm_rewrite_begin's, not yet ended */
static pthread_mutex_t prime_mu = PTHREAD_MUTEX_INITIALIZER;
static void *prime_pages[CMN_PRIME_MAX]; /* under prime_mu */

bool cmn_prime_register(void *page)
{
    bool ok = false;
    pthread_mutex_lock(&prime_mu);
    for (size_t i = 0; i < CMN_PRIME_MAX && !ok; i++)
        if (prime_pages[i] == NULL) {
            prime_pages[i] = page;
            ok = true;
        }
    pthread_mutex_unlock(&prime_mu);
    return ok;
}

void cmn_prime_unregister(void *page)
{
    pthread_mutex_lock(&prime_mu);
    for (size_t i = 0; i < CMN_PRIME_MAX; i++)
        if (prime_pages[i] == page)
            prime_pages[i] = NULL;
    pthread_mutex_unlock(&prime_mu);
}

void cmn_mm_rewrite_begin(void)
{
    /* a fault and a give-back each (again, harmlessly, at a second
     * rewrite), under the lock that keeps the mappings from going */
    size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    pthread_mutex_lock(&prime_mu);
    for (size_t i = 0; i < CMN_PRIME_MAX; i++)
        if (prime_pages[i] != NULL) {
            *(volatile char *)prime_pages[i] = 0;
            (void)madvise(prime_pages[i], pg, MADV_DONTNEED);
        }
    pthread_mutex_unlock(&prime_mu);
    atomic_fetch_add_explicit(&mm_rewrites, 1, memory_order_relaxed);
}

void cmn_mm_rewrite_end(void)
{
    atomic_fetch_sub_explicit(&mm_rewrites, 1, memory_order_relaxed);
}

bool cmn_mm_rewriting(void)
{
    return atomic_load_explicit(&mm_rewrites, memory_order_relaxed) != 0;
}

void cmn_touch_pages(void *p, size_t len)
{
    /* an atomic add of 0: one write fault a page, where a load and a
     * store fault twice (the zero page first) */
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    char *c = p;
    for (uintptr_t off = 0; off < len; off += page)
        (void)__atomic_fetch_add(c + off, 0, __ATOMIC_RELAXED);
    if (len > 0) /* the last page, when p is not aligned */
        (void)__atomic_fetch_add(c + len - 1, 0, __ATOMIC_RELAXED);
}

int cmn_populate(void *p, size_t len)
{
    static _Atomic int unsupported;
    if (len == 0)
        return 0;
    if (atomic_load_explicit(&unsupported, memory_order_relaxed))
        return -EINVAL;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    uintptr_t lo = (uintptr_t)p / page * page;
    uintptr_t hi = ((uintptr_t)p + len + page - 1) / page * page;
    if (madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE) == 0)
        return 0;
    int e = errno;
    if (e == EINVAL)
        atomic_store_explicit(&unsupported, 1, memory_order_relaxed);
    return -e;
}

static size_t big_map_size(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (size + HDR + page - 1) / page * page;
}

/* A big block's mapping reserves address space for its growth: the
 * header holds its size, then the bytes reserved. Only the pages in use
 * are readable and writable (and charged as committed memory); the rest
 * is PROT_NONE. Growing within the reservation is an mprotect of the new
 * pages, which moves and copies nothing: an mremap of a 24-48 MiB array
 * took 2-7 ms on the test VM, in one loop callback. Past the reservation
 * (or where the address space is limited) the mapping moves with mremap. */
#define BIG_RESERVE_MIN ((size_t)64 << 20)
#define BIG_RESERVE_GROWTH 8

/* Maps a new reservation for need bytes; *reserved gets its size. */
static unsigned char *big_reserve(size_t need, size_t *reserved)
{
    size_t r = need * BIG_RESERVE_GROWTH;
    if (r < BIG_RESERVE_MIN)
        r = BIG_RESERVE_MIN;
    unsigned char *b = mmap(NULL, r, PROT_NONE,
                            MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (b == MAP_FAILED) { /* a limited address space: no room to grow */
        r = need;
        b = mmap(NULL, r, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    }
    if (b == MAP_FAILED)
        return NULL;
    if (mprotect(b, need, PROT_READ | PROT_WRITE) != 0) {
        munmap(b, r);
        return NULL;
    }
    *reserved = r;
    return b;
}

/* Resizes the big block at base (old bytes in use, reserved bytes
 * reserved) to nsize; NULL on failure (the block is untouched). */
static unsigned char *big_resize(unsigned char *base, size_t old,
                                 size_t reserved, size_t nsize)
{
    size_t have = big_map_size(old), need = big_map_size(nsize);
    if (need <= reserved) {
        if (need > have &&
            mprotect(base + have, need - have, PROT_READ | PROT_WRITE) != 0)
            return NULL;
        if (need < have) { /* the pages past the end go back */
            (void)madvise(base + need, have - need, MADV_DONTNEED);
            (void)mprotect(base + need, have - need, PROT_NONE);
        }
        return base;
    }
    /* past the reservation: a new one, and the pages in use move into it
     * (mremap works on one mapping: the readable part alone) */
    size_t r;
    unsigned char *nb = big_reserve(need, &r);
    if (nb == NULL)
        return NULL;
    if (mremap(base, have, have, MREMAP_MAYMOVE | MREMAP_FIXED, nb) ==
        MAP_FAILED) {
        munmap(nb, r);
        return NULL;
    }
    munmap(base + have, reserved - have); /* the old reservation's rest */
    memcpy(nb + sizeof(size_t), &r, sizeof(r));
    return nb;
}

void *cmn_realloc_big(void *p, size_t n, size_t size)
{
    if (size == 0 || n == 0 || n > CMN_ALLOC_MAX / size)
        return NULL;
    size_t nsize = n * size, old = 0, reserved = 0;
    unsigned char *base = p ? (unsigned char *)p - HDR : NULL, *nb;
    if (base != NULL) {
        memcpy(&old, base, sizeof(old));
        memcpy(&reserved, base + sizeof(size_t), sizeof(reserved));
    }
    bool was_big = reserved != 0; /* a mapping of its own */
    if (nsize < CMN_BIG_MIN && !was_big)
        return cmn_reallocarray(p, n, size);
    if (should_fail())
        return NULL;
    if (was_big) {
        nb = big_resize(base, old, reserved, nsize);
        if (nb == NULL)
            return NULL;
    } else {
        nb = big_reserve(big_map_size(nsize), &reserved);
        if (nb == NULL)
            return NULL;
        memcpy(nb + sizeof(size_t), &reserved, sizeof(reserved));
        if (base != NULL) {
            memcpy(nb + HDR, p, old < nsize ? old : nsize);
            atomic_fetch_sub(&live_bytes, old);
            free(base);
            old = 0;
        }
    }
    memcpy(nb, &nsize, sizeof(nsize));
    atomic_fetch_sub(&live_bytes, old);
    atomic_fetch_add(&live_bytes, nsize);
    return nb + HDR;
}

void cmn_free_big(void *p)
{
    if (p == NULL)
        return;
    unsigned char *base = (unsigned char *)p - HDR;
    size_t size, reserved;
    memcpy(&size, base, sizeof(size));
    memcpy(&reserved, base + sizeof(size_t), sizeof(reserved));
    if (reserved == 0) { /* it stayed small: from malloc */
        cmn_free(p);
        return;
    }
    atomic_fetch_sub(&live_bytes, size);
    if (!cmn_alloc_keep_at_exit(size)) /* else exit takes it */
        munmap(base, reserved);
}

char *cmn_strndup(const char *s, size_t len)
{
    char *d = cmn_malloc(len + 1);
    if (d == NULL)
        return NULL;
    if (len)
        memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *cmn_strdup(const char *s)
{
    return cmn_strndup(s, strlen(s));
}

void *cmn_memdup(const void *p, size_t len)
{
    void *d = cmn_malloc(len);
    if (d != NULL)
        memcpy(d, p, len);
    return d;
}

size_t cmn_alloc_live_bytes(void)
{
    return atomic_load(&live_bytes);
}

uint64_t cmn_alloc_count(void)
{
    return atomic_load(&alloc_calls);
}

void cmn_alloc_fail_after(uint64_t n)
{
    atomic_store(&fail_one, false);
    atomic_store(&fail_at, n == 0 ? 0 : atomic_load(&alloc_calls) + n);
}

void cmn_alloc_fail_once(uint64_t n)
{
    atomic_store(&fail_one, true);
    atomic_store(&fail_at, n == 0 ? 0 : atomic_load(&alloc_calls) + n);
}

void cmn_alloc_fail_reset(void)
{
    atomic_store(&fail_at, 0);
    atomic_store(&fail_one, false);
}

void *cmn_lib_malloc(size_t size)
{
    return cmn_malloc(size ? size : 1);
}

void *cmn_zstd_alloc(void *opaque, size_t size)
{
    (void)opaque;
    return cmn_malloc(size ? size : 1);
}

void cmn_zstd_free(void *opaque, void *p)
{
    (void)opaque;
    cmn_free(p);
}

void *cmn_zlib_alloc(void *opaque, unsigned items, unsigned size)
{
    (void)opaque;
    return cmn_calloc(items ? items : 1, size ? size : 1);
}

void cmn_zlib_free(void *opaque, void *p)
{
    (void)opaque;
    cmn_free(p);
}

/* glibc raises its mmap threshold each time a large block is freed (up to
 * 32 MiB), after which big short-lived buffers (a flush's payloads) come
 * from the heap and stay in RSS once freed, and every thread that
 * allocates may get an arena of its own. A fixed threshold returns large
 * blocks to the system on free; two arenas bound the per-thread spread. */
void cmn_alloc_tune(void)
{
    (void)mallopt(M_MMAP_THRESHOLD, 256 * 1024);
    (void)mallopt(M_ARENA_MAX, 2);
    /* No fastbins: freed small blocks (contexts of 72 bytes plus their
     * tags, which expiry frees by the hundred thousand) would wait in them
     * until the next large request, whose malloc_consolidate then walks
     * them all at once: 130-160 ms of one loop callback at a million
     * contexts. Without them a free coalesces at once; the per-thread
     * cache still serves the hot small sizes. */
    (void)mallopt(M_MXFAST, 0);
}

/* ------------------------------------------------------------------------
 * Secrets and scrubbed memory
 */

void cmn_wipe(void *p, size_t len)
{
    if (p != NULL && len > 0)
        explicit_bzero(p, len);
}

static size_t secret_map_size(size_t size)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    return (size + HDR + page - 1) / page * page;
}

/* Small secrets (an API key, the environment entry that held it) share
 * one page: each own mapping cost an mmap, an madvise, a page fault and,
 * when freed, a munmap, on serverless-init's path to spawning its child
 * (about 30 us each on the development VM). The page is excluded from
 * core dumps like the others, a freed slot is wiped at once, and the page
 * stays mapped for the life of the process. Secrets larger than a slot,
 * or past the last free slot, get their own mapping as before. */
#define SECRET_SLOT 128u    /* bytes per slot, header included */
#define SECRET_SLOTS_MAX 32 /* slots on the page (one bit each) */

static pthread_mutex_t secret_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned char *secret_page; /* NULL until the first small secret */
static size_t secret_page_size;
static uint32_t secret_used; /* bit i: slot i is taken */

/* A free slot of the shared page, or NULL (none left, or no page). */
static unsigned char *secret_slot_take(void)
{
    unsigned char *p = NULL;
    pthread_mutex_lock(&secret_mu);
    if (secret_page == NULL) {
        size_t page = (size_t)sysconf(_SC_PAGESIZE);
        void *m = mmap(NULL, page, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            (void)madvise(m, page, MADV_DONTDUMP);
            secret_page = m;
            secret_page_size = page;
        }
    }
    size_t nslots = secret_page_size / SECRET_SLOT;
    if (nslots > SECRET_SLOTS_MAX)
        nslots = SECRET_SLOTS_MAX;
    for (size_t i = 0; secret_page != NULL && i < nslots; i++) {
        if (!(secret_used & (1u << i))) {
            secret_used |= 1u << i;
            p = secret_page + i * SECRET_SLOT;
            break;
        }
    }
    pthread_mutex_unlock(&secret_mu);
    return p;
}

/* Wipes and frees base's slot if it is on the shared page. */
static bool secret_slot_give(unsigned char *base)
{
    pthread_mutex_lock(&secret_mu);
    bool mine = secret_page != NULL && base >= secret_page &&
                base < secret_page + secret_page_size;
    if (mine) {
        explicit_bzero(base, SECRET_SLOT);
        secret_used &= ~(1u << ((size_t)(base - secret_page) / SECRET_SLOT));
    }
    pthread_mutex_unlock(&secret_mu);
    return mine;
}

char *cmn_secret_strndup(const char *s, size_t len)
{
    size_t size = len + 1;
    if (len >= CMN_ALLOC_MAX || should_fail())
        return NULL;
    unsigned char *base = NULL;
    if (size + HDR <= SECRET_SLOT)
        base = secret_slot_take();
    if (base == NULL) {
        size_t map = secret_map_size(size);
        base = mmap(NULL, map, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (base == MAP_FAILED)
            return NULL;
        /* Best effort: a kernel without MADV_DONTDUMP (before 3.4) still
         * gets a working copy. */
        (void)madvise(base, map, MADV_DONTDUMP);
    }
    memcpy(base, &size, sizeof(size));
    memcpy(base + HDR, s, len);
    base[HDR + len] = '\0';
    atomic_fetch_add(&live_bytes, size);
    return (char *)base + HDR;
}

void cmn_secret_free(char *s)
{
    if (s == NULL)
        return;
    unsigned char *base = (unsigned char *)s - HDR;
    size_t size;
    memcpy(&size, base, sizeof(size));
    atomic_fetch_sub(&live_bytes, size);
    if (secret_slot_give(base))
        return;
    size_t map = secret_map_size(size);
    explicit_bzero(base, map);
    munmap(base, map);
}

void *cmn_scrub_malloc(size_t size)
{
    return malloc(size);
}

void *cmn_scrub_calloc(size_t n, size_t size)
{
    return calloc(n, size);
}

void cmn_scrub_free(void *p)
{
    if (p == NULL)
        return;
    explicit_bzero(p, malloc_usable_size(p));
    free(p);
}

/* Never realloc in place: the old block would be freed unzeroed. */
void *cmn_scrub_realloc(void *p, size_t size)
{
    if (p == NULL)
        return malloc(size);
    if (size == 0) {
        cmn_scrub_free(p);
        return NULL;
    }
    void *q = malloc(size);
    if (q == NULL)
        return NULL;
    size_t old = malloc_usable_size(p);
    memcpy(q, p, old < size ? old : size);
    cmn_scrub_free(p);
    return q;
}

char *cmn_scrub_strdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d != NULL)
        memcpy(d, s, n);
    return d;
}
