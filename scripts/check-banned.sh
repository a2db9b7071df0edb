#!/usr/bin/env bash
# A mini checksrc (STYLE.md rule 8): refuses footgun functions in our C
# sources. strtol/strtod are allowed only in common/cmn_str.c and raw
# malloc/free only in common/cmn_alloc.c. Tests and benchmarks follow the
# same rules, except that they may free() what a library handed them.
set -euo pipefail
cd "$(dirname "$0")/.."

files=$(git ls-files --cached --others --exclude-standard '*.c' '*.h')
bad=0
check() { # pattern, description, allowed-file-regex
  local pat=$1 what=$2 allow=${3:-^$}
  local hits
  # strip string literals and comments crudely: good enough for a lint
  hits=$(printf '%s\n' $files | grep -Ev "$allow" | xargs -r grep -nE "$pat" |
         grep -vE '^\S+:[0-9]+:\s*(/\*|\*|//)' || true)
  if [ -n "$hits" ]; then
    echo "banned: $what"
    echo "$hits"
    bad=1
  fi
}
check '\b(atoi|atol|atoll|sscanf|sprintf|vsprintf|strcpy|strcat|strncpy|strtok|gets)\s*\(' \
      'atoi atol sscanf sprintf strcpy strcat strncpy strtok gets'
check '\b(system|popen|fork|vfork)\s*\(' 'system popen fork (use uv_spawn)'
check '(^|[^_a-z])signal\s*\(' 'signal() (use uv_signal_t or sigaction in tests)'
# test_str.c uses strtod as the oracle for cmn_parse_f64's fast path
check '\b(strto(l|ll|ul|ull|d|f|ld|imax|umax))\s*\(' 'strtol/strtod outside common/cmn_str.c' \
      '^(\./)?(common/cmn_str\.c|tests/common/test_str\.c)$'
check '(^|[^_a-z])(malloc|calloc|realloc|free)\s*\(' 'raw malloc/free outside common/cmn_alloc.c' \
      '^(\./)?(common/cmn_alloc\.c|tests/.*|bench/.*)$'
# a temporary measurement print left in (2026-12-03: a "DBG ring ..." line
# on every listener's close reached main); the product logs through cmn_log
check '"DBG[ _:]' 'a debugging print ("DBG ...") in a source file'
if [ $bad -ne 0 ]; then
  echo "check-banned: FAILED" >&2
  exit 1
fi
echo "check-banned: ok"
