//! Gateway API: a `Gateway`'s HTTPS listeners and the `HTTPRoute`s attached to them, with
//! `BackendTLSPolicy` for upstreams that speak TLS.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::ingress::append_rule;
use super::*;
use crate::error::{Conflict, Unsupported};

/// The listener option prefixes ngrok's operator reads (`<prefix><terminate-tls field>`).
const OPTION_PREFIXES: [&str; 2] = ["k8s.ngrok.com/terminate-tls.", "ngrok.com/terminate-tls."];
/// terminate-tls fields a listener option may set; certificates come from certificateRefs and
/// frontendValidation, as the operator requires.
const OPTION_FIELDS: [&str; 3] = [
    "min_version",
    "max_version",
    "mutual_tls_verification_strategy",
];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GatewaySpec {
    #[serde(default)]
    gateway_class_name: Option<String>,
    #[serde(default)]
    listeners: Vec<Listener>,
    #[serde(default)]
    tls: Option<GatewayTls>,
}

/// Gateway API v1.5: `spec.tls.frontend.default.validation`.
#[derive(Deserialize)]
struct GatewayTls {
    #[serde(default)]
    frontend: Option<Frontend>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Frontend {
    #[serde(default)]
    default: Option<FrontendDefault>,
    /// Not read yet: refused, so a port's client-certificate requirement is never dropped.
    #[serde(default)]
    per_port: Option<Value>,
}

#[derive(Deserialize)]
struct FrontendDefault {
    #[serde(default)]
    validation: Option<Validation>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Validation {
    #[serde(default)]
    ca_certificate_refs: Vec<ObjectRef>,
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listener {
    name: String,
    #[serde(default)]
    hostname: Option<String>,
    port: u16,
    protocol: String,
    #[serde(default)]
    tls: Option<ListenerTls>,
    #[serde(default)]
    allowed_routes: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListenerTls {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    certificate_refs: Vec<ObjectRef>,
    #[serde(default)]
    frontend_validation: Option<Validation>,
    #[serde(default)]
    options: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteSpec {
    #[serde(default)]
    parent_refs: Vec<ParentRef>,
    #[serde(default)]
    hostnames: Vec<String>,
    #[serde(default)]
    rules: Vec<RouteRule>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ParentRef {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    section_name: Option<String>,
    #[serde(default)]
    port: Option<u16>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteRule {
    #[serde(default)]
    matches: Vec<RouteMatch>,
    #[serde(default)]
    backend_refs: Vec<BackendRef>,
    #[serde(default)]
    filters: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RouteMatch {
    #[serde(default)]
    path: Option<MatchPath>,
    #[serde(default)]
    headers: Vec<Value>,
    #[serde(default)]
    query_params: Vec<Value>,
    #[serde(default)]
    method: Option<String>,
}

#[derive(Deserialize)]
struct MatchPath {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct BackendRef {
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    port: Option<u16>,
    #[serde(default)]
    weight: Option<u32>,
    #[serde(default)]
    filters: Vec<Value>,
}

/// One endpoint per HTTPS listener and host name its routes serve.
pub(super) fn endpoints(m: &mut Manifests<'_>, g: usize) -> Result<Vec<Synth>, ConfigError> {
    let resources = m.resources;
    let gateway = &resources[g];
    let spec: GatewaySpec = gateway.spec()?;
    let mut out = Vec::new();
    if let Some(class) = spec
        .gateway_class_name
        .as_deref()
        .filter(|c| !super::CLASSES.contains(c))
    {
        m.notes.push(format!(
            "skipped {} ({}): its gatewayClassName is {class}, not ngrok or tlsgate",
            gateway.label(),
            gateway.file.display()
        ));
        return Ok(out);
    }
    if let Some(Frontend {
        per_port: Some(_), ..
    }) = spec.tls.as_ref().and_then(|t| t.frontend.as_ref())
    {
        return Err(gateway.error(
            &path(&["spec", "tls", "frontend", "perPort"]),
            Unsupported::PerPortValidation,
        ));
    }
    for (l, listener) in spec.listeners.iter().enumerate() {
        let at = path(&["spec", "listeners"]).index(l);
        if listener.protocol != "HTTPS" {
            m.notes.push(format!(
                "skipped listener {} of {} ({}): protocol {}; tlsgate serves HTTPS listeners",
                listener.name,
                gateway.label(),
                gateway.file.display(),
                listener.protocol
            ));
            continue;
        }
        let tls = listener
            .tls
            .as_ref()
            .ok_or_else(|| gateway.error(&at, Missing::ListenerTls))?;
        if let Some(mode) = tls.mode.as_deref().filter(|m| *m != "Terminate") {
            return Err(gateway.error(
                &at.key("tls").key("mode"),
                Unsupported::TlsMode { mode: mode.into() },
            ));
        }
        let routes = attached_routes(m, g, listener, &at)?;
        if routes.is_empty() {
            m.notes.push(format!(
                "listener {} of {} ({}) has no HTTPRoute attached, so nothing is served there",
                listener.name,
                gateway.label(),
                gateway.file.display()
            ));
            continue;
        }
        // host → (paths, backend): every route's rules for that host.
        let mut hosts: Vec<(String, Vec<PathMatch>, Backend)> = Vec::new();
        for (route, hostnames) in routes {
            for host in hostnames {
                collect_route(m, route, &host, &mut hosts)?;
            }
        }
        for (host, paths, backend) in hosts {
            let mut synth = Synth::new(g);
            let mut policy = json!({});
            let config = terminate_tls(m, g, &spec, tls, &at, &mut synth)?;
            append_rule(
                &mut policy,
                "on_tcp_connect",
                json!({"actions": [{"type": "terminate-tls", "config": config}]}),
            );
            if let Some(rule) = unrouted_paths_rule(&paths) {
                append_rule(&mut policy, "on_http_request", rule);
            }
            let upstream = service_upstream(
                m,
                backend.route,
                &backend.at,
                &backend.service,
                backend.port,
                &mut synth,
            )?;
            synth.value = endpoint_value(
                m.deployment,
                "https",
                &host,
                listener.port,
                upstream,
                policy,
            );
            synth.from(FieldPath::root().key("url"), g, at.clone());
            synth.from(FieldPath::root().key("bind"), g, at.key("port"));
            out.push(synth);
        }
    }
    Ok(out)
}

struct Backend {
    route: usize,
    at: FieldPath,
    /// `name.namespace`
    service: String,
    port: u16,
}

/// The terminate-tls configuration a listener describes.
fn terminate_tls(
    m: &Manifests<'_>,
    g: usize,
    spec: &GatewaySpec,
    tls: &ListenerTls,
    at: &FieldPath,
    synth: &mut Synth,
) -> Result<Value, ConfigError> {
    let gateway = &m.resources[g];
    let tls_at = at.key("tls");
    let config_at = FieldPath::root()
        .key("traffic_policy")
        .key("on_tcp_connect")
        .index(0)
        .key("actions")
        .index(0)
        .key("config");
    let mut config = Map::new();
    let reference = match tls.certificate_refs.as_slice() {
        [] => {
            return Err(gateway.error(
                &tls_at,
                Missing::Needs("certificateRefs naming a kubernetes.io/tls Secret"),
            ))
        }
        [one] => one,
        _ => {
            return Err(gateway.error(
                &tls_at.key("certificateRefs").index(1),
                Unsupported::CertificatePerListener,
            ))
        }
    };
    let ref_at = tls_at.key("certificateRefs").index(0);
    let kind = reference.kind.as_deref().unwrap_or("Secret");
    if kind != "Secret" || reference.group.as_deref().is_some_and(|g| !g.is_empty()) {
        return Err(gateway.error(&ref_at, Reference::CertificateKind { kind: kind.into() }));
    }
    let secret = m.lookup(
        g,
        &ref_at,
        ("", "Secret"),
        reference.namespace.as_deref(),
        &reference.name,
    )?;
    let ((cert, cert_path), (key, key_path)) = m.tls_secret(secret)?;
    synth.from(config_at.key("server_certificate"), secret, cert_path);
    synth.from(config_at.key("server_private_key"), secret, key_path);
    config.insert("server_certificate".into(), json!(cert));
    config.insert("server_private_key".into(), json!(key));

    // Client CAs: the listener's frontendValidation (the seed's shape), else the Gateway-wide
    // default of Gateway API v1.5.
    let (validation, validation_at) = match (&tls.frontend_validation, &spec.tls) {
        (Some(v), _) => (Some(v), tls_at.key("frontendValidation")),
        (
            None,
            Some(GatewayTls {
                frontend:
                    Some(Frontend {
                        default:
                            Some(FrontendDefault {
                                validation: Some(v),
                            }),
                        ..
                    }),
            }),
        ) => (
            Some(v),
            path(&["spec", "tls", "frontend", "default", "validation"]),
        ),
        _ => (None, FieldPath::root()),
    };
    if let Some(validation) = validation {
        let cas = m.ca_refs(
            g,
            &validation.ca_certificate_refs,
            &validation_at.key("caCertificateRefs"),
            synth,
            &config_at.key("mutual_tls_certificate_authorities"),
        )?;
        if cas.is_empty() {
            return Err(gateway.error(&validation_at, Missing::Needs("caCertificateRefs")));
        }
        config.insert(
            "mutual_tls_certificate_authorities".into(),
            Value::Array(cas),
        );
        match validation.mode.as_deref() {
            None | Some("AllowValidOnly") => {}
            Some("AllowInsecureFallback") => {
                config.insert("mutual_tls_verification_strategy".into(), json!("request"));
                synth.from(
                    config_at.key("mutual_tls_verification_strategy"),
                    g,
                    validation_at.key("mode"),
                );
            }
            Some(other) => {
                return Err(gateway.error(
                    &validation_at.key("mode"),
                    ConfigErrorKind::UnknownChoice {
                        what: "mode",
                        found: other.into(),
                        choices: "AllowValidOnly or AllowInsecureFallback",
                    },
                ))
            }
        }
    }
    for (key, value) in &tls.options {
        let Some(field) = OPTION_PREFIXES.iter().find_map(|p| key.strip_prefix(p)) else {
            continue;
        };
        let option_at = tls_at.key("options").key(key);
        if !OPTION_FIELDS.contains(&field) {
            return Err(gateway.error(
                &option_at,
                Unsupported::ListenerOption {
                    field: field.into(),
                    instead: if field.starts_with("server_") || field.starts_with("mutual_tls_cert")
                    {
                        "certificates come from tls.certificateRefs and client CAs from \
                         frontendValidation.caCertificateRefs, as the ngrok operator requires"
                    } else {
                        "the options are min_version, max_version and \
                         mutual_tls_verification_strategy"
                    },
                },
            ));
        }
        synth.from(config_at.key(field), g, option_at);
        config.insert(field.to_owned(), value.clone());
    }
    Ok(Value::Object(config))
}

/// The HTTPRoutes attached to a listener, each with the host names it serves there.
fn attached_routes(
    m: &Manifests<'_>,
    g: usize,
    listener: &Listener,
    at: &FieldPath,
) -> Result<Vec<(usize, Vec<String>)>, ConfigError> {
    let gateway = &m.resources[g];
    let from = listener
        .allowed_routes
        .as_ref()
        .and_then(|a| a.pointer("/namespaces/from"))
        .and_then(Value::as_str)
        .unwrap_or("Same");
    if from != "Same" && from != "All" {
        return Err(gateway.error(
            &at.key("allowedRoutes"),
            Unsupported::NamespacesFrom { from: from.into() },
        ));
    }
    let mut out = Vec::new();
    for (r, route) in m.resources.iter().enumerate() {
        if !route.is(GATEWAY_GROUP, "HTTPRoute") {
            continue;
        }
        let spec: RouteSpec = route.spec()?;
        let attached = spec.parent_refs.iter().any(|p| {
            p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
                && p.name == gateway.name
                && p.namespace.as_deref().unwrap_or(&route.namespace) == gateway.namespace
                && p.section_name.as_deref().is_none_or(|s| s == listener.name)
                && p.port.is_none_or(|port| port == listener.port)
        });
        if !attached {
            continue;
        }
        if route.namespace != gateway.namespace && from == "Same" {
            return Err(route.error(
                &path(&["spec", "parentRefs"]),
                Reference::RouteNamespace {
                    gateway: gateway.label(),
                    listener: listener.name.clone(),
                },
            ));
        }
        let hosts = intersect(listener.hostname.as_deref(), &spec.hostnames);
        if hosts.is_empty() {
            if listener.hostname.is_none() && spec.hostnames.is_empty() {
                return Err(route.error(
                    &path(&["spec", "hostnames"]),
                    Missing::RouteHost {
                        listener: listener.name.clone(),
                        gateway: gateway.label(),
                    },
                ));
            }
            continue;
        }
        out.push((r, hosts));
    }
    Ok(out)
}

/// The host names both a listener and a route accept (Gateway API's hostname matching).
fn intersect(listener: Option<&str>, route: &[String]) -> Vec<String> {
    let covers = |pattern: &str, name: &str| match pattern.strip_prefix("*.") {
        Some(suffix) => name
            .strip_suffix(suffix)
            .is_some_and(|label| label.ends_with('.') && label.len() > 1),
        None => pattern == name,
    };
    let mut out: Vec<String> = Vec::new();
    let mut add = |h: &str| {
        let h = h.to_ascii_lowercase();
        if !out.contains(&h) {
            out.push(h);
        }
    };
    match listener {
        None => route.iter().for_each(|h| add(h)),
        Some(l) if route.is_empty() => add(l),
        Some(l) => {
            for h in route {
                if covers(l, h) || l == h {
                    add(h);
                } else if covers(h, l) {
                    add(l);
                }
            }
        }
    }
    out
}

/// Adds a route's paths and backend for `host`.
fn collect_route(
    m: &Manifests<'_>,
    r: usize,
    host: &str,
    hosts: &mut Vec<(String, Vec<PathMatch>, Backend)>,
) -> Result<(), ConfigError> {
    let route = &m.resources[r];
    let spec: RouteSpec = route.spec()?;
    for (n, rule) in spec.rules.iter().enumerate() {
        let rule_at = path(&["spec", "rules"]).index(n);
        if !rule.filters.is_empty() {
            return Err(route.error(&rule_at.key("filters"), Unsupported::RouteFilters));
        }
        let backend = match rule.backend_refs.as_slice() {
            [one] => one,
            [] => return Err(route.error(&rule_at, Missing::Needs("a backendRef"))),
            _ => {
                return Err(route.error(
                    &rule_at.key("backendRefs").index(1),
                    Unsupported::WeightedBackends,
                ))
            }
        };
        let backend_at = rule_at.key("backendRefs").index(0);
        if !backend.filters.is_empty() {
            return Err(route.error(&backend_at.key("filters"), Unsupported::RouteFilters));
        }
        if backend.weight == Some(0) {
            return Err(route.error(&backend_at.key("weight"), Conflict::ZeroWeight));
        }
        if backend.kind.as_deref().unwrap_or("Service") != "Service" {
            return Err(route.error(&backend_at.key("kind"), Reference::BackendKind));
        }
        let port = backend
            .port
            .ok_or_else(|| route.error(&backend_at, Missing::Needs("a port")))?;
        let namespace = backend.namespace.as_deref().unwrap_or(&route.namespace);
        // A Service manifest is not needed, but a grant for another namespace is.
        m.check_grant(r, &backend_at, ("", "Service"), namespace, &backend.name)?;
        let mut paths = Vec::new();
        if rule.matches.is_empty() {
            paths.push(PathMatch::Prefix(String::new()));
        }
        for (k, matched) in rule.matches.iter().enumerate() {
            let at = rule_at.key("matches").index(k);
            if !matched.headers.is_empty()
                || !matched.query_params.is_empty()
                || matched.method.is_some()
            {
                return Err(route.error(&at, Unsupported::RouteMatches));
            }
            let (kind, value) = match &matched.path {
                Some(p) => (
                    p.kind.as_deref().unwrap_or("PathPrefix"),
                    p.value.as_deref().unwrap_or("/"),
                ),
                None => ("PathPrefix", "/"),
            };
            let exact = match kind {
                "Exact" => true,
                "PathPrefix" => false,
                other => {
                    return Err(route.error(
                        &at.key("path").key("type"),
                        Unsupported::PathType {
                            found: other.into(),
                        },
                    ))
                }
            };
            paths.push(PathMatch::new(exact, value).map_err(|e| route.error(&at.key("path"), e))?);
        }
        let service = format!("{}.{namespace}", backend.name);
        match hosts.iter_mut().find(|(h, ..)| h == host) {
            None => hosts.push((
                host.to_owned(),
                paths,
                Backend {
                    route: r,
                    at: backend_at,
                    service,
                    port,
                },
            )),
            Some((_, existing_paths, existing)) => {
                if existing.service != service || existing.port != port {
                    return Err(route.error(
                        &backend_at,
                        ConfigErrorKind::HostHasService {
                            host: host.to_owned(),
                            service: existing.service.clone(),
                            port: existing.port,
                            instead: "host name",
                        },
                    ));
                }
                existing_paths.extend(paths);
            }
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendTlsSpec {
    validation: BackendValidation,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BackendValidation {
    #[serde(default)]
    ca_certificate_refs: Vec<ObjectRef>,
    #[serde(default)]
    well_known_ca_certificates: Option<String>,
    hostname: String,
    #[serde(default)]
    subject_alt_names: Vec<Value>,
}

/// The upstream for a Service (`name.namespace` and port) a route or Ingress forwards to:
/// `http://`, or `https://` when a BackendTLSPolicy targets the Service (its CAs and hostname
/// verify the upstream's certificate; without CAs, the system's roots).
pub(super) fn service_upstream(
    m: &Manifests<'_>,
    from: usize,
    at: &FieldPath,
    service: &str,
    port: u16,
    synth: &mut Synth,
) -> Result<Value, ConfigError> {
    let (name, namespace) = match service.split_once('.') {
        Some((name, namespace)) => (name, namespace),
        None => (service, m.resources[from].namespace.as_str()),
    };
    synth.from(FieldPath::root().key("upstream"), from, at.clone());
    let policy = m.resources.iter().enumerate().find(|(_, p)| {
        p.is(GATEWAY_GROUP, "BackendTLSPolicy")
            && p.namespace == namespace
            && p.value
                .pointer("/spec/targetRefs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|t| {
                    t.get("kind").and_then(Value::as_str) == Some("Service")
                        && t.get("name").and_then(Value::as_str) == Some(name)
                })
    });
    let Some((p, policy)) = policy else {
        return Ok(json!({"url": format!("http://{name}.{namespace}:{port}")}));
    };
    let spec: BackendTlsSpec = policy.spec()?;
    let validation_at = path(&["spec", "validation"]);
    if !spec.validation.subject_alt_names.is_empty() {
        return Err(policy.error(
            &validation_at.key("subjectAltNames"),
            Unsupported::SubjectAltNames,
        ));
    }
    let tls_at = FieldPath::root().key("upstream").key("tls");
    let mut tls = Map::new();
    tls.insert("server_name".into(), json!(spec.validation.hostname));
    synth.from(tls_at.key("server_name"), p, validation_at.key("hostname"));
    match (
        spec.validation.ca_certificate_refs.is_empty(),
        spec.validation.well_known_ca_certificates.as_deref(),
    ) {
        (false, None) => {
            let cas = m.ca_refs(
                p,
                &spec.validation.ca_certificate_refs,
                &validation_at.key("caCertificateRefs"),
                synth,
                &tls_at.key("certificate_authorities"),
            )?;
            tls.insert("certificate_authorities".into(), Value::Array(cas));
        }
        (true, Some("System")) => {}
        _ => return Err(policy.error(&validation_at, Missing::BackendAuthorities)),
    }
    Ok(json!({
        "url": format!("https://{name}.{namespace}:{port}"),
        "tls": Value::Object(tls),
    }))
}
