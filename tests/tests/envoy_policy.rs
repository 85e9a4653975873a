//! Traffic-policy rules on real Envoy, with what only Envoy shows: the filter's counters for each
//! verdict. The verification strategies Envoy's TLS context cannot express alone are conformance
//! scenarios (tests/conformance/), played against both hosts.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use envoy_harness::{echoed_header, generate, get, ports, validate, Client, Envoy};
use tlsgate_e2e::echo_upstream;
use tlsgate_test_support::{Authority, LeafSpec};

#[test]
fn envoy_rules_on_certificate_fields_admit_one_client_and_deny_another() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Authority::root("Example Root");
    ca.write(d, "ca");
    ca.server(&["api.example.com"]).write(d, "server");
    let issue = |cn: &str, ou: &str| {
        let (cert, key) = ca
            .issue(&LeafSpec::client(cn).with_organizational_unit(ou))
            .write(d, cn);
        (cert, key)
    };
    let (alice_crt, alice_key) = issue("alice", "Engineering");
    let (bob_crt, bob_key) = issue("bob", "Engineering");
    let (mallory_crt, mallory_key) = issue("mallory", "Sales");
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let policy = format!(
        r#"endpoints:
  - url: https://api.example.com
    bind: 127.0.0.1:{port}
    upstream:
      url: {upstream}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
        - name: engineering only
          expressions: ["!('Engineering' in conn.tls.client.subject.organizational_unit)"]
          actions: [{{ type: deny }}]
      on_http_request:
        - expressions: ["req.path.startsWith('/admin') && conn.tls.client.subject.common_name != 'alice'"]
          actions: [{{ type: deny, config: {{ status_code: 403 }} }}]
        - expressions: ["req.path == '/teapot'"]
          actions:
            - type: custom-response
              config: {{ status_code: 418, body: "short and stout", headers: {{ x-kind: teapot }} }}
        - actions:
            - type: add-headers
              config:
                headers:
                  x-client-cn: "${{conn.tls.client.subject.common_name}}"
                  x-client-serial: "${{conn.tls.client.serial_number}}"
"#,
        upstream = upstream.url()
    );
    let config = generate(d, &policy, admin);
    validate(&config);
    let envoy = Envoy::start(&config, admin, &[port]);
    let ca_crt = d.join("ca.crt");
    let alice = Client {
        cert: &alice_crt,
        key: &alice_key,
    };
    let bob = Client {
        cert: &bob_crt,
        key: &bob_key,
    };
    let mallory = Client {
        cert: &mallory_crt,
        key: &mallory_key,
    };
    let host = "api.example.com";

    // on_tcp_connect: the OU rule closes mallory's connection before any request.
    let denied = get(host, port, "/", &ca_crt, Some(&mallory), &[]);
    assert_eq!(denied.status, None, "{denied:?}");
    let admitted = get(host, port, "/", &ca_crt, Some(&bob), &[]);
    assert_eq!(admitted.status, Some(200), "{admitted:?}");

    // on_http_request: a path rule on the certificate's CN.
    let alice_admin = get(host, port, "/admin", &ca_crt, Some(&alice), &[]);
    assert_eq!(alice_admin.status, Some(200), "{alice_admin:?}");
    let bob_admin = get(host, port, "/admin", &ca_crt, Some(&bob), &[]);
    assert_eq!(bob_admin.status, Some(403), "{bob_admin:?}");
    assert!(bob_admin.body.contains("policy_deny"), "{bob_admin:?}");

    let teapot = get(host, port, "/teapot", &ca_crt, Some(&bob), &[]);
    assert_eq!(teapot.status, Some(418), "{teapot:?}");
    assert_eq!(teapot.body, "short and stout");
    assert_eq!(teapot.header("x-kind"), Some("teapot"));

    // add-headers reach the upstream; identity headers a client sends do not.
    let spoofed = get(
        host,
        port,
        "/hello",
        &ca_crt,
        Some(&alice),
        &[
            "-H",
            "x-forwarded-client-cert: Hash=evil;Subject=\"CN=admin\"",
            "-H",
            "client-cert: :ZXZpbA==:",
            "-H",
            "client-cert-chain: :ZXZpbA==:",
            "-H",
            "x-tlsgate-endpoint: evil.example.com",
        ],
    );
    assert_eq!(spoofed.status, Some(200), "{spoofed:?}");
    assert_eq!(
        echoed_header(&spoofed, "x-client-cn").as_deref(),
        Some("alice")
    );
    assert!(echoed_header(&spoofed, "x-client-serial").is_some_and(|s| !s.is_empty()));
    let xfcc = echoed_header(&spoofed, "x-forwarded-client-cert").expect("xfcc");
    assert!(
        xfcc.contains("Subject=\"OU=Engineering,CN=alice\""),
        "{xfcc}"
    );
    assert!(!xfcc.contains("evil"), "{xfcc}");
    assert_eq!(echoed_header(&spoofed, "client-cert"), None, "{spoofed:?}");
    assert_eq!(
        echoed_header(&spoofed, "client-cert-chain"),
        None,
        "{spoofed:?}"
    );
    assert_eq!(
        echoed_header(&spoofed, "x-tlsgate-endpoint").as_deref(),
        Some("api.example.com")
    );

    // Nothing denied reached the upstream: bob's "/", alice's "/admin", alice's "/hello".
    let paths: Vec<String> = upstream.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/", "/admin", "/hello"]);

    let endpoint = ("endpoint", "https://api.example.com");
    assert_eq!(
        envoy.metric(
            "tlsgate_connections_total",
            &[endpoint, ("verdict", "deny"), ("reason", "policy_deny")]
        ),
        1,
        "{}",
        envoy.prometheus()
    );
    assert_eq!(
        envoy.metric(
            "tlsgate_http_requests_total",
            &[endpoint, ("verdict", "deny"), ("reason", "policy_deny")]
        ),
        1
    );
    assert_eq!(
        envoy.metric(
            "tlsgate_http_requests_total",
            &[
                endpoint,
                ("verdict", "respond"),
                ("reason", "custom_response")
            ]
        ),
        1
    );
}
