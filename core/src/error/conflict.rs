//! Settings that contradict each other: one family of
//! [`ConfigErrorKind`](super::ConfigErrorKind).

use crate::quoted::Quoted;

/// Settings that contradict each other, or a setting that would do nothing where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Conflict {
    #[error(
        "`{url}` is a tls:// endpoint: it proxies bytes, so there are no HTTP requests to apply \
         on_http_request to; use an https:// endpoint"
    )]
    HttpRulesOnTlsEndpoint { url: Quoted },
    #[error(
        "terminate-tls cannot depend on expressions: TLS is terminated before any connection \
         fact is known; move it to a rule without expressions"
    )]
    TerminateTlsBehindExpression,
    #[error(
        "a verification strategy without mutual_tls_certificate_authorities does nothing: list \
         the CAs that issue your client certificates"
    )]
    StrategyWithoutAuthorities,
    #[error(
        "{field} has no effect with session_resumption: false (no session resumes); remove one \
         of them"
    )]
    WithoutResumption { field: &'static str },
    #[error(
        "X25519MLKEM768 is a TLS 1.3 group, and this endpoint admits TLS 1.2 clients: list a \
         classical group too (X25519, P-256, P-384) or set min_version: \"1.3\""
    )]
    PostQuantumOnlyWithTls12,
    #[error("protocol applies to HTTP upstreams; a tls endpoint has none")]
    ProtocolOnTlsEndpoint,
    #[error(
        "`{url}` is not encrypted, so upstream tls settings would do nothing; use https:// (or \
         tls://) to connect with TLS"
    )]
    UpstreamTlsUnencrypted { url: Quoted },
    #[error("TLVs exist in PROXY protocol version 2 only; set proxy_protocol: 2 beside it")]
    TlvsWithoutVersion2,
    #[error(
        "{url} shares {bind} with {other}, which has another scheme; https and tls \
         endpoints need their own bind addresses"
    )]
    SchemesShareBind {
        url: String,
        bind: String,
        /// The endpoint with the other scheme, named as [`ConfigErrorKind::DuplicateHost`](super::ConfigErrorKind::DuplicateHost)
        /// names it: `endpoints[0]` in the same file, `https://a.test in b.yaml` in another.
        other: String,
    },
    #[error(
        "a client certificate is presented in a TLS handshake, but the upstream `{upstream}` is \
         not TLS; use https:// (or tls://)"
    )]
    ClientCertificateUnencrypted { upstream: Quoted },
    #[error(
        "upstream TLS annotations ({annotation}, …) apply to an https:// or tls:// upstream, \
         and `{upstream}` is neither"
    )]
    UpstreamAnnotationsUnencrypted {
        /// The first of the annotations, e.g. `tlsgate.dev/upstream-ca`.
        annotation: &'static str,
        upstream: Quoted,
    },
    /// A traffic policy given two ways on one resource.
    #[error("give the policy {ways}, not both{note}")]
    PolicyTwice {
        /// e.g. `once: trafficPolicy or trafficPolicyName`.
        ways: &'static str,
        note: &'static str,
    },
    #[error(
        "weight 0 sends this rule no traffic (Gateway API answers 500); remove the rule or give \
         the backend weight"
    )]
    ZeroWeight,
    #[error(
        "an internal AgentEndpoint reached by forward-internal runs its CloudEndpoint's policy \
         in tlsgate; move these rules there"
    )]
    InternalEndpointPolicy,
}
