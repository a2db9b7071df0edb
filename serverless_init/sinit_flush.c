/*
 * sinit_flush.c - the Lambda flush strategies (spec §4.2, bottlecap's
 * flush_control.rs and invocation_times.rs): parsing of
 * DD_SERVERLESS_FLUSH_STRATEGY and the decision taken at each INVOKE.
 *
 * Pure functions over given times (ms, any monotonic origin), so the
 * strategies are tested with scripted clocks.
 *
 * Default (adaptive): fewer than 20 invocations seen -> end; otherwise the
 * mean gap over the last 20 is (newest - oldest) / 19; under 120 s the
 * function is busy and flushing at every end would bill it for nothing:
 * continuously every 20 s when the 20 invocations span less than the flush
 * timeout (30 s), else periodically every 20 s; a quiet function flushes
 * at the end of each invocation.
 */
#include "sinit_lambda.h"

#include <string.h>

#define INTERVAL_MAX_MS 86400000u /* one day */

const char *sinit_flush_kind_name(enum sinit_flush_kind k)
{
    switch (k) {
    case SINIT_FLUSH_END:
        return "end";
    case SINIT_FLUSH_END_PERIODIC:
        return "end-periodically";
    case SINIT_FLUSH_PERIODICALLY:
        return "periodically";
    case SINIT_FLUSH_CONTINUOUSLY:
        return "continuously";
    default:
        return "default";
    }
}

int sinit_flush_parse(const char *s, struct sinit_flush_strategy *out)
{
    static const struct {
        const char *prefix; /* with the comma when an interval follows */
        enum sinit_flush_kind kind;
    } forms[] = {
        {"end,", SINIT_FLUSH_END_PERIODIC},
        {"periodically,", SINIT_FLUSH_PERIODICALLY},
        {"continuously,", SINIT_FLUSH_CONTINUOUSLY},
    };
    memset(out, 0, sizeof(*out));
    out->kind = SINIT_FLUSH_DEFAULT;
    if (s == NULL || s[0] == '\0')
        return 0;
    if (strcmp(s, "end") == 0) {
        out->kind = SINIT_FLUSH_END;
        return 0;
    }
    for (size_t i = 0; i < sizeof(forms) / sizeof(forms[0]); i++) {
        size_t pl = strlen(forms[i].prefix);
        if (strncmp(s, forms[i].prefix, pl) != 0)
            continue;
        uint64_t ms;
        if (cmn_parse_u64(cmn_slice_cstr(s + pl), INTERVAL_MAX_MS, &ms) != 0 ||
            ms == 0)
            return UV_EINVAL;
        out->kind = forms[i].kind;
        out->interval_ms = ms;
        return 0;
    }
    return UV_EINVAL;
}

void sinit_flush_init(struct sinit_flush_ctl *c,
                      const struct sinit_flush_strategy *cfg)
{
    memset(c, 0, sizeof(*c));
    c->cfg = *cfg;
}

struct sinit_flush_strategy
sinit_flush_effective(const struct sinit_flush_ctl *c, uint64_t now_ms)
{
    struct sinit_flush_strategy s = c->cfg;
    if (s.kind != SINIT_FLUSH_DEFAULT)
        return s;
    s.kind = SINIT_FLUSH_END;
    s.interval_ms = 0;
    if (c->ntimes < SINIT_FLUSH_LOOKBACK)
        return s;
    /* the ring is full: head is the oldest entry */
    uint64_t oldest = c->times[c->head];
    uint64_t span = now_ms > oldest ? now_ms - oldest : 0;
    uint64_t mean_gap = span / (SINIT_FLUSH_LOOKBACK - 1);
    if (mean_gap >= SINIT_FLUSH_ADAPT_GAP_MS)
        return s;
    s.kind = span < SINIT_FLUSH_TIMEOUT_MS ? SINIT_FLUSH_CONTINUOUSLY
                                           : SINIT_FLUSH_PERIODICALLY;
    s.interval_ms = SINIT_FLUSH_ADAPT_INTERVAL_MS;
    return s;
}

static bool interval_passed(const struct sinit_flush_ctl *c, uint64_t now_ms,
                            uint64_t interval_ms)
{
    return c->last_flush_ms == 0 || now_ms - c->last_flush_ms >= interval_ms;
}

enum sinit_flush_action sinit_flush_on_invoke(struct sinit_flush_ctl *c,
                                              uint64_t now_ms)
{
    c->times[c->head] = now_ms;
    c->head = (c->head + 1) % SINIT_FLUSH_LOOKBACK;
    if (c->ntimes < SINIT_FLUSH_LOOKBACK)
        c->ntimes++;
    /* the newest entry is now_ms itself, as in bottlecap (the gap is
     * measured up to this invocation) */
    struct sinit_flush_strategy s = sinit_flush_effective(c, now_ms);
    switch (s.kind) {
    case SINIT_FLUSH_PERIODICALLY:
        return interval_passed(c, now_ms, s.interval_ms)
                   ? SINIT_FLUSH_NOW_BLOCKING
                   : SINIT_FLUSH_NONE;
    case SINIT_FLUSH_CONTINUOUSLY:
        return interval_passed(c, now_ms, s.interval_ms) ? SINIT_FLUSH_NOW_ASYNC
                                                         : SINIT_FLUSH_NONE;
    default:
        return SINIT_FLUSH_AT_END;
    }
}

void sinit_flush_did(struct sinit_flush_ctl *c, uint64_t now_ms)
{
    c->last_flush_ms = now_ms == 0 ? 1 : now_ms;
}
