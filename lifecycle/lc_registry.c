/*
 * lc_registry.c - the component registry: dependency-ordered start with
 * rollback, exact-reverse stop under per-component timeouts and one overall
 * deadline, and start/stop checkpoints.
 *
 * Key invariant: nothing is freed while a component may still be running.
 * A component abandoned at stop keeps the whole manager (its record, and
 * the components it depends on, which it may still call) alive: lc_destroy
 * then only marks the manager, and the destruction runs on a later loop
 * iteration after the last abandoned component reported stopped, never
 * inside that component's own callback (STYLE rules 5 and 6). One that
 * never reports is leaked (logged), which is safe, rather than freed under
 * its handles.
 *
 * The stop sequence owns one uv_timer_t, opened when a sequence begins and
 * closed when it ends; the user's callback runs from the timer's close
 * callback, so it is never called from inside lc_stop_all.
 */
#include "lifecycle.h"

#include <stddef.h>
#include <string.h>

#define COMP "lifecycle"

enum lc_state {
    LC_IDLE,      /* registered, not started */
    LC_RUNNING,   /* start returned 0 */
    LC_STOPPING,  /* stop called, waiting for its report */
    LC_STOPPED,   /* reported stopped */
    LC_ABANDONED, /* did not report in time; may still report */
    LC_FAILED     /* start returned an error */
};

struct lc_comp {
    char name[LC_NAME_MAX];
    char deps[LC_DEPS_MAX][LC_NAME_MAX];
    size_t ndeps;
    const struct lc_ops *ops; /* borrowed */
    void *self;
    uint64_t timeout_ms; /* 0 or LC_NO_TIMEOUT: none of its own */
    enum lc_state state;
    struct lc_manager *m; /* NULL once the manager is gone */
    uint64_t stop_begin_ns;
    struct cmn_deadline own; /* stop_begin + timeout_ms, or none */
};

struct lc_manager {
    uv_loop_t *loop;
    struct lc_comp *comps[LC_COMPONENTS_MAX]; /* registration order */
    size_t n;
    size_t order[LC_COMPONENTS_MAX]; /* indices, in start order */
    size_t nstarted;
    bool start_called;

    /* stop sequence */
    uv_timer_t timer;
    bool timer_open;              /* initialised and not yet closed */
    bool stopping;                /* a sequence is running */
    size_t stop_pos;              /* order[0..stop_pos) may still need a stop */
    struct lc_comp *cur;          /* component whose report we wait for */
    bool in_stop_call;            /* inside cur->ops->stop */
    struct cmn_deadline deadline; /* of the whole sequence */
    bool clean;
    lc_done_cb cb;
    void *cb_arg;
    bool destroy_pending;

    struct lc_checkpoint cps[LC_CHECKPOINTS_MAX];
    size_t ncps;
};

static void lc__step(struct lc_manager *m);

void lc_checkpoint_log(const char *phase, const char *name, uint64_t begin_ns)
{
    uint64_t now = cmn_mono_ns();
    cmn_checkpoint_log(COMP, phase, name, now > begin_ns ? now - begin_ns : 0);
}

static void checkpoint(struct lc_manager *m, const char *phase,
                       const char *name, uint64_t took_ns)
{
    uint64_t took_us = took_ns / 1000u;
    uint64_t now = cmn_mono_ns(), start = cmn_process_start_ns();
    uint64_t cum_us = now > start ? (now - start) / 1000u : 0;
    cmn_checkpoint_log(COMP, phase, name, took_ns);
    if (m == NULL || m->ncps >= LC_CHECKPOINTS_MAX)
        return;
    struct lc_checkpoint *cp = &m->cps[m->ncps++];
    cp->phase = phase;
    memcpy(cp->name, name, sizeof(cp->name));
    cp->took_us = took_us;
    cp->cumulative_us = cum_us;
}

int lc_create(uv_loop_t *loop, struct lc_manager **out)
{
    /* malloc, and zeroed up to the checkpoints: they are written in
     * order, so their 12 KiB are touched only as far as they are used */
    struct lc_manager *m = cmn_malloc(sizeof(*m));
    if (m == NULL)
        return UV_ENOMEM;
    memset(m, 0, offsetof(struct lc_manager, cps));
    m->ncps = 0;
    m->loop = loop;
    /* pins "process start" here unless the binary set it earlier */
    (void)cmn_process_start_ns();
    m->deadline = CMN_NO_DEADLINE;
    m->clean = true;
    *out = m;
    return 0;
}

static struct lc_comp *find(const struct lc_manager *m, const char *name,
                            size_t *idx)
{
    for (size_t i = 0; i < m->n; i++) {
        if (strcmp(m->comps[i]->name, name) == 0) {
            if (idx != NULL)
                *idx = i;
            return m->comps[i];
        }
    }
    return NULL;
}

/* True when `target` is reachable from component name `from` through the
 * dependencies of registered components. */
static bool reaches(const struct lc_manager *m, const char *from,
                    const char *target, bool *visited)
{
    if (strcmp(from, target) == 0)
        return true;
    size_t i;
    const struct lc_comp *c = find(m, from, &i);
    if (c == NULL || visited[i])
        return false;
    visited[i] = true;
    for (size_t d = 0; d < c->ndeps; d++)
        if (reaches(m, c->deps[d], target, visited))
            return true;
    return false;
}

static int check_registration(const struct lc_manager *m, const char *name,
                              const char *const *deps, size_t *ndeps)
{
    if (name == NULL || name[0] == '\0' || strlen(name) >= LC_NAME_MAX) {
        CMN_LOGE(COMP, "component name missing or longer than %d bytes",
                 LC_NAME_MAX - 1);
        return UV_EINVAL;
    }
    if (m->start_called) {
        CMN_LOGE(COMP, "component %s registered after start", name);
        return UV_EINVAL;
    }
    if (m->n >= LC_COMPONENTS_MAX) {
        CMN_LOGE(COMP, "component %s: more than %d components", name,
                 LC_COMPONENTS_MAX);
        return UV_EINVAL;
    }
    if (find(m, name, NULL) != NULL) {
        CMN_LOGE(COMP, "component %s registered twice", name);
        return UV_EEXIST;
    }
    size_t n = 0;
    while (deps != NULL && deps[n] != NULL) {
        if (n >= LC_DEPS_MAX || deps[n][0] == '\0' ||
            strlen(deps[n]) >= LC_NAME_MAX) {
            CMN_LOGE(COMP, "component %s: bad dependency list", name);
            return UV_EINVAL;
        }
        n++;
    }
    /* The graph is acyclic before this call, so any new cycle passes
     * through `name`: look for a path from one of its deps back to it. */
    for (size_t d = 0; d < n; d++) {
        bool visited[LC_COMPONENTS_MAX] = {false};
        if (reaches(m, deps[d], name, visited)) {
            CMN_LOGE(COMP,
                     "component %s: dependency on %s makes a cycle; rejected",
                     name, deps[d]);
            return UV_ELOOP;
        }
    }
    *ndeps = n;
    return 0;
}

int lc_register(struct lc_manager *m, const char *name, const char *const *deps,
                const struct lc_ops *ops, void *self, uint64_t stop_timeout_ms)
{
    size_t ndeps = 0;
    int rc = check_registration(m, name, deps, &ndeps);
    if (rc != 0)
        return rc;
    struct lc_comp *c = cmn_calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    memcpy(c->name, name, strlen(name) + 1);
    for (size_t d = 0; d < ndeps; d++)
        memcpy(c->deps[d], deps[d], strlen(deps[d]) + 1);
    c->ndeps = ndeps;
    c->ops = ops;
    c->self = self;
    c->timeout_ms = stop_timeout_ms;
    c->state = LC_IDLE;
    c->m = m;
    m->comps[m->n++] = c;
    return 0;
}

/* Kahn's algorithm, lowest registration index first among the ready ones.
 * O(n^2 * deps), n <= LC_COMPONENTS_MAX. */
static int sort_components(struct lc_manager *m, size_t *order, bool quiet)
{
    bool placed[LC_COMPONENTS_MAX] = {false};
    for (size_t i = 0; i < m->n; i++) {
        for (size_t d = 0; d < m->comps[i]->ndeps; d++) {
            if (find(m, m->comps[i]->deps[d], NULL) == NULL) {
                if (quiet)
                    return UV_ENOENT;
                CMN_LOGE(COMP, "component %s depends on unknown component %s",
                         m->comps[i]->name, m->comps[i]->deps[d]);
                return UV_ENOENT;
            }
        }
    }
    for (size_t k = 0; k < m->n; k++) {
        size_t pick = m->n;
        for (size_t i = 0; i < m->n && pick == m->n; i++) {
            if (placed[i])
                continue;
            bool ready = true;
            for (size_t d = 0; d < m->comps[i]->ndeps && ready; d++) {
                size_t j = 0;
                /* every dependency was found above */
                ready = find(m, m->comps[i]->deps[d], &j) != NULL && placed[j];
            }
            if (ready)
                pick = i;
        }
        if (pick == m->n) { /* cannot happen: cycles rejected earlier */
            CMN_LOGE(COMP, "dependency cycle among components");
            return UV_ELOOP;
        }
        placed[pick] = true;
        order[k] = pick;
    }
    return 0;
}

static void begin_sequence(struct lc_manager *m)
{
    m->stopping = true;
    if (!m->timer_open) {
        /* uv_timer_init only records the handle; it cannot fail. */
        (void)uv_timer_init(m->loop, &m->timer);
        m->timer_open = true;
    }
    lc__step(m);
}

int lc_start_all(struct lc_manager *m)
{
    if (m->start_called)
        return UV_EALREADY;
    m->start_called = true;
    size_t order[LC_COMPONENTS_MAX];
    int rc = sort_components(m, order, false);
    if (rc != 0)
        return rc;
    for (size_t k = 0; k < m->n; k++) {
        struct lc_comp *c = m->comps[order[k]];
        uint64_t t0 = cmn_mono_ns();
        rc = c->ops->start != NULL ? c->ops->start(c->self) : 0;
        uint64_t took = cmn_mono_ns() - t0;
        if (rc != 0) {
            c->state = LC_FAILED;
            checkpoint(m, "start-failed", c->name, took);
            CMN_LOGE(COMP, "component %s failed to start: %s", c->name,
                     cmn_strerror(rc));
            if (m->nstarted > 0)
                CMN_LOGI(COMP,
                         "stopping the %zu component(s) already "
                         "started, in reverse",
                         m->nstarted);
            m->clean = false;
            m->stop_pos = m->nstarted;
            begin_sequence(m);
            return rc;
        }
        c->state = LC_RUNNING;
        m->order[m->nstarted++] = order[k];
        checkpoint(m, "start", c->name, took);
    }
    return 0;
}

/* When the component being stopped must have reported: the earlier of
 * its own timeout and the sequence's deadline. */
static struct cmn_deadline comp_deadline(const struct lc_manager *m,
                                         const struct lc_comp *c)
{
    return cmn_deadline_min(m->deadline, c->own);
}

static void on_timeout(uv_timer_t *t);

static void arm_timer(struct lc_manager *m, struct lc_comp *c)
{
    uint64_t rem = cmn_deadline_remaining_ns(comp_deadline(m, c));
    if (rem == UINT64_MAX) {
        uv_timer_stop(&m->timer);
        return;
    }
    uint64_t ms = (rem + 999999u) / 1000000u;
    if (ms == 0) /* deadline passed: a short grace for close callbacks */
        ms = LC_LATE_GRACE_MS;
    /* the loop's cached time may be stale (e.g. before the loop ran):
     * count the timeout from now */
    uv_update_time(m->loop);
    uv_timer_start(&m->timer, on_timeout, ms, 0);
}

static bool any_abandoned(const struct lc_manager *m)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->comps[i]->state == LC_ABANDONED)
            return true;
    return false;
}

static void real_destroy(struct lc_manager *m);
static void on_timer_closed(uv_handle_t *h);

static void on_destroy_timer(uv_timer_t *t)
{
    uv_close((uv_handle_t *)t, on_timer_closed);
}

/* Runs a deferred destruction from the timer's close callback, on a later
 * loop iteration. */
static void schedule_destroy(struct lc_manager *m)
{
    (void)uv_timer_init(m->loop, &m->timer); /* records only: cannot fail */
    m->timer_open = true;
    m->timer.data = m;
    uv_timer_start(&m->timer, on_destroy_timer, 0, 0);
}

static void on_stopped(void *arg)
{
    struct lc_comp *c = arg;
    struct lc_manager *m = c->m;

    switch (c->state) {
    case LC_STOPPING:
        c->state = LC_STOPPED;
        checkpoint(m, "stop", c->name, cmn_mono_ns() - c->stop_begin_ns);
        if (m->cur == c) {
            m->cur = NULL;
            if (!m->in_stop_call) {
                uv_timer_stop(&m->timer);
                lc__step(m);
            }
        }
        break;
    case LC_ABANDONED:
        c->state = LC_STOPPED;
        checkpoint(m, "late-stop", c->name, cmn_mono_ns() - c->stop_begin_ns);
        CMN_LOGI(COMP, "component %s reported stopped after being abandoned",
                 c->name);
        /* a destruction waiting for it runs on a later iteration, never
         * inside this component's own callback (STYLE rule 6) */
        if (m->destroy_pending && !m->timer_open && !any_abandoned(m))
            schedule_destroy(m);
        break;
    default:
        CMN_LOGW(COMP, "component %s reported stopped unexpectedly; ignored",
                 c->name);
        break;
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct lc_manager *m = t->data;
    struct lc_comp *c = m->cur;
    if (c == NULL)
        return;
    uint64_t took = cmn_mono_ns() - c->stop_begin_ns;
    c->state = LC_ABANDONED;
    m->cur = NULL;
    m->clean = false;
    CMN_LOGW(COMP,
             "component %s did not report stopped within %llu ms; abandoned",
             c->name, (unsigned long long)(took / 1000000u));
    checkpoint(m, "abandon", c->name, took);
    lc__step(m);
}

static void on_timer_closed(uv_handle_t *h)
{
    struct lc_manager *m = h->data;
    m->timer_open = false;
    lc_done_cb cb = m->cb;
    void *arg = m->cb_arg;
    bool clean = m->clean;
    m->cb = NULL;
    if (m->destroy_pending) {
        /* with an abandoned component still out, its late report
         * schedules the destruction */
        if (!any_abandoned(m))
            real_destroy(m);
        return;
    }
    if (cb != NULL)
        cb(arg, clean); /* may call lc_destroy: m not touched after */
}

static void finish(struct lc_manager *m)
{
    m->stopping = false;
    m->deadline = CMN_NO_DEADLINE;
    uv_timer_stop(&m->timer);
    uv_close((uv_handle_t *)&m->timer, on_timer_closed);
}

static void lc__step(struct lc_manager *m)
{
    m->timer.data = m;
    while (m->stop_pos > 0) {
        struct lc_comp *c = m->comps[m->order[--m->stop_pos]];
        if (c->state != LC_RUNNING)
            continue;
        c->state = LC_STOPPING;
        c->stop_begin_ns = cmn_mono_ns();
        c->own = c->timeout_ms == 0 ? CMN_NO_DEADLINE
                                    : cmn_deadline_in_ms(c->timeout_ms);
        m->cur = c;
        m->in_stop_call = true;
        if (c->ops->stop != NULL)
            c->ops->stop(c->self, comp_deadline(m, c), on_stopped, c);
        else
            on_stopped(c);
        m->in_stop_call = false;
        if (c->state == LC_STOPPING) {
            arm_timer(m, c);
            return;
        }
        m->cur = NULL; /* reported from inside stop */
    }
    m->cur = NULL;
    finish(m);
}

void lc_stop_all(struct lc_manager *m, struct cmn_deadline dl, lc_done_cb cb,
                 void *arg)
{
    m->cb = cb;
    m->cb_arg = arg;
    if (m->stopping) {
        if (dl.at_ns < m->deadline.at_ns) {
            m->deadline = dl;
            if (m->cur != NULL)
                arm_timer(m, m->cur);
        }
        return;
    }
    if (m->timer_open) {
        /* the previous sequence is closing its timer: its close callback
         * will now report to this cb, as everything is already stopped */
        return;
    }
    m->deadline = dl;
    m->stop_pos = m->nstarted;
    begin_sequence(m);
}

static void real_destroy(struct lc_manager *m)
{
    size_t order[LC_COMPONENTS_MAX];
    if (sort_components(m, order, true) != 0)
        for (size_t i = 0; i < m->n; i++)
            order[i] = i;
    for (size_t k = m->n; k-- > 0;) {
        struct lc_comp *c = m->comps[order[k]];
        switch (c->state) {
        case LC_RUNNING:
        case LC_STOPPING:
        case LC_ABANDONED:
            /* its handles may be live: leak rather than free under them */
            CMN_LOGE(COMP, "component %s destroyed while running; leaked",
                     c->name);
            continue;
        default:
            if (c->ops->destroy != NULL)
                c->ops->destroy(c->self);
            cmn_free(c);
        }
    }
    cmn_free(m);
}

void lc_destroy(struct lc_manager *m)
{
    if (m == NULL)
        return;
    if (m->stopping || m->timer_open || any_abandoned(m)) {
        if (!m->stopping && !m->timer_open)
            CMN_LOGI(COMP, "destruction waits for the abandoned "
                           "component(s) to report stopped");
        m->destroy_pending = true;
        m->cb = NULL;
        return;
    }
    real_destroy(m);
}

size_t lc_checkpoints(const struct lc_manager *m,
                      const struct lc_checkpoint **out)
{
    *out = m->cps;
    return m->ncps;
}

bool lc_is_running(const struct lc_manager *m, const char *name)
{
    const struct lc_comp *c = find(m, name, NULL);
    return c != NULL && (c->state == LC_RUNNING || c->state == LC_STOPPING);
}
