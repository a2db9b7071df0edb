/*
 * test_uds_safety.c - the Unix socket listeners against hostile
 * neighbours, on real sockets in a private temp directory: a live socket
 * another process serves is never unlinked (connect probe, clear error), a
 * symlink at the path is never followed (neither by the stale-file check
 * nor by the mode change), the mode is 0722 whatever the umask, a silent
 * stream client is closed by the idle timeout, and one past the byte
 * budget is closed after its complete frames.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dogstatsd.h"
#include "dogstatsd/dsd_loop.h"
#include "dogstatsd/dsd_rec.h"
#include "dsd_int.h"

static struct rec rec;
static uv_loop_t loop;
static char dir[64], path[100], target[100];
static int stopped;

static void setup(void)
{
    cr_assert_eq(uv_loop_init(&loop), 0);
    snprintf(dir, sizeof(dir), "/tmp/dsdsafe.XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/dsd.sock", dir);
    snprintf(target, sizeof(target), "%s/target", dir);
    memset(&rec, 0, sizeof(rec));
    stopped = 0;
}

static void teardown(void)
{
    unlink(path);
    unlink(target);
    rmdir(dir);
}

TestSuite(uds_safety, .init = setup, .fini = teardown);

static void on_stopped(void *data)
{
    (void)data;
    stopped++;
}

static void stop_and_close(struct dsd *s)
{
    dsd_stop(s, cmn_deadline_in_ms(2000), on_stopped, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    cr_expect_eq(stopped, 1);
    dsd_destroy(s);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

/* A socket bound at path by "another process" (this test), serving. */
static int live_socket(int type)
{
    int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un a;
    dl_unix_addr(&a, path);
    cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    if (type == SOCK_STREAM)
        cr_assert_eq(listen(fd, 4), 0);
    return fd;
}

static struct dsd_config dgram_cfg(void)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.socket_path = cmn_strdup(path);
    return cfg;
}

static struct dsd_config stream_cfg(void)
{
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cfg.port = 0;
    cfg.stream_socket_path = cmn_strdup(path);
    return cfg;
}

/* dsd_start's result with cfg (the server is destroyed when it failed). */
static int try_start(struct dsd_config *cfg, struct dsd **out)
{
    struct dsd_sink sink = rec_sink(&rec);
    cr_assert_eq(dsd_create(&loop, cfg, &sink, out), 0);
    int rc = dsd_start(*out);
    if (rc != 0) {
        dsd_destroy(*out);
        *out = NULL;
        cr_expect_eq(uv_loop_close(&loop), 0);
    }
    return rc;
}

static void expect_live_refused(int type, struct dsd_config cfg)
{
    int owner = live_socket(type);
    struct dsd *s;
    cr_expect_eq(try_start(&cfg, &s), UV_EADDRINUSE);
    /* the owner's socket is still there and still works */
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect(S_ISSOCK(st.st_mode));
    int c = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
    struct sockaddr_un a;
    dl_unix_addr(&a, path);
    cr_expect_eq(connect(c, (struct sockaddr *)&a, sizeof(a)), 0,
                 "the owner's socket was replaced: %s", strerror(errno));
    close(c);
    close(owner);
    dsd_config_free(&cfg);
}

Test(uds_safety, live_dgram_socket_is_not_unlinked)
{
    expect_live_refused(SOCK_DGRAM, dgram_cfg());
}

Test(uds_safety, live_stream_socket_is_not_unlinked)
{
    expect_live_refused(SOCK_STREAM, stream_cfg());
}

Test(uds_safety, dead_socket_is_replaced)
{
    close(live_socket(SOCK_DGRAM)); /* bound, then its owner went away */
    struct dsd_config cfg = dgram_cfg();
    struct dsd *s;
    cr_assert_eq(try_start(&cfg, &s), 0);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(uds_safety, symlink_at_the_path_is_not_followed)
{
    int f = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(f, 0);
    close(f);
    cr_assert_eq(symlink(target, path), 0);
    struct dsd_config cfg = dgram_cfg();
    struct dsd *s;
    cr_expect_eq(try_start(&cfg, &s), UV_EEXIST);
    struct stat st;
    cr_assert_eq(stat(target, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600, "target mode %o", st.st_mode);
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect(S_ISLNK(st.st_mode), "the symlink was removed");
    dsd_config_free(&cfg);
}

Test(uds_safety, chmod_never_follows_a_symlink)
{
    int f = open(target, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    cr_assert_geq(f, 0);
    close(f);
    cr_assert_eq(symlink(target, path), 0);
    cr_expect_neq(dsd__chmod_socket(path, 0722, "test"), 0);
    struct stat st;
    cr_assert_eq(stat(target, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600, "followed: mode %o",
                 st.st_mode & 07777);
    /* a regular file is not a socket: left alone too */
    unlink(path);
    cr_expect_neq(dsd__chmod_socket(target, 0722, "test"), 0);
    cr_assert_eq(stat(target, &st), 0);
    cr_expect_eq(st.st_mode & 07777, 0600);
    cr_expect_eq(uv_loop_close(&loop), 0);
}

Test(uds_safety, mode_is_0722_whatever_the_umask)
{
    mode_t old = umask(077);
    struct dsd_config cfg = stream_cfg();
    struct dsd *s;
    cr_assert_eq(try_start(&cfg, &s), 0);
    umask(old);
    struct stat st;
    cr_assert_eq(lstat(path, &st), 0);
    cr_expect(S_ISSOCK(st.st_mode));
    cr_expect_eq(st.st_mode & 07777, 0722, "mode %o", st.st_mode & 07777);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

static int stream_client(void)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_un a;
    dl_unix_addr(&a, path);
    cr_assert_eq(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    return fd;
}

static void send_frames(int fd, const char *const *pkts, size_t n)
{
    char buf[512];
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t l = (uint32_t)strlen(pkts[i]);
        unsigned char h[4] = {(unsigned char)l, (unsigned char)(l >> 8),
                              (unsigned char)(l >> 16),
                              (unsigned char)(l >> 24)};
        memcpy(buf + len, h, 4);
        memcpy(buf + len + 4, pkts[i], l);
        len += 4 + l;
    }
    cr_assert_eq(write(fd, buf, len), (ssize_t)len);
}

/* Reads until EOF (the server closed) or an error; true on EOF. */
static bool peer_closed(int fd)
{
    char b[64];
    for (;;) {
        ssize_t n = recv(fd, b, sizeof(b), MSG_DONTWAIT);
        if (n == 0)
            return true;
        if (n < 0)
            return errno == ECONNRESET;
    }
}

Test(uds_safety, idle_stream_client_is_closed)
{
    struct dsd_config cfg = stream_cfg();
    cfg.stream_idle_timeout_ms = 40;
    struct dsd *s;
    cr_assert_eq(try_start(&cfg, &s), 0);
    int fd = stream_client();
    static const char *const pkts[] = {"a:1|c"};
    send_frames(fd, pkts, 1);
    /* a partial frame: the length only; then silence */
    cr_assert_eq(write(fd, "\x05\0\0\0", 4), 4);
    dl_run_until(&loop, &s->stats.stream_idle_closed, 1);
    cr_expect_eq(s->stats.stream_idle_closed, 1);
    cr_expect_eq(rec.total, 1, "the complete frame was processed");
    cr_expect_str_eq(rec.rows[0], "c a 1 # @1 T0");
    cr_expect(peer_closed(fd));
    close(fd);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(uds_safety, stream_client_over_the_byte_budget_is_closed)
{
    struct dsd_config cfg = stream_cfg();
    cfg.stream_conn_bytes_max = 20;
    struct dsd *s;
    cr_assert_eq(try_start(&cfg, &s), 0);
    int fd = stream_client();
    /* 3 frames of 9 bytes: 27 bytes, past the budget of 20 */
    static const char *const pkts[] = {"a:1|c", "b:2|c", "c:3|c"};
    send_frames(fd, pkts, 3);
    dl_run_until(&loop, &s->stats.stream_over_budget, 1);
    cr_expect_eq(s->stats.stream_over_budget, 1);
    cr_expect_eq(rec.total, 3, "complete frames are processed first");
    cr_expect(peer_closed(fd));
    cr_expect_eq(s->stats.stream_idle_closed, 0);
    close(fd);
    stop_and_close(s);
    dsd_config_free(&cfg);
}

Test(uds_safety, stream_budget_and_idle_from_env)
{
    static const char *const kv[][2] = {
        {"DD_DOGSTATSD_STREAM_IDLE_TIMEOUT", "0.5"},
        {"DD_DOGSTATSD_STREAM_CONN_BYTES_MAX", "1048576"},
    };
    struct dsd_config cfg;
    dsd_config_defaults(&cfg);
    cr_expect_eq(cfg.stream_idle_timeout_ms, 300000);
    cr_expect_eq(cfg.stream_conn_bytes_max, 0);
    for (size_t i = 0; i < 2; i++)
        setenv(kv[i][0], kv[i][1], 1);
    cr_assert_eq(dsd_config_from_env(&cfg, NULL), 0);
    cr_expect_eq(cfg.stream_idle_timeout_ms, 500);
    cr_expect_eq(cfg.stream_conn_bytes_max, 1048576);
    setenv("DD_DOGSTATSD_STREAM_IDLE_TIMEOUT", "-1", 1);
    cr_expect_eq(dsd_config_from_env(&cfg, NULL), UV_EINVAL);
    dsd_config_free(&cfg);
    cr_expect_eq(uv_loop_close(&loop), 0);
}
