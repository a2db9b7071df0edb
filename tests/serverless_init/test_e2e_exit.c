/*
 * test_e2e_exit.c - the wrapper's exit code and signals: the child's code
 * (0, 1, 7, 255), 128+N when it is killed, 127 when the command cannot be
 * run; on a bad setting the child runs anyway (one line names the
 * variable) or, with DRAINPIPE_FAIL_CLOSED, 1 with nothing spawned; SIGTERM
 * forwarded to the child whose last metric still arrives, and orphaned
 * grandchildren reaped without stealing the child's status.
 */
#include "e2e.h"

static int run_child(const char *const *child_args, struct ti *ti)
{
    struct e2e e;
    e2e_init(&e);
    if (ti != NULL) {
        e2e_env(&e, "DD_API_KEY=test");
        e2e_env(&e, "DD_DD_URL=%s", ti_url(ti));
    }
    const char *args[32];
    int n = 0;
    args[n++] = e.child;
    for (; *child_args; child_args++)
        args[n++] = *child_args;
    args[n] = NULL;
    int code = e2e_run(&e, args, 20000);
    e2e_fini(&e);
    return code;
}

Test(exit, child_exit_codes, .timeout = 60)
{
    const char *codes[] = {"0", "1", "7", "255"};
    int want[] = {0, 1, 7, 255};
    for (int i = 0; i < 4; i++) {
        const char *a[] = {"exit", codes[i], NULL};
        cr_assert_eq(run_child(a, NULL), want[i], "exit %s", codes[i]);
    }
}

Test(exit, killed_by_signal_is_128_plus_n, .timeout = 60)
{
    const char *a9[] = {"kill", "9", NULL};
    cr_assert_eq(run_child(a9, NULL), 137);
    const char *a15[] = {"kill", "15", NULL};
    cr_assert_eq(run_child(a15, NULL), 143);
}

Test(exit, command_not_found_is_127, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    const char *args[] = {"/nonexistent/definitely-not-here", "x", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 127);
    char err[8192];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_not_null(strstr(err, "cannot run \"/nonexistent/definitely-"
                                   "not-here\""),
                       "stderr:\n%s", err);
    /* not executable: also 127 */
    const char *args2[] = {"/etc/hostname", NULL};
    cr_assert_eq(e2e_run(&e, args2, 20000), 127);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(exit, bad_setting_runs_child_or_exits_1_when_fail_closed, .timeout = 60)
{
    const char *vars[] = {
        "DRAINPIPE_SHUTDOWN_BUDGET_MS=soon", "DRAINPIPE_SHUTDOWN_BUDGET_MS=0",
        "DD_ENHANCED_METRICS=maybe", "DD_DOGSTATSD_PORT=eighty"};
    const char *names[] = {"DRAINPIPE_SHUTDOWN_BUDGET_MS",
                           "DRAINPIPE_SHUTDOWN_BUDGET_MS",
                           "DD_ENHANCED_METRICS", "DD_DOGSTATSD_PORT"};
    for (int closed = 0; closed < 2; closed++) {
        for (int i = 0; i < 4; i++) {
            struct e2e e;
            e2e_init(&e);
            e2e_env(&e, "%s", vars[i]);
            if (closed)
                e2e_env(&e, "DRAINPIPE_FAIL_CLOSED=true");
            char marker[128];
            snprintf(marker, sizeof(marker), "%s/spawned", e.dir);
            const char *args[] = {e.child, "env", "PATH", marker,
                                  "exit",  "7",   NULL};
            int code = e2e_run(&e, args, 20000);
            char err[8192];
            e2e_read(e.errpath, err, sizeof(err));
            /* one line names the variable and says what it costs */
            const char *line = strstr(err, "serverless-init: error: ");
            cr_assert_not_null(line, "%s: stderr:\n%s", vars[i], err);
            size_t len = strcspn(line, "\n");
            char one[1024];
            snprintf(one, sizeof(one), "%.*s", (int)len, line);
            cr_assert_not_null(strstr(one, names[i]), "%s: %s", vars[i], one);
            if (closed) {
                cr_assert_eq(code, 1, "%s", vars[i]);
                cr_assert_not_null(strstr(one, "nothing was started"), "%s",
                                   one);
                cr_assert_neq(access(marker, F_OK), 0, "child ran with %s",
                              vars[i]);
            } else {
                cr_assert_eq(code, 7, "%s: stderr:\n%s", vars[i], err);
                cr_assert_not_null(strstr(one, "metrics are off for this run"),
                                   "%s", one);
                cr_assert_eq(access(marker, F_OK), 0, "child did not run");
                unlink(marker);
            }
            e2e_fini(&e);
        }
    }
}

Test(exit, help_and_version, .timeout = 30)
{
    struct e2e e;
    e2e_init(&e);
    const char *h[] = {"--help", NULL};
    cr_assert_eq(e2e_run(&e, h, 5000), 0);
    const char *v[] = {"--version", NULL};
    cr_assert_eq(e2e_run(&e, v, 5000), 0);
    e2e_fini(&e);
}

Test(signals, sigterm_reaches_child_and_last_metric_arrives, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    char ready[128];
    snprintf(ready, sizeof(ready), "%s/ready", e.dir);
    const char *args[] = {e.child, "udp", "e2e.first:1|c", "term-wait",
                          ready,   "udp", "e2e.last:7|g",  "exit",
                          "42",    NULL};
    pid_t pid = e2e_start(&e, args);
    if (!e2e_wait_file(ready, 10000))
        kill(pid, SIGKILL);
    cr_assert(access(ready, F_OK) == 0, "child never became ready");
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int code = e2e_wait(pid, 20000);
    char err[8192];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 42, "exit %d, stderr:\n%s", code, err);
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, "e2e.last", &sum, &last), 1);
    cr_assert_eq(last, 7);
    /* one point, or two when a 10 s bucket boundary fell between the
     * first datagram and the drain: the count's bucket, then a
     * zero-filled one (a live counter is sent as 0, spec §2.4). The sum
     * is exact either way. */
    double first_last;
    size_t n = e2e_delivered_points(ti, "e2e.first", &sum, &first_last);
    cr_assert(n == 1 || (n == 2 && first_last == 0), "%zu points, last %g", n,
              first_last);
    cr_assert_eq(sum, 0.1);
    unlink(ready);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(signals, other_signals_are_forwarded, .timeout = 60)
{
    /* SIGUSR1 is not handled by the child: it dies of it, 128 + 10 */
    struct e2e e;
    e2e_init(&e);
    char ready[128];
    snprintf(ready, sizeof(ready), "%s/ready", e.dir);
    const char *args[] = {e.child, "term-wait", ready, "exit", "0", NULL};
    pid_t pid = e2e_start(&e, args);
    if (!e2e_wait_file(ready, 10000))
        kill(pid, SIGKILL);
    cr_assert(access(ready, F_OK) == 0, "child never became ready");
    cr_assert_eq(kill(pid, SIGUSR1), 0);
    cr_assert_eq(e2e_wait(pid, 20000), 128 + SIGUSR1);
    unlink(ready);
    e2e_fini(&e);
}

static bool proc_gone(int pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d", pid);
    return access(path, F_OK) != 0;
}

Test(signals, orphans_reaped_without_stealing_child_status, .timeout = 60)
{
    struct e2e e;
    e2e_init(&e);
    char ready[128], pidfile[128];
    snprintf(ready, sizeof(ready), "%s/ready", e.dir);
    snprintf(pidfile, sizeof(pidfile), "%s/grandchild", e.dir);
    const char *args[] = {e.child, "orphan", pidfile, "term-wait",
                          ready,   "exit",   "3",     NULL};
    pid_t pid = e2e_start(&e, args);
    if (!e2e_wait_file(ready, 10000))
        kill(pid, SIGKILL);
    cr_assert(access(ready, F_OK) == 0, "child never became ready");
    char buf[64];
    e2e_read(pidfile, buf, sizeof(buf));
    int g = 0;
    for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
        g = g * 10 + (*p - '0');
    cr_assert_gt(g, 1);
    /* The grandchild exits after 100 ms, orphaned: the wrapper (subreaper)
     * must reap it while the main child is still running. A zombie stays
     * in /proc until reaped. */
    uint64_t end = e2e_now_ms() + 5000;
    while (!proc_gone(g) && e2e_now_ms() < end)
        e2e_sleep_ms(10);
    cr_assert(proc_gone(g), "grandchild %d was not reaped", g);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    cr_assert_eq(e2e_wait(pid, 20000), 3);
    unlink(ready);
    unlink(pidfile);
    e2e_fini(&e);
}

Test(signals, slow_child_shutdown_is_not_cut_by_budget, .timeout = 60)
{
    /* The budget starts at SIGTERM but the forced exit is armed only once
     * the child has exited: a child slower than the budget still has its
     * exit code and last metric honoured (the drain gets its floor). */
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DRAINPIPE_SHUTDOWN_BUDGET_MS=300");
    char ready[128];
    snprintf(ready, sizeof(ready), "%s/ready", e.dir);
    const char *args[] = {e.child, "term-wait",    ready,  "sleep", "800",
                          "udp",   "e2e.late:3|g", "exit", "6",     NULL};
    pid_t pid = e2e_start(&e, args);
    if (!e2e_wait_file(ready, 10000))
        kill(pid, SIGKILL);
    cr_assert(access(ready, F_OK) == 0, "child never became ready");
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int code = e2e_wait(pid, 20000);
    char err[8192];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 6, "exit %d, stderr:\n%s", code, err);
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, "e2e.late", &sum, &last), 1);
    cr_assert_eq(last, 3);
    unlink(ready);
    e2e_fini(&e);
    ti_stop(ti);
}
