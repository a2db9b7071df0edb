/*
 * test_config.c - fwd_config_defaults and fwd_config_from_env: the Agent's
 * defaults, API key trimming, site and URL resolution with the
 * version-prefixed rewrite, DD_ADDITIONAL_ENDPOINTS, numbers, proxies, TLS,
 * and errors that name the variable.
 */
#include "fwd_test.h"

/* A fake environment: NULL-terminated name/value pairs. */
static const char *fake_get(const char *name, void *data)
{
    const char *const *kv = data;
    for (; kv[0] != NULL; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

static int load(struct fwd_config *cfg, const char *const *kv)
{
    struct cmn_env env = {fake_get, (void *)kv};
    fwd_config_defaults(cfg);
    return fwd_config_from_env(cfg, &env);
}

Test(config, defaults)
{
    struct fwd_config c;
    fwd_config_defaults(&c);
    cr_assert_eq(c.nendpoints, 0);
    cr_assert_float_eq(c.timeout_s, 20, 1e-9);
    cr_assert_eq(c.max_concurrent, 10);
    cr_assert_float_eq(c.backoff_base, 2, 1e-9);
    cr_assert_float_eq(c.backoff_factor, 2, 1e-9);
    cr_assert_float_eq(c.backoff_max, 64, 1e-9);
    cr_assert_eq(c.recovery_interval, 2);
    cr_assert_eq(c.retry_queue_max_bytes, 15 * 1024 * 1024);
    cr_assert_float_eq(c.stop_timeout_s, 2, 1e-9);
    cr_assert_eq(c.stop_wait_for_inflight, false);
    cr_assert_eq(c.min_tls_version, 12);
    cr_assert_null(c.proxy_https);
    fwd_config_free(&c);
}

Test(config, api_key_trimmed_and_site_rewrite)
{
    static const struct {
        const char *site, *url;
    } rows[] = {
        {NULL, "https://7-60-0-app.agent.datadoghq.com"},
        {"datadoghq.eu", "https://7-60-0-app.agent.datadoghq.eu"},
        {"us3.datadoghq.com", "https://7-60-0-app.agent.us3.datadoghq.com"},
        {"us5.datadoghq.com", "https://7-60-0-app.agent.us5.datadoghq.com"},
        {"ap1.datadoghq.com", "https://7-60-0-app.agent.ap1.datadoghq.com"},
        {"ddog-gov.com", "https://7-60-0-app.agent.ddog-gov.com"},
        {"datad0g.com", "https://7-60-0-app.agent.datad0g.com"},
        {" datadoghq.eu ", "https://7-60-0-app.agent.datadoghq.eu"},
        {"example.com", "https://app.example.com"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *kv[] = {"DD_API_KEY", "  abc123 \n", "DD_SITE",
                            rows[i].site, NULL,          NULL};
        struct fwd_config c;
        if (rows[i].site == NULL)
            kv[2] = NULL;
        cr_assert_eq(load(&c, kv), 0);
        cr_assert_eq(c.nendpoints, 1);
        cr_assert_str_eq(c.endpoints[0].url, rows[i].url);
        cr_assert_eq(c.endpoints[0].nkeys, 1);
        cr_assert_str_eq(c.endpoints[0].keys[0], "abc123");
        fwd_config_free(&c);
    }
}

Test(config, dd_url_precedence_and_custom_untouched)
{
    struct fwd_config c;
    const char *a[] = {
        "DD_API_KEY",    "k", "DD_DD_URL", "http://127.0.0.1:8080/", "DD_URL",
        "https://other", NULL};
    cr_assert_eq(load(&c, a), 0);
    cr_assert_str_eq(c.endpoints[0].url, "http://127.0.0.1:8080");
    fwd_config_free(&c);
    const char *b[] = {
        "DD_API_KEY",    "k", "DD_URL", "https://app.datadoghq.eu", "DD_SITE",
        "datadoghq.com", NULL};
    cr_assert_eq(load(&c, b), 0);
    cr_assert_str_eq(c.endpoints[0].url,
                     "https://7-60-0-app.agent.datadoghq.eu");
    fwd_config_free(&c);
    const char *d[] = {"DD_API_KEY", "k", "DD_DD_URL",
                       "https://app.mrf.datadoghq.com", NULL};
    cr_assert_eq(load(&c, d), 0);
    cr_assert_str_eq(c.endpoints[0].url,
                     "https://7-60-0-app.agent.mrf.datadoghq.com");
    fwd_config_free(&c);
    const char *e[] = {"DD_API_KEY", "k", "DD_DD_URL",
                       "https://app.datadoghq.com.evil.example", NULL};
    cr_assert_eq(load(&c, e), 0);
    cr_assert_str_eq(c.endpoints[0].url,
                     "https://app.datadoghq.com.evil.example");
    fwd_config_free(&c);
}

Test(config, additional_endpoints)
{
    struct fwd_config c;
    const char *kv[] = {
        "DD_API_KEY", "main", "DD_ADDITIONAL_ENDPOINTS",
        "{\"https://app.datadoghq.eu\": [\" k2 \", \"k3\", \"k2\"],"
        " \"https://custom.example:8443/\": [\"  \"],"
        " \"https://app.datadoghq.com\": [\"k4\"]}",
        NULL};
    cr_assert_eq(load(&c, kv), 0);
    cr_assert_eq(c.nendpoints, 2);
    /* the main endpoint first, with the extra key merged */
    cr_assert_str_eq(c.endpoints[0].url,
                     "https://7-60-0-app.agent.datadoghq.com");
    cr_assert_eq(c.endpoints[0].nkeys, 2);
    cr_assert_str_eq(c.endpoints[0].keys[0], "main");
    cr_assert_str_eq(c.endpoints[0].keys[1], "k4");
    cr_assert_str_eq(c.endpoints[1].url,
                     "https://7-60-0-app.agent.datadoghq.eu");
    cr_assert_eq(c.endpoints[1].nkeys, 2);
    cr_assert_str_eq(c.endpoints[1].keys[0], "k2");
    cr_assert_str_eq(c.endpoints[1].keys[1], "k3");
    fwd_config_free(&c);
}

Test(config, no_api_key_no_endpoint)
{
    struct fwd_config c;
    const char *a[] = {"DD_SITE", "datadoghq.eu", NULL};
    cr_assert_eq(load(&c, a), 0);
    cr_assert_eq(c.nendpoints, 0);
    cr_assert_null(c.endpoints);
    fwd_config_free(&c);
    const char *b[] = {"DD_API_KEY", "   ", NULL};
    cr_assert_eq(load(&c, b), 0);
    cr_assert_eq(c.nendpoints, 0);
    fwd_config_free(&c);
}

Test(config, numbers_bools_tls)
{
    struct fwd_config c;
    const char *kv[] = {"DD_FORWARDER_TIMEOUT",
                        "5.5",
                        "DD_FORWARDER_MAX_CONCURRENT_REQUESTS",
                        "3",
                        "DD_FORWARDER_BACKOFF_BASE",
                        "1",
                        "DD_FORWARDER_BACKOFF_FACTOR",
                        "3",
                        "DD_FORWARDER_BACKOFF_MAX",
                        "30",
                        "DD_FORWARDER_RECOVERY_INTERVAL",
                        "4",
                        "DD_FORWARDER_RECOVERY_RESET",
                        "true",
                        "DD_FORWARDER_RETRY_QUEUE_PAYLOADS_MAX_SIZE",
                        "1000",
                        "DD_FORWARDER_STOP_TIMEOUT",
                        "3",
                        "DD_FORWARDER_STOP_WAIT_FOR_INFLIGHT",
                        "true",
                        "DD_SKIP_SSL_VALIDATION",
                        "1",
                        "DD_MIN_TLS_VERSION",
                        "TLSv1.3",
                        NULL};
    cr_assert_eq(load(&c, kv), 0);
    cr_assert_float_eq(c.timeout_s, 5.5, 1e-9);
    cr_assert_eq(c.max_concurrent, 3);
    cr_assert_float_eq(c.backoff_base, 1, 1e-9);
    cr_assert_float_eq(c.backoff_factor, 3, 1e-9);
    cr_assert_float_eq(c.backoff_max, 30, 1e-9);
    cr_assert_eq(c.recovery_interval, 4);
    cr_assert(c.recovery_reset);
    cr_assert_eq(c.retry_queue_max_bytes, 1000);
    cr_assert_float_eq(c.stop_timeout_s, 3, 1e-9);
    cr_assert(c.stop_wait_for_inflight);
    cr_assert(c.skip_ssl_validation);
    cr_assert_eq(c.min_tls_version, 13);
    fwd_config_free(&c);
}

Test(config, proxies_with_fallbacks)
{
    struct fwd_config c;
    const char *a[] = {"DD_PROXY_HTTPS",
                       "http://p1:3128",
                       "HTTPS_PROXY",
                       "http://ignored:1",
                       "HTTP_PROXY",
                       "http://p2:3128",
                       "NO_PROXY",
                       "a.example b.example,,c.example",
                       NULL};
    cr_assert_eq(load(&c, a), 0);
    cr_assert_str_eq(c.proxy_https, "http://p1:3128");
    cr_assert_str_eq(c.proxy_http, "http://p2:3128");
    cr_assert_str_eq(c.no_proxy, "a.example,b.example,c.example");
    fwd_config_free(&c);
    const char *b[] = {"https_proxy", "http://low:1", "DD_PROXY_NO_PROXY",
                       "x",           "NO_PROXY",     "y",
                       NULL};
    cr_assert_eq(load(&c, b), 0);
    cr_assert_str_eq(c.proxy_https, "http://low:1");
    cr_assert_null(c.proxy_http);
    cr_assert_str_eq(c.no_proxy, "x");
    fwd_config_free(&c);
}

/* Every malformed value fails with UV_EINVAL and a line naming it. */
Test(config, bad_values_name_the_variable)
{
    static const char *const rows[][2] = {
        {"DD_FORWARDER_TIMEOUT", "abc"},
        {"DD_FORWARDER_TIMEOUT", "0"},
        {"DD_FORWARDER_MAX_CONCURRENT_REQUESTS", "0"},
        {"DD_FORWARDER_BACKOFF_BASE", "-1"},
        {"DD_FORWARDER_RECOVERY_INTERVAL", "x"},
        {"DD_FORWARDER_RECOVERY_RESET", "sometimes"},
        {"DD_FORWARDER_RETRY_QUEUE_PAYLOADS_MAX_SIZE", "15MB"},
        {"DD_FORWARDER_STOP_TIMEOUT", "-2"},
        {"DD_FORWARDER_STOP_WAIT_FOR_INFLIGHT", "yes"},
        {"DD_SKIP_SSL_VALIDATION", "maybe"},
        {"DD_MIN_TLS_VERSION", "tlsv9"},
        {"DD_ADDITIONAL_ENDPOINTS", "not json"},
        {"DD_ADDITIONAL_ENDPOINTS", "[\"https://x\"]"},
        {"DD_ADDITIONAL_ENDPOINTS", "{\"https://x\": \"key\"}"},
        {"DD_ADDITIONAL_ENDPOINTS", "{\"ftp://x\": [\"key\"]}"},
        {"DD_DD_URL", "ftp://x"},
        {"DD_DD_URL", "https://"},
        {"DD_URL", "app.datadoghq.com"},
        {"DD_SITE", "https://datadoghq.com"},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const char *kv[] = {"DD_API_KEY", "secretkey12345", rows[i][0],
                            rows[i][1], NULL};
        struct fwd_config c;
        struct capture cap;
        capture_start(&cap);
        int rc = load(&c, kv);
        char *log = capture_end(&cap);
        cr_assert_eq(rc, UV_EINVAL, "%s=%s gave %d", rows[i][0], rows[i][1],
                     rc);
        cr_assert_not_null(strstr(log, rows[i][0]), "%s=%s: log: %s",
                           rows[i][0], rows[i][1], log);
        cr_assert_null(strstr(log, "secretkey12345"));
        cmn_free(log);
        fwd_config_free(&c);
    }
}

/* An intake URL longer than FWD_URL_MAX is a configuration error that
 * names the variable and the cap (it once failed as "out of memory" when
 * the version-prefixed rewrite passed a fixed 4 KiB buffer); one just
 * under the cap is rewritten in full. */
Test(config, intake_url_length_cap)
{
    static const char prefix[] = "https://app.datadoghq.com/";
    char url[FWD_URL_MAX + 2];
    size_t n = sizeof(prefix) - 1;
    memcpy(url, prefix, n);
    memset(url + n, 'p', FWD_URL_MAX + 1 - n);
    url[FWD_URL_MAX + 1] = '\0';
    const char *kv[] = {"DD_API_KEY", "k", "DD_DD_URL", url, NULL};
    struct fwd_config c;
    struct capture cap;
    capture_start(&cap);
    int rc = load(&c, kv);
    char *log = capture_end(&cap);
    cr_assert_eq(rc, UV_EINVAL);
    cr_assert_not_null(
        strstr(log,
               "DD_DD_URL: a URL of at most 4096 bytes expected, got 4097"),
        "%s", log);
    cmn_free(log);
    fwd_config_free(&c);

    url[FWD_URL_MAX] = '\0'; /* 4096 bytes: accepted and rewritten */
    cr_assert_eq(load(&c, kv), 0);
    cr_assert_eq(c.nendpoints, 1);
    cr_assert_eq(strlen(c.endpoints[0].url),
                 FWD_URL_MAX + strlen("7-60-0-") + strlen(".agent"));
    cr_assert_eq(strncmp(c.endpoints[0].url,
                         "https://7-60-0-app.agent.datadoghq.com/ppp", 42),
                 0);
    fwd_config_free(&c);
}

/* The same cap through DD_SITE (the URL built from it), and a NO_PROXY
 * list of any length is kept whole (both once had fixed buffers that
 * failed as "out of memory"). */
Test(config, site_length_cap_and_long_no_proxy)
{
    static char site[FWD_URL_MAX + 16];
    memset(site, 'a', FWD_URL_MAX);
    memcpy(site + FWD_URL_MAX, ".com", 5);
    const char *kv[] = {"DD_API_KEY", "k", "DD_SITE", site, NULL};
    struct fwd_config c;
    struct capture cap;
    capture_start(&cap);
    int rc = load(&c, kv);
    char *log = capture_end(&cap);
    cr_assert_eq(rc, UV_EINVAL);
    cr_assert_not_null(strstr(log, "DD_SITE: a URL of at most 4096 bytes"),
                       "%s", log);
    cmn_free(log);
    fwd_config_free(&c);

    static char np[100001];
    for (size_t i = 0; i < sizeof(np) - 1; i++)
        np[i] = i % 10 == 9 ? ' ' : 'h';
    np[sizeof(np) - 2] = 'h'; /* ends with an item */
    np[sizeof(np) - 1] = '\0';
    const char *kv2[] = {"DD_API_KEY", "k", "NO_PROXY", np, NULL};
    cr_assert_eq(load(&c, kv2), 0);
    cr_assert_eq(strlen(c.no_proxy), sizeof(np) - 1);
    cr_assert_eq(strncmp(c.no_proxy, "hhhhhhhhh,hhhhhhhhh,", 20), 0);
    fwd_config_free(&c);
}

/* TLS 1.2 is the default minimum; the error names every accepted value
 * (the Agent's four), and a minimum below 1.2 is accepted with a warning. */
Test(config, min_tls_version_default_and_truthful_error)
{
    struct fwd_config c;
    struct capture cap;
    const char *bad[] = {"DD_MIN_TLS_VERSION", "tlsv9", NULL};
    const char *old[] = {"DD_MIN_TLS_VERSION", "tlsv1.0", NULL};

    fwd_config_defaults(&c);
    cr_assert_eq(c.min_tls_version, 12);
    fwd_config_free(&c);
    capture_start(&cap);
    int rc = load(&c, bad);
    char *log = capture_end(&cap);
    cr_assert_eq(rc, UV_EINVAL);
    cr_assert_not_null(strstr(log, "DD_MIN_TLS_VERSION: expected tlsv1.0, "
                                   "tlsv1.1, tlsv1.2 (the default) or "
                                   "tlsv1.3, got \"tlsv9\"\n"),
                       "%s", log);
    cmn_free(log);
    fwd_config_free(&c);
    capture_start(&cap);
    cr_assert_eq(load(&c, old), 0);
    log = capture_end(&cap);
    cr_assert_eq(c.min_tls_version, 10);
    cr_assert_not_null(strstr(log, "DD_MIN_TLS_VERSION=tlsv1.0: TLS versions "
                                   "below 1.2 are allowed"),
                       "%s", log);
    cmn_free(log);
    fwd_config_free(&c);
}

static size_t count_of(const char *hay, const char *needle)
{
    size_t n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
        n++;
    return n;
}

/* Warnings at creation: once for verification off, once per plain-http
 * URL to a host that is not loopback; none for https or loopback. */
static char *create_log(const char *const *kv)
{
    uv_loop_t loop;
    struct fwd_config c;
    struct fwd *f;
    struct capture cap;

    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(load(&c, kv), 0);
    capture_start(&cap);
    cr_assert_eq(fwd_create(&loop, &c, &f), 0);
    char *log = capture_end(&cap);
    fwd_destroy(f);
    fwd_config_free(&c);
    cr_assert_eq(uv_loop_close(&loop), 0);
    return log;
}

Test(config, insecure_settings_warn_once)
{
    const char *insecure[] = {"DD_API_KEY",
                              "secretkey12345",
                              "DD_DD_URL",
                              "http://intake.example.com:8080",
                              "DD_SKIP_SSL_VALIDATION",
                              "true",
                              NULL};
    char *log = create_log(insecure);
    cr_assert_eq(count_of(log, "TLS certificate verification is off "
                               "(DD_SKIP_SSL_VALIDATION)"),
                 1, "%s", log);
    cr_assert_eq(count_of(log, "intake URL http://intake.example.com:8080 "
                               "is plain http:// to a host that is not "
                               "loopback"),
                 1, "%s", log);
    cr_assert_null(strstr(log, "secretkey12345"));
    cmn_free(log);

    const char *loop_http[] = {"DD_API_KEY", "k", "DD_DD_URL",
                               "http://127.0.0.1:8080", NULL};
    log = create_log(loop_http);
    cr_assert_str_eq(log, "");
    cmn_free(log);
    const char *https[] = {"DD_API_KEY", "k", "DD_DD_URL",
                           "https://intake.example.com", NULL};
    log = create_log(https);
    cr_assert_str_eq(log, "");
    cmn_free(log);
}

Test(config, plain_remote_url_detection)
{
    static const struct {
        const char *url;
        bool remote;
    } rows[] = {
        {"http://intake.example.com", true},
        {"http://localhost", false},
        {"http://localhost:8125/x", false},
        {"http://LOCALHOST:1", false},
        {"http://localhost.example.com", true},
        {"http://127.0.0.1:80", false},
        {"http://127.1.2.3", false},
        {"http://127.evil.com", true},
        {"http://[::1]:8080", false},
        {"http://10.0.0.1", true},
        {"https://intake.example.com", false},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        cr_assert_eq(fwd__url_is_plain_remote(rows[i].url), rows[i].remote,
                     "%s", rows[i].url);
}

Test(config, agent_url_rewrite_helper)
{
    char *u = fwd__agent_url("https://app.datadoghq.com:443/x");
    cr_assert_str_eq(u, "https://7-60-0-app.agent.datadoghq.com:443/x");
    cmn_free(u);
    u = fwd__agent_url("https://api.datadoghq.com");
    cr_assert_str_eq(u, "https://api.datadoghq.com");
    cmn_free(u);
    u = fwd__agent_url("https://app.datadoghq.com.");
    cr_assert_str_eq(u, "https://7-60-0-app.agent.datadoghq.com.");
    cmn_free(u);
}

/* OOM loop over fwd_config_from_env: every failure point returns an error
 * and leaks nothing (checked by the live-bytes counter). */
Test(config, oom_loop)
{
    const char *kv[] = {"DD_API_KEY",
                        "main",
                        "DD_PROXY_HTTPS",
                        "http://p:1",
                        "NO_PROXY",
                        "a b",
                        "DD_ADDITIONAL_ENDPOINTS",
                        "{\"https://app.datadoghq.eu\": [\"k2\", \"k3\"]}",
                        NULL};
    size_t base = cmn_alloc_live_bytes();
    bool ok = false;
    for (uint64_t n = 1; n < 200 && !ok; n++) {
        struct fwd_config c;
        struct cmn_env env = {fake_get, (void *)kv};
        fwd_config_defaults(&c);
        cmn_alloc_fail_after(n);
        int rc = fwd_config_from_env(&c, &env);
        cmn_alloc_fail_reset();
        if (rc == 0) {
            ok = true;
            cr_assert_eq(c.nendpoints, 2);
        } else {
            cr_assert_eq(rc, UV_ENOMEM, "n=%llu rc=%d", (unsigned long long)n,
                         rc);
        }
        fwd_config_free(&c);
        cr_assert_eq(cmn_alloc_live_bytes(), base, "leak at n=%llu",
                     (unsigned long long)n);
    }
    cr_assert(ok);
}
