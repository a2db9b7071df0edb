/*
 * coldstart.c - what serverless-init costs a short job (issue 13's table).
 * A benchmark program, never a timed test. Run it through
 * bench/coldstart.sh, which builds the two helpers it needs with cc -O2:
 *
 *   bench_coldstart SINIT MINWRAP STAMP [RUNS [BASE]]
 *
 * SINIT is serverless-init; MINWRAP is a minimal wrapper (posix_spawn +
 * waitpid, nothing else: the floor any wrapper pays, one more exec);
 * STAMP is the child: it reads CLOCK_MONOTONIC first thing in main and
 * appends (now - $BENCH_T0) to $BENCH_OUT, then exits 0.
 *
 * Each round runs, in its own random order (interleaved, so that a slow
 * phase of the machine hits every variant alike): the child directly, the
 * minimal wrapper, serverless-init without an API key (local sink), and
 * serverless-init with an API key and a live loopback intake (the real
 * HTTP intake of tests/support, decoding what it gets). For each run:
 * readiness (the driver's clock just before posix_spawn -> the child's
 * main), wall time to the driver's wait4, CPU (user + system of the
 * process tree, from wait4) and peak RSS (ru_maxrss). Medians are printed
 * raw and beyond the floor (minus the minimal wrapper); CPU beyond the
 * child's own.
 *
 * BASE, another serverless-init (an earlier build), adds its two variants
 * to the same interleaved rounds, and the differences of the medians
 * (this build minus BASE) are printed: on a shared, noisy machine that is
 * the only fair comparison of two builds.
 *
 * Then one run of each serverless-init variant with BENCH_MAPS set: the
 * child lists the shared objects mapped in its parent (the wrapper) at
 * its start and again after BENCH_SLEEP_MS (500 ms), just before it exits.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#include "intake.h"

#define NVAR 6
#define MAX_RUNS 1000
#define MAX_ENV 16

enum { V_DIRECT, V_MIN, V_NOKEY, V_KEY, V_BASE_NOKEY, V_BASE_KEY };
static const char *const vname[NVAR] = {
    "direct child",          "minimal wrapper",
    "drainpipe, no API key", "drainpipe, API key + intake",
    "BASE, no API key",      "BASE, API key + intake"};

struct sample {
    double ready_us, wall_us, cpu_us, rss_kib;
};

static struct sample s[NVAR][MAX_RUNS];

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(int v, size_t off, int n)
{
    double tmp[MAX_RUNS];
    for (int i = 0; i < n; i++)
        tmp[i] = *(const double *)((const char *)&s[v][i] + off);
    qsort(tmp, (size_t)n, sizeof(double), cmp_d);
    return n % 2 ? tmp[n / 2] : (tmp[n / 2 - 1] + tmp[n / 2]) / 2;
}

/* Last number in the file (the child's stamp), -1 if none. */
static double last_stamp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    char line[64];
    double v = -1;
    while (fgets(line, sizeof(line), f) != NULL) {
        uint64_t ns;
        if (cmn_parse_u64(cmn_slice(line, strcspn(line, "\n")), UINT64_MAX,
                          &ns) == 0)
            v = (double)ns;
    }
    fclose(f);
    return v;
}

struct ctx {
    const char *sinit, *minwrap, *stamp, *base;
    char url[128];
    char out[64];
    char *base_env[MAX_ENV];
    int nbase;
};

/* One run of variant v; fills *r. maps: the BENCH_MAPS file or NULL. */
static int run_one(struct ctx *c, int v, struct sample *r, const char *maps)
{
    char *argv[4];
    int n = 0;
    if (v == V_MIN)
        argv[n++] = (char *)c->minwrap;
    else if (v == V_BASE_NOKEY || v == V_BASE_KEY)
        argv[n++] = (char *)c->base;
    else if (v != V_DIRECT)
        argv[n++] = (char *)c->sinit;
    argv[n++] = (char *)c->stamp;
    argv[n] = NULL;
    char *env[MAX_ENV + 8];
    int ne = 0;
    for (int i = 0; i < c->nbase; i++)
        env[ne++] = c->base_env[i];
    char key[] = "DD_API_KEY=bench";
    char url[160], t0s[64], out[96], mp[128];
    if (v == V_KEY || v == V_BASE_KEY) {
        env[ne++] = key;
        snprintf(url, sizeof(url), "DD_DD_URL=%s", c->url);
        env[ne++] = url;
    }
    snprintf(out, sizeof(out), "BENCH_OUT=%s", c->out);
    env[ne++] = out;
    if (maps != NULL) {
        snprintf(mp, sizeof(mp), "BENCH_MAPS=%s", maps);
        env[ne++] = mp;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
    uint64_t t0 = mono_ns();
    snprintf(t0s, sizeof(t0s), "BENCH_T0=%llu", (unsigned long long)t0);
    env[ne++] = t0s;
    env[ne] = NULL;
    pid_t pid;
    int err = posix_spawn(&pid, argv[0], &fa, NULL, argv, env);
    posix_spawn_file_actions_destroy(&fa);
    if (err != 0) {
        fprintf(stderr, "posix_spawn %s: %s\n", argv[0], strerror(err));
        return -1;
    }
    int st;
    struct rusage ru;
    while (wait4(pid, &st, 0, &ru) < 0 && errno == EINTR)
        ;
    uint64_t t1 = mono_ns();
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s: exit status %d\n", vname[v], st);
        return -1;
    }
    r->ready_us = last_stamp(c->out) / 1e3;
    r->wall_us = (double)(t1 - t0) / 1e3;
    r->cpu_us = (double)ru.ru_utime.tv_sec * 1e6 + (double)ru.ru_utime.tv_usec +
                (double)ru.ru_stime.tv_sec * 1e6 + (double)ru.ru_stime.tv_usec;
    r->rss_kib = (double)ru.ru_maxrss;
    return 0;
}

static void print_maps(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL) {
        printf("    (none recorded)\n");
        return;
    }
    char line[512];
    while (fgets(line, sizeof(line), f) != NULL)
        printf("    %s", line);
    fclose(f);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: %s SINIT MINWRAP STAMP [RUNS [BASE]]\n",
                argv[0]);
        return 2;
    }
    struct ctx c;
    memset(&c, 0, sizeof(c));
    c.sinit = argv[1];
    c.minwrap = argv[2];
    c.stamp = argv[3];
    uint64_t nruns = 40;
    if (argc > 4 &&
        (cmn_parse_u64(cmn_slice_cstr(argv[4]), MAX_RUNS, &nruns) != 0 ||
         nruns == 0)) {
        fprintf(stderr, "RUNS: 1 to %d\n", MAX_RUNS);
        return 2;
    }
    int runs = (int)nruns;
    c.base = argc > 5 ? argv[5] : NULL;
    int nvar = c.base != NULL ? NVAR : V_BASE_NOKEY;
    snprintf(c.out, sizeof(c.out), "/tmp/coldstart-%d.out", (int)getpid());
    c.base_env[c.nbase++] = "PATH=/usr/bin:/bin";
    c.base_env[c.nbase++] = "DD_DOGSTATSD_PORT=__random__";
    c.base_env[c.nbase++] = "DD_LOG_LEVEL=error";
    static char lib[300];
    if (getenv("DRAINPIPE_LIBCURL") != NULL) { /* compare libcurl builds */
        snprintf(lib, sizeof(lib), "DRAINPIPE_LIBCURL=%s",
                 getenv("DRAINPIPE_LIBCURL"));
        c.base_env[c.nbase++] = lib;
    }

    struct ti *ti;
    if (ti_start(&ti) != 0) {
        fprintf(stderr, "cannot start the intake\n");
        return 1;
    }
    snprintf(c.url, sizeof(c.url), "%s", ti_url(ti));

    struct sample warm;
    for (int v = 0; v < nvar; v++) /* page cache, first-use costs */
        if (run_one(&c, v, &warm, NULL) != 0)
            return 1;
    /* each round in its own random order: a variant never always follows
     * the same one (a run with the intake leaves the intake's decoding
     * behind it, which would always land on the same successor) */
    uint64_t rng = mono_ns() | 1;
    for (int i = 0; i < runs; i++) {
        int order[NVAR];
        for (int k = 0; k < nvar; k++)
            order[k] = k;
        for (int k = nvar - 1; k > 0; k--) {
            rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
            int j = (int)(rng % (uint64_t)(k + 1)), tmp = order[k];
            order[k] = order[j];
            order[j] = tmp;
        }
        for (int k = 0; k < nvar; k++) {
            int v = order[k];
            if (run_one(&c, v, &s[v][i], NULL) != 0)
                return 1;
        }
    }
    unlink(c.out);

    double ready[NVAR], wall[NVAR], cpu[NVAR], rss[NVAR];
    for (int v = 0; v < nvar; v++) {
        ready[v] = median(v, offsetof(struct sample, ready_us), runs);
        wall[v] = median(v, offsetof(struct sample, wall_us), runs);
        cpu[v] = median(v, offsetof(struct sample, cpu_us), runs);
        rss[v] = median(v, offsetof(struct sample, rss_kib), runs);
    }
    printf("medians of %d interleaved runs (ms; RSS in MiB)\n", runs);
    printf("%-30s %10s %10s %10s %10s\n", "", "readiness", "wall", "CPU",
           "peak RSS");
    for (int v = 0; v < nvar; v++)
        printf("%-30s %10.3f %10.3f %10.3f %10.2f\n", vname[v], ready[v] / 1e3,
               wall[v] / 1e3, cpu[v] / 1e3, rss[v] / 1024);
    printf("\nissue 13 table (raw = minus the direct child; beyond the "
           "floor = minus the minimal wrapper)\n");
    printf("  readiness, no API key:   +%.3f ms raw, +%.3f ms beyond the "
           "floor\n",
           (ready[V_NOKEY] - ready[V_DIRECT]) / 1e3,
           (ready[V_NOKEY] - ready[V_MIN]) / 1e3);
    printf("  readiness, API key:      +%.3f ms raw, +%.3f ms beyond the "
           "floor\n",
           (ready[V_KEY] - ready[V_DIRECT]) / 1e3,
           (ready[V_KEY] - ready[V_MIN]) / 1e3);
    printf("  wall, no API key:        +%.3f ms raw, +%.3f ms beyond the "
           "floor\n",
           (wall[V_NOKEY] - wall[V_DIRECT]) / 1e3,
           (wall[V_NOKEY] - wall[V_MIN]) / 1e3);
    printf("  wall, API key + intake:  +%.3f ms raw, +%.3f ms beyond the "
           "floor; CPU +%.3f ms beyond the child's\n",
           (wall[V_KEY] - wall[V_DIRECT]) / 1e3,
           (wall[V_KEY] - wall[V_MIN]) / 1e3,
           (cpu[V_KEY] - cpu[V_DIRECT]) / 1e3);
    printf("  peak RSS: %.2f MiB with the intake, %.2f MiB without an API "
           "key (minimal wrapper %.2f MiB)\n",
           rss[V_KEY] / 1024, rss[V_NOKEY] / 1024, rss[V_MIN] / 1024);
    printf("  intake received %zu requests\n", ti_request_count(ti));
    if (c.base != NULL)
        for (int v = V_NOKEY; v <= V_KEY; v++) {
            int b = v == V_NOKEY ? V_BASE_NOKEY : V_BASE_KEY;
            printf("  this build minus BASE, %s: readiness %+.3f ms, wall "
                   "%+.3f ms, CPU %+.3f ms, peak RSS %+.2f MiB\n",
                   v == V_NOKEY ? "no API key" : "API key + intake",
                   (ready[v] - ready[b]) / 1e3, (wall[v] - wall[b]) / 1e3,
                   (cpu[v] - cpu[b]) / 1e3, (rss[v] - rss[b]) / 1024);
        }

    char maps[64];
    snprintf(maps, sizeof(maps), "/tmp/coldstart-%d.maps", (int)getpid());
    for (int v = V_NOKEY; v <= V_KEY; v++) {
        unlink(maps);
        struct sample r;
        if (run_one(&c, v, &r, maps) != 0)
            return 1;
        printf("\nshared objects mapped in serverless-init (%s):\n", vname[v]);
        print_maps(maps);
    }
    unlink(maps);
    unlink(c.out);
    ti_stop(ti);
    return 0;
}
