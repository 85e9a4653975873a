#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/) for SECONDS each on the stable toolchain:
# cargo-fuzz with `--sanitizer none` (RUSTC_BOOTSTRAP=1 and `-s address` add AddressSanitizer;
# see docs/fuzzing.md). Seeds come from the repository's own fixtures; corpora and crashes stay
# in target/fuzz/. Exits non-zero when a target finds a crash.
#
#   scripts/fuzz.sh [SECONDS] [--dev] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"; shift || true
profile=()
if [ "${1:-}" = "--dev" ]; then profile=(--dev); shift; fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"/\1/p' fuzz/Cargo.toml | grep -v '^tlsgate-fuzz$')
fi
command -v cargo-fuzz >/dev/null || { echo "cargo-fuzz is missing: make setup installs it (cargo install cargo-fuzz)" >&2; exit 1; }

work="$PWD/target/fuzz"
seed() { # seed TARGET FILE...
  local dir="$work/corpus/$1"; shift
  mkdir -p "$dir"
  for f in "$@"; do [ -f "$f" ] && cp -f "$f" "$dir/$(echo "$f" | tr '/' '_')"; done
}
# Fixtures: policies and manifests of the examples, certificates and CRLs made here.
certs="$work/certs"
if [ ! -s "$certs/ca.crl" ]; then
  rm -rf "$certs"; mkdir -p "$certs"
  scripts/seed-certs.sh "$certs" >/dev/null
  scripts/ca-crl.sh "$certs" client.crt >/dev/null
fi
der() { openssl "$1" -in "$2" -outform DER -out "$3" 2>/dev/null; }
der x509 "$certs/client.crt" "$certs/client.der"
der x509 "$certs/server.crt" "$certs/server.der"
der crl "$certs/ca.crl" "$certs/ca.der.crl"
mapfile -t policies < <(find examples tests/conformance -name '*.yaml' -o -name '*.json' | grep -v node_modules | sort)
seed policy "${policies[@]}"
seed certificate "$certs/client.der" "$certs/server.der"
seed revocation_list "$certs/ca.der.crl"
seed cel fuzz/seeds/cel/*
seed proxy_protocol fuzz/seeds/proxy_protocol/*
seed filter_attributes "$certs/client.crt"
# OCSP answers made offline by openssl from the CA database ca-crl.sh keeps (client.crt is
# revoked there; server.crt unknown), each behind the 4 bytes the target reads as `now`.
for who in client server; do
  openssl ocsp -issuer "$certs/ca.crt" -cert "$certs/$who.crt" -no_nonce -reqout "$certs/$who.ocsp-req" 2>/dev/null
  openssl ocsp -index "$certs/crl-db/index.txt" -CA "$certs/ca.crt" -rsigner "$certs/ca.crt" \
    -rkey "$certs/ca.key" -ndays 1 -reqin "$certs/$who.ocsp-req" -respout "$certs/$who.ocsp" 2>/dev/null
  { printf '\x7f\xff\xff\xff'; cat "$certs/$who.ocsp"; } > "$certs/$who.ocsp-seed"
done
seed ocsp_response "$certs/client.ocsp-seed" "$certs/server.ocsp-seed"

failed=0
for target in "${targets[@]}"; do
  mkdir -p "$work/corpus/$target" "$work/artifacts/$target"
  echo "fuzz: $target for ${seconds}s"
  if ! (cd fuzz && cargo fuzz run "${profile[@]}" -s none "$target" "$work/corpus/$target" -- \
      -max_total_time="$seconds" -artifact_prefix="$work/artifacts/$target/" -print_final_stats=1 \
      > "$work/$target.log" 2>&1); then
    echo "fuzz: $target FAILED — the input is in target/fuzz/artifacts/$target/; its log:" >&2
    tail -40 "$work/$target.log" >&2
    failed=1
  else
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" "$work/$target.log" | tail -1 | sed "s/^/fuzz: $target: /"
  fi
done
exit $failed
