//! What a policy answers: the verdict for a connection, the verdict for a request, and why a
//! refusal refused.

use std::fmt;

use crate::expr::RuntimeError;
use crate::request::{BadTarget, Forward};

/// Why a connection or request was refused. `as_str` is the stable label used in logs and
/// metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// The strategy requires a certificate and none was presented.
    ClientCertificateRequired,
    /// `require-and-verify`: the certificate does not chain to a configured CA.
    ClientCertificateUntrusted,
    /// The certificate's extendedKeyUsage excludes client authentication.
    ClientCertificateWrongUsage,
    /// `require-and-verify`: the certificate is expired or not yet valid (seen on a resumed
    /// session, which TLS stacks do not re-verify).
    ClientCertificateOutsideValidity,
    /// `require-and-verify`: a CRL of the endpoint lists the certificate (seen on a resumed
    /// session; a full handshake already failed).
    ClientCertificateRevoked,
    /// `require-and-verify`: the CRL that covers the certificate is past its `nextUpdate`.
    ClientCertificateRevocationUnknown,
    /// `require-and-verify` with `mutual_tls_ocsp` mode `require`: no valid OCSP answer.
    OcspUnavailable,
    /// A `deny` action ran; `rule` is its position in the phase as written.
    Policy { rule: usize },
    /// `restrict-ips` refused the client address.
    IpRestricted { rule: usize },
    /// An expression could not be evaluated; the policy fails closed.
    ExpressionFailed { rule: usize },
    /// A `close-connection` action ran; `rule` is its position in the phase as written.
    CloseConnection { rule: usize },
    /// The request's Host belongs to another endpoint than the one chosen by SNI.
    Misdirected,
    /// The request target cannot be normalized safely (answered 400).
    BadTarget(BadTarget),
    /// More than one Host (RFC 9112 §3.2 requires exactly one; answered 400).
    DuplicateHost,
    /// `CONNECT` would make the edge a tunnel to whatever the upstream can reach (405).
    ConnectMethod,
    /// The server name the client sent is not one this endpoint serves. The native host never
    /// routes such a name here; Envoy's `*.example.com` filter chain also takes
    /// `a.b.example.com`, which a wildcard endpoint (one label) does not serve.
    UnservedServerName,
}

impl DenyReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClientCertificateRequired => "client_certificate_required",
            Self::ClientCertificateUntrusted => "client_certificate_untrusted",
            Self::ClientCertificateWrongUsage => "client_certificate_wrong_usage",
            Self::ClientCertificateOutsideValidity => "client_certificate_outside_validity",
            Self::ClientCertificateRevoked => "client_certificate_revoked",
            Self::ClientCertificateRevocationUnknown => "client_certificate_revocation_unknown",
            Self::OcspUnavailable => "ocsp_unavailable",
            Self::Policy { .. } => "policy_deny",
            Self::IpRestricted { .. } => "ip_restricted",
            Self::ExpressionFailed { .. } => "expression_failed",
            Self::CloseConnection { .. } => "close_connection",
            Self::Misdirected => "misdirected_request",
            Self::BadTarget(why) => why.as_str(),
            Self::DuplicateHost => "duplicate_host",
            Self::ConnectMethod => "connect_method",
            Self::UnservedServerName => "unserved_server_name",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Policy { rule }
            | Self::IpRestricted { rule }
            | Self::ExpressionFailed { rule }
            | Self::CloseConnection { rule } => {
                write!(f, "{} (rule {rule})", self.as_str())
            }
            _ => f.write_str(self.as_str()),
        }
    }
}

/// The answer for a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Close the connection.
    Deny(DenyReason),
}

impl Verdict {
    /// The verdict as both hosts' metrics and logs spell it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Continue => "allow",
            Self::Deny(_) => "deny",
        }
    }
}

/// A response the proxy gives itself instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Why the request was not forwarded; `None` for a `custom-response` that is not a refusal.
    pub reason: Option<DenyReason>,
    /// For logs only, never sent: why an expression failed.
    pub detail: Option<RuntimeError>,
}

/// The answer for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Forward, edited exactly as [`Forward`] says (see [`crate::request`]).
    Forward(Forward),
    Respond(LocalResponse),
    /// Close the client's connection without answering (`close-connection`).
    Close(DenyReason),
}

impl LocalResponse {
    /// The plain-text refusal both hosts answer with; `label` is the stable reason.
    pub fn refusal(status: u16, label: &str, reason: Option<DenyReason>) -> Self {
        Self {
            status,
            body: format!("denied by policy: {label}\n"),
            headers: Vec::new(),
            reason,
            detail: None,
        }
    }

    /// What both hosts answer when the request the policy let through cannot carry core's
    /// header edits (a value HTTP cannot hold): refused, never forwarded half-edited, so a
    /// spoofed identity or a header the policy set is never lost on the way.
    pub fn header_rewrite_failed() -> Self {
        Self::refusal(403, Self::HEADER_REWRITE_FAILED, None)
    }

    /// The label of [`Self::header_rewrite_failed`] in logs and metrics.
    pub const HEADER_REWRITE_FAILED: &'static str = "header_rewrite_failed";
}
