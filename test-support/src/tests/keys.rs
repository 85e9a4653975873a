//! Keys and the rest of an issued set: mismatched and per-kind keys, serials, self-signed
//! certificates, writing to disk.

use super::*;

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
