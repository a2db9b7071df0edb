/*
 * hiccup.c - how long the machine stops a running thread: the bound under
 * every zero-loss figure of issue 7. A benchmark program, never a test.
 *
 *   bench_hiccup [--cpu N] [--other M] [--seconds S] [--windows W]
 *
 * Two threads, pinned to CPU N (0, the server's in bench_throughput) and
 * CPU M (1, the sender's), each read CLOCK_MONOTONIC in a tight loop for
 * W windows (10) of S seconds (3, one bench_throughput run). A gap
 * between two reads is time the thread did not run: an interrupt, the
 * kernel's own work, or on a virtual machine its virtual CPU stopped by
 * the host. A receive thread on CPU N cannot read its socket then, and
 * if CPU M ran on meanwhile, a sender there kept sending: a socket buffer
 * that holds less than such a gap loses datagrams whatever the receiver
 * does (a 212992-byte SO_RCVBUF holds about 1 ms of (a) at 15 M
 * lines/s). A gap of both CPUs at once stops the sender too.
 *
 * --nap-us U: the thread on CPU N naps instead, as the receive thread
 * does between batches on one CPU (dsd_dgram.c, DSD_NAP_FILL): ppoll for U
 * µs, at SCHED_FIFO 1 where permitted (the receive thread's priority),
 * over and over. A CPU with nothing else to run halts meanwhile, and on a
 * virtual machine the host restarts it. A "gap" is then a nap that ended
 * at least 0.1 ms late, and its length is the whole time from the nap's
 * start to the thread running again: the pause between two reads.
 *
 * One line a window: CPU N's gaps of at least 0.1, 0.5, 1 and 5 ms, how
 * many of those of 0.5 ms or more CPU M ran through (no gap of its own
 * overlapping), and the longest; then how many windows had such a gap
 * of at least 0.5 and 1 ms, and with --nap-us the naps taken.
 */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"

#define GAP_MIN_NS 100000u /* gaps shorter than this are not recorded */
#define GAP_CAP (1u << 16) /* gaps recorded per thread */

struct gap {
    uint64_t from, to;
};

struct prober {
    int cpu;
    uint64_t end;
    struct gap *gaps;
    size_t n, lost;
    uint64_t nap_ns, naps; /* nap_ns 0: reads the clock in a tight loop */
};

static void usage(void)
{
    fprintf(stderr, "usage: bench_hiccup [--cpu N] [--other M] [--seconds S] "
                    "[--windows W] [--nap-us U]\n");
    exit(2);
}

static uint64_t arg_u64(const char *v, uint64_t max)
{
    uint64_t x;
    if (cmn_parse_u64(cmn_slice(v, strlen(v)), max, &x) != 0)
        usage();
    return x;
}

static void *probe(void *arg)
{
    struct prober *p = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(p->cpu, &set);
    if (pthread_setaffinity_np(pthread_self(), sizeof(set), &set) != 0) {
        fprintf(stderr, "bench_hiccup: cannot pin to CPU %d\n", p->cpu);
        exit(1);
    }
    if (p->nap_ns > 0) {
        struct sched_param sp = {.sched_priority = 1};
        (void)pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp);
        struct timespec ts = {0, (long)p->nap_ns};
        for (uint64_t t0 = cmn_mono_ns(); t0 < p->end; p->naps++) {
            (void)ppoll(NULL, 0, &ts, NULL);
            uint64_t t = cmn_mono_ns();
            if (t - t0 >= p->nap_ns + GAP_MIN_NS) {
                if (p->n < GAP_CAP)
                    p->gaps[p->n++] = (struct gap){t0, t};
                else
                    p->lost++;
            }
            t0 = t;
        }
        return NULL;
    }
    uint64_t prev = cmn_mono_ns();
    while (prev < p->end) {
        uint64_t t = cmn_mono_ns();
        if (t - prev >= GAP_MIN_NS) {
            if (p->n < GAP_CAP)
                p->gaps[p->n++] = (struct gap){prev, t};
            else
                p->lost++;
        }
        prev = t;
    }
    return NULL;
}

/* Whether the other CPU had a gap overlapping [g->from, g->to). */
static bool overlapped(const struct gap *g, const struct prober *o)
{
    for (size_t i = 0; i < o->n; i++)
        if (o->gaps[i].from < g->to && o->gaps[i].to > g->from)
            return true;
    return false;
}

int main(int argc, char **argv)
{
    uint64_t cpu = 0, other = 1, seconds = 3, windows = 10, nap_us = 0;
    if (argc % 2 == 0)
        usage();
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--cpu") == 0)
            cpu = arg_u64(argv[i + 1], CPU_SETSIZE - 1);
        else if (strcmp(argv[i], "--other") == 0)
            other = arg_u64(argv[i + 1], CPU_SETSIZE - 1);
        else if (strcmp(argv[i], "--seconds") == 0)
            seconds = arg_u64(argv[i + 1], 3600);
        else if (strcmp(argv[i], "--windows") == 0)
            windows = arg_u64(argv[i + 1], 1000);
        else if (strcmp(argv[i], "--nap-us") == 0)
            nap_us = arg_u64(argv[i + 1], 999999);
        else
            usage();
    }
    uint64_t t0 = cmn_mono_ns(), win = seconds * 1000000000u;
    struct prober p[2] = {
        {(int)cpu, t0 + windows * win, NULL, 0, 0, nap_us * 1000u, 0},
        {(int)other, t0 + windows * win, NULL, 0, 0, 0, 0}};
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        p[k].gaps = cmn_calloc(GAP_CAP, sizeof(struct gap));
        if (p[k].gaps == NULL ||
            pthread_create(&th[k], NULL, probe, &p[k]) != 0) {
            fprintf(stderr, "bench_hiccup: out of resources\n");
            return 1;
        }
    }
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);

    static const uint64_t lim[4] = {100000, 500000, 1000000, 5000000};
    uint64_t w_half = 0, w_one = 0;
    size_t i = 0;
    for (uint64_t w = 0; w < windows; w++) {
        uint64_t n[4] = {0}, alone = 0, longest = 0, longest_alone = 0;
        for (; i < p[0].n && p[0].gaps[i].from < t0 + (w + 1) * win; i++) {
            const struct gap *g = &p[0].gaps[i];
            uint64_t len = g->to - g->from;
            for (int k = 0; k < 4; k++)
                n[k] += len >= lim[k];
            if (len > longest)
                longest = len;
            if (len >= lim[1] && !overlapped(g, &p[1])) {
                alone++;
                if (len > longest_alone)
                    longest_alone = len;
            }
        }
        w_half += longest_alone >= lim[1];
        w_one += longest_alone >= lim[2];
        printf("hiccup cpu=%llu window=%llu gaps_0.1ms=%llu gaps_0.5ms=%llu "
               "gaps_1ms=%llu gaps_5ms=%llu longest_ms=%.3f "
               "other_ran_through=%llu longest_alone_ms=%.3f\n",
               (unsigned long long)cpu, (unsigned long long)w,
               (unsigned long long)n[0], (unsigned long long)n[1],
               (unsigned long long)n[2], (unsigned long long)n[3],
               (double)longest / 1e6, (unsigned long long)alone,
               (double)longest_alone / 1e6);
    }
    printf("hiccup windows=%llu seconds=%llu other=%llu "
           "windows_alone_0.5ms=%llu windows_alone_1ms=%llu unrecorded=%zu "
           "nap_us=%llu naps=%llu\n",
           (unsigned long long)windows, (unsigned long long)seconds,
           (unsigned long long)other, (unsigned long long)w_half,
           (unsigned long long)w_one, p[0].lost + p[1].lost,
           (unsigned long long)nap_us, (unsigned long long)p[0].naps);
    cmn_free(p[0].gaps);
    cmn_free(p[1].gaps);
    return 0;
}
