//! Policy → Envoy v3 bootstrap.
//!
//! Envoy does what its TLS stack can: one listener per `bind` with `tls_inspector`, one filter
//! chain per endpoint selected by `server_names`, a `DownstreamTlsContext` per chain carrying the
//! certificate, the version bounds and the client-certificate requirement, and one cluster per
//! upstream with its own `UpstreamTlsContext`. The tlsgate proxy-wasm filter, loaded as a network
//! filter and as an HTTP filter with the policy as its configuration, does the rest (rules,
//! actions, header hygiene, metadata, metrics).
//!
//! The output is YAML in the order a person reads it; `envoy --mode validate` accepts every
//! document this crate produces (the tests check it).
//!
//! Here: the options, the errors and [`generate`], which assembles the bootstrap;
//! `listeners.rs` writes each endpoint's filter chain (TLS context, filter, `tcp_proxy` or the
//! HTTP connection manager, access logs), `clusters.rs` each upstream's cluster and the OCSP
//! responders' clusters, and [`istio`] the same policy as Istio resources.

mod clusters;
pub mod istio;
mod listeners;
mod material;
#[cfg(test)]
pub(crate) mod tests;
mod yaml;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use tlsgate_core::config::{
    ClientAuth, ProxyProtocolIn, ProxyProtocolVersion, Scheme, TcpAction, Upstream,
    UpstreamProtocol, UpstreamScheme,
};
use tlsgate_core::limits::Limits;
use tlsgate_core::revocation::RevocationDepth;
use tlsgate_core::{Config, Endpoint, TlsVersion};
use yaml_rust2::Yaml;

use crate::clusters::{cluster, ocsp_clusters};
use crate::listeners::{filter_chain, stdout_access_log, CONNECTION_LOG_FORMAT};
use crate::material::Material;
use crate::yaml::{boolean, emit, int, list, map, opt, s, typed};

/// The `root_id` the filter reads to know it runs as a network filter.
pub const NETWORK_ROOT_ID: &str = "tlsgate.network";
/// The `root_id` the filter reads to know it runs as an HTTP filter.
pub const HTTP_ROOT_ID: &str = "tlsgate.http";
/// The header that tells the upstream which endpoint served the request; core sets it in both
/// hosts (the filter applies core's edits).
pub use tlsgate_core::request::ENDPOINT_HEADER;

pub use tlsgate_core::policy::filter_chain_name;

/// Where system trust anchors live on common distributions, for upstreams that name no CA:
/// Envoy verifies nothing unless it is given a bundle.
const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/etc/ssl/cert.pem",
];

/// What the generator needs besides the policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of the built `tlsgate_filter.wasm`, as Envoy will read it.
    pub wasm: PathBuf,
    /// Directory the bootstrap is written to; inline PEM from the policy is written beside it.
    pub out_dir: PathBuf,
    /// Envoy's admin listener (loopback).
    pub admin: SocketAddr,
    /// Every deadline and bound, the same values `tlsgate run` enforces (see
    /// [`tlsgate_core::limits`]); rendered where Envoy has the matching knob.
    pub limits: Limits,
    /// OCSP responses (DER) to staple, by endpoint index: checked `good` answers the caller
    /// fetched for certificates that name a responder (`tlsgate envoy-config` does).
    pub ocsp_staples: Vec<(usize, Vec<u8>)>,
}

/// A bound as a YAML integer.
fn count(n: usize) -> Yaml {
    int(i64::try_from(n).unwrap_or(i64::MAX))
}

/// A duration as Envoy's YAML wants it (`10s`, `0.5s`).
fn duration(d: std::time::Duration) -> Yaml {
    s(format!("{}s", d.as_secs_f64()))
}

/// A generated bootstrap and the files it references.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub yaml: String,
    /// Files to write (path relative to `out_dir`, contents), e.g. inline certificates. They
    /// may hold private keys: write them readable by their owner only.
    pub files: Vec<(PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("{0}")]
    Unsupported(String),
    #[error(
        "endpoints[{endpoint}] ({url}): {what} is not loaded; load the policy with its keys \
         (KeyMode::Load) so the bootstrap can reference them"
    )]
    MissingMaterial {
        endpoint: usize,
        url: String,
        what: &'static str,
    },
    #[error(
        "endpoints[{endpoint}] ({url}): the upstream names no certificate_authorities and no \
         system CA bundle was found (looked in {looked_in}); list the CAs that issue the \
         upstream's certificate under upstream.tls.certificate_authorities"
    )]
    NoSystemRoots {
        endpoint: usize,
        url: String,
        looked_in: String,
    },
    #[error("cannot resolve {path}: {reason}")]
    Path { path: PathBuf, reason: String },
    #[error("the admin address {0} is not a loopback address; Envoy's admin API must not be reachable from the network")]
    AdminNotLoopback(SocketAddr),
    #[error("emitting YAML: {0}")]
    Emit(String),
}

/// Generates the bootstrap for `config`; `filter_policy` (from `tlsgate_core::filter_policy`)
/// becomes the wasm plugin configuration.
pub fn generate(config: &Config, options: &Options) -> Result<Bootstrap, Error> {
    if !options.admin.ip().is_loopback() {
        return Err(Error::AdminNotLoopback(options.admin));
    }
    // Derived from the loaded model (never by reading the files again), pretty-printed so a
    // load error in the filter ("line 12") points at a readable line.
    let plugin_config = serde_json::to_string_pretty(&config.filter_policy())
        .map_err(|e| Error::Emit(e.to_string()))?;
    let mut material = Material {
        out_dir: &options.out_dir,
        files: Vec::new(),
    };

    let mut binds: Vec<SocketAddr> = Vec::new();
    for endpoint in &config.endpoints {
        // Fail closed: a rule would read an empty value where the native host has a real one.
        if let Some(why) = tlsgate_core::policy::unsupported_behind_envoy(endpoint) {
            return Err(Error::Unsupported(why.to_string()));
        }
        if !binds.contains(&endpoint.bind) {
            binds.push(endpoint.bind);
        }
    }
    let mut listeners = Vec::new();
    for bind in binds {
        let proxy_protocol = config
            .listener(bind)
            .and_then(|l| l.proxy_protocol.as_ref());
        let mut chains = Vec::new();
        // Envoy picks the most specific server_names match itself (exact before wildcard,
        // longer suffix first), which is the order core's SNI router uses.
        for endpoint in config.endpoints.iter().filter(|e| e.bind == bind) {
            chains.push(filter_chain(
                endpoint,
                &plugin_config,
                options,
                &mut material,
                proxy_protocol,
            )?);
        }
        let mut listener_filters = Vec::new();
        if proxy_protocol.is_some() {
            // Envoy's filter believes any header; the filter chains' `direct_source_prefix_ranges`
            // (the socket's peer, not the header's) close every other source's connection.
            listener_filters.push(map([
                ("name", s("envoy.filters.listener.proxy_protocol")),
                (
                    "typed_config",
                    typed(
                        "envoy.extensions.filters.listener.proxy_protocol.v3.ProxyProtocol",
                        [("stat_prefix", s(format!("tlsgate_{bind}")))],
                    ),
                ),
            ]));
        }
        // JA4 costs a hash per connection: only where a rule reads it.
        let ja4 = config
            .endpoints
            .iter()
            .any(|e| e.bind == bind && e.reads_variable(tlsgate_core::ja4::VARIABLE));
        listener_filters.push(map([
            ("name", s("envoy.filters.listener.tls_inspector")),
            (
                "typed_config",
                typed(
                    "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
                    [(
                        "enable_ja4_fingerprinting",
                        opt(ja4.then_some(boolean(true))),
                    )],
                ),
            ),
        ]));
        let logs_connections = config
            .endpoints
            .iter()
            .filter(|e| e.bind == bind)
            .flat_map(|e| &e.tcp_rules)
            .flat_map(|r| &r.actions)
            .any(|a| matches!(a, TcpAction::Log(_)));
        listeners.push(map([
            ("name", s(format!("tlsgate_{bind}"))),
            ("address", socket_address(bind)),
            (
                "access_log",
                opt(logs_connections.then(|| stdout_access_log(CONNECTION_LOG_FORMAT))),
            ),
            ("listener_filters", list(listener_filters)),
            // tls_inspector waits for the ClientHello: this is the ClientHello deadline.
            (
                "listener_filters_timeout",
                duration(options.limits.client_hello),
            ),
            ("filter_chains", list(chains)),
        ]));
    }

    let mut clusters = config
        .endpoints
        .iter()
        .map(|endpoint| cluster(endpoint, &mut material, options))
        .collect::<Result<Vec<_>, _>>()?;
    clusters.extend(ocsp_clusters(config)?);

    let doc = map([
        (
            "node",
            map([("id", s("tlsgate")), ("cluster", s("tlsgate"))]),
        ),
        ("admin", map([("address", socket_address(options.admin))])),
        // The filter counts under the native host's metric names with the labels encoded in
        // the stat name (core's `envoy_stat_name`); these tags take them out again, so
        // `/stats/prometheus` prints the native host's lines.
        ("stats_config", stats_config()),
        // The same global connection cap as `tlsgate run --max-connections`.
        (
            "overload_manager",
            map([(
                "resource_monitors",
                list(vec![map([
                    (
                        "name",
                        s("envoy.resource_monitors.global_downstream_max_connections"),
                    ),
                    (
                        "typed_config",
                        typed(
                            "envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig",
                            [(
                                "max_active_downstream_connections",
                                count(options.limits.max_connections),
                            )],
                        ),
                    ),
                ])]),
            )]),
        ),
        (
            "static_resources",
            map([("listeners", list(listeners)), ("clusters", list(clusters))]),
        ),
    ]);
    let body = emit(&doc).map_err(Error::Emit)?;
    let yaml = format!(
        "# Generated by `tlsgate envoy-config` from the tlsgate policy; regenerate rather than edit.\n\
         # Envoy terminates TLS per endpoint (filter chain per server name); the tlsgate\n\
         # proxy-wasm filter enforces the policy's rules (root_id {NETWORK_ROOT_ID} / {HTTP_ROOT_ID}).\n{}",
        body.trim_start_matches("---\n")
    );
    Ok(Bootstrap {
        yaml,
        files: material.files,
    })
}

/// `stats_tags` for the labels in the filter's stat names (core's `envoy_stats_tags`).
fn stats_config() -> Yaml {
    let tags = tlsgate_core::policy::envoy_stats_tags()
        .into_iter()
        .map(|(name, regex)| map([("tag_name", s(name)), ("regex", s(regex))]))
        .collect();
    map([("stats_tags", list(tags))])
}

fn socket_address(addr: SocketAddr) -> Yaml {
    map([(
        "socket_address",
        map([
            ("address", s(addr.ip().to_string())),
            ("port_value", int(addr.port())),
        ]),
    )])
}

fn cluster_name(endpoint: &Endpoint) -> String {
    format!("tlsgate_upstream_{}", endpoint.index)
}

fn envoy_version(v: TlsVersion) -> &'static str {
    match v {
        TlsVersion::Tls12 => "TLSv1_2",
        TlsVersion::Tls13 => "TLSv1_3",
    }
}
