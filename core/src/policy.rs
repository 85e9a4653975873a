//! Decisions. Given facts, a policy answers with a [`Verdict`]; it never performs I/O and never
//! fails: anything it cannot decide denies.

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use base64::Engine as _;

use crate::config::{
    ClientAuth, Config, Endpoint, ForwardClientCert, HttpAction, Scheme, TcpAction,
    VerificationStrategy,
};
use crate::expr::Variables;
use crate::facts::{ClientAuthUsage, ClientCert, TlsFacts, Unverified};
use crate::request::{BadTarget, Forward, Request, Target, ENDPOINT_HEADER};
use crate::sni::{HostPattern, SniRouter};
use crate::trace::{Step, Tracer};

/// Why a connection or request was refused. `as_str` is the stable label used in logs and
/// metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    /// The strategy requires a certificate and none was presented.
    ClientCertificateRequired,
    /// `require-and-verify`: the certificate does not chain to a configured CA.
    ClientCertificateUntrusted,
    /// The certificate's extendedKeyUsage excludes client authentication.
    ClientCertificateWrongUsage,
    /// `require-and-verify`: the certificate is expired or not yet valid (seen on a resumed
    /// session, which TLS stacks do not re-verify).
    ClientCertificateOutsideValidity,
    /// `require-and-verify`: a CRL of the endpoint lists the certificate (seen on a resumed
    /// session; a full handshake already failed).
    ClientCertificateRevoked,
    /// `require-and-verify`: the CRL that covers the certificate is past its `nextUpdate`.
    ClientCertificateRevocationUnknown,
    /// `require-and-verify` with `mutual_tls_ocsp` mode `require`: no valid OCSP answer.
    OcspUnavailable,
    /// A `deny` action ran; `rule` is its position in the phase as written.
    Policy { rule: usize },
    /// `restrict-ips` refused the client address.
    IpRestricted { rule: usize },
    /// An expression could not be evaluated; the policy fails closed.
    ExpressionFailed { rule: usize },
    /// A `close-connection` action ran; `rule` is its position in the phase as written.
    CloseConnection { rule: usize },
    /// The request's Host belongs to another endpoint than the one chosen by SNI.
    Misdirected,
    /// The request target cannot be normalized safely (answered 400).
    BadTarget(BadTarget),
    /// More than one Host (RFC 9112 §3.2 requires exactly one; answered 400).
    DuplicateHost,
    /// `CONNECT` would make the edge a tunnel to whatever the upstream can reach (405).
    ConnectMethod,
    /// The server name the client sent is not one this endpoint serves. The native host never
    /// routes such a name here; Envoy's `*.example.com` filter chain also takes
    /// `a.b.example.com`, which a wildcard endpoint (one label) does not serve.
    UnservedServerName,
}

impl DenyReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::ClientCertificateRequired => "client_certificate_required",
            Self::ClientCertificateUntrusted => "client_certificate_untrusted",
            Self::ClientCertificateWrongUsage => "client_certificate_wrong_usage",
            Self::ClientCertificateOutsideValidity => "client_certificate_outside_validity",
            Self::ClientCertificateRevoked => "client_certificate_revoked",
            Self::ClientCertificateRevocationUnknown => "client_certificate_revocation_unknown",
            Self::OcspUnavailable => "ocsp_unavailable",
            Self::Policy { .. } => "policy_deny",
            Self::IpRestricted { .. } => "ip_restricted",
            Self::ExpressionFailed { .. } => "expression_failed",
            Self::CloseConnection { .. } => "close_connection",
            Self::Misdirected => "misdirected_request",
            Self::BadTarget(why) => why.as_str(),
            Self::DuplicateHost => "duplicate_host",
            Self::ConnectMethod => "connect_method",
            Self::UnservedServerName => "unserved_server_name",
        }
    }
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Policy { rule }
            | Self::IpRestricted { rule }
            | Self::ExpressionFailed { rule }
            | Self::CloseConnection { rule } => {
                write!(f, "{} (rule {rule})", self.as_str())
            }
            _ => f.write_str(self.as_str()),
        }
    }
}

/// The answer for a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Continue,
    /// Close the connection.
    Deny(DenyReason),
}

impl Verdict {
    /// The verdict as both hosts' metrics and logs spell it.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Continue => "allow",
            Self::Deny(_) => "deny",
        }
    }
}

/// A response the proxy gives itself instead of forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: u16,
    pub body: String,
    pub headers: Vec<(String, String)>,
    /// Why the request was not forwarded; `None` for a `custom-response` that is not a refusal.
    pub reason: Option<DenyReason>,
    /// For logs only, never sent: what went wrong in more words (why an expression failed).
    pub detail: Option<String>,
}

/// The answer for a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestVerdict {
    /// Forward, edited exactly as [`Forward`] says (see [`crate::request`]).
    Forward(Forward),
    Respond(LocalResponse),
    /// Close the client's connection without answering (`close-connection`).
    Close(DenyReason),
}

impl LocalResponse {
    /// The plain-text refusal both hosts answer with; `label` is the stable reason.
    pub fn refusal(status: u16, label: &str, reason: Option<DenyReason>) -> Self {
        Self {
            status,
            body: format!("denied by policy: {label}\n"),
            headers: Vec::new(),
            reason,
            detail: None,
        }
    }
}

/// A `conn` variable Envoy gives the filter no attribute for.
#[derive(Debug, Clone, Copy)]
pub struct UnknownToEnvoy {
    pub variable: &'static str,
    /// Only the network filter lacks it (its HTTP filter has it): refused in `on_tcp_connect`
    /// rules only.
    pub network_filter_only: bool,
    pub why: &'static str,
}

/// The variables Envoy cannot provide, and why. The native host knows them; a policy that
/// reads one where Envoy lacks it is refused for Envoy (by `tlsgate envoy-config`, `tlsgate
/// istio` and the filter's own load) rather than evaluated as empty there.
pub const UNKNOWN_BEHIND_ENVOY: &[UnknownToEnvoy] = &[
    UnknownToEnvoy {
        variable: "conn.tls.cipher_suite",
        network_filter_only: false,
        why: "Envoy exposes no attribute for the negotiated cipher suite",
    },
    UnknownToEnvoy {
        variable: "conn.tls.session_resumed",
        network_filter_only: false,
        why: "Envoy exposes no attribute saying whether the TLS session was resumed",
    },
    UnknownToEnvoy {
        variable: "conn.tls.key_exchange_group",
        network_filter_only: false,
        why: "Envoy exposes no attribute for the negotiated key-exchange group",
    },
    UnknownToEnvoy {
        variable: crate::ja4::VARIABLE,
        network_filter_only: true,
        why: "Envoy's tls_inspector computes JA4 but gives network filters no attribute for it; \
              the generated configuration hands it to on_http_request rules",
    },
    UnknownToEnvoy {
        variable: "conn.tls.negotiated_alpn",
        network_filter_only: true,
        why: "Envoy gives network filters no ALPN attribute; on_http_request rules see it",
    },
];

/// Why Envoy cannot serve `endpoint` as the policy says: a rule reads a variable Envoy cannot
/// provide there ([`UNKNOWN_BEHIND_ENVOY`]), or the upstream wants PROXY protocol TLVs.
pub fn unsupported_behind_envoy(endpoint: &Endpoint) -> Option<String> {
    if endpoint.upstream.proxy_protocol_tlvs {
        return Some(format!(
            "endpoints[{}] ({}): upstream.proxy_protocol_tlvs: Envoy cannot send them (its \
             upstream PROXY protocol transport socket formats TLVs from the upstream \
             connection, not the client's, and none of its format strings makes the binary SSL \
             TLV); the native host (tlsgate run) sends them",
            endpoint.index, endpoint.url
        ));
    }
    let unknown = UNKNOWN_BEHIND_ENVOY.iter().find(|u| {
        if u.network_filter_only {
            endpoint.reads_variable_on_tcp_connect(u.variable)
        } else {
            endpoint.reads_variable(u.variable)
        }
    })?;
    let rule = if unknown.network_filter_only {
        "an on_tcp_connect rule"
    } else {
        "a rule"
    };
    Some(format!(
        "endpoints[{}] ({}): {rule} reads {}, which Envoy cannot provide ({}); the native host \
         (tlsgate run) provides it",
        endpoint.index, endpoint.url, unknown.variable, unknown.why
    ))
}

/// The name an Envoy filter chain gets for endpoint `index`: the generator writes it, the filter
/// reads it back from `xds.filter_chain_name` to know which endpoint Envoy's SNI match chose.
pub fn filter_chain_name(index: usize) -> String {
    format!("tlsgate.endpoints[{index}]")
}

/// The Envoy cluster through which the filter asks endpoint `index`'s OCSP responder
/// (`mutual_tls_ocsp.responder`): the generator declares it, the filter dispatches to it.
pub fn ocsp_cluster_name(index: usize) -> String {
    format!("tlsgate_ocsp_{index}")
}

/// The Envoy cluster through which the filter asks the responder a client certificate names
/// itself (Authority Information Access), for endpoints whose `mutual_tls_ocsp` names none: a
/// dynamic forward proxy cluster, which resolves each responder's host as it is asked. Only a
/// certificate one of the endpoint's CAs signed gets that far, so the CA chooses the URL.
pub const OCSP_AIA_CLUSTER: &str = "tlsgate_ocsp_aia";

/// The endpoint index in a name written by [`filter_chain_name`]; `None` for any other name (a
/// chain Istio or a person named), so the filter routes by SNI instead.
pub fn endpoint_index(chain_name: &str) -> Option<usize> {
    chain_name
        .strip_prefix("tlsgate.endpoints[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

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

/// One connection on one endpoint: the facts, and what is derived from them at most once
/// however many requests the connection carries.
#[derive(Debug)]
pub struct Session {
    endpoint: Arc<EndpointPolicy>,
    facts: TlsFacts,
    variables: OnceLock<Variables>,
    /// The headers every forwarded request of this connection gets before the policy's own:
    /// the identity header (PEM + URL encoding is ~3 KB of work), `x-forwarded-for` and
    /// `-proto`, the endpoint header. Built on the first request.
    base_headers: OnceLock<Vec<(String, String)>>,
}

impl Session {
    pub fn new(endpoint: Arc<EndpointPolicy>, facts: TlsFacts) -> Self {
        Self {
            endpoint,
            facts,
            variables: OnceLock::new(),
            base_headers: OnceLock::new(),
        }
    }

    pub fn endpoint(&self) -> &Arc<EndpointPolicy> {
        &self.endpoint
    }

    pub fn facts(&self) -> &TlsFacts {
        &self.facts
    }

    fn variables(&self) -> &Variables {
        self.variables.get_or_init(|| {
            Variables::for_connection(&self.facts, self.endpoint.server_certificate.as_ref())
        })
    }

    /// Decides whether the connection may proceed: the server name first (it must be one this
    /// endpoint serves), the verification strategy, then the `on_tcp_connect` rules in order.
    /// The first deny wins.
    pub fn on_tcp_connect(&self) -> Verdict {
        self.on_tcp_connect_explained().0
    }

    /// [`Session::on_tcp_connect`], with what went wrong in more words when an expression
    /// failed to evaluate (for logs: hosts deny with `expression_failed` and say why).
    pub fn on_tcp_connect_explained(&self) -> (Verdict, Option<String>) {
        self.on_tcp_connect_traced(&mut Tracer::off())
    }

    /// [`Session::on_tcp_connect_explained`], with what the policy's `log` actions recorded,
    /// formatted for the connection's access line ([`Tracer::logged`]), whatever the verdict.
    pub fn on_tcp_connect_logged(&self) -> (Verdict, Option<String>, Option<String>) {
        let mut trace = Tracer::off();
        let (verdict, detail) = self.on_tcp_connect_traced(&mut trace);
        (verdict, detail, trace.logged())
    }

    /// [`Session::on_tcp_connect_explained`], recording each step in `trace`.
    pub fn on_tcp_connect_traced(&self, trace: &mut Tracer) -> (Verdict, Option<String>) {
        let deny = |reason| (Verdict::Deny(reason), None);
        if let Some(sni) = &self.facts.sni {
            let served = self.endpoint.host.matches(&crate::sni::normalize(sni));
            trace.step(|| Step::ServerName {
                sni: Some(sni.clone()),
                served,
            });
            if !served {
                return deny(DenyReason::UnservedServerName);
            }
        }
        let checked =
            check_client_certificate(&self.endpoint.tls.client_auth, &self.facts.client_cert);
        trace.step(|| Step::Certificate {
            verification: self.facts.client_cert.verification(),
            strategy: match &self.endpoint.tls.client_auth {
                ClientAuth::On { strategy, .. } => Some(strategy.as_str()),
                ClientAuth::Off => None,
            },
            refused: checked.err().map(|r| r.as_str()),
        });
        if let Err(reason) = checked {
            return deny(reason);
        }
        // `set-vars` makes a copy with `vars`; the connection's own is shared otherwise.
        let mut with_vars: Option<Variables> = None;
        for rule in &self.endpoint.tcp_rules {
            let i = rule.index;
            trace.step(|| Step::Rule {
                phase: "on_tcp_connect",
                index: i,
                name: rule.name.clone(),
            });
            let vars = with_vars.as_ref().unwrap_or_else(|| self.variables());
            match matches_all(&rule.expressions, vars, trace) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => {
                    return (
                        Verdict::Deny(DenyReason::ExpressionFailed { rule: i }),
                        Some(why),
                    )
                }
            }
            for action in &rule.actions {
                match action {
                    TcpAction::Deny => {
                        trace.step(|| action_step("deny", "the connection is closed".into()));
                        return deny(DenyReason::Policy { rule: i });
                    }
                    TcpAction::CloseConnection => {
                        trace.step(|| {
                            action_step("close-connection", "the connection is closed".into())
                        });
                        return deny(DenyReason::CloseConnection { rule: i });
                    }
                    TcpAction::RestrictIps(ips) => {
                        let admitted = ips.admits(self.facts.client_ip);
                        trace.step(|| restrict_step(self.facts.client_ip, admitted));
                        if !admitted {
                            return deny(DenyReason::IpRestricted { rule: i });
                        }
                    }
                    TcpAction::SetVars(set) => {
                        let vars = with_vars.as_ref().unwrap_or_else(|| self.variables());
                        match vars.set_vars(set) {
                            Ok((next, shown)) => {
                                trace.step(|| action_step("set-vars", shown.join(", ")));
                                with_vars = Some(next);
                            }
                            Err(why) => {
                                return (
                                    Verdict::Deny(DenyReason::ExpressionFailed { rule: i }),
                                    Some(why),
                                )
                            }
                        }
                    }
                    TcpAction::Log(fields) => {
                        let vars = with_vars.as_ref().unwrap_or_else(|| self.variables());
                        for (key, template) in fields {
                            match template.render(vars) {
                                Ok(value) => {
                                    trace.step(|| action_step("log", format!("{key}={value}")));
                                    trace.log(key, value);
                                }
                                Err(why) => {
                                    return (
                                        Verdict::Deny(DenyReason::ExpressionFailed { rule: i }),
                                        Some(why),
                                    )
                                }
                            }
                        }
                    }
                }
            }
        }
        (Verdict::Continue, None)
    }

    /// Decides a request: `CONNECT` → 405, several Hosts or a target that cannot be normalized
    /// → 400, a Host of another endpoint → 421, then `on_http_request` rules in order. A deny or
    /// custom-response ends evaluation; add-headers accumulate, a later value replacing an
    /// earlier one of the same name.
    pub fn on_http_request(&self, req: &Request<'_>) -> RequestVerdict {
        self.on_http_request_traced(req, &mut Tracer::off())
    }

    /// [`Session::on_http_request`], with what the policy's `log` actions recorded, formatted
    /// for the access line ([`Tracer::logged`]), whatever the verdict.
    pub fn on_http_request_logged(&self, req: &Request<'_>) -> (RequestVerdict, Option<String>) {
        let mut trace = Tracer::off();
        let verdict = self.on_http_request_traced(req, &mut trace);
        (verdict, trace.logged())
    }

    /// [`Session::on_http_request`], recording each step in `trace`.
    pub fn on_http_request_traced(&self, req: &Request<'_>, trace: &mut Tracer) -> RequestVerdict {
        if req.method.eq_ignore_ascii_case("CONNECT") {
            trace.step(|| request_step("method", "CONNECT is refused (405)".into()));
            return deny_response(405, DenyReason::ConnectMethod);
        }
        // Hosts join repeated Host fields with `,` (as Envoy does); no host name has one.
        if req.host.contains(',') {
            trace.step(|| request_step("host", "more than one Host (400)".into()));
            return deny_response(400, DenyReason::DuplicateHost);
        }
        let target = match Target::parse(req.target) {
            Ok(target) => target,
            Err(why) => {
                trace.step(|| request_step("target", format!("{} (400)", why.as_str())));
                return deny_response(400, DenyReason::BadTarget(why));
            }
        };
        if !self.endpoint.serves_host(req.host) {
            trace.step(|| {
                request_step(
                    "host",
                    format!("{} is not this endpoint's host (421)", req.host),
                )
            });
            return RequestVerdict::Respond(LocalResponse {
                status: 421,
                body: "misdirected request: the Host does not match the server name of this \
                       TLS connection\n"
                    .into(),
                headers: Vec::new(),
                reason: Some(DenyReason::Misdirected),
                detail: None,
            });
        }
        let mut forward = Forward {
            target: target.to_target(),
            set_headers: self
                .base_headers
                .get_or_init(|| self.base_headers())
                .clone(),
            remove_headers: Vec::new(),
            authority: Arc::clone(&self.endpoint.upstream_authority),
        };
        trace.step(|| {
            request_step(
                "target",
                if forward.target == req.target {
                    format!("{} (as sent)", forward.target)
                } else {
                    format!("{} normalized to {}", req.target, forward.target)
                },
            )
        });
        forward.set("x-forwarded-host", req.host.to_owned());
        if self.endpoint.http_rules.is_empty() {
            return RequestVerdict::Forward(forward);
        }
        let url = format!("https://{}{}", req.host, forward.target);
        let mut vars = self.variables().with_request(req, &target.path, &url);
        for rule in &self.endpoint.http_rules {
            let i = rule.index;
            trace.step(|| Step::Rule {
                phase: "on_http_request",
                index: i,
                name: rule.name.clone(),
            });
            match matches_all(&rule.expressions, &vars, trace) {
                Ok(true) => {}
                Ok(false) => continue,
                Err(why) => return expression_failed(i, why),
            }
            for action in &rule.actions {
                match action {
                    HttpAction::Deny { status } => {
                        trace.step(|| action_step("deny", format!("answered {status}")));
                        return deny_response(*status, DenyReason::Policy { rule: i });
                    }
                    HttpAction::CloseConnection => {
                        trace.step(|| {
                            action_step("close-connection", "the connection is closed".into())
                        });
                        return RequestVerdict::Close(DenyReason::CloseConnection { rule: i });
                    }
                    HttpAction::CustomResponse {
                        status,
                        body,
                        headers,
                    } => {
                        let body = match body.render(&vars) {
                            Ok(body) => body,
                            Err(why) => return expression_failed(i, why),
                        };
                        trace.step(|| action_step("custom-response", format!("answered {status}")));
                        return RequestVerdict::Respond(LocalResponse {
                            status: *status,
                            body,
                            headers: headers.clone(),
                            reason: None,
                            detail: None,
                        });
                    }
                    HttpAction::RestrictIps(ips) => {
                        let admitted = ips.admits(self.facts.client_ip);
                        trace.step(|| restrict_step(self.facts.client_ip, admitted));
                        if !admitted {
                            return deny_response(403, DenyReason::IpRestricted { rule: i });
                        }
                    }
                    HttpAction::SetVars(set) => match vars.set_vars(set) {
                        Ok((next, shown)) => {
                            trace.step(|| action_step("set-vars", shown.join(", ")));
                            vars = next;
                        }
                        Err(why) => return expression_failed(i, why),
                    },
                    HttpAction::Log(fields) => {
                        for (key, template) in fields {
                            match template.render(&vars) {
                                Ok(value) => {
                                    trace.step(|| action_step("log", format!("{key}={value}")));
                                    trace.log(key, value);
                                }
                                Err(why) => return expression_failed(i, why),
                            }
                        }
                    }
                    HttpAction::RemoveHeaders(names) => {
                        trace.step(|| action_step("remove-headers", names.join(", ")));
                        for name in names {
                            forward.remove(name);
                        }
                    }
                    HttpAction::AddHeaders(headers) => {
                        for (name, template) in headers {
                            match template.render(&vars) {
                                Ok(value) if !value.chars().any(char::is_control) => {
                                    trace.step(|| {
                                        action_step("add-headers", format!("{name}: {value}"))
                                    });
                                    forward.set(name, value)
                                }
                                // A value HTTP cannot carry (any control character) is a
                                // failed rule in both hosts, never a dropped or mangled header.
                                Ok(_) => {
                                    return expression_failed(
                                        i,
                                        format!("the value for `{name}` holds a control character"),
                                    )
                                }
                                Err(why) => return expression_failed(i, why),
                            }
                        }
                    }
                }
            }
        }
        RequestVerdict::Forward(forward)
    }

    fn base_headers(&self) -> Vec<(String, String)> {
        let mut headers = self.identity_headers();
        headers.push(("x-forwarded-for".into(), self.facts.client_ip.to_string()));
        headers.push(("x-forwarded-proto".into(), "https".into()));
        headers.push((ENDPOINT_HEADER.into(), self.endpoint.host.to_string()));
        headers
    }

    /// The identity header(s) for the upstream, in the endpoint's format; only after a verified
    /// handshake, because an unverified certificate proves nothing about who the client is.
    pub fn identity_headers(&self) -> Vec<(String, String)> {
        let ClientCert::Verified(cert) = &self.facts.client_cert else {
            return Vec::new();
        };
        match self.endpoint.forward_client_cert {
            ForwardClientCert::None => Vec::new(),
            ForwardClientCert::Xfcc => vec![("x-forwarded-client-cert".into(), xfcc(cert))],
            ForwardClientCert::Rfc9440 => vec![(
                "client-cert".into(),
                format!(
                    ":{}:",
                    base64::engine::general_purpose::STANDARD.encode(&cert.der)
                ),
            )],
        }
    }
}

/// Whether every expression is true; `Err` says which one failed to evaluate and why.
/// Whether every expression holds (none: the rule always fires). Stops at the first false one,
/// as ngrok does; an expression that cannot be evaluated is an error (the caller denies).
fn matches_all(
    expressions: &[crate::expr::Expression],
    vars: &Variables,
    trace: &mut Tracer,
) -> Result<bool, String> {
    for e in expressions {
        let value = e.matches(vars);
        trace.step(|| Step::Expression {
            source: e.source().to_owned(),
            value: value.clone(),
        });
        if !value? {
            trace.step(|| Step::NotFired);
            return Ok(false);
        }
    }
    trace.step(|| Step::Fired);
    Ok(true)
}

fn action_step(kind: &'static str, effect: String) -> Step {
    Step::Action { kind, effect }
}

fn request_step(check: &'static str, outcome: String) -> Step {
    Step::Request { check, outcome }
}

fn restrict_step(ip: std::net::IpAddr, admitted: bool) -> Step {
    action_step(
        "restrict-ips",
        format!(
            "{ip} {}",
            if admitted {
                "is admitted"
            } else {
                "is refused (403 / closed)"
            }
        ),
    )
}

/// A refusal for an expression that failed at run time, with why in `detail` (for logs).
fn expression_failed(rule: usize, why: String) -> RequestVerdict {
    let reason = DenyReason::ExpressionFailed { rule };
    RequestVerdict::Respond(LocalResponse {
        detail: Some(why),
        ..LocalResponse::refusal(403, reason.as_str(), Some(reason))
    })
}

fn deny_response(status: u16, reason: DenyReason) -> RequestVerdict {
    RequestVerdict::Respond(LocalResponse::refusal(
        status,
        reason.as_str(),
        Some(reason),
    ))
}

/// The verification strategy as a pure check over what the handshake produced. Hosts whose TLS
/// stack already enforces part of it (both do) still run it, so both end in the same place.
pub fn check_client_certificate(auth: &ClientAuth, cert: &ClientCert) -> Result<(), DenyReason> {
    let ClientAuth::On { strategy, .. } = auth else {
        return Ok(());
    };
    match (strategy, cert) {
        (_, ClientCert::Verified(facts)) if facts.client_auth == ClientAuthUsage::NotAllowed => {
            Err(DenyReason::ClientCertificateWrongUsage)
        }
        (_, ClientCert::Verified(_)) => Ok(()),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::OutsideValidity),
        ) => Err(DenyReason::ClientCertificateOutsideValidity),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::Revoked),
        ) => Err(DenyReason::ClientCertificateRevoked),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::RevocationUnknown),
        ) => Err(DenyReason::ClientCertificateRevocationUnknown),
        (
            VerificationStrategy::RequireAndVerify,
            ClientCert::Unverified(_, Unverified::StatusUnavailable),
        ) => Err(DenyReason::OcspUnavailable),
        (VerificationStrategy::RequireAndVerify, ClientCert::Unverified(..)) => {
            Err(DenyReason::ClientCertificateUntrusted)
        }
        (
            VerificationStrategy::RequireAndVerify | VerificationStrategy::RequireAny,
            ClientCert::Absent,
        ) => Err(DenyReason::ClientCertificateRequired),
        (
            VerificationStrategy::RequireAny | VerificationStrategy::Request,
            ClientCert::Unverified(..),
        ) => Ok(()),
        (VerificationStrategy::Request, ClientCert::Absent) => Ok(()),
    }
}

/// Envoy's `x-forwarded-client-cert` element for a verified client certificate:
/// `Hash=…;Cert="…";Subject="…";URI=…;DNS=…`, so upstreams behind either host read the same.
/// `Subject` and `Cert` are always quoted, as Envoy writes them; any other value is quoted when
/// it holds a character XFCC uses as syntax (`,` `;` `=` `"`), so a comma in a URI SAN cannot
/// start a new element. Inside quotes, `\` and `"` are backslash-escaped, once.
pub fn xfcc(cert: &crate::facts::ClientCertFacts) -> String {
    let mut out = format!(
        "Hash={};Cert=\"{}\";Subject={}",
        cert.fingerprint_sha256,
        crate::encoding::url_encode(&cert.pem()),
        xfcc_quoted(&cert.subject.rfc4514)
    );
    for uri in &cert.san.uris {
        out.push_str(";URI=");
        out.push_str(&xfcc_value(uri));
    }
    for dns in &cert.san.dns_names {
        out.push_str(";DNS=");
        out.push_str(&xfcc_value(dns));
    }
    out
}

fn xfcc_value(value: &str) -> String {
    // A SAN is an IA5String and may hold control characters: percent-encoded, so the header
    // stays one value (a URI with `%01` is still a URI).
    let value = &percent_encode_controls(value);
    if value.contains([',', ';', '=', '"', '\\']) || value.chars().any(char::is_whitespace) {
        xfcc_quoted(value)
    } else {
        value.to_owned()
    }
}

fn percent_encode_controls(value: &str) -> String {
    if !value.chars().any(char::is_control) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        if c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn xfcc_quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if matches!(c, '"' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}
