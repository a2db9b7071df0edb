/*
 * test_tags.c - cloud detection, the tag map (base < DD_TAGS < cloud <
 * metadata < version), high-cardinality removal and enhanced-metric names
 * (spec/pipeline.md §5.3-§5.5), from a fake environment.
 */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "sinit.h"

/* A fake environment: NULL-terminated "NAME=value" strings. */
static const char *fake_get(const char *name, void *data)
{
    const char *const *kv = data;
    size_t l = strlen(name);
    for (; *kv; kv++)
        if (strncmp(*kv, name, l) == 0 && (*kv)[l] == '=')
            return *kv + l + 1;
    return NULL;
}

/* Renders the metric tags joined with ',' (map order). */
static char *render(const char *const *kv, enum sinit_cloud *cloud_out,
                    bool sidecar, const struct sinit_gcp_md *md)
{
    struct cmn_env env = {fake_get, (void *)kv};
    enum sinit_cloud cloud = sinit_cloud_detect(&env);
    if (cloud_out)
        *cloud_out = cloud;
    struct sinit_tags t;
    sinit_tags_init(&t);
    cr_assert_eq(sinit_tags_build(&t, &env, cloud, sidecar, md), 0);
    char **v;
    size_t n;
    cr_assert_eq(sinit_tags_metric_list(&t, &v, &n), 0);
    static char out[4096];
    size_t pos = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        pos += (size_t)snprintf(out + pos, sizeof(out) - pos, "%s%s",
                                i ? "," : "", v[i]);
    cr_assert_lt(pos, sizeof(out));
    cmn_strv_free(v, n);
    sinit_tags_free(&t);
    return out;
}

Test(cloud, detection_order)
{
    struct {
        const char *kv[4];
        enum sinit_cloud want;
    } cases[] = {
        {{"K_SERVICE=s", "CLOUD_RUN_JOB=j", NULL}, SINIT_CLOUD_RUN},
        {{"K_SERVICE=s", "FUNCTION_TARGET=f", NULL}, SINIT_CLOUD_RUN_FUNCTION},
        {{"CLOUD_RUN_JOB=j", "CONTAINER_APP_NAME=a", NULL},
         SINIT_CLOUD_RUN_JOB},
        {{"CONTAINER_APP_NAME=a", "WEBSITE_STACK=NODE", NULL},
         SINIT_CLOUD_CONTAINER_APP},
        {{"WEBSITE_STACK=NODE", NULL}, SINIT_CLOUD_APP_SERVICE},
        {{"K_SERVICE=", NULL}, SINIT_CLOUD_LOCAL}, /* empty = unset */
        {{NULL}, SINIT_CLOUD_LOCAL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
        struct cmn_env env = {fake_get, (void *)cases[i].kv};
        cr_assert_eq(sinit_cloud_detect(&env), cases[i].want, "case %zu", i);
    }
    cr_assert_str_eq(sinit_cloud_origin(SINIT_CLOUD_RUN_FUNCTION), "cloudrun");
    cr_assert_str_eq(sinit_cloud_origin(SINIT_CLOUD_RUN_JOB), "cloudrunjobs");
    cr_assert_str_eq(sinit_cloud_origin(SINIT_CLOUD_CONTAINER_APP),
                     "containerapp");
    cr_assert_str_eq(sinit_cloud_origin(SINIT_CLOUD_APP_SERVICE), "appservice");
    cr_assert_str_eq(sinit_cloud_origin(SINIT_CLOUD_LOCAL), "local");
}

Test(tags, base_tags_lowercased_and_merged)
{
    const char *kv[] = {"DD_ENV=Prod",
                        "DD_SERVICE=MyApp",
                        "DD_VERSION=V1.2",
                        "DD_TAGS=team:a env:staging,flag",
                        "DD_EXTRA_TAGS=team:b",
                        "CLOUD_RUN_JOB=nightly",
                        NULL};
    const char *got = render(kv, NULL, false, NULL);
    cr_assert_str_eq(got, "env:staging,service:myapp,version:v1.2,team:b,flag,"
                          "origin:cloudrunjobs,_dd.origin:cloudrunjobs,"
                          "job_name:nightly,gcrj.job_name:nightly,"
                          "datadog_init_version:" CMN_VERSION);
}

Test(tags, cloud_overwrites_configured)
{
    const char *kv[] = {"DD_TAGS=origin:mine service_name:x", "K_SERVICE=api",
                        "K_REVISION=api-001", "K_CONFIGURATION=api", NULL};
    const char *got = render(kv, NULL, true, NULL);
    cr_assert_str_eq(got,
                     "origin:cloudrun,service_name:api,_dd.origin:cloudrun,"
                     "revision_name:api-001,gcr.revision_name:api-001,"
                     "gcr.service_name:api,configuration_name:api,"
                     "gcr.configuration_name:api,"
                     "_dd.datadog_sidecar_version:" CMN_VERSION);
}

Test(tags, cloud_run_service_with_metadata)
{
    const char *kv[] = {"K_SERVICE=api", "K_REVISION=api-001", NULL};
    struct sinit_gcp_md md = {"abc123", "us-central1", "my-proj"};
    const char *got = render(kv, NULL, false, &md);
    /* container_id and gcr.container_id are high-cardinality: removed */
    cr_assert_str_eq(
        got, "origin:cloudrun,_dd.origin:cloudrun,revision_name:api-001,"
             "gcr.revision_name:api-001,service_name:api,gcr.service_name:api,"
             "configuration_name:unknown,gcr.configuration_name:unknown,"
             "location:us-central1,gcr.location:us-central1,"
             "project_id:my-proj,gcr.project_id:my-proj,"
             "gcr.resource_name:projects/my-proj/locations/us-central1/"
             "services/api,datadog_init_version:" CMN_VERSION);
}

Test(tags, cloud_run_function)
{
    const char *kv[] = {"K_SERVICE=fn", "FUNCTION_TARGET=Handle",
                        "FUNCTION_SIGNATURE_TYPE=http", NULL};
    struct sinit_gcp_md md = {"id", "r", "p"};
    const char *got = render(kv, NULL, false, &md);
    cr_assert_not_null(strstr(got, "gcrfx.build_function_target:Handle,"
                                   "gcrfx.function_signature_type:http"));
    cr_assert_not_null(strstr(got, "gcrfx.resource_name:projects/p/"
                                   "locations/r/services/fn/functions/"
                                   "Handle"));
    cr_assert_null(strstr(got, "container_id"));
}

Test(tags, cloud_run_job_high_cardinality_removed)
{
    const char *kv[] = {"CLOUD_RUN_JOB=nightly",  "CLOUD_RUN_EXECUTION=e-1",
                        "CLOUD_RUN_TASK_INDEX=0", "CLOUD_RUN_TASK_ATTEMPT=1",
                        "CLOUD_RUN_TASK_COUNT=4", NULL};
    struct sinit_gcp_md md = {"abc", "europe-west1", "proj"};
    struct cmn_env env = {fake_get, (void *)kv};
    struct sinit_tags t;
    sinit_tags_init(&t);
    cr_assert_eq(sinit_tags_build(&t, &env, SINIT_CLOUD_RUN_JOB, false, &md),
                 0);
    /* the full map keeps them (for logs/traces) */
    cr_assert_str_eq(sinit_tags_get(&t, "gcrj.execution_name"), "e-1");
    cr_assert_str_eq(sinit_tags_get(&t, "gcrj.task_count"), "4");
    cr_assert_str_eq(sinit_tags_get(&t, "container_id"), "abc");
    sinit_tags_free(&t);
    const char *got = render(kv, NULL, false, &md);
    cr_assert_str_eq(got,
                     "origin:cloudrunjobs,_dd.origin:cloudrunjobs,"
                     "job_name:nightly,gcrj.job_name:nightly,"
                     "gcrj.container_id:abc,location:europe-west1,"
                     "gcrj.location:europe-west1,project_id:proj,"
                     "gcrj.project_id:proj,gcrj.resource_name:projects/proj/"
                     "locations/europe-west1/jobs/nightly,"
                     "datadog_init_version:" CMN_VERSION);
}

Test(tags, local)
{
    const char *kv[] = {NULL};
    char host[256];
    cr_assert_eq(gethostname(host, sizeof(host)), 0);
    char want[512];
    snprintf(want, sizeof(want),
             "instance:%s,local:true,datadog_init_version:%s", host,
             CMN_VERSION);
    cr_assert_str_eq(render(kv, NULL, false, NULL), want);
}

Test(tags, container_apps)
{
    const char *kv[] = {
        "CONTAINER_APP_NAME=MyApp",
        "CONTAINER_APP_ENV_DNS_SUFFIX=happy-hill.eastus.azurecontainerapps.io",
        "CONTAINER_APP_REVISION=myapp--r1",
        "CONTAINER_APP_REPLICA_NAME=rep-1",
        "DD_AZURE_SUBSCRIPTION_ID=sub",
        "DD_AZURE_RESOURCE_GROUP=rg",
        NULL};
    const char *got = render(kv, NULL, false, NULL);
    cr_assert_str_eq(
        got, "app_name:MyApp,aca.app.name:MyApp,region:eastus,"
             "aca.app.region:eastus,revision:myapp--r1,"
             "aca.app.revision:myapp--r1,subscription_id:sub,"
             "aca.subscription.id:sub,resource_group:rg,"
             "aca.resource.group:rg,resource_id:/subscriptions/sub/"
             "resourcegroups/rg/providers/microsoft.app/"
             "containerapps/myapp,aca.resource.id:/subscriptions/sub/"
             "resourcegroups/rg/providers/microsoft.app/"
             "containerapps/myapp,origin:containerapp,"
             "_dd.origin:containerapp,datadog_init_version:" CMN_VERSION);
}

Test(tags, app_service)
{
    const char *kv[] = {"WEBSITE_STACK=NODE",
                        "WEBSITE_SITE_NAME=Site",
                        "REGION_NAME=westeurope",
                        "WEBSITE_OWNER_NAME=sub-1+rg-WestEuropewebspace",
                        "WEBSITE_RESOURCE_GROUP=rg",
                        NULL};
    struct cmn_env env = {fake_get, (void *)kv};
    struct sinit_tags t;
    sinit_tags_init(&t);
    cr_assert_eq(
        sinit_tags_build(&t, &env, SINIT_CLOUD_APP_SERVICE, false, NULL), 0);
    cr_assert_str_eq(sinit_tags_get(&t, "app_name"), "Site");
    cr_assert_str_eq(sinit_tags_get(&t, "region"), "westeurope");
    cr_assert_str_eq(sinit_tags_get(&t, "aas.environment.runtime"), "Node.js");
    cr_assert_str_eq(sinit_tags_get(&t, "aas.subscription.id"), "sub-1");
    cr_assert_str_eq(sinit_tags_get(&t, "aas.resource.id"),
                     "/subscriptions/sub-1/resourcegroups/rg/providers/"
                     "microsoft.web/sites/site");
    cr_assert_str_eq(sinit_tags_get(&t, "aas.site.kind"), "app");
    cr_assert_str_eq(sinit_tags_get(&t, "origin"), "appservice");
    sinit_tags_free(&t);
}

Test(tags, raw_and_high_cardinality)
{
    struct sinit_tags t;
    sinit_tags_init(&t);
    cr_assert_eq(sinit_tags_set_raw(&t, CMN_SLICE_LIT("a:b:c")), 0);
    cr_assert_eq(sinit_tags_set_raw(&t, CMN_SLICE_LIT(":x")), 0);
    cr_assert_eq(sinit_tags_set_raw(&t, CMN_SLICE_LIT("solo")), 0);
    cr_assert_eq(t.n, 2);
    cr_assert_str_eq(sinit_tags_get(&t, "a"), "b:c");
    cr_assert_str_eq(sinit_tags_get(&t, "solo"), "");
    cr_assert_null(sinit_tags_get(&t, "x"));
    sinit_tags_free(&t);
    cr_assert(sinit_tag_is_high_cardinality("gcrj.task_attempt"));
    cr_assert(sinit_tag_is_high_cardinality("aca.replica.name"));
    cr_assert_not(sinit_tag_is_high_cardinality("gcrj.job_name"));
}

Test(enhanced, names)
{
    struct sinit_enhanced_names n;
    sinit_enhanced_names(SINIT_CLOUD_RUN, &n);
    cr_assert_str_eq(n.start[0], "gcp.run.container.enhanced.cold_start");
    cr_assert_str_eq(n.start[1], "gcp.run.enhanced.cold_start");
    cr_assert_str_eq(n.shutdown[1], "gcp.run.enhanced.shutdown");
    cr_assert_null(n.duration);
    sinit_enhanced_names(SINIT_CLOUD_RUN_JOB, &n);
    cr_assert_str_eq(n.start[0], "gcp.run.job.enhanced.task.started");
    cr_assert_null(n.start[1]);
    cr_assert_str_eq(n.shutdown[0], "gcp.run.job.enhanced.task.ended");
    cr_assert_str_eq(n.duration, "gcp.run.job.enhanced.task.duration");
    sinit_enhanced_names(SINIT_CLOUD_LOCAL, &n);
    cr_assert_str_eq(n.start[0],
                     "datadog.serverless_agent.enhanced.cold_start");
    cr_assert_str_eq(n.shutdown[0],
                     "datadog.serverless_agent.enhanced.shutdown");
}

Test(tags, oom_loop)
{
    const char *kv[] = {"DD_ENV=e", "DD_TAGS=a:b c:d", "K_SERVICE=s", NULL};
    struct cmn_env env = {fake_get, (void *)kv};
    struct sinit_gcp_md md = {"i", "r", "p"};
    size_t base = cmn_alloc_live_bytes();
    int ok = 0;
    for (uint64_t n = 1; n < 500 && !ok; n++) {
        struct sinit_tags t;
        sinit_tags_init(&t);
        cmn_alloc_fail_after(n);
        int err = sinit_tags_build(&t, &env, SINIT_CLOUD_RUN, false, &md);
        char **v = NULL;
        size_t k = 0;
        if (err == 0)
            err = sinit_tags_metric_list(&t, &v, &k);
        cmn_alloc_fail_reset();
        if (err == 0)
            ok = 1;
        else
            cr_assert_eq(err, UV_ENOMEM);
        cmn_strv_free(v, k);
        sinit_tags_free(&t);
        cr_assert_eq(cmn_alloc_live_bytes(), base, "leak at n=%llu",
                     (unsigned long long)n);
    }
    cr_assert(ok);
}
