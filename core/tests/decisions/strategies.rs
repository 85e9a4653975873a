//! Mutual-TLS verification strategies: which client certificates each one admits.

use super::*;

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
