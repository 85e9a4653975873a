//! A request as a client may send it, through the policy to what the upstream receives (core's
//! decision and the header list both hosts apply). Whatever the client sends:
//! - no header the edge owns (`x-forwarded-*`, the identity headers, …) reaches the upstream
//!   with the client's value: only with tlsgate's, or not at all;
//! - nothing tlsgate sets carries a control character;
//! - the target sent upstream is normalized (no empty, `.` or `..` segments) and normalizing it
//!   again changes nothing.
#![no_main]

use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use tlsgate_core::request::{upstream_headers, Target, EDGE_HEADERS};
use tlsgate_core::{
    ClientCert, ClientCertFacts, EndpointPolicy, Policy, Request, RequestVerdict, Session,
    TlsFacts, TlsVersion,
};

mod common;

#[derive(Debug, Arbitrary)]
struct Input {
    method: String,
    host: String,
    target: String,
    headers: Vec<(String, String)>,
    verified: bool,
}

fn endpoint() -> &'static Arc<EndpointPolicy> {
    static ENDPOINT: OnceLock<Arc<EndpointPolicy>> = OnceLock::new();
    ENDPOINT.get_or_init(|| {
        let reader = tlsgate_core::pem::FileReader {
            base_dir: common::fixture().dir.clone(),
        };
        let options = tlsgate_core::LoadOptions {
            reader: &reader,
            keys: tlsgate_core::KeyMode::Skip,
            deployment: tlsgate_core::Deployment::none(),
        };
        let config = tlsgate_core::Config::load_str(&common::policy_text(), None, &options, 0)
            .expect("the fixture policy loads");
        Policy::new(config)
            .endpoint(0)
            .expect("one endpoint")
            .clone()
    })
}

fuzz_target!(|input: Input| {
    let client_cert = if input.verified {
        ClientCert::Verified(Box::new(
            ClientCertFacts::from_der(&common::fixture().client_der).expect("fixture"),
        ))
    } else {
        ClientCert::Absent
    };
    let facts = TlsFacts {
        version: TlsVersion::Tls13,
        cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some("app.test".into()),
        alpn: Some("h2".into()),
        client_ip: IpAddr::from([192, 0, 2, 7]),
        client_port: 40_000,
        server: "127.0.0.1:8443".parse().expect("address"),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert,
    };
    let session = Session::new(endpoint().clone(), facts);
    let headers: Vec<(&str, &str)> = input
        .headers
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let request = Request {
        method: &input.method,
        host: &input.host,
        target: &input.target,
        headers: &headers,
    };
    let RequestVerdict::Forward(forward) = session.on_http_request(&request) else {
        return;
    };
    for (name, value) in &forward.set_headers {
        assert!(!value.chars().any(char::is_control), "{name}: {value:?}");
    }
    let Ok(sent) = upstream_headers(&input.headers, &forward, false) else {
        return;
    };
    for (name, value) in &sent {
        if EDGE_HEADERS.contains(&name.as_str()) {
            assert!(
                forward
                    .set_headers
                    .iter()
                    .any(|(n, v)| n == name && v == value),
                "the client's {name}: {value:?} reached the upstream"
            );
        }
    }
    let target = Target::parse(&forward.target).expect("the forwarded target parses");
    assert_eq!(
        target.to_target(),
        forward.target,
        "normalizing twice changes it"
    );
    let path = forward.target.split('?').next().unwrap_or_default();
    assert!(path.starts_with('/'), "{path:?}");
    for segment in path[1..].split('/') {
        assert!(segment != "." && segment != "..", "dot segment in {path:?}");
    }
    assert!(!path.contains("//"), "empty segment in {path:?}");
    assert_eq!(&*forward.authority, endpoint().upstream_authority());
});
