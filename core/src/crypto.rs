//! The signature checks core needs and does not implement: the host lends them
//! ([`HostCrypto`]) with its own crypto provider, and core applies them to certificates
//! (`verify_certificate_signature`), OCSP answers and CRLs.

use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::der::Reader;

/// The cryptographic checks a policy needs at load time. Core has no signature code (it builds
/// for proxy-wasm and stays free of TLS libraries), so the host that will use the material
/// supplies them with its own crypto provider.
pub trait HostCrypto {
    /// That a private key belongs to a certificate.
    fn check_key_pair(
        &self,
        leaf: &CertificateDer<'_>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<(), String>;

    /// That a CRL (DER) is signed by the key of `issuer_spki` (a SubjectPublicKeyInfo, DER).
    fn check_crl_signature(&self, crl: &[u8], issuer_spki: &[u8]) -> Result<(), String>;

    /// That `signature` over `message` is by the key of `spki` (a SubjectPublicKeyInfo, DER)
    /// with `algorithm` (an AlgorithmIdentifier, DER): what an OCSP response needs. A host
    /// that cannot check signatures says so, and nothing that needs one passes.
    fn verify_signature(
        &self,
        _spki: &[u8],
        _algorithm: &[u8],
        _message: &[u8],
        _signature: &[u8],
    ) -> Result<(), String> {
        Err("this host cannot check signatures".into())
    }
}

/// Checks that the certificate `der` carries a valid signature by the key `issuer_spki`
/// (SubjectPublicKeyInfo, DER).
pub(crate) fn verify_certificate_signature(
    der: &[u8],
    issuer_spki: &[u8],
    crypto: &dyn HostCrypto,
) -> Result<(), String> {
    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
    let mut parts = Reader::new(der).sequence().ok_or("not a certificate")?;
    let (tbs, algorithm) = (parts.raw(0x30), parts.raw(0x30));
    let (Some(tbs), Some(algorithm), Some([0, signature @ ..])) =
        (tbs, algorithm, parts.expect(0x03))
    else {
        return Err("not a certificate".into());
    };
    crypto.verify_signature(issuer_spki, algorithm, tbs, signature)
}
