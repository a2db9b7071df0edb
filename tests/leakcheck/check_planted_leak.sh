#!/bin/sh
# Runs the planted-leak test binary ($1) with the suite's LeakSanitizer
# suppressions ($2) and succeeds only if LeakSanitizer reports the 4096
# bytes (plus the allocator header) planted in dp_planted_leak: the suppressions must not hide a real
# leak in a test. The report itself is kept out of this script's output
# (in $3), because scripts/test.sh fails the suite on any sanitizer report
# in the ctest log.
set -u
bin=$1 supp=$2 out=$3
ASAN_OPTIONS=detect_leaks=1 LSAN_OPTIONS=suppressions=$supp \
  "$bin" --jobs 1 >"$out" 2>&1
if grep -q "LeakSanitizer: detected memory leaks" "$out" &&
   grep -q "byte(s) leaked" "$out" &&
   grep -q "dp_planted_leak" "$out"; then
  echo "planted leak detected: the suppressions hide only Criterion's own"
  exit 0
fi
echo "planted 4096-byte leak NOT reported (suppressions too broad?); see $out"
exit 1
