/*
 * drain_bench.c - how long serverless-init takes to drain after its child
 * exits: the child sends 1000 distinct contexts (counters, in datagrams of
 * 25 lines) to DogStatsD and exits; we measure from the child's exit
 * (CLOCK_MONOTONIC, written by the child just before exit) to the moment
 * waitpid returns the wrapper, with the loopback test intake answering
 * 202. Also checks that all 1000 contexts reached the intake.
 *
 *   <build>/bin/bench_drain_bench [runs]      (default 50)
 *
 * DRAIN_BENCH_DEBUG=1 shows the wrapper's debug log (lifecycle
 * checkpoints of every stop step). DRAIN_BENCH_CHILD_MS=N makes the child
 * work N ms before it sends and exits (a job that runs a while): with 0,
 * the default, the drain also waits for the forwarder's one-time libcurl
 * load (~14 ms here), which a job that lives longer has already paid.
 *
 * The program is its own child ("child" as argv[1]). serverless-init is
 * looked up next to this binary (<build>/bin). A benchmark, not a test.
 */
#include <errno.h>
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#if __has_include("intake.h")
#include "intake.h"
#define HAVE_INTAKE 1
#endif

#define CONTEXTS 1000
#define LINES_PER_PACKET 25

extern char **environ;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int child(void)
{
    const char *port = getenv("DD_DOGSTATSD_PORT");
    const char *out = getenv("DRAIN_BENCH_EXIT_FILE");
    const char *work = getenv("DRAIN_BENCH_CHILD_MS");
    uint64_t p = 0, ms = 0;
    if (work != NULL && cmn_parse_u64(cmn_slice_cstr(work), 60000, &ms) == 0)
        usleep((useconds_t)(ms * 1000));
    if (port == NULL || out == NULL ||
        cmn_parse_u64(cmn_slice_cstr(port), 65535, &p) != 0)
        return 90;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)p);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    char buf[8192];
    for (int i = 0; i < CONTEXTS; i += LINES_PER_PACKET) {
        size_t n = 0;
        for (int k = i; k < i + LINES_PER_PACKET && k < CONTEXTS; k++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                                  "drain.bench.c%04d:1|c|#k:v\n", k);
        if (sendto(fd, buf, n, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
            return 91;
    }
    close(fd);
    FILE *f = fopen(out, "w");
    if (f == NULL)
        return 92;
    fprintf(f, "%llu\n", (unsigned long long)now_ns());
    fclose(f);
    return 0;
}

#ifdef HAVE_INTAKE
static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Distinct drain.bench.* series delivered. */
static size_t contexts_seen(struct ti *ti)
{
    size_t n = 0;
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        if (strcmp(r->path, "/api/v2/series") != 0)
            continue;
        Datadog__Agentpayload__MetricPayload *p = ti_decode_series(r);
        if (p == NULL)
            continue;
        for (size_t s = 0; s < p->n_series; s++)
            n += strncmp(p->series[s]->metric, "drain.bench.", 12) == 0;
        datadog__agentpayload__metric_payload__free_unpacked(p, NULL);
    }
    return n;
}

static int bench(int argc, char **argv)
{
    uint64_t runs = 50;
    if (argc > 1 && cmn_parse_u64(cmn_slice_cstr(argv[1]), 10000, &runs))
        return 2;
    char self[1024], bin[1100], exitfile[64];
    ssize_t l = readlink("/proc/self/exe", self, sizeof(self) - 1);
    if (l <= 0)
        return 2;
    self[l] = '\0';
    *strrchr(self, '/') = '\0';
    snprintf(bin, sizeof(bin), "%s/serverless-init", self);
    snprintf(exitfile, sizeof(exitfile), "/tmp/drain-bench-%d", (int)getpid());
    uint64_t *d = calloc(runs, sizeof(uint64_t));
    size_t bad = 0;
    for (uint64_t r = 0; r < runs; r++) {
        struct ti *ti;
        if (ti_start(&ti) != 0)
            return 3;
        char url[128], exitenv[128];
        snprintf(url, sizeof(url), "DD_DD_URL=%s", ti_url(ti));
        snprintf(exitenv, sizeof(exitenv), "DRAIN_BENCH_EXIT_FILE=%s",
                 exitfile);
        char workenv[64];
        const char *work = getenv("DRAIN_BENCH_CHILD_MS");
        snprintf(workenv, sizeof(workenv), "DRAIN_BENCH_CHILD_MS=%s",
                 work != NULL ? work : "0");
        char *env[] = {"PATH=/usr/bin:/bin",
                       "DD_API_KEY=bench",
                       url,
                       "DD_DOGSTATSD_PORT=__random__",
                       getenv("DRAIN_BENCH_DEBUG") ? "DD_LOG_LEVEL=debug"
                                                   : "DD_LOG_LEVEL=warn",
                       exitenv,
                       workenv,
                       NULL};
        char selfexe[1100];
        snprintf(selfexe, sizeof(selfexe), "%s/bench_drain_bench", self);
        char *args[] = {bin, selfexe, "child", NULL};
        pid_t pid;
        if (posix_spawn(&pid, bin, NULL, NULL, args, env) != 0)
            return 4;
        int st;
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
        uint64_t end = now_ns();
        char buf[64] = "";
        FILE *f = fopen(exitfile, "r");
        if (f == NULL || fgets(buf, sizeof(buf), f) == NULL)
            return 5;
        fclose(f);
        buf[strcspn(buf, "\n")] = '\0';
        uint64_t t_exit;
        if (cmn_parse_u64(cmn_slice_cstr(buf), UINT64_MAX, &t_exit) != 0)
            return 6;
        d[r] = end - t_exit;
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 ||
            contexts_seen(ti) != CONTEXTS)
            bad++;
        ti_stop(ti);
    }
    unlink(exitfile);
    qsort(d, runs, sizeof(*d), cmp_u64);
    printf("drain after child exit, %d contexts, %llu runs: median %.2f ms, "
           "p90 %.2f ms, min %.2f ms, max %.2f ms; runs with a missing "
           "context or bad exit: %zu\n",
           CONTEXTS, (unsigned long long)runs, d[runs / 2] / 1e6,
           d[runs * 9 / 10] / 1e6, d[0] / 1e6, d[runs - 1] / 1e6, bad);
    free(d);
    return bad == 0 ? 0 : 1;
}
#endif

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "child") == 0)
        return child();
#ifdef HAVE_INTAKE
    return bench(argc, argv);
#else
    fprintf(stderr, "drain_bench needs tests/support (DP_TESTS=ON)\n");
    return 2;
#endif
}
