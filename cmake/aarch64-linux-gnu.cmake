# Cross-compiling for arm64 (AWS Graviton Lambda functions) on an x86-64
# Debian 12 host: scripts/package-lambda-layer.sh --arch arm64, which
# installs what this needs (scripts/install-deps.sh --arm64): Debian's cross
# compiler (crossbuild-essential-arm64) and the arm64 -dev packages through
# dpkg multiarch. http_parser's -dev package cannot be installed next to
# the host's, so its arm64 archive is unpacked under DP_ARM64_EXTRA
# (default ~/.cache/drainpipe/arm64-extra) and searched first.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_AR aarch64-linux-gnu-gcc-ar CACHE FILEPATH "")
set(CMAKE_RANLIB aarch64-linux-gnu-gcc-ranlib CACHE FILEPATH "")
set(CMAKE_STRIP aarch64-linux-gnu-strip CACHE FILEPATH "")
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
if(NOT DEFINED DP_ARM64_EXTRA)
  if(DEFINED ENV{DP_ARM64_EXTRA})
    set(DP_ARM64_EXTRA $ENV{DP_ARM64_EXTRA})
  else()
    set(DP_ARM64_EXTRA $ENV{HOME}/.cache/drainpipe/arm64-extra)
  endif()
endif()
list(PREPEND CMAKE_LIBRARY_PATH ${DP_ARM64_EXTRA}/usr/lib/aarch64-linux-gnu)
# only the arm64 libraries: never the host's of the same name
set(CMAKE_IGNORE_PATH /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu)
# pkg-config reads the arm64 .pc files (the headers are shared)
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
set(ENV{PKG_CONFIG_PATH} "")
