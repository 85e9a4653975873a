//! Certificate revocation lists for client certificates.
//!
//! Both hosts hand the same CRLs to their TLS stack (rustls' webpki verifier natively,
//! BoringSSL's `crl` in the generated Envoy config), so a revoked certificate fails the chain
//! check in either. Core then classifies every presented certificate against the same lists
//! ([`Revocation::status`]) on every connection, for three reasons the TLS stacks cannot cover:
//! a resumed session carries the verdict of its first handshake (a certificate revoked since
//! then would pass), the filter only learns "not valid" from Envoy and must still say *why*
//! in both hosts alike, and a CRL that went stale while the process ran must refuse, not pass.
//!
//! The model, in one place:
//! - every configured CA must have a CRL (checked at load): a CA without one would make every
//!   certificate it issued "status unknown", refused by both TLS stacks;
//! - a CRL must be signed by the configured CA whose name it carries (the host checks the
//!   signature, core has no signature code) and must have a `nextUpdate`;
//! - past its `nextUpdate` a CRL no longer says anything: certificates it covers are refused
//!   (`revocation_unknown`) until a fresh one is loaded. At load time that is an error.

use std::collections::HashSet;

use rustls_pki_types::CertificateRevocationListDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

use crate::encoding::hex;
use crate::facts::{serial_spelling, ChainCheck, ClientCert, ClientCertFacts, Unverified};
use crate::pem::Origin;

/// Which certificates of a client's chain are checked against the CRLs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationDepth {
    /// Every certificate below the trust anchor (leaf and intermediates); the default, and
    /// what both TLS stacks do by default.
    Chain,
    /// The client certificate only (Envoy's `only_verify_leaf_cert_crl`).
    Leaf,
}

impl RevocationDepth {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Chain => "chain",
            Self::Leaf => "leaf",
        }
    }
}

/// The CRLs of one endpoint.
#[derive(Clone, Debug)]
pub struct Revocation {
    pub lists: Vec<RevocationList>,
    pub depth: RevocationDepth,
}

/// One parsed CRL.
#[derive(Clone, Debug)]
pub struct RevocationList {
    pub der: CertificateRevocationListDer<'static>,
    pub origin: Origin,
    /// Whether it was read from PEM (Envoy reads PEM CRL files only).
    pub pem: bool,
    /// RFC 4514 form of the issuer, for messages.
    pub issuer: String,
    /// The issuer name's DER, compared with a certificate's issuer as webpki does.
    pub issuer_der: Vec<u8>,
    /// Seconds since the Unix epoch.
    pub this_update: i64,
    pub next_update: i64,
    /// The CRL number, hex, when the CRL has one.
    pub number: Option<String>,
    /// Revoked serial numbers in [`ClientCertFacts::serial_number`]'s spelling.
    revoked: HashSet<String>,
}

/// What the CRLs say about one certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevocationStatus {
    /// Its issuer's CRL is current and does not list it.
    Good,
    /// Its issuer's CRL lists it.
    Revoked,
    /// No current CRL of its issuer: the list is past its `nextUpdate`, or none was
    /// configured for that issuer.
    Unknown,
}

impl RevocationList {
    /// Parses one CRL (DER). Errors say what is wrong in words a person can act on.
    pub fn parse(der: &[u8], origin: Origin) -> Result<Self, String> {
        let (rest, crl) = CertificateRevocationList::from_der(der)
            .map_err(|e| format!("not a certificate revocation list: {e}"))?;
        if !rest.is_empty() {
            return Err("trailing bytes after the certificate revocation list".into());
        }
        let next_update = crl.next_update().ok_or(
            "it has no nextUpdate, so nothing says when it stops being current \
             (RFC 5280 requires one)",
        )?;
        let revoked = crl
            .iter_revoked_certificates()
            .map(|r| serial_spelling(&r.serial().to_bytes_be()))
            .collect();
        Ok(Self {
            der: CertificateRevocationListDer::from(der.to_vec()),
            origin,
            pem: false,
            issuer: crl.issuer().to_string(),
            issuer_der: crl.issuer().as_raw().to_vec(),
            this_update: crl.last_update().timestamp(),
            next_update: next_update.timestamp(),
            number: crl.crl_number().map(|n| hex(&n.to_bytes_be())),
            revoked,
        })
    }

    /// How many certificates it revokes.
    pub fn len(&self) -> usize {
        self.revoked.len()
    }

    pub fn is_empty(&self) -> bool {
        self.revoked.is_empty()
    }

    /// Whether this CRL is past its `nextUpdate` at `now` (seconds since the epoch).
    pub fn is_stale(&self, now: i64) -> bool {
        now > self.next_update
    }
}

impl Revocation {
    /// The status of a client certificate at `now`, from the CRL of its issuer.
    pub fn status(&self, cert: &ClientCertFacts, now: i64) -> RevocationStatus {
        let Some(list) = self
            .lists
            .iter()
            .filter(|l| l.issuer_der == cert.issuer_der)
            .max_by_key(|l| l.this_update)
        else {
            return RevocationStatus::Unknown;
        };
        if list.revoked.contains(&cert.serial_number) {
            RevocationStatus::Revoked
        } else if list.is_stale(now) {
            RevocationStatus::Unknown
        } else {
            RevocationStatus::Good
        }
    }

    /// Whether any list is from the certificate's issuer.
    pub fn covers(&self, cert: &ClientCertFacts) -> bool {
        self.lists.iter().any(|l| l.issuer_der == cert.issuer_der)
    }

    /// The DER of every list, for the host's TLS stack.
    pub fn ders(&self) -> Vec<CertificateRevocationListDer<'static>> {
        self.lists.iter().map(|l| l.der.clone()).collect()
    }

    /// The CRLs as one PEM bundle (Envoy's `crl`, the filter's copy of the policy).
    pub fn to_pem(&self) -> String {
        self.lists
            .iter()
            .map(|l| crate::encoding::pem("X509 CRL", l.der.as_ref()))
            .collect()
    }
}

// Classifying a presented certificate consults its CRLs, so it is defined here, above both
// facts (the data) and the lists; it stays `ClientCert::presented` for every caller.
impl ClientCert {
    /// Classifies a presented certificate the same way in every host; `now` is seconds since
    /// the Unix epoch.
    ///
    /// With CRLs configured, a certificate they list is [`Unverified::Revoked`] whatever the
    /// TLS stack found (its chain check fails too, and a resumed session's does not run), and
    /// one whose issuer has no current CRL is [`Unverified::RevocationUnknown`] unless its
    /// chain was not trusted anyway.
    pub fn presented(
        facts: Box<ClientCertFacts>,
        chain: ChainCheck,
        now: i64,
        revocation: Option<&Revocation>,
    ) -> Self {
        if facts.is_ca || facts.legacy_v1 {
            return Self::Unverified(facts, Unverified::NotEndEntity);
        }
        if let (Some(revocation), ChainCheck::Trusted | ChainCheck::Untrusted) = (revocation, chain)
        {
            match revocation.status(&facts, now) {
                RevocationStatus::Revoked => return Self::Unverified(facts, Unverified::Revoked),
                RevocationStatus::Unknown
                    if chain == ChainCheck::Trusted || revocation.covers(&facts) =>
                {
                    return Self::Unverified(facts, Unverified::RevocationUnknown)
                }
                RevocationStatus::Unknown | RevocationStatus::Good => {}
            }
        }
        match chain {
            ChainCheck::Trusted if now < facts.not_before || now > facts.not_after => {
                Self::Unverified(facts, Unverified::OutsideValidity)
            }
            ChainCheck::Trusted => Self::Verified(facts),
            ChainCheck::Untrusted => Self::Unverified(facts, Unverified::UntrustedIssuer),
            ChainCheck::NotChecked => Self::Unverified(facts, Unverified::NotChecked),
        }
    }
}

/// Every CRL in `bytes`: PEM (`X509 CRL` blocks, any number) or a single DER CRL.
pub(crate) fn parse_lists(bytes: &[u8], origin: &Origin) -> Result<Vec<RevocationList>, String> {
    let looks_pem = bytes.windows(10).any(|w| w == b"-----BEGIN");
    if !looks_pem {
        return RevocationList::parse(bytes, origin.clone()).map(|l| vec![l]);
    }
    use rustls_pki_types::pem::PemObject;
    let ders = CertificateRevocationListDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("not valid PEM: {e}"))?;
    if ders.is_empty() {
        return Err("holds no PEM `X509 CRL` block (nor is it a DER CRL)".into());
    }
    ders.iter()
        .enumerate()
        .map(|(n, der)| {
            RevocationList::parse(der.as_ref(), origin.clone())
                .map(|list| RevocationList { pem: true, ..list })
                .map_err(|e| format!("CRL #{} in it: {e}", n + 1))
        })
        .collect()
}

/// The subject name DER and SubjectPublicKeyInfo DER of a CA certificate.
pub(crate) fn subject_and_key(ca: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (_, cert) = X509Certificate::from_der(ca).ok()?;
    Some((
        cert.subject().as_raw().to_vec(),
        cert.tbs_certificate.subject_pki.raw.to_vec(),
    ))
}
