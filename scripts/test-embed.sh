#!/usr/bin/env bash
# The installed library, as a user gets it: installs a CMake build to a
# temporary prefix, builds examples/embed with pkg-config alone (nothing
# from the source tree), and runs it against the loopback intake through
# tests/libdrainpipe/embed_check.c, which checks the delivered values.
# Usage: scripts/test-embed.sh [build dir, default build]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build}
prefix=$(mktemp -d /tmp/dp-prefix-XXXXXX)
trap 'rm -rf "$prefix"' EXIT
cmake --install "$BUILD" --prefix "$prefix" >/dev/null
for f in lib/libdrainpipe.a lib/libdrainpipe.so include/drainpipe.h \
         lib/pkgconfig/drainpipe.pc bin/serverless-init; do
  [ -e "$prefix/$f" ] || { echo "not installed: $f" >&2; exit 1; }
done
export PKG_CONFIG_PATH=$prefix/lib/pkgconfig
libdir=$(pkg-config --variable=libdir drainpipe)
# -I/-L/-l from the .pc only; -rpath so the example finds the .so
cc -std=c11 -Wall -Wextra -Werror -O2 examples/embed/embed.c \
   $(pkg-config --cflags --libs drainpipe) -pthread -Wl,-rpath,"$libdir" \
   -o "$prefix/embed"
DP_EMBED_BIN=$prefix/embed DP_BIN_DIR=$BUILD/bin DP_TEST_DIR=$BUILD/tests \
  "$BUILD/tests/libdrainpipe_embed_check" --jobs 1
echo "test-embed: ok"
