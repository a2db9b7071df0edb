/*
 * dp_lib.h - private to libdrainpipe/: what the library's files share.
 * The public API is include/drainpipe.h; nothing here is installed.
 *
 * Threads: a dp_pipeline has one loop thread (its own, started by
 * dp_start, or the host's with dp_start_on_loop) that owns every libuv
 * handle and the lifecycle pipeline.
 * Other threads reach it in two ways only: the submission queue
 * (lock-free, dp_int.h) with `q_async` as its wake-up, and the command
 * block (`mu`, `cv`) with `cmd_async`, for flush, stats and stop, which
 * are rare and may wait.
 */
#ifndef DP_LIB_H
#define DP_LIB_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "drainpipe.h"
#include "dp_int.h"
#include "lifecycle.h"

#define DP_SUBMIT_QUEUE_ENV "DRAINPIPE_SUBMIT_QUEUE_SIZE"

/* Everything dp_start needs from a dp_config. */
struct dp__settings {
    struct lc_pipeline_config lc; /* free with lc_pipeline_config_free */
    size_t queue_size;            /* DRAINPIPE_SUBMIT_QUEUE_SIZE */
};

/* Parses the config (overlay, then the environment after
 * dp_config_from_env). out->lc must be freed whatever the result. 0 or
 * UV_EINVAL (logged naming the variable). */
int dp__config_build(const dp_config *c, struct dp__settings *out);

/* One dp_flush_async call: done once the flush generation gen is. */
struct dp__flush_wait {
    struct dp__flush_wait *next;
    uint64_t gen;
    dp_flushed_fn done;
    void *arg;
};

struct dp_pipeline {
    /* submission: any thread */
    struct dp__queue q;
    _Atomic uint64_t dropped_full, dropped_big, dropped_stopped;
    uv_async_t q_async; /* wakes the loop thread: records to drain */

    /* loop thread only */
    uv_loop_t own_loop; /* dp_start's */
    uv_loop_t *loop;    /* &own_loop, or the host's (dp_start_on_loop) */
    bool on_loop;       /* the host's loop: no thread of our own */
    pthread_t loop_tid; /* the loop's thread (on_loop: the host's) */
    int handles_open;   /* q_async, cmd_async: on_loop frees p at 0 */
    struct dp__flush_wait *waits; /* dp_flush_async calls, oldest first */
    struct dp__flush_wait **waits_tail;
    dp_stopped_fn stop_cb; /* dp_stop_async */
    void *stop_arg;
    struct lc_pipeline *lp;
    struct dsd *dsd;              /* borrowed from lp */
    struct dp__settings *pending; /* dp_bind_on_loop's, until
                                     dp_start_bound (owned) */
    char **tags;                  /* dp_set_tags before dp_start_bound */
    size_t ntags;
    bool tags_set;
    bool api_key;       /* an API key is configured */
    bool local_sink;    /* the local sink, not the forwarder */
    uint64_t submitted; /* records consumed */
    uint64_t submitted_bytes;
    bool flushing;         /* an lc_pipeline_flush runs */
    uint64_t flush_target; /* the generation it serves */
    bool stopping;
    bool lp_started;           /* lc_pipeline_start succeeded */
    bool q_closed_handle;      /* q_async closed */
    lc_stopped_fn inproc_done; /* the registry's, while "inproc" stops */
    void *inproc_arg;
    pthread_t thread;

    /* command block: under mu */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    uv_async_t cmd_async;
    uint64_t flush_req, flush_done; /* generations */
    int flush_rc;                   /* of the last flush done */
    uint64_t stats_req, stats_done;
    struct dp_stats snap; /* the last snapshot */
    bool stop_req;
    struct cmn_deadline stop_deadline; /* dp_stop's budget, from its call */
    bool stopped; /* the drain is over; snap holds the final stats */
    bool stop_clean;
    bool exited;   /* the loop thread is about to return */
    bool orphaned; /* dp_stop gave up waiting: the thread frees p */
};

/* Fills st from the pipeline's counters. Loop thread. */
void dp__stats_fill(struct dp_pipeline *p, struct dp_stats *st);

#endif /* DP_LIB_H */
