//! WebSocket: an upgrade recognized in either HTTP version, the accept key, and the byte
//! tunnel an accepted upgrade becomes.

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::{Method, Request, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use crate::io::{Activity, Tracked};

/// An HTTP/2 extended CONNECT for a WebSocket (RFC 8441: `:protocol: websocket`).
pub(super) fn is_h2_websocket(req: &Request<Incoming>) -> bool {
    req.method() == Method::CONNECT
        && req
            .extensions()
            .get::<hyper::ext::Protocol>()
            .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket"))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key` (RFC 6455 section 4.2.2).
pub(super) fn websocket_accept(key: &HeaderValue) -> Option<HeaderValue> {
    const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY);
    context.update(key.as_bytes());
    context.update(GUID);
    HeaderValue::from_str(&tlsgate_core::encoding::base64(context.finish().as_ref())).ok()
}

/// An HTTP/1.1 request to switch to WebSocket (`Connection: upgrade`, `Upgrade: websocket`).
pub(super) fn is_websocket_upgrade(req: &Request<Incoming>) -> bool {
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
pub(super) async fn tunnel(
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
