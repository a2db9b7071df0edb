/*
 * cmn_time.c - clocks. Monotonic time for intervals and checkpoints, wall
 * time only for sample timestamps.
 */
#include "common.h"

#include <stdatomic.h>
#include <time.h>

static atomic_uint_fast64_t start_ns;

static uint64_t clock_ns(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t cmn_mono_ns(void)
{
    return clock_ns(CLOCK_MONOTONIC);
}

uint64_t cmn_wall_ns(void)
{
    return clock_ns(CLOCK_REALTIME);
}

void cmn_process_start_set(uint64_t mono_ns)
{
    atomic_store(&start_ns, mono_ns);
}

uint64_t cmn_process_start_ns(void)
{
    uint64_t s = atomic_load(&start_ns);
    if (s == 0) {
        uint_fast64_t expect = 0;
        uint64_t now = cmn_mono_ns();
        if (atomic_compare_exchange_strong(&start_ns, &expect, now))
            return now;
        return expect;
    }
    return s;
}
