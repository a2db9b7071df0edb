/*
 * dsd_sock.c - the listeners' socket set-up, shared by the datagram
 * listeners (dsd_dgram.c) and the stream listener (dsd_stream.c): the UDP
 * bind address, the receive buffer and SO_RXQ_OVFL, and for Unix sockets
 * the path checks (length, a stale file removed, a live one refused), the
 * mode (0722: anyone may send, only the owner may read) set before bind
 * and again after it without following a symlink.
 *
 * Everything here runs in dsd_bind, before any handle or thread exists:
 * a failure leaves nothing to close but the fds it returned.
 */
#include "dsd_int.h"

#include <linux/filter.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* Whether a socket file has a live owner: connect to it as a stream, then
 * (EPROTOTYPE) as a datagram socket. ECONNREFUSED means nobody is bound
 * any more: stale, 0. A connection (or a full backlog) means live, 1. Any
 * other failure (EACCES: not ours to probe) cannot tell, -1, and is
 * treated as live: never unlink what might be another process's. */
static int probe_socket(const char *path)
{
    static const int types[] = {SOCK_STREAM, SOCK_DGRAM};
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1); /* length checked */
    for (size_t i = 0; i < 2; i++) {
        int fd = socket(AF_UNIX, types[i] | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -1;
        int rc = connect(fd, (struct sockaddr *)&sun, sizeof(sun));
        int err = rc == 0 ? 0 : errno;
        close(fd);
        if (rc == 0 || err == EAGAIN || err == EINPROGRESS)
            return 1;
        if (err == ECONNREFUSED)
            return 0;
        if (err != EPROTOTYPE)
            return -1;
    }
    return -1;
}

int dsd__chmod_socket(const char *path, unsigned mode, const char *var)
{
    /* O_PATH | O_NOFOLLOW pins the object at path without following a
     * symlink; the mode is then changed through /proc/self/fd, which
     * names exactly that object (as glibc's fchmodat with
     * AT_SYMLINK_NOFOLLOW does), after checking it is a socket. */
    int pfd = open(path, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) {
        int err = -errno;
        CMN_LOGW(DSD_COMP, "%s: chmod %o %s: %s", var, mode, path,
                 uv_strerror(err));
        return err;
    }
    struct stat st;
    int rc = 0;
    if (fstat(pfd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
        CMN_LOGW(DSD_COMP,
                 "%s: %s is no longer our socket (replaced?): mode left "
                 "alone",
                 var, path);
        rc = UV_EPERM;
    } else if ((st.st_mode & 07777) != mode) {
        char proc[64];
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d", pfd);
        if (chmod(proc, mode) != 0) {
            rc = -errno;
            CMN_LOGW(DSD_COMP, "%s: chmod %o %s: %s", var, mode, path,
                     uv_strerror(rc));
        }
    }
    close(pfd);
    return rc;
}

int dsd__prepare_unix_path(const char *path, const char *var)
{
    struct sockaddr_un sun;
    if (strlen(path) >= sizeof(sun.sun_path)) {
        CMN_LOGE(DSD_COMP, "%s: path \"%s\" is longer than %zu bytes", var,
                 path, sizeof(sun.sun_path) - 1);
        return UV_ENAMETOOLONG;
    }
    struct stat st;
    if (lstat(path, &st) != 0)
        return 0; /* nothing there (or unreadable: bind will say) */
    if (!S_ISSOCK(st.st_mode)) {
        CMN_LOGE(DSD_COMP,
                 "%s: cannot reuse \"%s\": it exists and is not a socket", var,
                 path);
        return UV_EEXIST;
    }
    int live = probe_socket(path);
    if (live != 0) {
        CMN_LOGE(DSD_COMP,
                 "%s: \"%s\" is a live socket (%s): another process "
                 "serves it; refusing to replace it",
                 var, path,
                 live > 0 ? "it accepts connections" : "it cannot be probed");
        return UV_EADDRINUSE;
    }
    if (unlink(path) != 0) {
        int err = -errno;
        CMN_LOGE(DSD_COMP, "%s: cannot remove stale socket \"%s\": %s", var,
                 path, uv_strerror(err));
        return err;
    }
    CMN_LOGD(DSD_COMP, "removed stale socket file %s", path);
    return 0;
}

/* Asks for the receive buffer and the drop counter; logs only when
 * what is not NULL. */
static void set_rcvbuf(struct dsd *s, int fd, const char *what, int *eff)
{
    int v = s->cfg.so_rcvbuf > 0 ? s->cfg.so_rcvbuf : DSD_RCVBUF_DEFAULT;
    /* SO_RCVBUFFORCE passes rmem_max where we may (CAP_NET_ADMIN);
     * elsewhere SO_RCVBUF gives at most rmem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) != 0 &&
        what != NULL)
        CMN_LOGW(DSD_COMP, "%s: SO_RCVBUF %d: %s", what, v,
                 uv_strerror(-errno));
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on)) != 0 &&
        what != NULL)
        CMN_LOGD(DSD_COMP, "%s: SO_RXQ_OVFL: %s", what, uv_strerror(-errno));
    socklen_t l = sizeof(*eff);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, eff, &l) != 0)
        *eff = 0;
    if (what != NULL)
        CMN_LOGD(DSD_COMP,
                 "%s: SO_RCVBUF asked %d, effective %d (the kernel "
                 "counts twice the asked bytes)",
                 what, v, *eff);
}

/* The UDP socket group. With one usable CPU (a pinned process, a
 * container given one CPU of several) the receive thread shares its CPU
 * with the loop, and on a virtual machine the host stops that CPU now and
 * then: on the 2-vCPU test VM for 1 ms or more in most 3 s windows,
 * napping or busy, while the other CPU ran on (bench_hiccup --nap-us,
 * docs/receive-path.md). A sender on another CPU fills the socket
 * meanwhile, and one socket holds no more than rmem_max allows (212992
 * bytes asked, 425984 accounted on a stock kernel: under 1 ms of 15 M
 * lines/s). So where the kernel gave less than DSD_GROUP_AIM, the port
 * gets several sockets in a SO_REUSEPORT group, and a classic BPF program
 * on the group sends each datagram to one of them at random: one sender
 * fills them all, each at its share of the rate. The receive thread reads
 * them in turn and puts the datagrams back in the order the kernel
 * received them, by the timestamp each carries (SO_TIMESTAMPNS;
 * dsd_dgram.c, group_fill), so a gauge's last value stays the last one
 * sent. With two or more usable CPUs the rescuer covers such stops
 * instead.
 *
 * DRAINPIPE_UDP_SOCKETS sets the number: 1 is one socket; 0, the default,
 * a group where the kernel gave less than DSD_GROUP_AIM, one CPU is
 * usable and the machine has more online. On a machine with one CPU
 * every sender stops with drainpipe's CPU, so a group would only cost:
 * its timestamps, spreading and merge took a job that shares the CPU
 * about 15 % more time for a burst of 200 000 one-line datagrams at
 * 212992 (bench/burst.sh under taskset -c 0, 2026-12-04 22:40: 905 ms
 * against 778). */
#define DSD_GROUP_AIM (8 << 20) /* kernel buffer, bytes as it counts them */

static unsigned group_size(struct dsd *s, int eff)
{
    if (s->cfg.udp_sockets > 0)
        return (unsigned)s->cfg.udp_sockets;
    if (eff >= DSD_GROUP_AIM)
        return 1;
    /* read once: the receive thread's set-up takes it from here */
    s->udp.usable_cpus = dsd__usable_cpus();
    if (s->udp.usable_cpus > 1 || sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return 1;
    unsigned n =
        eff > 0 ? (unsigned)((DSD_GROUP_AIM + eff - 1) / eff) : DSD_GROUP_MAX;
    return n < 2 ? 2 : n > DSD_GROUP_MAX ? DSD_GROUP_MAX : n;
}

/* Binds the group's other n - 1 sockets next to s->udp.fd (bound with
 * SO_REUSEPORT) and spreads the datagrams over all of them. Without the
 * spreading program the kernel would pick a socket by the sender's
 * address: one sender, one socket. Then the others are closed. */
static void open_group(struct dsd *s, const struct sockaddr_storage *ss,
                       socklen_t alen, unsigned n)
{
    struct dsd__dgram *d = &s->udp;
    int on = 1;
    for (unsigned i = 1; i < n; i++) {
        int fd =
            socket(ss->ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0)
            break;
        int eff;
        set_rcvbuf(s, fd, NULL, &eff);
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
            setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0 ||
            bind(fd, (const struct sockaddr *)ss, alen) != 0) {
            close(fd);
            break;
        }
        d->gfd[d->ngfd++] = fd;
    }
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, SKF_AD_OFF + SKF_AD_RANDOM),
        BPF_STMT(BPF_ALU | BPF_MOD | BPF_K, d->ngfd + 1),
        BPF_STMT(BPF_RET | BPF_A, 0),
    };
    struct sock_fprog prog = {3, code};
    if (d->ngfd > 0 && setsockopt(d->fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF,
                                  &prog, sizeof(prog)) != 0) {
        CMN_LOGD(DSD_COMP, "udp: no socket group: %s", uv_strerror(-errno));
        while (d->ngfd > 0)
            close(d->gfd[--d->ngfd]);
    }
    if (d->ngfd + 1 < n)
        CMN_LOGD(DSD_COMP, "udp: %u of %u sockets in the group", d->ngfd + 1,
                 n);
    if (d->ngfd > 0)
        CMN_LOGD(DSD_COMP,
                 "udp: %u sockets in a SO_REUSEPORT group, %d bytes of "
                 "buffer each (one usable CPU of several, or "
                 "DRAINPIPE_UDP_SOCKETS)",
                 d->ngfd + 1, s->rcvbuf_udp);
}

/* Resolves the UDP bind address: 0.0.0.0 with non_local_traffic, else
 * bind_host, which must be "localhost" (127.0.0.1) or a numeric address. */
static int udp_addr(struct dsd *s, struct sockaddr_storage *ss)
{
    const char *host = s->cfg.bind_host ? s->cfg.bind_host : "localhost";
    int port = s->cfg.port < 0 ? 0 : s->cfg.port;
    if (s->cfg.non_local_traffic)
        host = "0.0.0.0";
    else if (strcmp(host, "localhost") == 0)
        host = "127.0.0.1";
    memset(ss, 0, sizeof(*ss));
    if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0)
        return 0;
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0)
        return 0;
    CMN_LOGE(DSD_COMP,
             "bind_host \"%s\" is not localhost nor a numeric address", host);
    return UV_EINVAL;
}

int dsd__udp_open(struct dsd *s)
{
    struct sockaddr_storage ss;
    int rc = udp_addr(s, &ss);
    if (rc != 0)
        return rc;
    int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    set_rcvbuf(s, fd, "udp", &s->rcvbuf_udp);
    unsigned group = group_size(s, s->rcvbuf_udp);
    int on = 1;
    if (group > 1 &&
        (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof(on)) != 0 ||
         setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof(on)) != 0)) {
        CMN_LOGD(DSD_COMP, "udp: no socket group: %s", uv_strerror(-errno));
        group = 1;
    }
    socklen_t alen = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                             : sizeof(struct sockaddr_in6);
    if (bind(fd, (struct sockaddr *)&ss, alen) != 0) {
        rc = -errno;
        goto out_close;
    }
    alen = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &alen) != 0) {
        rc = -errno;
        goto out_close;
    }
    s->udp.fd = fd;
    memcpy(&s->udp_addr, &ss, sizeof(ss));
    if (group > 1)
        open_group(s, &ss, alen, group);
    return 0;
out_close:
    CMN_LOGE(DSD_COMP, "udp port %d: %s", s->cfg.port, uv_strerror(rc));
    close(fd);
    return rc;
}

/* Binds a Unix socket of type (SOCK_DGRAM or SOCK_STREAM) at path, for
 * the listener configured by var: the path is checked and a stale socket
 * file removed first; a datagram socket gets its receive buffer
 * (set_rcvbuf, into *rcvbuf_eff) before it can receive. *created is set
 * once the file exists (dsd_server.c unlinks it at stop). 0 with *out, or
 * a negative error, logged, with nothing left open. */
static int unix_bind(struct dsd *s, const char *path, int type, const char *var,
                     int *rcvbuf_eff, bool *created, int *out)
{
    int rc = dsd__prepare_unix_path(path, var);
    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (type == SOCK_DGRAM)
        set_rcvbuf(s, fd, "uds", rcvbuf_eff);
    struct sockaddr_un sun;
    memset(&sun, 0, sizeof(sun));
    sun.sun_family = AF_UNIX;
    memcpy(sun.sun_path, path, strlen(path) + 1); /* length checked */
    /* The file bind creates takes the socket inode's mode less the
     * umask: set it first, so the file is never more open than 0722, even
     * before the chmod below widens it past the umask. */
    if (fchmod(fd, DSD_SOCKET_MODE) != 0)
        CMN_LOGD(DSD_COMP, "fchmod socket: %s", uv_strerror(-errno));
    if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
        rc = -errno;
        CMN_LOGE(DSD_COMP, "%s %s: %s", var, path, uv_strerror(rc));
        close(fd);
        return rc;
    }
    *created = true;
    (void)dsd__chmod_socket(path, DSD_SOCKET_MODE, var);
    *out = fd;
    return 0;
}

int dsd__uds_open(struct dsd *s)
{
    const char *path = s->cfg.socket_path;
    int rc = unix_bind(s, path, SOCK_DGRAM, "dogstatsd_socket", &s->rcvbuf_uds,
                       &s->uds_created, &s->uds.fd);
    if (rc != 0)
        return rc;
    return 0;
}

int dsd__stream_open(struct dsd *s, int *out)
{
    const char *path = s->cfg.stream_socket_path;
    int fd;
    int rc = unix_bind(s, path, SOCK_STREAM, "dogstatsd_stream_socket", NULL,
                       &s->stream_created, &fd);
    if (rc != 0)
        return rc;
    if (listen(fd, SOMAXCONN) != 0) {
        rc = -errno;
        CMN_LOGE(DSD_COMP, "dogstatsd_stream_socket %s: %s", path,
                 uv_strerror(rc));
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}
