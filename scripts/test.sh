#!/usr/bin/env bash
# Runs every check drainpipe has, as CI does:
#   1. installs the Debian packages it needs (scripts/install-deps.sh)
#   2. style gates: banned functions, clang-format
#   3. CMake build with -Werror, drainpipe's own libcurl built next to it
#      (scripts/build-libcurl.sh), the whole Criterion suite (ctest), then
#      the installed library: examples/embed against a temporary prefix
#      (scripts/test-embed.sh), and the Lambda layer's zip, unzipped, under
#      the extension's end-to-end tests (scripts/test-layer.sh)
#   4. the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   5. the offline Bazel build and `bazel test //...`
#   6. every libFuzzer target for 60 s under ASan + UBSan (scripts/fuzz.sh)
# Usage: scripts/test.sh [--no-asan] [--no-bazel] [--no-fuzz]
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
ASAN=1
BAZEL=1
FUZZ=1
for a in "$@"; do
  case "$a" in
    --no-asan) ASAN=0 ;;
    --no-bazel) BAZEL=0 ;;
    --no-fuzz) FUZZ=0 ;;
    *) echo "usage: $0 [--no-asan] [--no-bazel] [--no-fuzz]" >&2; exit 2 ;;
  esac
done
JOBS=$(nproc 2>/dev/null || echo 2)

step() { printf '\n=== %s\n' "$*"; }

step "dependencies"
./scripts/install-deps.sh

step "style: banned functions and clang-format"
./scripts/check-banned.sh
./scripts/check-format.sh

failed=()
run_suite() { # name, build dir, extra cmake args...
  local name=$1 dir=$2
  shift 2
  step "build ($name)"
  cmake -S "$ROOT" -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  cmake --build "$dir" -j"$JOBS"
  # drainpipe's own libcurl next to the binaries (bin/../lib/drainpipe),
  # as installed and in the Lambda layer: the tests use it
  ./scripts/build-libcurl.sh "$dir/lib/drainpipe"
  step "tests ($name)"
  if ! ctest --test-dir "$dir" -j"$JOBS" --output-on-failure; then
    failed+=("$name")
  fi
  # Criterion runs each test in a worker process and does not fail a test
  # whose worker reports a sanitizer error at exit: read the full log.
  local log="$dir/Testing/Temporary/LastTest.log"
  if grep -qE "ERROR: (Leak|Address)Sanitizer|runtime error:" "$log"; then
    echo "sanitizer reports in $log:"
    grep -nE -A 12 "ERROR: (Leak|Address)Sanitizer|runtime error:" "$log" |
      head -80 || true
    failed+=("$name: sanitizer report")
  fi
}

run_suite release "$ROOT/build"
step "installed library: examples/embed built with pkg-config alone"
if ! ./scripts/test-embed.sh "$ROOT/build"; then
  failed+=("embed")
fi
step "Lambda layer: built, unzipped, its extension under the e2e tests"
if ! ./scripts/test-layer.sh "$ROOT/build"; then
  failed+=("layer")
fi
if [ "$(uname -m)" = x86_64 ]; then
  step "Lambda layer for arm64: cross-built, the same tests through qemu-user"
  if ! ./scripts/test-layer.sh "$ROOT/build" --arch arm64; then
    failed+=("layer arm64")
  fi
fi
if [ $ASAN -eq 1 ]; then
  # detect_leaks: every test must free what it allocates
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  run_suite "asan+ubsan" "$ROOT/build-asan" -DSANITIZE=address,undefined \
    -DDP_BENCH=OFF
  unset ASAN_OPTIONS UBSAN_OPTIONS
fi
if [ $BAZEL -eq 1 ]; then
  step "bazel (offline)"
  if ! bazel test //... --test_output=errors || ! bazel/test_summary.sh; then
    failed+=("bazel")
  fi
fi
if [ $FUZZ -eq 1 ]; then
  step "fuzz (60 s per target, clang + libFuzzer + ASan + UBSan)"
  if ! ./scripts/fuzz.sh --seconds 60; then
    failed+=("fuzz")
  fi
fi

if [ ${#failed[@]} -ne 0 ]; then
  echo
  echo "FAILED suites: ${failed[*]}"
  exit 1
fi
echo
echo "all suites passed"
