//! `mutual_tls_ocsp`: after the handshake, before a byte reaches the upstream, a verified client
//! certificate's status from its issuer's OCSP responder. Core builds the request and judges
//! the answer ([`tlsgate_core::ocsp`]); this module asks over HTTP under the endpoint's deadline
//! and caches answers until their `nextUpdate`.
//!
//! Each connection waits for its own answer only: no lock is held across the request, so a
//! slow responder delays the connections that need it and nobody else. Two connections that
//! miss the cache at once both ask (a responder sees at most one request per new connection).

use std::collections::HashMap;
use std::net::ToSocketAddrs;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tlsgate_core::config::{OcspCheck, OcspMode};
use tlsgate_core::facts::{ClientCert, Unverified};
use tlsgate_core::ocsp::{self, Answer, CertId, Status};
use tokio::net::TcpStream;
use x509_parser::prelude::{FromDer, GeneralName, ParsedExtension, X509Certificate};

use crate::keys::RustlsKeyCheck;
use crate::tls::unix_now;

/// Answers kept at most; past it, expired ones are dropped and new ones not kept until there
/// is room (a bound on memory, not a correctness matter: a miss asks again).
const CACHE_MAX: usize = 10_000;
/// The largest answer read (a basic response with a responder certificate is a few KiB).
const MAX_RESPONSE: usize = 64 * 1024;
/// `id-ad-ocsp` in an Authority Information Access extension.
const AD_OCSP: &str = "1.3.6.1.5.5.7.48.1";

/// What the responder's answer means for one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Good,
    Revoked,
    /// No valid answer: the responder is down, late, answered something invalid, or does not
    /// know the certificate. `reason` labels logs.
    Unavailable {
        reason: &'static str,
        detail: String,
    },
}

/// The process's OCSP client and cache, shared by every endpoint.
#[derive(Debug, Default)]
pub struct Ocsp {
    cache: Mutex<HashMap<CertId, Answer>>,
}

impl Ocsp {
    /// Applies an endpoint's check to a classified certificate: a revoked one, or (in
    /// `require` mode) one without a valid answer, is no identity any more; the rest stands.
    /// Returns the outcome for logs, `None` when nothing was asked (not a verified certificate).
    pub async fn judge(
        &self,
        check: &OcspCheck,
        cert: ClientCert,
        chain: &[CertificateDer<'_>],
        authorities: &[CertificateDer<'static>],
    ) -> (ClientCert, Option<Outcome>) {
        let ClientCert::Verified(facts) = cert else {
            return (cert, None);
        };
        let outcome = match chain.first() {
            Some(leaf) => self.status(check, leaf, chain, authorities).await,
            None => Outcome::Unavailable {
                reason: "ocsp_unavailable",
                detail: "no certificate to ask about".into(),
            },
        };
        let cert = match (&outcome, check.mode) {
            (Outcome::Good, _) | (Outcome::Unavailable { .. }, OcspMode::Prefer) => {
                ClientCert::Verified(facts)
            }
            (Outcome::Revoked, _) => ClientCert::Unverified(facts, Unverified::Revoked),
            (Outcome::Unavailable { .. }, OcspMode::Require) => {
                ClientCert::Unverified(facts, Unverified::StatusUnavailable)
            }
        };
        (cert, Some(outcome))
    }

    async fn status(
        &self,
        check: &OcspCheck,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        authorities: &[CertificateDer<'static>],
    ) -> Outcome {
        let unavailable =
            |reason: &'static str, detail: String| Outcome::Unavailable { reason, detail };
        let Some(issuer) = issuer_of(leaf, chain, authorities) else {
            return unavailable(
                "ocsp_unavailable",
                "the certificate's issuer is not among the presented chain and the CAs".into(),
            );
        };
        let id = match CertId::new(leaf, &issuer) {
            Ok(id) => id,
            Err(e) => return unavailable("ocsp_unavailable", e),
        };
        let now = unix_now();
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .copied()
            .filter(|a| a.valid_until >= now);
        let answer = match cached {
            Some(answer) => answer,
            None => {
                let url = match check.responder.clone().or_else(|| responder_of(leaf)) {
                    Some(url) => url,
                    None => {
                        return unavailable(
                            "ocsp_unavailable",
                            "the certificate names no OCSP responder and the policy gives none"
                                .into(),
                        )
                    }
                };
                let asked = tokio::time::timeout(check.timeout, fetch(&url, ocsp::request(&id)));
                let body = match asked.await {
                    Ok(Ok(body)) => body,
                    Ok(Err(e)) => return unavailable("ocsp_unavailable", format!("{url}: {e}")),
                    Err(_) => {
                        return unavailable(
                            "ocsp_timeout",
                            format!("{url}: no answer within {:?}", check.timeout),
                        )
                    }
                };
                match ocsp::check(&body, &id, &issuer, unix_now(), &RustlsKeyCheck) {
                    Ok(answer) => {
                        self.remember(id, answer, now);
                        answer
                    }
                    Err(e) => return unavailable("ocsp_invalid_response", format!("{url}: {e}")),
                }
            }
        };
        match answer.status {
            Status::Good => Outcome::Good,
            Status::Revoked(_) => Outcome::Revoked,
            Status::Unknown => unavailable(
                "ocsp_unknown_certificate",
                "the responder does not know the certificate".into(),
            ),
        }
    }

    fn remember(&self, id: CertId, answer: Answer, now: i64) {
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, a| a.valid_until >= now);
        }
        if cache.len() < CACHE_MAX {
            cache.insert(id, answer);
        }
    }
}

/// The certificate that issued `leaf`: the next one the client presented with that subject,
/// else a configured CA with it.
fn issuer_of(
    leaf: &CertificateDer<'_>,
    chain: &[CertificateDer<'_>],
    authorities: &[CertificateDer<'static>],
) -> Option<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(leaf).ok()?;
    let wanted = cert.issuer().as_raw();
    chain
        .iter()
        .skip(1)
        .chain(authorities.iter())
        .find(|c| X509Certificate::from_der(c).is_ok_and(|(_, c)| c.subject().as_raw() == wanted))
        .map(|c| c.to_vec())
}

/// The `http://` OCSP responder the certificate names (Authority Information Access).
fn responder_of(leaf: &CertificateDer<'_>) -> Option<String> {
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

/// POSTs `request` to the responder at `url` (`http://host[:port][/path]`) and returns the
/// body of a `200` answer.
async fn fetch(url: &str, request: Vec<u8>) -> Result<Bytes, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// responders are asked")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        && !authority.ends_with(']')
    {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    // Resolution may block: keep it off the runtime's threads.
    let addr = tokio::task::spawn_blocking(move || target.to_socket_addrs().map(|mut a| a.next()))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("resolving: {e}"))?
        .ok_or("the responder's name resolves to nothing")?;
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let req = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/ocsp-request")
        .header(http::header::ACCEPT, "application/ocsp-response")
        .body(Full::new(Bytes::from(request)))
        .map_err(|e| e.to_string())?;
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("the responder answered {}", response.status()));
    }
    Limited::new(response.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .map_err(|e| format!("reading the answer: {e}"))
}
