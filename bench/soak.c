/*
 * soak.c - the soak run of issue 8: serverless-init as a sidecar (no
 * child), 10 000 counter contexts with 5-20 tags sent over its Unix
 * datagram socket at a fixed rate for a long time, the loopback test
 * intake failing every 30 s (503s for 5 s, then one connection reset),
 * the sidecar's VmRSS sampled every second. At the end: SIGTERM, then
 * every count sent is looked for at the intake (requests answered 2xx:
 * a retried payload is counted once).
 *
 *   <build>/bin/bench_soak --seconds 600 --rate LINES_PER_S
 *                          [--warmup S] [--calibrate S] [--mib-per-s M]
 *                          [--contexts N]  (10 000 by default)
 *
 * --mib-per-s M: the rate as M MiB/s of lines (the issue's sidecar
 * target: 10 MiB/s for 10 s, `--seconds 10 --mib-per-s 10 --warmup 0`,
 * peak RSS <= 24 MiB and nothing lost).
 *
 * --calibrate S: sends at the sender's full speed for S seconds and prints
 * capacity_lps = lines / sidecar CPU seconds (the rate one dedicated CPU
 * sustains); bench/soak.sh runs it first and soaks at half of it.
 *
 * Output (one line, key=value): sent_lines, delivered_count,
 * lost_count = sent - delivered, rss_min_kib / rss_max_kib after the
 * warm-up, rss_spread_kib, rss_peak_kib (samples), hwm_kib (VmHWM before
 * SIGTERM), faults, exit. With DP_SOAK_TRACE set in the environment,
 * every VmRSS sample goes to stderr ("rss t=S kib=K"). The sidecar's
 * stderr is left in the printed file. A benchmark, not a test.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common.h"
#if __has_include("intake.h")
#include "intake.h"
#define HAVE_INTAKE 1
#endif

#define CONTEXTS_MAX 1000000
/* --contexts: 10 000 by default (the soak), 100 000 for issue 8's second
 * memory target */
static uint64_t contexts = 10000;
#define PKT_MAX 8192

extern char **environ;

#ifdef HAVE_INTAKE
static uint64_t now_ms(void)
{
    return cmn_mono_ns() / 1000000u;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* The line of context i: a counter of 1 with 5-20 tags. */
static size_t ctx_line(char *buf, size_t cap, uint64_t i)
{
    int w = snprintf(buf, cap, "soak.c%llu:1|c|#", (unsigned long long)i);
    int ntags = 5 + (int)(i % 16);
    for (int t = 0; t < ntags; t++)
        w += snprintf(buf + w, cap - (size_t)w, "%stag%d:v%llu", t ? "," : "",
                      t, (unsigned long long)((i >> t) % 97));
    return (size_t)w;
}

struct sender {
    int fd;
    char pkt[PKT_MAX];
    size_t len;
    uint64_t lines, pending;
};

static int sender_flush(struct sender *s)
{
    if (s->len == 0)
        return 0;
    ssize_t n;
    do
        n = send(s->fd, s->pkt, s->len, 0);
    while (n < 0 && errno == EINTR);
    if (n != (ssize_t)s->len)
        return -1;
    s->lines += s->pending;
    s->len = 0;
    s->pending = 0;
    return 0;
}

static int sender_line(struct sender *s, const char *line, size_t len)
{
    if (s->len + len + 1 > PKT_MAX && sender_flush(s) != 0)
        return -1;
    if (s->len > 0)
        s->pkt[s->len++] = '\n';
    memcpy(s->pkt + s->len, line, len);
    s->len += len;
    s->pending++;
    return 0;
}

/* utime + stime of pid, seconds: fields 14 and 15 of /proc/pid/stat,
 * counted from the one after the command's closing ')'. */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    p += 2; /* field 3, the state */
    uint64_t v[2] = {0, 0};
    for (int field = 3; field <= 15 && *p != '\0'; field++) {
        size_t len = strcspn(p, " ");
        if (field >= 14 &&
            cmn_parse_u64(cmn_slice(p, len), UINT64_MAX, &v[field - 14]) != 0)
            return -1;
        p += len + (p[len] == ' ');
    }
    return (double)(v[0] + v[1]) / (double)sysconf(_SC_CLK_TCK);
}

/* Sum of count * 10 (the counters arrive as rates over 10 s) of every
 * soak.* point in the requests answered 2xx. */
static double delivered(struct ti *ti)
{
    double sum = 0;
    for (size_t i = 0; i < ti_request_count(ti); i++) {
        const struct ti_request *r = ti_request_get(ti, i);
        if (r->answered < 200 || r->answered >= 300 ||
            strcmp(r->path, "/api/v2/series") != 0)
            continue;
        Datadog__Agentpayload__MetricPayload *p = ti_decode_series(r);
        if (p == NULL)
            continue;
        for (size_t k = 0; k < p->n_series; k++) {
            const Datadog__Agentpayload__MetricPayload__MetricSeries *s =
                p->series[k];
            if (strncmp(s->metric, "soak.", 5) != 0)
                continue;
            for (size_t j = 0; j < s->n_points; j++)
                sum += s->points[j]->value * (double)s->interval;
        }
        datadog__agentpayload__metric_payload__free_unpacked(p, NULL);
    }
    return sum;
}

static int run(double seconds, double rate, double warmup, bool calibrate)
{
    char dir[] = "/tmp/soak-XXXXXX", sock[160], errp[160], url[128];
    char envsock[200], envurl[200];
    struct ti *ti;

    if (mkdtemp(dir) == NULL || ti_start(&ti) != 0)
        return 1;
    snprintf(sock, sizeof(sock), "%s/dsd.sock", dir);
    snprintf(errp, sizeof(errp), "%s/stderr", dir);
    snprintf(url, sizeof(url), "%s", ti_url(ti));
    snprintf(envsock, sizeof(envsock), "DD_DOGSTATSD_SOCKET=%s", sock);
    snprintf(envurl, sizeof(envurl), "DD_DD_URL=%s", url);
    char *env[] = {"PATH=/usr/bin:/bin",
                   "DD_LOG_LEVEL=warn",
                   "DD_API_KEY=soak",
                   envurl,
                   envsock,
                   "DD_DOGSTATSD_PORT=0",
                   "DD_DOGSTATSD_NON_LOCAL_TRAFFIC=false",
                   "DD_ENHANCED_METRICS=false",
                   NULL};
    char bin[4096];
    ssize_t bl = readlink("/proc/self/exe", bin, sizeof(bin) - 32);
    if (bl <= 0)
        return 1;
    bin[bl] = '\0';
    char *slash = strrchr(bin, '/');
    snprintf(slash + 1, sizeof(bin) - (size_t)(slash + 1 - bin),
             "serverless-init");
    char *argv[] = {bin, NULL};
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, errp, O_WRONLY | O_CREAT | O_TRUNC,
                                     0600);
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    pid_t pid;
    if (posix_spawn(&pid, bin, &fa, NULL, argv, env) != 0)
        return 1;
    posix_spawn_file_actions_destroy(&fa);

    struct sender s = {.fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)};
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(sock) >= sizeof(sa.sun_path))
        return 1;
    memcpy(sa.sun_path, sock, strlen(sock) + 1);
    int rc = -1;
    for (int i = 0; i < 1000 && rc != 0; i++) {
        rc = connect(s.fd, (struct sockaddr *)&sa, sizeof(sa));
        if (rc != 0)
            sleep_ms(10);
    }
    if (rc != 0) {
        fprintf(stderr, "soak: no socket %s\n", sock);
        kill(pid, SIGKILL);
        return 1;
    }

    /* the lines are made once: the sender must outrun half of the
     * sidecar's capacity */
    static char lines[CONTEXTS_MAX][256];
    static size_t lens[CONTEXTS_MAX];
    for (uint64_t k = 0; k < contexts; k++)
        lens[k] = ctx_line(lines[k], sizeof(lines[k]), k);
    uint64_t t0 = now_ms(), next_sample = t0 + 1000, i = 0;
    uint64_t end = t0 + (uint64_t)(seconds * 1000);
    uint64_t next_fault = t0 + 30000;
    long rss_min = -1, rss_max = -1, rss_peak = -1;
    int faults = 0, fault_phase = 0;
    size_t fault_at = 0;
    uint64_t fault_t = 0;
    double cpu0 = proc_cpu_s(pid);
    bool trace = getenv("DP_SOAK_TRACE") != NULL;
    while (now_ms() < end) {
        uint64_t now = now_ms();
        /* send what the rate allows up to now, 25 lines per datagram */
        uint64_t due =
            calibrate ? i + 2500 : (uint64_t)((double)(now - t0) * rate / 1e3);
        /* at most 0.1 s of lines per pass: when the sidecar falls behind
         * (a loaded machine) the blocking sends would otherwise starve the
         * RSS samples and the fault schedule (a 503 phase never ending) */
        uint64_t pass_end = i + (calibrate ? 2500 : (uint64_t)(rate / 10) + 25);
        while (i < due && i < pass_end) {
            if (sender_line(&s, lines[i % contexts], lens[i % contexts]) != 0)
                goto out;
            i++;
            if (s.pending == 25 && sender_flush(&s) != 0)
                goto out;
        }
        if (now >= next_sample) {
            long rss = ti_proc_status_kib(pid, "VmRSS:");
            if (trace) /* the series, to see what grows and when */
                fprintf(stderr, "rss t=%llu kib=%ld\n",
                        (unsigned long long)(now - t0) / 1000, rss);
            if (rss > rss_peak)
                rss_peak = rss;
            if ((double)(now - t0) >= warmup * 1000) {
                if (rss_min < 0 || rss < rss_min)
                    rss_min = rss;
                if (rss > rss_max)
                    rss_max = rss;
            }
            next_sample += 1000;
        }
        /* faults, on a clock of their own (the forwarder's back-off must
         * not stretch the schedule): every 30 s, 503 to every request for
         * 5 s, then one connection reset (or 5 s without a request) */
        if (!calibrate && now >= next_fault && fault_phase == 0) {
            struct ti_plan p = {.status = 503, .count = TI_ALL};
            ti_set_plan(ti, &p);
            fault_t = now;
            fault_phase = 1;
        } else if (fault_phase == 1 && now >= fault_t + 5000) {
            struct ti_plan p = {.count = 1, .fault = TI_FAULT_RESET};
            ti_set_plan(ti, &p);
            fault_at = ti_request_count(ti);
            fault_t = now;
            fault_phase = 2;
        } else if (fault_phase == 2 && (ti_request_count(ti) >= fault_at + 1 ||
                                        now >= fault_t + 5000)) {
            struct ti_plan p = {0};
            ti_set_plan(ti, &p);
            faults++;
            fault_phase = 0;
            next_fault += 30000;
        }
        if (!calibrate)
            sleep_ms(1);
    }
out:
    if (sender_flush(&s) != 0)
        fprintf(stderr, "soak: send: %s\n", strerror(errno));
    double cpu = proc_cpu_s(pid) - cpu0;
    long hwm = ti_proc_status_kib(pid, "VmHWM:");
    double window = (double)(now_ms() - t0) / 1e3;
    kill(pid, SIGTERM);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
    }
    close(s.fd);
    if (calibrate) {
        printf("soak_calibrate lines=%llu window_s=%.1f sidecar_cpu_s=%.2f "
               "capacity_lps=%.0f\n",
               (unsigned long long)s.lines, window, cpu,
               cpu > 0 ? (double)s.lines / cpu : 0);
    } else {
        double got = delivered(ti);
        printf("soak seconds=%.0f rate_lps=%.0f sent_lines=%llu "
               "delivered_count=%.0f lost_count=%.0f faults=%d "
               "rss_min_kib=%ld rss_max_kib=%ld rss_spread_kib=%ld "
               "rss_peak_kib=%ld hwm_kib=%ld sidecar_cpu_s=%.1f exit=%d "
               "stderr=%s\n",
               seconds, rate, (unsigned long long)s.lines, got,
               (double)s.lines - got, faults, rss_min, rss_max,
               rss_max - rss_min, rss_peak, hwm, cpu,
               WIFEXITED(st) ? WEXITSTATUS(st) : -1, errp);
    }
    ti_stop(ti);
    return 0;
}
#endif

int main(int argc, char **argv)
{
#ifdef HAVE_INTAKE
    double seconds = 600, rate = 0, warmup = 60, cal = 0, mibps = 0;
    double nctx = (double)contexts;
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *const names[] = {"--seconds",   "--rate",
                                     "--warmup",    "--calibrate",
                                     "--mib-per-s", "--contexts"};
        double *const vals[] = {&seconds, &rate, &warmup, &cal, &mibps, &nctx};
        bool known = false;
        for (size_t k = 0; k < 6; k++) {
            if (strcmp(argv[i], names[k]) != 0)
                continue;
            known = cmn_parse_f64(cmn_slice_cstr(argv[i + 1]), vals[k]) == 0;
        }
        if (!known) {
            fprintf(stderr, "bad option %s %s\n", argv[i], argv[i + 1]);
            return 2;
        }
    }
    if (!(nctx >= 1 && nctx <= CONTEXTS_MAX)) {
        fprintf(stderr, "--contexts: 1 to %d\n", CONTEXTS_MAX);
        return 2;
    }
    contexts = (uint64_t)nctx;
    if (mibps > 0) { /* a byte rate: lines of the mean length, + '\n' */
        char line[512];
        double bytes = 0;
        for (uint64_t i = 0; i < contexts; i++)
            bytes += (double)ctx_line(line, sizeof(line), i) + 1;
        rate = mibps * 1048576.0 / (bytes / (double)contexts);
    }
    if (cal > 0)
        return run(cal, 0, 0, true);
    if (!(rate > 0) || !(seconds > 0)) {
        fprintf(stderr,
                "usage: %s --seconds S --rate LINES_PER_S "
                "[--warmup S] [--contexts N] | --calibrate S\n",
                argv[0]);
        return 2;
    }
    return run(seconds, rate, warmup, false);
#else
    (void)argc;
    (void)argv;
    fprintf(stderr, "built without the test intake (tests/support)\n");
    return 2;
#endif
}
