/*
 * dsd_dgram.c - the receive path of the datagram listeners: UDP
 * (dogstatsd_port) and Unix datagram (dogstatsd_socket), spec/pipeline.md
 * §1.1. Their sockets are set up in dsd_sock.c.
 *
 * Receiving is not parsing. Each listener has a receive thread that only
 * moves datagrams from the kernel into a user-space ring (dsd_ring.h):
 * recvmmsg into up to DSD_MMSG_MAX scratch slots of buffer_size bytes
 * (their heads kept together, DSD_SCRATCH_HEAD),
 * then the datagrams are copied into the ring packed by length and
 * published with one release store, and the loop is woken through a
 * uv_async_t. The loop
 * thread parses what was published (dgram_consume), at most
 * DSD_CONSUME_BYTES per callback so it never holds the loop for long. The
 * ring extends the kernel buffer: a stall of the loop (a flush, a page
 * fault, a slow CPU) fills the ring, not the socket. When the ring is
 * full, the thread stops reading until the loop frees room, and the
 * kernel buffer absorbs what follows.
 *
 * Loss is never silent: the socket asks for a large buffer
 * (DSD_RCVBUF_DEFAULT: SO_RCVBUFFORCE, then SO_RCVBUF), SO_RXQ_OVFL is on
 * and the kernel's per-socket drop counter is read from each batch and
 * from SO_MEMINFO; time spent with a full ring is counted. A datagram
 * that did not fit buffer_size (MSG_TRUNC) is counted as truncated and
 * dropped whole, never parsed in part.
 *
 * Stop: the thread is joined, then the loop thread itself reads the ring
 * and the socket until both are empty or the stop drain bound passes;
 * what is left then is counted and logged.
 *
 * Threads: the receive thread touches only the socket, the ring's
 * producer side, the batch arrays and the atomics of struct dsd__dgram;
 * it blocks every signal and logs nothing (the loop logs its errors).
 * libuv does not own these fds: they are closed after the close callback.
 */
#include "dsd_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <poll.h>
#include <time.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#ifndef SO_MEMINFO
#define SO_MEMINFO 55
#endif

#define DSD_CONSUME_BYTES (256u << 10) /* parsed per loop callback */
#define DSD_RELEASE_STEP (256u << 10)  /* ring bytes freed at a time */
#define DSD_RING_RESET_AT (512u << 10) /* the ring's warm working size */
#define DSD_IDLE_TRIM_MS 5000          /* idle time before ring pages go back */
#define DSD_ERROR_PAUSE_MS 10 /* after a read error other than EAGAIN */
/* When the loop is woken for what the receive thread published.
 *
 * With one allowed CPU (a pinned process, a 1-vCPU container) the loop and
 * the thread take turns anyway: the loop is woken at most every
 * DSD_WAKE_DELAY_NS, sooner with DSD_WAKE_BACKLOG bytes waiting (parsing
 * a millisecond late costs nothing, and each wake-up is expensive on a
 * virtual machine; small chunks stay in the cache).
 *
 * With more CPUs, parsing during a burst would take the CPU the receive
 * thread needs (the sender has the other one), so the loop is woken once
 * the socket has been quiet for DSD_WAKE_QUIET_NS, or with a quarter of
 * the ring waiting, or DSD_WAKE_MAX_NS after the first unparsed datagram
 * under a steady trickle. The ring holds the burst meanwhile (16 MiB:
 * about 260 000 one-line datagrams). */
#define DSD_WAKE_DELAY_NS 1000000
#define DSD_WAKE_BACKLOG (256u << 10)
#define DSD_WAKE_QUIET_NS 1000000
#define DSD_WAKE_MAX_NS 250000000
/* The receive thread always sleeps on the socket itself, so a datagram
 * wakes it at once: pacing its reads (reading every few hundred
 * microseconds while the loop is behind) saved wake-ups but lost
 * datagrams with a 212992-byte buffer on a busy machine, where a timer
 * fires late. */
/* Spinning through a burst. A receive thread that sleeps whenever the
 * socket is empty is woken for the next datagram by the kernel, and in a
 * virtual machine a sleeping virtual CPU halts: waking it is up to the
 * host's scheduler. On the 2-vCPU test VM that wake-up sometimes took
 * 5-11 ms in the middle of a back-to-back burst of one-line datagrams, at
 * real-time priority, while the sender's CPU kept sending: a
 * 212992-byte socket buffer overflows in about 3 ms (4 of 100 bursts of
 * 50 000 datagrams lost some; the first wake-up after a burst's first
 * datagram took 1-2 ms in many runs). So after a read that returned data
 * the thread does not sleep at once: it reads again (recvmmsg with
 * MSG_DONTWAIT, a system call of about a microsecond) until DSD_SPIN_NS
 * pass without data. A burst is then read without a single wake-up. It is
 * capped: the thread spins at most DSD_SPIN_SHARE of its wall time (a
 * steady trickle of datagrams costs at most that much of a CPU), with a
 * credit of at most DSD_SPIN_CREDIT_NS (a first burst of a second is
 * covered in full). With one allowed CPU it never spins: the sender needs
 * that CPU. */
/* Napping through a steady stream (UDP). A thread that does not spin
 * (one usable CPU, or its spin credit spent) and sleeps in poll whenever
 * the socket is empty is woken again almost at once by the next datagram
 * at a high rate: each round then reads two or three datagrams for four
 * system calls, and at real-time priority it preempts the loop for each.
 * On the 2-vCPU test VM that cost (a) at 15 M lines/s 57-64 ns a line
 * against 27 at full speed, more than the loop could spare: its ring
 * filled and the kernel dropped. So after a round that read data, the
 * thread naps for a while the socket buffer safely covers, then reads
 * what came meanwhile in one batch. The nap is learnt from the buffer
 * itself: after each nap SO_MEMINFO gives the bytes queued (the kernel's
 * own accounting, overhead included) and the buffer's size, and the next
 * nap aims to find it a quarter full (DSD_NAP_FILL) at the fastest fill
 * rate seen lately (DSD_NAP_DECAY), is halved when it found the buffer
 * half full, grows at most twofold a round, never past DSD_NAP_MAX_NS.
 * A sender on the reader's one CPU fills the buffer only while the loop
 * does not run, so one nap can see a fraction of the rate the next one
 * gets: aiming at the last rate lost 4-52 datagrams in most runs of
 * listeners::one_cpu_flood_from_sendmmsg_loses_nothing (naps grown to
 * 0.5 ms, the buffer full in 0.2 ms). Below DSD_NAP_MIN_NS it does not
 * nap (a buffer that small for the rate is read at once). A stream that
 * starts after a quiet spell starts again at DSD_NAP_START_NS; one too
 * fast to nap at is probed again at DSD_NAP_MIN_NS once the socket stays
 * empty that long. The nap waits on the wake-up fd, so a stop or a sync
 * request ends it. Unix datagram senders block instead of losing, and
 * their queue is not in SO_MEMINFO: that listener does not nap. */
#define DSD_NAP_MIN_NS 20000
#define DSD_NAP_START_NS 50000
#define DSD_NAP_MAX_NS 500000
#define DSD_NAP_FILL 4
#define DSD_NAP_DECAY 16
#define DSD_SPIN_NS 50000
#define DSD_SPIN_SHARE 8 /* at most 1/8 of the time */
#define DSD_SPIN_CREDIT_NS 1000000000
#define DSD_THREAD_STACK (128u << 10)
#define DSD_JOIN_SPIN_NS 2000000 /* at stop: waits awake, then joins */
/* a batch entry's control buffer: the drop counter (SO_RXQ_OVFL), and in a
 * socket group the receive timestamp (SO_TIMESTAMPNS) */
#define DSD_CMSG_OVFL CMSG_SPACE(sizeof(uint32_t))
#define DSD_CMSG_SPACE (DSD_CMSG_OVFL + CMSG_SPACE(sizeof(struct timespec)))
/* In a socket group (dsd_sock.c, DSD_GROUP_AIM): a datagram is stamped
 * as the sender's CPU hands it to the loopback device, and queued on its
 * socket a moment later, a few microseconds on the sender's own CPU. A
 * socket found empty can still get a datagram stamped up to this long
 * before: datagrams of the other sockets stamped later wait for it
 * (group_fill). */
#define DSD_GROUP_RACE_NS 50000
/* The rescuer (UDP, two or more usable CPUs). The receive thread can be
 * kept from its socket for longer than the buffer lasts while the other
 * CPU runs on: the host stops its virtual CPU (bench_hiccup on the test
 * VM: stops of 1-9 ms, several every 3 s; a 212992-byte buffer lasts
 * about 0.6 ms of a one-line burst), wakes it late from poll, or a
 * debugger stops it. So a second thread, started with the receive thread
 * (and scheduled as it is; see start_rescuer), looks at the socket every
 * tick while a stream is active: a quarter of the time the
 * buffer takes to fill at DSD_RESCUE_RATE, within [DSD_RESCUE_TICK_MIN,
 * DSD_RESCUE_TICK_MAX] (0.3 ms at 212992, 12 ms at the default 8 MiB). When the
 * socket holds a quarter of its buffer and the receive thread is not waiting
 * for the loop (the ring is not full), it reads the socket itself: until it is
 * empty, the receive thread publishes again, or DSD_RESCUE_MAX_NS has
 * passed (then the next tick is DSD_RESCUE_TICK_MIN away). What it reads
 * goes to its own ring (res, DSD_RESCUE_BYTES, the memory budget) as an
 * episode that the loop parses after all the receive thread had published
 * before it (dgram_consume). Order: only a batch the receive thread had
 * taken from the socket and not yet published when it stopped is parsed
 * after later datagrams (a gauge's last value among them can then be an
 * earlier one). It stops ticking after DSD_RESCUE_IDLE idle ticks in a row
 * (the receive thread wakes it at the next stream).
 *
 * Why a thread of its own, at the receive thread's priority: the loop did
 * this until 2026-12-03, on a timer. An ordinary thread woken while the
 * sender runs on the other CPU waits for the sender's slice: on the test
 * VM the loop's ticks came 4-10 ms apart at worst even when it was kept
 * off the receive thread's CPU, and often 30-120 ms apart when it was not
 * (then a host stop of that CPU stopped both). At real-time priority the
 * rescuer preempts the sender at once. With one usable CPU there is none:
 * it would stop with the receive thread. */
/* The fill rate the tick is sized for, in bytes of the kernel's count a
 * ms: one-line datagrams at ~400 a ms, counted at 832 bytes each (6 500 of
 * them waiting unread: 5 408 000 bytes, 2026-12-03, the test VM). A count
 * read while the thread reads can be higher: UDP gives memory back to the
 * socket in steps, up to a quarter of its buffer (an earlier reading of
 * ~1.9 KB a datagram was that). */
#define DSD_RESCUE_RATE 340000u
#define DSD_RESCUE_TICK_MIN 250000
#define DSD_RESCUE_TICK_MAX 20000000
#define DSD_RESCUE_MAX_NS 2000000
#define DSD_RESCUE_IDLE 40
#define DSD_RESCUE_STACK (64u << 10)

/* ------------------------------------------------------------------------
 * Producer: kernel -> ring (the receive thread, or the loop thread once the
 * thread is joined at stop)
 */
/* EMPTY: the socket is empty (a group: each was emptied in turn); MORE:
 * max_calls reached. */
enum fill_result { FILL_EMPTY, FILL_MORE, FILL_FULL, FILL_ERROR };

static void wake(int fd)
{
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof(one));
    (void)w; /* EAGAIN: the counter is already non-zero, a wake-up is due */
}

static void note_max(_Atomic uint64_t *v, uint64_t x)
{
    uint64_t cur = atomic_load_explicit(v, memory_order_relaxed);
    while (x > cur &&
           !atomic_compare_exchange_weak_explicit(
               v, &cur, x, memory_order_relaxed, memory_order_relaxed))
        ;
}

/* Socket i's drop counter (0: fd) is at least v: kernel_drops, their
 * sum, follows (from the receive thread, or the loop's stats). */
static void note_drops(struct dsd__dgram *d, unsigned i, uint64_t v)
{
    uint64_t cur =
        atomic_load_explicit(&d->sock_drops[i], memory_order_relaxed);
    while (v > cur) {
        if (atomic_compare_exchange_weak_explicit(&d->sock_drops[i], &cur, v,
                                                  memory_order_relaxed,
                                                  memory_order_relaxed)) {
            atomic_fetch_add_explicit(&d->kernel_drops, v - cur,
                                      memory_order_relaxed);
            return;
        }
    }
}

/* What the kernel attached to a datagram of socket i: its drop counter
 * (SO_RXQ_OVFL: only present once it is non-zero), kept; returns its
 * receive timestamp (SO_TIMESTAMPNS, a socket group only), 0 if none. */
static uint64_t read_cmsgs(struct dsd__dgram *d, unsigned i,
                           const struct msghdr *h)
{
    uint64_t ts = 0;
    if (h->msg_controllen == 0)
        return 0;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(h); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)h, c)) {
        if (c->cmsg_level != SOL_SOCKET)
            continue;
        if (c->cmsg_type == SO_RXQ_OVFL) {
            uint32_t v;
            memcpy(&v, CMSG_DATA(c), sizeof(v));
            note_drops(d, i, v);
        } else if (c->cmsg_type == SCM_TIMESTAMPNS) {
            struct timespec t;
            memcpy(&t, CMSG_DATA(c), sizeof(t));
            ts = (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
        }
    }
    return ts;
}

/* Socket i's fd (0: fd, then the group's). */
static int sock_fd(const struct dsd__dgram *d, unsigned i)
{
    return i == 0 ? d->fd : d->gfd[i - 1];
}

/* Socket i's drop counter, read directly (SO_MEMINFO, Linux 4.12+) and
 * kept. mi, when not NULL, gets the whole of SO_MEMINFO (zeros when it
 * cannot be read). */
static void read_sock_meminfo(struct dsd__dgram *d, unsigned i,
                              uint32_t mi[SK_MEMINFO_VARS])
{
    uint32_t own[SK_MEMINFO_VARS];
    if (mi == NULL)
        mi = own;
    memset(mi, 0, SK_MEMINFO_VARS * sizeof(uint32_t));
    socklen_t l = SK_MEMINFO_VARS * sizeof(uint32_t);
    int fd = sock_fd(d, i);
    if (fd < 0 || getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mi, &l) != 0 ||
        l <= SK_MEMINFO_DROPS * sizeof(uint32_t))
        return;
    note_drops(d, i, mi[SK_MEMINFO_DROPS]);
}

/* Every socket's drop counter, read and kept; returns their sum. */
static uint64_t read_meminfo(struct dsd__dgram *d)
{
    for (unsigned i = 0; i <= d->ngfd; i++)
        read_sock_meminfo(d, i, NULL);
    return atomic_load_explicit(&d->kernel_drops, memory_order_relaxed);
}

/* Wakes the loop (from the receive thread or the rescuer). Before
 * dsd_start there is no loop handle: dsd_start itself wakes the loop for
 * what was received until then. */
static void wake_loop(struct dsd__dgram *d)
{
    if (atomic_load_explicit(&d->consumer_ready, memory_order_acquire))
        uv_async_send(&d->async);
}

/* Wakes the loop for what was published since the last wake-up. */
static void signal_loop(struct dsd__dgram *d)
{
    d->unsignalled_ns = 0;
    wake_loop(d);
}

/* Reads until EAGAIN (FILL_EMPTY), a full ring or max_calls calls; thread:
 * on the receive thread (not the loop's stop drain). Not thread_live: the
 * loop sets that after pthread_create returns, and a receive thread at
 * real-time priority on the loop's CPU can read a whole burst before the
 * loop runs again (it then neither woke the loop nor noted its pauses,
 * 2026-12-04). */
static enum fill_result group_fill(struct dsd__dgram *d, size_t max_calls,
                                   bool thread, bool force);

/* Reserves ring room for up to a batch of datagrams (see
 * dsd__ring_reserve); returns how many fit, 0 when the ring is full.
 * After an early wrap the room is the tail's offset until the loop reads
 * the PAD (dsd_ring.c early_room): the receive thread wakes it to read it
 * now, not after a backlog that room may not hold. */
static size_t reserve_batch(struct dsd__dgram *d, bool thread, char **at)
{
    uint64_t wraps = d->ring.early_wraps;
    size_t n = dsd__ring_reserve(&d->ring, d->s->cfg.buffer_size, d->mmsg_n,
                                 DSD_RING_RESET_AT, at);
    if (thread && d->ring.early_wraps != wraps)
        signal_loop(d);
    return n;
}

static enum fill_result dgram_fill(struct dsd__dgram *d, size_t max_calls,
                                   bool thread, bool force)
{
    if (d->ngfd > 0)
        return group_fill(d, max_calls, thread, force);
    size_t bs = d->s->cfg.buffer_size;
    for (size_t call = 0; call < max_calls; call++) {
        if (thread && atomic_load_explicit(&d->stop, memory_order_relaxed))
            return FILL_EMPTY;
        char *at;
        size_t n = reserve_batch(d, thread, &at);
        if (n == 0)
            return FILL_FULL;
        /* The drop counter comes with the batch's first datagram only:
         * once the socket has dropped, the kernel attaches it to every
         * datagram, and copying it out 64 times a call was wasted work at
         * overload (put_cmsg 0.29 % of the samples of (a) at full speed,
         * 0.06 % with one a call). The exact count is read from SO_MEMINFO
         * whenever statistics are taken. */
        for (size_t i = 0; i < n; i++) {
            d->msgs[i].msg_hdr.msg_controllen = i == 0 ? DSD_CMSG_OVFL : 0;
            d->msgs[i].msg_hdr.msg_flags = 0;
        }
        int k = recvmmsg(d->fd, d->msgs, (unsigned)n, MSG_DONTWAIT, NULL);
        if (thread) {
            /* a reading thread that is kept off its CPU (preempted, or
             * its virtual CPU stopped by the host) cannot drain the
             * socket meanwhile: the longest such pause is reported with
             * the kernel's drops */
            uint64_t t = cmn_mono_ns();
            if (d->prev_read_ns != 0)
                note_max(&d->max_gap_ns, t - d->prev_read_ns);
            d->prev_read_ns = t;
        }
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return FILL_EMPTY;
            atomic_store_explicit(&d->last_errno, errno, memory_order_relaxed);
            atomic_fetch_add_explicit(&d->read_errors, 1, memory_order_relaxed);
            return FILL_ERROR;
        }
        for (int i = 0; i < k; i++) {
            struct mmsghdr *m = &d->msgs[i];
            d->lens[i] = m->msg_len;
            d->flags[i] =
                (m->msg_hdr.msg_flags & MSG_TRUNC) ? DSD_RING_F_TRUNC : 0;
        }
        if (k > 0)
            (void)read_cmsgs(d, 0, &d->msgs[0].msg_hdr); /* the only one */
        size_t h = d->scratch_head;
        struct dsd__ring_src src = {d->scratch, h, d->scratch + d->mmsg_n * h,
                                    bs - h};
        dsd__ring_pack(&d->ring, at, &src, (size_t)k, d->lens, d->flags);
        /* The reader loop wakes the loop (see DSD_WAKE_DELAY_NS). */
        if (thread) {
            d->last_data_ns = cmn_mono_ns();
            if (d->unsignalled_ns == 0)
                d->unsignalled_ns = d->last_data_ns;
        }
        if ((size_t)k < n)
            return FILL_EMPTY;
    }
    return FILL_MORE;
}

/* CLOCK_REALTIME in ns: the clock of the kernel's receive timestamps. */
static uint64_t real_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

/* Merges the slots just read (run[0..k), in the order read) into the
 * held ones (ord[0..held), oldest first), by timestamp: a socket's
 * datagrams come nearly in order (two senders stamp on their own CPUs and
 * queue a moment later), so the run is sorted in place first, then merged
 * in one pass; held ones go first on a tie. */
static void merge_run(struct dsd__dgram *d, uint32_t *run, size_t k)
{
    const uint64_t *ts = d->ts;
    for (size_t x = 1; x < k; x++) {
        uint32_t v = run[x];
        size_t to = x;
        while (to > 0 && ts[run[to - 1]] > ts[v]) {
            run[to] = run[to - 1];
            to--;
        }
        run[to] = v;
    }
    size_t a = 0, b = 0, o = 0, n = d->held;
    while (a < n && b < k)
        d->gtmp[o++] = ts[run[b]] < ts[d->ord[a]] ? run[b++] : d->ord[a++];
    while (a < n)
        d->gtmp[o++] = d->ord[a++];
    while (b < k)
        d->gtmp[o++] = run[b++];
    memcpy(d->ord, d->gtmp, o * sizeof(*d->ord));
    d->held = o;
}

/* Socket i's bound from its next datagram, looked at and left there
 * (MSG_PEEK): just before its stamp, or the time now less
 * DSD_GROUP_RACE_NS when it is empty. */
static uint64_t peek_bound(struct dsd__dgram *d, unsigned i)
{
    char byte;
    union { /* aligned for struct cmsghdr */
        struct cmsghdr h;
        char buf[DSD_CMSG_SPACE];
    } ctl;
    struct iovec iov = {&byte, 1};
    struct msghdr mh = {.msg_iov = &iov,
                        .msg_iovlen = 1,
                        .msg_control = ctl.buf,
                        .msg_controllen = sizeof(ctl.buf)};
    ssize_t r = recvmsg(sock_fd(d, i), &mh, MSG_PEEK | MSG_DONTWAIT);
    uint64_t now = real_ns();
    if (r < 0)
        return now - DSD_GROUP_RACE_NS;
    uint64_t ts = read_cmsgs(d, i, &mh);
    return ts != 0 ? ts - 1 : now - DSD_GROUP_RACE_NS;
}

/* The socket with the lowest bound (gwm) of the group's nsock. */
static unsigned lowest_bound(const struct dsd__dgram *d, unsigned nsock)
{
    unsigned m = 0;
    for (unsigned j = 1; j < nsock; j++)
        m = d->gwm[j] < d->gwm[m] ? j : m;
    return m;
}

/* dgram_fill for a socket group (dsd_sock.c, DSD_GROUP_AIM): a merge of
 * the sockets by the kernel's receive timestamps. Each socket's
 * datagrams come in order, and gwm[i] bounds what socket i can still
 * hold: after a read that filled what it asked, nothing older than the
 * last datagram it gave; after one that emptied it, nothing stamped
 * DSD_GROUP_RACE_NS before the read. Each call reads the socket with the
 * lowest bound among those not yet emptied in this fill (the one holding
 * the merge back), into half the free scratch slots less one for each
 * other socket (so each has room), merges what it gave into the slots
 * held back (ord, oldest first), and publishes the ones no socket can
 * still precede: those stamped at or before the lowest bound. The fill is
 * EMPTY once every socket has been emptied in it (not all at once: a
 * steady stream rarely leaves eight sockets empty together). force
 * publishes everything read (a sync request; the stop drain once every
 * socket was emptied). Only a batch held back whole, waiting for a socket
 * it has no slot left for, is published past the bound (counted). */
static enum fill_result group_fill(struct dsd__dgram *d, size_t max_calls,
                                   bool thread, bool force)
{
    size_t bs = d->s->cfg.buffer_size, h = d->scratch_head;
    unsigned nsock = d->ngfd + 1, emptied = 0; /* bit i: socket i emptied */
    unsigned all = (1u << nsock) - 1;
    /* max_calls reads of each socket: the fill is EMPTY only once every
     * socket was emptied in it (the stop drain's four reads in all never
     * saw eight empty, and it read on until its time was up: 2.25 s of a
     * one-CPU job, 2026-12-04) */
    if (max_calls > SIZE_MAX / nsock)
        max_calls = SIZE_MAX;
    else
        max_calls *= nsock;
    struct dsd__ring_src src = {d->scratch, h, d->scratch + d->mmsg_n * h,
                                bs - h};
    for (size_t call = 0; call < max_calls; call++) {
        if (thread && atomic_load_explicit(&d->stop, memory_order_relaxed))
            return FILL_EMPTY;
        char *at;
        size_t room = reserve_batch(d, thread, &at);
        if (room == 0)
            return FILL_FULL;
        int err = 0;
        /* with half the batch held back, the socket holding the bound
         * is read again even if it was emptied: its bound then moves to
         * the time of that read */
        bool crowded = d->held > d->mmsg_n / 2;
        unsigned i = nsock;
        for (unsigned j = 0; j < nsock; j++)
            if ((crowded || !(emptied & (1u << j))) &&
                (i == nsock || d->gwm[j] < d->gwm[i]))
                i = j;
        size_t free = d->mmsg_n - d->held; /* slots not held are free */
        if (i < nsock && free > 0) {
            /* half the free slots, less one for each other socket: each
             * gets read before the batch is full */
            size_t ask = free > nsock ? (free - (nsock - 1)) / 2 : 1;
            if (ask == 0)
                ask = 1;
            /* the read window: msgs[0..ask), on the free list's top
             * slots (msgs[x] on gfree[free - 1 - x]) */
            uint32_t got[DSD_GROUP_BATCH];
            for (size_t x = 0; x < ask; x++) {
                uint32_t sl = got[x] = d->gfree[free - 1 - x];
                struct msghdr *mh = &d->msgs[x].msg_hdr;
                mh->msg_iov = &d->iovs[2 * sl];
                mh->msg_iovlen = bs > h ? 2 : 1;
                mh->msg_control = d->cmsg + sl * DSD_CMSG_SPACE;
                mh->msg_controllen = DSD_CMSG_SPACE;
                mh->msg_flags = 0;
            }
            int k = recvmmsg(sock_fd(d, i), d->msgs, (unsigned)ask,
                             MSG_DONTWAIT, NULL);
            uint64_t now = real_ns();
            if (k < 0) {
                if (errno == EAGAIN || errno == EWOULDBLOCK) {
                    d->gwm[i] = now - DSD_GROUP_RACE_NS;
                    emptied |= 1u << i;
                } else if (errno != EINTR) {
                    err = errno;
                    emptied |= 1u << i;
                }
                k = 0;
            }
            for (int x = 0; x < k; x++) {
                struct mmsghdr *m = &d->msgs[x];
                uint32_t sl = got[x];
                d->lens[sl] = m->msg_len;
                d->flags[sl] =
                    (m->msg_hdr.msg_flags & MSG_TRUNC) ? DSD_RING_F_TRUNC : 0;
                uint64_t ts = read_cmsgs(d, i, &m->msg_hdr);
                d->ts[sl] = ts != 0 ? ts : now;
            }
            if (k > 0 && (size_t)k < ask) {
                d->gwm[i] = now - DSD_GROUP_RACE_NS;
                emptied |= 1u << i;
            } else if (k > 0) {
                d->gwm[i] = d->ts[got[k - 1]];
            }
            /* the slots read (the free list's top k) are held now */
            merge_run(d, got, (size_t)k);
            if (thread) {
                uint64_t t = cmn_mono_ns();
                if (d->prev_read_ns != 0)
                    note_max(&d->max_gap_ns, t - d->prev_read_ns);
                d->prev_read_ns = t;
                if (k > 0)
                    d->last_data_ns = t;
            }
        }
        size_t n = d->held;
        bool drained = emptied == all;
        uint64_t w = UINT64_MAX;
        if (!force && !(drained && !thread))
            w = d->gwm[lowest_bound(d, nsock)];
        size_t p = 0;
        while (p < n && d->ts[d->ord[p]] <= w)
            p++;
        /* Held back whole: the bound is only a bound. The next datagram
         * of the socket holding it is looked at (MSG_PEEK), which moves
         * its bound to just before that datagram's stamp, at most once a
         * socket. Only a batch newer than every socket's next datagram
         * goes past the bound (its oldest half; counted). */
        for (unsigned t = 0; p == 0 && n == d->mmsg_n && t < nsock; t++) {
            unsigned m = lowest_bound(d, nsock);
            d->gwm[m] = peek_bound(d, m);
            w = d->gwm[lowest_bound(d, nsock)];
            while (p < n && d->ts[d->ord[p]] <= w)
                p++;
        }
        if (p == 0 && n == d->mmsg_n) {
            p = n / 2;
            atomic_fetch_add_explicit(&d->merge_forced, 1,
                                      memory_order_relaxed);
        }
        if (p > room)
            p = room;
        if (p > 0) {
            dsd__ring_pack_slots(&d->ring, at, &src, p, d->lens, d->flags,
                                 d->ord);
            if (thread && d->unsignalled_ns == 0)
                d->unsignalled_ns = cmn_mono_ns();
            /* the published slots are free again */
            memcpy(&d->gfree[d->mmsg_n - n], d->ord, p * sizeof(*d->ord));
            memmove(d->ord, &d->ord[p], (n - p) * sizeof(*d->ord));
            d->held = n - p;
        }
        if (err != 0) {
            atomic_store_explicit(&d->last_errno, err, memory_order_relaxed);
            atomic_fetch_add_explicit(&d->read_errors, 1, memory_order_relaxed);
            return FILL_ERROR;
        }
        if (drained)
            return FILL_EMPTY;
    }
    return FILL_MORE;
}

/* Waits until the loop frees room in the ring or asks to stop. */
static void wait_room(struct dsd__dgram *d)
{
    uint64_t t0 = cmn_mono_ns();
    atomic_fetch_add_explicit(&d->full_events, 1, memory_order_relaxed);
    d->prev_read_ns = 0; /* not reading on purpose */
    atomic_store_explicit(&d->ring.prod_waiting, 1, memory_order_seq_cst);
    for (;;) {
        char *at;
        /* Re-check after announcing the wait (see dsd_ring.c). */
        if (dsd__ring_reserve(&d->ring, d->s->cfg.buffer_size, 1,
                              DSD_RING_RESET_AT, &at) > 0 ||
            atomic_load_explicit(&d->stop, memory_order_acquire))
            break;
        struct pollfd p = {d->wake_fd, POLLIN, 0};
        if (poll(&p, 1, -1) > 0) {
            uint64_t v;
            ssize_t r = read(d->wake_fd, &v, sizeof(v));
            (void)r;
        }
    }
    atomic_store_explicit(&d->ring.prod_waiting, 0, memory_order_seq_cst);
    atomic_fetch_add_explicit(&d->full_ns, cmn_mono_ns() - t0,
                              memory_order_relaxed);
}

/* When the loop is due to be woken for what is unsignalled (see
 * DSD_WAKE_DELAY_NS). */
static uint64_t wake_due(const struct dsd__dgram *d)
{
    if (!d->defer_parse)
        return d->unsignalled_ns + DSD_WAKE_DELAY_NS;
    uint64_t quiet = d->last_data_ns + DSD_WAKE_QUIET_NS,
             max = d->unsignalled_ns + DSD_WAKE_MAX_NS;
    return quiet < max ? quiet : max;
}

/* The scheduling of the receive thread, set by the thread itself.
 *
 * Where permitted (CAP_SYS_NICE or RLIMIT_RTPRIO) and not disabled: the
 * lowest real-time priority, so the thread preempts ordinary work the
 * moment a datagram arrives. It never spins (it sleeps in poll when the
 * socket is empty and when the ring is full), and the kernel's RT
 * throttling caps it in any case.
 *
 * Elsewhere (a container has neither): ordinary priority with the
 * shortest EEVDF slice (sched_setattr's sched_runtime for SCHED_OTHER,
 * Linux 6.12+, no privilege needed). A task with a shorter slice gets an
 * earlier virtual deadline, so on wake-up it preempts a thread with the
 * default slice (a few ms) instead of waiting for it to use its slice up,
 * while its share of the CPU stays that of any ordinary thread. Older
 * kernels refuse or ignore it. */
#define DSD_RX_SLICE_NS 100000 /* the kernel's minimum custom slice */
struct dsd__sched_attr {       /* struct sched_attr, linux/sched/types.h */
    uint32_t size, policy;
    uint64_t flags;
    int32_t nice;
    uint32_t priority;
    uint64_t runtime, deadline, period;
};

/* Sets the calling thread's scheduling: real-time when asked and
 * permitted, else the short slice; returns which (enum dsd__prio). */
static int take_priority(bool realtime)
{
    struct sched_param sp = {.sched_priority = 1};
    if (realtime && pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0)
        return DSD_PRIO_FIFO;
    struct dsd__sched_attr a = {
        .size = sizeof(a), .policy = SCHED_OTHER, .runtime = DSD_RX_SLICE_NS};
    if (syscall(SYS_sched_setattr, 0, &a, 0) == 0)
        return DSD_PRIO_SLICE;
    return DSD_PRIO_NORMAL;
}

static void set_own_priority(struct dsd__dgram *d)
{
    int prio = take_priority(d->s->cfg.rx_realtime);
    /* release: the loop logs it once it sees it */
    atomic_store_explicit(&d->prio, prio, memory_order_release);
}

static void log_priority(struct dsd__dgram *d)
{
    int p = atomic_load_explicit(&d->prio, memory_order_acquire);
    if (d->prio_logged || p == DSD_PRIO_UNSET)
        return;
    d->prio_logged = true;
    d->s->rx_realtime += p == DSD_PRIO_FIFO;
    CMN_LOGD(DSD_COMP, "%s: receive thread at %s; %u usable CPUs: %s", d->kind,
             p == DSD_PRIO_FIFO    ? "real-time priority (SCHED_FIFO 1)"
             : p == DSD_PRIO_SLICE ? "normal priority, 0.1 ms slice"
                                   : "normal priority",
             d->usable_cpus,
             d->usable_cpus < 2 ? "never spins"
                                : "reads on through bursts (DSD_SPIN_NS)");
}

/* The CPU time per second the cgroup grants, in CPUs (rounded up), from
 * the text of cgroup v2's cpu.max ("max 100000", "50000 100000"); 0 when
 * unlimited or unreadable. */
unsigned dsd__cpu_max_cpus(const char *text)
{
    size_t q = strcspn(text, " \n");
    if (text[q] != ' ')
        return 0;
    const char *per = text + q + 1;
    uint64_t quota, period;
    if (cmn_parse_u64(cmn_slice(text, q), UINT64_MAX, &quota) != 0 ||
        cmn_parse_u64(cmn_slice(per, strcspn(per, " \n")), UINT64_MAX,
                      &period) != 0 ||
        quota == 0 || period == 0)
        return 0; /* "max" (no quota), or not a quota */
    uint64_t n = quota / period + (quota % period != 0);
    return n > 4096 ? 4096 : (unsigned)n;
}

/* Reads a small file into buf (NUL-terminated); returns the bytes read,
 * or -1. */
static ssize_t read_small(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

/* The CPUs this process may use at once: its affinity, capped by a cgroup
 * CPU quota (a Cloud Run or Lambda container of one vCPU or less often
 * sees two CPUs in its affinity; spinning there would burn the job's own
 * quota). cgroup v2, then v1's cpu controller. */
unsigned dsd__usable_cpus(void)
{
    cpu_set_t cpus;
    unsigned n = sched_getaffinity(0, sizeof(cpus), &cpus) == 0
                     ? (unsigned)CPU_COUNT(&cpus)
                     : 1;
    char buf[64];
    unsigned q = 0;
    if (read_small("/sys/fs/cgroup/cpu.max", buf, sizeof(buf)) > 0) {
        q = dsd__cpu_max_cpus(buf);
    } else {
        char per[32];
        if (read_small("/sys/fs/cgroup/cpu/cpu.cfs_quota_us", buf,
                       sizeof(buf)) > 0 &&
            read_small("/sys/fs/cgroup/cpu/cpu.cfs_period_us", per,
                       sizeof(per)) > 0 &&
            buf[0] != '-') {
            char v2[96];
            buf[strcspn(buf, "\n")] = '\0';
            snprintf(v2, sizeof(v2), "%.31s %.31s", buf, per);
            q = dsd__cpu_max_cpus(v2);
        }
    }
    return q != 0 && q < n ? q : n;
}

/* The wake-up policy (DSD_WAKE_*) and the batch scratch's pages, on the
 * receive thread before its first read: a first touch costs ~10 us a page
 * on the 2-vCPU test VM (~0.65 ms for a page in each of 64 slots, against
 * ~1.5 ms of back-to-back one-line datagrams that a 212992-byte socket
 * buffer holds), where mapping the slots' heads in with one call costs
 * ~0.02 ms. It overlaps the child's exec. */
static void reader_init(struct dsd__dgram *d)
{
    bool one_cpu = d->usable_cpus < 2;
    d->defer_parse = !one_cpu && d->ring.cap / 4 > DSD_WAKE_BACKLOG;
    d->spin_credit_ns = DSD_SPIN_CREDIT_NS;
    d->spin_at = cmn_mono_ns();
    d->wake_backlog = d->defer_parse ? d->ring.cap / 4 : DSD_WAKE_BACKLOG;
    /* The slots' heads, where the kernel writes a datagram: mapped in
     * ahead in one call, or touched where the kernel cannot. Touching a
     * page in each 8 KiB slot cost the child's spawn ~0.9 ms when this
     * thread ran it at real-time priority on the CPU the spawn wanted.
     * A socket group's batch (DSD_GROUP_BATCH) gets the first
     * DSD_MMSG_MAX slots' so (its first reads use those): the rest are
     * touched as a backlog first needs them, so an idle group's RSS
     * stays that of one socket (all 256 mapped in: +416 KiB). */
    size_t slots = d->mmsg_n < DSD_MMSG_MAX ? d->mmsg_n : DSD_MMSG_MAX;
    size_t len = slots * d->scratch_head;
    if (cmn_mm_rewriting() || cmn_populate(d->scratch, len) != 0)
        cmn_touch_pages(d->scratch, len);
}

/* Whether to read again at once instead of sleeping (see DSD_SPIN_NS);
 * keeps the spin credit. */
static bool spin_again(struct dsd__dgram *d, uint64_t now, bool spinning)
{
    uint64_t dt = now - d->spin_at;
    d->spin_at = now;
    if (spinning) {
        d->spin_credit_ns -= (int64_t)dt;
        atomic_fetch_add_explicit(&d->spin_ns, dt, memory_order_relaxed);
    }
    d->spin_credit_ns += (int64_t)(dt / DSD_SPIN_SHARE);
    if (d->spin_credit_ns > DSD_SPIN_CREDIT_NS)
        d->spin_credit_ns = DSD_SPIN_CREDIT_NS;
    return d->usable_cpus >= 2 && d->spin_credit_ns > 0 &&
           now - d->last_data_ns < DSD_SPIN_NS;
}

/* The next nap (see DSD_NAP_FILL), from a buffer that held queued bytes
 * of rcvbuf elapsed ns after the socket was last emptied. The fill rate
 * aimed at is the fastest seen lately (n->peak, decaying by 1/DSD_NAP_DECAY
 * a nap): on one CPU the sender fills the buffer only while the loop does
 * not run, so one nap can see a fraction of the rate the next one gets. */
uint64_t dsd__nap_next(struct dsd__nap *n, uint64_t elapsed_ns, uint64_t queued,
                       uint64_t rcvbuf)
{
    if (queued == 0 || rcvbuf == 0)
        return n->ns; /* nothing came: the next read ends the stream */
    if (elapsed_ns == 0)
        elapsed_ns = 1;
    /* bytes a millisecond: queued and rcvbuf are 32-bit (SO_MEMINFO) */
    uint64_t rate = queued * 1000000u / elapsed_ns;
    uint64_t held = n->peak - n->peak / DSD_NAP_DECAY;
    n->peak = rate > held ? rate : held;
    if (n->peak == 0)
        n->peak = 1;
    uint64_t grow = 2 * (n->ns > DSD_NAP_MIN_NS ? n->ns : DSD_NAP_MIN_NS);
    uint64_t want = rcvbuf / DSD_NAP_FILL * 1000000u / n->peak;
    if (queued >= rcvbuf / 2 && want > n->ns / 2)
        want = n->ns / 2; /* half full or more: halve, whatever the rate */
    if (want > grow)
        want = grow;
    uint64_t max = n->max != 0 ? n->max : DSD_NAP_MAX_NS;
    if (want > max)
        want = max;
    n->ns = want < DSD_NAP_MIN_NS ? 0 : want;
    return n->ns;
}

/* Naps after a round that read data (see DSD_NAP_FILL); empty_ns is when
 * that round found the socket empty. Ends early on a wake-up fd write. */
static void nap(struct dsd__dgram *d, uint64_t empty_ns)
{
    struct pollfd p = {d->wake_fd, POLLIN, 0};
    struct timespec ts = {0, (long)d->nap.ns};
    if (ppoll(&p, 1, &ts, NULL) > 0) {
        uint64_t v;
        ssize_t rd = read(d->wake_fd, &v, sizeof(v));
        (void)rd;
    }
    /* the first socket: in a group each gets its share of the datagrams,
     * and the first stands for them all */
    uint32_t mi[SK_MEMINFO_VARS];
    read_sock_meminfo(d, 0, mi);
    atomic_fetch_add_explicit(&d->naps, 1, memory_order_relaxed);
    dsd__nap_next(&d->nap, cmn_mono_ns() - empty_ns, mi[SK_MEMINFO_RMEM_ALLOC],
                  mi[SK_MEMINFO_RCVBUF]);
}

/* Whether the loop is woken now so that the ring can wrap early: the head
 * is past DSD_RING_RESET_AT. With one CPU the loop is otherwise woken
 * every DSD_WAKE_BACKLOG bytes, so at the end of a lap it was often too
 * far behind for an early wrap (dsd_ring.c early_room): the head then went
 * on through the whole 16 MiB, mapping pages in (a hypervisor exit each on
 * the test VM). A loop that defers parsing (two CPUs) wraps early once it
 * has caught up, as before. */
static bool lap_end(const struct dsd__dgram *d)
{
    uint64_t head = atomic_load_explicit(&d->ring.head, memory_order_relaxed);
    return !d->defer_parse && head % d->ring.cap >= DSD_RING_RESET_AT;
}

static void *reader_main(void *arg)
{
    struct dsd__dgram *d = arg;
    bool error = false;
    /* The priority first, then the scratch. The other way round, the
     * thread faulted its scratch in (~0.9 ms then) at ordinary priority
     * while the child was spawned and started sending at full speed on a
     * 2-CPU machine: it sometimes read its first datagram only once the
     * socket was full (a 212992-byte buffer holds ~550 one-line datagrams,
     * about 2 ms of a sender), in about 1 of 100 bursts. */
    set_own_priority(d);
    reader_init(d);
    /* Drops before the thread first ran: the socket is bound before the
     * thread starts (after the child's spawn, serverless-init), and a
     * sender that fills the buffer meanwhile loses datagrams that no
     * pause or wake-up explains. Counted with the wake-ups' (below). */
    uint64_t at_start = read_meminfo(d);
    if (at_start > 0)
        atomic_fetch_add_explicit(&d->asleep_drops, at_start,
                                  memory_order_relaxed);
    bool spinning = false;
    bool naps = d == &d->s->udp;
    /* a group of n sockets holds n times one's buffer, each filled at
     * its share of the rate: its naps may be n / 4 times as long (fewer
     * reads of a few datagrams each) */
    uint64_t nap_max =
        DSD_NAP_MAX_NS * (d->ngfd + 1 >= 8 ? (d->ngfd + 1) / 4 : 1);
    d->nap = (struct dsd__nap){DSD_NAP_START_NS, 0, nap_max};
    while (!atomic_load_explicit(&d->stop, memory_order_acquire)) {
        uint64_t data_before = d->last_data_ns;
        /* a group holds datagrams back (group_fill): a sync request
         * publishes them all, and is answered for what it covered */
        uint64_t req_before =
            atomic_load_explicit(&d->sync_req, memory_order_acquire);
        bool sync_due = atomic_load_explicit(
                            &d->sync_ack, memory_order_relaxed) != req_before;
        enum fill_result r = dgram_fill(d, SIZE_MAX, true, sync_due);
        if (r == FILL_FULL) {
            signal_loop(d);
            wait_room(d);
            continue;
        }
        error = r == FILL_ERROR;
        uint64_t now = cmn_mono_ns();
        uint64_t used = dsd__ring_used(&d->ring);
        /* The socket was empty (or failing): every sync request made
         * before now is answered by what was published. */
        uint64_t req = atomic_load_explicit(&d->sync_req, memory_order_acquire);
        if (d->ngfd > 0)
            req = d->held == 0 ? req_before
                               : atomic_load_explicit(&d->sync_ack,
                                                      memory_order_relaxed);
        if (atomic_load_explicit(&d->sync_ack, memory_order_relaxed) != req) {
            atomic_store_explicit(&d->sync_ack, req, memory_order_release);
            signal_loop(d);
        } else if (d->unsignalled_ns != 0 &&
                   (used >= d->wake_backlog || now >= wake_due(d) ||
                    lap_end(d))) {
            signal_loop(d);
        }
        spinning = !error && spin_again(d, now, spinning);
        if (spinning)
            continue;
        /* this round read data: dgram_fill moved last_data_ns */
        if (naps && !error && d->nap.ns != 0 &&
            d->last_data_ns != data_before) {
            nap(d, now);
            continue;
        }
        struct pollfd p[DSD_GROUP_MAX + 1] = {{d->fd, POLLIN, 0},
                                              {d->wake_fd, POLLIN, 0}};
        for (unsigned i = 0; i < d->ngfd; i++)
            p[2 + i] = (struct pollfd){d->gfd[i], POLLIN, 0};
        struct timespec ts, *tsp = NULL;
        int np = 2 + (int)d->ngfd;
        if (error) {
            np = 1; /* not the socket: it would report the error again */
            ts = (struct timespec){0, DSD_ERROR_PAUSE_MS * 1000000L};
            tsp = &ts;
        } else if (d->unsignalled_ns != 0) {
            uint64_t left = wake_due(d) - now;
            ts = (struct timespec){(time_t)(left / 1000000000u),
                                   (long)(left % 1000000000u)};
            tsp = &ts;
        } else if (d->ring.touched > 0) {
            ts = (struct timespec){DSD_IDLE_TRIM_MS / 1000, 0};
            tsp = &ts;
        }
        /* a group's datagrams held back are published once every socket
         * has been read again that much later (group_fill) */
        if (d->held > 0 && !error &&
            (tsp == NULL || ts.tv_sec > 0 || ts.tv_nsec > DSD_GROUP_RACE_NS)) {
            ts = (struct timespec){0, DSD_GROUP_RACE_NS};
            tsp = &ts;
        }
        /* Drops while it sleeps: the socket is empty now (EAGAIN), so
         * what its counter gains until the thread runs again happened
         * after a datagram woke it and before it ran: a wake-up later
         * than the buffer lasts (a halted virtual CPU is the host's to
         * restart). A system call before and after each sleep. */
        uint64_t drops_before = np >= 2 ? read_meminfo(d) : 0;
        /* The sleep itself is a pause of its own choosing (its drops are
         * counted above and below), but the time awake on either side of
         * it is not: from the last read to here, and from the wake-up to
         * the next read. A virtual CPU stopped in either was a pause that
         * neither count showed (CI of b8523c2: 44 drops, none asleep,
         * longest pause 0.13 ms). */
        uint64_t awake_ns =
            d->prev_read_ns != 0 ? cmn_mono_ns() - d->prev_read_ns : 0;
        int n = ppoll(np == 1 ? &p[1] : p, (nfds_t)np, tsp, NULL);
        /* Quiet for longer than a nap: a new stream, a new first nap. A
         * rate too high to nap at (nap.ns 0) that left the socket empty
         * for the shortest nap is probed again from there. */
        uint64_t slept = cmn_mono_ns() - now;
        if (slept > nap_max)
            d->nap = (struct dsd__nap){DSD_NAP_START_NS, 0, nap_max};
        else if (d->nap.ns == 0 && slept >= DSD_NAP_MIN_NS)
            d->nap.ns = DSD_NAP_MIN_NS;
        bool readable = p[0].revents & POLLIN;
        for (int i = 2; i < np; i++)
            readable |= (p[i].revents & POLLIN) != 0;
        if (n > 0 && np >= 2 && readable) {
            uint64_t drops_now = read_meminfo(d);
            if (drops_now > drops_before)
                atomic_fetch_add_explicit(&d->asleep_drops,
                                          drops_now - drops_before,
                                          memory_order_relaxed);
        }
        d->prev_read_ns = cmn_mono_ns() - awake_ns;
        if (n == 0 && tsp != NULL && d->unsignalled_ns == 0 && !error &&
            used == 0 && d->held == 0)
            dsd__ring_trim(&d->ring); /* idle: give the pages back */
        if (n > 0 && (p[1].revents & POLLIN)) {
            uint64_t v;
            ssize_t rd = read(d->wake_fd, &v, sizeof(v));
            (void)rd;
        }
    }
    atomic_store_explicit(&d->done, 1, memory_order_release);
    return NULL;
}

/* ------------------------------------------------------------------------
 * Consumer: ring -> parser (loop thread)
 */

static void log_read_errors(struct dsd__dgram *d)
{
    uint64_t n = atomic_load_explicit(&d->read_errors, memory_order_relaxed);
    if (n == d->errors_logged)
        return;
    d->errors_logged = n;
    int e = atomic_load_explicit(&d->last_errno, memory_order_relaxed);
    cmn_log_rl(&d->s->rl_io, CMN_LOG_ERROR, DSD_COMP,
               "%s read: %s (%llu "
               "errors)",
               d->kind, uv_strerror(-e), (unsigned long long)n);
}

/* Parses one datagram (a truncated one is counted and dropped). */
static void dgram_parse(struct dsd__dgram *d, const char *data, uint32_t len,
                        bool truncated)
{
    struct dsd *s = d->s;
    s->stats.packets++;
    if (truncated) {
        s->stats.bytes += s->cfg.buffer_size;
        s->stats.packets_truncated++;
        cmn_log_rl(&s->rl_io, CMN_LOG_WARN, DSD_COMP,
                   "%s: dropping a datagram larger than "
                   "dogstatsd_buffer_size (%zu bytes)",
                   d->kind, s->cfg.buffer_size);
    } else {
        s->stats.bytes += len;
        dsd_process_packet(s, data, len, d->eol_required);
    }
}

/* The main ring's position where the rescuer's next episode goes (its
 * MARK), or UINT64_MAX when it has published none. */
static uint64_t next_mark(struct dsd__dgram *d)
{
    if (d->res.base == NULL)
        return UINT64_MAX;
    uint64_t head = atomic_load_explicit(&d->res.head, memory_order_acquire);
    struct dsd__ring_rec rec;
    uint64_t pos = d->rpos, at;
    while (dsd__ring_peek(&d->res, pos, head, &rec)) {
        if (rec.flags & DSD_RING_F_MARK) {
            memcpy(&at, rec.data, sizeof(at));
            return at;
        }
        pos = rec.next; /* a PAD */
    }
    return UINT64_MAX;
}

/* Parses the rescuer's episode from its MARK on, at most max bytes: up to
 * its END (d->ep_open is then false) or what the rescuer has published so
 * far (the main ring waits). Returns the bytes. */
static uint64_t parse_episode(struct dsd__dgram *d, uint64_t max)
{
    bool over = atomic_load_explicit(&d->res_done, memory_order_acquire);
    uint64_t head = atomic_load_explicit(&d->res.head, memory_order_acquire);
    uint64_t pos = d->rpos, done = 0;
    struct dsd__ring_rec rec;
    while (done < max && dsd__ring_peek(&d->res, pos, head, &rec)) {
        done += rec.next - pos;
        pos = rec.next;
        if (rec.flags & DSD_RING_F_END) {
            d->ep_open = false;
            break;
        }
        if (!(rec.flags & (DSD_RING_F_PAD | DSD_RING_F_MARK)))
            dgram_parse(d, rec.data, rec.len, rec.flags & DSD_RING_F_TRUNC);
    }
    d->rpos = pos;
    (void)dsd__ring_release(&d->res, pos); /* the rescuer never waits */
    if (over && pos == head)
        d->ep_open = false; /* it ended without its END */
    d->ep_wait = d->ep_open && pos == head;
    return done;
}

/* Parses published datagrams and the rescuer's episodes where they
 * belong, at most max_bytes in all. Returns true when the ring was
 * emptied and no episode is left. */
static bool dgram_consume(struct dsd__dgram *d, uint64_t max_bytes)
{
    uint64_t head = atomic_load_explicit(&d->ring.head, memory_order_acquire);
    uint64_t pos = d->cpos, released = pos, done = 0, mark = UINT64_MAX;
    struct dsd__ring_rec rec;
    while (done < max_bytes) {
        if (d->ep_open) {
            done += parse_episode(d, max_bytes - done);
            if (d->ep_open)
                break; /* the rescuer is still at it: the ring waits */
            continue;
        }
        mark = next_mark(d);
        /* The rescuer reads the head, then publishes its MARK: the loop
         * can have parsed past that head meanwhile (the receive thread
         * published on). Such an episode goes where the loop is: its
         * reads and those the loop parsed were concurrent. */
        if (mark <= pos) {
            d->ep_open = true;
            continue;
        }
        uint64_t stop = mark < head ? mark : head;
        while (done < max_bytes && pos != stop &&
               dsd__ring_peek(&d->ring, pos, stop, &rec)) {
            if (!(rec.flags & DSD_RING_F_PAD))
                dgram_parse(d, rec.data, rec.len, rec.flags & DSD_RING_F_TRUNC);
            done += rec.next - pos;
            pos = rec.next;
            if (pos - released >= DSD_RELEASE_STEP) {
                if (dsd__ring_release(&d->ring, pos))
                    wake(d->wake_fd);
                released = pos;
            }
        }
        if (pos != mark)
            break;
        d->ep_open = true; /* its MARK is read with it */
    }
    d->cpos = pos;
    if (pos != released && dsd__ring_release(&d->ring, pos))
        wake(d->wake_fd);
    return pos == head && !d->ep_open && next_mark(d) == UINT64_MAX;
}

/* ------------------------------------------------------------------------
 * The rescuer (see DSD_RESCUE_RATE): a thread that reads the socket while
 * the receive thread is kept from it
 */

/* Publishes one MARK or END record in the rescuer's ring (data: len
 * bytes, 8 at most). Room for it is left by every batch (rescue()). */
static bool res_record(struct dsd__dgram *d, uint32_t flag, const void *data,
                       uint32_t len)
{
    char *at;
    if (dsd__ring_reserve(&d->res, sizeof(uint64_t), 1, DSD_RING_RESET_AT,
                          &at) == 0)
        return false;
    struct dsd__ring_src src = {data, len, NULL, 0};
    dsd__ring_pack(&d->res, at, &src, 1, &len, &flag);
    return true;
}

/* One episode: reads the socket while the receive thread publishes
 * nothing new, for at most DSD_RESCUE_MAX_NS, into the rescuer's ring.
 * Returns true when the socket was emptied (or nothing can be read now:
 * the ring is full). */
static bool rescue(struct dsd__dgram *d)
{
    uint64_t head = atomic_load_explicit(&d->ring.head, memory_order_acquire);
    if (!res_record(d, DSD_RING_F_MARK, &head, sizeof(head)))
        return true; /* full: the loop parses it first */
    uint64_t until = cmn_mono_ns() + DSD_RESCUE_MAX_NS;
    size_t bs = d->s->cfg.buffer_size;
    bool emptied = false;
    atomic_fetch_add_explicit(&d->rescues, 1, memory_order_relaxed);
    for (;;) {
        char *at;
        size_t n = dsd__ring_reserve(&d->res, bs, DSD_RESCUE_SLOTS,
                                     DSD_RING_RESET_AT, &at);
        if (n < 2)
            break; /* full: the rest waits in the socket */
        n--;       /* a slot's room stays free for the END */
        for (size_t i = 0; i < n; i++)
            d->rmsgs[i].msg_hdr.msg_flags = 0;
        int k = recvmmsg(d->fd, d->rmsgs, (unsigned)n, MSG_DONTWAIT, NULL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0) {
            emptied = true; /* or an error: the receive thread reports it */
            break;
        }
        for (int i = 0; i < k; i++) {
            d->rlens[i] = d->rmsgs[i].msg_len;
            d->rflags[i] = (d->rmsgs[i].msg_hdr.msg_flags & MSG_TRUNC)
                               ? DSD_RING_F_TRUNC
                               : 0;
        }
        struct dsd__ring_src src = {d->rscratch, bs, NULL, 0};
        dsd__ring_pack(&d->res, at, &src, (size_t)k, d->rlens, d->rflags);
        atomic_fetch_add_explicit(&d->rescued, (uint64_t)k,
                                  memory_order_relaxed);
        wake_loop(d); /* signal_loop's bookkeeping is the receive thread's */
        emptied = (size_t)k < n;
        if (emptied || cmn_mono_ns() >= until ||
            atomic_load_explicit(&d->ring.head, memory_order_acquire) != head ||
            atomic_load_explicit(&d->stop, memory_order_relaxed))
            break; /* emptied, time is up, the thread is back, or a stop */
    }
    /* the END: a batch leaves a slot's room for it; the loop frees the
     * rest in any case */
    while (!res_record(d, DSD_RING_F_END, NULL, 0) &&
           !atomic_load_explicit(&d->stop, memory_order_relaxed)) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    wake_loop(d);
    return emptied;
}

/* A tick; returns the time to the next one, 0 for none (idle for
 * DSD_RESCUE_IDLE ticks: the rescuer waits for the socket's next
 * datagram). */
static uint64_t rescue_check(struct dsd__dgram *d)
{
    uint32_t mi[SK_MEMINFO_VARS];
    read_sock_meminfo(d, 0, mi); /* no group with a rescuer: one socket */
    uint64_t queued = mi[SK_MEMINFO_RMEM_ALLOC];
    uint64_t head = atomic_load_explicit(&d->ring.head, memory_order_acquire);
    bool moved = head != d->rescue_head;
    d->rescue_head = head;
    if (queued == 0 && !moved) {
        if (++d->rescue_idle < DSD_RESCUE_IDLE)
            return d->rescue_tick_ns;
        d->rescue_idle = 0;
        dsd__ring_trim(&d->res); /* when the loop has parsed it all */
        return 0;
    }
    d->rescue_idle = 0;
    if (4 * queued >= mi[SK_MEMINFO_RCVBUF] &&
        !atomic_load_explicit(&d->ring.prod_waiting, memory_order_acquire) &&
        !rescue(d))
        return DSD_RESCUE_TICK_MIN; /* more to read soon */
    return d->rescue_tick_ns;
}

static void *rescuer_main(void *arg)
{
    struct dsd__dgram *d = arg;
    pthread_setname_np(pthread_self(), "dp-rescue-udp");
    /* scheduled as the receive thread is (the same choice, made the same
     * way) */
    (void)take_priority(d->s->cfg.rx_realtime);
    /* the effective SO_RCVBUF read at bind (the kernel's count) */
    uint64_t rcvbuf = d->s->rcvbuf_udp > 0 ? (uint64_t)d->s->rcvbuf_udp : 0;
    uint64_t t = rcvbuf * 1000000u / 4 / DSD_RESCUE_RATE;
    d->rescue_tick_ns = t < DSD_RESCUE_TICK_MIN   ? DSD_RESCUE_TICK_MIN
                        : t > DSD_RESCUE_TICK_MAX ? DSD_RESCUE_TICK_MAX
                                                  : t;
    uint64_t next = 0; /* idle: until the first datagram */
    while (!atomic_load_explicit(&d->stop, memory_order_acquire)) {
        /* ticking: the wake-up fd only; idle: the socket too, whose next
         * datagram starts the ticks again (the receive thread may be
         * stopped by then) */
        struct pollfd p[2] = {{d->res_wake_fd, POLLIN, 0}, {d->fd, POLLIN, 0}};
        struct timespec ts = {(time_t)(next / 1000000000u),
                              (long)(next % 1000000000u)};
        if (ppoll(p, next != 0 ? 1 : 2, next != 0 ? &ts : NULL, NULL) > 0 &&
            (p[0].revents & POLLIN)) {
            uint64_t v;
            ssize_t rd = read(d->res_wake_fd, &v, sizeof(v));
            (void)rd;
        }
        /* a socket that polls as failing, not readable: not a stream
         * (the receive thread reports the error), and no reason to poll
         * it again at once */
        bool failing = next == 0 && (p[1].revents & ~POLLIN) != 0 &&
                       !(p[1].revents & POLLIN);
        if (atomic_load_explicit(&d->stop, memory_order_acquire))
            break;
        next = rescue_check(d);
        if (failing && next == 0)
            next = DSD_RESCUE_TICK_MAX;
    }
    atomic_store_explicit(&d->res_done, 1, memory_order_release);
    return NULL;
}

/* By the loop, right after the receive thread (dsd__dgram_receive; UDP).
 * It waits on the socket until the first datagram, then ticks.
 *
 * Where it is started from, measured on the 2-vCPU test VM (2026-12-03/04):
 * - by the loop at its first wake-up: with defer_parse that wake-up came
 *   once a burst was over (the socket quiet for DSD_WAKE_QUIET_NS), too
 *   late for a stop in its middle (CI of 9e8f1cf: 14 740 datagrams lost
 *   over a 100 ms stop, nothing rescued); woken at the first data, the
 *   loop took 0.2-28 ms to run (it waits behind the sender, or behind
 *   the spinning receive thread on its CPU);
 * - by the receive thread at its first data: creating a thread took it
 *   from the socket for milliseconds under AddressSanitizer (17 ms with
 *   a stack of glibc's while the loop loaded libcurl; 3-10 ms with a
 *   stack mapped ahead: losses in most small-buffer bursts there);
 * - by the loop as the pipeline starts (dsd__dgram_start, after the
 *   receive threads): that comes after the sink and the forwarder are
 *   built (libcurl's load), 0.1 s and more after the receive thread on a
 *   loaded CI machine, where the child's first burst of 20 000 datagrams
 *   was over first (CI of 42b56b9: no rescuer 0.1 s after it).
 * Every signal blocked, as for the receive thread. */
static void start_rescuer(struct dsd__dgram *d)
{
    pthread_attr_t attr;
    sigset_t all, old;
    if (pthread_attr_init(&attr) != 0)
        return;
    pthread_attr_setstacksize(&attr, DSD_RESCUE_STACK);
    atomic_store_explicit(&d->res_done, 0, memory_order_relaxed);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&d->res_thread, &attr, rescuer_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        CMN_LOGW(DSD_COMP, "%s: no rescuer thread: %s", d->kind, strerror(rc));
        return;
    }
    d->res_started = true;
}

/* The rescuer's ring, batch and wake-up: UDP only (a Unix datagram sender
 * blocks instead of losing), with two or more usable CPUs (with one it would
 * stop with the receive thread). Returns whether it can run; not running is not
 * an error. */
static bool rescuer_alloc(struct dsd__dgram *d)
{
    if (d != &d->s->udp || d->usable_cpus < 2 || d->ngfd > 0)
        return false; /* a group: see DSD_GROUP_AIM */
    if (d->rmsgs != NULL)
        return d->res_wake_fd >= 0;
    size_t bs = d->s->cfg.buffer_size, n = DSD_RESCUE_SLOTS;
    if (d->res_wake_fd < 0 &&
        (d->res_wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return false;
    if (d->res.base == NULL && dsd__ring_init(&d->res, DSD_RESCUE_BYTES) != 0)
        return false;
    struct mmsghdr *m = cmn_calloc(n, sizeof(*m));
    struct iovec *v = cmn_calloc(n, sizeof(*v));
    char *sc = cmn_malloc(n * bs); /* touched by the first rescue only */
    if (m == NULL || v == NULL || sc == NULL) {
        cmn_free(m);
        cmn_free(v);
        cmn_free(sc);
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        v[i] = (struct iovec){sc + i * bs, bs};
        m[i].msg_hdr.msg_iov = &v[i];
        m[i].msg_hdr.msg_iovlen = 1;
    }
    d->rmsgs = m;
    d->riovs = v;
    d->rscratch = sc;
    return true;
}

/* Waits awake (spin) for a thread's last act (*done) for at most
 * DSD_JOIN_SPIN_NS, then lets it go; joins it when it has not got there. */
static void join_thread(pthread_t t, _Atomic int *done, bool spin)
{
    uint64_t until = cmn_mono_ns() + DSD_JOIN_SPIN_NS;
    while (spin && !atomic_load_explicit(done, memory_order_acquire) &&
           cmn_mono_ns() < until)
        ;
    if (atomic_load_explicit(done, memory_order_acquire))
        pthread_detach(t);
    else
        pthread_join(t, NULL);
}

/* At stop, after the receive thread is done; woken with it
 * (dsd__dgram_join). Waits for its last act as for the receive thread's. */
static void rescuer_join(struct dsd__dgram *d)
{
    if (!d->res_started)
        return;
    join_thread(d->res_thread, &d->res_done, true);
    d->res_started = false;
}

static void on_async(uv_async_t *h)
{
    struct dsd__dgram *d = h->data;
    log_read_errors(d);
    log_priority(d);
    /* The ack is read before the data it covers (published first). */
    uint64_t ack = atomic_load_explicit(&d->sync_ack, memory_order_acquire);
    if (!dgram_consume(d, DSD_CONSUME_BYTES)) {
        /* more: go on at the next loop iteration, unless the ring waits
         * for the rescuer's episode (it wakes the loop as it goes) */
        if (!d->ep_open || !d->ep_wait)
            uv_async_send(h);
        return;
    }
    /* Emptied after the ack was read: all it covers is parsed. */
    if (ack >= d->sync_target && d->synced < d->sync_target) {
        d->synced = d->sync_target;
        if (d->s->sync_cb != NULL)
            dsd__sync_check(d->s);
    }
}

void dsd__dgram_sync(struct dsd__dgram *d)
{
    d->sync_target =
        atomic_fetch_add_explicit(&d->sync_req, 1, memory_order_acq_rel) + 1;
    wake(d->wake_fd);
}

bool dsd__dgram_synced(const struct dsd__dgram *d)
{
    return !d->live || !d->thread_live || d->synced >= d->sync_target;
}

/* ------------------------------------------------------------------------
 * Start, stop, stats
 */

static int alloc_batch(struct dsd__dgram *d)
{
    if (d->msgs != NULL)
        return 0; /* an earlier, failed dsd__dgram_receive got this far */
    size_t bs = d->s->cfg.buffer_size;
    size_t n = DSD_MMSG_BYTES / bs;
    size_t max = d->ngfd > 0 ? DSD_GROUP_BATCH : DSD_MMSG_MAX;
    d->mmsg_n = n < 1 ? 1 : n > max ? max : n;
    d->msgs = cmn_calloc(d->mmsg_n, sizeof(*d->msgs));
    d->iovs = cmn_calloc(2 * d->mmsg_n, sizeof(*d->iovs));
    d->cmsg = cmn_calloc(d->mmsg_n, DSD_CMSG_SPACE);
    d->lens = cmn_calloc(d->mmsg_n, sizeof(*d->lens));
    d->flags = cmn_calloc(d->mmsg_n, sizeof(*d->flags));
    d->scratch = cmn_malloc(d->mmsg_n * bs); /* touched as datagrams land */
    if (d->ngfd > 0) {
        d->ts = cmn_calloc(d->mmsg_n, sizeof(*d->ts));
        d->ord = cmn_calloc(d->mmsg_n, sizeof(*d->ord));
        d->gfree = cmn_calloc(d->mmsg_n, sizeof(*d->gfree));
        d->gtmp = cmn_calloc(d->mmsg_n, sizeof(*d->gtmp));
        if (d->gfree != NULL) /* every slot free, the first read first */
            for (size_t i = 0; i < d->mmsg_n; i++)
                d->gfree[i] = (uint32_t)(d->mmsg_n - 1 - i);
    }
    if (!d->msgs || !d->iovs || !d->cmsg || !d->lens || !d->flags ||
        !d->scratch ||
        (d->ngfd > 0 && (!d->ts || !d->ord || !d->gfree || !d->gtmp)))
        return UV_ENOMEM;
    size_t h = bs < DSD_SCRATCH_HEAD ? bs : DSD_SCRATCH_HEAD;
    d->scratch_head = h;
    char *tails = d->scratch + d->mmsg_n * h;
    for (size_t i = 0; i < d->mmsg_n; i++) {
        d->iovs[2 * i] = (struct iovec){d->scratch + i * h, h};
        d->iovs[2 * i + 1] = (struct iovec){tails + i * (bs - h), bs - h};
        d->msgs[i].msg_hdr.msg_iov = &d->iovs[2 * i];
        d->msgs[i].msg_hdr.msg_iovlen = bs > h ? 2 : 1;
        d->msgs[i].msg_hdr.msg_control = d->cmsg + i * DSD_CMSG_SPACE;
    }
    return 0;
}

void dsd__dgram_free(struct dsd__dgram *d)
{
    cmn_free(d->msgs);
    cmn_free(d->iovs);
    cmn_free(d->cmsg);
    cmn_free(d->lens);
    cmn_free(d->flags);
    cmn_free(d->ts);
    cmn_free(d->ord);
    cmn_free(d->gfree);
    cmn_free(d->gtmp);
    d->ts = NULL;
    d->ord = NULL;
    d->gfree = NULL;
    d->gtmp = NULL;
    cmn_free(d->scratch);
    cmn_free(d->rmsgs);
    cmn_free(d->riovs);
    cmn_free(d->rscratch);
    dsd__ring_free(&d->res);
    d->rmsgs = NULL;
    d->riovs = NULL;
    d->rscratch = NULL;
    d->scratch = NULL;
    d->msgs = NULL;
    d->iovs = NULL;
    d->cmsg = NULL;
    d->lens = d->flags = NULL;
    dsd__ring_free(&d->ring);
    if (d->wake_fd >= 0)
        close(d->wake_fd);
    d->wake_fd = -1;
    if (d->res_wake_fd >= 0)
        close(d->res_wake_fd);
    d->res_wake_fd = -1;
}

/* The receive thread blocks every signal: they belong to the loop. */
static int start_thread(struct dsd__dgram *d)
{
    pthread_attr_t attr;
    sigset_t all, old;
    int rc = pthread_attr_init(&attr);
    if (rc != 0)
        return -rc;
    pthread_attr_setstacksize(&attr, DSD_THREAD_STACK);
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    atomic_store_explicit(&d->done, 0, memory_order_relaxed);
    rc = pthread_create(&d->thread, &attr, reader_main, d);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0)
        return -rc;
    /* for top -H and the tests that stop it (a name, not an interface) */
    pthread_setname_np(d->thread, d == &d->s->udp ? "dp-rx-udp" : "dp-rx-uds");
    d->thread_live = true;
    return 0;
}

int dsd__dgram_receive(struct dsd__dgram *d)
{
    if (d->thread_live || d->fd < 0)
        return 0;
    int rc = alloc_batch(d);
    if (rc != 0)
        return rc;
    if (d->ring.base == NULL &&
        (rc = dsd__ring_init(&d->ring, d->s->ring_size)) != 0)
        return rc;
    if (d->wake_fd < 0 &&
        (d->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0)
        return -errno;
    /* for the receive thread and the rescuer (published to the loop's
     * later reads with prio) */
    if (d->usable_cpus == 0)
        d->usable_cpus = dsd__usable_cpus();
    bool rescuer = rescuer_alloc(d);
    if ((rc = start_thread(d)) != 0)
        return rc;
    if (rescuer)
        start_rescuer(d);
    return 0;
}

int dsd__dgram_start(struct dsd__dgram *d)
{
    int rc = dsd__dgram_receive(d);
    if (rc != 0)
        return rc;
    if ((rc = uv_async_init(d->s->loop, &d->async, on_async)) != 0)
        return rc;
    d->async.data = d;
    d->live = true;
    d->s->nlive++;
    /* From now on the receive thread wakes the loop; what it received
     * before is parsed at the next loop iteration. */
    atomic_store_explicit(&d->consumer_ready, 1, memory_order_release);
    uv_async_send(&d->async);
    return 0;
}

void dsd__dgram_join(struct dsd__dgram *d)
{
    if (!d->thread_live)
        return;
    atomic_store_explicit(&d->stop, 1, memory_order_release);
    wake(d->wake_fd);
    if (d->res_wake_fd >= 0)
        wake(d->res_wake_fd); /* the rescuer, if it runs */
    /* Wait for the thread's last act awake, then let it go (detached):
     * a join sleeps until the kernel has torn the thread down, and waking
     * the joiner costs another cross-CPU wake-up (0.1-0.3 ms on the test
     * VM) on the path from the child's exit to ours. Past a bound, or
     * with one CPU (the thread needs ours to finish), join as usual. */
    bool spin = atomic_load_explicit(&d->prio, memory_order_acquire) !=
                    DSD_PRIO_UNSET &&
                d->usable_cpus > 1; /* published with prio */
    join_thread(d->thread, &d->done, spin);
    d->thread_live = false;
    rescuer_join(d);
}

void dsd__dgram_close_fd(struct dsd__dgram *d)
{
    if (d->fd >= 0 && !d->live) {
        dsd__dgram_join(d); /* started by dsd_receive, never by dsd_start */
        read_meminfo(d);    /* the final drop count */
        close(d->fd);
        d->fd = -1;
        while (d->ngfd > 0)
            close(d->gfd[--d->ngfd]);
    }
}

static void dgram_closed(uv_handle_t *h)
{
    struct dsd__dgram *d = h->data;
    d->live = false;
    dsd__dgram_close_fd(d);
    dsd__handle_closed(d->s);
}

/* Counts the datagrams left unparsed (at a stop that ran out of time). */
static uint64_t ring_records(struct dsd__dgram *d)
{
    uint64_t head = atomic_load_explicit(&d->ring.head, memory_order_acquire);
    uint64_t pos = d->cpos, n = 0;
    struct dsd__ring_rec rec;
    while (dsd__ring_peek(&d->ring, pos, head, &rec)) {
        n += !(rec.flags & DSD_RING_F_PAD);
        pos = rec.next;
    }
    /* and the rescuer's */
    if (d->res.base != NULL) {
        head = atomic_load_explicit(&d->res.head, memory_order_acquire);
        for (pos = d->rpos; dsd__ring_peek(&d->res, pos, head, &rec);
             pos = rec.next)
            n += !(rec.flags &
                   (DSD_RING_F_PAD | DSD_RING_F_MARK | DSD_RING_F_END));
    }
    return n;
}

void dsd__dgram_stop(struct dsd__dgram *d, struct cmn_deadline dl)
{
    if (!d->live)
        return;
    struct dsd *s = d->s;
    dsd__dgram_join(d);
    /* The loop thread is the producer now: alternate reading and parsing
     * until the socket and the ring are both empty, or time is up. */
    uint64_t n0 = s->stats.packets;
    bool socket_empty = false, ring_empty = false;
    for (;;) {
        ring_empty = dgram_consume(d, DSD_CONSUME_BYTES);
        if (cmn_deadline_expired(dl))
            break;
        if (!ring_empty)
            continue;
        if (socket_empty)
            break;
        /* four reads (of each socket of a group) */
        enum fill_result r = dgram_fill(d, 4, false, false);
        socket_empty = (r == FILL_EMPTY && d->held == 0) || r == FILL_ERROR;
    }
    log_read_errors(d);
    log_priority(d);
    read_meminfo(d);
    if (!ring_empty || !socket_empty) {
        uint64_t left = ring_records(d) + d->held;
        char probe;
        bool more = false;
        for (unsigned i = 0; i <= d->ngfd; i++)
            more |=
                recv(sock_fd(d, i), &probe, 1, MSG_PEEK | MSG_DONTWAIT) >= 0;
        s->stats.stop_unread += left;
        s->stats.stop_socket_left += more;
        if (left > 0 || more)
            CMN_LOGE(DSD_COMP,
                     "%s: stop drain ran out of time: %llu datagrams left "
                     "unparsed%s",
                     d->kind, (unsigned long long)left,
                     more ? ", and more still queued in the socket" : "");
    }
    CMN_LOGD(DSD_COMP, "%s: drained %llu datagrams on stop", d->kind,
             (unsigned long long)(s->stats.packets - n0));
    uint64_t forced =
        atomic_load_explicit(&d->merge_forced, memory_order_relaxed);
    if (forced > 0)
        CMN_LOGW(DSD_COMP,
                 "%s: %llu times the socket group's merge published "
                 "datagrams before a socket's older ones (its batch was "
                 "full): a gauge's last value may be an earlier one",
                 d->kind, (unsigned long long)forced);
    uv_close((uv_handle_t *)&d->async, dgram_closed);
}

void dsd__dgram_stats(const struct dsd__dgram *d, struct dsd_stats *out)
{
    struct dsd__dgram *m = (struct dsd__dgram *)d; /* atomics only */
    read_meminfo(m);
    uint64_t drops =
        atomic_load_explicit(&m->kernel_drops, memory_order_relaxed);
    uint64_t gap = atomic_load_explicit(&m->max_gap_ns, memory_order_relaxed);
    uint64_t asleep =
        atomic_load_explicit(&m->asleep_drops, memory_order_relaxed);
    if (d == &d->s->udp) {
        out->kernel_drops_udp += drops;
        out->rx_max_gap_ns_udp = gap;
        out->rx_asleep_drops_udp = asleep;
    } else {
        out->kernel_drops_uds += drops;
        out->rx_max_gap_ns_uds = gap;
        out->rx_asleep_drops_uds = asleep;
    }
    out->ring_full +=
        atomic_load_explicit(&m->full_events, memory_order_relaxed);
    out->ring_budget_refused +=
        atomic_load_explicit(&m->ring.budget_refused, memory_order_relaxed);
    out->ring_full_ns +=
        atomic_load_explicit(&m->full_ns, memory_order_relaxed);
    out->rx_spin_ns += atomic_load_explicit(&m->spin_ns, memory_order_relaxed);
    out->rx_naps += atomic_load_explicit(&m->naps, memory_order_relaxed);
    out->rx_rescues += atomic_load_explicit(&m->rescues, memory_order_relaxed);
    out->rx_rescued += atomic_load_explicit(&m->rescued, memory_order_relaxed);
    out->read_errors +=
        atomic_load_explicit(&m->read_errors, memory_order_relaxed);
    if (d->ring.base != NULL)
        out->ring_bytes += dsd__ring_used(&m->ring);
}
