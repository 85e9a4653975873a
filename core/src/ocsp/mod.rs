//! OCSP (RFC 6960) for client certificates: the request a host sends to the issuer's responder,
//! and the judgement of the answer — signed by the issuer or by a responder it delegated to,
//! about this certificate, current — as pure functions over DER. The host does the HTTP and
//! lends its signature check ([`crate::HostCrypto::verify_signature`]).
//!
//! Only what a client-certificate check needs is implemented: one certificate per request,
//! SHA-1 `CertID`s (what every responder answers, `openssl ocsp` included), no nonce (answers
//! are cached until their `nextUpdate`, which a nonce would defeat; RFC 5019 drops it too).

use rustls_pki_types::SignatureVerificationAlgorithm;
use sha1_smol::Sha1;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::crypto::{verify_certificate_signature, HostCrypto};
use crate::der::{tlv, Reader};
use crate::facts::{ClientCert, Unverified};
use crate::quoted::Quoted;

mod response;

use response::basic_response;

/// `id-ad-ocsp` in an Authority Information Access extension.
const AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";
/// `id-kp-OCSPSigning`: the extended key usage of a delegated responder's certificate.
const OCSP_SIGNING: &str = "1.3.6.1.5.5.7.3.9";
/// `id-pkix-ocsp-basic`, the only response type there is.
const BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// `id-sha1` with NULL parameters, as an AlgorithmIdentifier's contents.
const SHA1_ALG: &[u8] = &[0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00];
/// How far a responder's clock may run ahead of ours.
const CLOCK_SKEW: i64 = 300;
/// How long an answer without `nextUpdate` may be used (and cached).
pub const WITHOUT_NEXT_UPDATE: i64 = 300;

/// Which certificate a request or an answer is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CertId {
    issuer_name_hash: [u8; 20],
    issuer_key_hash: [u8; 20],
    /// The serial number's INTEGER contents, as the certificate encodes them.
    serial: Vec<u8>,
}

impl CertId {
    /// The id of `leaf` (DER), issued by `issuer` (DER).
    pub fn new(leaf: &[u8], issuer: &[u8]) -> Result<Self, String> {
        let (_, leaf) = X509Certificate::from_der(leaf)
            .map_err(|e| format!("the client certificate cannot be parsed: {e}"))?;
        let (_, issuer) = X509Certificate::from_der(issuer)
            .map_err(|e| format!("the issuer's certificate cannot be parsed: {e}"))?;
        if leaf.issuer().as_raw() != issuer.subject().as_raw() {
            return Err("the certificate was not issued by that CA".into());
        }
        Ok(Self {
            issuer_name_hash: Sha1::from(issuer.subject().as_raw()).digest().bytes(),
            issuer_key_hash: Sha1::from(&*issuer.public_key().subject_public_key.data)
                .digest()
                .bytes(),
            serial: leaf.tbs_certificate.raw_serial().to_vec(),
        })
    }

    fn der(&self) -> Vec<u8> {
        tlv(
            0x30,
            &[
                tlv(0x30, SHA1_ALG),
                tlv(0x04, &self.issuer_name_hash),
                tlv(0x04, &self.issuer_key_hash),
                tlv(0x02, &self.serial),
            ]
            .concat(),
        )
    }
}

/// The OCSP request (DER) for one certificate: POST it as `application/ocsp-request`.
pub fn request(id: &CertId) -> Vec<u8> {
    let one = tlv(0x30, &id.der());
    let list = tlv(0x30, &one);
    let tbs = tlv(0x30, &list);
    tlv(0x30, &tbs)
}

/// The request target that asks `responder` for `request` by GET (RFC 6960 appendix A.1): the
/// responder's path, then the URL-encoded base64 of the request. Envoy's async client cannot
/// hold a request body while its cluster resolves a host (the dynamic forward proxy the
/// filter reaches certificates' own responders through), so the filter asks those by GET.
pub fn get_target(responder: &Responder, request: &[u8]) -> String {
    let encoded: String = crate::encoding::base64(request)
        .chars()
        .map(|c| match c {
            '+' => "%2B".to_owned(),
            '/' => "%2F".to_owned(),
            '=' => "%3D".to_owned(),
            c => c.to_string(),
        })
        .collect();
    let slash = if responder.path.ends_with('/') {
        ""
    } else {
        "/"
    };
    format!("{}{slash}{encoded}", responder.path)
}

/// What the responder says about the certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Good,
    /// Revoked at this time (seconds since the epoch).
    Revoked(i64),
    /// The responder does not know the certificate.
    Unknown,
}

/// A checked answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Answer {
    pub status: Status,
    pub this_update: i64,
    /// Until when the answer may be used: its `nextUpdate`, or [`WITHOUT_NEXT_UPDATE`] from
    /// `now` when the responder gives none.
    pub valid_until: i64,
}

/// What a missing, late or invalid answer means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcspMode {
    /// The certificate is no identity (require-and-verify refuses the connection).
    Require,
    /// The connection goes on as if the certificate were good; the log says why.
    Prefer,
}

impl OcspMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Require => "require",
            Self::Prefer => "prefer",
        }
    }
}

/// An OCSP responder's `http://host[:port][/path]` URL, parsed once for every host: the
/// native client, the filter's `dispatch_http_call`, and the cluster the generator declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Responder {
    /// The name or address, IPv6 without brackets.
    pub host: String,
    pub port: u16,
    /// The request target, `/` at least.
    pub path: String,
}

impl Responder {
    pub fn parse(url: &str) -> Result<Self, String> {
        // As `ConfigErrorKind::BadUrl` prints it: the URL quoted, then what is wrong with it.
        Self::parse_checked(url).map_err(|problem| format!("`{}`{problem}", Quoted::from(url)))
    }

    /// [`Responder::parse`], saying what is wrong with the URL (printed after it).
    pub(crate) fn parse_checked(url: &str) -> Result<Self, crate::url::UrlProblem> {
        let parsed = crate::url::parse_url(url)?;
        if parsed.scheme() != "http" {
            return Err(crate::url::UrlProblem::OcspNotHttp);
        }
        Ok(Self {
            host: parsed.host().to_owned(),
            port: parsed.port().unwrap_or(80),
            path: match parsed.path() {
                "" => "/".to_owned(),
                path => path.to_owned(),
            },
        })
    }

    /// `Host` / `:authority`: the host, with the port unless it is 80.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 80 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// What an endpoint's check concluded for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Good,
    Revoked,
    /// No valid answer: the responder is down, late, does not know the certificate, or answered
    /// something that does not check out. `reason` labels logs and metrics.
    Unavailable {
        reason: &'static str,
        detail: String,
    },
}

impl Outcome {
    /// The outcome of a checked answer.
    pub fn of(answer: &Answer) -> Self {
        match answer.status {
            Status::Good => Self::Good,
            Status::Revoked(_) => Self::Revoked,
            Status::Unknown => Self::Unavailable {
                reason: "ocsp_unknown_certificate",
                detail: "the responder does not know the certificate".into(),
            },
        }
    }

    /// `good`, `revoked`, or why there was no valid answer.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Good => "good",
            Self::Revoked => "revoked",
            Self::Unavailable { reason, .. } => reason,
        }
    }

    /// What the certificate is after this outcome under `mode`: a revoked one, and in `require`
    /// mode one without a valid answer, is no identity; the rest stands. Both hosts apply it, so
    /// the strategy then decides the same way in both.
    pub fn apply(&self, mode: OcspMode, cert: ClientCert) -> ClientCert {
        let ClientCert::Verified(facts) = cert else {
            return cert;
        };
        match (self, mode) {
            (Self::Good, _) | (Self::Unavailable { .. }, OcspMode::Prefer) => {
                ClientCert::Verified(facts)
            }
            (Self::Revoked, _) => ClientCert::Unverified(facts, Unverified::Revoked),
            (Self::Unavailable { .. }, OcspMode::Require) => {
                ClientCert::Unverified(facts, Unverified::StatusUnavailable)
            }
        }
    }
}

/// The certificate among `candidates` (DER) that issued `leaf`: the first whose subject is the
/// leaf's issuer. Hosts pass the chain the client sent (after the leaf), then the endpoint's CAs.
pub fn issuer_of<'a>(
    leaf: &[u8],
    candidates: impl IntoIterator<Item = &'a [u8]>,
) -> Option<&'a [u8]> {
    let (_, leaf) = X509Certificate::from_der(leaf).ok()?;
    let wanted = leaf.issuer().as_raw();
    candidates.into_iter().find(|der| {
        X509Certificate::from_der(der).is_ok_and(|(_, c)| c.subject().as_raw() == wanted)
    })
}

/// The URL of the `http://` OCSP responder a certificate names (Authority Information Access).
pub fn responder_of(leaf: &[u8]) -> Option<String> {
    use x509_parser::prelude::{GeneralName, ParsedExtension};
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    cert.extensions()
        .iter()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityInfoAccess(aia) => {
                aia.accessdescs.iter().find_map(|d| {
                    match (
                        &d.access_location,
                        d.access_method.to_id_string() == AD_OCSP,
                    ) {
                        (GeneralName::URI(uri), true) if uri.starts_with("http://") => {
                            Some((*uri).to_owned())
                        }
                        _ => None,
                    }
                })
            }
            _ => None,
        })
}

/// Checked answers by certificate, until their `valid_until`; at most [`Cache::MAX`] (past it,
/// expired ones go, and new ones are not kept until there is room: a miss only asks again).
/// Only checked answers go in: a failure is never cached, so the next connection asks again.
#[derive(Debug, Default)]
pub struct Cache {
    answers: std::collections::HashMap<CertId, Answer>,
}

impl Cache {
    pub const MAX: usize = 10_000;

    pub fn get(&self, id: &CertId, now: i64) -> Option<Answer> {
        self.answers
            .get(id)
            .copied()
            .filter(|a| a.valid_until >= now)
    }

    pub fn insert(&mut self, id: CertId, answer: Answer, now: i64) {
        if self.answers.len() >= Self::MAX {
            self.answers.retain(|_, a| a.valid_until >= now);
        }
        if self.answers.len() < Self::MAX {
            self.answers.insert(id, answer);
        }
    }
}

/// Judges `response` (DER, as the responder sent it) about `id`, issued by `issuer` (DER), at
/// `now`: the responder succeeded, the response is signed by the issuer's key or by a
/// certificate the issuer signed for OCSP signing (valid now), it names this certificate, and
/// it is current. Anything else is an error that says why; an error is never a status.
pub fn check(
    response: &[u8],
    id: &CertId,
    issuer: &[u8],
    now: i64,
    crypto: &dyn HostCrypto,
) -> Result<Answer, String> {
    let basic = basic_response(response)?;
    let (_, issuer) = X509Certificate::from_der(issuer)
        .map_err(|e| format!("the issuer's certificate cannot be parsed: {e}"))?;
    let issuer_spki = issuer.public_key().raw;
    let by_issuer =
        crypto.verify_signature(issuer_spki, basic.algorithm, basic.tbs, basic.signature);
    if let Err(issuer_error) = by_issuer {
        let delegated = basic
            .certs
            .iter()
            .find_map(|der| delegated_signer(der, &issuer, now, crypto).ok());
        let Some(spki) = delegated else {
            return Err(format!(
                "the response is signed neither by the issuer ({issuer_error}) nor by a \
                 responder the issuer delegated to"
            ));
        };
        crypto
            .verify_signature(&spki, basic.algorithm, basic.tbs, basic.signature)
            .map_err(|e| format!("the delegated responder's signature does not verify: {e}"))?;
    }
    let single = basic
        .responses
        .iter()
        .find(|r| r.id == *id)
        .ok_or("the response is not about this certificate")?;
    if single.this_update > now + CLOCK_SKEW {
        return Err("the response's thisUpdate is in the future".into());
    }
    let valid_until = match single.next_update {
        Some(next) if next < now => {
            return Err(format!(
                "the response is stale (nextUpdate {} s ago)",
                now - next
            ))
        }
        Some(next) => next,
        None => now + WITHOUT_NEXT_UPDATE,
    };
    Ok(Answer {
        status: single.status,
        this_update: single.this_update,
        valid_until,
    })
}

/// A signature check over webpki-style algorithms (rustls' providers, or pure-Rust ones where
/// those do not build): the algorithm whose signature and public-key identifiers are
/// `algorithm`'s (an AlgorithmIdentifier, DER) and `spki`'s verifies `signature` over `message`.
pub fn verify_with(
    algorithms: &[&dyn SignatureVerificationAlgorithm],
    spki: &[u8],
    algorithm: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<(), String> {
    let mut key = Reader::new(spki)
        .sequence()
        .ok_or("the public key is not a SubjectPublicKeyInfo")?;
    let key_algorithm = key.expect(0x30).ok_or("the public key has no algorithm")?;
    let Some([0, key_bits @ ..]) = key.expect(0x03) else {
        return Err("the public key has no key bits".into());
    };
    let signature_algorithm = Reader::new(algorithm)
        .expect(0x30)
        .ok_or("the signature algorithm is not an AlgorithmIdentifier")?;
    let verifier = algorithms
        .iter()
        .find(|a| {
            a.signature_alg_id().as_ref() == signature_algorithm
                && a.public_key_alg_id().as_ref() == key_algorithm
        })
        .ok_or("an unsupported signature algorithm or key type")?;
    verifier
        .verify_signature(key_bits, message, signature)
        .map_err(|_| "the signature does not verify".to_owned())
}

/// The public key (SPKI, DER) of a delegated responder's certificate: issued and signed by
/// `issuer`, for OCSP signing, valid at `now`.
fn delegated_signer(
    der: &[u8],
    issuer: &X509Certificate<'_>,
    now: i64,
    crypto: &dyn HostCrypto,
) -> Result<Vec<u8>, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return Err("not issued by the certificate's issuer".into());
    }
    let ocsp_signing = cert
        .extended_key_usage()
        .ok()
        .flatten()
        .is_some_and(|eku| eku.value.ocsp_signing);
    if !ocsp_signing {
        return Err(format!("no {OCSP_SIGNING} extended key usage"));
    }
    let validity = cert.validity();
    if now < validity.not_before.timestamp() || now > validity.not_after.timestamp() {
        return Err("outside its validity".into());
    }
    verify_certificate_signature(der, issuer.public_key().raw, crypto)?;
    Ok(cert.public_key().raw.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::der::generalized_time;

    #[test]
    fn the_reader_refuses_lengths_past_the_end() {
        assert!(Reader::new(&[0x30, 0x05, 0x01]).next().is_none());
        assert!(Reader::new(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff])
            .next()
            .is_none());
        assert!(Reader::new(&[0x30]).next().is_none());
        let mut r = Reader::new(&[0x04, 0x01, 0xaa, 0x05, 0x00]);
        assert_eq!(r.expect(0x04), Some(&[0xaa][..]));
        assert_eq!(
            r.optional(0x04),
            None,
            "optional consumes nothing on a mismatch"
        );
        assert_eq!(r.expect(0x05), Some(&[][..]));
    }

    #[test]
    fn long_lengths_round_trip() {
        let contents = vec![7u8; 300];
        let der = tlv(0x04, &contents);
        assert_eq!(&der[..4], &[0x04, 0x82, 0x01, 0x2c]);
        assert_eq!(Reader::new(&der).expect(0x04), Some(&contents[..]));
    }

    #[test]
    fn responder_urls() {
        let r = Responder::parse("http://ocsp.example.com/ca1").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("ocsp.example.com", 80, "/ca1")
        );
        assert_eq!(r.authority(), "ocsp.example.com");
        let r = Responder::parse("http://[::1]:8888").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_str()),
            ("::1", 8888, "/")
        );
        assert_eq!(r.authority(), "[::1]:8888");
        assert!(Responder::parse("https://ocsp.example.com/").is_err());
        assert!(Responder::parse("ocsp.example.com").is_err());
    }

    #[test]
    fn get_targets_carry_the_request_url_encoded_under_the_responders_path() {
        let at = |url: &str| Responder::parse(url).unwrap_or_else(|e| panic!("{e}"));
        // base64 of fb ff fe is "+//+": every character that needs escaping.
        let request = [0xfb, 0xff, 0xfe, 0x00];
        assert_eq!(
            get_target(&at("http://ocsp.example.com"), &request),
            "/%2B%2F%2F%2BAA%3D%3D"
        );
        assert_eq!(
            get_target(&at("http://ocsp.example.com/ca1"), &request),
            "/ca1/%2B%2F%2F%2BAA%3D%3D"
        );
        assert_eq!(
            get_target(&at("http://ocsp.example.com/ca1/"), &request),
            "/ca1/%2B%2F%2F%2BAA%3D%3D"
        );
    }

    #[test]
    fn generalized_times() {
        assert_eq!(generalized_time(b"20260101000000Z"), Some(1_767_225_600));
        assert_eq!(
            generalized_time(b"20260101000000.123Z"),
            Some(1_767_225_600)
        );
        assert_eq!(generalized_time(b"20260101000000"), None);
    }

    #[test]
    fn a_failed_responder_status_is_an_error_not_a_status() {
        // OCSPResponse { responseStatus tryLater }
        let der = [0x30, 0x03, 0x0a, 0x01, 0x03];
        let e = basic_response(&der).err().unwrap_or_default();
        assert!(e.contains("tryLater"), "{e}");
        assert!(basic_response(&[0x30, 0x00]).is_err());
    }
}
