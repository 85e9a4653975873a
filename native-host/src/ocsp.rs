//! `mutual_tls_ocsp`: after the handshake, before a byte reaches the upstream, a verified client
//! certificate's status from its issuer's OCSP responder. Core builds the request, judges the
//! answer, caches it and says what it means ([`tlsgate_core::ocsp`]); this module asks over HTTP
//! under the endpoint's deadline.
//!
//! Each connection waits for its own answer only: no lock is held across the request, so a
//! slow responder delays the connections that need it and nobody else. Two connections that
//! miss the cache at once both ask (a responder sees at most one request per new connection).

use std::net::ToSocketAddrs;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;
use tlsgate_core::config::OcspCheck;
use tlsgate_core::facts::ClientCert;
use tlsgate_core::ocsp::{self, Cache, CertId, Outcome};
use tokio::net::TcpStream;

use crate::clock::unix_now;
use crate::keys::RustlsKeyCheck;

/// The largest answer read (a basic response with a responder certificate is a few KiB).
const MAX_RESPONSE: usize = 64 * 1024;

/// The process's OCSP answers, shared by every endpoint.
#[derive(Debug, Default)]
pub struct Ocsp {
    cache: Mutex<Cache>,
}

impl Ocsp {
    /// Applies an endpoint's check to a classified certificate. Returns the outcome for logs
    /// and metrics, `None` when nothing was asked (not a verified certificate).
    pub async fn judge(
        &self,
        check: &OcspCheck,
        cert: ClientCert,
        chain: &[CertificateDer<'_>],
        authorities: &[CertificateDer<'static>],
    ) -> (ClientCert, Option<Outcome>) {
        if !matches!(cert, ClientCert::Verified(_)) {
            return (cert, None);
        }
        let outcome = match chain.first() {
            Some(leaf) => self.status(check, leaf, chain, authorities).await,
            None => unavailable("ocsp_unavailable", "no certificate to ask about".into()),
        };
        (outcome.apply(check.mode, cert), Some(outcome))
    }

    async fn status(
        &self,
        check: &OcspCheck,
        leaf: &CertificateDer<'_>,
        chain: &[CertificateDer<'_>],
        authorities: &[CertificateDer<'static>],
    ) -> Outcome {
        let candidates = chain.iter().skip(1).chain(authorities).map(AsRef::as_ref);
        let Some(issuer) = ocsp::issuer_of(leaf, candidates) else {
            return unavailable(
                "ocsp_unavailable",
                "the certificate's issuer is not among the presented chain and the CAs".into(),
            );
        };
        let id = match CertId::new(leaf, issuer) {
            Ok(id) => id,
            Err(e) => return unavailable("ocsp_unavailable", e),
        };
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id, unix_now());
        if let Some(answer) = cached {
            return Outcome::of(&answer);
        }
        let Some(url) = check.responder.clone().or_else(|| ocsp::responder_of(leaf)) else {
            return unavailable(
                "ocsp_unavailable",
                "the certificate names no OCSP responder and the policy gives none".into(),
            );
        };
        let asked = tokio::time::timeout(check.timeout, post(&url, ocsp::request(&id)));
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
        let now = unix_now();
        match ocsp::check(&body, &id, issuer, now, &RustlsKeyCheck) {
            Ok(answer) => {
                self.cache
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id, answer, now);
                Outcome::of(&answer)
            }
            Err(e) => unavailable("ocsp_invalid_response", format!("{url}: {e}")),
        }
    }
}

fn unavailable(reason: &'static str, detail: String) -> Outcome {
    Outcome::Unavailable { reason, detail }
}

/// [`post`] within `timeout`.
pub(crate) async fn fetch(
    url: &str,
    request: Vec<u8>,
    timeout: std::time::Duration,
) -> Result<Bytes, String> {
    tokio::time::timeout(timeout, post(url, request))
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {timeout:?}")))
}

/// POSTs `request` to the responder at `url` (`http://host[:port][/path]`) and returns the
/// body of a `200` answer.
async fn post(url: &str, request: Vec<u8>) -> Result<Bytes, String> {
    let responder = ocsp::Responder::parse(url)?;
    let target = (responder.host.clone(), responder.port);
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
    let req = http::Request::post(responder.path.as_str())
        .header(http::header::HOST, responder.authority())
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
