/*
 * dsd_int.h - private to dogstatsd/: the server object shared by the packet
 * processor (dsd_server.c), the datagram listeners (dsd_dgram.c) and the
 * stream listener (dsd_stream.c).
 */
#ifndef DP_DSD_INT_H
#define DP_DSD_INT_H

#include "dogstatsd.h"

#include <sys/socket.h>

#define DSD_COMP "dogstatsd"
#define DSD_LOG_LINE_MAX 200      /* bytes of a bad line shown in a log */
#define DSD_MMSG_MAX 64           /* datagrams per recvmmsg call */
#define DSD_MMSG_CALLS 8          /* recvmmsg calls per wakeup */
#define DSD_MMSG_BYTES (4u << 20) /* cap on the batch's buffer memory */
#define DSD_DRAIN_MAX 1000000     /* datagrams read by one stop drain */

/* A datagram listener: UDP or Unix datagram, read with recvmmsg from a
 * uv_poll_t (libuv does not own the fd: we close it in the close cb). */
struct dsd__dgram {
    struct dsd *s;
    uv_poll_t poll;
    int fd;            /* -1 when not open */
    bool eol_required; /* from the transport's dogstatsd_eol_required */
    bool live;         /* poll handle initialised and not yet closed */
    const char *kind;  /* "udp" or "uds": static, for logs */
};

/* A Unix stream client. buf holds at most one partial frame between
 * reads. */
struct dsd__conn {
    uv_pipe_t pipe;
    struct dsd *s;
    struct dsd__conn *prev, *next; /* s->conns list */
    char *buf;                     /* owned */
    size_t used;                   /* bytes in buf */
    size_t cap;                    /* >= 4 + buffer_size */
    uint64_t last_read_ms;         /* uv_now of the last read */
    uint64_t bytes;                /* read over the connection's life */
    bool closing;
};

struct dsd {
    uv_loop_t *loop;       /* borrowed */
    struct dsd_config cfg; /* deep copy, owned */
    struct dsd_sink sink;
    struct dsd_stats stats;
    struct dsd_parse_opts parse;

    /* enrichment, precomputed from cfg */
    size_t ns_len;                  /* 0 = no namespace */
    struct cmn_slice *ns_blacklist; /* owned array; slices borrow cfg */
    size_t nns_blacklist;
    struct cmn_slice *blocklist; /* owned array, sorted; borrow cfg */
    size_t nblocklist;

    /* per-line scratch */
    double *vals;     /* max_values_per_line */
    char *ev_scratch; /* buffer_size bytes, event title + text */
    char name_buf[DSD_NAME_MAX];

    /* datagram reads: DSD_MMSG_MAX (or fewer) buffers of buffer_size */
    size_t mmsg_n;
    char *rbuf;           /* owned, mmsg_n * buffer_size */
    struct mmsghdr *msgs; /* owned, mmsg_n */
    struct iovec *iovs;   /* owned, mmsg_n */

    struct dsd__dgram udp;
    struct dsd__dgram uds;
    int udp_port;

    uv_pipe_t stream_srv;
    bool stream_live;
    uv_pipe_t spare;         /* accepts connections we refuse, then closes */
    bool spare_busy;         /* spare initialised, close pending */
    bool accept_pending;     /* a refusal waits for the spare */
    struct dsd__conn *conns; /* list head */
    uint32_t nconns;
    uv_timer_t idle_timer; /* sweeps idle stream clients */
    bool idle_live;        /* idle_timer initialised, not closed */

    bool uds_created, stream_created; /* socket files to unlink on stop */
    bool started, stopping;
    unsigned nlive;      /* handles initialised and not yet closed */
    uv_idle_t stop_idle; /* closed by dsd_stop so cb is always async */
    dsd_stopped_cb stop_cb;
    void *stop_data;

    struct cmn_ratelimit rl_line; /* bad lines */
    struct cmn_ratelimit rl_io;   /* truncation, read errors, frames */
};

/* dsd_dgram.c */
int dsd__udp_open(struct dsd *s) CMN_MUST_CHECK;
int dsd__uds_open(struct dsd *s) CMN_MUST_CHECK;
int dsd__dgram_start(struct dsd__dgram *d) CMN_MUST_CHECK;
void dsd__dgram_stop(struct dsd__dgram *d);
void dsd__dgram_close_fd(struct dsd__dgram *d);

/* dsd_stream.c */
int dsd__stream_open(struct dsd *s, int *fd) CMN_MUST_CHECK;
int dsd__stream_start(struct dsd *s, int fd) CMN_MUST_CHECK;
void dsd__stream_stop(struct dsd *s);
/* Processes the complete frames in buf[0, *used) (4-byte LE length, then
 * the packet), moves the partial rest to the front and updates *used.
 * Returns false (and empties buf) when a frame is over buffer_size: the
 * connection must be closed. The buffer must hold 4 + buffer_size bytes
 * for a frame to complete. Loop thread (a fuzz target calls it). */
bool dsd__stream_frames(struct dsd *s, char *buf, size_t *used);

/* dsd_config.c: deep copy for dsd_create; on failure *dst owns nothing. */
int dsd__config_copy(struct dsd_config *dst,
                     const struct dsd_config *src) CMN_MUST_CHECK;

/* dsd_server.c */
void dsd__handle_closed(struct dsd *s);
/* Removes a stale socket file at path (only if it is a socket that no
 * process serves: probed with connect; a live one is UV_EADDRINUSE) and
 * checks the path fits sockaddr_un. */
int dsd__prepare_unix_path(const char *path, const char *var) CMN_MUST_CHECK;
/* Sets the mode of the socket file at path without following a symlink,
 * and only if it is a socket. Logs a warning on failure and returns the
 * error (callers go on: the socket works, with the umask's mode). */
int dsd__chmod_socket(const char *path, unsigned mode, const char *var);
/* Mode of the socket files: anyone may send, only the owner may read. */
#define DSD_SOCKET_MODE 0722

#endif /* DP_DSD_INT_H */
