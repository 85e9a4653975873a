//! Helpers the decision tests share: sessions built from a policy, requests, and verdict
//! unwrappers.

use super::*;

pub(crate) const HOST: &str = "app.example.com";

pub(crate) fn mtls(strategy: &str) -> String {
    format!(
        "                mutual_tls_certificate_authorities: [ca.crt]\n                mutual_tls_verification_strategy: {strategy}\n"
    )
}

pub(crate) fn session(f: &Fixture, yaml: &str, cert: ClientCert) -> Session {
    session_from(f, yaml, cert, "127.0.0.1")
}

pub(crate) fn session_from(f: &Fixture, yaml: &str, cert: ClientCert, ip: &str) -> Session {
    let config = f.load(yaml).expect("policy loads");
    let policy = Policy::new(config);
    let endpoint = Arc::clone(policy.endpoint(0).expect("endpoint"));
    let facts = TlsFacts {
        version: TlsVersion::Tls13,
        cipher_suite: "TLS_AES_128_GCM_SHA256".into(),
        sni: Some(HOST.into()),
        alpn: Some("h2".into()),
        client_ip: ip.parse::<IpAddr>().expect("ip"),
        client_port: 50_000,
        server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
        started: std::time::UNIX_EPOCH,
        resumed: false,
        key_exchange_group: "",
        ja4: String::new(),
        client_cert: cert,
    };
    Session::new(endpoint, facts)
}

pub(crate) fn facts(der: &[u8]) -> Box<ClientCertFacts> {
    Box::new(ClientCertFacts::from_der(der).expect("parses"))
}

pub(crate) fn get(host: &str) -> Request<'_> {
    Request {
        method: "GET",
        host,
        target: "/",
        headers: &[],
    }
}

pub(crate) fn deny(reason: DenyReason) -> Verdict {
    Verdict::Deny(reason)
}

// --- on_http_request -------------------------------------------------------------------------

pub(crate) fn http(rules: &str) -> String {
    policy(
        HOST,
        &mtls("require-and-verify"),
        &format!("      on_http_request:\n{rules}"),
    )
}

pub(crate) fn forwarded(v: RequestVerdict) -> Forward {
    match v {
        RequestVerdict::Forward(forward) => forward,
        other => panic!("expected forward, got {other:?}"),
    }
}

pub(crate) fn responded(v: RequestVerdict) -> tlsgate_core::policy::LocalResponse {
    match v {
        RequestVerdict::Respond(r) => r,
        other => panic!("expected a local response, got {other:?}"),
    }
}

pub(crate) const DENY_ADMIN: &str = "        - expressions: [\"req.path.startsWith('/admin')\"]\n          actions: [{type: deny, config: {status_code: 404}}]\n";
