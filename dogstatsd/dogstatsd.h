/*
 * dogstatsd.h - the DogStatsD server: UDP, Unix datagram and Unix stream
 * listeners, packet splitting, and the parsers for metric lines, events and
 * service checks (spec/pipeline.md §1), and the server's enrichment:
 * metric namespace and blocklist.
 *
 * The parsers are pure functions over (ptr, len) slices: no NUL needed, no
 * writes to the input, no allocation. The server hands every parsed item to
 * its sink (normally the aggregator) on the loop thread.
 *
 * Threading: the server functions run on the loop thread; the parsers are
 * pure and may run anywhere.
 */
#ifndef DP_DOGSTATSD_H
#define DP_DOGSTATSD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#include "aggregator.h"
#include "common.h"

/* ------------------------------------------------------------------------
 * Parsers
 */
enum dsd_msg_type { DSD_MSG_METRIC, DSD_MSG_EVENT, DSD_MSG_SERVICE_CHECK };

/* Reasons a line is rejected; counted per reason by the server. */
enum dsd_err {
    DSD_OK = 0,
    DSD_ERR_NO_PIPE,  /* no '|' */
    DSD_ERR_NO_COLON, /* no ':' in name:value */
    DSD_ERR_EMPTY_NAME,
    DSD_ERR_EMPTY_VALUE,
    DSD_ERR_BAD_TYPE,
    DSD_ERR_BAD_VALUE,
    DSD_ERR_TOO_MANY_VALUES, /* over the caller's value array */
    DSD_ERR_BAD_RATE,
    DSD_ERR_BAD_TIMESTAMP,
    DSD_ERR_BAD_EVENT,
    DSD_ERR_BAD_SERVICE_CHECK,
    DSD_ERR_NAME_TOO_LONG, /* namespace + name over DSD_NAME_MAX (server) */
    DSD_ERR_MAX
};
/* Static name of a reason, e.g. "invalid metric type". */
const char *dsd_err_str(enum dsd_err e);

struct dsd_parse_opts {
    bool no_aggregation_pipeline; /* parse |T (default true) */
    bool origin_detection_client; /* honour c:/e:/card: (default false) */
};

/* A parsed metric line. Slices point into the line. */
struct dsd_metric {
    struct agg_metric m;            /* values point into the caller's array */
    struct cmn_slice local_data;    /* c: */
    struct cmn_slice external_data; /* e: */
    struct cmn_slice cardinality;   /* card: */
};

/* Longest metric name after the namespace is prefixed (the server's fixed
 * name buffer). Only applies when statsd_metric_namespace is set. */
#define DSD_NAME_MAX 4096

/* Type of a line by its prefix: "_e{" event, "_sc" service check, else
 * metric. */
enum dsd_msg_type dsd_msg_type(const char *line, size_t len);

/* Parses one metric line (no '\n', no trailing '\r'). Values are written
 * to vals (up to max_vals; more is DSD_ERR_TOO_MANY_VALUES). Returns DSD_OK
 * or the reason; *out is only meaningful on DSD_OK, and its slices borrow
 * the line. opts NULL = defaults (|T parsed, c:/e:/card: ignored). For a
 * set, out->m.set_member is the whole value text and nvalues is 0. A
 * sample rate of 0 or below is DSD_ERR_BAD_RATE (the spec's Agent accepts
 * it, §1.3; see docs/limits.md); above 1 is accepted. */
enum dsd_err dsd_parse_metric(const char *line, size_t len,
                              const struct dsd_parse_opts *opts,
                              struct dsd_metric *out, double *vals,
                              size_t max_vals);

/* Parses an event line. Title and text with "\\n" turned into newlines are
 * written to scratch (at least len bytes; less than title_len + text_len is
 * DSD_ERR_BAD_EVENT), which out->title/out->text then point into; the other
 * slices borrow the line. Bad d:/p:/t: values are ignored (spec §1.6). */
enum dsd_err dsd_parse_event(const char *line, size_t len,
                             struct agg_event *out, char *scratch,
                             size_t scratch_len);
/* Parses a service check line; slices borrow the line. A bad d: is
 * ignored (spec §1.7). */
enum dsd_err dsd_parse_service_check(const char *line, size_t len,
                                     struct agg_service_check *out);

/* ------------------------------------------------------------------------
 * Server
 */
struct dsd_config {
    int port;                 /* dogstatsd_port 8125; 0 = UDP off; -1 =
                                 "__random__" (ephemeral) */
    char *bind_host;          /* owned or NULL (= "localhost", which is
                                 127.0.0.1); numeric IPv4/IPv6 or
                                 "localhost" only */
    bool non_local_traffic;   /* dogstatsd_non_local_traffic: bind
                                 0.0.0.0 (IPv4 only) */
    char *socket_path;        /* owned or NULL: dogstatsd_socket; created
                                 with mode 0722 like the Agent (anyone may
                                 send, only the owner may read) */
    char *stream_socket_path; /* owned or NULL: dogstatsd_stream_socket,
                                 mode 0722 */
    size_t buffer_size;       /* dogstatsd_buffer_size 8192 */
    int so_rcvbuf;            /* dogstatsd_so_rcvbuf; 0 = ask for
                                 DSD_RCVBUF_DEFAULT (SO_RCVBUFFORCE, then
                                 SO_RCVBUF, which rmem_max caps) */
    size_t ring_size;         /* DRAINPIPE_RECEIVE_RING_SIZE: the user-space
                                 ring behind each datagram socket,
                                 DSD_RING_SIZE_DEFAULT; touched only as it
                                 fills */
    int udp_sockets;          /* DRAINPIPE_UDP_SOCKETS (0): the UDP
                                 sockets on the port, 1-16, or 0 for a
                                 group with one usable CPU of several
                                 and a small buffer (dsd_sock.c,
                                 DSD_GROUP_AIM) */
    bool rx_realtime;         /* DRAINPIPE_RECEIVE_REALTIME (true): run
                                 the receive threads at SCHED_FIFO 1 where
                                 permitted (CAP_SYS_NICE or RLIMIT_RTPRIO) */
    bool eol_required_udp;    /* dogstatsd_eol_required has "udp" */
    bool eol_required_uds;    /* ... "uds" */
    struct dsd_parse_opts parse;
    char *metric_namespace;     /* owned or NULL; '.' appended if missing */
    char **namespace_blacklist; /* owned; NULL = the standard prefixes */
    size_t nnamespace_blacklist;
    char **metric_blocklist; /* owned: statsd_metric_blocklist */
    size_t nmetric_blocklist;
    bool blocklist_match_prefix;
    size_t max_values_per_line; /* cap, default 1024 */
    uint32_t max_stream_conns;  /* cap on UDS stream clients, default 1024 */
    uint64_t stream_idle_timeout_ms; /* DD_DOGSTATSD_STREAM_IDLE_TIMEOUT
                                        (s), 300 s: a stream client silent
                                        this long is closed; 0 = never */
    uint64_t stream_conn_bytes_max;  /* DD_DOGSTATSD_STREAM_CONN_BYTES_MAX:
                                        bytes one stream connection may
                                        send before it is closed (after its
                                        complete frames); 0 = no budget */
};

#define DSD_RCVBUF_DEFAULT (8 << 20)             /* asked for by default */
#define DSD_RING_SIZE_DEFAULT ((size_t)16 << 20) /* per datagram listener */
#define DSD_RING_SIZE_MIN ((size_t)256 << 10)

void dsd_config_defaults(struct dsd_config *cfg);
/* Applies DD_DOGSTATSD_PORT, DD_BIND_HOST, DD_DOGSTATSD_SOCKET, ... Returns
 * 0 or UV_EINVAL after logging the variable at fault. */
int dsd_config_from_env(struct dsd_config *cfg,
                        const struct cmn_env *env) CMN_MUST_CHECK;
void dsd_config_free(struct dsd_config *cfg);

struct dsd_stats {
    uint64_t packets; /* datagrams / frames read (truncated ones too) */
    uint64_t bytes;
    uint64_t packets_truncated; /* over buffer_size: counted, dropped */
    uint64_t metric_lines;      /* metric lines parsed OK (blocked ones
                                   included, like the Agent's
                                   MetricPackets) */
    uint64_t metric_samples;    /* samples: one per value, one per set
                                   line */
    uint64_t event_lines;
    uint64_t service_check_lines;
    uint64_t parse_errors[DSD_ERR_MAX]; /* by reason */
    uint64_t unterminated;              /* dropped by eol_required */
    uint64_t blocked;                   /* dropped by the blocklist */
    uint64_t agg_rejected;              /* refused by the aggregator (caps),
                                           each logged (rate-limited) */
    uint64_t rejected_tags;             /* of those: over the tags-per-line
                                           cap (1000, agg tags_per_metric_max) */
    uint64_t stream_conns_refused;      /* over max_stream_conns, or OOM */
    uint64_t stream_conns;              /* stream clients accepted */
    uint64_t stream_frames_too_big;     /* frame length > buffer_size: the
                                           connection was closed */
    uint64_t stream_partial_eof;        /* EOF inside a frame or its length */
    uint64_t stream_idle_closed;        /* closed by the idle timeout */
    uint64_t stream_over_budget;        /* closed past the byte budget */
    uint64_t read_errors; /* recv errors other than EAGAIN/EINTR */
    /* The receive path (per datagram listener) */
    uint64_t kernel_drops_udp;    /* the UDP socket's own drop counter
                                     (SO_RXQ_OVFL / SO_MEMINFO): datagrams
                                     the kernel dropped, buffer full */
    uint64_t kernel_drops_uds;    /* idem, Unix datagram socket */
    uint64_t ring_full;           /* times a receive ring was full (the
                                     receive thread waited for the loop) */
    uint64_t ring_full_ns;        /* time spent waiting so */
    uint64_t rx_spin_ns;          /* time receive threads spent reading
                                     again instead of sleeping, in bursts */
    uint64_t rx_naps;             /* naps of the UDP receive thread in a
                                     steady stream (read in batches) */
    uint64_t rx_rescues;          /* times the rescuer thread read the
                                     UDP socket, its receive thread behind
                                     (stopped by the host, or woken late) */
    uint64_t rx_rescued;          /* datagrams it read so */
    uint64_t rx_max_gap_ns_udp;   /* the longest time the receive
                                     thread, awake or napping, went
                                     without reading its socket (a nap,
                                     or kept off its CPU); the socket
                                     buffer must hold that long */
    uint64_t rx_max_gap_ns_uds;   /* idem, Unix datagram socket */
    uint64_t rx_asleep_drops_udp; /* of kernel_drops_udp, those that
                                     happened before the receive thread
                                     first ran, or while it slept (in
                                     poll on an empty socket) and before
                                     it ran again: a start or a wake-up
                                     later than the buffer lasts */
    uint64_t rx_asleep_drops_uds; /* idem, Unix datagram socket */
    uint64_t ring_budget_refused; /* times the memory budget refused the
                                     receive ring more pages (it then
                                     reuses the ones it has) */
    uint64_t ring_bytes;          /* bytes received and not yet parsed */
    uint64_t stop_unread;         /* datagrams left unparsed when the stop
                                     drain ran out of time */
    uint64_t stop_socket_left;    /* listeners whose socket still held data
                                     when the stop drain ran out of time */
    int rcvbuf_udp, rcvbuf_uds;   /* effective SO_RCVBUF (bytes the kernel
                                    accounts, i.e. twice the asked value) */
    int rx_realtime; /* receive threads running at real-time priority */
};

/* Where parsed items go: normally the aggregator (dsd_sink_from_agg), in
 * listener tests a recorder. Each op returns 0 when accepted or a negative
 * error when the item was refused (counted as agg_rejected). The items are
 * borrowed for the call only. */
struct dsd_sink {
    int (*metric)(void *data, const struct agg_metric *m);
    int (*event)(void *data, const struct agg_event *e);
    int (*service_check)(void *data, const struct agg_service_check *sc);
    void *data;
};
/* Fills *out with ops that feed the aggregator a (borrowed). Lives in its
 * own object file, so programs that never call it need no aggregator. */
void dsd_sink_from_agg(struct dsd_sink *out, struct agg *a);

struct dsd;

/* Creates the server; cfg is deep-copied, the sink is copied, what it
 * points to is borrowed and must outlive the server. Allocates the read
 * buffers; opens nothing. */
int dsd_create(uv_loop_t *loop, const struct dsd_config *cfg,
               const struct dsd_sink *sink, struct dsd **out) CMN_MUST_CHECK;
/* Opens and binds every configured socket and nothing else: no thread,
 * no loop handle, no allocation beyond the sockets. From here on the
 * kernel queues what clients send (in the socket buffers), so a caller
 * that must be ready quickly (serverless-init before it spawns its child)
 * binds first and calls dsd_start later. Fails as dsd_start does; on
 * failure nothing stays open. Loop thread; at most once. */
int dsd_bind(struct dsd *s) CMN_MUST_CHECK;
/* After dsd_bind: starts the datagram listeners' receive threads, which
 * move what arrives into the receive rings at once (so a small socket
 * buffer cannot overflow) without touching the loop; parsing begins with
 * dsd_start. For a wrapper: call it right after spawning the child (whose
 * exec takes longer than this). Optional (dsd_start does it too);
 * idempotent. Loop thread. */
int dsd_receive(struct dsd *s) CMN_MUST_CHECK;
/* Binds (unless dsd_bind did) and starts every configured listener: the
 * receive threads and their rings, the stream listener. Fails with "listening
 * on neither udp nor socket" (UV_EINVAL) when none is configured. A stale
 * socket file is replaced; a path that exists and is not a socket is
 * UV_EEXIST. After this returns 0 a client's first packet is never lost.
 * On failure nothing stays open and dsd_destroy may be called at once (or
 * dsd_stop, which then only reports); the one exception, libuv refusing to
 * watch a freshly bound socket, leaves handles that dsd_stop closes.
 * Call at most once. */
int dsd_start(struct dsd *s) CMN_MUST_CHECK;
/* Replaces the sink (copied; what it points to is borrowed). Only before
 * dsd_start: a server bound with dsd_bind before its aggregator existed
 * gets it here. Returns UV_EBUSY once started. */
int dsd_set_sink(struct dsd *s, const struct dsd_sink *sink) CMN_MUST_CHECK;
/* The bound UDP port (useful with port -1), or 0 if UDP is off. */
int dsd_udp_port(const struct dsd *s);
/* The smallest effective receive buffer (SO_RCVBUF, bytes) of the bound
 * datagram sockets (UDP, Unix datagram); INT_MAX when none is bound. */
int dsd_rcvbuf_min(const struct dsd *s);

/* Processes one packet as if it had arrived on a listener (used by the
 * listeners themselves, by tests, benchmarks and embedders): splits it into
 * lines, parses, enriches and hands every item to the sink, counting into
 * the stats. Borrows buf for the call. eol_required drops an unterminated
 * last line. An event line longer than buffer_size is DSD_ERR_BAD_EVENT.
 * Loop thread (or any single thread when no listener runs). */
void dsd_process_packet(struct dsd *s, const char *buf, size_t len,
                        bool eol_required);

typedef void (*dsd_synced_cb)(void *data);
/* Flush-now support: calls cb on the loop thread once every datagram that
 * was in the kernel socket buffers when dsd_sync was called, and
 * everything in the receive rings, has been parsed and handed to the
 * sink. cb may run before dsd_sync returns when no datagram listener
 * runs. One sync at a time: a second call while one is pending returns
 * UV_EBUSY and does not call cb. Loop thread. */
int dsd_sync(struct dsd *s, dsd_synced_cb cb, void *data) CMN_MUST_CHECK;

typedef void (*dsd_stopped_cb)(void *data);
/* Stops accepting, stops the receive threads, then reads every datagram
 * still queued in the receive rings and the kernel socket buffers until
 * both are empty or the deadline dl passes (and the bytes queued on
 * stream clients), parses them and hands them to the sink before
 * returning; what is left at dl is counted (stop_unread, stop_socket_left)
 * and logged. Then closes every handle, unlinks the socket files it
 * created, and calls cb once on the loop thread after the last close
 * callback (always asynchronously, also when nothing was started). A
 * second call is ignored. */
void dsd_stop(struct dsd *s, struct cmn_deadline dl, dsd_stopped_cb cb,
              void *data);
/* Frees the server: after the stop callback, or when dsd_start was never
 * called or failed. NULL is a no-op. Called with handles still open it
 * logs an error and leaks rather than free memory libuv still uses. */
void dsd_destroy(struct dsd *s);
void dsd_get_stats(const struct dsd *s, struct dsd_stats *out);

/* The Agent's default statsd_metric_namespace_blacklist (used when
 * namespace_blacklist is NULL): *n prefixes, static. */
const char *const *dsd_std_namespace_blacklist(size_t *n);

#endif /* DP_DOGSTATSD_H */
