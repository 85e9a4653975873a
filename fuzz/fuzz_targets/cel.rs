//! CEL rules as a policy writes them: any expression text compiles or is refused, and a
//! compiled one evaluates (to a value or an error, deterministically) over a connection with a
//! verified certificate and a request.
#![no_main]

use std::net::IpAddr;

use libfuzzer_sys::fuzz_target;
use tlsgate_core::expr::{Expression, Phase, Template, Variables};
use tlsgate_core::{ClientCert, ClientCertFacts, Request, TlsFacts, TlsVersion};

mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let facts = TlsFacts {
        version: TlsVersion::Tls13,
        cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some("app.test".into()),
        alpn: Some("h2".into()),
        client_ip: IpAddr::from([10, 0, 0, 1]),
        client_port: 40_000,
        server: "127.0.0.1:8443".parse().expect("address"),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: ClientCert::Verified(Box::new(
            ClientCertFacts::from_der(&common::fixture().client_der).expect("fixture"),
        )),
    };
    let vars = Variables::for_connection(&facts, None);
    let headers = [("user-agent", "fuzz"), ("x-a", "1")];
    let req = Request {
        method: "GET",
        host: "app.test",
        target: "/a?b=c",
        headers: &headers,
    };
    let with_request = vars.with_request(&req, "/a", "https://app.test/a?b=c");
    if let Ok(e) = Expression::compile(source, Phase::TcpConnect) {
        assert_eq!(e.matches(&vars), e.matches(&vars));
    }
    if let Ok(e) = Expression::compile(source, Phase::HttpRequest) {
        assert_eq!(e.matches(&with_request), e.matches(&with_request));
    }
    if let Ok(t) = Template::compile(source, Phase::HttpRequest) {
        let _ = t.render(&with_request);
    }
});
