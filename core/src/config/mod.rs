//! The validated policy: raw shapes parsed into domain types, certificates loaded and checked.
//!
//! Each conversion destructures its raw struct completely, so a field added to [`crate::raw`]
//! breaks the build here until it is given a meaning.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;

use crate::error::ConfigError;
use crate::expr::{Expression, Template};
use crate::facts::TlsVersion;
use crate::pem::{CertificateChain, PrivateKey, TrustAnchors};
pub use crate::proxy_protocol::Version as ProxyProtocolVersion;
use crate::raw::*;
use crate::revocation::Revocation;
use crate::sni::HostPattern;

mod de;
mod endpoint;
mod filter_policy;
mod options;
mod rules;
mod tls;

pub use crate::crypto::HostCrypto;
pub use crate::ocsp::OcspMode;
pub use options::{Deployment, KeyMode, Listen, LoadOptions, Resolve};
pub use tls::{DEFAULT_SESSION_LIFETIME, MAX_SESSION_LIFETIME};

pub(crate) use de::deserialize;

/// A loaded policy: every endpoint of every file given.
#[derive(Debug, Clone)]
pub struct Config {
    pub endpoints: Vec<Endpoint>,
    /// Settings of bind addresses (`listeners:`), at most one per bind, each naming the bind of
    /// an endpoint.
    pub listeners: Vec<ListenerOptions>,
    /// Things that load but are probably not what was meant (a certificate that does not cover
    /// its endpoint's host).
    pub warnings: Vec<ConfigError>,
    /// Every policy or manifest file read (a directory given with `-c` is expanded to its
    /// files), for hosts that watch them.
    pub files: Vec<PathBuf>,
    /// What a manifest held that tlsgate did not turn into an endpoint, one line each
    /// (`skipped Deployment default/web: …`).
    pub notes: Vec<String>,
}

/// What a bind address does before TLS, for every endpoint on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerOptions {
    pub bind: SocketAddr,
    pub proxy_protocol: Option<ProxyProtocolIn>,
}

/// Connections arrive through a load balancer that says, in a PROXY protocol header (v1 or
/// v2), whom they come from. Only connections from `trusted_sources` are accepted, and each must
/// start with a header; any other source is refused before a byte is read, so nobody else can
/// claim an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyProtocolIn {
    pub trusted_sources: Vec<IpNet>,
}

impl ProxyProtocolIn {
    /// Whether a connection from `peer` (the socket's address, not a header's) may send a
    /// header.
    pub fn trusts(&self, peer: std::net::IpAddr) -> bool {
        let peer = crate::net::canonical(peer);
        self.trusted_sources.iter().any(|net| net.contains(&peer))
    }
}

impl Config {
    /// The settings of `bind`, if `listeners:` has any.
    pub fn listener(&self, bind: SocketAddr) -> Option<&ListenerOptions> {
        self.listeners.iter().find(|l| l.bind == bind)
    }
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
    /// The Kubernetes resources this endpoint was made from (`AgentEndpoint default/web`),
    /// empty for a tlsgate policy file.
    pub origin: Vec<String>,
}

impl Endpoint {
    /// [`Endpoint::reads_variable`], in `on_tcp_connect` rules only.
    pub fn reads_variable_on_tcp_connect(&self, variable: &str) -> bool {
        rules_read(
            &self.tcp_rules,
            TcpAction::templates,
            TcpAction::set_vars,
            variable,
        )
    }

    /// Whether a rule's expressions or interpolations read the `conn` variable `variable` (a
    /// dotted path such as `conn.tls.cipher_suite`), itself or through an object holding it.
    pub fn reads_variable(&self, variable: &str) -> bool {
        self.reads_variable_on_tcp_connect(variable)
            || rules_read(
                &self.http_rules,
                HttpAction::templates,
                HttpAction::set_vars,
                variable,
            )
    }
}

/// Whether `rules` read `variable`: their expressions, and each action's templates and
/// `set-vars` values.
fn rules_read<A>(
    rules: &[Rule<A>],
    templates: fn(&A) -> Vec<&Template>,
    set_vars: fn(&A) -> &[(String, crate::expr::VarValue)],
    variable: &str,
) -> bool {
    rules.iter().any(|rule| {
        rule.expressions.iter().any(|e| e.reads_variable(variable))
            || rule.actions.iter().any(|a| {
                templates(a).iter().any(|t| t.reads_variable(variable))
                    || set_vars(a).iter().any(|(_, v)| v.reads_variable(variable))
            })
    })
}

#[derive(Debug, Clone)]
pub struct TerminateTls {
    pub min_version: TlsVersion,
    pub max_version: TlsVersion,
    pub certificate: Option<CertificateChain>,
    /// Present only in [`KeyMode::Load`].
    pub private_key: Option<PrivateKey>,
    pub client_auth: ClientAuth,
    /// Position of the `on_tcp_connect` rule that holds the terminate-tls action (rules keep
    /// their positions as written, for deny reasons and for the filter's copy of the policy).
    pub rule: usize,
    /// Whether clients may resume sessions (tickets and session IDs); on by default. Off costs
    /// a full handshake per connection and is what a fair handshake benchmark, or an operator
    /// who wants every connection to present its certificate afresh, asks for.
    pub session_resumption: bool,
    /// How long a session (ticket or cache entry) can be resumed.
    pub session_lifetime: std::time::Duration,
    /// `session_ticket_keys`, in order: the first encrypts new tickets, all decrypt. Empty:
    /// each instance makes its own keys and rotates them every `session_lifetime`.
    pub session_ticket_keys: Vec<TicketKey>,
    /// The key-exchange groups offered, most preferred first: names from
    /// [`crate::facts::KEY_EXCHANGE_GROUPS`] (all of them, in that order, unless the policy
    /// pins fewer with `key_exchange_groups`).
    pub key_exchange_groups: Vec<&'static str>,
}

/// One `session_ticket_keys` file: 80 bytes, laid out as Envoy reads them (a 16-byte name, a
/// 32-byte HMAC secret, a 32-byte AES key).
#[derive(Clone)]
pub struct TicketKey {
    /// Always a file (a key is never inline), resolved against the policy's directory.
    pub path: PathBuf,
    /// Present only in [`KeyMode::Load`]: the bytes are a secret, like a private key.
    material: Option<Box<[u8; TicketKey::LEN]>>,
}

impl TicketKey {
    pub const LEN: usize = 80;

    /// The 16 bytes that name the key inside each ticket it encrypts.
    pub fn name(&self) -> Option<&[u8]> {
        self.material.as_deref().map(|m| &m[..16])
    }

    /// The 32-byte AES key.
    pub fn aes_key(&self) -> Option<&[u8]> {
        self.material.as_deref().map(|m| &m[48..])
    }
}

impl fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TicketKey")
            .field("path", &self.path)
            .field("material", &self.material.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

#[derive(Debug, Clone)]
pub enum ClientAuth {
    /// No CAs configured: client certificates are not asked for.
    Off,
    On {
        authorities: TrustAnchors,
        strategy: VerificationStrategy,
        /// `mutual_tls_certificate_revocation_lists`, when given.
        revocation: Option<Revocation>,
        /// `mutual_tls_ocsp`, when given.
        ocsp: Option<OcspCheck>,
    },
}

/// `mutual_tls_ocsp`: every verified client certificate's status, from its issuer's OCSP
/// responder, before a byte reaches the upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OcspCheck {
    pub mode: OcspMode,
    /// Ask this responder (`http://host[:port][/path]`) instead of the one the certificate
    /// names in its Authority Information Access.
    pub responder: Option<String>,
    /// How long a connection waits for an answer.
    pub timeout: std::time::Duration,
}

impl ClientAuth {
    /// The endpoint's OCSP check, when it has one.
    pub fn ocsp(&self) -> Option<&OcspCheck> {
        match self {
            Self::On { ocsp, .. } => ocsp.as_ref(),
            Self::Off => None,
        }
    }
}

impl ClientAuth {
    /// The endpoint's CRLs, when it has any.
    pub fn revocation(&self) -> Option<&Revocation> {
        match self {
            Self::On { revocation, .. } => revocation.as_ref(),
            Self::Off => None,
        }
    }
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

/// What a TLS handshake must do for a [`VerificationStrategy`]: the one definition both hosts'
/// TLS set-ups (rustls natively, the generated `DownstreamTlsContext` behind Envoy) read, so
/// neither maps the strategies itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandshakeRequirement {
    /// The handshake fails without a client certificate.
    pub certificate_required: bool,
    /// The handshake fails when the certificate does not chain to the endpoint's CAs (with
    /// its CRLs); otherwise the chain is checked after it and its result is a fact the rules
    /// see (`conn.tls.client.verification`).
    pub chain_enforced: bool,
}

impl VerificationStrategy {
    /// What the handshake enforces; the rest is judged on the facts afterwards.
    pub fn handshake(self) -> HandshakeRequirement {
        let (certificate_required, chain_enforced) = match self {
            Self::RequireAndVerify => (true, true),
            Self::RequireAny => (true, false),
            Self::Request => (false, false),
        };
        HandshakeRequirement {
            certificate_required,
            chain_enforced,
        }
    }

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
    /// Where to connect instead of resolving `host` (`--resolve`); the name still goes in SNI
    /// and Host.
    pub address: Option<SocketAddr>,
    /// A PROXY protocol header, naming the client, in front of every upstream connection. An
    /// upstream connection then carries one client's traffic only: HTTP requests of other
    /// clients never share it.
    pub proxy_protocol: Option<ProxyProtocolVersion>,
    /// The v2 header also carries the client's TLS facts
    /// ([`crate::proxy_protocol::tls_tlvs`]); only with [`ProxyProtocolVersion::V2`].
    pub proxy_protocol_tlvs: bool,
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
    /// The `pinned_certificates` themselves, in the same order.
    pub pinned_certificates: Vec<CertificateChain>,
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
    /// ngrok's `close-connection`: in this phase the same as `deny`.
    CloseConnection,
    RestrictIps(IpPolicy),
    /// ngrok's `log`: its fields land in the connection's access line.
    Log(Vec<(String, Template)>),
    /// ngrok's `set-vars`: `vars.NAME` for the rest of the phase.
    SetVars(Vec<(String, crate::expr::VarValue)>),
}

impl TcpAction {
    /// The `${…}` templates the action renders.
    pub fn templates(&self) -> Vec<&crate::expr::Template> {
        match self {
            Self::Log(fields) => fields.iter().map(|(_, t)| t).collect(),
            Self::Deny | Self::CloseConnection | Self::RestrictIps(_) | Self::SetVars(_) => {
                Vec::new()
            }
        }
    }

    /// The values a `set-vars` action sets, in order (empty for any other action).
    pub fn set_vars(&self) -> &[(String, crate::expr::VarValue)] {
        match self {
            Self::SetVars(vars) => vars,
            _ => &[],
        }
    }
}

#[derive(Debug, Clone)]
pub enum HttpAction {
    Deny {
        status: u16,
    },
    /// Close the client's connection without a response.
    CloseConnection,
    CustomResponse {
        status: u16,
        /// May interpolate `${…}`, as add-headers values do.
        body: Template,
        headers: Vec<(String, String)>,
    },
    AddHeaders(Vec<(String, Template)>),
    /// Lowercase names; what the client sent under them, and what an earlier add-headers set,
    /// does not reach the upstream.
    RemoveHeaders(Vec<String>),
    RestrictIps(IpPolicy),
    /// ngrok's `log`: each key with its rendered value lands in the request's access line
    /// ([`crate::trace::Tracer::logged`]), in both hosts.
    Log(Vec<(String, Template)>),
    /// ngrok's `set-vars`: `vars.NAME` for the rest of the request's rules.
    SetVars(Vec<(String, crate::expr::VarValue)>),
}

impl HttpAction {
    /// The values a `set-vars` action sets, in order (empty for any other action).
    pub fn set_vars(&self) -> &[(String, crate::expr::VarValue)] {
        match self {
            Self::SetVars(vars) => vars,
            _ => &[],
        }
    }

    /// The `${…}` templates the action renders (header values, a body, log fields).
    pub fn templates(&self) -> Vec<&crate::expr::Template> {
        match self {
            Self::AddHeaders(headers) => headers.iter().map(|(_, t)| t).collect(),
            Self::CustomResponse { body, .. } => vec![body],
            Self::Log(fields) => fields.iter().map(|(_, t)| t).collect(),
            Self::Deny { .. }
            | Self::CloseConnection
            | Self::RestrictIps(_)
            | Self::RemoveHeaders(_)
            | Self::SetVars(_) => Vec::new(),
        }
    }
}

/// `restrict-ips`: a client must be in `allow` (when it is not empty) and not in `deny`.
#[derive(Debug, Clone, Default)]
pub struct IpPolicy {
    pub allow: Vec<IpNet>,
    pub deny: Vec<IpNet>,
}

impl IpPolicy {
    pub fn admits(&self, ip: std::net::IpAddr) -> bool {
        let ip = crate::net::canonical(ip);
        if self.deny.iter().any(|n| n.contains(&ip)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|n| n.contains(&ip))
    }
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
                revocation,
                ocsp,
            } => format!(
                "client certificates {} ({} CA{}{})",
                strategy.as_str(),
                authorities.certs.len(),
                if authorities.certs.len() == 1 {
                    ""
                } else {
                    "s"
                },
                match revocation {
                    Some(r) => format!(
                        ", {} CRL{} checked for the {}",
                        r.lists.len(),
                        if r.lists.len() == 1 { "" } else { "s" },
                        r.depth.as_str()
                    ),
                    None => String::new(),
                } + &match ocsp {
                    Some(o) => format!(", OCSP {}", o.mode.as_str()),
                    None => String::new(),
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
        let resolved = match self.upstream.address {
            Some(address) => format!(" (at {address})"),
            None => String::new(),
        };
        let proxy_header = match self.upstream.proxy_protocol {
            Some(version) if self.upstream.proxy_protocol_tlvs => {
                format!(", PROXY protocol {version} with TLS TLVs first")
            }
            Some(version) => format!(", PROXY protocol {version} first"),
            None => String::new(),
        };
        write!(
            f,
            "{} on {}: {versions}, {mtls}, {rules} rule{} -> {}{resolved}{upstream_mtls}\
             {proxy_header}",
            self.host,
            self.bind,
            if rules == 1 { "" } else { "s" },
            self.upstream.url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::VerificationStrategy as S;

    /// The strategies' meaning (ngrok's docs): only require-and-verify refuses an untrusted
    /// chain at the handshake, and only request lets a client in without a certificate.
    #[test]
    fn each_strategy_asks_the_handshake_for_what_ngrok_documents() {
        let table = [S::RequireAndVerify, S::RequireAny, S::Request].map(|s| {
            (
                s.as_str(),
                s.handshake().certificate_required,
                s.handshake().chain_enforced,
            )
        });
        assert_eq!(
            table,
            [
                ("require-and-verify", true, true),
                ("require-any", true, false),
                ("request", false, false),
            ]
        );
    }
}
