//! What several targets share: certificates made once per process (tlsgate's own `certs`
//! command, into a temporary directory) and a policy that uses them.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

pub struct Fixture {
    pub dir: PathBuf,
    pub ca_pem: String,
    pub server_pem: String,
    pub client_der: Vec<u8>,
}

pub fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("tlsgate-fuzz-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        tlsgate::certs::generate(&tlsgate::certs::CertsOptions {
            out: dir.clone(),
            names: vec!["app.test".into(), "*.w.test".into()],
            key_type: tlsgate::certs::KeyType::EcdsaP256,
            ca_name: "Fuzz CA".into(),
            client_name: "alice".into(),
            days: 30,
        })
        .expect("certificates for the fuzz fixture");
        let read = |name: &str| std::fs::read_to_string(dir.join(name)).expect(name);
        let client_pem = read("client.crt");
        let client_der = rustls::pki_types::pem::PemObject::from_pem_slice(client_pem.as_bytes())
            .map(|d: rustls::pki_types::CertificateDer<'static>| d.as_ref().to_vec())
            .expect("client.crt");
        Fixture {
            ca_pem: read("ca.crt"),
            server_pem: read("server.crt"),
            client_der,
            dir,
        }
    })
}

/// A policy over the fixture's files with rules that read the request and the certificate.
pub fn policy_text() -> String {
    let dir = fixture().dir.display().to_string();
    format!(
        r#"endpoints:
  - url: https://app.test
    bind: 127.0.0.1:8443
    upstream: {{ url: "http://127.0.0.1:8080" }}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: {dir}/server.crt
                server_private_key: {dir}/server.key
                mutual_tls_certificate_authorities: [{dir}/ca.crt]
                mutual_tls_verification_strategy: request
      on_http_request:
        - expressions: ["req.path.startsWith('/admin') && conn.tls.client.subject.common_name != 'root'"]
          actions: [{{ type: deny, config: {{ status_code: 404 }} }}]
        - expressions: ["'x-drop' in req.headers"]
          actions: [{{ type: remove-headers, config: {{ headers: [x-drop] }} }}]
        - actions:
            - type: add-headers
              config:
                headers:
                  x-client-cn: "${{conn.tls.client.subject.common_name}}"
                  x-path: "${{req.path}}"
                  x-ua: "${{req.headers['user-agent']}}"
"#
    )
}
