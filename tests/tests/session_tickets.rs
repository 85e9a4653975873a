//! Sessions resume across instances that share `session_ticket_keys`, in both hosts.
//!
//! The native host scales out behind an L4 balancer, Envoy by running a fleet: either way a
//! client's next connection may land on another instance. With the same ticket key files a
//! session issued by one resumes on the others (a full handshake saved, for mTLS a whole
//! certificate verification); with different keys it does not, and a rotated key list (new
//! key first, old second) still opens what the old key sealed. Checked with real openssl
//! clients over TLS 1.3 (`-sess_out`, then `-sess_in` against another instance).

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;
mod native_common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use envoy_harness::{generate, ports, Envoy};
use native_common::start_gate;
use tlsgate_e2e::{free_port, run_bounded, tool, Proc};
use tlsgate_test_support::{Authority, Endpoint, PolicyBuilder, TerminateTls};

const HOST: &str = "app.example.com";

/// A policy with one https endpoint on `port` whose tickets use `keys` (files in `dir`).
fn policy(dir: &Path, port: u16, upstream: &str, keys: &[&str]) -> String {
    let tls = keys.iter().fold(
        TerminateTls::files(dir.join("server.crt"), dir.join("server.key")),
        |tls, key| tls.session_ticket_key(dir.join(key)),
    );
    PolicyBuilder::new()
        .endpoint(
            Endpoint::https(HOST)
                .on_loopback(port)
                .upstream(upstream)
                .terminate_tls(tls.session_lifetime("1h")),
        )
        .to_yaml()
}

/// One TLS 1.3 connection with a request (so the tickets arrive), its session saved to or
/// offered from `session`. Whether the server resumed it.
fn connect(dir: &Path, port: u16, session: &Path, offer: bool) -> bool {
    let mut cmd = Command::new(tool("openssl"));
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-servername")
        .arg(HOST)
        .arg("-CAfile")
        .arg(dir.join("ca.crt"))
        .args(["-tls1_3", "-ign_eof"]);
    if offer {
        cmd.arg("-sess_in").arg(session);
    } else {
        cmd.arg("-sess_out").arg(session);
    }
    let request = format!("GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n");
    let run = run_bounded(cmd, request.as_bytes(), Duration::from_secs(10));
    assert!(
        run.stdout.contains("HTTP/1.1 200 "),
        "port {port}: no 200 over the connection:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    run.stdout.contains("Reused, ")
}

/// Whether a session issued by the instance on `from` resumes on the one on `to`.
fn resumes(dir: &Path, from: u16, to: u16) -> bool {
    let session = dir.join(format!("session-{from}-{to}.pem"));
    assert!(
        !connect(dir, from, &session, false),
        "a first connection cannot resume"
    );
    assert!(
        session.exists(),
        "openssl saved no session from port {from}"
    );
    connect(dir, to, &session, true)
}

fn setup() -> (tempfile::TempDir, tlsgate_e2e::EchoUpstream) {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::root("CA");
    ca.server(&[HOST]).write(dir.path(), "server");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write");
    for (name, byte) in [("one.key", 1u8), ("two.key", 2)] {
        let key: Vec<u8> = (0..80u8).map(|i| i ^ byte.wrapping_mul(37)).collect();
        std::fs::write(dir.path().join(name), key).expect("write");
    }
    (dir, tlsgate_e2e::echo_upstream())
}

#[test]
fn native_instances_sharing_ticket_keys_resume_each_others_sessions() {
    let (dir, upstream) = setup();
    let d = dir.path();
    let gate = |name: &str, keys: &[&str]| -> (Proc, u16) {
        let port = free_port();
        let proc = start_gate(d, name, &policy(d, port, &upstream.url(), keys), &[]);
        (proc, port)
    };
    let (_a, a) = gate("a", &["one.key"]);
    let (_b, b) = gate("b", &["one.key"]);
    let (_c, c) = gate("c", &["two.key"]);
    let (_rotated, rotated) = gate("rotated", &["two.key", "one.key"]);
    assert!(
        resumes(d, a, a),
        "a session does not even resume where it was issued"
    );
    assert!(
        resumes(d, a, b),
        "a session did not resume on an instance sharing the key"
    );
    assert!(
        !resumes(d, a, c),
        "a session resumed on an instance with another key"
    );
    assert!(
        resumes(d, a, rotated),
        "the old key, listed second, no longer opens its tickets"
    );
    // The rotated instance seals with its first key: instances still on the old key alone
    // cannot open those, instances with the new key can.
    assert!(!resumes(d, rotated, a));
    assert!(resumes(d, rotated, c));
}

#[test]
fn envoy_instances_sharing_ticket_keys_resume_each_others_sessions() {
    let (dir, upstream) = setup();
    let d = dir.path();
    let envoy = |name: &str, keys: &[&str]| -> (Envoy, u16) {
        let sub = d.join(name);
        std::fs::create_dir(&sub).expect("mkdir");
        let (port, admin) = ports();
        let config = generate(&sub, &policy(d, port, &upstream.url(), keys), admin);
        (Envoy::start(&config, admin, &[port]), port)
    };
    let (_a, a) = envoy("a", &["one.key"]);
    let (_b, b) = envoy("b", &["one.key"]);
    let (_c, c) = envoy("c", &["two.key"]);
    assert!(
        resumes(d, a, b),
        "a session did not resume on an Envoy sharing the key"
    );
    assert!(
        !resumes(d, a, c),
        "a session resumed on an Envoy with another key"
    );
}
