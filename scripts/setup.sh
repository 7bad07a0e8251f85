#!/usr/bin/env bash
# Installs what building and running the product needs, only where it is missing.
# Idempotent: a second run checks and says so in a few lines.
#   scripts/setup.sh          build tools (wasm32 target, wasm-bindgen-cli, trunk)
#   scripts/setup.sh --test   the same plus Chromium and ChromeDriver for the browser tests
set -euo pipefail

WASM_BINDGEN_VERSION=0.2.130
TRUNK_VERSION=0.21.14

say() { printf '[setup] %s\n' "$*"; }

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (first time only: about 3 minutes on 2 cores)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

if ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION"; then
  say "installing trunk $TRUNK_VERSION (first time only: about 10 minutes on 2 cores)"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

if [ "${1:-}" = "--test" ]; then
  # The browser tests need Chromium and its driver; `ip` sets up their loopback-only namespace.
  missing=()
  command -v chromium >/dev/null || missing+=(chromium)
  command -v chromedriver >/dev/null || missing+=(chromium-driver)
  command -v ip >/dev/null || missing+=(iproute2)
  if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} from Debian's packages"
    if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
  fi
fi

say "tools ready: $(wasm-bindgen --version), $(trunk --version)"
