/*
 * dsd_int.h - private to dogstatsd/: the server object shared by the packet
 * processor (dsd_server.c), the datagram listeners (dsd_dgram.c) and the
 * stream listener (dsd_stream.c).
 */
#ifndef DP_DSD_INT_H
#define DP_DSD_INT_H

#include "dogstatsd.h"
#include "dsd_ring.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>

#define DSD_COMP "dogstatsd"
#define DSD_LOG_LINE_MAX 200 /* bytes of a bad line shown in a log */
#define DSD_MMSG_MAX 64      /* datagrams per recvmmsg call */
/* A socket group's batch (dsd_dgram.c, group_fill): the merge holds a
 * datagram back until every socket has been read past it, so each read
 * gets about batch / sockets entries. At 64 a group of eight took 8
 * datagrams a system call and cost (a) 54-58 ns a line at 15 M lines/s,
 * against 40-47 at 256 (bench/README.md, 2026-12-04 22:17). */
#define DSD_GROUP_BATCH 256
#define DSD_MMSG_BYTES (4u << 20) /* cap on one batch's slot memory */
/* The first bytes of every batch slot, kept together: a datagram up to
 * this size (a one-line datagram, a client's 1432-byte batch) lands in
 * them whole, so only mmsg_n * DSD_SCRATCH_HEAD bytes are mapped in at
 * start (24 pages instead of one page per 8 KiB slot: 160 KiB less
 * resident) and a burst stays in fewer cache lines. The rest of a larger
 * datagram goes to the slot's tail, mapped in on first use. */
#define DSD_SCRATCH_HEAD 1536u
/* The UDP socket group (dsd_sock.c, DSD_GROUP_AIM): at most this many
 * sockets on the port. */
#define DSD_GROUP_MAX 16
/* The rescuer's ring (dsd_dgram.c, DSD_RESCUE_RATE): its size, and its
 * batch. */
#define DSD_RESCUE_BYTES ((size_t)16 << 20)
#define DSD_RESCUE_SLOTS 16

/* How the receive thread is scheduled (it sets this itself). */
enum dsd__prio {
    DSD_PRIO_UNSET,  /* not running yet */
    DSD_PRIO_NORMAL, /* ordinary time-sharing */
    DSD_PRIO_SLICE,  /* ordinary, with a short EEVDF slice (Linux 6.12+) */
    DSD_PRIO_FIFO,   /* SCHED_FIFO 1 */
};

/* A datagram listener: UDP or Unix datagram. Its receive thread moves
 * datagrams from the kernel into the ring (recvmmsg straight into ring
 * slots, then packed by length) and wakes the loop through `async`; the
 * loop thread parses them (dsd_dgram.c). libuv does not own the fd: we
 * close it after the async handle's close callback. */
/* The UDP receive thread's nap in a steady stream (dsd_dgram.c). */
struct dsd__nap {
    uint64_t ns;   /* the next nap, 0: none */
    uint64_t peak; /* the fastest fill rate lately, bytes a ms */
    uint64_t max;  /* the longest nap; 0: DSD_NAP_MAX_NS */
};

struct dsd__dgram {
    struct dsd *s;
    uv_async_t async; /* the receive thread's wake-up of the loop */
    int fd;           /* -1 when not open */
    /* UDP: the group's other sockets on the port (dsd_sock.c,
     * DSD_GROUP_AIM), ngfd of them; none without a group */
    int gfd[DSD_GROUP_MAX - 1];
    unsigned ngfd;
    bool eol_required; /* from the transport's dogstatsd_eol_required */
    bool live;         /* async handle initialised and not yet closed */
    const char *kind;  /* "udp" or "uds": static, for logs */

    struct dsd__ring ring;
    pthread_t thread;
    bool thread_live; /* created and not yet joined */
    int wake_fd;      /* eventfd: stop, sync request, space freed */
    _Atomic int stop; /* the thread exits at its next wake-up */
    _Atomic int done; /* the thread's last act: it touches nothing after */
    _Atomic int consumer_ready; /* async initialised: the thread may wake
                                   the loop */
    _Atomic int prio;           /* set by the thread: enum dsd__prio */
    bool prio_logged;           /* loop: prio was logged */

    /* batch arrays, used by whichever thread is the producer (the
     * receive thread, or the loop thread once it is joined) */
    size_t mmsg_n;
    struct mmsghdr *msgs;
    struct iovec *iovs; /* two a datagram: its head, its tail */
    /* recvmmsg lands here: mmsg_n heads of scratch_head bytes, then
     * mmsg_n tails of buffer_size - scratch_head bytes (see
     * DSD_SCRATCH_HEAD) */
    char *scratch;
    size_t scratch_head;
    char *cmsg;      /* mmsg_n control buffers (SO_RXQ_OVFL) */
    uint32_t *lens;  /* mmsg_n */
    uint32_t *flags; /* mmsg_n */
    /* a socket group only (dsd_dgram.c, group_fill): lens, flags and ts
     * are per scratch slot there, msgs the read window; each slot's kernel
     * timestamp (CLOCK_REALTIME ns); the slots read and held back, oldest
     * first (ord[0..held)); the free ones, every other slot
     * (gfree[0..mmsg_n - held)); the merge's scratch (gtmp); per socket
     * (0: fd), the time before which it holds nothing unread */
    uint64_t *ts;    /* mmsg_n */
    uint32_t *ord;   /* mmsg_n */
    uint32_t *gfree; /* mmsg_n */
    uint32_t *gtmp;  /* mmsg_n */
    size_t held;
    uint64_t gwm[DSD_GROUP_MAX];
    uint64_t unsignalled_ns;  /* first publish the loop was not woken for */
    uint64_t last_data_ns;    /* the last read that returned data */
    unsigned usable_cpus;     /* affinity capped by a cgroup CPU quota,
                                 set by the loop before the threads start
                                 (UDP: at bind, where the group rule read
                                 it; 0 until then) */
    int64_t spin_credit_ns;   /* spinning left (see DSD_SPIN_NS) */
    uint64_t spin_at;         /* last update of spin_credit_ns */
    _Atomic uint64_t spin_ns; /* time spent spinning, for the stats */
    uint64_t prev_read_ns;    /* the last recvmmsg's return, moved on by
                                 each sleep's length (a pause counts time
                                 awake only); 0 while the ring is full */
    uint64_t wake_backlog;    /* bytes waiting that wake the loop at once */
    struct dsd__nap nap;      /* the next nap (see DSD_NAP_FILL) */
    bool defer_parse;         /* the loop waits for the socket to be quiet */

    /* written by the producer, read anywhere */
    _Atomic uint64_t kernel_drops; /* the sockets' drop counters, summed */
    _Atomic uint64_t sock_drops[DSD_GROUP_MAX]; /* each socket's (0: fd) */
    _Atomic uint64_t merge_forced; /* a group's batch published past the
                                      merge's bound (dsd_dgram.c) */
    _Atomic uint64_t full_events;  /* times the ring was full */
    _Atomic uint64_t full_ns;      /* time spent waiting for room */
    _Atomic uint64_t max_gap_ns;   /* longest time between two reads of
                                      the socket while the thread was
                                      awake or napping (not sleeping in
                                      poll on an empty socket): a nap, or
                                      time it was kept off its CPU */
    _Atomic uint64_t asleep_drops; /* drops before the thread first
                                      ran, and those the socket's counter
                                      gained while it slept in poll: the
                                      buffer filled before it ran */
    _Atomic uint64_t read_errors;
    _Atomic uint64_t naps; /* naps taken (see DSD_NAP_FILL) */
    _Atomic int last_errno;
    _Atomic uint64_t sync_req; /* loop: sync requests made */
    _Atomic uint64_t sync_ack; /* producer: requests seen at EAGAIN */

    /* the rescuer (dsd_dgram.c, DSD_RESCUE_RATE), UDP with two or more
     * usable CPUs: a second thread that reads the socket while the
     * receive thread cannot, into a ring of its own (res). Each of its
     * reads is an episode: a MARK record (its data: the main ring's head
     * when the episode began), the datagrams, an END record. The loop
     * parses an episode once it has parsed the main ring up to its mark,
     * and goes on with the main ring after the episode's END. */
    struct dsd__ring res;
    int res_wake_fd; /* eventfd: stop, a new stream */
    pthread_t res_thread;
    bool res_started;     /* loop: started, not yet joined */
    _Atomic int res_done; /* the rescuer's last act */
    /* the rescuer's own (allocated before the receive thread starts) */
    struct mmsghdr *rmsgs;
    struct iovec *riovs;
    char *rscratch; /* DSD_RESCUE_SLOTS slots of buffer_size bytes */
    uint32_t rlens[DSD_RESCUE_SLOTS], rflags[DSD_RESCUE_SLOTS];
    uint64_t rescue_tick_ns;  /* between ticks */
    uint64_t rescue_head;     /* the ring's head at the last tick */
    unsigned rescue_idle;     /* idle ticks in a row */
    _Atomic uint64_t rescues; /* episodes that read the socket */
    _Atomic uint64_t rescued; /* datagrams the rescuer read */
    /* loop: its place in res, and whether it is inside an episode (the
     * main ring then waits at the episode's mark) */
    uint64_t rpos;
    bool ep_open;
    bool ep_wait; /* ...and has parsed all of it the rescuer published */

    /* loop thread (consumer) */
    uint64_t cpos;          /* consumer's tail */
    uint64_t errors_logged; /* read_errors already logged */
    uint64_t sync_target;   /* sync_req value the pending sync waits for */
    uint64_t synced;        /* sync_target values answered and parsed */
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

    size_t ring_size;           /* per datagram listener */
    int rcvbuf_udp, rcvbuf_uds; /* effective SO_RCVBUF, for stats */
    int rx_realtime;            /* receive threads at SCHED_FIFO */

    /* one pending dsd_sync */
    dsd_synced_cb sync_cb;
    void *sync_data;

    struct dsd__dgram udp;
    struct dsd__dgram uds;
    struct sockaddr_storage udp_addr; /* bound: dsd_udp_port, the log */

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
    bool bound, started, stopping;
    int stream_fd;       /* bound by dsd_bind, until dsd_start hands it over */
    unsigned nlive;      /* handles initialised and not yet closed */
    uv_idle_t stop_idle; /* closed by dsd_stop so cb is always async */
    dsd_stopped_cb stop_cb;
    void *stop_data;

    struct cmn_ratelimit rl_line; /* bad lines */
    struct cmn_ratelimit rl_io;   /* truncation, read errors, frames */
};

/* dsd_dgram.c: the CPUs granted per second by a cgroup v2 cpu.max text
 * ("50000 100000" -> 1, "150000 100000" -> 2), rounded up; 0 = "max" or
 * unparsable (no quota). */
unsigned dsd__cpu_max_cpus(const char *text);
/* The receive thread's next nap in a steady stream (dsd_dgram.c); sets
 * and returns n->ns. */
uint64_t dsd__nap_next(struct dsd__nap *n, uint64_t elapsed_ns, uint64_t queued,
                       uint64_t rcvbuf);

/* dsd_sock.c: the listeners' sockets, bound in dsd_bind. Each returns 0
 * or a negative error (logged, nothing left open). */
/* The UDP socket (dogstatsd_port) into s->udp.fd, its address into
 * s->udp_addr. */
int dsd__udp_open(struct dsd *s) CMN_MUST_CHECK;
/* The Unix datagram socket (dogstatsd_socket) into s->uds.fd. */
int dsd__uds_open(struct dsd *s) CMN_MUST_CHECK;
/* The Unix stream socket (dogstatsd_stream_socket), listening, in *fd. */
int dsd__stream_open(struct dsd *s, int *fd) CMN_MUST_CHECK;
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

/* dsd_dgram.c */
/* Maps the ring and starts the receive thread, which fills the ring
 * without waking the loop (no handle yet). Idempotent. */
int dsd__dgram_receive(struct dsd__dgram *d) CMN_MUST_CHECK;
/* dsd__dgram_receive, then the async handle: the loop parses from now on
 * (and at once what was received before). */
int dsd__dgram_start(struct dsd__dgram *d) CMN_MUST_CHECK;
/* Stops and joins the receive thread, if it runs. */
void dsd__dgram_join(struct dsd__dgram *d);
/* Joins the thread, then reads socket and ring on the loop thread until
 * both are empty or dl passes, and closes. */
void dsd__dgram_stop(struct dsd__dgram *d, struct cmn_deadline dl);
void dsd__dgram_close_fd(struct dsd__dgram *d);
/* The CPUs this process may use at once: its affinity, capped by a
 * cgroup CPU quota (dsd_dgram.c). */
unsigned dsd__usable_cpus(void);
/* Frees what dsd__dgram_start allocated (after the close callback). */
void dsd__dgram_free(struct dsd__dgram *d);
/* Asks the receive thread to read until EAGAIN and report back. */
void dsd__dgram_sync(struct dsd__dgram *d);
/* True when the last sync request was answered and its data parsed. */
bool dsd__dgram_synced(const struct dsd__dgram *d);
/* Adds the listener's receive-path counters to out. */
void dsd__dgram_stats(const struct dsd__dgram *d, struct dsd_stats *out);

/* dsd_stream.c */
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
/* Calls a pending dsd_sync callback once every datagram listener has
 * answered (loop thread). */
void dsd__sync_check(struct dsd *s);
#endif /* DP_DSD_INT_H */
