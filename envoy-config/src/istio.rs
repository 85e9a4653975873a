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

mod resources;
mod ser;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use tlsgate_core::config::{ClientAuth, Scheme, UpstreamScheme, UpstreamTls, VerificationStrategy};
use tlsgate_core::pem::Origin;
use tlsgate_core::revocation::RevocationDepth;
use tlsgate_core::{Config, Endpoint};
use yaml_rust2::Yaml;

use crate::{HTTP_ROOT_ID, NETWORK_ROOT_ID};
use resources::*;

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
    /// What the Envoy generator refuses for both (an OCSP responder's cluster).
    #[error(transparent)]
    Envoy(#[from] crate::Error),
}

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
                // The filter asks the responder through a cluster of its own, which Istio
                // does not generate: the EnvoyFilter below adds it.
                ocsp: _,
            } => {
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
    let ocsp_clusters = crate::clusters::ocsp_clusters(config)?;
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
mod tests;
