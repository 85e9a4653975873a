#!/usr/bin/env bash
# The seed walk-through in containers, twice: with `tlsgate run` (examples/compose/native) and
# with Envoy running the tlsgate filter (examples/compose/envoy). For each: start the services,
# run the client's calls (printed), show the edge's log, remove containers and volumes.
#
#   scripts/compose-demo.sh [native] [envoy]     # default: both
#
# Builds the tlsgate image first (`make image PROFILE=$PROFILE`, default release) with the base
# images scripts/docker-bases.sh provides. Starts a Docker engine if none answers and stops it
# again at the end (only the one it started).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export TLSGATE_IMAGE="${TLSGATE_IMAGE:-tlsgate:latest}"
export ENVOY_IMAGE="${ENVOY_IMAGE:-envoyproxy/envoy:v1.40.0}"
DEMOS=("$@")
[ ${#DEMOS[@]} -gt 0 ] || DEMOS=(native envoy)
PORTS=(8443 9443 9080 9901)

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
die() { echo "compose-demo: $*" >&2; exit 1; }

engine="$(scripts/docker-engine.sh start)"
PROJECT=""
cleanup() {
  local status=$?
  if [ -n "$PROJECT" ]; then
    docker-compose -p "$PROJECT" -f "examples/compose/$PROJECT_DIR/docker-compose.yml" \
      down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  [ "$engine" = started ] && scripts/docker-engine.sh stop
  exit $status
}
trap cleanup EXIT INT TERM

say "building the tlsgate image ($TLSGATE_IMAGE, PROFILE=${PROFILE:-release})"
make --no-print-directory image PROFILE="${PROFILE:-release}" TLSGATE_IMAGE="$TLSGATE_IMAGE"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for demo in "${DEMOS[@]}"; do
  case "$demo" in native | envoy) ;; *) die "no demo '$demo' (native, envoy)" ;; esac
  for port in "${PORTS[@]}"; do
    port_busy "$port" && die "127.0.0.1:$port is in use; the demo's services need 8443, 9443, 9080 and 9901"
  done
  PROJECT="tlsgate-$demo"
  PROJECT_DIR="$demo"
  compose=(docker-compose -p "$PROJECT" -f "examples/compose/$demo/docker-compose.yml")
  edge=tlsgate
  [ "$demo" = envoy ] && edge=envoy

  say "$demo: building the client image and starting the services"
  "${compose[@]}" build -q client 2>&1 | grep -v -e DEPRECATED -e 'legacy builder' -e buildx -e 'docs.docker.com' || true
  "${compose[@]}" up -d --quiet-pull 2>&1 | grep -v -e '^$' || true
  if ! "${compose[@]}" ps --services --filter status=running | grep -qx "$edge"; then
    "${compose[@]}" logs --no-color
    die "$demo: $edge is not running"
  fi

  say "$demo: the client's calls"
  status=0
  "${compose[@]}" run --rm client || status=$?

  say "$demo: what $edge logged"
  "${compose[@]}" logs --no-color "$edge" | sed 's/^/  /'
  if [ "$status" != 0 ]; then
    say "$demo: the other services' logs"
    "${compose[@]}" logs --no-color certs upstream echo | sed 's/^/  /'
    [ "$demo" = envoy ] && "${compose[@]}" logs --no-color envoy-config | sed 's/^/  /'
    die "$demo: the walk-through failed (see above)"
  fi
  say "$demo: removing its containers and volume"
  "${compose[@]}" down -v --remove-orphans >/dev/null 2>&1
  PROJECT=""
done
say "compose demo: ${DEMOS[*]} passed"
