//! The validated policy: raw shapes parsed into domain types, certificates loaded and checked.
//!
//! Each conversion destructures its raw struct completely, so a field added to [`crate::raw`]
//! breaks the build here until it is given a meaning.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{invalid, ConfigError, ConfigErrorKind};
use crate::expr::{Expression, Phase, Template};
use crate::facts::TlsVersion;
use crate::pem::{
    load_anchors, load_chain, load_key, CertificateChain, MaterialReader, PrivateKey, TrustAnchors,
};
use crate::raw::*;
use crate::sni::HostPattern;
use crate::source::{self, Document, FieldPath};

/// Checks that a private key belongs to a certificate. Core has no signature code (it builds
/// for proxy-wasm and stays free of TLS libraries), so the host that will use the key supplies
/// the check with its own crypto provider.
pub trait KeyPairCheck {
    fn check(&self, leaf: &CertificateDer<'_>, key: &PrivateKeyDer<'_>) -> Result<(), String>;
}

/// What to do with private keys named in a policy.
#[derive(Clone, Copy)]
pub enum KeyMode<'a> {
    /// Load every key and check it against its certificate (native host, `tlsgate check`).
    Load(&'a dyn KeyPairCheck),
    /// Ignore keys: the host terminates TLS elsewhere (the proxy-wasm filter, where Envoy holds
    /// the keys). Certificates are still loaded for metadata and coverage checks.
    Skip,
}

impl fmt::Debug for KeyMode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Load(_) => "KeyMode::Load",
            Self::Skip => "KeyMode::Skip",
        })
    }
}

/// How a policy is loaded on this host.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions<'a> {
    pub reader: &'a dyn MaterialReader,
    pub keys: KeyMode<'a>,
}

impl fmt::Debug for dyn MaterialReader + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaterialReader")
    }
}

/// A loaded policy: every endpoint of every file given.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoints: Vec<Endpoint>,
    /// Things that load but are probably not what was meant (a certificate that does not cover
    /// its endpoint's host).
    pub warnings: Vec<ConfigError>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scheme {
    /// Terminate TLS and proxy HTTP.
    Https,
    /// Terminate TLS and proxy the bytes.
    Tls,
}

#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Position in the loaded config; stable identifier in logs and metrics.
    pub index: usize,
    /// The file this endpoint came from.
    pub file: Option<PathBuf>,
    pub url: String,
    pub scheme: Scheme,
    pub host: HostPattern,
    pub bind: SocketAddr,
    pub tls: TerminateTls,
    pub upstream: Upstream,
    pub tcp_rules: Vec<Rule<TcpAction>>,
    pub http_rules: Vec<Rule<HttpAction>>,
    pub forward_client_cert: ForwardClientCert,
}

#[derive(Debug, Clone)]
pub struct TerminateTls {
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    pub certificate: Option<CertificateChain>,
    /// Present only in [`KeyMode::Load`].
    pub private_key: Option<PrivateKey>,
    pub client_auth: ClientAuth,
    /// Whether clients may resume sessions (tickets and session IDs); on by default. Off costs
    /// a full handshake per connection and is what a fair handshake benchmark, or an operator
    /// who wants every connection to present its certificate afresh, asks for.
    pub session_resumption: bool,
}

#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No CAs configured: client certificates are not asked for.
    Off,
    On {
        authorities: TrustAnchors,
        strategy: VerificationStrategy,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VerificationStrategy {
    /// A certificate is required and must chain to a configured CA.
    RequireAndVerify,
    /// A certificate is required; its chain is not checked (possession of the key is).
    RequireAny,
    /// A certificate is asked for; none, or any, is accepted.
    Request,
}

impl VerificationStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RequireAndVerify => "require-and-verify",
            Self::RequireAny => "require-any",
            Self::Request => "request",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamScheme {
    Http,
    Https,
    Tcp,
    Tls,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamProtocol {
    Http1,
    Http2,
}

#[derive(Debug, Clone)]
pub struct Upstream {
    pub url: String,
    pub scheme: UpstreamScheme,
    pub host: String,
    pub port: u16,
    pub protocol: UpstreamProtocol,
    pub tls: Option<UpstreamTls>,
}

impl Upstream {
    /// The `Host` (`:authority`) the upstream is sent: the name it is reached by — its TLS
    /// `server_name`, else its URL host — with the port when it is not the scheme's default.
    /// The client's Host goes to `x-forwarded-host`. Both hosts use this, so an upstream that
    /// checks Host against its own name (as tlsgate does, with 421) sees the same either way.
    pub fn authority(&self) -> String {
        let name = match &self.tls {
            Some(tls) => tls.server_name.as_str(),
            None => self.host.as_str(),
        };
        let name = if name.contains(':') {
            format!("[{name}]")
        } else {
            name.to_owned()
        };
        let default_port = match self.scheme {
            UpstreamScheme::Http => Some(80),
            UpstreamScheme::Https => Some(443),
            UpstreamScheme::Tcp | UpstreamScheme::Tls => None,
        };
        if Some(self.port) == default_port {
            name
        } else {
            format!("{name}:{}", self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct UpstreamTls {
    pub client_certificate: Option<CertificateChain>,
    pub client_key: Option<PrivateKey>,
    /// `None`: the system's roots.
    pub authorities: Option<TrustAnchors>,
    pub server_name: String,
    /// SHA-256 of the SubjectPublicKeyInfo (base64) of each `pinned_certificates` entry. When
    /// set, the upstream's certificate must carry one of these keys as well as chain to the
    /// CAs; it is also the only way a certificate without subjectAltName (X.509 v1, like the
    /// seed's `server.crt`) is accepted, in both hosts, since Envoy cannot match a subject CN.
    pub pinned_spki_sha256: Vec<String>,
}

/// Which header tells the upstream who the client is, after a verified handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ForwardClientCert {
    /// Envoy's `x-forwarded-client-cert` (default).
    Xfcc,
    /// RFC 9440 `Client-Cert` (and `Client-Cert-Chain` when there is one).
    Rfc9440,
    None,
}

#[derive(Debug, Clone)]
pub struct Rule<A> {
    /// Position in its phase's list as written (`on_tcp_connect[index]`), for logs and metrics.
    pub index: usize,
    pub name: Option<String>,
    pub expressions: Vec<Expression>,
    pub actions: Vec<A>,
}

#[derive(Debug, Clone)]
pub enum TcpAction {
    Deny,
    RestrictIps(IpPolicy),
}

#[derive(Debug, Clone)]
pub enum HttpAction {
    Deny {
        status: u16,
    },
    CustomResponse {
        status: u16,
        /// May interpolate `${…}`, as add-headers values do.
        body: Template,
        headers: Vec<(String, String)>,
    },
    AddHeaders(Vec<(String, Template)>),
    RestrictIps(IpPolicy),
}

/// `restrict-ips`: a client must be in `allow` (when it is not empty) and not in `deny`.
#[derive(Debug, Clone, Default)]
pub struct IpPolicy {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl IpPolicy {
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        let ip = match ip {
            std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(ip),
            v4 => v4,
        };
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
}

impl Config {
    /// Loads one or more policy files; endpoints of all files form one config. Certificate
    /// and key paths are read relative to the file that names them.
    pub fn load_files(paths: &[PathBuf], keys: KeyMode<'_>) -> Result<Self, ConfigError> {
        let mut config = Config {
            endpoints: Vec::new(),
            warnings: Vec::new(),
        };
        let mut documents = Vec::with_capacity(paths.len());
        for path in paths {
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
                file: Some(path.clone()),
                path: FieldPath::root(),
                location: None,
                kind: Box::new(ConfigErrorKind::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                }),
            })?;
            let reader = crate::pem::FileReader {
                base_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            };
            let options = LoadOptions {
                reader: &reader,
                keys,
            };
            let (part, doc) =
                Self::load_document(&text, Some(path), &options, config.endpoints.len())?;
            config.endpoints.extend(part.endpoints);
            config.warnings.extend(part.warnings);
            documents.push(doc);
        }
        // Each file was checked alone; hosts may still collide across files.
        check_unique_hosts(&config.endpoints).map_err(|(i, e)| {
            // Files were loaded in order, so the endpoints before this file's are the others'.
            let first_of_file = config.endpoints[..i]
                .iter()
                .filter(|ep| ep.file != config.endpoints[i].file)
                .count();
            let path = relative_path(&e.path, first_of_file);
            let file = config.endpoints[i].file.clone();
            let doc = paths
                .iter()
                .position(|p| Some(p) == file.as_ref())
                .and_then(|n| documents.get(n));
            ConfigError {
                location: doc.and_then(|d| d.locate(&path)),
                file,
                path,
                kind: e.kind,
            }
        })?;
        Ok(config)
    }

    /// Loads a policy from text. `file` names it in errors; `first_index` numbers endpoints
    /// when several files are combined.
    pub fn load_str(
        text: &str,
        file: Option<&Path>,
        options: &LoadOptions<'_>,
        first_index: usize,
    ) -> Result<Self, ConfigError> {
        Self::load_document(text, file, options, first_index).map(|(config, _)| config)
    }

    fn load_document(
        text: &str,
        file: Option<&Path>,
        options: &LoadOptions<'_>,
        first_index: usize,
    ) -> Result<(Self, Document), ConfigError> {
        let with_file = |mut e: ConfigError, doc: Option<&Document>| {
            e.file = file.map(Path::to_path_buf);
            if e.location.is_none() {
                e.location = doc.and_then(|d| d.locate(&e.path));
            }
            e
        };
        let doc = source::parse(text).map_err(|e| {
            with_file(
                ConfigError {
                    file: None,
                    path: FieldPath::root(),
                    location: e.location,
                    kind: Box::new(ConfigErrorKind::Syntax(e.message)),
                },
                None,
            )
        })?;
        let raw: RawConfig =
            deserialize(&doc.value, FieldPath::root()).map_err(|e| with_file(e, Some(&doc)))?;
        let mut warnings = Vec::new();
        let mut endpoints: Vec<Endpoint> = Vec::new();
        let RawConfig {
            endpoints: raw_endpoints,
        } = raw;
        if raw_endpoints.is_empty() {
            return Err(with_file(
                ConfigError::new(
                    FieldPath::root().key("endpoints"),
                    invalid("the policy has no endpoints; add at least one under `endpoints:`"),
                ),
                Some(&doc),
            ));
        }
        for (i, raw) in raw_endpoints.into_iter().enumerate() {
            let path = FieldPath::root().key("endpoints").index(i);
            let endpoint = Endpoint::from_raw(raw, first_index + i, path, options, &mut warnings)
                .map_err(|e| with_file(e, Some(&doc)))?;
            endpoints.push(endpoint);
        }
        check_unique_hosts(&endpoints).map_err(|(_, e)| with_file(e, Some(&doc)))?;
        let warnings = warnings
            .into_iter()
            .map(|w| with_file(w, Some(&doc)))
            .collect();
        for e in &mut endpoints {
            e.file = file.map(Path::to_path_buf);
        }
        Ok((
            Config {
                endpoints,
                warnings,
            },
            doc,
        ))
    }
}

/// Rewrites `endpoints[N]…` to `endpoints[first]…` numbering.
fn relative_path(path: &FieldPath, first: usize) -> FieldPath {
    let mut out = FieldPath::root();
    for (n, segment) in path.segments().iter().enumerate() {
        out = match segment {
            crate::source::Segment::Index(i) if n == 1 => out.index(i - first),
            crate::source::Segment::Index(i) => out.index(*i),
            crate::source::Segment::Key(k) => out.key(k),
        };
    }
    out
}

/// Two endpoints on one bind may not claim the same host, nor mix https and tls (one listener
/// speaks one protocol after the handshake). Returns the position of the offending endpoint.
fn check_unique_hosts(endpoints: &[Endpoint]) -> Result<(), (usize, ConfigError)> {
    for (i, a) in endpoints.iter().enumerate() {
        for b in &endpoints[..i] {
            let at = |key: &str| FieldPath::root().key("endpoints").index(i).key(key);
            if a.bind == b.bind && a.host == b.host {
                let other = match (&b.file, a.file == b.file) {
                    (Some(file), false) => format!("{} in {}", b.url, file.display()),
                    _ => format!("endpoints[{}]", b.index - endpoints[0].index),
                };
                let kind = ConfigErrorKind::DuplicateHost {
                    host: a.host.to_string(),
                    bind: a.bind.to_string(),
                    other,
                };
                return Err((i, ConfigError::new(at("url"), kind)));
            }
            if a.bind == b.bind && a.scheme != b.scheme {
                let kind = invalid(format!(
                    "{} shares {} with endpoints[{}], which has another scheme; \
                     https and tls endpoints need their own bind addresses",
                    a.url, a.bind, b.index
                ));
                return Err((i, ConfigError::new(at("bind"), kind)));
            }
        }
    }
    Ok(())
}

fn deserialize<T: DeserializeOwned>(value: &Value, at: FieldPath) -> Result<T, ConfigError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let mut path = at;
        for segment in e.path().iter() {
            match segment {
                serde_path_to_error::Segment::Seq { index } => path = path.index(*index),
                serde_path_to_error::Segment::Map { key } => path = path.key(key),
                serde_path_to_error::Segment::Enum { variant } => path = path.key(variant),
                serde_path_to_error::Segment::Unknown => {}
            }
        }
        ConfigError::new(
            path,
            ConfigErrorKind::Shape(redact(e.into_inner().to_string())),
        )
    })
}

/// serde quotes the offending value (`invalid type: string "…", expected …`). A long or
/// multi-line value may be PEM, a key among them: keep the shape of the message, drop the value.
fn redact(message: String) -> String {
    for prefix in ["invalid type: string \"", "invalid value: string \""] {
        if let Some(rest) = message.strip_prefix(prefix) {
            if let Some(end) = rest.rfind("\", expected") {
                let value = &rest[..end];
                if value.len() > 64 || value.contains('\n') {
                    return format!("{prefix}<{} bytes, not shown>{}", value.len(), &rest[end..]);
                }
            }
        }
    }
    message
}

fn err(path: FieldPath, kind: ConfigErrorKind) -> ConfigError {
    ConfigError::new(path, kind)
}

/// `scheme://host[:port][/…]`, with `[v6]` hosts.
struct ParsedUrl {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

fn parse_url(url: &str) -> Result<ParsedUrl, String> {
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

impl Endpoint {
    fn from_raw(
        raw: RawEndpoint,
        index: usize,
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
            file: None,
            url,
            scheme,
            host,
            bind,
            tls,
            upstream,
            tcp_rules,
            http_rules,
            forward_client_cert,
        })
    }
}

impl Upstream {
    fn from_raw(
        raw: RawUpstream,
        endpoint_scheme: Scheme,
        path: FieldPath,
        options: &LoadOptions<'_>,
    ) -> Result<Self, ConfigError> {
        let RawUpstream { url, protocol, tls } = raw;
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
                let pinned_spki_sha256 = match pinned_certificates {
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
                            let at = tls_path.key("pinned_certificates").index(i);
                            let chain = load_chain(value, "pinned_certificates", options.reader)
                                .map_err(|k| err(at.clone(), k))?;
                            crate::pem::spki_sha256(chain.leaf()).ok_or_else(|| {
                                err(at, invalid("the certificate's public key cannot be read"))
                            })
                        })
                        .collect::<Result<_, _>>()?,
                };
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
                })
            }
        };
        Ok(Self {
            url,
            scheme,
            host: parsed.host,
            port,
            protocol,
            tls,
        })
    }
}

fn certificate_pair(
    certificate: &str,
    key: Option<&str>,
    path: &FieldPath,
    names: (&'static str, &'static str),
    options: &LoadOptions<'_>,
) -> Result<(CertificateChain, Option<PrivateKey>), ConfigError> {
    let chain =
        load_chain(certificate, names.0, options.reader).map_err(|k| err(path.key(names.0), k))?;
    let key = match (options.keys, key) {
        (KeyMode::Skip, _) => None,
        (KeyMode::Load(_), None) => {
            return Err(err(
                path.key(names.1),
                ConfigErrorKind::Incomplete {
                    present: names.0,
                    missing: names.1,
                },
            ))
        }
        (KeyMode::Load(check), Some(value)) => {
            let key =
                load_key(value, names.1, options.reader).map_err(|k| err(path.key(names.1), k))?;
            check.check(chain.leaf(), key.der()).map_err(|reason| {
                err(
                    path.key(names.1),
                    ConfigErrorKind::KeyMismatch {
                        subject: chain.subject.clone(),
                        reason,
                    },
                )
            })?;
            Some(key)
        }
    };
    Ok((chain, key))
}

fn parse_version(
    value: Option<Value>,
    default: TlsVersion,
    path: &FieldPath,
) -> Result<TlsVersion, ConfigError> {
    match value {
        None => Ok(default),
        Some(Value::String(s)) => match s.trim() {
            "1.2" => Ok(TlsVersion::Tls12),
            "1.3" => Ok(TlsVersion::Tls13),
            old @ ("1.0" | "1.1" | "1") => Err(err(
                path.clone(),
                ConfigErrorKind::ObsoleteTlsVersion(old.to_owned()),
            )),
            other => Err(err(
                path.clone(),
                invalid(format!(
                    "`{other}` is not a TLS version; use \"1.2\" or \"1.3\""
                )),
            )),
        },
        Some(Value::Number(n)) => {
            let text = n.to_string();
            let hint = if matches!(text.as_str(), "1.0" | "1" | "1.1") {
                return Err(err(path.clone(), ConfigErrorKind::ObsoleteTlsVersion(text)));
            } else {
                format!("write the version as a quoted string, \"{text}\" (unquoted YAML reads {text} as a number)")
            };
            Err(err(path.clone(), invalid(hint)))
        }
        Some(other) => Err(err(
            path.clone(),
            invalid(format!("expected \"1.2\" or \"1.3\", found {other}")),
        )),
    }
}

fn action_config<T: DeserializeOwned + Default>(
    action: &RawAction,
    path: &FieldPath,
) -> Result<T, ConfigError> {
    match &action.config {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => deserialize(value, path.key("config")),
    }
}

const TCP_ACTIONS: &str = "terminate-tls, deny, restrict-ips";
const HTTP_ACTIONS: &str = "deny, custom-response, add-headers, restrict-ips";

fn tcp_rule(
    raw: RawRule,
    index: usize,
    path: &FieldPath,
    options: &LoadOptions<'_>,
    tls: &mut Option<(TerminateTls, FieldPath)>,
) -> Result<Option<Rule<TcpAction>>, ConfigError> {
    let RawRule {
        name,
        expressions,
        actions,
    } = raw;
    let expressions = compile_expressions(&expressions, path, Phase::TcpConnect)?;
    let mut out = Vec::new();
    if actions.is_empty() {
        return Err(err(
            path.key("actions"),
            invalid("a rule needs at least one action"),
        ));
    }
    for (a, action) in actions.iter().enumerate() {
        let action_path = path.key("actions").index(a);
        match action.kind.as_str() {
            "terminate-tls" => {
                if !expressions.is_empty() {
                    return Err(err(
                        action_path.key("type"),
                        invalid(
                            "terminate-tls cannot depend on expressions: TLS is terminated \
                             before any connection fact is known; move it to a rule without \
                             expressions",
                        ),
                    ));
                }
                if let Some((_, first)) = tls {
                    return Err(err(
                        action_path.key("type"),
                        invalid(format!(
                            "a second terminate-tls action; the first is at {first}"
                        )),
                    ));
                }
                let config = action_config::<RawTerminateTls>(action, &action_path)?;
                *tls = Some((
                    terminate_tls(config, &action_path.key("config"), options)?,
                    action_path.key("config"),
                ));
            }
            "deny" => {
                let _: RawDeny = action_config(action, &action_path)?;
                out.push(TcpAction::Deny);
            }
            "restrict-ips" => {
                out.push(TcpAction::RestrictIps(restrict_ips(
                    action_config(action, &action_path)?,
                    &action_path.key("config"),
                )?));
            }
            other => {
                return Err(err(
                    action_path.key("type"),
                    ConfigErrorKind::UnknownAction {
                        found: other.to_owned(),
                        phase: "on_tcp_connect",
                        allowed: TCP_ACTIONS,
                    },
                ))
            }
        }
    }
    if out.is_empty() {
        return Ok(None);
    }
    Ok(Some(Rule {
        index,
        name,
        expressions,
        actions: out,
    }))
}

fn http_rule(
    raw: RawRule,
    index: usize,
    path: &FieldPath,
) -> Result<Rule<HttpAction>, ConfigError> {
    let RawRule {
        name,
        expressions,
        actions,
    } = raw;
    let expressions = compile_expressions(&expressions, path, Phase::HttpRequest)?;
    if actions.is_empty() {
        return Err(err(
            path.key("actions"),
            invalid("a rule needs at least one action"),
        ));
    }
    let mut out = Vec::new();
    for (a, action) in actions.iter().enumerate() {
        let action_path = path.key("actions").index(a);
        let config_path = action_path.key("config");
        out.push(match action.kind.as_str() {
            "deny" => {
                let RawDeny { status_code } = action_config(action, &action_path)?;
                HttpAction::Deny {
                    status: status(status_code.unwrap_or(403), &config_path.key("status_code"))?,
                }
            }
            "custom-response" => {
                let RawCustomResponse {
                    status_code,
                    body,
                    headers,
                } = action_config(action, &action_path)?;
                let status = status(
                    status_code.ok_or_else(|| {
                        err(
                            config_path.key("status_code"),
                            invalid("custom-response needs a status_code"),
                        )
                    })?,
                    &config_path.key("status_code"),
                )?;
                let headers = headers
                    .into_iter()
                    .map(|(k, v)| {
                        header_name(&k, &config_path.key("headers").key(&k))?;
                        header_value(&v, &config_path.key("headers").key(&k))?;
                        Ok((k.to_ascii_lowercase(), v))
                    })
                    .collect::<Result<_, ConfigError>>()?;
                let body = body.unwrap_or_default();
                let body = Template::compile(&body, Phase::HttpRequest).map_err(|reason| {
                    err(
                        config_path.key("body"),
                        ConfigErrorKind::Expression {
                            expression: body.clone(),
                            reason,
                        },
                    )
                })?;
                HttpAction::CustomResponse {
                    status,
                    body,
                    headers,
                }
            }
            "add-headers" => {
                if action.config.is_none() {
                    return Err(err(
                        config_path,
                        invalid("add-headers needs config.headers"),
                    ));
                }
                let RawAddHeaders { headers } = action_config(action, &action_path)?;
                let mut compiled = Vec::new();
                for (k, v) in headers {
                    let p = config_path.key("headers").key(&k);
                    header_name(&k, &p)?;
                    let template = Template::compile(&v, Phase::HttpRequest).map_err(|reason| {
                        err(
                            p.clone(),
                            ConfigErrorKind::Expression {
                                expression: v.clone(),
                                reason,
                            },
                        )
                    })?;
                    if let Some(lit) = template.as_literal() {
                        header_value(lit, &p)?;
                    }
                    compiled.push((k.to_ascii_lowercase(), template));
                }
                HttpAction::AddHeaders(compiled)
            }
            "restrict-ips" => HttpAction::RestrictIps(restrict_ips(
                action_config(action, &action_path)?,
                &config_path,
            )?),
            other => {
                return Err(err(
                    action_path.key("type"),
                    ConfigErrorKind::UnknownAction {
                        found: other.to_owned(),
                        phase: "on_http_request",
                        allowed: HTTP_ACTIONS,
                    },
                ))
            }
        });
    }
    Ok(Rule {
        index,
        name,
        expressions,
        actions: out,
    })
}

fn compile_expressions(
    sources: &[String],
    path: &FieldPath,
    phase: Phase,
) -> Result<Vec<Expression>, ConfigError> {
    sources
        .iter()
        .enumerate()
        .map(|(i, source)| {
            Expression::compile(source, phase).map_err(|reason| {
                err(
                    path.key("expressions").index(i),
                    ConfigErrorKind::Expression {
                        expression: source.clone(),
                        reason,
                    },
                )
            })
        })
        .collect()
}

fn status(code: u16, path: &FieldPath) -> Result<u16, ConfigError> {
    if (200..=599).contains(&code) {
        Ok(code)
    } else {
        Err(err(
            path.clone(),
            invalid(format!(
                "{code} is not an HTTP status to answer with (200-599)"
            )),
        ))
    }
}

/// Headers the proxy owns; a policy may not set them.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "connection",
    "content-length",
    "transfer-encoding",
    "te",
    "upgrade",
    "keep-alive",
    "proxy-connection",
    "trailer",
];

fn header_name(name: &str, path: &FieldPath) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(err(
            path.clone(),
            invalid(format!("`{name}` is not a valid header name")),
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || name.starts_with(':') {
        return Err(err(
            path.clone(),
            invalid(format!(
                "`{name}` is managed by the proxy and cannot be set by a policy"
            )),
        ));
    }
    if crate::request::EDGE_HEADERS.contains(&lower.as_str()) {
        return Err(err(
            path.clone(),
            invalid(format!(
                "`{name}` is set by tlsgate itself (the verified client identity, the client's \
                 address and the Host it asked for), so the upstream can trust it; pick \
                 another name for the policy's header"
            )),
        ));
    }
    Ok(())
}

fn header_value(value: &str, path: &FieldPath) -> Result<(), ConfigError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(err(
            path.clone(),
            invalid("header values cannot contain CR, LF or NUL"),
        ));
    }
    Ok(())
}

fn restrict_ips(raw: RawRestrictIps, path: &FieldPath) -> Result<IpPolicy, ConfigError> {
    let RawRestrictIps { allow, deny } = raw;
    if allow.is_empty() && deny.is_empty() {
        return Err(err(
            path.clone(),
            invalid("restrict-ips needs `allow` or `deny` CIDRs"),
        ));
    }
    let parse = |list: Vec<String>, key: &str| -> Result<Vec<IpNet>, ConfigError> {
        list.into_iter()
            .enumerate()
            .map(|(i, s)| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        err(
                            path.key(key).index(i),
                            invalid(format!(
                                "`{s}` is not a CIDR (10.0.0.0/8, 2001:db8::/32) or address"
                            )),
                        )
                    })
            })
            .collect()
    };
    Ok(IpPolicy {
        allow: parse(allow, "allow")?,
        deny: parse(deny, "deny")?,
    })
}

fn terminate_tls(
    raw: RawTerminateTls,
    path: &FieldPath,
    options: &LoadOptions<'_>,
) -> Result<TerminateTls, ConfigError> {
    let RawTerminateTls {
        min_version,
        max_version,
        server_certificate,
        server_private_key,
        mutual_tls_certificate_authorities,
        mutual_tls_verification_strategy,
        session_resumption,
    } = raw;
    let min = parse_version(min_version, TlsVersion::Tls12, &path.key("min_version"))?;
    let max = parse_version(max_version, TlsVersion::Tls13, &path.key("max_version"))?;
    if min > max {
        return Err(err(
            path.key("min_version"),
            ConfigErrorKind::VersionRange {
                min: min.to_string(),
                max: max.to_string(),
            },
        ));
    }
    let (certificate, private_key) =
        match (server_certificate, server_private_key) {
            (Some(cert), key) => {
                let (c, k) = certificate_pair(
                    &cert,
                    key.as_deref(),
                    path,
                    ("server_certificate", "server_private_key"),
                    options,
                )?;
                (Some(c), k)
            }
            (None, Some(_)) => {
                return Err(err(
                    path.key("server_certificate"),
                    ConfigErrorKind::Incomplete {
                        present: "server_private_key",
                        missing: "server_certificate",
                    },
                ))
            }
            (None, None) => match options.keys {
                KeyMode::Skip => (None, None),
                KeyMode::Load(_) => return Err(err(
                    path.key("server_certificate"),
                    invalid(
                        "terminate-tls needs server_certificate and server_private_key: tlsgate \
                         has no managed certificates (`tlsgate certs --out DIR --name HOST` makes \
                         a set to start with)",
                    ),
                )),
            },
        };
    let strategy = match mutual_tls_verification_strategy.as_deref() {
        None | Some("require-and-verify") => VerificationStrategy::RequireAndVerify,
        Some("require-any") => VerificationStrategy::RequireAny,
        Some("request") => VerificationStrategy::Request,
        Some(other) => {
            return Err(err(
                path.key("mutual_tls_verification_strategy"),
                invalid(format!(
                    "unknown strategy `{other}`; use require-and-verify, require-any or request"
                )),
            ))
        }
    };
    let client_auth = match mutual_tls_certificate_authorities {
        None if mutual_tls_verification_strategy.is_some() => {
            return Err(err(
                path.key("mutual_tls_verification_strategy"),
                invalid(
                    "a verification strategy without mutual_tls_certificate_authorities does \
                     nothing: list the CAs that issue your client certificates",
                ),
            ))
        }
        None => ClientAuth::Off,
        Some(list) if list.is_empty() => {
            return Err(err(
                path.key("mutual_tls_certificate_authorities"),
                invalid("the list is empty; leave it out to turn mutual TLS off"),
            ))
        }
        Some(list) => ClientAuth::On {
            authorities: load_anchors(&list, "mutual_tls_certificate_authorities", options.reader)
                .map_err(|(i, k)| {
                    err(path.key("mutual_tls_certificate_authorities").index(i), k)
                })?,
            strategy,
        },
    };
    Ok(TerminateTls {
        min_version: min,
        max_version: max,
        certificate,
        private_key,
        client_auth,
        session_resumption: session_resumption.unwrap_or(true),
    })
}

impl fmt::Display for Endpoint {
    /// The one-line summary `tlsgate check` prints.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tls = &self.tls;
        let versions = if tls.min_version == tls.max_version {
            format!("TLS {}", tls.min_version)
        } else {
            format!("TLS {}-{}", tls.min_version, tls.max_version)
        };
        let mtls = match &tls.client_auth {
            ClientAuth::Off => "client certificates off".to_owned(),
            ClientAuth::On {
                authorities,
                strategy,
            } => format!(
                "client certificates {} ({} CA{})",
                strategy.as_str(),
                authorities.certs.len(),
                if authorities.certs.len() == 1 {
                    ""
                } else {
                    "s"
                }
            ),
        };
        let rules = self.tcp_rules.len() + self.http_rules.len();
        let upstream_mtls = match &self.upstream.tls {
            Some(UpstreamTls {
                client_certificate: Some(_),
                ..
            }) => " with client certificate",
            _ => "",
        };
        write!(
            f,
            "{} on {}: {versions}, {mtls}, {rules} rule{} -> {}{upstream_mtls}",
            self.host,
            self.bind,
            if rules == 1 { "" } else { "s" },
            self.upstream.url
        )
    }
}

/// The policy the proxy-wasm filter receives as its plugin configuration: the same endpoints
/// and rules, with certificates and CAs inlined as PEM (the filter has no file system) and every
/// private key removed (Envoy holds the keys; they never enter the wasm VM).
///
/// Works on the raw documents so the filter sees the rules exactly as written.
pub fn filter_policy(paths: &[PathBuf]) -> Result<Value, ConfigError> {
    let mut endpoints = Vec::new();
    for path in paths {
        let fail = |path_in_doc: FieldPath, kind: ConfigErrorKind| ConfigError {
            file: Some(path.clone()),
            path: path_in_doc,
            location: None,
            kind: Box::new(kind),
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            fail(
                FieldPath::root(),
                ConfigErrorKind::Unreadable {
                    path: path.clone(),
                    reason: e.to_string(),
                },
            )
        })?;
        let doc = source::parse(&text).map_err(|e| ConfigError {
            location: e.location,
            ..fail(FieldPath::root(), ConfigErrorKind::Syntax(e.message))
        })?;
        let raw: RawConfig = deserialize(&doc.value, FieldPath::root()).map_err(|mut e| {
            e.file = Some(path.clone());
            e.location = doc.locate(&e.path);
            e
        })?;
        let reader = crate::pem::FileReader {
            base_dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
        };
        // Certificates are re-encoded from their parsed DER, never copied as text: a file that
        // bundles a certificate with its key must not carry the key into the plugin config.
        let chain = |value: &str, at: FieldPath| -> Result<String, ConfigError> {
            load_chain(value, "certificate", &reader)
                .map(|c| c.to_pem())
                .map_err(|k| fail(at, k))
        };
        let anchors = |values: &mut Vec<String>, at: FieldPath| -> Result<(), ConfigError> {
            for value in values.iter_mut() {
                let parsed = load_anchors(
                    std::slice::from_ref(value),
                    "certificate_authorities",
                    &reader,
                )
                .map_err(|(_, k)| fail(at.clone(), k))?;
                *value = parsed.to_pem();
            }
            Ok(())
        };
        for (i, mut endpoint) in raw.endpoints.into_iter().enumerate() {
            let at = FieldPath::root().key("endpoints").index(i);
            if let Some(tls) = endpoint.upstream.tls.as_mut() {
                if let Some(pair) = tls.client_certificate.as_mut() {
                    pair.certificate = chain(&pair.certificate, at.clone())?;
                    pair.private_key = None;
                }
                if let Some(cas) = tls.certificate_authorities.as_mut() {
                    anchors(cas, at.clone())?;
                }
                for pinned in tls.pinned_certificates.iter_mut().flatten() {
                    *pinned = chain(pinned, at.clone())?;
                }
            }
            if let Some(policy) = endpoint.traffic_policy.as_mut() {
                for rule in &mut policy.on_tcp_connect {
                    for action in &mut rule.actions {
                        if action.kind != "terminate-tls" {
                            continue;
                        }
                        let Some(config) = action.config.take() else {
                            continue;
                        };
                        let mut tls: RawTerminateTls = deserialize(&config, at.clone())?;
                        tls.server_private_key = None;
                        if let Some(cert) = tls.server_certificate.as_mut() {
                            *cert = chain(cert, at.clone())?;
                        }
                        if let Some(cas) = tls.mutual_tls_certificate_authorities.as_mut() {
                            anchors(cas, at.clone())?;
                        }
                        action.config = Some(
                            serde_json::to_value(tls)
                                .map_err(|e| fail(at.clone(), invalid(e.to_string())))?,
                        );
                    }
                }
            }
            endpoints.push(endpoint);
        }
    }
    serde_json::to_value(RawConfig { endpoints })
        .map_err(|e| ConfigError::new(FieldPath::root(), invalid(e.to_string())))
}
