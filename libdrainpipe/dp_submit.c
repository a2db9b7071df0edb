/*
 * dp_submit.c - in-process submission: dp_submit (DogStatsD text) and the
 * typed helpers, which write one line into a stack buffer and take the
 * same queue. Any thread; nothing here blocks, allocates or makes a
 * system call, except the one uv_async_send (a write to an eventfd) when
 * the loop thread sleeps.
 *
 * The helpers refuse names and tags that would change the line's meaning
 * ('|', '\n', ',' in a tag, ':' in a name) rather than escape them: the
 * DogStatsD grammar has no escapes (spec/pipeline.md §1).
 */
#include "dp_lib.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#define DP_LINE_MAX 4096 /* a helper's line: name, value, rate and tags */

int dp_submit(dp_pipeline *p, const char *buf, size_t len)
{
    if (p == NULL || (buf == NULL && len > 0))
        return UV_EINVAL;
    if (len == 0)
        return 0;
    if (len > DP_SUBMIT_MAX) {
        atomic_fetch_add_explicit(&p->dropped_big, 1, memory_order_relaxed);
        return CMN_ETOOBIG;
    }
    bool wake = false;
    /* no queue before dp_start_bound: refused like a stopped pipeline */
    int rc =
        p->q.cap != 0 ? dp__queue_push(&p->q, buf, len, &wake) : CMN_ESTOPPED;
    if (rc == 0) {
        if (wake)
            uv_async_send(&p->q_async);
        return 0;
    }
    _Atomic uint64_t *ctr = rc == CMN_ECAP      ? &p->dropped_full
                            : rc == CMN_ETOOBIG ? &p->dropped_big
                                                : &p->dropped_stopped;
    atomic_fetch_add_explicit(ctr, 1, memory_order_relaxed);
    return rc;
}

/* A bounded line writer: ok turns false once something did not fit. */
struct line {
    char *p;
    size_t len, cap;
    bool ok;
};

static void put(struct line *l, const char *s, size_t n)
{
    if (!l->ok || n > l->cap - l->len) {
        l->ok = false;
        return;
    }
    memcpy(l->p + l->len, s, n);
    l->len += n;
}

/* Text with none of the bytes in `bad`, not empty. */
static bool put_text(struct line *l, const char *s, const char *bad)
{
    if (s == NULL || s[0] == '\0')
        return false;
    size_t n = strcspn(s, bad);
    if (s[n] != '\0')
        return false;
    put(l, s, n);
    return true;
}

/* Integers below 2^53 in decimal without printf (the common case of
 * counters), anything else with %.17g, which round-trips. */
static void put_double(struct line *l, double v)
{
    char tmp[32];
    int n;
    if (v == cmn_rint(v) && fabs(v) < 9007199254740992.0) {
        char *e = tmp + sizeof(tmp), *q = e;
        long long i = (long long)v;
        unsigned long long u =
            i < 0 ? 0ull - (unsigned long long)i : (unsigned long long)i;
        do {
            *--q = (char)('0' + u % 10);
            u /= 10;
        } while (u != 0);
        if (i < 0)
            *--q = '-';
        put(l, q, (size_t)(e - q));
        return;
    }
    n = snprintf(tmp, sizeof(tmp), "%.17g", v);
    if (n > 0 && (size_t)n < sizeof(tmp))
        put(l, tmp, (size_t)n);
    else
        l->ok = false;
}

/* name:value|type[|@rate][|#t1,t2]\n, then dp_submit. */
static int typed(dp_pipeline *p, const char *name, const char *value_text,
                 double value, const char *type, const char *const *tags,
                 size_t ntags, double rate)
{
    char buf[DP_LINE_MAX];
    struct line l = {buf, 0, sizeof(buf), true};
    if (p == NULL || (tags == NULL && ntags > 0) || !(rate > 0 && rate <= 1))
        return UV_EINVAL;
    if (!put_text(&l, name, ":|\n"))
        return UV_EINVAL;
    put(&l, ":", 1);
    if (value_text != NULL) {
        if (!put_text(&l, value_text, "|\n"))
            return UV_EINVAL;
    } else {
        if (!isfinite(value))
            return UV_EINVAL;
        put_double(&l, value);
    }
    put(&l, "|", 1);
    put(&l, type, strlen(type));
    if (rate < 1) {
        put(&l, "|@", 2);
        put_double(&l, rate);
    }
    for (size_t i = 0; i < ntags; i++) {
        put(&l, i == 0 ? "|#" : ",", i == 0 ? 2 : 1);
        if (!put_text(&l, tags[i], ",|\n"))
            return UV_EINVAL;
    }
    put(&l, "\n", 1);
    if (!l.ok)
        return UV_EINVAL; /* over DP_LINE_MAX */
    return dp_submit(p, buf, l.len);
}

int dp_count(dp_pipeline *p, const char *name, double value,
             const char *const *tags, size_t ntags, double rate)
{
    return typed(p, name, NULL, value, "c", tags, ntags, rate);
}

int dp_gauge(dp_pipeline *p, const char *name, double value,
             const char *const *tags, size_t ntags, double rate)
{
    return typed(p, name, NULL, value, "g", tags, ntags, rate);
}

int dp_histogram(dp_pipeline *p, const char *name, double value,
                 const char *const *tags, size_t ntags, double rate)
{
    return typed(p, name, NULL, value, "h", tags, ntags, rate);
}

int dp_distribution(dp_pipeline *p, const char *name, double value,
                    const char *const *tags, size_t ntags, double rate)
{
    return typed(p, name, NULL, value, "d", tags, ntags, rate);
}

int dp_set(dp_pipeline *p, const char *name, const char *member,
           const char *const *tags, size_t ntags, double rate)
{
    return typed(p, name, member, 0, "s", tags, ntags, rate);
}
