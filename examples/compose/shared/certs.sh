#!/usr/bin/env bash
# One-shot: the seed's eight openssl commands (scripts/seed-certs.sh, verbatim), a client
# certificate from a CA nobody trusts (for the failing case), and the example policies beside
# them, all in the shared volume /work. tlsgate runs as 65532, so the volume is handed to it.
set -euo pipefail
cd /work
seed-certs.sh .
untrusted-client.sh .
cp /policies/*.yaml /work/
chown -R 65532:65532 /work
echo "certs: ca, server and client certificates and the policies are in the shared volume"
