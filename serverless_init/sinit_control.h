/*
 * sinit_control.h - the control port (DRAINPIPE_CONTROL_PORT): a tiny
 * HTTP/1.1 API on 127.0.0.1 for a program that must flush at a moment of
 * its choosing (a Cloud Run service at the end of each request):
 *
 *   POST /flush[?timeout_ms=N]  200 once everything received so far was
 *                               delivered (dp_flush_async), 504 when N
 *                               ms (default 10000, at most 600000) ran
 *                               out first, 503 with no running pipeline
 *   GET /stats                  200 with the pipeline's counters as JSON
 *
 * Anything else: 404 (unknown path), 405 (wrong method), 400 (not HTTP or
 * a bad query). Every answer closes the connection. Loop thread only.
 */
#ifndef DP_SINIT_CONTROL_H
#define DP_SINIT_CONTROL_H

#include <uv.h>

#include "common.h"
#include "drainpipe.h"

#define SINIT_CONTROL_ENV "DRAINPIPE_CONTROL_PORT"
#define SINIT_CONTROL_TIMEOUT_MS 10000u /* /flush without timeout_ms */
#define SINIT_CONTROL_TIMEOUT_MAX 600000u
#define SINIT_CONTROL_CONNS_MAX 32 /* open connections; more are refused */

/* The pipeline to act on now, or NULL (none, or stopping): asked at each
 * request, because the wrapper's pipeline may come and go. */
typedef dp_pipeline *(*sinit_ctl_pipeline_fn)(void *data);

struct sinit_ctl;

/* Reads DRAINPIPE_CONTROL_PORT (unset or empty: no control port, *out =
 * NULL, returns 0; 1-65535: that port) and listens on 127.0.0.1 only.
 * Returns 0, UV_EINVAL (malformed, logged naming the variable) or the
 * bind error (logged). */
int sinit_ctl_open(uv_loop_t *loop, const struct cmn_env *env,
                   sinit_ctl_pipeline_fn get, void *data,
                   struct sinit_ctl **out) CMN_MUST_CHECK;
/* Closes the listener and every connection (waiting flushes are answered
 * 503); frees after the last close callback. NULL is a no-op. */
void sinit_ctl_close(struct sinit_ctl *c);

#endif /* DP_SINIT_CONTROL_H */
