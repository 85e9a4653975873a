//! Decisions come in pairs: for each rule, a client it admits and one it refuses.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::net::IpAddr;
use std::sync::Arc;

use support::{policy, Fixture};
use tlsgate_core::expr::RuntimeError;
use tlsgate_core::facts::Unverified;
use tlsgate_core::policy::DenyReason;
use tlsgate_core::{
    ClientCert, ClientCertFacts, Forward, Policy, Request, RequestVerdict, Session, TlsFacts,
    TlsVersion, Verdict,
};
use tlsgate_test_support::{Authority, Eku, Issued, LeafSpec};

const HOST: &str = "app.example.com";

fn mtls(strategy: &str) -> String {
    format!(
        "                mutual_tls_certificate_authorities: [ca.crt]\n                mutual_tls_verification_strategy: {strategy}\n"
    )
}

fn session(f: &Fixture, yaml: &str, cert: ClientCert) -> Session {
    session_from(f, yaml, cert, "127.0.0.1")
}

fn session_from(f: &Fixture, yaml: &str, cert: ClientCert, ip: &str) -> Session {
    let config = f.load(yaml).expect("policy loads");
    let policy = Policy::new(config);
    let endpoint = Arc::clone(policy.endpoint(0).expect("endpoint"));
    let facts = TlsFacts {
        version: TlsVersion::Tls13,
        cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some(HOST.into()),
        alpn: Some("h2".into()),
        client_ip: ip.parse::<IpAddr>().expect("ip"),
        client_port: 50_000,
        server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: cert,
    };
    Session::new(endpoint, facts)
}

fn facts(der: &[u8]) -> Box<ClientCertFacts> {
    Box::new(ClientCertFacts::from_der(der).expect("parses"))
}

fn get(host: &str) -> Request<'_> {
    Request {
        method: "GET",
        host,
        target: "/",
        headers: &[],
    }
}

fn deny(reason: DenyReason) -> Verdict {
    Verdict::Deny(reason)
}

// --- verification strategies -------------------------------------------------------------

#[test]
fn require_and_verify_allows_a_verified_certificate() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &policy(HOST, &mtls("require-and-verify"), ""),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    assert_eq!(s.on_tcp_connect(), Verdict::Continue);
}

#[test]
fn require_and_verify_denies_unverified_and_absent_certificates() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, &mtls("require-and-verify"), "");
    let s = session(
        &f,
        &yaml,
        ClientCert::Unverified(facts(&f.client.cert_der), Unverified::UntrustedIssuer),
    );
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::ClientCertificateUntrusted)
    );
    let s = session(&f, &yaml, ClientCert::Absent);
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::ClientCertificateRequired)
    );
}

#[test]
fn require_any_allows_an_unverified_certificate() {
    let f = Fixture::new(HOST);
    let other = Authority::root("Other CA").client("mallory");
    let s = session(
        &f,
        &policy(HOST, &mtls("require-any"), ""),
        ClientCert::Unverified(facts(&other.cert_der), Unverified::NotChecked),
    );
    assert_eq!(s.on_tcp_connect(), Verdict::Continue);
}

#[test]
fn require_any_denies_no_certificate() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &policy(HOST, &mtls("require-any"), ""),
        ClientCert::Absent,
    );
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::ClientCertificateRequired)
    );
}

#[test]
fn request_allows_no_certificate_and_any_certificate() {
    let f = Fixture::new(HOST);
    let yaml = policy(HOST, &mtls("request"), "");
    assert_eq!(
        session(&f, &yaml, ClientCert::Absent).on_tcp_connect(),
        Verdict::Continue
    );
    let other = Authority::root("Other CA").client("mallory");
    let s = session(
        &f,
        &yaml,
        ClientCert::Unverified(facts(&other.cert_der), Unverified::NotChecked),
    );
    assert_eq!(s.on_tcp_connect(), Verdict::Continue);
}

#[test]
fn without_cas_client_certificates_are_not_considered() {
    let f = Fixture::new(HOST);
    assert_eq!(
        session(&f, &policy(HOST, "", ""), ClientCert::Absent).on_tcp_connect(),
        Verdict::Continue
    );
}

#[test]
fn a_verified_certificate_without_client_auth_usage_is_denied() {
    let f = Fixture::new(HOST);
    let server_only =
        f.ca.issue(&LeafSpec::client("svc").with_eku([Eku::ServerAuth]));
    let s = session(
        &f,
        &policy(HOST, &mtls("require-and-verify"), ""),
        ClientCert::Verified(facts(&server_only.cert_der)),
    );
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::ClientCertificateWrongUsage)
    );
}

// --- on_tcp_connect rules ----------------------------------------------------------------

const DENY_NOT_ALICE: &str =
    "        - expressions: [\"conn.tls.client.subject.common_name != 'alice'\"]\n          actions: [{type: deny}]\n";

#[test]
fn cel_rule_allows_the_named_client() {
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &policy(HOST, &mtls("require-and-verify"), DENY_NOT_ALICE),
        ClientCert::Verified(facts(&f.client.cert_der)),
    );
    assert_eq!(s.on_tcp_connect(), Verdict::Continue);
}

#[test]
fn cel_rule_denies_another_client() {
    let f = Fixture::new(HOST);
    let bob = f.ca.client("bob");
    let s = session(
        &f,
        &policy(HOST, &mtls("require-and-verify"), DENY_NOT_ALICE),
        ClientCert::Verified(facts(&bob.cert_der)),
    );
    assert_eq!(s.on_tcp_connect(), deny(DenyReason::Policy { rule: 1 }));
}

#[test]
fn cel_rule_denies_an_anonymous_client_under_request() {
    // Without a certificate the fields are empty, so `cn != 'alice'` holds and the rule denies.
    let f = Fixture::new(HOST);
    let s = session(
        &f,
        &policy(HOST, &mtls("request"), DENY_NOT_ALICE),
        ClientCert::Absent,
    );
    assert_eq!(s.on_tcp_connect(), deny(DenyReason::Policy { rule: 1 }));
}

#[test]
fn san_and_organization_rules_pair() {
    let f = Fixture::new(HOST);
    let rule = "        - expressions: [\"!conn.tls.client.san.uris.exists(u, u.startsWith('spiffe://example.com/'))\"]\n          actions: [{type: deny}]\n        - expressions: [\"!('Payments' in conn.tls.client.subject.organization)\"]\n          actions: [{type: deny}]\n";
    let yaml = policy(HOST, &mtls("require-and-verify"), rule);
    let good = f.ca.issue(
        &LeafSpec::client("svc")
            .with_uri("spiffe://example.com/svc")
            .with_organization("Payments"),
    );
    assert_eq!(
        session(&f, &yaml, ClientCert::Verified(facts(&good.cert_der))).on_tcp_connect(),
        Verdict::Continue
    );
    let wrong_org = f.ca.issue(
        &LeafSpec::client("svc")
            .with_uri("spiffe://example.com/svc")
            .with_organization("Marketing"),
    );
    assert_eq!(
        session(&f, &yaml, ClientCert::Verified(facts(&wrong_org.cert_der))).on_tcp_connect(),
        deny(DenyReason::Policy { rule: 2 })
    );
    let wrong_uri = f.ca.issue(
        &LeafSpec::client("svc")
            .with_uri("spiffe://evil.com/svc")
            .with_organization("Payments"),
    );
    assert_eq!(
        session(&f, &yaml, ClientCert::Verified(facts(&wrong_uri.cert_der))).on_tcp_connect(),
        deny(DenyReason::Policy { rule: 1 })
    );
}

const RESTRICT: &str = "        - actions: [{type: restrict-ips, config: {allow: [127.0.0.0/8], deny: [127.0.0.66]}}]\n";

#[test]
fn restrict_ips_allows_listed_addresses() {
    let f = Fixture::new(HOST);
    let s = session_from(
        &f,
        &policy(HOST, "", RESTRICT),
        ClientCert::Absent,
        "127.0.0.1",
    );
    assert_eq!(s.on_tcp_connect(), Verdict::Continue);
    let s = session_from(
        &f,
        &policy(HOST, "", RESTRICT),
        ClientCert::Absent,
        "::ffff:127.0.0.1",
    );
    assert_eq!(s.on_tcp_connect(), Verdict::Continue);
}

#[test]
fn restrict_ips_denies_unlisted_and_denied_addresses() {
    let f = Fixture::new(HOST);
    let s = session_from(
        &f,
        &policy(HOST, "", RESTRICT),
        ClientCert::Absent,
        "10.1.2.3",
    );
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::IpRestricted { rule: 1 })
    );
    let s = session_from(
        &f,
        &policy(HOST, "", RESTRICT),
        ClientCert::Absent,
        "127.0.0.66",
    );
    assert_eq!(
        s.on_tcp_connect(),
        deny(DenyReason::IpRestricted { rule: 1 })
    );
}

// --- on_http_request -------------------------------------------------------------------------

fn http(rules: &str) -> String {
    policy(
        HOST,
        &mtls("require-and-verify"),
        &format!("      on_http_request:\n{rules}"),
    )
}

fn forwarded(v: RequestVerdict) -> Forward {
    match v {
        RequestVerdict::Forward(forward) => forward,
        other => panic!("expected forward, got {other:?}"),
    }
}

fn responded(v: RequestVerdict) -> tlsgate_core::policy::LocalResponse {
    match v {
        RequestVerdict::Respond(r) => r,
        other => panic!("expected a local response, got {other:?}"),
    }
}

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

const DENY_ADMIN: &str = "        - expressions: [\"req.path.startsWith('/admin')\"]\n          actions: [{type: deny, config: {status_code: 404}}]\n";

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
