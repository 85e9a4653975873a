//! The plugin configuration given to the proxy-wasm filter never carries a private key.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use tlsgate_test_support::Authority;

#[test]
fn a_certificate_file_that_bundles_its_key_is_inlined_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    let server = ca.server(&["app.example.com"]);
    let client = ca.client("gateway");
    // haproxy-style bundles: certificate and key in one file.
    std::fs::write(
        dir.path().join("server.pem"),
        format!("{}{}", server.cert_pem, server.key_pem),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("client.pem"),
        format!("{}{}", client.key_pem, client.cert_pem),
    )
    .unwrap();
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "endpoints:
  - url: https://app.example.com
    bind: 127.0.0.1:8443
    upstream:
      url: https://127.0.0.1:9443
      tls:
        certificate_authorities: [ca.crt]
        client_certificate: { certificate: client.pem, private_key: client.pem }
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.pem
                server_private_key: server.pem
                mutual_tls_certificate_authorities: [ca.crt]
",
    )
    .unwrap();
    let json = tlsgate_core::filter_policy(&[policy])
        .expect("filter policy")
        .to_string();
    assert!(
        !json.contains("PRIVATE KEY"),
        "a key reached the plugin configuration"
    );
    assert!(json.contains("BEGIN CERTIFICATE"));
    assert!(!json.contains("private_key"), "{json}");
}
