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

static void set_rcvbuf(struct dsd *s, int fd, const char *what, int *eff)
{
    int v = s->cfg.so_rcvbuf > 0 ? s->cfg.so_rcvbuf : DSD_RCVBUF_DEFAULT;
    /* SO_RCVBUFFORCE passes rmem_max where we may (CAP_NET_ADMIN);
     * elsewhere SO_RCVBUF gives at most rmem_max. */
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &v, sizeof(v)) != 0 &&
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) != 0)
        CMN_LOGW(DSD_COMP, "%s: SO_RCVBUF %d: %s", what, v,
                 uv_strerror(-errno));
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_RXQ_OVFL, &on, sizeof(on)) != 0)
        CMN_LOGD(DSD_COMP, "%s: SO_RXQ_OVFL: %s", what, uv_strerror(-errno));
    socklen_t l = sizeof(*eff);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, eff, &l) != 0)
        *eff = 0;
    CMN_LOGD(DSD_COMP,
             "%s: SO_RCVBUF asked %d, effective %d (the kernel "
             "counts twice the asked bytes)",
             what, v, *eff);
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
