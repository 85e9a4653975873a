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
    let config = tlsgate_core::Config::load_files(
        &[policy],
        tlsgate_core::KeyMode::Skip,
        tlsgate_core::Deployment::none(),
    )
    .expect("loads");
    let json = config.filter_policy().to_string();
    assert!(
        !json.contains("PRIVATE KEY"),
        "a key reached the plugin configuration"
    );
    assert!(json.contains("BEGIN CERTIFICATE"));
    assert!(!json.contains("private_key"), "{json}");
}

/// The filter's copy is derived from the loaded model; loading it back gives the same rules at
/// the same positions, and deriving again gives the same document (a fixed point).
#[test]
fn the_derived_policy_loads_back_to_the_same_rules_at_the_same_positions() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    ca.server(&["app.example.com"]).write(dir.path(), "server");
    ca.client("gateway").write(dir.path(), "gateway");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        r#"endpoints:
  - url: https://app.example.com
    bind: 127.0.0.1:8443
    forward_client_cert: client-cert
    upstream:
      url: https://127.0.0.1:9443
      protocol: http2
      tls:
        certificate_authorities: [ca.crt]
        server_name: upstream.example.com
        pinned_certificates: [server.crt]
        client_certificate: { certificate: gateway.crt, private_key: gateway.key }
    traffic_policy:
      on_tcp_connect:
        - name: first
          expressions: ["conn.tls.client.subject.common_name == 'mallory'"]
          actions: [{ type: deny }]
        - actions:
            - type: terminate-tls
              config:
                min_version: "1.3"
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
                mutual_tls_verification_strategy: require-any
                session_resumption: false
            - type: restrict-ips
              config: { allow: [127.0.0.0/8], deny: ["127.0.0.9"] }
        - expressions: ["conn.tls.version == '1.2'"]
          actions: [{ type: deny }]
      on_http_request:
        - expressions: ["req.path.startsWith('/admin')"]
          actions: [{ type: deny, config: { status_code: 404 } }]
        - actions:
            - type: custom-response
              config: { status_code: 418, body: "tea for ${conn.tls.client.subject.common_name}", headers: { x-why: tea } }
        - actions:
            - type: add-headers
              config: { headers: { x-client: "cn=${conn.tls.client.subject.common_name}", x-fixed: yes } }
            - type: restrict-ips
              config: { allow: [127.0.0.1] }
            - type: log
              config: { metadata: { who: "${conn.tls.client.subject.common_name}", n: 7 } }
"#,
    )
    .unwrap();
    let loaded = tlsgate_core::Config::load_files(
        &[policy],
        tlsgate_core::KeyMode::Skip,
        tlsgate_core::Deployment::none(),
    )
    .expect("loads");
    let derived = loaded.filter_policy();
    let text = derived.to_string();
    assert!(!text.contains("PRIVATE KEY"), "{text}");
    assert!(
        !text.contains(&*dir.path().to_string_lossy()),
        "a file path: {text}"
    );

    let options = tlsgate_core::LoadOptions {
        reader: &tlsgate_core::pem::InlineOnly,
        keys: tlsgate_core::KeyMode::Skip,
        deployment: tlsgate_core::Deployment::none(),
    };
    let again = tlsgate_core::Config::load_str(&text, None, &options, 0).expect("loads back");
    assert_eq!(
        again.filter_policy(),
        derived,
        "deriving twice changes the document"
    );
    let (a, b) = (&loaded.endpoints[0], &again.endpoints[0]);
    let positions = |e: &tlsgate_core::Endpoint| {
        (
            e.tcp_rules.iter().map(|r| r.index).collect::<Vec<_>>(),
            e.http_rules.iter().map(|r| r.index).collect::<Vec<_>>(),
            e.tls.rule,
        )
    };
    assert_eq!(positions(a), positions(b));
    assert_eq!(positions(a), (vec![0, 1, 2], vec![0, 1, 2], 1));
    assert!(!b.tls.session_resumption);
    assert_eq!(
        b.upstream
            .tls
            .as_ref()
            .map(|t| t.pinned_spki_sha256.clone()),
        a.upstream
            .tls
            .as_ref()
            .map(|t| t.pinned_spki_sha256.clone())
    );
}
