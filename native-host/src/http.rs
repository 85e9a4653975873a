//! https endpoints: HTTP/1.1 and HTTP/2 from the client, each request decided by core and
//! answered locally or streamed to the upstream.
//!
//! What the upstream receives is core's [`Forward`], applied here and nowhere decided: the
//! client's method, the normalized target, its headers minus hop-by-hop ones (`connection` and
//! what it names, `keep-alive`, `te`, `trailer`, `transfer-encoding`, `upgrade`, `proxy-*`) and
//! minus those core drops ([`drops_client_header`]), then core's headers set, each replacing
//! any value the client sent; `Host`/`:authority` is core's upstream authority. The body is
//! streamed, never buffered whole.
//!
//! Upstream failures answer 502 (refused, unreachable, TLS failure, broken response) or 504
//! (connect or response deadline), each logged with its reason.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tlsgate_core::config::UpstreamProtocol;
use tlsgate_core::facts::escape_control;
use tlsgate_core::policy::LocalResponse;
use tlsgate_core::request::drops_client_header;
use tlsgate_core::{Forward, RequestVerdict, Session};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;

use crate::io::{Activity, InFlight, Tracked};
use crate::limits::Limits;
use crate::metrics::{Metrics, VerdictLabels};
use crate::runtime::EndpointRuntime;
use crate::upstream::{connect_error, ConnectError};

type Inner = Either<Incoming, Full<Bytes>>;

/// A `close-connection` verdict, as the service error that makes hyper drop the connection.
#[derive(Debug, thiserror::Error)]
#[error("closed by policy: {0}")]
pub struct ClosedByPolicy(tlsgate_core::policy::DenyReason);

/// The error a body reports when it stops moving (see [`Watched`]).
#[derive(Debug, thiserror::Error)]
#[error("no body data moved for {0:?} (stream idle timeout)")]
pub struct StreamIdle(Duration);

/// Resources an exchange holds until its response body has been sent (or dropped): its place
/// in the connection's open exchanges (a connection is idle only when none is open — Envoy's
/// rule, streams not bytes — so HTTP/2 PINGs cannot hold an idle connection open) and its slot
/// in the endpoint's upstream request cap.
#[derive(Debug)]
struct Held {
    exchange: InFlight,
    _upstream_slot: Option<OwnedSemaphorePermit>,
}

/// A body in either direction, cut with [`StreamIdle`] when no frame arrives for the stream
/// idle deadline: an upstream that sends its head and stalls, or a client that stalls an upload,
/// costs a timer, not a connection held forever.
#[derive(Debug)]
pub struct Watched<B> {
    inner: B,
    held: Option<Held>,
    idle: Option<(Duration, Pin<Box<Sleep>>)>,
}

/// What the client receives.
pub type ProxyBody = Watched<Inner>;

impl<B> Watched<B> {
    fn new(inner: B) -> Self {
        Self {
            inner,
            held: None,
            idle: None,
        }
    }

    fn idle_after(mut self, idle: Duration) -> Self {
        self.idle = Some((idle, Box::pin(tokio::time::sleep(idle))));
        self
    }

    fn holding(mut self, held: Held) -> Self {
        held.exchange.responding();
        self.held = Some(held);
        self
    }
}

impl<B> http_body::Body for Watched<B>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        if let Some(held) = &self.held {
            held.exchange.polled();
        }
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {
                // Fully sent: the exchange is over even if hyper keeps the body a while longer.
                self.held = None;
                Poll::Ready(None)
            }
            Poll::Ready(Some(frame)) => {
                if let Some((idle, sleep)) = &mut self.idle {
                    let next = tokio::time::Instant::now() + *idle;
                    sleep.as_mut().reset(next);
                }
                Poll::Ready(Some(frame.map_err(Into::into)))
            }
            Poll::Pending => {
                let expired = match &mut self.idle {
                    Some((idle, sleep)) => sleep.as_mut().poll(cx).is_ready().then_some(*idle),
                    None => None,
                };
                match expired {
                    Some(idle) => {
                        self.held = None;
                        Poll::Ready(Some(Err(Box::new(StreamIdle(idle)))))
                    }
                    None => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

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
    own_upstream: Option<crate::upstream::HttpClient>,
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
        match verdict {
            RequestVerdict::Respond(local) => {
                let (verdict, reason) = match &local.reason {
                    Some(reason) => ("deny", reason.as_str()),
                    None => ("respond", "custom_response"),
                };
                self.count(verdict, reason);
                if let Some(detail) = &local.detail {
                    tracing::warn!(
                        endpoint = %self.endpoint.label(),
                        peer = %self.peer,
                        reason,
                        "a rule failed to evaluate: {}",
                        escape_control(detail)
                    );
                }
                log.emit(verdict, reason, local.status, None);
                Ok((local_response(&local), None))
            }
            RequestVerdict::Close(reason) => {
                self.count("deny", reason.as_str());
                log.emit("deny", reason.as_str(), 0, None);
                Err(ClosedByPolicy(reason))
            }
            RequestVerdict::Forward(forward) => {
                // Bounded fan-out: past the endpoint's cap, 503 at once rather than a queue
                // (Envoy's circuit breaker overflow answers the same).
                let Ok(slot) = self.endpoint.upstream_slots.clone().try_acquire_owned() else {
                    self.count("forward", "upstream_overloaded");
                    self.metrics
                        .upstream_error(self.endpoint.label(), "upstream_overloaded");
                    log.emit("forward", "upstream_overloaded", 503, None);
                    return Ok((
                        error_response(StatusCode::SERVICE_UNAVAILABLE, "upstream overloaded\n"),
                        None,
                    ));
                };
                self.count("forward", "");
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

    async fn forward(
        &self,
        mut req: Request<Incoming>,
        forward: Forward,
        log: AccessLine<'_>,
    ) -> Response<ProxyBody> {
        let Some(client) = self.own_upstream.as_ref().or(self.endpoint.http.as_ref()) else {
            return error_response(StatusCode::BAD_GATEWAY, "no HTTP upstream\n");
        };
        let h2 = self.endpoint.endpoint.upstream.protocol == UpstreamProtocol::Http2;
        // A WebSocket arrives as RFC 8441's extended CONNECT (HTTP/2) or as an HTTP/1.1
        // upgrade, and leaves in the form the upstream's protocol has: the upgrade for http1,
        // extended CONNECT for http2.
        let extended = is_h2_websocket(&req);
        let websocket = extended || is_websocket_upgrade(&req);
        let client_upgrade = websocket.then(|| hyper::upgrade::on(&mut req));
        let (mut parts, body) = req.into_parts();
        // The client's `Sec-WebSocket-Key`. HTTP/2 has no use for it (RFC 8441 section 5), but
        // it is carried across a change of protocol, as Envoy does: a proxy behind that turns
        // the CONNECT back into an upgrade then uses the key its client's 101 must prove.
        let client_key = parts.headers.get(header::SEC_WEBSOCKET_KEY).cloned();
        match (websocket, extended, h2) {
            (true, true, false) => {
                // The HTTP/1.1 upgrade it stands for: a GET, with a key of its own if the
                // client sent none.
                parts.method = Method::GET;
                parts.extensions.remove::<hyper::ext::Protocol>();
                if client_key.is_none() {
                    let mut key = [0u8; 16];
                    if aws_lc_rs::rand::fill(&mut key).is_err() {
                        log.emit("deny", "no_randomness", 500, None);
                        return error_response(
                            StatusCode::INTERNAL_SERVER_ERROR,
                            "no randomness\n",
                        );
                    }
                    if let Ok(key) = HeaderValue::from_str(&tlsgate_core::encoding::base64(&key)) {
                        parts.headers.insert(header::SEC_WEBSOCKET_KEY, key);
                    }
                }
                parts
                    .headers
                    .entry(header::SEC_WEBSOCKET_VERSION)
                    .or_insert(HeaderValue::from_static("13"));
            }
            (true, false, true) => {
                // The extended CONNECT it stands for (RFC 8441 section 5): no connection
                // headers; the upstream must have offered the protocol.
                parts.method = Method::CONNECT;
                parts
                    .extensions
                    .insert(hyper::ext::Protocol::from_static("websocket"));
            }
            _ => {}
        }
        // Connection and Upgrade go to an HTTP/1.1 upstream only.
        let upgrade_headers = websocket && !h2;
        if let Err(name) = upstream_headers(&mut parts.headers, &forward, h2, upgrade_headers) {
            // Core refuses control characters, so this is a value HTTP cannot carry for
            // another reason: fail closed rather than forward without it.
            tracing::warn!(endpoint = %self.endpoint.label(), header = %name, "a header value HTTP cannot carry");
            log.emit("deny", "header_rewrite_failed", 403, None);
            return local_response(&LocalResponse::refusal(403, "header_rewrite_failed", None));
        }
        let uri = format!(
            "{}://{}{}",
            self.endpoint.upstream_scheme, forward.authority, forward.target
        );
        parts.uri = match uri.parse::<Uri>() {
            Ok(uri) => uri,
            Err(_) => {
                log.emit("forward", "bad_request_target", 400, None);
                return error_response(StatusCode::BAD_REQUEST, "bad request target\n");
            }
        };
        parts.version = if h2 {
            Version::HTTP_2
        } else {
            Version::HTTP_11
        };
        // A safe request without a body is sent again, once, when the upstream closes a
        // kept-alive connection under it before answering (RFC 9110 9.2.2; the generated Envoy
        // route retries the same): an upstream that reloads or restarts closes idle
        // connections, and one may already carry our request.
        let retry = (!websocket && is_safe(&parts.method) && http_body::Body::is_end_stream(&body))
            .then(|| {
                (
                    parts.method.clone(),
                    parts.uri.clone(),
                    parts.headers.clone(),
                )
            });
        let upload = |body: Either<Incoming, Empty<Bytes>>| {
            Watched::new(body).idle_after(self.limits.stream_idle)
        };
        let version = parts.version;
        let first = if retry.is_some() {
            // Nothing to send: the same empty body can be sent twice.
            Request::from_parts(parts, upload(Either::Right(Empty::new())))
        } else {
            Request::from_parts(parts, upload(Either::Left(body)))
        };
        let label = self.endpoint.label();
        let send = async {
            match (client.request(first).await, retry) {
                (Err(error), Some((method, uri, headers))) if closed_before_response(&error) => {
                    tracing::debug!(endpoint = %label, "the upstream closed a pooled connection before answering ({}); sending the request again", error_chain(&error));
                    let mut again = Request::new(upload(Either::Right(Empty::new())));
                    *again.method_mut() = method;
                    *again.uri_mut() = uri;
                    *again.version_mut() = version;
                    *again.headers_mut() = headers;
                    // On a new connection: the pool's others may be closing as well. (A PROXY
                    // protocol upstream's pool is this client connection's own already.)
                    match &self.own_upstream {
                        Some(own) => own.request(again).await,
                        None => {
                            crate::upstream::fresh_connection_client(
                                self.endpoint.dialer.clone(),
                                self.endpoint.endpoint.upstream.protocol,
                            )
                            .request(again)
                            .await
                        }
                    }
                }
                (outcome, _) => outcome,
            }
        };
        let outcome = tokio::time::timeout(self.limits.upstream_response, send).await;
        match outcome {
            Ok(Ok(mut response)) => {
                // HTTP/1.1 switches with 101; HTTP/2 opens the CONNECT stream with a 2xx.
                let switching = if h2 {
                    websocket && response.status().is_success()
                } else {
                    response.status() == StatusCode::SWITCHING_PROTOCOLS
                };
                strip_hop_by_hop(response.headers_mut(), false);
                let status = response.status().as_u16();
                if let (true, Some(client_upgrade)) = (switching, client_upgrade) {
                    let upstream_upgrade = hyper::upgrade::on(&mut response);
                    if extended {
                        // HTTP/2 opens the stream with 200 and has no connection headers; the
                        // proof of a key goes back only to a client that sent one.
                        *response.status_mut() = StatusCode::OK;
                        if client_key.is_none() {
                            response.headers_mut().remove(header::SEC_WEBSOCKET_ACCEPT);
                        }
                    } else {
                        if h2 {
                            // The 101 an HTTP/1.1 client expects, with the proof of its key
                            // (computed here: an HTTP/2 upstream need not send one).
                            *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                            response.headers_mut().remove(header::SEC_WEBSOCKET_ACCEPT);
                            if let Some(accept) = client_key.as_ref().and_then(websocket_accept) {
                                response
                                    .headers_mut()
                                    .insert(header::SEC_WEBSOCKET_ACCEPT, accept);
                            }
                        }
                        response
                            .headers_mut()
                            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
                        response
                            .headers_mut()
                            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                    }
                    tokio::spawn(tunnel(
                        client_upgrade,
                        upstream_upgrade,
                        self.limits.idle,
                        self.endpoint.label().to_owned(),
                    ));
                }
                log.emit("forward", "", status, Some(status));
                response.map(|body| {
                    ProxyBody::new(Either::Left(body)).idle_after(self.limits.stream_idle)
                })
            }
            Ok(Err(error)) => {
                let (status, reason) = match connect_error(&error) {
                    Some(e @ ConnectError::Timeout { .. }) => {
                        (StatusCode::GATEWAY_TIMEOUT, e.as_str())
                    }
                    Some(e) => (StatusCode::BAD_GATEWAY, e.as_str()),
                    None => (StatusCode::BAD_GATEWAY, "upstream_request_failed"),
                };
                let detail = match connect_error(&error) {
                    Some(e) => e.to_string(),
                    None => error_chain(&error),
                };
                tracing::warn!(
                    endpoint = %self.endpoint.label(),
                    upstream = %self.endpoint.dialer.addr(),
                    reason,
                    "upstream error: {detail}"
                );
                self.metrics.upstream_error(self.endpoint.label(), reason);
                log.emit("forward", reason, status.as_u16(), None);
                error_response(status, upstream_message(status))
            }
            Err(_) => {
                let reason = "upstream_response_timeout";
                tracing::warn!(
                    endpoint = %self.endpoint.label(),
                    upstream = %self.endpoint.dialer.addr(),
                    reason,
                    "upstream error: no response within {:?}",
                    self.limits.upstream_response
                );
                self.metrics.upstream_error(self.endpoint.label(), reason);
                log.emit("forward", reason, 504, None);
                error_response(
                    StatusCode::GATEWAY_TIMEOUT,
                    upstream_message(StatusCode::GATEWAY_TIMEOUT),
                )
            }
        }
    }
}

/// RFC 9110's safe methods (the idempotent ones that do not change anything): the only ones
/// either host sends twice ([`SAFE_METHODS`](tlsgate_core::request::SAFE_METHODS)).
fn is_safe(method: &Method) -> bool {
    tlsgate_core::request::SAFE_METHODS.contains(&method.as_str())
}

/// Whether the upstream connection closed (or was reset) before a response began: a pooled
/// HTTP/1.1 connection the upstream closed as the request went out. Not a connect failure,
/// not a timeout, not a response cut short.
fn closed_before_response(error: &(dyn std::error::Error + 'static)) -> bool {
    if connect_error(error).is_some() {
        return false;
    }
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(h) = e.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                std::io::ErrorKind::ConnectionReset
                    | std::io::ErrorKind::ConnectionAborted
                    | std::io::ErrorKind::BrokenPipe
                    | std::io::ErrorKind::UnexpectedEof
            ) {
                return true;
            }
        }
        current = e.source();
    }
    false
}

/// An HTTP/2 extended CONNECT for a WebSocket (RFC 8441: `:protocol: websocket`).
fn is_h2_websocket(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
fn websocket_accept(key: &HeaderValue) -> Option<HeaderValue> {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key.as_bytes());
    context.update(GUID);
    HeaderValue::from_str(&tlsgate_core::encoding::base64(context.finish().as_ref())).ok()
}

/// An HTTP/1.1 request to switch to WebSocket (`Connection: upgrade`, `Upgrade: websocket`).
fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
    let connection_upgrade = req
        .headers()
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    req.version() == Version::HTTP_11
        && connection_upgrade
        && req
            .headers()
            .get(header::UPGRADE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("websocket"))
}

/// Bytes both ways between an upgraded client connection and the upgraded upstream
/// connection, until either side closes or nothing moves for `idle` (the tls:// rule).
async fn tunnel(
    client: hyper::upgrade::OnUpgrade,
    upstream: hyper::upgrade::OnUpgrade,
    idle: Duration,
    endpoint: String,
) {
    let (client, upstream) = match tokio::join!(client, upstream) {
        (Ok(c), Ok(u)) => (c, u),
        (c, u) => {
            tracing::debug!(%endpoint, "websocket upgrade did not complete: client {:?}, upstream {:?}", c.err(), u.err());
            return;
        }
    };
    let activity = Activity::new();
    let mut client = Tracked::new(TokioIo::new(client), activity.clone());
    let mut upstream = TokioIo::new(upstream);
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(e) = result {
                tracing::debug!(%endpoint, "websocket tunnel ended: {e}");
            }
        }
        _ = activity.idle(idle) => tracing::debug!(%endpoint, "websocket tunnel idle; closing"),
    }
}

/// `:authority` (HTTP/2, absolute-form) or `Host`; several Host fields joined with `,`, as
/// Envoy joins them, so core refuses both hosts' duplicates alike.
fn request_host(req: &Request<Incoming>) -> std::borrow::Cow<'_, str> {
    if let Some(authority) = req.uri().authority() {
        return authority.as_str().into();
    }
    let mut values = req
        .headers()
        .get_all(header::HOST)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()));
    let first = values.next().unwrap_or_default();
    match values.next() {
        None => first,
        Some(second) => {
            let mut joined = format!("{first},{second}");
            for more in values {
                joined.push(',');
                joined.push_str(&more);
            }
            joined.into()
        }
    }
}

/// Turns the client's request headers into the upstream's, as core's [`Forward`] says:
/// hop-by-hop headers go (a WebSocket upgrade is carried through), `Host` goes (the authority is
/// set from `forward.authority`), the headers core drops and the policy removes go, and
/// `forward.set_headers` replace whatever stood under their names. `Err` names a set header
/// whose name or value HTTP cannot carry. `tlsgate eval` shows its result.
pub fn upstream_headers(
    headers: &mut HeaderMap,
    forward: &Forward,
    h2: bool,
    websocket: bool,
) -> Result<(), String> {
    strip_hop_by_hop(headers, h2);
    if websocket {
        // Hop-by-hop, but the one upgrade this edge carries through (Envoy's
        // `upgrade_configs: websocket` does the same).
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    }
    headers.remove(header::HOST);
    let dropped: Vec<HeaderName> = headers
        .keys()
        .filter(|name| {
            drops_client_header(name.as_str())
                || forward.remove_headers.iter().any(|r| r == name.as_str())
        })
        .cloned()
        .collect();
    for name in dropped {
        headers.remove(name);
    }
    for (name, value) in &forward.set_headers {
        match (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => return Err(name.clone()),
        }
    }
    Ok(())
}

/// Removes hop-by-hop headers: the fixed list and whatever `Connection` names. `te: trailers`
/// survives towards an HTTP/2 upstream, where gRPC needs it.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = keep_te_trailers
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    for name in tlsgate_core::request::HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

fn local_response(local: &LocalResponse) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::new(Either::Right(Full::new(Bytes::from(
        local.body.clone(),
    )))));
    *response.status_mut() = StatusCode::from_u16(local.status).unwrap_or(StatusCode::FORBIDDEN);
    let headers = response.headers_mut();
    for (name, value) in &local.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.append(name, value);
        }
    }
    if !headers.contains_key(header::CONTENT_TYPE) {
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    response
}

fn error_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::new(Either::Right(Full::new(
        Bytes::from_static(body.as_bytes()),
    ))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn upstream_message(status: StatusCode) -> &'static str {
    if status == StatusCode::GATEWAY_TIMEOUT {
        "upstream timed out\n"
    } else {
        "upstream unavailable\n"
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        out.push_str(": ");
        out.push_str(&e.to_string());
        source = e.source();
    }
    out
}

/// The access line of one request.
struct AccessLine<'a> {
    conn: &'a HttpConnection,
    method: &'a str,
    path: &'a str,
    started: Instant,
    /// What the policy's `log` actions recorded (core formats it, as for the filter).
    logged: Option<String>,
}

impl AccessLine<'_> {
    fn emit(&self, verdict: &str, reason: &str, status: u16, upstream_status: Option<u16>) {
        let facts = self.conn.session.facts();
        tracing::info!(
            target: "tlsgate::access",
            endpoint = %self.conn.endpoint.label(),
            peer = %self.conn.peer,
            sni = facts.sni.as_deref().unwrap_or("-"),
            tls = facts.version.as_str(),
            client = %self.conn.client,
            method = self.method,
            path = self.path,
            verdict,
            reason = if reason.is_empty() { "-" } else { reason },
            status,
            upstream_status = upstream_status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            duration_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX),
            log = %self.logged.as_deref().unwrap_or("-"),
            "request"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    /// RFC 6455 section 1.3's own example.
    #[test]
    fn the_websocket_accept_proves_the_clients_key() {
        let key = HeaderValue::from_static("dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(
            websocket_accept(&key),
            Some(HeaderValue::from_static("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="))
        );
    }

    #[tokio::test]
    async fn the_exchange_stays_open_until_the_response_body_is_sent() {
        let activity = Activity::new();
        let body =
            ProxyBody::new(Either::Right(Full::new(Bytes::from_static(b"hello")))).holding(Held {
                exchange: activity.request(),
                _upstream_slot: None,
            });
        assert_eq!(activity.open_exchanges(), 1);
        let collected = body.collect().await.map(|c| c.to_bytes());
        assert_eq!(collected.ok(), Some(Bytes::from_static(b"hello")));
        assert_eq!(activity.open_exchanges(), 0);
    }

    /// What `tlsgate eval` shows the upstream receives (core's list) is what this host sends.
    #[test]
    fn upstream_headers_match_cores_list_that_eval_shows() {
        let client: Vec<(String, String)> = [
            ("Host", "app.test"),
            ("Connection", "keep-alive, X-Hop"),
            ("x-hop", "gone"),
            ("Keep-Alive", "timeout=5"),
            ("TE", "trailers"),
            ("Upgrade", "h2c"),
            ("X-Forwarded-For", "6.6.6.6"),
            ("x_forwarded_client_cert", "forged"),
            ("x-secret", "removed by policy"),
            ("x-client-cn", "admin"),
            ("Accept", "*/*"),
            ("accept", "text/plain"),
        ]
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect();
        let forward = Forward {
            target: "/".into(),
            set_headers: vec![
                ("x-forwarded-for".into(), "127.0.0.1".into()),
                ("x-client-cn".into(), "alice".into()),
            ],
            remove_headers: vec!["x-secret".into()],
            authority: "upstream.test".into(),
        };
        for h2 in [false, true] {
            let mut map = HeaderMap::new();
            for (n, v) in &client {
                map.append(
                    HeaderName::from_bytes(n.as_bytes()).unwrap(),
                    HeaderValue::from_str(v).unwrap(),
                );
            }
            upstream_headers(&mut map, &forward, h2, false).unwrap();
            let mut ours: Vec<(String, String)> = map
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                .collect();
            let mut cores = tlsgate_core::request::upstream_headers(&client, &forward, h2).unwrap();
            ours.sort();
            cores.sort();
            assert_eq!(ours, cores, "h2 = {h2}");
        }
    }

    /// A body that never yields a frame.
    struct Stalled;

    impl http_body::Body for Stalled {
        type Data = Bytes;
        type Error = std::convert::Infallible;

        fn poll_frame(
            self: Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            Poll::Pending
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_body_that_stops_moving_is_cut_at_the_stream_idle_deadline() {
        let activity = Activity::new();
        let body = Watched::new(Stalled)
            .idle_after(Duration::from_secs(30))
            .holding(Held {
                exchange: activity.request(),
                _upstream_slot: None,
            });
        let started = tokio::time::Instant::now();
        let result = body.collect().await;
        let error = result.expect_err("cut");
        assert!(error.is::<StreamIdle>(), "{error}");
        assert_eq!(started.elapsed(), Duration::from_secs(30));
        assert_eq!(activity.open_exchanges(), 0, "the exchange is released");
    }
}
