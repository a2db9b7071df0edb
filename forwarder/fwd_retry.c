/*
 * fwd_retry.c - the forwarder's retry policy: which answers are delivered,
 * dropped or retried, the Agent's exponential backoff, and the circuit
 * breaker per endpoint (spec/pipeline.md §3.6).
 *
 * Circuit breaker, per endpoint (the Agent keys it by domain + route; we
 * key it by domain), with the Agent's transitions: an error while closed
 * or half-open sets nerrors = min(nerrors + 1, max_errors) and blocks the
 * endpoint for fwd__backoff_s(nerrors) (the Agent's pkg/util/backoff
 * formula, for every setting); answers arriving while blocked are ignored;
 * once the time has passed it is half-open, with one probe on the wire
 * until it answers. A probe answered other than with a retryable error
 * forgives recovery_interval errors: at 0 the breaker closes, otherwise it
 * blocks again for the backoff of the errors left.
 */
#include <math.h>

#include "fwd_internal.h"

double fwd__backoff_s(const struct fwd_config *cfg, uint32_t n, double r)
{
    double b, lo, hi;

    if (n == 0)
        return 0;
    /* 2^n exactly (the binary links no libm); past 2^1100 it is +Inf
     * either way */
    b = cfg->backoff_base * cmn_ldexp(1.0, n > 1100 ? 1100 : (int)n);
    if (b > cfg->backoff_max)
        return cfg->backoff_max;
    lo = b / cfg->backoff_factor;
    hi = b; /* min(max, b): b <= max here */
    return lo + r * (hi - lo);
}

uint32_t fwd__max_errors(const struct fwd_config *cfg)
{
    double q = cfg->backoff_max / cfg->backoff_base;
    int e;

    /* floor(log2(q)) + 1 is frexp's exponent: q = f 2^e, f in [0.5, 1),
     * exactly (no libm). Bounded: max <= 86400 and base >= 0.001
     * (fwd_config_from_env) give at most 27; the clamps guard
     * programmatic configs. */
    if (!(q >= 1))
        return 0; /* also NaN */
    if (isinf(q))
        return 64;
    (void)cmn_frexp(q, &e);
    return e > 64 ? 64 : (uint32_t)e;
}

void fwd__retry_init(struct fwd *f)
{
    f->rng = cmn_mono_ns() | 1;
    if (f->cfg.backoff_factor < 2) {
        /* as the Agent's forwarder (blocked_endpoints.go) */
        CMN_LOGW(FWD_COMP,
                 "forwarder_backoff_factor %g is less than 2; 2 is used",
                 f->cfg.backoff_factor);
        f->cfg.backoff_factor = 2;
    }
    f->max_errors = fwd__max_errors(&f->cfg);
    f->recovery =
        f->cfg.recovery_reset ? f->max_errors : f->cfg.recovery_interval;
}

enum fwd_outcome fwd__classify(long status, CURLcode res)
{
    if (res == CURLE_OK && status > 0 && status < 400)
        return FWD_OUT_DELIVERED;
    if (res == CURLE_OK && (status == 400 || status == 403 || status == 413))
        return FWD_OUT_REJECTED;
    if (res == CURLE_URL_MALFORMAT || res == CURLE_UNSUPPORTED_PROTOCOL)
        return FWD_OUT_INVALID;
    return FWD_OUT_RETRY;
}

void fwd__drop(struct fwd *f, struct fwd_txn *t, long status)
{
    const struct fwd_payload *p = t->body->p;
    char red[16];

    fwd__redact(t->ep->keys[t->key], red);
    switch (status) {
    case 400:
        f->st.dropped_400++;
        CMN_LOGE(FWD_COMP,
                 "%s%s answered 400 Bad Request: payload dropped "
                 "(%zu bytes)",
                 t->ep->url, p->route, p->len);
        break;
    case 413:
        f->st.dropped_413++;
        CMN_LOGE(FWD_COMP,
                 "%s%s answered 413 Payload Too Large: payload "
                 "dropped (%zu bytes)",
                 t->ep->url, p->route, p->len);
        break;
    case 403:
        f->st.dropped_403++;
        CMN_LOGE(FWD_COMP,
                 "%s%s answered 403 Forbidden: API key %s was "
                 "rejected; payload dropped (%zu bytes)",
                 t->ep->url, p->route, red, p->len);
        break;
    default:
        f->st.dropped_other++;
        CMN_LOGE(FWD_COMP,
                 "%s%s: request cannot be sent (%s): payload "
                 "dropped",
                 t->ep->url, p->route,
                 t->errbuf[0] ? t->errbuf : "invalid request");
        break;
    }
    fwd__txn_free(t);
}

/* ------------------------------------------------------------------------
 * Circuit breaker
 */

static double rand01(struct fwd *f)
{
    uint64_t x;

    if (f->rand01 != NULL)
        return f->rand01();
    /* xorshift64*: jitter only, not security */
    x = f->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    f->rng = x;
    return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

bool fwd__ep_can_send(const struct fwd *f, const struct fwd_ep *ep,
                      uint64_t now)
{
    if (ep->wire.n >= f->cfg.max_concurrent)
        return false;
    if (now < ep->blocked_until_ms)
        return false; /* blocked */
    if (!ep->tripped || f->state == FWD_STOPPING)
        return true;     /* closed, or draining: no probing */
    return !ep->probing; /* half-open: one probe */
}

/* Blocks ep for the backoff of its error count (promptly while draining:
 * the stop deadline bounds the retries). */
static void ep_block(struct fwd *f, struct fwd_ep *ep, uint64_t now)
{
    uint64_t wait_ms =
        (uint64_t)(fwd__backoff_s(&f->cfg, ep->nerrors, rand01(f)) * 1000.0);

    if (f->state == FWD_STOPPING)
        wait_ms = FWD_STOP_RETRY_MS;
    ep->blocked_until_ms = now + wait_ms;
}

/* The Agent's circuit breaker (blocked_endpoints.go): a success while
 * closed changes nothing; while blocked it is ignored (the request may
 * have left before the error that blocked the endpoint); the half-open
 * probe's success forgives recovery errors, closing the breaker at 0 and
 * blocking again for the backoff of what is left otherwise. */
void fwd__ep_success(struct fwd *f, struct fwd_ep *ep)
{
    uint64_t now = uv_now(f->loop);
    uint32_t r = f->recovery;

    if (!ep->tripped || now < ep->blocked_until_ms)
        return;
    ep->nerrors = ep->nerrors > r ? ep->nerrors - r : 0;
    if (ep->nerrors == 0) {
        ep->tripped = false;
        ep->blocked_until_ms = 0;
        return;
    }
    ep_block(f, ep, now);
}

/* An error while closed or half-open counts (up to max_errors) and blocks
 * for the backoff; one while already blocked is ignored, as in the Agent:
 * it comes from a request sent before the breaker opened. */
void fwd__ep_error(struct fwd *f, struct fwd_ep *ep)
{
    uint64_t now = uv_now(f->loop);

    if (ep->tripped && now < ep->blocked_until_ms)
        return;
    if (ep->nerrors < f->max_errors)
        ep->nerrors++;
    ep->tripped = true;
    ep_block(f, ep, now);
}
