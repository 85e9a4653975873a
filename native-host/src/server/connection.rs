//! One connection from accept to close: the ClientHello, routing by SNI, the handshake, the
//! facts and OCSP, `on_tcp_connect`, then the https or tls side in a task of its own. A refused
//! connection lingers so the client reads the alert.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use rustls::server::Acceptor;
use tlsgate_core::config::{ClientAuth, Scheme};
use tlsgate_core::facts::escape_control;
use tlsgate_core::facts::ClientCert;
use tlsgate_core::ocsp::Outcome;
use tlsgate_core::policy::{connection_labels, NO_ENDPOINT};
use tlsgate_core::{Session, Verdict};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};

use super::accept::SourceGuard;
use super::Shared;
use crate::http::HttpConnection;
use crate::io::HelloTap;
use crate::metrics::{Metrics, UpstreamErrorLabels, VerdictLabels};
use crate::runtime::Runtime;
use crate::tcp;
use crate::upstream::tls_error;

/// Counts an open connection in the gauge for as long as it lives.
struct ActiveGuard(Arc<Metrics>);

impl ActiveGuard {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.active_connections.inc();
        Self(metrics.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_connections.dec();
    }
}

/// A fatal `unrecognized_name` alert as a TLS record: rustls has no API to refuse a ClientHello
/// once it has been read, and a clear alert beats a bare reset.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// One connection from accept to close. `addresses` are the client's and, from a PROXY
/// protocol header, the address it connected to (else the socket's own).
pub(super) async fn connection(
    shared: Arc<Shared>,
    runtime: Arc<Runtime>,
    bind: SocketAddr,
    stream: TcpStream,
    addresses: (SocketAddr, Option<SocketAddr>),
    accepted: tokio::time::Instant,
    (permit, source): (OwnedSemaphorePermit, SourceGuard),
) {
    let active = ActiveGuard::new(&shared.metrics);
    let limits = shared.limits;
    let metrics = &shared.metrics;
    let (peer, local) = addresses;
    let deadline = accepted + limits.handshake;
    // A socket that says nothing holds a slot for the (short) ClientHello deadline only.
    let hello_deadline = accepted + limits.client_hello.min(limits.handshake);

    let acceptor = LazyConfigAcceptor::new(
        Acceptor::default(),
        HelloTap::new(stream, runtime.reads_ja4),
    );
    let (mut start, hello) = match tokio::time::timeout_at(hello_deadline, acceptor).await {
        Ok(Ok(start)) => {
            let (io, hello) = start.io.into_parts();
            (StartHandshake::from_parts(start.accepted, io), hello)
        }
        Ok(Err(e)) => {
            let reason = handshake_reason(&e);
            tracing::info!(%peer, reason, "handshake failed before ClientHello: {e}");
            metrics.handshake(NO_ENDPOINT, "failed", reason);
            return;
        }
        Err(_) => {
            tracing::info!(%peer, reason = "client_hello_timeout", "no ClientHello within {:?}; closing", limits.client_hello);
            metrics.handshake(NO_ENDPOINT, "failed", "client_hello_timeout");
            return;
        }
    };
    let sni = start
        .client_hello()
        .server_name()
        .map(tlsgate_core::sni::normalize);
    let routed = runtime
        .policy
        .listeners()
        .iter()
        .find(|l| l.bind == bind)
        .and_then(|l| l.route(sni.as_deref()))
        .and_then(|i| runtime.endpoints.get(i));
    let Some(endpoint) = routed else {
        tracing::info!(
            %peer,
            sni = sni.as_deref().unwrap_or("-"),
            reason = "unknown_server_name",
            "handshake refused: no endpoint on {bind} serves this server name"
        );
        metrics.handshake(NO_ENDPOINT, "refused", "unknown_server_name");
        let _ = tokio::time::timeout_at(deadline, async {
            let _ = start.io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
            let _ = start.io.shutdown().await;
        })
        .await;
        return;
    };
    let endpoint = endpoint.clone();
    let handshake = start
        .into_stream(endpoint.server_tls.config.clone())
        .into_fallible();
    let tls = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((e, mut io))) => {
            let reason = handshake_reason(&e);
            tracing::info!(
                %peer,
                endpoint = %endpoint.label(),
                sni = sni.as_deref().unwrap_or("-"),
                reason,
                "handshake failed: {e}"
            );
            metrics.handshake(endpoint.label(), "failed", reason);
            // rustls has queued and written its alert; make sure the client can read it.
            linger(&mut io).await;
            return;
        }
        Err(_) => {
            tracing::info!(
                %peer,
                endpoint = %endpoint.label(),
                reason = "handshake_timeout",
                "handshake not finished within {:?}; closing",
                limits.handshake
            );
            metrics.handshake(endpoint.label(), "failed", "handshake_timeout");
            return;
        }
    };
    metrics.handshake(endpoint.label(), "ok", "-");

    let local = local.unwrap_or_else(|| tls.get_ref().0.local_addr().unwrap_or(bind));
    // conn.ts.start: the wall-clock moment of the accept (`accepted` is monotonic).
    let now = std::time::SystemTime::now();
    let started = now.checked_sub(accepted.elapsed()).unwrap_or(now);
    let facts = match endpoint
        .server_tls
        .facts(tls.get_ref().1, (peer, local), started)
    {
        Ok(facts) => facts,
        Err(e) => {
            tracing::info!(
                %peer,
                endpoint = %endpoint.label(),
                reason = "client_certificate_unreadable",
                "connection refused: {e}"
            );
            metrics
                .connections
                .get_or_create(&VerdictLabels {
                    endpoint: endpoint.label().to_owned(),
                    verdict: "deny",
                    reason: "client_certificate_unreadable",
                })
                .inc();
            let mut tls = tls;
            let _ = tokio::time::timeout(LINGER, tls.shutdown()).await;
            linger(tls.get_mut().0).await;
            return;
        }
    };
    let mut facts = facts;
    if endpoint.endpoint.reads_ja4() {
        facts.ja4 = tlsgate_core::ja4::from_records(&hello).unwrap_or_default();
    }
    drop(hello);
    if let ClientAuth::On {
        authorities,
        ocsp: Some(check),
        ..
    } = &endpoint.endpoint.tls.client_auth
    {
        let presented = std::mem::replace(&mut facts.client_cert, ClientCert::Absent);
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let (cert, outcome) = shared
            .ocsp
            .judge(check, presented, chain, &authorities.certs)
            .await;
        facts.client_cert = cert;
        if let Some(outcome) = outcome {
            let reason = outcome.reason();
            metrics
                .ocsp_checks
                .get_or_create(&UpstreamErrorLabels {
                    endpoint: endpoint.label().to_owned(),
                    reason,
                })
                .inc();
            if let Outcome::Unavailable { reason, detail } = &outcome {
                let mode = check.mode.as_str();
                tracing::warn!(%peer, endpoint = %endpoint.label(), reason, mode, "no valid OCSP answer for the client certificate: {detail}");
            }
        }
    }
    let client = facts.client_cert.log_label();
    let session = Session::new(endpoint.endpoint.clone(), facts);
    let count = |verdict: &'static str, reason: &'static str| {
        metrics
            .connections
            .get_or_create(&VerdictLabels {
                endpoint: endpoint.label().to_owned(),
                verdict,
                reason,
            })
            .inc();
    };
    let (verdict, detail, logged) = session.on_tcp_connect_logged();
    let (label, reason) = connection_labels(&verdict);
    let denied = match verdict {
        Verdict::Deny(reason) => Some(reason),
        Verdict::Continue => None,
    };
    // A refused connection always has its line; an admitted one when on_tcp_connect's `log`
    // actions ran (its requests have their own lines).
    if denied.is_some() || logged.is_some() {
        let facts = session.facts();
        tracing::info!(
            target: "tlsgate::access",
            endpoint = %endpoint.label(),
            %peer,
            sni = facts.sni.as_deref().unwrap_or("-"),
            tls = facts.version.as_str(),
            client = %client,
            // core's word for it, as the filter's metrics and logs use
            verdict = label,
            reason = %denied.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
            detail = %detail
                .as_ref()
                .map_or_else(|| "-".to_owned(), |why| escape_control(&why.to_string())),
            log = %logged.as_deref().unwrap_or("-"),
            "{}",
            if denied.is_some() { "connection denied" } else { "connection" }
        );
    }
    count(label, reason);
    if denied.is_some() {
        let mut tls = tls;
        let _ = tokio::time::timeout(LINGER, tls.shutdown()).await;
        linger(tls.get_mut().0).await;
        return;
    }

    // The connection goes on in a task of its own, which owns its slot, its share of the
    // address and its gauge: this one ends, and with it everything the handshake needed (the
    // acceptor, rustls' StartHandshake, the slots the compiler keeps for them), which would
    // otherwise stay reserved in an idle connection's state machine for its whole life
    // (docs/performance.md, "Where an idle connection's memory goes").
    let held = (permit, source, active);
    match endpoint.endpoint.scheme {
        Scheme::Https => {
            let conn = Arc::new(HttpConnection::new(
                endpoint,
                session,
                peer,
                limits,
                shared.metrics.clone(),
                client,
            ));
            let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let shutdown = shared.shutdown.clone();
            shared.tracker.spawn(async move {
                let _held = held;
                conn.serve(tls, http2, shutdown).await;
            });
        }
        Scheme::Tls => {
            let metrics = shared.metrics.clone();
            shared.tracker.spawn(async move {
                let _held = held;
                tcp::proxy(tls, endpoint, session, client, limits, metrics).await;
            });
        }
    }
}

/// How long a refused connection is drained before it is dropped.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Closes a refused connection so the client reads the alert (or close_notify) we sent.
///
/// In TLS 1.3 a client certificate is judged after the client has finished its handshake, so
/// the client is usually already sending its request. Dropping a socket with unread data makes
/// the kernel answer with a reset, and a reset can destroy the alert before the client reads
/// it: the client then sees "connection reset" instead of "certificate required". Sending FIN
/// and reading (and discarding) what the client still sends, for at most [`LINGER`] and 64 KiB,
/// lets the alert arrive intact. It costs a timer, not a thread.
async fn linger(io: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = io.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// A stable label for why a handshake failed.
fn handshake_reason(error: &io::Error) -> &'static str {
    match tls_error(error) {
        Some(e) => tls_reason(e),
        None if error.kind() == io::ErrorKind::UnexpectedEof => "eof",
        None => "io_error",
    }
}

/// A stable label for a TLS error (`client_certificate_revoked`), as logs, metrics and
/// `tlsgate eval` spell it.
pub fn tls_reason(error: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::PeerIncompatible(_) => "peer_incompatible",
        rustls::Error::NoCertificatesPresented => "client_certificate_required",
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "client_certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "client_certificate_not_yet_valid",
            C::UnknownIssuer => "client_certificate_untrusted",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "client_certificate_wrong_usage",
            C::BadSignature => "client_certificate_bad_signature",
            C::Revoked => "client_certificate_revoked",
            C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. } => "client_certificate_revocation_unknown",
            _ => "client_certificate_invalid",
        },
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::InvalidMessage(_) => "invalid_message",
        _ => "tls_error",
    }
}
