//! The upstream side of the bootstrap: one cluster per endpoint (its `UpstreamTlsContext`,
//! protocol options, PROXY protocol transport socket) and the clusters the filter asks OCSP
//! responders through.

use super::*;
pub(crate) fn cluster(
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
/// The clusters the filter asks OCSP responders through, for every endpoint of `config`: one
/// per configured responder, and one dynamic forward proxy for the responders client
/// certificates name, waiting as long as the longest of its endpoints' timeouts. Both
/// generators emit these (Envoy's bootstrap, Istio's EnvoyFilter), so the filter finds them
/// by the same names either way.
pub(crate) fn ocsp_clusters(config: &tlsgate_core::Config) -> Result<Vec<Yaml>, Error> {
    let mut clusters = Vec::new();
    let mut aia_timeout = None;
    for endpoint in &config.endpoints {
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
    Ok(clusters)
}

fn ocsp_cluster(index: usize, check: &tlsgate_core::config::OcspCheck) -> Result<Yaml, Error> {
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
fn ocsp_aia_cluster(timeout: std::time::Duration) -> Yaml {
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
pub(crate) fn cluster_type(address: &str) -> (Yaml, Yaml) {
    if address.parse::<IpAddr>().is_ok() {
        (s("STATIC"), Yaml::Null)
    } else {
        (s("STRICT_DNS"), s("V4_PREFERRED"))
    }
}

/// A cluster's one endpoint.
pub(crate) fn load_assignment(cluster: &str, address: &str, port: u16) -> Yaml {
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
pub(crate) fn upstream_proxy_protocol(upstream: &Upstream, inner: Option<Yaml>) -> Option<Yaml> {
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
