#!/usr/bin/env bash
# bench/soak.sh - the soak run of issue 8 (bench/soak.c): serverless-init as
# a sidecar, 10 000 counter contexts with 5-20 tags at half of the maximum
# throughput, intake faults every 30 s (five 503s, then one connection
# reset), VmRSS sampled every second. Prints the RSS spread after the
# warm-up (target: max - min <= 2 MiB) and the counts lost (target: 0).
#
#   bench/soak.sh [BUILD_DIR] [SECONDS] [WARMUP_SECONDS]
#
# BUILD_DIR (default build-bench) must hold bin/bench_soak and
# bin/serverless-init (Release). SECONDS defaults to 600, the warm-up to 60.
# The maximum throughput is measured first (10 s at the sender's full
# speed: lines per second of the sidecar's CPU). Takes both CPUs for the
# whole run. A benchmark, not a test.
set -euo pipefail
B=${1:-build-bench}
SECS=${2:-600}
WARM=${3:-60}
cal=$("$B/bin/bench_soak" --calibrate 10)
echo "$cal"
cap=$(printf '%s\n' "$cal" | tr ' ' '\n' | sed -n 's/^capacity_lps=//p')
rate=$(awk -v c="$cap" 'BEGIN { printf "%.0f", c / 2 }')
echo "# soak: $SECS s at $rate lines/s (half of $cap), warm-up $WARM s," \
     "load $(cut -d' ' -f1-3 /proc/loadavg) ($(date -u +%FT%TZ))"
"$B/bin/bench_soak" --seconds "$SECS" --rate "$rate" --warmup "$WARM"
