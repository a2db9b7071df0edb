/*
 * planted_leak.c - a Criterion test that leaks 4 KiB on purpose, through
 * the project's allocator, exactly as a buggy test or component would. It
 * is not a test of its own: check_planted_leak.sh runs it with the
 * suite's LeakSanitizer suppressions and fails unless LeakSanitizer
 * reports this leak. That proves tests/lsan.supp hides only Criterion's
 * own leaks, not every allocation made under Criterion's runner (the old
 * "leak:libcriterion.so" hid them all).
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common.h"

static void *planted;

static __attribute__((noinline)) void dp_planted_leak(void)
{
    char *p = cmn_malloc(4096);
    cr_assert_not_null(p);
    memset(p, 0x5a, 4096);
    planted = p;
    planted = NULL; /* the last reference is gone: a leak */
}

Test(leakcheck, planted_4k_leak)
{
    dp_planted_leak();
    cr_expect_null(planted);
}
