//! The `HTTPRoute`s attached to a Gateway listener: which routes a listener admits, the host
//! names they serve there, and the paths and backends of their rules.

use super::*;

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

/// The HTTPRoutes attached to a listener, each with the host names it serves there.
pub(super) fn attached_routes(
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
pub(super) fn collect_route(
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
