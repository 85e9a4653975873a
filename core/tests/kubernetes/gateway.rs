//! Gateway API: the seed Gateway and route, listener options, and reference grants across
//! namespaces.

use super::*;

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
