/*
 * test_e2e_start.c - the wrapper's start, end to end: the order of its
 * phases read from the debug checkpoints (listeners bound before the
 * spawn; no aggregator, sink or cloud detection before it), fail-open on a
 * listener that cannot bind (a port in use, a socket path that is a
 * regular file: the child runs, its code is ours, one error line, the
 * other listener still delivers), fail-closed, the sidecar retrying its
 * listener, and the switch that hides DD_API_KEY from the child.
 */
#include "e2e.h"

#include "drainpipe.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* A UDP socket bound to 127.0.0.1 on an ephemeral port: a port in use. */
static int hold_udp_port(int *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(fd, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    *port = ntohs(sa.sin_port);
    return fd;
}

/* Index of the first line of err containing needle, -1 if none. */
static int line_of(const char *err, const char *needle)
{
    const char *hit = strstr(err, needle);
    if (hit == NULL)
        return -1;
    int n = 0;
    for (const char *p = err; p < hit; p++)
        n += *p == '\n';
    return n;
}

/* The whole line of err that contains needle, in out ("" if none). */
static void the_line(const char *err, const char *needle, char *out, size_t cap)
{
    out[0] = '\0';
    const char *hit = strstr(err, needle);
    if (hit == NULL)
        return;
    const char *b = hit;
    while (b > err && b[-1] != '\n')
        b--;
    snprintf(out, cap, "%.*s", (int)strcspn(b, "\n"), b);
}

static int count_of(const char *err, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(err, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

Test(start, phases_in_order_with_the_local_sink, .timeout = 60)
{
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DD_LOG_LEVEL=debug");
    const char *args[] = {e.child, "udp", "start.x:1|c", "exit", "5", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 5);
    char err[65536];
    e2e_read(e.errpath, err, sizeof(err));
    /* The receive threads start after the spawn when the socket got a
     * buffer the kernel holds a start's traffic in (DP_BIND_RECEIVE_LATE:
     * 4 MiB, asked 8 MiB by default), before it otherwise (no
     * CAP_NET_ADMIN and a stock rmem_max). No head start without an API
     * key. */
    const char *eff = strstr(err, "udp: SO_RCVBUF asked ");
    cr_assert_not_null(eff, "stderr:\n%s", err);
    eff = strstr(eff, "effective ");
    cr_assert_not_null(eff);
    eff += strlen("effective ");
    int64_t bytes = 0;
    cr_assert_eq(cmn_parse_i64(cmn_slice(eff, strcspn(eff, " ")), &bytes), 0);
    bool late = bytes >= DP_RECEIVE_LATE_MIN_RCVBUF;
    const char *recv = "checkpoint start dogstatsd receive threads:";
    /* Every start and stop phase, in exactly this order. */
    const char *phases[] = {
        "checkpoint parse config:",
        "checkpoint bind dogstatsd:",
        late ? "checkpoint install signals:" : recv,
        late ? "checkpoint spawn child:" : "checkpoint install signals:",
        late ? "checkpoint detect cloud:" : "checkpoint spawn child:",
        late ? recv : "checkpoint detect cloud:",
        "checkpoint create local-sink:",
        "checkpoint create aggregator:",
        "checkpoint start local-sink:",
        "checkpoint start aggregator:",
        "checkpoint start dogstatsd:",
        "checkpoint exit child:",
        "checkpoint stop dogstatsd:",
        "checkpoint stop aggregator:",
        "checkpoint stop local-sink:",
        "checkpoint stop pipeline:",
        "checkpoint teardown loop:"};
    int prev = -1;
    for (size_t i = 0; i < sizeof(phases) / sizeof(phases[0]); i++) {
        cr_assert_eq(count_of(err, phases[i]), 1, "%s: stderr:\n%s", phases[i],
                     err);
        int l = line_of(err, phases[i]);
        cr_assert_gt(l, prev, "%s out of order: stderr:\n%s", phases[i], err);
        prev = l;
    }
    cr_assert_eq(count_of(err, "checkpoint head_start"), 0, "%s", err);
    /* the datagram sent before the aggregator existed still counts */
    cr_assert_not_null(strstr(err, "start.x"), "stderr:\n%s", err);
    e2e_fini(&e);
}

/* The listener is bound before the spawn but announced after it (at the
 * pipeline's start): at the default level nothing is formatted with
 * printf before the child runs (the Datadog site URLs are built without it
 * too), because a process's first printf costs ~0.1 ms of cold code on a
 * VM. The debug level used here to see the order prints before, of
 * course. */
Test(start, listener_announced_after_the_spawn, .timeout = 60)
{
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DD_LOG_LEVEL=debug");
    const char *args[] = {e.child, "exit", "0", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    char err[65536];
    e2e_read(e.errpath, err, sizeof(err));
    int bind = line_of(err, "checkpoint bind dogstatsd:");
    int spawn = line_of(err, "checkpoint spawn child:");
    int said = line_of(err, "(dogstatsd) listening on udp 127.0.0.1:");
    cr_assert_geq(bind, 0, "stderr:\n%s", err);
    cr_assert_gt(spawn, bind, "stderr:\n%s", err);
    cr_assert_gt(said, spawn, "stderr:\n%s", err);
    cr_assert_eq(count_of(err, "(dogstatsd) listening on udp"), 1);
    e2e_fini(&e);
}

/* Without an API key the wrapper maps no shared object but libc (and the
 * dynamic loader): the small libraries are static, libcurl is loaded only
 * for a forwarder, and nothing needs libm (aggregator/ddsketch.c,
 * common/cmn_fp.c). Read from the wrapper's /proc/PID/maps by its child.
 * Sanitizer runtimes bring their own libraries: not checked there. */
Test(start, maps_only_libc_without_an_api_key, .timeout = 60)
{
#if defined(__SANITIZE_ADDRESS__)
    cr_skip_test("the sanitizer runtime maps libraries of its own");
#endif
    struct e2e e;
    e2e_init(&e);
    char cmd[256], maps[128];
    snprintf(maps, sizeof(maps), "%s/maps", e.dir);
    snprintf(cmd, sizeof(cmd), "cat /proc/$PPID/maps > %s", maps);
    const char *args[] = {"/bin/sh", "-c", cmd, NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    static char text[1 << 16];
    e2e_read(maps, text, sizeof(text));
    cr_assert_not_null(strstr(text, "/libc.so.6"), "maps:\n%s", text);
    for (char *l = text; *l != '\0';) {
        char *nl = strchr(l, '\n');
        if (nl != NULL)
            *nl = '\0';
        const char *so = strstr(l, ".so");
        if (so != NULL) {
            const char *name = strrchr(l, '/');
            cr_expect(name != NULL && (strncmp(name, "/libc.so", 8) == 0 ||
                                       strncmp(name, "/ld-linux", 9) == 0),
                      "mapped: %s", l);
        }
        if (nl == NULL)
            break;
        l = nl + 1;
    }
    e2e_fini(&e);
}

Test(start, forwarder_and_cloud_after_spawn, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DD_LOG_LEVEL=debug");
    e2e_env(&e, "CLOUD_RUN_JOB=job1");            /* a cloud to detect */
    e2e_env(&e, "GCE_METADATA_HOST=127.0.0.1:9"); /* refused at once */
    const char *args[] = {e.child, "udp", "start.y:4|g", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    char err[65536];
    e2e_read(e.errpath, err, sizeof(err));
    int bind = line_of(err, "checkpoint bind dogstatsd:");
    int spawn = line_of(err, "checkpoint spawn child:");
    cr_assert_geq(bind, 0, "stderr:\n%s", err);
    cr_assert_gt(spawn, bind, "stderr:\n%s", err);
    /* with an API key, the child's head start comes next, then the rest
     * (the libcurl load among it) */
    int head = line_of(err, "checkpoint head_start child:");
    cr_assert_gt(head, spawn, "stderr:\n%s", err);
    cr_assert_gt(line_of(err, "checkpoint detect cloud:"), head);
    cr_assert_gt(line_of(err, "checkpoint create forwarder:"), head);
    cr_assert_gt(line_of(err, "checkpoint create aggregator:"), head);
    cr_assert_gt(line_of(err, "checkpoint start forwarder:"), head);
    cr_assert_gt(line_of(err, "checkpoint load libcurl:"), head);
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, "start.y", &sum, &last), 1);
    cr_assert_eq(last, 4);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(failopen, port_in_use_runs_the_child, .timeout = 60)
{
    int port;
    int fd = hold_udp_port(&port);
    struct e2e e;
    e2e_init(&e);
    e2e_env(&e, "DD_DOGSTATSD_PORT=%d", port);
    char marker[128];
    snprintf(marker, sizeof(marker), "%s/ran", e.dir);
    const char *args[] = {e.child, "env", "PATH", marker, "exit", "3", NULL};
    int code = e2e_run(&e, args, 20000);
    char err[16384], one[1024], want[128];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 3, "stderr:\n%s", err);
    cr_assert_eq(access(marker, F_OK), 0, "the child did not run");
    snprintf(want, sizeof(want), "DD_DOGSTATSD_PORT=%d: cannot listen", port);
    the_line(err, want, one, sizeof(one));
    cr_assert_not_null(strstr(one, "serverless-init: error: "), "%s", err);
    cr_assert_not_null(strstr(one, "address already in use"), "%s", one);
    cr_assert_not_null(strstr(one, "DogStatsD metrics are off for this run"),
                       "%s", one);
    cr_assert_eq(count_of(err, "ERROR"), 0, "one line only:\n%s", err);
    cr_assert_eq(count_of(err, "serverless-init: error: "), 1, "%s", err);
    /* fail-closed: exit 1, the child never runs */
    unlink(marker);
    e2e_env(&e, "DRAINPIPE_FAIL_CLOSED=true");
    cr_assert_eq(e2e_run(&e, args, 20000), 1);
    cr_assert_neq(access(marker, F_OK), 0, "the child ran");
    close(fd);
    e2e_fini(&e);
}

Test(failopen, socket_path_is_a_file_udp_still_works, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    char path[128];
    snprintf(path, sizeof(path), "%s/not-a-socket", e.dir);
    FILE *f = fopen(path, "w");
    cr_assert_not_null(f);
    fputs("x", f);
    fclose(f);
    e2e_env(&e, "DD_DOGSTATSD_SOCKET=%s", path);
    const char *args[] = {e.child, "udp", "fo.udp:2|c\nfo.gauge:9|g",
                          "exit",  "4",   NULL};
    int code = e2e_run(&e, args, 20000);
    char err[16384], one[1024];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(code, 4, "stderr:\n%s", err);
    the_line(err, "DD_DOGSTATSD_SOCKET=", one, sizeof(one));
    cr_assert_not_null(strstr(one, path), "stderr:\n%s", err);
    cr_assert_not_null(strstr(one, "the path exists and is not a socket"), "%s",
                       one);
    cr_assert_not_null(strstr(one, "metrics sent there are off for this run"),
                       "%s", one);
    cr_assert_eq(count_of(err, "serverless-init: error: "), 1, "%s", err);
    /* UDP still listened: exact values */
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, "fo.udp", &sum, NULL), 1);
    cr_assert_float_eq(sum, 0.2, 1e-12); /* 2 over 10 s, as a rate */
    cr_assert_eq(e2e_delivered_points(ti, "fo.gauge", &sum, &last), 1);
    cr_assert_eq(last, 9);
    /* the file is left as it was */
    char buf[8];
    e2e_read(path, buf, sizeof(buf));
    cr_assert_str_eq(buf, "x");
    /* fail-closed: exit 1, nothing sent */
    e2e_env(&e, "DRAINPIPE_FAIL_CLOSED=true");
    size_t before = ti_request_count(ti);
    cr_assert_eq(e2e_run(&e, args, 20000), 1);
    cr_assert_eq(ti_request_count(ti), before);
    unlink(path);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(failopen, sidecar_retries_until_the_port_is_free, .timeout = 60)
{
    int port;
    int fd = hold_udp_port(&port);
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DD_LOG_LEVEL=info");
    e2e_env(&e, "DD_DOGSTATSD_NON_LOCAL_TRAFFIC=false");
    e2e_env(&e, "DD_DOGSTATSD_PORT=%d", port);
    pid_t pid = e2e_start(&e, NULL);
    char err[16384];
    bool said = e2e_wait_stderr(&e, "retrying the DogStatsD listeners in 1000",
                                10000, err, sizeof(err));
    if (!said)
        kill(pid, SIGKILL);
    cr_assert(said, "stderr:\n%s", err);
    cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "the sidecar exited");
    close(fd); /* the port is free: the next retry binds */
    bool up = e2e_wait_stderr(&e, "DogStatsD listening on UDP port", 20000, err,
                              sizeof(err));
    if (!up)
        kill(pid, SIGKILL);
    cr_assert(up, "stderr:\n%s", err);
    cr_assert_not_null(strstr(err, "sidecar: DogStatsD listeners bound"));
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const char *m = "retry.g:11|g";
    cr_assert_eq(sendto(s, m, strlen(m), 0, (struct sockaddr *)&sa, sizeof(sa)),
                 (ssize_t)strlen(m));
    close(s);
    cr_assert_eq(kill(pid, SIGTERM), 0);
    cr_assert_eq(e2e_wait(pid, 20000), 0);
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, "retry.g", &sum, &last), 1);
    cr_assert_eq(last, 11);
    e2e_fini(&e);
    ti_stop(ti);
}

Test(apikey, child_inherits_it_unless_stripped, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    char out[128];
    snprintf(out, sizeof(out), "%s/key", e.dir);
    const char *args[] = {e.child, "env",       "DD_API_KEY", out,
                          "udp",   "key.g:1|g", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    char buf[64];
    e2e_read(out, buf, sizeof(buf));
    cr_assert_str_eq(buf, "test"); /* the default, as Datadog's */
    e2e_env(&e, "DRAINPIPE_STRIP_API_KEY=true");
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    e2e_read(out, buf, sizeof(buf));
    cr_assert_str_eq(buf, "(unset)");
    /* the wrapper kept its copy: both runs delivered, with the key */
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, "key.g", &sum, &last), 2);
    for (size_t i = 0; i < ti_request_count(ti); i++)
        cr_assert_str_eq(ti_request_header(ti_request_get(ti, i), "DD-Api-Key"),
                         "test");
    unlink(out);
    e2e_fini(&e);
    ti_stop(ti);
}

/* Runs the wrapper (e->bin) around a child that sends one gauge, with
 * the API key and a debug log; returns the "libcurl loaded: " line's path
 * in out ("" if none) and asserts the gauge arrived. */
static void loaded_libcurl(struct e2e *e, struct ti *ti, const char *metric,
                           char *out, size_t cap)
{
    e2e_env(e, "DD_LOG_LEVEL=debug");
    char line[64];
    snprintf(line, sizeof(line), "%s:5|g", metric);
    const char *args[] = {e->child, "udp", line, NULL};
    cr_assert_eq(e2e_run(e, args, 20000), 0);
    char err[65536], l[2048];
    e2e_read(e->errpath, err, sizeof(err));
    the_line(err, "libcurl loaded: ", l, sizeof(l));
    const char *p = strstr(l, "libcurl loaded: ");
    out[0] = '\0';
    if (p != NULL) {
        p += strlen("libcurl loaded: ");
        snprintf(out, cap, "%.*s", (int)strcspn(p, " "), p);
    }
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, metric, &sum, &last), 1, "%s", err);
    cr_assert_eq(last, 5);
}

/* The forwarder loads drainpipe's own libcurl from
 * <program's directory>/../lib/drainpipe when it is there (the CMake build
 * tree after scripts/build-libcurl.sh, an install prefix, the Lambda
 * layer), else the system's libcurl.so.4 (the Bazel tree has none). */
Test(libcurl, private_build_next_to_the_program_else_the_systems, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    char dir[PATH_MAX], want[PATH_MAX + 64], got[PATH_MAX + 64];
    cr_assert_not_null(realpath(getenv("DP_BIN_DIR"), dir));
    snprintf(want, sizeof(want), "%s/../lib/drainpipe/libcurl.so.4", dir);
    if (access(want, F_OK) != 0)
        snprintf(want, sizeof(want), "libcurl.so.4");
    loaded_libcurl(&e, ti, "curl.a", got, sizeof(got));
    cr_assert_str_eq(got, want);
    e2e_fini(&e);
    ti_stop(ti);
}

static void copy_file(const char *from, const char *to, mode_t mode)
{
    int in = open(from, O_RDONLY | O_CLOEXEC);
    int out = open(to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    cr_assert(in >= 0 && out >= 0, "%s -> %s", from, to);
    char buf[65536];
    ssize_t n;
    while ((n = read(in, buf, sizeof(buf))) > 0)
        cr_assert_eq(write(out, buf, (size_t)n), n);
    cr_assert_eq(n, 0);
    close(in);
    close(out);
}

/* A private libcurl that cannot be loaded (here: not an ELF file) is
 * skipped: the system's is loaded and the payload delivered. */
Test(libcurl, unusable_private_build_falls_back_to_the_systems, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    char bin[128], lib[256], so[512], prog[256];
    snprintf(bin, sizeof(bin), "%s/bin", e.dir);
    snprintf(lib, sizeof(lib), "%s/lib", e.dir);
    cr_assert_eq(mkdir(bin, 0700), 0);
    cr_assert_eq(mkdir(lib, 0700), 0);
    strncat(lib, "/drainpipe", sizeof(lib) - strlen(lib) - 1);
    cr_assert_eq(mkdir(lib, 0700), 0);
    snprintf(so, sizeof(so), "%s/libcurl.so.4", lib);
    FILE *f = fopen(so, "w");
    cr_assert_not_null(f);
    fputs("not a shared object\n", f);
    fclose(f);
    /* a copy, not a link: the program's directory is that of
     * /proc/self/exe, which resolves links */
    snprintf(prog, sizeof(prog), "%s/serverless-init", bin);
    copy_file(e.bin, prog, 0700);
    snprintf(e.bin, sizeof(e.bin), "%s", prog);
    char got[PATH_MAX];
    loaded_libcurl(&e, ti, "curl.b", got, sizeof(got));
    cr_assert_str_eq(got, "libcurl.so.4");
    unlink(prog);
    unlink(so);
    rmdir(lib);
    snprintf(lib, sizeof(lib), "%s/lib", e.dir);
    rmdir(lib);
    rmdir(bin);
    e2e_fini(&e);
    ti_stop(ti);
}

/* DRAINPIPE_LIBCURL is used alone: the system's libcurl by its soname
 * here, and a library that is not there is an error (logged, the child's
 * exit code kept), not a silent fall-back. */
Test(libcurl, explicit_choice_is_used_alone, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    e2e_env(&e, "DRAINPIPE_LIBCURL=libcurl.so.4");
    char got[PATH_MAX];
    loaded_libcurl(&e, ti, "curl.c", got, sizeof(got));
    cr_assert_str_eq(got, "libcurl.so.4");
    e2e_env(&e, "DRAINPIPE_LIBCURL=%s/no/libcurl.so.4", e.dir);
    e2e_env(&e, "DD_LOG_LEVEL=warn");
    const char *args[] = {e.child, "exit", "7", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 7);
    char err[65536];
    e2e_read(e.errpath, err, sizeof(err));
    char want[256];
    snprintf(want, sizeof(want), "cannot use libcurl (%s/no/libcurl.so.4",
             e.dir);
    cr_assert_not_null(strstr(err, want), "%s", err);
    e2e_fini(&e);
    ti_stop(ti);
}

/* HTTPS end to end with the libcurl the wrapper loads (its own in the
 * CMake tree): the intake's certificate is verified against the CA of
 * $SSL_CERT_FILE, as the Agent reads it. Without it, the system's bundle
 * does not trust the test CA: nothing is delivered and the failure is
 * logged, so verification is on. */
Test(libcurl, https_verified_against_ssl_cert_file, .timeout = 60)
{
    struct e2e e;
    struct ti *ti = e2e_with_intake(&e);
    struct tt tls;
    cr_assert_eq(tt_start(ti_port(ti), &tls), 0);
    e2e_env(&e, "DD_DD_URL=%s", tls.url);
    e2e_env(&e, "SSL_CERT_FILE=%s", TI_CA_FILE);
    const char *args[] = {e.child, "udp", "tls.g:3|g", NULL};
    cr_assert_eq(e2e_run(&e, args, 20000), 0);
    double sum, last;
    cr_assert_eq(e2e_delivered_points(ti, "tls.g", &sum, &last), 1);
    cr_assert_eq(last, 3);
    e2e_env(&e, "SSL_CERT_FILE=");
    const char *args2[] = {e.child, "udp", "tls.h:4|g", NULL};
    cr_assert_eq(e2e_run(&e, args2, 20000), 0);
    char err[65536];
    e2e_read(e.errpath, err, sizeof(err));
    cr_assert_eq(e2e_delivered_points(ti, "tls.h", &sum, &last), 0, "%s", err);
    cr_assert_not_null(strstr(err, "SSL certificate problem"), "%s", err);
    tt_stop(&tls);
    e2e_fini(&e);
    ti_stop(ti);
}
