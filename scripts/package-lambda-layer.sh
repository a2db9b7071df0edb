#!/usr/bin/env bash
# Builds an AWS Lambda layer zip that runs drainpipe as an external
# extension (README "Deploying on AWS Lambda").
#
#   scripts/package-lambda-layer.sh [--name NAME] [--out DIR] [--arch ARCH]
#
#   --name NAME   file name under extensions/ (default drainpipe); Lambda
#                 registers the extension under this name
#   --out DIR     where the zip goes (default dist/)
#   --arch ARCH   x86_64 (default). arm64 is refused: see below.
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
# arm64: Debian has the cross compiler (gcc-aarch64-linux-gnu), but the
# static archives of the seven libraries above, OpenSSL and nghttp2 would be
# needed for arm64 as well (dpkg multiarch), which is
# not cheap to set up here; build on an arm64 host with this script instead
# (it then packages the host architecture).
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
if [ "$arch" != "$(uname -m)" ]; then
  echo "cross-building for $arch is not supported (see the comment at the" \
       "top of $0); run it on an $arch host" >&2
  exit 2
fi

build=build-layer
cmake -S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDP_TESTS=OFF \
  -DDP_BENCH=OFF -DDP_STATIC_DEPS=ON >/dev/null
cmake --build "$build" -j2 --target serverless-init >/dev/null

stage=$(mktemp -d /tmp/drainpipe-layer.XXXXXX)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/extensions" "$stage/lib"
install -m 0755 "$build/bin/serverless-init" "$stage/extensions/$name"
strip "$stage/extensions/$name"

# drainpipe's own libcurl (HTTP/HTTPS only: scripts/build-libcurl.sh) and the
# three libraries it links, in lib/drainpipe/: the forwarder loads
# extensions/../lib/drainpipe/libcurl.so.4, and the library's RUNPATH
# ($ORIGIN) finds its OpenSSL and nghttp2 next to it. Not in /opt/lib, which
# is on the function's library path: a runtime that loads libcurl itself
# keeps its own.
./scripts/build-libcurl.sh "$stage/lib/drainpipe"
for dep in $(ldd "$stage/lib/drainpipe/libcurl.so.4" | awk '/=>/ {print $3}'); do
  base=$(basename "$dep")
  case $base in
    libssl.so.*|libcrypto.so.*|libnghttp2.so.*)
      cp -L "$dep" "$stage/lib/drainpipe/$base"
      strip --strip-unneeded "$stage/lib/drainpipe/$base" 2>/dev/null || true ;;
  esac
done
strip --strip-unneeded "$stage/lib/drainpipe/libcurl.so.4" 2>/dev/null || true
for want in libcurl.so.4 libssl.so.3 libcrypto.so.3 libnghttp2.so.14; do
  [ -e "$stage/lib/drainpipe/$want" ] ||
    { echo "layer: $want missing from lib/drainpipe" >&2; exit 1; }
done

# The runtime's glibc must provide every symbol version used.
need=$(for f in "$stage/extensions/$name" "$stage"/lib/drainpipe/*.so*; do
         objdump -T "$f" | grep -o 'GLIBC_[0-9.]*'
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
