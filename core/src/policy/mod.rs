//! Decisions. Given facts, a policy answers with a [`Verdict`]; it never performs I/O and never
//! fails: anything it cannot decide denies.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::{Config, Endpoint, HttpAction, Scheme};
use crate::sni::{HostPattern, SniRouter};

mod client_cert;
mod envoy;
mod labels;
mod session;
mod verdict;

pub use client_cert::{check_client_certificate, xfcc};
pub use envoy::{
    endpoint_index, envoy_stat_name, envoy_stats_tags, filter_chain_name, ocsp_cluster_name,
    unsupported_behind_envoy, UnknownToEnvoy, UnsupportedBehindEnvoy, OCSP_AIA_CLUSTER,
    UNKNOWN_BEHIND_ENVOY,
};
pub use labels::{
    connection_labels, endpoint_label, request_denied, request_labels, Counter, METRIC_PREFIX,
    NO_ENDPOINT, NO_REASON,
};
pub use session::Session;
pub use verdict::{DenyReason, LocalResponse, RequestVerdict, Verdict};

/// A bind address and the endpoints on it.
#[derive(Debug)]
pub struct Listener {
    pub bind: SocketAddr,
    pub scheme: Scheme,
    /// Connections start with a PROXY protocol header, from these sources only.
    pub proxy_protocol: Option<crate::config::ProxyProtocolIn>,
    router: SniRouter<usize>,
}

impl Listener {
    /// The endpoint for a ClientHello's server name (`None`: no SNI or an unknown name; the
    /// host refuses the handshake).
    pub fn route(&self, sni: Option<&str>) -> Option<usize> {
        sni.and_then(|name| self.router.route(name)).copied()
    }

    pub fn hosts(&self) -> impl Iterator<Item = &HostPattern> {
        self.router.patterns()
    }
}

/// One endpoint compiled for serving: its validated configuration and what is derived from it
/// once, at load, for every connection. Dereferences to the configuration.
#[derive(Debug)]
pub struct EndpointPolicy {
    config: Endpoint,
    /// For a wildcard endpoint: exact hosts other endpoints serve on the same bind, which this
    /// one must not answer for.
    shadowed: Vec<String>,
    /// Whether an `on_http_request` rule reads `req.headers`.
    reads_request_headers: bool,
    /// Whether a rule reads `conn.tls.ja4_fingerprint` ([`crate::ja4::VARIABLE`]).
    reads_ja4: bool,
    /// `Host` / `:authority` for the upstream.
    upstream_authority: Arc<str>,
    /// The served certificate's fields (`conn.tls.server`), read once.
    server_certificate: Option<crate::facts::ClientCertFacts>,
}

impl std::ops::Deref for EndpointPolicy {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.config
    }
}

impl EndpointPolicy {
    /// Whether an `on_http_request` rule reads `req.headers` (hosts skip collecting them
    /// otherwise).
    pub fn reads_request_headers(&self) -> bool {
        self.reads_request_headers
    }

    /// Whether a rule reads the client's JA4 fingerprint (hosts compute it only then).
    pub fn reads_ja4(&self) -> bool {
        self.reads_ja4
    }

    /// Whether `host` (a Host header or `:authority`, maybe with a port) is served by this
    /// endpoint. A Host with userinfo (`u@admin.example.com`) is no host at all.
    pub fn serves_host(&self, host: &str) -> bool {
        if host.contains('@') {
            return false;
        }
        let name = crate::sni::normalize(strip_port(host));
        self.host.matches(&name) && !self.shadowed.contains(&name)
    }

    /// `Host` / `:authority` the upstream receives (see [`crate::config::Upstream::authority`]).
    pub fn upstream_authority(&self) -> &str {
        &self.upstream_authority
    }
}

/// A loaded config, compiled for serving. Built once; shared by every connection.
#[derive(Debug)]
pub struct Policy {
    endpoints: Vec<Arc<EndpointPolicy>>,
    listeners: Vec<Listener>,
}

impl Policy {
    pub fn new(config: Config) -> Self {
        // A wildcard endpoint must not answer for a name a more specific endpoint on the same
        // listener owns: `Host: admin.example.com` on a `*.example.com` connection would
        // otherwise reach admin's upstream without admin's client-certificate policy.
        let exact: Vec<(SocketAddr, String)> = config
            .endpoints
            .iter()
            .filter_map(|e| match &e.host {
                HostPattern::Exact(h) => Some((e.bind, h.clone())),
                HostPattern::Wildcard(_) => None,
            })
            .collect();
        let listener_options = config.listeners;
        let endpoints: Vec<Arc<EndpointPolicy>> = config
            .endpoints
            .into_iter()
            .map(|e| {
                let shadowed = match e.host {
                    HostPattern::Wildcard(_) => exact
                        .iter()
                        .filter(|(bind, host)| *bind == e.bind && e.host.matches(host))
                        .map(|(_, host)| host.clone())
                        .collect(),
                    HostPattern::Exact(_) => Vec::new(),
                };
                let server_certificate = e
                    .tls
                    .certificate
                    .as_ref()
                    .and_then(|c| c.certs.first())
                    .and_then(|leaf| crate::facts::ClientCertFacts::from_der(leaf.as_ref()).ok());
                Arc::new(EndpointPolicy {
                    server_certificate,
                    shadowed,
                    reads_request_headers: rules_read_headers(&e.http_rules),
                    reads_ja4: e.reads_variable(crate::ja4::VARIABLE),
                    upstream_authority: e.upstream.authority().into(),
                    config: e,
                })
            })
            .collect();
        let mut binds: Vec<(SocketAddr, Scheme)> = Vec::new();
        for e in &endpoints {
            if !binds.iter().any(|(b, _)| *b == e.bind) {
                binds.push((e.bind, e.scheme));
            }
        }
        let listeners = binds
            .into_iter()
            .map(|(bind, scheme)| Listener {
                bind,
                scheme,
                proxy_protocol: listener_options
                    .iter()
                    .find(|l| l.bind == bind)
                    .and_then(|l| l.proxy_protocol.clone()),
                router: SniRouter::new(
                    endpoints
                        .iter()
                        .enumerate()
                        .filter(|(_, e)| e.bind == bind)
                        .map(|(i, e)| (e.host.clone(), i))
                        .collect(),
                ),
            })
            .collect();
        Self {
            endpoints,
            listeners,
        }
    }

    pub fn listeners(&self) -> &[Listener] {
        &self.listeners
    }

    pub fn endpoints(&self) -> &[Arc<EndpointPolicy>] {
        &self.endpoints
    }

    pub fn endpoint(&self, index: usize) -> Option<&Arc<EndpointPolicy>> {
        self.endpoints.get(index)
    }
}

/// Whether any rule's expressions, add-headers templates or custom-response body read
/// `req.headers` (hosts collect request headers only then).
fn rules_read_headers(rules: &[crate::config::Rule<HttpAction>]) -> bool {
    rules.iter().any(|rule| {
        rule.expressions.iter().any(|e| e.reads_request_headers())
            || rule.actions.iter().any(|a| {
                a.templates().iter().any(|t| t.reads_request_headers())
                    || a.set_vars().iter().any(|(_, v)| v.reads_request_headers())
            })
    })
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}
