#!/usr/bin/env bash
# Tests the Lambda layer as shipped: builds it (scripts/package-lambda-layer.sh),
# unzips it as Lambda does under a directory standing for /opt, and runs
# the end-to-end tests of a CMake build tree against the unzipped binary:
# the extension mode's whole suite (fake Runtime API, telemetry, intake) and
# the forwarder's choice of libcurl, which must be the layer's own
# lib/drainpipe/libcurl.so.4 with the OpenSSL next to it.
#
#   scripts/test-layer.sh BUILD_DIR [--arch arm64]
#
# BUILD_DIR is the tree with the test programs (the host's). --arch arm64
# on an x86-64 host tests the cross-built arm64 layer: the test programs
# run natively and exec the arm64 extension through qemu-user, registered
# with binfmt_misc here when it is not (needs root); DP_EXPECT_ARCH tells
# the tests which architecture tag the enhanced metrics carry.
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:?usage: $0 BUILD_DIR [--arch arm64]}" && pwd)
shift
arch=""
case "${1:-}" in
  --arch) arch=${2:?--arch needs a value} ;;
  "") ;;
  *) echo "usage: $0 BUILD_DIR [--arch arm64]" >&2; exit 2 ;;
esac

tmp=$(mktemp -d /tmp/drainpipe-layer-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# named serverless-init: the tests run $DP_BIN_DIR/serverless-init
./scripts/package-lambda-layer.sh --name serverless-init --out "$tmp" \
  ${arch:+--arch "$arch"}
mkdir "$tmp/opt"
(cd "$tmp/opt" && unzip -q "$tmp"/drainpipe-lambda-layer-*.zip)

list_deps() { ldd "$1"; }
if [ "$arch" = arm64 ] && [ "$(uname -m)" != aarch64 ]; then
  # arm64 ELF files (executables and shared objects) run by qemu-aarch64
  bf=/proc/sys/fs/binfmt_misc
  [ -e "$bf/register" ] || mount -t binfmt_misc binfmt_misc "$bf"
  if ! grep -qs 'qemu-aarch64' "$bf"/*; then
    printf '%s' ':drainpipe-aarch64:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff:/usr/bin/qemu-aarch64:' \
      >"$bf/register"
  fi
  list_deps() { /lib/ld-linux-aarch64.so.1 --list "$1"; }
  export DP_EXPECT_ARCH=arm64
  "$tmp/opt/extensions/serverless-init" --version >/dev/null
fi

# the layer's libcurl resolves its OpenSSL from its own directory (RUNPATH)
for lib in libssl.so.3 libcrypto.so.3; do
  got=$(list_deps "$tmp/opt/lib/drainpipe/libcurl.so.4" | awk -v l="$lib" '$1==l {print $3}')
  case $got in
    "$tmp/opt/lib/drainpipe/$lib") ;;
    *) echo "test-layer: libcurl.so.4 resolves $lib to '$got', not the layer's" >&2
       exit 1 ;;
  esac
done

export DP_BIN_DIR=$tmp/opt/extensions
export DP_TEST_DIR=$build/tests
export DP_SOURCE_DIR=$PWD
"$build/tests/serverless_init_test_e2e_lambda"
"$build/tests/serverless_init_test_e2e_start" --filter 'libcurl/*'
echo "test-layer: the layer's extension passed${arch:+ ($arch)}"
