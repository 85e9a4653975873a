//! An endpoint and its upstream: URLs, bind addresses, the header format for the client's
//! identity, and the upstream's TLS (trust, name, pins, client certificate).

use std::net::SocketAddr;
use std::path::Path;

use crate::error::{invalid, ConfigError};
use crate::pem::{load_anchors, load_chain, CertificateChain};
use crate::sni::HostPattern;
use crate::source::FieldPath;

use super::load::*;
use super::rules::*;
use super::tls::*;
use super::*;

/// `scheme://host[:port][/…]`, with `[v6]` hosts.
pub(crate) struct ParsedUrl {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("`{url}` has no scheme; write it as scheme://host[:port]"))?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(format!("`{url}`: credentials in URLs are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| format!("`{url}`: unclosed `[` in the host"))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(format!("`{url}`: unexpected `{after}` after the host")),
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("`{url}`: `{p}` is not a port number (1-65535)"))
        })
        .transpose()?;
    Ok(ParsedUrl {
        scheme: scheme.to_ascii_lowercase(),
        host,
        port,
        path: path.to_owned(),
    })
}

impl ParsedUrl {
    pub(crate) fn scheme(&self) -> &str {
        &self.scheme
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}

impl Endpoint {
    pub(super) fn from_raw(
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
        let parsed = parse_url(&url).map_err(|m| err(url_path.clone(), invalid(m)))?;
        let scheme = match parsed.scheme.as_str() {
            "https" => Scheme::Https,
            "tls" => Scheme::Tls,
            "http" | "tcp" => {
                return Err(err(
                    url_path,
                    invalid(format!(
                        "`{url}`: tlsgate terminates TLS, so an endpoint is https:// (HTTP) \
                         or tls:// (any TCP protocol)"
                    )),
                ))
            }
            other => {
                return Err(err(
                    url_path,
                    invalid(format!("unknown scheme `{other}`; use https:// or tls://")),
                ))
            }
        };
        if !parsed.path.is_empty() && parsed.path != "/" {
            return Err(err(
                url_path,
                invalid(format!(
                    "`{url}`: an endpoint URL names a host, not a path (`{}`)",
                    parsed.path
                )),
            ));
        }
        let host =
            HostPattern::parse(&parsed.host).map_err(|m| err(url_path.clone(), invalid(m)))?;
        let bind_path = path.key("bind");
        let bind: SocketAddr = bind.parse().map_err(|_| {
            err(
                bind_path.clone(),
                invalid(format!(
                    "`{bind}` is not an address to listen on; write IP:PORT, \
                     e.g. 127.0.0.1:8443 or [::1]:8443"
                )),
            )
        })?;

        let forward_client_cert = match forward_client_cert.as_deref() {
            None | Some("x-forwarded-client-cert") => ForwardClientCert::Xfcc,
            Some("client-cert") => ForwardClientCert::Rfc9440,
            Some("none") => ForwardClientCert::None,
            Some(other) => {
                return Err(err(
                    path.key("forward_client_cert"),
                    invalid(format!(
                        "`{other}` is not a header format; use x-forwarded-client-cert \
                         (Envoy's, the default), client-cert (RFC 9440) or none"
                    )),
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
                invalid(format!(
                    "`{url}` is a tls:// endpoint: it proxies bytes, so there are no HTTP \
                     requests to apply on_http_request to; use an https:// endpoint"
                )),
            ));
        }
        let Some((tls, tls_path)) = tls else {
            return Err(err(
                policy_path.key("on_tcp_connect"),
                invalid(
                    "no terminate-tls action: tlsgate needs the endpoint's certificate and key. \
                     Add `- actions: [{type: terminate-tls, config: {server_certificate: …, \
                     server_private_key: …}}]` to on_tcp_connect (`tlsgate certs` makes a set)",
                ),
            ));
        };
        if let Some(cert) = &tls.certificate {
            if !cert.names.iter().any(|n| host.covered_by(n)) {
                warnings.push(err(
                    tls_path.key("server_certificate"),
                    invalid(format!(
                        "the certificate ({}) names {} but the endpoint serves {host}: \
                         clients that verify the name will refuse it",
                        cert.subject,
                        if cert.names.is_empty() {
                            "no host".to_owned()
                        } else {
                            cert.names.join(", ")
                        }
                    )),
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
        let parsed = parse_url(&url).map_err(|m| err(url_path.clone(), invalid(m)))?;
        let scheme = match (endpoint_scheme, parsed.scheme.as_str()) {
            (Scheme::Https, "http") => UpstreamScheme::Http,
            (Scheme::Https, "https") => UpstreamScheme::Https,
            (Scheme::Tls, "tcp") => UpstreamScheme::Tcp,
            (Scheme::Tls, "tls") => UpstreamScheme::Tls,
            (Scheme::Https, other) => {
                return Err(err(
                    url_path,
                    invalid(format!(
                        "an https endpoint proxies HTTP: its upstream is http:// or https://, \
                         not {other}://"
                    )),
                ))
            }
            (Scheme::Tls, other) => {
                return Err(err(
                    url_path,
                    invalid(format!(
                        "a tls endpoint proxies bytes: its upstream is tcp:// or tls://, \
                         not {other}://"
                    )),
                ))
            }
        };
        let port = match (parsed.port, scheme) {
            (Some(p), _) => p,
            (None, UpstreamScheme::Http) => 80,
            (None, UpstreamScheme::Https) => 443,
            (None, _) => {
                return Err(err(
                    url_path,
                    invalid(format!("`{url}` needs a port (tcp://host:port)")),
                ))
            }
        };
        let protocol = match protocol.as_deref() {
            None | Some("http1") => UpstreamProtocol::Http1,
            Some("http2") if endpoint_scheme == Scheme::Https => UpstreamProtocol::Http2,
            Some("http2") => {
                return Err(err(
                    path.key("protocol"),
                    invalid("protocol applies to HTTP upstreams; a tls endpoint has none"),
                ))
            }
            Some(other) => {
                return Err(err(
                    path.key("protocol"),
                    invalid(format!("unknown protocol `{other}`; use http1 or http2")),
                ))
            }
        };
        let encrypted = matches!(scheme, UpstreamScheme::Https | UpstreamScheme::Tls);
        let tls = match (tls, encrypted) {
            (None, false) => None,
            (Some(_), false) => {
                return Err(err(
                    path.key("tls"),
                    invalid(format!(
                        "`{url}` is not encrypted, so upstream tls settings would do nothing; \
                         use https:// (or tls://) to connect with TLS"
                    )),
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
                    Some(list) if list.is_empty() => return Err(err(
                        tls_path.key("pinned_certificates"),
                        invalid(
                            "the list is empty; leave it out to accept any key the CAs vouch for",
                        ),
                    )),
                    Some(list) => list
                        .iter()
                        .enumerate()
                        .map(|(i, value)| {
                            load_chain(value, "pinned_certificates", options.reader)
                                .map_err(|k| err(tls_path.key("pinned_certificates").index(i), k))
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
                                invalid("the certificate's public key cannot be read"),
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
                            invalid("the list is empty; leave it out to trust the system's roots"),
                        ))
                    }
                    Some(list) => Some(
                        load_anchors(&list, "certificate_authorities", options.reader).map_err(
                            |(i, k)| err(tls_path.key("certificate_authorities").index(i), k),
                        )?,
                    ),
                };
                let server_name = match server_name {
                    Some(name) if name.trim().is_empty() => {
                        return Err(err(
                            tls_path.key("server_name"),
                            invalid("server_name is empty"),
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
                    invalid(format!(
                        "`{shown}` is not a PROXY protocol version; write 1 (text) or 2 (binary)"
                    )),
                )
            })?),
        };
        let proxy_protocol_tlvs = proxy_protocol_tlvs.unwrap_or(false);
        if proxy_protocol_tlvs && proxy_protocol != Some(ProxyProtocolVersion::V2) {
            return Err(err(
                path.key("proxy_protocol_tlvs"),
                invalid(
                    "TLVs exist in PROXY protocol version 2 only; set proxy_protocol: 2 beside it",
                ),
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
