#!/usr/bin/env bash
# The seed document's eight openssl commands, verbatim (the same list as
# test-support/src/seed.rs): makes ca.crt/key, server.crt/key and client.crt/key in DIR
# (default: the current directory), printing each command as it runs. A DIR that already holds
# all six files is left alone; delete them for new ones.
#
#   scripts/seed-certs.sh [DIR]
set -euo pipefail
dir="${1:-.}"
mkdir -p "$dir"
cd "$dir"
if [ -s ca.crt ] && [ -s ca.key ] && [ -s server.crt ] && [ -s server.key ] &&
  [ -s client.crt ] && [ -s client.key ]; then
  echo "certificates: keeping ca, server and client .crt/.key in $PWD (delete them for new ones)"
  exit 0
fi
cat > seed-openssl.sh <<'SEED'
openssl genpkey -algorithm RSA -out ca.key -pkeyopt rsa_keygen_bits:2048
openssl req -x509 -new -nodes -key ca.key -sha256 -days 365 -out ca.crt -subj "/CN=ExampleCA"
openssl genpkey -algorithm RSA -out server.key -pkeyopt rsa_keygen_bits:2048
openssl req -new -key server.key -out server.csr -subj "/CN=terminate-tls-example.ngrok.app"
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt -days 365 -sha256
openssl genpkey -algorithm RSA -out client.key -pkeyopt rsa_keygen_bits:2048
openssl req -new -key client.key -out client.csr -subj "/CN=ExampleClient"
openssl x509 -req -in client.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out client.crt -days 365 -sha256 -extfile <(printf "extendedKeyUsage = clientAuth")
SEED
sed 's/^/  $ /' seed-openssl.sh
bash -euo pipefail seed-openssl.sh 2> openssl.log || { cat openssl.log >&2; exit 1; }
