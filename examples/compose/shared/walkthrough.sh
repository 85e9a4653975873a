#!/usr/bin/env bash
# The seed's calls against the edge on 127.0.0.1:$1, printing what each got and checking it:
# the valid client reaches the upstream (which itself verified the edge's client certificate),
# every other case is refused. Exits 1 if any call got something else.
set -uo pipefail
PORT="${1:?usage: walkthrough.sh PORT [UPSTREAM_PORT [ECHO_PORT]]}"
UPSTREAM_PORT="${2:-9443}"
ECHO_PORT="${3:-9080}"
HOST=terminate-tls-example.ngrok.app
URL="https://$HOST:$PORT/hello"
cd /work
failures=0

# Ready when the edge, the upstream and the echo service accept connections; 60 s for all.
for port in "$PORT" "$UPSTREAM_PORT" "$ECHO_PORT"; do
  for i in $(seq 1 120); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    [ "$i" = 120 ] && { echo "walkthrough: nothing listens on 127.0.0.1:$port after 60 s"; exit 1; }
    sleep 0.5
  done
done

call() { # label, expectation (200 | refused), grep pattern for the body or '', curl args...
  local label=$1 want=$2 pattern=$3
  shift 3
  printf '\n-- %s\n$ curl %s\n' "$label" "$*"
  local out code
  out="$(curl -sS --max-time 10 -w '\n[HTTP %{http_code}]' "$@" 2>&1)"
  code=$?
  printf '%s\n[curl exit %s]\n' "$out" "$code"
  # Refused means refused by TLS (curl's 35 handshake, 56 receive, 16 or 55 send — in TLS 1.3
  # a server refuses a client certificate after the client's handshake is done, so curl may
  # only notice on its next send — 52 nothing after the handshake); a connection that never
  # opened (7) or a timeout (28) is something else.
  local got
  case "$code" in
    0) got="$(printf '%s' "$out" | sed -n 's/^\[HTTP \([0-9]*\)\]$/\1/p')" ;;
    16 | 35 | 52 | 55 | 56) got=refused ;;
    *) got="curl error $code" ;;
  esac
  if [ "$got" != "$want" ]; then
    echo "UNEXPECTED: wanted $want, got $got"
    failures=$((failures + 1))
  elif [ -n "$pattern" ] && ! printf '%s' "$out" | grep -qiE "$pattern"; then
    echo "UNEXPECTED: the answer lacks /$pattern/"
    failures=$((failures + 1))
  else
    echo "ok: $want"
  fi
}

RESOLVE=(--resolve "$HOST:$PORT:127.0.0.1")
echo "== the seed's call: curl --cert client.crt --key client.key --cacert ca.crt https://$HOST:$PORT/hello"
call "valid client certificate" 200 '"x-upstream-verified-client": "ExampleClient"' \
  --cert client.crt --key client.key --cacert ca.crt "${RESOLVE[@]}" "$URL"
echo "(x-upstream-verified-client: the identity the upstream verified from the edge's client certificate)"

echo
echo "== cases that must fail"
call "no client certificate" refused '' --cacert ca.crt "${RESOLVE[@]}" "$URL"
call "a client certificate from another CA" refused '' \
  --cert other/client.crt --key other/client.key --cacert ca.crt "${RESOLVE[@]}" "$URL"
call "TLS 1.2 against min_version 1.3" refused '' --tls-max 1.2 \
  --cert client.crt --key client.key --cacert ca.crt "${RESOLVE[@]}" "$URL"
call "the upstream directly, without a client certificate" refused '' --cacert ca.crt \
  --resolve "$HOST:$UPSTREAM_PORT:127.0.0.1" "https://$HOST:$UPSTREAM_PORT/hello"

echo
if [ "$failures" = 0 ]; then
  echo "walkthrough: all 5 calls got what the policy says"
else
  echo "walkthrough: $failures of 5 calls got something else"
  exit 1
fi
