//! The resources `tlsgate istio` writes, as Istio's CRDs spell them: typed structs whose field
//! names the compiler checks and the tests validate against the published schemas.

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::Value;
use tlsgate_core::TlsVersion;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Resource<S> {
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) metadata: Metadata,
    pub(super) spec: S,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Metadata {
    pub(super) name: String,
    pub(super) namespace: String,
    pub(super) labels: BTreeMap<&'static str, &'static str>,
}

/// `extensions.istio.io/v1alpha1` `WasmPlugin`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WasmPluginSpec {
    pub(super) selector: Selector,
    pub(super) url: String,
    pub(super) sha256: Option<String>,
    pub(super) image_pull_policy: PullPolicy,
    #[serde(rename = "type")]
    pub(super) kind: PluginType,
    pub(super) phase: PluginPhase,
    /// Envoy's `root_id`: the filter reads its role from it.
    pub(super) plugin_name: &'static str,
    pub(super) fail_strategy: FailStrategy,
    pub(super) plugin_config: Value,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Selector {
    pub(super) match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) enum PullPolicy {
    IfNotPresent,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum PluginType {
    Network,
    Http,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum PluginPhase {
    Authn,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum FailStrategy {
    FailClose,
}

/// `networking.istio.io/v1` `Gateway`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GatewaySpec {
    pub(super) selector: BTreeMap<String, String>,
    pub(super) servers: Vec<Server>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Server {
    pub(super) port: ServerPort,
    pub(super) hosts: Vec<String>,
    pub(super) tls: ServerTls,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServerPort {
    pub(super) number: u16,
    /// Unique per server: Istio gives each HTTPS server its own route table by port name.
    pub(super) name: String,
    pub(super) protocol: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ServerTls {
    pub(super) mode: ServerTlsMode,
    pub(super) credential_name: String,
    pub(super) min_protocol_version: ProtocolVersion,
    pub(super) max_protocol_version: ProtocolVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum ServerTlsMode {
    Simple,
    Mutual,
    OptionalMutual,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub(super) enum ProtocolVersion {
    #[serde(rename = "TLSV1_2")]
    Tls12,
    #[serde(rename = "TLSV1_3")]
    Tls13,
}

impl From<TlsVersion> for ProtocolVersion {
    fn from(v: TlsVersion) -> Self {
        match v {
            TlsVersion::Tls12 => Self::Tls12,
            TlsVersion::Tls13 => Self::Tls13,
        }
    }
}

/// `networking.istio.io/v1` `VirtualService`: the endpoint's host, on the Gateway, to its
/// upstream.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct VirtualServiceSpec {
    pub(super) hosts: Vec<String>,
    pub(super) gateways: Vec<&'static str>,
    pub(super) export_to: Vec<&'static str>,
    pub(super) http: Option<Vec<HttpRoute>>,
    pub(super) tcp: Option<Vec<TcpRoute>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct HttpRoute {
    pub(super) route: Vec<RouteDestination>,
    /// The Host the upstream is sent, the one both hosts send (core's `Upstream::authority`).
    pub(super) rewrite: Rewrite,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Rewrite {
    pub(super) authority: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TcpRoute {
    pub(super) route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RouteDestination {
    pub(super) destination: Destination,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Destination {
    pub(super) host: String,
    pub(super) port: PortSelector,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct PortSelector {
    pub(super) number: u16,
}

/// `networking.istio.io/v1` `DestinationRule`: how the gateway connects to an upstream.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct DestinationRuleSpec {
    pub(super) host: String,
    /// Only this namespace's proxies (the gateway) use it; the service's other clients keep
    /// their own settings.
    pub(super) export_to: Vec<&'static str>,
    pub(super) traffic_policy: TrafficPolicy,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TrafficPolicy {
    pub(super) tls: ClientTls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ClientTls {
    pub(super) mode: ClientTlsMode,
    pub(super) credential_name: Option<String>,
    pub(super) sni: Option<String>,
    pub(super) subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(super) enum ClientTlsMode {
    Simple,
    Mutual,
}

/// A core/v1 `Secret` (only with [`Options::with_secrets`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Secret {
    pub(super) api_version: &'static str,
    pub(super) kind: &'static str,
    pub(super) metadata: Metadata,
    #[serde(rename = "type")]
    pub(super) kind_of: &'static str,
    pub(super) string_data: BTreeMap<&'static str, String>,
}
