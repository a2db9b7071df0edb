#!/usr/bin/env bash
# Builds the libFuzzer targets of tests/fuzz with clang and
# -fsanitize=fuzzer,address,undefined (build-fuzz/), then runs each for a
# bounded time, starting from the seed corpus in tests/fuzz/corpus/<name>
# (regenerated from the test tables by scripts/fuzz-seeds.py). New inputs
# go to build-fuzz/corpus/<name>, crashes to build-fuzz/crashes/ (the
# seed corpus in git is never written to). Exit 1 when a target crashes,
# leaks, trips UBSan or fails an invariant.
#
# Usage: scripts/fuzz.sh [--seconds N | --runs N] [target...]
#   default: 60 seconds per target (CI), every target:
#   metric event service_check stream env agg
# Prints one line per target: executions, seconds, new corpus size.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
LIMIT=(-max_total_time=60)
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) LIMIT=(-max_total_time="$2"); shift 2 ;;
    --runs) LIMIT=(-runs="$2"); shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) targets+=("$1"); shift ;;
  esac
done
if [ ${#targets[@]} -eq 0 ]; then
  targets=(metric event service_check stream env agg)
fi
DIR="$ROOT/build-fuzz"

# clang's warnings differ from gcc's: -Werror stays with the gcc build.
CC=clang cmake -S "$ROOT" -B "$DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DDP_FUZZ=ON -DSANITIZE=address,undefined -DWERROR=OFF -DDP_BENCH=OFF \
  >/dev/null
cmake --build "$DIR" -j2 --target "${targets[@]/#/fuzz_}" >/dev/null

export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export LSAN_OPTIONS=suppressions=$ROOT/tests/lsan.supp
mkdir -p "$DIR/crashes"
failed=()
for t in "${targets[@]}"; do
  work="$DIR/corpus/$t"
  mkdir -p "$work"
  log="$DIR/fuzz_$t.log"
  start=$(date +%s)
  if "$DIR/tests/fuzz/fuzz_$t" "${LIMIT[@]}" -print_final_stats=1 \
      -artifact_prefix="$DIR/crashes/$t-" "$work" "$ROOT/tests/fuzz/corpus/$t" \
      >"$log" 2>&1; then
    status=ok
  else
    status=FAILED
    failed+=("$t")
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  echo "fuzz $t: $status, ${execs:-?} executions in $(( $(date +%s) - start )) s," \
    "corpus $(ls "$work" | wc -l) files (log: $log)"
  if [ "$status" = FAILED ]; then
    grep -E "ERROR:|runtime error|invariant failed|Test unit written" "$log" |
      head -20 || true
  fi
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "fuzz: FAILED targets: ${failed[*]}"
  exit 1
fi
