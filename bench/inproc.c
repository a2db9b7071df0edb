/*
 * inproc.c - libdrainpipe benchmarks (figures in docs/libdrainpipe.md):
 *
 *   bench_inproc rate [--lines N] [--batch B] [--contexts C]
 *       lines/s through the pipeline, end to end (submitted, parsed and
 *       aggregated: the clock stops when dp_flush returns), for three
 *       paths in turn: dp_submit with B lines per call, dp_count per line,
 *       and UDP datagrams of B lines to the pipeline's own listener. Run it
 *       under `taskset -c 0` for "one core". The UDP row also gives the
 *       lines lost (kernel drops).
 *   bench_inproc flush [--contexts C] [--rounds R]
 *       dp_flush latency with C gauge contexts per round and the loopback
 *       test intake (zstd payloads, as by default): median, p90, max.
 *   bench_inproc rss
 *       VmRSS before dp_start and after it, idle 1 s (in-process only,
 *       local sink): the library's idle cost on top of the host's.
 *
 * A program, not a test: it asserts nothing about time.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common.h"
#include "drainpipe.h"
#include "intake.h"

static size_t opt(int argc, char **argv, const char *name, size_t def)
{
    for (int i = 2; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0) {
            uint64_t v;
            if (cmn_parse_u64(cmn_slice_cstr(argv[i + 1]), UINT32_MAX, &v) == 0)
                return (size_t)v;
        }
    return def;
}

static dp_pipeline *start(const char *port, const char *url)
{
    dp_config *c;
    dp_pipeline *p;
    if (dp_config_new(&c) != 0)
        exit(1);
    int rc = dp_config_set(c, "dogstatsd_port", port);
    rc |= dp_config_set(c, "bind_host", "127.0.0.1");
    rc |= dp_config_set(c, "log_level", "warn");
    if (url != NULL) {
        rc |= dp_config_set(c, "api_key", "k");
        rc |= dp_config_set(c, "dd_url", url);
    } else {
        rc |= dp_config_set(c, "drainpipe_local_file", "/dev/null");
    }
    if (rc != 0 || dp_start(c, &p) != 0) {
        fprintf(stderr, "bench_inproc: cannot start\n");
        exit(1);
    }
    dp_config_free(c);
    return p;
}

/* B lines "bench.c<i>:1|c\n" over C contexts, from line `first`. */
static size_t fill(char *buf, size_t cap, size_t first, size_t b, size_t c)
{
    size_t off = 0;
    for (size_t i = 0; i < b; i++) {
        int n =
            snprintf(buf + off, cap - off, "bench.c%zu:1|c\n", (first + i) % c);
        off += (size_t)n;
    }
    return off;
}

static int free_udp_port(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        exit(1);
    close(fd);
    return ntohs(sa.sin_port);
}

enum path { P_TEXT, P_TYPED, P_UDP };

static void rate_one(enum path path, size_t lines, size_t b, size_t c)
{
    static const char *const names[] = {"dp_submit", "dp_count", "udp"};
    char port[16] = "0";
    int udp_fd = -1;
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (path == P_UDP) {
        int pn = free_udp_port();
        snprintf(port, sizeof(port), "%d", pn);
        sa.sin_port = htons((uint16_t)pn);
        udp_fd = socket(AF_INET, SOCK_DGRAM, 0);
    }
    dp_pipeline *p = start(port, NULL);
    /* the packets are built before the clock starts */
    size_t npk = 1024, per = path == P_TYPED ? 1 : b;
    char(*pk)[2048] = calloc(npk, 2048);
    size_t *pklen = calloc(npk, sizeof(size_t));
    char(*names_c)[32] = calloc(c, 32);
    for (size_t i = 0; i < npk; i++)
        pklen[i] = fill(pk[i], 2048, i * per, per, c);
    for (size_t i = 0; i < c; i++)
        snprintf(names_c[i], 32, "bench.c%zu", i);
    uint64_t full = 0, t0 = cmn_mono_ns();
    for (size_t sent = 0, i = 0; sent < lines; sent += per, i++) {
        const char *buf = pk[i % npk];
        size_t len = pklen[i % npk];
        if (path == P_UDP) {
            if (sendto(udp_fd, buf, len, 0, (struct sockaddr *)&sa,
                       sizeof(sa)) < 0)
                full++;
            continue;
        }
        int rc;
        while ((rc = path == P_TEXT ? dp_submit(p, buf, len)
                                    : dp_count(p, names_c[sent % c], 1, NULL, 0,
                                               1)) == DP_EFULL) {
            full++;
            sched_yield();
        }
    }
    int frc = dp_flush(p, DP_WAIT_FOREVER);
    uint64_t t1 = cmn_mono_ns();
    struct dp_stats st;
    (void)dp_stats(p, &st, sizeof(st));
    double s = (double)(t1 - t0) / 1e9;
    printf("%-9s lines=%zu per_call=%zu parsed=%llu elapsed_s=%.3f "
           "rate_lps=%.0f queue_full_retries=%llu kernel_drops=%llu "
           "flush=%s\n",
           names[path], lines, per, (unsigned long long)st.metric_lines, s,
           (double)st.metric_lines / s, (unsigned long long)full,
           (unsigned long long)st.kernel_drops, dp_strerror(frc));
    (void)dp_stop(p, 2000, NULL, 0);
    if (udp_fd >= 0)
        close(udp_fd);
    free(pk);
    free(pklen);
    free(names_c);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static void flush_latency(size_t c, size_t rounds)
{
    struct ti *ti;
    if (ti_start(&ti) != 0)
        exit(1);
    dp_pipeline *p = start("0", ti_url(ti));
    uint64_t *lat = calloc(rounds, sizeof(*lat));
    char line[64];
    (void)dp_flush(p, DP_WAIT_FOREVER); /* warm: libcurl loaded, connected */
    for (size_t r = 0; r < rounds; r++) {
        for (size_t i = 0; i < c; i++) {
            int n = snprintf(line, sizeof(line), "bench.g%zu:%zu|g\n", i, r);
            while (dp_submit(p, line, (size_t)n) == DP_EFULL)
                sched_yield();
        }
        uint64_t t0 = cmn_mono_ns();
        if (dp_flush(p, 10000) != 0)
            fprintf(stderr, "flush %zu timed out\n", r);
        lat[r] = cmn_mono_ns() - t0;
    }
    qsort(lat, rounds, sizeof(*lat), cmp_u64);
    printf("dp_flush contexts=%zu rounds=%zu median_ms=%.3f p90_ms=%.3f "
           "max_ms=%.3f requests=%zu\n",
           c, rounds, (double)lat[rounds / 2] / 1e6,
           (double)lat[rounds * 9 / 10] / 1e6, (double)lat[rounds - 1] / 1e6,
           ti_request_count(ti));
    (void)dp_stop(p, 2000, NULL, 0);
    free(lat);
    ti_stop(ti);
}

static long vm_rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char l[256];
    long kib = -1;
    while (f != NULL && fgets(l, sizeof(l), f) != NULL)
        if (strncmp(l, "VmRSS:", 6) == 0) {
            uint64_t v;
            char *s = l + 6, *e;
            while (*s == ' ' || *s == '\t')
                s++;
            for (e = s; *e >= '0' && *e <= '9'; e++)
                ;
            if (cmn_parse_u64(cmn_slice(s, (size_t)(e - s)), UINT32_MAX, &v) ==
                0)
                kib = (long)v;
        }
    if (f != NULL)
        fclose(f);
    return kib;
}

static void rss(void)
{
    long before = vm_rss_kib();
    dp_pipeline *p = start("0", NULL);
    usleep(1000 * 1000);
    long idle = vm_rss_kib();
    (void)dp_stop(p, 2000, NULL, 0);
    printf("rss before_kib=%ld idle_kib=%ld growth_kib=%ld\n", before, idle,
           idle - before);
}

int main(int argc, char **argv)
{
    const char *mode = argc > 1 ? argv[1] : "rate";
    size_t c = opt(argc, argv, "--contexts", 1000);
    if (strcmp(mode, "rate") == 0) {
        size_t lines = opt(argc, argv, "--lines", 2000000);
        size_t b = opt(argc, argv, "--batch", 1);
        if (b == 0 || b > 80)
            b = 1;
        rate_one(P_TEXT, lines, b, c);
        rate_one(P_TYPED, lines, b, c);
        rate_one(P_UDP, lines, b, c);
    } else if (strcmp(mode, "flush") == 0) {
        flush_latency(c, opt(argc, argv, "--rounds", 50));
    } else if (strcmp(mode, "rss") == 0) {
        rss();
    } else {
        fprintf(stderr, "usage: bench_inproc rate|flush|rss [options]\n");
        return 2;
    }
    return 0;
}
