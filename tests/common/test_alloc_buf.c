/*
 * test_alloc_buf.c - the allocator's accounting and failure injection, and
 * the bounded buffer's cap.
 */
#include <criterion/criterion.h>
#include <string.h>

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
