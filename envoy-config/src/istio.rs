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

mod filter;
mod gateway;
mod resources;
mod routing;
mod secrets;
mod ser;

use std::collections::BTreeMap;

use tlsgate_core::{Config, Endpoint};

use resources::*;
use secrets::{SecretPlan, Source};

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

/// One endpoint on its way into resources: where it is (for messages), its host, and the name
/// its resources are given.
struct Site<'a> {
    endpoint: &'a Endpoint,
    /// [`at`].
    here: String,
    host: String,
    /// [`slug`].
    name: String,
}

impl Site<'_> {
    /// A refusal of `field` (relative to the endpoint), saying why.
    fn unsupported(&self, field: String, what: String) -> Error {
        Error::Unsupported {
            at: self.here.clone(),
            field,
            what,
        }
    }
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
        let site = Site {
            endpoint,
            here: at(config, endpoint),
            host: endpoint.host.to_string(),
            name: slug(endpoint),
        };
        refuse_unexpressible(config, &site, &mut hosts)?;
        servers.push(gateway::server(
            &site,
            options,
            &mut secrets,
            &mut warnings,
        )?);
        let (service, virtual_service) = routing::virtual_service(&site, &mut warnings, &metadata)?;
        virtual_services.push(virtual_service);
        routing::destination_rule(&site, service, &mut rules, &mut secrets, &metadata)?;
    }

    // The rules and actions: the same module twice, as the filter's two roles.
    let (network, http) = filter::wasm_plugins(config, options, &sha256, &metadata);
    let gateway = gateway::gateway(options, servers, &metadata);

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
        docs.push(filter::cluster_patches(
            metadata,
            &options.selector,
            ocsp_clusters,
        ));
    }
    docs.push(to_yaml(&network)?);
    docs.push(to_yaml(&http)?);

    let mut yaml = header(options, &secrets, &warnings);
    for doc in &docs {
        yaml.push_str(&crate::yaml::emit(doc).map_err(Error::Emit)?);
    }
    Ok(Resources { yaml, warnings })
}

/// What of an endpoint Istio cannot express at all, refused before anything is generated for
/// it. `hosts` holds the hosts of the endpoints before it, and where each is.
fn refuse_unexpressible(
    config: &Config,
    site: &Site<'_>,
    hosts: &mut Vec<(String, String)>,
) -> Result<(), Error> {
    let (endpoint, here, host) = (site.endpoint, &site.here, &site.host);
    let unsupported = |field: String, what: String| site.unsupported(field, what);
    // The filter finds the endpoint by SNI behind Istio, and the Gateway skips a server
    // whose host another server on the port already has: one endpoint per host.
    if let Some((_, other)) = hosts.iter().find(|(h, _)| h == host) {
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
        let field = why.field.unwrap_or("traffic_policy");
        return Err(unsupported(field.into(), why.reason));
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
    Ok(())
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
