/*
 * test_metadata.c - the GCP metadata client against the fake server:
 * parallel requests with Metadata-Flavor, lowercased and trimmed values,
 * region's last segment, "unknown" on timeout / refusal / 403, and the
 * callback exactly once, with the loop closing cleanly.
 */
#include <criterion/criterion.h>

#include "md_server.h"
#include "sinit.h"

struct got {
    int calls;
    char id[128], region[128], project[128];
    uint64_t at_ns;
    struct sinit_md *md;
};

static void on_md(void *data, const struct sinit_gcp_md *md)
{
    struct got *g = data;
    g->calls++;
    g->at_ns = cmn_mono_ns();
    snprintf(g->id, sizeof(g->id), "%s", md->container_id);
    snprintf(g->region, sizeof(g->region), "%s", md->region);
    snprintf(g->project, sizeof(g->project), "%s", md->project_id);
    sinit_md_close(g->md); /* closing inside the callback is allowed */
}

static uint64_t fetch(const char *hp, uint64_t timeout_ms, struct got *g)
{
    uv_loop_t loop;
    cr_assert_eq(uv_loop_init(&loop), 0);
    uint64_t t0 = cmn_mono_ns();
    cr_assert_eq(sinit_md_fetch(&loop, hp, timeout_ms, on_md, g, &g->md), 0);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    return (g->at_ns - t0) / 1000000u;
}

Test(metadata, values)
{
    struct mds s = {.id = "ABC123\n",
                    .region = "projects/1234/regions/US-Central1",
                    .project = " My-Project "};
    cr_assert_eq(mds_start(&s), 0);
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", s.port);
    struct got g = {0};
    fetch(hp, 2000, &g);
    mds_stop(&s);
    cr_assert_eq(g.calls, 1);
    cr_assert_str_eq(g.id, "abc123");
    cr_assert_str_eq(g.region, "us-central1");
    cr_assert_str_eq(g.project, "my-project");
    cr_assert_eq(atomic_load(&s.requests), 3);
    cr_assert_eq(atomic_load(&s.with_flavor), 3);
}

Test(metadata, hanging_request_times_out_as_unknown)
{
    struct mds s = {.id = "i",
                    .region = "r/x",
                    .project = "p",
                    .hang = "/computeMetadata/v1/instance/region"};
    cr_assert_eq(mds_start(&s), 0);
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", s.port);
    struct got g = {0};
    uint64_t ms = fetch(hp, 300, &g);
    mds_stop(&s);
    cr_assert_eq(g.calls, 1);
    cr_assert_str_eq(g.id, "i");
    cr_assert_str_eq(g.region, "unknown");
    cr_assert_str_eq(g.project, "p");
    cr_assert_geq(ms, 290); /* ended by the timeout, not before */
}

Test(metadata, refused_connection_is_unknown)
{
    struct mds s = {0};
    cr_assert_eq(mds_start(&s), 0);
    int port = s.port;
    mds_stop(&s); /* the port is now closed */
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", port);
    struct got g = {0};
    fetch(hp, 300, &g);
    cr_assert_eq(g.calls, 1);
    cr_assert_str_eq(g.id, "unknown");
    cr_assert_str_eq(g.region, "unknown");
    cr_assert_str_eq(g.project, "unknown");
}

Test(metadata, non_200_is_unknown)
{
    struct mds s = {.id = NULL, .region = "a/b", .project = "p"};
    cr_assert_eq(mds_start(&s), 0);
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", s.port);
    struct got g = {0};
    fetch(hp, 1000, &g);
    mds_stop(&s);
    cr_assert_str_eq(g.id, "unknown"); /* 404 */
    cr_assert_str_eq(g.region, "b");
}

Test(metadata, bad_host_port)
{
    uv_loop_t loop;
    struct got g = {0};
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(
        sinit_md_fetch(&loop, "127.0.0.1:notaport", 100, on_md, &g, &g.md),
        UV_EINVAL);
    cr_assert_eq(sinit_md_fetch(&loop, ":80", 100, on_md, &g, &g.md),
                 UV_EINVAL);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    cr_assert_eq(g.calls, 0);
}

Test(metadata, close_before_answer_never_calls_back)
{
    struct mds s = {.id = "i",
                    .region = "r",
                    .project = "p",
                    .hang = "/computeMetadata/v1/instance/id"};
    cr_assert_eq(mds_start(&s), 0);
    char hp[64];
    snprintf(hp, sizeof(hp), "127.0.0.1:%d", s.port);
    uv_loop_t loop;
    struct got g = {0};
    cr_assert_eq(uv_loop_init(&loop), 0);
    cr_assert_eq(sinit_md_fetch(&loop, hp, 5000, on_md, &g, &g.md), 0);
    uv_run(&loop, UV_RUN_NOWAIT);
    sinit_md_close(g.md);
    cr_assert_eq(uv_run(&loop, UV_RUN_DEFAULT), 0);
    cr_assert_eq(uv_loop_close(&loop), 0);
    mds_stop(&s);
    cr_assert_eq(g.calls, 0);
}
