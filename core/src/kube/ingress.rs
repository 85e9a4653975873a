//! `Ingress` with an ngrok traffic policy annotation: one endpoint per host.

use serde::Deserialize;
use serde_json::{json, Value};

use super::gateway::service_upstream;
use super::*;
use crate::error::Unsupported;

/// The annotation naming the NgrokTrafficPolicy; the newer one wins when both are present.
const POLICY_ANNOTATIONS: [&str; 2] = ["ngrok.com/traffic-policy", "k8s.ngrok.com/traffic-policy"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IngressSpec {
    #[serde(default)]
    ingress_class_name: Option<String>,
    #[serde(default)]
    rules: Vec<IngressRule>,
    #[serde(default)]
    tls: Vec<IngressTls>,
    #[serde(default)]
    default_backend: Option<Value>,
}

#[derive(Deserialize)]
struct IngressRule {
    #[serde(default)]
    host: Option<String>,
    #[serde(default)]
    http: Option<IngressHttp>,
}

#[derive(Deserialize)]
struct IngressHttp {
    paths: Vec<IngressPath>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IngressPath {
    #[serde(default)]
    path: Option<String>,
    path_type: String,
    backend: IngressBackend,
}

#[derive(Deserialize)]
struct IngressBackend {
    #[serde(default)]
    service: Option<ServiceBackend>,
}

#[derive(Deserialize)]
struct ServiceBackend {
    name: String,
    port: ServicePort,
}

#[derive(Deserialize)]
struct ServicePort {
    #[serde(default)]
    number: Option<u16>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IngressTls {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    secret_name: Option<String>,
}

/// A host, where it was written, the paths served there and their one backend (Service,
/// port, where the backend was written).
type HostRoutes = (String, FieldPath, Vec<PathMatch>, (String, u16, FieldPath));

pub(super) fn endpoints(m: &mut Manifests<'_>, i: usize) -> Result<Vec<Synth>, ConfigError> {
    let resources = m.resources;
    let r = &resources[i];
    let spec: IngressSpec = r.spec()?;
    // The class field, else the annotation older manifests use.
    let class = spec
        .ingress_class_name
        .as_deref()
        .or_else(|| r.annotation("kubernetes.io/ingress.class"));
    if let Some(class) = class {
        if !super::CLASSES.contains(&class) {
            m.notes.push(format!(
                "skipped {} ({}): its ingressClassName is {class}, not ngrok or tlsgate",
                r.label(),
                r.file.display()
            ));
            return Ok(Vec::new());
        }
    }
    if spec.default_backend.is_some() {
        return Err(r.error(
            &path(&["spec", "defaultBackend"]),
            Unsupported::DefaultBackend,
        ));
    }
    // Hosts in the order written, each with its paths and their one backend.
    let mut hosts: Vec<HostRoutes> = Vec::new();
    for (n, rule) in spec.rules.iter().enumerate() {
        let rule_at = path(&["spec", "rules"]).index(n);
        let host = rule
            .host
            .clone()
            .ok_or_else(|| r.error(&rule_at, Missing::RuleHost))?;
        let http = rule
            .http
            .as_ref()
            .ok_or_else(|| r.error(&rule_at, Missing::HasNo("http.paths")))?;
        for (p, entry) in http.paths.iter().enumerate() {
            let at = rule_at.key("http").key("paths").index(p);
            let exact = match entry.path_type.as_str() {
                "Exact" => true,
                "Prefix" | "ImplementationSpecific" => false,
                other => {
                    return Err(r.error(
                        &at.key("pathType"),
                        ConfigErrorKind::UnknownChoice {
                            what: "pathType",
                            found: other.into(),
                            choices: "Prefix or Exact",
                        },
                    ))
                }
            };
            let matched = PathMatch::new(exact, entry.path.as_deref().unwrap_or("/"))
                .map_err(|e| r.error(&at.key("path"), e))?;
            let service = entry
                .backend
                .service
                .as_ref()
                .ok_or_else(|| r.error(&at.key("backend"), Reference::ResourceBackend))?;
            let port_at = at.key("backend").key("service").key("port");
            let port = match (&service.port.number, &service.port.name) {
                (Some(n), _) => *n,
                (None, Some(name)) => service_port_by_name(m, i, &port_at, &service.name, name)?,
                (None, None) => return Err(r.error(&port_at, Missing::Needs("a number or a name"))),
            };
            let backend = (service.name.clone(), port, at.key("backend"));
            match hosts.iter_mut().find(|(h, ..)| *h == host) {
                None => hosts.push((host.clone(), rule_at.key("host"), vec![matched], backend)),
                Some((_, _, paths, existing)) => {
                    if (existing.0.as_str(), existing.1) != (backend.0.as_str(), backend.1) {
                        return Err(r.error(
                            &backend.2,
                            ConfigErrorKind::HostHasService {
                                host: host.clone(),
                                service: existing.0.clone(),
                                port: existing.1,
                                instead: "host",
                            },
                        ));
                    }
                    paths.push(matched);
                }
            }
        }
    }
    let mut out = Vec::new();
    for (host, host_at, paths, (service, port, backend_at)) in hosts {
        let mut synth = Synth::new(i);
        let annotations = path(&["metadata", "annotations"]);
        let mut policy = match POLICY_ANNOTATIONS
            .iter()
            .find_map(|a| r.annotation(a).map(|v| (*a, v)))
        {
            Some((annotation, name)) => {
                ngrok::policy_by_name(m, i, &annotations.key(annotation), None, name, &mut synth)?
            }
            None => json!({}),
        };
        if !has_terminate_tls(&policy) {
            add_tls_from_secret(m, i, &spec.tls, &host, &mut policy, &mut synth)?;
        }
        if let Some(rule) = unrouted_paths_rule(&paths) {
            append_rule(&mut policy, "on_http_request", rule);
        }
        let upstream = service_upstream(m, i, &backend_at, &service, port, &mut synth)?;
        synth.value = endpoint_value(m.deployment, "https", &host, 443, upstream, policy);
        synth.from(FieldPath::root().key("url"), i, host_at.clone());
        synth.from(FieldPath::root().key("bind"), i, host_at);
        out.push(synth);
    }
    Ok(out)
}

/// An Ingress whose policy does not terminate TLS may give the certificate the Kubernetes
/// way, in `spec.tls`: tlsgate then terminates with it (TLS 1.2-1.3, no client certificates).
fn add_tls_from_secret(
    m: &Manifests<'_>,
    i: usize,
    tls: &[IngressTls],
    host: &str,
    policy: &mut Value,
    synth: &mut Synth,
) -> Result<(), ConfigError> {
    let r = &m.resources[i];
    let Some((n, entry)) = tls
        .iter()
        .enumerate()
        .find(|(_, t)| t.hosts.is_empty() || t.hosts.iter().any(|h| h == host))
    else {
        return Err(r.error(
            &path(&["spec"]),
            Missing::Certificate {
                host: host.to_owned(),
            },
        ));
    };
    let at = path(&["spec", "tls"]).index(n).key("secretName");
    let name = entry
        .secret_name
        .as_deref()
        .ok_or_else(|| r.error(&at, Missing::Field))?;
    let secret = m.lookup(i, &at, ("", "Secret"), None, name)?;
    let ((cert, cert_path), (key, key_path)) = m.tls_secret(secret)?;
    let index = append_rule(
        policy,
        "on_tcp_connect",
        json!({"actions": [{"type": "terminate-tls", "config": {
            "server_certificate": cert, "server_private_key": key}}]}),
    );
    let config = FieldPath::root()
        .key("traffic_policy")
        .key("on_tcp_connect")
        .index(index)
        .key("actions")
        .index(0)
        .key("config");
    synth.from(config.key("server_certificate"), secret, cert_path);
    synth.from(config.key("server_private_key"), secret, key_path);
    Ok(())
}

/// Appends a rule to a phase of a policy value; returns its position.
pub(super) fn append_rule(policy: &mut Value, phase: &str, rule: Value) -> usize {
    if !policy.is_object() {
        *policy = json!({});
    }
    match policy
        .as_object_mut()
        .map(|p| p.entry(phase).or_insert_with(|| json!([])))
    {
        Some(Value::Array(rules)) => {
            rules.push(rule);
            rules.len() - 1
        }
        // Not a list: the loader refuses the phase with its own message.
        _ => 0,
    }
}

/// A Service port given by name: the Service's manifest says which number it is.
fn service_port_by_name(
    m: &Manifests<'_>,
    i: usize,
    at: &FieldPath,
    service: &str,
    name: &str,
) -> Result<u16, ConfigError> {
    let target = m.lookup(i, at, ("", "Service"), None, service)?;
    let s = &m.resources[target];
    s.value
        .pointer("/spec/ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))
        .and_then(|p| p.get("port").and_then(Value::as_u64))
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            m.resources[i].error(
                at,
                Reference::NoSuchPort {
                    namespace: s.namespace.clone(),
                    service: service.into(),
                    port: name.into(),
                },
            )
        })
}
