//! Reloading Envoy drains the connections the old configuration admitted.
//!
//! Envoy's bootstrap is static: a changed policy is a regenerated bootstrap and a hot restart
//! (`--restart-epoch N+1` with the same `--base-id`). The new process takes the listening
//! sockets, so new connections meet the new policy at once; the old one drains what it holds
//! — an HTTP/1 connection gets `Connection: close` on its next response and is closed, an idle
//! one is closed when the drain time ends — and exits after `--parent-shutdown-time-s`. This is
//! the procedure docs/security.md gives, and the test plays it with the case issue 9 names: a
//! reload that removes a CA must not leave that CA's kept-alive client connected.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use std::process::Command;
use std::time::{Duration, Instant};

use envoy_harness::{generate, hot_epoch, ports, wait_ready};
use tlsgate_e2e::{echo_upstream, tool, wait_port, Curl, Proc};
use tlsgate_test_support::{Authority, Endpoint, PolicyBuilder, TerminateTls};

/// A client that keeps one TLS connection: a request, then (once `go` exists) another on the
/// same connection, then it reads until the server closes. It prints what happened.
const KEEPER: &str = r#"
import os, socket, ssl, sys, time
port, ca, cert, key, go = sys.argv[1:6]
ctx = ssl.create_default_context(cafile=ca)
ctx.load_cert_chain(cert, key)
ctx.set_alpn_protocols(["http/1.1"])
sock = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(port)), timeout=30),
                       server_hostname="app.example.com")
def ask():
    sock.sendall(b"GET / HTTP/1.1\r\nHost: app.example.com\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk:
            return "closed", ""
        head += chunk
    lines = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
    length = [int(l.split(":")[1]) for l in lines if l.lower().startswith("content-length:")]
    body = head.split(b"\r\n\r\n", 1)[1]
    while length and len(body) < length[0]:
        body += sock.recv(4096)
    close = any(l.lower() == "connection: close" for l in lines)
    return lines[0], "close" if close else "keep-alive"
print("first:", *ask(), flush=True)
deadline = time.time() + 60
while not os.path.exists(go) and time.time() < deadline:
    time.sleep(0.05)
start = time.time()
try:
    print("second:", *ask(), flush=True)
    while sock.recv(4096):
        pass
    print("closed after %.1f s" % (time.time() - start), flush=True)
except (ConnectionError, ssl.SSLError, socket.timeout) as e:
    print("ended:", type(e).__name__, "after %.1f s" % (time.time() - start), flush=True)
"#;

#[test]
fn a_hot_restart_that_removes_a_ca_drains_its_clients() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Authority::root("CA");
    let retired = Authority::root("Retired CA");
    ca.server(&["app.example.com"]).write(d, "server");
    ca.client("alice").write(d, "alice");
    retired.client("mallory").write(d, "mallory");
    std::fs::write(d.join("ca.crt"), ca.cert_pem()).expect("write");
    std::fs::write(d.join("retired.crt"), retired.cert_pem()).expect("write");
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let policy = |cas: &[&str]| {
        let tls = cas.iter().fold(
            TerminateTls::files(d.join("server.crt"), d.join("server.key")),
            |tls, ca| tls.client_ca(d.join(ca)),
        );
        PolicyBuilder::new()
            .endpoint(
                Endpoint::https("app.example.com")
                    .on_loopback(port)
                    .upstream(upstream.url())
                    .terminate_tls(tls),
            )
            .to_yaml()
    };
    let file = |f: &str| d.join(f).display().to_string();
    let (before, after) = (d.join("before"), d.join("after"));
    std::fs::create_dir(&before).expect("mkdir");
    std::fs::create_dir(&after).expect("mkdir");
    let v1 = generate(&before, &policy(&["ca.crt", "retired.crt"]), admin);
    let v2 = generate(&after, &policy(&["ca.crt"]), admin);

    let base_id = d.join("base-id");
    let old = hot_epoch(&v1, admin, 0, &base_id, 4);
    wait_port(([127, 0, 0, 1], port).into(), Duration::from_secs(30)).expect("listener");

    let go = d.join("go");
    let mut keeper = Command::new(tool("python3"));
    keeper
        .arg("-c")
        .arg(KEEPER)
        .arg(port.to_string())
        .args([file("ca.crt"), file("mallory.crt"), file("mallory.key")])
        .arg(&go);
    let keeper = Proc::spawn("keeper", keeper);
    keeper
        .wait_for_log("first:", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", old.log()));
    assert!(
        keeper.log().contains("first: HTTP/1.1 200 OK keep-alive"),
        "the retired CA's client is admitted before the reload: {}",
        keeper.log()
    );

    // The reload: the same listener, the retired CA gone.
    let new = hot_epoch(&v2, admin, 1, &base_id, 4);
    wait_ready(admin, &new);
    let reloaded = Instant::now();
    std::fs::write(&go, "").expect("write");

    // New connections meet the new policy at once.
    let call = |who: &str| {
        Curl::https("app.example.com", port, "/")
            .ca(d.join("ca.crt"))
            .client_cert(d.join(format!("{who}.crt")), d.join(format!("{who}.key")))
            .run()
    };
    assert_eq!(call("alice").status, Some(200), "{}", new.log());
    assert_eq!(
        call("mallory").status,
        None,
        "the retired CA is still trusted"
    );

    // The kept connection is drained: the old process answers at most the request in flight
    // (with the policy it admitted the connection under, and `Connection: close`), and the
    // connection is gone by the time the old process leaves (`--parent-shutdown-time-s 4`);
    // the client's read ends there, not at its own 30 s timeout.
    let mut keeper = keeper;
    let ended = keeper.wait_exit(Duration::from_secs(20));
    let log = keeper.log();
    eprintln!("the kept connection after the reload:\n{log}");
    assert!(
        ended.is_some(),
        "the old connection was never closed: {log}"
    );
    assert!(
        log.contains("second: closed") || log.contains("second: HTTP/1.1 200 OK"),
        "{log}"
    );
    let after: f64 = log
        .lines()
        .find_map(|l| {
            l.strip_prefix("closed after ")
                .or_else(|| l.split(" after ").nth(1))
        })
        .and_then(|rest| rest.trim_end_matches(" s").parse().ok())
        .unwrap_or_else(|| panic!("the keeper did not say when the connection ended: {log}"));
    assert!(
        after <= 6.0,
        "the old connection lived {after} s after the reload: {log}"
    );
    assert!(
        reloaded.elapsed() < Duration::from_secs(15),
        "draining took {:?}",
        reloaded.elapsed()
    );
    // The old process leaves once it has drained.
    let mut old = old;
    assert!(
        old.wait_exit(Duration::from_secs(20)).is_some(),
        "the old Envoy did not exit after the drain: {}",
        old.log()
    );
}
