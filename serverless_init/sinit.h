/*
 * sinit.h - the serverless-init binary's parts (spec/pipeline.md §5,
 * spec/lambda-cloudrun.md §5): command line, cloud detection and tags,
 * the GCP metadata client, enhanced-metric names, exit-code mapping and the
 * wrapper/sidecar run loop. The pipeline itself is libdrainpipe's, used
 * through its public API only (include/drainpipe.h).
 *
 * Everything here runs on the loop thread (or before the loop exists).
 */
#ifndef DP_SINIT_H
#define DP_SINIT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "common.h"
#include "drainpipe.h"

/* Exit codes of the wrapper itself (the child's code otherwise). */
#define SINIT_EXIT_CONFIG                                                      \
    1                            /* DRAINPIPE_FAIL_CLOSED and a bad setting or \
                                    listener: nothing spawned */
#define SINIT_EXIT_NOT_FOUND 127 /* command not found / not executable */
#define SINIT_EXIT_SIGNAL_BASE 128 /* child killed by signal N: 128 + N */

/* Default drain budget (Cloud Run gives 10 s between SIGTERM and SIGKILL),
 * overridden by DRAINPIPE_SHUTDOWN_BUDGET_MS. */
#define SINIT_BUDGET_DEFAULT_MS 9000
#define SINIT_BUDGET_ENV "DRAINPIPE_SHUTDOWN_BUDGET_MS"

/* ------------------------------------------------------------------------
 * Command line
 */
enum sinit_action { SINIT_RUN, SINIT_HELP, SINIT_VERSION };

struct sinit_cli {
    enum sinit_action action;
    char **argv; /* owned, NULL-terminated child argv; NULL = sidecar */
    size_t argc; /* entries before the NULL */
};

/* Parses argv (argv[0] is the program). "--help"/"-h" and "--version" as
 * the first argument select those actions; a leading "--" is skipped so a
 * command named like an option can be run. A single command argument that
 * contains whitespace is split on whitespace (Go strings.Fields, as the
 * Agent does). No command selects sidecar mode (out->argv == NULL).
 * Returns 0, UV_ENOMEM, or UV_EINVAL (an argument that is only
 * whitespace). Free with sinit_cli_free. */
int sinit_cli_parse(int argc, char *const *argv,
                    struct sinit_cli *out) CMN_MUST_CHECK;
void sinit_cli_free(struct sinit_cli *c);
/* The --help text (static). */
const char *sinit_usage(void);

/* Maps the child's end to the wrapper's exit code: the exit status, or
 * 128 + signal when it was killed (the shell convention; the Agent exits
 * 255 there). */
int sinit_exit_code(int64_t exit_status, int term_signal);

/* ------------------------------------------------------------------------
 * Cloud detection (spec §5.3), in the Agent's order.
 */
enum sinit_cloud {
    SINIT_CLOUD_RUN,           /* K_SERVICE */
    SINIT_CLOUD_RUN_FUNCTION,  /* K_SERVICE + FUNCTION_TARGET */
    SINIT_CLOUD_RUN_JOB,       /* CLOUD_RUN_JOB */
    SINIT_CLOUD_CONTAINER_APP, /* CONTAINER_APP_NAME */
    SINIT_CLOUD_APP_SERVICE,   /* WEBSITE_STACK */
    SINIT_CLOUD_LOCAL
};

enum sinit_cloud sinit_cloud_detect(const struct cmn_env *env);
/* "cloudrun", "cloudrunjobs", "containerapp", "appservice", "local". */
const char *sinit_cloud_origin(enum sinit_cloud c);
/* True for the Cloud Run kinds, which read the GCP metadata server. */
bool sinit_cloud_is_gcp(enum sinit_cloud c);

/* Enhanced metric names (spec §5.5). Unused slots are NULL. */
struct sinit_enhanced_names {
    const char *start[2];    /* cold start / task.started */
    const char *shutdown[2]; /* shutdown / task.ended */
    const char *duration;    /* jobs: task.duration (ms), else NULL */
};
void sinit_enhanced_names(enum sinit_cloud c, struct sinit_enhanced_names *out);

/* ------------------------------------------------------------------------
 * Tags (spec §5.4): an ordered key -> value map where a later set of the
 * same key overwrites the earlier value in place.
 */
struct sinit_tags {
    char **keys; /* owned */
    char **vals; /* owned; NULL for a tag without ':' */
    size_t n, cap;
};

void sinit_tags_init(struct sinit_tags *t);
void sinit_tags_free(struct sinit_tags *t);
/* Copies key and val (val may be NULL). Returns 0 or UV_ENOMEM. */
int sinit_tags_set(struct sinit_tags *t, const char *key,
                   const char *val) CMN_MUST_CHECK;
/* Splits "k:v" at the first ':' ("k" alone has no value). */
int sinit_tags_set_raw(struct sinit_tags *t,
                       struct cmn_slice tag) CMN_MUST_CHECK;
/* The value of key, "" for a key-only tag, NULL if absent. */
const char *sinit_tags_get(const struct sinit_tags *t, const char *key);
/* True for the keys removed from metric tags. */
bool sinit_tag_is_high_cardinality(const char *key);

/* GCP metadata values; owned strings or NULL when not (yet) known. */
struct sinit_gcp_md {
    char *container_id; /* /instance/id */
    char *region;       /* /instance/region, last '/' segment */
    char *project_id;   /* /project/project-id */
};
void sinit_gcp_md_free(struct sinit_gcp_md *md);

/* Builds the full tag map: base tags (env, service, version, lowercased)
 * < DD_TAGS and DD_EXTRA_TAGS < cloud tags from the environment < the
 * metadata tags (md may be NULL: not fetched yet) < the version tag
 * (datadog_init_version, or _dd.datadog_sidecar_version when sidecar).
 * Returns 0 or UV_ENOMEM. */
int sinit_tags_build(struct sinit_tags *t, const struct cmn_env *env,
                     enum sinit_cloud cloud, bool sidecar,
                     const struct sinit_gcp_md *md) CMN_MUST_CHECK;
/* The pipeline's settings: the environment under libdrainpipe's profile
 * ("serverless" for the wrapper and the sidecar, "lambda" for the
 * extension), checked now (a malformed variable is logged, naming it);
 * the in-process queue, which carries only the enhanced metrics, at its
 * smallest. *out is owned (dp_config_free) even on error. 0 or a dp_
 * error. */
int sinit_dp_config(const char *profile, dp_config **out) CMN_MUST_CHECK;
/* The tags the pipeline is configured with (DD_DOGSTATSD_TAGS and
 * DD_TAGS, sorted, each once: what the pipeline adds before any
 * dp_set_tags), the base under the serverless tag maps. *out is owned
 * (cmn_strv_free). 0 or UV_ENOMEM. */
int sinit_config_tags(char ***out, size_t *n) CMN_MUST_CHECK;
/* Renders the metric tags ("k:v" or "k"), high-cardinality keys removed,
 * as an owned array of owned strings (free with cmn_strv_free). */
int sinit_tags_metric_list(const struct sinit_tags *t, char ***out,
                           size_t *n) CMN_MUST_CHECK;

/* ------------------------------------------------------------------------
 * GCP metadata client: three parallel HTTP/1.0 GETs over uv_tcp with the
 * header Metadata-Flavor: Google, each bounded by timeout_ms (resolve,
 * connect and read included). A failed request leaves its value "unknown".
 */
struct sinit_md_req;
struct sinit_md;
/* Called once on the loop thread when all three requests ended. md is
 * borrowed for the call; every field is set ("unknown" on failure). */
typedef void (*sinit_md_cb)(void *data, const struct sinit_gcp_md *md);

/* host_port: "host:port", "[v6]:port" or "host" (port 80); NULL = the
 * value of GCE_METADATA_HOST or metadata.google.internal. Returns 0 (cb
 * will be called exactly once, unless sinit_md_close comes first; *out is
 * set before any call) or UV_EINVAL / UV_ENOMEM (cb will not be called).
 * cb may run from inside this call when the resolver cannot even start. */
int sinit_md_fetch(uv_loop_t *loop, const char *host_port, uint64_t timeout_ms,
                   sinit_md_cb cb, void *data,
                   struct sinit_md **out) CMN_MUST_CHECK;
/* Abandons the lookup (cb is not called any more) and frees it once every
 * handle is closed. NULL is a no-op. Safe inside cb. */
void sinit_md_close(struct sinit_md *m);

/* ------------------------------------------------------------------------
 * Signals and the child (sinit_child.c): one signalfd, posix_spawn.
 */
/* The signals the wrapper handles: every catchable one but the fault
 * signals (wrapper), or SIGTERM, SIGINT, SIGCHLD and SIGPIPE (sidecar). */
void sinit_sig_set(bool sidecar, sigset_t *set);
/* Blocks that set in the calling thread. Call first in main, before any
 * thread exists, so that every later thread inherits the mask and no
 * handled signal ever runs its default action in the wrapper. */
void sinit_sig_block(bool sidecar);

struct sinit_sig;
/* Called on the loop thread once per signal read (several pending
 * instances of one signal arrive as one). */
typedef void (*sinit_sig_cb)(void *data, int signum);
/* Opens a signalfd on the set and watches it on loop. Returns 0 or an
 * error; on an error with *out set the watcher must still be closed with
 * sinit_sig_close. Signals sent before this call are pending and read at
 * the first loop iteration. */
int sinit_sig_open(uv_loop_t *loop, bool sidecar, sinit_sig_cb cb, void *data,
                   struct sinit_sig **out) CMN_MUST_CHECK;
/* Stops and frees the watcher (after its close callback). NULL: no-op. */
void sinit_sig_close(struct sinit_sig *s);
/* Waits up to ms for a signal to be pending on the watcher (nothing is
 * read: the loop handles it). Returns 1 when one is, 0 when the time
 * passed. */
int sinit_sig_wait(const struct sinit_sig *s, int ms);
/* posix_spawnp(argv) with the current environment, an empty signal mask
 * and default dispositions; stdio inherited. Returns 0 with *pid, or the
 * negative errno of the spawn or of the exec (UV_ENOENT, UV_EACCES). */
int sinit_spawn(char *const *argv, int *pid) CMN_MUST_CHECK;

/* ------------------------------------------------------------------------
 * Orphan reaping (PID 1 / subreaper). Reaps every exited child whose pid
 * is not `keep` (the child the wrapper waits for; 0 = none), without touching
 * keep's status. Returns the number reaped.
 */
int sinit_reap_orphans(int keep);

/* A debug checkpoint of the start and stop phases (DD_LOG_LEVEL=debug):
 * the phase took from t0 to now. The same lines as the pipeline's own. */
static inline void sinit_checkpoint(const char *phase, const char *name,
                                    uint64_t t0)
{
    uint64_t now = cmn_mono_ns();
    cmn_checkpoint_log("lifecycle", phase, name, now > t0 ? now - t0 : 0);
}

/* ------------------------------------------------------------------------
 * The whole program: returns the process exit code. argv/envp as main's.
 */
int sinit_main(int argc, char **argv);

#endif /* DP_SINIT_H */
