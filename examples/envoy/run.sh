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
if [ ! -f client.crt ]; then
  openssl genpkey -algorithm RSA -out ca.key -pkeyopt rsa_keygen_bits:2048
  openssl req -x509 -new -nodes -key ca.key -sha256 -days 365 -out ca.crt -subj "/CN=ExampleCA"
  openssl genpkey -algorithm RSA -out server.key -pkeyopt rsa_keygen_bits:2048
  openssl req -new -key server.key -out server.csr -subj "/CN=terminate-tls-example.ngrok.app"
  openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 365 -sha256
  openssl genpkey -algorithm RSA -out client.key -pkeyopt rsa_keygen_bits:2048
  openssl req -new -key client.key -out client.csr -subj "/CN=ExampleClient"
  openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 365 -sha256 -extfile <(printf "extendedKeyUsage = clientAuth")
fi
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
