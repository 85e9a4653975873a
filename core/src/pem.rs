//! Certificate and key material: inline PEM or a file next to the policy, parsed at load.
//!
//! A value that starts with `-----BEGIN` is PEM; anything else is a path relative to the policy
//! file. Key bytes never reach `Debug` output or an error message.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::crypto::{verify_certificate_signature, HostCrypto};
use crate::encoding::sha256;

/// What is wrong with certificate or key material, named by `what` (the policy field). The
/// loader wraps it in a [`ConfigError`](crate::error::ConfigError) that says where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PemError {
    /// As [`ConfigErrorKind::Unreadable`](crate::error::ConfigErrorKind::Unreadable), which it
    /// becomes.
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("the value is neither PEM (`-----BEGIN …`) nor a file path")]
    NeitherPemNorPath,
    #[error("{what} holds no PEM `{label}` block{hint}")]
    NoPem {
        what: &'static str,
        label: &'static str,
        hint: &'static str,
    },
    #[error("{what} is not valid PEM: {reason}")]
    BadPem { what: &'static str, reason: String },
    #[error("certificate #{index} in {what} cannot be parsed: {reason}")]
    BadCertificate {
        what: &'static str,
        /// Position in the PEM value or file, counting from 1.
        index: usize,
        reason: String,
    },
    #[error(
        "{subject} is not a CA certificate (basicConstraints CA=true is missing): \
         list the certificate of the authority that issued your clients, not a client certificate"
    )]
    NotACa { subject: String },
}

/// Where a piece of material came from; the Envoy generator references files by path so Envoy
/// can watch them, and the native host watches them for reloads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    Inline,
    /// The file, resolved against the policy file's directory (absolute when read from disk).
    File(PathBuf),
}

/// How the loader obtains the bytes of a file named in a policy. The native host reads the
/// file system; the proxy-wasm filter has none and accepts inline PEM only.
pub trait MaterialReader {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String>;

    /// Where `path` (as written in the policy) really is; recorded in [`Origin::File`].
    fn resolve(&self, path: &Path) -> PathBuf {
        path.to_path_buf()
    }
}

/// Reads files relative to a base directory (the policy file's directory).
#[derive(Debug, Clone)]
pub struct FileReader {
    pub base_dir: PathBuf,
}

impl MaterialReader for FileReader {
    fn read(&self, path: &Path) -> Result<Vec<u8>, String> {
        std::fs::read(self.resolve(path)).map_err(|e| e.to_string())
    }

    /// Absolute, so a host or a generated Envoy config can use it from any directory.
    fn resolve(&self, path: &Path) -> PathBuf {
        let joined = self.base_dir.join(path);
        std::path::absolute(&joined).unwrap_or(joined)
    }
}

/// For hosts without a file system: every path is an error that says to inline the PEM.
#[derive(Debug, Clone, Copy)]
pub struct InlineOnly;

impl MaterialReader for InlineOnly {
    fn read(&self, _path: &Path) -> Result<Vec<u8>, String> {
        Err(
            "this host has no file system; inline the PEM in the policy \
             (`tlsgate envoy-config` does this for you)"
                .into(),
        )
    }
}

/// A parsed certificate chain, leaf first.
#[derive(Clone, Debug)]
pub struct CertificateChain {
    pub origin: Origin,
    pub certs: Vec<CertificateDer<'static>>,
    /// Subject of the leaf, RFC 4514.
    pub subject: String,
    /// DNS names the leaf covers: its SAN DNS entries, or its CN when it has no SAN (X.509 v1).
    pub names: Vec<String>,
    /// X.509 version of the leaf (1 or 3).
    pub version: u32,
    /// Lowercase hex SHA-256 of the leaf's DER.
    pub fingerprint_sha256: String,
}

impl CertificateChain {
    pub fn leaf(&self) -> &CertificateDer<'static> {
        // A chain is never empty: `load_chain` refuses that.
        &self.certs[0]
    }

    /// The chain as PEM text.
    pub fn to_pem(&self) -> String {
        self.certs
            .iter()
            .map(|c| crate::encoding::pem("CERTIFICATE", c.as_ref()))
            .collect()
    }
}

/// The SHA-256 of a certificate's SubjectPublicKeyInfo, base64: the pin format of HPKP and of
/// Envoy's `verify_certificate_spki`. `None` when the certificate cannot be parsed.
pub fn spki_sha256(cert: &CertificateDer<'_>) -> Option<String> {
    let (_, parsed) = X509Certificate::from_der(cert.as_ref()).ok()?;
    Some(base64::engine::general_purpose::STANDARD.encode(sha256(parsed.public_key().raw)))
}

/// A private key. Its bytes are reachable only through [`PrivateKey::der`].
pub struct PrivateKey {
    pub origin: Origin,
    der: PrivateKeyDer<'static>,
}

impl PrivateKey {
    pub fn der(&self) -> &PrivateKeyDer<'static> {
        &self.der
    }
}

impl Clone for PrivateKey {
    fn clone(&self) -> Self {
        Self {
            origin: self.origin.clone(),
            der: self.der.clone_key(),
        }
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("origin", &self.origin)
            .field("der", &"<redacted>")
            .finish()
    }
}

/// Trust anchors (CA certificates) for verifying client or upstream certificates.
#[derive(Clone, Debug)]
pub struct TrustAnchors {
    pub certs: Vec<CertificateDer<'static>>,
    pub origins: Vec<Origin>,
    pub subjects: Vec<String>,
}

/// Whether a leaf certificate was signed by one of an endpoint's CAs: [`TrustAnchors::signed`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AnchorSignature {
    /// A CA of the endpoint with the leaf's issuer name signed it.
    Signed,
    /// No CA of the endpoint has the leaf's issuer name (it may chain through an intermediate
    /// the client sent, which a host that sees the leaf alone cannot check).
    NoSuchIssuer,
    /// CAs of the endpoint carry the leaf's issuer name, but none of their keys signed it.
    NotSigned(String),
}

impl TrustAnchors {
    /// Checks the one link of the chain that needs nothing but the leaf: that a CA of this
    /// endpoint issued and signed it. The proxy-wasm filter sees only the leaf, and behind
    /// Istio the Gateway's trust store, not the policy, decides what Envoy verified; this is
    /// how the filter makes "verified" mean "by this endpoint's CAs" itself.
    pub fn signed(&self, leaf: &[u8], crypto: &dyn HostCrypto) -> AnchorSignature {
        let Ok((_, parsed)) = X509Certificate::from_der(leaf) else {
            return AnchorSignature::NotSigned("the certificate cannot be parsed".into());
        };
        let wanted = parsed.issuer().as_raw();
        let mut last_error = None;
        for ca in &self.certs {
            let Ok((_, ca)) = X509Certificate::from_der(ca.as_ref()) else {
                continue;
            };
            if ca.subject().as_raw() != wanted {
                continue;
            }
            // Several CAs may share a name (a key rollover): any one of them will do.
            match verify_certificate_signature(leaf, ca.public_key().raw, crypto) {
                Ok(()) => return AnchorSignature::Signed,
                Err(e) => last_error = Some(e),
            }
        }
        match last_error {
            Some(e) => AnchorSignature::NotSigned(e),
            None => AnchorSignature::NoSuchIssuer,
        }
    }

    pub fn to_pem(&self) -> String {
        self.certs
            .iter()
            .map(|c| crate::encoding::pem("CERTIFICATE", c.as_ref()))
            .collect()
    }
}

pub(crate) fn read_value(
    value: &str,
    reader: &dyn MaterialReader,
) -> Result<(Origin, Vec<u8>), PemError> {
    // Inline PEM may be preceded by text (openssl's "Bag Attributes"); anything holding a PEM
    // header is inline, and a multi-line value is never a path. Neither is echoed in errors:
    // it may be a key.
    if value.contains("-----BEGIN") {
        return Ok((Origin::Inline, value.as_bytes().to_vec()));
    }
    if value.contains('\n') || value.len() > 4096 {
        return Err(PemError::NeitherPemNorPath);
    }
    let path = PathBuf::from(value);
    reader
        .read(&path)
        .map(|bytes| (Origin::File(reader.resolve(&path)), bytes))
        .map_err(|reason| PemError::Unreadable { path, reason })
}

pub(crate) fn load_chain(
    value: &str,
    what: &'static str,
    reader: &dyn MaterialReader,
) -> Result<CertificateChain, PemError> {
    let (origin, bytes) = read_value(value, reader)?;
    let certs = parse_certs(&bytes, what)?;
    let (subject, names, version, is_ca) = describe(&certs[0], what, 1)?;
    // The rest of the chain must at least be certificates; say which one is not.
    for (n, cert) in certs.iter().enumerate().skip(1) {
        describe(cert, what, n + 1)?;
    }
    let _ = is_ca;
    Ok(CertificateChain {
        origin,
        fingerprint_sha256: crate::encoding::hex(&sha256(certs[0].as_ref())),
        certs,
        subject,
        names,
        version,
    })
}

pub(crate) fn load_key(
    value: &str,
    what: &'static str,
    reader: &dyn MaterialReader,
) -> Result<PrivateKey, PemError> {
    let (origin, bytes) = read_value(value, reader)?;
    match PrivateKeyDer::from_pem_slice(&bytes) {
        Ok(der) => Ok(PrivateKey { origin, der }),
        Err(rustls_pki_types::pem::Error::NoItemsFound) => Err(PemError::NoPem {
            what,
            label: "PRIVATE KEY",
            hint: " (expected PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`)",
        }),
        // The error text of a PEM parser never contains key bytes, only the structure problem.
        Err(e) => Err(PemError::BadPem {
            what,
            reason: e.to_string(),
        }),
    }
}

/// Loads each CA and checks it may sign (basicConstraints CA=true).
pub(crate) fn load_anchors(
    values: &[String],
    what: &'static str,
    reader: &dyn MaterialReader,
) -> Result<TrustAnchors, (usize, PemError)> {
    let mut anchors = TrustAnchors {
        certs: Vec::new(),
        origins: Vec::new(),
        subjects: Vec::new(),
    };
    for (i, value) in values.iter().enumerate() {
        let (origin, bytes) = read_value(value, reader).map_err(|e| (i, e))?;
        for (n, cert) in parse_certs(&bytes, what)
            .map_err(|e| (i, e))?
            .into_iter()
            .enumerate()
        {
            let (subject, _, _, is_ca) = describe(&cert, what, n + 1).map_err(|e| (i, e))?;
            if !is_ca {
                return Err((i, PemError::NotACa { subject }));
            }
            anchors.certs.push(cert);
            anchors.origins.push(origin.clone());
            anchors.subjects.push(subject);
        }
    }
    Ok(anchors)
}

fn parse_certs(bytes: &[u8], what: &'static str) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::BadPem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PemError::NoPem {
            what,
            label: "CERTIFICATE",
            hint: "",
        });
    }
    Ok(certs)
}

/// Subject, covered names, version and CA flag of one certificate.
fn describe(
    der: &CertificateDer<'_>,
    what: &'static str,
    index: usize,
) -> Result<(String, Vec<String>, u32, bool), PemError> {
    let (_, cert) =
        X509Certificate::from_der(der.as_ref()).map_err(|e| PemError::BadCertificate {
            what,
            index,
            reason: e.to_string(),
        })?;
    let facts = crate::facts::ClientCertFacts::from_der(der.as_ref()).map_err(|e| {
        PemError::BadCertificate {
            what,
            index,
            reason: e.0,
        }
    })?;
    let mut names = facts.san.dns_names.clone();
    if names.is_empty() && !facts.subject.common_name.is_empty() {
        names.push(facts.subject.common_name.clone());
    }
    let ca = cert.is_ca() || facts.is_ca;
    Ok((facts.subject.rfc4514, names, cert.version().0 + 1, ca))
}
