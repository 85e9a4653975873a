//! The policy's shape and its TLS block: unknown fields, versions, key and certificate material,
//! verification strategies.

use super::*;

#[test]
fn loads_a_valid_policy_and_summarizes_it() {
    let f = Fixture::new(HOST);
    let config = f
        .load(&policy(
            HOST,
            &tls(&[
                "min_version: \"1.3\"",
                "mutual_tls_certificate_authorities: [ca.crt]",
            ]),
            "",
        ))
        .expect("loads");
    assert!(config.warnings.is_empty(), "{:?}", config.warnings);
    assert_eq!(
        config.endpoints[0].to_string(),
        "app.example.com on 127.0.0.1:8443: TLS 1.3, client certificates require-and-verify \
         (1 CA), 0 rules -> http://127.0.0.1:8080"
    );
}

#[test]
fn unknown_field_names_path_and_line() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(HOST, &tls(&["min_verison: \"1.3\""]), ""));
    assert!(e.starts_with("policy.yaml:13:"), "{e}");
    assert!(
        e.contains("endpoints[0].traffic_policy.on_tcp_connect[0].actions[0].config.min_verison"),
        "{e}"
    );
    assert!(e.contains("expected one of `min_version`"), "{e}");
}

#[test]
fn unknown_top_level_field_is_refused() {
    let f = Fixture::new(HOST);
    let e = f.error(&format!("{}extra: 1\n", policy(HOST, "", "")));
    assert!(e.contains("unknown field `extra`"), "{e}");
}

#[test]
fn obsolete_tls_versions_are_refused_with_a_reason() {
    let f = Fixture::new(HOST);
    for v in ["1.0", "1.1"] {
        let e = f.error(&policy(HOST, &tls(&[&format!("min_version: \"{v}\"")]), ""));
        assert!(e.contains("config.min_version"), "{e}");
        assert!(e.contains(&format!("TLS {v} is not supported")), "{e}");
        assert!(e.contains("use \"1.2\" or \"1.3\""), "{e}");
    }
}

#[test]
fn unquoted_version_gets_a_quoting_hint() {
    let f = Fixture::new(HOST);
    let e = failure(&f, &policy(HOST, &tls(&["max_version: 1.3"]), ""));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::UnquotedTlsVersion { number } if number == "1.3"),
        "{e}"
    );
    let e = e.to_string();
    assert!(e.contains("config.max_version"), "{e}");
    assert!(e.contains("quoted string, \"1.3\""), "{e}");
    let e = failure(&f, &policy(HOST, &tls(&["max_version: \"1.4\""]), ""));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::NotOneOf { found, what: "a TLS version", .. } if *found == "1.4"),
        "{e}"
    );
}

#[test]
fn min_above_max_is_refused() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(
        HOST,
        &tls(&["min_version: \"1.3\"", "max_version: \"1.2\""]),
        "",
    ));
    assert!(
        e.contains("config.min_version: min_version 1.3 is above max_version 1.2"),
        "{e}"
    );
    assert!(e.starts_with("policy.yaml:13:"), "{e}");
}

#[test]
fn mismatched_key_is_refused_at_load() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, "", "").replace(
        "server_private_key: server.key",
        "server_private_key: client.key",
    );
    let e = f.error(&yaml);
    assert!(e.contains("config.server_private_key"), "{e}");
    assert!(
        e.contains("does not match the certificate CN=app.example.com"),
        "{e}"
    );
}

#[test]
fn certificate_without_key_is_refused() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, "", "").replace("                server_private_key: server.key\n", "");
    let e = f.error(&yaml);
    assert!(
        e.contains(
            "config.server_private_key: server_certificate is set but server_private_key is not"
        ),
        "{e}"
    );
}

#[test]
fn endpoint_without_terminate_tls_is_refused() {
    let f = Fixture::new(HOST);
    let yaml = "endpoints:\n  - url: https://a.example.com\n    bind: 127.0.0.1:1\n    upstream: {url: http://127.0.0.1:2}\n";
    let e = failure(&f, yaml);
    assert!(matches!(*e.kind, ConfigErrorKind::NoTerminateTls), "{e}");
    assert!(
        e.to_string()
            .contains("endpoints[0].traffic_policy.on_tcp_connect: no terminate-tls action"),
        "{e}"
    );
}

#[test]
fn bad_pem_and_missing_files_are_refused() {
    let f = Fixture::new(HOST);
    std::fs::write(f.path().join("garbage.crt"), "hello").expect("write");
    let e = f.error(&policy(HOST, "", "").replace(
        "server_certificate: server.crt",
        "server_certificate: garbage.crt",
    ));
    assert!(
        e.contains(
            "config.server_certificate: server_certificate holds no PEM `CERTIFICATE` block"
        ),
        "{e}"
    );
    let e = f.error(&policy(HOST, "", "").replace(
        "server_certificate: server.crt",
        "server_certificate: missing.crt",
    ));
    assert!(
        e.contains("config.server_certificate: cannot read missing.crt"),
        "{e}"
    );
    let broken = "-----BEGIN CERTIFICATE-----\nnot base64!!\n-----END CERTIFICATE-----\n";
    std::fs::write(f.path().join("broken.crt"), broken).expect("write");
    let e = f.error(&policy(HOST, "", "").replace(
        "server_certificate: server.crt",
        "server_certificate: broken.crt",
    ));
    assert!(e.contains("config.server_certificate"), "{e}");
}

#[test]
fn a_client_certificate_is_not_a_ca() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(
        HOST,
        &tls(&["mutual_tls_certificate_authorities: [ca.crt, client.crt]"]),
        "",
    ));
    assert!(
        e.contains(
            "config.mutual_tls_certificate_authorities[1]: CN=alice is not a CA certificate"
        ),
        "{e}"
    );
}

#[test]
fn unknown_strategy_and_strategy_without_cas_are_refused() {
    let f = Fixture::new(HOST);
    let e = failure(
        &f,
        &policy(
            HOST,
            &tls(&[
                "mutual_tls_certificate_authorities: [ca.crt]",
                "mutual_tls_verification_strategy: verify",
            ]),
            "",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::UnknownChoice { what: "strategy", found, .. } if *found == "verify"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("config.mutual_tls_verification_strategy: unknown strategy `verify`"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(
            HOST,
            &tls(&["mutual_tls_verification_strategy: request"]),
            "",
        ),
    );
    assert_eq!(
        *e.kind,
        ConfigErrorKind::Conflict(Conflict::StrategyWithoutAuthorities),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("without mutual_tls_certificate_authorities"),
        "{e}"
    );
}

#[test]
fn certificate_not_covering_the_host_is_a_warning() {
    let f = Fixture::new("other.example.com");
    let config = f.load(&policy(HOST, "", "")).expect("loads");
    assert!(
        matches!(&*config.warnings[0].kind, ConfigErrorKind::CertificateName { names, host, .. }
            if names == &["other.example.com"] && host == HOST),
        "{}",
        config.warnings[0]
    );
    let w = config.warnings[0].to_string();
    assert!(w.contains("config.server_certificate"), "{w}");
    assert!(
        w.contains("names other.example.com but the endpoint serves app.example.com"),
        "{w}"
    );
}
