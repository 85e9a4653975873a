//! What the upstream receives (security): identity, forwarded headers and refused requests.

use super::*;

// --- what the upstream receives (security) ---------------------------------------------------

#[test]
fn an_unverified_certificate_is_no_identity_to_rules_or_templates() {
    // A self-signed certificate can claim any name; under `request` it must not pass a rule
    // written for the verified name, nor be handed to the upstream as that name.
    let f = Fixture::new(HOST);
    let forged = Issued::self_signed(&LeafSpec::client("alice"));
    let header = "        - actions: [{type: add-headers, config: {headers: {x-client-cn: \"${conn.tls.client.subject.common_name}\", x-verified: \"${conn.tls.client.verified}/${conn.tls.client.verification}\", x-pin: \"${conn.tls.client.fingerprint.sha256}\"}}}]\n";
    let yaml = policy(
        HOST,
        &mtls("request"),
        &format!("      on_http_request:\n{header}"),
    );
    let forged_facts = facts(&forged.cert_der);
    let fingerprint = forged_facts.fingerprint_sha256.clone();
    let s = session(
        &f,
        &yaml,
        ClientCert::Unverified(forged_facts, Unverified::UntrustedIssuer),
    );
    let forward = forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(forward.header("x-client-cn"), Some(""));
    assert_eq!(forward.header("x-verified"), Some("false/untrusted_issuer"));
    // Possession of the key is proven: the certificate itself can be pinned.
    assert_eq!(forward.header("x-pin"), Some(fingerprint.as_str()));

    let s = session(&f, &yaml, ClientCert::Verified(facts(&f.client.cert_der)));
    let forward = forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(forward.header("x-client-cn"), Some("alice"));
    assert_eq!(forward.header("x-verified"), Some("true/verified"));
}

#[test]
fn a_rule_on_the_verified_name_denies_a_forged_one() {
    let f = Fixture::new(HOST);
    let forged = Issued::self_signed(&LeafSpec::client("alice"));
    let yaml = policy(HOST, &mtls("require-any"), "").replace(
        "      on_tcp_connect:\n        - actions:",
        "      on_tcp_connect:\n        - expressions: [\"conn.tls.client.subject.common_name != 'alice'\"]\n          actions: [{type: deny}]\n        - actions:",
    );
    let s = session(
        &f,
        &yaml,
        ClientCert::Unverified(facts(&forged.cert_der), Unverified::UntrustedIssuer),
    );
    assert_eq!(s.on_tcp_connect(), deny(DenyReason::Policy { rule: 0 }));
    let s = session(&f, &yaml, ClientCert::Verified(facts(&f.client.cert_der)));
    assert_eq!(s.on_tcp_connect(), Verdict::Continue);
}

#[test]
fn add_headers_replace_and_the_last_value_wins() {
    let f = Fixture::new(HOST);
    let rules = "        - actions: [{type: add-headers, config: {headers: {x-role: first}}}]\n        - actions: [{type: add-headers, config: {headers: {x-role: second}}}]\n";
    let s = session(
        &f,
        &http(rules),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let sent = [("x-role", "admin")];
    let forward = forwarded(s.on_http_request(&Request {
        headers: &sent,
        ..get(HOST)
    }));
    let roles: Vec<&str> = forward
        .set_headers
        .iter()
        .filter(|(n, _)| n == "x-role")
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(roles, ["second"]);
}

#[test]
fn a_rendered_control_character_fails_the_rule() {
    let f = Fixture::new(HOST);
    let rule = "        - actions: [{type: add-headers, config: {headers: {x-echo: \"${req.headers['x-in'][0]}\"}}}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    for bad in ["a\tb", "a\u{7f}b", "a\u{1b}b"] {
        let sent = [("x-in", bad)];
        let r = responded(s.on_http_request(&Request {
            headers: &sent,
            ..get(HOST)
        }));
        assert_eq!(
            (r.status, r.reason),
            (403, Some(DenyReason::ExpressionFailed { rule: 0 })),
            "{bad:?}"
        );
        let detail = r.detail.expect("a detail");
        assert_eq!(
            detail,
            RuntimeError::ControlCharacter {
                header: "x-echo".into()
            }
        );
        assert_eq!(
            detail.to_string(),
            "the value for `x-echo` holds a control character"
        );
    }
    let sent = [("x-in", "fine")];
    let forward = forwarded(s.on_http_request(&Request {
        headers: &sent,
        ..get(HOST)
    }));
    assert_eq!(forward.header("x-echo"), Some("fine"));
}

#[test]
fn path_rules_see_and_forward_the_normalized_path() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &http(DENY_ADMIN),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    for spelling in [
        "//admin",
        "/%61dmin",
        "/./admin",
        "/x/../admin",
        "/%2e%2e/admin",
    ] {
        let r = responded(s.on_http_request(&Request {
            target: spelling,
            ..get(HOST)
        }));
        assert_eq!(r.status, 404, "{spelling}");
    }
    let forward = forwarded(s.on_http_request(&Request {
        target: "/a//b/./c/../d?q=%2F",
        ..get(HOST)
    }));
    assert_eq!(forward.target, "/a/b/d?q=%2F");
    for ambiguous in ["/admin%2Fx", "/x%5c..%5cadmin", "/a\\b"] {
        let r = responded(s.on_http_request(&Request {
            target: ambiguous,
            ..get(HOST)
        }));
        assert_eq!(r.status, 400, "{ambiguous}");
    }
}

#[test]
fn the_edge_sets_forwarding_headers_and_the_upstream_authority() {
    let f = Fixture::new(HOST);
    let s = session_from(&f, &policy(HOST, "", ""), ClientCert::Absent, "127.0.0.9");
    let forward = forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(forward.header("x-forwarded-for"), Some("127.0.0.9"));
    assert_eq!(forward.header("x-forwarded-proto"), Some("https"));
    assert_eq!(forward.header("x-forwarded-host"), Some(HOST));
    assert_eq!(forward.header("x-tlsgate-endpoint"), Some(HOST));
    assert_eq!(&*forward.authority, "127.0.0.1:8080");
}

#[test]
fn a_host_with_userinfo_is_misdirected() {
    let f = Fixture::new("*.example.com");
    let s = session(&f, &policy("*.example.com", "", ""), ClientCert::Absent);
    forwarded(s.on_http_request(&get("x.example.com")));
    let r = responded(s.on_http_request(&get("u@x.example.com")));
    assert_eq!((r.status, r.reason), (421, Some(DenyReason::Misdirected)));
}

#[test]
fn connect_and_several_hosts_are_refused_before_any_rule() {
    let f = Fixture::new(HOST);
    let s = session(&f, &policy(HOST, "", ""), ClientCert::Absent);
    let r = responded(s.on_http_request(&Request {
        method: "CONNECT",
        target: "",
        ..get(HOST)
    }));
    assert_eq!((r.status, r.reason), (405, Some(DenyReason::ConnectMethod)));
    let r = responded(s.on_http_request(&get("app.example.com,evil.example.com")));
    assert_eq!((r.status, r.reason), (400, Some(DenyReason::DuplicateHost)));
}

#[test]
fn a_wildcard_endpoint_does_not_serve_a_name_two_labels_down() {
    let f = Fixture::new("*.example.com");
    let config = f.load(&policy("*.example.com", "", "")).expect("loads");
    let policy = Policy::new(config);
    let endpoint = Arc::clone(policy.endpoint(0).expect("endpoint"));
    let facts = |sni: &str| TlsFacts {
        version: TlsVersion::Tls13,
        cipher_suite: String::new(),
        sni: Some(sni.into()),
        alpn: None,
        client_ip: IpAddr::from([127, 0, 0, 1]),
        client_port: 50_000,
        server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Absent,
    };
    let one = Session::new(Arc::clone(&endpoint), facts("x.example.com"));
    assert_eq!(one.on_tcp_connect(), Verdict::Continue);
    let two = Session::new(endpoint, facts("a.b.example.com"));
    assert_eq!(two.on_tcp_connect(), deny(DenyReason::UnservedServerName));
}

#[test]
fn a_trusted_certificate_outside_its_validity_is_no_identity() {
    // What a resumed session presents after the certificate expired: the TLS stack does not
    // look again, core does.
    let f = Fixture::new(HOST);
    let cert = facts(&f.client.cert_der);
    let after = cert.not_after + 1;
    let expired =
        ClientCert::presented(cert, tlsgate_core::facts::ChainCheck::Trusted, after, None);
    assert_eq!(expired.verification(), "outside_validity");
    let s = session(&f, &policy(HOST, &mtls("require-and-verify"), ""), expired);
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::ClientCertificateOutsideValidity)
    );
    let cert = facts(&f.client.cert_der);
    let now = cert.not_before + 1;
    let current = ClientCert::presented(cert, tlsgate_core::facts::ChainCheck::Trusted, now, None);
    assert_eq!(current.verification(), "verified");
}

#[test]
fn a_revoked_certificate_on_a_resumed_session_is_refused_with_its_reason() {
    // A session resumed after the client's certificate was revoked: the TLS stack reports the
    // chain as trusted (it verified it once), core finds the serial in the CRL.
    let f = Fixture::new(HOST);
    std::fs::write(
        f.path().join("ca.crl"),
        f.ca.crl(&[&f.client.cert_der], -60, 3600),
    )
    .expect("write");
    let yaml = policy(
        HOST,
        &format!(
            "{}                mutual_tls_certificate_revocation_lists: [ca.crl]\n",
            mtls("require-and-verify")
        ),
        "",
    );
    let config = f.load(&yaml).expect("policy loads");
    let revocation = config.endpoints[0].tls.client_auth.revocation().cloned();
    let now = facts(&f.client.cert_der).not_before + 120;
    let cert = ClientCert::presented(
        facts(&f.client.cert_der),
        tlsgate_core::facts::ChainCheck::Trusted,
        now,
        revocation.as_ref(),
    );
    let s = session(&f, &yaml, cert);
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::ClientCertificateRevoked)
    );
}

#[test]
fn remove_headers_drops_the_clients_value_and_an_earlier_add() {
    let f = Fixture::new(HOST);
    let rules = "        - actions: [{type: add-headers, config: {headers: {x-a: one, x-b: two}}}]\n        - actions: [{type: remove-headers, config: {headers: [X-A, x-secret]}}]\n        - actions: [{type: add-headers, config: {headers: {x-secret: ours}}}]\n";
    let s = session(
        &f,
        &http(rules),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let forward = forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(forward.header("x-a"), None);
    assert_eq!(forward.header("x-b"), Some("two"));
    assert_eq!(forward.header("x-secret"), Some("ours"));
    assert!(forward.remove_headers.iter().any(|n| n == "x-a"));
    assert!(forward.remove_headers.iter().any(|n| n == "x-secret"));
}

#[test]
fn close_connection_closes_without_a_response_in_either_phase() {
    let f = Fixture::new(HOST);
    let rule = "        - expressions: [\"req.path == '/bye'\"]\n          actions: [{type: close-connection}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(
        s.on_http_request(&Request {
            target: "/bye",
            ..get(HOST)
        }),
        RequestVerdict::Close(DenyReason::CloseConnection { rule: 0 })
    );
    let tcp = policy(HOST, "", "        - actions: [{type: close-connection}]\n");
    let s = session(&f, &tcp, ClientCert::Absent);
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::CloseConnection { rule: 1 })
    );
}
