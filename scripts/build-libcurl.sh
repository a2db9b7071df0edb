#!/usr/bin/env bash
# Builds drainpipe's private libcurl: Debian 12's own curl source package
# (the version of the installed libcurl4, with Debian's patches and security
# fixes applied by dpkg-source), configured for what the forwarder uses and
# nothing else, and copies it to DEST/libcurl.so.4.
#
#   scripts/build-libcurl.sh DEST            e.g. build/lib/drainpipe
#   DRAINPIPE_CURL_HOST=aarch64-linux-gnu scripts/build-libcurl.sh DEST
#                    cross-built for arm64 (the Lambda layer's --arch arm64:
#                    Debian's cross compiler and the arm64 libssl-dev and
#                    libnghttp2-dev, scripts/install-deps.sh --arm64)
#
# Why: Debian's libcurl.so.4 links about 30 libraries (both OpenSSL and
# GnuTLS, krb5, LDAP, SASL, libssh2, librtmp, libpsl, libidn2, brotli...).
# Loading it costs 5-6 ms of relocation and 8.4 MiB of resident memory on
# the reference VM; this build links only libssl, libcrypto and libnghttp2:
# about 1.7 ms and 4.3 MiB (bench/README.md, "A private libcurl").
#
# What it keeps: HTTP and HTTPS, HTTP/2 (nghttp2), OpenSSL with the system
# CA store (/etc/ssl/certs), proxies (HTTP and HTTPS proxies, NO_PROXY),
# the threaded resolver, IPv6. What it drops: every other protocol, the
# authentication schemes of Kerberos, NTLM and SPNEGO, IDN, the public
# suffix list, content decoding (the forwarder sends no Accept-Encoding).
#
# The forwarder (forwarder/fwd_curl.c) loads BIN/../lib/drainpipe/libcurl.so.4
# when it exists, then the system's libcurl.so.4; DRAINPIPE_LIBCURL overrides
# both. The library's RUNPATH is $ORIGIN, so a copy of libssl, libcrypto and
# libnghttp2 put next to it (the Lambda layer) is used before the system's.
#
# The build is cached under ${DRAINPIPE_CACHE:-$HOME/.cache/drainpipe}, keyed
# by the source version; a second call only copies. Needs the Debian mirror
# (apt-get source) the first time, and the packages of install-deps.sh.
set -euo pipefail

dest=${1:?usage: $0 DEST}
cache=${DRAINPIPE_CACHE:-${HOME:-/tmp}/.cache/drainpipe}
host=${DRAINPIPE_CURL_HOST:-}
# the host architecture's package (with arm64 added, libcurl4:arm64 too)
ver=$(dpkg-query -W -f='${Version}\n' "libcurl4:$(dpkg --print-architecture)" \
  2>/dev/null | head -1 || true)
[ -n "$ver" ] || { echo "build-libcurl: libcurl4 is not installed" >&2; exit 1; }
out=$cache/libcurl-$ver${host:+-$host}
lib=$out/lib/libcurl.so.4
cross=()
if [ -n "$host" ]; then
  command -v "$host-gcc" >/dev/null ||
    { echo "build-libcurl: no $host-gcc (scripts/install-deps.sh --arm64)" >&2; exit 1; }
  cross=(--host="$host" CC="$host-gcc"
    PKG_CONFIG_LIBDIR="/usr/lib/$host/pkgconfig:/usr/share/pkgconfig")
fi

if [ ! -e "$lib" ]; then
  work=$cache/libcurl-src-$ver
  rm -rf "$work" "$out"
  mkdir -p "$work/apt/lists/partial"
  # A private deb-src list and package index: the system's apt state is
  # left as it is.
  uris=$(sed -n 's/^URIs: //p' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  main=$(printf '%s\n' "$uris" | grep -v security | head -1)
  sec=$(printf '%s\n' "$uris" | grep security | head -1)
  : "${main:=http://deb.debian.org/debian}"
  : "${sec:=http://deb.debian.org/debian-security}"
  printf 'deb-src %s bookworm main\ndeb-src %s bookworm-security main\n' \
    "$main" "$sec" >"$work/sources.list"
  apt_opts=(-o Dir::Etc::sourcelist="$work/sources.list"
    -o Dir::Etc::sourceparts=- -o Dir::State::Lists="$work/apt/lists"
    -o APT::Sandbox::User=root)
  echo "build-libcurl: fetching Debian's curl $ver source" >&2
  apt-get "${apt_opts[@]}" -qq update >/dev/null
  (cd "$work" && apt-get "${apt_opts[@]}" -qq source "curl=$ver" >/dev/null 2>&1 ||
    apt-get "${apt_opts[@]}" -qq source curl >/dev/null)
  src=$(find "$work" -maxdepth 1 -type d -name 'curl-*' | head -1)
  [ -n "$src" ] || { echo "build-libcurl: no source tree" >&2; exit 1; }
  echo "build-libcurl: configuring and building $(basename "$src")" >&2
  (
    cd "$src"
    [ -x configure ] || autoreconf -fi >/dev/null 2>&1
    LDFLAGS='-Wl,-rpath,\$$ORIGIN -Wl,--as-needed' ./configure \
      "${cross[@]}" --prefix="$out" --disable-static --enable-shared \
      --with-openssl --with-nghttp2 --enable-threaded-resolver \
      --with-ca-bundle=/etc/ssl/certs/ca-certificates.crt \
      --with-ca-path=/etc/ssl/certs \
      --disable-ftp --disable-file --disable-ldap --disable-ldaps \
      --disable-rtsp --disable-dict --disable-telnet --disable-tftp \
      --disable-pop3 --disable-imap --disable-smb --disable-smtp \
      --disable-gopher --disable-mqtt --disable-manual --disable-docs \
      --disable-ntlm --disable-kerberos-auth --disable-negotiate-auth \
      --without-libpsl --without-brotli --without-zstd --without-zlib \
      --without-libidn2 --without-librtmp --without-libssh2 \
      --without-libssh --without-gssapi >"$work/configure.log" 2>&1 ||
      { tail -30 "$work/configure.log" >&2; exit 1; }
    grep -q 'Protocols: *HTTP HTTPS$' "$work/configure.log" ||
      { grep -E 'Protocols|Features' "$work/configure.log" >&2; exit 1; }
    grep -q 'Features:.*HTTP2' "$work/configure.log" ||
      { echo "build-libcurl: no HTTP/2 (libnghttp2-dev?)" >&2; exit 1; }
    make -j"$(nproc 2>/dev/null || echo 2)" -C lib >"$work/make.log" 2>&1 ||
      { tail -30 "$work/make.log" >&2; exit 1; }
    make -C lib install >>"$work/make.log" 2>&1
    mkdir -p "$out/share"
    cp COPYING "$out/share/COPYING.curl"
  )
  rm -rf "$work"
fi

mkdir -p "$dest"
cp -L "$lib" "$dest/libcurl.so.4.tmp"
mv -f "$dest/libcurl.so.4.tmp" "$dest/libcurl.so.4"
cp "$out/share/COPYING.curl" "$dest/COPYING.curl"
echo "build-libcurl: $dest/libcurl.so.4 (Debian curl $ver${host:+ for $host}, HTTP/HTTPS only)" >&2
