#!/usr/bin/env bash
# The external judges: testssl.sh (Debian's package) and sslyze (PyPI, pinned, into
# .tools/sslyze) against the native host and against Envoy with the generated bootstrap and the
# filter, both serving the configuration tlsgate recommends (its defaults: TLS 1.2 and 1.3,
# post-quantum key exchange first, an ECDSA P-256 certificate from `tlsgate certs`; client
# certificates requested, since testssl.sh 3.0 cannot present one). testssl.sh: every finding
# of severity LOW or above must be on the list below, with the reason it is acceptable. sslyze:
# the host must comply with Mozilla's "intermediate" configuration, the test CA trusted. Anything
# else fails the run. `make soak` runs it; results go to docs/reliability.md.
#
#   scripts/testssl.sh            # needs tlsgate and the filter built (make build)
#   JUDGES=sslyze scripts/testssl.sh   # one judge only (default: "testssl sslyze")
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
OUT="$ROOT/target/testssl"
HOST=judge.test
export PATH="$ROOT/.tools/bin:$PATH"

# Findings that are about the test's certificate, not the TLS configuration, and what
# tlsgate does not offer yet. id -> why it is acceptable.
declare -A ACCEPTED=(
  [cert_chain_of_trust]="the certificate comes from a private CA made for this run; testssl.sh trusts public roots only"
  [cert_trust]="the same private test certificate"
  [cert_revocation]="the test certificate names no CRL or OCSP responder (a private CA's choice)"
  [cert_ocspURL]="the same: no OCSP responder in the test certificate"
  [cert_crlDistributionPoints]="the same: no CRL distribution point in the test certificate"
  [OCSP_stapling]="both hosts staple when the certificate names an OCSP responder (docs/revocation.md); the test certificate names none"
  [DNS_CAArecord]="judge.test is not a DNS name; there is no CAA record to find"
  [cert_commonName_wo_SNI]="without SNI tlsgate serves no certificate: an endpoint is chosen by its name"
  [BREACH]="testssl flags any HTTP compression the upstream answers with; tlsgate passes bodies through unchanged"
  [HSTS]="Strict-Transport-Security is the application's response header; tlsgate forwards the upstream's (the test echo sends none) and has no response phase to add one yet"
  [security_headers]="the same: the application's response headers, passed through"
)

die() { echo "testssl: $*" >&2; exit 1; }

JUDGES="${JUDGES:-testssl sslyze}"
SSLYZE_VERSION=6.3.1
SSLYZE="$ROOT/.tools/sslyze"
if [[ " $JUDGES " == *" sslyze "* ]] &&
  ! PYTHONPATH="$SSLYZE" python3 -c "import sslyze, sys; sys.exit(sslyze.__version__ != '$SSLYZE_VERSION')" 2>/dev/null; then
  echo "installing sslyze $SSLYZE_VERSION into .tools/sslyze"
  rm -rf "$SSLYZE"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
    --target "$SSLYZE" "sslyze==$SSLYZE_VERSION" >/dev/null 2>&1 || die "pip install sslyze==$SSLYZE_VERSION failed"
fi

[[ " $JUDGES " != *" testssl "* ]] || command -v testssl >/dev/null 2>&1 || {
  [ "$(id -u)" = 0 ] || die "testssl.sh is missing (apt-get install testssl.sh)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q testssl.sh >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q testssl.sh >/dev/null; } ||
    die "apt-get install testssl.sh failed"
}
TLSGATE="$ROOT/target/debug/tlsgate"
WASM="$ROOT/target/wasm32-wasip1/release-wasm/tlsgate_filter.wasm"
[ -x "$TLSGATE" ] && [ -f "$WASM" ] || die "build first: make build"

rm -rf "$OUT"
mkdir -p "$OUT"
cd "$OUT"
"$TLSGATE" certs --out . --name "$HOST" >/dev/null
read -r PORT ECHO ADMIN < <(python3 - <<'PY'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in socks])
PY
)
cat >policy.yaml <<EOF
endpoints:
  - url: https://$HOST
    bind: 127.0.0.1:$PORT
    upstream: { url: "http://127.0.0.1:$ECHO" }
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
                mutual_tls_verification_strategy: request
EOF

PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
python3 "$ROOT/examples/compose/shared/echo.py" 127.0.0.1 "$ECHO" >echo.log 2>&1 &
PIDS+=($!)

wait_port() {
  for _ in $(seq 1 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  die "nothing listens on 127.0.0.1:$1 (see $OUT/*.log)"
}

judge() { # name: run the judges against 127.0.0.1:PORT
  local name=$1 failed=0
  if [[ " $JUDGES " == *" testssl "* ]]; then testssl_judge "$name" || failed=1; fi
  if [[ " $JUDGES " == *" sslyze "* ]]; then sslyze_judge "$name" || failed=1; fi
  return $failed
}

sslyze_judge() { # name: sslyze's scan, and compliance with Mozilla's intermediate configuration
  local name=$1
  echo "== sslyze against $name ($HOST on 127.0.0.1:$PORT)"
  if PYTHONPATH="$SSLYZE" python3 -m sslyze --certinfo_ca_file ca.crt --mozilla_config=intermediate \
    --json_out "$OUT/$name.sslyze.json" "$HOST:$PORT{127.0.0.1}" >"$OUT/$name.sslyze.txt" 2>&1; then
    grep -E "Compliant|accepted the following|Supported curves" "$OUT/$name.sslyze.txt" | sed 's/^ */  /'
  else
    sed -n '/COMPLIANCE/,$p' "$OUT/$name.sslyze.txt"
    echo "$name: not compliant with Mozilla's intermediate configuration (see $OUT/$name.sslyze.txt)"
    return 1
  fi
}

testssl_judge() { # name: run testssl.sh against 127.0.0.1:PORT, check its findings
  local name=$1 json="$OUT/$1.json"
  echo "== testssl.sh against $name ($HOST on 127.0.0.1:$PORT)"
  testssl --quiet --color 0 --warnings off --sneaky --openssl-timeout 10 --connect-timeout 10 \
    --ip 127.0.0.1 --severity LOW -oj "$json" "https://$HOST:$PORT/" >"$OUT/$name.txt" 2>&1 || true
  [ -s "$json" ] || die "testssl.sh wrote no findings for $name; its output: $(tail -n 20 "$OUT/$name.txt")"
  python3 - "$json" "$name" "${!ACCEPTED[@]}" <<'PY'
import json, sys
path, name, accepted = sys.argv[1], sys.argv[2], set(sys.argv[3:])
findings = [f for f in json.load(open(path)) if f.get("severity") in ("LOW", "MEDIUM", "HIGH", "CRITICAL")]
bad = [f for f in findings if f["id"] not in accepted]
for f in findings:
    mark = "accepted" if f["id"] in accepted else "FINDING"
    print(f"  {mark:8} {f['severity']:8} {f['id']}: {f['finding']}")
if not findings:
    print("  no finding of severity LOW or above")
if bad:
    print(f"{name}: {len(bad)} finding(s) not on the accepted list")
    sys.exit(1)
PY
}

status=0
"$TLSGATE" run -c policy.yaml >native.log 2>&1 &
PIDS+=($!)
wait_port "$PORT"
judge native || status=1
kill "${PIDS[-1]}" && wait "${PIDS[-1]}" 2>/dev/null || true

"$TLSGATE" envoy-config -c policy.yaml --wasm "$WASM" -o envoy.yaml --admin "127.0.0.1:$ADMIN" >/dev/null
envoy -c envoy.yaml --concurrency 1 -l warning --use-dynamic-base-id >envoy.log 2>&1 &
PIDS+=($!)
wait_port "$PORT"
judge envoy || status=1

echo
for id in "${!ACCEPTED[@]}"; do echo "accepted: $id — ${ACCEPTED[$id]}"; done | sort
exit $status
