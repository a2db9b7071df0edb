/*
 * dp_config.c - dp_config: the embedder's settings, kept as an overlay of
 * environment variables (Agent key "api_key" = DD_API_KEY) read through
 * the same parsers as the binary (lc_pipeline_config_from_env), so a key
 * means exactly what its variable means, with the same errors.
 *
 * Invariant: a value in the overlay has been accepted by its parser once
 * (dp_config_set checks it alone), and dp_start parses the whole set
 * again: combinations are checked there. Limits: DP_CFG_MAX settings.
 */
#include "dp_lib.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#define COMP "libdrainpipe"
#define DP_CFG_MAX 128     /* settings in one config */
#define DP_CFG_NAME_MAX 64 /* environment name of a key */

/* The variables a key may name (docs/libdrainpipe.md lists them). */
static const char *const dp_vars[] = {
    "DD_ADDITIONAL_ENDPOINTS",
    "DD_AGGREGATOR_STOP_TIMEOUT",
    "DD_API_KEY",
    "DD_BIND_HOST",
    "DD_DD_URL",
    "DD_DOGSTATSD_BUFFER_SIZE",
    "DD_DOGSTATSD_CONTEXT_EXPIRY_SECONDS",
    "DD_DOGSTATSD_CONTEXT_LIMIT",
    "DD_DOGSTATSD_EOL_REQUIRED",
    "DD_DOGSTATSD_EXPIRY_SECONDS",
    "DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS",
    "DD_DOGSTATSD_NON_LOCAL_TRAFFIC",
    "DD_DOGSTATSD_NO_AGGREGATION_PIPELINE",
    "DD_DOGSTATSD_NO_AGGREGATION_PIPELINE_BATCH_SIZE",
    "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT",
    "DD_DOGSTATSD_PORT",
    "DD_DOGSTATSD_SOCKET",
    "DD_DOGSTATSD_SO_RCVBUF",
    "DD_DOGSTATSD_STREAM_CONN_BYTES_MAX",
    "DD_DOGSTATSD_STREAM_IDLE_TIMEOUT",
    "DD_DOGSTATSD_STREAM_SOCKET",
    "DD_DOGSTATSD_TAGS",
    "DD_ENABLE_PAYLOADS_EVENTS",
    "DD_ENABLE_PAYLOADS_SERIES",
    "DD_ENABLE_PAYLOADS_SERVICE_CHECKS",
    "DD_ENABLE_PAYLOADS_SKETCHES",
    "DD_FORWARDER_BACKOFF_BASE",
    "DD_FORWARDER_BACKOFF_FACTOR",
    "DD_FORWARDER_BACKOFF_MAX",
    "DD_FORWARDER_MAX_CONCURRENT_REQUESTS",
    "DD_FORWARDER_RECOVERY_INTERVAL",
    "DD_FORWARDER_RECOVERY_RESET",
    "DD_FORWARDER_RETRY_QUEUE_PAYLOADS_MAX_SIZE",
    "DD_FORWARDER_STOP_TIMEOUT",
    "DD_FORWARDER_STOP_WAIT_FOR_INFLIGHT",
    "DD_FORWARDER_TIMEOUT",
    "DD_HISTOGRAM_AGGREGATES",
    "DD_HISTOGRAM_COPY_TO_DISTRIBUTION",
    "DD_HISTOGRAM_COPY_TO_DISTRIBUTION_PREFIX",
    "DD_HISTOGRAM_PERCENTILES",
    "DD_HOSTNAME",
    "DD_LOG_LEVEL",
    "DD_MIN_TLS_VERSION",
    "DD_PROXY_HTTP",
    "DD_PROXY_HTTPS",
    "DD_PROXY_NO_PROXY",
    "DD_SERIALIZER_COMPRESSOR_KIND",
    "DD_SERIALIZER_MAX_PAYLOAD_SIZE",
    "DD_SERIALIZER_MAX_SERIES_PAYLOAD_SIZE",
    "DD_SERIALIZER_MAX_SERIES_POINTS_PER_PAYLOAD",
    "DD_SERIALIZER_MAX_SERIES_UNCOMPRESSED_PAYLOAD_SIZE",
    "DD_SERIALIZER_MAX_UNCOMPRESSED_PAYLOAD_SIZE",
    "DD_SERIALIZER_ZSTD_COMPRESSOR_LEVEL",
    "DD_SITE",
    "DD_SKIP_SSL_VALIDATION",
    "DD_STATSD_METRIC_BLOCKLIST",
    "DD_STATSD_METRIC_BLOCKLIST_MATCH_PREFIX",
    "DD_STATSD_METRIC_NAMESPACE",
    "DD_STATSD_METRIC_NAMESPACE_BLACKLIST",
    "DD_TAGS",
    "DD_URL",
    "DD_USE_V2_API_SERIES",
    "DRAINPIPE_LOCAL_FILE",
    "DRAINPIPE_MEMORY_LIMIT",
    "DRAINPIPE_PROFILE",
    "DRAINPIPE_RECEIVE_REALTIME",
    "DRAINPIPE_RECEIVE_RING_SIZE",
    "DRAINPIPE_SERVERLESS_DROP_EVENTS",
    "DRAINPIPE_SINK",
    DP_SUBMIT_QUEUE_ENV,
    "DRAINPIPE_UDP_SOCKETS",
};

struct dp_kv {
    char name[DP_CFG_NAME_MAX]; /* environment name */
    char *value;                /* owned; a secret page for API keys */
    bool secret;
};

struct dp_config {
    struct dp_kv *kv; /* owned, DP_CFG_MAX entries, [0, n) in use */
    size_t n;
    bool use_env; /* dp_config_from_env: the process environment below */
};

int dp_config_new(dp_config **out)
{
    if (out == NULL)
        return UV_EINVAL;
    dp_config *c = cmn_calloc(1, sizeof(*c));
    if (c == NULL)
        return UV_ENOMEM;
    /* entries [0, n) only are ever read, each written whole as it is
     * added: malloc leaves the unused pages untouched */
    c->kv = cmn_malloc(DP_CFG_MAX * sizeof(*c->kv));
    if (c->kv == NULL) {
        cmn_free(c);
        return UV_ENOMEM;
    }
    *out = c;
    return 0;
}

static void kv_clear(struct dp_kv *kv)
{
    if (kv->secret)
        cmn_secret_free(kv->value);
    else
        cmn_free(kv->value);
    kv->value = NULL;
}

void dp_config_free(dp_config *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        kv_clear(&c->kv[i]);
    cmn_free(c->kv);
    cmn_free(c);
}

/* The overlay first, then (after dp_config_from_env) the environment. */
static const char *config_getenv(const char *name, void *data)
{
    const dp_config *c = data;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[i].name, name) == 0)
            return c->kv[i].value;
    return c->use_env ? getenv(name) : NULL;
}

/* The one setting name=value alone, for dp_config_set's check. */
struct one_var {
    const char *name, *value;
};

static const char *one_getenv(const char *name, void *data)
{
    const struct one_var *v = data;
    return strcmp(name, v->name) == 0 ? v->value : NULL;
}

static int read_queue_size(const struct cmn_env *env, size_t *out)
{
    const char *v = cmn_env_get(env, DP_SUBMIT_QUEUE_ENV);
    if (v == NULL || v[0] == '\0')
        return 0;
    size_t n;
    if (cmn_parse_bytes(cmn_slice_cstr(v), &n) != 0 || n < DP_Q_MIN_SIZE ||
        n > ((size_t)1 << 30)) {
        CMN_LOGE(COMP,
                 "drainpipe_submit_queue_size: expected a size from 64KiB "
                 "to 1GiB, got \"%s\"",
                 v);
        return UV_EINVAL;
    }
    *out = n;
    return 0;
}

/* drainpipe_profile (DRAINPIPE_PROFILE): whose defaults. */
enum dp_profile {
    DP_PROFILE_EMBEDDED,
    DP_PROFILE_SERVERLESS,
    DP_PROFILE_LAMBDA
};

static int read_profile(const struct cmn_env *env, enum dp_profile *out)
{
    const char *v = cmn_env_get(env, "DRAINPIPE_PROFILE");
    *out = DP_PROFILE_EMBEDDED;
    if (v == NULL || v[0] == '\0' || strcmp(v, "embedded") == 0)
        return 0;
    if (strcmp(v, "serverless") == 0)
        *out = DP_PROFILE_SERVERLESS;
    else if (strcmp(v, "lambda") == 0)
        *out = DP_PROFILE_LAMBDA;
    else {
        CMN_LOGE(COMP,
                 "drainpipe_profile: expected embedded, serverless or "
                 "lambda, got \"%s\"",
                 v);
        return UV_EINVAL;
    }
    return 0;
}

/* The profile's defaults, under the environment and dp_config_set. */
static void profile_defaults(struct lc_pipeline_config *c, enum dp_profile pr)
{
    if (pr == DP_PROFILE_SERVERLESS) { /* spec/pipeline.md §5.2 */
        c->fwd.stop_timeout_s = 3;
        c->aggregator_stop_timeout_ms = 2000;
        c->agg.flush_interval_s = 3;
        c->agg.use_v2_series = true;
        cmn_free(c->dsd.socket_path);
        cmn_free(c->dsd.stream_socket_path);
        c->dsd.socket_path = c->dsd.stream_socket_path = NULL;
    } else if (pr == DP_PROFILE_LAMBDA) { /* spec/lambda-cloudrun.md §4 */
        c->fwd.stop_timeout_s = 2;
        c->agg.flush_interval_s = 60; /* bottlecap's race interval */
    }
    /* Both load libcurl and open the first connection after the job (or
     * the first /next) is under way, not on its critical path. */
    if (pr != DP_PROFILE_EMBEDDED)
        c->fwd.warm_start = true;
}

/* The enhanced metrics serverless-init and the Lambda extension submit
 * in-process: the Agent adds them directly, never through DogStatsD, so
 * statsd_metric_namespace must not prefix them. */
static const char *const enhanced_prefixes[] = {
    "aws.lambda.enhanced.",
    "gcp.run.container.enhanced.",
    "gcp.run.enhanced.",
    "gcp.run.job.enhanced.",
    "azure.containerapp.enhanced.",
    "azure.app_services.enhanced.",
    "azure.appservice.enhanced.",
    "datadog.serverless_agent.enhanced.",
};

/* With a namespace set: the blacklist (the configured one, or the
 * Agent's default) plus the enhanced prefixes. */
static int exempt_enhanced(struct dsd_config *d)
{
    if (d->metric_namespace == NULL || d->metric_namespace[0] == '\0')
        return 0;
    struct cmn_strv l = {NULL, 0, 0};
    size_t nstd;
    const char *const *std = dsd_std_namespace_blacklist(&nstd);
    const char *const *from = d->namespace_blacklist
                                  ? (const char *const *)d->namespace_blacklist
                                  : std;
    size_t n = d->namespace_blacklist ? d->nnamespace_blacklist : nstd;
    for (size_t i = 0; i < n; i++)
        cmn_strv_add(cmn_slice_cstr(from[i]), &l);
    for (size_t i = 0;
         i < sizeof(enhanced_prefixes) / sizeof(*enhanced_prefixes); i++)
        cmn_strv_add(cmn_slice_cstr(enhanced_prefixes[i]), &l);
    if (l.err != 0) {
        cmn_strv_free(l.v, l.n);
        return l.err;
    }
    cmn_strv_free(d->namespace_blacklist, d->nnamespace_blacklist);
    d->namespace_blacklist = l.v;
    d->nnamespace_blacklist = l.n;
    return 0;
}

/* The profile's forced values, over everything (spec §5.2 step 5; the
 * Lambda origin of spec §3). */
static int profile_force(struct lc_pipeline_config *c, enum dp_profile pr)
{
    if (pr == DP_PROFILE_EMBEDDED)
        return 0;
    int rc = exempt_enhanced(&c->dsd);
    if (rc != 0)
        return rc;
    /* serverless-init's mode drops events and service checks when asked
     * (DRAINPIPE_SERVERLESS_DROP_EVENTS); the Lambda extension keeps the
     * full DogStatsD, so it is not agg.serverless */
    c->agg.serverless = pr == DP_PROFILE_SERVERLESS;
    c->agg.origin_product = 1;
    c->agg.origin_service = 472;
    if (pr == DP_PROFILE_LAMBDA)
        c->agg.origin_category = 38;
    cmn_free(c->agg.hostname);
    c->agg.hostname = cmn_strdup("");
    return c->agg.hostname == NULL ? UV_ENOMEM : 0;
}

static int parse_all(const struct cmn_env *env, struct dp__settings *s)
{
    lc_pipeline_config_defaults(&s->lc);
    /* An embedder's stop must not lose its last samples (DESIGN.md): the
     * drain flushes the open bucket and lets in-flight requests finish,
     * as serverless-init does (spec §5.2). Either may be set back. */
    s->lc.agg.flush_incomplete_buckets = true;
    s->lc.fwd.stop_wait_for_inflight = true;
    s->queue_size = DP_Q_DEFAULT_SIZE;
    enum dp_profile pr;
    int rc = read_profile(env, &pr);
    if (rc != 0)
        return rc;
    profile_defaults(&s->lc, pr);
    rc = lc_pipeline_config_from_env(&s->lc, env);
    if (rc == 0)
        rc = read_queue_size(env, &s->queue_size);
    if (rc == 0)
        rc = profile_force(&s->lc, pr);
    return rc;
}

int dp__config_build(const dp_config *c, struct dp__settings *out)
{
    struct cmn_env env = {config_getenv, (void *)c};
    int rc = parse_all(&env, out);
    out->lc.no_listener_ok = true;
    return rc;
}

int dp_config_from_env(dp_config *c)
{
    if (c == NULL)
        return UV_EINVAL;
    /* As the binary does: the environment's copies of the keys move to
     * pages kept out of core dumps (the original strings are zeroed). */
    int prc = cmn_env_protect("DD_API_KEY");
    if (prc == 0)
        prc = cmn_env_protect("DD_ADDITIONAL_ENDPOINTS");
    if (prc != 0)
        return prc;
    bool was = c->use_env;
    c->use_env = true;
    struct dp__settings s;
    int rc = dp__config_build(c, &s);
    lc_pipeline_config_free(&s.lc);
    if (rc != 0)
        c->use_env = was;
    return rc;
}

/* "api_key" -> "DD_API_KEY", "drainpipe_sink" -> "DRAINPIPE_SINK". */
static int key_to_var(const char *key, char *name, size_t cap)
{
    size_t off = 0;
    if (strncmp(key, "drainpipe_", 10) != 0) {
        memcpy(name, "DD_", 3);
        off = 3;
    }
    size_t len = strlen(key);
    if (len == 0 || off + len >= cap)
        return UV_ENOENT;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)key[i];
        if (!islower(ch) && !isdigit(ch) && ch != '_')
            return UV_ENOENT;
        name[off + i] = (char)toupper(ch);
    }
    name[off + len] = '\0';
    for (size_t i = 0; i < sizeof(dp_vars) / sizeof(dp_vars[0]); i++)
        if (strcmp(dp_vars[i], name) == 0)
            return 0;
    return UV_ENOENT;
}

static struct dp_kv *find_kv(dp_config *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->kv[i].name, name) == 0)
            return &c->kv[i];
    return NULL;
}

int dp_config_set(dp_config *c, const char *key, const char *value)
{
    char name[DP_CFG_NAME_MAX];
    if (c == NULL || key == NULL)
        return UV_EINVAL;
    if (key_to_var(key, name, sizeof(name)) != 0) {
        CMN_LOGE(COMP, "dp_config_set: unknown key \"%s\"", key);
        return UV_ENOENT;
    }
    struct dp_kv *kv = find_kv(c, name);
    if (value == NULL) { /* remove: the last entry takes its place */
        if (kv != NULL) {
            kv_clear(kv);
            *kv = c->kv[--c->n];
            memset(&c->kv[c->n], 0, sizeof(c->kv[c->n]));
        }
        return 0;
    }
    struct one_var one = {name, value};
    struct cmn_env env = {one_getenv, &one};
    struct dp__settings s;
    int rc = parse_all(&env, &s);
    lc_pipeline_config_free(&s.lc);
    if (rc != 0)
        return UV_EINVAL; /* logged by the parser, naming the variable */
    if (kv == NULL) {
        if (c->n == DP_CFG_MAX)
            return UV_ENOMEM;
        kv = &c->kv[c->n];
    }
    bool secret = strstr(name, "API_KEY") != NULL;
    char *v =
        secret ? cmn_secret_strndup(value, strlen(value)) : cmn_strdup(value);
    if (v == NULL)
        return UV_ENOMEM;
    if (kv == &c->kv[c->n]) {
        memcpy(kv->name, name, strlen(name) + 1);
        c->n++;
    } else {
        kv_clear(kv);
    }
    kv->value = v;
    kv->secret = secret;
    return 0;
}
