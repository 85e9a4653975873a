//! The load generator of `make bench-compare` (scripts/bench-compare.sh): HTTP/1.1 over TLS 1.3
//! with a client certificate, X25519 only and no session resumption, the same for every proxy
//! it is pointed at.
//!
//! ```text
//! loadgen --addr 127.0.0.1:8443 --sni bench.test --ca ca.crt --cert client.crt --key client.key
//!         --mode keepalive|handshake --connections 16 --seconds 10
//! ```
//!
//! `keepalive`: each connection sends requests one after another for the whole run.
//! `handshake`: each request on a new connection (a full handshake, `Connection: close`).
//! Prints one JSON line: `{"requests": N, "errors": E, "seconds": S}`. A response that is not
//! `200` counts as an error, as does a connection that fails.

// A benchmark tool aborts on bad arguments or files; that is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

struct Args {
    addr: SocketAddr,
    sni: String,
    ca: String,
    cert: String,
    key: String,
    handshake: bool,
    connections: usize,
    seconds: u64,
}

fn args() -> Args {
    let mut it = std::env::args().skip(1);
    let mut get = std::collections::HashMap::new();
    while let Some(flag) = it.next() {
        let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        get.insert(flag.trim_start_matches("--").to_owned(), value);
    }
    let take = |k: &str| {
        get.get(k)
            .cloned()
            .unwrap_or_else(|| panic!("--{k} is required"))
    };
    Args {
        addr: take("addr").parse().expect("--addr IP:PORT"),
        sni: take("sni"),
        ca: take("ca"),
        cert: take("cert"),
        key: take("key"),
        handshake: match take("mode").as_str() {
            "keepalive" => false,
            "handshake" => true,
            other => panic!("--mode keepalive|handshake, not {other}"),
        },
        connections: take("connections").parse().expect("--connections N"),
        seconds: take("seconds").parse().expect("--seconds N"),
    }
}

fn tls_config(a: &Args) -> Arc<rustls::ClientConfig> {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.kx_groups = vec![rustls::crypto::aws_lc_rs::kx_group::X25519];
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(&a.ca).expect("--ca") {
        roots.add(c.expect("CA PEM")).expect("CA");
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&a.cert)
        .expect("--cert")
        .map(|c| c.expect("certificate PEM"))
        .collect();
    let key = PrivateKeyDer::from_pem_file(&a.key).expect("--key");
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client certificate");
    config.resumption = rustls::client::Resumption::disabled();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

/// Reads one response (head, then a `content-length` body); whether it was a 200.
async fn response<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> std::io::Result<bool> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let ok = head.starts_with("http/1.1 200");
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(ok)
}

async fn worker(
    a: Arc<Args>,
    connector: TlsConnector,
    until: Instant,
    done: Arc<AtomicU64>,
    errors: Arc<AtomicU64>,
) {
    let name = ServerName::try_from(a.sni.clone()).expect("--sni");
    let keepalive = format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", a.sni);
    let close = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        a.sni
    );
    let mut buf = Vec::with_capacity(8192);
    while Instant::now() < until {
        let Ok(tcp) = TcpStream::connect(a.addr).await else {
            errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let Ok(mut tls) = connector.connect(name.clone(), tcp).await else {
            errors.fetch_add(1, Ordering::Relaxed);
            continue;
        };
        loop {
            let request = if a.handshake { &close } else { &keepalive };
            let ok = tls.write_all(request.as_bytes()).await.is_ok()
                && matches!(response(&mut tls, &mut buf).await, Ok(true));
            if ok {
                done.fetch_add(1, Ordering::Relaxed);
            } else {
                errors.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if a.handshake || Instant::now() >= until {
                break;
            }
        }
    }
}

fn main() {
    let a = Arc::new(args());
    let connector = TlsConnector::from(tls_config(&a));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (done, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let started = Instant::now();
    let until = started + Duration::from_secs(a.seconds);
    runtime.block_on(async {
        let tasks: Vec<_> = (0..a.connections)
            .map(|_| {
                tokio::spawn(worker(
                    a.clone(),
                    connector.clone(),
                    until,
                    done.clone(),
                    errors.clone(),
                ))
            })
            .collect();
        for t in tasks {
            let _ = t.await;
        }
    });
    println!(
        "{{\"requests\": {}, \"errors\": {}, \"seconds\": {:.3}}}",
        done.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
}
