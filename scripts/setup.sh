#!/usr/bin/env bash
# Installs what building, running and testing the product needs, only where it is missing.
# Idempotent: a second run checks and says so in a few lines.
#   scripts/setup.sh          what `make run` needs: the wasm32 target and wasm-bindgen-cli
#                             (about 4 minutes the first time), and wasm-opt, esbuild and brotli
#                             (a smaller bundle) when apt is there
#   scripts/setup.sh --test   the same plus what the tests start: Chromium and ChromeDriver,
#                             Firefox ESR and geckodriver (built with cargo: about 3 minutes
#                             the first time), iproute2 and iptables for the network labs,
#                             coturn for TURN, redis-server for the relays that share rooms,
#                             nginx in front of two relays in the chaos run, npm and
#                             axe-core (tests/axe) for the accessibility check
#   scripts/setup.sh --dev    the same as the first plus trunk, for `make dev` (about 10 minutes
#                             the first time: only the live-reload loop needs it)
set -euo pipefail

WASM_BINDGEN_VERSION=0.2.130
TRUNK_VERSION=0.21.14
GECKODRIVER_VERSION=0.37.1

say() { printf '[setup] %s\n' "$*"; }
mode=${1:-}

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# Debian packages: one apt-get for everything missing, so a new machine updates its lists once.
packages=()
need() { command -v "$1" >/dev/null || packages+=("$2"); }
need wasm-opt binaryen
need brotli brotli
need esbuild esbuild
if [ "$mode" = "--test" ]; then
  need chromium chromium
  need chromedriver chromium-driver
  need firefox-esr firefox-esr
  need ip iproute2
  need iptables iptables
  need turnserver coturn
  # The screenshots the tests keep show the page's emoji (icons, verification codes).
  [ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || packages+=(fonts-noto-color-emoji)
  need redis-server redis-server
  # In front of two relays in the chaos run.
  need nginx nginx
  # npm installs axe-core, the accessibility check of tests/tests/stage.rs.
  need npm npm
fi
if [ ${#packages[@]} -gt 0 ]; then
  if command -v apt-get >/dev/null; then
    say "installing ${packages[*]} from Debian's packages"
    if [ "$(id -u)" -eq 0 ]; then sudo=; else sudo=sudo; fi
    install() {
      $sudo apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    }
    if ! install; then
      # The tests need every package; running the product only loses the smaller bundle.
      [ "$mode" = "--test" ] && { say "could not install ${packages[*]}" >&2; exit 1; }
      say "could not install ${packages[*]}: building a larger bundle"
    fi
    # The Debian packages start coturn and Redis as services; the tests start their own.
    if [[ " ${packages[*]} " == *" coturn "* ]] && command -v systemctl >/dev/null; then
      $sudo systemctl disable --now coturn >/dev/null 2>&1 || true
    fi
    if [[ " ${packages[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null; then
      $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
    if [[ " ${packages[*]} " == *" nginx "* ]]; then
      if command -v systemctl >/dev/null; then
        $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
      fi
      # Without systemd the package may still have started it, on port 80: the tests start
      # their own.
      [ -f /run/nginx.pid ] && $sudo nginx -s quit >/dev/null 2>&1 || true
    fi
  elif [ "$mode" = "--test" ]; then
    say "cannot install ${packages[*]}: no apt-get here; install them by hand" >&2
    exit 1
  else
    say "no apt-get: building a larger bundle"
  fi
fi

if ! wasm-bindgen --version 2>/dev/null | grep -q " $WASM_BINDGEN_VERSION"; then
  say "installing wasm-bindgen-cli $WASM_BINDGEN_VERSION (first time only: about 4 minutes on 2 cores)"
  cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# axe-core, at the version tests/axe/package-lock.json pins, injected into the page by the tests.
axe="$(dirname "$0")/../tests/axe"
if [ "$mode" = "--test" ] && [ ! -f "$axe/node_modules/axe-core/axe.min.js" ]; then
  say "installing axe-core with npm ci (tests/axe)"
  (cd "$axe" && npm ci --no-audit --no-fund --loglevel=error)
fi

# Debian has no geckodriver package; Mozilla publishes it as a crate.
if [ "$mode" = "--test" ] && ! geckodriver --version 2>/dev/null | grep -q " $GECKODRIVER_VERSION"; then
  say "installing geckodriver $GECKODRIVER_VERSION (first time only: about 3 minutes on 2 cores)"
  cargo install geckodriver --version "$GECKODRIVER_VERSION"
fi

if [ "$mode" = "--dev" ] && ! trunk --version 2>/dev/null | grep -q " $TRUNK_VERSION"; then
  say "installing trunk $TRUNK_VERSION (first time only: about 10 minutes on 2 cores)"
  cargo install trunk --version "$TRUNK_VERSION" --locked
fi

say "tools ready: $(wasm-bindgen --version)${mode:+ ($mode)}"
