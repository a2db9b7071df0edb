/*
 * dsd_config.c - the DogStatsD server's configuration: the Agent's
 * defaults (spec/pipeline.md §6), the DD_* environment variables, deep
 * copy and free.
 *
 * Invariant: every pointer in a struct dsd_config is either NULL or owned
 * by that struct (allocated through cmn_*), so dsd_config_free is always
 * safe after dsd_config_defaults, even after a failed dsd_config_from_env.
 * A malformed variable is UV_EINVAL with an error log naming it; it never
 * silently becomes a default.
 */
#include "dsd_int.h"

#include <string.h>

#define COMP "config"

void dsd_config_defaults(struct dsd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->port = 8125;
    cfg->bind_host = NULL; /* "localhost" */
    cfg->buffer_size = 8192;
    cfg->parse.no_aggregation_pipeline = true;
    cfg->parse.origin_detection_client = false;
    cfg->max_values_per_line = 1024;
    cfg->max_stream_conns = 1024;
    cfg->ring_size = DSD_RING_SIZE_DEFAULT;
    cfg->rx_realtime = true;
    cfg->udp_sockets = 0;
    cfg->stream_idle_timeout_ms = 300000;
    cfg->stream_conn_bytes_max = 0;
}

void dsd_config_free(struct dsd_config *cfg)
{
    if (cfg == NULL)
        return;
    cmn_free(cfg->bind_host);
    cmn_free(cfg->socket_path);
    cmn_free(cfg->stream_socket_path);
    cmn_free(cfg->metric_namespace);
    cmn_strv_free(cfg->namespace_blacklist, cfg->nnamespace_blacklist);
    cmn_strv_free(cfg->metric_blocklist, cfg->nmetric_blocklist);
    cfg->bind_host = cfg->socket_path = cfg->stream_socket_path = NULL;
    cfg->metric_namespace = NULL;
    cfg->namespace_blacklist = cfg->metric_blocklist = NULL;
    cfg->nnamespace_blacklist = cfg->nmetric_blocklist = 0;
}

static int dup_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = cmn_strdup(src);
    return *dst ? 0 : UV_ENOMEM;
}

int dsd__config_copy(struct dsd_config *dst, const struct dsd_config *src)
{
    *dst = *src;
    dst->bind_host = dst->socket_path = dst->stream_socket_path = NULL;
    dst->metric_namespace = NULL;
    dst->namespace_blacklist = dst->metric_blocklist = NULL;
    if (dup_str(&dst->bind_host, src->bind_host) != 0 ||
        dup_str(&dst->socket_path, src->socket_path) != 0 ||
        dup_str(&dst->stream_socket_path, src->stream_socket_path) != 0 ||
        dup_str(&dst->metric_namespace, src->metric_namespace) != 0)
        goto out_free;
    if (cmn_strv_dup(src->namespace_blacklist, src->nnamespace_blacklist,
                     &dst->namespace_blacklist) != 0)
        goto out_free;
    if (cmn_strv_dup(src->metric_blocklist, src->nmetric_blocklist,
                     &dst->metric_blocklist) != 0)
        goto out_free;
    return 0;
out_free:
    dsd_config_free(dst); /* failed lists are NULL already */
    return UV_ENOMEM;
}

/* Replaces *dst with a copy of the variable's value when it is set. */
static int env_str(const struct cmn_env *env, const char *name, char **dst)
{
    const char *v = NULL;
    if (cmn_env_str(env, name, &v) != 0)
        return UV_EINVAL;
    if (v == NULL)
        return 0;
    char *c = cmn_strdup(v);
    if (c == NULL)
        return UV_ENOMEM;
    cmn_free(*dst);
    *dst = c;
    return 0;
}

/* Replaces the list with the variable's items (space/comma separated). */
static int env_list(const struct cmn_env *env, const char *name, char ***dst,
                    size_t *n)
{
    const char *v = cmn_env_get(env, name);
    if (v == NULL)
        return 0;
    struct cmn_strv a = {NULL, 0, 0};
    cmn_split_list(v, cmn_strv_add, &a);
    if (a.err != 0) {
        cmn_strv_free(a.v, a.n);
        return a.err;
    }
    cmn_strv_free(*dst, *n);
    *dst = a.v;
    *n = a.n;
    return 0;
}

static int env_port(const struct cmn_env *env, int *port)
{
    const char *v = cmn_env_get(env, "DD_DOGSTATSD_PORT");
    if (v == NULL)
        return 0;
    if (strcmp(v, "__random__") == 0) {
        *port = -1;
        return 0;
    }
    int64_t p = 0;
    if (cmn_env_i64(env, "DD_DOGSTATSD_PORT", 0, 65535, &p) != 0)
        return UV_EINVAL;
    *port = (int)p;
    return 0;
}

static int env_eol(const struct cmn_env *env, struct dsd_config *cfg)
{
    char **items = NULL;
    size_t n = 0;
    int rc = env_list(env, "DD_DOGSTATSD_EOL_REQUIRED", &items, &n);
    if (rc != 0 || items == NULL)
        return rc;
    bool udp = false, uds = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(items[i], "udp") == 0) {
            udp = true;
        } else if (strcmp(items[i], "uds") == 0) {
            uds = true;
        } else if (strcmp(items[i], "named_pipe") == 0) {
            /* Windows only: accepted and meaningless here */
        } else {
            CMN_LOGE(COMP,
                     "DD_DOGSTATSD_EOL_REQUIRED: unknown transport \"%s\" "
                     "(expected udp, uds or named_pipe)",
                     items[i]);
            rc = UV_EINVAL;
        }
    }
    cmn_strv_free(items, n);
    if (rc == 0) {
        cfg->eol_required_udp = udp;
        cfg->eol_required_uds = uds;
    }
    return rc;
}

int dsd_config_from_env(struct dsd_config *cfg, const struct cmn_env *env)
{
    int64_t i;
    int rc;
    if ((rc = env_port(env, &cfg->port)) != 0)
        return rc;
    if ((rc = env_str(env, "DD_BIND_HOST", &cfg->bind_host)) != 0)
        return rc;
    if (cmn_env_bool(env, "DD_DOGSTATSD_NON_LOCAL_TRAFFIC",
                     &cfg->non_local_traffic) != 0)
        return UV_EINVAL;
    if ((rc = env_str(env, "DD_DOGSTATSD_SOCKET", &cfg->socket_path)) != 0)
        return rc;
    if ((rc = env_str(env, "DD_DOGSTATSD_STREAM_SOCKET",
                      &cfg->stream_socket_path)) != 0)
        return rc;
    i = (int64_t)cfg->buffer_size;
    if (cmn_env_i64(env, "DD_DOGSTATSD_BUFFER_SIZE", 1, 16 << 20, &i) != 0)
        return UV_EINVAL;
    cfg->buffer_size = (size_t)i;
    i = cfg->so_rcvbuf;
    if (cmn_env_i64(env, "DD_DOGSTATSD_SO_RCVBUF", 0, INT32_MAX, &i) != 0)
        return UV_EINVAL;
    cfg->so_rcvbuf = (int)i;
    i = (int64_t)cfg->ring_size;
    if (cmn_env_i64(env, "DRAINPIPE_RECEIVE_RING_SIZE",
                    (int64_t)DSD_RING_SIZE_MIN, (int64_t)1 << 30, &i) != 0)
        return UV_EINVAL;
    cfg->ring_size = (size_t)i;
    if (cmn_env_bool(env, "DRAINPIPE_RECEIVE_REALTIME", &cfg->rx_realtime) != 0)
        return UV_EINVAL;
    i = cfg->udp_sockets;
    if (cmn_env_i64(env, "DRAINPIPE_UDP_SOCKETS", 0, DSD_GROUP_MAX, &i) != 0)
        return UV_EINVAL;
    cfg->udp_sockets = (int)i;
    if ((rc = env_eol(env, cfg)) != 0)
        return rc;
    if (cmn_env_bool(env, "DD_DOGSTATSD_NO_AGGREGATION_PIPELINE",
                     &cfg->parse.no_aggregation_pipeline) != 0)
        return UV_EINVAL;
    if (cmn_env_bool(env, "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT",
                     &cfg->parse.origin_detection_client) != 0)
        return UV_EINVAL;
    if ((rc = env_str(env, "DD_STATSD_METRIC_NAMESPACE",
                      &cfg->metric_namespace)) != 0)
        return rc;
    if ((rc = env_list(env, "DD_STATSD_METRIC_NAMESPACE_BLACKLIST",
                       &cfg->namespace_blacklist,
                       &cfg->nnamespace_blacklist)) != 0)
        return rc;
    if ((rc = env_list(env, "DD_STATSD_METRIC_BLOCKLIST",
                       &cfg->metric_blocklist, &cfg->nmetric_blocklist)) != 0)
        return rc;
    if (cmn_env_bool(env, "DD_STATSD_METRIC_BLOCKLIST_MATCH_PREFIX",
                     &cfg->blocklist_match_prefix) != 0)
        return UV_EINVAL;
    double idle = (double)cfg->stream_idle_timeout_ms / 1000;
    if (cmn_env_f64(env, "DD_DOGSTATSD_STREAM_IDLE_TIMEOUT", 0, 86400, &idle) !=
        0)
        return UV_EINVAL;
    cfg->stream_idle_timeout_ms = (uint64_t)(idle * 1000 + 0.5);
    i = (int64_t)cfg->stream_conn_bytes_max;
    if (cmn_env_i64(env, "DD_DOGSTATSD_STREAM_CONN_BYTES_MAX", 0, INT64_MAX,
                    &i) != 0)
        return UV_EINVAL;
    cfg->stream_conn_bytes_max = (uint64_t)i;
    return 0;
}
