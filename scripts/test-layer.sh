#!/usr/bin/env bash
# Tests the Lambda layer as shipped: builds it (scripts/package-lambda-layer.sh),
# unzips it as Lambda does under a directory standing for /opt, and runs
# the end-to-end tests of a CMake build tree against the unzipped binary:
# the extension mode's whole suite (fake Runtime API, telemetry, intake) and
# the forwarder's choice of libcurl, which must be the layer's own
# lib/drainpipe/libcurl.so.4 with the OpenSSL next to it.
#
#   scripts/test-layer.sh BUILD_DIR      (the tree with the test programs)
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(cd "${1:?usage: $0 BUILD_DIR}" && pwd)

tmp=$(mktemp -d /tmp/drainpipe-layer-test.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
# named serverless-init: the tests run $DP_BIN_DIR/serverless-init
./scripts/package-lambda-layer.sh --name serverless-init --out "$tmp"
mkdir "$tmp/opt"
(cd "$tmp/opt" && unzip -q "$tmp"/drainpipe-lambda-layer-*.zip)

# the layer's libcurl resolves its OpenSSL from its own directory (RUNPATH)
for lib in libssl.so.3 libcrypto.so.3; do
  got=$(ldd "$tmp/opt/lib/drainpipe/libcurl.so.4" | awk -v l="$lib" '$1==l {print $3}')
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
echo "test-layer: the layer's extension passed"
