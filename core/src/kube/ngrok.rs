//! ngrok's own resources: `AgentEndpoint`, `CloudEndpoint` and the `NgrokTrafficPolicy` they
//! refer to.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::*;
use crate::error::{Conflict, ForwardInternal, Unsupported};

/// The upstream-trust annotations tlsgate adds to an AgentEndpoint: ngrok has no field for the
/// CAs an HTTPS upstream's certificate must chain to (its cloud trusts public roots).
pub const UPSTREAM_CA: &str = "tlsgate.dev/upstream-ca";
pub const UPSTREAM_SERVER_NAME: &str = "tlsgate.dev/upstream-server-name";
pub const UPSTREAM_PINNED: &str = "tlsgate.dev/upstream-pinned-certificate";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentEndpointSpec {
    url: String,
    upstream: AgentUpstream,
    #[serde(default)]
    traffic_policy: Option<PolicySource>,
    #[serde(default)]
    client_certificate_refs: Vec<ObjectRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AgentUpstream {
    url: String,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    proxy_protocol_version: Option<Value>,
}

/// `trafficPolicy:` of either endpoint kind: `inline` (AgentEndpoint), `policy`
/// (CloudEndpoint) or `targetRef` to an NgrokTrafficPolicy.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicySource {
    #[serde(default)]
    inline: Option<Value>,
    #[serde(default)]
    policy: Option<Value>,
    #[serde(default)]
    target_ref: Option<ObjectRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CloudEndpointSpec {
    url: String,
    #[serde(default)]
    traffic_policy: Option<PolicySource>,
    #[serde(default)]
    traffic_policy_name: Option<String>,
}

/// An AgentEndpoint listens at its URL and forwards to its upstream; one whose URL ends in
/// `.internal` only serves CloudEndpoints that `forward-internal` to it.
pub(super) fn agent_endpoint(m: &Manifests<'_>, i: usize) -> Result<Option<Synth>, ConfigError> {
    let r = &m.resources[i];
    let spec: AgentEndpointSpec = r.spec()?;
    let url_path = path(&["spec", "url"]);
    let (scheme, host, port) = endpoint_url(&spec.url).map_err(|e| r.error(&url_path, e))?;
    if host.ends_with(".internal") {
        return Ok(None);
    }
    let mut synth = Synth::new(i);
    let policy = traffic_policy(m, i, spec.traffic_policy.as_ref(), None, &mut synth)?;
    let upstream = agent_upstream(m, i, &spec, scheme, &mut synth)?;
    synth.value = endpoint_value(m.deployment, scheme, &host, port, upstream, policy);
    synth.from(FieldPath::root().key("url"), i, url_path.clone());
    synth.from(FieldPath::root().key("bind"), i, url_path);
    Ok(Some(synth))
}

/// The tlsgate upstream an AgentEndpoint describes, with its client certificate (from
/// `clientCertificateRefs`) and, over TLS, the trust tlsgate's annotations give.
fn agent_upstream(
    m: &Manifests<'_>,
    i: usize,
    spec: &AgentEndpointSpec,
    endpoint_scheme: &str,
    synth: &mut Synth,
) -> Result<Value, ConfigError> {
    let r = &m.resources[i];
    let at = path(&["spec", "upstream"]);
    let url = upstream_url(&spec.upstream.url, endpoint_scheme);
    let encrypted = url.starts_with("https://") || url.starts_with("tls://");
    let mut upstream = Map::new();
    upstream.insert("url".into(), json!(url));
    synth.from(FieldPath::root().key("upstream"), i, at.clone());
    if let Some(version) = &spec.upstream.proxy_protocol_version {
        upstream.insert("proxy_protocol".into(), version.clone());
        synth.from(
            FieldPath::root().key("upstream").key("proxy_protocol"),
            i,
            at.key("proxyProtocolVersion"),
        );
    }
    if let Some(protocol) = &spec.upstream.protocol {
        upstream.insert("protocol".into(), json!(protocol));
    }
    let mut tls = Map::new();
    let tls_at = FieldPath::root().key("upstream").key("tls");
    match spec.client_certificate_refs.as_slice() {
        [] => {}
        [reference] => {
            let ref_path = path(&["spec", "clientCertificateRefs", "0"]);
            if !encrypted {
                return Err(r.error(
                    &ref_path,
                    Conflict::ClientCertificateUnencrypted {
                        upstream: (&spec.upstream.url).into(),
                    },
                ));
            }
            let secret = m.lookup(
                i,
                &ref_path,
                ("", "Secret"),
                reference.namespace.as_deref(),
                &reference.name,
            )?;
            let ((cert, cert_path), (key, key_path)) = m.tls_secret(secret)?;
            let pair_at = tls_at.key("client_certificate");
            synth.from(pair_at.key("certificate"), secret, cert_path);
            synth.from(pair_at.key("private_key"), secret, key_path);
            tls.insert(
                "client_certificate".into(),
                json!({"certificate": cert, "private_key": key}),
            );
        }
        [_, second, ..] => {
            return Err(r.error(
                &path(&["spec", "clientCertificateRefs", "1"]),
                Unsupported::SecondClientCertificate {
                    name: (&second.name).into(),
                },
            ))
        }
    }
    let annotations = path(&["metadata", "annotations"]);
    for (annotation, default_key, field) in [
        (UPSTREAM_CA, "ca.crt", "certificate_authorities"),
        (UPSTREAM_PINNED, "tls.crt", "pinned_certificates"),
    ] {
        let Some(value) = r.annotation(annotation) else {
            continue;
        };
        let (target, key) = configmap_key(m, i, annotation, value, default_key)?;
        let (pem, pem_path) = m.data(target, &key)?;
        synth.from(tls_at.key(field).index(0), target, pem_path);
        tls.insert(field.into(), json!([pem]));
    }
    if let Some(name) = r.annotation(UPSTREAM_SERVER_NAME) {
        synth.from(
            tls_at.key("server_name"),
            i,
            annotations.key(UPSTREAM_SERVER_NAME),
        );
        tls.insert("server_name".into(), json!(name));
    }
    if !tls.is_empty() {
        if !encrypted {
            return Err(r.error(
                &annotations,
                Conflict::UpstreamAnnotationsUnencrypted {
                    annotation: UPSTREAM_CA,
                    upstream: (&spec.upstream.url).into(),
                },
            ));
        }
        upstream.insert("tls".into(), Value::Object(tls));
    }
    Ok(Value::Object(upstream))
}

/// `NAME[/KEY]` in an annotation → the ConfigMap and the key to read.
fn configmap_key(
    m: &Manifests<'_>,
    i: usize,
    annotation: &str,
    value: &str,
    default_key: &str,
) -> Result<(usize, String), ConfigError> {
    let (name, key) = value.split_once('/').unwrap_or((value, default_key));
    let at = path(&["metadata", "annotations"]).key(annotation);
    let target = m.lookup(i, &at, ("", "ConfigMap"), None, name)?;
    Ok((target, key.to_owned()))
}

/// An upstream URL in the operator's accepted forms: `scheme://host[:port]`, a bare domain
/// (http), a bare port (http on localhost) or a bare scheme.
fn upstream_url(url: &str, endpoint_scheme: &str) -> String {
    let default_scheme = if endpoint_scheme == "tls" {
        "tcp"
    } else {
        "http"
    };
    if let Some(scheme) = url.strip_suffix("://") {
        return format!("{scheme}://localhost");
    }
    if url.contains("://") {
        return url.to_owned();
    }
    if url.chars().all(|c| c.is_ascii_digit()) {
        return format!("{default_scheme}://localhost:{url}");
    }
    format!("{default_scheme}://{url}")
}

/// The traffic policy of an endpoint: inline, or the NgrokTrafficPolicy it names. Records
/// where it came from, so errors inside it point into the manifest.
fn traffic_policy(
    m: &Manifests<'_>,
    i: usize,
    source: Option<&PolicySource>,
    by_name: Option<&str>,
    synth: &mut Synth,
) -> Result<Value, ConfigError> {
    let r = &m.resources[i];
    let at = path(&["spec", "trafficPolicy"]);
    if source.is_some() && by_name.is_some() {
        return Err(r.error(
            &at,
            Conflict::PolicyTwice {
                ways: "once: trafficPolicy or trafficPolicyName",
                note: "",
            },
        ));
    }
    let reference = match (source, by_name) {
        (Some(s), _) if s.inline.is_some() || s.policy.is_some() => {
            let (field, value) = match (&s.inline, &s.policy) {
                (Some(v), None) => ("inline", v),
                (None, Some(v)) => ("policy", v),
                _ => {
                    return Err(r.error(
                        &at,
                        Conflict::PolicyTwice {
                            ways: "once: `inline` or `policy`",
                            note: "",
                        },
                    ))
                }
            };
            if s.target_ref.is_some() {
                return Err(r.error(
                    &at,
                    Conflict::PolicyTwice {
                        ways: "inline or by targetRef",
                        note: " (as the operator requires)",
                    },
                ));
            }
            synth.from(FieldPath::root().key("traffic_policy"), i, at.key(field));
            return Ok(value.clone());
        }
        (
            Some(PolicySource {
                target_ref: Some(t),
                ..
            }),
            _,
        ) => (t.name.clone(), t.namespace.as_deref(), at.key("targetRef")),
        (_, Some(name)) => (name.to_owned(), None, path(&["spec", "trafficPolicyName"])),
        _ => return Ok(json!({})),
    };
    let (name, namespace, at) = reference;
    policy_by_name(m, i, &at, namespace, &name, synth)
}

/// `spec.policy` of the NgrokTrafficPolicy `name` (in the resource's namespace unless the
/// reference names another, which then needs a ReferenceGrant like any other).
pub(super) fn policy_by_name(
    m: &Manifests<'_>,
    i: usize,
    at: &FieldPath,
    namespace: Option<&str>,
    name: &str,
    synth: &mut Synth,
) -> Result<Value, ConfigError> {
    let target = m.lookup(i, at, (NGROK_GROUP, "NgrokTrafficPolicy"), namespace, name)?;
    let policy_path = path(&["spec", "policy"]);
    let value = m.resources[target]
        .value
        .pointer("/spec/policy")
        .cloned()
        .ok_or_else(|| {
            m.resources[target].error(&path(&["spec"]), Missing::HasNo("spec.policy"))
        })?;
    synth.from(FieldPath::root().key("traffic_policy"), target, policy_path);
    Ok(value)
}

/// A CloudEndpoint names no upstream: as in ngrok, its policy ends by forwarding every request
/// to an internal AgentEndpoint (`forward-internal` to `https://NAME.internal`), whose upstream
/// tlsgate then uses.
pub(super) fn cloud_endpoint(m: &Manifests<'_>, i: usize) -> Result<Synth, ConfigError> {
    let r = &m.resources[i];
    let spec: CloudEndpointSpec = r.spec()?;
    let url_path = path(&["spec", "url"]);
    let (scheme, host, port) = endpoint_url(&spec.url).map_err(|e| r.error(&url_path, e))?;
    let mut synth = Synth::new(i);
    let mut policy = traffic_policy(
        m,
        i,
        spec.traffic_policy.as_ref(),
        spec.traffic_policy_name.as_deref(),
        &mut synth,
    )?;
    let target = take_forward_internal(&mut policy).map_err(|message| {
        synth.locate(
            ConfigError::new(FieldPath::root().key("traffic_policy"), message.into()),
            m.resources,
        )
    })?;
    let Some((target_url, rule)) = target else {
        return Err(r.error(&path(&["spec", "trafficPolicy"]), ForwardInternal::Absent));
    };
    let rule_at = FieldPath::root()
        .key("traffic_policy")
        .key("on_http_request")
        .index(rule);
    let (_, internal_host, _) = endpoint_url(&target_url)
        .map_err(|e| synth.locate(ConfigError::new(rule_at.clone(), e), m.resources))?;
    let agent = m
        .resources
        .iter()
        .position(|a| {
            a.is(NGROK_GROUP, "AgentEndpoint")
                && a.value
                    .pointer("/spec/url")
                    .and_then(Value::as_str)
                    .and_then(|u| endpoint_url(u).ok())
                    .is_some_and(|(_, h, _)| h == internal_host)
        })
        .ok_or_else(|| {
            synth.locate(
                ConfigError::new(
                    rule_at.clone(),
                    ForwardInternal::NoAgentEndpoint {
                        url: (&target_url).into(),
                    }
                    .into(),
                ),
                m.resources,
            )
        })?;
    let agent_spec: AgentEndpointSpec = m.resources[agent].spec()?;
    if agent_spec.traffic_policy.is_some() {
        return Err(m.resources[agent].error(
            &path(&["spec", "trafficPolicy"]),
            Conflict::InternalEndpointPolicy,
        ));
    }
    let upstream = agent_upstream(m, agent, &agent_spec, scheme, &mut synth)?;
    synth.value = endpoint_value(m.deployment, scheme, &host, port, upstream, policy);
    synth.from(FieldPath::root().key("url"), i, url_path.clone());
    synth.from(FieldPath::root().key("bind"), i, url_path);
    Ok(synth)
}

/// Removes the `forward-internal` action that ends `on_http_request` and returns its URL and
/// rule position. It must be the last action of the last rule, with no expressions: tlsgate
/// sends every request of an endpoint to one upstream.
fn take_forward_internal(policy: &mut Value) -> Result<Option<(String, usize)>, ForwardInternal> {
    let Some(rules) = policy
        .get_mut("on_http_request")
        .and_then(Value::as_array_mut)
    else {
        return Ok(None);
    };
    let is_forward = |a: &Value| a.get("type").and_then(Value::as_str) == Some("forward-internal");
    let found: Vec<(usize, usize)> = rules
        .iter()
        .enumerate()
        .flat_map(|(r, rule)| {
            rule.get("actions")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
                .filter(|(_, a)| is_forward(a))
                .map(move |(a, _)| (r, a))
        })
        .collect();
    let Some(&(rule, action)) = found.first() else {
        return Ok(None);
    };
    let last_rule = rules.len() - 1;
    let actions_len = rules[rule]["actions"].as_array().map_or(0, Vec::len);
    let conditional = rules[rule]
        .get("expressions")
        .and_then(Value::as_array)
        .is_some_and(|e| !e.is_empty());
    if found.len() > 1 || rule != last_rule || action + 1 != actions_len || conditional {
        return Err(ForwardInternal::NotLast { rule });
    }
    let url = rules[rule]["actions"][action]
        .pointer("/config/url")
        .and_then(Value::as_str)
        .ok_or(ForwardInternal::NoUrl { rule })?
        .to_owned();
    if let Some(actions) = rules[rule].get_mut("actions").and_then(Value::as_array_mut) {
        actions.pop();
        if actions.is_empty() {
            rules.pop();
        }
    }
    Ok(Some((url, rule)))
}
