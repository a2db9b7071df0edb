/*
 * aggregator.h - contexts, the time sampler (10 s epoch-aligned buckets),
 * every DogStatsD metric type with the Agent's semantics, DDSketch
 * distributions, the no-aggregation path for timestamped samples, events
 * and service checks, and the serializer that turns a flush into intake
 * payloads (spec/pipeline.md §2, §3.2-§3.4, §3.7).
 *
 * Samples come in on the loop thread with no allocation per sample once a
 * context exists. A flush swaps the due buckets out and serializes them on
 * the libuv thread pool (uv_queue_work); the finished payloads are handed to
 * the submit function on the loop thread.
 *
 * Threading: every function here runs on the loop thread.
 */
#ifndef DP_AGGREGATOR_H
#define DP_AGGREGATOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"
#include "forwarder.h"

enum agg_mtype {
    AGG_GAUGE,        /* g  */
    AGG_COUNTER,      /* c  */
    AGG_SET,          /* s  */
    AGG_HISTOGRAM,    /* h  */
    AGG_TIMING,       /* ms (a histogram with unit millisecond) */
    AGG_DISTRIBUTION, /* d  */
    AGG_MTYPE_MAX
};

/* One parsed DogStatsD metric line. Everything is borrowed for the duration
 * of the agg_add_metric call only. */
struct agg_metric {
    struct cmn_slice name; /* metric name, namespace already applied */
    struct cmn_slice tags; /* raw tag field after '#': "a:b,c,host:h";
                              special tags (host:, dd.internal.*) are
                              still in it and extracted by the aggregator
                              when the context is first seen */
    enum agg_mtype type;
    const double *values; /* nvalues parsed values (not for sets) */
    size_t nvalues;
    struct cmn_slice set_member; /* sets: the whole value text */
    double rate;                 /* sample rate as parsed; 1 by default */
    int64_t timestamp;           /* unix seconds from |T, 0 = none */
};

enum agg_event_priority { AGG_PRIO_UNSET, AGG_PRIO_NORMAL, AGG_PRIO_LOW };
enum agg_alert_type {
    AGG_ALERT_UNSET,
    AGG_ALERT_INFO,
    AGG_ALERT_WARNING,
    AGG_ALERT_ERROR,
    AGG_ALERT_SUCCESS
};

/* One parsed event; borrowed for the call (the aggregator copies it). The
 * title and text have "\\n" already turned into newlines by the parser, so
 * they are separate buffers from the packet. */
struct agg_event {
    struct cmn_slice title;
    struct cmn_slice text;
    int64_t timestamp; /* 0 = unset */
    enum agg_event_priority priority;
    struct cmn_slice host;
    struct cmn_slice aggregation_key;
    struct cmn_slice source_type_name;
    enum agg_alert_type alert_type;
    struct cmn_slice tags; /* raw tag field, as for metrics */
};

/* One parsed service check; borrowed for the call. */
struct agg_service_check {
    struct cmn_slice name;
    int status; /* 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN */
    int64_t timestamp;
    struct cmn_slice host;
    struct cmn_slice message;
    struct cmn_slice tags;
};

/* Exactness guarantee of histograms and timings. Each (context, 10 s
 * bucket) keeps up to AGG_HIST_EXACT_MAX samples exactly: the median and
 * percentiles are then the Agent's exact ranked samples. Past that many
 * samples, or once the memory budget passes its first step
 * (CMN_BUDGET_SKETCH), the samples go to a DDSketch and the median and
 * percentiles are within its 1/128 relative error. count, sum, min, max and
 * avg are exact in both cases. The threshold was chosen by measurement
 * (bench/README.md): the statsd mix at full speed stays under 32 MiB peak
 * RSS. */
#define AGG_HIST_EXACT_MAX 2048

enum agg_compressor { AGG_COMPRESS_ZSTD, AGG_COMPRESS_ZLIB, AGG_COMPRESS_NONE };

/* Configuration with the Agent's names (spec/pipeline.md §6). */
#define AGG_HIST_COPY_PREFIX_MAX 1024 /* bytes of the copy's name prefix */

struct agg_config {
    double flush_interval_s;        /* demux flush tick: 15 (3 in sinit) */
    bool flush_incomplete_buckets;  /* dogstatsd_flush_incomplete_buckets */
    int64_t expiry_seconds;         /* dogstatsd_expiry_seconds, 300 */
    int64_t context_expiry_seconds; /* dogstatsd_context_expiry_seconds 20 */
    size_t context_limit;           /* dogstatsd_context_limit: live
                                       contexts cap, default 1 000 000
                                       (drainpipe's own cap; a line that
                                       would add one more is dropped and
                                       counted in contexts_dropped) */
    size_t tags_per_metric_max;     /* cap on tags in one line, 1000 */
    bool no_aggregation_pipeline;   /* dogstatsd_no_aggregation_pipeline */
    size_t no_agg_batch_size;       /* ..._no_aggregation_pipeline_batch_size
                                       2048 */
    char **histogram_aggregates;    /* owned list; NULL = max,median,avg,
                                       count */
    size_t nhistogram_aggregates;
    double *histogram_percentiles; /* owned list; NULL = 0.95 */
    size_t nhistogram_percentiles;
    char **extra_tags; /* owned: dogstatsd_tags + DD_TAGS +
                          cloud tags, appended to every item */
    size_t nextra_tags;
    bool hist_copy_to_dist;         /* histogram_copy_to_distribution: every
                                       h/ms sample is also a distribution */
    char *hist_copy_prefix;         /* owned; ..._prefix, "" by default; at most
                                       AGG_HIST_COPY_PREFIX_MAX bytes */
    bool serverless;                /* host forced to "", serverless origin */
    bool serverless_drop_events;    /* DRAINPIPE_SERVERLESS_DROP_EVENTS: drop
                                       events and service checks as the
                                       Agent's serverless mode does (only
                                       with serverless); off by default */
    uint32_t origin_product;        /* 10 Agent, 1 serverless */
    uint32_t origin_service;        /* 0 DogStatsD; 472 serverless custom */
    uint32_t origin_category;       /* 10 DogStatsD (default); 38 Lambda */
    char *hostname;                 /* owned; "" in serverless mode */
    bool use_v2_series;             /* use_v2_api.series, true */
    enum agg_compressor compressor; /* serializer_compressor_kind, zstd */
    int zstd_level;                 /* serializer_zstd_compressor_level 1 */
    size_t max_payload_size;        /* serializer_max_payload_size */
    size_t max_uncompressed_payload_size;
    size_t max_series_payload_size;
    size_t max_series_uncompressed_payload_size;
    size_t max_series_points_per_payload;
    bool enable_series, enable_sketches, enable_events,
        enable_service_checks; /* enable_payloads.* */
};

void agg_config_defaults(struct agg_config *cfg);
/* Applies DD_* variables (DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS,
 * DD_DOGSTATSD_EXPIRY_SECONDS, DD_HISTOGRAM_AGGREGATES, ...). Returns 0 or
 * UV_EINVAL after logging the variable at fault. */
int agg_config_from_env(struct agg_config *cfg,
                        const struct cmn_env *env) CMN_MUST_CHECK;
void agg_config_free(struct agg_config *cfg);

/* Counters (loop thread). */
struct agg_stats {
    uint64_t samples;                    /* samples accepted (one per value) */
    uint64_t samples_nan;                /* NaN/Inf values dropped */
    uint64_t samples_no_agg;             /* timestamped samples sent as-is */
    uint64_t samples_no_agg_unsupported; /* timestamped h/ms/s/d dropped */
    uint64_t contexts;                   /* live contexts */
    uint64_t contexts_dropped;    /* samples dropped: context cap reached */
    uint64_t samples_dropped_oom; /* samples dropped: allocation failed */
    uint64_t events;              /* accepted */
    uint64_t service_checks;      /* accepted */
    uint64_t events_dropped;      /* serverless_drop_events or caps */
    uint64_t flushes;             /* flush jobs: ticks, agg_flush calls,
                                     no-agg batch cuts */
    uint64_t series_flushed;      /* series written to payloads */
    uint64_t points_flushed;
    uint64_t sketches_flushed;
    uint64_t payloads;                /* payloads handed to submit */
    uint64_t items_too_big;           /* series/events dropped: over a limit */
    uint64_t samples_dropped_cap;     /* over a cap: tags per line, set
                                         members or histogram samples per
                                         bucket, open buckets, waiting
                                         no-agg batches */
    uint64_t service_checks_dropped;  /* serverless_drop_events or caps */
    uint64_t payloads_dropped;        /* payloads lost to allocation or
                                         compression failure */
    uint64_t contexts_expired;        /* contexts removed by expiry */
    uint64_t backpressure_waits;      /* flush jobs that waited for the
                                         sink's queue to have room */
    uint64_t contexts_refused_budget; /* lines whose new context the
                                         memory budget refused (their
                                         samples are in contexts_dropped) */
    uint64_t hist_to_sketch;          /* histograms (context x bucket) moved
                                         from exact storage to a sketch:
                                         past AGG_HIST_EXACT_MAX samples or
                                         under the budget's first step */
    uint64_t samples_rate_refused;    /* samples of lines with a sample
                                         rate <= 0 or NaN (embedders; the
                                         parser refuses them) */
    uint64_t rates_clamped;           /* lines whose rate was raised to the
                                         floor 1e-6 (docs/limits.md) */
    uint64_t points_nonfinite;        /* series points and sketches whose
                                         aggregate overflowed to +/-Inf:
                                         dropped at flush, never sent */
    uint64_t utf8_repaired;           /* distinct raw name + tags with
                                         invalid UTF-8, repaired to U+FFFD
                                         (a repeat hits the raw cache and
                                         is not counted again) */
    uint64_t loop_longest_cb_ns;      /* the longest stretch of loop
                                         callbacks between two polls
                                         since agg_start (any component's
                                         callbacks on this loop), in CPU
                                         time of the loop thread, ns; at
                                         debug log level only; otherwise
                                         the wall time of the stretches
                                         between poll and poll (the
                                         poll's I/O callbacks left out) */
    uint64_t loop_longest_cb_wall_ns; /* the same in wall time: includes
                                         time the thread was preempted
                                         (a loaded machine) */
};

struct agg;

/* Returns the current wall-clock time in unix seconds (may be fractional).
 * Tests replace it to control bucketing. */
typedef double (*agg_clock_fn)(void *data);

/* Creates an aggregator on loop (borrowed). submit receives every payload
 * (ownership passes to it) on the loop thread; NULL when a record sink will
 * be set (agg_set_record_sink). Copies cfg. */
int agg_create(uv_loop_t *loop, const struct agg_config *cfg,
               fwd_submit_fn submit, void *submit_data,
               struct agg **out) CMN_MUST_CHECK;
/* Replaces the clock (before agg_start). NULL restores the wall clock. */
void agg_set_clock(struct agg *a, agg_clock_fn fn, void *data);
/* Replaces the extra tags appended to every series, sketch, event and
 * service check at serialization time (a tag the item already has is not
 * repeated). Copies tags; flushes already started keep the previous list.
 * Returns 0 or UV_ENOMEM (the previous list stays). Loop thread. */
int agg_set_extra_tags(struct agg *a, const char *const *tags,
                       size_t n) CMN_MUST_CHECK;
/* Back-pressure from the sink (the forwarder: fwd_sink_full and
 * fwd_sink_on_space with data = the struct fwd). Before serializing a flush
 * job, the aggregator asks full(data); while it is true the job waits (its
 * buckets stay in the aggregator's hands, and later flushes queue behind
 * it, up to AGG_JOBS_MAX, then stay in the open buckets), and on_space is
 * asked to call back once there is room. on_space's callback must come on
 * the loop thread, and before the sink refuses payloads for good (the
 * aggregator's stop waits for it). NULL full: no back-pressure (the
 * default). Loop thread, before agg_start. */
typedef bool (*agg_full_fn)(void *data);
typedef void (*agg_on_space_fn)(void *data, fwd_space_cb cb, void *arg);
void agg_set_backpressure(struct agg *a, agg_full_fn full,
                          agg_on_space_fn on_space, void *data);

/* ---- Records: a flush before serialization --------------------------------
 * With a record sink the aggregator hands each flush's records to it
 * instead of serializing payloads (the local sink, localsink/). The
 * records are the same values the payloads would carry, in the same
 * order: series by context, name suffix and time, then the timestamped
 * samples of the no-aggregation path; sketches by context and time; events
 * by source type then arrival; service checks by arrival. Every string is
 * valid UTF-8 (repaired at intake). */
enum agg_series_type {
    AGG_SERIES_COUNT = 1,
    AGG_SERIES_RATE = 2,
    AGG_SERIES_GAUGE = 3
};

struct agg_point {
    int64_t ts; /* unix seconds: the bucket's start, or the client's |T */
    double v;   /* finite */
};

/* One series. The series' name is name followed by suffix. */
struct agg_series_rec {
    struct cmn_slice name;
    const char *suffix; /* "" or a histogram aggregate's, ".max" */
    struct cmn_slice host;
    struct cmn_slice device;      /* the device: tag's value; p NULL: none */
    const struct cmn_slice *tags; /* the context's tags, then the extra
                                     tags it lacks; device: left out */
    size_t ntags;
    enum agg_series_type type;
    int64_t interval; /* seconds (10) */
    const struct agg_point *points;
    size_t npoints; /* at least 1 */
};

/* One sketch (a distribution's 10 s bucket) with its summary. */
struct agg_sketch_rec {
    struct cmn_slice name, host;
    const struct cmn_slice *tags; /* as series, device: kept */
    size_t ntags;
    int64_t ts;
    int64_t cnt;
    double min, max, sum, avg;
    double p50, p99; /* agg_sketch_quantile: within 1/128 */
};

struct agg_event_rec {
    struct cmn_slice title, text, host, aggregation_key, source_type_name;
    int64_t ts;
    enum agg_event_priority priority;
    enum agg_alert_type alert_type;
    const struct cmn_slice *tags; /* the event's, then the extra tags */
    size_t ntags;
};

struct agg_check_rec {
    struct cmn_slice name, host, message;
    int status; /* 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN */
    int64_t ts;
    const struct cmn_slice *tags;
    size_t ntags;
};

/* Where a flush's records go. Every callback runs on the loop thread; a
 * record and everything it points at is borrowed for the call. */
struct agg_record_sink {
    void (*series)(void *data, const struct agg_series_rec *r);
    void (*sketch)(void *data, const struct agg_sketch_rec *r);
    void (*event)(void *data, const struct agg_event_rec *r);
    void (*check)(void *data, const struct agg_check_rec *r);
    /* after the last record of a flush that had any; may be NULL */
    void (*flushed)(void *data);
    void *data;
};

/* Sends every flush's records to sink (copied; its data borrowed until the
 * aggregator's stop callback) instead of serializing payloads: agg_create's
 * submit may then be NULL, and back-pressure does not apply. Loop thread,
 * before agg_start. */
void agg_set_record_sink(struct agg *a, const struct agg_record_sink *sink);

/* Starts the periodic flush timer. UV_EINVAL when there is neither a submit
 * function nor a record sink. */
int agg_start(struct agg *a) CMN_MUST_CHECK;

/* Hot path. Adds every value of one metric line. Returns 0 when accepted,
 * or a negative error when the whole line was dropped (and counted):
 * CMN_ECAP (context limit, or a per-bucket cap), UV_ENOMEM, CMN_ETOOBIG
 * (more than tags_per_metric_max tags), CMN_ESTOPPED (after agg_stop),
 * CMN_EPARSE (a sample rate <= 0 or NaN). A positive rate below 1e-6 is
 * raised to 1e-6 and counted (rates_clamped).
 * NaN/Inf values are dropped one by one and counted (samples_nan); a
 * timestamped h/ms/s/d line on the no-aggregation path is dropped and
 * counted (samples_no_agg_unsupported) with 0 returned. With
 * hist_copy_to_dist an h/ms line is also added as a distribution named
 * prefix + name (timestamped or not: the copy is aggregated, as the Agent's
 * copy skips the no-aggregation path). Events and service checks are
 * copied; with serverless_drop_events (and serverless) they are dropped,
 * counted and 0 is returned; past the queue cap (10 000 per flush)
 * CMN_ECAP. */
int agg_add_metric(struct agg *a, const struct agg_metric *m);
/* One value of one metric, as a line "name:v|type|#tags" would give, at
 * now (no |T). tags: comma-separated or NULL; borrowed for the call. For
 * metrics the program itself emits (enhanced metrics). Same returns as
 * agg_add_metric. */
int agg_add_value(struct agg *a, const char *name, enum agg_mtype type,
                  double v, const char *tags);
int agg_add_event(struct agg *a, const struct agg_event *e);
int agg_add_service_check(struct agg *a, const struct agg_service_check *sc);

/* Flushes now, as a periodic tick does (force = false) or as the final
 * flush does (force = true: every bucket and sketch, the open ones
 * included). Serialization runs off the loop; cb (may be NULL) is called on
 * the loop thread once every payload of this flush has been submitted. */
typedef void (*agg_done_cb)(void *data);
int agg_flush(struct agg *a, bool force, agg_done_cb cb,
              void *data) CMN_MUST_CHECK;

/* Stops the timer, makes the final flush (force = the config's
 * flush_incomplete_buckets), flushes the no-aggregation path, waits for
 * serialization and for the sink to take every payload, then calls cb
 * once, on a later loop iteration. No sample is accepted afterwards. dl is
 * the caller's deadline (the components' one contract): the final flush
 * is bounded work and is not cut short, but a sink that holds the last
 * payloads back (a forwarder whose queue is full) can keep the callback
 * waiting past dl; the caller then abandons the stop, and agg_destroy
 * frees what was held. */
void agg_stop(struct agg *a, struct cmn_deadline dl, agg_done_cb cb,
              void *data);
/* After the stop callback (or if never started). NULL is a no-op. */
void agg_destroy(struct agg *a);
void agg_get_stats(const struct agg *a, struct agg_stats *out);

#endif /* DP_AGGREGATOR_H */
