# Sourced by bench-compare.sh, bench-filter.sh and profile.sh: a work directory removed on exit
# together with the processes started for the run, free loopback ports, the benchmark's
# certificates, its upstream, its policy and the generated Envoy bootstrap with the filter
# taken out. Callers set BENCH_NAME (for messages) first.

work=$(mktemp -d "/tmp/tlsgate-${BENCH_NAME}.XXXXXX")
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# bench_prerequisites WHAT: 2+ cores (WHAT on core 0; load and upstream on core 1), nginx and
# PyYAML (installed from Debian when missing).
bench_prerequisites() {
  if [ "$(nproc)" -lt 2 ]; then
    echo "$BENCH_NAME: needs 2 cores ($1 on one, load and upstream on the other)" >&2
    exit 1
  fi
  local missing=()
  command -v nginx >/dev/null 2>&1 || missing+=(nginx)
  python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
  if [ ${#missing[@]} -gt 0 ]; then
    echo "$BENCH_NAME: installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT [TENTHS]: until something listens on 127.0.0.1:PORT (default 10 s).
wait_port() {
  for _ in $(seq "${2:-100}"); do (echo >/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "$BENCH_NAME: nothing listens on $1" >&2
  return 1
}

# bench_pki KIND: in $work, ca-KIND.crt, server-KIND.{crt,key} (bench.test) and
# client-KIND.{crt,key} (clientAuth), KIND being ecdsa (P-256) or rsa (2048).
bench_pki() {
  local kind=$1 alg who ext
  if [ "$kind" = ecdsa ]; then alg=(-algorithm EC -pkeyopt ec_paramgen_curve:P-256); else alg=(-algorithm RSA -pkeyopt rsa_keygen_bits:2048); fi
  openssl genpkey "${alg[@]}" -out "$work/ca-$kind.key" 2>/dev/null
  openssl req -x509 -new -key "$work/ca-$kind.key" -subj "/CN=Bench CA $kind" -days 30 -out "$work/ca-$kind.crt" 2>/dev/null
  for who in server client; do
    openssl genpkey "${alg[@]}" -out "$work/$who-$kind.key" 2>/dev/null
    openssl req -new -key "$work/$who-$kind.key" -subj "/CN=bench-$who" -out "$work/$who.csr" 2>/dev/null
    if [ $who = server ]; then ext="subjectAltName=DNS:bench.test"; else ext="extendedKeyUsage=clientAuth"; fi
    openssl x509 -req -in "$work/$who.csr" -CA "$work/ca-$kind.crt" -CAkey "$work/ca-$kind.key" \
      -CAcreateserial -days 30 -extfile <(echo "$ext") -out "$work/$who-$kind.crt" 2>/dev/null
  done
}

# start_upstream [COMMAND PREFIX...]: an nginx on 127.0.0.1:$UP answering 200 "ok", run under
# the prefix (e.g. taskset -c 1); sets UP.
start_upstream() {
  UP=$(free_port)
  mkdir -p "$work/upstream"
  cat > "$work/upstream/nginx.conf" <<CONF
worker_processes 1; daemon off; user root;
pid $work/upstream/nginx.pid; error_log $work/upstream/error.log warn;
events { worker_connections 8192; }
http {
  access_log off; keepalive_requests 10000000; keepalive_timeout 300s;
  client_body_temp_path $work/upstream; proxy_temp_path $work/upstream;
  fastcgi_temp_path $work/upstream; uwsgi_temp_path $work/upstream; scgi_temp_path $work/upstream;
  server { listen 127.0.0.1:$UP; location / { return 200 "ok"; } }
}
CONF
  "$@" nginx -p "$work/upstream" -c "$work/upstream/nginx.conf" &
  pids+=($!)
  wait_port "$UP"
}

# bench_policy KIND PORT: the benchmark's policy (after bench_pki KIND and start_upstream): TLS
# 1.3, a client certificate required and verified, no session resumption, HTTP to $UP.
bench_policy() {
  cat <<EOF
endpoints:
  - url: https://bench.test
    bind: 127.0.0.1:$2
    upstream: { url: "http://127.0.0.1:$UP" }
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: "1.3"
                server_certificate: $work/server-$1.crt
                server_private_key: $work/server-$1.key
                mutual_tls_certificate_authorities: [$work/ca-$1.crt]
                session_resumption: false
EOF
}

# without_filter BOOTSTRAP: the generated bootstrap with the tlsgate filter taken out of every
# filter chain (network and HTTP), everything else equal: what the filter costs. (It then
# enforces nothing but Envoy's TLS.) Needs PyYAML.
without_filter() {
  python3 - "$1" <<'PY'
import sys, yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path))
for listener in doc["static_resources"]["listeners"]:
    for chain in listener["filter_chains"]:
        chain["filters"] = [f for f in chain["filters"] if "wasm" not in f["name"]]
        for f in chain["filters"]:
            tc = f.get("typed_config", {})
            if "http_filters" in tc:
                tc["http_filters"] = [h for h in tc["http_filters"] if "wasm" not in h["name"]]
yaml.safe_dump(doc, open(path, "w"))
PY
}
