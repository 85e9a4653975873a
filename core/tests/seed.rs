//! The seed document's own policy block, with certificates made by its eight openssl
//! commands, loads and summarizes as the seed describes.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use tlsgate_core::config::{ClientAuth, VerificationStrategy};
use tlsgate_core::pem::FileReader;
use tlsgate_core::{Config, KeyMode, LoadOptions, TlsVersion};

#[test]
fn seed_terminate_tls_block_loads_with_openssl_made_certificates() {
    let dir = tempfile::tempdir().expect("tempdir");
    tlsgate_test_support::seed_openssl_certs(dir.path()).expect("the seed's openssl commands run");
    // The seed's AgentEndpoint carries the PEM inline; do the same.
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).expect("read");
    let indent = |pem: String| {
        pem.lines()
            .map(|l| format!("                  {l}\n"))
            .collect::<String>()
    };
    let yaml = format!(
        "endpoints:
  - url: https://example-hostname.ngrok.io
    bind: 127.0.0.1:8443
    upstream:
      url: http://127.0.0.1:8080
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: \"1.3\"
                max_version: \"1.3\"
                server_private_key: |-
{}                server_certificate: |-
{}                mutual_tls_certificate_authorities:
                  - |-
{}",
        indent(read("server.key")),
        indent(read("server.crt")),
        indent(read("ca.crt")).replace("                  ", "                    "),
    );
    let reader = FileReader {
        base_dir: dir.path().to_path_buf(),
    };
    // The real key check lives with the host's crypto; `tlsgate check` covers it end to end.
    let options = LoadOptions {
        reader: &reader,
        keys: KeyMode::Skip,
        deployment: tlsgate_core::Deployment::none(),
    };
    let config = Config::load_str(&yaml, None, &options, 0).expect("the seed policy loads");
    let endpoint = &config.endpoints[0];
    assert_eq!(endpoint.tls.min_version, TlsVersion::Tls13);
    assert_eq!(endpoint.tls.max_version, TlsVersion::Tls13);
    let cert = endpoint.tls.certificate.as_ref().expect("certificate");
    assert_eq!(cert.version, 1, "the seed's server.crt is X.509 v1");
    assert_eq!(
        cert.names,
        vec!["terminate-tls-example.ngrok.app".to_owned()]
    );
    match &endpoint.tls.client_auth {
        ClientAuth::On {
            authorities,
            strategy,
            revocation,
            ocsp,
        } => {
            assert_eq!(*strategy, VerificationStrategy::RequireAndVerify);
            assert!(revocation.is_none(), "the seed checks no CRL");
            assert!(ocsp.is_none(), "nor OCSP");
            assert_eq!(authorities.subjects, vec!["CN=ExampleCA".to_owned()]);
        }
        ClientAuth::Off => panic!("mTLS should be on"),
    }
    // The seed's host is not the name in its server certificate: a warning, not an error.
    assert_eq!(config.warnings.len(), 1);
    assert_eq!(
        endpoint.to_string(),
        "example-hostname.ngrok.io on 127.0.0.1:8443: TLS 1.3, client certificates \
         require-and-verify (1 CA), 0 rules -> http://127.0.0.1:8080"
    );
}
