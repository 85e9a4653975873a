//! The names both hosts count and log under: one vocabulary, so a dashboard, an alert or a log
//! search reads the same series and the same words whichever host serves. The native host
//! registers these metrics with `prometheus_client`; the filter encodes the same names and
//! labels into Envoy stat names ([`super::envoy_stat_name`]) that the generated bootstrap turns
//! back into Prometheus labels.

use crate::config::Endpoint;

use super::{DenyReason, RequestVerdict, Verdict};

/// The prefix of every metric name.
pub const METRIC_PREFIX: &str = "tlsgate";

/// The `endpoint` label of a verdict given before an endpoint was chosen (the filter only: no
/// policy loaded, connection facts Envoy could not give, the per-address cap). Natively such a
/// connection never gets past the handshake, which `tlsgate_tls_handshakes_total` counts.
pub const NO_ENDPOINT: &str = "-";

/// The `reason` label of a verdict that has no reason (an admitted connection, a forwarded
/// request).
pub const NO_REASON: &str = "-";

/// An endpoint's label in metrics and logs: its URL as the policy writes it. Unique within a
/// configuration and stable across reloads and reorderings (an index is neither).
pub fn endpoint_label(endpoint: &Endpoint) -> &str {
    &endpoint.url
}

/// The counters both hosts export, with the same names and labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Counter {
    /// Connections after the handshake by `on_tcp_connect` verdict:
    /// `{endpoint, verdict, reason}`.
    Connections,
    /// Requests by `on_http_request` verdict: `{endpoint, verdict, reason}`.
    HttpRequests,
    /// `mutual_tls_ocsp` answers by endpoint and outcome: `{endpoint, reason}`.
    ClientOcspChecks,
}

impl Counter {
    pub const ALL: [Counter; 3] = [
        Counter::Connections,
        Counter::HttpRequests,
        Counter::ClientOcspChecks,
    ];

    /// The name without [`METRIC_PREFIX`] and `_total` (as `prometheus_client` registers it).
    pub fn name(self) -> &'static str {
        match self {
            Self::Connections => "connections",
            Self::HttpRequests => "http_requests",
            Self::ClientOcspChecks => "client_ocsp_checks",
        }
    }

    pub fn help(self) -> &'static str {
        match self {
            Self::Connections => "Connections after the handshake by on_tcp_connect verdict",
            Self::HttpRequests => "HTTP requests by on_http_request verdict",
            Self::ClientOcspChecks => {
                "OCSP status checks of client certificates by endpoint and outcome (reason)"
            }
        }
    }

    /// The full Prometheus name, e.g. `tlsgate_connections_total`.
    pub fn prometheus_name(self) -> String {
        format!("{METRIC_PREFIX}_{}_total", self.name())
    }

    /// The label names, in the order both hosts write them.
    pub fn labels(self) -> &'static [&'static str] {
        match self {
            Self::Connections | Self::HttpRequests => &["endpoint", "verdict", "reason"],
            Self::ClientOcspChecks => &["endpoint", "reason"],
        }
    }
}

/// The `verdict` and `reason` labels of a connection verdict.
pub fn connection_labels(verdict: &Verdict) -> (&'static str, &'static str) {
    match verdict {
        Verdict::Continue => (verdict.label(), NO_REASON),
        Verdict::Deny(reason) => (verdict.label(), reason.as_str()),
    }
}

/// The `verdict` a request refused for `reason` gets (`deny`), as [`request_labels`] gives it.
pub fn request_denied(reason: &DenyReason) -> (&'static str, &'static str) {
    ("deny", reason.as_str())
}

/// The `verdict` and `reason` labels of a request verdict: `forward` (reason `-`), `deny` with
/// the refusal's reason (answered or closed), or `respond` / `custom_response` for a
/// `custom-response` that is no refusal.
pub fn request_labels(verdict: &RequestVerdict) -> (&'static str, &'static str) {
    match verdict {
        RequestVerdict::Forward(_) => ("forward", NO_REASON),
        RequestVerdict::Respond(local) => match &local.reason {
            Some(reason) => request_denied(reason),
            None => ("respond", "custom_response"),
        },
        RequestVerdict::Close(reason) => request_denied(reason),
    }
}
