#!/usr/bin/env bash
# bench/coldstart.sh - issue 13's cold-start table: readiness, wall, CPU,
# peak RSS of serverless-init against the direct child and a minimal
# wrapper, interleaved; the binary size; the shared objects mapped.
#
#   bench/coldstart.sh [BUILD_DIR] [RUNS]     (default: build, 40)
#   SINIT=/other/serverless-init bench/coldstart.sh ...   (measure a build)
#   BASE=/earlier/serverless-init bench/coldstart.sh ...  (this build and an
#       earlier one in the same interleaved rounds, with the differences)
#   DRAINPIPE_LIBCURL=libcurl-gnutls.so.4 ...             (compare libcurls)
#
# Builds the two helpers with cc -O2 (a minimal posix_spawn + waitpid
# wrapper, and the stamp child) and runs <build>/bin/bench_coldstart
# (bench/coldstart.c, which documents the method). A benchmark, not a test.
set -euo pipefail

BUILD=${1:-build}
RUNS=${2:-40}
BIN=$(cd "$BUILD/bin" && pwd)
[ -x "$BIN/serverless-init" ] || { echo "no $BIN/serverless-init" >&2; exit 1; }
[ -x "$BIN/bench_coldstart" ] || { echo "no $BIN/bench_coldstart" >&2; exit 1; }
T=$(mktemp -d /tmp/coldstart.XXXXXX)
trap 'rm -rf "$T"' EXIT

cat > "$T/minwrap.c" <<'C'
/* The floor: one more exec, nothing else. */
#include <spawn.h>
#include <sys/wait.h>
extern char **environ;
int main(int argc, char **argv)
{
    pid_t pid;
    int st;
    (void)argc;
    if (posix_spawnp(&pid, argv[1], 0, 0, argv + 1, environ) != 0)
        return 127;
    if (waitpid(pid, &st, 0) < 0)
        return 1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
C
cat > "$T/stamp.c" <<'C'
/* Stamps CLOCK_MONOTONIC first thing in main (see bench/coldstart.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
static void maps(const char *out, const char *when)
{
    char path[64], line[1024];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)getppid());
    FILE *in = fopen(path, "r"), *o = fopen(out, "a");
    if (in == NULL || o == NULL)
        return;
    char last[1024] = "";
    int n = 0;
    fprintf(o, "%s:", when);
    while (fgets(line, sizeof(line), in) != NULL) {
        char *p = strrchr(line, '/');
        if (p == NULL || strstr(p, ".so") == NULL)
            continue;
        p[strcspn(p, "\n")] = '\0';
        if (strcmp(p + 1, last) == 0)
            continue;
        snprintf(last, sizeof(last), "%s", p + 1);
        fprintf(o, " %s", p + 1);
        n++;
    }
    fprintf(o, " (%d)\n", n);
    fclose(in);
    fclose(o);
}
int main(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now = (unsigned long long)ts.tv_sec * 1000000000ull +
                             (unsigned long long)ts.tv_nsec;
    const char *t0 = getenv("BENCH_T0"), *out = getenv("BENCH_OUT");
    if (t0 == NULL || out == NULL)
        return 2;
    unsigned long long start = strtoull(t0, NULL, 10);
    FILE *f = fopen(out, "a");
    if (f == NULL)
        return 3;
    fprintf(f, "%llu\n", now - start);
    fclose(f);
    const char *m = getenv("BENCH_MAPS");
    if (m != NULL) {
        maps(m, "at the child's spawn");
        usleep(500000);
        maps(m, "at the child's exit, 500 ms later");
    }
    return 0;
}
C
cc -O2 -o "$T/minwrap" "$T/minwrap.c"
cc -O2 -o "$T/stamp" "$T/stamp.c"

SINIT=${SINIT:-$BIN/serverless-init}
"$BIN/bench_coldstart" "$SINIT" "$T/minwrap" "$T/stamp" "$RUNS" ${BASE:+"$BASE"}
echo
echo "binary: $(stat -c %s "$SINIT") bytes ($(size "$SINIT" | awk 'NR==2 {print "text " $1 ", data " $2 ", bss " $3}')); linked: $(ldd "$SINIT" | awk '{print $1}' | tr '\n' ' ')"
