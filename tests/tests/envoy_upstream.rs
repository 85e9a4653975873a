//! The upstream side on real Envoy: re-encryption with a client certificate (the seed's
//! "Upstream TLS and mTLS" walk-through, with its openssl-made certificates), and a tls://
//! endpoint proxying bytes with tcp_proxy.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use std::process::Command;
use std::time::Duration;

use envoy_harness::{generate, get, ports, validate, Envoy};
use tlsgate_e2e::{echo_upstream, free_port, tool, wait_port, Proc};
use tlsgate_test_support::{seed_openssl_certs, Authority, SEED_SERVER_NAME};

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
    let https_endpoint = |host: &str, client_certificate: &str| {
        format!(
            r#"  - url: https://{host}
    bind: 127.0.0.1:{port}
    upstream:
      url: https://localhost:{upstream_port}
      tls:
        {client_certificate}
        certificate_authorities: [ca.crt]
        server_name: {SEED_SERVER_NAME}
        # server.crt has no subjectAltName: Envoy can only know it by its pinned key.
        pinned_certificates: [server.crt]
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config: {{ server_certificate: edge.crt, server_private_key: edge.key }}
"#
        )
    };
    let policy = format!(
        r#"endpoints:
{}{}  - url: tls://tcp.example.com
    bind: 127.0.0.1:{tcp_port}
    upstream:
      url: tcp://127.0.0.1:{echo_port}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config: {{ server_certificate: edge.crt, server_private_key: edge.key }}
"#,
        https_endpoint(
            "gw.example.com",
            "client_certificate: { certificate: client.crt, private_key: client.key }"
        ),
        https_endpoint("anon.example.com", ""),
        echo_port = echo.port()
    );
    let config = generate(d, &policy, admin);
    validate(&config);
    let envoy = Envoy::start(&config, admin, &[port, tcp_port]);
    let edge_ca_crt = d.join("edge-ca.crt");

    // s_server -www answers with a page that prints the client certificate it verified.
    let res = get("gw.example.com", port, "/", &edge_ca_crt, None, &[]);
    assert_eq!(res.status, Some(200), "{res:?}\n{}", upstream.log());
    assert!(
        res.body.contains("Client certificate") && res.body.contains("Subject: CN=ExampleClient"),
        "{res:?}"
    );
    // Envoy's client side defaults to TLS 1.2 at most; the generator raises it.
    assert!(res.body.contains("Protocol  : TLSv1.3"), "{res:?}");

    // Without a client certificate the upstream refuses the handshake: 502, as from the native
    // host (the generator maps Envoy's upstream-failure 503 to 502).
    let anon = get("anon.example.com", port, "/", &edge_ca_crt, None, &[]);
    assert_eq!(anon.status, Some(502), "{anon:?}");

    // A tls:// endpoint: TLS terminated by Envoy, the bytes proxied as they are. The echo
    // upstream speaks HTTP/1.1, so curl through the TCP proxy gets its answer.
    let tcp = get(
        "tcp.example.com",
        tcp_port,
        "/through-tcp",
        &edge_ca_crt,
        None,
        &["--http1.1"],
    );
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
