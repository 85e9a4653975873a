//! `make bench`: the per-connection and per-request costs of the policy engine.
//!
//! A plain harness (no criterion) keeps `cargo build --all-targets` light; each case runs for a
//! fixed wall-clock budget after a warm-up and reports the mean time per operation.

// A benchmark aborts on a broken fixture; that is the right outcome.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tlsgate_core::pem::FileReader;
use tlsgate_core::sni::{HostPattern, SniRouter};
use tlsgate_core::{
    ClientCert, ClientCertFacts, Config, HostCrypto, KeyMode, LoadOptions, Policy, Request,
    Session, TlsFacts, TlsVersion,
};
use tlsgate_test_support::Authority;

struct TrustKeys;
impl HostCrypto for TrustKeys {
    fn check_key_pair(&self, _: &CertificateDer<'_>, _: &PrivateKeyDer<'_>) -> Result<(), String> {
        Ok(())
    }
    fn check_crl_signature(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

fn bench(name: &str, mut f: impl FnMut()) {
    for _ in 0..100 {
        f();
    }
    let budget = Duration::from_millis(500);
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        for _ in 0..64 {
            f();
        }
        n += 64;
    }
    let per = start.elapsed().as_nanos() as f64 / n as f64;
    println!("{name:<48} {per:>12.0} ns/op  ({n} iterations)");
}

const POLICY: &str = "endpoints:
  - url: https://app.example.com
    bind: 127.0.0.1:8443
    upstream: {url: http://127.0.0.1:8080}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
        - expressions: [\"conn.tls.client.subject.common_name != 'alice'\"]
          actions: [{type: deny}]
      on_http_request:
        - expressions: [\"req.path.startsWith('/admin')\"]
          actions: [{type: deny}]
        - actions: [{type: add-headers, config: {headers: {x-client-cn: \"${conn.tls.client.subject.common_name}\"}}}]
";

fn main() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::root("Bench CA");
    ca.server(&["app.example.com"]).write(dir.path(), "server");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write");
    let client = ca.client("alice");
    let reader = FileReader {
        base_dir: dir.path().to_path_buf(),
    };
    let options = LoadOptions {
        reader: &reader,
        keys: KeyMode::Load(&TrustKeys),
        deployment: tlsgate_core::Deployment::none(),
    };
    let file = PathBuf::from("bench.yaml");

    println!("tlsgate-core benchmarks (mean of a 0.5 s run each)\n");
    bench("load + validate policy (1 endpoint, 3 rules)", || {
        black_box(Config::load_str(POLICY, Some(&file), &options, 0).expect("loads"));
    });

    let policy = Policy::new(Config::load_str(POLICY, Some(&file), &options, 0).expect("loads"));
    bench("parse client certificate (ClientCertFacts)", || {
        black_box(ClientCertFacts::from_der(&client.cert_der).expect("parses"));
    });

    let endpoint = Arc::clone(policy.endpoint(0).expect("endpoint"));
    let facts = TlsFacts {
        version: TlsVersion::Tls13,
        cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some("app.example.com".into()),
        alpn: Some("h2".into()),
        client_ip: IpAddr::from([127, 0, 0, 1]),
        client_port: 50_000,
        server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Verified(Box::new(
            ClientCertFacts::from_der(&client.cert_der).expect("parses"),
        )),
    };
    bench("on_tcp_connect (strategy + 1 CEL rule)", || {
        let session = Session::new(Arc::clone(&endpoint), facts.clone());
        black_box(session.on_tcp_connect());
    });

    let session = Session::new(Arc::clone(&endpoint), facts.clone());
    let _ = session.on_tcp_connect();
    let req = Request {
        method: "GET",
        host: "app.example.com",
        target: "/api/items",
        headers: &[],
    };
    bench("on_http_request (deny rule + add-headers + XFCC)", || {
        black_box(session.on_http_request(&req));
    });

    let plain = Policy::new(
        Config::load_str(
            &POLICY
                .replace("      on_http_request:", "      on_http_request_unused:")
                .lines()
                .take_while(|l| !l.contains("on_http_request_unused"))
                .collect::<Vec<_>>()
                .join("\n"),
            Some(&file),
            &options,
            0,
        )
        .expect("loads"),
    );
    let plain_session = Session::new(Arc::clone(plain.endpoint(0).expect("endpoint")), facts);
    bench("on_http_request (no rules: Host check + XFCC)", || {
        black_box(plain_session.on_http_request(&req));
    });

    let routes: Vec<(HostPattern, usize)> = (0..1000)
        .map(|i| {
            (
                HostPattern::parse(&format!("tenant{i}.example.com")).expect("valid"),
                i,
            )
        })
        .chain(std::iter::once((
            HostPattern::parse("*.example.com").expect("valid"),
            1000,
        )))
        .collect();
    let router = SniRouter::new(routes);
    bench("SNI route among 1000 exact + 1 wildcard", || {
        black_box(router.route(black_box("tenant999.example.com")));
    });
}
