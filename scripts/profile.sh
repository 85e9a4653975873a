#!/usr/bin/env bash
# make profile: where the native host's instructions go, per kept-alive request or per new mTLS
# connection, counted by callgrind (valgrind), which counts instructions rather than time and so
# gives the same answer on a busy shared machine as on a quiet one.
#
# The set-up is make bench-compare's (TLS 1.3, a client certificate required, X25519, no
# resumption, ECDSA P-256 unless KIND=rsa, HTTP/1.1 to an nginx upstream answering 200, access log on); the
# proxy runs under callgrind, the load generator warms it up, callgrind's counters are zeroed,
# then the measured window runs and is dumped. Prints instructions per request (or per
# handshake) and the functions that cost the most, inclusive and exclusive.
#
# Environment: MODE (keepalive | handshake; default keepalive), KIND (the certificates' keys:
# ecdsa, P-256, the default, or rsa, 2048 bits), SECONDS_PER_RUN (default 20),
# CONNECTIONS (default 4), OUT (directory for callgrind.out and the reports; default
# target/profile). Installs valgrind and nginx from Debian if they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."

MODE=${MODE:-keepalive}
KIND=${KIND:-ecdsa}
case $KIND in ecdsa|rsa) ;; *) echo "profile: KIND is ecdsa or rsa, not '$KIND'" >&2; exit 1 ;; esac
SECONDS_PER_RUN=${SECONDS_PER_RUN:-20}
CONNECTIONS=${CONNECTIONS:-4}
OUT=${OUT:-target/profile}

missing=()
command -v valgrind >/dev/null 2>&1 || missing+=(valgrind)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  echo "profile: installing ${missing[*]}" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
cargo build -q --profile profiling -p tlsgate --bin tlsgate --example loadgen
TLSGATE=target/profiling/tlsgate
LOADGEN=target/profiling/examples/loadgen

BENCH_NAME=profile
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_pki "$KIND"
start_upstream

PORT=$(free_port)
bench_policy "$KIND" "$PORT" > "$work/policy.yaml"
mkdir -p "$OUT"
rm -f "$OUT"/callgrind.out*
valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.out" \
  "$TLSGATE" run -c "$work/policy.yaml" 2> "$work/tlsgate.log" &
proxy=$!
pids+=("$proxy")
wait_port "$PORT" 600

load() { # load SECONDS -> the load generator's summary line
  "$LOADGEN" --addr "127.0.0.1:$PORT" --sni bench.test --ca "$work/ca-$KIND.crt" \
    --cert "$work/client-$KIND.crt" --key "$work/client-$KIND.key" --mode "$MODE" \
    --connections "$CONNECTIONS" --seconds "$1"
}
load 3 >/dev/null
callgrind_control --zero "$proxy" >/dev/null 2>&1
summary=$(load "$SECONDS_PER_RUN")
callgrind_control --dump=measured "$proxy" >/dev/null 2>&1
# The dump is written asynchronously by the profiled process.
for _ in $(seq 100); do ls "$OUT"/callgrind.out.* >/dev/null 2>&1 && break; sleep 0.1; done
dump=$(ls -t "$OUT"/callgrind.out.* | head -1)
# loadgen prints {"requests": N, "errors": E, "seconds": S} (in handshake mode each request is
# on a new connection).
count=$(echo "$summary" | python3 -c 'import json,sys; print(json.load(sys.stdin)["requests"])')
total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
if [ -z "$count" ] || [ "$count" = 0 ] || [ -z "$total" ]; then
  echo "profile: no measurement (load: '$summary', instructions: '$total')" >&2
  exit 1
fi
callgrind_annotate --inclusive=yes --threshold=100 --auto=no "$dump" > "$OUT/inclusive.txt" 2>/dev/null
callgrind_annotate --threshold=100 --auto=no "$dump" > "$OUT/exclusive.txt" 2>/dev/null
echo "profile: $MODE ($KIND), $count in ${SECONDS_PER_RUN} s under callgrind: $((total / count)) instructions each ($total in all)"
echo "profile: reports in $OUT/inclusive.txt and $OUT/exclusive.txt; open $dump with kcachegrind for the call graph"
echo
# The thread roots (clone, start_thread, tokio's task poll) carry everything; skip them.
echo "top inclusive, tlsgate's own code:"
grep -E '^ *[0-9,]+ .*(native-host|core)/src/' "$OUT/inclusive.txt" | sed -n '1,15p'
echo
echo "top exclusive:"
grep -E '^ *[0-9,]+ ' "$OUT/exclusive.txt" | grep -vE 'PROGRAM TOTALS|clone\.S|pthread_create|thread_start|call_once|__rust_begin_short_backtrace' | sed -n '1,25p'
