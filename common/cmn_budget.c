/*
 * cmn_budget.c - the one memory budget (DRAINPIPE_MEMORY_LIMIT).
 *
 * What is counted: every byte allocated through cmn_alloc.c (contexts, tag
 * storage, histogram samples, set members, sketches, queued payloads, the
 * retry queue, and the working memory of jansson, zstd and zlib, which are
 * routed through cmn_malloc), plus explicit reservations: for memory that
 * does not come from cmn_alloc (the receive ring's pages), and for memory
 * a flush will need (the aggregator's room per context, AGG_FLUSH_ROOM).
 * used = cmn_alloc_live_bytes() + reserved.
 *
 * The limit is not enforced inside cmn_malloc: start-up and the serializer
 * must not fail because input filled the budget. Instead, the parts fed by
 * input ask cmn_budget_over(step) before they grow, and degrade in this
 * order as used rises (DESIGN.md "Threads and memory"):
 *
 *   used > 50 % of the limit: histogram samples stop going to exact storage
 *                             and go to the context's sketch;
 *   used > 75 %:              new contexts are refused (existing ones keep
 *                             updating);
 *   used > 90 %:              the retry queue evicts its oldest payloads
 *                             that were already attempted at least once.
 *
 * The 25 % above the context step is the serializer's working room (raw and
 * compressed payload bytes of one flush job) and the forwarder's queue. A
 * reservation (cmn_budget_reserve) is refused past 100 %.
 *
 * Invariant: reserved equals the sum of successful reservations not yet
 * released. Every counter is atomic: any thread may call any function,
 * except the logging in cmn_budget_note (loop thread: the rate limiters are
 * not thread-safe).
 */
#include "common.h"

#include <stdatomic.h>
#include <string.h>
#include <strings.h>

#define COMP "budget"

static atomic_size_t limit_bytes; /* 0 = unlimited (library default) */
static atomic_size_t reserved;
static atomic_uint_fast64_t step_count[CMN_BUDGET_STEP_MAX];

/* Percent of the limit at which each step begins. */
static const unsigned step_pct[CMN_BUDGET_STEP_MAX] = {
    [CMN_BUDGET_SKETCH] = 50,
    [CMN_BUDGET_NO_NEW_CONTEXT] = 75,
    [CMN_BUDGET_EVICT_RETRY] = 90,
    [CMN_BUDGET_RESERVE] = 100,
};

static const char *const step_what[CMN_BUDGET_STEP_MAX] = {
    [CMN_BUDGET_SKETCH] = "histogram samples go to sketches",
    [CMN_BUDGET_NO_NEW_CONTEXT] = "new contexts are refused",
    [CMN_BUDGET_EVICT_RETRY] = "the oldest attempted retries are evicted",
    [CMN_BUDGET_RESERVE] = "a reservation was refused",
};

static struct cmn_ratelimit step_rl[CMN_BUDGET_STEP_MAX] = {
    CMN_RATELIMIT_INIT(10000, 1), CMN_RATELIMIT_INIT(10000, 1),
    CMN_RATELIMIT_INIT(10000, 1), CMN_RATELIMIT_INIT(10000, 1)};

void cmn_budget_set_limit(size_t bytes)
{
    atomic_store(&limit_bytes, bytes);
}

size_t cmn_budget_limit(void)
{
    return atomic_load(&limit_bytes);
}

size_t cmn_budget_used(void)
{
    return cmn_alloc_live_bytes() + atomic_load(&reserved);
}

size_t cmn_budget_reserved(void)
{
    return atomic_load(&reserved);
}

/* The byte count at which step begins; SIZE_MAX when unlimited. */
static size_t step_bytes(enum cmn_budget_step step)
{
    size_t lim = atomic_load(&limit_bytes);

    if (lim == 0)
        return SIZE_MAX;
    /* lim <= SIZE_MAX / 100 on any real limit (checked by the parser) */
    return lim / 100 * step_pct[step] + lim % 100 * step_pct[step] / 100;
}

size_t cmn_budget_step_bytes(enum cmn_budget_step step)
{
    return step_bytes(step);
}

bool cmn_budget_over(enum cmn_budget_step step)
{
    return cmn_budget_used() > step_bytes(step);
}

int cmn_budget_reserve(size_t n)
{
    size_t cap = step_bytes(CMN_BUDGET_RESERVE);
    size_t cur = atomic_load(&reserved);

    for (;;) {
        size_t live = cmn_alloc_live_bytes();
        if (n > cap || live + cur > cap - n) {
            atomic_fetch_add(&step_count[CMN_BUDGET_RESERVE], 1);
            return CMN_ECAP;
        }
        if (atomic_compare_exchange_weak(&reserved, &cur, cur + n))
            return 0;
    }
}

void cmn_budget_release(size_t n)
{
    atomic_fetch_sub(&reserved, n);
}

void cmn_budget_note(enum cmn_budget_step step)
{
    atomic_fetch_add(&step_count[step], 1);
    cmn_log_rl(&step_rl[step], CMN_LOG_WARN, COMP,
               "memory budget: %zu of %zu bytes used: %s", cmn_budget_used(),
               cmn_budget_limit(), step_what[step]);
}

uint64_t cmn_budget_count(enum cmn_budget_step step)
{
    return atomic_load(&step_count[step]);
}

void cmn_budget_reset_counts(void)
{
    for (int i = 0; i < CMN_BUDGET_STEP_MAX; i++)
        atomic_store(&step_count[i], 0);
}

int cmn_parse_bytes(struct cmn_slice s, size_t *out)
{
    static const struct {
        const char *sfx;
        unsigned shift;
    } units[] = {{"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}};
    struct cmn_slice num = s;
    unsigned shift = 0;
    uint64_t v;

    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        size_t n = strlen(units[i].sfx);
        if (s.len > n && strncasecmp(s.p + s.len - n, units[i].sfx, n) == 0) {
            num.len = s.len - n;
            shift = units[i].shift;
            break;
        }
    }
    /* at most 1 TiB: keeps every percent computation far from overflow */
    if (cmn_parse_u64(num, ((uint64_t)1 << 40) >> shift, &v) != 0)
        return CMN_EPARSE;
    *out = (size_t)(v << shift);
    return 0;
}

int cmn_budget_from_env(const struct cmn_env *env, size_t *out)
{
    const char *v = cmn_env_get(env, CMN_BUDGET_ENV);
    size_t n;

    if (v == NULL)
        return 0;
    if (cmn_parse_bytes(cmn_slice_cstr(v), &n) != 0 || n < CMN_BUDGET_MIN) {
        CMN_LOGE("config",
                 "%s: expected a byte count of at least 4MiB, with an "
                 "optional KiB, MiB or GiB suffix (at most 1024GiB), got "
                 "\"%s\"",
                 CMN_BUDGET_ENV, v);
        return UV_EINVAL;
    }
    *out = n;
    return 0;
}
