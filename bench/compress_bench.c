/*
 * compress_bench.c - the CPU cost of compressing payloads, the change that
 * makes serverless-init send zstd level 1 instead of `none`: one flush of
 * N counter contexts with 5-20 tags each (the shape of the 100 000-context
 * sidecar test), serialized by the real aggregator with each compressor.
 * Prints, per compressor, the CPU time of the flush (getrusage
 * RUSAGE_SELF: the loop thread plus the libuv pool thread that
 * serializes), the payloads and bytes it made, and the CPU per context.
 *
 *   <build>/bin/bench_compress_bench [--contexts N] [--runs R]
 *
 * Defaults: 100000 contexts, 5 runs (median shown). A program, not a test.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "aggregator.h"

struct out {
    uint64_t payloads, raw, sent;
};

static void submit(void *data, struct fwd_payload *p)
{
    struct out *o = data;
    o->payloads++;
    o->raw += p->raw_len;
    o->sent += p->len;
    fwd_payload_free(p);
}

static double now_clock(void *data)
{
    (void)data;
    return 1764072003.0;
}

static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void done(void *data)
{
    *(int *)data = 1;
}

/* One flush of n contexts with compressor c; returns its CPU seconds. */
static double one_run(enum agg_compressor c, int n, struct out *o)
{
    uv_loop_t loop;
    struct agg_config cfg;
    struct agg *a;
    char name[64], tags[512];

    uv_loop_init(&loop);
    agg_config_defaults(&cfg);
    cfg.compressor = c;
    cfg.flush_incomplete_buckets = true;
    memset(o, 0, sizeof(*o));
    if (agg_create(&loop, &cfg, submit, o, &a) != 0) {
        fprintf(stderr, "agg_create failed\n");
        exit(1);
    }
    agg_set_clock(a, now_clock, NULL);
    for (int i = 0; i < n; i++) {
        int w = 0, nt = 5 + i % 16;
        snprintf(name, sizeof(name), "mem.c.%d", i);
        for (int t = 0; t < nt; t++)
            w += snprintf(tags + w, sizeof(tags) - (size_t)w, "%stag%d:v%d",
                          t ? "," : "", t, (i >> t) % 97);
        double v = 1;
        struct agg_metric m = {.name = cmn_slice_cstr(name),
                               .tags = cmn_slice(tags, (size_t)w),
                               .type = AGG_COUNTER,
                               .values = &v,
                               .nvalues = 1,
                               .rate = 1};
        if (agg_add_metric(a, &m) != 0) {
            fprintf(stderr, "sample refused\n");
            exit(1);
        }
    }
    int fin = 0;
    double t0 = cpu_s();
    if (agg_flush(a, true, done, &fin) != 0) {
        fprintf(stderr, "flush failed\n");
        exit(1);
    }
    while (!fin)
        uv_run(&loop, UV_RUN_ONCE);
    double t = cpu_s() - t0;
    agg_stop(a, CMN_NO_DEADLINE, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    agg_destroy(a);
    agg_config_free(&cfg);
    uv_loop_close(&loop);
    return t;
}

static int cmp_d(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

int main(int argc, char **argv)
{
    uint64_t un = 100000, ur = 5;
    int bad = 0;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--contexts") == 0)
            bad |= cmn_parse_u64(cmn_slice_cstr(argv[i + 1]), 10000000, &un);
        else if (strcmp(argv[i], "--runs") == 0)
            bad |= cmn_parse_u64(cmn_slice_cstr(argv[i + 1]), 99, &ur);
        else
            bad = 1;
    }
    int n = (int)un, runs = (int)ur;
    if (bad || n <= 0 || runs <= 0) {
        fprintf(stderr, "usage: %s [--contexts N] [--runs R]\n", argv[0]);
        return 2;
    }
    const struct {
        enum agg_compressor c;
        const char *name;
    } modes[] = {{AGG_COMPRESS_NONE, "none"},
                 {AGG_COMPRESS_ZSTD, "zstd-1"},
                 {AGG_COMPRESS_ZLIB, "zlib-6"}};
    for (size_t m = 0; m < 3; m++) {
        double t[99];
        struct out o;
        for (int r = 0; r < runs; r++)
            t[r] = one_run(modes[m].c, n, &o);
        qsort(t, (size_t)runs, sizeof(t[0]), cmp_d);
        double med = t[runs / 2];
        printf("compress mode=%s contexts=%d flush_cpu_ms=%.1f "
               "cpu_ns_per_context=%.0f payloads=%llu raw_bytes=%llu "
               "sent_bytes=%llu ratio=%.2f\n",
               modes[m].name, n, med * 1e3, med * 1e9 / n,
               (unsigned long long)o.payloads, (unsigned long long)o.raw,
               (unsigned long long)o.sent,
               o.sent ? (double)o.raw / (double)o.sent : 0.0);
    }
    return 0;
}
