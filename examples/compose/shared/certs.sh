#!/usr/bin/env bash
# One-shot: the seed's eight openssl commands (scripts/seed-certs.sh, verbatim), a client
# certificate from a CA nobody trusts (for the failing case), and the example policies beside
# them, all in the shared volume /work. tlsgate runs as 65532, so the volume is handed to it.
set -euo pipefail
cd /work
seed-certs.sh .
if [ ! -s other/client.crt ]; then
  mkdir -p other
  openssl req -x509 -new -nodes -newkey rsa:2048 -keyout other/ca.key -out other/ca.crt \
    -days 30 -subj "/CN=OtherCA" 2>/dev/null
  openssl req -new -nodes -newkey rsa:2048 -keyout other/client.key -out other/client.csr \
    -subj "/CN=ExampleClient" 2>/dev/null
  openssl x509 -req -in other/client.csr -CA other/ca.crt -CAkey other/ca.key -CAcreateserial \
    -out other/client.crt -days 30 -sha256 -extfile <(printf "extendedKeyUsage = clientAuth") 2>/dev/null
fi
cp /policies/*.yaml /work/
chown -R 65532:65532 /work
echo "certs: ca, server and client certificates and the policies are in the shared volume"
