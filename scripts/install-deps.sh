#!/usr/bin/env bash
# Installs the Debian 12 packages drainpipe needs to build, test and
# benchmark. Idempotent; needs root (or sudo). Skips apt entirely when every
# package is already installed, so repeated runs cost nothing.
#
#   scripts/install-deps.sh            the host's build, tests and benchmarks
#   scripts/install-deps.sh --arm64    also what cross-building the arm64
#                                      Lambda layer needs on an x86-64 host
#                                      (cmake/aarch64-linux-gnu.cmake)
set -euo pipefail

arm64=0
case ${1:-} in
  --arm64) arm64=1 ;;
  "") ;;
  *) echo "usage: $0 [--arm64]" >&2; exit 2 ;;
esac

PKGS=(
  build-essential cmake pkg-config clang-format
  libuv1-dev libcurl4-openssl-dev zlib1g-dev libzstd-dev
  libprotobuf-c-dev protobuf-c-compiler libcriterion-dev
  libxxhash-dev libjansson-dev libhttp-parser-dev
  bazel-bootstrap bazel-platforms
  dpkg-dev libssl-dev libnghttp2-dev
  socat openssl ca-certificates curl zip unzip
  clang libfuzzer-14-dev libclang-rt-14-dev
)

# arm64 (dpkg multiarch): Debian's cross compiler, qemu-user to run what it
# builds, and the arm64 libraries the layer links or ships. Not
# libhttp-parser-dev:arm64, which cannot be installed next to the host's:
# its archive is unpacked under the cache below instead.
ARM64_PKGS=(
  crossbuild-essential-arm64 libc6-dev-arm64-cross qemu-user
  libuv1-dev:arm64 zlib1g-dev:arm64 libzstd-dev:arm64 libjansson-dev:arm64
  libxxhash-dev:arm64 libprotobuf-c-dev:arm64 libcurl4-openssl-dev:arm64
  libssl-dev:arm64 libnghttp2-dev:arm64
)

installed() {
  dpkg-query -W -f='${Status}\n' "$1" 2>/dev/null | grep -q "install ok installed"
}

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "${PKGS[@]}"; do
  installed "$p" || missing+=("$p")
done
if [ $arm64 -eq 1 ]; then
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    $SUDO dpkg --add-architecture arm64
  fi
  for p in "${ARM64_PKGS[@]}"; do
    installed "$p" || missing+=("$p")
  done
fi
if [ ${#missing[@]} -ne 0 ]; then
  echo "install-deps: installing ${missing[*]}" >&2
  $SUDO apt-get update -qq
  # --no-remove: an arm64 package that conflicts with a host one fails
  # here instead of removing the host's
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
    --no-install-recommends --no-remove "${missing[@]}" >/dev/null
fi

if [ $arm64 -eq 1 ]; then
  extra=${DP_ARM64_EXTRA:-${HOME:-/tmp}/.cache/drainpipe/arm64-extra}
  if [ ! -e "$extra/usr/lib/aarch64-linux-gnu/libhttp_parser.a" ]; then
    tmp=$(mktemp -d)
    (cd "$tmp" && apt-get download -qq libhttp-parser-dev:arm64 2>/dev/null)
    mkdir -p "$extra"
    dpkg -x "$tmp"/libhttp-parser-dev_*_arm64.deb "$extra"
    rm -rf "$tmp"
  fi
fi
