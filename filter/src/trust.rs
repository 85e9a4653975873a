//! "Verified" means "by this endpoint's CAs", checked inside the VM.
//!
//! Envoy reports whether it verified the client's chain (`connection.peer_certificate_valid`),
//! but against its own trust store: the generated bootstrap's is the policy's CAs, a
//! hand-written configuration's or an Istio Gateway's may be anything. So before the filter
//! calls a certificate verified it checks, itself, that one of the endpoint's CAs issued and
//! signed the leaf ([`TrustAnchors::signed`]). Envoy shows filters the leaf alone, so the
//! issuer must be among the endpoint's CAs: a chain through an intermediate the client sent is
//! not an identity behind Envoy (docs/security.md says to list the intermediate).
//!
//! Verdicts are cached per worker (the VM is single-threaded) by endpoint and certificate
//! digest, so a client that reconnects costs one hash lookup; the cache is bounded and cleared
//! when the policy changes.

use std::cell::RefCell;
use std::collections::HashMap;

use tlsgate_core::ocsp;
use tlsgate_core::pem::{AnchorSignature, TrustAnchors};

/// How many verdicts a worker keeps before it starts over.
const CACHE_ENTRIES: usize = 10_000;

thread_local! {
    static VERDICTS: RefCell<HashMap<(usize, String), AnchorSignature>> =
        RefCell::new(HashMap::new());
}

/// Whether one of `authorities` (endpoint `endpoint`'s CAs) signed `leaf`, whose SHA-256 is
/// `fingerprint`.
pub(crate) fn signed(
    endpoint: usize,
    authorities: &TrustAnchors,
    leaf: &[u8],
    fingerprint: &str,
) -> AnchorSignature {
    let key = (endpoint, fingerprint.to_owned());
    if let Some(known) = VERDICTS.with(|v| v.borrow().get(&key).cloned()) {
        return known;
    }
    let verdict = authorities.signed(leaf, &RustCrypto);
    VERDICTS.with(|v| {
        let mut v = v.borrow_mut();
        if v.len() >= CACHE_ENTRIES {
            v.clear();
        }
        v.insert(key, verdict.clone());
    });
    verdict
}

/// Forgets every verdict: the policy (and so the endpoints' CAs) changed.
pub(crate) fn forget() {
    VERDICTS.with(|v| v.borrow_mut().clear());
}

/// The filter's signature checks (client certificates, OCSP answers): pure-Rust algorithms
/// (ring and aws-lc-rs do not build for the VM).
pub(crate) struct RustCrypto;

impl tlsgate_core::HostCrypto for RustCrypto {
    fn check_key_pair(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls_pki_types::PrivateKeyDer<'_>,
    ) -> Result<(), String> {
        Err("the filter holds no keys".into())
    }

    fn check_crl_signature(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
        Err("CRLs are checked when the policy is generated".into())
    }

    fn verify_signature(
        &self,
        spki: &[u8],
        algorithm: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        ocsp::verify_with(tlsgate_rustcrypto::ALL, spki, algorithm, message, signature)
    }
}
