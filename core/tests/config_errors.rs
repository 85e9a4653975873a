//! Every load-time error names the file, the field path and the line, and says what to do.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{policy, Fixture};
use tlsgate_core::error::{Conflict, UrlProblem};
use tlsgate_core::expr::CompileError;
use tlsgate_core::{ConfigError, ConfigErrorKind};

const HOST: &str = "app.example.com";

fn tls(lines: &[&str]) -> String {
    lines
        .iter()
        .map(|l| format!("                {l}\n"))
        .collect()
}

/// The error a policy fails with, to match on its kind (and print when it is not the one).
fn failure(f: &Fixture, yaml: &str) -> ConfigError {
    match f.load(yaml) {
        Ok(_) => panic!("expected an error for:\n{yaml}"),
        Err(e) => e,
    }
}

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

#[test]
fn two_endpoints_may_not_claim_one_host_on_one_bind() {
    let f = Fixture::new(HOST);
    let one = policy(HOST, "", "");
    let endpoint = one.strip_prefix("endpoints:\n").expect("prefix");
    let e = f.error(&format!("{one}{endpoint}"));
    assert!(
        e.contains(
            "endpoints[1].url: app.example.com on 127.0.0.1:8443 is already served by endpoints[0]"
        ),
        "{e}"
    );
}

#[test]
fn unknown_action_names_the_phase_and_the_alternatives() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(HOST, "", "        - actions: [{type: dney}]\n"));
    assert!(
        e.contains(
            "on_tcp_connect[1].actions[0].type: unknown action type `dney` in on_tcp_connect"
        ),
        "{e}"
    );
    assert!(
        e.contains("terminate-tls, deny, close-connection, restrict-ips"),
        "{e}"
    );
}

#[test]
fn an_ngrok_action_tlsgate_does_not_implement_is_named_as_such() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(
        HOST,
        "",
        "      on_http_request:\n        - actions: [{type: rate-limit, config: {capacity: 10}}]\n",
    ));
    assert!(
        e.contains(
            "on_http_request[0].actions[0].type: `rate-limit` is an ngrok action tlsgate does \
             not implement; on_http_request accepts deny, close-connection, custom-response, \
             add-headers, remove-headers, restrict-ips"
        ),
        "{e}"
    );
}

#[test]
fn http_only_action_in_tcp_phase_is_refused() {
    let f = Fixture::new(HOST);
    let e = f.error(&policy(
        HOST,
        "",
        "        - actions: [{type: add-headers, config: {headers: {a: b}}}]\n",
    ));
    assert!(
        e.contains("unknown action type `add-headers` in on_tcp_connect"),
        "{e}"
    );
}

#[test]
fn cel_errors_point_at_the_expression() {
    let f = Fixture::new(HOST);
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - expressions: [\"conn.tls.client.subject.cn == 'x'\"]\n          actions: [{type: deny}]\n",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::Expression {
            reason: CompileError::UnknownVariable { variable, .. }, ..
        } if variable == "conn.tls.client.subject.cn"),
        "{e}"
    );
    let e = e.to_string();
    assert!(e.starts_with("policy.yaml:13:"), "{e}");
    assert!(e.contains("on_tcp_connect[1].expressions[0]: expression `conn.tls.client.subject.cn == 'x'`: unknown variable"), "{e}");
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - expressions: [\"conn.tls.version > 1\"]\n          actions: [{type: deny}]\n",
        ),
    );
    assert!(
        matches!(
            &*e.kind,
            ConfigErrorKind::Expression {
                reason: CompileError::Type { .. },
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn terminate_tls_behind_an_expression_is_refused() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, "", "").replace(
        "        - actions:\n            - type: terminate-tls",
        "        - expressions: [\"conn.tls.sni == 'a'\"]\n          actions:\n            - type: terminate-tls",
    );
    let e = failure(&f, &yaml);
    assert_eq!(
        *e.kind,
        ConfigErrorKind::Conflict(Conflict::TerminateTlsBehindExpression),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("terminate-tls cannot depend on expressions"),
        "{e}"
    );
}

#[test]
fn bad_urls_binds_and_upstreams_are_refused() {
    let f = Fixture::new(HOST);
    let e = failure(
        &f,
        &policy(HOST, "", "").replace("bind: 127.0.0.1:8443", "bind: localhost"),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadAddress { value, .. } if *value == "localhost"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("endpoints[0].bind: `localhost` is not an address to listen on"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(HOST, "", "").replace(
            "url: https://app.example.com",
            "url: http://app.example.com",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadUrl { url, problem: UrlProblem::PlainEndpoint }
            if *url == "http://app.example.com"),
        "{e}"
    );
    assert!(e.to_string().contains("endpoints[0].url:"), "{e}");
    let e = failure(
        &f,
        &policy(HOST, "", "").replace("url: http://127.0.0.1:8080", "url: tcp://127.0.0.1:8080"),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::WrongUpstreamScheme { found, .. } if *found == "tcp"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("endpoints[0].upstream.url: an https endpoint proxies HTTP"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(HOST, "", "").replace("url: http://127.0.0.1:8080", "url: http://127.0.0.1:0"),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadUrl { problem: UrlProblem::BadPort { port }, .. }
            if *port == "0"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(HOST, "", "").replace(
            "url: http://127.0.0.1:8080",
            "url: http://127.0.0.1:8080\n      tls: {server_name: x}",
        ),
    );
    assert!(
        matches!(
            &*e.kind,
            ConfigErrorKind::Conflict(Conflict::UpstreamTlsUnencrypted { .. })
        ),
        "{e}"
    );
    assert!(e.to_string().contains("endpoints[0].upstream.tls:"), "{e}");
}

#[test]
fn restrict_ips_needs_valid_cidrs() {
    let f = Fixture::new(HOST);
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - actions: [{type: restrict-ips, config: {allow: [10.0.0.0/33]}}]\n",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::BadAddress { value, .. } if *value == "10.0.0.0/33"),
        "{e}"
    );
    assert!(
        e.to_string()
            .contains("on_tcp_connect[1].actions[0].config.allow[0]: `10.0.0.0/33` is not a CIDR"),
        "{e}"
    );
    let e = failure(
        &f,
        &policy(
            HOST,
            "",
            "        - actions: [{type: restrict-ips, config: {}}]\n",
        ),
    );
    assert!(
        matches!(
            *e.kind,
            ConfigErrorKind::ActionNeeds {
                action: "restrict-ips",
                ..
            }
        ),
        "{e}"
    );
}

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

#[test]
fn proxy_protocol_settings_load_and_their_mistakes_are_named() {
    let f = Fixture::new(HOST);
    let with = |listeners: &str| format!("{}listeners:\n{listeners}", policy(HOST, "", ""));
    let config = f
        .load(&with(
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { trusted_sources: [10.0.0.0/8, \"::1\"] }\n",
        ))
        .expect("loads");
    let pp = config.listener("127.0.0.1:8443".parse().unwrap()).unwrap();
    let pp = pp.proxy_protocol.as_ref().unwrap();
    assert!(pp.trusts("10.1.2.3".parse().unwrap()));
    assert!(
        pp.trusts("::ffff:10.1.2.3".parse().unwrap()),
        "IPv4-mapped peers match"
    );
    assert!(!pp.trusts("127.0.0.1".parse().unwrap()));

    for (listeners, at, says) in [
        (
            "  - bind: 127.0.0.1:9000\n    proxy_protocol: { trusted_sources: [10.0.0.0/8] }\n",
            "policy.yaml:14:11: listeners[0].bind",
            "no endpoint of this file binds 127.0.0.1:9000",
        ),
        (
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { trusted_sources: [] }\n",
            "listeners[0].proxy_protocol.trusted_sources",
            "list the addresses (CIDRs) the load balancer connects from",
        ),
        (
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { trusted_sources: [10.0.0/8] }\n",
            "listeners[0].proxy_protocol.trusted_sources[0]",
            "`10.0.0/8` is not an address or CIDR range",
        ),
        (
            "  - bind: 127.0.0.1:8443\n  - bind: 127.0.0.1:8443\n",
            "listeners[1].bind",
            "has another listeners: entry above",
        ),
        (
            "  - bind: 127.0.0.1:8443\n    proxy_protocol: { from: [10.0.0.0/8] }\n",
            "listeners[0].proxy_protocol.from",
            "unknown field `from`",
        ),
    ] {
        let e = f.error(&with(listeners));
        assert!(e.contains(at) && e.contains(says), "{listeners}: {e}");
    }

    let upstream = |version: &str| {
        policy(HOST, "", "").replace(
            "      url: http://127.0.0.1:8080\n",
            &format!("      url: http://127.0.0.1:8080\n      proxy_protocol: {version}\n"),
        )
    };
    for (version, want) in [("1", "1"), ("\"2\"", "2"), ("2", "2")] {
        let config = f.load(&upstream(version)).expect("loads");
        let got = config.endpoints[0]
            .upstream
            .proxy_protocol
            .map(|v| v.as_str());
        assert_eq!(got, Some(want));
    }
    let e = f.error(&upstream("v3"));
    assert!(
        e.contains("policy.yaml:6:23: endpoints[0].upstream.proxy_protocol: `v3` is not")
            && e.contains("write 1 (text) or 2 (binary)"),
        "{e}"
    );
}

#[test]
fn session_ticket_keys_are_80_byte_files_never_inline_and_never_echoed() {
    let f = Fixture::new(HOST);
    std::fs::write(f.dir.path().join("ticket.key"), [7u8; 80]).unwrap();
    std::fs::write(f.dir.path().join("short.key"), [7u8; 48]).unwrap();
    let config = f
        .load(&policy(
            HOST,
            &tls(&["session_ticket_keys: [ticket.key]", "session_lifetime: 30m"]),
            "",
        ))
        .expect("loads");
    let t = &config.endpoints[0].tls;
    assert_eq!(t.session_lifetime, std::time::Duration::from_secs(1800));
    assert_eq!(t.session_ticket_keys[0].name(), Some(&[7u8; 16][..]));
    assert!(!format!("{t:?}").contains("7, 7"), "{t:?}");
    // The filter's copy of the policy carries neither the keys nor their paths.
    assert!(!config.filter_policy().to_string().contains("ticket"));

    let e = failure(
        &f,
        &policy(HOST, &tls(&["session_ticket_keys: [short.key]"]), ""),
    );
    assert!(
        matches!(*e.kind, ConfigErrorKind::TicketKeyLength { len: 48, .. }),
        "{e}"
    );
    let e = e.to_string();
    assert!(e.starts_with("policy.yaml:13:"), "{e}");
    assert!(e.contains("session_ticket_keys[0]"), "{e}");
    assert!(
        e.contains("holds 48 bytes") && e.contains("openssl rand 80"),
        "{e}"
    );

    let e = f.error(&policy(
        HOST,
        &tls(&["session_ticket_keys: [missing.key]"]),
        "",
    ));
    assert!(
        e.contains("session_ticket_keys[0]") && e.contains("missing.key"),
        "{e}"
    );

    let e = failure(
        &f,
        &policy(
            HOST,
            &tls(&["session_ticket_keys: [\"-----BEGIN SECRET-----\\nAAAA\\n\"]"]),
            "",
        ),
    );
    assert!(
        matches!(*e.kind, ConfigErrorKind::InlineSecret { .. }),
        "{e}"
    );
    assert!(!format!("{e:?}").contains("AAAA"), "{e:?}");
    let e = e.to_string();
    assert!(e.contains("a ticket key is a secret"), "{e}");
    assert!(!e.contains("AAAA"), "{e}");

    let e = f.error(&policy(
        HOST,
        &tls(&[
            "session_resumption: false",
            "session_ticket_keys: [ticket.key]",
        ]),
        "",
    ));
    assert!(
        e.contains("session_ticket_keys has no effect with session_resumption: false"),
        "{e}"
    );

    for bad in ["0s", "8d", "soon"] {
        let e = failure(
            &f,
            &policy(HOST, &tls(&[&format!("session_lifetime: {bad}")]), ""),
        );
        assert!(
            matches!(&*e.kind, ConfigErrorKind::BadDuration { value, .. } if *value == bad),
            "{e}"
        );
        let e = e.to_string();
        assert!(
            e.contains("session_lifetime") && e.contains("7 days"),
            "{bad}: {e}"
        );
    }
}

#[test]
fn key_exchange_groups_are_known_names_in_the_order_given() {
    let f = Fixture::new(HOST);
    let groups = |lines: &[&str]| policy(HOST, &tls(lines), "");
    let config = f
        .load(&groups(&["key_exchange_groups: [p-256, X25519]"]))
        .expect("loads");
    assert_eq!(
        config.endpoints[0].tls.key_exchange_groups,
        ["P-256", "X25519"]
    );
    let config = f.load(&groups(&[])).expect("loads");
    assert_eq!(
        config.endpoints[0].tls.key_exchange_groups,
        tlsgate_core::facts::KEY_EXCHANGE_GROUPS
    );
    let e = f.error(&groups(&["key_exchange_groups: [X25519, x448]"]));
    assert!(
        e.contains("key_exchange_groups[1]") && e.contains("`x448` is not") && e.contains("P-384"),
        "{e}"
    );
    let e = failure(&f, &groups(&["key_exchange_groups: [X25519, x25519]"]));
    assert!(
        matches!(&*e.kind, ConfigErrorKind::ListedTwice { item } if item == "X25519"),
        "{e}"
    );
    assert!(e.to_string().contains("X25519 is listed twice"), "{e}");
    let e = failure(&f, &groups(&["key_exchange_groups: []"]));
    assert!(matches!(*e.kind, ConfigErrorKind::NoGroups { .. }), "{e}");
    assert!(e.to_string().contains("no key-exchange group left"), "{e}");
    // The hybrid alone shuts TLS 1.2 clients out unless the endpoint does too.
    let e = failure(&f, &groups(&["key_exchange_groups: [X25519MLKEM768]"]));
    assert_eq!(
        *e.kind,
        ConfigErrorKind::Conflict(Conflict::PostQuantumOnlyWithTls12),
        "{e}"
    );
    assert!(e.to_string().contains("TLS 1.3 group"), "{e}");
    f.load(&groups(&[
        "min_version: \"1.3\"",
        "key_exchange_groups: [X25519MLKEM768]",
    ]))
    .expect("TLS 1.3 only may pin the hybrid alone");
}

#[test]
fn set_vars_are_named_and_set_before_they_are_read() {
    let f = Fixture::new(HOST);
    let http = |rules: &str| policy(HOST, "", &format!("      on_http_request:\n{rules}"));
    f.load(&http(
        "        - actions: [{type: set-vars, config: {vars: [{tier: gold}, {who: '${conn.client_ip}'}, {n: '${1 + 1}'}]}}]\n\
         \x20       - expressions: [\"vars.tier == 'gold' && vars.n == 2\"]\n\
         \x20         actions: [{type: add-headers, config: {headers: {x-who: '${vars.who}'}}}]\n",
    ))
    .expect("set, then read");
    let e = failure(
        &f,
        &http(
            "        - expressions: [\"vars.tier == 'gold'\"]\n\
             \x20         actions: [{type: deny}]\n\
             \x20       - actions: [{type: set-vars, config: {vars: [{tier: gold}]}}]\n",
        ),
    );
    assert!(
        matches!(&*e.kind, ConfigErrorKind::UnsetVariable { name, phase: "on_http_request" }
            if name == "tier"),
        "{e}"
    );
    let e = e.to_string();
    assert!(
        e.contains("on_http_request[0].expressions[0]")
            && e.contains("reads vars.tier, which no earlier set-vars of on_http_request sets"),
        "{e}"
    );
    // Each phase has its own: on_tcp_connect's are not on_http_request's.
    let e = f.error(&policy(
        HOST,
        "",
        "        - actions: [{type: set-vars, config: {vars: [{tier: gold}]}}]\n\
         \x20     on_http_request:\n\
         \x20       - expressions: [\"vars.tier == 'gold'\"]\n\
         \x20         actions: [{type: deny}]\n",
    ));
    assert!(e.contains("reads vars.tier"), "{e}");
    for (bad, why) in [
        ("{vars: [{a: 1, b: 2}]}", "a map with one key"),
        ("{vars: [{'9lives': 1}]}", "is not a variable name"),
        ("{vars: []}", "the list is empty"),
        ("{vars: [{a: '${req.nope}'}]}", "unknown variable"),
    ] {
        let e = f.error(&http(&format!(
            "        - actions: [{{type: set-vars, config: {bad}}}]\n"
        )));
        assert!(e.contains(why), "{bad}: {e}");
    }
}

#[test]
fn log_metadata_is_checked_at_load() {
    let f = Fixture::new(HOST);
    let http = |action: &str| {
        policy(
            HOST,
            "",
            &format!("      on_http_request:\n        - actions: [{action}]\n"),
        )
    };
    let e = failure(&f, &http("{type: log}"));
    assert!(
        matches!(
            *e.kind,
            ConfigErrorKind::ActionNeeds {
                action: "log",
                needs: "config.metadata",
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("log needs config.metadata"), "{e}");
    let e = f.error(&http("{type: log, config: {metadata: {'has space': x}}}"));
    assert!(
        e.contains("metadata.has space") && e.contains("a log key is"),
        "{e}"
    );
    let e = failure(
        &f,
        &http("{type: log, config: {metadata: {k: {nested: 1}}}}"),
    );
    assert_eq!(*e.kind, ConfigErrorKind::BadLogValue, "{e}");
    assert!(e.to_string().contains("a log value is a string"), "{e}");
    let e = f.error(&http(
        "{type: log, config: {metadata: {k: '${conn.nope}'}}}",
    ));
    assert!(e.contains("metadata.k"), "{e}");
    // In on_tcp_connect too, with connection variables only: no request exists yet.
    f.load(&policy(
        HOST,
        "",
        "        - actions: [{type: log, config: {metadata: {k: '${conn.client_ip}'}}}]\n",
    ))
    .expect("log in on_tcp_connect");
    let e = f.error(&policy(
        HOST,
        "",
        "        - actions: [{type: log, config: {metadata: {k: '${req.path}'}}}]\n",
    ));
    assert!(
        e.contains("on_http_request") && e.contains("metadata"),
        "{e}"
    );
    f.load(&http(
        "{type: log, config: {metadata: {n: 1, b: true, s: '${conn.client_ip}'}}}",
    ))
    .expect("numbers, booleans and templates load");
}
