//! AgentEndpoint and CloudEndpoint manifests: the seed loads as written, and their mistakes name
//! their line.

use super::*;

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
