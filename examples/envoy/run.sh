#!/usr/bin/env bash
# The seed walk-through on Envoy with the tlsgate filter, from a fresh clone:
#   1. the seed document's openssl commands make ca/server/client certificates in ./run/
#   2. `tlsgate envoy-config` turns policy.yaml into ./run/envoy.yaml
#   3. Envoy (installed by `make setup`) runs it; a tiny upstream answers on 127.0.0.1:8080
# Then, in another shell (from examples/envoy/run):
#   curl --resolve terminate-tls-example.ngrok.app:8443:127.0.0.1 \
#        --cert client.crt --key client.key --cacert ca.crt https://terminate-tls-example.ngrok.app:8443/
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
mkdir -p "$here/run"
cd "$here/run"
cp "$here/policy.yaml" policy.yaml
"$root/scripts/seed-certs.sh" .
make -C "$root" --no-print-directory wasm
wasm="$root/target/wasm32-wasip1/release-wasm/tlsgate_filter.wasm"
cargo run -q --manifest-path "$root/Cargo.toml" -p tlsgate -- \
  envoy-config -c policy.yaml --wasm "$wasm" -o envoy.yaml --admin 127.0.0.1:9901
# A throwaway upstream that echoes the request headers it received.
python3 - <<'PY' &
import http.server, json
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = (json.dumps(dict(self.headers), indent=2) + "\n").encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", 8080), Echo).serve_forever()
PY
upstream=$!
trap 'kill $upstream' EXIT
"$root/.tools/bin/envoy" -c envoy.yaml --concurrency 1 -l warning --component-log-level wasm:info
