//! Each certificate is parsed back with x509-parser and, where it matters, checked with the real
//! `openssl verify`, so a fixture that claims to be "expired" or "CA=false" provably is.

#![allow(clippy::unwrap_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;
use x509_parser::pem::Pem;
use x509_parser::x509::X509Version;

use crate::seed::seed_openssl_certs_with;
use crate::*;

const DAY: i64 = 24 * 60 * 60;

fn parse(der: &[u8]) -> X509Certificate<'_> {
    let (rest, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    assert!(rest.is_empty(), "trailing bytes after the certificate");
    cert
}

fn pems(pem: &str) -> Vec<Vec<u8>> {
    Pem::iter_from_buffer(pem.as_bytes())
        .map(|p| p.unwrap().contents)
        .collect()
}

fn cn(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

fn issuer_cn(cert: &X509Certificate<'_>) -> String {
    cert.issuer()
        .iter_common_name()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned()
}

/// `Some(ca)` when basicConstraints is present.
fn ca_flag(cert: &X509Certificate<'_>) -> Option<bool> {
    cert.basic_constraints().unwrap().map(|bc| bc.value.ca)
}

/// (serverAuth, clientAuth), or `None` when there is no EKU extension.
fn eku(cert: &X509Certificate<'_>) -> Option<(bool, bool)> {
    cert.extended_key_usage()
        .unwrap()
        .map(|e| (e.value.server_auth, e.value.client_auth))
}

fn key_cert_sign(cert: &X509Certificate<'_>) -> bool {
    cert.key_usage().unwrap().unwrap().value.key_cert_sign()
}

fn sans(cert: &X509Certificate<'_>) -> Vec<String> {
    let Some(san) = cert.subject_alternative_name().unwrap() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(n) => format!("DNS:{n}"),
            GeneralName::IPAddress(b) => match b.len() {
                4 => format!("IP:{}", IpAddr::from(<[u8; 4]>::try_from(*b).unwrap())),
                _ => format!("IP:{}", IpAddr::from(<[u8; 16]>::try_from(*b).unwrap())),
            },
            GeneralName::URI(u) => format!("URI:{u}"),
            GeneralName::RFC822Name(e) => format!("email:{e}"),
            other => format!("{other:?}"),
        })
        .collect()
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

/// (notBefore, notAfter) relative to now, in days rounded to the nearest day.
fn days_from_now(cert: &X509Certificate<'_>) -> (i64, i64) {
    let v = cert.validity();
    let days = |t: i64| (t - now() + DAY / 2).div_euclid(DAY);
    (
        days(v.not_before.timestamp()),
        days(v.not_after.timestamp()),
    )
}

fn spki_of_key(key_pem: &str) -> Vec<u8> {
    rcgen::KeyPair::from_pem(key_pem).unwrap().public_key_der()
}

/// Runs `openssl verify` and returns (success, combined output).
fn openssl_verify(
    dir: &Path,
    trusted: &str,
    untrusted: Option<&str>,
    leaf: &str,
    extra: &[&str],
) -> (bool, String) {
    std::fs::write(dir.join("trusted.pem"), trusted).unwrap();
    std::fs::write(dir.join("leaf.pem"), leaf).unwrap();
    let mut cmd = Command::new("openssl");
    cmd.current_dir(dir)
        .args(["verify", "-CAfile", "trusted.pem"])
        .args(extra);
    if let Some(untrusted) = untrusted {
        std::fs::write(dir.join("untrusted.pem"), untrusted).unwrap();
        cmd.args(["-untrusted", "untrusted.pem"]);
    }
    let out = cmd.arg("leaf.pem").output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

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
fn server_shorthand_sets_sans_cn_and_server_auth() {
    let ca = Authority::root("CA");
    let issued = ca.server(&["localhost", "127.0.0.1", "*.example.test", "::1"]);
    let cert = parse(&issued.cert_der);
    assert_eq!(cn(&cert), "localhost");
    assert_eq!(
        sans(&cert),
        [
            "DNS:localhost",
            "DNS:*.example.test",
            "IP:127.0.0.1",
            "IP:::1"
        ]
    );
    assert_eq!(eku(&cert), Some((true, false)));
    assert_eq!(ca_flag(&cert), Some(false));
    assert_eq!(days_from_now(&cert), (-1, 365));
    assert_eq!(spki_of_key(&issued.key_pem), cert.public_key().raw);
}

#[test]
fn client_shorthand_sets_cn_and_client_auth_only() {
    let ca = Authority::root("CA");
    let issued = ca.client("ExampleClient");
    let cert = parse(&issued.cert_der);
    assert_eq!(cn(&cert), "ExampleClient");
    assert!(sans(&cert).is_empty());
    assert_eq!(eku(&cert), Some((false, true)));
}

#[test]
fn spec_fields_all_reach_the_certificate() {
    let ca = Authority::root("CA");
    let spec = LeafSpec::new("svc")
        .with_organization("Example Org")
        .with_organizational_unit("Edge")
        .with_country("DE")
        .with_dns_name("svc.test")
        .with_ip_address(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        .with_ip_address(IpAddr::V6(Ipv6Addr::LOCALHOST))
        .with_uri("spiffe://example.test/ns/default/sa/svc")
        .with_email("ops@example.test")
        .with_eku([Eku::ServerAuth, Eku::ClientAuth])
        .with_serial(4242);
    let issued = ca.issue(&spec);
    let cert = parse(&issued.cert_der);
    let subject = cert.subject();
    let only = |mut values: Box<dyn Iterator<Item = &_> + '_>| {
        let value: &x509_parser::x509::AttributeTypeAndValue<'_> = values.next().unwrap();
        assert!(values.next().is_none());
        value.as_str().unwrap().to_owned()
    };
    assert_eq!(only(Box::new(subject.iter_organization())), "Example Org");
    assert_eq!(only(Box::new(subject.iter_organizational_unit())), "Edge");
    assert_eq!(only(Box::new(subject.iter_country())), "DE");
    assert_eq!(
        sans(&cert),
        [
            "DNS:svc.test",
            "IP:10.0.0.1",
            "IP:::1",
            "URI:spiffe://example.test/ns/default/sa/svc",
            "email:ops@example.test",
        ]
    );
    assert_eq!(eku(&cert), Some((true, true)));
    assert_eq!(cert.raw_serial(), [0x10, 0x92]);
}

#[test]
fn empty_eku_means_no_extension() {
    let ca = Authority::root("CA");
    let cert_der = ca.issue(&LeafSpec::client("x").with_eku([])).cert_der;
    assert_eq!(eku(&parse(&cert_der)), None);
}

#[test]
fn validity_windows_are_relative_to_now() {
    let ca = Authority::root("CA");
    let days = |validity| {
        let issued = ca.issue(&LeafSpec::client("x").with_validity(validity));
        days_from_now(&parse(&issued.cert_der))
    };
    assert_eq!(days(Validity::Current), (-1, 365));
    assert_eq!(days(Validity::Expired), (-366, -1));
    assert_eq!(days(Validity::NotYetValid), (1, 366));

    let start = SystemTime::now() - Duration::from_secs(60);
    let end = SystemTime::now() + Duration::from_secs(3600);
    let issued = ca.issue(&LeafSpec::client("x").with_validity(Validity::Window {
        not_before: start,
        not_after: end,
    }));
    let cert = parse(&issued.cert_der);
    let secs =
        |t: SystemTime| i64::try_from(t.duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap();
    assert_eq!(cert.validity().not_before.timestamp(), secs(start));
    assert_eq!(cert.validity().not_after.timestamp(), secs(end));
}

#[test]
fn expired_and_future_authorities_can_be_made() {
    let root = Authority::root_from(&LeafSpec::ca("Old Root").with_validity(Validity::Expired));
    assert_eq!(days_from_now(&parse(&root.cert_der())), (-366, -1));
    let intermediate =
        root.subordinate(&LeafSpec::ca("Future CA").with_validity(Validity::NotYetValid));
    let der = intermediate.cert_der();
    let cert = parse(&der);
    assert_eq!(days_from_now(&cert), (1, 366));
    assert_eq!(ca_flag(&cert), Some(true));
}

#[test]
fn mismatched_key_differs_from_the_certificate_key() {
    let ca = Authority::root("CA");
    for kind in [KeyKind::EcdsaP256, KeyKind::Rsa2048] {
        let good = ca.issue(&LeafSpec::server(&["k.test"]).with_key(kind));
        let bad = good.clone().with_mismatched_key();
        let cert = parse(&good.cert_der);
        assert_eq!(bad.cert_der, good.cert_der);
        assert_eq!(bad.chain_pem, good.chain_pem);
        assert_ne!(bad.key_pem, good.key_pem);
        assert_eq!(spki_of_key(&good.key_pem), cert.public_key().raw, "{kind}");
        assert_ne!(spki_of_key(&bad.key_pem), cert.public_key().raw, "{kind}");
        assert_eq!(bad.key_kind, kind);
        assert!(bad.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    }
}

#[test]
fn key_kinds_produce_the_requested_algorithms() {
    // OIDs of the SubjectPublicKeyInfo algorithm and, for EC, the curve.
    const EC: &str = "1.2.840.10045.2.1";
    let cases = [
        (KeyKind::EcdsaP256, EC, Some("1.2.840.10045.3.1.7")),
        (KeyKind::EcdsaP384, EC, Some("1.3.132.0.34")),
        (KeyKind::Ed25519, "1.3.101.112", None),
        (KeyKind::Rsa2048, "1.2.840.113549.1.1.1", None),
    ];
    let root = Authority::root("CA");
    for (kind, algorithm, curve) in cases {
        let ca = Authority::root_with("typed", kind);
        assert_eq!(ca.key_kind(), kind);
        for der in [
            ca.cert_der(),
            root.issue(&LeafSpec::client("x").with_key(kind)).cert_der,
        ] {
            let cert = parse(&der);
            let spki = &cert.public_key().algorithm;
            assert_eq!(spki.algorithm.to_id_string(), algorithm, "{kind}");
            if let Some(curve) = curve {
                let param = spki.parameters.as_ref().unwrap().as_oid().unwrap();
                assert_eq!(param.to_id_string(), curve, "{kind}");
            }
        }
    }
}

#[test]
fn rsa_keys_that_sign_are_never_shared() {
    let a = Authority::root_with("A", KeyKind::Rsa2048);
    let b = Authority::root_with("B", KeyKind::Rsa2048);
    assert_ne!(a.key_pem(), b.key_pem());
    let spec = LeafSpec::server(&["rsa.test"]).with_key(KeyKind::Rsa2048);
    let s1 = Issued::self_signed(&spec);
    let s2 = Issued::self_signed(&spec);
    assert_ne!(s1.key_pem, s2.key_pem);
    // Leaves share the cached key, yet their serials still differ.
    let l1 = a.issue(&spec);
    let l2 = a.issue(&spec);
    assert_eq!(l1.key_pem, l2.key_pem);
    assert_ne!(
        parse(&l1.cert_der).raw_serial(),
        parse(&l2.cert_der).raw_serial()
    );
}

#[test]
fn default_serials_are_positive_and_unique() {
    let ca = Authority::root("CA");
    let serials: Vec<Vec<u8>> = (0..20)
        .map(|_| parse(&ca.client("x").cert_der).raw_serial().to_vec())
        .collect();
    for serial in &serials {
        assert_eq!(serial.len(), 16);
        assert!(serial[0] & 0x80 == 0 && serial[0] != 0);
    }
    let mut unique = serials.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), serials.len());
}

#[test]
fn self_signed_is_its_own_issuer_and_chain() {
    let issued = Issued::self_signed(&LeafSpec::server(&["self.test"]));
    let cert = parse(&issued.cert_der);
    assert_eq!(cn(&cert), "self.test");
    assert_eq!(issuer_cn(&cert), "self.test");
    assert_eq!(ca_flag(&cert), Some(false));
    assert_eq!(issued.chain_der, vec![issued.cert_der.clone()]);
    assert_eq!(spki_of_key(&issued.key_pem), cert.public_key().raw);
}

#[test]
fn write_puts_chain_and_private_key_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let root = Authority::root("Root");
    let issuing = root.intermediate("Issuing");
    let issued = issuing.server(&["w.test"]);
    let (crt, key) = issued.write(dir.path(), "server");
    assert_eq!(crt, dir.path().join("server.crt"));
    assert_eq!(key, dir.path().join("server.key"));
    assert_eq!(std::fs::read_to_string(&crt).unwrap(), issued.chain_pem);
    assert_eq!(std::fs::read_to_string(&key).unwrap(), issued.key_pem);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    let (ca_crt, ca_key) = issuing.write(dir.path(), "issuing");
    assert_eq!(std::fs::read_to_string(ca_crt).unwrap(), issuing.cert_pem());
    assert_eq!(std::fs::read_to_string(ca_key).unwrap(), issuing.key_pem());
}

#[test]
fn seed_style_set_is_coherent() {
    let dir = tempfile::tempdir().unwrap();
    let set = write_seed_style_set(dir.path(), "terminate-tls-example.ngrok.app");
    for (path, name) in [
        (&set.ca_cert, "ca.crt"),
        (&set.ca_key, "ca.key"),
        (&set.server_cert, "server.crt"),
        (&set.server_key, "server.key"),
        (&set.client_cert, "client.crt"),
        (&set.client_key, "client.key"),
    ] {
        assert_eq!(*path, dir.path().join(name));
        assert!(path.is_file(), "{name}");
    }
    let ca = std::fs::read(&set.ca_cert).unwrap();
    let ca = pems(std::str::from_utf8(&ca).unwrap());
    assert_eq!(ca.len(), 1);
    assert_eq!(cn(&parse(&ca[0])), "ExampleCA");
    let server = parse(&set.server.cert_der);
    assert_eq!(sans(&server), ["DNS:terminate-tls-example.ngrok.app"]);
    assert_eq!(issuer_cn(&server), "ExampleCA");
    let client = parse(&set.client.cert_der);
    assert_eq!(cn(&client), "ExampleClient");
    assert_eq!(eku(&client), Some((false, true)));
}

#[test]
fn seed_openssl_certs_reproduce_the_seed_document() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let read = |name: &str| {
        let pem = std::fs::read_to_string(dir.path().join(name)).unwrap();
        pems(&pem).remove(0)
    };

    let ca_der = read("ca.crt");
    let ca = parse(&ca_der);
    assert_eq!(cn(&ca), "ExampleCA");
    assert_eq!(ca_flag(&ca), Some(true));

    let server_der = read("server.crt");
    let server = parse(&server_der);
    assert_eq!(server.version(), X509Version::V1);
    assert!(server.extensions().is_empty());
    assert_eq!(cn(&server), SEED_SERVER_NAME);
    assert_eq!(issuer_cn(&server), "ExampleCA");
    assert_eq!(days_from_now(&server), (0, 365));

    let client_der = read("client.crt");
    let client = parse(&client_der);
    assert_eq!(client.version(), X509Version::V3);
    assert_eq!(cn(&client), "ExampleClient");
    assert_eq!(eku(&client), Some((false, true)));

    for name in [
        "ca.key",
        "server.key",
        "client.key",
        "server.csr",
        "client.csr",
        "ca.srl",
    ] {
        assert!(dir.path().join(name).is_file(), "{name}");
    }
    let server_key = std::fs::read_to_string(dir.path().join("server.key")).unwrap();
    assert_eq!(spki_of_key(&server_key), server.public_key().raw);
}

#[test]
fn seed_openssl_certs_name_openssl_and_make_setup_when_missing() {
    let dir = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let err = seed_openssl_certs_with(dir.path(), empty.path().as_os_str()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    let message = err.to_string();
    assert!(message.contains("openssl"), "{message}");
    assert!(message.contains("run `make setup`"), "{message}");
}

#[test]
fn seed_commands_are_the_eight_of_the_document() {
    assert_eq!(SEED_OPENSSL_COMMANDS.len(), 8);
    assert!(SEED_OPENSSL_COMMANDS
        .iter()
        .all(|c| c.starts_with("openssl ")));
    assert!(
        SEED_OPENSSL_COMMANDS[7].ends_with(r#"-extfile <(printf "extendedKeyUsage = clientAuth")"#)
    );
}

#[test]
fn authorities_can_be_shared_between_test_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authority>();
    assert_send_sync::<Issued>();
}
