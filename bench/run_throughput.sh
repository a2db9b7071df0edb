#!/usr/bin/env bash
# run_throughput.sh - builds the benchmarks (Release, no sanitizers) and runs
# the DogStatsD throughput workloads (a), (b), (c) several times against
# drainpipe (bench_throughput: server + aggregator in-process on CPU 0,
# bench_loadgen on CPU 1), then the same load against Etsy statsd (node,
# installed with npm into bench/statsd/node_modules) and prints medians and
# the ratio. See bench/README.md for what every figure means.
#
#   bench/run_throughput.sh [-n RUNS] [-d SECONDS] [--no-build] [--no-statsd]
#
# Environment: BUILD (build directory, default <repo>/build-bench).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${BUILD:-$ROOT/build-bench}
RUNS=5
DUR=3
DO_BUILD=1
DO_STATSD=1
while [ $# -gt 0 ]; do
  case $1 in
    -n) RUNS=$2; shift 2 ;;
    -d) DUR=$2; shift 2 ;;
    --no-build) DO_BUILD=0; shift ;;
    --no-statsd) DO_STATSD=0; shift ;;
    *) echo "usage: $0 [-n RUNS] [-d SECONDS] [--no-build] [--no-statsd]" >&2
       exit 2 ;;
  esac
done

if [ "$DO_BUILD" = 1 ]; then
  cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DSANITIZE= >/dev/null
  if ! cmake --build "$BUILD" -j2 --target bench_loadgen bench_throughput \
      >"$BUILD/bench-build.log" 2>&1; then
    grep -E 'error|Error' "$BUILD/bench-build.log" | head -5 >&2
    echo "build failed: see $BUILD/bench-build.log" >&2
    exit 1
  fi
  # the product binary, for its idle RSS (optional)
  cmake --build "$BUILD" -j2 --target serverless-init >/dev/null 2>&1 || true
fi
BIN=$BUILD/bin
TP=$BIN/bench_throughput
LG=$BIN/bench_loadgen
TMP=$(mktemp -d)
STATSD_PID=
cleanup() {
  if [ -n "$STATSD_PID" ]; then kill "$STATSD_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

# field LINE KEY: the value of KEY=... in a key=value line
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
# median of the numbers on stdin
median() {
  sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "n/a"; exit}
    if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'
}
# med FILE KEY: median of KEY over the lines of FILE
med() { while read -r l; do field "$l" "$2"; done <"$1" | median; }

echo "# drainpipe throughput, $RUNS runs x ${DUR}s, $(nproc) CPUs," \
     "load $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%FT%TZ))"
echo "# machine shared with other jobs: figures are noisy, medians shown"

run_dp() { # name, args...
  local name=$1; shift
  : >"$TMP/$name"
  for _ in $(seq "$RUNS"); do
    "$TP" "$@" --duration "$DUR" --loadgen "$LG" | grep '^throughput' \
      >>"$TMP/$name"
  done
}

summary_dp() { # name label
  local f=$TMP/$1
  printf '%-34s lines/s %12s  cpu ns/line %7s  capacity lines/cpu-s %12s' \
    "$2" "$(med "$f" lines_per_s)" "$(med "$f" cpu_ns_per_line)" \
    "$(med "$f" capacity_lps)"
  printf '  loss %% %7s  (sent/s %s)\n' "$(med "$f" loss_pct)" \
    "$(while read -r l; do
         awk -v s="$(field "$l" sent_lines)" -v w="$(field "$l" window_s)" \
           'BEGIN {printf "%.0f\n", s / w}'; done <"$f" | median)"
}

run_dp a --workload a
run_dp b --workload b
run_dp c --workload c
run_dp a15 --workload a --rate 15000000
summary_dp a "(a) counters 80/pkt, max rate"
summary_dp b "(b) statsd mix 25/pkt, max rate"
summary_dp c "(c) 6 types + 3 tags, max rate"
summary_dp a15 "(a) at 15 M lines/s, 4 MiB rcvbuf"
zero=$(while read -r l; do
         if [ "$(field "$l" loss_lines)" = 0 ]; then echo x; fi
       done <"$TMP/a15" | wc -l)
echo "    (a) at 15 M/s: zero-loss runs $zero/$RUNS;" \
     "median snmp RcvbufErrors $(med "$TMP/a15" snmp_rcvbuf_errors)," \
     "InErrors $(med "$TMP/a15" snmp_in_errors) (datagrams)"

# memory: idle, peak, and with 100 000 live contexts
for w in a c; do
  "$TP" --workload "$w" --contexts 100000 --once --rate 200000 \
    --loadgen "$LG" | grep '^throughput' >"$TMP/rss$w"
done
echo "    idle RSS (median, KiB) $(med "$TMP/a" idle_rss_kib);" \
     "peak RSS (a) $(med "$TMP/a" hwm_kib), (c) $(med "$TMP/c" hwm_kib)"
for w in a c; do
  l=$(cat "$TMP/rss$w")
  echo "    100 000 contexts, workload ($w): RSS $(field "$l" rss_kib) KiB," \
       "VmHWM $(field "$l" hwm_kib) KiB, live contexts" \
       "$(field "$l" contexts), processed $(field "$l" processed_lines)"
done

# idle RSS of the real binary in sidecar mode (no API key: local sink)
SI=$BIN/serverless-init
if [ -x "$SI" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  env -u DD_API_KEY DD_DOGSTATSD_PORT="$port" DD_LOG_LEVEL=warn "$SI" \
    >/dev/null 2>&1 &
  sip=$!
  sleep 1
  if kill -0 "$sip" 2>/dev/null; then
    echo "    serverless-init sidecar idle: VmRSS" \
      "$(awk '/^VmRSS/ {print $2}' "/proc/$sip/status") KiB, VmHWM" \
      "$(awk '/^VmHWM/ {print $2}' "/proc/$sip/status") KiB"
    kill -TERM "$sip"; wait "$sip" 2>/dev/null || true
  else
    echo "    serverless-init exited early; no idle RSS figure"
  fi
fi

# parse-only micro-bench from memory
for w in a b c; do
  "$LG" --workload "$w" --dump "$TMP/$w.bin" --packets 2048 >/dev/null
  for sink in null agg; do
    : >"$TMP/po$w$sink"
    for _ in $(seq "$RUNS"); do
      "$TP" --parse-only "$TMP/$w.bin" --sink "$sink" --seconds 1 \
        >>"$TMP/po$w$sink"
    done
    printf '    parse-only (%s) sink=%-4s cpu ns/line %7s  lines/cpu-s %12s\n' \
      "$w" "$sink" "$(med "$TMP/po$w$sink" cpu_ns_per_line)" \
      "$(med "$TMP/po$w$sink" lines_per_cpu_s)"
  done
done

[ "$DO_STATSD" = 1 ] || exit 0

# ---- Etsy statsd, same load -------------------------------------------------
SD=$ROOT/bench/statsd
if [ ! -f "$SD/node_modules/statsd/stats.js" ]; then
  (cd "$SD" && npm install --no-audit --no-fund statsd >/dev/null 2>&1)
fi
free_port() {
  python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0)); t=socket.socket(); t.bind(("127.0.0.1", 0))
print(s.getsockname()[1], t.getsockname()[1])'
}
received() { # mgmt port -> statsd.metrics_received
  printf 'counters\n' | timeout 3 socat -t1 - "TCP:127.0.0.1:$1" 2>/dev/null |
    sed -n "s/.*'statsd.metrics_received': \([0-9]*\).*/\1/p" | head -1
}
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
HZ=$(getconf CLK_TCK)

run_statsd() { # workload
  read -r port mport < <(free_port)
  STATSD_BENCH_PORT=$port STATSD_BENCH_MGMT_PORT=$mport \
    taskset -c 0 node "$SD/node_modules/statsd/stats.js" \
    "$SD/bench-config.js" >"$TMP/statsd.log" 2>&1 &
  STATSD_PID=$!
  for _ in $(seq 50); do
    [ -n "$(received "$mport")" ] && break
    sleep 0.1
  done
  local r0 c0 t0 out r1 c1 t1 prev
  r0=$(received "$mport"); c0=$(cpu_ticks "$STATSD_PID")
  t0=$(date +%s.%N)
  out=$("$LG" --port "$port" --workload "$1" --duration "$DUR" --cpu 1)
  # drained when the count stops moving
  prev=-1; r1=$(received "$mport"); t1=$(date +%s.%N)
  while [ "$r1" != "$prev" ]; do
    prev=$r1; sleep 0.3
    r1=$(received "$mport")
    [ "$r1" != "$prev" ] && t1=$(date +%s.%N)
  done
  c1=$(cpu_ticks "$STATSD_PID")
  kill "$STATSD_PID"; wait "$STATSD_PID" 2>/dev/null || true; STATSD_PID=
  local sent
  sent=$(printf '%s\n' "$out" | sed -n 's/.*lines=\([0-9]*\).*/\1/p')
  awk -v r="$((r1 - r0))" -v s="$sent" -v c="$((c1 - c0))" -v hz="$HZ" \
    -v w="$(awk -v a="$t0" -v b="$t1" 'BEGIN {print b - a}')" 'BEGIN {
      printf "statsd sent_lines=%d processed_lines=%d window_s=%.3f ", s, r, w
      printf "lines_per_s=%.0f cpu_s=%.2f cpu_ns_per_line=%.1f ", r / w,
        c / hz, r ? c / hz * 1e9 / r : 0
      printf "loss_pct=%.3f\n", s ? 100 * (s - r) / s : 0 }'
}

echo "# Etsy statsd $(node -p 'require(process.argv[1]).version' \
  "$SD/node_modules/statsd/package.json") on node $(node --version)," \
  "same loadgen (default SO_RCVBUF: node's dgram cannot set it via statsd)"
for w in a b c; do
  : >"$TMP/sd$w"
  for _ in $(seq "$RUNS"); do run_statsd "$w" >>"$TMP/sd$w"; done
  sdl=$(med "$TMP/sd$w" lines_per_s); dpl=$(med "$TMP/$w" lines_per_s)
  sdc=$(med "$TMP/sd$w" cpu_ns_per_line); dpc=$(med "$TMP/$w" cpu_ns_per_line)
  printf '    (%s) statsd lines/s %10s cpu ns/line %8s | drainpipe/statsd:' \
    "$w" "$sdl" "$sdc"
  awk -v a="$dpl" -v b="$sdl" -v c="$dpc" -v d="$sdc" 'BEGIN {
    printf " lines/s x%.1f, cpu per line x%.1f less\n",
      (b > 0 ? a / b : 0), (c > 0 ? d / c : 0) }'
done
