//! What the native host sends upstream and how it answers when the upstream fails: HTTP/1.1 and
//! HTTP/2, header hygiene, streamed bodies, tls:// endpoints, 502/504, metrics.

// Helpers outside #[test] functions fail the test that called them by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod native_common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use native_common::start_gate;
use tlsgate_e2e::{echo_upstream, free_port, Curl};
use tlsgate_test_support::{
    Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls, Upstream, UpstreamTls,
};

struct Pki {
    ca: PathBuf,
    crt: PathBuf,
    key: PathBuf,
    client: (PathBuf, PathBuf),
}

fn pki(dir: &Path, hosts: &[&str]) -> Pki {
    let ca = Authority::root("Proxy CA");
    let (ca_crt, _) = ca.write(dir, "ca");
    let (crt, key) = ca.server(hosts).write(dir, "server");
    let client = ca.client("alice").write(dir, "client");
    Pki {
        ca: ca_crt,
        crt,
        key,
        client,
    }
}

/// terminate-tls with the server certificate, client certificates from the CA.
fn terminate(p: &Pki) -> TerminateTls {
    TerminateTls::files(&p.crt, &p.key).client_ca(&p.ca)
}

/// A policy of one https endpoint per `(host, upstream)`, all on `port`.
fn policy(p: &Pki, port: u16, endpoints: &[(&str, Upstream)]) -> String {
    endpoints
        .iter()
        .fold(PolicyBuilder::new(), |policy, (host, upstream)| {
            policy.endpoint(
                Endpoint::https(host)
                    .on_loopback(port)
                    .upstream(upstream.clone())
                    .terminate_tls(terminate(p)),
            )
        })
        .to_yaml()
}

/// `https://host:port/some/path?q=1` with alice's certificate.
fn call(p: &Pki, host: &str, port: u16) -> Curl {
    Curl::https(host, port, "/some/path?q=1")
        .ca(&p.ca)
        .client_cert(&p.client.0, &p.client.1)
}

#[test]
fn forwards_http1_and_http2_with_clean_identity_headers() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), &["app.test"]);
    let upstream = echo_upstream();
    let port = free_port();
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("app.test")
                .on_loopback(port)
                .upstream(upstream.url())
                .terminate_tls(terminate(&p))
                .on_http_request(Rule::new().then(Action::add_headers(&[(
                    "x-client-cn",
                    "${conn.tls.client.subject.common_name}",
                )]))),
        )
        .to_yaml();
    let gate = start_gate(dir.path(), "proxy", &policy, &[]);

    for (version, request) in [
        ("1.1", call(&p, "app.test", port).http1_1()),
        ("2", call(&p, "app.test", port).http2()),
    ] {
        let res = request
            .header("x-forwarded-client-cert: Subject=\"CN=admin\"")
            .header("client-cert: :Zm9yZ2Vk:")
            .header("x-forwarded-for: 6.6.6.6")
            .run();
        assert_eq!(
            (res.http_version.as_deref(), res.status),
            (Some(version), Some(200)),
            "{res:?}\n{}",
            gate.log()
        );
    }
    let seen = upstream
        .wait_for_requests(2, Duration::from_secs(5))
        .unwrap();
    for request in &seen {
        assert_eq!(request.path, "/some/path?q=1");
        let xfcc = request
            .header("x-forwarded-client-cert")
            .unwrap_or_default();
        assert!(
            xfcc.contains("Subject=\"CN=alice\""),
            "forged identity kept: {xfcc}"
        );
        assert!(!xfcc.contains("admin"), "{xfcc}");
        assert_eq!(request.header("client-cert"), None);
        assert_eq!(
            request.header("x-forwarded-for").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            request.header("x-forwarded-proto").as_deref(),
            Some("https")
        );
        assert_eq!(
            request.header("x-forwarded-host").as_deref(),
            Some(format!("app.test:{port}").as_str())
        );
        assert_eq!(request.header("x-client-cn").as_deref(), Some("alice"));
    }
    assert!(
        gate.log().contains("upstream_status"),
        "no access line: {}",
        gate.log()
    );
}

/// An upstream that reads a Content-Length body without keeping it and answers with its size.
fn counting_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut length = 0u64;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some((name, value)) = line.split_once(':') {
                        if name.eq_ignore_ascii_case("content-length") {
                            length = value.trim().parse().unwrap();
                        }
                    }
                }
                let received =
                    std::io::copy(&mut reader.take(length), &mut std::io::sink()).unwrap();
                let body = received.to_string();
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    port
}

fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn streams_a_large_upload_without_holding_it_in_memory() {
    const SIZE: u64 = 256 * 1024 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), &["big.test"]);
    let upstream_port = counting_upstream();
    let port = free_port();
    let policy = policy(
        &p,
        port,
        &[(
            "big.test",
            format!("http://127.0.0.1:{upstream_port}").into(),
        )],
    );
    let gate = start_gate(dir.path(), "big", &policy, &[]);
    let file = dir.path().join("upload.bin");
    std::fs::File::create(&file).unwrap().set_len(SIZE).unwrap();
    let data = format!("@{}", file.display());
    let res = call(&p, "big.test", port)
        .arg("--data-binary")
        .arg(data)
        .header("Expect:")
        .run();
    assert_eq!(res.status, Some(200), "{res:?}\n{}", gate.log());
    assert_eq!(res.body, SIZE.to_string());
    let peak = peak_rss_kib(gate.id());
    eprintln!("tlsgate peak RSS after a {SIZE} byte upload: {peak} KiB");
    assert!(
        peak < 128 * 1024,
        "tlsgate peaked at {peak} KiB for a {SIZE} byte upload"
    );
}

#[test]
fn tls_endpoints_proxy_bytes_to_a_tcp_upstream() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), &["tcp.test"]);
    let upstream = echo_upstream();
    let port = free_port();
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::tls("tcp.test")
                .on_loopback(port)
                .upstream(format!("tcp://{}", upstream.addr()))
                .terminate_tls(terminate(&p)),
        )
        .to_yaml();
    let gate = start_gate(dir.path(), "tcp", &policy, &[]);
    let res = call(&p, "tcp.test", port)
        .header("x-forwarded-client-cert: untouched")
        .run();
    assert_eq!(res.status, Some(200), "{res:?}\n{}", gate.log());
    // Bytes are bytes: nothing is added or removed on a tls:// endpoint.
    let seen = upstream
        .wait_for_requests(1, Duration::from_secs(5))
        .unwrap();
    assert_eq!(
        seen[0].header("x-forwarded-client-cert").as_deref(),
        Some("untouched")
    );
    gate.wait_for_log("tcp session", Duration::from_secs(5))
        .unwrap();
}

#[test]
fn upstream_failures_answer_502_and_504_and_show_in_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), &["down.test", "slow.test"]);
    let closed = free_port();
    // Accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = silent.local_addr().unwrap().port();
    let port = free_port();
    let metrics_port = free_port();
    let policy = policy(
        &p,
        port,
        &[
            ("down.test", format!("http://127.0.0.1:{closed}").into()),
            (
                "slow.test",
                format!("http://127.0.0.1:{silent_port}").into(),
            ),
        ],
    );
    let metrics_addr = format!("127.0.0.1:{metrics_port}");
    let gate = start_gate(
        dir.path(),
        "failures",
        &policy,
        &["--upstream-timeout", "1s", "--metrics", &metrics_addr],
    );
    let down = call(&p, "down.test", port).run();
    assert_eq!(down.status, Some(502), "{down:?}");
    let slow = call(&p, "slow.test", port).run();
    assert_eq!(slow.status, Some(504), "{slow:?}");
    let log = gate.log();
    assert!(log.contains("connection_refused"), "{log}");
    assert!(log.contains("upstream_response_timeout"), "{log}");

    let metrics = Curl::new(format!("http://{metrics_addr}/metrics")).run();
    assert_eq!(metrics.status, Some(200), "{metrics:?}");
    for needle in [
        "tlsgate_tls_handshakes_total{endpoint=\"https://down.test\",outcome=\"ok\"",
        "tlsgate_upstream_errors_total{endpoint=\"https://down.test\",reason=\"connection_refused\"}",
        "tlsgate_upstream_errors_total{endpoint=\"https://slow.test\",reason=\"upstream_response_timeout\"}",
        "tlsgate_http_requests_total",
        "tlsgate_active_connections",
    ] {
        assert!(metrics.body.contains(needle), "missing {needle}:\n{}", metrics.body);
    }
    drop(silent);
}

#[test]
fn reaches_an_http2_upstream_over_tls_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let p = pki(dir.path(), &["front.test", "inner.test"]);
    let echo = echo_upstream();
    let (front_port, inner_port) = (free_port(), free_port());
    // The inner hop is a second tlsgate that requires a client certificate and speaks h2.
    let inner = policy(&p, inner_port, &[("inner.test", echo.url().into())]);
    let _inner = start_gate(dir.path(), "inner", &inner, &[]);
    let upstream = Upstream::new(format!("https://127.0.0.1:{inner_port}"))
        .http2()
        .tls(
            UpstreamTls::new()
                .server_name("inner.test")
                .certificate_authority(&p.ca)
                .client_certificate(&p.client.0, &p.client.1),
        );
    let front = policy(&p, front_port, &[("front.test", upstream)]);
    let gate = start_gate(dir.path(), "front", &front, &[]);
    let res = call(&p, "front.test", front_port).run();
    assert_eq!(res.status, Some(200), "{res:?}\n{}", gate.log());
    let seen = echo.wait_for_requests(1, Duration::from_secs(5)).unwrap();
    // The inner hop verified the front's client certificate and says so.
    let xfcc = seen[0]
        .header("x-forwarded-client-cert")
        .unwrap_or_default();
    assert!(xfcc.contains("Subject=\"CN=alice\""), "{xfcc}");
}
