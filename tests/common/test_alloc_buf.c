/*
 * test_alloc_buf.c - the allocator's accounting and failure injection, and
 * the bounded buffer's cap.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>

#include "common.h"

Test(alloc, counts_live_bytes)
{
    size_t base = cmn_alloc_live_bytes();
    char *a = cmn_malloc(100);
    cr_assert_not_null(a);
    cr_expect_eq(cmn_alloc_live_bytes(), base + 100);
    a = cmn_reallocarray(a, 50, 4);
    cr_assert_not_null(a);
    cr_expect_eq(cmn_alloc_live_bytes(), base + 200);
    cmn_free(a);
    cr_expect_eq(cmn_alloc_live_bytes(), base);
    cmn_free(NULL);
}

Test(alloc, rejects_zero_overflow_and_oversize)
{
    cr_expect_null(cmn_malloc(0));
    cr_expect_null(cmn_calloc(SIZE_MAX / 2, 4));
    cr_expect_null(cmn_malloc((size_t)2 << 30));
    cr_expect_eq(cmn_alloc_live_bytes(), 0);
}

Test(alloc, fail_after_n)
{
    cmn_alloc_fail_after(3);
    void *a = cmn_malloc(8), *b = cmn_malloc(8), *c = cmn_malloc(8);
    cr_expect_not_null(a);
    cr_expect_not_null(b);
    cr_expect_null(c);
    cr_expect_null(cmn_strdup("x"));
    cmn_alloc_fail_reset();
    char *d = cmn_strdup("xyz");
    cr_assert_not_null(d);
    cr_expect_str_eq(d, "xyz");
    cmn_free(a);
    cmn_free(b);
    cmn_free(d);
    cr_expect_eq(cmn_alloc_live_bytes(), 0);
}

/* A big array keeps its contents from a few bytes (malloc) through its own
 * mapping's reservation (grown in place) and past it (moved), and when it
 * shrinks back under CMN_BIG_MIN; live bytes follow each size. */
Test(alloc, big_array_grows_in_place_and_past_its_reservation)
{
    size_t base = cmn_alloc_live_bytes();
    uint32_t *v = NULL;
    size_t n = 0;
    const size_t sizes[] = {16, (CMN_BIG_MIN / 4) * 2, (size_t)4 << 20,
                            (size_t)80 << 20, (size_t)1 << 16};
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        size_t m = sizes[k];
        uint32_t *nv = cmn_realloc_big(v, m, sizeof(*v));
        cr_assert_not_null(nv, "size %zu", m);
        v = nv;
        size_t keep = n < m ? n : m;
        for (size_t i = 0; i < keep; i += 1021)
            cr_assert_eq(v[i], (uint32_t)i * 2654435761u, "index %zu", i);
        for (size_t i = 0; i < m; i++)
            v[i] = (uint32_t)i * 2654435761u;
        n = m;
        cr_expect_eq(cmn_alloc_live_bytes(), base + m * sizeof(*v));
        cr_expect_eq(cmn_alloc_size(v), m * sizeof(*v));
    }
    cmn_free_big(v);
    cr_expect_eq(cmn_alloc_live_bytes(), base);
    /* one that never left the heap is freed as one */
    v = cmn_realloc_big(NULL, 16, sizeof(*v));
    cr_assert_not_null(v);
    cmn_free_big(v);
    cr_expect_eq(cmn_alloc_live_bytes(), base);
}

/* Pages of [p, p + len) resident (mincore), whole pages only. */
static size_t resident_pages(const void *p, size_t len)
{
    const uintptr_t pg = 4096;
    uintptr_t lo = ((uintptr_t)p + pg - 1) / pg * pg;
    uintptr_t hi = ((uintptr_t)p + len) / pg * pg;
    unsigned char vec[256];
    cr_assert(hi > lo && (hi - lo) / pg <= sizeof(vec));
    cr_assert_eq(mincore((void *)lo, hi - lo, vec), 0);
    size_t n = 0;
    for (size_t i = 0; i < (hi - lo) / pg; i++)
        n += vec[i] & 1;
    return n;
}

/* A large zeroed block is fresh zero pages: nothing is written to it
 * before its owner does (glibc's calloc from the heap clears it whole),
 * and it grows, shrinks and is freed like any other block. */
Test(alloc, large_calloc_touches_no_page_until_used)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("under ASan every block is the sanitizer's");
#endif
    size_t base = cmn_alloc_live_bytes();
    /* the heap's top first, so that glibc could serve the block from it */
    void *small = cmn_malloc(100);
    cr_assert_not_null(small);
    const size_t len = 64 << 10;
    unsigned char *p = cmn_calloc(1, len);
    cr_assert_not_null(p);
    cr_expect_eq(resident_pages(p, len), 0, "calloc wrote the block");
    cr_expect_eq(p[40000], 0);
    p[40000] = 0x5a;
    cr_expect_eq(resident_pages(p, len), 1);
    cr_expect_eq(cmn_alloc_live_bytes(), base + 100 + len);
    /* grows in place or moves, contents kept, the new bytes zero */
    unsigned char *q = cmn_reallocarray(p, 4, len);
    cr_assert_not_null(q);
    cr_expect_eq(q[40000], 0x5a);
    cr_expect_eq(q[len + 40000], 0);
    cr_expect_eq(q[4 * len - 1], 0);
    cr_expect_eq(cmn_alloc_size(q), 4 * len);
    cr_expect_eq(cmn_alloc_live_bytes(), base + 100 + 4 * len);
    /* shrunk below the threshold: back on the heap, contents kept */
    memset(q, 0x11, 1000);
    unsigned char *r = cmn_reallocarray(q, 1, 1000);
    cr_assert_not_null(r);
    for (size_t i = 0; i < 1000; i++)
        cr_assert_eq(r[i], 0x11, "byte %zu", i);
    cr_expect_eq(cmn_alloc_live_bytes(), base + 100 + 1000);
    cmn_free(r);
    cmn_free(small);
    cr_expect_eq(cmn_alloc_live_bytes(), base);
}

/* Whether the page at p is mapped (mincore fails with ENOMEM where
 * nothing is). */
static bool mapped(const void *p)
{
    unsigned char v;
    void *pg = (void *)((uintptr_t)p / 4096 * 4096);
    return mincore(pg, 4096, &v) == 0;
}

/* Once the process is exiting, a freed mapping stays mapped (the exit
 * takes it, without a munmap each), up to CMN_EXIT_KEEP_MAX bytes in all;
 * past the cap, blocks are given back as before. Live bytes are counted
 * as freed either way. */
Test(alloc, exiting_leaves_big_blocks_to_the_exit)
{
#if defined(__SANITIZE_ADDRESS__)
    cmn_alloc_exiting();
    cr_assert_not(cmn_alloc_keep_at_exit(4096), "ASan: every block freed");
    return;
#endif
    size_t base = cmn_alloc_live_bytes();
    const size_t len = 512 << 10;
    unsigned char *before = cmn_calloc(1, len);
    cr_assert_not_null(before);
    before[0] = 1;
    cr_assert_not(cmn_alloc_keep_at_exit(4096), "not exiting yet");
    cmn_free(before); /* given back at once */
    cr_expect_not(mapped(before));

    cmn_alloc_exiting();
    unsigned char *kept[8];
    size_t n = 0;
    for (; n < 8; n++) {
        kept[n] = cmn_calloc(1, len);
        cr_assert_not_null(kept[n]);
        kept[n][len - 1] = 2;
    }
    for (size_t i = 0; i < n; i++)
        cmn_free(kept[i]);
    cr_expect_eq(cmn_alloc_live_bytes(), base);
    /* the first blocks up to the cap stay mapped, the rest are gone */
    size_t stayed = 0;
    for (size_t i = 0; i < n; i++)
        stayed += mapped(kept[i]);
    size_t block = len + 4096; /* the header's page */
    cr_expect_eq(stayed, CMN_EXIT_KEEP_MAX / block, "stayed %zu", stayed);
    cr_expect(mapped(kept[0]));
    cr_expect_not(mapped(kept[n - 1]));
    cr_expect_not(cmn_alloc_keep_at_exit(CMN_EXIT_KEEP_MAX));
}

enum { TP_PAGE = 4096, TP_PAGES = 16 };

/* TP_PAGES fresh pages, none resident. */
static unsigned char *fresh_pages(void)
{
    unsigned char *m = mmap(NULL, TP_PAGES * TP_PAGE, PROT_READ | PROT_WRITE,
                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    cr_assert_neq(m, MAP_FAILED);
    return m;
}

/* Exactly pages lo..hi of m are resident (by mincore); none when lo > hi. */
static void expect_resident(const unsigned char *m, size_t lo, size_t hi)
{
    unsigned char vec[TP_PAGES];
    cr_assert_eq(mincore((void *)m, TP_PAGES * TP_PAGE, vec), 0);
    for (size_t i = 0; i < TP_PAGES; i++)
        cr_assert_eq(vec[i] & 1, i >= lo && i <= hi, "page %zu", i);
}

/* cmn_populate maps pages in (resident by mincore) and leaves what they
 * hold as it was. */
Test(alloc, populate_maps_pages_in_and_keeps_their_contents)
{
    const size_t pg = TP_PAGE;
    unsigned char *m = fresh_pages();
    m[3 * pg + 5] = 0xab; /* page 3 is resident, with a byte of data */
    expect_resident(m, 3, 3);
    /* an unaligned range: from inside page 2 to inside page 9 */
    int rc = cmn_populate(m + 2 * pg + 100, 7 * pg);
    if (rc == -EINVAL)
        cr_skip_test("no MADV_POPULATE_WRITE (Linux < 5.14)");
    cr_assert_eq(rc, 0);
    expect_resident(m, 2, 9);
    cr_assert_eq(m[3 * pg + 5], 0xab);
    cr_assert_eq(m[2 * pg], 0);
    cr_assert_eq(cmn_populate(m, 0), 0, "nothing to do");
    munmap(m, TP_PAGES * pg);
}

/* cmn_touch_pages faults in exactly the pages of an unaligned range,
 * keeping their bytes; priming a registered page (cmn_mm_rewrite_begin)
 * leaves no page resident; cmn_mm_rewriting is true from the first begin
 * to the last end. */
Test(alloc, touch_pages_maps_the_range_in_and_keeps_its_contents)
{
    const size_t pg = TP_PAGE;
    unsigned char *m = fresh_pages();
    cr_assert(cmn_prime_register(m + 15 * pg));
    cmn_mm_rewrite_begin();
    cr_assert(cmn_mm_rewriting());
    cmn_mm_rewrite_end();
    cmn_prime_unregister(m + 15 * pg);
    expect_resident(m, 1, 0); /* none */
    m[3 * pg + 5] = 0xab;     /* page 3 is resident, with a byte of data */
    /* from inside page 2 to inside page 9 (its byte 3995) */
    cmn_touch_pages(m + 2 * pg + 100, 7 * pg + 3896);
    expect_resident(m, 2, 9);
    cr_assert_eq(m[3 * pg + 5], 0xab);
    cr_assert_eq(m[2 * pg + 100], 0);
    cr_assert_eq(m[9 * pg + 3995], 0);
    munmap(m, TP_PAGES * pg);

    cr_assert_not(cmn_mm_rewriting());
    cmn_mm_rewrite_begin();
    cmn_mm_rewrite_begin();
    cr_assert(cmn_mm_rewriting());
    cmn_mm_rewrite_end();
    cr_assert(cmn_mm_rewriting(), "nested: one begin still open");
    cmn_mm_rewrite_end();
    cr_assert_not(cmn_mm_rewriting());
}

Test(buf, cap_is_hard_and_failed_append_changes_nothing)
{
    struct cmn_buf b;
    cmn_buf_init(&b, 10);
    cr_expect_eq(cmn_buf_append(&b, "hello", 5), 0);
    cr_expect_eq(cmn_buf_append(&b, "world", 5), 0);
    cr_expect_eq(cmn_buf_append(&b, "!", 1), CMN_ETOOBIG);
    cr_expect_eq(b.len, 10);
    cr_expect_eq(memcmp(b.p, "helloworld", 10), 0);
    cmn_buf_reset(&b);
    cr_expect_eq(cmn_buf_printf(&b, "%d-%s", 42, "ab"), 0);
    cr_expect_str_eq(b.p, "42-ab");
    cr_expect_eq(cmn_buf_printf(&b, "%s", "0123456789"), CMN_ETOOBIG);
    cr_expect_str_eq(b.p, "42-ab");
    size_t n;
    char *s = cmn_buf_steal(&b, &n);
    cr_expect_eq(n, 5);
    cr_expect_null(b.p);
    cmn_free(s);
    cmn_buf_free(&b);
    cr_expect_eq(cmn_alloc_live_bytes(), 0);
}

Test(buf, oom_leaves_buffer_intact)
{
    struct cmn_buf b;
    cmn_buf_init(&b, 1 << 20);
    cr_assert_eq(cmn_buf_append(&b, "abc", 3), 0);
    cmn_alloc_fail_after(1);
    char big[1000];
    memset(big, 'x', sizeof(big));
    cr_expect_eq(cmn_buf_append(&b, big, sizeof(big)), UV_ENOMEM);
    cmn_alloc_fail_reset();
    cr_expect_eq(b.len, 3);
    cr_expect_eq(memcmp(b.p, "abc", 3), 0);
    cmn_buf_free(&b);
}
