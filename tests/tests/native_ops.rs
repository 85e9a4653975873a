//! Operating the native host: deadlines, reloads with rotated certificates, a bad reload, and
//! a graceful SIGTERM.

// Helpers outside #[test] functions fail the test that called them by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod native_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use native_common::start_gate;
use tlsgate_e2e::{echo_upstream, free_port, tlsgate_bin, tool, Curl, Proc, Signal};
use tlsgate_test_support::{Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls};

#[test]
fn a_client_that_sends_nothing_is_cut_at_the_client_hello_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    ca.server(&["idle.test"]).write(dir.path(), "server");
    let upstream = echo_upstream();
    let port = free_port();
    let policy = one_endpoint("idle.test", port, &upstream.url(), &[]);
    // The ClientHello deadline, not the (longer) handshake deadline, cuts a silent socket.
    let gate = start_gate(
        dir.path(),
        "deadline",
        &policy,
        &["--client-hello-timeout", "1s", "--handshake-timeout", "5s"],
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    // EOF or a reset, either way the server hung up; a timeout here would be the failure.
    let result = stream.read(&mut buf);
    let elapsed = started.elapsed();
    assert!(
        matches!(result, Ok(0))
            || matches!(&result, Err(e) if e.kind() != std::io::ErrorKind::WouldBlock && e.kind() != std::io::ErrorKind::TimedOut),
        "{result:?} after {elapsed:?}"
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "cut too early: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(4),
        "cut too late: {elapsed:?}"
    );
    gate.wait_for_log("client_hello_timeout", Duration::from_secs(5))
        .unwrap();
}

#[test]
fn silent_sockets_from_one_address_cannot_take_every_slot() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    ca.server(&["slots.test"]).write(dir.path(), "server");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    let upstream = echo_upstream();
    let port = free_port();
    let policy = one_endpoint("slots.test", port, &upstream.url(), &[]);
    let gate = start_gate(
        dir.path(),
        "slots",
        &policy,
        &[
            "--max-connections",
            "4",
            "--max-connections-per-source",
            "2",
            "--client-hello-timeout",
            "4s",
            "--handshake-timeout",
            "4s",
        ],
    );
    // Two silent sockets from 127.0.0.1 take that address's share.
    let held: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // A third from the same address is closed at once, not queued behind them.
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 16];
    let result = third.read(&mut buf);
    assert!(
        matches!(result, Ok(0)) || result.is_err() && started.elapsed() < Duration::from_secs(4),
        "{result:?} after {:?}",
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // Another address is served while they wait.
    let other = Curl::https("slots.test", port, "/")
        .interface("127.0.0.2")
        .ca(&ca_crt)
        .run();
    assert_eq!(other.status, Some(200), "{other:?}\n{}", gate.log());
    gate.wait_for_log("source_connection_limit", Duration::from_secs(5))
        .unwrap();
    drop(held);
}

/// A policy with one https endpoint for `host` on `port`, terminating with the `server.crt` and
/// `server.key` written beside it, in front of `upstream`, with `rules` as on_http_request.
fn one_endpoint(host: &str, port: u16, upstream: &str, rules: &[Rule]) -> String {
    PolicyBuilder::new()
        .endpoint(
            Endpoint::https(host)
                .on_loopback(port)
                .upstream(upstream)
                .terminate_tls(TerminateTls::files("server.crt", "server.key"))
                .on_http_requests(rules.iter().cloned()),
        )
        .to_yaml()
}

/// `openssl s_client` holding one connection open, fed from the test.
struct HeldConnection {
    child: std::process::Child,
    output: Arc<Mutex<String>>,
}

impl HeldConnection {
    fn open(port: u16, host: &str, ca: &std::path::Path) -> Self {
        let mut child = Command::new(tool("openssl"))
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{port}"),
                "-servername",
                host,
            ])
            .arg("-CAfile")
            .arg(ca)
            .args(["-ign_eof", "-alpn", "http/1.1"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let output = Arc::new(Mutex::new(String::new()));
        let sink = output.clone();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut out = sink.lock().unwrap();
                out.push_str(&line);
                out.push('\n');
            }
        });
        let held = Self { child, output };
        held.wait_for("Verify return code");
        held
    }

    fn wait_for(&self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = self.output.lock().unwrap().clone();
            if out.contains(needle) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "s_client never printed {needle:?}:\n{out}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for HeldConnection {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sighup_serves_a_rotated_certificate_to_new_connections_while_an_open_one_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (old_ca, new_ca) = (Authority::root("Old CA"), Authority::root("New CA"));
    let (old_ca_crt, _) = old_ca.write(dir.path(), "old-ca");
    let (new_ca_crt, _) = new_ca.write(dir.path(), "new-ca");
    let (crt, key) = old_ca.server(&["rot.test"]).write(dir.path(), "server");
    let upstream = echo_upstream();
    let port = free_port();
    let policy = one_endpoint("rot.test", port, &upstream.url(), &[]);
    let gate = start_gate(dir.path(), "rotate", &policy, &[]);
    let get = |ca: &std::path::Path| Curl::https("rot.test", port, "/").ca(ca).run();
    assert_eq!(get(&old_ca_crt).status, Some(200));
    let mut held = HeldConnection::open(port, "rot.test", &old_ca_crt);

    // Rotate: a certificate from another CA, then SIGHUP.
    let offset = gate.log_len();
    let rotated = new_ca.server(&["rot.test"]);
    std::fs::write(&key, &rotated.key_pem).unwrap();
    std::fs::write(&crt, &rotated.chain_pem).unwrap();
    gate.signal(Signal::Hup).unwrap();
    gate.wait_for_log_after(offset, "reloaded configuration", Duration::from_secs(10))
        .unwrap();

    let fresh = get(&new_ca_crt);
    assert_eq!(fresh.status, Some(200), "{fresh:?}\n{}", gate.log());
    let stale = get(&old_ca_crt);
    assert_eq!(
        stale.status, None,
        "new connections still get the old certificate: {stale:?}"
    );

    // The connection opened before the reload still works, on the old certificate.
    held.send(b"GET /held HTTP/1.1\r\nHost: rot.test\r\nConnection: close\r\n\r\n");
    let out = held.wait_for("HTTP/1.1 200");
    assert!(out.contains("Old CA"), "{out}");
    assert!(upstream.requests().iter().any(|r| r.path == "/held"));
}

#[test]
fn a_reload_that_adds_a_deny_rule_drains_kept_alive_connections() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    ca.server(&["drain-rule.test"]).write(dir.path(), "server");
    let upstream = echo_upstream();
    let port = free_port();
    let policy = |rules: &[Rule]| one_endpoint("drain-rule.test", port, &upstream.url(), rules);
    let gate = start_gate(
        dir.path(),
        "drain-rule",
        &policy(&[]),
        &["--drain-timeout", "2s"],
    );
    let mut held = HeldConnection::open(port, "drain-rule.test", &ca_crt);
    held.send(b"GET /before HTTP/1.1\r\nHost: drain-rule.test\r\n\r\n");
    held.wait_for("HTTP/1.1 200");

    let offset = gate.log_len();
    std::fs::write(
        dir.path().join("drain-rule.yaml"),
        policy(&[Rule::new().then(Action::deny_with(403))]),
    )
    .unwrap();
    gate.signal(Signal::Hup).unwrap();
    gate.wait_for_log_after(
        offset,
        "draining open connections of 1",
        Duration::from_secs(10),
    )
    .unwrap();
    // The kept-alive connection was closed by the reload: a request on it gets no 200, and
    // s_client sees the connection end.
    std::thread::sleep(Duration::from_millis(300));
    let _ = held
        .child
        .stdin
        .as_mut()
        .map(|stdin| stdin.write_all(b"GET /after HTTP/1.1\r\nHost: drain-rule.test\r\n\r\n"));
    let exited = (0..50).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        matches!(held.child.try_wait(), Ok(Some(_)))
    });
    assert!(
        exited,
        "the connection stayed open:\n{}",
        held.output.lock().unwrap()
    );
    assert!(
        !upstream.requests().iter().any(|r| r.path == "/after"),
        "a request after the reload reached the upstream"
    );
    // New connections get the new rule.
    let denied = Curl::https("drain-rule.test", port, "/").ca(&ca_crt).run();
    assert_eq!(denied.status, Some(403), "{denied:?}");
}

#[test]
fn a_bad_reload_is_logged_and_the_previous_configuration_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    ca.server(&["keep.test"]).write(dir.path(), "server");
    let upstream = echo_upstream();
    let port = free_port();
    let policy = one_endpoint("keep.test", port, &upstream.url(), &[]);
    let gate = start_gate(dir.path(), "keep", &policy, &[]);
    let offset = gate.log_len();
    std::fs::write(
        dir.path().join("keep.yaml"),
        policy.replace("server_private_key", "server_privat_key"),
    )
    .unwrap();
    gate.signal(Signal::Hup).unwrap();
    gate.wait_for_log_after(
        offset,
        "still serving the previous configuration",
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(
        gate.log()[offset..].contains("server_privat_key"),
        "{}",
        gate.log()
    );
    let res = Curl::https("keep.test", port, "/").ca(&ca_crt).run();
    assert_eq!(res.status, Some(200), "{res:?}");
}

/// An upstream that holds each request for `delay`, and says when one arrived.
fn slow_upstream(delay: Duration) -> (u16, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let tx = tx.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).unwrap_or(0) > 0 {
                    if line == "\r\n" {
                        break;
                    }
                    line.clear();
                }
                let _ = tx.send(());
                std::thread::sleep(delay);
                let mut stream = stream;
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nslow",
                );
            });
        }
    });
    (port, rx)
}

#[test]
fn sigterm_drains_an_in_flight_request_and_exits_zero() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    ca.server(&["drain.test"]).write(dir.path(), "server");
    let (upstream_port, arrived) = slow_upstream(Duration::from_millis(1500));
    let port = free_port();
    let policy = one_endpoint(
        "drain.test",
        port,
        &format!("http://127.0.0.1:{upstream_port}"),
        &[],
    );
    let mut gate = start_gate(dir.path(), "drain", &policy, &["--log-format", "json"]);
    // JSON logs: one object per line.
    let first = gate.log().lines().next().unwrap_or_default().to_owned();
    let parsed: serde_json::Value =
        serde_json::from_str(&first).unwrap_or_else(|e| panic!("{e}: {first}"));
    assert!(
        parsed["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with("listening on"),
        "{first}"
    );

    let request = Curl::https("drain.test", port, "/").ca(&ca_crt);
    let request = std::thread::spawn(move || request.run());
    arrived.recv_timeout(Duration::from_secs(10)).unwrap();
    gate.signal(Signal::Term).unwrap();
    let res = request.join().unwrap();
    assert_eq!(res.status, Some(200), "{res:?}\n{}", gate.log());
    assert_eq!(res.body, "slow");
    let status = gate
        .wait_exit(Duration::from_secs(10))
        .expect("tlsgate did not exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", gate.log());
    // Once draining, nothing new is accepted.
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
}

/// An AgentEndpoint for `host` on the manifest port 443, terminating with the files beside its
/// directory, in front of the Service `svc.default:80`.
fn agent_endpoint(name: &str, host: &str) -> String {
    format!(
        "apiVersion: ngrok.k8s.ngrok.com/v1alpha1
kind: AgentEndpoint
metadata: {{name: {name}}}
spec:
  url: https://{host}
  upstream: {{url: 'http://svc.default:80'}}
  trafficPolicy:
    inline:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config: {{server_certificate: ../server.crt, server_private_key: ../server.key}}
"
    )
}

#[test]
fn a_manifest_added_to_a_watched_directory_is_served_without_a_signal() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    ca.server(&["a.k8s.test", "b.k8s.test"])
        .write(dir.path(), "server");
    let manifests = dir.path().join("k8s");
    std::fs::create_dir(&manifests).unwrap();
    std::fs::write(manifests.join("a.yaml"), agent_endpoint("a", "a.k8s.test")).unwrap();
    let upstream = echo_upstream();
    let port = free_port();
    let mut cmd = Command::new(tlsgate_bin());
    cmd.arg("run").arg("-c").arg(&manifests).args([
        "--listen".to_owned(),
        format!("443=127.0.0.1:{port}"),
        "--resolve".to_owned(),
        format!("svc:80=127.0.0.1:{}", upstream.port()),
    ]);
    let gate = Proc::spawn("k8s-dir", cmd);
    gate.wait_for_log("serving ", Duration::from_secs(60))
        .unwrap();
    let get = |host: &str| Curl::https(host, port, "/").ca(&ca_crt).run();
    assert_eq!(get("a.k8s.test").status, Some(200), "{}", gate.log());
    assert_eq!(get("b.k8s.test").status, None, "b is not served yet");

    let offset = gate.log_len();
    // Written elsewhere and moved in, as a user (or kubectl cp) would: never half a file.
    let staged = dir.path().join("b.yaml.tmp");
    std::fs::write(&staged, agent_endpoint("b", "b.k8s.test")).unwrap();
    std::fs::rename(&staged, manifests.join("b.yaml")).unwrap();
    gate.wait_for_log_after(offset, "reloaded configuration", Duration::from_secs(15))
        .unwrap();
    assert_eq!(get("b.k8s.test").status, Some(200), "{}", gate.log());
}

/// The seed's certificates (its openssl commands) and a CRL made by openssl's own CA tooling
/// (`scripts/ca-crl.sh`), as a user following docs/revocation.md would.
fn openssl_crl(dir: &std::path::Path, revoke: &[&str]) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ca-crl.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).arg(dir).args(revoke);
    let run = tlsgate_e2e::run_bounded(cmd, b"", Duration::from_secs(30));
    assert_eq!(run.exit_code, 0, "scripts/ca-crl.sh: {run:?}");
}

#[test]
fn a_certificate_revoked_while_running_is_refused_and_its_connections_drained() {
    let dir = tempfile::tempdir().unwrap();
    tlsgate_test_support::seed_openssl_certs(dir.path()).unwrap();
    openssl_crl(dir.path(), &[]);
    let upstream = echo_upstream();
    let port = free_port();
    let host = "terminate-tls-example.ngrok.app";
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https(host)
                .on_loopback(port)
                .upstream(upstream.url())
                .terminate_tls(
                    TerminateTls::files("server.crt", "server.key")
                        .client_ca("ca.crt")
                        .client_crl("ca.crl"),
                ),
        )
        .to_yaml();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let gate = start_gate(
        dir.path(),
        "crl",
        &policy,
        &["--drain-timeout", "2s", "--metrics", &metrics_addr],
    );
    let get = || {
        Curl::https(host, port, "/")
            .ca(dir.path().join("ca.crt"))
            .client_cert(dir.path().join("client.crt"), dir.path().join("client.key"))
            .run()
    };
    assert_eq!(get().status, Some(200), "{}", gate.log());

    // A connection that is open when the certificate is revoked.
    let mut held = Command::new(tool("openssl"));
    held.current_dir(dir.path())
        .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
        .args(["-servername", host, "-CAfile", "ca.crt"])
        .args(["-cert", "client.crt", "-key", "client.key"])
        .args(["-ign_eof", "-alpn", "http/1.1"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut held = held.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert!(matches!(held.try_wait(), Ok(None)), "s_client connected");

    // Revoked by the CA; the watched CRL file is reloaded without a signal.
    let offset = gate.log_len();
    openssl_crl(dir.path(), &["client.crt"]);
    gate.wait_for_log_after(offset, "reloaded configuration", Duration::from_secs(15))
        .unwrap();
    let refused = get();
    assert_eq!(refused.status, None, "a revoked certificate got an answer");
    let metrics = Curl::new(format!("http://{metrics_addr}/metrics")).run();
    for needle in [
        "tlsgate_client_crl_next_update_timestamp_seconds{endpoint=\"https://terminate-tls-example.ngrok.app\",issuer=\"CN=ExampleCA\"}",
        "reason=\"client_certificate_revoked\"",
    ] {
        assert!(metrics.body.contains(needle), "missing {needle}:\n{}", metrics.body);
    }
    gate.wait_for_log_after(offset, "client_certificate_revoked", Duration::from_secs(5))
        .unwrap();
    let closed = (0..60).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        matches!(held.try_wait(), Ok(Some(_)))
    });
    let _ = held.kill();
    let _ = held.wait();
    assert!(
        closed,
        "the connection made before the revocation stayed open"
    );

    // A CRL that cannot be read keeps the previous one, and says so.
    let offset = gate.log_len();
    std::fs::write(dir.path().join("ca.crl"), "not a CRL").unwrap();
    gate.wait_for_log_after(
        offset,
        "still serving the previous configuration",
        Duration::from_secs(15),
    )
    .unwrap();
    assert!(
        gate.log()[offset..].contains("mutual_tls_certificate_revocation_lists"),
        "{}",
        gate.log()
    );
    assert_eq!(get().status, None, "still revoked under the previous CRL");
}

/// `tlsgate_ocsp_staple_next_update_timestamp_seconds{endpoint}`: until when each endpoint's
/// staple may be served, read at the scrape — the responder's nextUpdate for an endpoint whose
/// real `openssl ocsp` responder answered, 0 for one whose responder is down, so an alert on
/// "less than an hour left" also fires when there is no staple at all.
#[test]
fn the_staples_expiry_is_a_gauge_and_zero_while_there_is_none() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Authority::root("Stapling CA");
    ca.write(d, "ca");
    let (up, down) = (free_port(), free_port());
    for (stem, host, responder) in [
        ("up", "up.staple.test", up),
        ("down", "down.staple.test", down),
    ] {
        let leaf = ca.issue(
            &tlsgate_test_support::LeafSpec::server(&[host])
                .with_ocsp_url(&format!("http://127.0.0.1:{responder}/")),
        );
        std::fs::write(
            d.join(format!("{stem}.crt")),
            leaf.cert_pem + &ca.cert_pem(),
        )
        .unwrap();
        std::fs::write(d.join(format!("{stem}.key")), &leaf.key_pem).unwrap();
    }
    // The responder knows `up.crt` as valid (status, expiry, revocation, serial, file, subject).
    let serial = Command::new(tool("openssl"))
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(d.join("up.crt"))
        .output()
        .unwrap();
    let serial = String::from_utf8(serial.stdout).unwrap();
    let serial = serial.trim().trim_start_matches("serial=");
    std::fs::write(
        d.join("index.txt"),
        format!("V\t351231000000Z\t\t{serial}\tunknown\t/CN=up.staple.test\n"),
    )
    .unwrap();
    let mut responder = Command::new(tool("openssl"));
    responder
        .current_dir(d)
        .args(["ocsp", "-index", "index.txt", "-port", &up.to_string()])
        .args([
            "-CA", "ca.crt", "-rsigner", "ca.crt", "-rkey", "ca.key", "-ndays", "1",
        ]);
    let responder = Proc::spawn("ocsp", responder);
    responder
        .wait_for_log("ACCEPT ", Duration::from_secs(30))
        .unwrap();

    let upstream = echo_upstream();
    let port = free_port();
    let endpoint = |host: &str, stem: &str| {
        Endpoint::https(host)
            .on_loopback(port)
            .upstream(upstream.url())
            .terminate_tls(TerminateTls::files(
                format!("{stem}.crt"),
                format!("{stem}.key"),
            ))
    };
    let policy = PolicyBuilder::new()
        .endpoint(endpoint("up.staple.test", "up"))
        .endpoint(endpoint("down.staple.test", "down"))
        .to_yaml();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let gate = start_gate(d, "staples", &policy, &["--metrics", &metrics_addr]);
    let gauge = |host: &str| -> Option<i64> {
        let body = Curl::new(format!("http://{metrics_addr}/metrics"))
            .run()
            .body;
        let name = format!(
            "tlsgate_ocsp_staple_next_update_timestamp_seconds{{endpoint=\"https://{host}\"}} "
        );
        body.lines()
            .find_map(|l| l.strip_prefix(name.as_str()))
            .map(|v| v.trim().parse().unwrap())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let deadline = Instant::now() + Duration::from_secs(20);
    let stapled = loop {
        match gauge("up.staple.test") {
            Some(until) if until > 0 => break until,
            _ if Instant::now() > deadline => {
                panic!("no staple for up.staple.test within 20 s:\n{}", gate.log())
            }
            _ => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // `-ndays 1`: the answer's nextUpdate is a day after it was made.
    assert!(
        (now + 86_400 - 120..=now + 86_400 + 120).contains(&stapled),
        "nextUpdate {stapled}, now {now}"
    );
    assert_eq!(gauge("down.staple.test"), Some(0), "{}", gate.log());
}

/// `--access-log-buffer` (nginx's `access_log … buffer= flush=`): access lines wait in memory
/// while the buffer and the flush interval have room, the next other line (here SIGTERM's)
/// takes them out first, in order, and nothing is lost at exit; with a short interval they
/// leave on their own.
#[test]
fn buffered_access_lines_wait_in_memory_and_all_reach_the_log_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    ca.server(&["buf.test"]).write(dir.path(), "server");
    let upstream = echo_upstream();
    let get = |port: u16, path: &str| Curl::https("buf.test", port, path).ca(&ca_crt).run();

    let port = free_port();
    let policy = one_endpoint("buf.test", port, &upstream.url(), &[]);
    let flags = ["--access-log-buffer", "64k", "--access-log-flush", "1h"];
    // start_gate waits for the "serving" line: lines other than access lines are not held.
    let mut gate = start_gate(dir.path(), "buffered", &policy, &flags);
    for path in ["/one", "/two", "/three"] {
        assert_eq!(get(port, path).status, Some(200), "{}", gate.log());
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !gate.log().contains("upstream_status"),
        "an access line left a 64k buffer with an hour to go:\n{}",
        gate.log()
    );
    gate.signal(Signal::Term).unwrap();
    let status = gate
        .wait_exit(Duration::from_secs(10))
        .expect("no exit after SIGTERM");
    assert_eq!(status.code(), Some(0), "{}", gate.log());
    let log = gate.log();
    let at = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} is not in the log:\n{log}"))
    };
    let (one, two, three) = (
        at(r#"path="/one""#),
        at(r#"path="/two""#),
        at(r#"path="/three""#),
    );
    assert!(
        one < two && two < three,
        "access lines out of order:\n{log}"
    );
    assert!(
        three < at("SIGTERM"),
        "access lines after the line that followed them:\n{log}"
    );

    let port = free_port();
    let policy = one_endpoint("buf.test", port, &upstream.url(), &[]);
    let flags = ["--access-log-buffer", "64k", "--access-log-flush", "200ms"];
    let gate = start_gate(dir.path(), "flushed", &policy, &flags);
    assert_eq!(get(port, "/timer").status, Some(200), "{}", gate.log());
    gate.wait_for_log(r#"path="/timer""#, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the flush interval did not write the line: {e}"));
}
