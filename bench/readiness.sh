#!/usr/bin/env bash
# bench/readiness.sh - what serverless-init adds before the child runs.
#
#   bench/readiness.sh [BUILD_DIR]      (default: build)
#
# 1. hyperfine, 50 runs each (-N: no shell): `serverless-init ./bench-child`
#    vs `./bench-child`, where bench-child is `int main(void){return 0;}`.
#    This is an upper bound: it includes the wrapper's start, the child,
#    and the wrapper's drain and teardown.
# 2. Readiness proper, median of 50: a launcher reads CLOCK_MONOTONIC and
#    execs either the wrapper (with the stamp child) or the stamp child
#    directly; the stamp child reads CLOCK_MONOTONIC first thing in main()
#    and appends the difference. wrapper minus direct = what the wrapper
#    adds between its exec and the child's first instruction (its listeners
#    are bound by then).
#    Variant: the same with DD_API_KEY set (forwarder started first).
# 3. Idle RSS of the wrapper (wrapping `sleep`) and of the sidecar, and the
#    binary size.
#
# The wrapper runs without DD_API_KEY (local sink), enhanced metrics on,
# DogStatsD on an ephemeral UDP port. A benchmark, not a test.
set -euo pipefail

BUILD=${1:-build}
BIN=$(cd "$BUILD/bin" && pwd)/serverless-init
[ -x "$BIN" ] || { echo "no $BIN: build first" >&2; exit 1; }
RUNS=50
T=$(mktemp -d /tmp/readiness.XXXXXX)
trap 'rm -rf "$T"' EXIT

cat > "$T/bench-child.c" <<'C'
int main(void) { return 0; }
C
cat > "$T/stamp-child.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
int main(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    unsigned long long now = (unsigned long long)ts.tv_sec * 1000000000ull +
                             (unsigned long long)ts.tv_nsec;
    const char *t0 = getenv("BENCH_T0"), *out = getenv("BENCH_OUT");
    if (t0 == NULL || out == NULL)
        return 2;
    unsigned long long start = 0;
    for (const char *p = t0; *p >= '0' && *p <= '9'; p++)
        start = start * 10 + (unsigned long long)(*p - '0');
    FILE *f = fopen(out, "a");
    if (f == NULL)
        return 3;
    fprintf(f, "%llu\n", now - start);
    fclose(f);
    return 0;
}
C
cat > "$T/launcher.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
int main(int argc, char **argv)
{
    struct timespec ts;
    char buf[32];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(buf, sizeof(buf), "%llu",
             (unsigned long long)ts.tv_sec * 1000000000ull +
                 (unsigned long long)ts.tv_nsec);
    setenv("BENCH_T0", buf, 1);
    execv(argv[1], argv + 1);
    return 127;
}
C
cc -O2 -o "$T/bench-child" "$T/bench-child.c"
cc -O2 -o "$T/stamp-child" "$T/stamp-child.c"
cc -O2 -o "$T/launcher" "$T/launcher.c"

export DD_DOGSTATSD_PORT=__random__ DD_LOG_LEVEL=error
unset DD_API_KEY || true

echo "== 1. hyperfine: exec to exit (upper bound), $RUNS runs"
hyperfine -N --warmup 5 --runs $RUNS --export-json "$T/h.json" \
    "$BIN $T/bench-child" "$T/bench-child" >/dev/null
python3 - "$T/h.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
w, d = r[0], r[1]
for x in r:
    print("  %-60s median %8.3f ms  mean %8.3f ms  stddev %6.3f ms" %
          (x["command"][-60:], x["median"] * 1e3, x["mean"] * 1e3,
           x["stddev"] * 1e3))
print("  wrapper adds (median): %.3f ms" % ((w["median"] - d["median"]) * 1e3))
PY

echo "== 2. readiness: exec of the wrapper -> child's first instruction"
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: > "$T/direct"; : > "$T/wrapped"
for i in $(seq $RUNS); do
    BENCH_OUT="$T/direct" "$T/launcher" "$T/stamp-child"
    BENCH_OUT="$T/wrapped" "$T/launcher" "$BIN" "$T/stamp-child" 2>/dev/null
done
md=$(median "$T/direct"); mw=$(median "$T/wrapped")
printf '  direct exec -> main():   median %8.1f us (%d runs)\n' \
    "$(echo "$md / 1000" | bc -l)" "$RUNS"
printf '  via serverless-init:     median %8.1f us (%d runs)\n' \
    "$(echo "$mw / 1000" | bc -l)" "$RUNS"
printf '  wrapper adds:            %8.1f us\n' \
    "$(echo "($mw - $md) / 1000" | bc -l)"
# With an API key the forwarder (libcurl + TLS library init) starts before
# the listeners; the intake is a closed loopback port and a 1 ms budget so
# that teardown does not wait (only the start matters here).
: > "$T/wrapped_key"
for i in $(seq $RUNS); do
    BENCH_OUT="$T/wrapped_key" DD_API_KEY=bench DD_DD_URL=http://127.0.0.1:9 \
        DRAINPIPE_SHUTDOWN_BUDGET_MS=1 \
        "$T/launcher" "$BIN" "$T/stamp-child" 2>/dev/null
done
mk=$(median "$T/wrapped_key")
printf '  with DD_API_KEY (forwarder started): median %8.1f us, adds %8.1f us\n' \
    "$(echo "$mk / 1000" | bc -l)" "$(echo "($mk - $md) / 1000" | bc -l)"

# CPU time the wrapper spent from exec (dynamic loading included) to the
# return of uv_spawn, as it logs at debug level: robust to a busy machine.
: > "$T/cpu"; : > "$T/cpu_key"
for i in $(seq $RUNS); do
    DD_LOG_LEVEL=debug "$BIN" "$T/bench-child" 2>&1 |
        sed -n 's/.*child spawned: \([0-9.]*\) ms CPU.*/\1/p' >> "$T/cpu"
    DD_LOG_LEVEL=debug DD_API_KEY=bench DD_DD_URL=http://127.0.0.1:9 \
        DRAINPIPE_SHUTDOWN_BUDGET_MS=1 "$BIN" "$T/bench-child" 2>&1 |
        sed -n 's/.*child spawned: \([0-9.]*\) ms CPU.*/\1/p' >> "$T/cpu_key"
done
printf '  wrapper CPU from exec to spawn: median %s ms (local sink), %s ms (with DD_API_KEY)\n' \
    "$(median "$T/cpu")" "$(median "$T/cpu_key")"

echo "== 3. idle RSS and size"
"$BIN" sleep 2 2>/dev/null &
wp=$!
sleep 0.7
wr=$(awk '/VmRSS/ {print $2}' /proc/$wp/status)
wait $wp || true
DD_DOGSTATSD_NON_LOCAL_TRAFFIC=false "$BIN" 2>/dev/null &
sp=$!
sleep 0.7
sr=$(awk '/VmRSS/ {print $2}' /proc/$sp/status)
kill -TERM $sp; wait $sp || true
echo "  wrapper idle RSS: $wr KiB; sidecar idle RSS: $sr KiB"
echo "  binary: $(stat -c %s "$BIN") bytes ($(size "$BIN" | awk 'NR==2 {print "text " $1 ", data " $2 ", bss " $3}'))"
