#!/usr/bin/env bash
# Installs the Debian 12 packages drainpipe needs to build, test and
# benchmark. Idempotent; needs root (or sudo). Skips apt entirely when every
# package is already installed, so repeated runs cost nothing.
set -euo pipefail

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

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
  "${missing[@]}" >/dev/null
