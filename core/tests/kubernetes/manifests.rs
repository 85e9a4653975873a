//! Manifests beyond one kind: lists and skipped kinds, BackendTLSPolicy, what tlsgate cannot
//! enforce, other classes.

use super::*;

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
