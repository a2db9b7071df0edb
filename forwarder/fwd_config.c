/*
 * fwd_config.c - the forwarder's configuration: the Agent's defaults
 * (spec/pipeline.md §6) and the DD_* environment variables that change them
 * (§3.5 site and URL resolution, §3.6 forwarder settings).
 *
 * Invariant: every string in a struct fwd_config is owned by it and freed
 * by fwd_config_free, which accepts a partially filled config, so an error
 * half-way through fwd_config_from_env leaks nothing.
 */
#include <ctype.h>
#include <string.h>

#include <jansson.h>

#include "fwd_internal.h"

#define COMP "config"

void fwd_config_defaults(struct fwd_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->timeout_s = 20;
    cfg->max_concurrent = 10;
    cfg->backoff_base = 2;
    cfg->backoff_factor = 2;
    cfg->backoff_max = 64;
    cfg->recovery_interval = 2;
    cfg->retry_queue_max_bytes = 15 * 1024 * 1024;
    cfg->stop_timeout_s = 2;
    cfg->stop_wait_for_inflight = false;
    cfg->min_tls_version = 12;
    cfg->warm_start = false;
}

static void endpoint_free(struct fwd_endpoint_cfg *e)
{
    cmn_free(e->url);
    for (size_t i = 0; i < e->nkeys; i++)
        cmn_secret_free(e->keys[i]);
    cmn_free(e->keys);
    e->url = NULL;
    e->keys = NULL;
    e->nkeys = 0;
}

void fwd_config_free(struct fwd_config *cfg)
{
    if (cfg == NULL)
        return;
    for (size_t i = 0; i < cfg->nendpoints; i++)
        endpoint_free(&cfg->endpoints[i]);
    cmn_free(cfg->endpoints);
    cmn_free(cfg->proxy_https);
    cmn_free(cfg->proxy_http);
    cmn_free(cfg->no_proxy);
    cmn_free(cfg->ca_file);
    cfg->endpoints = NULL;
    cfg->nendpoints = 0;
    cfg->proxy_https = cfg->proxy_http = cfg->no_proxy = NULL;
    cfg->ca_file = NULL;
}

static int dup_opt(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL)
        return 0;
    *dst = cmn_strdup(src);
    return *dst == NULL ? UV_ENOMEM : 0;
}

int fwd__config_copy(struct fwd_config *dst, const struct fwd_config *src)
{
    *dst = *src;
    dst->endpoints = NULL;
    dst->nendpoints = 0;
    dst->proxy_https = dst->proxy_http = dst->no_proxy = dst->ca_file = NULL;
    if (dup_opt(&dst->proxy_https, src->proxy_https) != 0 ||
        dup_opt(&dst->proxy_http, src->proxy_http) != 0 ||
        dup_opt(&dst->no_proxy, src->no_proxy) != 0 ||
        dup_opt(&dst->ca_file, src->ca_file) != 0)
        goto out_free;
    if (src->nendpoints == 0)
        return 0;
    dst->endpoints = cmn_calloc(src->nendpoints, sizeof(*dst->endpoints));
    if (dst->endpoints == NULL)
        goto out_free;
    for (size_t i = 0; i < src->nendpoints; i++) {
        const struct fwd_endpoint_cfg *s = &src->endpoints[i];
        struct fwd_endpoint_cfg *d = &dst->endpoints[i];
        dst->nendpoints = i + 1;
        d->url = cmn_strdup(s->url);
        if (d->url == NULL)
            goto out_free;
        if (s->nkeys == 0)
            continue;
        d->keys = cmn_calloc(s->nkeys, sizeof(*d->keys));
        if (d->keys == NULL)
            goto out_free;
        for (size_t k = 0; k < s->nkeys; k++) {
            d->keys[k] = cmn_secret_strndup(s->keys[k], strlen(s->keys[k]));
            if (d->keys[k] == NULL)
                goto out_free;
            d->nkeys = k + 1;
        }
    }
    return 0;

out_free:
    fwd_config_free(dst);
    return UV_ENOMEM;
}

/* ------------------------------------------------------------------------
 * URL helpers
 */

/* Trims ASCII whitespace on both sides; returns a new string or NULL. */
/* Trims s in place as a slice: *len gets the trimmed length. */
static const char *trim(const char *s, size_t *len)
{
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)*s)) {
        s++;
        n--;
    }
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        n--;
    *len = n;
    return s;
}

static char *trim_dup(const char *s)
{
    size_t len;
    s = trim(s, &len);
    return cmn_strndup(s, len);
}

static bool has_suffix_at(const char *h, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len == n && memcmp(h, suffix, n) == 0;
}

/*
 * Is host (len bytes) a Datadog-owned "app" host? The Agent's pattern:
 *
 *   app[.mrf][.<2 letters><digits>].<datadoghq.com|datadoghq.eu|
 *        datad0g.com|datad0g.eu|ddog-gov.com>[.]
 *   ^^^ replaced by <major>-<minor>-<patch>-app.agent
 */
static bool is_dd_app_host(const char *h, size_t len)
{
    static const char *const sites[] = {"datadoghq.com", "datadoghq.eu",
                                        "datad0g.com", "datad0g.eu",
                                        "ddog-gov.com"};
    if (len > 0 && h[len - 1] == '.')
        len--;
    if (len < 4 || memcmp(h, "app.", 4) != 0)
        return false;
    h += 4;
    len -= 4;
    if (len >= 4 && memcmp(h, "mrf.", 4) == 0) {
        h += 4;
        len -= 4;
    }
    /* optional region label: two lowercase letters then digits */
    if (len > 3 && islower((unsigned char)h[0]) &&
        islower((unsigned char)h[1]) && isdigit((unsigned char)h[2])) {
        size_t i = 2;
        while (i < len && isdigit((unsigned char)h[i]))
            i++;
        if (i < len && h[i] == '.') {
            h += i + 1;
            len -= i + 1;
        }
    }
    for (size_t i = 0; i < sizeof(sites) / sizeof(sites[0]); i++)
        if (has_suffix_at(h, len, sites[i]))
            return true;
    return false;
}

char *fwd__agent_url(const char *url)
{
    const char *host = strstr(url, "://");
    struct cmn_buf b;
    char ver[32];
    size_t vlen = 0, hlen;

    if (host == NULL)
        return cmn_strdup(url);
    host += 3;
    hlen = strcspn(host, ":/?#");
    if (!is_dd_app_host(host, hlen))
        return cmn_strdup(url);
    for (const char *v = CMN_AGENT_VERSION; *v && vlen < sizeof(ver) - 1; v++)
        ver[vlen++] = *v == '.' ? '-' : *v;
    ver[vlen] = '\0';
    /* the URL, the version and "-app.agent", and the NUL */
    cmn_buf_init(&b, strlen(url) + vlen + 16);
    /* appends, not cmn_buf_printf: this runs before the child is spawned,
     * and a process's first printf costs ~0.1 ms on a VM (cold code) */
    if (cmn_buf_append(&b, url, (size_t)(host - url)) != 0 ||
        cmn_buf_append(&b, ver, vlen) != 0 ||
        cmn_buf_append(&b, "-app.agent", 10) != 0 ||
        cmn_buf_append(&b, host + 3, strlen(host + 3) + 1) != 0) {
        cmn_buf_free(&b);
        return NULL;
    }
    return cmn_buf_steal(&b, NULL);
}

/* Normalises an intake URL: trimmed, version-prefixed when Datadog-owned,
 * no trailing '/'. Rejects anything but http(s)://host, and URLs longer
 * than FWD_URL_MAX (one becomes a request line and a log field). */
static int intake_url(const char *raw, const char *var, char **out)
{
    char *t = trim_dup(raw), *u;
    size_t len;

    *out = NULL;
    if (t == NULL)
        return UV_ENOMEM;
    if (strlen(t) > FWD_URL_MAX) {
        CMN_LOGE(COMP, "%s: a URL of at most %d bytes expected, got %zu", var,
                 FWD_URL_MAX, strlen(t));
        cmn_free(t);
        return UV_EINVAL;
    }
    if ((strncmp(t, "https://", 8) != 0 && strncmp(t, "http://", 7) != 0) ||
        t[strcspn(t, ":") + 3] == '\0' || strpbrk(t, " \t\r\n") != NULL) {
        CMN_LOGE(COMP, "%s: expected an http:// or https:// URL, got \"%s\"",
                 var, t);
        cmn_free(t);
        return UV_EINVAL;
    }
    u = fwd__agent_url(t);
    cmn_free(t);
    if (u == NULL)
        return UV_ENOMEM;
    len = strlen(u);
    while (len > 0 && u[len - 1] == '/')
        u[--len] = '\0';
    *out = u;
    return 0;
}

/* ------------------------------------------------------------------------
 * Endpoints
 */

static struct fwd_endpoint_cfg *find_or_add_ep(struct fwd_config *cfg,
                                               char *url)
{
    struct fwd_endpoint_cfg *eps;

    for (size_t i = 0; i < cfg->nendpoints; i++) {
        if (strcmp(cfg->endpoints[i].url, url) == 0) {
            cmn_free(url);
            return &cfg->endpoints[i];
        }
    }
    eps = cmn_reallocarray(cfg->endpoints, cfg->nendpoints + 1, sizeof(*eps));
    if (eps == NULL) {
        cmn_free(url);
        return NULL;
    }
    cfg->endpoints = eps;
    memset(&eps[cfg->nendpoints], 0, sizeof(*eps));
    eps[cfg->nendpoints].url = url;
    return &eps[cfg->nendpoints++];
}

/* Adds a trimmed key unless empty or already present. Takes no ownership. */
static int ep_add_key(struct fwd_endpoint_cfg *e, const char *raw)
{
    size_t len;
    const char *t = trim(raw, &len);
    char *k = cmn_secret_strndup(t, len), **keys;

    if (k == NULL)
        return UV_ENOMEM;
    if (*k == '\0')
        goto out_free;
    for (size_t i = 0; i < e->nkeys; i++)
        if (strcmp(e->keys[i], k) == 0)
            goto out_free;
    keys = cmn_reallocarray(e->keys, e->nkeys + 1, sizeof(*keys));
    if (keys == NULL) {
        cmn_secret_free(k);
        return UV_ENOMEM;
    }
    e->keys = keys;
    e->keys[e->nkeys++] = k;
    return 0;
out_free:
    cmn_secret_free(k);
    return 0;
}

/* Drops endpoints that ended with no key (§3.5). */
static void drop_keyless(struct fwd_config *cfg)
{
    size_t j = 0;
    for (size_t i = 0; i < cfg->nendpoints; i++) {
        if (cfg->endpoints[i].nkeys == 0) {
            CMN_LOGW(COMP, "endpoint %s has no API key: dropped",
                     cfg->endpoints[i].url);
            endpoint_free(&cfg->endpoints[i]);
            continue;
        }
        cfg->endpoints[j++] = cfg->endpoints[i];
    }
    cfg->nendpoints = j;
    if (j == 0) {
        cmn_free(cfg->endpoints);
        cfg->endpoints = NULL;
    }
}

static int additional_endpoints(struct fwd_config *cfg, const char *json)
{
    static const char var[] = "DD_ADDITIONAL_ENDPOINTS";
    json_error_t jerr;
    /* the tree holds the keys: its memory is zeroed when freed (a global
     * jansson setting; the scrubbing functions are malloc-compatible, so
     * blocks allocated before the switch free correctly) */
    json_set_alloc_funcs(cmn_scrub_malloc, cmn_scrub_free);
    json_t *root = json_loads(json, JSON_REJECT_DUPLICATES, &jerr);
    const char *k;
    json_t *v;
    int rc = 0;

    if (root == NULL || !json_is_object(root)) {
        CMN_LOGE(COMP, "%s: expected a JSON object {\"url\": [\"key\"]}: %s",
                 var, root == NULL ? jerr.text : "not an object");
        json_decref(root);
        return UV_EINVAL;
    }
    json_object_foreach(root, k, v)
    {
        struct fwd_endpoint_cfg *e;
        char *url;
        size_t i;
        json_t *key;

        if (!json_is_array(v)) {
            CMN_LOGE(COMP, "%s: the value for \"%s\" must be a list of keys",
                     var, k);
            rc = UV_EINVAL;
            break;
        }
        json_array_foreach(v, i, key)
        {
            if (!json_is_string(key)) {
                CMN_LOGE(COMP, "%s: keys for \"%s\" must be strings", var, k);
                rc = UV_EINVAL;
                goto out;
            }
        }
        rc = intake_url(k, var, &url);
        if (rc != 0)
            break;
        e = find_or_add_ep(cfg, url);
        if (e == NULL) {
            rc = UV_ENOMEM;
            break;
        }
        json_array_foreach(v, i, key)
        {
            rc = ep_add_key(e, json_string_value(key));
            if (rc != 0)
                goto out;
        }
    }
out:
    json_decref(root);
    return rc;
}

/* Reads a proxy-like string: the DD_ name first, then the standard ones. */
static const char *env_first(const struct cmn_env *env, const char *a,
                             const char *b, const char *c)
{
    const char *v = cmn_env_get(env, a);
    if (v == NULL && b != NULL)
        v = cmn_env_get(env, b);
    if (v == NULL && c != NULL)
        v = cmn_env_get(env, c);
    return v;
}

static void no_proxy_item(struct cmn_slice item, void *data)
{
    struct cmn_buf *b = data;
    if (b->len > 0 && cmn_buf_append(b, ",", 1) != 0)
        return;
    if (cmn_buf_append(b, item.p, item.len) != 0)
        return;
}

static int set_no_proxy(struct fwd_config *cfg, const char *v)
{
    struct cmn_buf b;

    cmn_buf_init(&b, strlen(v) + 1); /* the items, ',' between: no longer */
    cmn_split_list(v, no_proxy_item, &b);
    if (cmn_buf_append(&b, "", 1) != 0) {
        cmn_buf_free(&b);
        return UV_ENOMEM;
    }
    cmn_free(cfg->no_proxy);
    cfg->no_proxy = cmn_buf_steal(&b, NULL);
    return 0;
}

static int set_str(char **dst, const char *v)
{
    if (v == NULL)
        return 0;
    cmn_free(*dst);
    *dst = trim_dup(v);
    return *dst == NULL ? UV_ENOMEM : 0;
}

static int tls_version(struct fwd_config *cfg, const struct cmn_env *env)
{
    static const struct {
        const char *name;
        int v;
    } names[] = {
        {"tlsv1.0", 10}, {"tlsv1.1", 11}, {"tlsv1.2", 12}, {"tlsv1.3", 13}};
    const char *v = cmn_env_get(env, "DD_MIN_TLS_VERSION");

    if (v == NULL)
        return 0;
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcasecmp(v, names[i].name) == 0) {
            cfg->min_tls_version = names[i].v;
            if (names[i].v < 12)
                CMN_LOGW(COMP,
                         "DD_MIN_TLS_VERSION=%s: TLS versions below 1.2 "
                         "are allowed (the default minimum is tlsv1.2)",
                         v);
            return 0;
        }
    }
    /* the Agent's min_tls_version takes the same four names */
    CMN_LOGE(COMP,
             "DD_MIN_TLS_VERSION: expected tlsv1.0, tlsv1.1, tlsv1.2 "
             "(the default) or tlsv1.3, got \"%s\"",
             v);
    return UV_EINVAL;
}

static int numbers(struct fwd_config *cfg, const struct cmn_env *env)
{
    int64_t i;
    int rc;

    rc = cmn_env_f64(env, "DD_FORWARDER_TIMEOUT", 0.001, 3600, &cfg->timeout_s);
    if (rc != 0)
        return rc;
    i = cfg->max_concurrent;
    rc = cmn_env_i64(env, "DD_FORWARDER_MAX_CONCURRENT_REQUESTS", 1, 1000, &i);
    if (rc != 0)
        return rc;
    cfg->max_concurrent = (uint32_t)i;
    rc = cmn_env_f64(env, "DD_FORWARDER_BACKOFF_BASE", 0.001, 3600,
                     &cfg->backoff_base);
    if (rc == 0)
        rc = cmn_env_f64(env, "DD_FORWARDER_BACKOFF_FACTOR", 1, 100,
                         &cfg->backoff_factor);
    if (rc == 0)
        rc = cmn_env_f64(env, "DD_FORWARDER_BACKOFF_MAX", 0.001, 86400,
                         &cfg->backoff_max);
    if (rc != 0)
        return rc;
    i = cfg->recovery_interval;
    rc = cmn_env_i64(env, "DD_FORWARDER_RECOVERY_INTERVAL", 1, 100, &i);
    if (rc != 0)
        return rc;
    cfg->recovery_interval = (uint32_t)i;
    rc = cmn_env_bool(env, "DD_FORWARDER_RECOVERY_RESET", &cfg->recovery_reset);
    if (rc != 0)
        return rc;
    i = (int64_t)cfg->retry_queue_max_bytes;
    rc = cmn_env_i64(env, "DD_FORWARDER_RETRY_QUEUE_PAYLOADS_MAX_SIZE", 1,
                     (int64_t)1 << 30, &i);
    if (rc != 0)
        return rc;
    cfg->retry_queue_max_bytes = (size_t)i;
    rc = cmn_env_f64(env, "DD_FORWARDER_STOP_TIMEOUT", 0, 3600,
                     &cfg->stop_timeout_s);
    if (rc == 0)
        rc = cmn_env_bool(env, "DD_FORWARDER_STOP_WAIT_FOR_INFLIGHT",
                          &cfg->stop_wait_for_inflight);
    if (rc == 0)
        rc = cmn_env_bool(env, "DD_SKIP_SSL_VALIDATION",
                          &cfg->skip_ssl_validation);
    if (rc == 0)
        rc = tls_version(cfg, env);
    return rc;
}

static int proxies(struct fwd_config *cfg, const struct cmn_env *env)
{
    const char *v;
    int rc;

    rc = set_str(&cfg->proxy_https, env_first(env, "DD_PROXY_HTTPS",
                                              "HTTPS_PROXY", "https_proxy"));
    if (rc == 0)
        rc = set_str(&cfg->proxy_http, env_first(env, "DD_PROXY_HTTP",
                                                 "HTTP_PROXY", "http_proxy"));
    if (rc != 0)
        return rc;
    v = env_first(env, "DD_PROXY_NO_PROXY", "NO_PROXY", "no_proxy");
    return v == NULL ? 0 : set_no_proxy(cfg, v);
}

static int endpoints(struct fwd_config *cfg, const struct cmn_env *env)
{
    const char *key = cmn_env_get(env, "DD_API_KEY");
    const char *site = cmn_env_get(env, "DD_SITE");
    const char *dd_url = cmn_env_get(env, "DD_DD_URL");
    const char *var = "DD_DD_URL";
    const char *extra = cmn_env_get(env, "DD_ADDITIONAL_ENDPOINTS");
    struct fwd_endpoint_cfg *e;
    char *url = NULL;
    int rc;

    if (dd_url == NULL) {
        dd_url = cmn_env_get(env, "DD_URL");
        var = "DD_URL";
    }
    if (dd_url != NULL) {
        rc = intake_url(dd_url, var, &url);
    } else {
        char *s = trim_dup(site != NULL ? site : "datadoghq.com");
        struct cmn_buf b;
        if (s == NULL)
            return UV_ENOMEM;
        if (*s == '\0' || strpbrk(s, "/: ") != NULL) {
            CMN_LOGE(COMP,
                     "DD_SITE: expected a domain such as "
                     "datadoghq.com, got \"%s\"",
                     s);
            cmn_free(s);
            return UV_EINVAL;
        }
        /* the length is checked by intake_url (FWD_URL_MAX) */
        cmn_buf_init(&b, strlen(s) + sizeof("https://app."));
        rc = cmn_buf_append(&b, "https://app.", 12);
        if (rc == 0)
            rc = cmn_buf_append(&b, s, strlen(s) + 1);
        cmn_free(s);
        if (rc != 0) {
            cmn_buf_free(&b);
            return UV_ENOMEM;
        }
        s = cmn_buf_steal(&b, NULL);
        rc = intake_url(s, "DD_SITE", &url);
        cmn_free(s);
    }
    if (rc != 0)
        return rc;
    /* the main endpoint is always [0], even with no key yet */
    e = find_or_add_ep(cfg, url);
    if (e == NULL)
        return UV_ENOMEM;
    if (key != NULL && (rc = ep_add_key(e, key)) != 0)
        return rc;
    if (e->nkeys == 0) {
        /* no API key: no endpoint at all, additional ones included */
        endpoint_free(e);
        cmn_free(cfg->endpoints);
        cfg->endpoints = NULL;
        cfg->nendpoints = 0;
        if (extra != NULL)
            CMN_LOGW(COMP, "DD_ADDITIONAL_ENDPOINTS ignored: DD_API_KEY "
                           "is not set");
        return 0;
    }
    if (extra != NULL && (rc = additional_endpoints(cfg, extra)) != 0)
        return rc;
    drop_keyless(cfg);
    return 0;
}

int fwd_config_from_env(struct fwd_config *cfg, const struct cmn_env *env)
{
    int rc;

    /* The process environment's copies of the keys move to pages kept out
     * of core dumps before anything reads them. */
    if (env == NULL || env->get == NULL) {
        rc = cmn_env_protect("DD_API_KEY");
        if (rc == 0)
            rc = cmn_env_protect("DD_ADDITIONAL_ENDPOINTS");
        if (rc != 0)
            return rc;
    }
    /* endpoints are rebuilt from the environment */
    for (size_t i = 0; i < cfg->nendpoints; i++)
        endpoint_free(&cfg->endpoints[i]);
    cmn_free(cfg->endpoints);
    cfg->endpoints = NULL;
    cfg->nendpoints = 0;

    rc = numbers(cfg, env);
    if (rc == 0)
        rc = proxies(cfg, env);
    if (rc == 0)
        rc = endpoints(cfg, env);
    return rc;
}
