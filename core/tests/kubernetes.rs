//! The seeds' Kubernetes manifests load into the same model a policy file does, and their
//! mistakes are reported at the manifest's file, line and field.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::PathBuf;

use base64::Engine as _;
use support::Fixture;
use tlsgate_core::config::{ClientAuth, UpstreamScheme, VerificationStrategy};
use tlsgate_core::error::{ForwardInternal, Reference, Unsupported};
use tlsgate_core::facts::TlsVersion;
use tlsgate_core::{Config, ConfigError, ConfigErrorKind, Deployment, KeyMode};

const HOST: &str = "example-hostname.ngrok.io";

/// A PEM block as a YAML block scalar body, indented by `n`.
fn block(pem: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    pem.trim()
        .lines()
        .map(|l| format!("{pad}{l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// `kubectl create secret tls NAME --cert --key --dry-run=client -o yaml`.
fn tls_secret(name: &str, namespace: &str, cert: &str, key: &str) -> String {
    format!(
        "apiVersion: v1
data:
  tls.crt: {}
  tls.key: {}
kind: Secret
metadata:
  name: {name}
  namespace: {namespace}
type: kubernetes.io/tls
",
        b64(cert),
        b64(key)
    )
}

/// `kubectl create configmap NAME --from-file=ca.crt --dry-run=client -o yaml`.
fn ca_configmap(name: &str, pem: &str) -> String {
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
fn seed_terminate_tls(f: &Fixture, n: usize) -> String {
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

fn deployment() -> Deployment {
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
fn load(f: &Fixture, files: &[(&str, String)]) -> Result<Config, String> {
    load_typed(f, files).map_err(|e| e.to_string())
}

fn load_typed(f: &Fixture, files: &[(&str, String)]) -> Result<Config, ConfigError> {
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
fn in_resource(error: &ConfigError) -> &ConfigErrorKind {
    match &*error.kind {
        ConfigErrorKind::InResource { inner, .. } => inner,
        other => panic!("not inside a resource: {other:?}"),
    }
}

fn agent_endpoint(f: &Fixture) -> String {
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

#[test]
fn the_seed_agent_endpoint_loads_as_written() {
    let f = Fixture::new(HOST);
    let config = load(&f, &[("agent.yaml", agent_endpoint(&f))]).expect("loads");
    let [endpoint] = config.endpoints.as_slice() else {
        panic!("one endpoint")
    };
    assert_eq!(endpoint.host.to_string(), HOST);
    assert_eq!(
        endpoint.bind.to_string(),
        "127.0.0.1:8443",
        "--listen 443=…"
    );
    assert_eq!(endpoint.tls.min_version, TlsVersion::Tls13);
    assert_eq!(endpoint.tls.max_version, TlsVersion::Tls13);
    assert!(matches!(
        endpoint.tls.client_auth,
        ClientAuth::On {
            strategy: VerificationStrategy::RequireAndVerify,
            ..
        }
    ));
    assert_eq!(endpoint.upstream.host, "my-service.my-namespace");
    assert_eq!(
        endpoint.upstream.address.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9000"),
        "--resolve gives the address, the name stays"
    );
    assert!(endpoint.origin[0].starts_with("AgentEndpoint default/example-agent-endpoint"));
}

#[test]
fn proxy_protocol_version_becomes_the_upstreams_header_and_a_bad_one_names_its_line() {
    let f = Fixture::new(HOST);
    let with = |version: &str| {
        agent_endpoint(&f).replace(
            "    url: http://my-service.my-namespace:8080\n",
            &format!(
                "    url: http://my-service.my-namespace:8080\n    proxyProtocolVersion: {version}\n"
            ),
        )
    };
    let config = load(&f, &[("agent.yaml", with("\"2\""))]).expect("loads");
    let version = config.endpoints[0].upstream.proxy_protocol;
    assert_eq!(version.map(|v| v.as_str()), Some("2"));
    let error = load(&f, &[("agent.yaml", with("\"3\""))]).expect_err("no version 3");
    assert!(
        error.contains("agent.yaml:9:") && error.contains("spec.upstream.proxyProtocolVersion"),
        "{error}"
    );
}

#[test]
fn an_error_inside_an_inline_policy_names_the_manifest_line() {
    let f = Fixture::new(HOST);
    let manifest = agent_endpoint(&f).replace("min_version: \"1.3\"", "min_version: \"1.1\"");
    let line = manifest
        .lines()
        .position(|l| l.contains("min_version"))
        .unwrap()
        + 1;
    let error = load(&f, &[("agent.yaml", manifest)]).expect_err("TLS 1.1");
    assert!(
        error.contains(&format!("agent.yaml:{line}:")),
        "names the line: {error}"
    );
    assert!(
        error.contains("spec.trafficPolicy.inline.on_tcp_connect[0].actions[0].config.min_version"),
        "{error}"
    );
    assert!(
        error.contains("AgentEndpoint default/example-agent-endpoint"),
        "{error}"
    );
}

#[test]
fn a_cloud_endpoint_without_an_upstream_is_refused_and_forward_internal_gives_one() {
    let f = Fixture::new(HOST);
    let cloud = format!(
        "apiVersion: ngrok.k8s.ngrok.com/v1alpha1
kind: CloudEndpoint
metadata:
  name: example-cloud-endpoint
spec:
  url: https://{HOST}
  trafficPolicy:
    policy:
{}",
        seed_terminate_tls(&f, 6)
    );
    let error = load_typed(&f, &[("cloud.yaml", cloud.clone())]).expect_err("no upstream");
    assert!(
        matches!(
            in_resource(&error),
            ConfigErrorKind::ForwardInternal(ForwardInternal::Absent)
        ),
        "{error:?}"
    );
    let error = error.to_string();
    assert!(error.contains("forward-internal"), "{error}");
    assert!(error.contains("cloud.yaml:"), "{error}");

    let forwarded = format!(
        "{cloud}      on_http_request:
        - actions:
            - type: forward-internal
              config:
                url: https://api.internal
---
apiVersion: ngrok.k8s.ngrok.com/v1alpha1
kind: AgentEndpoint
metadata:
  name: api
spec:
  url: https://api.internal
  upstream:
    url: https://my-service.my-namespace:8443
  clientCertificateRefs:
    - name: client-cert
---
{}",
        tls_secret(
            "client-cert",
            "default",
            &f.client.cert_pem,
            &f.client.key_pem
        )
    );
    let config = load(&f, &[("cloud.yaml", forwarded)]).expect("loads");
    let [endpoint] = config.endpoints.as_slice() else {
        panic!("the internal AgentEndpoint is not an endpoint of its own")
    };
    assert_eq!(endpoint.upstream.scheme, UpstreamScheme::Https);
    let tls = endpoint.upstream.tls.as_ref().expect("upstream tls");
    assert!(tls.client_certificate.is_some(), "clientCertificateRefs");
    assert!(
        endpoint.http_rules.is_empty(),
        "forward-internal is routing"
    );
}

fn traffic_policy(f: &Fixture, name: &str) -> String {
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

fn ingress(annotations: &str, path: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  annotations:
{annotations}
  name: example-ingress
  namespace: default
spec:
  ingressClassName: ngrok
  rules:
    - host: {HOST}
      http:
        paths:
          - path: {path}
            pathType: Prefix
            backend:
              service:
                name: example-service
                port:
                  number: 80
"
    )
}

#[test]
fn an_ingress_takes_its_policy_from_the_annotation_and_the_newer_one_wins() {
    let f = Fixture::new(HOST);
    let files = [
        ("policy.yaml", traffic_policy(&f, "example-tp")),
        (
            "ingress.yaml",
            ingress(
                "    k8s.ngrok.com/traffic-policy: missing-tp\n    ngrok.com/traffic-policy: example-tp",
                "/",
            ),
        ),
    ];
    let config = load(&f, &files).expect("loads");
    let [endpoint] = config.endpoints.as_slice() else {
        panic!("one endpoint")
    };
    assert_eq!(endpoint.upstream.host, "example-service.default");
    assert_eq!(
        endpoint.upstream.address.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:9001"),
        "--resolve example-service:80 matches the Service in namespace default"
    );
    assert!(
        endpoint.http_rules.is_empty(),
        "path / serves everything: no routing rule"
    );
}

#[test]
fn an_ingress_path_becomes_a_404_for_other_paths() {
    let f = Fixture::new(HOST);
    let files = [
        ("policy.yaml", traffic_policy(&f, "example-tp")),
        (
            "ingress.yaml",
            ingress("    k8s.ngrok.com/traffic-policy: example-tp", "/api"),
        ),
    ];
    let config = load(&f, &files).expect("loads");
    let rule = &config.endpoints[0].http_rules[0];
    assert_eq!(rule.expressions.len(), 1);
    assert!(
        format!("{:?}", rule.actions).contains("404"),
        "{:?}",
        rule.actions
    );
}

#[test]
fn a_missing_traffic_policy_names_the_ingress_file_and_line() {
    let f = Fixture::new(HOST);
    let text = ingress("    k8s.ngrok.com/traffic-policy: example-tp", "/");
    let error = load_typed(&f, &[("ingress.yaml", text)]).expect_err("no policy");
    match in_resource(&error) {
        ConfigErrorKind::Reference(Reference::NotFound {
            kind,
            namespace,
            name,
            ..
        }) => {
            assert_eq!(*kind, "NgrokTrafficPolicy");
            assert_eq!(*namespace, "default");
            assert_eq!(*name, "example-tp");
        }
        other => panic!("{other:?}"),
    }
    let error = error.to_string();
    assert!(
        error.contains("ingress.yaml:5:"),
        "the annotation's line: {error}"
    );
    assert!(
        error.contains("NgrokTrafficPolicy default/example-tp, which is not in the files given"),
        "{error}"
    );
}

fn gateway(options: &str, secret_ref: &str) -> String {
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

const SEED_OPTIONS: &str = "        \"k8s.ngrok.com/terminate-tls.min_version\": \"1.2\"
        \"k8s.ngrok.com/terminate-tls.max_version\": \"1.3\"
        \"k8s.ngrok.com/terminate-tls.mutual_tls_verification_strategy\": \"require-and-verify\"";

fn gateway_files(f: &Fixture, options: &str, secret_ref: &str) -> Vec<(&'static str, String)> {
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

#[test]
fn the_seed_gateway_and_route_load_with_secret_and_configmap() {
    let f = Fixture::new(HOST);
    let files = gateway_files(&f, SEED_OPTIONS, "        name: server-cert-secret");
    let config = load(&f, &files).expect("loads");
    let [endpoint] = config.endpoints.as_slice() else {
        panic!("one endpoint")
    };
    assert_eq!(endpoint.tls.min_version, TlsVersion::Tls12);
    assert_eq!(endpoint.bind.to_string(), "127.0.0.1:8443");
    assert!(matches!(endpoint.tls.client_auth, ClientAuth::On { .. }));
    assert_eq!(endpoint.upstream.url, "http://example-service.default:80");
    let origin = endpoint.origin.join("; ");
    for part in [
        "Gateway default/example-gateway",
        "Secret default/server-cert-secret",
        "ConfigMap default/ca-cert-config",
        "HTTPRoute default/example-route",
    ] {
        assert!(origin.contains(part), "{part} in {origin}");
    }
}

#[test]
fn a_listener_option_may_not_carry_a_certificate() {
    let f = Fixture::new(HOST);
    let options = "        \"k8s.ngrok.com/terminate-tls.server_certificate\": \"x\"";
    let files = gateway_files(&f, options, "        name: server-cert-secret");
    let error = load_typed(&f, &files).expect_err("certificate in options");
    assert!(
        matches!(
            in_resource(&error),
            ConfigErrorKind::Unsupported(Unsupported::ListenerOption { field, .. })
                if *field == "server_certificate"
        ),
        "{error:?}"
    );
    let error = error.to_string();
    assert!(error.contains("certificateRefs"), "{error}");
    assert!(error.contains("3-gateway.yaml:"), "{error}");
}

#[test]
fn a_secret_in_another_namespace_needs_a_reference_grant() {
    let f = Fixture::new(HOST);
    let mut files = gateway_files(
        &f,
        SEED_OPTIONS,
        "        name: server-cert-secret\n        namespace: certs",
    );
    files[0].1 = tls_secret(
        "server-cert-secret",
        "certs",
        &f.server.cert_pem,
        &f.server.key_pem,
    );
    let error = load_typed(&f, &files).expect_err("no grant");
    assert!(
        matches!(
            in_resource(&error),
            ConfigErrorKind::Reference(Reference::NotGranted { kind, namespace, from_kind, .. })
                if *kind == "Secret" && *namespace == "certs" && from_kind == "Gateway"
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("ReferenceGrant"), "{error}");

    files.push((
        "4-grant.yaml",
        "apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata:
  name: gateways-read-certs
  namespace: certs
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: Gateway
    namespace: default
  to:
  - group: \"\"
    kind: Secret
"
        .to_owned(),
    ));
    load(&f, &files).expect("the grant allows it");
}

#[test]
fn a_list_and_other_kinds_load_with_a_note_for_what_is_skipped() {
    let f = Fixture::new(HOST);
    let list = format!(
        "apiVersion: v1
kind: List
items:
- apiVersion: apps/v1
  kind: Deployment
  metadata:
    name: web
- {}",
        agent_endpoint(&f).lines().collect::<Vec<_>>().join("\n  ")
    );
    let config = load(&f, &[("list.yaml", list)]).expect("loads");
    assert_eq!(config.endpoints.len(), 1);
    assert!(
        config
            .notes
            .iter()
            .any(|n| n.contains("skipped Deployment default/web")),
        "{:?}",
        config.notes
    );
}

#[test]
fn a_backend_tls_policy_makes_the_upstream_https_with_its_name_and_cas() {
    let f = Fixture::new(HOST);
    let mut files = gateway_files(&f, SEED_OPTIONS, "        name: server-cert-secret");
    files.push((
        "4-backend-tls.yaml",
        "apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata:
  name: example-service-tls
spec:
  targetRefs:
  - group: \"\"
    kind: Service
    name: example-service
  validation:
    caCertificateRefs:
    - group: \"\"
      kind: ConfigMap
      name: ca-cert-config
    hostname: upstream.internal.example
"
        .to_owned(),
    ));
    let config = load(&f, &files).expect("loads");
    let upstream = &config.endpoints[0].upstream;
    assert_eq!(upstream.scheme, UpstreamScheme::Https);
    let tls = upstream.tls.as_ref().expect("tls");
    assert_eq!(tls.server_name, "upstream.internal.example");
    assert!(tls.authorities.is_some());
}

#[test]
fn what_tlsgate_cannot_enforce_is_refused_not_dropped() {
    let f = Fixture::new(HOST);
    // Per-port client certificate validation: dropping it would turn mTLS off for that port.
    let mut files = gateway_files(&f, SEED_OPTIONS, "        name: server-cert-secret");
    files[2].1 = files[2].1.replace(
        "  gatewayClassName: ngrok\n",
        "  gatewayClassName: ngrok\n  tls:\n    frontend:\n      perPort:\n      - port: 443\n",
    );
    let error = load_typed(&f, &files).expect_err("perPort");
    assert_eq!(
        in_resource(&error),
        &ConfigErrorKind::Unsupported(Unsupported::PerPortValidation)
    );
    assert!(
        error.to_string().contains("spec.tls.frontend.perPort"),
        "{error}"
    );

    // A backend's own filters, like a rule's.
    let mut files = gateway_files(&f, SEED_OPTIONS, "        name: server-cert-secret");
    files[2].1 = files[2].1.replace(
        "      weight: 1\n",
        "      weight: 1\n      filters:\n      - type: RequestHeaderModifier\n",
    );
    let error = load_typed(&f, &files).expect_err("backend filters");
    assert_eq!(
        in_resource(&error),
        &ConfigErrorKind::Unsupported(Unsupported::RouteFilters)
    );
    assert!(
        error.to_string().contains("backendRefs[0].filters"),
        "{error}"
    );

    // A policy in another namespace, like any cross-namespace reference, needs a grant.
    let f = Fixture::new(HOST);
    let agent = agent_endpoint(&f);
    let start = agent.find("  trafficPolicy:").unwrap();
    let by_ref = format!(
        "{}  trafficPolicy:\n    targetRef:\n      name: example-tp\n      namespace: policies\n",
        &agent[..start]
    );
    let policy =
        traffic_policy(&f, "example-tp").replace("namespace: default", "namespace: policies");
    let error = load(&f, &[("a.yaml", by_ref), ("b.yaml", policy)]).expect_err("no grant");
    assert!(error.contains("ReferenceGrant"), "{error}");
}

#[test]
fn resources_of_another_class_are_someone_elses() {
    let f = Fixture::new(HOST);
    let mut files = gateway_files(&f, SEED_OPTIONS, "        name: server-cert-secret");
    files[2].1 = files[2]
        .1
        .replace("gatewayClassName: ngrok", "gatewayClassName: istio");
    let error = load_typed(&f, &files).expect_err("nothing left to serve");
    assert!(
        matches!(
            &*error.kind,
            ConfigErrorKind::NoManifestEndpoints { skipped } if skipped.len() == 1
        ),
        "{error:?}"
    );
    let error = error.to_string();
    assert!(
        error.contains("describe no endpoint") && error.contains("gatewayClassName is istio"),
        "the error says what was skipped: {error}"
    );
    files.push(("4-agent.yaml", agent_endpoint(&f)));
    let config = load(&f, &files).expect("the AgentEndpoint still loads");
    assert_eq!(config.endpoints.len(), 1);
    assert!(
        config
            .notes
            .iter()
            .any(|n| n.contains("gatewayClassName is istio")),
        "{:?}",
        config.notes
    );
}
