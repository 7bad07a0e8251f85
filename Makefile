# The two commands a new machine needs. Both install what is missing first (scripts/setup.sh).
#   make run    build the client, start the relay, print the URLs to open (PORT=9000 make run)
#   make test   every test: format, lints on both targets, relay, browser client, end-to-end
#               calls (Chromium, Firefox ESR and both together), calls across network namespaces
#               (LAN, two NATs and TURN), benchmark smoke, a 60-s soak, four chaos cases
#   make soak   rooms churning through one relay and two on Redis for 30 min (SOAK_S=seconds),
#               watched for leaks and lost signals; the run is appended to docs/soak.md
#   make chaos  two relays behind nginx on one Redis under load, through a killed relay and
#               Redis restarted, paused and cut off (docs/chaos.md); make test runs them too
#   make fuzz   every fuzz target (the parsers a stranger reaches) for FUZZ_S seconds each
#               (default 600), printing executions and any failure; make test runs them briefly
# And for working on the client: make dev (trunk serve with live reload beside the relay).

SHELL := /bin/bash
CHROMEDRIVER ?= /usr/bin/chromedriver
export CHROMEDRIVER

.PHONY: run test dev setup setup-test client lint test-native test-lab test-browser bench-smoke bench \
	soak-smoke soak fuzz chaos chaos-smoke

run: setup client
	@echo "[run] building and starting the relay (the first build takes a few minutes)"
	cargo run --release -p server -- --dist dist

test: setup-test lint client test-native test-lab test-browser bench-smoke soak-smoke chaos-smoke
	@echo "[test] all tests passed"

dev:
	@scripts/setup.sh --dev
	scripts/dev.sh

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

client:
	@scripts/build-client.sh

lint:
	@echo "[lint] rustfmt, clippy (native and wasm32)"
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p client -p protocol --target wasm32-unknown-unknown --all-targets -- -D warnings

# The relay tests and the end-to-end calls, Chromium's and Firefox's (tests/tests/firefox.rs),
# the page against a hostile relay or peer (tests/tests/hostile.rs, a stand-in relay), and what
# people do in a call besides talking (tests/tests/incall.rs), the stage's layout and its
# accessibility checked with axe-core (tests/tests/stage.rs; setup-test installs axe-core).
# They talk to 127.0.0.1 only; the namespace makes sure the browsers do too (its veth pair to
# itself gives Firefox an address to gather candidates on, and leads nowhere). Built outside it,
# because building may need the registry. The client's decisions (client/src/core) are plain
# Rust and run here too, on the host.
test-native:
	cargo test --no-run
	scripts/loopback-only.sh cargo test --offline -- --nocapture --skip lab_
	cargo test -p client --lib --offline

# Calls across real network boundaries: network namespaces joined by veth pairs and bridges,
# NAT routers, coturn. Needs root (CI runs as root); everything is torn down afterwards, and no
# lab namespace has a route to the host's own network.
test-lab:
	cargo build -p server
	cargo test -p e2e --test lab -- --nocapture --test-threads=1

# The client's own tests, in headless Chrome through wasm-bindgen-test-runner.
test-browser:
	cargo test -p client --target wasm32-unknown-unknown --no-run
	scripts/loopback-only.sh cargo test -p client --target wasm32-unknown-unknown --offline

# A tiny run of the load generator against the relay and the bare forwarder, every frame
# checked, so that the benchmark never rots. The full benchmark is `make bench`.
bench-smoke:
	bench/run.sh --smoke --slices 2 --measure 0.4

bench:
	bench/run.sh

# The soak (docs/soak.md): members joining rooms of 2 to 6, signaling, leaving, dropping their
# sockets and resuming, against one relay and then two on one Redis, half the time each. Fails
# on any signal lost, misrouted or duplicated, and on memory or descriptors that grow. The
# smoke is 60 s of both setups on the dev build; `make soak` is 30 min on the release build.
SOAK_S ?= 1800

soak-smoke:
	cargo build -p server -p bench
	"$${CARGO_TARGET_DIR:-target}/debug/soak" --secs 60 --members 100

soak:
	cargo build --release -p server -p bench
	"$${CARGO_TARGET_DIR:-target}/release/soak" --secs $(SOAK_S) --record docs/soak.md

# Chaos (docs/chaos.md): needs root, like the lab; makes two network namespaces (Redis alone in
# one) and removes them afterwards. `make chaos` runs every case (about four minutes), and so
# does the smoke in `make test` (CHAOS_SMOKE_CASES="--case NAME ..." picks some).
CHAOS_SMOKE_CASES ?=
chaos-smoke:
	cargo build -p server -p bench
	"$${CARGO_TARGET_DIR:-target}/debug/chaos" $(CHAOS_SMOKE_CASES)

chaos:
	cargo build -p server -p bench
	"$${CARGO_TARGET_DIR:-target}/debug/chaos"

# The fuzz targets (named fuzz_*; the fuzzing crate says how they run) for FUZZ_S seconds each
# instead of their few hundred cases, one after another, on the debug build that test-native
# builds anyway (the same commands, for the crates that have targets): overflow checks are on, so an overflow fails as a
# panic. Each target prints its executions; a failure prints its minimal input and fails the run.
FUZZ_S ?= 600
FUZZ_CRATES = -p protocol -p server
FUZZ_ARGS = fuzz_ -- --nocapture --test-threads=1
fuzz:
	@echo "[fuzz] every target for $(FUZZ_S) s"
	cargo test $(FUZZ_CRATES) --no-run
	cargo test -p client --lib --no-run
	@log=$$(mktemp); set -o pipefail; \
	{ FUZZ_S=$(FUZZ_S) cargo test $(FUZZ_CRATES) --offline $(FUZZ_ARGS) && \
	  FUZZ_S=$(FUZZ_S) cargo test -p client --lib --offline $(FUZZ_ARGS); } 2>&1 | tee $$log; \
	status=$$?; echo "[fuzz] summary:"; grep -o 'fuzz [a-z-]*: .*' $$log; rm -f $$log; exit $$status
