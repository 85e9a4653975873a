//! Authorities and chains: the root, intermediates, what openssl accepts and refuses, not-a-CA,
//! sharing between threads.

use super::*;

#[test]
fn root_is_a_self_signed_ca_valid_now() {
    let root = Authority::root("Test Root");
    let der = root.cert_der();
    let cert = parse(&der);
    assert_eq!(cn(&cert), "Test Root");
    assert_eq!(issuer_cn(&cert), "Test Root");
    assert_eq!(ca_flag(&cert), Some(true));
    assert!(key_cert_sign(&cert));
    assert_eq!(eku(&cert), None);
    assert_eq!(cert.version(), X509Version::V3);
    assert_eq!(days_from_now(&cert), (-1, 365));
    assert!(root.is_root());
    assert_eq!(pems(&root.chain_pem()), vec![der.clone()]);
    assert_eq!(pems(&root.cert_pem()), vec![der.clone()]);
    assert_eq!(spki_of_key(&root.key_pem()), cert.public_key().raw);
}

#[test]
fn intermediates_chain_leaf_first_and_exclude_the_root() {
    let root = Authority::root("Root");
    let first = root.intermediate("Issuing 1");
    let second = first.intermediate("Issuing 2");
    let leaf = second.server(&["chain.test"]);

    let first_der = first.cert_der();
    let first_cert = parse(&first_der);
    assert_eq!(ca_flag(&first_cert), Some(true));
    assert_eq!(issuer_cn(&first_cert), "Root");
    assert!(!first.is_root());
    assert_eq!(pems(&first.chain_pem()), vec![first.cert_der()]);
    assert_eq!(
        pems(&second.chain_pem()),
        vec![second.cert_der(), first.cert_der()]
    );

    let expected = vec![leaf.cert_der.clone(), second.cert_der(), first.cert_der()];
    assert_eq!(pems(&leaf.chain_pem), expected);
    assert_eq!(leaf.chain_der, expected);
    assert_eq!(issuer_cn(&parse(&leaf.cert_der)), "Issuing 2");
    assert_eq!(issuer_cn(&parse(&second.cert_der())), "Issuing 1");

    // Leaves of a root carry no chain beyond themselves.
    let direct = root.client("direct");
    assert_eq!(direct.chain_der, vec![direct.cert_der.clone()]);
}

#[test]
fn openssl_accepts_a_good_chain_and_rejects_each_bad_case() {
    let dir = tempfile::tempdir().unwrap();
    let root = Authority::root("Root");
    let issuing = root.intermediate("Issuing");
    let good = issuing.server(&["good.test"]);
    let untrusted = issuing.chain_pem();
    let verify = |leaf: &Issued, trusted: &str, extra: &[&str]| {
        openssl_verify(dir.path(), trusted, Some(&untrusted), &leaf.cert_pem, extra)
    };

    let (ok, out) = verify(&good, &root.cert_pem(), &["-purpose", "sslserver"]);
    assert!(ok, "good chain: {out}");

    let expired = issuing.issue(&LeafSpec::server(&["x.test"]).with_validity(Validity::Expired));
    let (ok, out) = verify(&expired, &root.cert_pem(), &[]);
    assert!(!ok && out.contains("expired"), "expired: {out}");

    let future = issuing.issue(&LeafSpec::server(&["x.test"]).with_validity(Validity::NotYetValid));
    let (ok, out) = verify(&future, &root.cert_pem(), &[]);
    assert!(!ok && out.contains("not yet valid"), "not yet valid: {out}");

    let other_root = Authority::root("Root");
    let (ok, out) = verify(&good, &other_root.cert_pem(), &[]);
    assert!(
        !ok,
        "a root with the same name but another key must not verify: {out}"
    );

    let server_only = issuing.issue(&LeafSpec::client("alice").with_eku([Eku::ServerAuth]));
    let (ok, out) = verify(&server_only, &root.cert_pem(), &["-purpose", "sslclient"]);
    assert!(!ok && out.contains("purpose"), "no clientAuth: {out}");
    let client = issuing.client("alice");
    let (ok, out) = verify(&client, &root.cert_pem(), &["-purpose", "sslclient"]);
    assert!(ok, "client: {out}");

    let fake_ca = root.not_a_ca("Not A CA");
    let via_fake = fake_ca.client("mallory");
    let (ok, out) = openssl_verify(
        dir.path(),
        &root.cert_pem(),
        Some(&fake_ca.chain_pem()),
        &via_fake.cert_pem,
        &[],
    );
    assert!(
        !ok && out.contains("invalid CA certificate"),
        "CA=false issuer: {out}"
    );

    let self_signed = Issued::self_signed(&LeafSpec::server(&["self.test"]));
    let (ok, out) = openssl_verify(
        dir.path(),
        &self_signed.cert_pem,
        None,
        &self_signed.cert_pem,
        &[],
    );
    assert!(
        ok,
        "a self-signed certificate verifies against itself: {out}"
    );
    let (ok, out) = openssl_verify(
        dir.path(),
        &root.cert_pem(),
        None,
        &self_signed.cert_pem,
        &[],
    );
    assert!(!ok, "and against nothing else: {out}");
}

#[test]
fn not_a_ca_has_explicit_ca_false_but_can_sign() {
    let root = Authority::root("Root");
    let fake = root.not_a_ca("Not A CA");
    let der = fake.cert_der();
    let cert = parse(&der);
    assert_eq!(ca_flag(&cert), Some(false));
    assert!(
        key_cert_sign(&cert),
        "only basicConstraints should be wrong"
    );
    let leaf = fake.client("mallory");
    assert_eq!(issuer_cn(&parse(&leaf.cert_der)), "Not A CA");
    assert_eq!(leaf.chain_der, vec![leaf.cert_der.clone(), fake.cert_der()]);
}

#[test]
fn authorities_can_be_shared_between_test_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authority>();
    assert_send_sync::<Issued>();
}
