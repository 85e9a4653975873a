//! One connection on one endpoint: the `on_tcp_connect` and `on_http_request` decisions, rule
//! by rule, and the headers every forwarded request of the connection gets.

use std::sync::{Arc, OnceLock};

use base64::Engine as _;

use super::{
    check_client_certificate, xfcc, DenyReason, EndpointPolicy, LocalResponse, RequestVerdict,
    Verdict,
};
use crate::config::{ClientAuth, ForwardClientCert, HttpAction, TcpAction};
use crate::expr::{RuntimeError, Variables};
use crate::facts::{ClientCert, TlsFacts};
use crate::request::{Forward, Request, Target, ENDPOINT_HEADER};
use crate::trace::{Step, Tracer};

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

    /// [`Session::on_tcp_connect`], with why, when an expression failed to evaluate (for logs:
    /// hosts deny with `expression_failed` and say why).
    pub fn on_tcp_connect_explained(&self) -> (Verdict, Option<RuntimeError>) {
        self.on_tcp_connect_traced(&mut Tracer::off())
    }

    /// [`Session::on_tcp_connect_explained`], with what the policy's `log` actions recorded,
    /// formatted for the connection's access line ([`Tracer::logged`]), whatever the verdict.
    pub fn on_tcp_connect_logged(&self) -> (Verdict, Option<RuntimeError>, Option<String>) {
        let mut trace = Tracer::off();
        let (verdict, detail) = self.on_tcp_connect_traced(&mut trace);
        (verdict, detail, trace.logged())
    }

    /// [`Session::on_tcp_connect_explained`], recording each step in `trace`.
    pub fn on_tcp_connect_traced(&self, trace: &mut Tracer) -> (Verdict, Option<RuntimeError>) {
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
                                        RuntimeError::ControlCharacter {
                                            header: name.clone(),
                                        },
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

/// Whether every expression holds (none: the rule always fires). Stops at the first false one,
/// as ngrok does; an expression that cannot be evaluated is an error saying which one and why
/// (the caller denies).
fn matches_all(
    expressions: &[crate::expr::Expression],
    vars: &Variables,
    trace: &mut Tracer,
) -> Result<bool, RuntimeError> {
    for e in expressions {
        let value = e.matches(vars);
        // A trace holds text (it is shown, and serialized for the playground).
        trace.step(|| Step::Expression {
            source: e.source().to_owned(),
            value: value.clone().map_err(|why| why.to_string()),
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
fn expression_failed(rule: usize, why: RuntimeError) -> RequestVerdict {
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
