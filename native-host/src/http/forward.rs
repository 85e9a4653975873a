//! A forwarded request on its way to the upstream: rebuilt as core's [`Forward`] says, a
//! WebSocket carried in the form the upstream's protocol has, a safe request sent once more
//! when a pooled connection closes under it, and upstream failures answered 502 or 504.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use tlsgate_core::config::UpstreamProtocol;
use tlsgate_core::policy::LocalResponse;
use tlsgate_core::Forward;

use super::body::{error_response, local_response, ProxyBody};
use super::connection::AccessLine;
use super::websocket::{is_h2_websocket, is_websocket_upgrade, tunnel, websocket_accept};
use super::{strip_hop_by_hop, upstream_headers, HttpConnection};
use crate::upstream::{connect_error, ConnectError};
use crate::watched::Watched;

impl HttpConnection {
    pub(super) async fn forward(
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
            let refused = LocalResponse::header_rewrite_failed();
            log.emit(
                "deny",
                LocalResponse::HEADER_REWRITE_FAILED,
                refused.status,
                None,
            );
            return local_response(&refused);
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
