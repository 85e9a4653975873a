//! Policy → the Istio resources that run it in an ingress gateway.
//!
//! Istio writes the gateway's Envoy configuration itself, so the policy is split the way Istio
//! can express it, as `tlsgate envoy-config` splits it for plain Envoy:
//!
//! - the handshake (certificate, TLS versions, client-certificate requirement, CRLs) becomes a
//!   `Gateway` server per endpoint, its certificate and CAs a Secret named by `credentialName`;
//! - where the connection goes becomes a `VirtualService` per endpoint, and upstream TLS a
//!   `DestinationRule` (`sni`, `subjectAltNames`, the client certificate's Secret);
//! - everything else (rules, actions, header hygiene, identity headers, metadata, metrics) is the
//!   same `tlsgate_filter.wasm`, loaded twice by `WasmPlugin`s with the filter policy
//!   ([`Config::filter_policy`]) as `pluginConfig`;
//! - the clusters the filter asks OCSP responders through, which Istio does not generate,
//!   become an `EnvoyFilter` that adds them to the gateway.
//!
//! Whatever of a policy Istio cannot express is refused with the endpoint and field it concerns
//! when Istio would admit what the policy refuses, or leave its purpose undone; it is a warning
//! when Istio is stricter than the policy or the filter still enforces it. docs/istio.md has the
//! table, and each case below says which and why.
//!
//! Field names are Istio's (`camelCase`, the CRDs' spelling); the tests check every generated
//! document against the published CRD schemas (tests/fixtures/istio/).

mod ser;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use tlsgate_core::config::{ClientAuth, Scheme, UpstreamScheme, UpstreamTls, VerificationStrategy};
use tlsgate_core::pem::Origin;
use tlsgate_core::revocation::RevocationDepth;
use tlsgate_core::{Config, Endpoint, TlsVersion};
use yaml_rust2::Yaml;

use crate::{HTTP_ROOT_ID, NETWORK_ROOT_ID};

/// The Gateway's name, which every VirtualService binds to.
const GATEWAY_NAME: &str = "tlsgate";

/// What the generator needs besides the policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where the gateway fetches `tlsgate_filter.wasm`: `oci://…` (an image), `https://…`
    /// (with [`Options::sha256`]) or `file://…` (already in the proxy's image).
    pub wasm_url: String,
    /// The module's SHA-256 (hex). Required for `http(s)://`: Istio verifies the download
    /// against it, so a changed file on the server is refused rather than run.
    pub sha256: Option<String>,
    /// The gateway's namespace: every resource and Secret goes there (Istio reads a Gateway's
    /// `credentialName` from the gateway's own namespace).
    pub namespace: String,
    /// Labels of the gateway pods the Gateway and WasmPlugins select.
    pub selector: BTreeMap<String, String>,
    /// The gateway Service's port the servers are on (443 for `istio-ingressgateway`); the
    /// policy's `bind` is this machine's and has no meaning in a cluster.
    pub port: u16,
    /// Write the Secrets (certificates, CAs, CRLs and private keys) as documents too. Off by
    /// default: the output then holds no private key and `kubectl create secret` commands say
    /// how to make them from the policy's files.
    pub with_secrets: bool,
}

impl Options {
    /// `istio-ingress`, `istio: ingressgateway`, port 443: Istio's documented ingress gateway.
    pub fn new(wasm_url: impl Into<String>) -> Self {
        Self {
            wasm_url: wasm_url.into(),
            sha256: None,
            namespace: "istio-ingress".into(),
            selector: BTreeMap::from([("istio".into(), "ingressgateway".into())]),
            port: 443,
            with_secrets: false,
        }
    }
}

/// The generated resources.
#[derive(Debug, Clone)]
pub struct Resources {
    /// Multi-document YAML for `kubectl apply -f`.
    pub yaml: String,
    /// Where Istio will behave differently from the native host; also written into the
    /// YAML's header. Hosts print them as `warning: …`.
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A policy feature Istio cannot express without admitting what the policy refuses.
    #[error("{at}: {field}: {what}")]
    Unsupported {
        /// `policy.yaml: endpoints[0] (https://app.example.com)`.
        at: String,
        /// The field, relative to the endpoint.
        field: String,
        what: String,
    },
    /// A command-line value Istio would reject.
    #[error("{0}")]
    Option(String),
    #[error("endpoints[{endpoint}] ({url}): {what} is not loaded; load the policy with its keys (KeyMode::Load)")]
    MissingMaterial {
        endpoint: usize,
        url: String,
        what: &'static str,
    },
    #[error("emitting YAML: {0}")]
    Emit(String),
}

// ---------------------------------------------------------------------------------------------
// The resources, as Istio's CRDs spell them.

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Resource<S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    spec: S,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Metadata {
    name: String,
    namespace: String,
    labels: BTreeMap<&'static str, &'static str>,
}

/// `extensions.istio.io/v1alpha1` `WasmPlugin`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct WasmPluginSpec {
    selector: Selector,
    url: String,
    sha256: Option<String>,
    image_pull_policy: PullPolicy,
    #[serde(rename = "type")]
    kind: PluginType,
    phase: PluginPhase,
    /// Envoy's `root_id`: the filter reads its role from it.
    plugin_name: &'static str,
    fail_strategy: FailStrategy,
    plugin_config: Value,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector {
    match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Serialize)]
enum PullPolicy {
    IfNotPresent,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum PluginType {
    Network,
    Http,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum PluginPhase {
    Authn,
}

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum FailStrategy {
    FailClose,
}

/// `networking.istio.io/v1` `Gateway`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct GatewaySpec {
    selector: BTreeMap<String, String>,
    servers: Vec<Server>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Server {
    port: ServerPort,
    hosts: Vec<String>,
    tls: ServerTls,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerPort {
    number: u16,
    /// Unique per server: Istio gives each HTTPS server its own route table by port name.
    name: String,
    protocol: &'static str,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ServerTls {
    mode: ServerTlsMode,
    credential_name: String,
    min_protocol_version: ProtocolVersion,
    max_protocol_version: ProtocolVersion,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum ServerTlsMode {
    Simple,
    Mutual,
    OptionalMutual,
}

#[derive(Debug, Clone, Copy, Serialize)]
enum ProtocolVersion {
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
struct VirtualServiceSpec {
    hosts: Vec<String>,
    gateways: Vec<&'static str>,
    export_to: Vec<&'static str>,
    http: Option<Vec<HttpRoute>>,
    tcp: Option<Vec<TcpRoute>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct HttpRoute {
    route: Vec<RouteDestination>,
    /// The Host the upstream is sent, the one both hosts send (core's `Upstream::authority`).
    rewrite: Rewrite,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Rewrite {
    authority: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct TcpRoute {
    route: Vec<RouteDestination>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct RouteDestination {
    destination: Destination,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Destination {
    host: String,
    port: PortSelector,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct PortSelector {
    number: u16,
}

/// `networking.istio.io/v1` `DestinationRule`: how the gateway connects to an upstream.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct DestinationRuleSpec {
    host: String,
    /// Only this namespace's proxies (the gateway) use it; the service's other clients keep
    /// their own settings.
    export_to: Vec<&'static str>,
    traffic_policy: TrafficPolicy,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct TrafficPolicy {
    tls: ClientTls,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
struct ClientTls {
    mode: ClientTlsMode,
    credential_name: Option<String>,
    sni: Option<String>,
    subject_alt_names: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
enum ClientTlsMode {
    Simple,
    Mutual,
}

/// A core/v1 `Secret` (only with [`Options::with_secrets`]).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct Secret {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata,
    #[serde(rename = "type")]
    kind_of: &'static str,
    string_data: BTreeMap<&'static str, String>,
}

// ---------------------------------------------------------------------------------------------

/// One Secret a resource names, and where its entries come from.
struct SecretPlan {
    name: String,
    /// `kubernetes.io/tls` when it holds a certificate and key, else `Opaque` (CAs only).
    kind_of: &'static str,
    /// Key in the Secret (Istio's names: `tls.crt`, `tls.key`, `ca.crt`, `ca.crl`), the PEM,
    /// and the file it came from when it came from one.
    entries: Vec<(&'static str, String, Source)>,
}

enum Source {
    /// The file, as the `kubectl` command names it.
    File(String),
    /// Written in the policy itself, or spread over several files, or DER (Istio wants PEM).
    Elsewhere(&'static str),
}

/// Where the endpoint is, for messages: `policy.yaml: endpoints[1] (https://b.example.com)`.
fn at(config: &Config, endpoint: &Endpoint) -> String {
    let position = config
        .endpoints
        .iter()
        .take(endpoint.index)
        .filter(|e| e.file == endpoint.file)
        .count();
    let file = endpoint
        .file
        .as_deref()
        .map_or_else(|| "<policy>".to_owned(), |f| f.display().to_string());
    let origin = match endpoint.origin.first() {
        Some(o) => format!(", from {o}"),
        None => String::new(),
    };
    format!("{file}: endpoints[{position}] ({}{origin})", endpoint.url)
}

/// A DNS-1123 name for the endpoint's resources: `*.example.com` becomes
/// `wildcard.example.com`.
fn slug(endpoint: &Endpoint) -> String {
    let host = endpoint.host.to_string().replace('*', "wildcard");
    let mut name: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    // Leave room for `tlsgate-` and `-upstream` under Kubernetes' 253.
    name.truncate(200);
    name.trim_matches(|c| c == '-' || c == '.').to_owned()
}

/// The Kubernetes Service host Istio routes to for an upstream host, read as tlsgate reads
/// manifests (`--resolve`): `name` is a Service in `default`, `name.namespace` a Service in
/// that namespace, `….svc` / `….svc.cluster.local` as written; anything longer is an external
/// name, which Istio routes only when a ServiceEntry declares it.
fn service_host(host: &str) -> (String, bool) {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if host.ends_with(".svc.cluster.local") {
        return (host, true);
    }
    if host.ends_with(".svc") {
        return (format!("{host}.cluster.local"), true);
    }
    match host.matches('.').count() {
        0 => (format!("{host}.default.svc.cluster.local"), true),
        1 => (format!("{host}.svc.cluster.local"), true),
        _ => (host, false),
    }
}

/// The path to show in a `kubectl` command: relative to the policy's directory when under it
/// (the comment says to run the commands there), else as loaded.
fn shown(endpoint: &Endpoint, path: &Path) -> String {
    let base = endpoint
        .file
        .as_deref()
        .and_then(Path::parent)
        .map(|b| {
            if b.as_os_str().is_empty() {
                Path::new(".")
            } else {
                b
            }
        })
        .and_then(|b| std::path::absolute(b).ok());
    let rel = base.as_deref().and_then(|b| path.strip_prefix(b).ok());
    rel.unwrap_or(path).display().to_string()
}

/// The one file every origin names, if they all name the same one.
fn one_file<'a>(mut origins: impl Iterator<Item = &'a Origin>) -> Option<&'a Path> {
    let Some(Origin::File(first)) = origins.next() else {
        return None;
    };
    origins
        .all(|o| matches!(o, Origin::File(p) if p == first))
        .then_some(first.as_path())
}

fn source(endpoint: &Endpoint, origin: Option<&Path>, otherwise: &'static str) -> Source {
    match origin {
        Some(path) => Source::File(shown(endpoint, path)),
        None => Source::Elsewhere(otherwise),
    }
}

/// A Secret's `ca.crt`: the CAs, and the file they come from when it is one.
fn ca_entry(
    endpoint: &Endpoint,
    authorities: &tlsgate_core::pem::TrustAnchors,
) -> (&'static str, String, Source) {
    (
        "ca.crt",
        authorities.to_pem(),
        source(
            endpoint,
            one_file(authorities.origins.iter()),
            "inlined in the policy or spread over several files",
        ),
    )
}

fn private_key_pem(key: &tlsgate_core::pem::PrivateKey) -> String {
    use rustls_pki_types::PrivateKeyDer;
    let label = match key.der() {
        PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
        PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
        _ => "PRIVATE KEY",
    };
    tlsgate_core::encoding::pem(label, key.der().secret_der())
}

fn check_options(options: &Options) -> Result<Option<String>, Error> {
    let url = options.wasm_url.as_str();
    let sha256 = match &options.sha256 {
        Some(hex) => {
            let hex = hex.trim().to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::Option(format!(
                    "--sha256 {hex}: write the module's SHA-256 as 64 hex digits \
                     (sha256sum tlsgate_filter.wasm)"
                )));
            }
            Some(hex)
        }
        None => None,
    };
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("oci" | "file") => {}
        Some("https" | "http") if sha256.is_none() => {
            return Err(Error::Option(format!(
                "--wasm-url {url}: a module fetched over HTTP(S) must be pinned: pass --sha256 \
                 with its SHA-256 (sha256sum tlsgate_filter.wasm), so Istio refuses a file that \
                 changed on the server"
            )))
        }
        Some("https" | "http") => {}
        _ => {
            return Err(Error::Option(format!(
                "--wasm-url {url}: use oci://REGISTRY/IMAGE:TAG (an OCI image), \
                 https://HOST/tlsgate_filter.wasm with --sha256, or file:///PATH in the proxy image"
            )))
        }
    }
    let label = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    if !label(&options.namespace) {
        return Err(Error::Option(format!(
            "--namespace {}: a namespace is a DNS label (lowercase letters, digits, '-')",
            options.namespace
        )));
    }
    for (key, value) in &options.selector {
        if key.is_empty() || key.contains('*') || value.contains('*') || value.len() > 63 {
            return Err(Error::Option(format!(
                "--selector {key}={value}: a label key and a value of at most 63 characters, \
                 no wildcards"
            )));
        }
    }
    if options.selector.is_empty() {
        return Err(Error::Option(
            "--selector: name the gateway's pods (e.g. istio=ingressgateway); without a \
             selector the WasmPlugins would apply to every proxy in the namespace"
                .into(),
        ));
    }
    Ok(sha256)
}

/// Generates the Istio resources for `config` (loaded with its keys: the Secrets and their
/// commands need the key's file or contents).
pub fn generate(config: &Config, options: &Options) -> Result<Resources, Error> {
    let sha256 = check_options(options)?;
    let mut warnings = Vec::new();
    if options.wasm_url.starts_with("oci://")
        && sha256.is_none()
        && !options.wasm_url.contains("@sha256:")
    {
        warnings.push(format!(
            "--wasm-url {}: an image tag can be moved; pin the module with --sha256 or an \
             @sha256: digest so every gateway runs the same filter",
            options.wasm_url
        ));
    }
    let metadata = |name: String| Metadata {
        name,
        namespace: options.namespace.clone(),
        labels: BTreeMap::from([("app.kubernetes.io/managed-by", "tlsgate")]),
    };

    let mut servers = Vec::new();
    let mut virtual_services = Vec::new();
    let mut rules: Vec<(String, Resource<DestinationRuleSpec>, String)> = Vec::new();
    let mut secrets: Vec<SecretPlan> = Vec::new();
    let mut hosts: Vec<(String, String)> = Vec::new();
    // OCSP: the responders' clusters, and the longest wait of the endpoints that ask the one
    // each client certificate names (as `tlsgate envoy-config` declares them).
    let mut ocsp_clusters = Vec::new();
    let mut aia_timeout = None;

    for endpoint in &config.endpoints {
        let here = at(config, endpoint);
        let unsupported = |field: String, what: String| Error::Unsupported {
            at: here.clone(),
            field,
            what,
        };
        let host = endpoint.host.to_string();
        // The filter finds the endpoint by SNI behind Istio, and the Gateway skips a server
        // whose host another server on the port already has: one endpoint per host.
        if let Some((_, other)) = hosts.iter().find(|(h, _)| *h == host) {
            return Err(unsupported(
                "url".into(),
                format!(
                    "{host} is also served by {other}: behind Istio every endpoint is chosen by \
                     its server name alone (the gateway's port is shared), so give each host one \
                     endpoint"
                ),
            ));
        }
        hosts.push((host.clone(), here.clone()));
        if let Some(why) = tlsgate_core::policy::unsupported_behind_envoy(endpoint) {
            return Err(unsupported("traffic_policy".into(), why));
        }
        if endpoint.reads_variable(tlsgate_core::ja4::VARIABLE) {
            return Err(unsupported(
                "traffic_policy".into(),
                "a rule reads conn.tls.ja4_fingerprint: behind Istio the gateway's listener \
                 (its tls_inspector, which computes JA4 only when asked) and its HTTP filters \
                 are Istio's, so nothing hands the fingerprint to the filter"
                    .into(),
            ));
        }
        if config
            .listener(endpoint.bind)
            .is_some_and(|l| l.proxy_protocol.is_some())
        {
            return Err(unsupported(
                "bind".into(),
                "its listeners: entry takes PROXY protocol headers; behind Istio the ingress \
                 gateway's Service and its `proxy_protocol` listener filter (an EnvoyFilter) \
                 decide that, not the policy"
                    .into(),
            ));
        }
        if endpoint.upstream.proxy_protocol.is_some() {
            return Err(unsupported(
                "upstream.proxy_protocol".into(),
                "a PROXY protocol header to the upstream is a DestinationRule transport socket \
                 Istio does not generate from a policy yet; leave it out or use \
                 `tlsgate envoy-config`"
                    .into(),
            ));
        }
        let name = slug(endpoint);
        let tls = &endpoint.tls;
        let terminate = format!("traffic_policy.on_tcp_connect[{}] terminate-tls", tls.rule);

        // The handshake: the Gateway server.
        let certificate = tls.certificate.as_ref().ok_or_else(|| {
            unsupported(
                format!("{terminate}.server_certificate"),
                "Istio's gateway needs the endpoint's certificate to terminate TLS".into(),
            )
        })?;
        let key = tls
            .private_key
            .as_ref()
            .ok_or_else(|| Error::MissingMaterial {
                endpoint: endpoint.index,
                url: endpoint.url.clone(),
                what: "terminate-tls.server_private_key",
            })?;
        let credential = format!("tlsgate-{name}");
        let mut entries = vec![
            (
                "tls.crt",
                certificate.to_pem(),
                source(
                    endpoint,
                    one_file(std::iter::once(&certificate.origin)),
                    "inlined in the policy",
                ),
            ),
            (
                "tls.key",
                private_key_pem(key),
                source(
                    endpoint,
                    one_file(std::iter::once(&key.origin)),
                    "inlined in the policy",
                ),
            ),
        ];
        let mode = match &tls.client_auth {
            ClientAuth::Off => ServerTlsMode::Simple,
            ClientAuth::On {
                authorities,
                strategy,
                revocation,
                ocsp,
            } => {
                // The filter asks the responder through a cluster of its own, which Istio
                // does not generate: it goes into the EnvoyFilter below.
                if let Some(check) = ocsp {
                    if check.responder.is_some() {
                        let cluster = crate::ocsp_cluster(endpoint.index, check).map_err(|e| {
                            unsupported(
                                format!("{terminate}.mutual_tls_ocsp.responder"),
                                e.to_string(),
                            )
                        })?;
                        ocsp_clusters.push(cluster);
                    } else {
                        aia_timeout = aia_timeout.max(Some(check.timeout));
                    }
                }
                entries.push(ca_entry(endpoint, authorities));
                if let Some(revocation) = revocation {
                    // Istio reads a CRL from the credential's `ca.crl` and hands it to Envoy,
                    // which checks every certificate of the chain (Envoy's default): a leaf-only
                    // policy is stricter there, never looser, and the filter re-checks.
                    let pem_file = one_file(revocation.lists.iter().map(|l| &l.origin))
                        .filter(|_| revocation.lists.iter().all(|l| l.pem));
                    entries.push((
                        "ca.crl",
                        revocation.to_pem(),
                        source(
                    endpoint,
                            pem_file,
                            "inlined, in DER or spread over several files; Istio wants one PEM file",
                        ),
                    ));
                    if revocation.depth == RevocationDepth::Leaf {
                        warnings.push(format!(
                            "{here}: {terminate}.mutual_tls_revocation_check: leaf: Istio does \
                             not expose Envoy's only_verify_leaf_cert_crl, so the gateway checks \
                             the CRLs for every certificate of the chain; a client whose \
                             intermediate CA publishes no CRL is refused"
                        ));
                    }
                }
                match strategy {
                    VerificationStrategy::RequireAndVerify => ServerTlsMode::Mutual,
                    // A certificate that does not chain is refused at the handshake instead of
                    // admitted unverified: stricter, and the rules still see every other case.
                    VerificationStrategy::Request => {
                        warnings.push(format!(
                            "{here}: {terminate}.mutual_tls_verification_strategy: request: \
                             Istio's OPTIONAL_MUTUAL refuses a client certificate that does not \
                             chain to the CAs at the handshake, where tlsgate admits it as \
                             unverified; no certificate, or a verified one, behaves the same"
                        ));
                        ServerTlsMode::OptionalMutual
                    }
                    // Refused: the strategy exists to admit certificates from issuers not in the
                    // list (identified by rules on their fields); MUTUAL would refuse every one
                    // of them, so the endpoint would not do what the policy is for.
                    VerificationStrategy::RequireAny => {
                        return Err(unsupported(
                            format!("{terminate}.mutual_tls_verification_strategy"),
                            "require-any accepts a client certificate from any issuer, which \
                             needs Envoy's trust_chain_verification: ACCEPT_UNTRUSTED; Istio's \
                             Gateway does not expose it (ServerTLSSettings.insecureSkipVerify \
                             arrives with Istio 1.31), and MUTUAL would refuse every client this \
                             strategy is for. Use require-and-verify with the clients' CAs, or \
                             run this endpoint on plain Envoy (tlsgate envoy-config)"
                                .into(),
                        ));
                    }
                }
            }
        };
        if !tls.session_ticket_keys.is_empty()
            || tls.session_lifetime != tlsgate_core::config::DEFAULT_SESSION_LIFETIME
        {
            warnings.push(format!(
                "{here}: {terminate}.session_ticket_keys / session_lifetime: Istio's Gateway \
                 has no setting for them; each gateway pod makes its own ticket keys and keeps \
                 Envoy's default lifetime, so sessions resume on the pod that issued them only"
            ));
        }
        if !tls.session_resumption {
            warnings.push(format!(
                "{here}: {terminate}.session_resumption: false: Istio's Gateway has no setting \
                 for it; the gateway resumes TLS sessions (a resumed session keeps the \
                 certificate it was verified with)"
            ));
        }
        if endpoint
            .tcp_rules
            .iter()
            .flat_map(|r| &r.actions)
            .any(|a| matches!(a, tlsgate_core::config::TcpAction::Log(_)))
        {
            warnings.push(format!(
                "{here}: on_tcp_connect log: the gateway's listeners are Istio's, and none writes \
                 the connection line that carries these fields (wasm.tlsgate.tcp_log); log in \
                 on_http_request, or add a listener access log with an EnvoyFilter"
            ));
        }
        if tls.key_exchange_groups != tlsgate_core::facts::KEY_EXCHANGE_GROUPS {
            warnings.push(format!(
                "{here}: {terminate}.key_exchange_groups: Istio's Gateway has no per-server \
                 setting for them; the gateway offers the mesh's (meshConfig.tlsDefaults.ecdhCurves)"
            ));
        }
        secrets.push(SecretPlan {
            name: credential.clone(),
            kind_of: "kubernetes.io/tls",
            entries,
        });
        let (port_name, protocol) = match endpoint.scheme {
            Scheme::Https => (format!("https-{name}"), "HTTPS"),
            Scheme::Tls => (format!("tls-{name}"), "TLS"),
        };
        servers.push(Server {
            port: ServerPort {
                number: options.port,
                name: port_name,
                protocol,
            },
            // `./`: only VirtualServices in the gateway's namespace may bind this host, so no
            // other namespace can route (or hijack) the endpoint's traffic.
            hosts: vec![format!("./{host}")],
            tls: ServerTls {
                mode,
                credential_name: credential,
                min_protocol_version: tls.min_version.into(),
                max_protocol_version: tls.max_version.into(),
            },
        });

        // Where the connection goes: the VirtualService.
        let upstream = &endpoint.upstream;
        if upstream.host.parse::<IpAddr>().is_ok() {
            return Err(unsupported(
                "upstream.url".into(),
                format!(
                    "{}: Istio routes to a service name, not an address; name the Kubernetes \
                     Service (my-service.my-namespace:{}) or a ServiceEntry's host",
                    upstream.url, upstream.port
                ),
            ));
        }
        let (service, in_cluster) = service_host(&upstream.host);
        if !in_cluster {
            warnings.push(format!(
                "{here}: upstream.url: {} is not a Kubernetes Service name; Istio routes to it \
                 only when a ServiceEntry declares {service}",
                upstream.url
            ));
        }
        if upstream.address.is_some() {
            warnings.push(format!(
                "{here}: upstream: --resolve does not apply in a cluster; Istio resolves {service}"
            ));
        }
        let destination = vec![RouteDestination {
            destination: Destination {
                host: service.clone(),
                port: PortSelector {
                    number: upstream.port,
                },
            },
        }];
        let (http, tcp) = match endpoint.scheme {
            Scheme::Https => (
                Some(vec![HttpRoute {
                    route: destination,
                    rewrite: Rewrite {
                        authority: upstream.authority(),
                    },
                }]),
                None,
            ),
            Scheme::Tls => (None, Some(vec![TcpRoute { route: destination }])),
        };
        virtual_services.push(Resource {
            api_version: "networking.istio.io/v1",
            kind: "VirtualService",
            metadata: metadata(format!("tlsgate-{name}")),
            spec: VirtualServiceSpec {
                hosts: vec![host.clone()],
                gateways: vec![GATEWAY_NAME],
                export_to: vec!["."],
                http,
                tcp,
            },
        });

        // How: the DestinationRule, for upstreams over TLS.
        let upstream_tls = match (&upstream.tls, upstream.scheme) {
            (Some(t), UpstreamScheme::Https | UpstreamScheme::Tls) => Some(t),
            _ => None,
        };
        let Some(utls) = upstream_tls else {
            continue;
        };
        let client_tls = client_tls(utls, &name, &mut secrets, endpoint, &unsupported)?;
        match rules.iter().find(|(h, _, _)| *h == service) {
            // Istio applies one DestinationRule per host: two endpoints may share it only with
            // the same settings.
            Some((_, rule, first)) if rule.spec.traffic_policy.tls != client_tls => {
                return Err(unsupported(
                    "upstream.tls".into(),
                    format!(
                        "{service} is also the upstream of {first} with other TLS settings; \
                         Istio applies one DestinationRule per host, so give both endpoints the \
                         same upstream.tls"
                    ),
                ));
            }
            Some(_) => {}
            None => rules.push((
                service.clone(),
                Resource {
                    api_version: "networking.istio.io/v1",
                    kind: "DestinationRule",
                    metadata: metadata(format!("tlsgate-{name}-upstream")),
                    spec: DestinationRuleSpec {
                        host: service,
                        export_to: vec!["."],
                        traffic_policy: TrafficPolicy { tls: client_tls },
                    },
                },
                here.clone(),
            )),
        }
    }

    // The rules and actions: the same module twice, as the filter's two roles.
    let plugin_config = config.filter_policy();
    let plugin = |suffix: &str, kind, root_id| Resource {
        api_version: "extensions.istio.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: metadata(format!("tlsgate-{suffix}")),
        spec: WasmPluginSpec {
            selector: Selector {
                match_labels: options.selector.clone(),
            },
            url: options.wasm_url.clone(),
            sha256: sha256.clone(),
            image_pull_policy: PullPolicy::IfNotPresent,
            kind,
            // AUTHN, Istio's first phase: before RequestAuthentication, AuthorizationPolicy and
            // ext_authz (network and HTTP), so a connection or request the policy denies is
            // refused before anything else acts on it, and what runs later (and the upstream)
            // sees only the identity headers the filter set.
            phase: PluginPhase::Authn,
            plugin_name: root_id,
            // A module that cannot be fetched or fails to start denies everything (Istio puts
            // a deny-all RBAC filter in its place); never waves traffic through.
            fail_strategy: FailStrategy::FailClose,
            plugin_config: plugin_config.clone(),
        },
    };
    let network = plugin("network", PluginType::Network, NETWORK_ROOT_ID);
    let http = plugin("http", PluginType::Http, HTTP_ROOT_ID);
    let gateway = Resource {
        api_version: "networking.istio.io/v1",
        kind: "Gateway",
        metadata: metadata(GATEWAY_NAME.into()),
        spec: GatewaySpec {
            selector: options.selector.clone(),
            servers,
        },
    };

    let mut docs = Vec::new();
    let to_yaml = |value: &dyn erased::Doc| value.yaml().map_err(|e| Error::Emit(e.to_string()));
    if options.with_secrets {
        for plan in &secrets {
            docs.push(to_yaml(&Secret {
                api_version: "v1",
                kind: "Secret",
                metadata: metadata(plan.name.clone()),
                kind_of: plan.kind_of,
                string_data: plan
                    .entries
                    .iter()
                    .map(|(k, pem, _)| (*k, pem.clone()))
                    .collect(),
            })?);
        }
    }
    docs.push(to_yaml(&gateway)?);
    for vs in &virtual_services {
        docs.push(to_yaml(vs)?);
    }
    for (_, rule, _) in &rules {
        docs.push(to_yaml(rule)?);
    }
    if let Some(timeout) = aia_timeout {
        ocsp_clusters.push(crate::ocsp_aia_cluster(timeout));
    }
    if !ocsp_clusters.is_empty() {
        let metadata = to_yaml(&metadata("tlsgate-ocsp".into()))?;
        docs.push(cluster_patches(metadata, &options.selector, ocsp_clusters));
    }
    docs.push(to_yaml(&network)?);
    docs.push(to_yaml(&http)?);

    let mut yaml = header(options, &secrets, &warnings);
    for doc in &docs {
        yaml.push_str(&crate::yaml::emit(doc).map_err(Error::Emit)?);
    }
    Ok(Resources { yaml, warnings })
}

/// Upstream TLS as a DestinationRule's `tls`, and the Secret it names.
fn client_tls(
    tls: &UpstreamTls,
    name: &str,
    secrets: &mut Vec<SecretPlan>,
    endpoint: &Endpoint,
    unsupported: &dyn Fn(String, String) -> Error,
) -> Result<ClientTls, Error> {
    // Refused: a pin is how the policy accepts (or narrows to) one upstream key, and Istio's
    // ClientTLSSettings has no verifyCertificateSpki. Dropping it would accept any certificate
    // the CA issued for the name; the filter never sees the upstream's certificate to re-check.
    if !tls.pinned_spki_sha256.is_empty() {
        return Err(unsupported(
            "upstream.tls.pinned_certificates".into(),
            "Istio's DestinationRule cannot pin an upstream key (ClientTLSSettings has no \
             verifyCertificateSpki), and leaving the pin out would accept any certificate the CA \
             issued for the name. Give the upstream a certificate with its name in \
             subjectAltName and drop the pin, or run this endpoint on plain Envoy"
                .into(),
        ));
    }
    let mut entries = Vec::new();
    let mode = match (&tls.client_certificate, &tls.client_key) {
        (Some(chain), Some(key)) => {
            entries.push((
                "tls.crt",
                chain.to_pem(),
                source(
                    endpoint,
                    one_file(std::iter::once(&chain.origin)),
                    "inlined in the policy",
                ),
            ));
            entries.push((
                "tls.key",
                private_key_pem(key),
                source(
                    endpoint,
                    one_file(std::iter::once(&key.origin)),
                    "inlined in the policy",
                ),
            ));
            ClientTlsMode::Mutual
        }
        (Some(_), None) => {
            return Err(Error::MissingMaterial {
                endpoint: endpoint.index,
                url: endpoint.url.clone(),
                what: "upstream.tls.client_certificate.private_key",
            })
        }
        (None, _) => ClientTlsMode::Simple,
    };
    // No CAs: Istio verifies against the proxy's OS trust store, as tlsgate uses the system's.
    if let Some(authorities) = &tls.authorities {
        entries.push(ca_entry(endpoint, authorities));
    }
    let credential_name = (!entries.is_empty()).then(|| {
        let credential = format!("tlsgate-{name}-upstream");
        secrets.push(SecretPlan {
            name: credential.clone(),
            kind_of: if mode == ClientTlsMode::Mutual {
                "kubernetes.io/tls"
            } else {
                "Opaque"
            },
            entries,
        });
        credential
    });
    let is_ip = tls.server_name.parse::<IpAddr>().is_ok();
    Ok(ClientTls {
        mode,
        credential_name,
        sni: (!is_ip).then(|| tls.server_name.clone()),
        // Always the name: a private CA is no reason to accept every certificate it issued.
        subject_alt_names: vec![tls.server_name.clone()],
    })
}

/// The comment that opens the output: what it is, the Secrets to create, the differences.
fn header(options: &Options, secrets: &[SecretPlan], warnings: &[String]) -> String {
    let mut out = String::from(
        "# Generated by `tlsgate istio` from the tlsgate policy; regenerate rather than edit.\n\
         # The Gateway terminates TLS per endpoint host, VirtualServices and DestinationRules\n\
         # carry the connection to the upstream, and two WasmPlugins run tlsgate_filter.wasm with\n\
         # the policy (certificates inlined, no private keys) as pluginConfig.\n",
    );
    if !options.with_secrets && !secrets.is_empty() {
        out.push_str(
            "#\n# The Secrets the credentialNames refer to (run from the policy's directory):\n",
        );
        for plan in secrets {
            let mut line = format!(
                "#   kubectl -n {} create secret generic {} --type={}",
                options.namespace, plan.name, plan.kind_of
            );
            let mut notes = Vec::new();
            for (key, _, source) in &plan.entries {
                match source {
                    Source::File(path) => {
                        line.push_str(&format!(" \\\n#     --from-file={key}={path}"));
                    }
                    Source::Elsewhere(why) => {
                        line.push_str(&format!(" \\\n#     --from-file={key}=<{key}>"));
                        notes.push(format!(
                            "#     ({key} is {why}: write it to a file, or use --with-secrets)\n"
                        ));
                    }
                }
            }
            out.push_str(&line);
            out.push('\n');
            for note in notes {
                out.push_str(&note);
            }
        }
    }
    if !warnings.is_empty() {
        out.push_str("#\n# Where Istio differs from the policy:\n");
        for warning in warnings {
            out.push_str(&format!("#   - {warning}\n"));
        }
    }
    out
}

/// `networking.istio.io/v1alpha3` `EnvoyFilter` adding `clusters` to the selected gateways:
/// Istio generates no cluster for anything but services, and the filter's OCSP requests need
/// theirs. The values are the clusters `tlsgate envoy-config` declares, so the filter finds
/// them by the same names.
fn cluster_patches(
    metadata: Yaml,
    selector: &BTreeMap<String, String>,
    clusters: Vec<Yaml>,
) -> Yaml {
    use crate::yaml::{list, map, s};
    let labels = selector
        .iter()
        .map(|(k, v)| (s(k.as_str()), s(v.as_str())))
        .collect();
    let patches = clusters
        .into_iter()
        .map(|cluster| {
            map([
                ("applyTo", s("CLUSTER")),
                ("match", map([("context", s("GATEWAY"))])),
                ("patch", map([("operation", s("ADD")), ("value", cluster)])),
            ])
        })
        .collect();
    map([
        ("apiVersion", s("networking.istio.io/v1alpha3")),
        ("kind", s("EnvoyFilter")),
        ("metadata", metadata),
        (
            "spec",
            map([
                ("workloadSelector", map([("labels", Yaml::Hash(labels))])),
                ("configPatches", list(patches)),
            ]),
        ),
    ])
}

/// Serializing the several resource types through one closure.
mod erased {
    use super::ser::{to_yaml, SerError};
    use yaml_rust2::Yaml;

    pub(super) trait Doc {
        fn yaml(&self) -> Result<Yaml, SerError>;
    }

    impl<T: serde::Serialize> Doc for T {
        fn yaml(&self) -> Result<Yaml, SerError> {
            to_yaml(self)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::panic)]

    use super::*;
    use tlsgate_core::{Deployment, KeyMode};
    use tlsgate_test_support::Authority;
    use yaml_rust2::{Yaml, YamlLoader};

    fn endpoint(url: &str, tls_extra: &str, upstream: &str) -> String {
        format!(
            "  - url: {url}
    bind: 127.0.0.1:8443
    upstream:
{upstream}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: \"1.2\"
                server_certificate: server.crt
                server_private_key: server.key
{tls_extra}"
        )
    }

    const MTLS: &str = "                mutual_tls_certificate_authorities: [ca.crt]\n";
    const PLAIN_UP: &str = "      url: http://web.apps:8080";

    fn load(dir: &Path, endpoints: &[String]) -> Config {
        let ca = Authority::root("Example Root");
        ca.write(dir, "ca");
        ca.server(&["a.example.com", "b.example.com", "*.example.org"])
            .write(dir, "server");
        ca.client("gateway").write(dir, "client");
        std::fs::write(dir.join("ca.crl"), ca.crl(&[], -60, 86_400)).expect("crl");
        let path = dir.join("policy.yaml");
        std::fs::write(&path, format!("endpoints:\n{}", endpoints.concat())).expect("policy");
        Config::load_files(
            &[path],
            KeyMode::Load(&crate::tests::AcceptAnyKey),
            Deployment::none(),
        )
        .expect("loads")
    }

    fn generate_docs(config: &Config, options: &Options) -> (Vec<Yaml>, Resources) {
        let resources = generate(config, options).expect("generates");
        let docs = YamlLoader::load_from_str(&resources.yaml).expect("the output is YAML");
        (docs, resources)
    }

    fn kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
        docs.iter()
            .filter(|d| d["kind"].as_str() == Some(kind))
            .collect()
    }

    fn options() -> Options {
        Options::new("oci://registry.example.com/tlsgate/filter@sha256:0123")
    }

    #[test]
    fn maps_each_strategy_to_a_gateway_tls_mode_and_the_versions() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load(
            dir.path(),
            &[
                endpoint("https://a.example.com", "", PLAIN_UP),
                endpoint(
                    "https://b.example.com",
                    &format!("{MTLS}                max_version: \"1.2\"\n"),
                    PLAIN_UP,
                ),
                endpoint(
                    "tls://*.example.org",
                    &format!("{MTLS}                mutual_tls_verification_strategy: request\n"),
                    "      url: tcp://db.data:5432",
                )
                .replace("127.0.0.1:8443", "127.0.0.1:9443"),
            ],
        );
        let (docs, resources) = generate_docs(&config, &options());
        let gateway = kind(&docs, "Gateway")[0];
        let servers = gateway["spec"]["servers"].as_vec().expect("servers");
        let expect = [
            ("./a.example.com", "HTTPS", "SIMPLE", "TLSV1_3"),
            ("./b.example.com", "HTTPS", "MUTUAL", "TLSV1_2"),
            ("./*.example.org", "TLS", "OPTIONAL_MUTUAL", "TLSV1_3"),
        ];
        for (server, (host, protocol, mode, max)) in servers.iter().zip(expect) {
            assert_eq!(server["hosts"][0].as_str(), Some(host));
            assert_eq!(server["port"]["number"].as_i64(), Some(443));
            assert_eq!(server["port"]["protocol"].as_str(), Some(protocol));
            assert_eq!(server["tls"]["mode"].as_str(), Some(mode), "{host}");
            assert_eq!(
                server["tls"]["minProtocolVersion"].as_str(),
                Some("TLSV1_2")
            );
            assert_eq!(server["tls"]["maxProtocolVersion"].as_str(), Some(max));
        }
        assert_eq!(
            servers[2]["tls"]["credentialName"].as_str(),
            Some("tlsgate-wildcard.example.org")
        );
        // request is narrower under Istio: said, not hidden.
        assert!(resources
            .warnings
            .iter()
            .any(|w| w.contains("mutual_tls_verification_strategy: request")));
        // tls:// becomes a tcp route; https:// an http route with the upstream's Host.
        let services = kind(&docs, "VirtualService");
        assert_eq!(
            services[0]["spec"]["http"][0]["rewrite"]["authority"].as_str(),
            Some("web.apps:8080")
        );
        assert_eq!(
            services[0]["spec"]["http"][0]["route"][0]["destination"]["host"].as_str(),
            Some("web.apps.svc.cluster.local")
        );
        assert_eq!(
            services[2]["spec"]["tcp"][0]["route"][0]["destination"]["port"]["number"].as_i64(),
            Some(5432)
        );
        assert!(kind(&docs, "DestinationRule").is_empty(), "no upstream TLS");
    }

    #[test]
    fn wasm_plugins_carry_the_filter_policy_fail_closed_in_authn() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load(
            dir.path(),
            &[endpoint("https://a.example.com", MTLS, PLAIN_UP)],
        );
        let mut options = Options::new("https://files.example.com/tlsgate_filter.wasm");
        options.sha256 = Some("AB".repeat(32));
        let (docs, resources) = generate_docs(&config, &options);
        let plugins = kind(&docs, "WasmPlugin");
        assert_eq!(plugins.len(), 2);
        for (plugin, (kind_, root)) in plugins
            .iter()
            .zip([("NETWORK", NETWORK_ROOT_ID), ("HTTP", HTTP_ROOT_ID)])
        {
            let spec = &plugin["spec"];
            assert_eq!(spec["type"].as_str(), Some(kind_));
            assert_eq!(spec["pluginName"].as_str(), Some(root));
            assert_eq!(spec["phase"].as_str(), Some("AUTHN"));
            assert_eq!(spec["failStrategy"].as_str(), Some("FAIL_CLOSE"));
            assert_eq!(spec["sha256"].as_str(), Some("ab".repeat(32).as_str()));
            assert_eq!(
                spec["selector"]["matchLabels"]["istio"].as_str(),
                Some("ingressgateway")
            );
            assert_eq!(
                spec["pluginConfig"]["endpoints"][0]["url"].as_str(),
                Some("https://a.example.com")
            );
        }
        assert!(
            !resources.yaml.contains("PRIVATE KEY"),
            "no key without --with-secrets"
        );
        assert!(resources.yaml.contains("--from-file=tls.key=server.key"));
        assert!(resources.warnings.is_empty(), "{:?}", resources.warnings);
    }

    #[test]
    fn upstream_tls_becomes_a_destination_rule_with_sni_and_subject_alt_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mutual = "      url: https://api.payments:8443
      tls:
        client_certificate: { certificate: client.crt, private_key: client.key }
        certificate_authorities: [ca.crt]
        server_name: api.payments.internal";
        let simple = "      url: https://ledger.payments.svc:443";
        let config = load(
            dir.path(),
            &[
                endpoint("https://a.example.com", "", mutual),
                endpoint("https://b.example.com", "", simple),
            ],
        );
        let mut options = options();
        options.with_secrets = true;
        let (docs, _) = generate_docs(&config, &options);
        let rules = kind(&docs, "DestinationRule");
        assert_eq!(rules.len(), 2, "https:// is TLS even without settings");
        let spec = &rules[0]["spec"];
        assert_eq!(
            spec["host"].as_str(),
            Some("api.payments.svc.cluster.local")
        );
        let tls = &spec["trafficPolicy"]["tls"];
        assert_eq!(tls["mode"].as_str(), Some("MUTUAL"));
        assert_eq!(tls["sni"].as_str(), Some("api.payments.internal"));
        assert_eq!(
            tls["subjectAltNames"][0].as_str(),
            Some("api.payments.internal")
        );
        let credential = tls["credentialName"].as_str().expect("credentialName");
        let secrets = kind(&docs, "Secret");
        let secret = secrets
            .iter()
            .find(|s| s["metadata"]["name"].as_str() == Some(credential))
            .expect("the upstream's Secret");
        assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
        for key in ["tls.crt", "tls.key", "ca.crt"] {
            assert!(secret["stringData"][key].as_str().is_some(), "{key}");
        }
        // No CAs: the proxy's OS trust store, still checking the name.
        let tls = &rules[1]["spec"]["trafficPolicy"]["tls"];
        assert_eq!(tls["mode"].as_str(), Some("SIMPLE"));
        assert!(tls["credentialName"].is_badvalue());
        assert_eq!(
            tls["subjectAltNames"][0].as_str(),
            Some("ledger.payments.svc")
        );
        // The gateway's Secret holds the endpoint's key, and only with --with-secrets.
        assert!(secrets.iter().any(|s| s["stringData"]["tls.key"]
            .as_str()
            .is_some_and(|k| k.contains("PRIVATE KEY"))));
    }

    #[test]
    fn crls_go_into_the_gateway_credential() {
        let dir = tempfile::tempdir().expect("tempdir");
        let crl = format!(
            "{MTLS}                mutual_tls_certificate_revocation_lists: [ca.crl]\n                mutual_tls_revocation_check: leaf\n"
        );
        let config = load(
            dir.path(),
            &[endpoint("https://a.example.com", &crl, PLAIN_UP)],
        );
        let (_, resources) = generate_docs(&config, &options());
        assert!(resources.yaml.contains("--from-file=ca.crl=ca.crl"));
        assert!(resources
            .warnings
            .iter()
            .any(|w| w.contains("mutual_tls_revocation_check: leaf")));
    }

    fn refusal(endpoints: &[String], options: &Options) -> String {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = load(dir.path(), endpoints);
        match generate(&config, options) {
            Ok(r) => panic!("generated:\n{}", r.yaml),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn refuses_require_any() {
        let strategy =
            format!("{MTLS}                mutual_tls_verification_strategy: require-any\n");
        let error = refusal(
            &[endpoint("https://a.example.com", &strategy, PLAIN_UP)],
            &options(),
        );
        assert!(
            error.contains("policy.yaml: endpoints[0] (https://a.example.com)"),
            "{error}"
        );
        assert!(error.contains(
            "traffic_policy.on_tcp_connect[0] terminate-tls.mutual_tls_verification_strategy: require-any"
        ), "{error}");
    }

    #[test]
    fn refuses_a_rule_on_ja4() {
        let rule = "      on_http_request:\n        - expressions: [\"conn.tls.ja4_fingerprint == ''\"]\n          actions: [{type: deny}]\n";
        let error = refusal(
            &[endpoint("https://a.example.com", rule, PLAIN_UP)],
            &options(),
        );
        assert!(
            error.contains("a rule reads conn.tls.ja4_fingerprint: behind Istio"),
            "{error}"
        );
    }

    #[test]
    fn refuses_a_pinned_upstream_key() {
        let pinned = "      url: https://api.payments:8443
      tls:
        certificate_authorities: [ca.crt]
        pinned_certificates: [server.crt]";
        let error = refusal(&[endpoint("https://a.example.com", "", pinned)], &options());
        assert!(
            error.contains("upstream.tls.pinned_certificates"),
            "{error}"
        );
    }

    #[test]
    fn refuses_an_upstream_address() {
        let error = refusal(
            &[endpoint(
                "https://a.example.com",
                "",
                "      url: http://10.0.0.7:8080",
            )],
            &options(),
        );
        assert!(
            error.contains("upstream.url: http://10.0.0.7:8080"),
            "{error}"
        );
    }

    #[test]
    fn refuses_one_host_on_two_endpoints() {
        let mut second = endpoint("https://a.example.com", "", PLAIN_UP);
        second = second.replace("127.0.0.1:8443", "127.0.0.1:9443");
        let error = refusal(
            &[endpoint("https://a.example.com", "", PLAIN_UP), second],
            &options(),
        );
        assert!(
            error.contains("endpoints[1]") && error.contains("also served by"),
            "{error}"
        );
    }

    #[test]
    fn refuses_two_tls_settings_for_one_upstream_host() {
        let a = "      url: https://api.payments:8443\n      tls:\n        certificate_authorities: [ca.crt]";
        let b = "      url: https://api.payments:8443\n      tls:\n        client_certificate: { certificate: client.crt, private_key: client.key }";
        let error = refusal(
            &[
                endpoint("https://a.example.com", "", a),
                endpoint("https://b.example.com", "", b),
            ],
            &options(),
        );
        assert!(error.contains("one DestinationRule per host"), "{error}");
    }

    #[test]
    fn refuses_an_unpinned_download_and_bad_options() {
        let endpoints = [endpoint("https://a.example.com", "", PLAIN_UP)];
        let https = Options::new("https://files.example.com/tlsgate_filter.wasm");
        assert!(refusal(&endpoints, &https).contains("--sha256"));
        let mut short = options();
        short.sha256 = Some("abc".into());
        assert!(refusal(&endpoints, &short).contains("64 hex digits"));
        assert!(refusal(&endpoints, &Options::new("ftp://x/f.wasm")).contains("oci://"));
        let mut namespace = options();
        namespace.namespace = "Istio_Ingress".into();
        assert!(refusal(&endpoints, &namespace).contains("--namespace"));
        let mut selector = options();
        selector.selector.clear();
        assert!(refusal(&endpoints, &selector).contains("--selector"));
    }

    #[test]
    fn service_hosts_follow_the_manifest_reading() {
        assert_eq!(service_host("web").0, "web.default.svc.cluster.local");
        assert_eq!(service_host("web.apps").0, "web.apps.svc.cluster.local");
        assert_eq!(service_host("web.apps.svc").0, "web.apps.svc.cluster.local");
        assert_eq!(
            service_host("web.apps.svc.cluster.local"),
            ("web.apps.svc.cluster.local".into(), true)
        );
        assert_eq!(
            service_host("api.example.com"),
            ("api.example.com".into(), false)
        );
    }
}
