/*
 * dsd_stream.c - the Unix stream listener (dogstatsd_stream_socket),
 * spec/pipeline.md §1.1.
 *
 * Each client sends frames: a 4-byte little-endian length, then that many
 * bytes, one packet per frame. A frame longer than dogstatsd_buffer_size
 * closes the connection (counted); EOF inside a frame closes it too
 * (counted). Invariant: a client's buffer holds at most one incomplete frame
 * between reads, so its capacity of at least 4 + buffer_size always leaves
 * room to make progress. At most max_stream_conns clients are served; the
 * others are accepted into a spare handle and closed at once (counted).
 *
 * Hostile clients: a connection silent for dogstatsd_stream_idle_timeout
 * is closed by a sweep timer (period a quarter of the timeout, so it is
 * closed between 1 and 1.25 timeouts after its last byte), and one that
 * has sent more than dogstatsd_stream_conn_bytes_max bytes is closed once
 * its complete frames are processed. Both are counted and logged.
 */
#include "dsd_int.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define CONN_BUF_MIN (64u << 10) /* lets one read carry many small frames */
#define DRAIN_READS 1024         /* recv calls per client on stop */

static uint32_t le32(const char *p)
{
    const unsigned char *u = (const unsigned char *)p;
    return (uint32_t)u[0] | (uint32_t)u[1] << 8 | (uint32_t)u[2] << 16 |
           (uint32_t)u[3] << 24;
}

/*
 * Frames in c->buf[0, used):
 *
 *     | len (4, LE) | len bytes ... | len (4, LE) | partial ...
 *     ^             ^               ^
 *     frame         packet          kept for the next read
 *
 * Returns false when the connection must be closed (frame too big).
 */
bool dsd__stream_frames(struct dsd *s, char *buf, size_t *used)
{
    size_t off = 0;
    bool ok = true;
    while (*used - off >= 4) {
        uint32_t len = le32(buf + off);
        if (len > s->cfg.buffer_size) {
            s->stats.stream_frames_too_big++;
            cmn_log_rl(&s->rl_io, CMN_LOG_WARN, DSD_COMP,
                       "stream: frame of %u bytes is over "
                       "dogstatsd_buffer_size (%zu): closing the connection",
                       len, s->cfg.buffer_size);
            ok = false;
            break;
        }
        if (*used - off - 4 < len)
            break;
        s->stats.packets++;
        s->stats.bytes += len;
        dsd_process_packet(s, buf + off + 4, len, s->cfg.eol_required_uds);
        off += 4 + (size_t)len;
    }
    if (!ok) {
        *used = 0;
        return false;
    }
    if (off > 0) {
        memmove(buf, buf + off, *used - off);
        *used -= off;
    }
    return true;
}

static bool parse_frames(struct dsd__conn *c)
{
    return dsd__stream_frames(c->s, c->buf, &c->used);
}

static void conn_closed(uv_handle_t *h)
{
    struct dsd__conn *c = h->data;
    struct dsd *s = c->s;
    cmn_free(c->buf);
    cmn_free(c);
    dsd__handle_closed(s);
}

static void conn_close(struct dsd__conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    struct dsd *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nconns--;
    uv_close((uv_handle_t *)&c->pipe, conn_closed);
}

static void conn_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct dsd__conn *c = h->data;
    buf->base = c->buf + c->used;
    buf->len = c->cap - c->used;
}

static void conn_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
    struct dsd__conn *c = st->data;
    struct dsd *s = c->s;
    if (nread > 0) {
        c->used += (size_t)nread;
        c->bytes += (uint64_t)nread;
        c->last_read_ms = uv_now(s->loop);
        if (!parse_frames(c)) {
            conn_close(c);
            return;
        }
        uint64_t max = s->cfg.stream_conn_bytes_max;
        if (max != 0 && c->bytes > max) {
            s->stats.stream_over_budget++;
            cmn_log_rl(&s->rl_io, CMN_LOG_WARN, DSD_COMP,
                       "stream: a client sent %llu bytes, over "
                       "dogstatsd_stream_conn_bytes_max (%llu): closing "
                       "the connection (%zu bytes of a partial frame "
                       "dropped)",
                       (unsigned long long)c->bytes, (unsigned long long)max,
                       c->used);
            conn_close(c);
        }
        return;
    }
    if (nread == 0)
        return;
    if (nread == UV_EOF) {
        if (c->used > 0) {
            s->stats.stream_partial_eof++;
            cmn_log_rl(&s->rl_io, CMN_LOG_WARN, DSD_COMP,
                       "stream: EOF inside a frame (%zu bytes dropped)",
                       c->used);
        }
    } else {
        s->stats.read_errors++;
        cmn_log_rl(&s->rl_io, CMN_LOG_ERROR, DSD_COMP, "stream read: %s",
                   uv_strerror((int)nread));
    }
    conn_close(c);
}

static void reject(struct dsd *s);

static void spare_closed(uv_handle_t *h)
{
    struct dsd *s = h->data;
    s->spare_busy = false;
    if (s->accept_pending && s->stream_live) {
        s->accept_pending = false;
        reject(s);
    }
    dsd__handle_closed(s);
}

/* Accepts the pending connection into the spare handle and closes it. */
static void reject(struct dsd *s)
{
    if (s->spare_busy) {
        s->accept_pending = true;
        return;
    }
    uv_pipe_init(s->loop, &s->spare, 0);
    s->spare.data = s;
    s->spare_busy = true;
    s->nlive++;
    if (uv_accept((uv_stream_t *)&s->stream_srv, (uv_stream_t *)&s->spare))
        CMN_LOGD(DSD_COMP, "stream: accept for refusal failed");
    uv_close((uv_handle_t *)&s->spare, spare_closed);
}

static void on_conn(uv_stream_t *srv, int status)
{
    struct dsd *s = srv->data;
    if (status < 0) {
        cmn_log_rl(&s->rl_io, CMN_LOG_ERROR, DSD_COMP, "stream accept: %s",
                   uv_strerror(status));
        return;
    }
    if (s->nconns >= s->cfg.max_stream_conns) {
        s->stats.stream_conns_refused++;
        cmn_log_rl(&s->rl_io, CMN_LOG_WARN, DSD_COMP,
                   "stream: %u clients already (max_stream_conns): "
                   "refusing a connection",
                   s->nconns);
        reject(s);
        return;
    }
    struct dsd__conn *c = cmn_calloc(1, sizeof(*c));
    size_t cap = 4 + s->cfg.buffer_size;
    if (cap < CONN_BUF_MIN)
        cap = CONN_BUF_MIN;
    char *b = c ? cmn_malloc(cap) : NULL;
    if (b == NULL) {
        cmn_free(c);
        s->stats.stream_conns_refused++;
        cmn_log_rl(&s->rl_io, CMN_LOG_ERROR, DSD_COMP,
                   "stream: out of memory: refusing a connection");
        reject(s);
        return;
    }
    c->s = s;
    c->buf = b;
    c->cap = cap;
    c->last_read_ms = uv_now(s->loop);
    uv_pipe_init(s->loop, &c->pipe, 0);
    c->pipe.data = c;
    s->nlive++;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->nconns++;
    int rc = uv_accept(srv, (uv_stream_t *)&c->pipe);
    if (rc == 0)
        rc = uv_read_start((uv_stream_t *)&c->pipe, conn_alloc, conn_read);
    if (rc != 0) {
        cmn_log_rl(&s->rl_io, CMN_LOG_ERROR, DSD_COMP, "stream accept: %s",
                   uv_strerror(rc));
        conn_close(c);
        return;
    }
    s->stats.stream_conns++;
}

static void srv_closed(uv_handle_t *h)
{
    dsd__handle_closed(h->data);
}

/* Closes every client silent for the idle timeout. */
static void idle_sweep(uv_timer_t *t)
{
    struct dsd *s = t->data;
    uint64_t now = uv_now(s->loop), limit = s->cfg.stream_idle_timeout_ms;
    for (struct dsd__conn *c = s->conns, *next; c != NULL; c = next) {
        next = c->next; /* conn_close unlinks c */
        if (now - c->last_read_ms < limit)
            continue;
        s->stats.stream_idle_closed++;
        cmn_log_rl(&s->rl_io, CMN_LOG_INFO, DSD_COMP,
                   "stream: closing a client idle for %llu ms "
                   "(dogstatsd_stream_idle_timeout; %zu bytes of a partial "
                   "frame dropped)",
                   (unsigned long long)(now - c->last_read_ms), c->used);
        conn_close(c);
    }
}

static int idle_start(struct dsd *s)
{
    uint64_t limit = s->cfg.stream_idle_timeout_ms;
    if (limit == 0)
        return 0;
    uint64_t period = limit / 4 ? limit / 4 : 1;
    uv_timer_init(s->loop, &s->idle_timer);
    s->idle_timer.data = s;
    s->idle_live = true;
    s->nlive++;
    uv_unref((uv_handle_t *)&s->idle_timer); /* never keeps a loop alive */
    return uv_timer_start(&s->idle_timer, idle_sweep, period, period);
}

int dsd__stream_start(struct dsd *s, int fd)
{
    uv_pipe_init(s->loop, &s->stream_srv, 0);
    s->stream_srv.data = s;
    s->stream_live = true;
    s->nlive++;
    int rc = uv_pipe_open(&s->stream_srv, fd);
    if (rc != 0)
        close(fd); /* not owned by the handle */
    else
        rc = uv_listen((uv_stream_t *)&s->stream_srv, SOMAXCONN, on_conn);
    if (rc == 0)
        rc = idle_start(s);
    if (rc != 0) {
        s->stream_live = false;
        uv_close((uv_handle_t *)&s->stream_srv, srv_closed);
    }
    return rc;
}

/* Reads what the client already wrote (non-blocking) and processes the
 * complete frames. */
static void conn_drain(struct dsd__conn *c)
{
    uv_os_fd_t fd;
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) != 0)
        return;
    for (int i = 0; i < DRAIN_READS && c->used < c->cap; i++) {
        ssize_t n = recv(fd, c->buf + c->used, c->cap - c->used, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        c->used += (size_t)n;
        if (!parse_frames(c))
            return;
    }
}

void dsd__stream_stop(struct dsd *s)
{
    if (s->idle_live) {
        s->idle_live = false;
        uv_close((uv_handle_t *)&s->idle_timer, srv_closed);
    }
    if (s->stream_live) {
        s->stream_live = false;
        uv_close((uv_handle_t *)&s->stream_srv, srv_closed);
    }
    s->accept_pending = false;
    while (s->conns != NULL) {
        struct dsd__conn *c = s->conns;
        conn_drain(c);
        conn_close(c); /* unlinks c from s->conns */
    }
}
