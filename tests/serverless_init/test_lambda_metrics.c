/*
 * test_lambda_metrics.c - the enhanced metrics of spec §3 from scripted
 * INVOKEs and platform records: names, values, units, tags, the cold-start
 * and proactive-initialization rules, error / timeout / out-of-memory
 * counting, estimated cost, and the static Lambda tags.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "sinit_lambda.h"

#define MAX_REC 64

struct rec {
    char name[96];
    double v;
    char tags[128];
};
static struct rec recs[MAX_REC];
static size_t nrecs;

static void emit(void *data, const char *name, double v, const char *tags)
{
    (void)data;
    cr_assert_lt(nrecs, MAX_REC);
    snprintf(recs[nrecs].name, sizeof(recs[nrecs].name), "%s", name);
    recs[nrecs].v = v;
    snprintf(recs[nrecs].tags, sizeof(recs[nrecs].tags), "%s",
             tags ? tags : "");
    nrecs++;
}

/* Exactly one sample of aws.lambda.enhanced.<short> with these tags. */
static void expect(const char *shortname, const char *tags, double v)
{
    char name[96];
    snprintf(name, sizeof(name), "aws.lambda.enhanced.%s", shortname);
    size_t found = 0;
    for (size_t i = 0; i < nrecs; i++) {
        if (strcmp(recs[i].name, name) != 0 || strcmp(recs[i].tags, tags) != 0)
            continue;
        found++;
        cr_assert_eq(recs[i].v, v, "%s {%s} = %.17g, want %.17g", name, tags,
                     recs[i].v, v);
    }
    cr_assert_eq(found, 1, "%s {%s}: %zu samples", name, tags, found);
}

static size_t count(const char *shortname)
{
    char name[96];
    snprintf(name, sizeof(name), "aws.lambda.enhanced.%s", shortname);
    size_t n = 0;
    for (size_t i = 0; i < nrecs; i++)
        n += strcmp(recs[i].name, name) == 0;
    return n;
}

static void event(struct sinit_le *le, const char *type, const char *json)
{
    json_t *j = json_loads(json, JSON_DECODE_ANY, NULL);
    cr_assert_not_null(j, "%s", json);
    sinit_le_event(le, type, j);
    json_decref(j);
}

static void setup(void)
{
    nrecs = 0;
}

Test(le, one_invocation_all_metrics, .init = setup)
{
    struct sinit_le le;
    sinit_le_init(&le, true, 1000, emit, NULL);
    event(&le, "platform.initStart",
          "{\"initializationType\":\"on-demand\",\"phase\":\"init\"}");
    event(&le, "platform.initReport",
          "{\"initializationType\":\"on-demand\",\"metrics\":{"
          "\"durationMs\":211.4}}");
    sinit_le_invoke(&le, "a", 1500);
    cr_assert(!sinit_le_last_reported(&le));
    event(&le, "platform.runtimeDone",
          "{\"requestId\":\"a\",\"status\":\"success\",\"metrics\":{"
          "\"durationMs\":318.2,\"producedBytes\":52}}");
    event(&le, "platform.report",
          "{\"requestId\":\"a\",\"status\":\"success\",\"metrics\":{"
          "\"durationMs\":352.7,\"billedDurationMs\":353,\"memorySizeMB\":"
          "512,\"maxMemoryUsedMB\":91,\"initDurationMs\":211.4}}");
    cr_assert(sinit_le_last_reported(&le));
    sinit_le_shutdown(&le);
    const char *cold = "cold_start:true";
    expect("init_duration", "init_type:on-demand", 211.4 * 0.001);
    expect("invocations", cold, 1);
    expect("runtime_duration", cold, 318.2);
    expect("produced_bytes", cold, 52);
    expect("duration", cold, 352.7 * 0.001);
    expect("billed_duration", cold, 353 * 0.001);
    expect("max_memory_used", cold, 91);
    expect("memorysize", cold, 512);
    expect("post_runtime_duration", cold, 352.7 - 318.2);
    /* 0.0000002 + 0.353 s * 0.5 GB * 0.0000166667, to 1e-12 */
    expect("estimated_cost", cold, 0.000003141673);
    expect("shutdowns", "", 1);
    cr_assert_eq(count("errors"), 0);
    cr_assert_eq(count("timeouts"), 0);
    cr_assert_eq(count("out_of_memory"), 0);
    cr_assert_eq(count("unused_init"), 0);
    cr_assert_eq(count("init_duration"), 1); /* not again from report */
}

Test(le, cost_by_architecture)
{
    cr_assert_eq(sinit_le_cost(1000, 1024, false), 0.0000168667);
    cr_assert_eq(sinit_le_cost(1000, 1024, true), 0.0000135334);
    cr_assert_eq(sinit_le_cost(0, 128, false), 0.0000002);
}

Test(le, cold_start_then_warm, .init = setup)
{
    struct sinit_le le;
    sinit_le_init(&le, true, 0, emit, NULL);
    sinit_le_invoke(&le, "a", 10000); /* 10 s after start: still cold */
    sinit_le_invoke(&le, "b", 10001);
    expect("invocations", "cold_start:true", 1);
    expect("invocations", "cold_start:false", 1);
}

Test(le, proactive_initialization, .init = setup)
{
    struct sinit_le le;
    sinit_le_init(&le, true, 0, emit, NULL);
    sinit_le_invoke(&le, "a", 10001); /* over 10 s: proactive */
    sinit_le_invoke(&le, "b", 20000);
    expect("invocations", "cold_start:false,proactive_initialization:true", 1);
    expect("invocations", "cold_start:false", 1);
}

Test(le, errors_timeouts_oom_once_per_request, .init = setup)
{
    struct sinit_le le;
    sinit_le_init(&le, true, 0, emit, NULL);
    sinit_le_invoke(&le, "a", 1);
    event(&le, "platform.runtimeDone",
          "{\"requestId\":\"a\",\"status\":\"timeout\"}");
    sinit_le_invoke(&le, "b", 2);
    event(&le, "platform.runtimeDone",
          "{\"requestId\":\"b\",\"status\":\"error\",\"errorType\":"
          "\"Runtime.OutOfMemory\"}");
    /* the report also says max == size: still one out_of_memory */
    event(&le, "platform.report",
          "{\"requestId\":\"b\",\"status\":\"error\",\"metrics\":{"
          "\"durationMs\":5,\"billedDurationMs\":5,\"memorySizeMB\":128,"
          "\"maxMemoryUsedMB\":128}}");
    sinit_le_invoke(&le, "c", 3);
    event(&le, "platform.runtimeDone",
          "{\"requestId\":\"c\",\"status\":\"failure\"}");
    expect("timeouts", "cold_start:true", 1);
    expect("errors", "cold_start:true", 1);
    cr_assert_eq(count("errors"), 3);
    cr_assert_eq(count("timeouts"), 1);
    expect("out_of_memory", "cold_start:false", 1);
}

Test(le, unused_init_and_disabled, .init = setup)
{
    struct sinit_le le;
    sinit_le_init(&le, true, 0, emit, NULL);
    cr_assert(sinit_le_last_reported(&le)); /* nothing to wait for */
    sinit_le_shutdown(&le);
    expect("shutdowns", "", 1);
    expect("unused_init", "", 1);
    nrecs = 0;
    sinit_le_init(&le, false, 0, emit, NULL);
    sinit_le_invoke(&le, "a", 1);
    sinit_le_shutdown(&le);
    cr_assert_eq(nrecs, 0);
}

Test(le, garbage_records_are_ignored, .init = setup)
{
    struct sinit_le le;
    sinit_le_init(&le, true, 0, emit, NULL);
    sinit_le_invoke(&le, "a", 1);
    nrecs = 0;
    event(&le, "platform.report", "{\"requestId\":\"a\",\"metrics\":[]}");
    event(&le, "platform.runtimeDone", "{\"metrics\":{\"durationMs\":\"x\"}}");
    event(&le, "platform.logsDropped", "{\"reason\":\"x\"}");
    event(&le, "platform.report", "\"a string record\"");
    cr_assert_eq(nrecs, 0);
}

static const char *env_get(const char *name, void *data)
{
    const char *const *kv = data;
    for (; kv[0] != NULL; kv += 2)
        if (strcmp(kv[0], name) == 0)
            return kv[1];
    return NULL;
}

Test(le, static_tags)
{
    static const char *const vars[] = {"AWS_REGION",
                                       "us-gov-west-1",
                                       "AWS_LAMBDA_FUNCTION_NAME",
                                       "Orders",
                                       "AWS_LAMBDA_FUNCTION_VERSION",
                                       "7",
                                       "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
                                       "1024",
                                       "DD_ENV",
                                       "Prod",
                                       "DD_SERVICE",
                                       "API",
                                       "DD_VERSION",
                                       "V1",
                                       NULL};
    struct cmn_env env = {env_get, (void *)vars};
    char *prev[] = {"team:a"};
    char **tags;
    size_t n;
    cr_assert_eq(sinit_lambda_tags(&env, "42", prev, 1, &tags, &n), 0);
    static const char *const want[] = {
        "team:a",
        "env:prod",
        "service:api",
        "version:V1",
        "region:us-gov-west-1",
        "account_id:42",
        "aws_account:42",
        "functionname:orders",
        "resource:orders:7",
        "function_arn:arn:aws-us-gov:lambda:us-gov-west-1:42:function:orders",
        "executedversion:7",
        "memorysize:1024",
#if defined(__aarch64__)
        "architecture:arm64",
#else
        "architecture:x86_64",
#endif
        ("dd_extension_version:" CMN_VERSION),
    };
    cr_assert_eq(n, sizeof(want) / sizeof(want[0]), "%zu tags", n);
    for (size_t i = 0; i < n; i++)
        cr_assert_str_eq(tags[i], want[i]);
    cmn_strv_free(tags, n);
}
