//! `make bench`: the native edge end to end, as a client sees it.
//!
//! Runs the release `tlsgate` binary with an mTLS policy in front of an in-process HTTP/1.1
//! upstream, and drives it from this process with rustls + hyper over loopback:
//!
//! - full TLS 1.3 handshakes with a client certificate (new connection, one request each),
//!   and the same with session resumption (rustls clients resume by default);
//! - full handshakes with the post-quantum hybrid X25519MLKEM768 (which tlsgate offers first)
//!   against X25519 alone, as tlsgate's CPU time per handshake (read from /proc);
//! - requests on one kept-alive connection (latency);
//! - requests from 16 kept-alive connections at once (throughput).
//!
//! Client and server share the machine's cores, so the numbers are a floor, not a ceiling.

// A benchmark aborts on a broken fixture; that is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tlsgate_test_support::Authority;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;

const HOST: &str = "bench.example.com";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn connect(connector: &TlsConnector, port: u16) -> Sender {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let name = ServerName::try_from(HOST).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

async fn get(sender: &mut Sender) {
    sender.ready().await.unwrap();
    let req = hyper::Request::get("/bench")
        .header("host", HOST)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = sender.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
}

/// Stops the proxy however the benchmark ends, a failed assertion included.
struct Proxy(std::process::Child);

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// User plus system CPU time the process `pid` has used so far (Linux /proc; fields 14 and 15
/// of `stat`, in clock ticks of `ticks_per_second`).
fn cpu_time(pid: u32, ticks_per_second: u64) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // The command name may hold spaces; the fields after it do not.
    let fields: Vec<u64> = stat[stat.rfind(')').unwrap() + 2..]
        .split(' ')
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    Duration::from_micros((fields[11] + fields[12]) * 1_000_000 / ticks_per_second)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), the unit of /proc's CPU times.
fn clock_ticks() -> u64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn report(name: &str, n: u64, elapsed: Duration) {
    let per = elapsed.as_secs_f64() / n as f64;
    println!(
        "{name:<52} {:>9.0} /s   {:>8.1} µs each  ({n} in {:.2} s)",
        1.0 / per,
        per * 1e6,
        elapsed.as_secs_f64()
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("Bench CA");
    ca.server(&[HOST]).write(dir.path(), "server");
    let client = ca.client("bench-client");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    let upstream = upstream().await;
    let port = free_port();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "endpoints:
  - url: https://{HOST}
    bind: 127.0.0.1:{port}
    upstream: {{ url: 'http://{upstream}' }}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
        - expressions: [\"conn.tls.client.subject.common_name != 'bench-client'\"]
          actions: [{{ type: deny }}]
      on_http_request:
        - actions: [{{ type: add-headers, config: {{ headers: {{ x-cn: '${{conn.tls.client.subject.common_name}}' }} }} }}]
"
        ),
    )
    .unwrap();
    let _proxy = Proxy(
        Command::new(env!("CARGO_BIN_EXE_tlsgate"))
            .args(["run", "-c"])
            .arg(&policy)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "tlsgate did not start"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A client that trusts the bench CA and presents `client`, with `provider`'s algorithms.
    let client_config = |provider: rustls::crypto::CryptoProvider| {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.cert_der())).unwrap();
        rustls::ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_client_auth_cert(
                vec![CertificateDer::from(client.cert_der.clone())],
                PrivateKeyDer::from_pem_slice(client.key_pem.as_bytes()).unwrap(),
            )
            .unwrap()
    };
    let config = client_config(rustls::crypto::ring::default_provider());
    let mut full = config.clone();
    full.resumption = rustls::client::Resumption::disabled();
    let full = TlsConnector::from(Arc::new(full));
    let connector = TlsConnector::from(Arc::new(config));

    println!("tlsgate native edge, release build, TLS 1.3 + client certificate, loopback\n");
    // Warm up (first connections also warm the upstream pool).
    for _ in 0..20 {
        get(&mut connect(&connector, port).await).await;
    }

    let n = 400;
    let t = Instant::now();
    for _ in 0..n {
        get(&mut connect(&full, port).await).await;
    }
    report(
        "new connection: full mTLS handshake + 1 request",
        n,
        t.elapsed(),
    );

    let t = Instant::now();
    for _ in 0..n {
        get(&mut connect(&connector, port).await).await;
    }
    report(
        "new connection: resumed TLS 1.3 session + 1 request",
        n,
        t.elapsed(),
    );

    // Key exchange: the hybrid tlsgate prefers, then X25519 alone, with aws-lc-rs clients
    // (ring has no ML-KEM). tlsgate's own CPU per handshake, so the client's share of the
    // ML-KEM work does not count.
    let client_with = |groups: Option<Vec<&'static dyn rustls::crypto::SupportedKxGroup>>| {
        let mut provider = rustls::crypto::aws_lc_rs::default_provider();
        if let Some(groups) = groups {
            provider.kx_groups = groups;
        }
        let mut config = client_config(provider);
        config.resumption = rustls::client::Resumption::disabled();
        TlsConnector::from(Arc::new(config))
    };
    let hybrid = client_with(None);
    let classic = client_with(Some(vec![rustls::crypto::aws_lc_rs::kx_group::X25519]));
    let pid = _proxy.0.id();
    let ticks = clock_ticks();
    for (name, connector) in [("X25519MLKEM768", &hybrid), ("X25519", &classic)] {
        let tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        let tls = connector
            .connect(ServerName::try_from(HOST).unwrap(), tcp)
            .await
            .unwrap();
        let agreed = tls
            .get_ref()
            .1
            .negotiated_key_exchange_group()
            .map(|g| g.name());
        assert_eq!(agreed.map(|g| format!("{g:?}")), Some(name.to_owned()));
    }
    // Interleaved rounds, so a busy moment of the machine falls on both alike.
    let (rounds, per_round) = (8u64, 250u64);
    let mut totals = [(Duration::ZERO, Duration::ZERO); 2];
    for _ in 0..rounds {
        for (total, connector) in totals.iter_mut().zip([&hybrid, &classic]) {
            let (t, cpu) = (Instant::now(), cpu_time(pid, ticks));
            for _ in 0..per_round {
                get(&mut connect(connector, port).await).await;
            }
            total.0 += t.elapsed();
            total.1 += cpu_time(pid, ticks) - cpu;
        }
    }
    let n = rounds * per_round;
    for (name, (elapsed, used)) in ["X25519MLKEM768", "X25519"].into_iter().zip(totals) {
        report(
            &format!("full mTLS handshake + 1 request, {name}"),
            n,
            elapsed,
        );
        println!(
            "{:<52} {:>9.0} /CPU-s {:>8.1} µs of tlsgate CPU each",
            format!("  tlsgate CPU, {name}"),
            n as f64 / used.as_secs_f64(),
            used.as_secs_f64() * 1e6 / n as f64
        );
    }

    let mut sender = connect(&connector, port).await;
    let n = 4000;
    let t = Instant::now();
    for _ in 0..n {
        get(&mut sender).await;
    }
    report("kept-alive connection: sequential requests", n, t.elapsed());

    let conns = 16u64;
    let per_conn = 500u64;
    let mut senders = Vec::new();
    for _ in 0..conns {
        senders.push(connect(&connector, port).await);
    }
    let t = Instant::now();
    let tasks: Vec<_> = senders
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                for _ in 0..per_conn {
                    get(&mut s).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    report(
        "16 kept-alive connections: concurrent requests",
        conns * per_conn,
        t.elapsed(),
    );
}
