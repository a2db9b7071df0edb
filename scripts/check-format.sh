#!/usr/bin/env bash
# Every tracked C file matches .clang-format (STYLE.md rule 17).
set -euo pipefail
cd "$(dirname "$0")/.."
bad=$(git ls-files --cached --others --exclude-standard '*.c' '*.h' |
      while read -r f; do
        clang-format --dry-run -Werror "$f" >/dev/null 2>&1 || echo "$f"
      done)
if [ -n "$bad" ]; then
  echo "check-format: these files differ from .clang-format (run clang-format -i):"
  echo "$bad"
  exit 1
fi
echo "check-format: ok"
