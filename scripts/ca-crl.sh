#!/usr/bin/env bash
# A certificate revocation list for the CA in DIR (ca.crt + ca.key, e.g. made by
# scripts/seed-certs.sh), made with openssl's own CA tooling: revokes each CERT given (paths
# relative to DIR; none: an empty CRL) and writes DIR/ca.crl, current for DAYS (default 7).
# Revocations accumulate in DIR/crl-db/ across runs, as with a real CA; delete it to start over.
#
#   scripts/ca-crl.sh DIR [CERT...]          CRL_DAYS=1 scripts/ca-crl.sh DIR client.crt
set -euo pipefail
dir="${1:?usage: ca-crl.sh DIR [CERT...]}"
shift
cd "$dir"
mkdir -p crl-db
[ -f crl-db/index.txt ] || : > crl-db/index.txt
[ -f crl-db/crlnumber ] || echo 1000 > crl-db/crlnumber
cat > crl-db/ca.cnf <<CNF
[ ca ]
default_ca = crl

[ crl ]
database = crl-db/index.txt
crlnumber = crl-db/crlnumber
default_md = sha256
default_crl_days = ${CRL_DAYS:-7}
CNF
for cert in "$@"; do
  echo "  \$ openssl ca -config crl-db/ca.cnf -cert ca.crt -keyfile ca.key -revoke $cert"
  openssl ca -config crl-db/ca.cnf -cert ca.crt -keyfile ca.key -revoke "$cert" 2> crl-db/openssl.log ||
    grep -qi "already revoked" crl-db/openssl.log || { cat crl-db/openssl.log >&2; exit 1; }
done
echo "  \$ openssl ca -config crl-db/ca.cnf -cert ca.crt -keyfile ca.key -gencrl -out ca.crl"
# Written beside and moved over ca.crl, so a watching tlsgate never reads half a CRL.
openssl ca -config crl-db/ca.cnf -cert ca.crt -keyfile ca.key -gencrl -out ca.crl.new 2> crl-db/openssl.log ||
  { cat crl-db/openssl.log >&2; exit 1; }
mv ca.crl.new ca.crl
