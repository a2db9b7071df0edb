/*
 * test_intake.c - the test intake itself (tests/support): raw HTTP
 * clients on blocking sockets check recording, decoding (deflate, gzip,
 * zstd), keep-alive, the fault plan, ti_wait_count, and the series and
 * sketch lookup helpers other components' tests rely on.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <zlib.h>
#include <zstd.h>

#include "fwd_test.h"

static int dial(struct ti *ti)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)ti_port(ti))};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert(fd >= 0);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void post(int fd, const char *path, const char *enc, const void *body,
                 size_t len)
{
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %zu\r\n"
                     "%s%s%s\r\n",
                     path, len, enc ? "Content-Encoding: " : "", enc ? enc : "",
                     enc ? "\r\n" : "");
    cr_assert_eq(write(fd, head, (size_t)n), n);
    if (len > 0)
        cr_assert_eq(write(fd, body, len), (ssize_t)len);
}

/* Reads exactly one answer (headers, then the 2-byte body) byte by byte,
 * so pipelined answers stay in the socket; returns the status or -1. */
static int read_status(int fd)
{
    char buf[1024];
    size_t got = 0;
    while (got < sizeof(buf) - 1) {
        ssize_t n = read(fd, buf + got, 1);
        if (n <= 0)
            return -1;
        got++;
        buf[got] = '\0';
        if (got >= 4 && memcmp(buf + got - 4, "\r\n\r\n", 4) == 0)
            break;
    }
    char body[2];
    cr_assert_eq(read(fd, body, 2), 2);
    cr_assert_eq(strncmp(buf, "HTTP/1.1 ", 9), 0);
    int64_t status;
    cr_assert_eq(cmn_parse_i64(cmn_slice(buf + 9, 3), &status), 0);
    return (int)status;
}

Test(intake, records_and_decodes)
{
    struct ti *ti;
    char raw[3000];
    unsigned char z[4000];
    uLongf zlen = sizeof(z);
    size_t live0 = cmn_alloc_live_bytes();

    for (size_t i = 0; i < sizeof(raw); i++)
        raw[i] = (char)('A' + i % 26);
    cr_assert_eq(ti_start(&ti), 0);
    int fd = dial(ti);
    /* deflate = zlib format, as the Agent sends it */
    cr_assert_eq(compress2(z, &zlen, (const Bytef *)raw, sizeof(raw), 6), Z_OK);
    post(fd, "/api/v1/series", "deflate", z, zlen);
    cr_assert_eq(read_status(fd), 202);
    size_t zs = ZSTD_compress(z, sizeof(z), raw, sizeof(raw), 1);
    post(fd, "/api/v2/series", "zstd", z, zs);
    cr_assert_eq(read_status(fd), 202);
    post(fd, "/x", "br", "abc", 3);
    cr_assert_eq(read_status(fd), 202);
    post(fd, "/empty", NULL, NULL, 0);
    cr_assert_eq(read_status(fd), 202);
    cr_assert_eq(ti_wait_count(ti, 4, 2000), 4);
    close(fd);

    const struct ti_request *r = ti_request_get(ti, 0);
    cr_assert_str_eq(r->method, "POST");
    cr_assert_str_eq(r->path, "/api/v1/series");
    cr_assert(r->decode_ok);
    cr_assert_eq(r->decoded_len, sizeof(raw));
    cr_assert_eq(memcmp(r->decoded, raw, sizeof(raw)), 0);
    cr_assert_eq(r->body_len, zlen);
    r = ti_request_get(ti, 1);
    cr_assert(r->decode_ok);
    cr_assert_eq(memcmp(r->decoded, raw, sizeof(raw)), 0);
    r = ti_request_get(ti, 2);
    cr_assert(!r->decode_ok); /* unknown encoding */
    cr_assert_eq(r->body_len, 3);
    r = ti_request_get(ti, 3);
    cr_assert(r->decode_ok);
    cr_assert_eq(r->decoded_len, 0);
    cr_assert_eq(ti_connection_count(ti), 1);
    for (size_t i = 0; i < 4; i++)
        cr_assert_eq(ti_request_get(ti, i)->conn_id, 1);
    cr_assert_eq(ti_count_path(ti, "/api/v2/series"), 1);
    cr_assert_null(ti_request_get(ti, 4));
    /* nothing more arrives: the wait times out with the count */
    cr_assert_eq(ti_wait_count(ti, 5, 50), 4);
    ti_stop(ti);
    cr_assert_eq(cmn_alloc_live_bytes(), live0);
}

Test(intake, plan_status_count_then_202)
{
    struct ti *ti;
    struct ti_plan plan = {.status = 500, .count = 2};

    cr_assert_eq(ti_start(&ti), 0);
    ti_set_plan(ti, &plan);
    int fd = dial(ti);
    for (int i = 0; i < 3; i++)
        post(fd, "/p", NULL, "x", 1);
    /* answers come in order on one keep-alive connection */
    cr_assert_eq(read_status(fd), 500);
    cr_assert_eq(read_status(fd), 500);
    cr_assert_eq(read_status(fd), 202);
    close(fd);
    cr_assert_eq(ti_request_get(ti, 0)->answered, 500);
    cr_assert_eq(ti_request_get(ti, 2)->answered, 202);
    ti_stop(ti);
}

Test(intake, reset_fault)
{
    struct ti *ti;
    struct ti_plan plan = {.fault = TI_FAULT_RESET, .count = 1};

    cr_assert_eq(ti_start(&ti), 0);
    ti_set_plan(ti, &plan);
    int fd = dial(ti);
    post(fd, "/p", NULL, "x", 1);
    cr_assert_eq(read_status(fd), -1);
    close(fd);
    cr_assert_eq(ti_request_count(ti), 1);
    cr_assert_eq(ti_request_get(ti, 0)->answered, 0);
    ti_stop(ti);
}

Test(intake, series_and_sketch_helpers)
{
    struct ti *ti;
    Datadog__Agentpayload__MetricPayload mp =
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__INIT;
    Datadog__Agentpayload__MetricPayload__MetricSeries s[2] = {
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_SERIES__INIT,
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_SERIES__INIT};
    Datadog__Agentpayload__MetricPayload__MetricSeries *sp[2] = {&s[0], &s[1]};
    Datadog__Agentpayload__MetricPayload__MetricPoint pt[2] = {
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_POINT__INIT,
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_POINT__INIT};
    Datadog__Agentpayload__MetricPayload__MetricPoint *pp0[1] = {&pt[0]};
    Datadog__Agentpayload__MetricPayload__MetricPoint *pp1[1] = {&pt[1]};
    Datadog__Agentpayload__MetricPayload__Resource res =
        DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__RESOURCE__INIT;
    Datadog__Agentpayload__MetricPayload__Resource *resp[1] = {&res};
    char *tags0[] = {"b:2", "a:1"};
    char *tags1[] = {"a:1"};
    unsigned char buf[1024];

    s[0].metric = "m";
    s[0].tags = tags0;
    s[0].n_tags = 2;
    s[0].points = pp0;
    s[0].n_points = 1;
    s[0].type = DATADOG__AGENTPAYLOAD__METRIC_PAYLOAD__METRIC_TYPE__RATE;
    s[0].interval = 10;
    res.type = "host";
    res.name = "h1";
    s[0].resources = resp;
    s[0].n_resources = 1;
    pt[0].value = 1.5;
    pt[0].timestamp = 100;
    s[1].metric = "m";
    s[1].tags = tags1;
    s[1].n_tags = 1;
    s[1].points = pp1;
    s[1].n_points = 1;
    pt[1].value = 7;
    pt[1].timestamp = 110;
    mp.series = sp;
    mp.n_series = 2;
    size_t len = datadog__agentpayload__metric_payload__pack(&mp, buf);

    Datadog__Agentpayload__SketchPayload skp =
        DATADOG__AGENTPAYLOAD__SKETCH_PAYLOAD__INIT;
    Datadog__Agentpayload__SketchPayload__Sketch sk =
        DATADOG__AGENTPAYLOAD__SKETCH_PAYLOAD__SKETCH__INIT;
    Datadog__Agentpayload__SketchPayload__Sketch *skpp[1] = {&sk};
    Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch ds[2] = {
        DATADOG__AGENTPAYLOAD__SKETCH_PAYLOAD__SKETCH__DOGSKETCH__INIT,
        DATADOG__AGENTPAYLOAD__SKETCH_PAYLOAD__SKETCH__DOGSKETCH__INIT};
    Datadog__Agentpayload__SketchPayload__Sketch__Dogsketch *dsp[2] = {&ds[0],
                                                                       &ds[1]};
    int32_t k[1] = {5};
    uint32_t n[1] = {3};
    unsigned char buf2[1024];
    sk.metric = "d";
    sk.dogsketches = dsp;
    sk.n_dogsketches = 2;
    ds[0].cnt = 3;
    ds[0].sum = 6;
    ds[0].min = 1;
    ds[0].max = 3;
    ds[0].k = k;
    ds[0].n_k = 1;
    ds[0].n = n;
    ds[0].n_n = 1;
    ds[1].cnt = 1;
    ds[1].sum = 10;
    ds[1].min = 10;
    ds[1].max = 10;
    skp.sketches = skpp;
    skp.n_sketches = 1;
    size_t len2 = datadog__agentpayload__sketch_payload__pack(&skp, buf2);

    cr_assert_eq(ti_start(&ti), 0);
    int fd = dial(ti);
    post(fd, "/api/v2/series", NULL, buf, len);
    cr_assert_eq(read_status(fd), 202);
    post(fd, "/api/beta/sketches", NULL, buf2, len2);
    cr_assert_eq(read_status(fd), 202);
    close(fd);

    struct ti_point pts[4];
    struct ti_series_info info;
    cr_assert_eq(ti_series_points(ti, "m", "a:1,b:2", pts, 4, &info), 1);
    cr_assert_eq(pts[0].ts, 100);
    cr_assert_float_eq(pts[0].value, 1.5, 1e-12);
    cr_assert_eq(info.type, 2);
    cr_assert_eq(info.interval, 10);
    cr_assert_str_eq(info.host, "h1");
    cr_assert_eq(ti_series_points(ti, "m", "a:1", pts, 4, NULL), 1);
    cr_assert_float_eq(pts[0].value, 7, 1e-12);
    cr_assert_eq(ti_series_points(ti, "m", "", NULL, 0, NULL), 0);
    cr_assert_eq(ti_series_points(ti, "m", "b:2", NULL, 0, NULL), 0);
    cr_assert_eq(ti_series_points(ti, "nope", "a:1", NULL, 0, NULL), 0);

    struct ti_sketch_sum sum;
    cr_assert_eq(ti_sketch_find(ti, "d", "", &sum), 2);
    cr_assert_eq(sum.cnt, 4);
    cr_assert_float_eq(sum.sum, 16, 1e-12);
    cr_assert_float_eq(sum.min, 1, 1e-12);
    cr_assert_float_eq(sum.max, 10, 1e-12);
    cr_assert_eq(sum.nbins, 1);
    cr_assert_eq(ti_sketch_find(ti, "d", "x:y", &sum), 0);
    ti_stop(ti);
}
