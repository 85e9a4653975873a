//! Certificate revocation lists: what loads, what does not (with the field and a reason), and
//! how core classifies a presented certificate against them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::{policy, Fixture};
use tlsgate_core::config::ClientAuth;
use tlsgate_core::facts::{ChainCheck, Unverified};
use tlsgate_core::revocation::RevocationDepth;
use tlsgate_core::{ClientCert, ClientCertFacts};
use tlsgate_test_support::Authority;

const HOST: &str = "app.example.com";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn with_crls(crls: &str, extra: &str) -> String {
    policy(
        HOST,
        &format!(
            "                mutual_tls_certificate_authorities: [ca.crt]\n\
             \x20               mutual_tls_certificate_revocation_lists: {crls}\n{extra}"
        ),
        "",
    )
}

fn write(fx: &Fixture, name: &str, contents: impl AsRef<[u8]>) {
    std::fs::write(fx.path().join(name), contents).unwrap();
}

#[test]
fn a_crl_loads_in_pem_and_der_and_classifies_certificates() {
    let fx = Fixture::new(HOST);
    let revoked = fx.ca.client("mallory");
    let pem = fx.ca.crl(&[&revoked.cert_der], -60, 3600);
    write(&fx, "ca.crl", &pem);
    write(&fx, "ca.der.crl", tlsgate_test_support::pem_to_der(&pem));

    for (file, extra, depth) in [
        ("[ca.crl]", "", RevocationDepth::Chain),
        (
            "[ca.der.crl]",
            "                mutual_tls_revocation_check: leaf\n",
            RevocationDepth::Leaf,
        ),
    ] {
        let config = fx.load(&with_crls(file, extra)).unwrap();
        let auth = &config.endpoints[0].tls.client_auth;
        let revocation = auth.revocation().expect("CRLs loaded");
        assert_eq!(revocation.depth, depth);
        assert_eq!(revocation.lists.len(), 1);
        assert_eq!(revocation.lists[0].len(), 1);
        assert_eq!(revocation.lists[0].issuer, "CN=Test CA");
        assert!(matches!(auth, ClientAuth::On { .. }));

        let classify = |der: &[u8], chain: ChainCheck, at: i64| {
            let facts = Box::new(ClientCertFacts::from_der(der).unwrap());
            ClientCert::presented(facts, chain, at, Some(revocation))
        };
        // Revoked, whatever the TLS stack said (a resumed session does not re-check).
        for chain in [ChainCheck::Trusted, ChainCheck::Untrusted] {
            assert!(matches!(
                classify(&revoked.cert_der, chain, now()),
                ClientCert::Unverified(_, Unverified::Revoked)
            ));
        }
        assert_eq!(
            classify(&revoked.cert_der, ChainCheck::Trusted, now()).verification(),
            "revoked"
        );
        assert!(matches!(
            classify(&fx.client.cert_der, ChainCheck::Trusted, now()),
            ClientCert::Verified(_)
        ));
        // Once the CRL is past its nextUpdate, nothing it covers is an identity.
        let later = now() + 7200;
        let stale = classify(&fx.client.cert_der, ChainCheck::Trusted, later);
        assert!(matches!(
            stale,
            ClientCert::Unverified(_, Unverified::RevocationUnknown)
        ));
        assert_eq!(stale.verification(), "revocation_unknown");
        // Another CA's certificate is untrusted; no CRL speaks for it.
        let stranger = Authority::root("Stranger CA").client("sam");
        assert!(matches!(
            classify(&stranger.cert_der, ChainCheck::Untrusted, now()),
            ClientCert::Unverified(_, Unverified::UntrustedIssuer)
        ));
    }
}

#[test]
fn the_filter_copy_keeps_the_crls_and_their_depth() {
    let fx = Fixture::new(HOST);
    let revoked = fx.ca.client("mallory");
    write(&fx, "ca.crl", fx.ca.crl(&[&revoked.cert_der], -60, 3600));
    let config = fx
        .load(&with_crls(
            "[ca.crl]",
            "                mutual_tls_revocation_check: leaf\n",
        ))
        .unwrap();
    let text = serde_json::to_string(&config.filter_policy()).unwrap();
    assert!(text.contains("BEGIN X509 CRL"), "{text}");
    let options = tlsgate_core::LoadOptions {
        reader: &tlsgate_core::pem::InlineOnly,
        keys: tlsgate_core::KeyMode::Skip,
        deployment: tlsgate_core::Deployment::none(),
    };
    let copy = tlsgate_core::Config::load_str(&text, None, &options, 0).unwrap();
    let original = config.endpoints[0].tls.client_auth.revocation().unwrap();
    let copied = copy.endpoints[0].tls.client_auth.revocation().unwrap();
    assert_eq!(copied.depth, RevocationDepth::Leaf);
    assert_eq!(copied.lists.len(), original.lists.len());
    assert_eq!(copied.lists[0].der, original.lists[0].der);
}

#[test]
fn bad_crls_are_load_errors_that_name_the_field() {
    let fx = Fixture::new(HOST);
    let other = Authority::root("Other CA");
    write(&fx, "expired.crl", fx.ca.crl(&[], -7200, -3600));
    write(&fx, "other.crl", other.crl(&[], -60, 3600));
    write(&fx, "garbage.crl", "not a CRL at all");
    write(&fx, "ca.crl", fx.ca.crl(&[], -60, 3600));
    write(&fx, "other.crt", other.cert_pem());
    let field = "mutual_tls_certificate_revocation_lists";

    let e = fx.error(&with_crls("[expired.crl]", ""));
    assert!(e.contains(&format!("{field}[0]")), "{e}");
    assert!(e.contains("expired at") && e.contains("CN=Test CA"), "{e}");

    let e = fx.error(&with_crls("[other.crl]", ""));
    assert!(e.contains("not from any of this endpoint's CAs"), "{e}");

    let e = fx.error(&with_crls("[garbage.crl]", ""));
    assert!(e.contains(&format!("{field}[0]")), "{e}");
    assert!(e.contains("not a certificate revocation list"), "{e}");

    let e = fx.error(&with_crls("[]", ""));
    assert!(e.contains("the list is empty"), "{e}");

    let e = fx.error(&with_crls(
        "[ca.crl]",
        "                mutual_tls_revocation_check: everything\n",
    ));
    assert!(
        e.contains("mutual_tls_revocation_check") && e.contains("leaf"),
        "{e}"
    );

    // Two CAs, one CRL: every certificate of the other CA would be refused.
    let two_cas = policy(
        HOST,
        "                mutual_tls_certificate_authorities: [ca.crt, other.crt]\n\
         \x20               mutual_tls_certificate_revocation_lists: [ca.crl]\n",
        "",
    );
    let e = fx.error(&two_cas);
    assert!(e.contains("the CA CN=Other CA has no CRL"), "{e}");

    // CRLs without CAs check nothing.
    let no_cas = policy(
        HOST,
        "                mutual_tls_certificate_revocation_lists: [ca.crl]\n",
        "",
    );
    let e = fx.error(&no_cas);
    assert!(
        e.contains("mutual_tls_certificate_authorities") && e.contains(field),
        "{e}"
    );
}

/// Two tiers: the issuing CA listed beside the root, each with its CRL, loads; an issuing CA
/// the root's CRL revokes does not (natively it would be trusted as an anchor of its own).
#[test]
fn a_listed_ca_another_listed_cas_crl_revokes_is_a_load_error() {
    let fx = Fixture::new(HOST);
    let issuing = fx.ca.intermediate("Issuing CA");
    write(&fx, "issuing.crt", issuing.cert_pem());
    write(&fx, "issuing.crl", issuing.crl(&[], -60, 3600));
    let two_tiers = |root_crl: &str| {
        policy(
            HOST,
            &format!(
                "                mutual_tls_certificate_authorities: [ca.crt, issuing.crt]\n\
                 \x20               mutual_tls_certificate_revocation_lists: [{root_crl}, issuing.crl]\n"
            ),
            "",
        )
    };
    write(&fx, "ca.crl", fx.ca.crl(&[], -60, 3600));
    fx.load(&two_tiers("ca.crl")).expect("two tiers load");
    write(
        &fx,
        "ca-revokes.crl",
        fx.ca.crl(&[&issuing.cert_der()], -60, 3600),
    );
    let e = fx.error(&two_tiers("ca-revokes.crl"));
    assert!(
        e.contains("mutual_tls_certificate_authorities[1]")
            && e.contains("CN=Issuing CA is revoked by its issuer's CRL"),
        "{e}"
    );
}
