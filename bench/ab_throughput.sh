#!/usr/bin/env bash
# bench/ab_throughput.sh - side-by-side throughput of two builds (A = a
# baseline, B = the change), interleaved run by run so both see the same
# machine noise, with medians and the B/A ratio per figure.
#
#   bench/ab_throughput.sh A_BUILD_DIR B_BUILD_DIR [-n RUNS] [-d SECONDS]
#
# Each build dir must hold bin/bench_throughput and bin/bench_loadgen
# (Release). Workloads (bench/README.md): (a) counters 80 lines/packet,
# (b) statsd mix 25 lines/packet, (c) six types with 3 tags, all at the
# sender's maximum rate; then (a) at 15 M lines/s with SO_RCVBUF 212992.
# The server process (loop and, in B, its receive thread) is pinned to
# CPU 0, the sender to CPU 1; cpu_ns_per_line is the process's CPU time
# (all threads) per processed line. A benchmark, not a test.
set -euo pipefail
A=$1 B=$2
shift 2
RUNS=5 DUR=3
while [ $# -gt 0 ]; do
  case $1 in
    -n) RUNS=$2; shift 2 ;;
    -d) DUR=$2; shift 2 ;;
    *) echo "usage: $0 A B [-n RUNS] [-d SECONDS]" >&2; exit 2 ;;
  esac
done
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
# Each side runs from COPIES copies of its binaries, one a round in turn.
# On the test VM two identical binaries in different files ran 8 % apart
# (parse-only (a), 8 alternated pairs, 2026-12-03 13:36): where a file's
# pages land in memory matters, and one copy a side would add that to the
# difference between the builds.
COPIES=3
for side in A B; do
  dir=$A
  [ $side = B ] && dir=$B
  for k in $(seq "$COPIES"); do
    mkdir -p "$TMP/bin.$side.$k"
    cp "$dir/bin/bench_throughput" "$dir/bin/bench_loadgen" "$TMP/bin.$side.$k/"
  done
done
field() { printf '%s\n' "$1" | tr ' ' '\n' | sed -n "s/^$2=//p" | head -1; }
median() {
  sort -g | awk '{v[NR]=$1} END {if (NR==0) {print "n/a"; exit}
    if (NR%2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'
}
med() { while read -r l; do field "$l" "$2"; done <"$1" | median; }

echo "# A=$A B=$B, $RUNS runs x ${DUR}s, $(nproc) CPUs," \
     "load $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%FT%TZ))"
cases=("a:--workload a" "b:--workload b" "c:--workload c"
       "a15:--workload a --rate 15000000 --rcvbuf 212992")
# The order alternates run by run (A B, then B A): on the test VM the
# second of two back-to-back runs at full speed was slower (the same build
# twice, six pairs at 2026-12-03 10:40: 41.25 against 46.4 ns a line,
# medians), which put B at a disadvantage when A always ran first.
round=0
for _ in $(seq "$RUNS"); do
  round=$((round + 1))
  order="A B"
  [ $((round % 2)) = 0 ] && order="B A"
  for c in "${cases[@]}"; do
    name=${c%%:*} args=${c#*:}
    for side in $order; do
      dir=$TMP/bin.$side.$(((round - 1) % COPIES + 1))
      # shellcheck disable=SC2086
      "$dir/bench_throughput" $args --duration "$DUR" \
        --loadgen "$dir/bench_loadgen" | grep '^throughput' \
        >>"$TMP/$name.$side" || true
    done
  done
done
printf '%-5s %14s %14s %7s %10s %10s %7s %9s %9s\n' case "A lines/s" \
  "B lines/s" "B/A" "A ns/line" "B ns/line" "B/A" "A loss%" "B loss%"
for c in "${cases[@]}"; do
  name=${c%%:*}
  la=$(med "$TMP/$name.A" lines_per_s) lb=$(med "$TMP/$name.B" lines_per_s)
  na=$(med "$TMP/$name.A" cpu_ns_per_line) nb=$(med "$TMP/$name.B" cpu_ns_per_line)
  printf '%-5s %14s %14s %7s %10s %10s %7s %9s %9s\n' "$name" "$la" "$lb" \
    "$(awk -v a="$la" -v b="$lb" 'BEGIN {printf "%.3f", b / a}')" "$na" "$nb" \
    "$(awk -v a="$na" -v b="$nb" 'BEGIN {printf "%.3f", b / a}')" \
    "$(med "$TMP/$name.A" loss_pct)" "$(med "$TMP/$name.B" loss_pct)"
done
for side in A B; do
  z=0
  while read -r l; do [ "$(field "$l" loss_lines)" = 0 ] && z=$((z + 1)); done \
    <"$TMP/a15.$side"
  echo "(a) at 15 M lines/s, SO_RCVBUF 212992, $side: zero-loss runs $z/$RUNS"
done
echo "idle RSS KiB (a): A $(med "$TMP/a.A" idle_rss_kib), B $(med "$TMP/a.B" idle_rss_kib);" \
     "peak (a): A $(med "$TMP/a.A" hwm_kib), B $(med "$TMP/a.B" hwm_kib)"
