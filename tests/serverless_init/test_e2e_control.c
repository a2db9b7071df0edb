/*
 * test_e2e_control.c - DRAINPIPE_CONTROL_PORT on the real wrapper: POST
 * /flush delivers the open bucket while the child still runs, GET /stats
 * counts what was received, malformed requests get 400, and the port
 * answers on 127.0.0.1 only.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

#include "e2e.h"

/* A TCP port free on 127.0.0.1 now (the kernel's choice). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(sa);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* Connects to addr:port; the fd, or -errno. */
static int dial(const char *addr, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)port)};
    cr_assert_eq(inet_pton(AF_INET, addr, &sa.sin_addr), 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* Sends req and reads the whole answer (the server closes). Returns the
 * HTTP status; the body goes to body. */
static int http(int port, const char *req, char *body, size_t cap)
{
    int fd = dial("127.0.0.1", port);
    cr_assert_geq(fd, 0, "connect: %s", strerror(-fd));
    size_t len = strlen(req);
    cr_assert_eq(write(fd, req, len), (ssize_t)len);
    char buf[4096];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 &&
           (r = read(fd, buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fd);
    int status = 0;
    cr_assert_eq(strncmp(buf, "HTTP/1.1 ", 9), 0, "answer: %s", buf);
    for (const char *p = buf + 9; *p >= '0' && *p <= '9'; p++)
        status = status * 10 + (*p - '0');
    const char *b = strstr(buf, "\r\n\r\n");
    snprintf(body, cap, "%s", b != NULL ? b + 4 : "");
    return status;
}

/* Waits until the control port accepts connections. */
static void wait_listening(int port, pid_t pid)
{
    uint64_t end = e2e_now_ms() + 10000;
    int fd;
    while ((fd = dial("127.0.0.1", port)) < 0) {
        if (e2e_now_ms() > end) {
            kill(pid, SIGKILL);
            cr_assert_fail("the control port never listened");
        }
        e2e_sleep_ms(5);
    }
    close(fd);
}

struct ctl_run {
    struct e2e e;
    struct ti *ti;
    char ready[128];
    int port;
    pid_t pid;
};

/* The wrapper around a child that sends one counter line (3) and waits
 * for SIGTERM, with the control port on. */
static void ctl_start(struct ctl_run *r)
{
    r->ti = e2e_with_intake(&r->e);
    r->port = free_port();
    e2e_env(&r->e, "DRAINPIPE_CONTROL_PORT=%d", r->port);
    snprintf(r->ready, sizeof(r->ready), "%s/ready", r->e.dir);
    const char *args[] = {r->e.child,  "udp",    "ctl.count:3|c",
                          "term-wait", r->ready, "exit",
                          "0",         NULL};
    r->pid = e2e_start(&r->e, args);
    if (!e2e_wait_file(r->ready, 10000))
        kill(r->pid, SIGKILL);
    cr_assert(access(r->ready, F_OK) == 0, "child never became ready");
    wait_listening(r->port, r->pid);
}

/* Ends the child (the wrapper drains and exits 0); the intake stays for
 * the test's last checks (ctl_free). */
static void ctl_end(struct ctl_run *r)
{
    cr_assert_eq(kill(r->pid, SIGTERM), 0);
    cr_assert_eq(e2e_wait(r->pid, 20000), 0);
    unlink(r->ready);
}

static void ctl_free(struct ctl_run *r)
{
    e2e_fini(&r->e);
    ti_stop(r->ti);
}

Test(control, flush_delivers_the_open_bucket, .timeout = 60)
{
    struct ctl_run r;
    ctl_start(&r);
    char body[1024];
    double sum;
    /* nothing flushed yet: the bucket is open (10 s flush interval) */
    cr_assert_eq(e2e_delivered_points(r.ti, "ctl.count", &sum, NULL), 0);
    cr_assert_eq(http(r.port, "POST /flush HTTP/1.1\r\nHost: x\r\n\r\n", body,
                      sizeof(body)),
                 200);
    /* delivered when the answer came, the child still running */
    cr_assert_eq(e2e_delivered_points(r.ti, "ctl.count", &sum, NULL), 1);
    cr_assert_eq(sum, 0.3); /* RATE: 3 / 10 s */
    cr_assert_eq(http(r.port,
                      "POST /flush?timeout_ms=5000 HTTP/1.1\r\n"
                      "Content-Length: 0\r\n\r\n",
                      body, sizeof(body)),
                 200);
    cr_assert_eq(
        http(r.port, "GET /stats HTTP/1.1\r\n\r\n", body, sizeof(body)), 200);
    /* the child's line, and the wrapper's own cold-start metric, which
     * it submits in-process (counted in "submitted" too) */
    cr_assert(strstr(body, "\"metric_lines\":2,") != NULL, "%s", body);
    cr_assert(strstr(body, "\"submitted\":1,") != NULL, "%s", body);
    cr_assert(strstr(body, "\"local\":false") != NULL, "%s", body);
    ctl_end(&r);
    /* the stop's drain added nothing twice: the same sum, and at most a
     * zero-filled point when a 10 s bucket boundary fell between the
     * flush and the drain (a live counter is sent as 0, spec §2.4) */
    double last;
    size_t n = e2e_delivered_points(r.ti, "ctl.count", &sum, &last);
    cr_assert(n == 1 || (n == 2 && last == 0), "%zu points, last %g", n, last);
    cr_assert_eq(sum, 0.3);
    ctl_free(&r);
}

Test(control, bad_requests, .timeout = 60)
{
    struct ctl_run r;
    ctl_start(&r);
    char body[1024];
    cr_assert_eq(http(r.port, "GARBAGE\r\n\r\n", body, sizeof(body)), 400);
    cr_assert_eq(http(r.port, "POST /flush?timeout_ms=soon HTTP/1.1\r\n\r\n",
                      body, sizeof(body)),
                 400);
    cr_assert_eq(http(r.port, "POST /flush?timeout_ms=600001 HTTP/1.1\r\n\r\n",
                      body, sizeof(body)),
                 400);
    cr_assert_eq(
        http(r.port, "GET /flush HTTP/1.1\r\n\r\n", body, sizeof(body)), 405);
    cr_assert_eq(
        http(r.port, "POST /stats HTTP/1.1\r\n\r\n", body, sizeof(body)), 405);
    cr_assert_eq(
        http(r.port, "GET /nowhere HTTP/1.1\r\n\r\n", body, sizeof(body)), 404);
    ctl_end(&r);
    ctl_free(&r);
}

Test(control, loopback_only, .timeout = 60)
{
    struct ctl_run r;
    ctl_start(&r);
    /* 127.0.0.2 reaches this host too, but not a socket bound to
     * 127.0.0.1 (one bound to 0.0.0.0 would answer) */
    cr_assert_eq(dial("127.0.0.2", r.port), -ECONNREFUSED);
    int fd = dial("127.0.0.1", r.port);
    cr_assert_geq(fd, 0);
    close(fd);
    ctl_end(&r);
    ctl_free(&r);
}

Test(control, malformed_port_is_named, .timeout = 60)
{
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DRAINPIPE_CONTROL_PORT=http");
    const char *args[] = {e.child, "exit", "5", NULL};
    /* fail-open: the command runs and its code is ours */
    cr_assert_eq(e2e_run(&e, args, 10000), 5);
    char err[8192];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert(strstr(err, "DRAINPIPE_CONTROL_PORT") != NULL, "%s", err);
    e2e_fini(&e);
}
