//! OCSP responses, as a responder (or anyone on the path) may send them: judged or refused,
//! never a panic; with a host that accepts every signature, an answer is only ever about the
//! certificate asked for, and never valid past its own nextUpdate.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tlsgate_core::ocsp::{check, CertId};
use tlsgate_core::HostCrypto;

struct AcceptAll;

impl HostCrypto for AcceptAll {
    fn check_key_pair(&self, _: &CertificateDer<'_>, _: &PrivateKeyDer<'_>) -> Result<(), String> {
        Ok(())
    }
    fn check_crl_signature(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn verify_signature(&self, _: &[u8], _: &[u8], _: &[u8], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

fuzz_target!(|input: (u32, &[u8])| {
    let (now, response) = input;
    let (leaf, issuer) = fixtures();
    let Ok(id) = CertId::new(leaf, issuer) else {
        return;
    };
    let now = i64::from(now);
    if let Ok(answer) = check(response, &id, issuer, now, &AcceptAll) {
        assert!(answer.valid_until >= now, "a stale answer was accepted");
    }
});

/// A leaf and its issuer (the fixture's client certificate and CA), as DER.
fn fixtures() -> (&'static [u8], &'static [u8]) {
    static CA: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    let f = common::fixture();
    let ca = CA.get_or_init(|| {
        rustls::pki_types::pem::PemObject::from_pem_slice(f.ca_pem.as_bytes())
            .map(|d: CertificateDer<'static>| d.as_ref().to_vec())
            .expect("ca.crt")
    });
    (&f.client_der, ca)
}
