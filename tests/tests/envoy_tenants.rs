//! Two tenants behind one Envoy listener: each gets its own server certificate and its own
//! client CA, chosen by SNI; a request fronted to the other tenant's host gets 421.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use std::path::PathBuf;

use envoy_harness::{echoed_header, generate, ports, validate, Envoy};
use tlsgate_e2e::{echo_upstream, Curl};
use tlsgate_test_support::{Authority, Endpoint, PolicyBuilder, TerminateTls};

#[test]
fn envoy_serves_two_tenants_on_one_listener() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    // Separate server CAs prove which certificate each name got; separate client CAs prove
    // each tenant trusts only its own clients.
    let server_ca_a = Authority::root("Tenant A Server CA");
    let server_ca_b = Authority::root("Tenant B Server CA");
    let client_ca_a = Authority::root("Tenant A Client CA");
    let client_ca_b = Authority::root("Tenant B Client CA");
    server_ca_a.write(d, "server-ca-a");
    server_ca_b.write(d, "server-ca-b");
    client_ca_a.write(d, "client-ca-a");
    client_ca_b.write(d, "client-ca-b");
    server_ca_a.server(&["a.example.com"]).write(d, "a");
    server_ca_b.server(&["*.b.example.com"]).write(d, "b");
    let (alice_crt, alice_key) = client_ca_a.client("alice").write(d, "alice");
    let (bob_crt, bob_key) = client_ca_b.client("bob").write(d, "bob");
    let upstream_a = echo_upstream();
    let upstream_b = echo_upstream();
    let (port, admin) = ports();
    let tenant = |host: &str, stem: &str, upstream: String| {
        Endpoint::https(host)
            .on_loopback(port)
            .upstream(upstream)
            .terminate_tls(
                TerminateTls::files(format!("{stem}.crt"), format!("{stem}.key"))
                    .client_ca(format!("client-ca-{stem}.crt")),
            )
    };
    let policy = PolicyBuilder::new()
        .endpoint(tenant("a.example.com", "a", upstream_a.url()))
        .endpoint(tenant("*.b.example.com", "b", upstream_b.url()))
        .to_yaml();
    let config = generate(d, &policy, admin);
    validate(&config);
    let envoy = Envoy::start(&config, admin, &[port]);
    let alice = Some((&alice_crt, &alice_key));
    let bob = Some((&bob_crt, &bob_key));
    let (ca_a, ca_b) = (d.join("server-ca-a.crt"), d.join("server-ca-b.crt"));
    let get = |host: &str, ca: &PathBuf, client: Option<(&PathBuf, &PathBuf)>| {
        Curl::https(host, port, "/").ca(ca).client_cert_if(client)
    };

    // Each tenant: its own certificate (verified against its own server CA), its own client.
    let a = get("a.example.com", &ca_a, alice).run();
    assert_eq!(a.status, Some(200), "{a:?}");
    let b = get("x.b.example.com", &ca_b, bob).run();
    assert_eq!(b.status, Some(200), "{b:?}");
    assert_eq!(
        echoed_header(&b, "x-tlsgate-endpoint").as_deref(),
        Some("*.b.example.com")
    );
    // Tenant A's certificate is not B's: a client trusting only B's server CA refuses A.
    let wrong_server = get("a.example.com", &ca_b, alice).run();
    assert_eq!(wrong_server.status, None, "{wrong_server:?}");

    // The other tenant's client certificate is refused at the handshake.
    let crossed = get("a.example.com", &ca_a, bob).run();
    assert_eq!(crossed.status, None, "{crossed:?}");

    // An unknown server name matches no filter chain.
    let unknown = get("c.example.com", &ca_a, alice).run();
    assert_eq!(unknown.status, None, "{unknown:?}");

    // Domain fronting: SNI a.example.com, Host x.b.example.com.
    let fronted = get("a.example.com", &ca_a, alice)
        .header("Host: x.b.example.com")
        .run();
    assert_eq!(fronted.status, Some(421), "{fronted:?}");

    assert_eq!(upstream_a.requests().len(), 1);
    assert_eq!(upstream_b.requests().len(), 1);
    assert_eq!(
        envoy.metric(
            "tlsgate_http_requests_total",
            &[
                ("endpoint", "https://a.example.com"),
                ("verdict", "deny"),
                ("reason", "misdirected_request")
            ]
        ),
        1,
        "{}",
        envoy.prometheus()
    );
    assert_eq!(
        envoy.metric(
            "tlsgate_http_requests_total",
            &[
                ("endpoint", "https://*.b.example.com"),
                ("verdict", "forward"),
                ("reason", "-")
            ]
        ),
        1
    );
}
