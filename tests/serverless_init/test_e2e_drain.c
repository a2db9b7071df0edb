/*
 * test_e2e_drain.c - the drain cascade end to end: sidecar mode drains on
 * SIGTERM, an intake answering 503 at first loses nothing, a hanging
 * intake cannot hold the wrapper past its budget (and stderr says what was
 * not delivered), a Cloud Run job gets its metadata tags and enhanced
 * metrics, and without an API key the local sink shows the metrics.
 */
#include "e2e.h"
#include "md_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

static void send_udp(int port, const char *payload)
{
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    cr_assert_eq(sendto(fd, payload, strlen(payload), 0, (struct sockaddr *)&sa,
                        sizeof(sa)),
                 (ssize_t)strlen(payload));
    close(fd);
}

Test(sidecar, sigterm_drains_everything_received, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DD_LOG_LEVEL=info");
    e2e_env(&e, "DD_DOGSTATSD_NON_LOCAL_TRAFFIC=false");
    pid_t pid = e2e_start(&e, NULL);
    char err[16384];
    bool up =
        e2e_wait_stderr(&e, "listening on UDP port ", 10000, err, sizeof(err));
    if (!up)
        kill(pid, SIGKILL);
    cr_assert(up, "stderr:\n%s", err);
    cr_assert_not_null(strstr(err, "SERVERLESS_SIDECAR"));
    int port = 0;
    for (const char *p = strstr(err, "listening on UDP port ") + 22;
         *p >= '0' && *p <= '9'; p++)
        port = port * 10 + (*p - '0');
    cr_assert_gt(port, 0);
    for (int i = 0; i < 100; i++)
        send_udp(port, "side.count:1|c\nside.gauge:5|g");
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int code = e2e_wait(pid, 20000);
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 0, "exit %d, stderr:\n%s", code, err);
    double sum, last;
    size_t n = e2e_delivered_points(ti, "side.count", &sum, NULL);
    cr_assert_geq(n, 1);
    cr_assert_float_eq(sum * 10, 100, 1e-9, "sum %g", sum * 10);
    cr_assert_geq(e2e_delivered_points(ti, "side.gauge", &sum, &last), 1);
    cr_assert_eq(last, 5);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(drain, intake_503_at_first_loses_nothing, .timeout = 60)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    struct ti_plan plan = {.status = 503, .count = 2};
    ti_set_plan(ti, &plan);
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DD_API_KEY=test");
    e2e_env(&e, "DD_DD_URL=%s", ti_url(ti));
    const char *args[] = {e.child, "udp", "e2e.retry:4|c\\ne2e.retry:6|c",
                          "exit",  "0",   NULL};
    int code = e2e_run(&e, args, 20000);
    char err[8192];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 0, "stderr:\n%s", err);
    size_t n503 = 0;
    for (size_t i = 0; i < ti_request_count(ti); i++)
        n503 += ti_request_get(ti, i)->answered == 503;
    cr_assert_eq(n503, 2);
    double sum;
    cr_assert_eq(e2e_delivered_points(ti, "e2e.retry", &sum, NULL), 1);
    cr_assert_eq(sum, 1.0); /* 10 / 10 s */
    e2e_fini(&e);
    ti_stop(ti);
}

Test(drain, hanging_intake_bounded_by_budget, .timeout = 60)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    struct ti_plan plan = {.count = TI_ALL, .fault = TI_FAULT_HANG};
    ti_set_plan(ti, &plan);
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DD_API_KEY=test");
    e2e_env(&e, "DD_DD_URL=%s", ti_url(ti));
    e2e_env(&e, "DRAINPIPE_SHUTDOWN_BUDGET_MS=1500");
    const char *args[] = {e.child, "udp", "e2e.hang:1|c", "exit", "5", NULL};
    uint64_t t0 = e2e_now_ms();
    int code = e2e_run(&e, args, 20000);
    uint64_t ms = e2e_now_ms() - t0;
    char err[8192];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 5, "stderr:\n%s", err);
    /* a bound, not a speed figure: the budget plus start-up slack */
    cr_assert_lt(ms, 1500 + 1500, "took %llu ms", (unsigned long long)ms);
    cr_assert_geq(ms, 1000, "took %llu ms", (unsigned long long)ms);
    cr_assert_not_null(strstr(err, "not delivered"), "stderr:\n%s", err);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(cloudrun, job_tags_and_enhanced_metrics, .timeout = 60)
{
    struct mds md = {.id = "Inst-42",
                     .region = "projects/123/regions/europe-west1",
                     .project = "my-proj"};
    cr_assert_eq(mds_start(&md), 0);
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "GCE_METADATA_HOST=127.0.0.1:%d", md.port);
    e2e_env(&e, "CLOUD_RUN_JOB=nightly");
    e2e_env(&e, "CLOUD_RUN_EXECUTION=nightly-abc");
    e2e_env(&e, "CLOUD_RUN_TASK_INDEX=0");
    e2e_env(&e, "CLOUD_RUN_TASK_ATTEMPT=0");
    e2e_env(&e, "CLOUD_RUN_TASK_COUNT=1");
    e2e_env(&e, "DD_ENV=Prod");
    e2e_env(&e, "DD_SERVICE=Batch");
    e2e_env(&e, "DD_TAGS=team:data");
    const char *args[] = {e.child, "udp", "e2e.job:2|c", "exit", "0", NULL};
    int code = e2e_run(&e, args, 20000);
    char err[8192];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 0, "stderr:\n%s", err);
    cr_assert_eq(atomic_load(&md.with_flavor), 3);
    const char *tags =
        "env:prod,service:batch,team:data,origin:cloudrunjobs,"
        "_dd.origin:cloudrunjobs,job_name:nightly,gcrj.job_name:nightly,"
        "gcrj.container_id:inst-42,location:europe-west1,"
        "gcrj.location:europe-west1,project_id:my-proj,"
        "gcrj.project_id:my-proj,"
        "gcrj.resource_name:projects/my-proj/locations/europe-west1/jobs/"
        "nightly,datadog_init_version:" CMN_VERSION;
    struct ti_point pts[4];
    cr_assert_eq(ti_series_points(ti, "e2e.job", tags, pts, 4, NULL), 1);
    cr_assert_eq(pts[0].value, 0.2);
    struct ti_sketch_sum s;
    cr_assert_eq(
        ti_sketch_find(ti, "gcp.run.job.enhanced.task.started", tags, &s), 1);
    cr_assert_eq(s.cnt, 1);
    cr_assert_eq(s.sum, 1);
    char ended[1024];
    snprintf(ended, sizeof(ended), "succeeded:true,%s", tags);
    cr_assert_eq(
        ti_sketch_find(ti, "gcp.run.job.enhanced.task.ended", ended, &s), 1);
    cr_assert_eq(s.cnt, 1);
    cr_assert_eq(
        ti_sketch_find(ti, "gcp.run.job.enhanced.task.duration", tags, &s), 1);
    cr_assert_eq(s.cnt, 1);
    cr_assert_gt(s.sum, 0); /* milliseconds since start */
    cr_assert_lt(s.sum, 20000);
    e2e_fini(&e);
    ti_stop(ti);
    mds_stop(&md);
}

Test(cloudrun, failed_job_and_metadata_down, .timeout = 60)
{
    struct mds md = {0};
    cr_assert_eq(mds_start(&md), 0);
    int port = md.port;
    mds_stop(&md); /* nothing listens: every value is "unknown" */
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "GCE_METADATA_HOST=127.0.0.1:%d", port);
    e2e_env(&e, "CLOUD_RUN_JOB=j");
    const char *args[] = {e.child, "exit", "2", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 2);
    const char *tags =
        "succeeded:false,origin:cloudrunjobs,_dd.origin:cloudrunjobs,"
        "job_name:j,gcrj.job_name:j,gcrj.container_id:unknown,"
        "location:unknown,gcrj.location:unknown,project_id:unknown,"
        "gcrj.project_id:unknown,gcrj.resource_name:projects/unknown/"
        "locations/unknown/jobs/j,datadog_init_version:" CMN_VERSION;
    struct ti_sketch_sum s;
    cr_assert_eq(
        ti_sketch_find(ti, "gcp.run.job.enhanced.task.ended", tags, &s), 1);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(enhanced, disabled_by_env, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DD_ENHANCED_METRICS=false");
    const char *args[] = {e.child, "udp", "e2e.only:1|g", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    struct ti_sketch_sum s;
    cr_assert_eq(ti_sketch_find(ti,
                                "datadog.serverless_agent.enhanced.cold_start",
                                e.tags, &s),
                 0);
    double sum;
    cr_assert_eq(e2e_delivered_points(ti, "e2e.only", &sum, NULL), 1);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(nokey, local_sink_shows_metrics, .timeout = 60)
{
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DD_LOG_LEVEL=info");
    const char *args[] = {e.child, "udp", "e2e.nokey:3|c", "exit", "0", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    char err[32768];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_not_null(strstr(err, "DD_API_KEY is not set"), "%s", err);
    cr_assert_not_null(strstr(err, "e2e.nokey"), "stderr:\n%s", err);

    /* JSON lines file */
    struct e2e f;
    e2e_init(&f);
    e2e_env(&f, "DRAINPIPE_LOCAL_FILE=%s/out.jsonl", f.dir);
    const char *args2[] = {f.child, "udp", "e2e.file:3|c", NULL};
    cr_assert_eq(e2e_run(&f, args2, 20000), 0);
    char path[128], out[32768];
    snprintf(path, sizeof(path), "%s/out.jsonl", f.dir);
    e2e_read(path, out, sizeof(out));
    cr_assert_not_null(strstr(out, "\"e2e.file\""), "file:\n%s", out);
    unlink(path);
    e2e_fini(&f);
    e2e_fini(&e);
}

Test(drain, second_sigterm_forces_exit, .timeout = 60)
{
    struct ti *ti;
    cr_assert_eq(ti_start(&ti), 0);
    struct ti_plan plan = {.count = TI_ALL, .fault = TI_FAULT_HANG};
    ti_set_plan(ti, &plan);
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DD_API_KEY=test");
    e2e_env(&e, "DD_DD_URL=%s", ti_url(ti));
    e2e_env(&e, "DD_LOG_LEVEL=debug");
    e2e_env(&e, "DRAINPIPE_SHUTDOWN_BUDGET_MS=30000");
    const char *args[] = {e.child, "udp", "e2e.t:1|c", "exit", "4", NULL};
    pid_t pid = e2e_start(&e, args);
    char err[65536];
    bool draining = e2e_wait_stderr(&e, "child exited with code 4", 10000, err,
                                    sizeof(err));
    if (!draining)
        kill(pid, SIGKILL);
    cr_assert(draining, "stderr:\n%s", err);
    e2e_sleep_ms(100); /* the drain is now stuck on the hanging intake */
    uint64_t t0 = e2e_now_ms();
    cr_assert_eq(kill(pid, SIGTERM), 0);
    int code = e2e_wait(pid, 20000);
    uint64_t ms = e2e_now_ms() - t0;
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 4, "exit %d, stderr:\n%s", code, err);
    cr_assert_lt(ms, 10000, "took %llu ms: the budget was waited for",
                 (unsigned long long)ms);
    cr_assert_not_null(strstr(err, "second termination signal"), "%s", err);
    cr_assert_not_null(strstr(err, "not delivered"), "%s", err);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(cloudrun, service_enhanced_metrics_and_legacy_names, .timeout = 60)
{
    struct mds md = {.id = "c0ffee",
                     .region = "projects/1/regions/us-east1",
                     .project = "proj"};
    cr_assert_eq(mds_start(&md), 0);
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "GCE_METADATA_HOST=127.0.0.1:%d", md.port);
    e2e_env(&e, "K_SERVICE=api");
    e2e_env(&e, "K_REVISION=api-00001");
    e2e_env(&e, "K_CONFIGURATION=api");
    const char *args[] = {e.child, "exit", "0", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    const char *tags =
        "origin:cloudrun,_dd.origin:cloudrun,revision_name:api-00001,"
        "gcr.revision_name:api-00001,service_name:api,gcr.service_name:api,"
        "configuration_name:api,gcr.configuration_name:api,"
        "location:us-east1,gcr.location:us-east1,project_id:proj,"
        "gcr.project_id:proj,gcr.resource_name:projects/proj/locations/"
        "us-east1/services/api,datadog_init_version:" CMN_VERSION;
    const char *names[] = {
        "gcp.run.container.enhanced.cold_start", "gcp.run.enhanced.cold_start",
        "gcp.run.container.enhanced.shutdown", "gcp.run.enhanced.shutdown"};
    for (int i = 0; i < 4; i++) {
        struct ti_sketch_sum s;
        cr_assert_eq(ti_sketch_find(ti, names[i], tags, &s), 1, "%s", names[i]);
        cr_assert_eq(s.cnt, 1, "%s", names[i]);
    }
    e2e_fini(&e);
    ti_stop(ti);
    mds_stop(&md);
}
