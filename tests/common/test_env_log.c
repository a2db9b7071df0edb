/*
 * test_env_log.c - DD_* readers (unset, valid, malformed) and log levels.
 */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common.h"

struct kv {
    const char *k, *v;
};

static const char *fake_get(const char *name, void *data)
{
    for (const struct kv *e = data; e->k; e++)
        if (strcmp(e->k, name) == 0)
            return e->v;
    return NULL;
}

static const struct kv vars[] = {
    {"DD_B_OK", "true"},     {"DD_B_BAD", "yes"},     {"DD_I_OK", "8125"},
    {"DD_I_RANGE", "70000"}, {"DD_I_BAD", "81x"},     {"DD_F_OK", "0.5"},
    {"DD_EMPTY", ""},        {"DD_S", "datad0g.com"}, {NULL, NULL},
};

static void redirect_err(void)
{
    cr_redirect_stderr();
}

Test(env, readers, .init = redirect_err)
{
    struct cmn_env env = {fake_get, (void *)vars};
    bool b = false;
    cr_expect_eq(cmn_env_bool(&env, "DD_B_OK", &b), 0);
    cr_expect(b);
    b = false;
    cr_expect_eq(cmn_env_bool(&env, "DD_UNSET", &b), 0);
    cr_expect(!b, "unset leaves the default");
    cr_expect_eq(cmn_env_bool(&env, "DD_EMPTY", &b), 0);
    cr_expect(!b, "empty is unset");
    cr_expect_eq(cmn_env_bool(&env, "DD_B_BAD", &b), UV_EINVAL);

    int64_t i = 1;
    cr_expect_eq(cmn_env_i64(&env, "DD_I_OK", 0, 65535, &i), 0);
    cr_expect_eq(i, 8125);
    cr_expect_eq(cmn_env_i64(&env, "DD_I_RANGE", 0, 65535, &i), UV_EINVAL);
    cr_expect_eq(cmn_env_i64(&env, "DD_I_BAD", 0, 65535, &i), UV_EINVAL);
    cr_expect_eq(i, 8125, "a bad value leaves the output alone");

    double f = 0;
    cr_expect_eq(cmn_env_f64(&env, "DD_F_OK", 0, 1, &f), 0);
    cr_expect_eq(f, 0.5);
    const char *s = "datadoghq.com";
    cr_expect_eq(cmn_env_str(&env, "DD_S", &s), 0);
    cr_expect_str_eq(s, "datad0g.com");
}

/* The error line names the variable and the bad value. */
Test(env, error_names_variable)
{
    struct cmn_env env = {fake_get, (void *)vars};
    char path[] = "/tmp/dp-env-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    bool b;
    cr_expect_eq(cmn_env_bool(&env, "DD_B_BAD", &b), UV_EINVAL);
    dup2(saved, 2);
    close(saved);
    char buf[512] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    cr_assert(n > 0);
    cr_expect(strstr(buf, "DD_B_BAD: expected true or false, got \"yes\"") !=
                  NULL,
              "%s", buf);
    cr_expect(strstr(buf, "| ERROR | (config)") != NULL, "%s", buf);
}

Test(log, levels)
{
    enum cmn_log_level l;
    cr_expect_eq(cmn_log_level_parse("DEBUG", &l), 0);
    cr_expect_eq(l, CMN_LOG_DEBUG);
    cr_expect_eq(cmn_log_level_parse("warning", &l), 0);
    cr_expect_eq(l, CMN_LOG_WARN);
    cr_expect_eq(cmn_log_level_parse("loud", &l), CMN_EPARSE);
    cmn_log_set_level(CMN_LOG_WARN);
    cr_expect(!cmn_log_enabled(CMN_LOG_INFO));
    cr_expect(cmn_log_enabled(CMN_LOG_ERROR));
    cmn_log_set_level(CMN_LOG_OFF);
    cr_expect(!cmn_log_enabled(CMN_LOG_CRITICAL));
}

Test(log, ratelimit_suppresses_and_reports)
{
    char path[] = "/tmp/dp-log-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    int saved = dup(2);
    dup2(fd, 2);
    struct cmn_ratelimit rl = CMN_RATELIMIT_INIT(60000, 2);
    for (int i = 0; i < 5; i++)
        cmn_log_rl(&rl, CMN_LOG_ERROR, "t", "bad line %d", i);
    dup2(saved, 2);
    close(saved);
    char buf[2048] = {0};
    ssize_t n = pread(fd, buf, sizeof(buf) - 1, 0);
    close(fd);
    unlink(path);
    cr_assert(n > 0);
    cr_expect(strstr(buf, "bad line 0") && strstr(buf, "bad line 1"));
    cr_expect(strstr(buf, "bad line 2") == NULL);
    cr_expect_eq(rl.suppressed, 3);
}

/* The log's UTC timestamp fields agree with gmtime_r: leap days, century
 * rules (1900 and 2100 are not leap years, 2000 is), before the epoch, and
 * a sweep of a day and 37 minutes at a time over 1600-2400. */
static bool utc_matches_gmtime(int64_t sec)
{
    int f[6];
    cmn_utc_fields(sec, f);
    time_t t = (time_t)sec;
    struct tm tm;
    if (gmtime_r(&t, &tm) == NULL)
        return false;
    int want[6] = {tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                   tm.tm_hour,        tm.tm_min,     tm.tm_sec};
    return memcmp(f, want, sizeof(want)) == 0;
}

Test(log, utc_fields_agree_with_gmtime)
{
    int f[6];
    cmn_utc_fields(0, f);
    cr_assert(f[0] == 1970 && f[1] == 1 && f[2] == 1 && f[3] == 0 &&
              f[4] == 0 && f[5] == 0);
    cmn_utc_fields(951782400, f); /* 2000-02-29 00:00:00 */
    cr_assert(f[0] == 2000 && f[1] == 2 && f[2] == 29 && f[3] == 0);
    cmn_utc_fields(1796130245, f); /* 2026-12-01 13:04:05 */
    cr_assert(f[0] == 2026 && f[1] == 12 && f[2] == 1 && f[3] == 13 &&
              f[4] == 4 && f[5] == 5);
    cmn_utc_fields(-1, f); /* 1969-12-31 23:59:59 */
    cr_assert(f[0] == 1969 && f[1] == 12 && f[2] == 31 && f[3] == 23 &&
              f[4] == 59 && f[5] == 59);
    const int64_t edges[] = {4107542400,  4107542399,  4110048000, 951868800,
                             -2203891200, -2208988800, 946684799,  0};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++)
        cr_assert(utc_matches_gmtime(edges[i]), "%lld", (long long)edges[i]);
    int64_t bad = 0, n = 0;
    for (int64_t s = -11676096000; s < 13569465600; s += 86400 + 37 * 60) {
        n++;
        if (!utc_matches_gmtime(s) && bad++ == 0)
            cr_log_error("first mismatch at %lld", (long long)s);
    }
    cr_assert_eq(bad, 0, "%lld of %lld differ", (long long)bad, (long long)n);
    cr_assert_gt(n, 280000); /* the sweep ran */
}
