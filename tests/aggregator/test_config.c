/*
 * test_config.c - agg_config_defaults (spec/pipeline.md §6) and
 * agg_config_from_env: every variable, and bad values refused with
 * UV_EINVAL and an error line naming the variable.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <string.h>

#include "aggregator.h"

struct kv {
    const char *k, *v;
};
static struct kv vars[32];
static size_t nvars;

static const char *fake_getenv(const char *name, void *data)
{
    (void)data;
    for (size_t i = 0; i < nvars; i++) {
        if (strcmp(vars[i].k, name) == 0)
            return vars[i].v;
    }
    return NULL;
}

static void put(const char *k, const char *v)
{
    vars[nvars].k = k;
    vars[nvars].v = v;
    nvars++;
}

static const struct cmn_env env = {fake_getenv, NULL};

Test(config, defaults)
{
    struct agg_config c;
    char host[256];
    size_t hl = sizeof(host);
    agg_config_defaults(&c);
    cr_assert_eq(uv_os_gethostname(host, &hl), 0);
    cr_assert_str_eq(c.hostname, host);
    cr_assert_float_eq(c.flush_interval_s, 15, 1e-12);
    cr_assert(!c.flush_incomplete_buckets);
    cr_assert_eq(c.expiry_seconds, 300);
    cr_assert_eq(c.context_expiry_seconds, 20);
    cr_assert_eq(c.context_limit, 1000000);
    cr_assert_eq(c.tags_per_metric_max, 1000);
    cr_assert(c.no_aggregation_pipeline);
    cr_assert_eq(c.no_agg_batch_size, 2048);
    cr_assert_null(c.histogram_aggregates);
    cr_assert_null(c.histogram_percentiles);
    cr_assert_eq(c.nextra_tags, 0);
    cr_assert(!c.serverless);
    cr_assert_eq(c.origin_product, 10);
    cr_assert_eq(c.origin_service, 0);
    cr_assert_eq(c.origin_category, 10);
    cr_assert(c.use_v2_series);
    cr_assert_eq(c.compressor, AGG_COMPRESS_ZSTD);
    cr_assert_eq(c.zstd_level, 1);
    cr_assert_eq(c.max_payload_size, 2621440);
    cr_assert_eq(c.max_uncompressed_payload_size, 4194304);
    cr_assert_eq(c.max_series_payload_size, 512000);
    cr_assert_eq(c.max_series_uncompressed_payload_size, 5242880);
    cr_assert_eq(c.max_series_points_per_payload, 10000);
    cr_assert(c.enable_series && c.enable_sketches && c.enable_events &&
              c.enable_service_checks);
    agg_config_free(&c);
    agg_config_free(&c); /* idempotent */
}

Test(config, every_variable)
{
    struct agg_config c;
    agg_config_defaults(&c);
    nvars = 0;
    put("DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "true");
    put("DD_DOGSTATSD_EXPIRY_SECONDS", "60");
    put("DD_DOGSTATSD_CONTEXT_EXPIRY_SECONDS", "5");
    put("DD_DOGSTATSD_CONTEXT_LIMIT", "1234");
    put("DD_DOGSTATSD_NO_AGGREGATION_PIPELINE", "false");
    put("DD_DOGSTATSD_NO_AGGREGATION_PIPELINE_BATCH_SIZE", "16");
    put("DD_HISTOGRAM_AGGREGATES", "min, sum count");
    put("DD_HISTOGRAM_PERCENTILES", "0.5 0.99");
    put("DD_DOGSTATSD_TAGS", "b:2 a:1");
    put("DD_TAGS", "a:1,c");
    put("DD_HOSTNAME", "box1");
    put("DD_USE_V2_API_SERIES", "false");
    put("DD_SERIALIZER_COMPRESSOR_KIND", "zlib");
    put("DD_SERIALIZER_ZSTD_COMPRESSOR_LEVEL", "3");
    put("DD_SERIALIZER_MAX_PAYLOAD_SIZE", "1000");
    put("DD_SERIALIZER_MAX_UNCOMPRESSED_PAYLOAD_SIZE", "2000");
    put("DD_SERIALIZER_MAX_SERIES_PAYLOAD_SIZE", "3000");
    put("DD_SERIALIZER_MAX_SERIES_UNCOMPRESSED_PAYLOAD_SIZE", "4000");
    put("DD_SERIALIZER_MAX_SERIES_POINTS_PER_PAYLOAD", "50");
    put("DD_ENABLE_PAYLOADS_SERIES", "false");
    put("DD_ENABLE_PAYLOADS_SKETCHES", "false");
    put("DD_ENABLE_PAYLOADS_EVENTS", "false");
    put("DD_ENABLE_PAYLOADS_SERVICE_CHECKS", "false");
    cr_assert_eq(agg_config_from_env(&c, &env), 0);
    cr_assert(c.flush_incomplete_buckets);
    cr_assert_eq(c.expiry_seconds, 60);
    cr_assert_eq(c.context_expiry_seconds, 5);
    cr_assert_eq(c.context_limit, 1234);
    cr_assert(!c.no_aggregation_pipeline);
    cr_assert_eq(c.no_agg_batch_size, 16);
    cr_assert_eq(c.nhistogram_aggregates, 3);
    cr_assert_str_eq(c.histogram_aggregates[0], "min");
    cr_assert_str_eq(c.histogram_aggregates[1], "sum");
    cr_assert_str_eq(c.histogram_aggregates[2], "count");
    cr_assert_eq(c.nhistogram_percentiles, 2);
    cr_assert_float_eq(c.histogram_percentiles[0], 0.5, 1e-12);
    cr_assert_float_eq(c.histogram_percentiles[1], 0.99, 1e-12);
    cr_assert_eq(c.nextra_tags, 3); /* sorted, duplicates removed */
    cr_assert_str_eq(c.extra_tags[0], "a:1");
    cr_assert_str_eq(c.extra_tags[1], "b:2");
    cr_assert_str_eq(c.extra_tags[2], "c");
    cr_assert_str_eq(c.hostname, "box1");
    cr_assert(!c.use_v2_series);
    cr_assert_eq(c.compressor, AGG_COMPRESS_ZLIB);
    cr_assert_eq(c.zstd_level, 3);
    cr_assert_eq(c.max_payload_size, 1000);
    cr_assert_eq(c.max_uncompressed_payload_size, 2000);
    cr_assert_eq(c.max_series_payload_size, 3000);
    cr_assert_eq(c.max_series_uncompressed_payload_size, 4000);
    cr_assert_eq(c.max_series_points_per_payload, 50);
    cr_assert(!c.enable_series && !c.enable_sketches && !c.enable_events &&
              !c.enable_service_checks);
    agg_config_free(&c);
}

Test(config, none_compressor_and_unset_leaves_defaults)
{
    struct agg_config c;
    agg_config_defaults(&c);
    nvars = 0;
    put("DD_SERIALIZER_COMPRESSOR_KIND", "none");
    put("DD_DOGSTATSD_CONTEXT_LIMIT", ""); /* empty = unset */
    cr_assert_eq(agg_config_from_env(&c, &env), 0);
    cr_assert_eq(c.compressor, AGG_COMPRESS_NONE);
    cr_assert_eq(c.context_limit, 1000000);
    cr_assert_eq(c.expiry_seconds, 300);
    agg_config_free(&c);
}

static void expect_bad(const char *k, const char *v)
{
    struct agg_config c;
    char line[512] = "";
    agg_config_defaults(&c);
    nvars = 0;
    put(k, v);
    cr_assert_eq(agg_config_from_env(&c, &env), UV_EINVAL, "%s=%s", k, v);
    agg_config_free(&c);
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(line, 1, sizeof(line) - 1, f);
    line[n] = '\0';
    cr_assert(strstr(line, k) != NULL, "error line names %s: %s", k, line);
}

Test(config, bad_values_name_the_variable, .init = cr_redirect_stderr)
{
    expect_bad("DD_DOGSTATSD_CONTEXT_LIMIT", "abc");
}

Test(config, bad_compressor, .init = cr_redirect_stderr)
{
    expect_bad("DD_SERIALIZER_COMPRESSOR_KIND", "lz4");
}

Test(config, bad_aggregate, .init = cr_redirect_stderr)
{
    expect_bad("DD_HISTOGRAM_AGGREGATES", "max,foo");
}

Test(config, bad_percentile, .init = cr_redirect_stderr)
{
    expect_bad("DD_HISTOGRAM_PERCENTILES", "0.5,1.5");
}

Test(config, bad_bool, .init = cr_redirect_stderr)
{
    expect_bad("DD_DOGSTATSD_FLUSH_INCOMPLETE_BUCKETS", "yes");
}

Test(config, bad_batch_size, .init = cr_redirect_stderr)
{
    expect_bad("DD_DOGSTATSD_NO_AGGREGATION_PIPELINE_BATCH_SIZE", "0");
}

Test(config, bad_zstd_level, .init = cr_redirect_stderr)
{
    expect_bad("DD_SERIALIZER_ZSTD_COMPRESSOR_LEVEL", "99");
}

Test(config, create_rejects_bad_config)
{
    struct agg_config c;
    struct agg *a = NULL;
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    agg_config_defaults(&c);
    c.context_limit = 0;
    cr_assert_eq(agg_create(&loop, &c, NULL, NULL, &a), UV_EINVAL);
    cr_assert_null(a);
    agg_config_free(&c);
    cr_assert_eq(uv_loop_close(&loop), 0);
}
