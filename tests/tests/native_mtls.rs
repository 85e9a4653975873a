//! Client certificates and TLS versions on the native host: every verification strategy against
//! every kind of certificate, version bounds, and two tenants on one listener.

// Helpers outside #[test] functions fail the test that called them by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod native_common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use native_common::{http_upstream, https_endpoint, path, resolve, start_gate, tls_config};
use tlsgate_e2e::{curl, echo_upstream, free_port, openssl_s_client, CurlResult};
use tlsgate_test_support::{Authority, Eku, Issued, LeafSpec, Validity};

/// The client certificates every strategy is tried with.
struct Clients {
    valid: (PathBuf, PathBuf),
    other_ca: (PathBuf, PathBuf),
    self_signed: (PathBuf, PathBuf),
    expired: (PathBuf, PathBuf),
    no_client_auth: (PathBuf, PathBuf),
}

fn clients(dir: &Path, ca: &Authority) -> Clients {
    let other = Authority::root("Other CA");
    let write = |issued: Issued, stem: &str| issued.write(dir, stem);
    Clients {
        valid: write(ca.client("alice"), "valid"),
        other_ca: write(other.client("mallory"), "other-ca"),
        self_signed: write(
            Issued::self_signed(&LeafSpec::client("selfie")),
            "self-signed",
        ),
        expired: write(
            ca.issue(&LeafSpec::client("old").with_validity(Validity::Expired)),
            "expired",
        ),
        no_client_auth: write(
            ca.issue(&LeafSpec::client("server-only").with_eku([Eku::ServerAuth])),
            "no-client-auth",
        ),
    }
}

fn get(host: &str, port: u16, ca: &Path, cert: Option<&(PathBuf, PathBuf)>) -> CurlResult {
    let mut args = vec![
        "--resolve".to_owned(),
        resolve(host, port),
        "--cacert".to_owned(),
        ca.display().to_string(),
    ];
    if let Some((crt, key)) = cert {
        args.extend([
            "--cert".to_owned(),
            crt.display().to_string(),
            "--key".to_owned(),
            key.display().to_string(),
        ]);
    }
    args.push(format!("https://{host}:{port}/"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    curl(&args)
}

/// What a request should come to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// Refused in the handshake: no HTTP response at all.
    Refused,
    /// Forwarded, with the verified identity in x-forwarded-client-cert.
    Identified,
    /// Forwarded without an identity header.
    Anonymous,
}

#[test]
fn each_strategy_admits_and_refuses_the_right_certificates() {
    use Outcome::*;
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("Client CA");
    let server_ca = Authority::root("Server CA");
    let (ca_crt, _) = ca.write(dir.path(), "client-ca");
    let (server_ca_crt, _) = server_ca.write(dir.path(), "server-ca");
    let hosts = ["verify.test", "any.test", "request.test"];
    let (server_crt, server_key) = server_ca.server(&hosts).write(dir.path(), "server");
    let c = clients(dir.path(), &ca);
    let upstream = echo_upstream();
    let port = free_port();
    let endpoint = |host: &str, strategy: &str| {
        https_endpoint(
            host,
            port,
            &http_upstream(&upstream.url()),
            &tls_config(&[
                ("server_certificate", &path(&server_crt)),
                ("server_private_key", &path(&server_key)),
                (
                    "mutual_tls_certificate_authorities",
                    &format!("[{}]", path(&ca_crt)),
                ),
                ("mutual_tls_verification_strategy", strategy),
            ]),
            "",
        )
    };
    let policy = format!(
        "endpoints:\n{}{}{}",
        endpoint("verify.test", "require-and-verify"),
        endpoint("any.test", "require-any"),
        endpoint("request.test", "request"),
    );
    let gate = start_gate(dir.path(), "strategies", &policy, &[]);

    type Case<'a> = (&'a str, &'a str, Option<&'a (PathBuf, PathBuf)>, Outcome);
    let table: [Case<'_>; 18] = [
        ("verify.test", "none", None, Refused),
        ("verify.test", "valid", Some(&c.valid), Identified),
        ("verify.test", "other CA", Some(&c.other_ca), Refused),
        ("verify.test", "self-signed", Some(&c.self_signed), Refused),
        ("verify.test", "expired", Some(&c.expired), Refused),
        (
            "verify.test",
            "no clientAuth",
            Some(&c.no_client_auth),
            Refused,
        ),
        ("any.test", "none", None, Refused),
        ("any.test", "valid", Some(&c.valid), Identified),
        ("any.test", "other CA", Some(&c.other_ca), Anonymous),
        ("any.test", "self-signed", Some(&c.self_signed), Anonymous),
        ("any.test", "expired", Some(&c.expired), Anonymous),
        (
            "any.test",
            "no clientAuth",
            Some(&c.no_client_auth),
            Anonymous,
        ),
        ("request.test", "none", None, Anonymous),
        ("request.test", "valid", Some(&c.valid), Identified),
        ("request.test", "other CA", Some(&c.other_ca), Anonymous),
        (
            "request.test",
            "self-signed",
            Some(&c.self_signed),
            Anonymous,
        ),
        ("request.test", "expired", Some(&c.expired), Anonymous),
        (
            "request.test",
            "no clientAuth",
            Some(&c.no_client_auth),
            Anonymous,
        ),
    ];
    let mut failures = Vec::new();
    for (host, label, cert, expected) in table {
        let before = upstream.requests().len();
        let res = get(host, port, &server_ca_crt, cert);
        let got = match res.status {
            None => Refused,
            Some(200) => {
                let seen = upstream
                    .wait_for_requests(before + 1, Duration::from_secs(5))
                    .unwrap();
                match seen[before].header("x-forwarded-client-cert") {
                    Some(_) => Identified,
                    None => Anonymous,
                }
            }
            Some(other) => panic!("{host} with {label}: HTTP {other}: {res:?}"),
        };
        if got != expected {
            failures.push(format!(
                "{host} with {label}: expected {expected:?}, got {got:?} ({})",
                res.stderr.trim()
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}\n{}", gate.log());
}

#[test]
fn version_bounds_are_enforced_in_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("Server CA");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    let (crt, key) = ca
        .server(&["v13.test", "v12.test"])
        .write(dir.path(), "server");
    let upstream = echo_upstream();
    let port = free_port();
    let endpoint = |host: &str, min: &str, max: &str| {
        https_endpoint(
            host,
            port,
            &http_upstream(&upstream.url()),
            &tls_config(&[
                ("min_version", &format!("\"{min}\"")),
                ("max_version", &format!("\"{max}\"")),
                ("server_certificate", &path(&crt)),
                ("server_private_key", &path(&key)),
            ]),
            "",
        )
    };
    let policy = format!(
        "endpoints:\n{}{}",
        endpoint("v13.test", "1.3", "1.3"),
        endpoint("v12.test", "1.2", "1.2")
    );
    let gate = start_gate(dir.path(), "versions", &policy, &[]);
    let ca_arg = ca_crt.display().to_string();

    // curl, as the seed's reader would try it.
    let r = curl(&[
        "--tls-max",
        "1.2",
        "--resolve",
        &resolve("v13.test", port),
        "--cacert",
        &ca_arg,
        &format!("https://v13.test:{port}/"),
    ]);
    assert_eq!(r.status, None, "{r:?}");
    assert!(r.stderr.contains("protocol version"), "{r:?}");
    let r = curl(&[
        "--resolve",
        &resolve("v13.test", port),
        "--cacert",
        &ca_arg,
        &format!("https://v13.test:{port}/"),
    ]);
    assert_eq!(r.status, Some(200), "{r:?}");
    let r = curl(&[
        "--tlsv1.3",
        "--resolve",
        &resolve("v12.test", port),
        "--cacert",
        &ca_arg,
        &format!("https://v12.test:{port}/"),
    ]);
    assert_eq!(r.status, None, "{r:?}");

    // openssl s_client, one version at a time.
    let connect = format!("127.0.0.1:{port}");
    let s_client = |host: &str, flag: &str| {
        let (_, out, err) = openssl_s_client(
            &[
                "-connect",
                &connect,
                "-servername",
                host,
                flag,
                "-CAfile",
                &ca_arg,
            ],
            b"",
        );
        out.contains("Verify return code: 0 (ok)") && !err.contains("alert")
    };
    assert!(s_client("v13.test", "-tls1_3"), "{}", gate.log());
    assert!(!s_client("v13.test", "-tls1_2"));
    assert!(s_client("v12.test", "-tls1_2"), "{}", gate.log());
    assert!(!s_client("v12.test", "-tls1_3"));
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
        https_endpoint(
            host,
            port,
            &http_upstream(&upstream.url()),
            &tls_config(&[
                ("server_certificate", &path(crt)),
                ("server_private_key", &path(key)),
                (
                    "mutual_tls_certificate_authorities",
                    &format!("[{}]", path(ca)),
                ),
            ]),
            "",
        )
    };
    let policy = format!(
        "endpoints:\n{}{}",
        endpoint("a.tenant.test", &crt_a, &key_a, &ca_a_crt),
        endpoint("b.tenant.test", &crt_b, &key_b, &ca_b_crt)
    );
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
    let unknown = curl(&[
        "--resolve",
        &resolve("c.tenant.test", port),
        "--cacert",
        &ca_a_crt.display().to_string(),
        &format!("https://c.tenant.test:{port}/"),
    ]);
    assert_eq!(unknown.status, None, "{unknown:?}");
    assert!(unknown.stderr.contains("unrecognized name"), "{unknown:?}");
    let (_, out, _) = openssl_s_client(&["-connect", &connect, "-noservername"], b"");
    assert!(
        !out.contains("BEGIN CERTIFICATE") && !out.contains("Tenant"),
        "{out}"
    );
    assert!(gate.log().contains("unknown_server_name"));

    // A request whose Host names the other tenant is misdirected (no domain fronting).
    let fronted = curl(&[
        "--resolve",
        &resolve("a.tenant.test", port),
        "--cacert",
        &ca_a_crt.display().to_string(),
        "--cert",
        &client_a.0.display().to_string(),
        "--key",
        &client_a.1.display().to_string(),
        "-H",
        "Host: b.tenant.test",
        &format!("https://a.tenant.test:{port}/"),
    ]);
    assert_eq!(fronted.status, Some(421), "{fronted:?}");
    assert_eq!(upstream.requests().len(), 2);
}
