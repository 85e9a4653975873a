//! `on_tcp_connect` rules: CEL, SAN/organization and restrict-ips, each admitting one client and
//! refusing another.

use super::*;

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
