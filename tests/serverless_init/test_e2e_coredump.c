/*
 * test_e2e_coredump.c - a core dump of the wrapper does not contain the
 * API key. The real serverless-init runs with a distinctive key, talks to
 * the loopback intake (so the key has been in its config, its environment,
 * the request headers and libcurl's buffers), then gets SIGSEGV, which it
 * does not catch: the kernel writes a core. The test searches the core for
 * the key, and for the intake URL as a check that the core holds the heap.
 *
 * Skipped, saying why, where no core file can be had: RLIMIT_CORE's hard
 * limit is 0, core_pattern pipes cores to a program or another directory,
 * or nothing was written (AddressSanitizer turns core dumps off).
 */
#include <dirent.h>
#include <sys/resource.h>

#include "e2e.h"

#define KEY "d5e0c1a2b3f4e5d6c7b8a9f0e1d2c3b4"

/* Is needle in the file? Read in chunks that overlap by the needle. */
static bool file_has(const char *path, const char *needle)
{
    size_t nl = strlen(needle), chunk = 1 << 20;
    char *buf = malloc(chunk + nl);
    FILE *f = fopen(path, "rb");
    bool found = false;
    size_t keep = 0, n;

    cr_assert_not_null(buf);
    cr_assert_not_null(f, "%s", path);
    while (!found && (n = fread(buf + keep, 1, chunk, f)) > 0) {
        size_t have = keep + n;
        found = memmem(buf, have, needle, nl) != NULL;
        keep = have < nl - 1 ? have : nl - 1;
        memmove(buf, buf + have - keep, keep);
    }
    fclose(f);
    free(buf);
    return found;
}

/* The core file the wrapper left in dir, or "" */
static void find_core(const char *dir, char *out, size_t cap)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    out[0] = '\0';
    cr_assert_not_null(d);
    while ((de = readdir(d)) != NULL) {
        if (strncmp(de->d_name, "core", 4) == 0) {
            snprintf(out, cap, "%s/%s", dir, de->d_name);
            break;
        }
    }
    closedir(d);
}

Test(e2e_coredump, api_key_not_in_core_dump, .timeout = 120)
{
    struct rlimit rl;
    char pattern[256];

    cr_assert_eq(getrlimit(RLIMIT_CORE, &rl), 0);
    if (rl.rlim_max == 0)
        cr_skip_test("core dumps are disabled here (RLIMIT_CORE hard limit "
                     "is 0): the core-dump check did not run");
    rl.rlim_cur = rl.rlim_max;
    cr_assert_eq(setrlimit(RLIMIT_CORE, &rl), 0);
    e2e_read("/proc/sys/kernel/core_pattern", pattern, sizeof(pattern));
    pattern[strcspn(pattern, "\n")] = '\0';
    if (pattern[0] == '|' || strchr(pattern, '/') != NULL)
        cr_skip_test("core_pattern is \"%s\": cores do not land in the "
                     "working directory, the core-dump check did not run",
                     pattern);

    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DD_API_KEY=%s", KEY);
    /* the core lands in the wrapper's working directory */
    char cwd[1024];
    cr_assert_not_null(getcwd(cwd, sizeof(cwd)));
    cr_assert_eq(chdir(e.dir), 0);
    const char *args[] = {e.child, "udp",  "core.test:1|c",
                          "sleep", "3000", NULL};
    pid_t pid = e2e_start(&e, args);
    /* the warm-start request carries the key: it went through the config,
     * the header list and libcurl */
    cr_assert_geq(ti_wait_count(ti, 1, 10000), 1);
    cr_assert_str_eq(ti_request_header(ti_request_get(ti, 0), "DD-Api-Key"),
                     KEY);
    e2e_sleep_ms(300); /* let the answer be read and the request end */
    cr_assert_eq(kill(pid, SIGSEGV), 0);
    int code = e2e_wait(pid, 30000);
    cr_assert_eq(chdir(cwd), 0);

    char core[512];
    find_core(e.dir, core, sizeof(core));
    if (core[0] == '\0') {
        e2e_fini(&e);
        ti_stop(ti);
        /* ASan catches the SIGSEGV itself and turns core dumps off */
        cr_skip_test("the kernel wrote no core file (wrapper ended with %d, "
                     "core_pattern \"%s\"; a sanitizer build turns core "
                     "dumps off): the core-dump check did not run",
                     code, pattern);
    }
    cr_assert_eq(code, 128 + SIGSEGV, "wrapper ended with %d", code);
    bool has_url = file_has(core, ti_url(ti));
    bool has_key = file_has(core, KEY);
    unlink(core);
    e2e_fini(&e);
    ti_stop(ti);
    cr_assert(has_url, "the core does not hold the intake URL: not a real "
                       "dump of the heap?");
    cr_assert_not(has_key, "the API key is in the core dump");
}
