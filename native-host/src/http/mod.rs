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

use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Request};
use hyper::body::Incoming;
use tlsgate_core::request::drops_client_header;
use tlsgate_core::Forward;

mod body;
mod connection;
mod forward;
mod websocket;

pub use body::ProxyBody;
pub use connection::{ClosedByPolicy, HttpConnection};

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
        match (header_name(name), HeaderValue::from_str(value)) {
            (Ok(name), Ok(value)) => {
                headers.insert(name, value);
            }
            _ => return Err(name.clone()),
        }
    }
    Ok(())
}

/// `name` as a header name, parsed once per thread: the names a policy sets (`x-forwarded-*`,
/// its identity headers) and the tokens clients put in `Connection` are few and repeat on every
/// request, and parsing a name that is not one of `http`'s constants copies it into a fresh
/// allocation, and cloning that copy (for the retry of a safe request) allocates again: 10 of
/// a kept-alive request's ~60 allocations (`make profile`). The cache keeps at most 64 names;
/// others are parsed each time.
fn header_name(name: &str) -> Result<HeaderName, header::InvalidHeaderName> {
    thread_local! {
        static NAMES: std::cell::RefCell<Vec<HeaderName>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    NAMES.with(|names| {
        let Ok(mut names) = names.try_borrow_mut() else {
            return HeaderName::from_bytes(name.as_bytes());
        };
        if let Some(known) = names.iter().find(|n| n.as_str() == name) {
            return Ok(known.clone());
        }
        let parsed = HeaderName::from_bytes(name.as_bytes())?;
        if names.len() < 64 && parsed.as_str() == name {
            // The clone shares the parsed bytes from now on, without another allocation.
            names.push(parsed.clone());
        }
        Ok(parsed)
    })
}

/// Removes hop-by-hop headers: the fixed list and whatever `Connection` names. `te: trailers`
/// survives towards an HTTP/2 upstream, where gRPC needs it.
/// Core's [`tlsgate_core::request::HOP_BY_HOP`] as header names, so removing them parses no
/// string per request (a test holds the two lists equal).
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
];

pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_te_trailers: bool) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| header_name(t.trim()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = keep_te_trailers
        && headers
            .get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

#[cfg(test)]
mod tests;
