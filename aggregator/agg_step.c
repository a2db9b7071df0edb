/*
 * agg_step.c - the flush-time work that must run on the loop thread, in
 * bounded steps, and the loop busy meter.
 *
 * At a million live contexts one pass over the context table touches a
 * million scattered records (tens of milliseconds). Three such passes run
 * at a flush: counter zero-fill (§2.4), context expiry, and releasing the
 * references a serialized job holds. Each runs here from a uv_idle handle,
 * a few hundred items at a time, until the step has used AGG_STEP_NS; the
 * loop polls (and reads input) between steps.
 *
 * Exactness while input keeps arriving:
 * - zero-fill sees every context as it was at the flush: a context created
 *   since (id >= zf_id_limit) is skipped, and a counter sample for a
 *   context not yet visited visits it first (agg__zf_touch), before its
 *   counter state changes. Visited contexts carry the flush's epoch, so a
 *   table that grows meanwhile is walked again without visiting twice.
 * - expiry starts once the zero-fill is done (as before: zero-filled
 *   contexts hold references and stay). It unlinks expired contexts from
 *   the table (deletion by backward shift, no tombstones), marks them dead,
 *   removes the raw cache's slots pointing at them, then frees them. A raw
 *   cache hit on a dead context interns the line again (agg_context.c).
 * - a job's references are released only when no expiry runs, so an
 *   expiry sees the references of the jobs of its own flush, as before.
 *   The flush's callback is called once they are released.
 * A new flush first finishes the previous zero-fill and expiry at once
 * (flushes are seconds apart, the steps take milliseconds in all).
 *
 * The meter: a check handle (after the poll) and a prepare handle (before
 * the next poll). check -> prepare is one stretch of callbacks (timers,
 * idle, close callbacks); prepare -> check is the poll, whose I/O
 * callbacks take that span minus the time the poll slept. The longest of
 * either, in CPU time of the loop thread, is loop_longest_cb_ns: CPU time
 * leaves out the time other processes held the core (on a loaded machine
 * a 0.25 ms step can take a 4 ms time slice of wall time). That full meter
 * runs at debug log level (the debug stats show it) or in tests
 * (agg__meter_full): the CPU clock is a system call and the idle-time
 * metrics add clock reads and a mutex to every poll. By default only the
 * check -> prepare stretches are timed, in wall time (two clock reads per
 * iteration), and loop_longest_cb_ns is that wall figure, an upper bound
 * of their CPU time. loop_longest_cb_wall_ns is always the wall figure.
 */
#include "agg_internal.h"

#include <math.h>

/* Items between two reads of the clock (uv_hrtime, ~50 ns). Small: in a
 * virtual machine one item's memory can cost tens of microseconds when the
 * host faults its pages in. */
#define AGG_STEP_CHUNK 16

static void agg_idle_cb(uv_idle_t *h);

bool agg__steps_pending(const struct agg *a)
{
    return a->zf_job != NULL || a->ex_phase != 0 || a->reap_head != NULL ||
           a->inline_done != NULL;
}

static bool agg_step_zf(struct agg *a, long *budget)
{
    struct agg__job *j = a->zf_job;

    if (!agg__grow_finish(a, budget))
        return false;           /* a growing table: its copy first, in steps */
    if (a->zf_tab != a->ctab) { /* grown: walk the new table */
        a->zf_tab = a->ctab;
        a->zf_cursor = 0;
    }
    while (a->zf_cursor <= a->ctab_mask) {
        if ((*budget)-- <= 0)
            return false;
        struct agg__ctx *c = a->ctab[a->zf_cursor++];
        if (c != NULL && c->zf_epoch != a->zf_epoch && c->id < a->zf_id_limit)
            agg__zf_touch(a, c);
    }
    a->zf_job = NULL;
    if (a->zf_synth)
        agg__synth_drop_empty(j); /* no counter zeros in it */
    agg__ctx_expire_begin(a, a->zf_expire_before);
    agg__job_enqueue(a, j);
    return true;
}

void agg__zf_touch(struct agg *a, struct agg__ctx *c)
{
    if (c->zf_epoch == a->zf_epoch || c->id >= a->zf_id_limit)
        return;
    c->zf_epoch = a->zf_epoch;
    agg__zero_fill_ctx(a, a->zf_job, c);
}

static bool agg_step_ex(struct agg *a, long *budget)
{
    if (a->ex_phase == 1) {
        if (!agg__ex_unlink(a, budget))
            return false;
        a->ex_phase = 2;
        a->ex_tab = NULL;
    }
    if (a->ex_phase == 2) {
        if (!agg__ex_scrub(a, budget))
            return false;
        a->ex_phase = 3;
    }
    while (a->dead != NULL) {
        if ((*budget)-- <= 0)
            return false;
        struct agg__ctx *c = a->dead;
        a->dead = c->next_dead;
        agg__ctx_free(a, c);
    }
    a->ndead = 0;
    a->ex_phase = 0;
    return true;
}

static bool agg_step_reap(struct agg *a, long *budget)
{
    while (a->reap_head != NULL) {
        struct agg__job *j = a->reap_head;
        for (; a->reap_b < j->nbuckets; a->reap_b++, a->reap_k = 0) {
            struct agg__bucket *b = j->buckets[a->reap_b];
            while (a->reap_k < b->n) {
                if ((*budget)-- <= 0)
                    return false;
                agg__ctx_unref(b->ents[a->reap_k++].ctx);
            }
            b->n = 0; /* scrubbed by the worker: the entries own nothing */
        }
        while (a->reap_k < j->nnoagg) {
            if ((*budget)-- <= 0)
                return false;
            agg__ctx_unref(j->noagg[a->reap_k++].ctx);
        }
        j->nnoagg = 0;
        a->reap_head = j->next;
        if (a->reap_head == NULL)
            a->reap_tail = NULL;
        a->reap_b = a->reap_k = 0;
        agg__job_done(a, j); /* may flush again: state is consistent */
    }
    return true;
}

/* Runs steps until done or until deadline (uv_hrtime; 0 = no deadline).
 * With reap false only the zero-fill and the expiry run (no reap, no inline
 * job's after-work); with ex false only the zero-fill. */
static void agg_steps_run2(struct agg *a, uint64_t deadline, bool ex, bool reap)
{
    for (;;) {
        if (reap && a->inline_done != NULL) { /* may start the next job */
            struct agg__job *j = a->inline_done;
            a->inline_done = NULL;
            agg__job_after(j);
        }
        long budget = AGG_STEP_CHUNK;
        if (a->step_items > 0 && deadline != 0)
            budget = a->step_items;
        bool done = true;
        if (a->zf_job != NULL)
            done = agg_step_zf(a, &budget);
        if (done && ex && a->ex_phase != 0)
            done = agg_step_ex(a, &budget);
        if (done && reap && a->ex_phase == 0 && a->reap_head != NULL)
            done = agg_step_reap(a, &budget);
        if (done && a->zf_job == NULL && (!ex || a->ex_phase == 0) &&
            (!reap || a->reap_head == NULL))
            return;
        if (deadline != 0 && (a->step_items > 0 || uv_hrtime() >= deadline))
            return;
    }
}

static void agg_steps_run(struct agg *a, uint64_t deadline, bool reap)
{
    agg_steps_run2(a, deadline, true, reap);
}

/* Keeps the idle handle running exactly while steps are pending; without
 * one (it could not be created) the steps run to the end at once. */
static void agg_steps_kick(struct agg *a)
{
    if (!a->idle_inited && !a->stopping_closed) {
        if (uv_idle_init(a->loop, &a->idle) == 0) {
            a->idle_inited = true;
            a->idle.data = a;
        }
    }
    bool want = agg__steps_pending(a);
    if (want && !a->idle_active) {
        if (!a->idle_inited || uv_idle_start(&a->idle, agg_idle_cb) != 0) {
            agg_steps_run(a, 0, true);
            return;
        }
        a->idle_active = true;
    } else if (!want && a->idle_active) {
        uv_idle_stop(&a->idle);
        a->idle_active = false;
    }
}

static void agg_idle_cb(uv_idle_t *h)
{
    struct agg *a = h->data;

    agg_steps_run(a, uv_hrtime() + AGG_STEP_NS, true);
    agg_steps_kick(a);
    if (!agg__steps_pending(a))
        agg__maybe_stopped(a);
}

void agg__steps_finish(struct agg *a, bool ex)
{
    if (a->zf_job == NULL && (!ex || a->ex_phase == 0))
        return;
    agg_steps_run2(a, 0, ex, false);
    agg_steps_kick(a);
}

int agg__zf_begin(struct agg *a, struct agg__job *j, int64_t cutoff, bool synth,
                  double expire_before)
{
    a->zf_job = j;
    a->zf_tab = NULL;
    a->zf_cursor = 0;
    a->zf_id_limit = a->next_ctx_id;
    a->zf_epoch++;
    a->zf_synth = synth;
    a->zf_cutoff = cutoff;
    a->zf_expire_before = expire_before;
    /* a first step at once: with a small table the zero-fill ends (and the
     * job is queued, and meets the sink's back-pressure) within the call,
     * as before the steps */
    agg_steps_run2(a, uv_hrtime() + AGG_FIRST_STEP_NS, true, false);
    agg_steps_kick(a);
    return 0;
}

void agg__steps_after(struct agg *a, struct agg__job *j)
{
    a->inline_done = j;
    agg_steps_kick(a);
}

void agg__reap(struct agg *a, struct agg__job *j)
{
    j->next = NULL;
    if (a->reap_tail != NULL)
        a->reap_tail->next = j;
    else
        a->reap_head = j;
    a->reap_tail = j;
    agg_steps_kick(a);
}

void agg__steps_fini(struct agg *a)
{
    if (a->zf_job != NULL) {
        agg__job_free(a, a->zf_job);
        a->zf_job = NULL;
    }
    while (a->reap_head != NULL) {
        struct agg__job *j = a->reap_head;
        a->reap_head = j->next;
        agg__job_free(a, j);
    }
    a->reap_tail = NULL;
    while (a->dead != NULL) {
        struct agg__ctx *c = a->dead;
        a->dead = c->next_dead;
        agg__ctx_free(a, c);
    }
    a->ndead = 0;
    a->ex_phase = 0;
}

/* ---- loop busy meter ---------------------------------------------------- */

/* Without the CPU clock (meter_cpu off) the CPU figure is the wall one,
 * an upper bound. */
static void agg_meter_note(struct agg *a, uint64_t cpu, uint64_t wall)
{
    if (!a->meter_cpu)
        cpu = wall;
    if (cpu > a->st.loop_longest_cb_ns)
        a->st.loop_longest_cb_ns = cpu;
    if (wall > a->st.loop_longest_cb_wall_ns)
        a->st.loop_longest_cb_wall_ns = wall;
}

static void agg_meter_prep_cb(uv_prepare_t *h)
{
    struct agg *a = h->data;
    uint64_t now = uv_hrtime();
    uint64_t cpu = a->meter_cpu ? cmn_thread_cpu_ns() : 0;

    if (a->meter_chk_at != 0)
        agg_meter_note(a, cpu - a->meter_chk_cpu, now - a->meter_chk_at);
    if (!a->meter_cpu)
        return; /* the poll's own callbacks: with the full meter only */
    a->meter_prep_at = now;
    a->meter_prep_cpu = cpu;
    a->meter_idle_at = uv_metrics_idle_time(a->loop);
}

static void agg_meter_chk_cb(uv_check_t *h)
{
    struct agg *a = h->data;
    uint64_t now = uv_hrtime();

    if (!a->meter_cpu) {
        a->meter_chk_at = now;
        return;
    }
    uint64_t idle = uv_metrics_idle_time(a->loop), cpu = cmn_thread_cpu_ns();
    if (a->meter_prep_at != 0) {
        uint64_t span = now - a->meter_prep_at;
        uint64_t slept = idle - a->meter_idle_at;
        agg_meter_note(a, cpu - a->meter_prep_cpu,
                       span > slept ? span - slept : 0);
    }
    a->meter_chk_at = now;
    a->meter_chk_cpu = cpu;
}

int agg__meter_start(struct agg *a)
{
    /* neither can fail on a live loop (they only link the handle) */
    (void)uv_check_init(a->loop, &a->meter_chk);
    (void)uv_prepare_init(a->loop, &a->meter_prep);
    a->meter_inited = true;
    /* The full meter (CPU clock, and the poll's I/O callbacks, which need
     * libuv's idle-time metrics: two clock reads and two mutex operations
     * per poll) runs at debug log level, where the debug stats show it;
     * by default two monotonic clock reads per loop iteration. */
    if (cmn_log_enabled(CMN_LOG_DEBUG))
        agg__meter_full(a);
    a->meter_chk.data = a;
    a->meter_prep.data = a;
    /* the meter alone never keeps the loop running */
    uv_unref((uv_handle_t *)&a->meter_chk);
    uv_unref((uv_handle_t *)&a->meter_prep);
    (void)uv_check_start(&a->meter_chk, agg_meter_chk_cb);
    (void)uv_prepare_start(&a->meter_prep, agg_meter_prep_cb);
    return 0;
}

void agg__meter_full(struct agg *a)
{
    /* cannot fail for this option; without it the poll's sleep would
     * count in the wall figure only (the CPU figure never counts it) */
    (void)uv_loop_configure(a->loop, UV_METRICS_IDLE_TIME);
    a->meter_cpu = true;
}

static void agg_handle_close_cb(uv_handle_t *h)
{
    agg__handle_closed(h->data);
}

int agg__handles_close(struct agg *a)
{
    int n = 0;

    a->stopping_closed = true; /* no idle handle is created any more */
    if (a->idle_inited) {
        uv_close((uv_handle_t *)&a->idle, agg_handle_close_cb);
        n++;
    }
    if (a->meter_inited) {
        uv_close((uv_handle_t *)&a->meter_chk, agg_handle_close_cb);
        uv_close((uv_handle_t *)&a->meter_prep, agg_handle_close_cb);
        n += 2;
    }
    return n;
}
