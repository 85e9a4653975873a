//! The layout the builders write, and values read back unchanged.

use yaml_rust2::YamlLoader;

use super::*;

fn parse(text: &str) -> Yaml {
    let mut docs = YamlLoader::load_from_str(text)
        .unwrap_or_else(|e| panic!("the emitted policy does not parse ({e}):\n{text}"));
    assert_eq!(docs.len(), 1, "{text}");
    docs.remove(0)
}

#[test]
fn the_seed_policy_keeps_the_hand_written_layout() {
    let yaml = crate::seed_policy("127.0.0.1:8443", "http://127.0.0.1:8080");
    assert_eq!(
        yaml,
        r#"endpoints:
  - url: "https://terminate-tls-example.ngrok.app"
    bind: "127.0.0.1:8443"
    upstream:
      url: "http://127.0.0.1:8080"
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: "1.3"
                max_version: "1.3"
                server_private_key: server.key
                server_certificate: server.crt
                mutual_tls_certificate_authorities:
                  - ca.crt
        - expressions:
            - "conn.tls.client.subject.common_name != 'ExampleClient'"
          actions:
            - type: deny
"#
    );
}

#[test]
fn values_that_plain_yaml_would_change_are_quoted_and_read_back_unchanged() {
    let awkward_dir = "/tmp/a dir: with #hash/and 'quotes\"";
    let cert = format!("{awkward_dir}/server.crt");
    let expression = "!('Engineering' in conn.tls.client.subject.organizational_unit)";
    let yaml = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("*.apps.example.com")
                .on_loopback(8443)
                .upstream(Upstream::new("http://127.0.0.1:8080").http2())
                .terminate_tls(
                    TerminateTls::files(&cert, "yes")
                        .min_version("1.3")
                        .session_lifetime("1h"),
                )
                .on_tcp_connect(
                    Rule::new()
                        .named("engineering only")
                        .when(expression)
                        .then(Action::deny()),
                )
                .on_http_request(Rule::new().then(Action::add_headers(&[
                    ("x-client-cn", "${conn.tls.client.subject.common_name}"),
                    ("x-null", "null"),
                    ("x-number", "018"),
                ]))),
        )
        .to_yaml();
    let doc = parse(&yaml);
    let endpoint = &doc["endpoints"][0];
    assert_eq!(endpoint["url"].as_str(), Some("https://*.apps.example.com"));
    assert_eq!(endpoint["bind"].as_str(), Some("127.0.0.1:8443"));
    assert_eq!(endpoint["upstream"]["protocol"].as_str(), Some("http2"));
    let tcp = &endpoint["traffic_policy"]["on_tcp_connect"];
    let config = &tcp[0]["actions"][0]["config"];
    assert_eq!(config["server_certificate"].as_str(), Some(cert.as_str()));
    assert_eq!(config["server_private_key"].as_str(), Some("yes"));
    // A version is a string: unquoted, 1.3 would be a float and the policy refuses it.
    assert_eq!(config["min_version"].as_str(), Some("1.3"), "{yaml}");
    assert!(yaml.contains("min_version: \"1.3\"\n"), "{yaml}");
    assert_eq!(tcp[1]["name"].as_str(), Some("engineering only"));
    assert_eq!(tcp[1]["expressions"][0].as_str(), Some(expression));
    let headers =
        &endpoint["traffic_policy"]["on_http_request"][0]["actions"][0]["config"]["headers"];
    assert_eq!(
        headers["x-client-cn"].as_str(),
        Some("${conn.tls.client.subject.common_name}")
    );
    assert_eq!(headers["x-null"].as_str(), Some("null"), "{yaml}");
    assert_eq!(headers["x-number"].as_str(), Some("018"), "{yaml}");
}

#[test]
fn inline_pem_round_trips_exactly() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n  indented\n-----END CERTIFICATE-----\n";
    let yaml = PolicyBuilder::new()
        .endpoint(
            Endpoint::tls("tcp.example.com")
                .upstream("tcp://127.0.0.1:9000")
                .terminate_tls(TerminateTls::new().inline_pem(pem, pem).client_ca_pem(pem)),
        )
        .to_yaml();
    let doc = parse(&yaml);
    let config =
        &doc["endpoints"][0]["traffic_policy"]["on_tcp_connect"][0]["actions"][0]["config"];
    assert_eq!(config["server_certificate"].as_str(), Some(pem));
    assert_eq!(config["server_private_key"].as_str(), Some(pem));
    assert_eq!(
        config["mutual_tls_certificate_authorities"][0].as_str(),
        Some(pem)
    );
}

#[test]
fn keys_keep_the_order_they_were_first_set_in() {
    let tls = TerminateTls::new()
        .server_private_key("a.key")
        .server_certificate("a.crt")
        .client_ca("one.crt")
        .server_private_key("b.key")
        .client_ca("two.crt");
    let yaml = emit(&tls.to_action());
    assert_eq!(
        yaml,
        "type: terminate-tls\nconfig:\n  server_private_key: b.key\n  server_certificate: \
             a.crt\n  mutual_tls_certificate_authorities:\n    - one.crt\n    - two.crt\n"
    );
}

#[test]
fn upstream_tls_listeners_and_every_action_are_written() {
    let yaml = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("front.test")
                .upstream(
                    Upstream::new("https://127.0.0.1:9443")
                        .proxy_protocol(2)
                        .tls(
                            UpstreamTls::new()
                                .server_name("inner.test")
                                .certificate_authority("ca.crt")
                                .client_certificate("client.crt", "client.key")
                                .pinned_certificate("server.crt"),
                        ),
                )
                .on_http_requests([
                    Rule::new()
                        .when("req.path == '/x'")
                        .then(Action::deny_with(403)),
                    Rule::new().then(
                        Action::custom_response(418, "short and stout").header("x-kind", "teapot"),
                    ),
                ]),
        )
        .proxy_protocol_listener("127.0.0.1:8443", &["10.0.0.0/8"])
        .to_yaml();
    assert_eq!(
        yaml,
        r#"endpoints:
  - url: "https://front.test"
    upstream:
      url: "https://127.0.0.1:9443"
      proxy_protocol: 2
      tls:
        server_name: inner.test
        certificate_authorities:
          - ca.crt
        client_certificate:
          certificate: client.crt
          private_key: client.key
        pinned_certificates:
          - server.crt
    traffic_policy:
      on_http_request:
        - expressions:
            - "req.path == '/x'"
          actions:
            - type: deny
              config:
                status_code: 403
        - actions:
            - type: custom-response
              config:
                status_code: 418
                body: short and stout
                headers:
                  x-kind: teapot
listeners:
  - bind: "127.0.0.1:8443"
    proxy_protocol:
      trusted_sources:
        - 10.0.0.0/8
"#
    );
    parse(&yaml);
}

#[test]
#[should_panic(expected = "a deny action has no headers")]
fn a_deny_with_a_header_is_a_mistake_in_the_test() {
    let _ = Action::deny().header("x", "y");
}
