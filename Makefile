# The two commands a new machine needs. Both install what is missing first (scripts/setup.sh).
#   make run    build the client, start the relay, print the URL to open (PORT=9000 make run)
#   make test   every test: format, lints on both targets, relay, browser client, end-to-end call

SHELL := /bin/bash
CHROMEDRIVER ?= /usr/bin/chromedriver
export CHROMEDRIVER

.PHONY: run test setup setup-test client lint test-native test-browser bench-smoke bench

run: setup client
	@echo "[run] building and starting the relay (first build takes a few minutes)"
	cargo run --release -p server -- --dist dist

test: setup-test lint client test-native test-browser bench-smoke
	@echo "[test] all tests passed"

setup:
	@scripts/setup.sh

setup-test:
	@scripts/setup.sh --test

client:
	@echo "[client] trunk build --release"
	trunk build --release

lint:
	@echo "[lint] rustfmt, clippy (native and wasm32)"
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p client -p protocol --target wasm32-unknown-unknown --all-targets -- -D warnings

# The relay tests and the end-to-end call. They talk to 127.0.0.1 only; the namespace makes
# sure Chrome does too. Built outside it, because building may need the registry.
test-native:
	cargo test --no-run
	scripts/loopback-only.sh cargo test --offline -- --nocapture

# The client's own tests, in headless Chrome through wasm-bindgen-test-runner.
test-browser:
	cargo test -p client --target wasm32-unknown-unknown --no-run
	scripts/loopback-only.sh cargo test -p client --target wasm32-unknown-unknown --offline

# A tiny run of the load generator against the relay and the bare forwarder, every frame
# checked, so that the benchmark never rots. The full benchmark is `make bench`.
bench-smoke:
	bench/run.sh --smoke

bench:
	bench/run.sh
