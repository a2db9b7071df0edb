#!/usr/bin/env bash
# Sums the Criterion results (and the fuzz corpus replays, one test per
# input) of the last `bazel test` run from its logs and
# fails if any test program ran no test at all (a program whose tests were
# not registered, e.g. dropped by the linker, would otherwise "pass"), or if
# any log holds a sanitizer report (Criterion does not fail a test whose
# worker reports a leak at exit; scripts/test.sh checks ctest's log alike).
# Usage: bazel test //... && bazel/test_summary.sh
#        bazel test --config=asan //... && bazel/test_summary.sh --config=asan
set -euo pipefail
cd "$(dirname "$0")/.."
logs=$(bazel info "$@" bazel-testlogs 2>/dev/null)
# Only the tests `bazel test //...` runs: bazel-testlogs also keeps the logs
# of earlier runs (a test since tagged manual, a removed target), which say
# nothing about this one.
mapfile -t labels < <(bazel query --noshow_progress \
    'tests(//...) except attr(tags, "\bmanual\b", //...)' 2>/dev/null)
if [ ${#labels[@]} -eq 0 ]; then
    echo "bazel query listed no tests" >&2
    exit 1
fi
tested=0 passing=0 failing=0 crashing=0 programs=0 empty=0 sanitizer=0
while IFS= read -r log; do
    line=$(grep -hs 'Synthesis: Tested:' "$log" | tail -n 1 || true)
    name=${log#"$logs"/}
    name=${name%/test.log}
    # A fuzz corpus replay (tests/fuzz/fuzz_driver.c) ends with "replayed
    # N inputs" only when every input ran (a failure aborts before it).
    fz=$(grep -hsE '^replayed [0-9]+ inputs$' "$log" | tail -n 1 || true)
    if [ -z "$line" ] && [ -n "$fz" ]; then
        n=$(sed -E 's/replayed ([0-9]+) inputs/\1/' <<<"$fz")
        line="Synthesis: Tested: $n | Passing: $n | Failing: 0 | Crashing: 0"
    fi
    if [ -z "$line" ]; then
        echo "no Criterion summary: //${name%/*}:${name##*/}" >&2
        empty=$((empty + 1))
        continue
    fi
    read -r t p f c < <(sed -E 's/.*Tested: ([0-9]+) \| Passing: ([0-9]+) \| Failing: ([0-9]+) \| Crashing: ([0-9]+).*/\1 \2 \3 \4/' <<<"$line")
    if [ "$t" -eq 0 ]; then
        echo "ran 0 tests: //${name%/*}:${name##*/}" >&2
        empty=$((empty + 1))
    fi
    if grep -qE "ERROR: (Leak|Address)Sanitizer|runtime error:" "$log"; then
        echo "sanitizer report: //${name%/*}:${name##*/} ($log)" >&2
        sanitizer=$((sanitizer + 1))
    fi
    programs=$((programs + 1))
    tested=$((tested + t)) passing=$((passing + p))
    failing=$((failing + f)) crashing=$((crashing + c))
done < <(for l in "${labels[@]}"; do
    l=${l#//}
    echo "$logs/${l%%:*}/${l#*:}/test.log"
done | sort)
echo "programs=$programs tested=$tested passing=$passing failing=$failing crashing=$crashing empty=$empty sanitizer=$sanitizer"
[ "$empty" -eq 0 ] && [ "$failing" -eq 0 ] && [ "$crashing" -eq 0 ] && [ "$sanitizer" -eq 0 ]
