/*
 * loadgen.c - DogStatsD load generator for the benchmarks: pre-builds a ring
 * of packets and sends them over loopback UDP with sendmmsg, optionally
 * paced to a target rate of lines per second, for a duration.
 *
 *   bench_loadgen [--port P] [--host 127.0.0.1|::1] [--workload a|b|c]
 *                 [--mix counters|statsd|all] [--contexts N] [--tags N]
 *                 [--lines-per-packet N] [--packet-size B] [--rate L/s]
 *                 [--duration S] [--once] [--cpu N] [--batch N]
 *                 [--max-behind-ms M] [--dump FILE --packets N]
 *
 * Workloads (defaults that --mix/--contexts/... then refine):
 *   a  counters only, short names ("app.hit.0042:7|c"), 1000 contexts, 80
 *      lines per packet (~1360 bytes)
 *   b  a statsd mix: 50% counters (some with @0.5), 25% gauges, 25% timings,
 *      1000 contexts, 25 lines per packet
 *   c  all six DogStatsD types (g c s h ms d) with 3 tags each, 1000
 *      contexts, packets filled up to 1400 bytes
 *
 * A paced sender that falls behind its schedule (its CPU stopped by the
 * host, a late wake-up) sends the backlog back to back, at full speed.
 * --max-behind-ms M bounds that backlog: the schedule slips so that it is
 * never more than M ms behind (the lines of the slip are not sent), as a
 * client whose own CPU stopped produces nothing meanwhile. The default
 * bounds nothing.
 *
 * --once sends every context exactly once (for the live-contexts RSS
 * figure) and exits. --dump writes N packets as [u32 length][bytes] records
 * to FILE instead of sending (the parse-only micro-bench reads them).
 *
 * On exit it prints one line:
 *   loadgen lines=N packets=N bytes=N elapsed_s=X rate_lps=X send_errors=N
 *           max_behind_us=N slipped_us=N
 * Loopback only: the host must be 127.0.0.1 or ::1.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "common.h"

#define LG_MAX_PACKET 65000
#define LG_RING_MIN 512 /* packets pre-built (at least) */

struct lg_opts {
    int port;
    const char *host;
    char workload;
    const char *mix; /* counters | statsd | all */
    uint64_t contexts;
    uint64_t tags;
    uint64_t lines_per_packet; /* 0 = fill packet_size */
    uint64_t packet_size;
    double rate; /* lines/s, 0 = as fast as possible */
    double duration;
    double max_behind_ms; /* < 0: unbounded */
    bool once;
    int cpu; /* -1 = no pinning */
    uint64_t batch;
    const char *dump;
    uint64_t dump_packets;
};

struct lg_packet {
    char *buf;
    size_t len;
    uint32_t lines;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: bench_loadgen [--port P] [--host 127.0.0.1|::1] "
            "[--workload a|b|c] [--mix counters|statsd|all] [--contexts N] "
            "[--tags N] [--lines-per-packet N] [--packet-size B] "
            "[--rate LINES_PER_S] [--duration S] [--once] [--cpu N] "
            "[--batch N] [--max-behind-ms M] [--dump FILE --packets N]\n");
    exit(2);
}

static uint64_t arg_u64(const char *s, uint64_t max)
{
    uint64_t v;
    if (cmn_parse_u64(cmn_slice_cstr(s), max, &v) != 0) {
        fprintf(stderr, "bad number: %s\n", s);
        usage();
    }
    return v;
}

static double arg_f64(const char *s)
{
    double v;
    if (cmn_parse_f64(cmn_slice_cstr(s), &v) != 0 || !(v >= 0)) {
        fprintf(stderr, "bad number: %s\n", s);
        usage();
    }
    return v;
}

static void parse_args(int argc, char **argv, struct lg_opts *o)
{
    /* first pass: the workload sets defaults the other options refine */
    o->workload = 'a';
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--workload") == 0)
            o->workload = argv[i + 1][0];
    o->port = 8125;
    o->host = "127.0.0.1";
    o->contexts = 1000;
    o->packet_size = 1400;
    o->duration = 5;
    o->cpu = -1;
    o->batch = 64;
    o->max_behind_ms = -1;
    switch (o->workload) {
    case 'a':
        o->mix = "counters";
        o->lines_per_packet = 80;
        o->tags = 0;
        break;
    case 'b':
        o->mix = "statsd";
        o->lines_per_packet = 25;
        o->tags = 0;
        break;
    case 'c':
        o->mix = "all";
        o->lines_per_packet = 0;
        o->tags = 3;
        break;
    default:
        usage();
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--once") == 0) {
            o->once = true;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--port") == 0)
            o->port = (int)arg_u64(v, 65535);
        else if (strcmp(a, "--host") == 0)
            o->host = v;
        else if (strcmp(a, "--workload") == 0)
            ;
        else if (strcmp(a, "--mix") == 0)
            o->mix = v;
        else if (strcmp(a, "--contexts") == 0)
            o->contexts = arg_u64(v, 100000000);
        else if (strcmp(a, "--tags") == 0)
            o->tags = arg_u64(v, 64);
        else if (strcmp(a, "--lines-per-packet") == 0)
            o->lines_per_packet = arg_u64(v, 10000);
        else if (strcmp(a, "--packet-size") == 0)
            o->packet_size = arg_u64(v, LG_MAX_PACKET);
        else if (strcmp(a, "--rate") == 0)
            o->rate = arg_f64(v);
        else if (strcmp(a, "--duration") == 0)
            o->duration = arg_f64(v);
        else if (strcmp(a, "--cpu") == 0)
            o->cpu = (int)arg_u64(v, 1023);
        else if (strcmp(a, "--batch") == 0)
            o->batch = arg_u64(v, 1024);
        else if (strcmp(a, "--max-behind-ms") == 0)
            o->max_behind_ms = arg_f64(v);
        else if (strcmp(a, "--dump") == 0)
            o->dump = v;
        else if (strcmp(a, "--packets") == 0)
            o->dump_packets = arg_u64(v, 10000000);
        else
            usage();
    }
    if (o->contexts == 0 || o->batch == 0 || o->packet_size < 64)
        usage();
    if (strcmp(o->mix, "counters") != 0 && strcmp(o->mix, "statsd") != 0 &&
        strcmp(o->mix, "all") != 0)
        usage();
}

/* Writes line number `seq` (context seq % contexts) into p; returns its
 * length (no newline) or 0 if it does not fit in cap. */
static size_t make_line(const struct lg_opts *o, uint64_t seq, char *p,
                        size_t cap)
{
    uint64_t ctx = seq % o->contexts;
    unsigned val = (unsigned)(seq * 2654435761u >> 7) % 1000;
    int n = 0;
    char tags[512];
    size_t tl = 0;

    if (o->tags > 0) {
        /* tag values vary with the context so that name x tags is the
         * context; the first tag carries it */
        static const char *const names[] = {"env",  "service", "version",
                                            "team", "region",  "az"};
        for (uint64_t t = 0; t < o->tags && tl < sizeof(tags) - 40; t++) {
            int w =
                snprintf(tags + tl, sizeof(tags) - tl, "%s%s%s:v%llu",
                         t == 0 ? "|#" : ",", names[t % 6], t >= 6 ? "x" : "",
                         (unsigned long long)(t == 0 ? ctx % 7 : t));
            tl += (size_t)w;
        }
        tags[tl] = '\0';
    } else {
        tags[0] = '\0';
    }

    if (strcmp(o->mix, "counters") == 0) {
        n = snprintf(p, cap, "app.hit.%04llu:%u|c%s", (unsigned long long)ctx,
                     val % 9 + 1, tags);
    } else if (strcmp(o->mix, "statsd") == 0) {
        switch (ctx % 4) {
        case 0:
            n = snprintf(p, cap, "myapp.web.requests.%llu:%u|c%s",
                         (unsigned long long)ctx, val % 5 + 1, tags);
            break;
        case 1:
            n = snprintf(p, cap, "myapp.web.errors.%llu:1|c|@0.5%s",
                         (unsigned long long)ctx, tags);
            break;
        case 2:
            n = snprintf(p, cap, "myapp.queue.depth.%llu:%u.%u|g%s",
                         (unsigned long long)ctx, val, val % 10, tags);
            break;
        default:
            n = snprintf(p, cap, "myapp.db.query_time.%llu:%u|ms%s",
                         (unsigned long long)ctx, val % 300 + 1, tags);
            break;
        }
    } else {
        static const char *const types[] = {"g", "c", "s", "h", "ms", "d"};
        const char *ty = types[ctx % 6];
        if (ctx % 6 == 2)
            n = snprintf(p, cap, "svc.metric.%llu:user%u|s%s",
                         (unsigned long long)ctx, val % 50, tags);
        else
            n = snprintf(p, cap, "svc.metric.%llu:%u.%u|%s%s",
                         (unsigned long long)ctx, val, val % 7, ty, tags);
    }
    if (n < 0 || (size_t)n >= cap)
        return 0;
    return (size_t)n;
}

/* Builds packets in order until `need_lines` lines (or, with once, until
 * every context is in), at least LG_RING_MIN packets otherwise. */
static struct lg_packet *build_ring(const struct lg_opts *o, size_t *npk,
                                    uint64_t want_packets)
{
    size_t cap = 1024, n = 0;
    struct lg_packet *pk = calloc(cap, sizeof(*pk));
    uint64_t seq = 0;
    char line[1024];

    if (pk == NULL)
        return NULL;
    for (;;) {
        if (o->once && seq >= o->contexts)
            break;
        if (!o->once && n >= want_packets)
            break;
        if (n == cap) {
            struct lg_packet *np = realloc(pk, 2 * cap * sizeof(*pk));
            if (np == NULL)
                return NULL;
            pk = np;
            cap *= 2;
        }
        char *buf = malloc(o->packet_size);
        if (buf == NULL)
            return NULL;
        size_t len = 0;
        uint32_t lines = 0;
        for (;;) {
            if (o->lines_per_packet && lines >= o->lines_per_packet)
                break;
            if (o->once && seq >= o->contexts)
                break;
            size_t ll = make_line(o, seq, line, sizeof(line));
            if (ll == 0)
                break;
            size_t need = ll + (len ? 1 : 0);
            if (len + need > o->packet_size) {
                if (lines == 0) {
                    fprintf(stderr, "line longer than the packet size\n");
                    exit(1);
                }
                break;
            }
            if (len)
                buf[len++] = '\n';
            memcpy(buf + len, line, ll);
            len += ll;
            lines++;
            seq++;
        }
        pk[n].buf = buf;
        pk[n].len = len;
        pk[n].lines = lines;
        n++;
    }
    *npk = n;
    return pk;
}

static int do_dump(const struct lg_opts *o, struct lg_packet *pk, size_t n)
{
    FILE *f = fopen(o->dump, "wb");
    uint64_t lines = 0, bytes = 0;
    if (f == NULL) {
        perror(o->dump);
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t len = (uint32_t)pk[i].len;
        if (fwrite(&len, sizeof(len), 1, f) != 1 ||
            fwrite(pk[i].buf, 1, len, f) != len) {
            perror(o->dump);
            fclose(f);
            return 1;
        }
        lines += pk[i].lines;
        bytes += len;
    }
    if (fclose(f) != 0) {
        perror(o->dump);
        return 1;
    }
    printf("loadgen dumped packets=%zu lines=%llu bytes=%llu\n", n,
           (unsigned long long)lines, (unsigned long long)bytes);
    return 0;
}

int main(int argc, char **argv)
{
    struct lg_opts o;
    memset(&o, 0, sizeof(o));
    parse_args(argc, argv, &o);

    bench_pin_cpu(o.cpu);

    size_t npk = 0;
    uint64_t want =
        o.dump ? (o.dump_packets ? o.dump_packets : 4096) : LG_RING_MIN;
    /* cover every context at least once in the ring */
    struct lg_packet *pk = build_ring(&o, &npk, want);
    if (pk == NULL || npk == 0) {
        fprintf(stderr, "out of memory building packets\n");
        return 1;
    }
    if (!o.once && !o.dump) {
        uint64_t lines = 0;
        for (size_t i = 0; i < npk; i++)
            lines += pk[i].lines;
        if (lines < o.contexts) {
            /* rebuild with enough packets to cover all contexts */
            uint64_t per = lines / npk ? lines / npk : 1;
            for (size_t i = 0; i < npk; i++)
                free(pk[i].buf);
            free(pk);
            pk = build_ring(&o, &npk, o.contexts / per + 1);
            if (pk == NULL) {
                fprintf(stderr, "out of memory building packets\n");
                return 1;
            }
        }
    }
    if (o.dump)
        return do_dump(&o, pk, npk);

    bool v6 = strcmp(o.host, "::1") == 0;
    if (!v6 && strcmp(o.host, "127.0.0.1") != 0) {
        fprintf(stderr, "loopback only: --host 127.0.0.1 or ::1\n");
        return 2;
    }
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    if (v6) {
        struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)o.port);
        a6->sin6_addr = in6addr_loopback;
        sl = sizeof(*a6);
    } else {
        struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)o.port);
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sl = sizeof(*a4);
    }
    int fd = socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) != 0) {
        perror("socket/connect");
        return 1;
    }
    int sndbuf = 4 << 20;
    (void)setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));

    size_t vlen = o.batch;
    struct mmsghdr *msgs = calloc(vlen, sizeof(*msgs));
    struct iovec *iov = calloc(vlen, sizeof(*iov));
    if (msgs == NULL || iov == NULL)
        return 1;

    uint64_t lines = 0, packets = 0, bytes = 0, errors = 0;
    /* the furthest behind schedule it fell (a stop of its CPU, a late
     * wake-up), in µs of the target rate: it then sends that backlog
     * back to back, at full speed, not at the target rate */
    uint64_t max_behind_us = 0, slipped_us = 0;
    size_t next = 0;
    double t0 = now_s(), deadline = t0 + o.duration;
    const double start = t0; /* t0 is the schedule's, and slips */
    for (;;) {
        double t = now_s();
        if (o.once && next >= npk)
            break;
        if (!o.once && t >= deadline)
            break;
        if (o.rate > 0) {
            double allowed = o.rate * (t - t0);
            if ((double)lines >= allowed) {
                /* ahead of schedule: sleep until the next batch is due */
                double wait = ((double)lines - allowed) / o.rate;
                if (wait > 0.0002) {
                    struct timespec ts = {0, (long)(wait * 1e9)};
                    nanosleep(&ts, NULL);
                }
                continue;
            }
            double behind = (allowed - (double)lines) / o.rate * 1e6;
            if (behind > (double)max_behind_us)
                max_behind_us = (uint64_t)behind;
            if (o.max_behind_ms >= 0 && behind > o.max_behind_ms * 1e3) {
                double slip = behind / 1e6 - o.max_behind_ms / 1e3;
                t0 += slip; /* the schedule slips */
                slipped_us += (uint64_t)(slip * 1e6);
            }
        }
        size_t n = 0, first = next;
        while (n < vlen && !(o.once && next >= npk)) {
            struct lg_packet *p = &pk[next];
            iov[n].iov_base = p->buf;
            iov[n].iov_len = p->len;
            memset(&msgs[n].msg_hdr, 0, sizeof(msgs[n].msg_hdr));
            msgs[n].msg_hdr.msg_iov = &iov[n];
            msgs[n].msg_hdr.msg_iovlen = 1;
            n++;
            next++;
            if (!o.once && next == npk)
                next = 0;
        }
        int r = sendmmsg(fd, msgs, (unsigned)n, 0);
        if (r < 0) {
            if (errno != EINTR && errno != EAGAIN && errno != ENOBUFS &&
                errno != ECONNREFUSED)
                perror("sendmmsg");
            errors++;
            next = first; /* resend the same packets */
            continue;
        }
        /* count what went; a partial send resumes after it */
        uint64_t blines = 0;
        next = first;
        for (int i = 0; i < r; i++) {
            blines += pk[next].lines;
            bytes += msgs[i].msg_len;
            next++;
            if (!o.once && next == npk)
                next = 0;
        }
        packets += (uint64_t)r;
        lines += blines;
    }
    double el = now_s() - start;
    printf("loadgen lines=%llu packets=%llu bytes=%llu elapsed_s=%.6f "
           "rate_lps=%.0f send_errors=%llu max_behind_us=%llu "
           "slipped_us=%llu\n",
           (unsigned long long)lines, (unsigned long long)packets,
           (unsigned long long)bytes, el, el > 0 ? (double)lines / el : 0,
           (unsigned long long)errors, (unsigned long long)max_behind_us,
           (unsigned long long)slipped_us);
    fflush(stdout);
    close(fd);
    for (size_t i = 0; i < npk; i++)
        free(pk[i].buf);
    free(pk);
    free(msgs);
    free(iov);
    return 0;
}
