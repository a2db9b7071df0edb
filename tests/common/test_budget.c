/*
 * test_budget.c - the memory budget: the DRAINPIPE_MEMORY_LIMIT grammar,
 * the step thresholds, reservations that fail past the limit, and the
 * counters each step keeps.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "common.h"

static size_t bytes(const char *s)
{
    size_t n = 0;
    cr_assert_eq(cmn_parse_bytes(cmn_slice_cstr(s), &n), 0, "%s", s);
    return n;
}

Test(budget, parses_suffixes)
{
    cr_expect_eq(bytes("65536"), 65536);
    cr_expect_eq(bytes("12B"), 12);
    cr_expect_eq(bytes("64KiB"), 65536);
    cr_expect_eq(bytes("64MiB"), (size_t)64 << 20);
    cr_expect_eq(bytes("64mib"), (size_t)64 << 20);
    cr_expect_eq(bytes("2GiB"), (size_t)2 << 30);
    cr_expect_eq(bytes("1024GiB"), (size_t)1 << 40);
}

Test(budget, rejects_malformed)
{
    const char *bad[] = {"",    "MiB",     "64 MiB",
                         "-1",  "1.5MiB",  "64MB",
                         "64M", "1025GiB", "99999999999999999999",
                         "0x10"};
    size_t n = 7;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_expect_neq(cmn_parse_bytes(cmn_slice_cstr(bad[i]), &n), 0, "%s",
                      bad[i]);
        cr_expect_eq(n, 7, "%s", bad[i]);
    }
}

static const char *env_value;
static const char *fake_env(const char *name, void *data)
{
    (void)data;
    return strcmp(name, "DRAINPIPE_MEMORY_LIMIT") == 0 ? env_value : NULL;
}

Test(budget, from_env)
{
    struct cmn_env env = {fake_env, NULL};
    size_t n = CMN_BUDGET_DEFAULT;

    env_value = NULL;
    cr_expect_eq(cmn_budget_from_env(&env, &n), 0);
    cr_expect_eq(n, (size_t)64 << 20);
    env_value = "128MiB";
    cr_expect_eq(cmn_budget_from_env(&env, &n), 0);
    cr_expect_eq(n, (size_t)128 << 20);
    env_value = "1MiB"; /* below the 4 MiB minimum */
    cr_expect_eq(cmn_budget_from_env(&env, &n), UV_EINVAL);
    env_value = "lots";
    cr_expect_eq(cmn_budget_from_env(&env, &n), UV_EINVAL);
    cr_expect_eq(n, (size_t)128 << 20);
}

Test(budget, unlimited_by_default)
{
    cr_expect_eq(cmn_budget_limit(), 0);
    cr_expect_eq(cmn_budget_step_bytes(CMN_BUDGET_SKETCH), SIZE_MAX);
    cr_expect_not(cmn_budget_over(CMN_BUDGET_EVICT_RETRY));
    cr_expect_eq(cmn_budget_reserve((size_t)1 << 40), 0);
    cmn_budget_release((size_t)1 << 40);
    cr_expect_eq(cmn_budget_reserved(), 0);
}

Test(budget, steps_follow_used_bytes)
{
    size_t lim = (size_t)100 << 20;
    cmn_budget_set_limit(lim);
    cr_expect_eq(cmn_budget_step_bytes(CMN_BUDGET_SKETCH), lim / 2);
    cr_expect_eq(cmn_budget_step_bytes(CMN_BUDGET_NO_NEW_CONTEXT), lim / 4 * 3);
    cr_expect_eq(cmn_budget_step_bytes(CMN_BUDGET_EVICT_RETRY), lim / 10 * 9);
    cr_expect_eq(cmn_budget_step_bytes(CMN_BUDGET_RESERVE), lim);

    size_t live = cmn_alloc_live_bytes();
    cr_expect_eq(cmn_budget_used(), live);
    cr_expect_not(cmn_budget_over(CMN_BUDGET_SKETCH));

    /* a reservation and an allocation both count */
    cr_assert_eq(cmn_budget_reserve(lim / 2 - live), 0);
    cr_expect_not(cmn_budget_over(CMN_BUDGET_SKETCH));
    char *p = cmn_malloc(1);
    cr_assert_not_null(p);
    cr_expect(cmn_budget_over(CMN_BUDGET_SKETCH));
    cr_expect_not(cmn_budget_over(CMN_BUDGET_NO_NEW_CONTEXT));
    void *big = cmn_malloc(lim / 4);
    cr_assert_not_null(big);
    cr_expect(cmn_budget_over(CMN_BUDGET_NO_NEW_CONTEXT));
    cr_expect_not(cmn_budget_over(CMN_BUDGET_EVICT_RETRY));

    /* past the limit, a reservation is refused and counted; nothing is
     * claimed */
    size_t before = cmn_budget_reserved();
    cr_expect_eq(cmn_budget_reserve(lim / 4), CMN_ECAP);
    cr_expect_eq(cmn_budget_reserved(), before);
    cr_expect_eq(cmn_budget_count(CMN_BUDGET_RESERVE), 1);
    cr_expect_eq(cmn_budget_reserve(lim / 4 - 1 - live), 0);
    cr_expect(cmn_budget_over(CMN_BUDGET_EVICT_RETRY));
    cr_expect_eq(cmn_budget_used(), lim);
    cr_expect_eq(cmn_budget_reserve(1), CMN_ECAP);
    cr_expect_eq(cmn_budget_count(CMN_BUDGET_RESERVE), 2);

    cmn_budget_release(lim / 4 - 1 - live);
    cmn_budget_release(lim / 2 - live);
    cmn_free(big);
    cmn_free(p);
    cr_expect_eq(cmn_budget_reserved(), 0);
    cr_expect_eq(cmn_budget_used(), live);
}

Test(budget, note_counts_each_step)
{
    cmn_budget_set_limit((size_t)64 << 20);
    cmn_budget_note(CMN_BUDGET_SKETCH);
    cmn_budget_note(CMN_BUDGET_SKETCH);
    cmn_budget_note(CMN_BUDGET_NO_NEW_CONTEXT);
    cr_expect_eq(cmn_budget_count(CMN_BUDGET_SKETCH), 2);
    cr_expect_eq(cmn_budget_count(CMN_BUDGET_NO_NEW_CONTEXT), 1);
    cr_expect_eq(cmn_budget_count(CMN_BUDGET_EVICT_RETRY), 0);
    cmn_budget_reset_counts();
    cr_expect_eq(cmn_budget_count(CMN_BUDGET_SKETCH), 0);
}

Test(budget, lib_adapters_are_counted)
{
    size_t live = cmn_alloc_live_bytes();
    void *a = cmn_lib_malloc(0), *b = cmn_zstd_alloc(NULL, 100),
         *c = cmn_zlib_alloc(NULL, 10, 10);
    cr_assert(a && b && c);
    cr_expect_eq(cmn_alloc_live_bytes(), live + 1 + 100 + 100);
    cmn_free(a);
    cmn_zstd_free(NULL, b);
    cmn_zlib_free(NULL, c);
    cr_expect_eq(cmn_alloc_live_bytes(), live);
}
