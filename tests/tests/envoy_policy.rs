//! Traffic-policy rules on real Envoy, with what only Envoy shows: the filter's counters for each
//! verdict. The verification strategies Envoy's TLS context cannot express alone are conformance
//! scenarios (tests/conformance/), played against both hosts.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use std::path::PathBuf;

use envoy_harness::{echoed_header, generate, ports, validate, Envoy};
use tlsgate_e2e::{echo_upstream, Curl};
use tlsgate_test_support::{
    Action, Authority, Endpoint, LeafSpec, PolicyBuilder, Rule, TerminateTls,
};

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
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("api.example.com")
                .on_loopback(port)
                .upstream(upstream.url())
                .terminate_tls(TerminateTls::files("server.crt", "server.key").client_ca("ca.crt"))
                .on_tcp_connect(
                    Rule::new()
                        .named("engineering only")
                        .when("!('Engineering' in conn.tls.client.subject.organizational_unit)")
                        .then(Action::deny()),
                )
                .on_http_requests([
                    Rule::new()
                        .when(
                            "req.path.startsWith('/admin') && \
                             conn.tls.client.subject.common_name != 'alice'",
                        )
                        .then(Action::deny_with(403)),
                    Rule::new().when("req.path == '/teapot'").then(
                        Action::custom_response(418, "short and stout").header("x-kind", "teapot"),
                    ),
                    Rule::new().then(Action::add_headers(&[
                        ("x-client-cn", "${conn.tls.client.subject.common_name}"),
                        ("x-client-serial", "${conn.tls.client.serial_number}"),
                    ])),
                ]),
        )
        .to_yaml();
    let config = generate(d, &policy, admin);
    validate(&config);
    let envoy = Envoy::start(&config, admin, &[port]);
    let alice = Some((&alice_crt, &alice_key));
    let bob = Some((&bob_crt, &bob_key));
    let mallory = Some((&mallory_crt, &mallory_key));
    let get = |path: &str, client: Option<(&PathBuf, &PathBuf)>| {
        Curl::https("api.example.com", port, path)
            .ca(d.join("ca.crt"))
            .client_cert_if(client)
    };

    // on_tcp_connect: the OU rule closes mallory's connection before any request.
    let denied = get("/", mallory).run();
    assert_eq!(denied.status, None, "{denied:?}");
    let admitted = get("/", bob).run();
    assert_eq!(admitted.status, Some(200), "{admitted:?}");

    // on_http_request: a path rule on the certificate's CN.
    let alice_admin = get("/admin", alice).run();
    assert_eq!(alice_admin.status, Some(200), "{alice_admin:?}");
    let bob_admin = get("/admin", bob).run();
    assert_eq!(bob_admin.status, Some(403), "{bob_admin:?}");
    assert!(bob_admin.body.contains("policy_deny"), "{bob_admin:?}");

    let teapot = get("/teapot", bob).run();
    assert_eq!(teapot.status, Some(418), "{teapot:?}");
    assert_eq!(teapot.body, "short and stout");
    assert_eq!(teapot.header("x-kind"), Some("teapot"));

    // add-headers reach the upstream; identity headers a client sends do not.
    let spoofed = get("/hello", alice)
        .header("x-forwarded-client-cert: Hash=evil;Subject=\"CN=admin\"")
        .header("client-cert: :ZXZpbA==:")
        .header("client-cert-chain: :ZXZpbA==:")
        .header("x-tlsgate-endpoint: evil.example.com")
        .run();
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
