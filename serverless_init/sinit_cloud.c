/*
 * sinit_cloud.c - which cloud we run in (spec/pipeline.md §5.3), the tags
 * that follow from it (§5.4, spec/lambda-cloudrun.md §5.3) and the names of
 * the enhanced metrics (§5.5).
 *
 * Tags are kept as an ordered key -> value map: later sources overwrite
 * earlier ones by key (base < DD_TAGS/DD_EXTRA_TAGS < cloud < metadata <
 * version), and the metric tags are that map minus the high-cardinality
 * keys. Cloud Run values that come from the metadata server are "unknown"
 * until it answers; the aggregator's extra tags are replaced when it does.
 */
#include "sinit.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum sinit_cloud sinit_cloud_detect(const struct cmn_env *env)
{
    if (cmn_env_get(env, "K_SERVICE") != NULL)
        return cmn_env_get(env, "FUNCTION_TARGET") != NULL
                   ? SINIT_CLOUD_RUN_FUNCTION
                   : SINIT_CLOUD_RUN;
    if (cmn_env_get(env, "CLOUD_RUN_JOB") != NULL)
        return SINIT_CLOUD_RUN_JOB;
    if (cmn_env_get(env, "CONTAINER_APP_NAME") != NULL)
        return SINIT_CLOUD_CONTAINER_APP;
    if (cmn_env_get(env, "WEBSITE_STACK") != NULL)
        return SINIT_CLOUD_APP_SERVICE;
    return SINIT_CLOUD_LOCAL;
}

const char *sinit_cloud_origin(enum sinit_cloud c)
{
    switch (c) {
    case SINIT_CLOUD_RUN:
    case SINIT_CLOUD_RUN_FUNCTION:
        return "cloudrun";
    case SINIT_CLOUD_RUN_JOB:
        return "cloudrunjobs";
    case SINIT_CLOUD_CONTAINER_APP:
        return "containerapp";
    case SINIT_CLOUD_APP_SERVICE:
        return "appservice";
    case SINIT_CLOUD_LOCAL:
        break;
    }
    return "local";
}

bool sinit_cloud_is_gcp(enum sinit_cloud c)
{
    return c == SINIT_CLOUD_RUN || c == SINIT_CLOUD_RUN_FUNCTION ||
           c == SINIT_CLOUD_RUN_JOB;
}

void sinit_enhanced_names(enum sinit_cloud c, struct sinit_enhanced_names *o)
{
    memset(o, 0, sizeof(*o));
    switch (c) {
    case SINIT_CLOUD_RUN:
    case SINIT_CLOUD_RUN_FUNCTION:
        o->start[0] = "gcp.run.container.enhanced.cold_start";
        o->start[1] = "gcp.run.enhanced.cold_start";
        o->shutdown[0] = "gcp.run.container.enhanced.shutdown";
        o->shutdown[1] = "gcp.run.enhanced.shutdown";
        break;
    case SINIT_CLOUD_RUN_JOB:
        o->start[0] = "gcp.run.job.enhanced.task.started";
        o->shutdown[0] = "gcp.run.job.enhanced.task.ended";
        o->duration = "gcp.run.job.enhanced.task.duration";
        break;
    case SINIT_CLOUD_CONTAINER_APP:
        o->start[0] = "azure.containerapp.enhanced.cold_start";
        o->shutdown[0] = "azure.containerapp.enhanced.shutdown";
        break;
    case SINIT_CLOUD_APP_SERVICE:
        o->start[0] = "azure.app_services.enhanced.cold_start";
        o->start[1] = "azure.appservice.enhanced.cold_start";
        o->shutdown[0] = "azure.app_services.enhanced.shutdown";
        o->shutdown[1] = "azure.appservice.enhanced.shutdown";
        break;
    case SINIT_CLOUD_LOCAL:
        o->start[0] = "datadog.serverless_agent.enhanced.cold_start";
        o->shutdown[0] = "datadog.serverless_agent.enhanced.shutdown";
        break;
    }
}

/* ------------------------------------------------------------------------
 * Tag map
 */
void sinit_tags_init(struct sinit_tags *t)
{
    memset(t, 0, sizeof(*t));
}

void sinit_tags_free(struct sinit_tags *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->n; i++) {
        cmn_free(t->keys[i]);
        cmn_free(t->vals[i]);
    }
    cmn_free(t->keys);
    cmn_free(t->vals);
    sinit_tags_init(t);
}

static int tags_set_n(struct sinit_tags *t, const char *key, size_t klen,
                      const char *val, size_t vlen)
{
    char *v = NULL;
    if (val != NULL && (v = cmn_strndup(val, vlen)) == NULL)
        return UV_ENOMEM;
    for (size_t i = 0; i < t->n; i++) {
        if (strlen(t->keys[i]) == klen && memcmp(t->keys[i], key, klen) == 0) {
            cmn_free(t->vals[i]);
            t->vals[i] = v;
            return 0;
        }
    }
    if (t->n == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        char **k = cmn_reallocarray(t->keys, cap, sizeof(char *));
        if (k == NULL)
            goto out_free_v;
        t->keys = k;
        char **vv = cmn_reallocarray(t->vals, cap, sizeof(char *));
        if (vv == NULL)
            goto out_free_v;
        t->vals = vv;
        t->cap = cap;
    }
    t->keys[t->n] = cmn_strndup(key, klen);
    if (t->keys[t->n] == NULL)
        goto out_free_v;
    t->vals[t->n] = v;
    t->n++;
    return 0;
out_free_v:
    cmn_free(v);
    return UV_ENOMEM;
}

int sinit_tags_set(struct sinit_tags *t, const char *key, const char *val)
{
    return tags_set_n(t, key, strlen(key), val, val ? strlen(val) : 0);
}

int sinit_tags_set_raw(struct sinit_tags *t, struct cmn_slice tag)
{
    if (tag.len == 0)
        return 0;
    const char *colon = memchr(tag.p, ':', tag.len);
    if (colon == NULL)
        return tags_set_n(t, tag.p, tag.len, NULL, 0);
    size_t klen = (size_t)(colon - tag.p);
    if (klen == 0)
        return 0; /* ":v" has no key: ignored */
    return tags_set_n(t, tag.p, klen, colon + 1, tag.len - klen - 1);
}

const char *sinit_tags_get(const struct sinit_tags *t, const char *key)
{
    for (size_t i = 0; i < t->n; i++)
        if (strcmp(t->keys[i], key) == 0)
            return t->vals[i] ? t->vals[i] : "";
    return NULL;
}

static const char *const high_card_keys[] = {
    "container_id",    "gcr.container_id",  "gcrfx.container_id",
    "replica_name",    "aca.replica.name",  "gcrj.execution_name",
    "gcrj.task_index", "gcrj.task_attempt", "gcrj.task_count",
};

bool sinit_tag_is_high_cardinality(const char *key)
{
    for (size_t i = 0; i < sizeof(high_card_keys) / sizeof(*high_card_keys);
         i++)
        if (strcmp(key, high_card_keys[i]) == 0)
            return true;
    return false;
}

void sinit_gcp_md_free(struct sinit_gcp_md *md)
{
    if (md == NULL)
        return;
    cmn_free(md->container_id);
    cmn_free(md->region);
    cmn_free(md->project_id);
    memset(md, 0, sizeof(*md));
}

/* ------------------------------------------------------------------------
 * Building the map
 */
static void lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s - 'A' + 'a');
}

/* Sets key to the lowercased value of variable var, if set. */
static int set_lower_env(struct sinit_tags *t, const struct cmn_env *env,
                         const char *key, const char *var)
{
    const char *v = cmn_env_get(env, var);
    if (v == NULL)
        return 0;
    char *l = cmn_strdup(v);
    if (l == NULL)
        return UV_ENOMEM;
    lower(l);
    int err = sinit_tags_set(t, key, l);
    cmn_free(l);
    return err;
}

struct split_ctx {
    struct sinit_tags *t;
    int err;
};

static void add_split_tag(struct cmn_slice item, void *data)
{
    struct split_ctx *c = data;
    if (c->err == 0)
        c->err = sinit_tags_set_raw(c->t, item);
}

/* Sets key and prefix.key to val ("unknown" when NULL or empty). */
static int set_both(struct sinit_tags *t, const char *prefix, const char *key,
                    const char *val)
{
    char pk[96];
    if (val == NULL || *val == '\0')
        val = "unknown";
    int err = sinit_tags_set(t, key, val);
    if (err == 0 && prefix != NULL) {
        if ((size_t)snprintf(pk, sizeof(pk), "%s.%s", prefix, key) >=
            sizeof(pk))
            return UV_EINVAL;
        err = sinit_tags_set(t, pk, val);
    }
    return err;
}

/* Sets key to the value of var when var is set. */
static int set_env(struct sinit_tags *t, const char *key,
                   const struct cmn_env *env, const char *var)
{
    const char *v = cmn_env_get(env, var);
    return v != NULL ? sinit_tags_set(t, key, v) : 0;
}

static int set_fmt(struct sinit_tags *t, const char *key, const char *fmt, ...)
    CMN_PRINTF(3, 4);
static int set_fmt(struct sinit_tags *t, const char *key, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char tmp[1024];
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp))
        return UV_EINVAL;
    return sinit_tags_set(t, key, tmp);
}

static int gcp_tags(struct sinit_tags *t, const struct cmn_env *env,
                    enum sinit_cloud cloud, const struct sinit_gcp_md *md)
{
    const char *pfx = cloud == SINIT_CLOUD_RUN_JOB        ? "gcrj"
                      : cloud == SINIT_CLOUD_RUN_FUNCTION ? "gcrfx"
                                                          : "gcr";
    const char *origin = sinit_cloud_origin(cloud);
    const char *project = md && md->project_id ? md->project_id : NULL;
    const char *region = md && md->region ? md->region : NULL;
    int err = 0;

    err = err ? err : sinit_tags_set(t, "origin", origin);
    err = err ? err : sinit_tags_set(t, "_dd.origin", origin);
    if (cloud == SINIT_CLOUD_RUN_JOB) {
        const char *job = cmn_env_get(env, "CLOUD_RUN_JOB");
        err = err ? err : set_both(t, pfx, "job_name", job);
        err =
            err ? err
                : set_env(t, "gcrj.execution_name", env, "CLOUD_RUN_EXECUTION");
        err = err ? err
                  : set_env(t, "gcrj.task_index", env, "CLOUD_RUN_TASK_INDEX");
        err = err ? err
                  : set_env(t, "gcrj.task_attempt", env,
                            "CLOUD_RUN_TASK_ATTEMPT");
        err = err ? err
                  : set_env(t, "gcrj.task_count", env, "CLOUD_RUN_TASK_COUNT");
    } else {
        const char *svc = cmn_env_get(env, "K_SERVICE");
        err = err ? err
                  : set_both(t, pfx, "revision_name",
                             cmn_env_get(env, "K_REVISION"));
        err = err ? err : set_both(t, pfx, "service_name", svc);
        err = err ? err
                  : set_both(t, pfx, "configuration_name",
                             cmn_env_get(env, "K_CONFIGURATION"));
        if (cloud == SINIT_CLOUD_RUN_FUNCTION) {
            err = err ? err
                      : set_env(t, "gcrfx.build_function_target", env,
                                "FUNCTION_TARGET");
            err = err ? err
                      : set_env(t, "gcrfx.function_signature_type", env,
                                "FUNCTION_SIGNATURE_TYPE");
        }
    }
    if (err != 0 || md == NULL)
        return err;

    /* Metadata-server tags: only once it answered (or failed: unknown). */
    err = err ? err : set_both(t, pfx, "container_id", md->container_id);
    err = err ? err : set_both(t, pfx, "location", region);
    err = err ? err : set_both(t, pfx, "project_id", project);
    if (err != 0)
        return err;
    project = sinit_tags_get(t, "project_id");
    region = sinit_tags_get(t, "location");
    if (cloud == SINIT_CLOUD_RUN_JOB)
        return set_fmt(t, "gcrj.resource_name",
                       "projects/%s/locations/%s/jobs/%s", project, region,
                       sinit_tags_get(t, "job_name"));
    if (cloud == SINIT_CLOUD_RUN_FUNCTION)
        return set_fmt(t, "gcrfx.resource_name",
                       "projects/%s/locations/%s/services/%s/functions/%s",
                       project, region, sinit_tags_get(t, "service_name"),
                       cmn_env_get(env, "FUNCTION_TARGET"));
    return set_fmt(t, "gcr.resource_name",
                   "projects/%s/locations/%s/services/%s", project, region,
                   sinit_tags_get(t, "service_name"));
}

/* Container Apps (spec §5.4; the Agent's older code exits when the Azure
 * subscription and resource group are missing: we only skip those tags). */
static int aca_tags(struct sinit_tags *t, const struct cmn_env *env)
{
    int err = 0;
    const char *app = cmn_env_get(env, "CONTAINER_APP_NAME");
    err = err ? err : sinit_tags_set(t, "app_name", app);
    err = err ? err : sinit_tags_set(t, "aca.app.name", app);
    const char *dns = cmn_env_get(env, "CONTAINER_APP_ENV_DNS_SUFFIX");
    if (dns != NULL) {
        /* region: third-from-last '.' token */
        const char *tok[64];
        size_t len[64], n = 0;
        for (const char *p = dns; n < 64;) {
            const char *dot = strchr(p, '.');
            tok[n] = p;
            len[n] = dot ? (size_t)(dot - p) : strlen(p);
            n++;
            if (dot == NULL)
                break;
            p = dot + 1;
        }
        if (n >= 3) {
            char r[256];
            size_t l = len[n - 3] < sizeof(r) - 1 ? len[n - 3] : sizeof(r) - 1;
            memcpy(r, tok[n - 3], l);
            r[l] = '\0';
            err = err ? err : sinit_tags_set(t, "region", r);
            err = err ? err : sinit_tags_set(t, "aca.app.region", r);
        }
    }
    err = err ? err : set_env(t, "revision", env, "CONTAINER_APP_REVISION");
    err = err ? err
              : set_env(t, "aca.app.revision", env, "CONTAINER_APP_REVISION");
    err = err ? err
              : set_env(t, "replica_name", env, "CONTAINER_APP_REPLICA_NAME");
    err =
        err ? err
            : set_env(t, "aca.replica.name", env, "CONTAINER_APP_REPLICA_NAME");
    const char *sub = cmn_env_get(env, "DD_AZURE_SUBSCRIPTION_ID");
    const char *rg = cmn_env_get(env, "DD_AZURE_RESOURCE_GROUP");
    if (err == 0 && sub != NULL && rg != NULL) {
        err = err ? err : sinit_tags_set(t, "subscription_id", sub);
        err = err ? err : sinit_tags_set(t, "aca.subscription.id", sub);
        err = err ? err : sinit_tags_set(t, "resource_group", rg);
        err = err ? err : sinit_tags_set(t, "aca.resource.group", rg);
        char *lapp = cmn_strdup(app);
        if (lapp == NULL)
            return UV_ENOMEM;
        lower(lapp);
        err = err ? err
                  : set_fmt(t, "resource_id",
                            "/subscriptions/%s/resourcegroups/%s/providers/"
                            "microsoft.app/containerapps/%s",
                            sub, rg, lapp);
        err = err ? err
                  : sinit_tags_set(t, "aca.resource.id",
                                   sinit_tags_get(t, "resource_id"));
        cmn_free(lapp);
    } else if (err == 0) {
        CMN_LOGW("cloud", "DD_AZURE_SUBSCRIPTION_ID and "
                          "DD_AZURE_RESOURCE_GROUP are not both set: no "
                          "resource_id tag");
    }
    return err;
}

static const char *aas_runtime(const char *stack)
{
    static const struct {
        const char *stack, *runtime;
    } map[] = {{"DOCKER", "Container"}, {"NODE", "Node.js"},
               {"PYTHON", "Python"},    {"JAVA", "Java"},
               {"TOMCAT", "Java"},      {"DOTNETCORE", ".NET"},
               {"PHP", "PHP"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(*map); i++)
        if (strcmp(stack, map[i].stack) == 0)
            return map[i].runtime;
    return "unknown";
}

static int aas_tags(struct sinit_tags *t, const struct cmn_env *env)
{
    int err = 0;
    const char *site = cmn_env_get(env, "WEBSITE_SITE_NAME");
    err = err ? err : set_env(t, "app_name", env, "WEBSITE_SITE_NAME");
    err = err ? err : set_env(t, "region", env, "REGION_NAME");
    err = err ? err
              : set_env(t, "aas.environment.instance_id", env,
                        "WEBSITE_INSTANCE_ID");
    err =
        err ? err
            : set_env(t, "aas.environment.instance_name", env, "COMPUTERNAME");
    err = err ? err : sinit_tags_set(t, "aas.environment.os", "linux");
    err = err ? err
              : sinit_tags_set(t, "aas.environment.runtime",
                               aas_runtime(cmn_env_get(env, "WEBSITE_STACK")));
    const char *rg = cmn_env_get(env, "WEBSITE_RESOURCE_GROUP");
    const char *owner = cmn_env_get(env, "WEBSITE_OWNER_NAME");
    char sub[128] = "";
    if (owner != NULL) {
        size_t l = strcspn(owner, "+");
        if (l >= sizeof(sub))
            l = sizeof(sub) - 1;
        memcpy(sub, owner, l);
        sub[l] = '\0';
    }
    err = err ? err
              : set_env(t, "aas.resource.group", env, "WEBSITE_RESOURCE_GROUP");
    if (err == 0 && sub[0] != '\0')
        err = sinit_tags_set(t, "aas.subscription.id", sub);
    if (err == 0 && sub[0] != '\0' && rg != NULL && site != NULL) {
        char *l = cmn_strdup(site);
        if (l == NULL)
            return UV_ENOMEM;
        lower(l);
        err = set_fmt(t, "aas.resource.id",
                      "/subscriptions/%s/resourcegroups/%s/providers/"
                      "microsoft.web/sites/%s",
                      sub, rg, l);
        cmn_free(l);
    }
    bool fn = cmn_env_get(env, "FUNCTIONS_WORKER_RUNTIME") != NULL;
    err = err ? err
              : sinit_tags_set(t, "aas.site.kind", fn ? "functionapp" : "app");
    if (err == 0 && fn)
        err = set_env(t, "aas.environment.function_runtime", env,
                      "FUNCTIONS_EXTENSION_VERSION");
    err = err ? err : set_env(t, "aas.site.name", env, "WEBSITE_SITE_NAME");
    err = err ? err : sinit_tags_set(t, "aas.site.type", "app");
    err = err ? err : sinit_tags_set(t, "origin", "appservice");
    err = err ? err : sinit_tags_set(t, "_dd.origin", "appservice");
    return err;
}

int sinit_tags_build(struct sinit_tags *t, const struct cmn_env *env,
                     enum sinit_cloud cloud, bool sidecar,
                     const struct sinit_gcp_md *md)
{
    int err = 0;
    err = err ? err : set_lower_env(t, env, "env", "DD_ENV");
    err = err ? err : set_lower_env(t, env, "service", "DD_SERVICE");
    err = err ? err : set_lower_env(t, env, "version", "DD_VERSION");
    if (err != 0)
        return err;
    struct split_ctx sc = {t, 0};
    const char *v = cmn_env_get(env, "DD_TAGS");
    if (v != NULL)
        cmn_split_list(v, add_split_tag, &sc);
    v = cmn_env_get(env, "DD_EXTRA_TAGS");
    if (v != NULL)
        cmn_split_list(v, add_split_tag, &sc);
    if (sc.err != 0)
        return sc.err;

    switch (cloud) {
    case SINIT_CLOUD_RUN:
    case SINIT_CLOUD_RUN_FUNCTION:
    case SINIT_CLOUD_RUN_JOB:
        err = gcp_tags(t, env, cloud, md);
        break;
    case SINIT_CLOUD_CONTAINER_APP:
        err = aca_tags(t, env);
        err = err ? err : sinit_tags_set(t, "origin", "containerapp");
        err = err ? err : sinit_tags_set(t, "_dd.origin", "containerapp");
        break;
    case SINIT_CLOUD_APP_SERVICE:
        err = aas_tags(t, env);
        break;
    case SINIT_CLOUD_LOCAL: {
        char host[256];
        if (gethostname(host, sizeof(host)) != 0)
            host[0] = '\0';
        host[sizeof(host) - 1] = '\0';
        err = sinit_tags_set(t, "instance", host[0] ? host : "unknown");
        err = err ? err : sinit_tags_set(t, "local", "true");
        break;
    }
    }
    if (err != 0)
        return err;
    return sinit_tags_set(
        t, sidecar ? "_dd.datadog_sidecar_version" : "datadog_init_version",
        CMN_VERSION);
}

int sinit_tags_metric_list(const struct sinit_tags *t, char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (t->n == 0)
        return 0;
    char **v = cmn_calloc(t->n, sizeof(char *));
    if (v == NULL)
        return UV_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < t->n; i++) {
        if (sinit_tag_is_high_cardinality(t->keys[i]))
            continue;
        size_t kl = strlen(t->keys[i]);
        size_t vl = t->vals[i] ? strlen(t->vals[i]) + 1 : 0;
        char *s = cmn_malloc(kl + vl + 1);
        if (s == NULL) {
            cmn_strv_free(v, k);
            return UV_ENOMEM;
        }
        memcpy(s, t->keys[i], kl);
        if (t->vals[i] != NULL) {
            s[kl] = ':';
            memcpy(s + kl + 1, t->vals[i], vl - 1);
        }
        s[kl + vl] = '\0';
        v[k++] = s;
    }
    if (k == 0) {
        cmn_free(v);
        return 0;
    }
    *out = v;
    *n = k;
    return 0;
}

int sinit_config_tags(char ***out, size_t *n)
{
    *out = NULL;
    *n = 0;
    int err = cmn_env_tags_add(NULL, out, n);
    if (err != 0) {
        cmn_strv_free(*out, *n);
        *out = NULL;
        *n = 0;
    }
    return err;
}

int sinit_dp_config(const char *profile, dp_config **out)
{
    *out = NULL;
    int err = dp_config_new(out);
    if (err == 0)
        err = dp_config_set(*out, "drainpipe_profile", profile);
    if (err == 0)
        err = dp_config_set(*out, "drainpipe_submit_queue_size", "64KiB");
    if (err == 0)
        err = dp_config_from_env(*out);
    return err;
}
