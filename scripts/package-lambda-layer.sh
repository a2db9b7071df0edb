#!/usr/bin/env bash
# Builds an AWS Lambda layer zip that runs drainpipe as an external
# extension (README "Deploying on AWS Lambda").
#
#   scripts/package-lambda-layer.sh [--name NAME] [--out DIR] [--arch ARCH]
#
#   --name NAME   file name under extensions/ (default drainpipe); Lambda
#                 registers the extension under this name
#   --out DIR     where the zip goes (default dist/)
#   --arch ARCH   x86_64 or arm64 (default: the host's). arm64 on an
#                 x86-64 host is cross-built: see below.
#
# Layer layout (Lambda unzips it under /opt):
#   extensions/NAME  serverless-init, Release build; libuv, zstd, zlib,
#                    jansson, xxhash and http_parser are linked
#                    statically, so it maps only libc at exec
#   lib/drainpipe/   drainpipe's own libcurl.so.4 (scripts/build-libcurl.sh:
#                    HTTP and HTTPS only) with the libssl, libcrypto and
#                    libnghttp2 it links, and curl's licence; the
#                    forwarder dlopens it after the first /next
#                    (forwarder/fwd_curl.c), so none of it is on the
#                    cold-start path. Not /opt/lib, which is on the
#                    function's own library path.
#
# Runtime requirement: glibc >= 2.34 (Amazon Linux 2023 runtimes:
# provided.al2023, python3.12+, nodejs20.x+, java21 ...). The script
# checks the highest GLIBC_ symbol version the files need and fails when it
# is above 2.34. Amazon Linux 2 (glibc 2.26) is not supported by this build.
#
# arm64 (Graviton functions) on an x86-64 host: Debian's cross compiler
# with the arm64 libraries installed through dpkg multiarch
# (scripts/install-deps.sh --arm64, run here; needs root or sudo), CMake's
# toolchain file cmake/aarch64-linux-gnu.cmake, and the private libcurl
# cross-built the same way (DRAINPIPE_CURL_HOST). scripts/test-layer.sh
# --arch arm64 runs the result under qemu-user. On an arm64 host the
# default builds natively.
set -euo pipefail
cd "$(dirname "$0")/.."

name=drainpipe
out=dist
arch=$(uname -m)
while [ $# -gt 0 ]; do
  case $1 in
    --name) name=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --arch) arch=$2; shift 2 ;;
    *) echo "usage: $0 [--name NAME] [--out DIR] [--arch x86_64|arm64]" >&2
       exit 2 ;;
  esac
done
case $name in
  */*|"") echo "--name must be a plain file name" >&2; exit 2 ;;
esac
[ "$arch" = aarch64 ] && arch=arm64
host_arch=$(uname -m)
[ "$host_arch" = aarch64 ] && host_arch=arm64
build=build-layer
cmake_cross=()
tools=""      # prefix of strip, objdump, readelf
libdir=""     # where the cross build's OpenSSL and nghttp2 are
curl_host=""
if [ "$arch" != "$host_arch" ]; then
  if [ "$arch" != arm64 ] || [ "$host_arch" != x86_64 ]; then
    echo "cross-building for $arch on $host_arch is not supported: run it on" \
         "an $arch host" >&2
    exit 2
  fi
  ./scripts/install-deps.sh --arm64
  build=build-layer-arm64
  cmake_cross=(-DCMAKE_TOOLCHAIN_FILE="$PWD/cmake/aarch64-linux-gnu.cmake")
  tools=aarch64-linux-gnu-
  libdir=/usr/lib/aarch64-linux-gnu
  curl_host=aarch64-linux-gnu
fi

cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDP_TESTS=OFF \
  -DDP_BENCH=OFF -DDP_STATIC_DEPS=ON "${cmake_cross[@]}" >/dev/null
cmake --build "$build" -j2 --target serverless-init >/dev/null

stage=$(mktemp -d /tmp/drainpipe-layer.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/extensions" "$stage/lib"
install -m 0755 "$build/bin/serverless-init" "$stage/extensions/$name"
${tools}strip "$stage/extensions/$name"

# drainpipe's own libcurl (HTTP/HTTPS only: scripts/build-libcurl.sh) and the
# three libraries it links, in lib/drainpipe/: the forwarder loads
# extensions/../lib/drainpipe/libcurl.so.4, and the library's RUNPATH
# ($ORIGIN) finds its OpenSSL and nghttp2 next to it. Not in /opt/lib, which
# is on the function's library path: a runtime that loads libcurl itself
# keeps its own.
DRAINPIPE_CURL_HOST=$curl_host ./scripts/build-libcurl.sh "$stage/lib/drainpipe"
if [ -z "$libdir" ]; then
  deps=$(ldd "$stage/lib/drainpipe/libcurl.so.4" | awk '/=>/ {print $3}')
else # no ldd for another architecture: its NEEDED entries, from libdir
  deps=$(${tools}readelf -d "$stage/lib/drainpipe/libcurl.so.4" |
    sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | sed "s|^|$libdir/|")
fi
for dep in $deps; do
  base=$(basename "$dep")
  case $base in
    libssl.so.*|libcrypto.so.*|libnghttp2.so.*)
      cp -L "$dep" "$stage/lib/drainpipe/$base"
      ${tools}strip --strip-unneeded "$stage/lib/drainpipe/$base" 2>/dev/null || true ;;
  esac
done
${tools}strip --strip-unneeded "$stage/lib/drainpipe/libcurl.so.4" 2>/dev/null || true
for want in libcurl.so.4 libssl.so.3 libcrypto.so.3 libnghttp2.so.14; do
  [ -e "$stage/lib/drainpipe/$want" ] ||
    { echo "layer: $want missing from lib/drainpipe" >&2; exit 1; }
done

# The runtime's glibc must provide every symbol version used.
need=$(for f in "$stage/extensions/$name" "$stage"/lib/drainpipe/*.so*; do
         ${tools}objdump -T "$f" | grep -o 'GLIBC_[0-9.]*'
       done | sort -uV | tail -1)
if [ "$(printf '%s\n' "$need" GLIBC_2.34 | sort -V | tail -1)" != GLIBC_2.34 ]; then
  echo "the layer needs $need, newer than Amazon Linux 2023's GLIBC_2.34" >&2
  exit 1
fi

mkdir -p "$out"
zipfile=$(cd "$out" && pwd)/drainpipe-lambda-layer-$arch.zip
rm -f "$zipfile"
(cd "$stage" && zip -qr9 "$zipfile" extensions lib)
echo "$zipfile: extensions/$name + $(ls "$stage/lib/drainpipe" | grep -c '\.so') libraries in lib/drainpipe/," \
     "$(du -k "$zipfile" | cut -f1) KiB, needs $need"
