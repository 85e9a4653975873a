//! `BackendTLSPolicy`: the upstream for a Service a route or Ingress forwards to, with TLS when
//! a policy targets the Service.

use super::*;

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
pub(in crate::kube) fn service_upstream(
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
