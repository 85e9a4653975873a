//! The HTTP filter builds a connection's session once and reuses it for every request on that
//! connection (keyed by Envoy's `connection.id`), instead of re-reading attributes and
//! re-parsing the client certificate per request.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use envoy_harness::{generate, ports, Envoy};
use tlsgate_e2e::{echo_upstream, Curl};
use tlsgate_test_support::{Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls};

#[test]
fn requests_on_one_connection_share_its_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::root("CA");
    ca.server(&["app.example.com"]).write(dir.path(), "server");
    ca.client("alice").write(dir.path(), "client");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write");
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("app.example.com")
                .on_loopback(port)
                .upstream(upstream.url())
                .terminate_tls(TerminateTls::files("server.crt", "server.key").client_ca("ca.crt"))
                .on_http_request(Rule::new().then(Action::add_headers(&[(
                    "x-cn",
                    "${conn.tls.client.subject.common_name}",
                )]))),
        )
        .to_yaml();
    let config = generate(dir.path(), &policy, admin);
    let envoy = Envoy::start(&config, admin, &[port]);
    let url = |p: &str| format!("https://app.example.com:{port}{p}");
    // One curl, three URLs: curl reuses the connection.
    let res = Curl::https("app.example.com", port, "/a")
        .then_url(url("/b"))
        .then_url(url("/c"))
        .ca(dir.path().join("ca.crt"))
        .client_cert(dir.path().join("client.crt"), dir.path().join("client.key"))
        .run();
    // Judge by curl's exit code and by what arrived, not by the last status alone.
    assert_eq!(res.exit_code, 0, "{res:?}\n{}", envoy.proc.log());
    let seen = upstream.requests();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter()
            .all(|r| r.header("x-cn").as_deref() == Some("alice")),
        "{seen:?}"
    );
    assert_eq!(
        envoy.counter("wasmcustom.tlsgate.http.session_cache.miss"),
        1,
        "{}",
        envoy.stats()
    );
    assert_eq!(
        envoy.counter("wasmcustom.tlsgate.http.session_cache.hit"),
        2,
        "{}",
        envoy.stats()
    );
}
