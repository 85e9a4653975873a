//! The policy as the proxy-wasm filter receives it, derived from the loaded model.
//!
//! The filter has no file system and must never see a private key, so it gets the same
//! endpoints and rules with every certificate and CA inlined as PEM (re-encoded from the parsed
//! DER: a file that bundles a certificate with its key cannot carry the key along) and every
//! key left out. It is produced from the validated [`Config`], not by reading the files again:
//! what the filter enforces is what was loaded, each file is read once, and every error a
//! policy can have was already reported with its file and line.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::raw::{
    RawAction, RawCertificatePair, RawConfig, RawEndpoint, RawRule, RawTerminateTls,
    RawTrafficPolicy, RawUpstream, RawUpstreamTls,
};

use super::*;

impl Config {
    /// The filter's plugin configuration (JSON): this config without keys or file paths.
    /// Loading it with [`KeyMode::Skip`] and [`crate::pem::InlineOnly`] gives the same
    /// endpoints, rules and rule positions.
    pub fn filter_policy(&self) -> Value {
        let endpoints = self.endpoints.iter().map(raw_endpoint).collect();
        // Listener settings stay with Envoy (its listener filters run before the plugin).
        serde_json::to_value(RawConfig {
            endpoints,
            listeners: Vec::new(),
        })
        .unwrap_or(Value::Null)
    }
}

fn raw_endpoint(e: &Endpoint) -> RawEndpoint {
    RawEndpoint {
        url: e.url.clone(),
        bind: e.bind.to_string(),
        upstream: raw_upstream(&e.upstream),
        traffic_policy: Some(RawTrafficPolicy {
            on_tcp_connect: tcp_rules(e),
            on_http_request: e.http_rules.iter().map(raw_http_rule).collect(),
        }),
        forward_client_cert: match e.forward_client_cert {
            ForwardClientCert::Xfcc => None,
            ForwardClientCert::Rfc9440 => Some("client-cert".into()),
            ForwardClientCert::None => Some("none".into()),
        },
    }
}

fn raw_upstream(u: &Upstream) -> RawUpstream {
    RawUpstream {
        url: u.url.clone(),
        protocol: (u.protocol == UpstreamProtocol::Http2).then(|| "http2".into()),
        proxy_protocol: u.proxy_protocol.map(|v| Value::from(v.as_str())),
        proxy_protocol_tlvs: u.proxy_protocol_tlvs.then_some(true),
        tls: u.tls.as_ref().map(|tls| RawUpstreamTls {
            client_certificate: tls.client_certificate.as_ref().map(|c| RawCertificatePair {
                certificate: c.to_pem(),
                private_key: None,
            }),
            certificate_authorities: tls.authorities.as_ref().map(|a| vec![a.to_pem()]),
            server_name: Some(tls.server_name.clone()),
            pinned_certificates: (!tls.pinned_certificates.is_empty())
                .then(|| tls.pinned_certificates.iter().map(|c| c.to_pem()).collect()),
        }),
    }
}

/// `on_tcp_connect` with every rule at its position as written: the terminate-tls action goes
/// back into the rule that held it (alone, or first among that rule's actions).
fn tcp_rules(e: &Endpoint) -> Vec<RawRule> {
    let len = e
        .tcp_rules
        .iter()
        .map(|r| r.index + 1)
        .chain([e.tls.rule + 1])
        .max()
        .unwrap_or(0);
    let mut slots: Vec<Option<RawRule>> = vec![None; len];
    for rule in &e.tcp_rules {
        if let Some(slot) = slots.get_mut(rule.index) {
            *slot = Some(RawRule {
                name: rule.name.clone(),
                expressions: sources(&rule.expressions),
                actions: rule.actions.iter().map(raw_tcp_action).collect(),
            });
        }
    }
    let terminate = action("terminate-tls", Some(terminate_tls_value(&e.tls)));
    if let Some(slot) = slots.get_mut(e.tls.rule) {
        match slot {
            Some(rule) => rule.actions.insert(0, terminate),
            None => {
                *slot = Some(RawRule {
                    name: None,
                    expressions: Vec::new(),
                    actions: vec![terminate],
                })
            }
        }
    }
    slots.into_iter().flatten().collect()
}

fn terminate_tls_value(tls: &TerminateTls) -> Value {
    let (authorities, strategy, revocation) = match &tls.client_auth {
        ClientAuth::Off => (None, None, None),
        ClientAuth::On {
            authorities,
            strategy,
            revocation,
            ocsp: _,
        } => (
            Some(vec![authorities.to_pem()]),
            Some(strategy.as_str().to_owned()),
            revocation.as_ref(),
        ),
    };
    let raw = RawTerminateTls {
        min_version: Some(Value::from(tls.min_version.as_str())),
        max_version: Some(Value::from(tls.max_version.as_str())),
        server_certificate: tls.certificate.as_ref().map(|c| c.to_pem()),
        server_private_key: None,
        mutual_tls_certificate_authorities: authorities,
        mutual_tls_verification_strategy: strategy,
        mutual_tls_certificate_revocation_lists: revocation.map(|r| vec![r.to_pem()]),
        mutual_tls_revocation_check: revocation.map(|r| r.depth.as_str().to_owned()),
        session_resumption: (!tls.session_resumption).then_some(false),
        // Envoy keeps the sessions; ticket keys are secrets the filter has no use for.
        session_lifetime: None,
        session_ticket_keys: None,
        // Envoy's TLS stack offers the groups (`ecdh_curves`); the filter sees none.
        key_exchange_groups: None,
        // The filter asks the responders itself (its network role, through the generated
        // clusters) and needs the mode, responder and deadline to do it.
        mutual_tls_ocsp: tls.client_auth.ocsp().map(|o| crate::raw::RawOcsp {
            mode: o.mode.as_str().to_owned(),
            responder: o.responder.clone(),
            timeout: Some(crate::limits::HumanDuration(o.timeout).to_string()),
        }),
    };
    serde_json::to_value(raw).unwrap_or(Value::Null)
}

fn raw_tcp_action(a: &TcpAction) -> RawAction {
    match a {
        TcpAction::Deny => action("deny", None),
        TcpAction::CloseConnection => action("close-connection", None),
        TcpAction::RestrictIps(ips) => action("restrict-ips", Some(ip_policy(ips))),
        TcpAction::Log(fields) => log_action(fields),
        TcpAction::SetVars(set) => set_vars_action(set),
    }
}

fn set_vars_action(set: &[(String, crate::expr::VarValue)]) -> RawAction {
    let vars: Vec<Value> = set
        .iter()
        .map(|(name, value)| {
            let mut entry = serde_json::Map::new();
            entry.insert(name.clone(), value.raw().clone());
            Value::Object(entry)
        })
        .collect();
    action("set-vars", Some(serde_json::json!({ "vars": vars })))
}

fn log_action(fields: &[(String, crate::expr::Template)]) -> RawAction {
    let metadata: BTreeMap<&str, String> = fields
        .iter()
        .map(|(k, t)| (k.as_str(), t.source()))
        .collect();
    action("log", Some(serde_json::json!({ "metadata": metadata })))
}

fn raw_http_rule(rule: &Rule<HttpAction>) -> RawRule {
    RawRule {
        name: rule.name.clone(),
        expressions: sources(&rule.expressions),
        actions: rule
            .actions
            .iter()
            .map(|a| match a {
                HttpAction::Deny { status } => {
                    action("deny", Some(serde_json::json!({ "status_code": status })))
                }
                HttpAction::CustomResponse {
                    status,
                    body,
                    headers,
                } => {
                    let headers: BTreeMap<&str, &str> = headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    let mut config = serde_json::json!({
                        "status_code": status,
                        "body": body.source(),
                    });
                    if !headers.is_empty() {
                        config["headers"] = serde_json::json!(headers);
                    }
                    action("custom-response", Some(config))
                }
                HttpAction::AddHeaders(headers) => {
                    let headers: BTreeMap<&str, String> = headers
                        .iter()
                        .map(|(n, t)| (n.as_str(), t.source()))
                        .collect();
                    action(
                        "add-headers",
                        Some(serde_json::json!({ "headers": headers })),
                    )
                }
                HttpAction::CloseConnection => action("close-connection", None),
                HttpAction::RemoveHeaders(names) => action(
                    "remove-headers",
                    Some(serde_json::json!({ "headers": names })),
                ),
                HttpAction::RestrictIps(ips) => action("restrict-ips", Some(ip_policy(ips))),
                HttpAction::Log(fields) => log_action(fields),
                HttpAction::SetVars(set) => set_vars_action(set),
            })
            .collect(),
    }
}

fn ip_policy(ips: &IpPolicy) -> Value {
    let nets = |list: &[IpNet]| list.iter().map(ToString::to_string).collect::<Vec<_>>();
    let mut config = serde_json::Map::new();
    if !ips.allow.is_empty() {
        config.insert("allow".into(), serde_json::json!(nets(&ips.allow)));
    }
    if !ips.deny.is_empty() {
        config.insert("deny".into(), serde_json::json!(nets(&ips.deny)));
    }
    Value::Object(config)
}

fn sources(expressions: &[crate::expr::Expression]) -> Vec<String> {
    expressions.iter().map(|e| e.source().to_owned()).collect()
}

fn action(kind: &str, config: Option<Value>) -> RawAction {
    RawAction {
        kind: kind.to_owned(),
        config,
    }
}
