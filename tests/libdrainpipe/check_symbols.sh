#!/bin/sh
# libdrainpipe.so exports dp_* and nothing else (its version node aside),
# has a versioned SONAME, and exports the whole API of drainpipe.h.
# Usage: check_symbols.sh <libdrainpipe.so> <drainpipe.h>
set -eu
so=$1
hdr=$2
syms=$(nm -D --defined-only "$so" | awk '{print $NF}' | sed 's/@.*//')
bad=$(printf '%s\n' "$syms" | grep -v '^dp_' | grep -v '^DRAINPIPE_0\(\.[0-9]*\)\{0,1\}$' || true)
if [ -n "$bad" ]; then
  echo "exported symbols other than dp_*:"
  printf '%s\n' "$bad" | head -20
  exit 1
fi
soname=$(readelf -d "$so" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
[ "$soname" = "libdrainpipe.so.0" ] || { echo "SONAME is '$soname'"; exit 1; }
# every function the header declares is exported
want=$(grep -oE '\bdp_[a-z_]+\(' "$hdr" | tr -d '(' | sort -u)
for f in $want; do
  printf '%s\n' "$syms" | grep -qx "$f" || { echo "missing: $f"; exit 1; }
done
echo "symbols ok: $(printf '%s\n' "$syms" | grep -c '^dp_') dp_* functions"
