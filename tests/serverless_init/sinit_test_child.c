/*
 * sinit_test_child.c - the child program the serverless-init end-to-end
 * tests wrap. It runs its arguments as a list of operations, in order:
 *
 *   udp LINE        one datagram to 127.0.0.1:$DD_DOGSTATSD_PORT ("\n" in
 *                   LINE, written as the two characters, becomes a newline)
 *   uds LINE        one datagram to the Unix socket $DD_DOGSTATSD_SOCKET
 *   udp-frames FILE / uds-frames FILE
 *                   every datagram in FILE (records of a 4-byte LE length,
 *                   then the bytes), in order
 *   exit N          exit with status N
 *   kill SIG        kill itself with signal SIG
 *   term-wait FILE  block SIGTERM, create FILE (readiness), wait for SIGTERM
 *   orphan FILE     start a grandchild (through a middle process that exits
 *                   at once, so the grandchild is orphaned) that exits after
 *                   100 ms; FILE receives the grandchild's pid
 *   sleep MS        sleep
 *   wait-file FILE  wait until FILE exists (a test's go-ahead; a minute
 *                   at most)
 *   env NAME FILE   write the value of NAME (or "(unset)") to FILE
 *   burst T N C L F send N datagrams of L lines each back-to-back on one
 *                   socket, T "udp" or "uds" (burst_line() below: mixed
 *                   types over C contexts, 3 tags each); F: a file that
 *                   receives the longest time in microseconds one send
 *                   waited for the socket to accept it ("-" for none).
 *                   Line numbers go on from the previous burst op
 *   burst-tag T     later bursts use the tag t3:T (default z) and number
 *                   their lines from 0 again
 *
 * Without an exit op it exits 0 at the end.
 */
#include <errno.h>
#include <poll.h>
#include <sched.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static long num(const char *s)
{
    long v = 0;
    int neg = 0;
    if (*s == '-') {
        neg = 1;
        s++;
    }
    for (; *s >= '0' && *s <= '9'; s++)
        v = v * 10 + (*s - '0');
    return neg ? -v : v;
}

static size_t unescape(const char *in, char *out, size_t cap)
{
    size_t n = 0;
    for (; *in && n + 1 < cap; in++) {
        if (in[0] == '\\' && in[1] == 'n') {
            out[n++] = '\n';
            in++;
        } else {
            out[n++] = *in;
        }
    }
    return n;
}

static void die(const char *what)
{
    fprintf(stderr, "sinit_test_child: %s: %s\n", what, strerror(errno));
    exit(99);
}

static void send_udp_raw(const char *buf, size_t n)
{
    const char *port = getenv("DD_DOGSTATSD_PORT");
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)num(port ? port : "8125"));
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (sendto(fd, buf, n, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("sendto");
    close(fd);
}

static void send_udp(const char *line)
{
    static char buf[65536];
    send_udp_raw(buf, unescape(line, buf, sizeof(buf)));
}

static void send_uds_raw(const char *buf, size_t n)
{
    const char *path = getenv("DD_DOGSTATSD_SOCKET");
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    if (path == NULL || strlen(path) >= sizeof(sa.sun_path)) {
        errno = EINVAL;
        die("DD_DOGSTATSD_SOCKET");
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (sendto(fd, buf, n, 0, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        die("sendto uds");
    close(fd);
}

static void send_uds(const char *line)
{
    static char buf[65536];
    send_uds_raw(buf, unescape(line, buf, sizeof(buf)));
}

/* Sends every datagram of FILE: records of a 4-byte little-endian length
 * and that many bytes (any bytes: invalid UTF-8, NULs, 64 KiB). */
static void send_frames(const char *file, void (*send)(const char *, size_t))
{
    FILE *f = fopen(file, "rb");
    if (f == NULL)
        die("fopen frames");
    static char buf[65536];
    unsigned char h[4];
    while (fread(h, 1, 4, f) == 4) {
        size_t n = (size_t)h[0] | (size_t)h[1] << 8 | (size_t)h[2] << 16 |
                   (size_t)h[3] << 24;
        if (n > sizeof(buf) || fread(buf, 1, n, f) != n) {
            errno = EINVAL;
            die("frames file");
        }
        send(buf, n);
    }
    fclose(f);
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

static void touch(const char *path, const char *content)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f == NULL)
        die("fopen");
    fputs(content, f);
    fclose(f);
    if (rename(tmp, path) != 0)
        die("rename");
}

#include "burst_line.h"

static uint64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Sends without blocking; when the socket is full, waits in poll and
 * records the wait (what a client blocked on a full socket would feel). */
static char burst_t3[32] = "z";
static long burst_next; /* the next burst's first line number */

static void burst(const char *kind, long n, long ctx, long lpd,
                  const char *file)
{
    struct sockaddr_storage ss;
    socklen_t alen;
    memset(&ss, 0, sizeof(ss));
    int uds = strcmp(kind, "uds") == 0;
    if (uds) {
        struct sockaddr_un *sa = (struct sockaddr_un *)&ss;
        const char *path = getenv("DD_DOGSTATSD_SOCKET");
        if (path == NULL || strlen(path) >= sizeof(sa->sun_path)) {
            errno = EINVAL;
            die("DD_DOGSTATSD_SOCKET");
        }
        sa->sun_family = AF_UNIX;
        memcpy(sa->sun_path, path, strlen(path) + 1);
        alen = sizeof(*sa);
    } else {
        struct sockaddr_in *sa = (struct sockaddr_in *)&ss;
        const char *port = getenv("DD_DOGSTATSD_PORT");
        sa->sin_family = AF_INET;
        sa->sin_port = htons((unsigned short)num(port ? port : "8125"));
        sa->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        alen = sizeof(*sa);
    }
    int fd = socket(uds ? AF_UNIX : AF_INET,
                    SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        die("socket");
    /* With BURST_SENDER_REALTIME set, the sender runs at SCHED_FIFO 1
     * where permitted, so the wait it records is the socket's, not the
     * time a busy machine takes to give it a core back. */
    if (getenv("BURST_SENDER_REALTIME") != NULL) {
        struct sched_param sp = {.sched_priority = 1};
        (void)sched_setscheduler(0, SCHED_FIFO, &sp);
    }
    static char buf[65536];
    uint64_t longest = 0;
    for (long i = 0; i < n; i++) {
        size_t len = 0;
        for (long j = 0; j < lpd; j++) {
            if (j > 0)
                buf[len++] = '\n';
            len += burst_line(buf + len, sizeof(buf) - len, burst_next++, ctx,
                              burst_t3);
        }
        for (;;) {
            if (sendto(fd, buf, len, 0, (struct sockaddr *)&ss, alen) >= 0)
                break;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS &&
                errno != EINTR)
                die("sendto burst");
            uint64_t t0 = mono_us();
            struct pollfd p = {fd, POLLOUT, 0};
            poll(&p, 1, 1000);
            uint64_t w = mono_us() - t0;
            if (w > longest)
                longest = w;
        }
    }
    close(fd);
    if (strcmp(file, "-") != 0) {
        char out[32];
        snprintf(out, sizeof(out), "%llu\n", (unsigned long long)longest);
        touch(file, out);
    }
}

/* Waits for file to exist (a test's go-ahead), for at most a minute. */
static void wait_file(const char *file)
{
    for (int i = 0; i < 60000 && access(file, F_OK) != 0; i++)
        sleep_ms(1);
}

static void term_wait(const char *file)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigprocmask(SIG_BLOCK, &set, NULL);
    touch(file, "ready\n");
    int sig;
    sigwait(&set, &sig);
}

static pid_t spawn_self(const char *self, char *const args[])
{
    pid_t pid;
    int err = posix_spawn(&pid, self, NULL, NULL, args, environ);
    if (err != 0) {
        errno = err;
        die("posix_spawn");
    }
    return pid;
}

int main(int argc, char **argv)
{
    const char *self = "/proc/self/exe";
    if (argc >= 3 && strcmp(argv[1], "__middle") == 0) {
        /* the middle process: start the grandchild, record it, exit */
        char *args[] = {argv[0], "__grand", NULL};
        pid_t g = spawn_self(self, args);
        char buf[32];
        snprintf(buf, sizeof(buf), "%d\n", (int)g);
        touch(argv[2], buf);
        return 0;
    }
    if (argc >= 2 && strcmp(argv[1], "__grand") == 0) {
        sleep_ms(100);
        return 0;
    }
    for (int i = 1; i < argc; i++) {
        const char *op = argv[i];
        const char *arg = i + 1 < argc ? argv[i + 1] : "";
        if (strcmp(op, "udp") == 0) {
            send_udp(arg);
            i++;
        } else if (strcmp(op, "uds") == 0) {
            send_uds(arg);
            i++;
        } else if (strcmp(op, "udp-frames") == 0) {
            send_frames(arg, send_udp_raw);
            i++;
        } else if (strcmp(op, "uds-frames") == 0) {
            send_frames(arg, send_uds_raw);
            i++;
        } else if (strcmp(op, "exit") == 0) {
            return (int)num(arg);
        } else if (strcmp(op, "kill") == 0) {
            kill(getpid(), (int)num(arg));
            sleep_ms(5000);
            return 98;
        } else if (strcmp(op, "term-wait") == 0) {
            term_wait(arg);
            i++;
        } else if (strcmp(op, "orphan") == 0) {
            char *args[] = {argv[0], "__middle", (char *)arg, NULL};
            pid_t m = spawn_self(self, args);
            int st;
            while (waitpid(m, &st, 0) < 0 && errno == EINTR)
                ;
            i++;
        } else if (strcmp(op, "burst") == 0 && i + 5 < argc) {
            burst(arg, num(argv[i + 2]), num(argv[i + 3]), num(argv[i + 4]),
                  argv[i + 5]);
            i += 5;
        } else if (strcmp(op, "burst-tag") == 0) {
            snprintf(burst_t3, sizeof(burst_t3), "%s", arg);
            burst_next = 0;
            i++;
        } else if (strcmp(op, "wait-file") == 0) {
            wait_file(arg);
            i++;
        } else if (strcmp(op, "sleep") == 0) {
            sleep_ms(num(arg));
            i++;
        } else if (strcmp(op, "env") == 0) {
            const char *v = getenv(arg);
            char buf[4096];
            snprintf(buf, sizeof(buf), "%s", v ? v : "(unset)");
            if (i + 2 < argc)
                touch(argv[i + 2], buf);
            i += 2;
        } else {
            fprintf(stderr, "sinit_test_child: unknown op %s\n", op);
            return 97;
        }
    }
    return 0;
}
