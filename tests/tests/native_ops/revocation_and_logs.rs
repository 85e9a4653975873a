//! Revocation while running, the OCSP staple's expiry gauge, and buffered access lines reaching the
//! log in order.

use super::*;

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
