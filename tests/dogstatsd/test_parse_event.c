/*
 * test_parse_event.c - dsd_parse_event against rows 49-56 of
 * spec/pipeline.md §1.10, plus length-overflow and scratch edge rows.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "dogstatsd.h"

static char scratch[1024];

static enum dsd_err parse(const char *l, struct agg_event *ev)
{
    memset(scratch, 0x55, sizeof(scratch));
    return dsd_parse_event(l, strlen(l), ev, scratch, sizeof(scratch));
}

#define EXPECT_SLICE(sl, str)                                                  \
    cr_expect(cmn_slice_eq_cstr((sl), (str)), "%s: got \"%.*s\", want \"%s\"", \
              #sl, (int)(sl).len, (sl).p, (str))

Test(parse_event, row49_basic)
{
    struct agg_event ev;
    cr_assert_eq(parse("_e{10,9}:test title|test text", &ev), DSD_OK);
    EXPECT_SLICE(ev.title, "test title");
    EXPECT_SLICE(ev.text, "test text");
    cr_expect_eq(ev.timestamp, 0);
    cr_expect_eq(ev.priority, AGG_PRIO_NORMAL);
    cr_expect_eq(ev.alert_type, AGG_ALERT_INFO);
    cr_expect_eq(ev.tags.len, 0);
    cr_expect_eq(ev.aggregation_key.len, 0);
    cr_expect_eq(ev.source_type_name.len, 0);
    cr_expect_eq(ev.host.len, 0);
}

Test(parse_event, row50_newlines)
{
    struct agg_event ev;
    cr_assert_eq(parse("_e{10,24}:test title|test\\line1\\nline2\\nline3", &ev),
                 DSD_OK);
    EXPECT_SLICE(ev.title, "test title");
    EXPECT_SLICE(ev.text, "test\\line1\nline2\nline3");
}

Test(parse_event, row51_pipe_in_title)
{
    struct agg_event ev;
    cr_assert_eq(parse("_e{10,24}:test|title|test\\line1\\nline2\\nline3", &ev),
                 DSD_OK);
    EXPECT_SLICE(ev.title, "test|title");
    EXPECT_SLICE(ev.text, "test\\line1\nline2\nline3");
}

Test(parse_event, row52_errors)
{
    static const char *const bad[] = {
        "_e:title|text",
        "_e{10,10}:title|text",
        "_e{0,0}:a|a",
        "_e{0,4}:text",
        "_e{5555:title|text",
        "_e{a,1}:title|text",
        "_e{1,a}:title|text",
        "_e{5,}:title|text",
        "_e{,4}:title|text",
        "_e{}:title|text",
        "_e{,}:title|text",
        "_e|text",
        "_e:|text",
        "_e{-123,-987}:",
        "_e{5,-987}:title",
        "_e{0001,-9876",
        /* edge rows: lengths past the data, overflowing sums */
        "_e{5,5}:title|text",
        "_e{6,4}:title|text",
        "_e{9223372036854775807,1}:title|text",
        "_e{1,9223372036854775807}:title|text",
        "_e{9223372036854775807,9223372036854775807}:t|x",
        "_e{99999999999999999999,1}:title|text",
        "",
        "_e{1,1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct agg_event ev;
        cr_expect_eq(parse(bad[i], &ev), DSD_ERR_BAD_EVENT, "\"%s\"", bad[i]);
    }
}

Test(parse_event, row53_bad_optional_fields_ignored)
{
    static const char *const ok[] = {
        "_e{5,4}:title|text|d:abc",
        "_e{5,4}:title|text|p:urgent",
        "_e{5,4}:title|text|t:test",
        "_e{5,4}:title|text|x:1234",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct agg_event ev;
        cr_assert_eq(parse(ok[i], &ev), DSD_OK, "\"%s\"", ok[i]);
        EXPECT_SLICE(ev.title, "title");
        EXPECT_SLICE(ev.text, "text");
        cr_expect_eq(ev.timestamp, 0);
        cr_expect_eq(ev.priority, AGG_PRIO_NORMAL);
        cr_expect_eq(ev.alert_type, AGG_ALERT_INFO);
    }
}

Test(parse_event, row54_each_field)
{
    struct agg_event ev;
    cr_assert_eq(parse("_e{5,4}:title|text|d:21", &ev), DSD_OK);
    cr_expect_eq(ev.timestamp, 21);
    cr_assert_eq(parse("_e{5,4}:title|text|p:low", &ev), DSD_OK);
    cr_expect_eq(ev.priority, AGG_PRIO_LOW);
    cr_assert_eq(parse("_e{5,4}:title|text|h:localhost", &ev), DSD_OK);
    EXPECT_SLICE(ev.host, "localhost");
    cr_assert_eq(parse("_e{5,4}:title|text|t:warning", &ev), DSD_OK);
    cr_expect_eq(ev.alert_type, AGG_ALERT_WARNING);
    cr_assert_eq(parse("_e{5,4}:title|text|t:error", &ev), DSD_OK);
    cr_expect_eq(ev.alert_type, AGG_ALERT_ERROR);
    cr_assert_eq(parse("_e{5,4}:title|text|t:success", &ev), DSD_OK);
    cr_expect_eq(ev.alert_type, AGG_ALERT_SUCCESS);
    cr_assert_eq(parse("_e{5,4}:title|text|k:some aggregation key", &ev),
                 DSD_OK);
    EXPECT_SLICE(ev.aggregation_key, "some aggregation key");
    cr_assert_eq(parse("_e{5,4}:title|text|s:this is the source", &ev), DSD_OK);
    EXPECT_SLICE(ev.source_type_name, "this is the source");
    cr_assert_eq(parse("_e{5,4}:title|text|#tag1,tag2:test", &ev), DSD_OK);
    EXPECT_SLICE(ev.tags, "tag1,tag2:test");
}

Test(parse_event, row55_all_fields)
{
    struct agg_event ev;
    cr_assert_eq(parse("_e{10,9}:test title|test text|t:warning|d:12345|p:low|"
                       "h:some.host|k:aggKey|s:source test|#tag1,tag2:test",
                       &ev),
                 DSD_OK);
    EXPECT_SLICE(ev.title, "test title");
    EXPECT_SLICE(ev.text, "test text");
    cr_expect_eq(ev.alert_type, AGG_ALERT_WARNING);
    cr_expect_eq(ev.timestamp, 12345);
    cr_expect_eq(ev.priority, AGG_PRIO_LOW);
    EXPECT_SLICE(ev.host, "some.host");
    EXPECT_SLICE(ev.aggregation_key, "aggKey");
    EXPECT_SLICE(ev.source_type_name, "source test");
    EXPECT_SLICE(ev.tags, "tag1,tag2:test");
}

Test(parse_event, row56_empty_title_and_text)
{
    struct agg_event ev;
    cr_expect_eq(parse("_e{0,9}:|test text", &ev), DSD_ERR_BAD_EVENT);
    cr_assert_eq(parse("_e{10,0}:test title|", &ev), DSD_OK);
    EXPECT_SLICE(ev.title, "test title");
    cr_expect_eq(ev.text.len, 0);
    cr_assert_eq(parse("_e{10,0}:test title||t:warning", &ev), DSD_OK);
    cr_expect_eq(ev.text.len, 0);
    cr_expect_eq(ev.alert_type, AGG_ALERT_WARNING);
}

Test(parse_event, last_field_wins_and_bad_keeps_previous)
{
    struct agg_event ev;
    cr_assert_eq(parse("_e{1,1}:a|b|d:5|h:x|d:bad|h:y|p:low|p:normal", &ev),
                 DSD_OK);
    cr_expect_eq(ev.timestamp, 5);
    EXPECT_SLICE(ev.host, "y");
    cr_expect_eq(ev.priority, AGG_PRIO_NORMAL);
}

Test(parse_event, title_newline_and_scratch_cap)
{
    struct agg_event ev;
    const char *l = "_e{7,2}:ab\\ncde|\\n";
    cr_assert_eq(parse(l, &ev), DSD_OK);
    EXPECT_SLICE(ev.title, "ab\ncde");
    EXPECT_SLICE(ev.text, "\n");
    /* the scratch must hold title + text */
    cr_expect_eq(dsd_parse_event(l, strlen(l), &ev, scratch, 8),
                 DSD_ERR_BAD_EVENT);
    cr_expect_eq(dsd_parse_event(l, strlen(l), &ev, scratch, 9), DSD_OK);
}
