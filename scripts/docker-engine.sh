#!/usr/bin/env bash
# A Docker engine for the compose demos, on loopback only.
#
#   scripts/docker-engine.sh start   # install docker.io + docker-compose if missing, start dockerd
#                                    # if none answers; prints only "started" or "running" on
#                                    # stdout (callers compare it), everything else on stderr
#   scripts/docker-engine.sh stop    # stop dockerd only if `start` started it
#
# dockerd is started with --bridge=none --iptables=false: no docker0 bridge, no NAT rules, so a
# container can only use the host's network (network_mode: host) and the demos bind 127.0.0.1.
# Nothing here ever touches an image registry.
set -euo pipefail
STATE="${TLSGATE_DOCKERD_STATE:-/run/tlsgate-dockerd}"
DEADLINE=60

die() { echo "docker-engine: $*" >&2; exit 1; }

answers() { timeout 10 docker info >/dev/null 2>&1; }

install_engine() {
  local missing=()
  command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || die "missing ${missing[*]}; install them (apt-get install ${missing[*]}) or run as root"
  command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them with"
  echo "docker-engine: installing ${missing[*]} (Debian packages)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/dev/null; } ||
    die "apt-get install ${missing[*]} failed"
}

start() {
  install_engine
  if answers; then echo "running"; return 0; fi
  [ "$(id -u)" = 0 ] || die "no Docker engine answers and starting dockerd needs root"
  mkdir -p "$STATE"
  # --bridge=none: no docker0 and no container network but the host's; --iptables=false: the
  # engine does not rewrite the host's firewall. Its socket is the default one, so `docker`
  # and `docker-compose` find it without DOCKER_HOST.
  dockerd --bridge=none --iptables=false --ip6tables=false \
    --exec-root "$STATE/exec" --pidfile "$STATE/dockerd.pid" >"$STATE/dockerd.log" 2>&1 &
  echo $! >"$STATE/started-by-tlsgate"
  for _ in $(seq 1 $((DEADLINE * 2))); do
    if answers; then echo "started"; return 0; fi
    if ! kill -0 "$(cat "$STATE/started-by-tlsgate")" 2>/dev/null; then
      rm -f "$STATE/started-by-tlsgate"
      die "dockerd exited at start; its log ($STATE/dockerd.log) ends with:
$(tail -n 15 "$STATE/dockerd.log")"
    fi
    sleep 0.5
  done
  die "dockerd did not answer within ${DEADLINE}s; its log ($STATE/dockerd.log) ends with:
$(tail -n 15 "$STATE/dockerd.log")"
}

stop() {
  [ -f "$STATE/started-by-tlsgate" ] || { echo "docker-engine: not started by tlsgate; leaving it"; return 0; }
  local pid
  pid="$(cat "$STATE/started-by-tlsgate")"
  rm -f "$STATE/started-by-tlsgate"
  kill "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 $((DEADLINE * 2))); do
    kill -0 "$pid" 2>/dev/null || { echo "docker-engine: stopped dockerd ($pid)"; return 0; }
    sleep 0.5
  done
  kill -9 "$pid" 2>/dev/null || true
  echo "docker-engine: dockerd ($pid) did not stop in ${DEADLINE}s; killed it" >&2
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) die "usage: $0 start|stop" ;;
esac
