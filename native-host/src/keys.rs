//! The load-time crypto checks core asks of its host: a private key against its certificate,
//! a CRL's signature against its CA.

use rustls::crypto::aws_lc_rs::sign::any_supported_type;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tlsgate_core::HostCrypto;
use x509_parser::der_parser::asn1_rs::BitString;
use x509_parser::prelude::{CertificateRevocationList, FromDer, X509Certificate};
use x509_parser::x509::{AlgorithmIdentifier, SubjectPublicKeyInfo};

/// Checks that a key is usable for TLS and that its public half is the certificate's.
///
/// Compares SubjectPublicKeyInfo bytes directly instead of `CertifiedKey::keys_match`, which
/// parses the certificate with webpki and so refuses X.509 v1 certificates such as the one the
/// seed's openssl steps make.
#[derive(Debug, Clone, Copy, Default)]
pub struct RustlsKeyCheck;

impl HostCrypto for RustlsKeyCheck {
    fn check_key_pair(
        &self,
        leaf: &CertificateDer<'_>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<(), String> {
        let signing = any_supported_type(key).map_err(|e| {
            format!("the key is not an RSA, ECDSA or Ed25519 key rustls can use: {e}")
        })?;
        let key_spki = signing
            .public_key()
            .ok_or_else(|| "cannot derive the public key from this private key".to_owned())?;
        let (_, cert) = X509Certificate::from_der(leaf.as_ref())
            .map_err(|e| format!("the certificate cannot be parsed: {e}"))?;
        if key_spki.as_ref() == cert.tbs_certificate.subject_pki.raw {
            Ok(())
        } else {
            Err("its public key differs from the certificate's".into())
        }
    }

    fn check_crl_signature(&self, crl: &[u8], issuer_spki: &[u8]) -> Result<(), String> {
        let (_, crl) = CertificateRevocationList::from_der(crl)
            .map_err(|e| format!("the CRL cannot be parsed: {e}"))?;
        let (_, spki) = SubjectPublicKeyInfo::from_der(issuer_spki)
            .map_err(|e| format!("the CA's public key cannot be parsed: {e}"))?;
        crl.verify_signature(&spki)
            .map_err(|e| format!("signature check failed: {e}"))
    }

    fn verify_signature(
        &self,
        spki: &[u8],
        algorithm: &[u8],
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), String> {
        let (_, spki) = SubjectPublicKeyInfo::from_der(spki)
            .map_err(|e| format!("the public key cannot be parsed: {e}"))?;
        let (_, algorithm) = AlgorithmIdentifier::from_der(algorithm)
            .map_err(|e| format!("the signature algorithm cannot be parsed: {e}"))?;
        let signature = BitString::new(0, signature);
        x509_parser::verify::verify_signature(&spki, &algorithm, &signature, message)
            .map_err(|e| format!("signature check failed: {e}"))
    }
}
