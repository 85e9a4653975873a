//! TLS to the upstream: trust, SNI, the client certificate tlsgate presents (upstream mTLS), and
//! the one narrow exception webpki needs for the seed's certificates.
//!
//! # Upstream certificates without subjectAltName (X.509 v1)
//!
//! The seed's `openssl x509 -req` step (no `-extfile`) makes an X.509 **v1** server certificate:
//! no extensions, no subjectAltName, the host name only in the subject CN. OpenSSL and BoringSSL
//! accept it; webpki refuses v1 certificates and CN-only names. tlsgate verifies every upstream
//! certificate with webpki first, and only when that fails *and* the leaf is an X.509 v1
//! certificate (so it has no extensions and no subjectAltName) does it accept the leaf, provided
//! that all of these hold:
//!
//! 0. the endpoint pins the upstream's key (`pinned_certificates`) and the leaf carries it:
//!    Envoy can match names against subjectAltNames only, so a pin is the one rule both hosts
//!    can enforce for such a certificate, and both do;
//! 1. the endpoint lists `certificate_authorities` (never with the system roots);
//! 2. the leaf is signed **directly** by one of those CAs (issuer name equals the CA's subject and
//!    the signature verifies with the CA's key; no intermediates), with a signature webpki would
//!    also accept (RSA PKCS#1 or PSS with SHA-256/384/512 and a key of at least 2048 bits, or
//!    ECDSA with SHA-256/384) — never SHA-1;
//! 3. that CA carries no nameConstraints (a CN cannot be checked against them);
//! 4. the leaf is within its validity period now;
//! 5. its subject CN equals the `server_name` tlsgate sends, ignoring ASCII case (no wildcards).
//!
//! A v3 certificate without subjectAltName keeps webpki's refusal: it can be reissued properly,
//! and accepting it would also skip its extensions.
//!
//! With `pinned_certificates`, every upstream certificate (v1 or not) must also carry one of the
//! pinned keys.
//!
//! The handshake signature is verified as for any certificate, so the upstream must hold the
//! leaf's key. The first acceptance per endpoint is logged (`accepting X.509 v1 upstream
//! certificate …`). Anything else keeps webpki's verdict.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tlsgate_core::config::{UpstreamProtocol, UpstreamTls};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate, X509Version};
use x509_parser::time::ASN1Time;

use crate::tls::{verify_handshake_signature, TlsSetupError};

/// Builds the endpoint's upstream `ClientConfig` and the name sent as SNI.
pub fn client_config(
    endpoint: &str,
    tls: &UpstreamTls,
    protocol: UpstreamProtocol,
    provider: &Arc<CryptoProvider>,
) -> Result<(Arc<ClientConfig>, ServerName<'static>), TlsSetupError> {
    let rejected = |what: &'static str, reason: String| TlsSetupError::Rejected {
        endpoint: endpoint.to_owned(),
        what,
        reason,
    };
    let server_name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| rejected("upstream.tls.server_name", e.to_string()))?;

    let mut roots = RootCertStore::empty();
    let mut direct_cas = Vec::new();
    match &tls.authorities {
        Some(anchors) => {
            for (i, ca) in anchors.certs.iter().enumerate() {
                roots.add(ca.clone()).map_err(|e| {
                    rejected(
                        "upstream.tls.certificate_authorities",
                        format!("CA {i} is not usable as a trust anchor: {e}"),
                    )
                })?;
                direct_cas.push(ca.clone());
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for error in &found.errors {
                tracing::warn!(endpoint, "reading the system's CA certificates: {error}");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                tracing::warn!(
                    endpoint,
                    "no system CA certificates found: the upstream's certificate cannot be \
                     verified; set upstream.tls.certificate_authorities"
                );
            }
        }
    }
    let webpki = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| rejected("upstream.tls.certificate_authorities", e.to_string()))?,
        )
    };
    let verifier = Arc::new(UpstreamVerifier {
        endpoint: endpoint.to_owned(),
        webpki,
        direct_cas,
        pins: tls.pinned_spki_sha256.clone(),
        algorithms: provider.signature_verification_algorithms,
        logged_legacy: AtomicBool::new(false),
    });

    // `dangerous()` is rustls' door to a custom verifier; ours runs webpki first and keeps its
    // verdict for everything but the narrow X.509 v1 rule in the module docs.
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| rejected("upstream.tls", e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match (&tls.client_certificate, &tls.client_key) {
        (Some(chain), Some(key)) => {
            let signing_key = provider
                .key_provider
                .load_private_key(key.der().clone_key())
                .map_err(|e| rejected("upstream.tls.client_certificate", e.to_string()))?;
            let certified = CertifiedKey::new(chain.certs.clone(), signing_key);
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = match protocol {
        UpstreamProtocol::Http1 => vec![b"http/1.1".to_vec()],
        UpstreamProtocol::Http2 => vec![b"h2".to_vec()],
    };
    Ok((Arc::new(config), server_name))
}

/// For tcp/tls endpoints: no ALPN.
pub fn without_alpn(config: &Arc<ClientConfig>) -> Arc<ClientConfig> {
    let mut config = ClientConfig::clone(config);
    config.alpn_protocols.clear();
    Arc::new(config)
}

/// webpki, plus the rule for leaves without subjectAltName described in the module docs.
#[derive(Debug)]
struct UpstreamVerifier {
    endpoint: String,
    /// `None` when there are no roots at all (every certificate fails).
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// The CAs the endpoint configured; empty with the system roots.
    direct_cas: Vec<CertificateDer<'static>>,
    /// `pinned_certificates`, as base64 SHA-256 of their SubjectPublicKeyInfo.
    pins: Vec<String>,
    algorithms: WebPkiSupportedAlgorithms,
    logged_legacy: AtomicBool,
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified =
            self.verify_chain(end_entity, intermediates, server_name, ocsp_response, now)?;
        if !self.pins.is_empty() {
            let pinned = tlsgate_core::pem::spki_sha256(end_entity)
                .is_some_and(|spki| self.pins.contains(&spki));
            if !pinned {
                tracing::warn!(endpoint = %self.endpoint, "upstream certificate does not carry a pinned key");
                return Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ));
            }
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(false, message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(true, message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl UpstreamVerifier {
    /// webpki's verdict, or the X.509 v1 rule of the module docs.
    fn verify_chain(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let webpki_error = match &self.webpki {
            Some(webpki) => match webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ) {
                Ok(verified) => return Ok(verified),
                Err(e) => e,
            },
            None => rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer),
        };
        match self.legacy_leaf(end_entity, server_name, now) {
            Legacy::NotApplicable => Err(webpki_error),
            Legacy::Refused(why) => {
                tracing::warn!(
                    endpoint = %self.endpoint,
                    "upstream certificate without subjectAltName refused: {why}"
                );
                Err(webpki_error)
            }
            Legacy::Accepted { subject, version } => {
                if !self.logged_legacy.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        endpoint = %self.endpoint,
                        "accepting X.509 v{version} upstream certificate without \
                         subjectAltName ({subject}): its key is pinned, it is signed directly by \
                         a configured CA, valid now, and its CN matches the server name"
                    );
                }
                Ok(ServerCertVerified::assertion())
            }
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Legacy {
    /// The leaf has a subjectAltName, or no CAs are configured: webpki's verdict stands.
    NotApplicable,
    Refused(String),
    Accepted {
        subject: String,
        version: u32,
    },
}

impl UpstreamVerifier {
    fn legacy_leaf(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
        now: UnixTime,
    ) -> Legacy {
        if self.direct_cas.is_empty() {
            return Legacy::NotApplicable;
        }
        if self.pins.is_empty() {
            return match X509Certificate::from_der(end_entity.as_ref()) {
                Ok((_, leaf)) if leaf.version() == X509Version::V1 => Legacy::Refused(format!(
                    "{}: a certificate without subjectAltName is accepted only with its key \
                     pinned (upstream.tls.pinned_certificates), the one check both hosts can make",
                    leaf.subject()
                )),
                _ => Legacy::NotApplicable,
            };
        }
        let Ok((_, leaf)) = X509Certificate::from_der(end_entity.as_ref()) else {
            return Legacy::NotApplicable;
        };
        if leaf.version() != X509Version::V1 {
            return Legacy::NotApplicable;
        }
        legacy_verdict(&leaf, &self.direct_cas, server_name, now)
    }
}

fn legacy_verdict(
    leaf: &X509Certificate<'_>,
    cas: &[CertificateDer<'static>],
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Legacy {
    let subject = leaf.subject().to_string();
    let ServerName::DnsName(name) = server_name else {
        return Legacy::Refused(format!(
            "{subject}: the server name is an IP address, which a CN cannot prove"
        ));
    };
    if !STRONG_SIGNATURES.contains(&leaf.signature_algorithm.algorithm.to_id_string().as_str()) {
        return Legacy::Refused(format!(
            "{subject}: its signature algorithm ({}) is not one webpki accepts",
            leaf.signature_algorithm.algorithm.to_id_string()
        ));
    }
    let cn_matches = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .is_some_and(|cn| cn.eq_ignore_ascii_case(name.as_ref()));
    if !cn_matches {
        return Legacy::Refused(format!(
            "{subject}: its CN is not the server name `{}`",
            name.as_ref()
        ));
    }
    let at = i64::try_from(now.as_secs())
        .ok()
        .and_then(|secs| ASN1Time::from_timestamp(secs).ok());
    if !at.is_some_and(|at| leaf.validity().is_valid_at(at)) {
        return Legacy::Refused(format!("{subject} is expired or not yet valid"));
    }
    let signed_by_ca = cas.iter().any(|ca| {
        X509Certificate::from_der(ca.as_ref()).is_ok_and(|(_, ca)| {
            ca.subject().as_raw() == leaf.issuer().as_raw()
                && strong_key(&ca)
                && !has_name_constraints(&ca)
                && leaf.verify_signature(Some(ca.public_key())).is_ok()
        })
    });
    if !signed_by_ca {
        return Legacy::Refused(format!(
            "{subject} is not signed directly by a configured CA"
        ));
    }
    Legacy::Accepted {
        subject,
        version: leaf.version().0 + 1,
    }
}

/// Signature algorithms the v1 exception accepts: those webpki accepts for certificates.
const STRONG_SIGNATURES: &[&str] = &[
    "1.2.840.113549.1.1.11", // sha256WithRSAEncryption
    "1.2.840.113549.1.1.12", // sha384WithRSAEncryption
    "1.2.840.113549.1.1.13", // sha512WithRSAEncryption
    "1.2.840.113549.1.1.10", // RSASSA-PSS
    "1.2.840.10045.4.3.2",   // ecdsa-with-SHA256
    "1.2.840.10045.4.3.3",   // ecdsa-with-SHA384
];

/// RSA keys below 2048 bits are refused (webpki's floor); EC keys are P-256/P-384 by the
/// signature algorithms above.
fn strong_key(ca: &X509Certificate<'_>) -> bool {
    match ca.public_key().parsed() {
        Ok(x509_parser::public_key::PublicKey::RSA(rsa)) => rsa.key_size() >= 2048,
        Ok(x509_parser::public_key::PublicKey::EC(_)) => true,
        _ => false,
    }
}

fn has_name_constraints(ca: &X509Certificate<'_>) -> bool {
    ca.extensions()
        .iter()
        .any(|e| matches!(e.parsed_extension(), ParsedExtension::NameConstraints(_)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use tlsgate_test_support::{seed_openssl_certs, Authority, SEED_SERVER_NAME};

    fn der(path: &std::path::Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    fn verdict(leaf: &CertificateDer<'_>, cas: &[CertificateDer<'static>], name: &str) -> Legacy {
        let (_, parsed) = X509Certificate::from_der(leaf.as_ref()).unwrap();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        legacy_verdict(&parsed, cas, &name, UnixTime::now())
    }

    #[test]
    fn accepts_the_seeds_v1_leaf_signed_directly_by_its_configured_ca() {
        let dir = tempfile::tempdir().unwrap();
        seed_openssl_certs(dir.path()).unwrap();
        let leaf = der(&dir.path().join("server.crt"));
        let ca = der(&dir.path().join("ca.crt"));
        assert!(matches!(
            verdict(&leaf, std::slice::from_ref(&ca), SEED_SERVER_NAME),
            Legacy::Accepted { version: 1, .. }
        ));
        // The CN comparison ignores ASCII case, as DNS does.
        assert!(matches!(
            verdict(&leaf, &[ca], &SEED_SERVER_NAME.to_ascii_uppercase()),
            Legacy::Accepted { .. }
        ));
    }

    #[test]
    fn refuses_the_seeds_v1_leaf_for_another_name_or_under_another_ca() {
        let dir = tempfile::tempdir().unwrap();
        seed_openssl_certs(dir.path()).unwrap();
        let leaf = der(&dir.path().join("server.crt"));
        let ca = der(&dir.path().join("ca.crt"));
        assert!(matches!(
            verdict(&leaf, &[ca], "other.example.com"),
            Legacy::Refused(_)
        ));
        let other = CertificateDer::from(Authority::root("ExampleCA").cert_der());
        assert!(matches!(
            verdict(&leaf, &[other], SEED_SERVER_NAME),
            Legacy::Refused(_)
        ));
    }

    /// A v1 leaf made like the seed's, but with `digest` and a CA key of `bits`.
    fn openssl_v1(
        dir: &std::path::Path,
        digest: &str,
        bits: u32,
    ) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let script = format!(
            "openssl genpkey -algorithm RSA -out ca.key -pkeyopt rsa_keygen_bits:{bits} 2>/dev/null && \
             openssl req -x509 -new -nodes -key ca.key -sha256 -days 30 -out ca.crt -subj /CN=WeakCA && \
             openssl genpkey -algorithm RSA -out s.key -pkeyopt rsa_keygen_bits:2048 2>/dev/null && \
             openssl req -new -key s.key -out s.csr -subj /CN=weak.example && \
             openssl x509 -req -in s.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out s.crt -days 30 -{digest}"
        );
        let ok = std::process::Command::new("bash")
            .arg("-c")
            .arg(script)
            .current_dir(dir)
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl failed");
        (der(&dir.join("s.crt")), der(&dir.join("ca.crt")))
    }

    #[test]
    fn refuses_a_v1_leaf_signed_with_sha1() {
        let dir = tempfile::tempdir().unwrap();
        let (leaf, ca) = openssl_v1(dir.path(), "sha1", 2048);
        assert!(
            matches!(verdict(&leaf, &[ca], "weak.example"), Legacy::Refused(r) if r.contains("signature algorithm"))
        );
    }

    #[test]
    fn refuses_a_v1_leaf_under_a_1024_bit_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (leaf, ca) = openssl_v1(dir.path(), "sha256", 1024);
        assert!(
            matches!(verdict(&leaf, &[ca], "weak.example"), Legacy::Refused(r) if r.contains("not signed directly"))
        );
    }

    #[test]
    fn accepts_the_same_v1_leaf_with_sha256_and_a_2048_bit_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (leaf, ca) = openssl_v1(dir.path(), "sha256", 2048);
        assert!(matches!(
            verdict(&leaf, &[ca], "weak.example"),
            Legacy::Accepted { .. }
        ));
    }
}
