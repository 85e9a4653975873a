#!/usr/bin/env bash
# The seed walk-throughs on the native host, end to end, on loopback:
#   certificates from the seed's eight openssl commands (verbatim) ─▶ an upstream that requires a
#   client certificate (seed 000) ─▶ tlsgate in front of it (examples/native/seed-mtls.yaml)
#   ─▶ the seed's `curl --cert client.crt --key client.key --cacert ca.crt https://…`,
# then the cases that must fail. Everything started here is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="$ROOT/demo-out"
HOST=terminate-tls-example.ngrok.app

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

for tool in curl openssl python3; do
  if ! command -v "$tool" >/dev/null 2>&1; then
    echo "demo: $tool is missing; running scripts/setup.sh" >&2
    scripts/setup.sh
    break
  fi
done

say "building tlsgate"
cargo build -q -p tlsgate --bin tlsgate
TLSGATE="$(cargo metadata --format-version 1 --no-deps --offline \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/debug/tlsgate"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
}
trap cleanup EXIT INT TERM

rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"

say "certificates: the seed's openssl commands, verbatim"
"$ROOT/scripts/seed-certs.sh" .
echo "server.crt is X.509 $(openssl x509 -in server.crt -noout -text | grep -o 'Version: [0-9]*') (no subjectAltName)"

# A client certificate from a CA nobody trusts, for the failing case.
"$ROOT/scripts/untrusted-client.sh" .

read -r FRONT UP ECHO < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
for f in seed-mtls seed-upstream; do
  sed -e "s/127.0.0.1:8443/127.0.0.1:$FRONT/" -e "s/127.0.0.1:9443/127.0.0.1:$UP/" \
      -e "s/127.0.0.1:9080/127.0.0.1:$ECHO/" "$ROOT/examples/native/$f.yaml" > "$f.yaml"
done

say "starting the echo service on 127.0.0.1:$ECHO (answers with the headers it received)"
python3 "$ROOT/examples/compose/shared/echo.py" 127.0.0.1 "$ECHO" > echo.log 2>&1 &
PIDS+=($!)

wait_log() { # file, text: bounded wait for a process to log a line
  for _ in $(seq 1 100); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  echo "demo: timed out waiting for '$2' in $1:" >&2; cat "$1" >&2; exit 1
}

say "starting the upstream (seed 000): TLS with server.crt, client certificates checked against ca.crt"
"$TLSGATE" run -c seed-upstream.yaml > upstream.log 2>&1 &
PIDS+=($!)
wait_log upstream.log "listening on 127.0.0.1:$UP"

say "starting tlsgate with examples/native/seed-mtls.yaml (upstream over mTLS with client.crt)"
"$TLSGATE" run -c seed-mtls.yaml > tlsgate.log 2>&1 &
PIDS+=($!)
wait_log tlsgate.log "listening on 127.0.0.1:$FRONT"

RESOLVE=(--resolve "$HOST:$FRONT:127.0.0.1")
URL="https://$HOST:$FRONT/hello"
show() { # label, curl args...: run curl and print what came back
  local label=$1; shift
  printf '\n\033[1m-- %s\033[0m\n$ curl %s\n' "$label" "$*"
  set +e
  curl -sS --max-time 10 -w '\n[HTTP %{http_code}]\n' "$@" 2>&1
  echo "[curl exit $?]"
  set -e
}

say "the seed's call: curl --cert client.crt --key client.key --cacert ca.crt https://…"
show "valid client certificate" --cert client.crt --key client.key --cacert ca.crt "${RESOLVE[@]}" "$URL"
echo "(x-upstream-verified-client is the identity the upstream verified from tlsgate's client certificate;"
echo " x-client-cn and x-forwarded-client-cert carry the identity of the curl client)"
grep -q "accepting X.509 v1 upstream certificate" tlsgate.log &&
  echo "tlsgate log: $(grep -o 'accepting X.509 v1 upstream certificate[^"]*' tlsgate.log | head -1)"

say "cases that must fail"
show "no client certificate" --cacert ca.crt "${RESOLVE[@]}" "$URL"
show "a client certificate from another CA" --cert other/client.crt --key other/client.key --cacert ca.crt "${RESOLVE[@]}" "$URL"
show "TLS 1.2 against min_version 1.3" --tls-max 1.2 --cert client.crt --key client.key --cacert ca.crt "${RESOLVE[@]}" "$URL"
show "the upstream directly, without a client certificate" --cacert ca.crt \
  --resolve "$HOST:$UP:127.0.0.1" "https://$HOST:$UP/hello"

say "what tlsgate logged"
grep -E "access|handshake|accepting" tlsgate.log | sed 's/^/  /'
echo
echo "files and logs are in demo-out/; everything started by the demo is being stopped"
