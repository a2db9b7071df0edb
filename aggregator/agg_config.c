/*
 * agg_config.c - the aggregator's configuration: the Agent's defaults
 * (spec/pipeline.md §6), the DD_* variables that change them, deep copies,
 * and the derived tables built once at creation (histogram name suffixes,
 * the extra-tag set).
 *
 * Invariant: every list in a struct agg_config is owned by it and freed by
 * agg_config_free; a bad variable is refused with UV_EINVAL and an error
 * line naming it, never silently replaced by a default.
 */
#include "agg_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zstd.h>

#define COMP "config"

static const char *const agg_hist_names[] = {"max", "min", "median",
                                             "avg", "sum", "count"};
static const uint8_t agg_hist_what[] = {AGG__H_MAX, AGG__H_MIN, AGG__H_MEDIAN,
                                        AGG__H_AVG, AGG__H_SUM, AGG__H_COUNT};

void agg_config_defaults(struct agg_config *cfg)
{
    char host[256];
    size_t hl = sizeof(host);

    memset(cfg, 0, sizeof(*cfg));
    cfg->flush_interval_s = 15;
    cfg->flush_incomplete_buckets = false;
    cfg->expiry_seconds = 300;
    cfg->context_expiry_seconds = 20;
    cfg->context_limit = 1000000;
    cfg->tags_per_metric_max = 1000;
    cfg->no_aggregation_pipeline = true;
    cfg->no_agg_batch_size = 2048;
    cfg->origin_product = 10;
    cfg->origin_service = 0;
    cfg->origin_category = 10;
    if (uv_os_gethostname(host, &hl) == 0)
        cfg->hostname = cmn_strdup(host);
    else
        cfg->hostname = cmn_strdup("");
    cfg->use_v2_series = true;
    cfg->compressor = AGG_COMPRESS_ZSTD;
    cfg->zstd_level = 1;
    cfg->max_payload_size = 2621440;
    cfg->max_uncompressed_payload_size = 4194304;
    cfg->max_series_payload_size = 512000;
    cfg->max_series_uncompressed_payload_size = 5242880;
    cfg->max_series_points_per_payload = 10000;
    cfg->enable_series = true;
    cfg->enable_sketches = true;
    cfg->enable_events = true;
    cfg->enable_service_checks = true;
}

void agg_config_free(struct agg_config *cfg)
{
    if (cfg == NULL)
        return;
    cmn_strv_free(cfg->histogram_aggregates, cfg->nhistogram_aggregates);
    cmn_free(cfg->histogram_percentiles);
    cmn_strv_free(cfg->extra_tags, cfg->nextra_tags);
    cmn_free(cfg->hostname);
    cmn_free(cfg->hist_copy_prefix);
    cfg->hist_copy_prefix = NULL;
    cfg->histogram_aggregates = NULL;
    cfg->nhistogram_aggregates = 0;
    cfg->histogram_percentiles = NULL;
    cfg->nhistogram_percentiles = 0;
    cfg->extra_tags = NULL;
    cfg->nextra_tags = 0;
    cfg->hostname = NULL;
}

int agg__config_copy(struct agg_config *dst, const struct agg_config *src)
{
    int rc;

    *dst = *src;
    dst->histogram_aggregates = NULL;
    dst->histogram_percentiles = NULL;
    dst->extra_tags = NULL;
    dst->hostname = NULL;
    dst->hist_copy_prefix = NULL;
    rc = cmn_strv_dup(src->histogram_aggregates, src->nhistogram_aggregates,
                      &dst->histogram_aggregates);
    if (rc)
        goto out_free;
    rc = cmn_strv_dup(src->extra_tags, src->nextra_tags, &dst->extra_tags);
    if (rc)
        goto out_free;
    if (src->histogram_percentiles && src->nhistogram_percentiles) {
        dst->histogram_percentiles =
            cmn_memdup(src->histogram_percentiles,
                       src->nhistogram_percentiles * sizeof(double));
        if (dst->histogram_percentiles == NULL) {
            rc = UV_ENOMEM;
            goto out_free;
        }
    }
    dst->hostname = cmn_strdup(src->hostname ? src->hostname : "");
    dst->hist_copy_prefix =
        cmn_strdup(src->hist_copy_prefix ? src->hist_copy_prefix : "");
    if (dst->hostname == NULL || dst->hist_copy_prefix == NULL) {
        rc = UV_ENOMEM;
        goto out_free;
    }
    return 0;
out_free:
    agg_config_free(dst);
    return rc;
}

static int agg_env_size(const struct cmn_env *env, const char *name,
                        int64_t min, int64_t max, size_t *out)
{
    int64_t v = (int64_t)*out;
    int rc = cmn_env_i64(env, name, min, max, &v);
    if (rc == 0)
        *out = (size_t)v;
    return rc;
}

static int agg_env_hist_aggregates(struct agg_config *cfg,
                                   const struct cmn_env *env)
{
    const char *name = "DD_HISTOGRAM_AGGREGATES";
    const char *v = cmn_env_get(env, name);
    struct cmn_strv l = {0};

    if (v == NULL)
        return 0;
    cmn_split_list(v, cmn_strv_add, &l);
    if (l.err)
        goto out_oom;
    for (size_t i = 0; i < l.n; i++) {
        bool ok = false;
        for (size_t k = 0; k < sizeof(agg_hist_names) / sizeof(char *); k++)
            ok = ok || strcmp(l.v[i], agg_hist_names[k]) == 0;
        if (!ok) {
            CMN_LOGE(COMP,
                     "%s: unknown aggregate \"%s\" (expected max, min, "
                     "median, avg, sum or count)",
                     name, l.v[i]);
            cmn_strv_free(l.v, l.n);
            return UV_EINVAL;
        }
    }
    cmn_strv_free(cfg->histogram_aggregates, cfg->nhistogram_aggregates);
    cfg->histogram_aggregates = l.v;
    cfg->nhistogram_aggregates = l.n;
    return 0;
out_oom:
    cmn_strv_free(l.v, l.n);
    return UV_ENOMEM;
}

static int agg_env_hist_percentiles(struct agg_config *cfg,
                                    const struct cmn_env *env)
{
    const char *name = "DD_HISTOGRAM_PERCENTILES";
    const char *v = cmn_env_get(env, name);
    struct cmn_strv l = {0};
    double *p = NULL;
    int rc = 0;

    if (v == NULL)
        return 0;
    cmn_split_list(v, cmn_strv_add, &l);
    if (l.err) {
        rc = l.err;
        goto out;
    }
    if (l.n > 0) {
        p = cmn_calloc(l.n, sizeof(*p));
        if (p == NULL) {
            rc = UV_ENOMEM;
            goto out;
        }
    }
    for (size_t i = 0; i < l.n; i++) {
        if (cmn_parse_f64(cmn_slice_cstr(l.v[i]), &p[i]) != 0 ||
            !(p[i] >= 0 && p[i] <= 1)) {
            CMN_LOGE(COMP, "%s: expected numbers from 0 to 1, got \"%s\"", name,
                     l.v[i]);
            rc = UV_EINVAL;
            goto out;
        }
    }
    cmn_free(cfg->histogram_percentiles);
    cfg->histogram_percentiles = p;
    cfg->nhistogram_percentiles = l.n;
    p = NULL;
out:
    cmn_free(p);
    cmn_strv_free(l.v, l.n);
    return rc;
}

static int agg_env_tags(struct agg_config *cfg, const struct cmn_env *env)
{
    return cmn_env_tags_add(env, &cfg->extra_tags, &cfg->nextra_tags);
}

static int agg_env_compressor(struct agg_config *cfg, const struct cmn_env *env)
{
    const char *name = "DD_SERIALIZER_COMPRESSOR_KIND";
    const char *v = cmn_env_get(env, name);
    int64_t lvl = cfg->zstd_level;

    if (v != NULL) {
        if (strcmp(v, "zstd") == 0)
            cfg->compressor = AGG_COMPRESS_ZSTD;
        else if (strcmp(v, "zlib") == 0)
            cfg->compressor = AGG_COMPRESS_ZLIB;
        else if (strcmp(v, "none") == 0)
            cfg->compressor = AGG_COMPRESS_NONE;
        else {
            CMN_LOGE(COMP, "%s: expected zstd, zlib or none, got \"%s\"", name,
                     v);
            return UV_EINVAL;
        }
    }
    if (cmn_env_i64(env, "DD_SERIALIZER_ZSTD_COMPRESSOR_LEVEL",
                    ZSTD_minCLevel(), ZSTD_maxCLevel(), &lvl))
        return UV_EINVAL;
    cfg->zstd_level = (int)lvl;
    return 0;
}

static int agg_env_hist_copy_prefix(struct agg_config *cfg,
                                    const struct cmn_env *env)
{
    const char *name = "DD_HISTOGRAM_COPY_TO_DISTRIBUTION_PREFIX";
    const char *v = cmn_env_get(env, name);

    if (v == NULL)
        return 0;
    if (strlen(v) > AGG_HIST_COPY_PREFIX_MAX) {
        CMN_LOGE(COMP, "%s: at most %d bytes, got %zu", name,
                 AGG_HIST_COPY_PREFIX_MAX, strlen(v));
        return UV_EINVAL;
    }
    char *p = cmn_strdup(v);
    if (p == NULL)
        return UV_ENOMEM;
    cmn_free(cfg->hist_copy_prefix);
    cfg->hist_copy_prefix = p;
    return 0;
}

int agg_config_from_env(struct agg_config *cfg, const struct cmn_env *env)
{
    const char *host = NULL;
    int rc;

#define TRY(x)                                                                 \
    do {                                                                       \
        rc = (x);                                                              \
        if (rc)                                                                \
            return rc;                                                         \
    } while (0)
    TRY(cmn_env_bool(env, "DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS",
                     &cfg->flush_incomplete_buckets));
    TRY(cmn_env_i64(env, "DD_DOGSTATSD_EXPIRY_SECONDS", 0, 1000000000,
                    &cfg->expiry_seconds));
    TRY(cmn_env_i64(env, "DD_DOGSTATSD_CONTEXT_EXPIRY_SECONDS", 0, 1000000000,
                    &cfg->context_expiry_seconds));
    TRY(agg_env_size(env, "DD_DOGSTATSD_CONTEXT_LIMIT", 1, 1000000000,
                     &cfg->context_limit));
    TRY(cmn_env_bool(env, "DD_DOGSTATSD_NO_AGGREGATION_PIPELINE",
                     &cfg->no_aggregation_pipeline));
    TRY(agg_env_size(env, "DD_DOGSTATSD_NO_AGGREGATION_PIPELINE_BATCH_SIZE", 1,
                     10000000, &cfg->no_agg_batch_size));
    TRY(agg_env_hist_aggregates(cfg, env));
    TRY(agg_env_hist_percentiles(cfg, env));
    TRY(agg_env_tags(cfg, env));
    TRY(cmn_env_str(env, "DD_HOSTNAME", &host));
    if (host != NULL) {
        char *h = cmn_strdup(host);
        if (h == NULL)
            return UV_ENOMEM;
        cmn_free(cfg->hostname);
        cfg->hostname = h;
    }
    TRY(cmn_env_bool(env, "DD_HISTOGRAM_COPY_TO_DISTRIBUTION",
                     &cfg->hist_copy_to_dist));
    TRY(agg_env_hist_copy_prefix(cfg, env));
    TRY(cmn_env_bool(env, "DRAINPIPE_SERVERLESS_DROP_EVENTS",
                     &cfg->serverless_drop_events));
    TRY(cmn_env_bool(env, "DD_USE_V2_API_SERIES", &cfg->use_v2_series));
    TRY(agg_env_compressor(cfg, env));
    TRY(agg_env_size(env, "DD_SERIALIZER_MAX_PAYLOAD_SIZE", 64, 1 << 30,
                     &cfg->max_payload_size));
    TRY(agg_env_size(env, "DD_SERIALIZER_MAX_UNCOMPRESSED_PAYLOAD_SIZE", 64,
                     1 << 30, &cfg->max_uncompressed_payload_size));
    TRY(agg_env_size(env, "DD_SERIALIZER_MAX_SERIES_PAYLOAD_SIZE", 64, 1 << 30,
                     &cfg->max_series_payload_size));
    TRY(agg_env_size(env, "DD_SERIALIZER_MAX_SERIES_UNCOMPRESSED_PAYLOAD_SIZE",
                     64, 1 << 30, &cfg->max_series_uncompressed_payload_size));
    TRY(agg_env_size(env, "DD_SERIALIZER_MAX_SERIES_POINTS_PER_PAYLOAD", 1,
                     100000000, &cfg->max_series_points_per_payload));
    TRY(cmn_env_bool(env, "DD_ENABLE_PAYLOADS_SERIES", &cfg->enable_series));
    TRY(cmn_env_bool(env, "DD_ENABLE_PAYLOADS_SKETCHES",
                     &cfg->enable_sketches));
    TRY(cmn_env_bool(env, "DD_ENABLE_PAYLOADS_EVENTS", &cfg->enable_events));
    TRY(cmn_env_bool(env, "DD_ENABLE_PAYLOADS_SERVICE_CHECKS",
                     &cfg->enable_service_checks));
#undef TRY
    return 0;
}

/* Builds the histogram suffix table: [0] is the bare name. */
int agg__suffix_build(struct agg *a)
{
    const struct agg_config *c = &a->cfg;
    static const char *const defaults[] = {"max", "median", "avg", "count"};
    static const double defpct[] = {0.95};
    const char *const *aggs = (const char *const *)c->histogram_aggregates;
    size_t naggs = c->nhistogram_aggregates;
    const double *pcts = c->histogram_percentiles;
    size_t npcts = c->nhistogram_percentiles;

    if (aggs == NULL) {
        aggs = defaults;
        naggs = 4;
    }
    if (pcts == NULL) {
        pcts = defpct;
        npcts = 1;
    }
    a->suffix = cmn_calloc(1 + naggs + npcts, sizeof(*a->suffix));
    if (a->suffix == NULL)
        return UV_ENOMEM;
    a->suffix[0].api_type = AGG__API_GAUGE;
    a->nsuffix = 1;
    for (size_t i = 0; i < naggs; i++) {
        struct agg__suffix *s = &a->suffix[a->nsuffix];
        for (size_t k = 0; k < sizeof(agg_hist_names) / sizeof(char *); k++) {
            if (strcmp(aggs[i], agg_hist_names[k]) == 0) {
                snprintf(s->name, sizeof(s->name), ".%s", agg_hist_names[k]);
                s->what = agg_hist_what[k];
                s->api_type =
                    s->what == AGG__H_COUNT ? AGG__API_RATE : AGG__API_GAUGE;
                a->nsuffix++;
                break;
            }
        }
    }
    for (size_t i = 0; i < npcts; i++) {
        struct agg__suffix *s = &a->suffix[a->nsuffix++];
        s->pct = (int)(pcts[i] * 100 + 0.5);
        snprintf(s->name, sizeof(s->name), ".%dpercentile", s->pct);
        s->what = AGG__H_PCT;
        s->api_type = AGG__API_GAUGE;
    }
    return 0;
}

struct agg__tagset *agg__tagset_new(const struct cmn_slice *tags, size_t n)
{
    size_t bytes = 0, w = 0;
    for (size_t i = 0; i < n; i++) /* room for a repair to U+FFFD */
        bytes += tags[i].len * 3 + 1;
    struct agg__tagset *t =
        cmn_malloc(sizeof(*t) + n * sizeof(struct cmn_slice) + bytes + 1);
    if (t == NULL)
        return NULL;
    char *p = (char *)&t->tags[n];
    t->refs = 1;
    for (size_t i = 0; i < n; i++) {
        /* DD_TAGS or cloud tags with invalid UTF-8 are repaired like a
         * client's tags: no payload carries invalid UTF-8 */
        size_t len = agg__utf8_fix_into(tags[i], p);
        if (agg__has_tag(t->tags, w, cmn_slice(p, len)))
            continue; /* duplicates are sent once */
        p[len] = '\0';
        t->tags[w++] = cmn_slice(p, len);
        p += len + 1;
    }
    t->n = w;
    return t;
}

void agg__tagset_unref(struct agg__tagset *t)
{
    if (t != NULL && --t->refs == 0)
        cmn_free(t);
}
