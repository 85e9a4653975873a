//! Rules and actions of `on_tcp_connect` and `on_http_request`, and the headers a policy may
//! set.

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::{ConfigError, ConfigErrorKind, Conflict};
use crate::expr::{Expression, Phase, Template};
use crate::source::FieldPath;

use super::de::*;
use super::tls::*;
use super::*;

pub(super) fn action_config<T: DeserializeOwned + Default>(
    action: &RawAction,
    path: &FieldPath,
) -> Result<T, ConfigError> {
    match &action.config {
        None | Some(Value::Null) => Ok(T::default()),
        Some(value) => deserialize(value, path.key("config")),
    }
}

pub(super) const TCP_ACTIONS: &str =
    "terminate-tls, deny, close-connection, restrict-ips, log, set-vars";
pub(super) const HTTP_ACTIONS: &str =
    "deny, close-connection, custom-response, add-headers, remove-headers, restrict-ips, log, set-vars";

/// ngrok's actions (its Traffic Policy reference). One tlsgate does not implement is refused as
/// such, with the list of those it does, rather than as an unknown word.
const NGROK_ACTIONS: &[&str] = &[
    "add-headers",
    "ai-gateway",
    "basic-auth",
    "circuit-breaker",
    "close-connection",
    "compress-response",
    "custom-response",
    "deny",
    "forward-internal",
    "http-request",
    "jwt-validation",
    "log",
    "oauth",
    "openid-connect",
    "owasp-crs-request",
    "owasp-crs-response",
    "rate-limit",
    "redirect",
    "remove-headers",
    "request-body-find-replace",
    "response-body-find-replace",
    "restrict-ips",
    "saml",
    "set-vars",
    "sse-find-replace",
    "terminate-tls",
    "url-rewrite",
    "verify-webhook",
];

/// The error for an action type this phase does not run.
pub(super) fn unknown_action(
    found: &str,
    phase: &'static str,
    allowed: &'static str,
) -> ConfigErrorKind {
    let implemented = |list: &str| list.split(", ").any(|a| a == found);
    if NGROK_ACTIONS.contains(&found) && !implemented(TCP_ACTIONS) && !implemented(HTTP_ACTIONS) {
        ConfigErrorKind::UnsupportedAction {
            found: found.to_owned(),
            phase,
            allowed,
        }
    } else {
        ConfigErrorKind::UnknownAction {
            found: found.to_owned(),
            phase,
            allowed,
        }
    }
}

/// ngrok's `log` action: `metadata` keys (letters, digits, `_-.`) to templates, in either phase.
fn log_fields(
    action: &RawAction,
    action_path: &FieldPath,
    phase: Phase,
) -> Result<Vec<(String, Template)>, ConfigError> {
    let config_path = action_path.key("config");
    if action.config.is_none() {
        return Err(err(
            config_path,
            ConfigErrorKind::ActionNeeds {
                action: "log",
                needs: "config.metadata",
                hint: "",
            },
        ));
    }
    let RawLog { metadata } = action_config(action, action_path)?;
    let mut fields = Vec::with_capacity(metadata.len());
    for (key, value) in metadata {
        let p = config_path.key("metadata").key(&key);
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        {
            return Err(err(p, ConfigErrorKind::BadLogKey));
        }
        let text = match value {
            Value::String(text) => text,
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(err(p, ConfigErrorKind::BadLogValue)),
        };
        let template = Template::compile(&text, phase).map_err(|reason| {
            err(
                p.clone(),
                ConfigErrorKind::Expression {
                    expression: text.clone(),
                    reason,
                },
            )
        })?;
        fields.push((key, template));
    }
    Ok(fields)
}

/// ngrok's `set-vars`: `vars` is a list of one-entry maps (`- name: value`), in order.
fn set_vars(
    action: &RawAction,
    action_path: &FieldPath,
    phase: Phase,
) -> Result<Vec<(String, crate::expr::VarValue)>, ConfigError> {
    let config_path = action_path.key("config");
    if action.config.is_none() {
        return Err(err(
            config_path,
            ConfigErrorKind::ActionNeeds {
                action: "set-vars",
                needs: "config.vars",
                hint: "",
            },
        ));
    }
    let RawSetVars { vars } = action_config(action, action_path)?;
    if vars.is_empty() {
        return Err(err(
            config_path.key("vars"),
            ConfigErrorKind::EmptyList {
                hint: "give each variable as `- name: value`",
            },
        ));
    }
    let mut out = Vec::with_capacity(vars.len());
    for (i, entry) in vars.into_iter().enumerate() {
        let at = config_path.key("vars").index(i);
        let mut entries = entry.into_iter();
        let (Some((name, value)), None) = (entries.next(), entries.next()) else {
            return Err(err(at, ConfigErrorKind::BadVarEntry));
        };
        let mut chars = name.chars();
        let starts_well = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        if !starts_well || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(err(
                at.key(&name),
                ConfigErrorKind::BadName {
                    value: (&name).into(),
                    expected: "a variable name (letters, digits and `_`, not starting with a \
                               digit; it is read as vars.NAME)",
                },
            ));
        }
        let value = crate::expr::VarValue::compile(&value, phase).map_err(|reason| {
            err(
                at.key(&name),
                ConfigErrorKind::Expression {
                    expression: value.to_string(),
                    reason,
                },
            )
        })?;
        out.push((name, value));
    }
    Ok(out)
}

/// ngrok scopes `set-vars` to its phase, and rules run in order: every `vars.NAME` a rule
/// reads (its expressions, then each action's templates and values in order) must have been
/// set by an earlier `set-vars` of the same phase — or it would fail on every evaluation.
pub(super) fn check_vars_order<A>(
    rules: &[Rule<A>],
    phase: Phase,
    phase_path: &FieldPath,
    templates: impl Fn(&A) -> Vec<&Template>,
    set_vars: impl Fn(&A) -> &[(String, crate::expr::VarValue)],
) -> Result<(), ConfigError> {
    let mut defined: Vec<String> = Vec::new();
    let unset = |name: &str, at: FieldPath| {
        err(
            at,
            ConfigErrorKind::UnsetVariable {
                name: name.to_owned(),
                phase: phase.name(),
            },
        )
    };
    for rule in rules {
        let at = phase_path.index(rule.index);
        for (k, e) in rule.expressions.iter().enumerate() {
            if let Some(name) = e.undefined_var(&defined) {
                return Err(unset(name, at.key("expressions").index(k)));
            }
        }
        for (a, action) in rule.actions.iter().enumerate() {
            let action_at = at.key("actions").index(a);
            if let Some(name) = templates(action)
                .iter()
                .find_map(|t| t.undefined_var(&defined))
            {
                return Err(unset(name, action_at));
            }
            for (name, value) in set_vars(action) {
                if let Some(missing) = value.undefined_var(&defined) {
                    return Err(unset(missing, action_at.key("config").key("vars")));
                }
                if !defined.contains(name) {
                    defined.push(name.clone());
                }
            }
        }
    }
    Ok(())
}

pub(super) fn tcp_rule(
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
        return Err(err(path.key("actions"), ConfigErrorKind::NoActions));
    }
    for (a, action) in actions.iter().enumerate() {
        let action_path = path.key("actions").index(a);
        match action.kind.as_str() {
            "terminate-tls" => {
                if !expressions.is_empty() {
                    return Err(err(
                        action_path.key("type"),
                        Conflict::TerminateTlsBehindExpression.into(),
                    ));
                }
                if let Some((_, first)) = tls {
                    return Err(err(
                        action_path.key("type"),
                        ConfigErrorKind::SecondTerminateTls {
                            first: first.to_string(),
                        },
                    ));
                }
                let config = action_config::<RawTerminateTls>(action, &action_path)?;
                *tls = Some((
                    terminate_tls(config, index, &action_path.key("config"), options)?,
                    action_path.key("config"),
                ));
            }
            "deny" => {
                let _: RawDeny = action_config(action, &action_path)?;
                out.push(TcpAction::Deny);
            }
            "close-connection" => {
                let RawCloseConnection {} = action_config(action, &action_path)?;
                out.push(TcpAction::CloseConnection);
            }
            "restrict-ips" => {
                out.push(TcpAction::RestrictIps(restrict_ips(
                    action_config(action, &action_path)?,
                    &action_path.key("config"),
                )?));
            }
            "log" => out.push(TcpAction::Log(log_fields(
                action,
                &action_path,
                Phase::TcpConnect,
            )?)),
            "set-vars" => out.push(TcpAction::SetVars(set_vars(
                action,
                &action_path,
                Phase::TcpConnect,
            )?)),
            other => {
                return Err(err(
                    action_path.key("type"),
                    unknown_action(other, "on_tcp_connect", TCP_ACTIONS),
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

pub(super) fn http_rule(
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
        return Err(err(path.key("actions"), ConfigErrorKind::NoActions));
    }
    let mut out = Vec::new();
    for (a, action) in actions.iter().enumerate() {
        let action_path = path.key("actions").index(a);
        let config_path = action_path.key("config");
        out.push(match action.kind.as_str() {
            "close-connection" => {
                let RawCloseConnection {} = action_config(action, &action_path)?;
                HttpAction::CloseConnection
            }
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
                            ConfigErrorKind::ActionNeeds {
                                action: "custom-response",
                                needs: "a status_code",
                                hint: "",
                            },
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
                        ConfigErrorKind::ActionNeeds {
                            action: "add-headers",
                            needs: "config.headers",
                            hint: "",
                        },
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
            "remove-headers" => {
                if action.config.is_none() {
                    return Err(err(
                        config_path,
                        ConfigErrorKind::ActionNeeds {
                            action: "remove-headers",
                            needs: "config.headers",
                            hint: "",
                        },
                    ));
                }
                let RawRemoveHeaders { headers } = action_config(action, &action_path)?;
                let mut names = Vec::with_capacity(headers.len());
                for (i, name) in headers.iter().enumerate() {
                    header_name(name, &config_path.key("headers").index(i))?;
                    names.push(name.to_ascii_lowercase());
                }
                HttpAction::RemoveHeaders(names)
            }
            "restrict-ips" => HttpAction::RestrictIps(restrict_ips(
                action_config(action, &action_path)?,
                &config_path,
            )?),
            "log" => HttpAction::Log(log_fields(action, &action_path, Phase::HttpRequest)?),
            "set-vars" => HttpAction::SetVars(set_vars(action, &action_path, Phase::HttpRequest)?),
            other => {
                return Err(err(
                    action_path.key("type"),
                    unknown_action(other, "on_http_request", HTTP_ACTIONS),
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

pub(super) fn compile_expressions(
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

pub(super) fn status(code: u16, path: &FieldPath) -> Result<u16, ConfigError> {
    if (200..=599).contains(&code) {
        Ok(code)
    } else {
        Err(err(path.clone(), ConfigErrorKind::BadStatus { code }))
    }
}

/// Headers the proxy owns; a policy may not set them.
pub(super) const RESERVED_HEADERS: &[&str] = &[
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

pub(super) fn header_name(name: &str, path: &FieldPath) -> Result<(), ConfigError> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(err(
            path.clone(),
            ConfigErrorKind::BadName {
                value: name.into(),
                expected: "a valid header name",
            },
        ));
    }
    let lower = name.to_ascii_lowercase();
    if RESERVED_HEADERS.contains(&lower.as_str()) || name.starts_with(':') {
        return Err(err(
            path.clone(),
            ConfigErrorKind::ProxyHeader { name: name.into() },
        ));
    }
    if crate::request::EDGE_HEADERS.contains(&lower.as_str()) {
        return Err(err(
            path.clone(),
            ConfigErrorKind::EdgeHeader { name: name.into() },
        ));
    }
    Ok(())
}

pub(super) fn header_value(value: &str, path: &FieldPath) -> Result<(), ConfigError> {
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(err(path.clone(), ConfigErrorKind::BadHeaderValue));
    }
    Ok(())
}

pub(super) fn restrict_ips(raw: RawRestrictIps, path: &FieldPath) -> Result<IpPolicy, ConfigError> {
    let RawRestrictIps { allow, deny } = raw;
    if allow.is_empty() && deny.is_empty() {
        return Err(err(
            path.clone(),
            ConfigErrorKind::ActionNeeds {
                action: "restrict-ips",
                needs: "`allow` or `deny` CIDRs",
                hint: "",
            },
        ));
    }
    let parse = |list: Vec<String>, key: &str| -> Result<Vec<IpNet>, ConfigError> {
        list.into_iter()
            .enumerate()
            .map(|(i, s)| {
                crate::net::parse_range(&s).ok_or_else(|| {
                    err(
                        path.key(key).index(i),
                        ConfigErrorKind::BadAddress {
                            value: (&s).into(),
                            expected: "a CIDR (10.0.0.0/8, 2001:db8::/32) or address",
                        },
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
