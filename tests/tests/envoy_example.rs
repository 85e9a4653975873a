//! `examples/envoy/` is run by this test: its policy, with the seed's openssl-made
//! certificates, generates a bootstrap that Envoy validates and serves the README's curl call;
//! and the committed `examples/envoy/envoy.yaml` is that bootstrap (with the machine-specific
//! paths and certificate bodies elided). Regenerate it with
//! `TLSGATE_BLESS=1 cargo test -p tlsgate-e2e --test envoy_example`.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use envoy_harness::{echoed_header, generate, ports, validate, Envoy};
use tlsgate_e2e::{echo_upstream, filter_wasm, repo_root, Curl};
use tlsgate_test_support::{seed_openssl_certs, SEED_SERVER_NAME};

/// Paths and certificate bodies differ per machine and per run; the rest is the contract.
fn normalize(yaml: &str, dir: &std::path::Path) -> String {
    let mut out = yaml
        .replace(
            &filter_wasm().display().to_string(),
            "/path/to/tlsgate/target/wasm32-wasip1/release-wasm/tlsgate_filter.wasm",
        )
        .replace(&dir.display().to_string(), "/path/to/examples/envoy/run");
    // Inlined PEM inside the embedded policy JSON: keep the armour, drop the base64.
    let (begin, end) = (
        "-----BEGIN CERTIFICATE-----\\n",
        "\\n-----END CERTIFICATE-----",
    );
    let mut from = 0;
    while let Some(start) = out[from..].find(begin).map(|i| i + from + begin.len()) {
        let Some(stop) = out[start..].find(end).map(|i| i + start) else {
            break;
        };
        out.replace_range(start..stop, "...");
        from = start + 3 + end.len();
    }
    out
}

#[test]
fn envoy_example_runs_and_its_committed_bootstrap_is_current() {
    let example = repo_root().join("examples").join("envoy");
    let policy = std::fs::read_to_string(example.join("policy.yaml")).expect("example policy");
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    seed_openssl_certs(d).expect("the seed's openssl commands");

    // The committed rendering, from the policy exactly as committed.
    let config = generate(d, &policy, 9901);
    validate(&config);
    let fresh = normalize(&std::fs::read_to_string(&config).expect("envoy.yaml"), d);
    let committed_path = example.join("envoy.yaml");
    if std::env::var_os("TLSGATE_BLESS").is_some() {
        std::fs::write(&committed_path, &fresh).expect("writing examples/envoy/envoy.yaml");
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "examples/envoy/envoy.yaml is stale; regenerate it with \
         `TLSGATE_BLESS=1 cargo test -p tlsgate-e2e --test envoy_example`\n--- fresh ---\n{fresh}"
    );

    // The same policy on free ports, run as the README describes.
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let policy = policy
        .replace("127.0.0.1:8443", &format!("127.0.0.1:{port}"))
        .replace("http://127.0.0.1:8080", &upstream.url());
    let config = generate(d, &policy, admin);
    let _envoy = Envoy::start(&config, admin, &[port]);
    let get = || Curl::https(SEED_SERVER_NAME, port, "/").ca(d.join("ca.crt"));
    let res = get()
        .client_cert(d.join("client.crt"), d.join("client.key"))
        .run();
    assert_eq!(res.status, Some(200), "{res:?}");
    assert_eq!(
        echoed_header(&res, "x-client-cn").as_deref(),
        Some("ExampleClient")
    );
    let anonymous = get().run();
    assert_eq!(anonymous.status, None, "{anonymous:?}");
}
