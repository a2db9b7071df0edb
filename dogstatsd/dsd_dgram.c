/*
 * dsd_dgram.c - the datagram listeners: UDP (dogstatsd_port) and Unix
 * datagram (dogstatsd_socket), spec/pipeline.md §1.1.
 *
 * Both are a non-blocking, close-on-exec socket watched by a uv_poll_t and
 * read with recvmmsg: up to DSD_MMSG_MAX datagrams per system call, at most
 * DSD_MMSG_CALLS calls per wakeup so one busy socket cannot starve the
 * loop. Each datagram lands in its own buffer_size slot; a datagram that
 * did not fit (MSG_TRUNC) is counted as truncated and dropped whole, never
 * parsed in part. On stop, the socket is read until EAGAIN before the
 * handle is closed, so nothing the kernel already accepted is lost.
 *
 * libuv does not own these fds: the close callback closes them.
 */
#include "dsd_int.h"

#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

static void set_rcvbuf(struct dsd *s, int fd, const char *what)
{
    if (s->cfg.so_rcvbuf <= 0)
        return;
    int v = s->cfg.so_rcvbuf;
    if (setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &v, sizeof(v)) != 0) {
        CMN_LOGW(DSD_COMP, "%s: SO_RCVBUF %d: %s", what, v,
                 uv_strerror(-errno));
        return;
    }
    int eff = 0;
    socklen_t l = sizeof(eff);
    if (getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &eff, &l) == 0)
        CMN_LOGD(DSD_COMP, "%s: SO_RCVBUF asked %d, effective %d", what, v,
                 eff);
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
    set_rcvbuf(s, fd, "udp");
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
    char name[64] = "";
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
        s->udp_port = ntohs(sin->sin_port);
        uv_ip4_name(sin, name, sizeof(name));
    } else {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
        s->udp_port = ntohs(sin6->sin6_port);
        uv_ip6_name(sin6, name, sizeof(name));
    }
    s->udp.fd = fd;
    CMN_LOGI(DSD_COMP, "listening on udp %s:%d", name, s->udp_port);
    return 0;
out_close:
    CMN_LOGE(DSD_COMP, "udp port %d: %s", s->cfg.port, uv_strerror(rc));
    close(fd);
    return rc;
}

int dsd__uds_open(struct dsd *s)
{
    const char *path = s->cfg.socket_path;
    int rc = dsd__prepare_unix_path(path, "dogstatsd_socket");
    if (rc != 0)
        return rc;
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    set_rcvbuf(s, fd, "uds");
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
        CMN_LOGE(DSD_COMP, "dogstatsd_socket %s: %s", path, uv_strerror(rc));
        close(fd);
        return rc;
    }
    s->uds_created = true;
    (void)dsd__chmod_socket(path, DSD_SOCKET_MODE, "dogstatsd_socket");
    s->uds.fd = fd;
    CMN_LOGI(DSD_COMP, "listening on unix datagram socket %s", path);
    return 0;
}

/* Reads batches until EAGAIN or max_calls recvmmsg calls; with drain off,
 * also stops at the first short batch (the queue was empty). Returns the
 * datagrams read. */
static size_t dgram_read(struct dsd__dgram *d, size_t max_calls, bool drain)
{
    struct dsd *s = d->s;
    size_t total = 0;
    for (size_t call = 0; call < max_calls; call++) {
        int n =
            recvmmsg(d->fd, s->msgs, (unsigned)s->mmsg_n, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                s->stats.read_errors++;
                cmn_log_rl(&s->rl_io, CMN_LOG_ERROR, DSD_COMP, "%s read: %s",
                           d->kind, uv_strerror(-errno));
            }
            break;
        }
        for (int i = 0; i < n; i++) {
            struct mmsghdr *m = &s->msgs[i];
            s->stats.packets++;
            s->stats.bytes += m->msg_len;
            if (m->msg_hdr.msg_flags & MSG_TRUNC) {
                s->stats.packets_truncated++;
                cmn_log_rl(&s->rl_io, CMN_LOG_WARN, DSD_COMP,
                           "%s: dropping a datagram larger than "
                           "dogstatsd_buffer_size (%zu bytes)",
                           d->kind, s->cfg.buffer_size);
                continue;
            }
            dsd_process_packet(s, s->msgs[i].msg_hdr.msg_iov->iov_base,
                               m->msg_len, d->eol_required);
        }
        total += (size_t)n;
        if (!drain && (size_t)n < s->mmsg_n)
            break;
    }
    return total;
}

static void on_readable(uv_poll_t *h, int status, int events)
{
    struct dsd__dgram *d = h->data;
    if (status < 0) {
        /* The socket itself is broken (libuv would report it again on
         * every iteration): stop watching it rather than spin. */
        d->s->stats.read_errors++;
        CMN_LOGE(DSD_COMP, "%s listener failed, no longer reading: %s", d->kind,
                 uv_strerror(status));
        uv_poll_stop(h);
        return;
    }
    dgram_read(d, DSD_MMSG_CALLS, false);
}

int dsd__dgram_start(struct dsd__dgram *d)
{
    int rc = uv_poll_init_socket(d->s->loop, &d->poll, d->fd);
    if (rc != 0)
        return rc;
    d->poll.data = d;
    d->live = true;
    d->s->nlive++;
    return uv_poll_start(&d->poll, UV_READABLE, on_readable);
}

void dsd__dgram_close_fd(struct dsd__dgram *d)
{
    if (d->fd >= 0 && !d->live) {
        close(d->fd);
        d->fd = -1;
    }
}

static void dgram_closed(uv_handle_t *h)
{
    struct dsd__dgram *d = h->data;
    d->live = false;
    dsd__dgram_close_fd(d);
    dsd__handle_closed(d->s);
}

void dsd__dgram_stop(struct dsd__dgram *d)
{
    if (!d->live)
        return;
    uv_poll_stop(&d->poll);
    size_t n = dgram_read(d, DSD_DRAIN_MAX / d->s->mmsg_n, true);
    CMN_LOGD(DSD_COMP, "%s: drained %zu datagrams on stop", d->kind, n);
    uv_close((uv_handle_t *)&d->poll, dgram_closed);
}
