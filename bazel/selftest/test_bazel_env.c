/*
 * test_bazel_env.c - the environment bazel/tests.bzl gives every test:
 * absolute DP_BIN_DIR / DP_TEST_DIR / DP_SOURCE_DIR with the promised
 * contents, and working loopback and Unix sockets inside the sandbox.
 */
#include <criterion/criterion.h>

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static const char *env_dir(const char *name)
{
    const char *v = getenv(name);
    struct stat st;

    cr_assert_not_null(v, "%s is not set", name);
    cr_assert_eq(v[0], '/', "%s=%s is not absolute", name, v);
    cr_assert_eq(stat(v, &st), 0, "%s=%s does not exist", name, v);
    cr_assert(S_ISDIR(st.st_mode), "%s=%s is not a directory", name, v);
    return v;
}

static void path_join(char *out, size_t cap, const char *dir, const char *rel)
{
    int n = snprintf(out, cap, "%s/%s", dir, rel);

    cr_assert(n > 0 && (size_t)n < cap);
}

Test(bazel_env, bin_dir_has_serverless_init)
{
    const char *dir = env_dir("DP_BIN_DIR");
    char path[PATH_MAX];

    path_join(path, sizeof(path), dir, "serverless-init");
    cr_assert_eq(access(path, X_OK), 0, "%s is not executable", path);
}

Test(bazel_env, test_dir_has_this_test)
{
    const char *dir = env_dir("DP_TEST_DIR");
    char path[PATH_MAX];

    path_join(path, sizeof(path), dir, "test_bazel_env");
    cr_assert_eq(access(path, X_OK), 0, "%s is not executable", path);
}

Test(bazel_env, source_dir_is_laid_out_like_the_tree)
{
    /* dp_tests() ships every non-C file of the test folder */
    static const char want[] = "drainpipe bazel selftest fixture\n";
    const char *dir = env_dir("DP_SOURCE_DIR");
    char path[PATH_MAX], got[64] = {0};
    FILE *f;

    path_join(path, sizeof(path), dir, "bazel/selftest/fixture.txt");
    f = fopen(path, "r");
    cr_assert_not_null(f, "%s is not readable", path);
    cr_assert_eq(fread(got, 1, sizeof(got) - 1, f), sizeof(want) - 1);
    fclose(f);
    cr_assert_str_eq(got, want);
}

Test(bazel_env, sanitizer_suppressions_made_absolute)
{
    const char *dir = env_dir("DP_SOURCE_DIR");
    const char *v = getenv("LSAN_OPTIONS");
    char want[2 * PATH_MAX];
    int n;

    n = snprintf(want, sizeof(want), "suppressions=%s/tests/lsan.supp", dir);
    cr_assert(n > 0 && (size_t)n < sizeof(want));
    cr_assert_not_null(v);
    cr_assert_str_eq(v, want);
}

Test(bazel_env, udp_loopback_round_trip)
{
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);
    char buf[16];
    int rx, tx;

    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    rx = socket(AF_INET, SOCK_DGRAM, 0);
    tx = socket(AF_INET, SOCK_DGRAM, 0);
    cr_assert(rx >= 0 && tx >= 0);
    cr_assert_eq(bind(rx, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(getsockname(rx, (struct sockaddr *)&a, &alen), 0);
    cr_assert_neq(a.sin_port, 0);
    cr_assert_eq(sendto(tx, "c:1|c", 5, 0, (struct sockaddr *)&a, sizeof(a)),
                 5);
    cr_assert_eq(recv(rx, buf, sizeof(buf), 0), 5);
    cr_assert_eq(memcmp(buf, "c:1|c", 5), 0);
    close(rx);
    close(tx);
}

Test(bazel_env, unix_datagram_in_tmp)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    char dir[] = "/tmp/dp-bazel-XXXXXX";
    char buf[16];
    int rx, tx, n;

    cr_assert_not_null(mkdtemp(dir));
    n = snprintf(a.sun_path, sizeof(a.sun_path), "%s/dsd.sock", dir);
    cr_assert(n > 0 && (size_t)n < sizeof(a.sun_path));
    rx = socket(AF_UNIX, SOCK_DGRAM, 0);
    tx = socket(AF_UNIX, SOCK_DGRAM, 0);
    cr_assert(rx >= 0 && tx >= 0);
    cr_assert_eq(bind(rx, (struct sockaddr *)&a, sizeof(a)), 0);
    cr_assert_eq(sendto(tx, "g:2|g", 5, 0, (struct sockaddr *)&a, sizeof(a)),
                 5);
    cr_assert_eq(recv(rx, buf, sizeof(buf), 0), 5);
    cr_assert_eq(memcmp(buf, "g:2|g", 5), 0);
    close(rx);
    close(tx);
    cr_assert_eq(unlink(a.sun_path), 0);
    cr_assert_eq(rmdir(dir), 0);
}
