//! Helpers shared by core's integration tests.
// Test helpers fail the test by panicking; that is their job.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};

use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tlsgate_core::pem::FileReader;
use tlsgate_core::{Config, ConfigError, HostCrypto, KeyMode, LoadOptions};
use tlsgate_test_support::{Authority, Issued};

/// Core has no crypto; this stand-in for the host's check compares the key with the one the
/// factory issued alongside the certificate.
pub struct FactoryKeys(pub Vec<(Vec<u8>, Vec<u8>)>);

impl HostCrypto for FactoryKeys {
    fn check_key_pair(
        &self,
        leaf: &CertificateDer<'_>,
        key: &PrivateKeyDer<'_>,
    ) -> Result<(), String> {
        let ok = self
            .0
            .iter()
            .any(|(c, k)| c.as_slice() == leaf.as_ref() && k.as_slice() == key.secret_der());
        if ok {
            Ok(())
        } else {
            Err("its public key differs from the certificate's".into())
        }
    }

    /// Signatures are the host's to check (the native host's tests cover forged CRLs).
    fn check_crl_signature(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

/// A directory with a CA, a server certificate for `host` and a client certificate.
pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub ca: Authority,
    pub server: Issued,
    pub client: Issued,
}

impl Fixture {
    pub fn new(host: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = Authority::root("Test CA");
        let server = ca.server(&[host]);
        let client = ca.client("alice");
        std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).expect("write");
        server.write(dir.path(), "server");
        client.write(dir.path(), "client");
        Self {
            dir,
            ca,
            server,
            client,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn keys(&self) -> FactoryKeys {
        FactoryKeys(vec![
            (self.server.cert_der.clone(), self.server.key_der.clone()),
            (self.client.cert_der.clone(), self.client.key_der.clone()),
        ])
    }

    pub fn load(&self, yaml: &str) -> Result<Config, ConfigError> {
        let keys = self.keys();
        let reader = FileReader {
            base_dir: self.path().to_path_buf(),
        };
        let options = LoadOptions {
            reader: &reader,
            keys: KeyMode::Load(&keys),
            deployment: tlsgate_core::Deployment::none(),
        };
        let file = PathBuf::from("policy.yaml");
        Config::load_str(yaml, Some(&file), &options, 0)
    }

    pub fn error(&self, yaml: &str) -> String {
        match self.load(yaml) {
            Ok(_) => panic!("expected an error for:\n{yaml}"),
            Err(e) => e.to_string(),
        }
    }
}

/// A seed-shaped policy for `host` with `extra_tls` lines inside terminate-tls's config and
/// `rules` appended to on_tcp_connect.
pub fn policy(host: &str, extra_tls: &str, rules: &str) -> String {
    format!(
        "endpoints:
  - url: https://{host}
    bind: 127.0.0.1:8443
    upstream:
      url: http://127.0.0.1:8080
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
{extra_tls}{rules}"
    )
}
