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

pub mod istio;
mod material;
mod yaml;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

use tlsgate_core::config::{
    ClientAuth, ProxyProtocolIn, ProxyProtocolVersion, Scheme, TcpAction, Upstream,
    UpstreamProtocol, UpstreamScheme, VerificationStrategy,
};
use tlsgate_core::limits::Limits;
use tlsgate_core::revocation::RevocationDepth;
use tlsgate_core::{Config, Endpoint, TlsVersion};
use yaml_rust2::Yaml;

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
            return Err(Error::Unsupported(why));
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

    let mut clusters = Vec::new();
    // The longest wait of the endpoints that ask the responder their clients' certificates name.
    let mut aia_timeout = None;
    for endpoint in &config.endpoints {
        clusters.push(cluster(endpoint, &mut material, options)?);
        if let Some(check) = endpoint.tls.client_auth.ocsp() {
            if check.responder.is_some() {
                clusters.push(ocsp_cluster(endpoint.index, check)?);
            } else {
                aia_timeout = aia_timeout.max(Some(check.timeout));
            }
        }
    }
    if let Some(timeout) = aia_timeout {
        clusters.push(ocsp_aia_cluster(timeout));
    }

    let doc = map([
        (
            "node",
            map([("id", s("tlsgate")), ("cluster", s("tlsgate"))]),
        ),
        ("admin", map([("address", socket_address(options.admin))])),
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

fn filter_chain(
    endpoint: &Endpoint,
    plugin_config: &str,
    options: &Options,
    material: &mut Material<'_>,
    proxy_protocol: Option<&ProxyProtocolIn>,
) -> Result<Yaml, Error> {
    let i = endpoint.index;
    let missing = |what| Error::MissingMaterial {
        endpoint: i,
        url: endpoint.url.clone(),
        what,
    };
    let tls = &endpoint.tls;
    let chain = tls
        .certificate
        .as_ref()
        .ok_or_else(|| missing("terminate-tls.server_certificate"))?;
    let key = tls
        .private_key
        .as_ref()
        .ok_or_else(|| missing("terminate-tls.server_private_key"))?;
    let certificate = map([
        (
            "certificate_chain",
            material.chain(endpoint, chain, &format!("tlsgate-endpoint{i}-server.crt"))?,
        ),
        (
            "private_key",
            material.key(endpoint, key, &format!("tlsgate-endpoint{i}-server.key"))?,
        ),
        (
            "ocsp_staple",
            opt(options
                .ocsp_staples
                .iter()
                .find(|(index, _)| *index == i)
                .map(|(_, der)| map([("inline_bytes", s(tlsgate_core::encoding::base64(der)))]))),
        ),
    ]);
    // Envoy enforces what its TLS stack can; the filter re-checks the strategy on the facts.
    let (require, validation, accepts_untrusted) = match &tls.client_auth {
        ClientAuth::Off => (None, None, false),
        ClientAuth::On {
            authorities,
            strategy,
            revocation,
            ocsp: _,
        } => {
            let ca = material.anchors(
                endpoint,
                authorities,
                &format!("tlsgate-endpoint{i}-client-ca.crt"),
            )?;
            // The same CRLs as the native host, checked for the same certificates: BoringSSL
            // then refuses a certificate whose issuer has no CRL, or whose CRL is past its
            // nextUpdate, as webpki does.
            let crl = match revocation {
                Some(r) => Some(material.revocation(
                    endpoint,
                    r,
                    &format!("tlsgate-endpoint{i}-client.crl"),
                )?),
                None => None,
            };
            let leaf_only = revocation
                .as_ref()
                .is_some_and(|r| r.depth == RevocationDepth::Leaf);
            let (require, untrusted) = match strategy {
                VerificationStrategy::RequireAndVerify => (true, false),
                VerificationStrategy::RequireAny => (true, true),
                VerificationStrategy::Request => (false, true),
            };
            (
                Some(boolean(require)),
                Some(map([
                    ("trusted_ca", ca),
                    ("crl", opt(crl)),
                    (
                        "only_verify_leaf_cert_crl",
                        opt(leaf_only.then(|| boolean(true))),
                    ),
                    (
                        "trust_chain_verification",
                        opt(untrusted.then(|| s("ACCEPT_UNTRUSTED"))),
                    ),
                ])),
                untrusted,
            )
        }
    };
    let no_resumption = !tls.session_resumption || accepts_untrusted;
    let alpn = match endpoint.scheme {
        Scheme::Https => Some(list(vec![s("h2"), s("http/1.1")])),
        Scheme::Tls => None,
    };
    let transport_socket = map([
        ("name", s("envoy.transport_sockets.tls")),
        (
            "typed_config",
            typed(
                "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
                [
                    ("require_client_certificate", opt(require)),
                    // `session_resumption: false`: no tickets and no session cache, as natively.
                    // Also off where the context accepts untrusted certificates: Envoy does not
                    // keep a session's verification verdict, so on a resumed connection
                    // `peer_certificate_valid` is false and the filter could not tell a trusted
                    // client from an untrusted one (it would read every resumed client as
                    // unverified). Under require-and-verify a resumed session implies the
                    // verified handshake that created it; see the filter's `client_cert`.
                    (
                        "disable_stateless_session_resumption",
                        opt(no_resumption.then(|| boolean(true))),
                    ),
                    (
                        "disable_stateful_session_resumption",
                        opt(no_resumption.then(|| boolean(true))),
                    ),
                    // The policy's ticket keys, the same files the native host reads (Envoy's
                    // 80-byte format), so a fleet resumes across instances; without them each
                    // worker makes its own.
                    (
                        "session_ticket_keys",
                        opt(
                            (!no_resumption && !tls.session_ticket_keys.is_empty()).then(|| {
                                map([(
                                    "keys",
                                    list(
                                        tls.session_ticket_keys
                                            .iter()
                                            .map(|k| {
                                                map([("filename", s(k.path.display().to_string()))])
                                            })
                                            .collect(),
                                    ),
                                )])
                            }),
                        ),
                    ),
                    // How long a session resumes: the same definition as the native host's.
                    (
                        "session_timeout",
                        opt((!no_resumption).then(|| duration(tls.session_lifetime))),
                    ),
                    (
                        "common_tls_context",
                        map([
                            (
                                "tls_params",
                                map([
                                    (
                                        "tls_minimum_protocol_version",
                                        s(envoy_version(tls.min_version)),
                                    ),
                                    (
                                        "tls_maximum_protocol_version",
                                        s(envoy_version(tls.max_version)),
                                    ),
                                    // The same groups in the same order as the native host:
                                    // post-quantum first unless the endpoint pins others
                                    // (BoringSSL offers no post-quantum group by default).
                                    (
                                        "ecdh_curves",
                                        list(
                                            tls.key_exchange_groups.iter().map(|g| s(*g)).collect(),
                                        ),
                                    ),
                                ]),
                            ),
                            ("tls_certificates", list(vec![certificate])),
                            ("validation_context", opt(validation)),
                            ("alpn_protocols", opt(alpn)),
                        ]),
                    ),
                ],
            ),
        ),
    ]);

    let network_wasm = map([
        ("name", s("envoy.filters.network.wasm")),
        (
            "typed_config",
            typed(
                "envoy.extensions.filters.network.wasm.v3.Wasm",
                [("config", plugin(NETWORK_ROOT_ID, plugin_config, options))],
            ),
        ),
    ]);
    let proxy = match endpoint.scheme {
        Scheme::Https => http_connection_manager(endpoint, plugin_config, options),
        Scheme::Tls => map([
            ("name", s("envoy.filters.network.tcp_proxy")),
            (
                "typed_config",
                typed(
                    "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    [
                        ("stat_prefix", s(format!("tlsgate_endpoint_{i}"))),
                        ("cluster", s(cluster_name(endpoint))),
                        ("idle_timeout", duration(options.limits.idle)),
                        // The filter holds tcp_proxy back until it has decided, which happens
                        // on the client's first bytes; tcp_proxy must keep those bytes while it
                        // connects instead of dropping them on the floor.
                        ("max_early_data_bytes", int(64 * 1024)),
                    ],
                ),
            ),
        ]),
    };

    Ok(map([
        ("name", s(filter_chain_name(i))),
        (
            "filter_chain_match",
            map([
                ("server_names", list(vec![s(endpoint.host.to_string())])),
                (
                    "direct_source_prefix_ranges",
                    opt(proxy_protocol.map(|pp| {
                        list(
                            pp.trusted_sources
                                .iter()
                                .map(|net| {
                                    map([
                                        ("address_prefix", s(net.network().to_string())),
                                        ("prefix_len", int(net.prefix_len())),
                                    ])
                                })
                                .collect(),
                        )
                    })),
                ),
            ]),
        ),
        ("transport_socket", transport_socket),
        (
            "transport_socket_connect_timeout",
            duration(options.limits.handshake),
        ),
        ("filters", list(vec![network_wasm, proxy])),
    ]))
}

/// A wasm `PluginConfig`: the same VM (`vm_id`) serves every plugin; `root_id` tells the filter
/// which role it plays. `fail_open: false`: a broken filter closes connections, never waves
/// them through.
fn plugin(root_id: &str, plugin_config: &str, options: &Options) -> Yaml {
    map([
        ("name", s(root_id)),
        ("root_id", s(root_id)),
        (
            "vm_config",
            map([
                ("vm_id", s("tlsgate")),
                ("runtime", s("envoy.wasm.runtime.v8")),
                (
                    "code",
                    map([(
                        "local",
                        map([("filename", s(options.wasm.display().to_string()))]),
                    )]),
                ),
                // Envoy has no per-address connection limit: the filter's network role
                // enforces `--max-connections-per-source` (per worker). Both roles get the
                // same environment so they keep sharing one VM.
                (
                    "environment_variables",
                    map([(
                        "key_values",
                        map([(
                            "TLSGATE_MAX_CONNECTIONS_PER_SOURCE",
                            s(options.limits.max_connections_per_source.to_string()),
                        )]),
                    )]),
                ),
            ]),
        ),
        (
            "configuration",
            typed("google.protobuf.StringValue", [("value", s(plugin_config))]),
        ),
        ("fail_open", boolean(false)),
    ])
}

/// For an endpoint whose rules read `conn.tls.ja4_fingerprint`: a `header_mutation` filter,
/// ahead of tlsgate's, that sets the JA4 fingerprint tls_inspector computed on every request
/// ([`tlsgate_core::request::JA4_HEADER`]). `ja4=` keeps the value from ever being empty, so
/// what a client sent under that name never survives; the filter reads it and, as an edge
/// header, removes it before the upstream.
fn ja4_header(endpoint: &Endpoint) -> Option<Yaml> {
    endpoint
        .reads_variable(tlsgate_core::ja4::VARIABLE)
        .then(|| {
            map([
                ("name", s("envoy.filters.http.header_mutation")),
                (
                    "typed_config",
                    typed(
                        "envoy.extensions.filters.http.header_mutation.v3.HeaderMutation",
                        [(
                            "mutations",
                            map([(
                                "request_mutations",
                                list(vec![map([(
                                    "append",
                                    overwrite_header(
                                        tlsgate_core::request::JA4_HEADER,
                                        "ja4=%TLS_JA4_FINGERPRINT%",
                                    ),
                                )])]),
                            )]),
                        )],
                    ),
                ),
            ])
        })
}

/// A route header that replaces whatever the request carried.
fn overwrite_header(key: &str, value: &str) -> Yaml {
    map([
        ("header", map([("key", s(key)), ("value", s(value))])),
        ("append_action", s("OVERWRITE_IF_EXISTS_OR_ADD")),
    ])
}

/// A local-reply rule: responses carrying any of `flags` get `status`.
fn local_reply_mapper(flags: &[&str], status: i64) -> Yaml {
    map([
        (
            "filter",
            map([(
                "response_flag_filter",
                map([("flags", list(flags.iter().map(|f| s(*f)).collect()))]),
            )]),
        ),
        ("status_code", Yaml::Integer(status)),
    ])
}

fn http_connection_manager(endpoint: &Endpoint, plugin_config: &str, options: &Options) -> Yaml {
    let i = endpoint.index;
    let access_log_format = "[%START_TIME%] tlsgate endpoint=%FILTER_STATE(wasm.tlsgate.endpoint:PLAIN)% \
         server_cert=%FILTER_STATE(wasm.tlsgate.server_certificate:PLAIN)% sni=%REQUESTED_SERVER_NAME% \
         client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% peer=\"%DOWNSTREAM_PEER_SUBJECT%\" \
         \"%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% \
         log=%FILTER_STATE(wasm.tlsgate.log:PLAIN)%\n";
    let route = map([
        ("name", s(format!("tlsgate_endpoint_{i}"))),
        (
            "virtual_hosts",
            list(vec![map([
                ("name", s(format!("tlsgate_endpoint_{i}"))),
                // The filter answers 421 for a Host of another endpoint; the route itself
                // accepts any so that answer comes from the policy, identically on both hosts.
                ("domains", list(vec![s("*")])),
                (
                    "routes",
                    list(vec![map([
                        ("match", map([("prefix", s("/"))])),
                        (
                            "route",
                            map([
                                ("cluster", s(cluster_name(endpoint))),
                                ("timeout", duration(options.limits.upstream_response)),
                                // The same Host the native host sends (core decides it); the
                                // filter puts the client's in x-forwarded-host.
                                ("host_rewrite_literal", s(endpoint.upstream.authority())),
                                // A safe request is sent again when the upstream closes or
                                // resets the connection before answering (a pooled connection
                                // it closed as the request went out), as the native host does;
                                // a timeout or a started response is not retried. Up to twice:
                                // the native host retries once on a new connection, Envoy can
                                // only go through its pool, whose other connections may be
                                // closing too (one retry lost 1 request in 4,389 on a busy
                                // machine).
                                (
                                    "retry_policy",
                                    map([
                                        ("retry_on", s("reset")),
                                        ("num_retries", int(2)),
                                        (
                                            "retriable_request_headers",
                                            list(
                                                tlsgate_core::request::SAFE_METHODS
                                                    .iter()
                                                    .map(|m| {
                                                        map([
                                                            ("name", s(":method")),
                                                            (
                                                                "string_match",
                                                                map([("exact", s(*m))]),
                                                            ),
                                                        ])
                                                    })
                                                    .collect(),
                                            ),
                                        ),
                                    ]),
                                ),
                            ]),
                        ),
                    ])]),
                ),
                (
                    "request_headers_to_add",
                    list(vec![
                        // This is the edge: a client's x-forwarded-for/-proto are replaced, as
                        // the native host does. Envoy restores XFF after a wasm filter changes
                        // it, so the route (applied last, by the router) sets these two.
                        overwrite_header(
                            "x-forwarded-for",
                            "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%",
                        ),
                        overwrite_header("x-forwarded-proto", "https"),
                    ]),
                ),
            ])]),
        ),
    ]);
    map([
        ("name", s("envoy.filters.network.http_connection_manager")),
        (
            "typed_config",
            typed(
                "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
                [
                    ("stat_prefix", s(format!("tlsgate_endpoint_{i}"))),
                    ("codec_type", s("AUTO")),
                    // Envoy drops a client-sent x-forwarded-client-cert; the filter adds the
                    // verified one in the format both hosts share.
                    ("forward_client_cert_details", s("SANITIZE")),
                    // This is the edge: the client is the TCP peer. Without this Envoy takes the
                    // "remote address" from a client-sent X-Forwarded-For, and the filter's
                    // source.address (conn.client_ip, restrict-ips) would be the client's claim.
                    ("use_remote_address", Yaml::Boolean(true)),
                    ("xff_num_trusted_hops", Yaml::Integer(0)),
                    // Upstream failures answer as the native host does: 502 when the upstream
                    // cannot be reached or its TLS fails (Envoy says 503), 504 on a timeout.
                    (
                        "local_reply_config",
                        map([(
                            "mappers",
                            list(vec![
                                local_reply_mapper(&["UF", "UH", "URX", "UC"], 502),
                                local_reply_mapper(&["UT"], 504),
                            ]),
                        )]),
                    ),
                    // One path for rules and upstream: Envoy normalizes as core does (dot
                    // segments, merged slashes) and refuses encoded separators with 400; the
                    // filter then applies core's normalization, which is idempotent over
                    // Envoy's, so both hosts forward the same path.
                    ("normalize_path", Yaml::Boolean(true)),
                    ("merge_slashes", Yaml::Boolean(true)),
                    ("path_with_escaped_slashes_action", s("REJECT_REQUEST")),
                    (
                        "request_headers_timeout",
                        duration(options.limits.request_headers),
                    ),
                    ("stream_idle_timeout", duration(options.limits.stream_idle)),
                    (
                        "http2_protocol_options",
                        map([
                            (
                                "max_concurrent_streams",
                                int(options.limits.max_concurrent_streams),
                            ),
                            // RFC 8441: Envoy offers extended CONNECT and turns a WebSocket
                            // CONNECT into the HTTP/1.1 upgrade (`upgrade_configs` below) the
                            // filter and the upstream see, as the native host does.
                            ("allow_connect", boolean(true)),
                        ]),
                    ),
                    // CONNECT reaches the filter, which refuses it (405) as the native host
                    // does; without this Envoy answers 403 itself.
                    (
                        "upgrade_configs",
                        list(vec![
                            map([("upgrade_type", s("CONNECT"))]),
                            // WebSocket over HTTP/1.1, subject to on_http_request like any
                            // request; the native host carries the same upgrade.
                            map([("upgrade_type", s("websocket"))]),
                        ]),
                    ),
                    (
                        "common_http_protocol_options",
                        map([
                            ("idle_timeout", duration(options.limits.idle)),
                            // As core's `drops_client_header`: `x_forwarded_client_cert` must
                            // not reach an upstream that folds `_` into `-`.
                            ("headers_with_underscores_action", s("DROP_HEADER")),
                        ]),
                    ),
                    ("route_config", route),
                    (
                        "http_filters",
                        list(
                            ja4_header(endpoint)
                                .into_iter()
                                .chain([
                                    map([
                                        ("name", s("envoy.filters.http.wasm")),
                                        (
                                            "typed_config",
                                            typed(
                                                "envoy.extensions.filters.http.wasm.v3.Wasm",
                                                [(
                                                    "config",
                                                    plugin(HTTP_ROOT_ID, plugin_config, options),
                                                )],
                                            ),
                                        ),
                                    ]),
                                    map([
                                        ("name", s("envoy.filters.http.router")),
                                        (
                                            "typed_config",
                                            typed(
                                                "envoy.extensions.filters.http.router.v3.Router",
                                                [],
                                            ),
                                        ),
                                    ]),
                                ])
                                .collect(),
                        ),
                    ),
                    ("access_log", stdout_access_log(access_log_format)),
                ],
            ),
        ),
    ])
}

/// Envoy's stdout access log with `format`.
fn stdout_access_log(format: &str) -> Yaml {
    list(vec![map([
        ("name", s("envoy.access_loggers.stdout")),
        (
            "typed_config",
            typed(
                "envoy.extensions.access_loggers.stream.v3.StdoutAccessLog",
                [(
                    "log_format",
                    map([("text_format_source", map([("inline_string", s(format))]))]),
                )],
            ),
        ),
    ])])
}

/// The connection line of a listener whose endpoints have `log` actions in on_tcp_connect
/// (the network filter leaves their fields in `wasm.tlsgate.tcp_log`); Envoy writes it when the
/// connection closes, for every connection of the listener (`log=-` where no action ran).
const CONNECTION_LOG_FORMAT: &str = "[%START_TIME%] tlsgate connection \
     endpoint=%FILTER_STATE(wasm.tlsgate.endpoint:PLAIN)% sni=%REQUESTED_SERVER_NAME% \
     client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% peer=\"%DOWNSTREAM_PEER_SUBJECT%\" \
     log=%FILTER_STATE(wasm.tlsgate.tcp_log:PLAIN)%\n";

fn cluster(
    endpoint: &Endpoint,
    material: &mut Material<'_>,
    options: &Options,
) -> Result<Yaml, Error> {
    let i = endpoint.index;
    let upstream = &endpoint.upstream;
    // `--resolve` gives an address to connect to; the name stays in SNI and Host.
    let (address, port) = match upstream.address {
        Some(address) => (address.ip().to_string(), address.port()),
        None => (upstream.host.clone(), upstream.port),
    };
    let transport_socket = match (&upstream.tls, upstream.scheme) {
        (Some(tls), UpstreamScheme::Https | UpstreamScheme::Tls) => {
            let client_certificate = match (&tls.client_certificate, &tls.client_key) {
                (Some(chain), Some(key)) => Some(list(vec![map([
                    (
                        "certificate_chain",
                        material.chain(
                            endpoint,
                            chain,
                            &format!("tlsgate-upstream{i}-client.crt"),
                        )?,
                    ),
                    (
                        "private_key",
                        material.key(endpoint, key, &format!("tlsgate-upstream{i}-client.key"))?,
                    ),
                ])])),
                (Some(_), None) => {
                    return Err(Error::MissingMaterial {
                        endpoint: i,
                        url: endpoint.url.clone(),
                        what: "upstream.tls.client_certificate.private_key",
                    })
                }
                (None, _) => None,
            };
            let trusted_ca = match &tls.authorities {
                Some(anchors) => {
                    material.anchors(endpoint, anchors, &format!("tlsgate-upstream{i}-ca.crt"))?
                }
                None => {
                    let bundle = SYSTEM_CA_BUNDLES
                        .iter()
                        .find(|p| Path::new(p).is_file())
                        .ok_or_else(|| Error::NoSystemRoots {
                            endpoint: i,
                            url: endpoint.url.clone(),
                            looked_in: SYSTEM_CA_BUNDLES.join(", "),
                        })?;
                    map([("filename", s(*bundle))])
                }
            };
            // The chain alone proves nothing about *which* server answered: every certificate
            // the CA ever issued would do. The name is always checked against the SANs; Envoy
            // cannot match a subject CN, so a certificate without SANs (X.509 v1, like the
            // seed's) is accepted only by its pinned key, exactly as the native host does.
            let identity = if tls.pinned_spki_sha256.is_empty() {
                let san_type = if tls.server_name.parse::<IpAddr>().is_ok() {
                    "IP_ADDRESS"
                } else {
                    "DNS"
                };
                (
                    "match_typed_subject_alt_names",
                    list(vec![map([
                        ("san_type", s(san_type)),
                        ("matcher", map([("exact", s(tls.server_name.clone()))])),
                    ])]),
                )
            } else {
                (
                    "verify_certificate_spki",
                    list(
                        tls.pinned_spki_sha256
                            .iter()
                            .map(|p| s(p.clone()))
                            .collect(),
                    ),
                )
            };
            let validation = map([("trusted_ca", trusted_ca), identity]);
            let alpn = match (upstream.scheme, upstream.protocol) {
                (UpstreamScheme::Tls, _) => None,
                (_, UpstreamProtocol::Http2) => Some(list(vec![s("h2")])),
                (_, UpstreamProtocol::Http1) => Some(list(vec![s("http/1.1")])),
            };
            let sni =
                (tls.server_name.parse::<IpAddr>().is_err()).then(|| s(tls.server_name.clone()));
            Some(map([
                ("name", s("envoy.transport_sockets.tls")),
                (
                    "typed_config",
                    typed(
                        "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
                        [
                            ("sni", opt(sni)),
                            (
                                "common_tls_context",
                                map([
                                    // Envoy's client default tops out at TLS 1.2.
                                    (
                                        "tls_params",
                                        map([
                                            ("tls_minimum_protocol_version", s("TLSv1_2")),
                                            ("tls_maximum_protocol_version", s("TLSv1_3")),
                                        ]),
                                    ),
                                    ("tls_certificates", opt(client_certificate)),
                                    ("validation_context", validation),
                                    ("alpn_protocols", opt(alpn)),
                                ]),
                            ),
                        ],
                    ),
                ),
            ]))
        }
        _ => None,
    };
    let protocol_options = (endpoint.scheme == Scheme::Https
        && upstream.protocol == UpstreamProtocol::Http2)
        .then(|| {
            map([(
                "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                typed(
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                    [(
                        "explicit_http_config",
                        // allow_connect: a WebSocket reaches an http2 upstream as RFC 8441
                        // extended CONNECT, as the native host sends it.
                        map([(
                            "http2_protocol_options",
                            map([("allow_connect", boolean(true))]),
                        )]),
                    )],
                ),
            )])
        });
    let name = cluster_name(endpoint);
    let (kind, family) = cluster_type(&address);
    Ok(map([
        ("name", s(name.clone())),
        ("type", kind),
        ("dns_lookup_family", family),
        ("connect_timeout", duration(options.limits.upstream_connect)),
        // Bounded fan-out, as the native host: past the cap a request is answered 503 at once
        // (Envoy's overflow), never queued without end.
        (
            "circuit_breakers",
            map([(
                "thresholds",
                list(vec![map([
                    ("priority", s("DEFAULT")),
                    (
                        "max_connections",
                        count(options.limits.max_upstream_requests),
                    ),
                    (
                        "max_pending_requests",
                        count(options.limits.max_upstream_requests),
                    ),
                    ("max_requests", count(options.limits.max_upstream_requests)),
                    // The route's one retry of a safe request whose connection closed under
                    // it: as many at once as requests (an upstream that reloads closes every
                    // pooled connection together).
                    ("max_retries", count(options.limits.max_upstream_requests)),
                ])]),
            )]),
        ),
        ("typed_extension_protocol_options", opt(protocol_options)),
        ("load_assignment", load_assignment(&name, &address, port)),
        (
            "transport_socket",
            opt(upstream_proxy_protocol(upstream, transport_socket)),
        ),
    ]))
}

/// The cluster the filter asks an endpoint's OCSP responder through (plain HTTP/1.1: answers
/// are signed; the filter checks them).
pub(crate) fn ocsp_cluster(
    index: usize,
    check: &tlsgate_core::config::OcspCheck,
) -> Result<Yaml, Error> {
    let url = check.responder.as_deref().unwrap_or_default();
    let responder = tlsgate_core::ocsp::Responder::parse(url)
        .map_err(|e| Error::Unsupported(format!("endpoints[{index}]: {e}")))?;
    let name = tlsgate_core::policy::ocsp_cluster_name(index);
    let (kind, family) = cluster_type(&responder.host);
    Ok(map([
        ("name", s(name.clone())),
        ("type", kind),
        ("dns_lookup_family", family),
        ("connect_timeout", duration(check.timeout)),
        (
            "load_assignment",
            load_assignment(&name, &responder.host, responder.port),
        ),
    ]))
}

/// The cluster the filter asks the responders client certificates name through (their AIA
/// URLs are known only when a client presents one): a dynamic forward proxy cluster, which
/// resolves each `:authority` as it is asked (Envoy >= 1.34 resolves without the HTTP filter)
/// and keeps at most a bounded number of responder hosts.
pub(crate) fn ocsp_aia_cluster(timeout: std::time::Duration) -> Yaml {
    map([
        ("name", s(tlsgate_core::policy::OCSP_AIA_CLUSTER)),
        ("connect_timeout", duration(timeout)),
        ("lb_policy", s("CLUSTER_PROVIDED")),
        (
            "cluster_type",
            map([
                ("name", s("envoy.clusters.dynamic_forward_proxy")),
                (
                    "typed_config",
                    map([
                        (
                            "@type",
                            s("type.googleapis.com/envoy.extensions.clusters.dynamic_forward_proxy.v3.ClusterConfig"),
                        ),
                        (
                            "dns_cache_config",
                            map([
                                ("name", s(tlsgate_core::policy::OCSP_AIA_CLUSTER)),
                                ("dns_lookup_family", s("V4_PREFERRED")),
                                ("max_hosts", Yaml::Integer(256)),
                            ]),
                        ),
                    ]),
                ),
            ]),
        ),
    ])
}

/// STATIC for an address, STRICT_DNS (IPv4 first) for a name.
fn cluster_type(address: &str) -> (Yaml, Yaml) {
    if address.parse::<IpAddr>().is_ok() {
        (s("STATIC"), Yaml::Null)
    } else {
        (s("STRICT_DNS"), s("V4_PREFERRED"))
    }
}

/// A cluster's one endpoint.
fn load_assignment(cluster: &str, address: &str, port: u16) -> Yaml {
    map([
        ("cluster_name", s(cluster)),
        (
            "endpoints",
            list(vec![map([(
                "lb_endpoints",
                list(vec![map([(
                    "endpoint",
                    map([(
                        "address",
                        map([(
                            "socket_address",
                            map([("address", s(address)), ("port_value", int(port))]),
                        )]),
                    )]),
                )])]),
            )])]),
        ),
    ])
}

/// The upstream transport socket, behind a PROXY protocol header when the upstream asks for
/// one. Envoy fills the header from the downstream connection (HTTP connection manager and
/// tcp_proxy both record it) and keys its connection pools by it, so an upstream connection
/// carries one client's requests, as in the native host.
fn upstream_proxy_protocol(upstream: &Upstream, inner: Option<Yaml>) -> Option<Yaml> {
    let Some(version) = upstream.proxy_protocol else {
        return inner;
    };
    let inner = inner.unwrap_or_else(|| {
        map([
            ("name", s("envoy.transport_sockets.raw_buffer")),
            (
                "typed_config",
                typed(
                    "envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer",
                    [],
                ),
            ),
        ])
    });
    Some(map([
        ("name", s("envoy.transport_sockets.upstream_proxy_protocol")),
        (
            "typed_config",
            typed(
                "envoy.extensions.transport_sockets.proxy_protocol.v3.ProxyProtocolUpstreamTransport",
                [
                    (
                        "config",
                        map([(
                            "version",
                            s(match version {
                                ProxyProtocolVersion::V1 => "V1",
                                ProxyProtocolVersion::V2 => "V2",
                            }),
                        )]),
                    ),
                    ("transport_socket", inner),
                ],
            ),
        ),
    ]))
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::expect_used, clippy::panic)]

    use super::*;
    use std::path::Path;
    use tlsgate_core::{Deployment, KeyMode};
    use tlsgate_test_support::Authority;
    use yaml_rust2::YamlLoader;

    /// Key/certificate agreement and CRL signatures are the native host's checks; the
    /// generators' tests (here and in `istio`) only need loading.
    pub(crate) struct AcceptAnyKey;
    impl tlsgate_core::HostCrypto for AcceptAnyKey {
        fn check_crl_signature(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
            Ok(())
        }
        fn check_key_pair(
            &self,
            _: &rustls_pki_types::CertificateDer<'_>,
            _: &rustls_pki_types::PrivateKeyDer<'_>,
        ) -> Result<(), String> {
            Ok(())
        }
    }

    /// `a.example.com` on 127.0.0.1:8443, require-and-verify, to a plain HTTP upstream.
    fn verified_endpoint() -> String {
        endpoint(
            "a.example.com",
            "127.0.0.1:8443",
            "require-and-verify",
            "      url: http://127.0.0.1:8080",
        )
    }

    fn endpoint(host: &str, bind: &str, strategy: &str, upstream: &str) -> String {
        format!(
            r#"  - url: https://{host}
    bind: {bind}
    upstream:
{upstream}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: "1.3"
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
                mutual_tls_verification_strategy: {strategy}
"#
        )
    }

    fn generate_from(dir: &Path, policy: &str) -> (Yaml, Bootstrap) {
        let ca = Authority::root("Example Root");
        ca.write(dir, "ca");
        ca.server(&["a.example.com", "b.example.com", "c.example.com"])
            .write(dir, "server");
        let bootstrap = generate(&load(dir, policy), &options(dir)).expect("generates");
        let doc = YamlLoader::load_from_str(&bootstrap.yaml)
            .expect("the output is YAML")
            .into_iter()
            .next()
            .expect("one document");
        (doc, bootstrap)
    }

    /// `policy` written to DIR/policy.yaml and loaded with its keys.
    fn load(dir: &Path, policy: &str) -> Config {
        let path = dir.join("policy.yaml");
        std::fs::write(&path, policy).expect("policy");
        Config::load_files(&[path], KeyMode::Load(&AcceptAnyKey), Deployment::none())
            .expect("loads")
    }

    fn options(dir: &Path) -> Options {
        Options {
            wasm: PathBuf::from("/opt/tlsgate/tlsgate_filter.wasm"),
            out_dir: dir.to_path_buf(),
            admin: "127.0.0.1:9901".parse().expect("addr"),
            limits: Limits::DEFAULT,
            ocsp_staples: Vec::new(),
        }
    }

    fn tls_context(chain: &Yaml) -> &Yaml {
        &chain["transport_socket"]["typed_config"]
    }

    #[test]
    fn maps_each_strategy_to_envoys_client_certificate_settings() {
        let dir = tempfile::tempdir().expect("tempdir");
        let up = "      url: http://127.0.0.1:8080";
        let policy = format!(
            "endpoints:\n{}{}{}",
            endpoint("a.example.com", "127.0.0.1:8443", "require-and-verify", up),
            endpoint("b.example.com", "127.0.0.1:8443", "require-any", up),
            endpoint("c.example.com", "127.0.0.1:8443", "request", up),
        );
        let (doc, _) = generate_from(dir.path(), &policy);
        let listeners = doc["static_resources"]["listeners"]
            .as_vec()
            .expect("listeners");
        assert_eq!(listeners.len(), 1, "one listener per bind");
        let chains = listeners[0]["filter_chains"].as_vec().expect("chains");
        let expect = [
            ("a.example.com", true, None),
            ("b.example.com", true, Some("ACCEPT_UNTRUSTED")),
            ("c.example.com", false, Some("ACCEPT_UNTRUSTED")),
        ];
        for (i, (chain, (host, require, trust))) in chains.iter().zip(expect).enumerate() {
            assert_eq!(chain["name"].as_str(), Some(filter_chain_name(i).as_str()));
            assert_eq!(
                chain["filter_chain_match"]["server_names"][0].as_str(),
                Some(host)
            );
            let ctx = tls_context(chain);
            assert_eq!(
                ctx["require_client_certificate"].as_bool(),
                Some(require),
                "{host}"
            );
            // Resumption stays on only where a resumed session implies a verified chain.
            for key in [
                "disable_stateless_session_resumption",
                "disable_stateful_session_resumption",
            ] {
                assert_eq!(
                    ctx[key].as_bool(),
                    trust.is_some().then_some(true),
                    "{host} {key}"
                );
            }
            let validation = &ctx["common_tls_context"]["validation_context"];
            assert_eq!(
                validation["trust_chain_verification"].as_str(),
                trust,
                "{host}"
            );
            assert_eq!(
                validation["trusted_ca"]["filename"].as_str(),
                Some(dir.path().join("ca.crt").display().to_string().as_str())
            );
            assert_eq!(
                ctx["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"].as_str(),
                Some("TLSv1_3")
            );
            let filters = chain["filters"].as_vec().expect("filters");
            assert_eq!(
                filters[0]["name"].as_str(),
                Some("envoy.filters.network.wasm")
            );
            assert_eq!(
                filters[0]["typed_config"]["config"]["root_id"].as_str(),
                Some(NETWORK_ROOT_ID)
            );
            let hcm = &filters[1]["typed_config"];
            assert_eq!(
                hcm["forward_client_cert_details"].as_str(),
                Some("SANITIZE")
            );
            assert_eq!(
                hcm["http_filters"][0]["typed_config"]["config"]["root_id"].as_str(),
                Some(HTTP_ROOT_ID)
            );
        }
    }

    #[test]
    fn embeds_the_filter_policy_without_private_keys() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = format!(
            "endpoints:\n{}",
            endpoint(
                "a.example.com",
                "127.0.0.1:8443",
                "require-and-verify",
                "      url: http://127.0.0.1:8080"
            )
        );
        let (doc, bootstrap) = generate_from(dir.path(), &policy);
        let chain = &doc["static_resources"]["listeners"][0]["filter_chains"][0];
        let config = chain["filters"][0]["typed_config"]["config"]["configuration"]["value"]
            .as_str()
            .expect("plugin configuration");
        let policy: serde_json::Value = serde_json::from_str(config).expect("JSON");
        assert!(policy["endpoints"][0]["url"] == "https://a.example.com");
        assert!(!bootstrap.yaml.contains("PRIVATE KEY"));
        assert!(bootstrap.files.is_empty(), "file references need no copies");
    }

    #[test]
    fn a_listener_gets_a_connection_line_only_where_on_tcp_connect_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = verified_endpoint();
        let (doc, _) = generate_from(dir.path(), &format!("endpoints:\n{base}"));
        assert!(doc["static_resources"]["listeners"][0]["access_log"].is_badvalue());
        let logging = format!(
            "endpoints:\n{base}        - actions: [{{type: log, config: {{metadata: {{event: x}}}}}}]\n"
        );
        let (doc, _) = generate_from(dir.path(), &logging);
        let line = doc["static_resources"]["listeners"][0]["access_log"][0]["typed_config"]
            ["log_format"]["text_format_source"]["inline_string"]
            .as_str()
            .expect("a connection line");
        assert!(
            line.contains("%FILTER_STATE(wasm.tlsgate.tcp_log:PLAIN)%"),
            "{line}"
        );
    }

    #[test]
    fn a_rule_on_a_variable_envoy_cannot_provide_is_refused_not_evaluated_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::root("Example Root");
        ca.write(dir.path(), "ca");
        ca.server(&["a.example.com"]).write(dir.path(), "server");
        let everywhere = tlsgate_core::policy::UNKNOWN_BEHIND_ENVOY
            .iter()
            .filter(|u| !u.network_filter_only);
        let base = verified_endpoint();
        for variable in everywhere.map(|u| u.variable) {
            let policy = format!(
                "endpoints:\n{base}      on_http_request:\n        - actions:\n            - type: add-headers\n              config: {{headers: {{x-v: \"${{{variable}}}\"}}}}\n"
            );
            let e = generate(&load(dir.path(), &policy), &options(dir.path()))
                .expect_err("refused")
                .to_string();
            assert!(
                e.contains(&format!("reads {variable}, which Envoy cannot provide"))
                    && e.contains("endpoints[0]"),
                "{e}"
            );
        }
        // ALPN: the HTTP filter has it, the network filter does not.
        let alpn = "conn.tls.negotiated_alpn == 'h2'";
        let http = format!(
            "endpoints:\n{base}      on_http_request:\n        - expressions: [\"{alpn}\"]\n          actions: [{{type: deny}}]\n"
        );
        generate(&load(dir.path(), &http), &options(dir.path())).expect("ALPN in requests");
        let tcp = format!(
            "endpoints:\n{base}        - expressions: [\"{alpn}\"]\n          actions: [{{type: deny}}]\n"
        );
        let e = generate(&load(dir.path(), &tcp), &options(dir.path()))
            .expect_err("ALPN in on_tcp_connect")
            .to_string();
        assert!(
            e.contains("an on_tcp_connect rule reads conn.tls.negotiated_alpn"),
            "{e}"
        );
    }

    #[test]
    fn ja4_in_requests_turns_on_tls_inspector_fingerprints_and_hands_them_over_first() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = verified_endpoint();
        let rule = "conn.tls.ja4_fingerprint.startsWith('t12')";
        let policy = format!(
            "endpoints:\n{base}      on_http_request:\n        - expressions: [\"{rule}\"]\n          actions: [{{type: deny}}]\n"
        );
        let (doc, _) = generate_from(dir.path(), &policy);
        let listener = &doc["static_resources"]["listeners"][0];
        let inspector = listener["listener_filters"]
            .as_vec()
            .and_then(|f| {
                f.iter()
                    .find(|f| f["name"].as_str() == Some("envoy.filters.listener.tls_inspector"))
            })
            .expect("tls_inspector");
        assert_eq!(
            inspector["typed_config"]["enable_ja4_fingerprinting"].as_bool(),
            Some(true)
        );
        let hcm = &listener["filter_chains"][0]["filters"][1]["typed_config"];
        let filters: Vec<&str> = hcm["http_filters"]
            .as_vec()
            .expect("http_filters")
            .iter()
            .filter_map(|f| f["name"].as_str())
            .collect();
        assert_eq!(
            filters,
            [
                "envoy.filters.http.header_mutation",
                "envoy.filters.http.wasm",
                "envoy.filters.http.router"
            ]
        );
        let set =
            &hcm["http_filters"][0]["typed_config"]["mutations"]["request_mutations"][0]["append"];
        assert_eq!(set["header"]["key"].as_str(), Some("x-tlsgate-ja4"));
        assert_eq!(
            set["header"]["value"].as_str(),
            Some("ja4=%TLS_JA4_FINGERPRINT%")
        );
        assert_eq!(
            set["append_action"].as_str(),
            Some("OVERWRITE_IF_EXISTS_OR_ADD")
        );
        // Without a rule on it, neither is there.
        let (plain, _) = generate_from(dir.path(), &format!("endpoints:\n{base}"));
        let listener = &plain["static_resources"]["listeners"][0];
        // (Not any "ja4": the listener names files in a temporary directory, whose random
        // name can hold those three letters.)
        let yaml = crate::yaml::emit(listener).unwrap();
        assert!(
            !yaml.contains("enable_ja4_fingerprinting") && !yaml.contains("x-tlsgate-ja4"),
            "{yaml}"
        );
    }

    #[test]
    fn ocsp_gets_a_cluster_for_its_responder_or_follows_the_certificates_own() {
        let dir = tempfile::tempdir().expect("tempdir");
        let with_ocsp = |strategy: &str, ocsp: &str| {
            format!(
                "endpoints:\n{}                mutual_tls_ocsp: {ocsp}\n",
                endpoint(
                    "a.example.com",
                    "127.0.0.1:8443",
                    strategy,
                    "      url: http://127.0.0.1:8080"
                )
            )
        };
        let (doc, _) = generate_from(
            dir.path(),
            &with_ocsp(
                "require-and-verify",
                "{mode: require, responder: 'http://127.0.0.1:8888/ocsp', timeout: 1s}",
            ),
        );
        let clusters = doc["static_resources"]["clusters"]
            .as_vec()
            .expect("clusters");
        let ocsp = clusters
            .iter()
            .find(|c| c["name"].as_str() == Some("tlsgate_ocsp_0"))
            .expect("a cluster for the responder");
        let address = &ocsp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
            ["address"]["socket_address"];
        assert_eq!(address["address"].as_str(), Some("127.0.0.1"));
        assert_eq!(address["port_value"].as_i64(), Some(8888));
        assert_eq!(ocsp["connect_timeout"].as_str(), Some("1s"));
        assert!(
            doc["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]
                ["typed_config"]["common_tls_context"]["tls_certificates"][0]["ocsp_staple"]
                .is_badvalue(),
            "no staple unless one was fetched"
        );

        // Every strategy; without `responder`, the one the certificate names, through one
        // dynamic forward proxy cluster waiting as long as the longest of its endpoints.
        for strategy in ["request", "require-any", "require-and-verify"] {
            let (doc, _) = generate_from(
                dir.path(),
                &with_ocsp(strategy, "{mode: prefer, timeout: 3s}"),
            );
            let clusters = doc["static_resources"]["clusters"]
                .as_vec()
                .expect("clusters");
            assert!(
                !clusters
                    .iter()
                    .any(|c| c["name"].as_str() == Some("tlsgate_ocsp_0")),
                "{strategy}: no fixed responder"
            );
            let aia = clusters
                .iter()
                .find(|c| c["name"].as_str() == Some(tlsgate_core::policy::OCSP_AIA_CLUSTER))
                .unwrap_or_else(|| panic!("{strategy}: the AIA cluster"));
            assert_eq!(
                aia["cluster_type"]["name"].as_str(),
                Some("envoy.clusters.dynamic_forward_proxy")
            );
            assert_eq!(aia["connect_timeout"].as_str(), Some("3s"));
        }
    }

    #[test]
    fn a_fetched_ocsp_response_is_stapled_to_its_endpoints_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = format!(
            "endpoints:\n{}",
            endpoint(
                "a.example.com",
                "127.0.0.1:8443",
                "request",
                "      url: http://127.0.0.1:8080"
            )
        );
        let (_, bootstrap) = generate_from(dir.path(), &policy);
        assert!(
            !bootstrap.yaml.contains("ocsp_staple"),
            "none unless one was fetched"
        );
        let mut options = options(dir.path());
        options.ocsp_staples = vec![(0, vec![0x30, 0x03, 0x0a, 0x01, 0x00])];
        let bootstrap = generate(&load(dir.path(), &policy), &options).expect("generates");
        let doc = YamlLoader::load_from_str(&bootstrap.yaml).expect("YAML");
        let certificate =
            &tls_context(&doc[0]["static_resources"]["listeners"][0]["filter_chains"][0])
                ["common_tls_context"]["tls_certificates"][0];
        assert_eq!(
            certificate["ocsp_staple"]["inline_bytes"].as_str(),
            Some("MAMKAQA="),
            "the response's DER, base64 as protobuf bytes are written"
        );
    }

    #[test]
    fn proxy_protocol_in_trusts_only_its_sources_and_out_wraps_the_upstream_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let policy = format!(
            "endpoints:\n{}{}listeners:\n  - bind: 127.0.0.1:8443\n    \
             proxy_protocol: {{trusted_sources: [10.0.0.0/8, '::1']}}\n",
            endpoint(
                "a.example.com",
                "127.0.0.1:8443",
                "request",
                "      url: http://127.0.0.1:8080\n      proxy_protocol: 2"
            ),
            endpoint(
                "b.example.com",
                "127.0.0.1:9443",
                "request",
                "      url: http://127.0.0.1:8080"
            ),
        );
        let (doc, _) = generate_from(dir.path(), &policy);
        let listeners = &doc["static_resources"]["listeners"];
        let proxied = &listeners[0];
        assert_eq!(
            proxied["listener_filters"][0]["name"].as_str(),
            Some("envoy.filters.listener.proxy_protocol"),
            "the header is read before the ClientHello"
        );
        let ranges =
            &proxied["filter_chains"][0]["filter_chain_match"]["direct_source_prefix_ranges"];
        assert_eq!(ranges[0]["address_prefix"].as_str(), Some("10.0.0.0"));
        assert_eq!(ranges[0]["prefix_len"].as_i64(), Some(8));
        assert_eq!(ranges[1]["address_prefix"].as_str(), Some("::1"));
        assert_eq!(ranges[1]["prefix_len"].as_i64(), Some(128));
        let plain = &listeners[1];
        assert_eq!(
            plain["listener_filters"][0]["name"].as_str(),
            Some("envoy.filters.listener.tls_inspector")
        );
        assert!(
            plain["filter_chains"][0]["filter_chain_match"]["direct_source_prefix_ranges"]
                .is_badvalue()
        );

        let clusters = &doc["static_resources"]["clusters"];
        let socket = &clusters[0]["transport_socket"];
        assert_eq!(
            socket["name"].as_str(),
            Some("envoy.transport_sockets.upstream_proxy_protocol")
        );
        assert_eq!(
            socket["typed_config"]["config"]["version"].as_str(),
            Some("V2")
        );
        assert_eq!(
            socket["typed_config"]["transport_socket"]["name"].as_str(),
            Some("envoy.transport_sockets.raw_buffer")
        );
        assert!(clusters[1]["transport_socket"].is_badvalue());
    }

    #[test]
    fn always_verifies_the_upstream_name_or_its_pinned_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = tlsgate_test_support::Authority::root("Upstream CA");
        ca.write(dir.path(), "upstream-ca");
        let pinned = ca.server(&["pinned.internal"]);
        pinned.write(dir.path(), "pinned");
        let private = "      url: https://upstream.internal:8443\n      protocol: http2\n      tls:\n        certificate_authorities: [ca.crt]";
        let public = "      url: https://api.example.org";
        let with_pin = "      url: https://10.0.0.7:8443\n      tls:\n        certificate_authorities: [upstream-ca.crt]\n        pinned_certificates: [pinned.crt]";
        let policy = format!(
            "endpoints:\n{}{}{}",
            endpoint("a.example.com", "127.0.0.1:8443", "request", private),
            endpoint("b.example.com", "127.0.0.1:9443", "request", public),
            endpoint("c.example.com", "127.0.0.1:9444", "request", with_pin),
        );
        assert!(
            SYSTEM_CA_BUNDLES.iter().any(|p| Path::new(p).is_file()),
            "no system CA bundle in {SYSTEM_CA_BUNDLES:?}: install Debian's ca-certificates \
             (scripts/setup.sh does)"
        );
        let (doc, _) = generate_from(dir.path(), &policy);
        let clusters = doc["static_resources"]["clusters"]
            .as_vec()
            .expect("clusters");
        let validation = |c: &Yaml| {
            c["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
                .clone()
        };
        let san = |c: &Yaml| {
            let v = validation(c);
            (
                v["match_typed_subject_alt_names"][0]["san_type"]
                    .as_str()
                    .map(str::to_owned),
                v["match_typed_subject_alt_names"][0]["matcher"]["exact"]
                    .as_str()
                    .map(str::to_owned),
            )
        };
        assert_eq!(clusters[0]["type"].as_str(), Some("STRICT_DNS"));
        // A private CA is no reason to accept any certificate it issued: the name is matched.
        assert_eq!(
            san(&clusters[0]),
            (Some("DNS".into()), Some("upstream.internal".into()))
        );
        assert_eq!(
            clusters[0]["transport_socket"]["typed_config"]["sni"].as_str(),
            Some("upstream.internal")
        );
        assert!(!clusters[0]["typed_extension_protocol_options"].is_badvalue());
        assert_eq!(
            san(&clusters[1]),
            (Some("DNS".into()), Some("api.example.org".into()))
        );
        // A pinned key replaces the name check (a certificate without SANs has no name Envoy
        // can match), and the pin is the certificate's SPKI hash.
        let pins = validation(&clusters[2])["verify_certificate_spki"].clone();
        assert_eq!(
            pins[0].as_str().map(str::to_owned),
            tlsgate_core::pem::spki_sha256(&pinned.cert_der.clone().into())
        );
        assert!(validation(&clusters[2])["match_typed_subject_alt_names"].is_badvalue());
        assert_eq!(
            doc["static_resources"]["listeners"].as_vec().map(Vec::len),
            Some(3)
        );
    }

    #[test]
    fn refuses_an_admin_address_off_loopback() {
        let config = Config {
            endpoints: Vec::new(),
            listeners: Vec::new(),
            warnings: Vec::new(),
            files: Vec::new(),
            notes: Vec::new(),
        };
        let options = Options {
            wasm: PathBuf::from("f.wasm"),
            out_dir: PathBuf::from("."),
            admin: "0.0.0.0:9901".parse().expect("addr"),
            limits: Limits::DEFAULT,
            ocsp_staples: Vec::new(),
        };
        assert!(matches!(
            generate(&config, &options),
            Err(Error::AdminNotLoopback(_))
        ));
    }
}
