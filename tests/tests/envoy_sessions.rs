//! The HTTP filter builds a connection's session once and reuses it for every request on that
//! connection (keyed by Envoy's `connection.id`), instead of re-reading attributes and
//! re-parsing the client certificate per request.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use envoy_harness::{generate, ports, Envoy};
use tlsgate_e2e::{curl, echo_upstream};
use tlsgate_test_support::Authority;

#[test]
fn requests_on_one_connection_share_its_session() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::root("CA");
    ca.server(&["app.example.com"]).write(dir.path(), "server");
    ca.client("alice").write(dir.path(), "client");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write");
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let policy = format!(
        "endpoints:
  - url: https://app.example.com
    bind: 127.0.0.1:{port}
    upstream: {{ url: '{}' }}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
      on_http_request:
        - actions: [{{ type: add-headers, config: {{ headers: {{ x-cn: '${{conn.tls.client.subject.common_name}}' }} }} }}]
",
        upstream.url()
    );
    let config = generate(dir.path(), &policy, admin);
    let envoy = Envoy::start(&config, admin, &[port]);
    let dir_path = |f: &str| dir.path().join(f).display().to_string();
    let url = |p: &str| format!("https://app.example.com:{port}{p}");
    let (ca_file, cert, key) = (
        dir_path("ca.crt"),
        dir_path("client.crt"),
        dir_path("client.key"),
    );
    let resolve = format!("app.example.com:{port}:127.0.0.1");
    let (a, b, c) = (url("/a"), url("/b"), url("/c"));
    // One curl, three URLs: curl reuses the connection.
    let res = curl(&[
        "--resolve",
        &resolve,
        "--cacert",
        &ca_file,
        "--cert",
        &cert,
        "--key",
        &key,
        &a,
        &b,
        &c,
    ]);
    // (curl prints one status per URL, so judge by its exit code and by what arrived.)
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
