//! Ingresses: the policy from the annotation, paths, and a missing traffic policy.

use super::*;

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
