//! `tlsgate check` as a user runs it: the real binary, real files, real key checks.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tlsgate_e2e::{run_bounded, tlsgate_bin, RunResult};
use tlsgate_test_support::{seed_openssl_certs, Authority};

fn check(dir: &Path, files: &[&str]) -> RunResult {
    let mut cmd = Command::new(tlsgate_bin());
    cmd.current_dir(dir).arg("check");
    for f in files {
        cmd.args(["-c", f]);
    }
    run_bounded(cmd, b"", Duration::from_secs(30))
}

/// The seed document's terminate-tls block, with file paths instead of inline PEM.
fn seed_policy(key: &str) -> String {
    format!(
        "endpoints:
  - url: https://terminate-tls-example.ngrok.app
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
                server_private_key: {key}
                server_certificate: server.crt
                mutual_tls_certificate_authorities:
                  - ca.crt
"
    )
}

#[test]
fn accepts_the_seed_policy_with_openssl_made_certificates() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), seed_policy("server.key")).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert_eq!(
        out.stdout,
        "terminate-tls-example.ngrok.app on 127.0.0.1:8443: TLS 1.3, client certificates \
         require-and-verify (1 CA), 0 rules -> http://127.0.0.1:8080\nok: 1 endpoint in 1 file\n"
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn refuses_a_key_that_does_not_match_with_file_field_and_line() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), seed_policy("client.key")).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with(
            "error: policy.yaml:13:37: endpoints[0].traffic_policy.on_tcp_connect[0].actions[0]\
             .config.server_private_key: the private key does not match the certificate \
             CN=terminate-tls-example.ngrok.app"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "");
}

#[test]
fn refuses_a_pem_that_is_not_a_key_without_echoing_it() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let key = std::fs::read_to_string(dir.path().join("server.key")).unwrap();
    // Corrupt the body: the error must name the problem and never print key material.
    let corrupted = key.replacen("MII", "M!I", 1);
    std::fs::write(dir.path().join("bad.key"), &corrupted).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), seed_policy("bad.key")).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.contains("config.server_private_key"),
        "{}",
        out.stderr
    );
    let body_line = key.lines().nth(1).unwrap();
    assert!(
        !out.stderr.contains(body_line),
        "key material leaked: {}",
        out.stderr
    );
}

#[test]
fn warns_when_the_certificate_does_not_cover_the_host() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Authority::root("CA");
    ca.server(&["other.example.com"])
        .write(dir.path(), "server");
    std::fs::write(dir.path().join("ca.crt"), ca.cert_pem()).unwrap();
    std::fs::write(dir.path().join("policy.yaml"), seed_policy("server.key")).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stderr.starts_with("warning: policy.yaml:14:37: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("names other.example.com"),
        "{}",
        out.stderr
    );
}

#[test]
fn two_files_may_not_claim_the_same_host_on_one_bind() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    std::fs::write(dir.path().join("a.yaml"), seed_policy("server.key")).unwrap();
    std::fs::write(dir.path().join("b.yaml"), seed_policy("server.key")).unwrap();
    let out = check(dir.path(), &["a.yaml", "b.yaml"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with("error: b.yaml:2:10: "),
        "the error names the second file: {}",
        out.stderr
    );
    assert!(out.stderr.contains("endpoints[0].url: terminate-tls-example.ngrok.app on 127.0.0.1:8443 is already served by https://terminate-tls-example.ngrok.app in a.yaml"), "{}", out.stderr);
}

#[test]
fn a_missing_policy_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = check(dir.path(), &["nope.yaml"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr
            .starts_with("error: nope.yaml: cannot read nope.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn arbitrary_bytes_are_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(dir.path().join("policy.yaml"), garbage).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with("error: policy.yaml"),
        "{}",
        out.stderr
    );
}
