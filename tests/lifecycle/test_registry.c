/*
 * test_registry.c - the component registry with small fake components on
 * a real loop: dependency order, rejected graphs, rollback, exact reverse
 * stop, abandonment, the overall deadline and checkpoints.
 *
 * Each fake appends what happens to it to one event log ("start:a,",
 * "stop:a,", "stopped:a,", "destroy:a,") so order is asserted exactly.
 */
#include <criterion/criterion.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "lifecycle.h"

static char evlog[4096];

static void ev(const char *what, const char *name)
{
    size_t n = strlen(evlog);
    snprintf(evlog + n, sizeof(evlog) - n, "%s:%s,", what, name);
}

enum stop_mode {
    STOP_SYNC,  /* reports from inside stop */
    STOP_ASYNC, /* reports from a timer's close callback after delay_ms */
};

struct fake {
    const char *name;
    int start_rc;
    enum stop_mode mode;
    uint64_t delay_ms;
    uv_loop_t *loop;
    uv_timer_t timer;
    lc_stopped_fn done;
    void *done_arg;
    bool destroyed;
    struct lc_manager *m; /* set: record the deadline given to stop */
    uint64_t remaining_at_stop;
};

static int fake_start(void *self)
{
    struct fake *f = self;
    ev("start", f->name);
    return f->start_rc;
}

static void fake_closed(uv_handle_t *h)
{
    struct fake *f = h->data;
    ev("stopped", f->name);
    f->done(f->done_arg);
}

static void fake_fire(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, fake_closed);
}

static void fake_stop(void *self, struct cmn_deadline dl, lc_stopped_fn done,
                      void *arg)
{
    struct fake *f = self;
    ev("stop", f->name);
    if (f->m != NULL)
        f->remaining_at_stop = cmn_deadline_remaining_ms(dl);
    f->done = done;
    f->done_arg = arg;
    if (f->mode == STOP_SYNC) {
        ev("stopped", f->name);
        done(arg);
        return;
    }
    uv_update_time(f->loop); /* count the delay from now */
    cr_assert_eq(uv_timer_init(f->loop, &f->timer), 0);
    f->timer.data = f;
    cr_assert_eq(uv_timer_start(&f->timer, fake_fire, f->delay_ms, 0), 0);
}

static void fake_destroy(void *self)
{
    struct fake *f = self;
    ev("destroy", f->name);
    f->destroyed = true;
}

static const struct lc_ops fake_ops = {fake_start, fake_stop, fake_destroy};

static void fake_init(struct fake *f, uv_loop_t *loop, const char *name,
                      enum stop_mode mode, uint64_t delay_ms)
{
    memset(f, 0, sizeof(*f));
    f->name = name;
    f->loop = loop;
    f->mode = mode;
    f->delay_ms = delay_ms;
}

struct done_rec {
    int calls;
    bool clean;
    uint64_t at_ns;
    char log_at_done[4096];
    struct lc_manager *destroy_m; /* destroy the manager from the cb */
};

static void on_done(void *arg, bool clean)
{
    struct done_rec *d = arg;
    d->calls++;
    d->clean = clean;
    d->at_ns = cmn_mono_ns();
    memcpy(d->log_at_done, evlog, sizeof(evlog));
    if (d->destroy_m != NULL)
        lc_destroy(d->destroy_m);
}

static const char *const NO_DEPS[] = {NULL};

static void setup(void)
{
    evlog[0] = '\0';
    cmn_log_set_level(CMN_LOG_DEBUG);
}

TestSuite(registry, .init = setup);

Test(registry, start_in_dependency_order_stop_in_reverse)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b, c, d;
    fake_init(&a, &loop, "a", STOP_SYNC, 0);
    fake_init(&b, &loop, "b", STOP_ASYNC, 1);
    fake_init(&c, &loop, "c", STOP_SYNC, 0);
    fake_init(&d, &loop, "d", STOP_ASYNC, 1);
    /* registered before their dependencies: forward references */
    const char *const c_deps[] = {"b", NULL};
    const char *const b_deps[] = {"a", NULL};
    cr_assert_eq(lc_register(m, "c", c_deps, &fake_ops, &c, 100), 0);
    cr_assert_eq(lc_register(m, "b", b_deps, &fake_ops, &b, 100), 0);
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 100), 0);
    cr_assert_eq(lc_register(m, "d", NO_DEPS, &fake_ops, &d, 100), 0);
    cr_assert_eq(lc_start_all(m), 0);
    cr_assert_str_eq(evlog, "start:a,start:b,start:c,start:d,");
    cr_assert(lc_is_running(m, "c"));
    cr_assert_not(lc_is_running(m, "zz"));

    struct done_rec done = {0};
    evlog[0] = '\0';
    lc_stop_all(m, CMN_NO_DEADLINE, on_done, &done);
    /* d stops asynchronously: nothing after it yet, and no report */
    cr_assert_str_eq(evlog, "stop:d,");
    cr_assert_eq(done.calls, 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert(done.clean);
    cr_assert_str_eq(evlog, "stop:d,stopped:d,stop:c,stopped:c,stop:b,"
                            "stopped:b,stop:a,stopped:a,");
    cr_assert_not(lc_is_running(m, "c"));
    evlog[0] = '\0';
    lc_destroy(m);
    /* reverse dependency order, not reverse registration order */
    cr_assert_str_eq(evlog, "destroy:d,destroy:c,destroy:b,destroy:a,");
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, cycles_and_duplicates_rejected_at_register)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b, c, x;
    fake_init(&a, &loop, "a", STOP_SYNC, 0);
    fake_init(&b, &loop, "b", STOP_SYNC, 0);
    fake_init(&c, &loop, "c", STOP_SYNC, 0);
    fake_init(&x, &loop, "x", STOP_SYNC, 0);
    const char *const self_dep[] = {"x", NULL};
    cr_assert_eq(lc_register(m, "x", self_dep, &fake_ops, &x, 0), UV_ELOOP);

    const char *const a_deps[] = {"b", NULL};
    const char *const b_deps[] = {"c", NULL};
    const char *const c_deps[] = {"a", NULL};
    cr_assert_eq(lc_register(m, "a", a_deps, &fake_ops, &a, 0), 0);
    cr_assert_eq(lc_register(m, "b", b_deps, &fake_ops, &b, 0), 0);
    /* c -> a -> b -> c */
    cr_assert_eq(lc_register(m, "c", c_deps, &fake_ops, &c, 0), UV_ELOOP);
    /* two-node cycle: c -> b -> c */
    const char *const c_deps2[] = {"b", NULL};
    cr_assert_eq(lc_register(m, "c", c_deps2, &fake_ops, &c, 0), UV_ELOOP);
    cr_assert_eq(lc_register(m, "c", NO_DEPS, &fake_ops, &c, 0), 0);
    const char *const x_deps[] = {"a", "c", NULL};
    cr_assert_eq(lc_register(m, "x", x_deps, &fake_ops, &x, 0), 0);
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 0), UV_EEXIST);
    cr_assert_eq(lc_register(m, "", NULL, &fake_ops, &a, 0), UV_EINVAL);
    cr_assert_eq(lc_register(m, "a-name-that-is-much-longer-than-31-bytes",
                             NULL, &fake_ops, &a, 0),
                 UV_EINVAL);

    cr_assert_eq(lc_start_all(m), 0);
    cr_assert_str_eq(evlog, "start:c,start:b,start:a,start:x,");
    struct done_rec done = {0};
    lc_stop_all(m, CMN_NO_DEADLINE, on_done, &done);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert_str_eq(evlog, "start:c,start:b,start:a,start:x,stop:x,stopped:x,"
                            "stop:a,stopped:a,stop:b,stopped:b,stop:c,"
                            "stopped:c,");
    lc_destroy(m);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, unknown_dependency_rejected_at_start)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b;
    fake_init(&a, &loop, "a", STOP_SYNC, 0);
    fake_init(&b, &loop, "b", STOP_SYNC, 0);
    const char *const b_deps[] = {"a", "nope", NULL};
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 0), 0);
    cr_assert_eq(lc_register(m, "b", b_deps, &fake_ops, &b, 0), 0);
    cr_assert_eq(lc_start_all(m), UV_ENOENT);
    cr_assert_str_eq(evlog, ""); /* nothing started */
    cr_assert_eq(lc_start_all(m), UV_EALREADY);
    lc_destroy(m);
    cr_assert_str_eq(evlog, "destroy:b,destroy:a,");
    cr_assert_eq(uv_loop_close(&loop), 0);
}

/* Captures fd 2 into a temporary file. */
static int stderr_begin(FILE **tmp)
{
    fflush(stderr);
    *tmp = tmpfile();
    cr_assert_not_null(*tmp);
    int saved = dup(2);
    cr_assert(saved >= 0);
    cr_assert(dup2(fileno(*tmp), 2) >= 0);
    return saved;
}

static void stderr_end(FILE *tmp, int saved, char *out, size_t outlen)
{
    fflush(stderr);
    cr_assert(dup2(saved, 2) >= 0);
    close(saved);
    rewind(tmp);
    size_t n = fread(out, 1, outlen - 1, tmp);
    out[n] = '\0';
    fclose(tmp);
}

Test(registry, failed_start_rolls_back_in_reverse)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b, c, d;
    fake_init(&a, &loop, "a", STOP_ASYNC, 1);
    fake_init(&b, &loop, "b", STOP_ASYNC, 5);
    fake_init(&c, &loop, "c", STOP_SYNC, 0);
    fake_init(&d, &loop, "d", STOP_SYNC, 0);
    c.start_rc = UV_EADDRINUSE;
    const char *const b_deps[] = {"a", NULL};
    const char *const c_deps[] = {"b", NULL};
    const char *const d_deps[] = {"c", NULL};
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 1000), 0);
    cr_assert_eq(lc_register(m, "b", b_deps, &fake_ops, &b, 1000), 0);
    cr_assert_eq(lc_register(m, "c", c_deps, &fake_ops, &c, 1000), 0);
    cr_assert_eq(lc_register(m, "d", d_deps, &fake_ops, &d, 1000), 0);

    FILE *tmp;
    int saved = stderr_begin(&tmp);
    int rc = lc_start_all(m);
    char err[4096];
    stderr_end(tmp, saved, err, sizeof(err));
    cr_assert_eq(rc, UV_EADDRINUSE);
    cr_assert_not_null(strstr(err, "component c failed to start: address "
                                   "already in use"),
                       "stderr was: %s", err);
    /* the rollback began at once with the last started one */
    cr_assert_str_eq(evlog, "start:a,start:b,start:c,stop:b,");

    struct done_rec done = {0};
    lc_stop_all(m, CMN_NO_DEADLINE, on_done, &done);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert_not(done.clean);
    cr_assert_str_eq(evlog, "start:a,start:b,start:c,stop:b,stopped:b,"
                            "stop:a,stopped:a,");
    const struct lc_checkpoint *cps;
    size_t n = lc_checkpoints(m, &cps);
    cr_assert_eq(n, 5);
    cr_assert_str_eq(cps[2].phase, "start-failed");
    cr_assert_str_eq(cps[2].name, "c");
    cr_assert_str_eq(cps[3].phase, "stop");
    cr_assert_str_eq(cps[3].name, "b");
    evlog[0] = '\0';
    lc_destroy(m);
    /* the failed one and the never-started one are destroyed too */
    cr_assert_str_eq(evlog, "destroy:d,destroy:c,destroy:b,destroy:a,");
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, destroy_during_rollback_is_deferred)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b;
    fake_init(&a, &loop, "a", STOP_ASYNC, 5);
    fake_init(&b, &loop, "b", STOP_SYNC, 0);
    b.start_rc = UV_EACCES;
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 1000), 0);
    cr_assert_eq(lc_register(m, "b", NULL, &fake_ops, &b, 1000), 0);
    cr_assert_eq(lc_start_all(m), UV_EACCES);
    lc_destroy(m); /* a is still stopping: must wait for it */
    cr_assert_str_eq(evlog, "start:a,start:b,stop:a,");
    cr_assert_not(a.destroyed);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_str_eq(evlog, "start:a,start:b,stop:a,stopped:a,destroy:b,"
                            "destroy:a,");
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, each_stop_waits_for_the_previous_report)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b, c;
    /* the slowest stops first: a naive parallel stop would finish a, b
     * before c */
    fake_init(&a, &loop, "a", STOP_ASYNC, 1);
    fake_init(&b, &loop, "b", STOP_ASYNC, 10);
    fake_init(&c, &loop, "c", STOP_ASYNC, 40);
    const char *const b_deps[] = {"a", NULL};
    const char *const c_deps[] = {"b", NULL};
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 1000), 0);
    cr_assert_eq(lc_register(m, "b", b_deps, &fake_ops, &b, 1000), 0);
    cr_assert_eq(lc_register(m, "c", c_deps, &fake_ops, &c, 1000), 0);
    cr_assert_eq(lc_start_all(m), 0);
    struct done_rec done = {0};
    evlog[0] = '\0';
    lc_stop_all(m, cmn_deadline_in_ms(5000), on_done, &done);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert(done.clean);
    cr_assert_str_eq(evlog, "stop:c,stopped:c,stop:b,stopped:b,stop:a,"
                            "stopped:a,");

    /* checkpoints: 3 starts then 3 stops, each stop's own cost at least its
     * delay, cumulative times never decreasing */
    const struct lc_checkpoint *cps;
    size_t n = lc_checkpoints(m, &cps);
    cr_assert_eq(n, 6);
    const char *phases[] = {"start", "start", "start", "stop", "stop", "stop"};
    const char *names[] = {"a", "b", "c", "c", "b", "a"};
    /* libuv timers count from the loop's cached time: allow 1 ms */
    uint64_t min_took[] = {0, 0, 0, 39000, 9000, 0};
    for (size_t i = 0; i < n; i++) {
        cr_assert_str_eq(cps[i].phase, phases[i]);
        cr_assert_str_eq(cps[i].name, names[i]);
        cr_assert_geq(cps[i].took_us, min_took[i], "%zu: %llu", i,
                      (unsigned long long)cps[i].took_us);
        if (i > 0)
            cr_assert_geq(cps[i].cumulative_us, cps[i - 1].cumulative_us);
    }
    cr_assert_gt(cps[5].cumulative_us, cps[2].cumulative_us);
    /* a stop that took ~40 ms moved the cumulative clock as much */
    cr_assert_geq(cps[3].cumulative_us - cps[2].cumulative_us, 39000);
    lc_destroy(m);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, never_reporting_component_is_abandoned_rest_still_stop)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b, c;
    fake_init(&a, &loop, "a", STOP_ASYNC, 1);
    fake_init(&b, &loop, "b", STOP_ASYNC, 400); /* far past its timeout */
    fake_init(&c, &loop, "c", STOP_ASYNC, 1);
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 1000), 0);
    cr_assert_eq(lc_register(m, "b", NULL, &fake_ops, &b, 50), 0);
    cr_assert_eq(lc_register(m, "c", NULL, &fake_ops, &c, 1000), 0);
    cr_assert_eq(lc_start_all(m), 0);
    struct done_rec done = {0};
    evlog[0] = '\0';
    uint64_t t0 = cmn_mono_ns();
    lc_stop_all(m, CMN_NO_DEADLINE, on_done, &done);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert_not(done.clean);
    /* when done fired, b had not reported, and a had stopped after it */
    cr_assert_str_eq(done.log_at_done,
                     "stop:c,stopped:c,stop:b,stop:a,stopped:a,");
    cr_assert_geq(done.at_ns - t0, 49 * 1000000ull);
    /* later b reported: recorded as a late stop, nothing freed under it */
    cr_assert_str_eq(evlog, "stop:c,stopped:c,stop:b,stop:a,stopped:a,"
                            "stopped:b,");
    const struct lc_checkpoint *cps;
    size_t n = lc_checkpoints(m, &cps);
    cr_assert_eq(n, 7);
    cr_assert_str_eq(cps[4].phase, "abandon");
    cr_assert_str_eq(cps[4].name, "b");
    cr_assert_geq(cps[4].took_us, 49000);
    cr_assert_str_eq(cps[5].phase, "stop");
    cr_assert_str_eq(cps[5].name, "a");
    cr_assert_str_eq(cps[6].phase, "late-stop");
    cr_assert_str_eq(cps[6].name, "b");
    lc_destroy(m);
    cr_assert(b.destroyed);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, abandoned_component_reporting_after_destroy)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b;
    fake_init(&a, &loop, "a", STOP_SYNC, 0);
    fake_init(&b, &loop, "b", STOP_ASYNC, 200);
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 0), 0);
    cr_assert_eq(lc_register(m, "b", NULL, &fake_ops, &b, 20), 0);
    cr_assert_eq(lc_start_all(m), 0);
    struct done_rec done = {0};
    done.destroy_m = m; /* destroy from inside the callback */
    evlog[0] = '\0';
    lc_stop_all(m, CMN_NO_DEADLINE, on_done, &done);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert_not(done.clean);
    cr_assert_str_eq(done.log_at_done, "stop:b,stop:a,stopped:a,");
    /* nothing was destroyed until b reported: then all, in reverse */
    cr_assert_str_eq(evlog, "stop:b,stop:a,stopped:a,stopped:b,destroy:b,"
                            "destroy:a,");
    cr_assert(b.destroyed);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, overall_deadline_holds)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b, c;
    fake_init(&a, &loop, "a", STOP_ASYNC, 300);
    fake_init(&b, &loop, "b", STOP_ASYNC, 300);
    fake_init(&c, &loop, "c", STOP_ASYNC, 300);
    /* no timeouts of their own: only the 80 ms deadline bounds them */
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 0), 0);
    cr_assert_eq(lc_register(m, "b", NULL, &fake_ops, &b, LC_NO_TIMEOUT), 0);
    cr_assert_eq(lc_register(m, "c", NULL, &fake_ops, &c, 0), 0);
    cr_assert_eq(lc_start_all(m), 0);
    struct done_rec done = {0};
    evlog[0] = '\0';
    uint64_t t0 = cmn_mono_ns();
    lc_stop_all(m, cmn_deadline_in_ms(80), on_done, &done);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert_not(done.clean);
    /* every one was asked to stop, none had reported when done fired: the
     * sequence ended on the deadline, not on the 300 ms reports */
    cr_assert_str_eq(done.log_at_done, "stop:c,stop:b,stop:a,");
    cr_assert_geq(done.at_ns - t0, 79 * 1000000ull);
    const struct lc_checkpoint *cps;
    size_t n = lc_checkpoints(m, &cps);
    cr_assert_eq(n, 9);
    for (size_t i = 3; i < 6; i++)
        cr_assert_str_eq(cps[i].phase, "abandon");
    for (size_t i = 6; i < 9; i++)
        cr_assert_str_eq(cps[i].phase, "late-stop");
    lc_destroy(m);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, remaining_time_is_min_of_timeout_and_deadline)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a, b;
    fake_init(&a, &loop, "a", STOP_SYNC, 0);
    fake_init(&b, &loop, "b", STOP_SYNC, 0);
    a.m = m;
    b.m = m;
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 5000), 0);
    cr_assert_eq(lc_register(m, "b", NULL, &fake_ops, &b, 300), 0);
    cr_assert_eq(lc_start_all(m), 0);
    struct done_rec done = {0};
    lc_stop_all(m, cmn_deadline_in_ms(1000), on_done, &done);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert(b.remaining_at_stop <= 300 && b.remaining_at_stop >= 250, "%llu",
              (unsigned long long)b.remaining_at_stop);
    cr_assert(a.remaining_at_stop <= 1000 && a.remaining_at_stop >= 900, "%llu",
              (unsigned long long)a.remaining_at_stop);
    lc_destroy(m);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, stop_callback_is_never_synchronous)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m;
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a;
    fake_init(&a, &loop, "a", STOP_SYNC, 0);
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 0), 0);
    cr_assert_eq(lc_start_all(m), 0);
    struct done_rec done = {0};
    lc_stop_all(m, cmn_deadline_in_ms(0), on_done, &done);
    cr_assert_eq(done.calls, 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(done.calls, 1);
    cr_assert(done.clean); /* reported inside stop: in time even at 0 ms */
    /* a second stop reports again, with nothing left to stop */
    struct done_rec again = {0};
    lc_stop_all(m, CMN_NO_DEADLINE, on_done, &again);
    cr_assert_eq(again.calls, 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(again.calls, 1);
    cr_assert_str_eq(evlog, "start:a,stop:a,stopped:a,");
    lc_destroy(m);
    cr_assert_eq(uv_loop_close(&loop), 0);
}

Test(registry, allocation_failures)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    struct lc_manager *m = NULL;
    cmn_alloc_fail_after(1);
    cr_assert_eq(lc_create(&loop, &m), UV_ENOMEM);
    cmn_alloc_fail_reset();
    cr_assert_eq(lc_create(&loop, &m), 0);
    struct fake a;
    fake_init(&a, &loop, "a", STOP_SYNC, 0);
    cmn_alloc_fail_after(1);
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 0), UV_ENOMEM);
    cmn_alloc_fail_reset();
    cr_assert_eq(lc_register(m, "a", NULL, &fake_ops, &a, 0), 0);
    lc_destroy(m);
    lc_destroy(NULL);
    cr_assert_str_eq(evlog, "destroy:a,");
    cr_assert_eq(uv_loop_close(&loop), 0);
}
