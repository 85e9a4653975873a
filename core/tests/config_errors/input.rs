//! The input as a whole: duplicate keys, JSON, garbage, key material never echoed, a broken
//! certificate in a bundle.

use super::*;

#[test]
fn duplicate_yaml_keys_are_refused() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, "", "").replace(
        "    bind: 127.0.0.1:8443\n",
        "    bind: 127.0.0.1:8443\n    bind: 127.0.0.1:9443\n",
    );
    let e = f.error(&yaml);
    assert!(e.contains("policy.yaml:4:"), "{e}");
    assert!(e.contains("`bind` appears twice"), "{e}");
}

#[test]
fn json_policies_load_with_positions() {
    let f = Fixture::new(HOST);
    let json = r#"{"endpoints": [{"url": "https://app.example.com", "bind": "127.0.0.1:8443",
 "upstream": {"url": "http://127.0.0.1:8080"},
 "traffic_policy": {"on_tcp_connect": [{"actions": [{"type": "terminate-tls",
   "config": {"server_certificate": "server.crt", "server_private_key": "server.key",
   "min_version": "1.0"}}]}]}}]}"#;
    let e = f.error(json);
    assert!(e.starts_with("policy.yaml:5:"), "{e}");
    assert!(
        e.contains("config.min_version: TLS 1.0 is not supported"),
        "{e}"
    );
}

#[test]
fn garbage_never_panics() {
    let f = Fixture::new(HOST);
    for input in [
        "",
        "[",
        "{]",
        "endpoints: 5",
        "endpoints: [1]",
        "\u{0}\u{1}",
        "- a\n- b",
        "a: *nope",
    ] {
        assert!(f.load(input).is_err(), "{input:?}");
    }
}

#[test]
fn key_material_in_the_wrong_place_is_never_echoed() {
    let f = Fixture::new(HOST);
    let key = f.server.key_pem.clone();
    let body = key.lines().nth(1).expect("a body line").to_owned();
    // A PEM key given where a mapping is expected: serde would quote it.
    let indented: String = key.lines().map(|l| format!("          {l}\n")).collect();
    let yaml = policy(HOST, "", "").replace(
        "      url: http://127.0.0.1:8080\n",
        &format!("      url: https://127.0.0.1:8080\n      tls:\n        client_certificate: |\n{indented}"),
    );
    let e = f.error(&yaml);
    assert!(e.contains("upstream.tls.client_certificate"), "{e}");
    assert!(!e.contains(&body), "key material echoed: {e}");
    // Key text that does not start with the PEM header is still inline, not a "path" to echo.
    let other_key = f.client.key_pem.clone();
    let other_body = other_key.lines().nth(1).expect("a body line").to_owned();
    let with_preamble = format!("Bag Attributes\n{other_key}");
    let quoted = serde_json::to_string(&with_preamble).expect("json");
    let yaml = policy(HOST, "", "").replace(
        "server_private_key: server.key",
        &format!("server_private_key: {quoted}"),
    );
    let e = f.error(&yaml);
    assert!(e.contains("does not match the certificate"), "{e}");
    assert!(!e.contains(&other_body), "key material echoed: {e}");
    let loaded = f.load(&policy(HOST, "", "").replace(
        "server_private_key: server.key",
        &format!(
            "server_private_key: {}",
            serde_json::to_string(&format!("Bag Attributes\n{key}")).expect("json")
        ),
    ));
    assert!(loaded.is_ok(), "{:?}", loaded.err().map(|e| e.to_string()));
}

#[test]
fn a_broken_certificate_in_a_bundle_is_named_by_its_position() {
    let f = Fixture::new(HOST);
    let bundle = format!(
        "{}-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        f.ca.cert_pem()
    );
    std::fs::write(f.path().join("bundle.crt"), bundle).unwrap();
    let e = f.error(&policy(
        HOST,
        &tls(&["mutual_tls_certificate_authorities: [bundle.crt]"]),
        "",
    ));
    assert!(
        e.contains("certificate #2 in mutual_tls_certificate_authorities cannot be parsed"),
        "{e}"
    );
}
