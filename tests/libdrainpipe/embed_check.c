/*
 * embed_check.c - runs examples/embed (built against the installed
 * library by scripts/test-embed.sh; its path in DP_EMBED_BIN) against the
 * loopback intake and checks what the intake decoded: both threads'
 * counts, the distribution, and the gauge sent just before dp_stop.
 * Not a ctest test: it needs the install step (scripts/test-embed.sh).
 */
#include <fcntl.h>
#include <math.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#include "dp_test.h"

/* Runs bin with the intake's address and its stdout on /dev/null; returns
 * its exit status. The test's timeout bounds the wait. */
static int run_example(const char *bin, struct ti *ti)
{
    char url[128];
    snprintf(url, sizeof(url), "DD_DD_URL=%s", ti_url(ti));
    char *env[] = {"DD_API_KEY=k", url, "DD_LOG_LEVEL=warn", NULL};
    char *argv[] = {(char *)bin, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    int err = posix_spawn(&pid, bin, &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    cr_assert_eq(err, 0, "posix_spawn %s: %d", bin, err);
    int st;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the example was killed");
    return WEXITSTATUS(st);
}

Test(embed, installed_example_delivers, .timeout = 60)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    const char *bin = getenv("DP_EMBED_BIN");
    cr_assert_not_null(bin, "DP_EMBED_BIN: run scripts/test-embed.sh");
    cr_assert_eq(run_example(bin, ti), 0);

    struct ti_point pts[64];
    struct ti_series_info info;
    const char *workers[] = {"worker:text", "worker:typed"};
    for (int w = 0; w < 2; w++) {
        size_t n =
            ti_series_points(ti, "embed.requests", workers[w], pts, 64, &info);
        cr_assert_geq(n, 1, "%s", workers[w]);
        cr_assert_eq(info.type, 2); /* RATE: count / interval */
        double sum = 0;
        for (size_t i = 0; i < n; i++)
            sum += pts[i].value * (double)info.interval;
        cr_assert_eq(llround(sum), 1000, "%s", workers[w]);
    }
    struct ti_sketch_sum sk;
    cr_assert_geq(ti_sketch_find(ti, "embed.latency", "", &sk), 1);
    cr_assert_eq(sk.cnt, 1000);
    cr_assert_eq(sk.sum, 4500.0); /* 100 x (0 + 1 + ... + 9) */
    cr_assert_eq(sk.min, 0.0);
    cr_assert_eq(sk.max, 9.0);
    cr_assert_eq(ti_series_points(ti, "embed.phase", "", pts, 64, NULL), 1);
    cr_assert_eq(pts[0].value, 2.0);
    ti_stop(ti);
}
