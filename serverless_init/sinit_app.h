/*
 * sinit_app.h - the state of one serverless-init run, shared by the files
 * of the program: sinit_run.c (configuration, the pipeline's start-up,
 * main), sinit_wrap.c (the wrapped command: spawn, reap, exit code, and
 * what each signal does) and sinit_drain.c (the drain under the budget,
 * the forced exit, the report of what was not delivered). Private to
 * serverless_init/; everything runs on the loop thread.
 */
#ifndef DP_SINIT_APP_H
#define DP_SINIT_APP_H

#include "drainpipe.h"
#include "sinit.h"
#include "sinit_control.h"

#define SINIT_COMP "sinit"

enum sinit_app_state {
    SINIT_ST_RUNNING,  /* child running (wrapper) or waiting for SIGTERM */
    SINIT_ST_WAIT_MD,  /* child ended; waiting for the metadata lookup */
    SINIT_ST_DRAINING, /* dp_stop_async running */
    SINIT_ST_DONE
};

struct sinit_app {
    uv_loop_t loop;
    struct sinit_cli cli;
    bool sidecar;
    bool enhanced;
    bool fail_closed; /* DRAINPIPE_FAIL_CLOSED: any failure exits 1 */
    bool strip_key;   /* DRAINPIPE_STRIP_API_KEY: the child has none */
    bool metrics_off; /* the configuration is invalid: no pipeline */
    enum sinit_cloud cloud;
    uint64_t budget_ms;
    uint64_t start_ns;              /* process start (monotonic) */
    uint64_t budget_from_ns;        /* 0 until the budget started */
    struct cmn_deadline budget_end; /* budget_from + budget_ms */
    uint64_t spawned_ns;            /* when the child was spawned */
    dp_config *cfg;                 /* the pipeline's settings (owned) */
    dp_pipeline *p;                 /* NULL: metrics off (or not bound yet) */
    bool p_started;                 /* dp_start_bound succeeded */
    char **base_tags;  /* the configured DD_DOGSTATSD_TAGS and DD_TAGS */
    size_t nbase_tags; /* (owned), under the serverless tag map */
    int child_pid;
    bool child_alive;
    int exit_code;
    struct sinit_sig *sig;
    uv_timer_t budget_timer;
    bool budget_timer_inited;
    uv_timer_t retry_timer; /* sidecar: listeners that could not bind */
    bool retry_timer_inited;
    uint64_t retry_ms;
    struct sinit_md *md;
    bool md_pending;
    enum sinit_app_state state;
    struct sinit_ctl *ctl; /* DRAINPIPE_CONTROL_PORT, or NULL */
};

/* sinit_run.c: the shutdown enhanced metrics (spec §5.5), when on. */
void sinit__enhanced_shutdown(struct sinit_app *a);

/* sinit_wrap.c */
/* Runs the command. Returns 0, or sets the exit code (127) and returns
 * the spawn error. */
int sinit__spawn_child(struct sinit_app *a) CMN_MUST_CHECK;
/* The signalfd's callback (sinit_sig_cb); data is the app. */
void sinit__on_signal(void *data, int signum);

/* sinit_drain.c */
/* The child ended (or never started), or a sidecar got SIGTERM/SIGINT:
 * the shutdown metrics, then the drain (after the metadata lookup, when
 * one is pending). Once; later calls do nothing. */
void sinit__begin_drain(struct sinit_app *a);
/* dp_stop_async under what is left of the budget. */
void sinit__begin_stop(struct sinit_app *a);
/* The budget runs from the first SIGTERM/SIGINT or the child's exit. */
void sinit__start_budget(struct sinit_app *a);
/* Reports what was not delivered and _exits with the child's code. */
void sinit__force_exit(struct sinit_app *a, const char *why);
/* Closes the run's own handles (signals, timers, control port, metadata
 * lookup); the pipeline is not one of them. */
void sinit__close_handles(struct sinit_app *a);
/* Stops a pipeline that failed or was never started (nothing to report):
 * a->p is NULL afterwards and the pipeline goes as the loop runs. */
void sinit__discard_pipeline(struct sinit_app *a);

#endif /* DP_SINIT_APP_H */
