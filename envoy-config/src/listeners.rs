//! The listener side of the bootstrap: one filter chain per endpoint (its TLS context, the
//! filter in its network role, `tcp_proxy` or the HTTP connection manager with the filter in its
//! HTTP role), and the access logs Envoy writes for it.

use super::*;
pub(crate) fn filter_chain(
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
            let handshake = strategy.handshake();
            let (require, untrusted) = (handshake.certificate_required, !handshake.chain_enforced);
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
pub(crate) fn plugin(root_id: &str, plugin_config: &str, options: &Options) -> Yaml {
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
pub(crate) fn ja4_header(endpoint: &Endpoint) -> Option<Yaml> {
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
pub(crate) fn overwrite_header(key: &str, value: &str) -> Yaml {
    map([
        ("header", map([("key", s(key)), ("value", s(value))])),
        ("append_action", s("OVERWRITE_IF_EXISTS_OR_ADD")),
    ])
}

/// A local-reply rule: responses carrying any of `flags` get `status`.
pub(crate) fn local_reply_mapper(flags: &[&str], status: i64) -> Yaml {
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

pub(crate) fn http_connection_manager(
    endpoint: &Endpoint,
    plugin_config: &str,
    options: &Options,
) -> Yaml {
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
pub(crate) fn stdout_access_log(format: &str) -> Yaml {
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
pub(crate) const CONNECTION_LOG_FORMAT: &str = "[%START_TIME%] tlsgate connection \
     endpoint=%FILTER_STATE(wasm.tlsgate.endpoint:PLAIN)% sni=%REQUESTED_SERVER_NAME% \
     client=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% peer=\"%DOWNSTREAM_PEER_SUBJECT%\" \
     log=%FILTER_STATE(wasm.tlsgate.tcp_log:PLAIN)%\n";
