/*
 * sinit_drain.c - the end of a serverless-init run: the drain cascade
 * under the shutdown budget, the forced exit, and the one stderr line of
 * what was not delivered (spec/pipeline.md §5, DESIGN.md "Lifecycle").
 *
 * When the child exits (wrapper) or on SIGTERM/SIGINT (sidecar), the
 * shutdown metrics are added, the metadata lookup is awaited (it is bounded
 * by its own 300 ms), then dp_stop_async drains under what is left of
 * the budget. The budget runs from the first SIGTERM/SIGINT or the child's
 * exit, whichever comes first, so that it fits the platform's grace period;
 * the drain always gets at least MIN_DRAIN_MS. A second SIGTERM/SIGINT
 * during the drain, or the budget plus a small grace, forces the exit with
 * the child's code after reporting what was not delivered.
 */
#include "sinit_app.h"

#include <stdio.h>
#include <unistd.h>

#define FORCE_GRACE_MS 250 /* after the budget, before we give up on stop */
#define MIN_DRAIN_MS 500   /* drain floor when the child used the budget */

void sinit__close_handles(struct sinit_app *a)
{
    sinit_ctl_close(a->ctl);
    a->ctl = NULL;
    sinit_sig_close(a->sig);
    a->sig = NULL;
    if (a->budget_timer_inited &&
        !uv_is_closing((uv_handle_t *)&a->budget_timer))
        uv_close((uv_handle_t *)&a->budget_timer, NULL);
    if (a->retry_timer_inited && !uv_is_closing((uv_handle_t *)&a->retry_timer))
        uv_close((uv_handle_t *)&a->retry_timer, NULL);
    if (a->md != NULL) {
        sinit_md_close(a->md);
        a->md = NULL;
    }
}

/* Transactions that will never be delivered, from the forwarder's
 * counters (zero with the local sink). */
static uint64_t undelivered(const struct dp_stats *st)
{
    return st->queued + st->abandoned + st->dropped_400 + st->dropped_403 +
           st->dropped_413 + st->dropped_evicted + st->dropped_after_stop +
           st->dropped_other;
}

/* One stderr line with the counts when something was not delivered (or
 * always, with a reason, on a forced exit). */
static void report_undelivered(const struct dp_stats *st, const char *why)
{
    uint64_t n = undelivered(st);
    if (n == 0 && why == NULL)
        return;
    fprintf(stderr,
            "serverless-init: %s%s%llu payload transaction(s) not delivered "
            "(queued %llu, in flight %llu, abandoned %llu, dropped: 400 "
            "%llu, 403 %llu, 413 %llu, evicted %llu, after stop %llu, "
            "other %llu); delivered %llu\n",
            why ? why : "", why ? ": " : "", (unsigned long long)n,
            (unsigned long long)(st->queued - st->inflight),
            (unsigned long long)st->inflight, (unsigned long long)st->abandoned,
            (unsigned long long)st->dropped_400,
            (unsigned long long)st->dropped_403,
            (unsigned long long)st->dropped_413,
            (unsigned long long)st->dropped_evicted,
            (unsigned long long)st->dropped_after_stop,
            (unsigned long long)st->dropped_other,
            (unsigned long long)st->delivered);
    fflush(stderr);
}

static void on_pipeline_stopped(int status, const struct dp_stats *final,
                                void *arg)
{
    struct sinit_app *a = arg;
    if (status != 0)
        CMN_LOGW(SINIT_COMP, "drain ended with an abandoned component");
    report_undelivered(final, NULL);
    a->p = NULL; /* gone as the loop closes its last handles */
    a->p_started = false;
    a->state = SINIT_ST_DONE;
    sinit_checkpoint("stop", "pipeline", a->budget_from_ns);
    sinit__close_handles(a);
}

static void on_discarded(int status, const struct dp_stats *final, void *arg)
{
    (void)status;
    (void) final;
    (void)arg;
}

void sinit__discard_pipeline(struct sinit_app *a)
{
    if (a->p == NULL)
        return;
    if (dp_stop_async(a->p, MIN_DRAIN_MS, on_discarded, NULL) != 0)
        CMN_LOGD(SINIT_COMP, "pipeline already stopping");
    a->p = NULL;
    a->p_started = false;
}

/* Forced exit: reports what was not delivered and leaves now. */
void sinit__force_exit(struct sinit_app *a, const char *why)
{
    char msg[128];
    struct dp_stats st;
    snprintf(msg, sizeof(msg), "%s, exiting with code %d", why, a->exit_code);
    if (a->p != NULL && dp_stats(a->p, &st, sizeof(st)) == 0)
        report_undelivered(&st, msg);
    _exit(a->exit_code);
}

static void on_budget_timer(uv_timer_t *t)
{
    sinit__force_exit(t->data, "drain budget exceeded");
}

/* The budget runs from the first SIGTERM/SIGINT or the child's exit. */
void sinit__start_budget(struct sinit_app *a)
{
    if (a->budget_from_ns != 0)
        return;
    a->budget_from_ns = cmn_mono_ns();
    a->budget_end = cmn_deadline_in_ms(a->budget_ms);
}

/* What is left of the budget, never less than MIN_DRAIN_MS (a child that
 * used the whole budget for its own shutdown still gets a short drain)
 * nor more than the budget. */
static uint64_t budget_left_ms(const struct sinit_app *a)
{
    uint64_t left = cmn_deadline_remaining_ms(a->budget_end);
    uint64_t floor = a->budget_ms < MIN_DRAIN_MS ? a->budget_ms : MIN_DRAIN_MS;
    return left < floor ? floor : left;
}

/* Arms the forced exit once we drain (never while the child runs: it may
 * take its time over its own shutdown). */
static void arm_budget_timer(struct sinit_app *a)
{
    sinit__start_budget(a);
    if (a->budget_timer_inited)
        return;
    if (uv_timer_init(&a->loop, &a->budget_timer) == 0) {
        a->budget_timer_inited = true;
        a->budget_timer.data = a;
        (void)uv_timer_start(&a->budget_timer, on_budget_timer,
                             budget_left_ms(a) + FORCE_GRACE_MS, 0);
    }
}

void sinit__begin_stop(struct sinit_app *a)
{
    arm_budget_timer(a);
    a->state = SINIT_ST_DRAINING;
    if (a->p != NULL && !a->p_started)
        sinit__discard_pipeline(a); /* never ran: nothing in it */
    if (a->p == NULL) {             /* metrics off: nothing to drain */
        a->state = SINIT_ST_DONE;
        sinit__close_handles(a);
        return;
    }
    /* the process ends with this drain: big blocks freed from here on
     * are left to the exit (common.h) */
    cmn_alloc_exiting();
    uint64_t left = budget_left_ms(a);
    int err =
        dp_stop_async(a->p, left > UINT32_MAX ? UINT32_MAX : (uint32_t)left,
                      on_pipeline_stopped, a);
    if (err != 0) { /* cannot happen: the only stop of a running one */
        CMN_LOGE(SINIT_COMP, "drain: %s", dp_strerror(err));
        a->p = NULL;
        a->state = SINIT_ST_DONE;
        sinit__close_handles(a);
    }
}

/* Child ended (or never started) or sidecar got SIGTERM: drain. */
void sinit__begin_drain(struct sinit_app *a)
{
    if (a->state != SINIT_ST_RUNNING)
        return;
    arm_budget_timer(a);
    sinit__enhanced_shutdown(a);
    if (a->md_pending) {
        a->state = SINIT_ST_WAIT_MD; /* on_metadata continues */
        return;
    }
    sinit__begin_stop(a);
}
