#!/usr/bin/env bash
# Prints the size of the built client (dist/): the .wasm and its JS glue, raw and gzipped.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d dist ] || { echo "no dist/: run 'make client' (scripts/build-client.sh) first" >&2; exit 1; }
printf '%-12s %10s %10s\n' file raw gzip-9
total_raw=0; total_gz=0
for f in dist/*.wasm dist/*.js; do
  raw=$(stat -c%s "$f"); gz=$(gzip -9c "$f" | wc -c)
  total_raw=$((total_raw + raw)); total_gz=$((total_gz + gz))
  printf '%-12s %10d %10d\n' "${f##*.}" "$raw" "$gz"
done
printf '%-12s %10d %10d\n' total "$total_raw" "$total_gz"
