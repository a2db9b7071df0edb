/*
 * fwd_bench.c - forwarder benchmark against the loopback test intake
 * (tests/support/intake.h, running on its own thread).
 *
 *   1. throughput: payloads per second delivered (2 KiB bodies, default
 *      max_concurrent 10, one endpoint, one key);
 *   2. drain time: fwd_stop -> stop callback with N = 1, 10, 100 payloads
 *      queued at stop (wait_for_inflight on), median of --runs runs, on a
 *      cold forwarder (no connection yet) and a warm one (one payload
 *      delivered before, so the connection is in curl's pool);
 *   3. CPU of the loop thread (getrusage RUSAGE_THREAD; the intake runs on
 *      another thread) while submitting 20 payloads/s for --seconds.
 *
 * Usage: bench_fwd_bench [--runs N] [--seconds S] [--count N]
 * A program, not a test: nothing here asserts on time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "forwarder.h"
#include "intake.h"

#define BODY_LEN 2048

static unsigned char body_tpl[BODY_LEN];

static struct fwd_payload *mkpayload(void)
{
    unsigned char *b = cmn_malloc(BODY_LEN);
    if (b == NULL)
        abort();
    memcpy(b, body_tpl, BODY_LEN);
    struct fwd_payload *p = fwd_payload_new(FWD_KIND_SERIES, b, BODY_LEN);
    if (p == NULL)
        abort();
    return p;
}

static void cfg_for(struct fwd_config *cfg, const char *url)
{
    static char *keys[] = {"bench-api-key-00000000000000000000"};
    fwd_config_defaults(cfg);
    cfg->endpoints = cmn_calloc(1, sizeof(*cfg->endpoints));
    if (cfg->endpoints == NULL)
        abort();
    cfg->nendpoints = 1;
    cfg->endpoints[0].url = cmn_strdup(url);
    cfg->endpoints[0].keys = cmn_calloc(1, sizeof(char *));
    cfg->endpoints[0].keys[0] = cmn_secret_strndup(keys[0], strlen(keys[0]));
    cfg->endpoints[0].nkeys = 1;
    cfg->stop_wait_for_inflight = true;
    cfg->stop_timeout_s = 30;
}

struct waiter {
    struct fwd *f;
    uint64_t want;
};

static void wait_tick(uv_timer_t *t)
{
    struct waiter *w = t->data;
    struct fwd_stats st;
    fwd_get_stats(w->f, &st);
    if (st.delivered >= w->want)
        uv_stop(t->loop);
}

/* Runs the loop until `want` payloads are delivered (checked every 1 ms
 * by a timer: the check itself costs a little CPU). */
static void run_until_delivered(uv_loop_t *loop, struct fwd *f, uint64_t want)
{
    struct waiter w = {f, want};
    uv_timer_t t;
    uv_timer_init(loop, &t);
    t.data = &w;
    uv_timer_start(&t, wait_tick, 1, 1);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
}

static uint64_t stopped_at;

static void stopped_cb(void *data)
{
    stopped_at = cmn_mono_ns();
}

static void stop_fwd(uv_loop_t *loop, struct fwd *f)
{
    fwd_stop(f, cmn_deadline_in_ms(60000), stopped_cb, NULL);
    uv_run(loop, UV_RUN_DEFAULT);
    fwd_destroy(f);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double throughput(struct ti *ti, int count)
{
    uv_loop_t loop;
    struct fwd_config cfg;
    struct fwd *f;

    uv_loop_init(&loop);
    cfg_for(&cfg, ti_url(ti));
    cfg.retry_queue_max_bytes = (size_t)count * BODY_LEN * 2;
    if (fwd_create(&loop, &cfg, &f) != 0 || fwd_start(f) != 0)
        abort();
    uint64_t t0 = cmn_mono_ns();
    for (int i = 0; i < count; i++)
        (void)fwd_submit(f, mkpayload());
    run_until_delivered(&loop, f, (uint64_t)count);
    double s = (double)(cmn_mono_ns() - t0) / 1e9;
    stop_fwd(&loop, f);
    fwd_config_free(&cfg);
    uv_loop_close(&loop);
    return count / s;
}

/* One drain: returns ms from fwd_stop to the stop callback. */
static double drain_once(struct ti *ti, int n, bool warm)
{
    uv_loop_t loop;
    struct fwd_config cfg;
    struct fwd *f;
    struct fwd_stats st;

    uv_loop_init(&loop);
    cfg_for(&cfg, ti_url(ti));
    if (fwd_create(&loop, &cfg, &f) != 0 || fwd_start(f) != 0)
        abort();
    if (warm) {
        (void)fwd_submit(f, mkpayload());
        run_until_delivered(&loop, f, 1);
    }
    for (int i = 0; i < n; i++)
        (void)fwd_submit(f, mkpayload());
    uv_update_time(&loop);
    uint64_t t0 = cmn_mono_ns();
    fwd_stop(f, cmn_deadline_in_ms(60000), stopped_cb, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    fwd_get_stats(f, &st);
    if (st.delivered != (uint64_t)n + (warm ? 1 : 0))
        fprintf(stderr, "drain: only %llu delivered\n",
                (unsigned long long)st.delivered);
    fwd_destroy(f);
    fwd_config_free(&cfg);
    uv_loop_close(&loop);
    return (double)(stopped_at - t0) / 1e6;
}

static double drain_median(struct ti *ti, int n, bool warm, int runs)
{
    double v[64];
    if (runs > 64)
        runs = 64;
    for (int i = 0; i < runs; i++)
        v[i] = drain_once(ti, n, warm);
    qsort(v, (size_t)runs, sizeof(v[0]), cmp_double);
    return v[runs / 2];
}

struct ticker {
    struct fwd *f;
    int left;
};

static void tick_cb(uv_timer_t *t)
{
    struct ticker *k = t->data;
    (void)fwd_submit(k->f, mkpayload());
    if (--k->left == 0)
        uv_timer_stop(t);
}

static double thread_cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_THREAD, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

/* CPU% of the loop thread at `rate` payloads/s for `seconds`. */
static double cpu_at_rate(struct ti *ti, int rate, int seconds)
{
    uv_loop_t loop;
    struct fwd_config cfg;
    struct fwd *f;
    uv_timer_t t;
    struct ticker k;

    uv_loop_init(&loop);
    cfg_for(&cfg, ti_url(ti));
    if (fwd_create(&loop, &cfg, &f) != 0 || fwd_start(f) != 0)
        abort();
    k.f = f;
    k.left = rate * seconds;
    uv_timer_init(&loop, &t);
    t.data = &k;
    double c0 = thread_cpu_s();
    uint64_t t0 = cmn_mono_ns();
    uv_timer_start(&t, tick_cb, 1000 / (uint64_t)rate, 1000 / (uint64_t)rate);
    /* runs until the last tick; in-flight requests finish in the stop */
    while (k.left > 0)
        uv_run(&loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&t, NULL);
    stop_fwd(&loop, f);
    double cpu = thread_cpu_s() - c0;
    double wall = (double)(cmn_mono_ns() - t0) / 1e9;
    fwd_config_free(&cfg);
    uv_loop_close(&loop);
    return 100.0 * cpu / wall;
}

int main(int argc, char **argv)
{
    int runs = 9, seconds = 3, count = 2000;
    struct ti *ti;

    for (int i = 1; i + 1 < argc; i += 2) {
        int64_t v;
        if (cmn_parse_i64(cmn_slice_cstr(argv[i + 1]), &v) != 0 || v <= 0) {
            fprintf(stderr, "bad value for %s\n", argv[i]);
            return 2;
        }
        if (strcmp(argv[i], "--runs") == 0)
            runs = (int)v;
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = (int)v;
        else if (strcmp(argv[i], "--count") == 0)
            count = (int)v;
        else {
            fprintf(stderr,
                    "usage: %s [--runs N] [--seconds S] "
                    "[--count N]\n",
                    argv[0]);
            return 2;
        }
    }
    cmn_log_set_level(CMN_LOG_WARN);
    for (size_t i = 0; i < BODY_LEN; i++)
        body_tpl[i] = (unsigned char)(i * 31 + 7);
    if (ti_start(&ti) != 0) {
        fprintf(stderr, "cannot start the intake\n");
        return 1;
    }
    printf("forwarder benchmark: loopback intake %s, %d-byte payloads\n",
           ti_url(ti), BODY_LEN);
    printf("%-44s %12s\n", "measure", "value");
    printf("%-44s %9.0f /s\n", "throughput (payloads delivered)",
           throughput(ti, count));
    static const int ns[] = {1, 10, 100};
    for (int w = 0; w < 2; w++) {
        for (size_t i = 0; i < 3; i++) {
            char label[64];
            snprintf(label, sizeof(label),
                     "drain %3d queued, %s (median of %d)", ns[i],
                     w ? "warm" : "cold", runs);
            printf("%-44s %9.2f ms\n", label,
                   drain_median(ti, ns[i], w == 1, runs));
        }
    }
    printf("%-44s %9.2f %%\n", "loop CPU at 20 payloads/s (RUSAGE_THREAD)",
           cpu_at_rate(ti, 20, seconds));
    printf("(intake received %zu requests)\n", ti_request_count(ti));
    ti_stop(ti);
    return 0;
}
