#!/usr/bin/env bash
# bench/burst.sh - burst tolerance: the largest back-to-back burst of
# single-line datagrams from one sender that serverless-init absorbs with
# zero loss, at the default configuration and with SO_RCVBUF 212992 (a
# kernel whose rmem_max is the stock 212992).
#
#   bench/burst.sh [-r RUNS] [-s "SIZES"] [BUILD_DIR]   (default: build, 3 runs,
#                                           sizes 50000 100000 200000 400000 800000)
#
# Each run: serverless-init (no API key: local sink, so no network) wraps
# tests/sinit_test_child, which sends N datagrams of one line each
# (burst_line.h: mixed types over 500 contexts, 3 tags) with sendto() as
# fast as it can, then exits. The wrapper's debug stats at stop give the
# datagrams parsed and the kernel's drop count for the socket; a run is
# lossless when parsed == N and drops == 0. A size is absorbed when all its
# runs are lossless. Extra environment (e.g. DRAINPIPE_RECEIVE_REALTIME=false)
# passes through. Each size also gives the median wall time of the wrapped
# job (the wrapper's start to its exit): what reading the burst costs the
# job. Under `taskset -c 0` everything shares one CPU, as in a 1-vCPU
# container: the receive thread then never spins and naps between batches.
# A benchmark, not a test.
set -euo pipefail

RUNS=3
SIZES="50000 100000 200000 400000 800000"
while getopts r:s: o; do
  case $o in
    r) RUNS=$OPTARG ;;
    s) SIZES=$OPTARG ;;
    *) echo "usage: $0 [-r RUNS] [-s SIZES] [BUILD_DIR]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
BUILD=${1:-build}
BIN=$BUILD/bin/serverless-init
CHILD=$BUILD/tests/sinit_test_child
[ -x "$BIN" ] && [ -x "$CHILD" ] || { echo "build first ($BIN, $CHILD)" >&2; exit 1; }
T=$(mktemp -d /tmp/burst.XXXXXX)
trap 'rm -rf "$T"' EXIT

echo "machine: $(nproc) cores, $(uname -r), load $(cut -d' ' -f1-3 /proc/loadavg)"
for cfg in default 212992; do
  best=0
  for n in $SIZES; do
    ok=0
    detail=""
    walls=()
    for r in $(seq "$RUNS"); do
      extra=()
      [ "$cfg" = default ] || extra=(DD_DOGSTATSD_SO_RCVBUF="$cfg")
      t0=$(date +%s%N)
      env "${extra[@]}" DD_LOG_LEVEL=debug DD_DOGSTATSD_PORT=__random__ \
        "$BIN" "$CHILD" burst udp "$n" 500 1 - >/dev/null 2>"$T/err" || true
      walls+=($((($(date +%s%N) - t0) / 1000000)))
      line=$(grep -o 'stopped: [0-9]* packets.*kernel drops udp [0-9]*' "$T/err" | tail -1)
      pk=$(printf '%s\n' "$line" | sed -n 's/^stopped: \([0-9]*\) packets.*/\1/p')
      dr=$(printf '%s\n' "$line" | sed -n 's/.*kernel drops udp \([0-9]*\)$/\1/p')
      detail="$detail ${pk:-?}/${dr:-?}"
      if [ "${pk:-0}" = "$n" ] && [ "${dr:-1}" = 0 ]; then ok=$((ok + 1)); fi
    done
    wall=$(printf '%s\n' "${walls[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
    echo "rcvbuf=$cfg burst=$n lossless_runs=$ok/$RUNS (parsed/dropped:$detail) job_wall_ms_median=$wall"
    if [ "$ok" = "$RUNS" ]; then best=$n; else break; fi
  done
  echo "rcvbuf=$cfg largest_lossless_burst=$best"
done
