/*
 * fwd_test.h - helpers shared by the forwarder tests: a config pointing at
 * loopback intakes, running the loop until a condition holds, stopping
 * the forwarder and checking the loop closes, and capturing stderr.
 */
#ifndef DP_FWD_TEST_H
#define DP_FWD_TEST_H

#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "forwarder.h"
#include "fwd_internal.h"
#include "intake.h"

/* One endpoint url with nkeys keys; fast backoff so retries are quick. */
static inline void cfg_one(struct fwd_config *cfg, const char *url,
                           const char *const *keys, size_t nkeys)
{
    fwd_config_defaults(cfg);
    cfg->endpoints = cmn_calloc(1, sizeof(*cfg->endpoints));
    cr_assert_not_null(cfg->endpoints);
    cfg->nendpoints = 1;
    cfg->endpoints[0].url = cmn_strdup(url);
    cfg->endpoints[0].keys = cmn_calloc(nkeys, sizeof(char *));
    for (size_t i = 0; i < nkeys; i++)
        cfg->endpoints[0].keys[i] =
            cmn_secret_strndup(keys[i], strlen(keys[i]));
    cfg->endpoints[0].nkeys = nkeys;
    cfg->backoff_base = 0.02;
    cfg->backoff_max = 0.2;
    cfg->timeout_s = 10;
}

static inline void cfg_add_ep(struct fwd_config *cfg, const char *url,
                              const char *const *keys, size_t nkeys)
{
    struct fwd_endpoint_cfg *e;
    cfg->endpoints =
        cmn_reallocarray(cfg->endpoints, cfg->nendpoints + 1, sizeof(*e));
    cr_assert_not_null(cfg->endpoints);
    e = &cfg->endpoints[cfg->nendpoints++];
    e->url = cmn_strdup(url);
    e->keys = cmn_calloc(nkeys, sizeof(char *));
    for (size_t i = 0; i < nkeys; i++)
        e->keys[i] = cmn_secret_strndup(keys[i], strlen(keys[i]));
    e->nkeys = nkeys;
}

static inline struct fwd_payload *payload_bytes(enum fwd_kind kind,
                                                const void *p, size_t len)
{
    unsigned char *b = cmn_malloc(len);
    cr_assert_not_null(b);
    memcpy(b, p, len);
    struct fwd_payload *pl = fwd_payload_new(kind, b, len);
    cr_assert_not_null(pl);
    return pl;
}

typedef bool (*test_pred)(void *arg);

struct run_ctx {
    test_pred pred;
    void *arg;
    uint64_t deadline_ns;
    bool met;
};

static inline void run_tick(uv_timer_t *t)
{
    struct run_ctx *c = t->data;
    if (c->pred(c->arg)) {
        c->met = true;
        uv_stop(t->loop);
    } else if (cmn_mono_ns() > c->deadline_ns) {
        uv_stop(t->loop);
    }
}

/* Runs loop until pred(arg) or timeout_ms; returns whether pred held. */
static inline bool run_until(uv_loop_t *loop, test_pred pred, void *arg,
                             uint32_t timeout_ms)
{
    struct run_ctx c = {pred, arg,
                        cmn_mono_ns() + (uint64_t)timeout_ms * 1000000, false};
    uv_timer_t t;
    if (pred(arg))
        return true;
    uv_timer_init(loop, &t);
    t.data = &c;
    uv_timer_start(&t, run_tick, 2, 2);
    uv_run(loop, UV_RUN_DEFAULT);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    return c.met;
}

struct stop_ctx {
    int calls;
    uint64_t at_ns;
};

static inline void stopped_cb(void *data)
{
    struct stop_ctx *s = data;
    s->calls++;
    s->at_ns = cmn_mono_ns();
}

/* Stops f, runs the loop until every handle closed; returns ms taken. */
static inline double stop_and_wait(uv_loop_t *loop, struct fwd *f,
                                   uint64_t deadline_ms)
{
    struct stop_ctx s = {0, 0};
    uint64_t t0 = cmn_mono_ns();
    fwd_stop(f, cmn_deadline_in_ms(deadline_ms), stopped_cb, &s);
    uv_run(loop, UV_RUN_DEFAULT);
    cr_assert_eq(s.calls, 1, "stop callback called %d times", s.calls);
    return (double)(s.at_ns - t0) / 1e6;
}

/* Every transaction ended exactly one way. */
static inline void assert_accounted(const struct fwd_stats *s)
{
    uint64_t ended = s->delivered + s->dropped_400 + s->dropped_403 +
                     s->dropped_413 + s->dropped_evicted + s->dropped_other +
                     s->abandoned;
    cr_assert_eq(ended, s->transactions, "transactions=%llu but ended=%llu",
                 (unsigned long long)s->transactions,
                 (unsigned long long)ended);
    cr_assert_eq(s->inflight, 0);
    cr_assert_eq(s->queued, 0);
}

/* stderr capture: redirects fd 2 to a temp file. */
struct capture {
    int saved;
    char path[64];
};

static inline void capture_start(struct capture *c)
{
    snprintf(c->path, sizeof(c->path), "/tmp/fwdlog.XXXXXX");
    int fd = mkstemp(c->path);
    cr_assert(fd >= 0);
    fflush(stderr);
    c->saved = dup(2);
    dup2(fd, 2);
    close(fd);
}

/* Restores stderr and returns the captured text (cmn_free it). */
static inline char *capture_end(struct capture *c)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    FILE *fp = fopen(c->path, "r");
    cr_assert_not_null(fp);
    struct cmn_buf b;
    cmn_buf_init(&b, 16 << 20);
    char tmp[4096];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        cr_assert_eq(cmn_buf_append(&b, tmp, n), 0);
    cr_assert_eq(cmn_buf_append(&b, "", 1), 0);
    fclose(fp);
    unlink(c->path);
    return cmn_buf_steal(&b, NULL);
}

static inline bool fwd_ready_pred(void *f)
{
    return fwd_is_ready(f);
}

/* fwd_start, then runs the loop until libcurl is loaded, so a test's
 * submissions go straight to the wire as they did before the async load. */
static inline void start_ready(uv_loop_t *loop, struct fwd *f)
{
    cr_assert_eq(fwd_start(f), 0);
    cr_assert(run_until(loop, fwd_ready_pred, f, 10000), "libcurl loaded");
}

#endif /* DP_FWD_TEST_H */
