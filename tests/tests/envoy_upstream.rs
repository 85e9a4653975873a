//! The upstream side on real Envoy: re-encryption with a client certificate (the seed's
//! "Upstream TLS and mTLS" walk-through, with its openssl-made certificates), and a tls://
//! endpoint proxying bytes with tcp_proxy.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use std::process::Command;
use std::time::Duration;

use envoy_harness::{generate, ports, validate, Envoy};
use tlsgate_e2e::{echo_upstream, free_port, tool, wait_port, Curl, Proc};
use tlsgate_test_support::{
    seed_openssl_certs, Authority, Endpoint, PolicyBuilder, TerminateTls, Upstream, UpstreamTls,
    SEED_SERVER_NAME,
};

#[test]
fn envoy_presents_the_configured_client_certificate_to_the_upstream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // The upstream of the seed document: server.crt/server.key to terminate TLS (an X.509 v1
    // certificate without SANs) and ca.crt to require client certificates.
    seed_openssl_certs(d).expect("the seed's openssl commands");
    let upstream_port = free_port();
    let mut s_server = Command::new(tool("openssl"));
    s_server
        .arg("s_server")
        .arg("-accept")
        .arg(format!("127.0.0.1:{upstream_port}"))
        .args(["-cert", "server.crt", "-key", "server.key"])
        .args(["-CAfile", "ca.crt", "-Verify", "1", "-www", "-quiet"])
        .current_dir(d);
    let upstream = Proc::spawn("openssl-s_server", s_server);
    wait_port(
        ([127, 0, 0, 1], upstream_port).into(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", upstream.log()));

    // The edge's own certificates (rcgen), distinct from the upstream's CA.
    let edge_ca = Authority::root("Edge CA");
    edge_ca.write(d, "edge-ca");
    edge_ca
        .server(&["gw.example.com", "anon.example.com", "tcp.example.com"])
        .write(d, "edge");
    let echo = echo_upstream();
    let (port, admin) = ports();
    let tcp_port = free_port();
    let edge_tls = || TerminateTls::files("edge.crt", "edge.key");
    let https_endpoint = |host: &str, client_certificate: bool| {
        let mut tls = UpstreamTls::new();
        if client_certificate {
            tls = tls.client_certificate("client.crt", "client.key");
        }
        // server.crt has no subjectAltName: Envoy can only know it by its pinned key.
        let tls = tls
            .certificate_authority("ca.crt")
            .server_name(SEED_SERVER_NAME)
            .pinned_certificate("server.crt");
        Endpoint::https(host)
            .on_loopback(port)
            .upstream(Upstream::new(format!("https://localhost:{upstream_port}")).tls(tls))
            .terminate_tls(edge_tls())
    };
    let policy = PolicyBuilder::new()
        .endpoint(https_endpoint("gw.example.com", true))
        .endpoint(https_endpoint("anon.example.com", false))
        .endpoint(
            Endpoint::tls("tcp.example.com")
                .on_loopback(tcp_port)
                .upstream(format!("tcp://127.0.0.1:{}", echo.port()))
                .terminate_tls(edge_tls()),
        )
        .to_yaml();
    let config = generate(d, &policy, admin);
    validate(&config);
    let envoy = Envoy::start(&config, admin, &[port, tcp_port]);
    let get =
        |host: &str, port: u16, path: &str| Curl::https(host, port, path).ca(d.join("edge-ca.crt"));

    // s_server -www answers with a page that prints the client certificate it verified.
    let res = get("gw.example.com", port, "/").run();
    assert_eq!(res.status, Some(200), "{res:?}\n{}", upstream.log());
    assert!(
        res.body.contains("Client certificate") && res.body.contains("Subject: CN=ExampleClient"),
        "{res:?}"
    );
    // Envoy's client side defaults to TLS 1.2 at most; the generator raises it.
    assert!(res.body.contains("Protocol  : TLSv1.3"), "{res:?}");

    // Without a client certificate the upstream refuses the handshake: 502, as from the native
    // host (the generator maps Envoy's upstream-failure 503 to 502).
    let anon = get("anon.example.com", port, "/").run();
    assert_eq!(anon.status, Some(502), "{anon:?}");

    // A tls:// endpoint: TLS terminated by Envoy, the bytes proxied as they are. The echo
    // upstream speaks HTTP/1.1, so curl through the TCP proxy gets its answer.
    let tcp = get("tcp.example.com", tcp_port, "/through-tcp")
        .http1_1()
        .run();
    assert_eq!(tcp.status, Some(200), "{tcp:?}");
    assert_eq!(tcp.json()["path"], "/through-tcp");
    assert_eq!(
        envoy.metric(
            "tlsgate_connections_total",
            &[
                ("endpoint", "tls://tcp.example.com"),
                ("verdict", "allow"),
                ("reason", "-")
            ]
        ),
        1,
        "{}",
        envoy.prometheus()
    );
}
