#!/usr/bin/env bash
# Builds the tlsgate image (docker/Dockerfile) from the binaries built on this machine:
#   target/$PROFILE_DIR/tlsgate and the proxy-wasm filter, on debian:bookworm-slim.
# `make image` builds those first; this script only assembles the image. The Docker engine is
# started if none answers and stopped again afterwards (only if this script started it).
#
#   TLSGATE_IMAGE=tlsgate:latest PROFILE_DIR=release WASM=… scripts/image.sh
set -euo pipefail
cd "$(dirname "$0")/.."
TLSGATE_IMAGE="${TLSGATE_IMAGE:-tlsgate:latest}"
PROFILE_DIR="${PROFILE_DIR:-release}"
WASM="${WASM:-target/wasm32-wasip1/release-wasm/tlsgate_filter.wasm}"
CTX=target/image

engine="$(scripts/docker-engine.sh start)"
trap '[ "$engine" = started ] && scripts/docker-engine.sh stop' EXIT
scripts/docker-bases.sh

rm -rf "$CTX"
mkdir -p "$CTX"
cp "target/$PROFILE_DIR/tlsgate" "$WASM" docker/Dockerfile "$CTX/"
# A dev build carries 170 MB of debug info; a release build is already stripped.
strip --strip-debug "$CTX/tlsgate"
docker build -q -t "$TLSGATE_IMAGE" "$CTX" >"$CTX/build.log" 2>&1 ||
  { cat "$CTX/build.log" >&2; echo "image: docker build failed" >&2; exit 1; }
docker image ls --format 'image: {{.Repository}}:{{.Tag}} ({{.Size}})' "$TLSGATE_IMAGE"
