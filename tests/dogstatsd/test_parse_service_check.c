/*
 * test_parse_service_check.c - dsd_parse_service_check against rows 57-61
 * of spec/pipeline.md §1.10, plus edge rows.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "dogstatsd.h"

static enum dsd_err parse(const char *l, struct agg_service_check *sc)
{
    return dsd_parse_service_check(l, strlen(l), sc);
}

#define EXPECT_SLICE(sl, str)                                                  \
    cr_expect(cmn_slice_eq_cstr((sl), (str)), "%s: got \"%.*s\", want \"%s\"", \
              #sl, (int)(sl).len, (sl).p, (str))

Test(parse_service_check, row57_basic)
{
    struct agg_service_check sc;
    cr_assert_eq(parse("_sc|agent.up|0", &sc), DSD_OK);
    EXPECT_SLICE(sc.name, "agent.up");
    cr_expect_eq(sc.status, 0);
    cr_expect_eq(sc.timestamp, 0);
    cr_expect_eq(sc.message.len, 0);
    cr_expect_eq(sc.tags.len, 0);
    cr_expect_eq(sc.host.len, 0);
}

Test(parse_service_check, row58_errors)
{
    static const char *const bad[] = {
        "_sc|agent.up",    "_sc|agent.up|",   "_sc||",    "_sc|",
        "_sc|agent.up|OK", "_sc|agent.up|21", "_sc",      "",
        "_sc|agent.up|4",  "_sc|agent.up|-1", "_sc|a|00", "_sc|a| 0",
        "_sc||0",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct agg_service_check sc;
        cr_expect_eq(parse(bad[i], &sc), DSD_ERR_BAD_SERVICE_CHECK, "\"%s\"",
                     bad[i]);
    }
}

Test(parse_service_check, statuses)
{
    static const char *const l[] = {"_sc|a|0", "_sc|a|1", "_sc|a|2",
                                    "_sc|a|3|"};
    for (int i = 0; i < 4; i++) {
        struct agg_service_check sc;
        cr_assert_eq(parse(l[i], &sc), DSD_OK, "%s", l[i]);
        cr_expect_eq(sc.status, i);
        EXPECT_SLICE(sc.name, "a");
    }
}

Test(parse_service_check, row59_bad_or_unknown_field_ignored)
{
    struct agg_service_check sc;
    cr_assert_eq(parse("_sc|agent.up|0|d:some_time", &sc), DSD_OK);
    cr_expect_eq(sc.timestamp, 0);
    cr_assert_eq(parse("_sc|agent.up|0|u:unknown", &sc), DSD_OK);
    EXPECT_SLICE(sc.name, "agent.up");
    cr_expect_eq(sc.status, 0);
}

Test(parse_service_check, row60_all_fields)
{
    struct agg_service_check sc;
    cr_assert_eq(
        parse("_sc|agent.up|0|d:21|h:localhost|#tag1:test,tag2|m:this is fine",
              &sc),
        DSD_OK);
    EXPECT_SLICE(sc.name, "agent.up");
    cr_expect_eq(sc.timestamp, 21);
    EXPECT_SLICE(sc.host, "localhost");
    EXPECT_SLICE(sc.tags, "tag1:test,tag2");
    EXPECT_SLICE(sc.message, "this is fine");
}

Test(parse_service_check, row61_last_wins)
{
    struct agg_service_check sc;
    cr_assert_eq(
        parse("_sc|agent.up|0|d:21|h:localhost|h:localhost2|d:22", &sc),
        DSD_OK);
    EXPECT_SLICE(sc.host, "localhost2");
    cr_expect_eq(sc.timestamp, 22);
}

Test(parse_service_check, message_by_prefix_not_position)
{
    struct agg_service_check sc;
    cr_assert_eq(parse("_sc|x|2|m:first|#a,b|d:7", &sc), DSD_OK);
    EXPECT_SLICE(sc.message, "first");
    EXPECT_SLICE(sc.tags, "a,b");
    cr_expect_eq(sc.timestamp, 7);
    cr_expect_eq(sc.status, 2);
}
