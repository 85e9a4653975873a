//! Gateway API: a `Gateway`'s HTTPS listeners and the `HTTPRoute`s attached to them, with
//! `BackendTLSPolicy` for upstreams that speak TLS.

use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::ingress::append_rule;
use super::*;
use crate::error::{Conflict, Unsupported};

mod backend_tls;
mod routes;

pub(super) use backend_tls::service_upstream;
use routes::{attached_routes, collect_route};

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
