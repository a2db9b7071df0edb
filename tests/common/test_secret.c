/*
 * test_secret.c - secret copies (cmn_secret_strndup) live in mappings the
 * kernel leaves out of core dumps, cmn_env_protect moves an environment
 * entry there without changing what getenv returns, and the scrubbing
 * allocator keeps contents across realloc.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

static unsigned long hex(const char *s)
{
    unsigned long v = 0;
    for (;; s++) {
        int d = *s >= '0' && *s <= '9'   ? *s - '0'
                : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10
                                         : -1;
        if (d < 0)
            return v;
        v = v * 16 + (unsigned long)d;
    }
}

/* The VmFlags line of the /proc/self/smaps mapping holding p. */
static void vm_flags(const void *p, char *out, size_t cap)
{
    FILE *f = fopen("/proc/self/smaps", "r");
    char line[512];
    bool in = false;
    uintptr_t a = (uintptr_t)p;

    out[0] = '\0';
    cr_assert_not_null(f);
    while (fgets(line, sizeof(line), f) != NULL) {
        unsigned long lo, hi;
        if (strncmp(line, "VmFlags:", 8) == 0) {
            if (in) {
                snprintf(out, cap, "%.200s", line + 8);
                break;
            }
            continue;
        }
        /* a mapping header: "lo-hi perms ..."; other lines start with a
         * capitalised field name */
        char *dash = strchr(line, '-');
        if (dash != NULL && line[0] != ' ' &&
            (line[0] < 'A' || line[0] > 'Z')) {
            lo = hex(line);
            hi = hex(dash + 1);
            in = a >= lo && a < hi;
        }
    }
    fclose(f);
}

Test(secret, copy_is_excluded_from_core_dumps_and_freed_clean)
{
    size_t live = cmn_alloc_live_bytes();
    char *s = cmn_secret_strndup("topsecret-key", 9);
    char flags[256];

    cr_assert_not_null(s);
    cr_assert_str_eq(s, "topsecret");
    cr_assert_eq(cmn_alloc_live_bytes(), live + 10);
    vm_flags(s, flags, sizeof(flags));
    cr_assert_not_null(strstr(flags, " dd"), "VmFlags:%s", flags);
    cmn_secret_free(s);
    cmn_secret_free(NULL);
    cr_assert_eq(cmn_alloc_live_bytes(), live);
}

Test(secret, oom_hook_applies)
{
    cmn_alloc_fail_after(1);
    cr_assert_null(cmn_secret_strndup("k", 1));
    cmn_alloc_fail_reset();
}

Test(secret, env_protect_moves_the_value)
{
    cr_assert_eq(setenv("DP_TEST_SECRET", "abc123", 1), 0);
    char *orig = getenv("DP_TEST_SECRET");
    char flags[256];

    cr_assert_eq(cmn_env_protect("DP_TEST_SECRET"), 0);
    const char *now = getenv("DP_TEST_SECRET");
    cr_assert_str_eq(now, "abc123");
    cr_assert_neq((void *)now, (void *)orig);
    cr_assert_eq(memcmp(orig, "\0\0\0\0\0\0", 6), 0, "old value not wiped");
    vm_flags(now, flags, sizeof(flags));
    cr_assert_not_null(strstr(flags, " dd"), "VmFlags:%s", flags);
    /* idempotent: the moved entry stays where it is */
    cr_assert_eq(cmn_env_protect("DP_TEST_SECRET"), 0);
    cr_assert_eq((void *)getenv("DP_TEST_SECRET"), (void *)now);
    cr_assert_eq(cmn_env_protect("DP_TEST_UNSET_VARIABLE"), 0);
}

Test(secret, scrub_allocator_keeps_contents)
{
    char *p = cmn_scrub_malloc(8);
    cr_assert_not_null(p);
    memcpy(p, "abcdefg", 8);
    p = cmn_scrub_realloc(p, 4096);
    cr_assert_not_null(p);
    cr_assert_str_eq(p, "abcdefg");
    p = cmn_scrub_realloc(p, 4);
    cr_assert_eq(memcmp(p, "abcd", 4), 0);
    cmn_scrub_free(p);
    char *d = cmn_scrub_strdup("key");
    cr_assert_str_eq(d, "key");
    cmn_scrub_free(d);
    int *z = cmn_scrub_calloc(4, sizeof(int));
    cr_assert_eq(z[0] | z[1] | z[2] | z[3], 0);
    cmn_scrub_free(z);
    cmn_scrub_free(NULL);
}

/* Small secrets share one page excluded from core dumps; a freed slot is
 * wiped at once (the page stays mapped, so the bytes can be read back) and
 * reused; a secret larger than a slot, and one past the last free slot,
 * get a mapping of their own, also excluded, and are freed clean. */
Test(secret, small_secrets_share_a_page_and_are_wiped)
{
    size_t live = cmn_alloc_live_bytes();
    char *a = cmn_secret_strndup("key-a-0123456789abcdef0123456789ab", 34);
    char *b = cmn_secret_strndup("DD_API_KEY=key-b", 16);
    char flags[256];
    cr_assert_not_null(a);
    cr_assert_not_null(b);
    cr_assert_str_eq(a, "key-a-0123456789abcdef0123456789ab");
    cr_assert_str_eq(b, "DD_API_KEY=key-b");
    cr_assert_eq(cmn_alloc_live_bytes(), live + 35 + 17);
    uintptr_t pa = (uintptr_t)a, pb = (uintptr_t)b;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    cr_assert_eq(pa / page, pb / page, "not on one page: %p %p", a, b);
    vm_flags(b, flags, sizeof(flags));
    cr_assert_not_null(strstr(flags, " dd"), "VmFlags:%s", flags);
    cmn_secret_free(a);
    static const char zero[35];
    cr_assert_eq(memcmp((const char *)pa, zero, sizeof(zero)), 0,
                 "freed slot not wiped");
    char *c = cmn_secret_strndup("key-c", 5);
    cr_assert_eq((uintptr_t)c, pa, "the freed slot is taken again");
    /* larger than a slot: its own mapping */
    char big[300];
    memset(big, 'x', sizeof(big));
    char *d = cmn_secret_strndup(big, sizeof(big));
    cr_assert_not_null(d);
    cr_assert_neq((uintptr_t)d / page, pa / page);
    cr_assert_eq(strlen(d), sizeof(big));
    vm_flags(d, flags, sizeof(flags));
    cr_assert_not_null(strstr(flags, " dd"), "VmFlags:%s", flags);
    /* more small secrets than slots: the rest get their own mappings */
    char *many[40];
    for (int i = 0; i < 40; i++) {
        many[i] = cmn_secret_strndup("k", 1);
        cr_assert_not_null(many[i]);
        cr_assert_str_eq(many[i], "k");
    }
    cr_assert_neq((uintptr_t)many[39] / page, pa / page);
    for (int i = 0; i < 40; i++)
        cmn_secret_free(many[i]);
    cmn_secret_free(b);
    cmn_secret_free(c);
    cmn_secret_free(d);
    cr_assert_eq(cmn_alloc_live_bytes(), live);
}
