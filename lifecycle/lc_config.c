/*
 * lc_config.c - the pipeline's configuration: the components' own configs
 * plus the few settings the lifecycle owns (aggregator_stop_timeout, the
 * log level, the local sink's file), with the Agent's names.
 *
 * Invariant: a malformed value is an error naming the variable, never a
 * silent default (DESIGN.md "Who uses it").
 */
#include "lifecycle.h"

#include <string.h>
#include <strings.h>

#define COMP "config"

void lc_pipeline_config_defaults(struct lc_pipeline_config *c)
{
    memset(c, 0, sizeof(*c));
    fwd_config_defaults(&c->fwd);
    agg_config_defaults(&c->agg);
    dsd_config_defaults(&c->dsd);
    c->sink = LC_SINK_AUTO;
    c->local_file = NULL;
    c->aggregator_stop_timeout_ms = 2000;
    c->dogstatsd_stop_timeout_ms = 0; /* see lifecycle.h */
    c->log_level = CMN_LOG_INFO;
    c->memory_limit = CMN_BUDGET_DEFAULT;
}

static int read_log_level(struct lc_pipeline_config *c,
                          const struct cmn_env *env)
{
    const char *v = cmn_env_get(env, "DD_LOG_LEVEL");
    if (v == NULL)
        return 0;
    enum cmn_log_level lvl;
    if (cmn_log_level_parse(v, &lvl) != 0) {
        CMN_LOGE(COMP,
                 "DD_LOG_LEVEL: expected trace, debug, info, warn, error, "
                 "critical or off, got \"%s\"",
                 v);
        return UV_EINVAL;
    }
    c->log_level = lvl;
    cmn_log_set_level(lvl);
    return 0;
}

static int read_sink(struct lc_pipeline_config *c, const struct cmn_env *env)
{
    const char *v = cmn_env_get(env, "DRAINPIPE_SINK");
    if (v == NULL)
        return 0;
    if (strcasecmp(v, "auto") == 0)
        c->sink = LC_SINK_AUTO;
    else if (strcasecmp(v, "forwarder") == 0)
        c->sink = LC_SINK_FORWARDER;
    else if (strcasecmp(v, "local") == 0)
        c->sink = LC_SINK_LOCAL;
    else {
        CMN_LOGE(COMP,
                 "DRAINPIPE_SINK: expected auto, forwarder or local, got "
                 "\"%s\"",
                 v);
        return UV_EINVAL;
    }
    return 0;
}

int lc_pipeline_config_from_env(struct lc_pipeline_config *c,
                                const struct cmn_env *env)
{
    /* the log level first, so the other readers log at the right level */
    int rc = read_log_level(c, env);
    if (rc != 0)
        return rc;
    rc = fwd_config_from_env(&c->fwd, env);
    if (rc != 0)
        return rc;
    rc = agg_config_from_env(&c->agg, env);
    if (rc != 0)
        return rc;
    rc = dsd_config_from_env(&c->dsd, env);
    if (rc != 0)
        return rc;
    double s = (double)c->aggregator_stop_timeout_ms / 1000.0;
    rc = cmn_env_f64(env, "DD_AGGREGATOR_STOP_TIMEOUT", 0, 3600, &s);
    if (rc != 0)
        return rc;
    c->aggregator_stop_timeout_ms = (uint64_t)(s * 1000.0 + 0.5);
    rc = read_sink(c, env);
    if (rc != 0)
        return rc;
    rc = cmn_budget_from_env(env, &c->memory_limit);
    if (rc != 0)
        return rc;
    const char *file = cmn_env_get(env, "DRAINPIPE_LOCAL_FILE");
    if (file != NULL) {
        char *dup = cmn_strdup(file);
        if (dup == NULL)
            return UV_ENOMEM;
        cmn_free(c->local_file);
        c->local_file = dup;
    }
    return 0;
}

void lc_pipeline_config_free(struct lc_pipeline_config *c)
{
    fwd_config_free(&c->fwd);
    agg_config_free(&c->agg);
    dsd_config_free(&c->dsd);
    cmn_free(c->local_file);
    c->local_file = NULL;
}
