//! The policy file as written: serde shapes with no meaning attached yet.
//!
//! Every struct denies unknown fields, so a typo in a security policy is a load error rather
//! than a silently ignored line. Nothing here is trusted; [`crate::config`] turns these shapes
//! into validated domain types field by field.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub endpoints: Vec<RawEndpoint>,
    /// tlsgate extension: settings of a bind address shared by its endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<RawListener>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub bind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<RawProxyProtocolIn>,
}

/// PROXY protocol headers in front of every connection, from these sources only.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawProxyProtocolIn {
    pub trusted_sources: Vec<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEndpoint {
    pub url: String,
    pub bind: String,
    pub upstream: RawUpstream,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<RawTrafficPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_client_cert: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstream {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<RawUpstreamTls>,
    /// `1` or `2` (ngrok's AgentEndpoint `upstream.proxyProtocolVersion`): a PROXY protocol
    /// header naming the client in front of every upstream connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<Value>,
    /// tlsgate extension: with `proxy_protocol: 2`, TLVs that tell the upstream about the
    /// client's TLS (its SNI, ALPN, TLS version and a verified certificate's common name), as
    /// HAProxy's `send-proxy-v2-ssl-cn` does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol_tlvs: Option<bool>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUpstreamTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<RawCertificatePair>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authorities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    /// tlsgate extension: certificates whose public keys the upstream must present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pinned_certificates: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificatePair {
    pub certificate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrafficPolicy {
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_tcp_connect: Vec<RawRule>,
    #[serde(
        default,
        deserialize_with = "null_as_empty",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub on_http_request: Vec<RawRule>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expressions: Vec<String>,
    pub actions: Vec<RawAction>,
}

/// An action keeps its `config` as a loose value: its shape depends on `type`, and the
/// conversion picks the right typed struct (with its own `deny_unknown_fields`) per type.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAction {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTerminateTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_certificate: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_private_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_tls_certificate_authorities: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_tls_verification_strategy: Option<String>,
    /// tlsgate extension: certificate revocation lists (PEM or DER, inline or a path) checked
    /// for every client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_tls_certificate_revocation_lists: Option<Vec<String>>,
    /// tlsgate extension: `chain` (default) or `leaf`, which certificates the CRLs are checked
    /// for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_tls_revocation_check: Option<String>,
    /// tlsgate extension: `false` turns TLS session resumption off for this endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_resumption: Option<bool>,
    /// tlsgate extension: how long a session can be resumed (`2h` by default, at most 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_lifetime: Option<String>,
    /// tlsgate extension: files of 80 random bytes (Envoy's `session_ticket_keys` format) that
    /// encrypt session tickets, the first for new tickets, all for resuming: instances that
    /// share them resume each other's sessions behind an L4 balancer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_ticket_keys: Option<Vec<String>>,
    /// tlsgate extension: ask the issuer's OCSP responder about every verified client
    /// certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_tls_ocsp: Option<RawOcsp>,
    /// tlsgate extension: the key-exchange groups this endpoint offers, most preferred first
    /// (a subset of `facts::KEY_EXCHANGE_GROUPS`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_exchange_groups: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOcsp {
    /// `require` (no valid answer: refuse) or `prefer` (no valid answer: accept and log).
    pub mode: String,
    /// `http://…`: the responder to ask instead of the one each certificate names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder: Option<String>,
    /// How long a connection waits for the answer (`2s` by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeny {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomResponse {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAddHeaders {
    pub headers: BTreeMap<String, String>,
}

/// `close-connection` takes no configuration.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCloseConnection {}

/// ngrok's `log` action: `metadata` lands in the request's access line.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub metadata: std::collections::BTreeMap<String, serde_json::Value>,
}

/// ngrok's `set-vars` action: `vars` is a list of one-entry maps, `- name: value`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSetVars {
    pub vars: Vec<std::collections::BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRemoveHeaders {
    pub headers: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRestrictIps {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

/// `on_http_request:` with nothing after it is YAML null; read it as "no rules".
fn null_as_empty<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Vec<T>>::deserialize(deserializer)?.unwrap_or_default())
}
