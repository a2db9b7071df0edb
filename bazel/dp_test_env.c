/*
 * dp_test_env.c - Bazel only: the test macro (bazel/tests.bzl) sets
 * DP_BIN_DIR, DP_TEST_DIR, DP_SOURCE_DIR and sanitizer suppressions files
 * (e.g. LSAN_OPTIONS=suppressions=tests/serverless_init/lsan.supp) to
 * runfiles paths relative to the test's working directory. Tests hand these
 * to child processes that may run in another directory, so this constructor
 * makes them absolute before main() runs. Absolute paths are left alone.
 * (The test process's own sanitizer runtime has already read its options,
 * relative to the working directory, which is right for it.)
 */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void dp_test_env_absolute(const char *name, const char *cwd)
{
    const char *v = getenv(name);
    char path[PATH_MAX];
    int n;

    if (v == NULL || v[0] == '/')
        return;
    if (v[0] == '\0' || (v[0] == '.' && v[1] == '\0'))
        n = snprintf(path, sizeof(path), "%s", cwd);
    else
        n = snprintf(path, sizeof(path), "%s/%s", cwd, v);
    if (n < 0 || (size_t)n >= sizeof(path))
        return;
    (void)setenv(name, path, 1);
}

/* Rewrites "...suppressions=<relative>..." in a sanitizer's options. */
static void dp_test_env_suppressions(const char *name, const char *cwd)
{
    static const char key[] = "suppressions=";
    const char *v = getenv(name), *p;
    char opts[2 * PATH_MAX];
    int n;

    if (v == NULL)
        return;
    p = strstr(v, key);
    if (p == NULL || (p != v && p[-1] != ':' && p[-1] != ' '))
        return;
    p += sizeof(key) - 1;
    if (*p == '/' || *p == '\0' || *p == ':')
        return;
    n = snprintf(opts, sizeof(opts), "%.*s%s/%s", (int)(p - v), v, cwd, p);
    if (n < 0 || (size_t)n >= sizeof(opts))
        return;
    (void)setenv(name, opts, 1);
}

__attribute__((constructor)) static void dp_test_env_init(void)
{
    char cwd[PATH_MAX];

    if (getcwd(cwd, sizeof(cwd)) == NULL)
        return;
    dp_test_env_absolute("DP_BIN_DIR", cwd);
    dp_test_env_absolute("DP_TEST_DIR", cwd);
    dp_test_env_absolute("DP_SOURCE_DIR", cwd);
    dp_test_env_suppressions("ASAN_OPTIONS", cwd);
    dp_test_env_suppressions("LSAN_OPTIONS", cwd);
    dp_test_env_suppressions("UBSAN_OPTIONS", cwd);
}
