//! `on_http_request` rules: host routing, deny, custom responses, headers and run-time expression
//! errors.

use super::*;

#[test]
fn requests_for_the_connection_host_are_forwarded() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &http(""),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    forwarded(s.on_http_request(&get("app.example.com")));
    forwarded(s.on_http_request(&get("APP.example.com:8443")));
}

#[test]
fn requests_for_another_host_are_misdirected() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &http(""),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let r = responded(s.on_http_request(&get("other.example.com")));
    assert_eq!((r.status, r.reason), (421, Some(DenyReason::Misdirected)));
}

#[test]
fn http_deny_rule_allows_other_paths() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &http(DENY_ADMIN),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    forwarded(s.on_http_request(&get(HOST)));
}

#[test]
fn http_deny_rule_denies_matching_paths_with_its_status() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &http(DENY_ADMIN),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let req = Request {
        target: "/admin/users",
        ..get(HOST)
    };
    let r = responded(s.on_http_request(&req));
    assert_eq!(
        (r.status, r.reason),
        (404, Some(DenyReason::Policy { rule: 0 }))
    );
}

#[test]
fn custom_response_answers_locally() {
    let f = Fixture::new(HOST);
    let rule = "        - expressions: [\"req.method == 'POST'\"]\n          actions: [{type: custom-response, config: {status_code: 418, body: \"teapot for ${conn.tls.client.subject.common_name}\", headers: {x-why: tea}}}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    forwarded(s.on_http_request(&get(HOST)));
    let r = responded(s.on_http_request(&Request {
        method: "POST",
        ..get(HOST)
    }));
    assert_eq!(r.status, 418);
    assert_eq!(r.body, "teapot for alice");
    assert_eq!(r.headers, vec![("x-why".to_owned(), "tea".to_owned())]);
}

#[test]
fn add_headers_interpolates_certificate_fields_and_sets_xfcc() {
    let f = Fixture::new(HOST);
    let rule = "        - actions: [{type: add-headers, config: {headers: {x-client-cn: \"${conn.tls.client.subject.common_name}\", x-tls: \"v${conn.tls.version}\"}}}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let forward = forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(forward.header("x-client-cn"), Some("alice"));
    assert_eq!(forward.header("x-tls"), Some("v1.3"));
    let xfcc = forward.header("x-forwarded-client-cert").expect("xfcc");
    assert!(xfcc.starts_with("Hash="), "{xfcc}");
    assert!(xfcc.contains(";Subject=\"CN=alice\""), "{xfcc}");
    assert!(
        xfcc.contains(";Cert=\"-----BEGIN%20CERTIFICATE-----%0A"),
        "{xfcc}"
    );
}

/// Found by the `certificate` fuzz target: a subject or SAN holding a control character wrote
/// it raw into XFCC (one header value became two lines, refused by the native host as 403).
#[test]
fn control_characters_in_a_certificate_are_escaped_in_its_subject_and_xfcc() {
    let ca = tlsgate_test_support::Authority::root("CA");
    let cert = ca
        .issue(&tlsgate_test_support::LeafSpec::client("a\u{1}b\nc").with_uri("spiffe://x/\u{7}y"));
    let facts = facts(&cert.cert_der);
    assert_eq!(facts.subject.rfc4514, "CN=a\\01b\\0Ac");
    let header = tlsgate_core::policy::xfcc(&facts);
    assert!(!header.chars().any(char::is_control), "{header:?}");
    assert!(header.contains("URI=spiffe://x/%07y"), "{header}");
}

#[test]
fn xfcc_is_not_set_for_unverified_certificates() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, &mtls("require-any"), "");
    let s = session(
        &f,
        &yaml,
        ClientCert::Unverified(facts(&f.client.cert_der), Unverified::NotChecked),
    );
    let forward = forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(forward.header("x-forwarded-client-cert"), None);
    assert_eq!(forward.header("client-cert"), None);
}

#[test]
fn rfc9440_client_cert_is_a_byte_sequence() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, &mtls("require-and-verify"), "").replace(
        "    bind: 127.0.0.1:8443\n",
        "    bind: 127.0.0.1:8443\n    forward_client_cert: client-cert\n",
    );
    let s = session(&f, &yaml, ClientCert::Verified(facts(&f.client.cert_der)));
    let forward = forwarded(s.on_http_request(&get(HOST)));
    assert_eq!(forward.header("x-forwarded-client-cert"), None);
    let value = forward.header("client-cert").expect("client-cert");
    assert!(value.starts_with(':') && value.ends_with(':'));
}

#[test]
fn header_rules_match_present_headers() {
    let f = Fixture::new(HOST);
    let rule = "        - expressions: [\"!('x-api-key' in req.headers)\"]\n          actions: [{type: deny, config: {status_code: 401}}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let headers = [("X-Api-Key", "k")];
    forwarded(s.on_http_request(&Request {
        headers: &headers,
        ..get(HOST)
    }));
    assert_eq!(responded(s.on_http_request(&get(HOST))).status, 401);
}

#[test]
fn an_expression_that_fails_at_run_time_denies() {
    // Indexing a header that is absent is an evaluation error; the policy fails closed.
    let f = Fixture::new(HOST);
    let rule = "        - expressions: [\"req.headers['x-role'][0] == 'admin'\"]\n          actions: [{type: add-headers, config: {headers: {x-admin: 'yes'}}}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let headers = [("x-role", "admin")];
    let added = forwarded(s.on_http_request(&Request {
        headers: &headers,
        ..get(HOST)
    }));
    assert_eq!(added.header("x-admin"), Some("yes"));
    let r = responded(s.on_http_request(&get(HOST)));
    assert_eq!(
        (r.status, r.reason),
        (403, Some(DenyReason::ExpressionFailed { rule: 0 }))
    );
    // Why, for the logs (never in the body the client gets).
    let detail = r.detail.expect("a detail");
    assert!(
        matches!(
            &detail,
            RuntimeError::Failed { expression, function: None, .. }
                if &**expression == "req.headers['x-role'][0] == 'admin'"
        ),
        "{detail:?}"
    );
    // The text hosts log.
    assert_eq!(
        detail.to_string(),
        "`req.headers['x-role'][0] == 'admin'` failed: No such key: x-role"
    );
    assert!(!r.body.contains("x-role"), "{}", r.body);
}

#[test]
fn run_time_errors_say_which_expression_failed_and_why() {
    let f = Fixture::new(HOST);
    let tcp = |rule: &str| {
        session(
            &f,
            &policy(HOST, &mtls("require-and-verify"), rule),
            ClientCert::Verified(facts(&f.client.cert_der)),
        )
        .on_tcp_connect_explained()
    };
    // A boolean for the loader's sample client, a string for alice.
    let source = "conn.tls.client.subject.common_name == 'alice' ? 'yes' : true";
    let (verdict, detail) = tcp(&format!(
        "        - expressions: [\"{source}\"]\n          actions: [{{type: deny}}]\n"
    ));
    assert_eq!(verdict, deny(DenyReason::ExpressionFailed { rule: 1 }));
    let detail = detail.expect("a detail");
    assert!(
        matches!(&detail, RuntimeError::NotBoolean { expression, found: "a string" } if &**expression == source),
        "{detail:?}"
    );
    assert_eq!(detail.to_string(), format!("`{source}` gave a string"));
    assert_eq!(detail.expression(), Some(source));

    // A range known only at run time: cel names the function that failed.
    let source = "inCidrRange(conn.client_ip, conn.tls.client.subject.common_name)";
    let (verdict, detail) = tcp(&format!(
        "        - expressions: [\"{source}\"]\n          actions: [{{type: deny}}]\n"
    ));
    assert_eq!(verdict, deny(DenyReason::ExpressionFailed { rule: 1 }));
    let detail = detail.expect("a detail");
    assert!(
        matches!(&detail, RuntimeError::Failed { function: Some(function), .. } if function == "inCidrRange"),
        "{detail:?}"
    );
    assert_eq!(
        detail.to_string(),
        format!("`{source}` failed: Error executing function 'inCidrRange': `alice` is not a CIDR")
    );

    // A `${…}` part says so.
    let rule = "        - actions: [{type: add-headers, config: {headers: {x-role: \"${req.headers['x-role'][0]}\"}}}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let r = responded(s.on_http_request(&get(HOST)));
    assert_eq!(r.reason, Some(DenyReason::ExpressionFailed { rule: 0 }));
    let detail = r.detail.expect("a detail");
    assert!(
        matches!(&detail, RuntimeError::InterpolationFailed { expression, function: None, .. } if &**expression == "req.headers['x-role'][0]"),
        "{detail:?}"
    );
    assert_eq!(
        detail.to_string(),
        "`${req.headers['x-role'][0]}` failed: No such key: x-role"
    );
}

#[test]
fn endpoints_say_whether_they_read_request_headers() {
    let f = Fixture::new(HOST);
    let load = |rules: &str| {
        let policy = Policy::new(f.load(&http(rules)).expect("loads"));
        Arc::clone(policy.endpoint(0).expect("endpoint"))
    };
    assert!(!load(DENY_ADMIN).reads_request_headers());
    assert!(load(
        "        - expressions: [\"'x-a' in req.headers\"]\n          actions: [{type: deny}]\n"
    )
    .reads_request_headers());
    assert!(load("        - actions: [{type: add-headers, config: {headers: {x-b: \"${req.headers['x-a'][0]}\"}}}]\n").reads_request_headers());
    // Index syntax and comprehensions over `req` may read headers too.
    assert!(load(
        "        - expressions: [\"'x-a' in req['headers']\"]\n          actions: [{type: deny}]\n"
    )
    .reads_request_headers());
    assert!(load("        - expressions: [\"[req].exists(r, 'x-a' in r.headers)\"]\n          actions: [{type: deny}]\n").reads_request_headers());
    // A comprehension variable named `req` is not the request.
    assert!(!load("        - expressions: [\"['a'].exists(req, req == 'a')\"]\n          actions: [{type: deny}]\n").reads_request_headers());
}

#[test]
fn rules_never_see_client_sent_identity_headers() {
    let f = Fixture::new(HOST);
    let rule = "        - expressions: [\"'x-forwarded-client-cert' in req.headers || 'client-cert' in req.headers\"]\n          actions: [{type: add-headers, config: {headers: {x-spoofed: 'yes'}}}]\n";
    let s = session(
        &f,
        &http(rule),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    let headers = [
        ("X-Forwarded-Client-Cert", "Subject=\"CN=admin\""),
        ("client-cert", ":AAAA:"),
    ];
    let added = forwarded(s.on_http_request(&Request {
        headers: &headers,
        ..get(HOST)
    }));
    assert_eq!(added.header("x-spoofed"), None, "{added:?}");
}

#[test]
fn a_wildcard_endpoint_does_not_front_a_more_specific_one() {
    let f = Fixture::new("*.example.com");
    let wildcard = policy("*.example.com", "", "");
    let admin = policy("admin.example.com", &mtls("require-and-verify"), "");
    let yaml = format!(
        "{wildcard}{}",
        admin.strip_prefix("endpoints:\n").expect("prefix")
    );
    let config = f.load(&yaml).expect("loads");
    let policy = Policy::new(config);
    let endpoint = Arc::clone(policy.endpoint(0).expect("wildcard endpoint"));
    let facts = TlsFacts {
        version: TlsVersion::Tls13,
        cipher_suite: String::new(),
        sni: Some("x.example.com".into()),
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
    let s = Session::new(endpoint, facts);
    forwarded(s.on_http_request(&get("x.example.com")));
    let r = responded(s.on_http_request(&get("admin.example.com")));
    assert_eq!((r.status, r.reason), (421, Some(DenyReason::Misdirected)));
}
