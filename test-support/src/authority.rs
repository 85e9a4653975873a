//! Certificate authorities and the certificates they issue.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};

use rcgen::{Certificate, KeyPair};

use crate::key::{self, Freshness};
use crate::{KeyKind, LeafSpec};

/// A certificate that can sign other certificates: a root, an intermediate, or the deliberately
/// broken "issuer with `CA:FALSE`".
///
/// An authority remembers the intermediates between itself and its root, so certificates it
/// issues come with the chain a server would send.
pub struct Authority {
    cert: Certificate,
    key: KeyPair,
    key_kind: KeyKind,
    common_name: String,
    /// PEMs of the authorities above this one, nearest first, excluding the root.
    parents: Vec<String>,
    is_root: bool,
}

impl fmt::Debug for Authority {
    // Hand-written because rcgen's types are not Debug, and the key should not be printed anyway.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authority")
            .field("common_name", &self.common_name)
            .field("key_kind", &self.key_kind)
            .field("is_root", &self.is_root)
            .field("depth", &self.parents.len())
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// A self-signed root CA with an ECDSA P-256 key: `CA:TRUE`, keyCertSign.
    pub fn root(common_name: &str) -> Authority {
        Authority::root_with(common_name, KeyKind::default())
    }

    /// A self-signed root CA with the given key type.
    pub fn root_with(common_name: &str, key: KeyKind) -> Authority {
        Authority::root_from(&LeafSpec::ca(common_name).with_key(key))
    }

    /// A self-signed root described in full, e.g. an expired root.
    ///
    /// The certificate always gets keyCertSign; its `CA` flag is `spec.is_ca`.
    pub fn root_from(spec: &LeafSpec) -> Authority {
        let key = key::generate(spec.key, Freshness::Fresh);
        let cert = spec
            .params(true)
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-signing root {:?}: {e}", spec.common_name));
        Authority {
            cert,
            key,
            key_kind: spec.key,
            common_name: spec.common_name.clone(),
            parents: Vec::new(),
            is_root: true,
        }
    }

    /// An intermediate CA signed by this authority: `CA:TRUE`, keyCertSign.
    pub fn intermediate(&self, common_name: &str) -> Authority {
        self.subordinate(&LeafSpec::ca(common_name))
    }

    /// A certificate with basicConstraints `CA:FALSE` that signs leaves anyway.
    ///
    /// It has keyCertSign, so a verifier that accepts its leaves is ignoring basicConstraints
    /// and not merely key usage.
    pub fn not_a_ca(&self, common_name: &str) -> Authority {
        self.subordinate(&LeafSpec::ca(common_name).with_ca(false))
    }

    /// An authority signed by this one, described in full, e.g. an expired intermediate.
    ///
    /// The certificate always gets keyCertSign; its `CA` flag is `spec.is_ca`.
    pub fn subordinate(&self, spec: &LeafSpec) -> Authority {
        let key = key::generate(spec.key, Freshness::Fresh);
        let cert = self.sign(spec, &key, true);
        Authority {
            cert,
            key,
            key_kind: spec.key,
            common_name: spec.common_name.clone(),
            parents: self.chain_above_issued(),
            is_root: false,
        }
    }

    /// Issues an end-entity certificate (or a CA certificate that will not sign anything).
    pub fn issue(&self, spec: &LeafSpec) -> Issued {
        let key = key::generate(spec.key, Freshness::Shareable);
        let cert = self.sign(spec, &key, false);
        let mut chain = vec![cert.pem()];
        chain.extend(self.chain_above_issued());
        Issued::new(&cert, &key, spec.key, chain)
    }

    /// Shorthand for `issue(&LeafSpec::server(hosts))`.
    pub fn server(&self, hosts: &[&str]) -> Issued {
        self.issue(&LeafSpec::server(hosts))
    }

    /// Shorthand for `issue(&LeafSpec::client(common_name))`.
    pub fn client(&self, common_name: &str) -> Issued {
        self.issue(&LeafSpec::client(common_name))
    }

    /// A CRL signed by this authority that revokes `revoked` (certificate DERs), current from
    /// `this_update` to `next_update` (seconds from now; negative is in the past), PEM.
    pub fn crl(&self, revoked: &[&[u8]], this_update: i64, next_update: i64) -> String {
        use rcgen::{
            CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams,
            SerialNumber,
        };
        let now = time::OffsetDateTime::now_utc();
        let revoked_certs = revoked
            .iter()
            .map(|der| {
                let (_, cert) = x509_parser::parse_x509_certificate(der)
                    .unwrap_or_else(|e| panic!("reading a certificate to revoke: {e}"));
                RevokedCertParams {
                    serial_number: SerialNumber::from_slice(cert.raw_serial()),
                    revocation_time: now - time::Duration::minutes(1),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                }
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: now + time::Duration::seconds(this_update),
            next_update: now + time::Duration::seconds(next_update),
            crl_number: SerialNumber::from(u64::try_from(now.unix_timestamp()).unwrap_or(1)),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params
            .signed_by(&self.cert, &self.key)
            .unwrap_or_else(|e| panic!("{:?} signing a CRL: {e}", self.common_name))
            .pem()
            .unwrap_or_else(|e| panic!("encoding a CRL: {e}"))
    }

    /// This authority's certificate, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// This authority's certificate, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// This authority's private key, PKCS#8 PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// This authority's certificate followed by the intermediates above it, excluding the root.
    ///
    /// For a root this is just the root itself.
    pub fn chain_pem(&self) -> String {
        let mut chain = vec![self.cert.pem()];
        chain.extend(self.parents.iter().cloned());
        chain.concat()
    }

    /// The subject CN.
    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    /// The key type.
    pub fn key_kind(&self) -> KeyKind {
        self.key_kind
    }

    /// Whether this authority is self-signed.
    pub fn is_root(&self) -> bool {
        self.is_root
    }

    /// Writes `<stem>.crt` (this certificate only, as a trust store wants it) and `<stem>.key`.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        write_pair(dir, stem, &self.cert_pem(), &self.key_pem())
    }

    fn sign(&self, spec: &LeafSpec, key: &KeyPair, signs_certificates: bool) -> Certificate {
        let mut params = spec.params(signs_certificates);
        // Lets OpenSSL and BoringSSL pick the right issuer when several share a name.
        params.use_authority_key_identifier_extension = true;
        params
            .signed_by(key, &self.cert, &self.key)
            .unwrap_or_else(|e| {
                panic!("{:?} signing {:?}: {e}", self.common_name, spec.common_name)
            })
    }

    /// The certificates a peer must send above a certificate this authority signs.
    fn chain_above_issued(&self) -> Vec<String> {
        if self.is_root {
            Vec::new()
        } else {
            let mut chain = vec![self.cert.pem()];
            chain.extend(self.parents.iter().cloned());
            chain
        }
    }
}

/// An issued certificate and its private key, ready to hand to a server or a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate alone, PEM.
    pub cert_pem: String,
    /// The certificate alone, DER.
    pub cert_der: Vec<u8>,
    /// The private key, PKCS#8 PEM.
    pub key_pem: String,
    /// The private key, PKCS#8 DER.
    pub key_der: Vec<u8>,
    /// The certificate followed by the issuing intermediates (leaf first, root excluded), PEM:
    /// what a server or client sends.
    pub chain_pem: String,
    /// `chain_pem` as DER, one entry per certificate, leaf first.
    pub chain_der: Vec<Vec<u8>>,
    /// The key type of `key_pem`.
    pub key_kind: KeyKind,
}

impl Issued {
    fn new(cert: &Certificate, key: &KeyPair, key_kind: KeyKind, chain: Vec<String>) -> Issued {
        let chain_der = chain.iter().map(|pem| pem_to_der(pem)).collect();
        Issued {
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            chain_pem: chain.concat(),
            chain_der,
            key_kind,
        }
    }

    /// A self-signed certificate as described by `spec`, e.g. a server certificate that no CA
    /// vouches for. Its key is never shared with any other certificate.
    pub fn self_signed(spec: &LeafSpec) -> Issued {
        let key = key::generate(spec.key, Freshness::Fresh);
        let cert = spec
            .params(spec.is_ca)
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-signing {:?}: {e}", spec.common_name));
        let chain = vec![cert.pem()];
        Issued::new(&cert, &key, spec.key, chain)
    }

    /// The same certificate with the private key replaced by a fresh, unrelated key of the same
    /// type: the "certificate and key do not match" case.
    pub fn with_mismatched_key(self) -> Issued {
        let key = key::generate(self.key_kind, Freshness::Fresh);
        Issued {
            key_pem: key.serialize_pem(),
            key_der: key.serialize_der(),
            ..self
        }
    }

    /// Writes `<stem>.crt` (the chain, leaf first) and `<stem>.key`, returning their paths.
    pub fn write(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        write_pair(dir, stem, &self.chain_pem, &self.key_pem)
    }
}

/// The DER of the first PEM block in `pem`, whatever its label.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    match x509_parser::pem::parse_x509_pem(pem.as_bytes()) {
        Ok((_, parsed)) => parsed.contents,
        Err(e) => panic!("re-reading a PEM certificate rcgen just wrote: {e}"),
    }
}

fn write_pair(dir: &Path, stem: &str, cert_pem: &str, key_pem: &str) -> (PathBuf, PathBuf) {
    let cert_path = dir.join(format!("{stem}.crt"));
    let key_path = dir.join(format!("{stem}.key"));
    write_file(&cert_path, cert_pem);
    write_file(&key_path, key_pem);
    restrict_to_owner(&key_path);
    (cert_path, key_path)
}

fn write_file(path: &Path, contents: &str) {
    fs::write(path, contents).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Private keys get mode 0600 because that is what operators do, and a host that refuses
/// group- or world-readable keys must not fail on test fixtures.
fn restrict_to_owner(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(path, fs::Permissions::from_mode(0o600))
            .unwrap_or_else(|e| panic!("chmod 600 {}: {e}", path.display()));
    }
    #[cfg(not(unix))]
    let _ = path;
}
