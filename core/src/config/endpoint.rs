//! An endpoint and its upstream: URLs, bind addresses, the header format for the client's
//! identity, and the upstream's TLS (trust, name, pins, client certificate).

use std::net::SocketAddr;
use std::path::Path;

use crate::error::{ConfigError, ConfigErrorKind, Conflict};
use crate::pem::{load_anchors, load_chain, CertificateChain};
use crate::sni::HostPattern;
use crate::source::FieldPath;
use crate::url::{parse_url, UrlProblem};

use super::de::*;
use super::rules::*;
use super::tls::*;
use super::*;

impl Endpoint {
    pub(crate) fn from_raw(
        raw: RawEndpoint,
        index: usize,
        file: Option<&Path>,
        path: FieldPath,
        options: &LoadOptions<'_>,
        warnings: &mut Vec<ConfigError>,
    ) -> Result<Self, ConfigError> {
        let RawEndpoint {
            url,
            bind,
            upstream,
            traffic_policy,
            forward_client_cert,
        } = raw;
        let url_path = path.key("url");
        let bad_url = |problem| ConfigErrorKind::BadUrl {
            url: (&url).into(),
            problem,
        };
        let parsed = parse_url(&url).map_err(|p| err(url_path.clone(), bad_url(p)))?;
        let scheme = match parsed.scheme.as_str() {
            "https" => Scheme::Https,
            "tls" => Scheme::Tls,
            "http" | "tcp" => return Err(err(url_path, bad_url(UrlProblem::PlainEndpoint))),
            other => {
                return Err(err(
                    url_path,
                    ConfigErrorKind::UnknownChoice {
                        what: "scheme",
                        found: other.into(),
                        choices: "https:// or tls://",
                    },
                ))
            }
        };
        if !parsed.path.is_empty() && parsed.path != "/" {
            return Err(err(
                url_path,
                bad_url(UrlProblem::HasPath {
                    path: (&parsed.path).into(),
                }),
            ));
        }
        let host = HostPattern::parse(&parsed.host).map_err(|e| err(url_path.clone(), e.into()))?;
        let bind_path = path.key("bind");
        let bind: SocketAddr = bind.parse().map_err(|_| {
            err(
                bind_path.clone(),
                ConfigErrorKind::BadAddress {
                    value: (&bind).into(),
                    expected: "an address to listen on; write IP:PORT, e.g. 127.0.0.1:8443 or \
                               [::1]:8443",
                },
            )
        })?;

        let forward_client_cert = match forward_client_cert.as_deref() {
            None | Some("x-forwarded-client-cert") => ForwardClientCert::Xfcc,
            Some("client-cert") => ForwardClientCert::Rfc9440,
            Some("none") => ForwardClientCert::None,
            Some(other) => {
                return Err(err(
                    path.key("forward_client_cert"),
                    ConfigErrorKind::NotOneOf {
                        found: other.into(),
                        what: "a header format",
                        choices: "use x-forwarded-client-cert (Envoy's, the default), \
                                  client-cert (RFC 9440) or none",
                    },
                ))
            }
        };

        let upstream = Upstream::from_raw(upstream, scheme, path.key("upstream"), options)?;

        let policy_path = path.key("traffic_policy");
        let RawTrafficPolicy {
            on_tcp_connect,
            on_http_request,
        } = traffic_policy.unwrap_or_default();
        let mut tls = None;
        let mut tcp_rules = Vec::new();
        for (r, rule) in on_tcp_connect.into_iter().enumerate() {
            let rule_path = policy_path.key("on_tcp_connect").index(r);
            if let Some(rule) = tcp_rule(rule, r, &rule_path, options, &mut tls)? {
                tcp_rules.push(rule);
            }
        }
        let mut http_rules = Vec::new();
        for (r, rule) in on_http_request.into_iter().enumerate() {
            let rule_path = policy_path.key("on_http_request").index(r);
            http_rules.push(http_rule(rule, r, &rule_path)?);
        }
        check_vars_order(
            &tcp_rules,
            crate::expr::Phase::TcpConnect,
            &policy_path.key("on_tcp_connect"),
            TcpAction::templates,
            TcpAction::set_vars,
        )?;
        check_vars_order(
            &http_rules,
            crate::expr::Phase::HttpRequest,
            &policy_path.key("on_http_request"),
            HttpAction::templates,
            HttpAction::set_vars,
        )?;
        if scheme == Scheme::Tls && !http_rules.is_empty() {
            return Err(err(
                policy_path.key("on_http_request"),
                Conflict::HttpRulesOnTlsEndpoint { url: (&url).into() }.into(),
            ));
        }
        let Some((tls, tls_path)) = tls else {
            return Err(err(
                policy_path.key("on_tcp_connect"),
                ConfigErrorKind::NoTerminateTls,
            ));
        };
        if let Some(cert) = &tls.certificate {
            if !cert.names.iter().any(|n| host.covered_by(n)) {
                warnings.push(err(
                    tls_path.key("server_certificate"),
                    ConfigErrorKind::CertificateName {
                        subject: cert.subject.clone(),
                        names: cert.names.clone(),
                        host: host.to_string(),
                    },
                ));
            }
        }
        Ok(Self {
            index,
            file: file.map(Path::to_path_buf),
            url,
            scheme,
            host,
            bind,
            tls,
            upstream,
            tcp_rules,
            http_rules,
            forward_client_cert,
            origin: Vec::new(),
        })
    }
}

impl Upstream {
    pub(super) fn from_raw(
        raw: RawUpstream,
        endpoint_scheme: Scheme,
        path: FieldPath,
        options: &LoadOptions<'_>,
    ) -> Result<Self, ConfigError> {
        let RawUpstream {
            url,
            protocol,
            tls,
            proxy_protocol,
            proxy_protocol_tlvs,
        } = raw;
        let url_path = path.key("url");
        let bad_url = |problem| ConfigErrorKind::BadUrl {
            url: (&url).into(),
            problem,
        };
        let parsed = parse_url(&url).map_err(|p| err(url_path.clone(), bad_url(p)))?;
        let scheme = match (endpoint_scheme, parsed.scheme.as_str()) {
            (Scheme::Https, "http") => UpstreamScheme::Http,
            (Scheme::Https, "https") => UpstreamScheme::Https,
            (Scheme::Tls, "tcp") => UpstreamScheme::Tcp,
            (Scheme::Tls, "tls") => UpstreamScheme::Tls,
            (Scheme::Https, other) => {
                return Err(err(
                    url_path,
                    ConfigErrorKind::WrongUpstreamScheme {
                        endpoint: "an https endpoint proxies HTTP",
                        allowed: "http:// or https://",
                        found: other.into(),
                    },
                ))
            }
            (Scheme::Tls, other) => {
                return Err(err(
                    url_path,
                    ConfigErrorKind::WrongUpstreamScheme {
                        endpoint: "a tls endpoint proxies bytes",
                        allowed: "tcp:// or tls://",
                        found: other.into(),
                    },
                ))
            }
        };
        let port = match (parsed.port, scheme) {
            (Some(p), _) => p,
            (None, UpstreamScheme::Http) => 80,
            (None, UpstreamScheme::Https) => 443,
            (None, _) => return Err(err(url_path, bad_url(UrlProblem::NoPort))),
        };
        let protocol = match protocol.as_deref() {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("http2") if endpoint_scheme == Scheme::Https => UpstreamProtocol::Http2,
            Some("http2") => {
                return Err(err(
                    path.key("protocol"),
                    Conflict::ProtocolOnTlsEndpoint.into(),
                ))
            }
            Some(other) => {
                return Err(err(
                    path.key("protocol"),
                    ConfigErrorKind::UnknownChoice {
                        what: "protocol",
                        found: other.into(),
                        choices: "http1 or http2",
                    },
                ))
            }
        };
        let encrypted = matches!(scheme, UpstreamScheme::Https | UpstreamScheme::Tls);
        let tls = match (tls, encrypted) {
            (None, false) => None,
            (Some(_), false) => {
                return Err(err(
                    path.key("tls"),
                    Conflict::UpstreamTlsUnencrypted { url: (&url).into() }.into(),
                ))
            }
            (raw_tls, true) => {
                let tls_path = path.key("tls");
                let RawUpstreamTls {
                    client_certificate,
                    certificate_authorities,
                    server_name,
                    pinned_certificates,
                } = raw_tls.unwrap_or(RawUpstreamTls {
                    client_certificate: None,
                    certificate_authorities: None,
                    server_name: None,
                    pinned_certificates: None,
                });
                let pinned_certificates: Vec<CertificateChain> = match pinned_certificates {
                    None => Vec::new(),
                    Some(list) if list.is_empty() => {
                        return Err(err(
                            tls_path.key("pinned_certificates"),
                            ConfigErrorKind::EmptyList {
                                hint: "leave it out to accept any key the CAs vouch for",
                            },
                        ))
                    }
                    Some(list) => list
                        .iter()
                        .enumerate()
                        .map(|(i, value)| {
                            load_chain(value, "pinned_certificates", options.reader).map_err(|k| {
                                err(tls_path.key("pinned_certificates").index(i), k.into())
                            })
                        })
                        .collect::<Result<_, _>>()?,
                };
                let pinned_spki_sha256 = pinned_certificates
                    .iter()
                    .enumerate()
                    .map(|(i, chain)| {
                        crate::pem::spki_sha256(chain.leaf()).ok_or_else(|| {
                            err(
                                tls_path.key("pinned_certificates").index(i),
                                ConfigErrorKind::UnreadablePublicKey,
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?;
                let (client_certificate, client_key) = match client_certificate {
                    None => (None, None),
                    Some(pair) => {
                        let pair_path = tls_path.key("client_certificate");
                        let (c, k) = certificate_pair(
                            &pair.certificate,
                            pair.private_key.as_deref(),
                            &pair_path,
                            ("certificate", "private_key"),
                            options,
                        )?;
                        (Some(c), k)
                    }
                };
                let authorities = match certificate_authorities {
                    None => None,
                    Some(list) if list.is_empty() => {
                        return Err(err(
                            tls_path.key("certificate_authorities"),
                            ConfigErrorKind::EmptyList {
                                hint: "leave it out to trust the system's roots",
                            },
                        ))
                    }
                    Some(list) => Some(
                        load_anchors(&list, "certificate_authorities", options.reader).map_err(
                            |(i, k)| {
                                err(tls_path.key("certificate_authorities").index(i), k.into())
                            },
                        )?,
                    ),
                };
                let server_name = match server_name {
                    Some(name) if name.trim().is_empty() => {
                        return Err(err(
                            tls_path.key("server_name"),
                            ConfigErrorKind::Empty {
                                field: "server_name",
                            },
                        ))
                    }
                    Some(name) => name,
                    None => parsed.host.clone(),
                };
                Some(UpstreamTls {
                    client_certificate,
                    client_key,
                    authorities,
                    server_name,
                    pinned_spki_sha256,
                    pinned_certificates,
                })
            }
        };
        let proxy_protocol = match proxy_protocol {
            None => None,
            Some(value) => Some(proxy_protocol_version(&value).ok_or_else(|| {
                let shown = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                err(
                    path.key("proxy_protocol"),
                    ConfigErrorKind::NotOneOf {
                        found: shown.into(),
                        what: "a PROXY protocol version",
                        choices: "write 1 (text) or 2 (binary)",
                    },
                )
            })?),
        };
        let proxy_protocol_tlvs = proxy_protocol_tlvs.unwrap_or(false);
        if proxy_protocol_tlvs && proxy_protocol != Some(ProxyProtocolVersion::V2) {
            return Err(err(
                path.key("proxy_protocol_tlvs"),
                Conflict::TlvsWithoutVersion2.into(),
            ));
        }
        Ok(Self {
            address: options.deployment.resolve_for(&parsed.host, port),
            url,
            scheme,
            host: parsed.host,
            port,
            protocol,
            tls,
            proxy_protocol,
            proxy_protocol_tlvs,
        })
    }
}

/// `1`, `2`, `"1"` or `"2"` (ngrok writes the version as a string).
fn proxy_protocol_version(value: &serde_json::Value) -> Option<ProxyProtocolVersion> {
    let text = match value {
        serde_json::Value::Number(n) => n.to_string(),
        serde_json::Value::String(s) => s.trim().to_owned(),
        _ => return None,
    };
    match text.as_str() {
        "1" => Some(ProxyProtocolVersion::V1),
        "2" => Some(ProxyProtocolVersion::V2),
        _ => None,
    }
}
