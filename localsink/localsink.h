/*
 * localsink.h - the local sink: what drainpipe does with a flush when no
 * API key is set (docs/configuration.md, DRAINPIPE_SINK and
 * DRAINPIPE_LOCAL_FILE). It takes the aggregator's records directly
 * (aggregator.h, struct agg_record_sink): series, sketches, events and
 * service checks before any serialization, so nothing is encoded to be
 * decoded again. It either appends one JSON line per series point, sketch,
 * event and service check to a file, or keeps one summary row per (type,
 * metric, tags) and prints them when it stops: one block per metric,
 * sorted by name, with the full name and tags, then totals and every drop
 * by cause.
 *
 * A component with the registry's contract: ls_create, ls_start, ls_stop
 * (asynchronous: it writes out at once and reports on a later loop
 * iteration), ls_destroy.
 *
 * Threading: every function here, and the record callbacks, run on the
 * loop thread. Writes are synchronous (a developer aid, small volumes).
 */
#ifndef DP_LOCALSINK_H
#define DP_LOCALSINK_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <uv.h>

#include "aggregator.h"
#include "common.h"

/* Summary rows kept; a record past it is counted in dropped_cap. */
#define LS_ROWS_MAX 8192

struct ls_stats {
    uint64_t batches;       /* flushes that handed over any record */
    uint64_t series_points; /* series points written / collected */
    uint64_t sketch_points; /* sketches (one per context and 10 s) */
    uint64_t events;
    uint64_t service_checks;
    uint64_t write_errors;    /* lines not written, rows not kept */
    uint64_t dropped_stopped; /* records received before start or after
                                 stop */
    uint64_t dropped_cap;     /* summary rows over LS_ROWS_MAX (not shown) */
};

struct ls_sink;

/* Creates a local sink on loop (borrowed; its stop reports there). path
 * (copied; NULL = summary on the summary stream) is opened for appending,
 * close-on-exec, at ls_start. Returns 0 or UV_ENOMEM. */
int ls_create(uv_loop_t *loop, const char *path,
              struct ls_sink **out) CMN_MUST_CHECK;
/* Opens the file (or nothing). 0 or the open error (logged with the
 * path). */
int ls_start(struct ls_sink *l) CMN_MUST_CHECK;
/* Fills sink with the callbacks that feed l (for agg_set_record_sink); l
 * is borrowed by it until l is destroyed. */
void ls_record_sink(struct ls_sink *l, struct agg_record_sink *sink);
typedef void (*ls_stopped_fn)(void *data);
/* Writes out at once: closes the file, or prints the summary table to the
 * summary stream; then calls cb(data) once, on a later loop iteration.
 * Writing out is bounded work: dl (the components' one contract) cuts
 * nothing short. Later records are counted in dropped_stopped. A second
 * call is ignored (logged; its cb is not called). */
void ls_stop(struct ls_sink *l, struct cmn_deadline dl, ls_stopped_fn cb,
             void *data);
/* After the stop callback, or when start never ran. NULL is a no-op. */
void ls_destroy(struct ls_sink *l);
void ls_get_stats(const struct ls_sink *l, struct ls_stats *out);
/* Where the table goes (borrowed; default stderr). For tests. */
void ls_set_summary_stream(struct ls_sink *l, FILE *f);

/* One cause of loss in the summary's "Dropped" list. */
struct ls_drop {
    const char *cause; /* static text, e.g. "NaN/Inf values" */
    uint64_t n;
};
#define LS_DROPS_MAX 48
/* Fills out with up to max drop counters (zero counts are not printed);
 * returns how many were filled. Called once, on the loop thread, when the
 * sink stops (after the components feeding it have stopped). */
typedef size_t (*ls_drops_fn)(void *data, struct ls_drop *out, size_t max);
/* Where the summary's drop counters come from (the pipeline sets it). */
void ls_set_drops_fn(struct ls_sink *l, ls_drops_fn fn, void *data);

#endif /* DP_LOCALSINK_H */
