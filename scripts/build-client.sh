#!/usr/bin/env bash
# Builds the client into dist/ without Trunk: cargo for wasm32, wasm-bindgen for the JS glue,
# wasm-opt (Debian's binaryen) and esbuild when they are installed, and www/index.html with the
# Trunk lines replaced by plain tags. File names carry a hash of the content, so a browser never runs a
# stale bundle from its cache. Trunk stays the development loop (`make dev`); a first `make run`
# does not have to compile it.
#   scripts/build-client.sh            release build (what `make run` and `make test` serve)
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '[client] %s\n' "$*"; }
out=dist
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
wasm="$target_dir/wasm32-unknown-unknown/wasm-release/client.wasm"

say "cargo build --profile wasm-release --target wasm32-unknown-unknown -p client"
cargo build --profile wasm-release --target wasm32-unknown-unknown -p client

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
if command -v wasm-opt >/dev/null; then
  # Size first (-Oz), on rustc's output before wasm-bindgen: binaryen 108 (Debian's) does not
  # know the externref table wasm-bindgen adds, and rewriting it breaks the module. The
  # features are the ones rustc emits for wasm32 by default. Rust's stack sits at the bottom of
  # memory and grows down, so only an overflowing stack would reach the first 1 KB: --low-memory-unused lets
  # binaryen fold constant addresses into loads and stores (900 bytes gzipped).
  wasm-opt -Oz --converge --low-memory-unused --enable-reference-types --enable-multivalue --enable-bulk-memory \
    --enable-sign-ext --enable-nontrapping-float-to-int --enable-mutable-globals \
    "$wasm" -o "$stage/client.wasm"
  wasm="$stage/client.wasm"
else
  say "wasm-opt not found (Debian package binaryen): the .wasm is not size-optimised"
fi
wasm-bindgen --target web --no-typescript --remove-name-section --remove-producers-section \
  --out-dir "$stage" --out-name client "$wasm"
if command -v esbuild >/dev/null; then
  # The glue minified (Debian's esbuild): its exported and imported names stay as they are.
  esbuild --minify --format=esm --log-level=warning "$stage/client.js" --outfile="$stage/client.min.js"
  mv "$stage/client.min.js" "$stage/client.js"
else
  say "esbuild not found (Debian package esbuild): the JS glue is not minified"
fi

hash=$(cat "$stage/client_bg.wasm" "$stage/client.js" www/style.css | sha256sum | cut -c1-12)
name="client-$hash"
mkdir -p "$out.new"
rm -rf "$out.new"/*
# The glue names its .wasm after itself; keep the pair together under the hashed name.
sed "s/client_bg\.wasm/${name}_bg.wasm/g" "$stage/client.js" > "$out.new/$name.js"
cp "$stage/client_bg.wasm" "$out.new/${name}_bg.wasm"
cp www/style.css "$out.new/style-$hash.css"
# The Trunk lines of www/index.html become plain tags; the .wasm is fetched while the glue loads.
python3 - "$name" "$hash" www/index.html "$out.new/index.html" <<'PY'
import re, sys
name, hash_, src, dst = sys.argv[1:]
html = open(src, encoding="utf-8").read()
css = f'<link rel="stylesheet" href="./style-{hash_}.css">'
# The loader: a download cut off (a phone moving between networks, a relay restarting, a
# connection dropped under load) is fetched again, up to three times with growing pauses,
# before the page says it could not start. A module whose fetch failed stays failed under its
# URL for the page's life, so a retry asks for it under another (?try=N). The WebAssembly is
# compiled as it downloads, inside the retry (a body cut off fails there), and started only
# once both are in: the code itself is never started twice.
loader = (
    'const again = (get, n = 0) => get(n).catch((e) => n < 3 '
    '? new Promise((r) => setTimeout(r, 500 << n)).then(() => again(get, n + 1)) : Promise.reject(e));\n'
    'Promise.all([\n'
    f'  again((n) => import("./{name}.js" + (n ? "?try=" + n : ""))),\n'
    f'  again(() => WebAssembly.compileStreaming(fetch("./{name}_bg.wasm")\n'
    '    .then((r) => r.ok ? r : Promise.reject(new Error("HTTP " + r.status))))),\n'
    ']).then(([glue, wasm]) => glue.default({ module_or_path: wasm }))\n'
    '  .catch((e) => { console.error(e); window.__notStarted && window.__notStarted(); });'
)
rust = (f'<link rel="preload" href="./{name}_bg.wasm" as="fetch" type="application/wasm" crossorigin>\n'
        f'  <link rel="modulepreload" href="./{name}.js">\n'
        f'  <script type="module">\n{loader}\n</script>')
html, n_css = re.subn(r'<link data-trunk rel="css"[^>]*>', css, html)
html, n_rust = re.subn(r'<link data-trunk rel="rust"[^>]*>', rust, html)
if n_css != 1 or n_rust != 1:
    sys.exit(f"www/index.html: expected one Trunk css and one rust link, found {n_css} and {n_rust}")
open(dst, "w", encoding="utf-8").write(html)
PY
# Compressed once here, at the highest levels, rather than per request: the relay serves the
# .br and .gz files to browsers that accept them (brotli from Debian's package, when installed).
for f in "$out.new"/*.wasm "$out.new"/*.js "$out.new"/*.css "$out.new"/index.html; do
  gzip -9 -k -n "$f"
  if command -v brotli >/dev/null; then brotli -q 11 -k "$f"; fi
done
rm -rf "$out"
mv "$out.new" "$out"
say "built $out/ ($name)"
