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
#   lib/             libcurl.so.4 and the libraries it loads, except the C
#                    library's own; Lambda puts /opt/lib on the library
#                    path, and the forwarder dlopens libcurl after the
#                    first /next (forwarder/fwd_curl.c), so none of it is
#                    on the cold-start path
#
# Runtime requirement: glibc >= 2.34 (Amazon Linux 2023 runtimes:
# provided.al2023, python3.12+, nodejs20.x+, java21 ...). The script
# checks the highest GLIBC_ symbol version the files need and fails when it
# is above 2.34. Amazon Linux 2 (glibc 2.26) is not supported by this build.
#
# arm64: Debian has the cross compiler (gcc-aarch64-linux-gnu), but the
# static archives of the seven libraries above and libcurl with its ~30
# dependencies would be needed for arm64 as well (dpkg multiarch), which is
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

# libcurl and what it needs, minus the C library's own objects (the
# runtime's glibc must be used).
curl=$(ldconfig -p | awk '/libcurl\.so\.4 .*'"$(uname -m | tr _ -)"'/ {print $NF; exit}')
[ -n "$curl" ] || curl=$(ldconfig -p | awk '/libcurl\.so\.4 / {print $NF; exit}')
[ -n "$curl" ] || { echo "libcurl.so.4 not found (apt-get install libcurl4)" >&2; exit 1; }
skip='^(linux-vdso|libc|libm|libdl|libpthread|librt|libresolv|ld-linux.*)\.so'
for lib in "$curl" $(ldd "$curl" | awk '/=>/ {print $3}'); do
  base=$(basename "$lib")
  if [[ $base =~ $skip ]]; then continue; fi
  cp -L "$lib" "$stage/lib/$base"
  strip --strip-unneeded "$stage/lib/$base" 2>/dev/null || true
done

# The runtime's glibc must provide every symbol version used.
need=$(for f in "$stage/extensions/$name" "$stage"/lib/*; do
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
echo "$zipfile: extensions/$name + $(ls "$stage/lib" | wc -l) libraries in lib/," \
     "$(du -k "$zipfile" | cut -f1) KiB, needs $need"
