//! One client connection on an https endpoint: hyper serving it within the connection's
//! deadlines, and each request decided by core, then answered locally or forwarded, with its
//! access line.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tlsgate_core::facts::escape_control;
use tlsgate_core::policy::request_labels;
use tlsgate_core::{RequestVerdict, Session};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;

use super::body::{error_response, local_response, ProxyBody};
use super::request_host;
use super::websocket::is_h2_websocket;
use crate::io::{Activity, Tracked};
use crate::limits::Limits;
use crate::metrics::{Metrics, VerdictLabels};
use crate::runtime::EndpointRuntime;
use crate::watched::Held;

/// A `close-connection` verdict, as the service error that makes hyper drop the connection.
#[derive(Debug, thiserror::Error)]
#[error("closed by policy: {0}")]
pub struct ClosedByPolicy(tlsgate_core::policy::DenyReason);

/// One client connection on an https endpoint.
#[derive(Debug)]
pub struct HttpConnection {
    pub endpoint: Arc<EndpointRuntime>,
    pub session: Session,
    pub peer: SocketAddr,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    /// Client certificate subject for access lines, computed once.
    pub client: String,
    pub activity: Arc<Activity>,
    /// An upstream that is sent a PROXY protocol header hears from one client per connection:
    /// this connection's own pool, dropped (and its upstream connections closed) with it.
    pub(super) own_upstream: Option<crate::upstream::HttpClient>,
}

/// Resolves at `deadline` if no request has started by then; never otherwise.
async fn first_request_overdue(deadline: tokio::time::Instant, activity: &Activity) {
    tokio::time::sleep_until(deadline).await;
    if activity.any_request() {
        std::future::pending::<()>().await;
    }
}

impl HttpConnection {
    pub fn new(
        endpoint: Arc<EndpointRuntime>,
        session: Session,
        peer: SocketAddr,
        limits: Limits,
        metrics: Arc<Metrics>,
        client: String,
    ) -> Self {
        let upstream = &endpoint.endpoint.upstream;
        let own_upstream =
            crate::proxy_protocol::upstream_header(upstream, session.facts()).map(|header| {
                let dialer = endpoint.dialer.with_proxy_header(header);
                crate::upstream::http_client(dialer, upstream.protocol)
            });
        Self {
            endpoint,
            session,
            peer,
            limits,
            metrics,
            client,
            activity: Activity::new(),
            own_upstream,
        }
    }

    /// Serves the connection until the client leaves, it idles out, or shutdown drains it.
    pub async fn serve<IO>(self: Arc<Self>, io: IO, http2: bool, shutdown: CancellationToken)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        // Idleness is counted in exchanges (see ProxyBody), not bytes; an HTTP/1 request head
        // is timed from its first byte (see `io::Track::Heads`).
        let tracked = Tracked::heads(io, self.activity.clone());
        let io = TokioIo::new(if http2 { tracked.http2() } else { tracked });
        let this = self.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let this = this.clone();
            async move { this.handle(req).await }
        });
        let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Not hyper's: it also runs while a kept-alive connection waits (see io::Track::Heads).
            .header_read_timeout(None)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(self.limits.max_concurrent_streams)
            // Per-stream buffering towards a slow reader stays bounded (hyper's default, made
            // explicit: a stream's send buffer is what the policy can promise).
            .max_send_buf_size(400 * 1024)
            // RFC 8441: WebSocket over an HTTP/2 connection, as browsers open it when offered.
            .enable_connect_protocol();
        // With upgrades: a WebSocket request that the policy forwards and the upstream accepts
        // (101) becomes a byte tunnel (see `tunnel`).
        let conn = builder.serve_connection_with_upgrades(io, service);
        tokio::pin!(conn);
        let mut closing: Option<tokio::time::Instant> = None;
        let first_request = tokio::time::Instant::now() + self.limits.first_request;
        loop {
            let deadline =
                closing.unwrap_or_else(|| tokio::time::Instant::now() + self.limits.drain);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(peer = %self.peer, endpoint = %self.endpoint.label(), "connection ended: {e}");
                    }
                    return;
                }
                _ = shutdown.cancelled(), if closing.is_none() => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + self.limits.drain);
                }
                _ = self.endpoint.retired.cancelled(), if closing.is_none() => {
                    tracing::debug!(peer = %self.peer, endpoint = %self.endpoint.label(), "the endpoint changed in a reload; draining");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + self.limits.drain);
                }
                _ = self.activity.idle(self.limits.idle), if closing.is_none() => {
                    tracing::debug!(peer = %self.peer, endpoint = %self.endpoint.label(), "closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + self.limits.request_headers);
                }
                // A response the client reads nothing of (no HTTP/2 window, a full socket):
                // hyper stops polling its body, so the body's idle timer cannot fire. A second
                // of grace lets that timer (a stalled upstream) win when both apply.
                _ = self.activity.response_stalled(self.limits.stream_idle + Duration::from_secs(1)), if closing.is_none() => {
                    tracing::info!(peer = %self.peer, endpoint = %self.endpoint.label(), reason = "response_stalled", "the client has read nothing of a response for {:?}; closing", self.limits.stream_idle);
                    return;
                }
                _ = self.activity.head_overdue(self.limits.request_headers), if closing.is_none() && !http2 => {
                    tracing::debug!(peer = %self.peer, endpoint = %self.endpoint.label(), reason = "request_header_timeout", "request headers incomplete {:?} after their first byte; closing", self.limits.request_headers);
                    return;
                }
                // The condition is checked when the deadline passes, not when the select starts:
                // a precondition here was read once, so every connection was cut 10 s after its
                // handshake, requests or not (the reliability suite's held connections found it).
                _ = first_request_overdue(first_request, &self.activity), if closing.is_none() => {
                    tracing::debug!(peer = %self.peer, endpoint = %self.endpoint.label(), reason = "first_request_timeout", "no request within {:?} of the handshake; closing", self.limits.first_request);
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + self.limits.request_headers);
                }
                _ = tokio::time::sleep_until(deadline), if closing.is_some() => return,
            }
        }
    }

    /// The response; `Err` makes hyper close the connection (HTTP/1) or reset the stream
    /// (HTTP/2) without answering, which is what `close-connection` asks for.
    async fn handle(&self, req: Request<Incoming>) -> Result<Response<ProxyBody>, ClosedByPolicy> {
        let exchange = self.activity.request();
        let (response, upstream_slot) = self.exchange(req).await?;
        Ok(response.map(|body| {
            body.holding(Held {
                exchange,
                _upstream_slot: upstream_slot,
            })
        }))
    }

    /// The response, and the upstream slot it holds (if it went upstream).
    async fn exchange(
        &self,
        req: Request<Incoming>,
    ) -> Result<(Response<ProxyBody>, Option<OwnedSemaphorePermit>), ClosedByPolicy> {
        let started = Instant::now();
        let host = request_host(&req).into_owned();
        // RFC 8441's CONNECT with `:protocol: websocket` is the HTTP/2 form of a GET upgrade:
        // rules, logs and the upstream see that GET, as behind Envoy (its codec turns one into
        // the other).
        let method = if is_h2_websocket(&req) {
            Method::GET
        } else {
            req.method().clone()
        };
        let target = req
            .uri()
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_owned();
        let mut log = AccessLine {
            conn: self,
            method: method.as_str(),
            path: &target,
            started,
            logged: None,
        };
        let (verdict, logged) = {
            // Values that are not visible ASCII are still forwarded, so rules must see them too
            // (lossily decoded, as the filter does); skipping them would let `X-Internal: \xff`
            // slip past a rule on that header.
            let values: Vec<(&str, std::borrow::Cow<'_, str>)> =
                if self.endpoint.endpoint.reads_request_headers() {
                    req.headers()
                        .iter()
                        .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v.as_bytes())))
                        .collect()
                } else {
                    Vec::new()
                };
            let header_pairs: Vec<(&str, &str)> =
                values.iter().map(|(n, v)| (*n, v.as_ref())).collect();
            self.session.on_http_request_logged(&tlsgate_core::Request {
                method: method.as_str(),
                host: &host,
                target: &target,
                headers: &header_pairs,
            })
        };
        log.logged = logged;
        let (label, reason) = request_labels(&verdict);
        match verdict {
            RequestVerdict::Respond(local) => {
                self.count(label, reason);
                if let Some(detail) = &local.detail {
                    tracing::warn!(
                        endpoint = %self.endpoint.label(),
                        peer = %self.peer,
                        reason,
                        "a rule failed to evaluate: {}",
                        escape_control(&detail.to_string())
                    );
                }
                log.emit(label, reason, local.status, None);
                Ok((local_response(&local), None))
            }
            RequestVerdict::Close(closed) => {
                self.count(label, reason);
                log.emit(label, reason, 0, None);
                Err(ClosedByPolicy(closed))
            }
            RequestVerdict::Forward(forward) => {
                // Bounded fan-out: past the endpoint's cap, 503 at once rather than a queue
                // (Envoy's circuit breaker overflow answers the same).
                let Ok(slot) = self.endpoint.upstream_slots.clone().try_acquire_owned() else {
                    self.count(label, "upstream_overloaded");
                    self.metrics
                        .upstream_error(self.endpoint.label(), "upstream_overloaded");
                    log.emit(label, "upstream_overloaded", 503, None);
                    return Ok((
                        error_response(StatusCode::SERVICE_UNAVAILABLE, "upstream overloaded\n"),
                        None,
                    ));
                };
                self.count(label, reason);
                Ok((self.forward(req, forward, log).await, Some(slot)))
            }
        }
    }

    fn count(&self, verdict: &'static str, reason: &'static str) {
        self.metrics
            .requests
            .get_or_create(&VerdictLabels {
                endpoint: self.endpoint.label().to_owned(),
                verdict,
                reason,
            })
            .inc();
    }
}

/// The access line of one request.
pub(super) struct AccessLine<'a> {
    conn: &'a HttpConnection,
    method: &'a str,
    path: &'a str,
    started: Instant,
    /// What the policy's `log` actions recorded (core formats it, as for the filter).
    logged: Option<String>,
}

impl AccessLine<'_> {
    pub(super) fn emit(
        &self,
        verdict: &str,
        reason: &str,
        status: u16,
        upstream_status: Option<u16>,
    ) {
        let facts = self.conn.session.facts();
        crate::logging::access(&crate::logging::AccessRecord {
            endpoint: &self.conn.endpoint.label(),
            peer: &self.conn.peer,
            sni: facts.sni.as_deref().unwrap_or("-"),
            tls: facts.version.as_str(),
            client: &self.conn.client,
            method: self.method,
            path: self.path,
            verdict,
            reason: if reason.is_empty() { "-" } else { reason },
            status,
            upstream_status,
            duration_ms: u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            log: self.logged.as_deref().unwrap_or("-"),
        });
    }
}
