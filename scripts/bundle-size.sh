#!/usr/bin/env bash
# Prints the size of the built client (dist/): the .wasm and its JS glue, raw, gzipped (-9) and
# brotli (-q 11, from the .br files scripts/build-client.sh leaves when brotli is installed): what
# a browser downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d dist ] || { echo "no dist/: run 'make client' (scripts/build-client.sh) first" >&2; exit 1; }
printf '%-12s %10s %10s %10s\n' file raw gzip-9 brotli
total_raw=0; total_gz=0; total_br=0
for f in dist/*.wasm dist/*.js; do
  raw=$(stat -c%s "$f"); gz=$(gzip -9c "$f" | wc -c)
  if [ -f "$f.br" ]; then br=$(stat -c%s "$f.br"); else br=0; fi
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz)); total_br=$((total_br + br))
  printf '%-12s %10d %10d %10s\n' "${f##*.}" "$raw" "$gz" "${br/#0/-}"
done
printf '%-12s %10d %10d %10s\n' total "$total_raw" "$total_gz" "${total_br/#0/-}"
