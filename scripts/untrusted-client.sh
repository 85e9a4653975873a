#!/usr/bin/env bash
# A client certificate named like the seed's (CN=ExampleClient, clientAuth) from a CA nobody
# trusts, in DIR/other/ (ca.crt/key, client.crt/key): the walk-throughs' failing case. A DIR
# that already holds other/client.crt is left alone.
#
#   scripts/untrusted-client.sh [DIR]
set -euo pipefail
cd "${1:-.}"
[ -s other/client.crt ] && exit 0
mkdir -p other
openssl req -x509 -new -nodes -newkey rsa:2048 -keyout other/ca.key -out other/ca.crt \
  -days 30 -subj "/CN=OtherCA" 2>/dev/null
openssl req -new -nodes -newkey rsa:2048 -keyout other/client.key -out other/client.csr \
  -subj "/CN=ExampleClient" 2>/dev/null
openssl x509 -req -in other/client.csr -CA other/ca.crt -CAkey other/ca.key -CAcreateserial \
  -out other/client.crt -days 30 -sha256 -extfile <(printf "extendedKeyUsage = clientAuth") 2>/dev/null
