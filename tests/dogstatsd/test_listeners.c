/*
 * test_listeners.c - the server's listeners on real loopback sockets: UDP
 * on an ephemeral port of 127.0.0.1, Unix datagram and Unix stream sockets
 * in a private temp directory. A recording sink turns every item into a
 * text row (dsd_rec.h) so each test asserts exactly what arrived.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dogstatsd.h"
#include "dogstatsd/dsd_loop.h"
#include "dogstatsd/dsd_rec.h"

static struct rec rec;
static uv_loop_t loop;
static char dir[64];
static char dgram_path[100], stream_path[100];
static int stopped;
static size_t rows_at_stop;

/* A fresh loop and recorder (each test; each run of a test that runs
 * several servers in turn, stop_and_close closing the loop). */
static void loop_reset(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    memset(&rec, 0, sizeof(rec));
    stopped = 0;
}

static void setup(void)
{
    loop_reset();
    snprintf(dir, sizeof(dir), "/tmp/dsdtest.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(dgram_path, sizeof(dgram_path), "%s/dsd.sock", dir);
    snprintf(stream_path, sizeof(stream_path), "%s/dsd-stream.sock", dir);
}

static void teardown(void)
{
    unlink(dgram_path);
    unlink(stream_path);
    rmdir(dir);
}

TestSuite(listeners, .init = setup, .fini = teardown);

static void on_stopped(void *data)
{
    stopped++;
    rows_at_stop = rec.total;
    cr_expect_eq(data, &rec);
}

/* Stops the server, runs the loop until the stop callback, frees it, and
 * checks the loop has nothing left. */
static void stop_and_close(struct dsd *s)
{
    dsd_stop(s, cmn_deadline_in_ms(2000), on_stopped, &rec);
    cr_expect_eq(stopped, 0, "stop callback must be asynchronous");
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(stopped, 1);
    dsd_destroy(s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

static struct dsd *start(struct dsd_config *cfg)
{
    struct dsd_sink sink = rec_sink(&rec);
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(&loop, cfg, &sink, &s), 0);
    int rc = dsd_start(s);
    cr_assert_eq(rc, 0, "dsd_start: %s", uv_strerror(rc));
    return s;
}

/* Created and bound, its receive threads not started (dsd_bind). */
static struct dsd *bound(struct dsd_config *cfg)
{
    struct dsd_sink sink = rec_sink(&rec);
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(&loop, cfg, &sink, &s), 0);
    cr_assert_eq(dsd_bind(s), 0);
    return s;
}

static int udp_sender(void)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    return fd;
}

static void udp_send(int fd, int port, const char *p, size_t len)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(sendto(fd, p, len, 0, (struct sockaddr *)&a, sizeof(a)),
                 (ssize_t)len, "sendto: %s", strerror(errno));
}

/* n counters "<prefix><i>:1|c" to s's UDP port, one per datagram. */
static void send_counts(struct dsd *s, const char *prefix, int n)
{
    int u = udp_sender();
    char line[64];
    for (int i = 0; i < n; i++) {
        int len = snprintf(line, sizeof(line), "%s%d:1|c", prefix, i);
        udp_send(u, dsd_udp_port(s), line, (size_t)len);
    }
    close(u);
}

static int uds_sender(void)
{
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    return fd;
}

static void uds_send(int fd, const char *p, size_t len)
{
    struct sockaddr_un a;
    dl_unix_addr(&a, dgram_path);
    cr_assert_eq(sendto(fd, p, len, 0, (struct sockaddr *)&a, sizeof(a)),
                 (ssize_t)len, "sendto: %s", strerror(errno));
}

static int stream_connect(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un a;
    dl_unix_addr(&a, stream_path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0,
                 "connect: %s", strerror(errno));
    return fd;
}

/* Appends one frame (LE length + payload) to buf at *n. */
static void frame(char *buf, size_t *n, const char *payload, uint32_t len)
{
    unsigned char h[4] = {(unsigned char)len, (unsigned char)(len >> 8),
                          (unsigned char)(len >> 16),
                          (unsigned char)(len >> 24)};
    memcpy(buf + *n, h, 4);
    memcpy(buf + *n + 4, payload, len);
    *n += 4 + len;
}

static void write_all(int fd, const char *p, size_t len)
{
    cr_assert_eq(write(fd, p, len), (ssize_t)len, "write: %s", strerror(errno));
}

static struct dsd_stats stats(struct dsd *s)
{
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    return st;
}

Test(listeners, udp_ephemeral_port)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.so_rcvbuf = 1 << 20;
    struct dsd *s = start(&cfg);
    int port = dsd_udp_port(s);
    cr_assert_gt(port, 0);
    cr_assert_neq(port, 8125);
    int fd = udp_sender();
    udp_send(fd, port, "a:1|c", 5);
    const char two[] = "b:2.5|g|#t:1,u\nc:3:4|h|@0.5";
    udp_send(fd, port, two, sizeof(two) - 1);
    udp_send(fd, port, "_sc|up|1|m:hi", 13);
    udp_send(fd, port, "", 0);
    dl_run_until(&loop, &rec.total, 4);
    cr_assert_eq(rec.n, 4);
    cr_expect_str_eq(rec.rows[0], "c a 1 # @1 T0");
    cr_expect_str_eq(rec.rows[1], "g b 2.5 #t:1,u @1 T0");
    cr_expect_str_eq(rec.rows[2], "h c 3,4 # @0.5 T0");
    cr_expect_str_eq(rec.rows[3], "sc up 1 # T0 h mhi");
    dl_run_rounds(&loop, 3); /* the empty datagram */
    struct dsd_stats st = stats(s);
    cr_expect_eq(st.packets, 4);
    cr_expect_eq(st.metric_samples, 4);
    cr_expect_eq(st.service_check_lines, 1);
    cr_expect_eq(st.bytes, 5 + sizeof(two) - 1 + 13);
    close(fd);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(listeners, udp_truncated_datagram_dropped)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.buffer_size = 64;
    struct dsd *s = start(&cfg);
    int port = dsd_udp_port(s);
    int fd = udp_sender();
    char big[100];
    memset(big, 'x', sizeof(big));
    memcpy(big, "big:1|c\n", 8); /* a valid first line: still dropped */
    char exact[64];
    memset(exact, 'y', sizeof(exact));
    memcpy(exact, "exact:1|c|#", 11); /* exactly buffer_size: kept */
    udp_send(fd, port, "before:1|c", 10);
    udp_send(fd, port, big, sizeof(big));
    udp_send(fd, port, exact, sizeof(exact));
    udp_send(fd, port, "after:1|c", 9);
    dl_run_until(&loop, &rec.total, 3);
    cr_assert_eq(rec.n, 3);
    cr_expect_str_eq(rec.rows[0], "c before 1 # @1 T0");
    cr_expect_eq(strncmp(rec.rows[1], "c exact 1 #yyy", 14), 0, "%s",
                 rec.rows[1]);
    cr_expect_str_eq(rec.rows[2], "c after 1 # @1 T0");
    struct dsd_stats st = stats(s);
    cr_expect_eq(st.packets_truncated, 1);
    cr_expect_eq(st.packets, 4);
    close(fd);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

/* Datagrams larger than a batch slot's head (DSD_SCRATCH_HEAD, 1536
 * bytes) arrive in two pieces, head and tail: they must come out whole.
 * Ten-byte lines with a value derived from their number, so a line that
 * straddles byte 1536 (line 153) or a piece out of place shows. */
Test(listeners, udp_datagrams_past_the_slot_head_arrive_whole)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    struct dsd *s = start(&cfg);
    int port = dsd_udp_port(s);
    int fd = udp_sender();
    const size_t sizes[] = {1530, 1540, 8000, 8190};
    static char dgram[8192];
    uint64_t want = 0;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++) {
        for (size_t i = 0; i < sizes[k] / 10; i++) {
            char line[32];
            cr_assert_eq(
                snprintf(line, sizeof(line), "x%04zu:%zu|c\n", i, i % 10), 10);
            memcpy(dgram + i * 10, line, 10);
        }
        udp_send(fd, port, dgram, sizes[k]);
        want += sizes[k] / 10;
    }
    dl_run_until(&loop, &rec.total, want);
    cr_assert_eq(rec.n, want);
    size_t row = 0;
    for (size_t k = 0; k < sizeof(sizes) / sizeof(sizes[0]); k++)
        for (size_t i = 0; i < sizes[k] / 10; i++, row++) {
            char exp[64];
            snprintf(exp, sizeof(exp), "c x%04zu %zu # @1 T0", i, i % 10);
            cr_assert_str_eq(rec.rows[row], exp, "datagram of %zu bytes",
                             sizes[k]);
        }
    struct dsd_stats st = stats(s);
    cr_expect_eq(st.packets, 4);
    cr_expect_eq(st.packets_truncated, 0);
    close(fd);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(listeners, udp_eol_required)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.eol_required_udp = true;
    struct dsd *s = start(&cfg);
    int fd = udp_sender();
    udp_send(fd, dsd_udp_port(s), "a:1|c\nb:2|c", 11);
    udp_send(fd, dsd_udp_port(s), "c:3|c\n", 6);
    dl_run_until(&loop, &rec.total, 2);
    cr_assert_eq(rec.n, 2);
    cr_expect_str_eq(rec.rows[0], "c a 1 # @1 T0");
    cr_expect_str_eq(rec.rows[1], "c c 3 # @1 T0");
    cr_expect_eq(stats(s).unterminated, 1);
    close(fd);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(listeners, uds_dgram_mode_and_unlink)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.socket_path = cmn_strdup(dgram_path);
    cfg.eol_required_uds = true; /* udp setting must not leak to uds */
    struct dsd *s = start(&cfg);
    cr_expect_eq(dsd_udp_port(s), 0);
    struct stat st;
    cr_assert_eq(stat(dgram_path, &st), 0);
    cr_expect(S_ISSOCK(st.st_mode));
    cr_expect_eq(st.st_mode & 07777, 0722, "mode %o", st.st_mode & 07777);
    int fd = uds_sender();
    uds_send(fd, "u:1|d|#x\n", 9);
    uds_send(fd, "v:2|d\nw:3|s", 11);
    dl_run_until(&loop, &rec.total, 2);
    cr_assert_eq(rec.n, 2);
    cr_expect_str_eq(rec.rows[0], "d u 1 #x @1 T0");
    cr_expect_str_eq(rec.rows[1], "d v 2 # @1 T0");
    cr_expect_eq(stats(s).unterminated, 1);
    close(fd);
    stop_and_close(s);
    cr_expect_neq(stat(dgram_path, &st), 0, "socket file removed on stop");
    dsd_config_free(&cfg);
}

Test(listeners, stale_socket_replaced_regular_file_refused)
{
    /* a socket file left by a previous run */
    int old = socket(AF_UNIX, SOCK_DGRAM, 0);
    struct sockaddr_un a;
    dl_unix_addr(&a, dgram_path);
    cr_assert_eq(bind(old, (struct sockaddr *)&a, sizeof(a)), 0);
    close(old);
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.socket_path = cmn_strdup(dgram_path);
    struct dsd *s = start(&cfg);
    int fd = uds_sender();
    uds_send(fd, "z:1|c", 5);
    dl_run_until(&loop, &rec.total, 1);
    cr_expect_eq(rec.n, 1);
    close(fd);
    stop_and_close(s);

    /* a regular file is never removed */
    cr_assert_eq(uv_loop_init(&loop), 0);
    int f = open(dgram_path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(f, 0);
    close(f);
    struct dsd_sink sink = rec_sink(&rec);
    cr_assert_eq(dsd_create(&loop, &cfg, &sink, &s), 0);
    cr_expect_eq(dsd_start(s), UV_EEXIST);
    struct stat st;
    cr_expect_eq(stat(dgram_path, &st), 0);
    cr_expect(S_ISREG(st.st_mode));
    dsd_destroy(s);
    cr_expect_eq(uv_loop_close(&loop), 0);
    dsd_config_free(&cfg);
}

Test(listeners, no_listener_and_bad_bind_host)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    struct dsd_sink sink = rec_sink(&rec);
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(&loop, &cfg, &sink, &s), 0);
    cr_expect_eq(dsd_start(s), UV_EINVAL);
    dsd_destroy(s);
    cfg.port = -1;
    cfg.bind_host = cmn_strdup("not-a-host.invalid");
    cr_assert_eq(dsd_create(&loop, &cfg, &sink, &s), 0);
    cr_expect_eq(dsd_start(s), UV_EINVAL);
    dsd_destroy(s);
    cr_expect_eq(uv_loop_close(&loop), 0);
    dsd_config_free(&cfg);
}

Test(listeners, udp_ipv6_loopback)
{
    int probe = socket(AF_INET6, SOCK_DGRAM, 0);
    if (probe < 0)
        cr_skip_test("no IPv6");
    close(probe);
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.bind_host = cmn_strdup("::1");
    struct dsd_sink sink = rec_sink(&rec);
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(&loop, &cfg, &sink, &s), 0);
    int rc = dsd_start(s);
    if (rc == UV_EADDRNOTAVAIL) {
        dsd_destroy(s);
        uv_loop_close(&loop);
        dsd_config_free(&cfg);
        cr_skip_test("::1 not configured");
    }
    cr_assert_eq(rc, 0);
    int fd = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in6 a;
    cr_assert_eq(uv_ip6_addr("::1", dsd_udp_port(s), &a), 0);
    cr_assert_eq(sendto(fd, "six:6|g", 7, 0, (struct sockaddr *)&a, sizeof(a)),
                 7);
    dl_run_until(&loop, &rec.total, 1);
    cr_assert_eq(rec.n, 1);
    cr_expect_str_eq(rec.rows[0], "g six 6 # @1 T0");
    close(fd);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(listeners, stream_framing)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.stream_socket_path = cmn_strdup(stream_path);
    struct dsd *s = start(&cfg);
    struct stat st;
    cr_assert_eq(stat(stream_path, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0722);
    int fd = stream_connect();

    /* several frames in one write */
    char buf[256];
    size_t n = 0;
    frame(buf, &n, "f1:1|c", 6);
    frame(buf, &n, "f2:2|c\nf3:3|c", 13);
    frame(buf, &n, "", 0);
    frame(buf, &n, "_e{2,2}:ti|tx", 13);
    write_all(fd, buf, n);
    dl_run_until(&loop, &rec.total, 4);
    cr_assert_eq(rec.n, 4);
    cr_expect_str_eq(rec.rows[0], "c f1 1 # @1 T0");
    cr_expect_str_eq(rec.rows[1], "c f2 2 # @1 T0");
    cr_expect_str_eq(rec.rows[2], "c f3 3 # @1 T0");
    cr_expect_str_eq(rec.rows[3], "event ti|tx # p1 a1 T0 h");

    /* one frame split across writes: inside the length, then the payload */
    n = 0;
    frame(buf, &n, "split:42|g", 10);
    write_all(fd, buf, 2);
    dl_run_rounds(&loop, 5);
    write_all(fd, buf + 2, 5);
    dl_run_rounds(&loop, 5);
    cr_expect_eq(rec.n, 4, "nothing before the frame is whole");
    write_all(fd, buf + 7, n - 7);
    dl_run_until(&loop, &rec.total, 5);
    cr_assert_eq(rec.n, 5);
    cr_expect_str_eq(rec.rows[4], "g split 42 # @1 T0");
    struct dsd_stats sst = stats(s);
    cr_expect_eq(sst.stream_conns, 1);
    cr_expect_eq(sst.packets, 5);
    close(fd);
    stop_and_close(s);
    cr_expect_neq(stat(stream_path, &st), 0, "socket file removed on stop");
    dsd_config_free(&cfg);
}

Test(listeners, stream_oversize_frame_closes_connection)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.buffer_size = 32;
    cfg.stream_socket_path = cmn_strdup(stream_path);
    struct dsd *s = start(&cfg);
    int fd = stream_connect();
    int other = stream_connect();
    char buf[128];
    size_t n = 0;
    frame(buf, &n, "ok:1|c", 6);
    char big[33];
    memset(big, 'x', sizeof(big));
    frame(buf, &n, big, 33); /* 33 > buffer_size */
    frame(buf, &n, "never:1|c", 9);
    write_all(fd, buf, n);
    n = 0;
    char exact[32];
    memset(exact, 'y', sizeof(exact));
    memcpy(exact, "exact:1|c|#", 11);
    frame(buf, &n, exact, 32);
    write_all(other, buf, n);
    struct dsd_stats st = stats(s);
    for (int i = 0; i < 200 && (st.stream_frames_too_big == 0 || rec.n < 2);
         i++) {
        dl_run_rounds(&loop, 1);
        st = stats(s);
    }
    cr_expect_eq(st.stream_frames_too_big, 1);
    cr_assert_eq(rec.n, 2);
    cr_expect_str_eq(rec.rows[0], "c ok 1 # @1 T0");
    cr_expect_eq(strncmp(rec.rows[1], "c exact 1 #yyy", 14), 0, "%s",
                 rec.rows[1]);
    dl_run_rounds(&loop, 5);
    char c;
    cr_expect_eq(recv(fd, &c, 1, MSG_DONTWAIT), 0, "server closed fd");
    close(fd);
    close(other);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(listeners, stream_eof_mid_frame_and_conn_cap)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.max_stream_conns = 1;
    cfg.stream_socket_path = cmn_strdup(stream_path);
    struct dsd *s = start(&cfg);
    int a = stream_connect();
    char buf[64];
    size_t n = 0;
    frame(buf, &n, "a:1|c", 5);
    write_all(a, buf, n);
    dl_run_until(&loop, &rec.total, 1);
    cr_assert_eq(rec.n, 1);
    int b = stream_connect(); /* over the cap: accepted, then closed */
    struct dsd_stats st = stats(s);
    for (int i = 0; i < 200 && st.stream_conns_refused == 0; i++) {
        dl_run_rounds(&loop, 1);
        st = stats(s);
    }
    cr_expect_eq(st.stream_conns_refused, 1);
    dl_run_rounds(&loop, 5);
    char c;
    cr_expect_eq(recv(b, &c, 1, MSG_DONTWAIT), 0);
    close(b);
    /* EOF in the middle of a frame */
    n = 0;
    frame(buf, &n, "half:1|c", 8);
    write_all(a, buf, n - 3);
    close(a);
    for (int i = 0; i < 200 && st.stream_partial_eof == 0; i++) {
        dl_run_rounds(&loop, 1);
        st = stats(s);
    }
    cr_expect_eq(st.stream_partial_eof, 1);
    cr_expect_eq(rec.n, 1);
    /* the slot is free again */
    int d = stream_connect();
    n = 0;
    frame(buf, &n, "d:4|c", 5);
    write_all(d, buf, n);
    dl_run_until(&loop, &rec.total, 2);
    cr_assert_eq(rec.n, 2);
    cr_expect_str_eq(rec.rows[1], "c d 4 # @1 T0");
    close(d);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

/* The shutdown promise: whatever the kernel already holds when dsd_stop is
 * called reaches the sink before the stop callback, with no loop run. */
Test(listeners, stop_drains_udp_and_uds)
{
    enum { N = 100 };
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.so_rcvbuf = 1 << 20;
    cfg.socket_path = cmn_strdup(dgram_path);
    struct dsd *s = start(&cfg);
    int u = udp_sender(), d = uds_sender();
    char line[32];
    /* Unix datagram queues hold only net.unix.max_dgram_qlen datagrams (10
     * on many systems): send without blocking and count what the kernel
     * accepted; every one of those must arrive. */
    size_t nuds_sent = 0;
    for (int i = 0; i < N; i++) {
        int len = snprintf(line, sizeof(line), "udp%d:%d|c", i, i);
        udp_send(u, dsd_udp_port(s), line, (size_t)len);
        len = snprintf(line, sizeof(line), "uds%d:%d|c", i, i);
        struct sockaddr_un a;
        dl_unix_addr(&a, dgram_path);
        if (sendto(d, line, (size_t)len, MSG_DONTWAIT, (struct sockaddr *)&a,
                   sizeof(a)) == len)
            nuds_sent++;
    }
    cr_assert_geq(nuds_sent, 5);
    cr_assert_eq(rec.total, 0, "nothing read before the loop runs");
    dsd_stop(s, cmn_deadline_in_ms(2000), on_stopped, &rec);
    cr_expect_eq(rec.total, N + nuds_sent, "drained synchronously");
    cr_expect_eq(stopped, 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(stopped, 1);
    cr_expect_eq(rows_at_stop, N + nuds_sent);
    size_t nudp = 0, nuds = 0;
    for (size_t i = 0; i < rec.n; i++) {
        nudp += strncmp(rec.rows[i], "c udp", 5) == 0;
        nuds += strncmp(rec.rows[i], "c uds", 5) == 0;
    }
    cr_expect_eq(nudp, N);
    cr_expect_eq(nuds, nuds_sent);
    cr_expect_str_eq(rec.rows[0], "c udp0 0 # @1 T0");
    cr_expect_str_eq(rec.rows[N - 1], "c udp99 99 # @1 T0");
    dsd_destroy(s);
    cr_expect_eq(uv_loop_close(&loop), 0);
    close(u);
    close(d);
    dsd_config_free(&cfg);
}

Test(listeners, stop_drains_stream_bytes)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.stream_socket_path = cmn_strdup(stream_path);
    struct dsd *s = start(&cfg);
    int fd = stream_connect();
    dl_run_rounds(&loop, 5); /* accept the client */
    char buf[64];
    size_t n = 0;
    frame(buf, &n, "last:1|c", 8);
    frame(buf, &n, "words:2|c", 9);
    write_all(fd, buf, n);
    dsd_stop(s, cmn_deadline_in_ms(2000), on_stopped, &rec);
    cr_expect_eq(rec.total, 2);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(rows_at_stop, 2);
    cr_expect_str_eq(rec.rows[1], "c words 2 # @1 T0");
    dsd_destroy(s);
    cr_expect_eq(uv_loop_close(&loop), 0);
    close(fd);
    dsd_config_free(&cfg);
}

Test(listeners, stop_without_start_is_async)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    struct dsd_sink sink = rec_sink(&rec);
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(&loop, &cfg, &sink, &s), 0);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

/* Out of memory when a stream client arrives: that client is refused
 * (counted) and the listener keeps serving the next one. */
Test(listeners, stream_conn_oom_refused_then_served)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.stream_socket_path = cmn_strdup(stream_path);
    struct dsd *s = start(&cfg);
    int a = stream_connect();
    cmn_alloc_fail_after(1);
    struct dsd_stats st = stats(s);
    for (int i = 0; i < 200 && st.stream_conns_refused == 0; i++) {
        dl_run_rounds(&loop, 1);
        st = stats(s);
    }
    cmn_alloc_fail_reset();
    cr_expect_eq(st.stream_conns_refused, 1);
    cr_expect_eq(st.stream_conns, 0);
    dl_run_rounds(&loop, 5);
    char c;
    cr_expect_eq(recv(a, &c, 1, MSG_DONTWAIT), 0);
    close(a);
    int b = stream_connect();
    char buf[32];
    size_t n = 0;
    frame(buf, &n, "b:1|c", 5);
    write_all(b, buf, n);
    dl_run_until(&loop, &rec.total, 1);
    cr_assert_eq(rec.n, 1);
    cr_expect_str_eq(rec.rows[0], "c b 1 # @1 T0");
    close(b);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

static uint64_t rows_at_sync;
static void on_synced(void *data)
{
    rows_at_sync = ((struct rec *)data)->total;
}

/* dsd_sync: everything sent before the call is parsed when its callback
 * runs (the receive thread reads until EAGAIN, the loop parses the ring). */
Test(listeners, sync_parses_everything_sent_before)
{
    enum { N = 3000 };
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    struct dsd *s = start(&cfg);
    int u = udp_sender();
    char line[32];
    for (int i = 0; i < N; i++) {
        int len = snprintf(line, sizeof(line), "s%d:%d|c", i, i);
        udp_send(u, dsd_udp_port(s), line, (size_t)len);
    }
    rows_at_sync = 0;
    cr_assert_eq(dsd_sync(s, on_synced, &rec), 0);
    cr_assert_eq(dsd_sync(s, on_synced, &rec), UV_EBUSY, "one at a time");
    dl_run_until(&loop, &rows_at_sync, N);
    cr_assert_eq(rows_at_sync, N);
    cr_assert_str_eq(rec.rows[N - 1], "c s2999 2999 # @1 T0");
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.packets, N);
    cr_expect_eq(st.kernel_drops_udp, 0);
    cr_expect_gt(st.rcvbuf_udp, 0);
    stop_and_close(s);
    close(u);
    dsd_config_free(&cfg);
}

/* With nothing to wait for (no datagram listener), the callback runs at
 * once. */
Test(listeners, sync_without_datagram_listener_is_immediate)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.stream_socket_path = cmn_strdup(stream_path);
    struct dsd *s = start(&cfg);
    rows_at_sync = 7;
    cr_assert_eq(dsd_sync(s, on_synced, &rec), 0);
    cr_assert_eq(rows_at_sync, 0);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

/* A ring smaller than the burst: the receive thread waits for the loop
 * (counted as ring-full time) instead of reading on, and nothing is lost
 * once the loop runs. The default 8 MiB socket buffer holds the rest. */
Test(listeners, full_ring_waits_for_the_loop)
{
    enum { N = 20000 };
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.ring_size = DSD_RING_SIZE_MIN;
    struct dsd *s = start(&cfg);
    int u = udp_sender();
    char line[64];
    for (int i = 0; i < N; i++) {
        int len = snprintf(line, sizeof(line), "full.ring.%d:%d|c", i % 10, i);
        udp_send(u, dsd_udp_port(s), line, (size_t)len);
    }
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_expect_eq(st.packets, 0, "the loop has not run yet");
    rows_at_sync = 0;
    cr_assert_eq(dsd_sync(s, on_synced, &rec), 0);
    dl_run_until(&loop, &rows_at_sync, N);
    cr_assert_eq(rows_at_sync, N);
    dsd_get_stats(s, &st);
    cr_expect_eq(st.packets, N);
    cr_expect_geq(st.ring_full, 1);
    cr_expect_eq(st.kernel_drops_udp, 0);
    cr_expect_eq(st.ring_bytes, 0);
    stop_and_close(s);
    close(u);
    dsd_config_free(&cfg);
}

/* dsd_bind alone: what clients send is queued by the kernel and parsed
 * once dsd_start runs the receive thread. */
Test(listeners, bind_first_start_later_loses_nothing)
{
    enum { N = 500 };
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    struct dsd *s = bound(&cfg);
    cr_assert_eq(dsd_bind(s), UV_EALREADY);
    send_counts(s, "early", N);
    cr_assert_eq(dsd_start(s), 0);
    rows_at_sync = 0;
    cr_assert_eq(dsd_sync(s, on_synced, &rec), 0);
    dl_run_until(&loop, &rows_at_sync, N);
    cr_assert_eq(rows_at_sync, N);
    cr_assert_str_eq(rec.rows[0], "c early0 1 # @1 T0");
    stop_and_close(s);
    dsd_config_free(&cfg);
}

static uint64_t syncs;
static void on_synced_count(void *data)
{
    rows_at_sync = ((struct rec *)data)->total;
    syncs++;
}

/* Datagrams that overflow the socket before its receive thread runs are
 * counted as the kernel's drops, and all of them as drops before the
 * thread ran: the exit report tells a late start (or wake-up) from a
 * thread that read too slowly. */
Test(listeners, drops_before_the_thread_ran_are_counted_as_such)
{
    enum { N = 400 };
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.so_rcvbuf = 8192; /* a few datagrams */
    struct dsd *s = bound(&cfg);
    send_counts(s, "late", N);
    cr_assert_eq(dsd_start(s), 0);
    syncs = 0;
    cr_assert_eq(dsd_sync(s, on_synced_count, &rec), 0);
    dl_run_until(&loop, &syncs, 1);
    cr_assert_eq(syncs, 1);
    struct dsd_stats st;
    dsd_get_stats(s, &st);
    cr_assert_lt(rows_at_sync, N, "the socket held them all");
    cr_assert_gt(rows_at_sync, 0);
    cr_expect_eq(st.kernel_drops_udp, N - rows_at_sync);
    cr_expect_eq(st.rx_asleep_drops_udp, N - rows_at_sync);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

/* Pins this process to the CPU it runs on: the threads it starts from
 * now on (the receive thread among them) inherit that one CPU, as in a
 * 1-vCPU container. */
static void pin_to_one_cpu(void)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(sched_getcpu(), &one);
    cr_assert_eq(sched_setaffinity(0, sizeof(one), &one), 0);
}

/* One usable CPU (a 1-vCPU container, a pinned process): the receive
 * thread never spins, and in a stream it naps between batches instead of
 * being woken for every datagram (dsd_dgram.c, DSD_NAP_FILL). A
 * back-to-back burst of one-line datagrams from this thread, on the same
 * CPU, at the default configuration: all of them arrive, the kernel drops
 * none, and the thread took naps. */
Test(listeners, one_cpu_stream_read_in_naps_loses_nothing)
{
    enum { N = 20000 };
    pin_to_one_cpu();
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    struct dsd *s = start(&cfg);
    send_counts(s, "nap", N);
    rows_at_sync = 0;
    cr_assert_eq(dsd_sync(s, on_synced, &rec), 0);
    dl_run_until(&loop, &rows_at_sync, N);
    cr_assert_eq(rows_at_sync, N);
    cr_assert_str_eq(rec.rows[0], "c nap0 1 # @1 T0");
    cr_assert_str_eq(rec.rows[REC_MAX - 1], "c nap4095 1 # @1 T0");
    struct dsd_stats st = stats(s);
    cr_expect_eq(st.packets, N);
    cr_expect_eq(st.kernel_drops_udp, 0);
    cr_expect_eq(st.rx_spin_ns, 0, "one CPU: never spins");
    cr_expect_gt(st.rx_naps, 0);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

/* A sender on the reader's one CPU, as fast as that CPU lets it: 80-line
 * datagrams built ahead and sent 64 at a time with sendmmsg
 * (bench_loadgen's way), 200 000 of them into a 212992-byte socket
 * buffer. It fills the buffer only while the loop does not run, so a nap
 * learnt from the last fill alone could see a fraction of the rate the
 * next one got: naps grew to 0.5 ms while the buffer filled in 0.2, and 4
 * to 52 datagrams were lost in most runs. The nap now aims at the fastest
 * fill lately, and is halved whenever it found the buffer half full
 * (dsd_dgram.c, DSD_NAP_DECAY). */
enum { FLOOD_DGRAMS = 200000, FLOOD_LINES = 80, FLOOD_BATCH = 64 };

/* Under AddressSanitizer the loop parses several times slower than this
 * sender sends (the sender's cost is the kernel's): the ring fills and
 * the socket overflows, which is the sanitizer's cost and not what the
 * test is about (3 of 3 runs lost 55 000-64 000 datagrams, the ring full
 * 160-201 times). */
#if defined(__SANITIZE_ADDRESS__)
#define FLOOD_LOOP_INSTRUMENTED true
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define FLOOD_LOOP_INSTRUMENTED true
#endif
#endif
#ifndef FLOOD_LOOP_INSTRUMENTED
#define FLOOD_LOOP_INSTRUMENTED false
#endif

struct flood {
    int port;
    _Atomic int done;
    int sent, err;       /* sender: datagrams sent, errno of a failed send */
    uint64_t lines_seen; /* loop thread: metric lines the sink got */
};

static int count_metric(void *data, const struct agg_metric *m)
{
    (void)m;
    ((struct flood *)data)->lines_seen++;
    return 0;
}

static void *flood_send(void *arg)
{
    struct flood *f = arg;
    static char dg[FLOOD_BATCH][FLOOD_LINES * 24];
    struct iovec iov[FLOOD_BATCH];
    struct mmsghdr mm[FLOOD_BATCH];
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)f->port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    memset(mm, 0, sizeof(mm));
    for (int i = 0; i < FLOOD_BATCH; i++) {
        size_t n = 0;
        for (int l = 0; l < FLOOD_LINES; l++)
            n += (size_t)snprintf(dg[i] + n, sizeof(dg[i]) - n,
                                  "flood.%02d.%02d:1|c\n", i, l);
        iov[i] = (struct iovec){dg[i], n};
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
        mm[i].msg_hdr.msg_name = &a;
        mm[i].msg_hdr.msg_namelen = sizeof(a);
    }
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int sent = 0;
    while (fd >= 0 && sent < FLOOD_DGRAMS) {
        int want = FLOOD_DGRAMS - sent < FLOOD_BATCH ? FLOOD_DGRAMS - sent
                                                     : FLOOD_BATCH;
        int k = sendmmsg(fd, mm, (unsigned)want, 0);
        if (k <= 0) {
            f->err = errno;
            break;
        }
        sent += k;
    }
    f->sent = sent;
    if (fd >= 0)
        close(fd);
    atomic_store(&f->done, 1);
    return NULL;
}

static uint64_t flood_synced;
static void on_flood_synced(void *data)
{
    (void)data;
    flood_synced = 1;
}

/* A sync round trip: answered by the receive thread once everything sent
 * before it is parsed. */
static void flood_sync(struct dsd *s)
{
    flood_synced = 0;
    cr_assert_eq(dsd_sync(s, on_flood_synced, NULL), 0);
    dl_run_until(&loop, &flood_synced, 1);
    cr_assert_eq(flood_synced, 1);
}

/* One flood (see FLOOD_DGRAMS) into a fresh server; returns its stats and
 * the metric lines the sink got. */
static struct dsd_stats flood_once(uint64_t *lines, int run)
{
    if (run > 0)
        loop_reset(); /* stop_and_close closed the last run's loop */
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.so_rcvbuf = 212992;
    static struct flood f;
    memset(&f, 0, sizeof(f));
    struct dsd_sink sink = {count_metric, NULL, NULL, &f};
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(&loop, &cfg, &sink, &s), 0);
    cr_assert_eq(dsd_start(s), 0);
    f.port = dsd_udp_port(s);
    /* The receive thread runs (its priority set, its scratch mapped)
     * before the flood starts: a sync is answered by that thread. Without
     * it, on one CPU the sender could fill the 212992-byte buffer before
     * the new thread was first scheduled: a fresh-clone CI run lost 816
     * datagrams "before the thread ran or while it was woken" with no
     * pause longer than 0.52 ms. That start is what the end-to-end burst
     * tests measure; this test is about the reader in a steady flood. */
    flood_sync(s);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, flood_send, &f), 0);
    uv_timer_t t;
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, dl_tick, 5, 5);
    for (int i = 0; i < 20000 && !atomic_load(&f.done); i++)
        uv_run(&loop, UV_RUN_ONCE);
    cr_assert(atomic_load(&f.done), "the sender did not finish");
    pthread_join(th, NULL);
    uv_close((uv_handle_t *)&t, NULL);
    flood_sync(s);
    cr_assert_eq(f.sent, FLOOD_DGRAMS, "sendmmsg: %s", strerror(f.err));
    struct dsd_stats st = stats(s);
    *lines = f.lines_seen;
    stop_and_close(s);
    dsd_config_free(&cfg);
    return st;
}

/* The reader's naps lose nothing. The sender and the loop share the CPU
 * as ordinary threads, and the ring can fill: on the host of 2026-12-03,
 * in 4-14 of 30-40 runs (up to half in its worst phase), with the code of
 * the day before and after alike, for 0.6-10 ms (bench/README.md). In our
 * reading that is the ring's early wrap (dsd_ring.c early_room): after
 * it, the room is the tail's offset (about 0.7 MB here, 2-3 ms of this
 * flood) until the loop reads the PAD, and the loop, an ordinary thread
 * on the sender's CPU, does not always get there in time. Under Bazel,
 * beside other tests, the loop fell behind for good: the ring full 26-60
 * times in each of 5 runs (CI of d2ed888). Either way it is the loop's
 * pace, not the nap: a run that lost with the ring full is run again, up
 * to five runs; when all five did, the test is skipped, saying so. A loss
 * with the ring never full fails at once. */
Test(listeners, one_cpu_flood_from_sendmmsg_loses_nothing)
{
    if (FLOOD_LOOP_INSTRUMENTED)
        cr_skip_test("the loop under AddressSanitizer cannot keep up");
    pin_to_one_cpu();
    for (int run = 0;; run++) {
        uint64_t lines = 0;
        struct dsd_stats st = flood_once(&lines, run);
        bool lost = st.kernel_drops_udp != 0 || st.packets != FLOOD_DGRAMS;
        cr_assert(!lost || st.ring_full > 0,
                  "%llu datagrams dropped with the ring never full (%llu "
                  "before the thread ran or while it was woken, longest "
                  "pause %.3f ms, %llu naps)",
                  (unsigned long long)st.kernel_drops_udp,
                  (unsigned long long)st.rx_asleep_drops_udp,
                  (double)st.rx_max_gap_ns_udp / 1e6,
                  (unsigned long long)st.rx_naps);
        if (lost) {
            fprintf(stderr,
                    "run %d: %llu datagrams dropped, the ring full %llu "
                    "times for %.3f ms\n",
                    run, (unsigned long long)st.kernel_drops_udp,
                    (unsigned long long)st.ring_full, st.ring_full_ns / 1e6);
            if (run < 4)
                continue;
            cr_skip_test("the loop could not keep up with the sender on "
                         "this shared CPU in 5 runs (the ring full each "
                         "time): nothing shown about the nap");
        }
        cr_expect_eq(lines, (uint64_t)FLOOD_DGRAMS * FLOOD_LINES,
                     "%llu lines, %llu packets, %llu truncated",
                     (unsigned long long)lines, (unsigned long long)st.packets,
                     (unsigned long long)st.packets_truncated);
        cr_expect_eq(st.packets, FLOOD_DGRAMS);
        break;
    }
}

/* A thread that rewrites the address space at length, announced as a
 * dlopen of libcurl is (common.h, cmn_mm_rewrite_begin): each mprotect of
 * its 64 MiB of mapped pages holds the address-space lock for ~0.9 ms on
 * the test VM, back to back. */
struct rewriter {
    char *region;
    size_t len;
    _Atomic int started, stop;
    uint64_t calls;
    int err; /* errno of a failed mprotect */
};

static void *rewrite_main(void *arg)
{
    struct rewriter *w = arg;
    cmn_mm_rewrite_begin();
    atomic_store(&w->started, 1);
    while (!atomic_load(&w->stop) && w->err == 0) {
        if (mprotect(w->region, w->len, PROT_READ) != 0 ||
            mprotect(w->region, w->len, PROT_READ | PROT_WRITE) != 0)
            w->err = errno;
        w->calls += 2;
    }
    cmn_mm_rewrite_end();
    return NULL;
}

/* While such a rewrite runs, a back-to-back burst of one-line datagrams
 * into a 212992-byte socket buffer (about 0.5 ms of this sender) loses
 * nothing: the receive thread faults its ring's pages in by touching them
 * instead of waiting for the lock in madvise (MADV_POPULATE_WRITE) once
 * every 64 KiB. Waiting there, a one-CPU burst lost 490-1 651 datagrams
 * in 4 of 100 runs beside two busy processes, its receive thread 7-11.5
 * ms in rwsem_down_read_slowpath under madvise while the thread pool's
 * dlopen, preempted, held the lock. */
Test(listeners, announced_rewrite_never_holds_up_the_receive_thread)
{
    enum { N = 30000 };
    static struct rewriter w;
    memset(&w, 0, sizeof(w));
    w.len = (size_t)64 << 20;
    w.region = mmap(NULL, w.len, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
    cr_assert_neq(w.region, MAP_FAILED);
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.so_rcvbuf = 212992;
    struct dsd *s = start(&cfg);
    flood_sync(s); /* the receive thread runs */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, rewrite_main, &w), 0);
    while (!atomic_load(&w.started))
        sched_yield();
    send_counts(s, "rw", N);
    atomic_store(&w.stop, 1);
    pthread_join(th, NULL);
    cr_assert_eq(w.err, 0, "mprotect: %s", strerror(w.err));
    cr_assert_geq(w.calls, 2, "the rewrite ran during the burst");
    rows_at_sync = 0;
    cr_assert_eq(dsd_sync(s, on_synced, &rec), 0);
    dl_run_until(&loop, &rows_at_sync, N);
    struct dsd_stats st = stats(s);
    cr_assert_eq(st.kernel_drops_udp, 0,
                 "%llu dropped (longest pause %.3f ms, %llu mprotect calls)",
                 (unsigned long long)st.kernel_drops_udp,
                 (double)st.rx_max_gap_ns_udp / 1e6,
                 (unsigned long long)w.calls);
    cr_assert_eq(rows_at_sync, N);
    cr_assert_str_eq(rec.rows[0], "c rw0 1 # @1 T0");
    stop_and_close(s);
    dsd_config_free(&cfg);
    munmap(w.region, w.len);
}

/* A Unix datagram sender blocks instead of losing, and the socket's queue
 * is not in SO_MEMINFO: that listener never naps. */
Test(listeners, uds_dgram_never_naps)
{
    enum { N = 5000 };
    pin_to_one_cpu();
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.socket_path = cmn_strdup(dgram_path);
    struct dsd *s = start(&cfg);
    int u = uds_sender();
    char line[32];
    for (int i = 0; i < N; i++) {
        int len = snprintf(line, sizeof(line), "u%d:1|c", i);
        uds_send(u, line, (size_t)len);
    }
    rows_at_sync = 0;
    cr_assert_eq(dsd_sync(s, on_synced, &rec), 0);
    dl_run_until(&loop, &rows_at_sync, N);
    cr_assert_eq(rows_at_sync, N);
    struct dsd_stats st = stats(s);
    cr_expect_eq(st.rx_naps, 0);
    stop_and_close(s);
    close(u);
    dsd_config_free(&cfg);
}

/* A server that was bound but never started is freed without leaks. */
Test(listeners, bound_never_started_destroys_cleanly)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    cfg.stream_socket_path = cmn_strdup(stream_path);
    struct dsd_sink sink = rec_sink(&rec);
    struct dsd *s = NULL;
    cr_assert_eq(dsd_create(&loop, &cfg, &sink, &s), 0);
    cr_assert_eq(dsd_bind(s), 0);
    struct stat st;
    cr_assert_eq(stat(stream_path, &st), 0);
    dsd_destroy(s);
    cr_assert_neq(stat(stream_path, &st), 0, "socket file removed");
    cr_expect_eq(uv_loop_close(&loop), 0);
    dsd_config_free(&cfg);
}

/* The stop drain is bounded by time: with no time at all, one chunk of the
 * ring is parsed and the rest is counted as left unread, never silently
 * dropped. */
Test(listeners, stop_drain_out_of_time_counts_what_is_left)
{
    enum { N = 20000 };
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = -1;
    struct dsd *s = start(&cfg);
    int u = udp_sender();
    char line[32];
    for (int i = 0; i < N; i++) {
        int len = snprintf(line, sizeof(line), "stopdrain.%05d:1|c", i);
        cr_assert_eq(len, 19);
        udp_send(u, dsd_udp_port(s), line, (size_t)len);
    }
    /* Every datagram is a 32-byte record (8-byte header, 19 bytes rounded
     * to 24): wait until the receive thread has moved them all. */
    struct dsd_stats st;
    for (int i = 0; i < 2000; i++) {
        dsd_get_stats(s, &st);
        if (st.ring_bytes >= (uint64_t)N * 32)
            break;
        usleep(1000);
    }
    cr_assert_eq(st.ring_bytes, (uint64_t)N * 32);
    dsd_stop(s, cmn_deadline_in_ms(0), on_stopped, &rec); /* passed */
    dsd_get_stats(s, &st);
    cr_assert_gt(st.stop_unread, 0);
    cr_assert_lt(rec.total, N);
    cr_assert_eq(rec.total + st.stop_unread, N, "%llu parsed + %llu left",
                 (unsigned long long)rec.total,
                 (unsigned long long)st.stop_unread);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(stopped, 1);
    dsd_destroy(s);
    cr_expect_eq(uv_loop_close(&loop), 0);
    close(u);
    dsd_config_free(&cfg);
}
