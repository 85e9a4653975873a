# The only commands a newcomer needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
WASM_TARGET := wasm32-wasip1
WASM := target/$(WASM_TARGET)/release-wasm/tlsgate_filter.wasm
# Unexports the proxy-wasm callbacks the filter does not implement: each would be a VM entry
# per request or chunk for nothing (docs/design-notes.md, "The filter exports only the
# callbacks it implements").
WASM_CALLBACKS := python3 scripts/wasm-callbacks.py $(WASM) filter/src
export PATH := $(CURDIR)/.tools/bin:$(PATH)

.PHONY: help setup build wasm playground lint test fuzz soak demo bench bench-compare bench-filter profile conformance image compose-demo clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

setup: ## install the wasm target, Envoy 1.40 (into .tools/), curl and openssl; idempotent
	@scripts/setup.sh

build: setup ## build the native workspace and core + filter for wasm32-wasip1
	$(CARGO) build --workspace --all-targets
	$(CARGO) build -p tlsgate-core --target $(WASM_TARGET)
	$(CARGO) build -p tlsgate-filter --target $(WASM_TARGET) --profile release-wasm
	@$(WASM_CALLBACKS)
	@ls -l $(WASM) | awk '{printf "filter: %s (%d bytes)\n", $$9, $$5}'
	@$(MAKE) --no-print-directory playground

PLAYGROUND_WASM := target/wasm32-unknown-unknown/release-wasm/tlsgate_playground.wasm

playground: setup ## build the browser playground (docs/playground/); serve it with `tlsgate playground`
	$(CARGO) build -p tlsgate-playground --target wasm32-unknown-unknown --profile release-wasm
	@# The engine as a classic script (base64), so the page also works opened from a file.
	@printf 'window.TLSGATE_PLAYGROUND_WASM = "%s";\n' "$$(base64 -w0 $(PLAYGROUND_WASM))" \
	  > docs/playground/tlsgate-playground.js
	@ls -l $(PLAYGROUND_WASM) | awk '{printf "playground engine: %s (%d bytes)\n", $$9, $$5}'

wasm: setup ## build only the proxy-wasm filter
	$(CARGO) build -p tlsgate-filter --target $(WASM_TARGET) --profile release-wasm
	@$(WASM_CALLBACKS)

lint: setup ## core's and native-host's modules form no cycle; rustfmt and clippy (-D warnings) for the native and wasm targets
	python3 scripts/module-cycles.py core/src native-host/src
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p tlsgate-core -p tlsgate-filter --target $(WASM_TARGET) -- -D warnings
	$(CARGO) clippy -p tlsgate-playground --target wasm32-unknown-unknown -- -D warnings

test: build lint ## lint, then every test: unit, property, end to end (real tlsgate, Envoy, curl, openssl), and each fuzz target briefly
	$(CARGO) test --workspace --no-fail-fast
	scripts/fuzz.sh $(FUZZ_SMOKE_SECONDS) --dev

FUZZ_SECONDS ?= 60
FUZZ_SMOKE_SECONDS ?= 4

fuzz: setup ## run every fuzz target for FUZZ_SECONDS (default 60) each; see docs/fuzzing.md
	scripts/fuzz.sh $(FUZZ_SECONDS)

soak: wasm ## the fault and soak suite's long form (10,000 connections, a minute of reloads, 3 min soak per host, testssl.sh and sslyze), release build; see docs/reliability.md
	TLSGATE_SOAK=1 TLSGATE_PROFILE=release $(CARGO) test -p tlsgate-e2e --test reliability -- --nocapture 2>&1 \
	  | tee target/soak.log; status=$${PIPESTATUS[0]}; \
	  echo; grep '^RELIABILITY |' target/soak.log | sed 's/^RELIABILITY //'; [ $$status = 0 ] || exit $$status
	$(CARGO) build -p tlsgate --bin tlsgate
	scripts/testssl.sh

demo: ## the seed's mTLS walk-through on the native host
	@scripts/demo.sh

# The tlsgate image. PROFILE=dev uses the debug build (CI: a release build would cost 5 minutes).
PROFILE ?= release
PROFILE_DIR := $(if $(filter dev,$(PROFILE)),debug,$(PROFILE))
TLSGATE_IMAGE ?= tlsgate:latest

image: wasm ## the tlsgate image (TLSGATE_IMAGE, default tlsgate:latest): binary + filter on debian:bookworm-slim
	$(CARGO) build --profile $(PROFILE) -p tlsgate --bin tlsgate
	@TLSGATE_IMAGE=$(TLSGATE_IMAGE) PROFILE_DIR=$(PROFILE_DIR) WASM=$(WASM) scripts/image.sh

compose-demo: ## the seed walk-through in docker-compose: native (tlsgate run), then Envoy + filter
	@PROFILE=$(PROFILE) TLSGATE_IMAGE=$(TLSGATE_IMAGE) scripts/compose-demo.sh

conformance: build ## play every scenario against both hosts; print the matrix, write docs/conformance.md
	$(CARGO) test -p tlsgate-e2e --test conformance -- --nocapture; status=$$?; \
	  cp target/conformance.md docs/conformance.md && echo "wrote docs/conformance.md"; exit $$status

bench: ## benchmarks: policy decisions (core), then the native edge end to end (release build)
	$(CARGO) bench -p tlsgate-core
	$(CARGO) bench -p tlsgate --bench edge

profile: ## callgrind over the native host: instructions per kept-alive request (MODE=handshake: per new mTLS connection) and where they go (docs/performance.md)
	scripts/profile.sh

bench-filter: ## what the filter costs Envoy, paired: two Envoys on one core at once, with and without it (BASELINE=x.wasm: two builds) (docs/performance.md)
	scripts/bench-filter.sh

bench-compare: ## native tlsgate vs nginx vs Envoy (with and without the filter), proxy CPU per request and handshake, same machine, same run (docs/performance.md)
	scripts/bench-compare.sh

clean:
	$(CARGO) clean
