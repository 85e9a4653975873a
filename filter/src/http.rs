//! The HTTP filter: one decision per request, on its headers.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::{Action, LogLevel, MapType};
use tlsgate_core::facts::escape_control;
use tlsgate_core::policy::{endpoint_label, request_denied, request_labels, LocalResponse};
use tlsgate_core::request::{EDGE_HEADERS, JA4_HEADER};
use tlsgate_core::{
    ClientCert, Endpoint, Forward, Policy, Request, RequestVerdict, Session, TlsFacts, Verdict,
};

use crate::attributes::{read_connection, Connection, Envoy, Unavailable};
use crate::connections::take_admitted;
use crate::metrics::{self, log};
use crate::sessions::{connection_id, Cached, SharedSessions};

pub(crate) struct HttpFilter {
    policy: Option<Rc<Policy>>,
    sessions: SharedSessions,
}

/// The JA4 fingerprint Envoy's `tls_inspector` computed, from the header the generated
/// configuration sets on every request ([`JA4_HEADER`]). Without that header the Envoy
/// configuration was not generated for this policy: a rule on JA4 would read an empty value,
/// so the request is refused instead.
fn ja4_from_envoy() -> Result<String, Unavailable> {
    let value = hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, JA4_HEADER)
        .ok()
        .flatten()
        .ok_or_else(|| Unavailable::Invalid {
            attribute: JA4_HEADER,
            reason: "absent: the Envoy configuration must set it to `ja4=%TLS_JA4_FINGERPRINT%` \
                     with tls_inspector's enable_ja4_fingerprinting (tlsgate envoy-config does)"
                .into(),
        })?;
    let value = String::from_utf8_lossy(&value);
    match value.strip_prefix("ja4=") {
        Some(fingerprint) => Ok(fingerprint.to_owned()),
        None => Err(Unavailable::Invalid {
            attribute: JA4_HEADER,
            reason: "not of the form `ja4=…`".into(),
        }),
    }
}

impl HttpFilter {
    pub(crate) fn new(policy: Option<Rc<Policy>>, sessions: SharedSessions) -> Self {
        Self { policy, sessions }
    }

    /// The connection's session: from the cache when this connection has been seen, else
    /// built from Envoy's attributes (and cached when Envoy says which connection this is).
    fn session(&self, policy: &Policy) -> Result<Rc<Cached>, Unavailable> {
        let id = hostcalls::get_property(vec!["connection", "id"])
            .ok()
            .flatten()
            .and_then(|raw| connection_id(&raw));
        if let Some(cached) = id.and_then(|id| self.sessions.borrow().get(id)) {
            metrics::session_cache(true);
            return Ok(cached);
        }
        metrics::session_cache(false);
        // The network role saw the connection start; without it (an HTTP-only deployment)
        // the first request's time is the closest Envoy tells.
        let started = id
            .and_then(crate::connections::started)
            .or_else(|| hostcalls::get_current_time().ok())
            .unwrap_or(std::time::UNIX_EPOCH);
        // What the network role admitted the connection with (its OCSP check applied), else
        // Envoy's attributes.
        let (mut connection, checked) = match id.and_then(|id| take_admitted(id, policy)) {
            Some((endpoint, facts)) => (
                Connection {
                    endpoint,
                    facts: TlsFacts { started, ..facts },
                },
                true,
            ),
            None => (read_connection(&Envoy, policy, started)?, false),
        };
        connection.facts.alpn = negotiated_alpn();
        if connection.endpoint.reads_ja4() {
            connection.facts.ja4 = ja4_from_envoy()?;
        }
        if let Some(check) = connection
            .endpoint
            .tls
            .client_auth
            .ocsp()
            .filter(|_| !checked)
        {
            // The certificate as the network role's OCSP check left it.
            let cert = std::mem::replace(&mut connection.facts.client_cert, ClientCert::Absent);
            let (cert, unchecked) = crate::connections::apply_ocsp(id, check, cert);
            if let Some(why) = unchecked {
                log(
                    LogLevel::Warn,
                    &format!(
                        "endpoint={}: {why}; the client certificate is no identity",
                        endpoint_label(&connection.endpoint)
                    ),
                );
                metrics::ocsp(&connection.endpoint, "ocsp_unchecked");
            }
            connection.facts.client_cert = cert;
        }
        let session = Session::new(connection.endpoint, connection.facts);
        // The network filter has already run this; repeating it keeps an HTTP-only deployment
        // (an Istio WasmPlugin of type HTTP alone) from admitting what the policy denies.
        let tcp_verdict = session.on_tcp_connect();
        let metadata_on_connection = connection_carries_metadata(session.endpoint());
        let cached = Rc::new(Cached {
            session,
            tcp_verdict,
            metadata_on_connection,
        });
        if let Some(id) = id {
            self.sessions.borrow_mut().insert(id, Rc::clone(&cached));
        }
        Ok(cached)
    }

    fn decide(&self) -> Action {
        let Some(policy) = &self.policy else {
            metrics::request(None, "deny", "no_policy");
            return respond(&refusal(403, "no_policy"));
        };
        let cached = match self.session(policy) {
            Ok(cached) => cached,
            Err(why) => {
                log(
                    LogLevel::Warn,
                    &format!("refusing a request whose connection facts are unknown: {why}"),
                );
                metrics::request(None, "deny", why.label());
                return respond(&refusal(403, why.label()));
            }
        };
        let session = &cached.session;
        let endpoint = session.endpoint();
        if !cached.metadata_on_connection {
            publish_metadata(endpoint);
        }
        if let Verdict::Deny(reason) = cached.tcp_verdict {
            let (verdict, label) = request_denied(&reason);
            metrics::request(Some(endpoint), verdict, label);
            return respond(&refusal(403, reason.as_str()));
        }

        // One hostcall for the whole map: the pseudo-headers, and the names the edge must drop.
        // Bytes, converted lossily as the native host does: the SDK's string getters unwrap
        // UTF-8 and would trap the VM on a header value with a byte >= 0x80.
        let received = hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default();
        let pseudo = |name: &str| {
            received
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let (method, host, target) = (pseudo(":method"), pseudo(":authority"), pseudo(":path"));
        let path = target.split_once('?').map_or(target.as_str(), |(p, _)| p);
        let all_headers: Vec<(&str, String)> = if session.endpoint().reads_request_headers() {
            received
                .iter()
                .filter(|(name, _)| !name.starts_with(':'))
                .map(|(n, v)| (n.as_str(), String::from_utf8_lossy(v).into_owned()))
                .collect()
        } else {
            Vec::new()
        };
        let headers: Vec<(&str, &str)> =
            all_headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let request = Request {
            method: &method,
            host: &host,
            target: &target,
            headers: &headers,
        };
        let (verdict, logged) = session.on_http_request_logged(&request);
        if let Some(logged) = logged {
            // The access line reads it as %FILTER_STATE(wasm.tlsgate.log:PLAIN)%.
            if hostcalls::set_property(vec!["tlsgate.log"], Some(logged.as_bytes())).is_err() {
                log(
                    LogLevel::Warn,
                    "could not record the policy's log fields for the access line",
                );
            }
        }
        let (label, reason) = request_labels(&verdict);
        match verdict {
            RequestVerdict::Forward(forward) => {
                if apply(&forward, &received, &target).is_err() {
                    // Counted as the native host counts a forward it could not make.
                    metrics::request(Some(endpoint), label, LocalResponse::HEADER_REWRITE_FAILED);
                    return respond(&LocalResponse::header_rewrite_failed());
                }
                metrics::request(Some(endpoint), label, reason);
                Action::Continue
            }
            RequestVerdict::Close(reason) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "closing the connection of {} {path} from {} to endpoint={}: {reason}",
                        method,
                        session.facts().client_ip,
                        endpoint_label(endpoint),
                    ),
                );
                metrics::request(Some(endpoint), label, reason.as_str());
                // No response: the stream is reset (HTTP/1: the connection closes with it).
                let _ = hostcalls::reset_http_request();
                Action::Pause
            }
            RequestVerdict::Respond(response) => {
                if response.reason.is_some() {
                    log(
                        LogLevel::Info,
                        &format!(
                            "answered {} {path} from {} to endpoint={} with {}: {reason}{}",
                            method,
                            session.facts().client_ip,
                            endpoint_label(endpoint),
                            response.status,
                            response
                                .detail
                                .as_ref()
                                .map(|why| format!(": {}", escape_control(&why.to_string())))
                                .unwrap_or_default()
                        ),
                    );
                }
                metrics::request(Some(endpoint), label, reason);
                respond(&response)
            }
        }
    }
}

/// Envoy has no attribute for the negotiated ALPN; the request's protocol implies it, since
/// the generated listener offers exactly `h2` and `http/1.1`.
fn negotiated_alpn() -> Option<String> {
    let protocol = hostcalls::get_property(vec!["request", "protocol"]).ok()??;
    match protocol.as_slice() {
        b"HTTP/2" => Some("h2".into()),
        b"HTTP/1.1" => Some("http/1.1".into()),
        _ => None,
    }
}

fn refusal(status: u16, reason: &str) -> LocalResponse {
    LocalResponse::refusal(status, reason, None)
}

/// Applies core's edits to the request Envoy will forward. Header names with `_` are dropped
/// by Envoy itself before this filter runs (`headers_with_underscores_action: DROP_HEADER`,
/// which the generator sets from the same rule). `Host` is the route's `host_rewrite_literal`,
/// which the generator takes from the same compiled policy.
fn apply(
    forward: &Forward,
    received: &[(String, Vec<u8>)],
    received_target: &str,
) -> Result<(), proxy_wasm::types::Status> {
    for name in removals(forward, received) {
        hostcalls::remove_map_value(MapType::HttpRequestHeaders, name)?;
    }
    for (name, value) in sets(forward, received) {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, name, Some(value))?;
    }
    if forward.target != received_target {
        hostcalls::set_map_value(MapType::HttpRequestHeaders, ":path", Some(&forward.target))?;
    }
    Ok(())
}

/// The headers to set on the request before it is forwarded: core's, except those Envoy
/// already holds with exactly that value (once). Envoy's connection manager sets
/// `x-forwarded-proto: https` and, for a client that sent none, `x-forwarded-for: <client>`
/// itself before any filter runs; setting them again was a write into Envoy's header map per
/// request (about 1% of the filter's CPU each) for the same bytes.
fn sets<'a>(
    forward: &'a Forward,
    received: &'a [(String, Vec<u8>)],
) -> impl Iterator<Item = (&'a str, &'a str)> {
    forward.set_headers.iter().filter_map(move |(name, value)| {
        let mut held = received.iter().filter(|(n, _)| n == name);
        let unchanged = matches!(
            (held.next(), held.next()),
            (Some((_, v)), None) if v.as_slice() == value.as_bytes()
        );
        (!unchanged).then_some((name.as_str(), value.as_str()))
    })
}

/// The names to remove from the request before it is forwarded: the edge's own headers
/// ([`EDGE_HEADERS`]) and the policy's `remove-headers`, where the client sent them
/// (`received`: the request's headers, lowercase as Envoy gives them). A name core sets is
/// replaced by the set instead, and a name the client did not send needs no hostcall.
fn removals<'a>(
    forward: &'a Forward,
    received: &'a [(String, Vec<u8>)],
) -> impl Iterator<Item = &'a str> {
    EDGE_HEADERS
        .iter()
        .copied()
        .filter(|name| forward.header(name).is_none())
        .chain(forward.remove_headers.iter().map(String::as_str))
        .filter(|name| received.iter().any(|(n, _)| n == name))
}

/// Answers the request locally and stops it from going upstream.
fn respond(response: &LocalResponse) -> Action {
    let headers: Vec<(&str, &str)> = response
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    if hostcalls::send_http_response(
        u32::from(response.status),
        headers,
        Some(response.body.as_bytes()),
    )
    .is_err()
    {
        // Without a local reply the request must still not pass: reset it.
        let _ = hostcalls::reset_http_request();
    }
    Action::Pause
}

/// Which endpoint served the connection and which certificate Envoy presented for it, as
/// filter state (`wasm.tlsgate.*`) for access logs, later filters and route header rules.
fn metadata(endpoint: &Endpoint) -> Vec<(&'static str, String)> {
    let mut entries: Vec<(&str, String)> = vec![
        // The label the native host logs and counts the endpoint under (its URL).
        ("tlsgate.endpoint", endpoint_label(endpoint).to_owned()),
        ("tlsgate.endpoint_index", endpoint.index.to_string()),
    ];
    if let Some(cert) = &endpoint.tls.certificate {
        entries.push((
            "tlsgate.server_certificate",
            format!("sha256:{}", cert.fingerprint_sha256),
        ));
        entries.push(("tlsgate.server_certificate_subject", cert.subject.clone()));
    }
    entries
}

/// Sets [`metadata`] in the current context's filter state: the connection's when the network
/// role calls it, the request's when the HTTP role does.
pub(crate) fn publish_metadata(endpoint: &Endpoint) {
    for (key, value) in metadata(endpoint) {
        if hostcalls::set_property(vec![key], Some(value.as_bytes())).is_err() {
            log(
                LogLevel::Debug,
                &format!("could not set filter state {key}"),
            );
        }
    }
}

/// Whether every request of this connection already sees `endpoint`'s [`metadata`]: the
/// network role published it in the connection's filter state, which a request's filter state
/// falls back to. Asked once per connection; then the HTTP role publishes nothing per request
/// (four hostcalls, about 4% of the filter's CPU per kept-alive request). Without the network
/// role (an HTTP-only WasmPlugin), or after a reload that changed what it published, the
/// values differ and every request publishes its own.
fn connection_carries_metadata(endpoint: &Endpoint) -> bool {
    metadata(endpoint).iter().all(|(key, value)| {
        hostcalls::get_property(vec![key]).ok().flatten().as_deref() == Some(value.as_bytes())
    })
}

impl Context for HttpFilter {}

impl HttpContext for HttpFilter {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.decide()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn forward(target: &str, set: &[(&str, &str)], remove: &[&str]) -> Forward {
        Forward {
            target: target.into(),
            set_headers: set
                .iter()
                .map(|(n, v)| ((*n).into(), (*v).into()))
                .collect(),
            remove_headers: remove.iter().map(|n| (*n).into()).collect(),
            authority: Arc::from("upstream.internal"),
        }
    }

    fn received(pairs: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
        pairs
            .iter()
            .map(|(n, v)| ((*n).into(), v.to_vec()))
            .collect()
    }

    #[test]
    fn only_edge_and_removed_headers_the_client_sent_are_removed() {
        let got = received(&[
            (":method", b"GET"),
            (":path", b"/"),
            ("accept", b"*/*"),
            // Forged edge headers: removed (once: Envoy's remove drops every value).
            ("x-real-ip", b"6.6.6.6"),
            ("x-forwarded-client-cert", b"By=forged"),
            // Set by core below: replaced by the set, not removed first.
            ("x-forwarded-for", b"6.6.6.6"),
            // The policy's remove-headers.
            ("cookie", b"secret"),
        ]);
        let fwd = forward(
            "/",
            &[("x-forwarded-for", "192.0.2.1")],
            &["cookie", "x-absent"],
        );
        let removed: Vec<&str> = removals(&fwd, &got).collect();
        assert_eq!(removed, ["x-forwarded-client-cert", "x-real-ip", "cookie"]);
    }

    #[test]
    fn a_header_envoy_already_holds_with_the_same_value_is_not_set_again() {
        let got = received(&[
            (":path", b"/"),
            // As Envoy's connection manager set them.
            ("x-forwarded-proto", b"https"),
            ("x-forwarded-for", b"192.0.2.1"),
            // Twice: the set must replace both.
            ("x-tlsgate-endpoint", b"app.test"),
            ("x-tlsgate-endpoint", b"app.test"),
        ]);
        let fwd = forward(
            "/",
            &[
                ("x-forwarded-proto", "https"),
                ("x-forwarded-for", "198.51.100.7"),
                ("x-tlsgate-endpoint", "app.test"),
                ("x-forwarded-host", "app.test"),
            ],
            &[],
        );
        let set: Vec<(&str, &str)> = sets(&fwd, &got).collect();
        assert_eq!(
            set,
            [
                ("x-forwarded-for", "198.51.100.7"),
                ("x-tlsgate-endpoint", "app.test"),
                ("x-forwarded-host", "app.test"),
            ]
        );
    }

    #[test]
    fn a_request_without_edge_headers_needs_no_removal() {
        let got = received(&[(":path", b"/"), ("accept", b"*/*")]);
        let fwd = forward("/", &[("x-forwarded-proto", "https")], &[]);
        assert_eq!(removals(&fwd, &got).count(), 0);
    }
}
