//! Manifest builders and loaders the Kubernetes tests share: Secrets, ConfigMaps, AgentEndpoints,
//! NgrokTrafficPolicies and Gateways.

use super::*;

pub(crate) const HOST: &str = "example-hostname.ngrok.io";

/// A PEM block as a YAML block scalar body, indented by `n`.
pub(crate) fn block(pem: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    pem.trim()
        .lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub(crate) fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `kubectl create secret tls NAME --cert --key --dry-run=client -o yaml`.
pub(crate) fn tls_secret(name: &str, namespace: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1
data:
  tls.crt: {}
  tls.key: {}
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
pub(crate) type: kubernetes.io/tls
",
        b64(cert),
        b64(key)
    )
}

/// `kubectl create configmap NAME --from-file=ca.crt --dry-run=client -o yaml`.
pub(crate) fn ca_configmap(name: &str, pem: &str) -> String {
    format!(
        "apiVersion: v1
data:
  ca.crt: |
{}
kind: ConfigMap
metadata:
  name: {name}
",
        block(pem, 4)
    )
}

/// The seed's terminate-tls block, with real material, indented to sit under `n` spaces.
pub(crate) fn seed_terminate_tls(f: &Fixture, n: usize) -> String {
    let pad = " ".repeat(n);
    format!(
        "{pad}on_tcp_connect:
{pad}  - actions:
{pad}      - type: terminate-tls
{pad}        config:
{pad}          min_version: \"1.3\"
{pad}          max_version: \"1.3\"
{pad}          server_private_key: |-
{}
{pad}          server_certificate: |-
{}
{pad}          mutual_tls_certificate_authorities:
{pad}            - |-
{}
",
        block(&f.server.key_pem, n + 12),
        block(&f.server.cert_pem, n + 12),
        block(&f.ca.cert_pem(), n + 14),
    )
}

pub(crate) fn deployment() -> Deployment {
    Deployment {
        listen: vec!["443=127.0.0.1:8443".parse().unwrap()],
        resolve: vec![
            "my-service.my-namespace:8080=127.0.0.1:9000"
                .parse()
                .unwrap(),
            "example-service:80=127.0.0.1:9001".parse().unwrap(),
        ],
    }
}

/// Writes `files` into the fixture's directory and loads them (the directory itself when
/// `files` has more than one entry, as `kubectl apply -f DIR` would).
pub(crate) fn load(f: &Fixture, files: &[(&str, String)]) -> Result<Config, String> {
    load_typed(f, files).map_err(|e| e.to_string())
}

pub(crate) fn load_typed(f: &Fixture, files: &[(&str, String)]) -> Result<Config, ConfigError> {
    let dir = f.path().join("manifests");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let paths: Vec<PathBuf> = if files.len() == 1 {
        vec![dir.join(files[0].0)]
    } else {
        vec![dir]
    };
    let keys = f.keys();
    Config::load_files(&paths, KeyMode::Load(&keys), &deployment())
}

/// The error inside the resource it names (`Kind namespace/name: …`).
pub(crate) fn in_resource(error: &ConfigError) -> &ConfigErrorKind {
    match &*error.kind {
        ConfigErrorKind::InResource { inner, .. } => inner,
        other => panic!("not inside a resource: {other:?}"),
    }
}

pub(crate) fn agent_endpoint(f: &Fixture) -> String {
    format!(
        "apiVersion: ngrok.k8s.ngrok.com/v1alpha1
kind: AgentEndpoint
metadata:
  name: example-agent-endpoint
spec:
  url: https://{HOST}
  upstream:
    url: http://my-service.my-namespace:8080
  trafficPolicy:
    inline:
{}",
        seed_terminate_tls(f, 6)
    )
}

pub(crate) fn traffic_policy(f: &Fixture, name: &str) -> String {
    format!(
        "apiVersion: ngrok.k8s.ngrok.com/v1alpha1
kind: NgrokTrafficPolicy
metadata:
  name: {name}
  namespace: default
spec:
  policy:
{}",
        seed_terminate_tls(f, 4)
    )
}

pub(crate) fn gateway(options: &str, secret_ref: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: example-gateway
  namespace: default
spec:
  gatewayClassName: ngrok
  listeners:
  - name: example
    hostname: \"{HOST}\"
    port: 443
    protocol: HTTPS
    tls:
      mode: Terminate
      certificateRefs:
      - kind: Secret
{secret_ref}
      frontendValidation:
        caCertificateRefs:
        - kind: ConfigMap
          name: ca-cert-config
      options:
{options}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: example-route
  namespace: default
spec:
  hostnames:
  - {HOST}
  parentRefs:
  - group: gateway.networking.k8s.io
    kind: Gateway
    name: example-gateway
    namespace: default
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /
    backendRefs:
    - group: \"\"
      kind: Service
      name: example-service
      port: 80
      weight: 1
"
    )
}

pub(crate) const SEED_OPTIONS: &str = "        \"k8s.ngrok.com/terminate-tls.min_version\": \"1.2\"
        \"k8s.ngrok.com/terminate-tls.max_version\": \"1.3\"
        \"k8s.ngrok.com/terminate-tls.mutual_tls_verification_strategy\": \"require-and-verify\"";

pub(crate) fn gateway_files(
    f: &Fixture,
    options: &str,
    secret_ref: &str,
) -> Vec<(&'static str, String)> {
    vec![
        (
            "1-secret.yaml",
            tls_secret(
                "server-cert-secret",
                "default",
                &f.server.cert_pem,
                &f.server.key_pem,
            ),
        ),
        (
            "2-configmap.yaml",
            ca_configmap("ca-cert-config", &f.ca.cert_pem()),
        ),
        ("3-gateway.yaml", gateway(options, secret_ref)),
    ]
}
