//! Reloads and signals: SIGHUP with a rotated certificate, a reload adding a deny rule, a bad
//! reload, SIGTERM's drain, a watched directory.

use super::*;

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
