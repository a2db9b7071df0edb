/*
 * test_agent_cases.c - the Datadog Agent's own DogStatsD test cases as one
 * table: a packet goes through the real server (dsd_process_packet: split,
 * parse, enrich) into the real aggregator, the final flush is serialized,
 * and the payloads the intake would receive are decoded and compared, line
 * by line, with what the Agent's tests expect.
 *
 * Sources (comp/dogstatsd/server/impl/ of DataDog/datadog-agent, facts
 * only): server_worker_test.go (TestMetricTypes, TestMetricPermutations,
 * TestEvents, TestServiceChecks, TestHistToDist, TestExtraTags) and
 * enrich_test.go (every case that does not depend on origin detection or
 * mapper profiles). The parse-level rows of parse_metrics_test.go,
 * parse_test.go, parse_events_test.go and parse_service_checks_test.go are
 * the tables of tests/dogstatsd/test_parse_{metric,event,service_check}.c
 * (spec/pipeline.md §1.10 rows 1-61); the rows here add what those cannot
 * see: host and entity tags, namespaces, blocklists, extra tags,
 * histogram_copy_to_distribution and the aggregated values (a histogram at
 * @0.21 is the case where count and sum use different weights, see
 * docs/conformance.md).
 *
 * Rendering (one line per point, lines and tags sorted):
 *   S <metric> <GAUGE|RATE|COUNT> <ts> <value %.10g> <host> #<tags>
 *   D <metric> <ts> cnt=<n> min= max= sum= avg= <host> #<tags>   (sketch)
 *   E <the /intake/ JSON body>
 *   C <the /api/v1/check_run JSON body>
 * The clock is fixed at 1000000 (a bucket start), the default host is
 * "myhost", and the flush is the final one (open bucket included).
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agg_test_util.h"
#include "dogstatsd.h"

struct arow {
    const char *agent;  /* the Agent test the row comes from */
    const char *env;    /* "NAME=value\n"... applied to both configs;
                           X_SERVERLESS=1 forces serverless mode (the
                           host is ""), as serverless-init does */
    const char *packet; /* one datagram */
    const char *want;   /* rendered lines, any order, '\n'-terminated */
};

#define TG "sometag1:somevalue1,sometag2:somevalue2"
#define T0 "1000000"
/* The default histogram series: .max .median .avg .count (RATE) and
 * .95percentile. */
#define HIST(n, ts, max, med, avg, cnt, p95, host, tags)                       \
    "S " n ".95percentile GAUGE " ts " " p95 " " host " #" tags "\n"           \
    "S " n ".avg GAUGE " ts " " avg " " host " #" tags "\n"                    \
    "S " n ".count RATE " ts " " cnt " " host " #" tags "\n"                   \
    "S " n ".max GAUGE " ts " " max " " host " #" tags "\n"                    \
    "S " n ".median GAUGE " ts " " med " " host " #" tags "\n"
#define HIST1(n, v, cnt, host, tags) HIST(n, T0, v, v, v, cnt, v, host, tags)
#define EV(body)                                                               \
    "E {\"apiKey\":\"\",\"events\":{" body "},"                                \
    "\"internalHostname\":\"myhost\"}\n"
#define SC(body) "C [" body "]\n"
#define SC_MIN(host, ts, msg, tags)                                            \
    SC("{\"check\":\"agent.up\",\"host_name\":\"" host "\",\"timestamp\":" ts  \
       ",\"status\":0,\"message\":\"" msg "\",\"tags\":" tags "}")
#define EV_API(fields) EV("\"api\":[{" fields "}]")
#define EV_T(extra)                                                            \
    EV_API("\"msg_title\":\"test title\",\"msg_text\":\"test text\"," extra)
#define EV_DEF "\"timestamp\":1000000,\"priority\":\"normal\""
#define H2D                                                                    \
    "DD_HISTOGRAM_COPY_TO_DISTRIBUTION=true\n"                                 \
    "DD_HISTOGRAM_COPY_TO_DISTRIBUTION_PREFIX=dist.\n"
#define DEFAULT_EVENT                                                          \
    "_e{10,10}:test title|test\\ntext|t:warning|d:12345|p:low|h:some.host|"    \
    "k:aggKey|s:source test|#tag1,tag2:test"
#define DEFAULT_EVENT_JSON                                                     \
    "\"source test\":[{\"msg_title\":\"test title\","                          \
    "\"msg_text\":\"test\\ntext\",\"timestamp\":12345,\"priority\":\"low\","   \
    "\"host\":\"some.host\",\"tags\":[\"tag1\",\"tag2:test\"],"                \
    "\"alert_type\":\"warning\",\"aggregation_key\":\"aggKey\","               \
    "\"source_type_name\":\"source test\"}]"
#define DEFAULT_SC                                                             \
    "_sc|agent.up|0|d:12345|h:localhost|m:this is fine|"                       \
    "#sometag1:somevalyyue1,sometag2:somevalue2"
#define DEFAULT_SC_JSON                                                        \
    SC("{\"check\":\"agent.up\",\"host_name\":\"localhost\","                  \
       "\"timestamp\":12345,\"status\":0,\"message\":\"this is fine\","        \
       "\"tags\":[\"sometag1:somevalyyue1\",\"sometag2:somevalue2\"]}")

static const struct arow rows[] = {
    /* clang-format off */
    /* server_worker_test.go TestMetricTypes: each type at @0.5, then the
     * same line with |T1658328888 (gauges and counters skip aggregation;
     * h, ms and s are dropped by the no-aggregation pipeline) */
    {"TestMetricTypes/gauge", NULL, "daemon:666|g|@0.5|#" TG,
     "S daemon GAUGE " T0 " 666 myhost #" TG "\n"},
    {"TestMetricTypes/counter", NULL, "daemon:666|c|@0.5|#" TG,
     "S daemon RATE " T0 " 133.2 myhost #" TG "\n"},
    {"TestMetricTypes/histogram", NULL, "daemon:666|h|@0.5|#" TG,
     HIST1("daemon", "666", "0.2", "myhost", TG)},
    {"TestMetricTypes/timing", NULL, "daemon:666|ms|@0.5|#" TG,
     HIST1("daemon", "666", "0.2", "myhost", TG)},
    {"TestMetricTypes/set", NULL, "daemon:abc|s|@0.5|#" TG,
     "S daemon GAUGE " T0 " 1 myhost #" TG "\n"},
    {"TestMetricTypes/gauge T", NULL, "daemon:666|g|@0.5|#" TG "|T1658328888\n",
     "S daemon GAUGE 1658328888 666 myhost #" TG "\n"},
    {"TestMetricTypes/counter T", NULL,
     "daemon:666|c|@0.5|#" TG "|T1658328888\n",
     "S daemon RATE 1658328888 66.6 myhost #" TG "\n"},
    {"TestMetricTypes/histogram T", NULL,
     "daemon:666|h|@0.5|#" TG "|T1658328888\n", ""},
    {"TestMetricTypes/timing T", NULL,
     "daemon:666|ms|@0.5|#" TG "|T1658328888\n", ""},
    {"TestMetricTypes/set T", NULL, "daemon:abc|s|@0.5|#" TG "|T1658328888\n",
     ""},
    /* TestMetricPermutations */
    {"TestMetricPermutations/base", NULL,
     "daemon:666|c\ndaemon2:1000|c|#" TG,
     "S daemon RATE " T0 " 66.6 myhost #\n"
     "S daemon2 RATE " T0 " 100 myhost #" TG "\n"},
    {"TestMetricPermutations/multi-value", NULL,
     "daemon:666:123|c\ndaemon2:1000|c|#" TG,
     "S daemon RATE " T0 " 78.9 myhost #\n"
     "S daemon2 RATE " T0 " 100 myhost #" TG "\n"},
    {"TestMetricPermutations/skip empty", NULL,
     "daemon::666::123::::|c\ndaemon2:1000|c|#" TG,
     "S daemon RATE " T0 " 78.9 myhost #\n"
     "S daemon2 RATE " T0 " 100 myhost #" TG "\n"},
    {"TestMetricPermutations/malformed packet", NULL,
     "daemon:666|c\n\ndaemon2:1000|c|#" TG "\n",
     "S daemon RATE " T0 " 66.6 myhost #\n"
     "S daemon2 RATE " T0 " 100 myhost #" TG "\n"},
    {"TestMetricPermutations/malformed metric", NULL,
     "daemon:666a|g\ndaemon2:1000|c|#" TG,
     "S daemon2 RATE " T0 " 100 myhost #" TG "\n"},
    {"TestMetricPermutations/empty metric", NULL,
     "daemon:|g\ndaemon2:1000|c|#" TG "\ndaemon3: :1:|g",
     "S daemon2 RATE " T0 " 100 myhost #" TG "\n"},
    /* TestEvents, TestServiceChecks */
    {"TestEvents", NULL,
     DEFAULT_EVENT "\n_e{11,15}:test titled|test\\ntextntext|t:info|d:12346|"
     "p:normal|h:some.otherhost|k:aggKeyAlt|s:source investigation|"
     "#tag1,tag2:test,tag3:resolved",
     EV("\"source investigation\":[{\"msg_title\":\"test titled\","
        "\"msg_text\":\"test\\ntextntext\",\"timestamp\":12346,"
        "\"priority\":\"normal\",\"host\":\"some.otherhost\","
        "\"tags\":[\"tag1\",\"tag2:test\",\"tag3:resolved\"],"
        "\"alert_type\":\"info\",\"aggregation_key\":\"aggKeyAlt\","
        "\"source_type_name\":\"source investigation\"}],"
        DEFAULT_EVENT_JSON)},
    {"TestEvents/incomplete", NULL,
     "_e{0,9}:|test text\n" DEFAULT_EVENT "\n_e{-5,2}:abc\n",
     EV(DEFAULT_EVENT_JSON)},
    {"TestServiceChecks", NULL, DEFAULT_SC, DEFAULT_SC_JSON},
    {"TestServiceChecks/incomplete", NULL, "_sc|agen.down\n" DEFAULT_SC,
     DEFAULT_SC_JSON},
    /* TestHistToDist */
    {"TestHistToDist", H2D, "daemon:666|h|#" TG,
     HIST1("daemon", "666", "0.1", "myhost", TG)
     "D dist.daemon " T0 " cnt=1 min=666 max=666 sum=666 avg=666 myhost #"
     TG "\n"},
    {"TestHistToDist/timing", H2D, "daemon:666|ms",
     HIST1("daemon", "666", "0.1", "myhost", "")
     "D dist.daemon " T0 " cnt=1 min=666 max=666 sum=666 avg=666 myhost #\n"},
    /* server.go: the copy goes to the aggregating batcher even for a
     * timestamped line, whose histogram the no-aggregation path drops */
    {"histogram_copy_to_distribution/timestamped", H2D,
     "daemon:666|h|T1000005\n",
     "D dist.daemon " T0 " cnt=1 min=666 max=666 sum=666 avg=666 myhost #\n"},
    /* TestExtraTags (dogstatsd_tags) */
    {"TestExtraTags", "DD_DOGSTATSD_TAGS=sometag3:somevalue3\n",
     "daemon:666|g|#" TG,
     "S daemon GAUGE " T0 " 666 myhost #" TG ",sometag3:somevalue3\n"},
    {"TestExtraTags/multi-value", "DD_DOGSTATSD_TAGS=sometag3:somevalue3\n",
     "daemon:666:500|g|#" TG,
     "S daemon GAUGE " T0 " 500 myhost #" TG ",sometag3:somevalue3\n"},

    /* enrich_test.go TestConvertParseMultiple */
    {"TestConvertParseMultiple/g", NULL, "daemon:666:777.5|g",
     "S daemon GAUGE " T0 " 777.5 myhost #\n"},
    {"TestConvertParseMultiple/c", NULL, "daemon:666:777.5|c",
     "S daemon RATE " T0 " 144.35 myhost #\n"},
    {"TestConvertParseMultiple/h", NULL, "daemon:666:777.5|h",
     HIST("daemon", T0, "777.5", "666", "721.75", "0.2", "777.5", "myhost",
          "")},
    {"TestConvertParseMultiple/ms", NULL, "daemon:666:777.5|ms",
     HIST("daemon", T0, "777.5", "666", "721.75", "0.2", "777.5", "myhost",
          "")},
    {"TestConvertParseMultiple/d", NULL, "daemon:666:777.5|d",
     "D daemon " T0 " cnt=2 min=666 max=777.5 sum=1443.5 avg=721.75 myhost "
     "#\n"},
    /* TestConvertParseSingle */
    {"TestConvertParseSingle/g", NULL, "daemon:666|g",
     "S daemon GAUGE " T0 " 666 myhost #\n"},
    {"TestConvertParseSingle/c", NULL, "daemon:666|c",
     "S daemon RATE " T0 " 66.6 myhost #\n"},
    {"TestConvertParseSingle/h", NULL, "daemon:666|h",
     HIST1("daemon", "666", "0.1", "myhost", "")},
    {"TestConvertParseSingle/ms", NULL, "daemon:666|ms",
     HIST1("daemon", "666", "0.1", "myhost", "")},
    {"TestConvertParseSingle/d", NULL, "daemon:666|d",
     "D daemon " T0 " cnt=1 min=666 max=666 sum=666 avg=666 myhost #\n"},
    /* TestConvertParseSingleWithTags */
    {"TestConvertParseSingleWithTags/g", NULL,
     "daemon:666|g|#protocol:http,bench",
     "S daemon GAUGE " T0 " 666 myhost #bench,protocol:http\n"},
    {"TestConvertParseSingleWithTags/c", NULL,
     "daemon:666|c|#protocol:http,bench",
     "S daemon RATE " T0 " 66.6 myhost #bench,protocol:http\n"},
    {"TestConvertParseSingleWithTags/h", NULL,
     "daemon:666|h|#protocol:http,bench",
     HIST1("daemon", "666", "0.1", "myhost", "bench,protocol:http")},
    {"TestConvertParseSingleWithTags/ms", NULL,
     "daemon:666|ms|#protocol:http,bench",
     HIST1("daemon", "666", "0.1", "myhost", "bench,protocol:http")},
    {"TestConvertParseSingleWithTags/d", NULL,
     "daemon:666|d|#protocol:http,bench",
     "D daemon " T0 " cnt=1 min=666 max=666 sum=666 avg=666 myhost "
     "#bench,protocol:http\n"},
    /* TestConvertParseSingleWithHostTags: host: is metadata, not a tag */
    {"TestConvertParseSingleWithHostTags/g", NULL,
     "daemon:666|g|#protocol:http,host:custom-host,bench",
     "S daemon GAUGE " T0 " 666 custom-host #bench,protocol:http\n"},
    {"TestConvertParseSingleWithHostTags/c", NULL,
     "daemon:666|c|#protocol:http,host:custom-host,bench",
     "S daemon RATE " T0 " 66.6 custom-host #bench,protocol:http\n"},
    {"TestConvertParseSingleWithHostTags/h", NULL,
     "daemon:666|h|#protocol:http,host:custom-host,bench",
     HIST1("daemon", "666", "0.1", "custom-host", "bench,protocol:http")},
    {"TestConvertParseSingleWithHostTags/ms", NULL,
     "daemon:666|ms|#protocol:http,host:custom-host,bench",
     HIST1("daemon", "666", "0.1", "custom-host", "bench,protocol:http")},
    {"TestConvertParseSingleWithHostTags/d", NULL,
     "daemon:666|d|#protocol:http,host:custom-host,bench",
     "D daemon " T0 " cnt=1 min=666 max=666 sum=666 avg=666 custom-host "
     "#bench,protocol:http\n"},
    /* TestConvertParseSingleWithEmptyHostTags: host: empties the host */
    {"TestConvertParseSingleWithEmptyHostTags/g", NULL,
     "daemon:666|g|#protocol:http,host:,bench",
     "S daemon GAUGE " T0 " 666  #bench,protocol:http\n"},
    {"TestConvertParseSingleWithEmptyHostTags/c", NULL,
     "daemon:666|c|#protocol:http,host:,bench",
     "S daemon RATE " T0 " 66.6  #bench,protocol:http\n"},
    {"TestConvertParseSingleWithEmptyHostTags/h", NULL,
     "daemon:666|h|#protocol:http,host:,bench",
     HIST1("daemon", "666", "0.1", "", "bench,protocol:http")},
    {"TestConvertParseSingleWithEmptyHostTags/ms", NULL,
     "daemon:666|ms|#protocol:http,host:,bench",
     HIST1("daemon", "666", "0.1", "", "bench,protocol:http")},
    {"TestConvertParseSingleWithEmptyHostTags/d", NULL,
     "daemon:666|d|#protocol:http,host:,bench",
     "D daemon " T0 " cnt=1 min=666 max=666 sum=666 avg=666  "
     "#bench,protocol:http\n"},
    /* TestConvertParseSingleWithSampleRate: @0.21, 1/rate = 4.7619...
     * counter: 666 * 4.7619 / 10; histogram (pkg/metrics/histogram.go):
     * count += int64(1/rate) = 4 (.count = 0.4), sum += 666 * 4.7619, so
     * .avg = 3171.43 / 4 = 792.857; distribution (quantile summary
     * InsertN): cnt += int64(n) = 4, sum += n * v, avg stays v */
    {"TestConvertParseSingleWithSampleRate/g", NULL, "daemon:666|g|@0.21",
     "S daemon GAUGE " T0 " 666 myhost #\n"},
    {"TestConvertParseSingleWithSampleRate/c", NULL, "daemon:666|c|@0.21",
     "S daemon RATE " T0 " 317.1428571 myhost #\n"},
    {"TestConvertParseSingleWithSampleRate/h", NULL, "daemon:666|h|@0.21",
     HIST("daemon", T0, "666", "666", "792.8571429", "0.4", "666", "myhost",
          "")},
    {"TestConvertParseSingleWithSampleRate/ms", NULL, "daemon:666|ms|@0.21",
     HIST("daemon", T0, "666", "666", "792.8571429", "0.4", "666", "myhost",
          "")},
    {"TestConvertParseSingleWithSampleRate/d", NULL, "daemon:666|d|@0.21",
     "D daemon " T0 " cnt=4 min=666 max=666 sum=3171.428571 avg=666 myhost "
     "#\n"},
    /* sets, '#' alone, unicode */
    {"TestConvertParseSet", NULL, "daemon:abc:def|s",
     "S daemon GAUGE " T0 " 1 myhost #\n"},
    {"TestConvertParseSetUnicode", NULL, "daemon:♬†øU†øU¥ºuT0♪|s",
     "S daemon GAUGE " T0 " 1 myhost #\n"},
    {"TestConvertParseGaugeWithPoundOnly", NULL, "daemon:666|g|#",
     "S daemon GAUGE " T0 " 666 myhost #\n"},
    {"TestConvertParseGaugeWithUnicode", NULL,
     "♬†øU†øU¥ºuT0♪:666|g|#intitulé:T0µ",
     "S ♬†øU†øU¥ºuT0♪ GAUGE " T0 " 666 myhost #intitulé:T0µ\n"},
    /* TestConvertParseMetricError */
    {"TestConvertParseMetricError/no type", NULL, "daemon:666", ""},
    {"TestConvertParseMetricError/empty type", NULL, "daemon:666|", ""},
    {"TestConvertParseMetricError/no value", NULL, "daemon:|g", ""},
    {"TestConvertParseMetricError/no name", NULL, ":666|g", ""},
    {"TestConvertParseMetricError/unknown field", NULL, "daemon:666|g|m:test",
     "S daemon GAUGE " T0 " 666 myhost #\n"},
    {"TestConvertParseMetricError/bad value", NULL, "daemon:abc|g", ""},
    {"TestConvertParseMetricError/bad type", NULL, "daemon:666|unknown", ""},
    {"TestConvertParseMetricError/bad rate", NULL, "daemon:666|g|@abc", ""},
    /* service checks: the Agent stamps a timestamp of 0 with the receive
     * time; no tags is null */
    {"TestConvertServiceCheckMinimal", NULL, "_sc|agent.up|0",
     SC_MIN("myhost", "1000000", "", "null")},
    {"TestConvertServiceCheckError/no status", NULL, "_sc|agent.up", ""},
    {"TestConvertServiceCheckError/empty status", NULL, "_sc|agent.up|", ""},
    {"TestConvertServiceCheckError/OK", NULL, "_sc|agent.up|OK", ""},
    {"TestConvertServiceCheckError/21", NULL, "_sc|agent.up|21", ""},
    {"TestConvertServiceCheckError/bad d:", NULL, "_sc|agent.up|0|d:some_time",
     SC_MIN("myhost", "1000000", "", "null")},
    {"TestConvertServiceCheckError/unknown field", NULL,
     "_sc|agent.up|0|u:unknown", SC_MIN("myhost", "1000000", "", "null")},
    {"TestConvertServiceCheckMetadataTimestamp", NULL, "_sc|agent.up|0|d:21",
     SC_MIN("myhost", "21", "", "null")},
    {"TestConvertServiceCheckMetadataHostname", NULL,
     "_sc|agent.up|0|h:localhost", SC_MIN("localhost", "1000000", "", "null")},
    {"TestConvertServiceCheckMetadataHostnameInTag", NULL,
     "_sc|agent.up|0|#host:localhost",
     SC_MIN("localhost", "1000000", "", "null")},
    {"TestConvertServiceCheckMetadataEmptyHostTag", NULL,
     "_sc|agent.up|0|#host:,other:tag",
     SC_MIN("", "1000000", "", "[\"other:tag\"]")},
    {"TestConvertServiceCheckMetadataTags", NULL,
     "_sc|agent.up|0|#tag1,tag2:test,tag3",
     SC_MIN("myhost", "1000000", "", "[\"tag1\",\"tag2:test\",\"tag3\"]")},
    {"TestConvertServiceCheckMetadataMessage", NULL,
     "_sc|agent.up|0|m:this is fine",
     SC_MIN("myhost", "1000000", "this is fine", "null")},
    {"TestConvertServiceCheckMetadataMultiple/all", NULL,
     "_sc|agent.up|0|d:21|h:localhost|#tag1:test,tag2|m:this is fine",
     SC_MIN("localhost", "21", "this is fine", "[\"tag1:test\",\"tag2\"]")},
    {"TestConvertServiceCheckMetadataMultiple/last wins", NULL,
     "_sc|agent.up|0|d:21|h:localhost|h:localhost2|d:22",
     SC_MIN("localhost2", "22", "", "null")},
    {"TestServiceCheckOriginTag", NULL,
     "_sc|agent.up|0|d:21|h:localhost|#tag1:test,tag2,"
     "dd.internal.entity_id:testID|m:this is fine",
     SC_MIN("localhost", "21", "this is fine", "[\"tag1:test\",\"tag2\"]")},
    /* events: priority normal and alert type info by default */
    {"TestConvertEventMinimal", NULL, "_e{10,9}:test title|test text",
     EV_T(EV_DEF ",\"host\":\"myhost\",\"alert_type\":\"info\"")},
    {"TestConvertEventMultilinesText", NULL,
     "_e{10,24}:test title|test\\line1\\nline2\\nline3",
     EV_API("\"msg_title\":\"test title\","
            "\"msg_text\":\"test\\\\line1\\nline2\\nline3\"," EV_DEF
            ",\"host\":\"myhost\",\"alert_type\":\"info\"")},
    {"TestConvertEventPipeInTitle", NULL,
     "_e{10,24}:test|title|test\\line1\\nline2\\nline3",
     EV_API("\"msg_title\":\"test|title\","
            "\"msg_text\":\"test\\\\line1\\nline2\\nline3\"," EV_DEF
            ",\"host\":\"myhost\",\"alert_type\":\"info\"")},
    {"TestConvertEventError", NULL,
     "_e:title|text\n_e{10,10}:title|text\n_e{0,0}:a|a\n_e{5555:title|text\n"
     "_e{a,1}:title|text\n_e{1,a}:title|text\n_e{5,}:title|text\n"
     "_e{,4}:title|text\n_e{}:title|text\n_e{,}:title|text\n_e|text\n"
     "_e:|text", ""},
    {"TestConvertEventError/ignored fields", NULL,
     "_e{5,4}:title|text|d:abc\n_e{5,4}:title|text|p:urgent\n"
     "_e{5,4}:title|text|t:test\n_e{5,4}:title|text|x:1234",
     EV("\"api\":["
        "{\"msg_title\":\"title\",\"msg_text\":\"text\"," EV_DEF
        ",\"host\":\"myhost\",\"alert_type\":\"info\"},"
        "{\"msg_title\":\"title\",\"msg_text\":\"text\"," EV_DEF
        ",\"host\":\"myhost\",\"alert_type\":\"info\"},"
        "{\"msg_title\":\"title\",\"msg_text\":\"text\"," EV_DEF
        ",\"host\":\"myhost\",\"alert_type\":\"info\"},"
        "{\"msg_title\":\"title\",\"msg_text\":\"text\"," EV_DEF
        ",\"host\":\"myhost\",\"alert_type\":\"info\"}]")},
    {"TestConvertEventMetadataTimestamp", NULL,
     "_e{10,9}:test title|test text|d:21",
     EV_T("\"timestamp\":21,\"priority\":\"normal\",\"host\":\"myhost\","
          "\"alert_type\":\"info\"")},
    {"TestConvertEventMetadataPriority", NULL,
     "_e{10,9}:test title|test text|p:low",
     EV_T("\"timestamp\":1000000,\"priority\":\"low\",\"host\":\"myhost\","
          "\"alert_type\":\"info\"")},
    {"TestConvertEventMetadataHostname", NULL,
     "_e{10,9}:test title|test text|h:localhost",
     EV_T(EV_DEF ",\"host\":\"localhost\",\"alert_type\":\"info\"")},
    {"TestConvertEventMetadataHostnameInTag", NULL,
     "_e{10,9}:test title|test text|#host:localhost",
     EV_T(EV_DEF ",\"host\":\"localhost\",\"alert_type\":\"info\"")},
    {"TestConvertEventMetadataEmptyHostTag", NULL,
     "_e{10,9}:test title|test text|#host:,other:tag",
     EV_T(EV_DEF ",\"host\":\"\",\"tags\":[\"other:tag\"],"
          "\"alert_type\":\"info\"")},
    {"TestConvertEventMetadataAlertType", NULL,
     "_e{10,9}:test title|test text|t:warning",
     EV_T(EV_DEF ",\"host\":\"myhost\",\"alert_type\":\"warning\"")},
    {"TestConvertEventMetadataAggregatioKey", NULL,
     "_e{10,9}:test title|test text|k:some aggregation key",
     EV_T(EV_DEF ",\"host\":\"myhost\",\"alert_type\":\"info\","
          "\"aggregation_key\":\"some aggregation key\"")},
    {"TestConvertEventMetadataSourceType", NULL,
     "_e{10,9}:test title|test text|s:this is the source",
     EV("\"this is the source\":[{\"msg_title\":\"test title\","
        "\"msg_text\":\"test text\"," EV_DEF ",\"host\":\"myhost\","
        "\"alert_type\":\"info\",\"source_type_name\":\"this is the "
        "source\"}]")},
    {"TestConvertEventMetadataTags", NULL,
     "_e{10,9}:test title|test text|#tag1,tag2:test",
     EV_T(EV_DEF ",\"host\":\"myhost\",\"tags\":[\"tag1\",\"tag2:test\"],"
          "\"alert_type\":\"info\"")},
    {"TestConvertEventMetadataMultiple", NULL,
     "_e{10,9}:test title|test text|t:warning|d:12345|p:low|h:some.host|"
     "k:aggKey|s:source test|#tag1,tag2:test",
     EV("\"source test\":[{\"msg_title\":\"test title\","
        "\"msg_text\":\"test text\",\"timestamp\":12345,"
        "\"priority\":\"low\",\"host\":\"some.host\","
        "\"tags\":[\"tag1\",\"tag2:test\"],\"alert_type\":\"warning\","
        "\"aggregation_key\":\"aggKey\",\"source_type_name\":\"source "
        "test\"}]")},
    {"TestEventOriginTag", NULL,
     "_e{10,9}:test title|test text|t:warning|d:12345|p:low|h:some.host|"
     "k:aggKey|s:source test|#tag1,tag2:test,dd.internal.entity_id:testID",
     EV("\"source test\":[{\"msg_title\":\"test title\","
        "\"msg_text\":\"test text\",\"timestamp\":12345,"
        "\"priority\":\"low\",\"host\":\"some.host\","
        "\"tags\":[\"tag1\",\"tag2:test\"],\"alert_type\":\"warning\","
        "\"aggregation_key\":\"aggKey\",\"source_type_name\":\"source "
        "test\"}]")},
    /* TestNextMessage: lines end at \n, a \r before it is dropped; with
     * dogstatsd_eol_required the unterminated last line is dropped (X_EOL:
     * the packet came from a listener named in it) */
    {"TestNextMessage/eol enabled", "X_EOL=1\n",
     "foo:1|c\nbar:1|c\r\nbaz:1|c\r\nquz:1|c\nhax:1|c\r",
     "S bar RATE " T0 " 0.1 myhost #\nS baz RATE " T0 " 0.1 myhost #\n"
     "S foo RATE " T0 " 0.1 myhost #\nS quz RATE " T0 " 0.1 myhost #\n"},
    {"TestNextMessage/eol disabled", NULL,
     "foo:1|c\nbar:1|c\r\nbaz:1|c\r\nquz:1|c\nhax:1|c",
     "S bar RATE " T0 " 0.1 myhost #\nS baz RATE " T0 " 0.1 myhost #\n"
     "S foo RATE " T0 " 0.1 myhost #\nS quz RATE " T0 " 0.1 myhost #\n"
     "S hax RATE " T0 " 0.1 myhost #\n"},
    {"TestNextMessage/base case", "X_EOL=1\n",
     "foo:1|c\nbar:1|c\r\nbaz:1|c\r\nquz:1|c\nhax:1|c\r\n",
     "S bar RATE " T0 " 0.1 myhost #\nS baz RATE " T0 " 0.1 myhost #\n"
     "S foo RATE " T0 " 0.1 myhost #\nS quz RATE " T0 " 0.1 myhost #\n"
     "S hax RATE " T0 " 0.1 myhost #\n"},
    /* TestEnrichTagsWithJMXCheckName: the check-name tag is metadata (the
     * Agent turns it into a metric source), never a tag */
    {"TestEnrichTagsWithJMXCheckName/kafka", NULL,
     "jmx.a:1|g|#env:prod,dd.internal.jmx_check_name:kafka",
     "S jmx.a GAUGE " T0 " 1 myhost #env:prod\n"},
    {"TestEnrichTagsWithJMXCheckName/tomcat", NULL,
     "jmx.b:1|g|#foo,jmx_domain:testdomain,dd.internal.jmx_check_name:tomcat",
     "S jmx.b GAUGE " T0 " 1 myhost #foo,jmx_domain:testdomain\n"},
    /* parse_test.go: the float and integer seeds of FuzzParseFloat64 and
     * FuzzParseInt64 (Go strconv rules: exponents and the extremes parse,
     * NaN/Inf parse and are dropped by the aggregator, the rest is an
     * error; a T field is a base-10 integer) */
    {"FuzzParseFloat64/extremes", NULL,
     "fz.a:1e10|g\nfz.b:1.7976931348623157e+308|g\n"
     "fz.c:2.2250738585072014e-308|g\nfz.d:-1.7976931348623157e+308|g\n"
     "fz.e:-1.1234|g\nfz.f:0|g",
     "S fz.a GAUGE " T0 " 1e+10 myhost #\n"
     "S fz.b GAUGE " T0 " 1.797693135e+308 myhost #\n"
     "S fz.c GAUGE " T0 " 2.225073859e-308 myhost #\n"
     "S fz.d GAUGE " T0 " -1.797693135e+308 myhost #\n"
     "S fz.e GAUGE " T0 " -1.1234 myhost #\n"
     "S fz.f GAUGE " T0 " 0 myhost #\n"},
    {"FuzzParseFloat64/NaN and Inf dropped", NULL,
     "fz.n:NaN|g\nfz.i:Inf|g\nfz.m:-Inf|g", ""},
    {"FuzzParseFloat64/errors", NULL,
     "fz.s: |g\nfz.v:invalid|g\nfz.w:1.234.567|g\nfz.x:1,234|g", ""},
    {"FuzzParseInt64/errors", NULL,
     "fz.t:1|g|T123.456\nfz.t:1|g|T0x123\nfz.t:1|g|T123abc\n"
     "fz.t:1|g|Tabc123\nfz.t:1|g|T ",
     ""},
    /* namespace, its blacklist, the metric filter list, serverless */
    {"TestConvertNamespace", "DD_STATSD_METRIC_NAMESPACE=testNamespace.\n",
     "daemon:21|ms", HIST1("testNamespace.daemon", "21", "0.1", "myhost", "")},
    {"TestConvertNamespaceBlacklist",
     "DD_STATSD_METRIC_NAMESPACE=testNamespace.\n"
     "DD_STATSD_METRIC_NAMESPACE_BLACKLIST=datadog.agent\n",
     "datadog.agent.daemon:21|ms",
     HIST1("datadog.agent.daemon", "21", "0.1", "myhost", "")},
    {"TestMetricFilterListShouldBlock",
     "DD_STATSD_METRIC_BLOCKLIST=custom.metric.a custom.metric.b\n",
     "custom.metric.a:21|ms", ""},
    {"TestMetricFilterListShouldNotBlock",
     "DD_STATSD_METRIC_BLOCKLIST=custom.metric.b custom.metric.c\n",
     "custom.metric.a:21|ms",
     HIST1("custom.metric.a", "21", "0.1", "myhost", "")},
    {"TestServerlessModeShouldSetEmptyHostname", "X_SERVERLESS=1\n",
     "custom.metric.a:21|ms", HIST1("custom.metric.a", "21", "0.1", "", "")},
    {"TestConvertEntityOriginDetectionNoTags", NULL,
     "daemon:666|g|#sometag1:somevalue1,host:my-hostname,"
     "dd.internal.entity_id:foo,sometag2:somevalue2",
     "S daemon GAUGE " T0 " 666 my-hostname #" TG "\n"},
    /* clang-format on */
};

static const char *row_env_get(const char *name, void *data)
{
    static char val[256];
    const char *env = data;
    size_t nl = strlen(name);

    for (const char *p = env; p != NULL && *p != '\0';) {
        const char *end = strchr(p, '\n');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if (len > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
            size_t vl = len - nl - 1;
            cr_assert_lt(vl, sizeof(val));
            memcpy(val, p + nl + 1, vl);
            val[vl] = '\0';
            return val;
        }
        p = end ? end + 1 : NULL;
    }
    return NULL;
}

struct lines {
    char *v[256];
    size_t n;
};

static void lines_add(struct lines *l, const char *s)
{
    cr_assert_lt(l->n, 256);
    l->v[l->n++] = strdup(s);
}

static int str_cmp(const void *x, const void *y)
{
    return strcmp(*(char *const *)x, *(char *const *)y);
}

static void join_tags(char *const *tags, size_t n, char *out, size_t len)
{
    char *t[64];
    size_t w = 0;
    cr_assert_leq(n, 64);
    if (n > 0)
        memcpy(t, tags, n * sizeof(*t));
    qsort(t, n, sizeof(*t), str_cmp);
    out[0] = '\0';
    for (size_t i = 0; i < n; i++)
        w += (size_t)snprintf(out + w, len - w, "%s%s", i ? "," : "", t[i]);
}

static void render(struct th *h, struct lines *l)
{
    static const char *const api[] = {"UNSPECIFIED", "COUNT", "RATE", "GAUGE"};
    char tags[1024], line[4096];

    th_decode(h);
    for (size_t i = 0; i < h->nmp; i++) {
        for (size_t k = 0; k < h->mp[i]->n_series; k++) {
            MSeries *s = h->mp[i]->series[k];
            cr_assert_geq(s->n_resources, 1);
            cr_assert_str_eq(s->resources[0]->type, "host");
            join_tags(s->tags, s->n_tags, tags, sizeof(tags));
            for (size_t p = 0; p < s->n_points; p++) {
                snprintf(line, sizeof(line), "S %s %s %lld %.10g %s #%s",
                         s->metric, api[s->type],
                         (long long)s->points[p]->timestamp,
                         s->points[p]->value, s->resources[0]->name, tags);
                lines_add(l, line);
            }
        }
    }
    for (size_t i = 0; i < h->nsp; i++) {
        for (size_t k = 0; k < h->sp[i]->n_sketches; k++) {
            SSketch *s = h->sp[i]->sketches[k];
            join_tags(s->tags, s->n_tags, tags, sizeof(tags));
            for (size_t p = 0; p < s->n_dogsketches; p++) {
                Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *d =
                    s->dogsketches[p];
                snprintf(line, sizeof(line),
                         "D %s %lld cnt=%lld min=%.10g max=%.10g sum=%.10g "
                         "avg=%.10g %s #%s",
                         s->metric, (long long)d->ts, (long long)d->cnt, d->min,
                         d->max, d->sum, d->avg, s->host, tags);
                lines_add(l, line);
            }
        }
    }
    for (size_t i = 0; i < h->np; i++) {
        enum fwd_kind kd = h->p[i]->kind;
        if (kd != FWD_KIND_EVENTS && kd != FWD_KIND_SERVICE_CHECKS)
            continue;
        size_t len;
        char *b = th_body(h->p[i], &len);
        snprintf(line, sizeof(line), "%c %s", kd == FWD_KIND_EVENTS ? 'E' : 'C',
                 b);
        free(b);
        lines_add(l, line);
    }
}

static void split_want(const char *want, struct lines *l)
{
    char line[4096];
    for (const char *p = want; *p != '\0';) {
        const char *end = strchr(p, '\n');
        cr_assert_not_null(end, "want lines end with \\n");
        size_t len = (size_t)(end - p);
        cr_assert_lt(len, sizeof(line));
        memcpy(line, p, len);
        line[len] = '\0';
        lines_add(l, line);
        p = end + 1;
    }
}

static void run_row(const struct arow *r)
{
    struct th h;
    struct dsd_config dcfg;
    struct dsd_sink sink;
    struct dsd *s = NULL;
    struct cmn_env env = {row_env_get, (void *)r->env};
    struct lines got = {0}, want = {0};

    th_setup(&h);
    dsd_config_defaults(&dcfg);
    cr_assert_eq(dsd_config_from_env(&dcfg, &env), 0, "%s", r->agent);
    cr_assert_eq(agg_config_from_env(&h.cfg, &env), 0, "%s", r->agent);
    if (row_env_get("X_SERVERLESS", (void *)r->env) != NULL)
        h.cfg.serverless = true;
    th_create(&h);
    dsd_sink_from_agg(&sink, h.a);
    cr_assert_eq(dsd_create(&h.loop, &dcfg, &sink, &s), 0);
    dsd_process_packet(s, r->packet, strlen(r->packet),
                       row_env_get("X_EOL", (void *)r->env) != NULL);
    th_flush(&h, true);
    render(&h, &got);
    split_want(r->want, &want);
    qsort(got.v, got.n, sizeof(char *), str_cmp);
    qsort(want.v, want.n, sizeof(char *), str_cmp);
    for (size_t i = 0; i < got.n || i < want.n; i++)
        cr_expect_str_eq(i < got.n ? got.v[i] : "(none)",
                         i < want.n ? want.v[i] : "(none)",
                         "%s: packet \"%s\" line %zu", r->agent, r->packet, i);
    for (size_t i = 0; i < got.n; i++)
        free(got.v[i]);
    for (size_t i = 0; i < want.n; i++)
        free(want.v[i]);
    dsd_destroy(s);
    dsd_config_free(&dcfg);
    th_teardown(&h);
}

Test(agent_cases, every_row)
{
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++)
        run_row(&rows[i]);
}
