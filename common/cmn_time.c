/*
 * cmn_time.c - clocks. Monotonic time for intervals and checkpoints, wall
 * time only for sample timestamps. Also per-process random seeds, whose
 * fallback is made of clocks.
 */
#include "common.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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

uint64_t cmn_thread_cpu_ns(void)
{
    return clock_ns(CLOCK_THREAD_CPUTIME_ID);
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

struct cmn_deadline cmn_deadline_in_ms(uint64_t ms)
{
    uint64_t now = cmn_mono_ns();

    if (ms > (UINT64_MAX - now) / 1000000u)
        return CMN_NO_DEADLINE; /* past the clock's range: unbounded */
    return (struct cmn_deadline){now + ms * 1000000u};
}

struct cmn_deadline cmn_deadline_min(struct cmn_deadline a,
                                     struct cmn_deadline b)
{
    return a.at_ns <= b.at_ns ? a : b;
}

uint64_t cmn_deadline_remaining_ns(struct cmn_deadline d)
{
    uint64_t now;

    if (d.at_ns == UINT64_MAX)
        return UINT64_MAX;
    now = cmn_mono_ns();
    return d.at_ns > now ? d.at_ns - now : 0;
}

uint64_t cmn_deadline_remaining_ms(struct cmn_deadline d)
{
    uint64_t ns = cmn_deadline_remaining_ns(d);

    /* rounded up: a timer armed with it never fires before the deadline */
    return ns == UINT64_MAX ? UINT64_MAX : (ns + 999999u) / 1000000u;
}

bool cmn_deadline_expired(struct cmn_deadline d)
{
    return cmn_deadline_remaining_ns(d) == 0;
}

/* splitmix64: spreads the fallback's low-entropy inputs over 64 bits. */
static uint64_t mix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

int cmn_random_bytes(void *buf, size_t n)
{
    unsigned char *p = buf;
    size_t got = 0;
    while (got < n) {
        ssize_t r = getrandom(p + got, n - got, GRND_NONBLOCK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    if (got == n)
        return 0;
    uint64_t x = cmn_mono_ns() ^ mix64(cmn_wall_ns()) ^
                 mix64((uint64_t)getpid()) ^ mix64((uint64_t)(uintptr_t)buf);
    for (size_t i = 0; i < n; i += 8) {
        x = mix64(x);
        size_t k = n - i < 8 ? n - i : 8;
        memcpy(p + i, &x, k);
    }
    return UV_EAGAIN;
}
