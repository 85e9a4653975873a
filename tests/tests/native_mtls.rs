//! Two tenants on one listener of the native host, with what only this host shows: the alert an
//! unknown name gets and the reason in its log. The verification strategies against every kind
//! of certificate and the version bounds are conformance scenarios (tests/conformance/), played
//! against both hosts.

// Helpers outside #[test] functions fail the test that called them by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod native_common;

use std::path::{Path, PathBuf};

use native_common::start_gate;
use tlsgate_e2e::{echo_upstream, free_port, openssl_s_client, Curl, CurlResult};
use tlsgate_test_support::{Authority, Endpoint, PolicyBuilder, TerminateTls};

fn get(host: &str, port: u16, ca: &Path, cert: Option<&(PathBuf, PathBuf)>) -> CurlResult {
    Curl::https(host, port, "/")
        .ca(ca)
        .client_cert_if(cert.map(|(crt, key)| (crt, key)))
        .run()
}

#[test]
fn two_tenants_on_one_listener_get_their_own_certificates_and_cas() {
    let dir = tempfile::tempdir().unwrap();
    let (ca_a, ca_b) = (
        Authority::root("Tenant A CA"),
        Authority::root("Tenant B CA"),
    );
    let (ca_a_crt, _) = ca_a.write(dir.path(), "ca-a");
    let (ca_b_crt, _) = ca_b.write(dir.path(), "ca-b");
    let (crt_a, key_a) = ca_a
        .server(&["a.tenant.test"])
        .write(dir.path(), "server-a");
    let (crt_b, key_b) = ca_b
        .server(&["b.tenant.test"])
        .write(dir.path(), "server-b");
    let client_a = ca_a.client("alice").write(dir.path(), "client-a");
    let client_b = ca_b.client("bob").write(dir.path(), "client-b");
    let upstream = echo_upstream();
    let port = free_port();
    let endpoint = |host: &str, crt: &Path, key: &Path, ca: &Path| {
        Endpoint::https(host)
            .on_loopback(port)
            .upstream(upstream.url())
            .terminate_tls(TerminateTls::files(crt, key).client_ca(ca))
    };
    let policy = PolicyBuilder::new()
        .endpoint(endpoint("a.tenant.test", &crt_a, &key_a, &ca_a_crt))
        .endpoint(endpoint("b.tenant.test", &crt_b, &key_b, &ca_b_crt))
        .to_yaml();
    let gate = start_gate(dir.path(), "tenants", &policy, &[]);

    // Each name gets its own certificate: each verifies only against its own CA.
    assert_eq!(
        get("a.tenant.test", port, &ca_a_crt, Some(&client_a)).status,
        Some(200)
    );
    assert_eq!(
        get("b.tenant.test", port, &ca_b_crt, Some(&client_b)).status,
        Some(200)
    );
    let wrong_server = get("b.tenant.test", port, &ca_a_crt, Some(&client_b));
    assert_eq!(wrong_server.status, None, "{wrong_server:?}");
    let connect = format!("127.0.0.1:{port}");
    let (_, out, _) =
        openssl_s_client(&["-connect", &connect, "-servername", "b.tenant.test"], b"");
    assert!(out.contains("Tenant B CA"), "{out}");

    // Tenant A's client certificate is refused by tenant B.
    let crossed = get("b.tenant.test", port, &ca_b_crt, Some(&client_a));
    assert_eq!(crossed.status, None, "{crossed:?}");

    // An unknown server name, and none at all, are refused in the handshake.
    let unknown = get("c.tenant.test", port, &ca_a_crt, None);
    assert_eq!(unknown.status, None, "{unknown:?}");
    assert!(unknown.stderr.contains("unrecognized name"), "{unknown:?}");
    let (_, out, _) = openssl_s_client(&["-connect", &connect, "-noservername"], b"");
    assert!(
        !out.contains("BEGIN CERTIFICATE") && !out.contains("Tenant"),
        "{out}"
    );
    assert!(gate.log().contains("unknown_server_name"));

    // A request whose Host names the other tenant is misdirected (no domain fronting).
    let fronted = Curl::https("a.tenant.test", port, "/")
        .ca(&ca_a_crt)
        .client_cert(&client_a.0, &client_a.1)
        .header("Host: b.tenant.test")
        .run();
    assert_eq!(fronted.status, Some(421), "{fronted:?}");
    assert_eq!(upstream.requests().len(), 2);
}
