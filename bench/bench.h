/*
 * bench.h - what the benchmark programs share (header only: each C file
 * in bench/ is a program of its own).
 */
#ifndef DRAINPIPE_BENCH_H
#define DRAINPIPE_BENCH_H

#include <sched.h>
#include <stdio.h>

/* Pins the calling thread to cpu; -1 leaves it unpinned. A failure is
 * reported and the benchmark goes on unpinned. */
static inline void bench_pin_cpu(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof(set), &set) != 0)
        perror("sched_setaffinity (continuing unpinned)");
}

#endif
