/*
 * ddsketch.h - the Agent's DDSketch for distributions (spec/pipeline.md
 * §2.5): relative accuracy 1/128 (gamma = 1.015625), minimum value 1e-9,
 * 16-bit signed keys (+/-32767 for +/-Inf), 16-bit bin counts, at most 4096
 * bins with the lowest bins collapsed first, and a summary (cnt, min, max,
 * sum, avg). Exposed as a value type so it can be embedded and tested.
 *
 * Not thread-safe; one sketch is used by one thread at a time.
 */
#ifndef DP_DDSKETCH_H
#define DP_DDSKETCH_H

#include <stddef.h>
#include <stdint.h>

#include "common.h"

#define AGG_SKETCH_BIN_LIMIT 4096
#define AGG_SKETCH_BUF_KEYS 512 /* rate-1 keys buffered before sorting */
#define AGG_SKETCH_MAX_KEY 32766
#define AGG_SKETCH_INF_KEY 32767
/* The Agent's MaxCount (bin limit x 65535): the most values one sketch
 * takes. Inserts and merges past it are refused (CMN_ECAP), which also
 * bounds the bins at about 2 x AGG_SKETCH_BIN_LIMIT. */
#define AGG_SKETCH_MAX_COUNT ((int64_t)AGG_SKETCH_BIN_LIMIT * 65535)

struct agg_sketch_bin {
    int16_t k;  /* key */
    uint16_t n; /* count, at most 65535; larger counts span several bins */
};

struct agg_sketch {
    int64_t cnt;                 /* summary: number of values (weighted) */
    double min, max, sum, avg;   /* summary */
    struct agg_sketch_bin *bins; /* owned, sorted by key */
    uint32_t nbins, cap;
    int16_t *buf; /* owned: pending keys at rate 1 */
    uint32_t nbuf;
    uint32_t bufcap; /* keys buf holds: 0, 8, 16, ... 512 */
};

/* An empty sketch; allocates nothing until the first insert. */
void agg_sketch_init(struct agg_sketch *s);
/* Frees the bins and buffer. The struct itself is the caller's. */
void agg_sketch_free(struct agg_sketch *s);
/* Key of a value (exposed for tests): 0 for |v| below the minimum
 * (gamma^emin ~= 9.94e-10, the power of gamma just under 1e-9, as the
 * Agent's norm.min), negative for negative values, clamped to +/-32767 (the
 * Inf keys). Key 1338 (the bias) is 1.0. */
int16_t agg_sketch_key(double v);
/* The same key; fast = false computes it with Go's log and division every
 * time, without agg_sketch_key's division-free fast path (tests). */
int16_t agg__sketch_key_go(double v, bool fast);
/* The first index of the fast path's log table that differs from Go's log
 * recomputed now, bit for bit, or -1 (tests). */
int agg__sketch_tab_check(void);
/* "Lower bound" of key k > 0 as the Agent names it: gamma^(k - bias), which
 * is the geometric centre of the values that get key k (keys round). Key 0
 * is 0, the Inf keys are +/-Inf, negative keys mirror. */
double agg_sketch_key_lower(int16_t k);
/* Inserts v with sample rate rate (rate outside (0, 1] counts as 1; rate
 * < 1 inserts uint(1/rate) copies into the bins and cnt, while sum gets
 * v/rate untruncated, as the Agent's InsertN). Returns 0, CMN_EPARSE for
 * NaN/Inf, CMN_ECAP when cnt would pass AGG_SKETCH_MAX_COUNT, or
 * UV_ENOMEM; on any error the sketch's content is unchanged. */
int agg_sketch_insert(struct agg_sketch *s, double v,
                      double rate) CMN_MUST_CHECK;
/* Moves buffered keys into the bins and frees the key buffer (it grows
 * again on the next rate-1 insert). Call before reading bins. Returns 0 or
 * UV_ENOMEM (keys stay buffered). */
int agg_sketch_finish(struct agg_sketch *s) CMN_MUST_CHECK;
/* Adds src's bins and summary into dst (src must be finished: UV_EINVAL
 * otherwise; dst's buffered keys are flushed first). Returns 0, UV_EINVAL,
 * CMN_ECAP (the total would pass AGG_SKETCH_MAX_COUNT) or UV_ENOMEM; dst's
 * content is unchanged on error. src is borrowed. */
int agg_sketch_merge(struct agg_sketch *dst,
                     const struct agg_sketch *src) CMN_MUST_CHECK;
/* The q-quantile: q <= 0 gives min, q >= 1 gives max; otherwise the rank
 * RoundToEven(q * (cnt - 1)) is found walking the bins (as the Agent's
 * Sketch.Quantile) and the bin's key_lower value is returned, clamped to
 * [min, max]. That is within 1/128 relative error of the exact sample at
 * that rank (while fewer than 4096 bins were collapsed). The Agent's Go code
 * instead interpolates towards key_lower * gamma, up to 2.3% off; we keep
 * the accuracy guarantee. NaN for an empty sketch or NaN q. The sketch must
 * be finished. */
double agg_sketch_quantile(const struct agg_sketch *s, double q);

#endif /* DP_DDSKETCH_H */
