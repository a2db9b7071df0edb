/*
 * test_config.c - dsd_config_defaults (spec/pipeline.md §6) and
 * dsd_config_from_env with a fake environment, including malformed values.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "dogstatsd.h"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *fake_get(const char *name, void *data)
{
    const char *const *kv = data;
    for (; kv[0] != NULL; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static int from(struct dsd_config *cfg, const char *const *kv)
{
    struct cmn_env env = {fake_get, (void *)kv};
    return dsd_config_from_env(cfg, &env);
}

Test(config, defaults)
{
    struct dsd_config c;
    dsd_config_defaults(&c);
    cr_expect_eq(c.port, 8125);
    cr_expect_null(c.bind_host); /* = localhost */
    cr_expect_eq(c.non_local_traffic, false);
    cr_expect_null(c.socket_path);
    cr_expect_null(c.stream_socket_path);
    cr_expect_eq(c.buffer_size, 8192);
    cr_expect_eq(c.so_rcvbuf, 0);
    cr_expect_eq(c.eol_required_udp, false);
    cr_expect_eq(c.eol_required_uds, false);
    cr_expect_eq(c.parse.no_aggregation_pipeline, true);
    cr_expect_eq(c.parse.origin_detection_client, false);
    cr_expect_null(c.metric_namespace);
    cr_expect_null(c.namespace_blacklist);
    cr_expect_eq(c.nmetric_blocklist, 0);
    cr_expect_eq(c.blocklist_match_prefix, false);
    cr_expect_eq(c.max_values_per_line, 1024);
    cr_expect_eq(c.max_stream_conns, 1024);
    /* nothing set: nothing changes */
    static const char *const none[] = {NULL};
    cr_expect_eq(from(&c, none), 0);
    cr_expect_eq(c.port, 8125);
    dsd_config_free(&c);
}

Test(config, every_variable)
{
    static const char *const kv[] = {
        "DD_DOGSTATSD_PORT",
        "9125",
        "DD_BIND_HOST",
        "127.0.0.2",
        "DD_DOGSTATSD_NON_LOCAL_TRAFFIC",
        "true",
        "DD_DOGSTATSD_SOCKET",
        "/tmp/x/dsd.socket",
        "DD_DOGSTATSD_STREAM_SOCKET",
        "/tmp/x/dsd.stream",
        "DD_DOGSTATSD_BUFFER_SIZE",
        "65536",
        "DD_DOGSTATSD_SO_RCVBUF",
        "4194304",
        "DD_DOGSTATSD_EOL_REQUIRED",
        "udp, uds",
        "DD_DOGSTATSD_NO_AGGREGATION_PIPELINE",
        "false",
        "DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT",
        "1",
        "DD_STATSD_METRIC_NAMESPACE",
        "myapp",
        "DD_STATSD_METRIC_NAMESPACE_BLACKLIST",
        "sys. jvm.",
        "DD_STATSD_METRIC_BLOCKLIST",
        "a.b,c.d e.f",
        "DD_STATSD_METRIC_BLOCKLIST_MATCH_PREFIX",
        "True",
        NULL,
    };
    struct dsd_config c;
    dsd_config_defaults(&c);
    cr_assert_eq(from(&c, kv), 0);
    cr_expect_eq(c.port, 9125);
    cr_expect_str_eq(c.bind_host, "127.0.0.2");
    cr_expect_eq(c.non_local_traffic, true);
    cr_expect_str_eq(c.socket_path, "/tmp/x/dsd.socket");
    cr_expect_str_eq(c.stream_socket_path, "/tmp/x/dsd.stream");
    cr_expect_eq(c.buffer_size, 65536);
    cr_expect_eq(c.so_rcvbuf, 4194304);
    cr_expect_eq(c.eol_required_udp, true);
    cr_expect_eq(c.eol_required_uds, true);
    cr_expect_eq(c.parse.no_aggregation_pipeline, false);
    cr_expect_eq(c.parse.origin_detection_client, true);
    cr_expect_str_eq(c.metric_namespace, "myapp");
    cr_assert_eq(c.nnamespace_blacklist, 2);
    cr_expect_str_eq(c.namespace_blacklist[0], "sys.");
    cr_expect_str_eq(c.namespace_blacklist[1], "jvm.");
    cr_assert_eq(c.nmetric_blocklist, 3);
    cr_expect_str_eq(c.metric_blocklist[0], "a.b");
    cr_expect_str_eq(c.metric_blocklist[1], "c.d");
    cr_expect_str_eq(c.metric_blocklist[2], "e.f");
    cr_expect_eq(c.blocklist_match_prefix, true);

    /* applying again replaces, never appends or leaks */
    size_t live = cmn_alloc_live_bytes();
    cr_assert_eq(from(&c, kv), 0);
    cr_expect_eq(c.nmetric_blocklist, 3);
    cr_expect_eq(cmn_alloc_live_bytes(), live);
    dsd_config_free(&c);
    dsd_config_free(&c); /* idempotent */
}

Test(config, random_port_and_port_zero)
{
    struct dsd_config c;
    dsd_config_defaults(&c);
    static const char *const r[] = {"DD_DOGSTATSD_PORT", "__random__", NULL};
    cr_assert_eq(from(&c, r), 0);
    cr_expect_eq(c.port, -1);
    static const char *const z[] = {"DD_DOGSTATSD_PORT", "0", NULL};
    cr_assert_eq(from(&c, z), 0);
    cr_expect_eq(c.port, 0);
    static const char *const e[] = {"DD_DOGSTATSD_EOL_REQUIRED", "named_pipe",
                                    NULL};
    cr_assert_eq(from(&c, e), 0);
    cr_expect_eq(c.eol_required_udp, false);
    cr_expect_eq(c.eol_required_uds, false);
    dsd_config_free(&c);
}

Test(config, malformed_values_refused)
{
    static const char *const bad[][2] = {
        {"DD_DOGSTATSD_PORT", "abc"},
        {"DD_DOGSTATSD_PORT", "65536"},
        {"DD_DOGSTATSD_PORT", "-2"},
        {"DD_DOGSTATSD_PORT", "__RANDOM__"},
        {"DD_DOGSTATSD_NON_LOCAL_TRAFFIC", "yes"},
        {"DD_DOGSTATSD_BUFFER_SIZE", "0"},
        {"DD_DOGSTATSD_BUFFER_SIZE", "8k"},
        {"DD_DOGSTATSD_SO_RCVBUF", "-1"},
        {"DD_DOGSTATSD_EOL_REQUIRED", "udp,tcp"},
        {"DD_DOGSTATSD_NO_AGGREGATION_PIPELINE", "maybe"},
        {"DD_DOGSTATSD_ORIGIN_DETECTION_CLIENT", "2"},
        {"DD_STATSD_METRIC_BLOCKLIST_MATCH_PREFIX", "on"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *kv[] = {bad[i][0], bad[i][1], NULL};
        struct dsd_config c;
        dsd_config_defaults(&c);
        cr_expect_eq(from(&c, kv), UV_EINVAL, "%s=%s", bad[i][0], bad[i][1]);
        /* the bad value never becomes a setting */
        cr_expect_eq(c.port, 8125);
        cr_expect_eq(c.buffer_size, 8192);
        cr_expect_eq(c.so_rcvbuf, 0);
        cr_expect_eq(c.eol_required_udp, false);
        dsd_config_free(&c);
    }
}
