//! Both seed walk-throughs on the native host, with certificates made by the seed's eight
//! openssl commands verbatim, the policies of `examples/native/`, and the seed's curl call.

// Helpers outside #[test] functions fail the test that called them by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod native_common;

use std::time::Duration;

use native_common::start_gate;
use tlsgate_e2e::{echo_upstream, free_port, repo_root, Curl};
use tlsgate_test_support::{
    seed_openssl_certs, Authority, Endpoint, PolicyBuilder, TerminateTls, Upstream, UpstreamTls,
    SEED_SERVER_NAME,
};

/// An example policy with its fixed loopback ports swapped for free ones.
fn example(name: &str, ports: &[(&str, String)]) -> String {
    let file = repo_root().join("examples/native").join(name);
    let mut text = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("reading {}: {e}", file.display()));
    for (from, to) in ports {
        assert!(text.contains(from), "{name} has no `{from}`");
        text = text.replace(from, to);
    }
    text
}

/// The seed's call: `curl --cert client.crt --key client.key --cacert ca.crt
/// https://terminate-tls-example.ngrok.app/hello`, on loopback.
fn seed_call(dir: &std::path::Path, port: u16) -> Curl {
    Curl::https(SEED_SERVER_NAME, port, "/hello")
        .client_cert(dir.join("client.crt"), dir.join("client.key"))
        .ca(dir.join("ca.crt"))
}

#[test]
fn seed_002_termination_walkthrough_with_the_seeds_openssl_certificates() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let upstream = echo_upstream();
    let port = free_port();
    let policy = example(
        "seed-termination.yaml",
        &[
            ("127.0.0.1:8443", format!("127.0.0.1:{port}")),
            ("http://127.0.0.1:8080", upstream.url()),
        ],
    );
    let _gate = start_gate(dir.path(), "seed-termination", &policy, &[]);

    // The seed's call, exactly: client certificate, key and CA.
    let ok = seed_call(dir.path(), port).run();
    assert_eq!(ok.status, Some(200), "{ok:?}");
    let seen = upstream
        .wait_for_requests(1, Duration::from_secs(5))
        .unwrap();
    let xfcc = seen[0]
        .header("x-forwarded-client-cert")
        .unwrap_or_default();
    assert!(xfcc.contains("Subject=\"CN=ExampleClient\""), "{xfcc}");

    // Without a client certificate: refused in the handshake, nothing forwarded.
    let none = Curl::https(SEED_SERVER_NAME, port, "/hello")
        .ca(dir.path().join("ca.crt"))
        .run();
    assert_eq!(none.status, None, "{none:?}");

    // TLS 1.2 against min_version 1.3.
    let old = seed_call(dir.path(), port).tls_max("1.2").run();
    assert_eq!(old.status, None, "{old:?}");
    assert!(old.stderr.contains("protocol version"), "{old:?}");
    assert_eq!(upstream.requests().len(), 1);
}

#[test]
fn seed_000_upstream_mtls_walkthrough_reaches_an_upstream_that_requires_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let echo = echo_upstream();
    let (front_port, upstream_port) = (free_port(), free_port());
    // The upstream of the seed: TLS with the seed's (v1) server.crt, client certificates
    // checked against ca.crt.
    let upstream_policy = example(
        "seed-upstream.yaml",
        &[
            ("127.0.0.1:9443", format!("127.0.0.1:{upstream_port}")),
            ("http://127.0.0.1:9080", echo.url()),
        ],
    );
    let _upstream = start_gate(dir.path(), "seed-upstream", &upstream_policy, &[]);
    let front_policy = example(
        "seed-mtls.yaml",
        &[
            ("127.0.0.1:8443", format!("127.0.0.1:{front_port}")),
            ("127.0.0.1:9443", format!("127.0.0.1:{upstream_port}")),
        ],
    );
    let front = start_gate(dir.path(), "seed-mtls", &front_policy, &[]);

    let ok = seed_call(dir.path(), front_port).run();
    assert_eq!(ok.status, Some(200), "{ok:?}\n{}", front.log());
    let seen = echo.wait_for_requests(1, Duration::from_secs(5)).unwrap();
    // The upstream verified tlsgate's client certificate (client.crt, CN=ExampleClient)...
    assert_eq!(
        seen[0].header("x-upstream-verified-client").as_deref(),
        Some("ExampleClient"),
        "{:?}",
        seen[0]
    );
    // ...and tlsgate told it who the original client was.
    assert_eq!(
        seen[0].header("x-client-cn").as_deref(),
        Some("ExampleClient")
    );
    assert!(
        front
            .log()
            .contains("accepting X.509 v1 upstream certificate"),
        "{}",
        front.log()
    );
}

#[test]
fn upstream_without_our_client_certificate_or_with_an_untrusted_certificate_answers_502() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let echo = echo_upstream();
    let upstream_port = free_port();
    let upstream_policy = example(
        "seed-upstream.yaml",
        &[
            ("127.0.0.1:9443", format!("127.0.0.1:{upstream_port}")),
            ("http://127.0.0.1:9080", echo.url()),
        ],
    );
    let _upstream = start_gate(dir.path(), "seed-upstream", &upstream_policy, &[]);

    // Two front endpoints: one presents no client certificate, one trusts another CA.
    let front_ca = Authority::root("Front CA");
    let other_ca = Authority::root("Other CA");
    let server = front_ca.server(&["nocert.test", "untrusted.test"]);
    let (server_crt, server_key) = server.write(dir.path(), "front");
    let (front_ca_crt, _) = front_ca.write(dir.path(), "front-ca");
    let (other_ca_crt, _) = other_ca.write(dir.path(), "other-ca");
    let ca = dir.path().join("ca.crt");
    let port = free_port();
    let endpoint = |host: &str, tls: UpstreamTls| {
        Endpoint::https(host)
            .on_loopback(port)
            .upstream(
                Upstream::new(format!("https://127.0.0.1:{upstream_port}"))
                    .tls(tls.server_name(SEED_SERVER_NAME)),
            )
            .terminate_tls(TerminateTls::files(&server_crt, &server_key))
    };
    let policy = PolicyBuilder::new()
        .endpoint(endpoint(
            "nocert.test",
            UpstreamTls::new()
                .certificate_authority(&ca)
                .pinned_certificate(dir.path().join("server.crt")),
        ))
        .endpoint(endpoint(
            "untrusted.test",
            UpstreamTls::new()
                .certificate_authority(&other_ca_crt)
                .client_certificate(dir.path().join("client.crt"), dir.path().join("client.key")),
        ))
        .to_yaml();
    let front = start_gate(dir.path(), "front", &policy, &[]);
    let call = |host: &str| Curl::https(host, port, "/").ca(&front_ca_crt).run();
    let refused = call("nocert.test");
    assert_eq!(refused.status, Some(502), "{refused:?}\n{}", front.log());
    let untrusted = call("untrusted.test");
    assert_eq!(
        untrusted.status,
        Some(502),
        "{untrusted:?}\n{}",
        front.log()
    );
    let log = front.log();
    assert!(log.contains("upstream_certificate_invalid"), "{log}");
    assert!(echo.requests().is_empty());
}
