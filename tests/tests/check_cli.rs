//! `tlsgate check` as a user runs it: the real binary, real files, real key checks.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tlsgate_e2e::{run_bounded, tlsgate_bin, RunResult};
use tlsgate_test_support::{
    seed_openssl_certs, Authority, Endpoint, Ocsp, PolicyBuilder, TerminateTls, Upstream,
    SEED_SERVER_NAME,
};

fn check(dir: &Path, files: &[&str]) -> RunResult {
    let mut cmd = Command::new(tlsgate_bin());
    cmd.current_dir(dir).arg("check");
    for f in files {
        cmd.args(["-c", f]);
    }
    run_bounded(cmd, b"", Duration::from_secs(30))
}

/// The seed document's terminate-tls block, with file paths instead of inline PEM.
fn seed_tls(key: &str) -> TerminateTls {
    TerminateTls::new()
        .min_version("1.3")
        .max_version("1.3")
        .server_private_key(key)
        .server_certificate("server.crt")
        .client_ca("ca.crt")
}

/// The seed document's endpoint on 127.0.0.1:8443 (in front of 127.0.0.1:8080) under another
/// name, terminating with `tls`.
fn seed_endpoint(host: &str, tls: TerminateTls) -> Endpoint {
    Endpoint::https(host)
        .bind("127.0.0.1:8443")
        .upstream("http://127.0.0.1:8080")
        .terminate_tls(tls)
}

/// The seed document's endpoint alone, with `key` as its private key. Its layout is fixed (the
/// key on line 13, the certificate on line 14, values at column 37): the tests below assert on
/// the positions `check` reports.
fn seed_policy(key: &str) -> String {
    PolicyBuilder::new()
        .endpoint(seed_endpoint(SEED_SERVER_NAME, seed_tls(key)))
        .to_yaml()
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
fn two_files_may_not_mix_https_and_tls_on_one_bind() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    // The second file's first endpoint is the third of the config: the message names the one
    // it clashes with by file, as the duplicate-host message does, not by a global index.
    let tls = PolicyBuilder::new()
        .endpoint(
            Endpoint::tls("other.ngrok.app")
                .bind("127.0.0.1:8443")
                .upstream("tcp://127.0.0.1:8080")
                .terminate_tls(seed_tls("server.key")),
        )
        .to_yaml();
    let first = PolicyBuilder::new()
        .endpoint(seed_endpoint(SEED_SERVER_NAME, seed_tls("server.key")))
        .endpoint(seed_endpoint("second.ngrok.app", seed_tls("server.key")).bind("127.0.0.1:9443"))
        .to_yaml();
    std::fs::write(dir.path().join("a.yaml"), first).unwrap();
    std::fs::write(dir.path().join("b.yaml"), tls).unwrap();
    let out = check(dir.path(), &["a.yaml", "b.yaml"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "tls://other.ngrok.app shares 127.0.0.1:8443 with \
             https://terminate-tls-example.ngrok.app in a.yaml, which has another scheme"
        ),
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
fn shows_proxy_protocol_both_ways_and_names_the_file_that_configures_a_bind_twice() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let policy = PolicyBuilder::new()
        .endpoint(
            seed_endpoint(SEED_SERVER_NAME, seed_tls("server.key"))
                .upstream(Upstream::new("http://127.0.0.1:8080").proxy_protocol(2)),
        )
        .proxy_protocol_listener("127.0.0.1:8443", &["10.0.0.0/8"])
        .to_yaml();
    std::fs::write(dir.path().join("a.yaml"), &policy).unwrap();
    let out = check(dir.path(), &["a.yaml"]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("-> http://127.0.0.1:8080, PROXY protocol v2 first\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains(
            "127.0.0.1:8443: a PROXY protocol header (v1 or v2) first, from 10.0.0.0/8 only\n"
        ),
        "{}",
        out.stdout
    );
    // A second file with its own endpoint on the same bind may not configure it again.
    let other = PolicyBuilder::new()
        .endpoint(seed_endpoint("other.test", seed_tls("server.key")))
        .proxy_protocol_listener("127.0.0.1:8443", &["10.0.0.0/8"])
        .to_yaml();
    std::fs::write(dir.path().join("b.yaml"), other).unwrap();
    let out = check(dir.path(), &["a.yaml", "b.yaml"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with("error: b.yaml:18:")
            && out
                .stderr
                .contains("listeners[0].bind: 127.0.0.1:8443 is already configured in a.yaml"),
        "{}",
        out.stderr
    );
}

#[test]
fn shows_each_endpoints_ocsp_check_and_staple_source() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    // A full-chain file whose leaf names a responder: staples.
    let ca = Authority::root("Stapling CA");
    let leaf = ca.issue(
        &tlsgate_test_support::LeafSpec::server(&["terminate-tls-example.ngrok.app"])
            .with_ocsp_url("http://127.0.0.1:9999/"),
    );
    std::fs::write(
        dir.path().join("full.crt"),
        format!("{}{}", leaf.cert_pem, ca.cert_pem()),
    )
    .unwrap();
    std::fs::write(dir.path().join("full.key"), &leaf.key_pem).unwrap();
    let policy = PolicyBuilder::new()
        .endpoint(seed_endpoint(
            SEED_SERVER_NAME,
            seed_tls("full.key")
                .server_certificate("full.crt")
                .client_ocsp(Ocsp::new("prefer").responder("http://127.0.0.1:8888/")),
        ))
        .to_yaml();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stdout.contains("(1 CA, OCSP prefer), 0 rules")
            && out
                .stdout
                .contains("  OCSP (prefer, 2s at most): http://127.0.0.1:8888/\n")
            && out
                .stdout
                .contains("  staples the OCSP answer from http://127.0.0.1:9999/\n"),
        "{}",
        out.stdout
    );

    // The leaf alone names the responder but cannot be stapled: check says why.
    std::fs::write(dir.path().join("full.crt"), &leaf.cert_pem).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stdout.contains(
            "  does not staple: the certificate names the OCSP responder \
             http://127.0.0.1:9999/ but server_certificate holds no issuer"
        ),
        "{}",
        out.stdout
    );
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

/// A directory of manifests as `kubectl create … --dry-run=client -o yaml` writes them, with
/// the seed's openssl-made files.
fn write_gateway_manifests(dir: &Path) {
    use base64::Engine as _;
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(f)).unwrap())
    };
    let ca = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let k8s = dir.join("k8s");
    std::fs::create_dir_all(&k8s).unwrap();
    std::fs::write(
        k8s.join("secret.yaml"),
        format!(
            "apiVersion: v1\ndata:\n  tls.crt: {}\n  tls.key: {}\nkind: Secret\nmetadata:\n  \
             name: server-cert-secret\n  namespace: default\ntype: kubernetes.io/tls\n",
            b64("server.crt"),
            b64("server.key")
        ),
    )
    .unwrap();
    std::fs::write(
        k8s.join("configmap.json"),
        serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ca-cert-config"}, "data": {"ca.crt": ca}})
        .to_string(),
    )
    .unwrap();
    std::fs::write(
        k8s.join("gateway.yaml"),
        "apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: example-gateway, namespace: default}
spec:
  gatewayClassName: ngrok
  listeners:
  - name: example
    hostname: terminate-tls-example.ngrok.app
    port: 443
    protocol: HTTPS
    tls:
      certificateRefs: [{kind: Secret, name: server-cert-secret}]
      frontendValidation:
        caCertificateRefs: [{kind: ConfigMap, name: ca-cert-config}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: example-route, namespace: default}
spec:
  hostnames: [terminate-tls-example.ngrok.app]
  parentRefs: [{name: example-gateway}]
  rules:
  - backendRefs: [{name: example-service, port: 80}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: example-service}
",
    )
    .unwrap();
}

#[test]
fn a_directory_of_manifests_shows_each_endpoint_with_the_resources_it_came_from() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    write_gateway_manifests(dir.path());
    let mut cmd = Command::new(tlsgate_bin());
    cmd.current_dir(dir.path()).args([
        "check",
        "-c",
        "k8s",
        "--listen",
        "443=127.0.0.1:8443",
        "--resolve",
        "example-service:80=127.0.0.1:9000",
        "--resolve",
        "typo-service:80=127.0.0.1:9001",
    ]);
    let out = run_bounded(cmd, b"", Duration::from_secs(30));
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stdout.starts_with(
            "terminate-tls-example.ngrok.app on 127.0.0.1:8443: TLS 1.2-1.3, client \
             certificates require-and-verify (1 CA), 0 rules -> \
             http://example-service.default:80 (at 127.0.0.1:9000)\n"
        ),
        "{}",
        out.stdout
    );
    for origin in [
        "  from Gateway default/example-gateway (k8s/gateway.yaml)",
        "  from Secret default/server-cert-secret (k8s/secret.yaml)",
        "  from ConfigMap default/ca-cert-config (k8s/configmap.json)",
        "  from HTTPRoute default/example-route (k8s/gateway.yaml)",
    ] {
        assert!(out.stdout.contains(origin), "{origin}:\n{}", out.stdout);
    }
    assert!(
        out.stdout.ends_with("ok: 1 endpoint in 3 files\n"),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr
            .contains("note: skipped Deployment default/example-service"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("note: --resolve typo-service:80=127.0.0.1:9001: no upstream has that name"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_manifest_error_names_the_file_line_resource_and_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    write_gateway_manifests(dir.path());
    std::fs::remove_file(dir.path().join("k8s/configmap.json")).unwrap();
    let out = check(dir.path(), &["k8s"]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.starts_with(
            "error: k8s/gateway.yaml:14:29: spec.listeners[0].tls.frontendValidation\
             .caCertificateRefs[0]: Gateway default/example-gateway: refers to ConfigMap \
             default/ca-cert-config, which is not in the files given"
        ),
        "{}",
        out.stderr
    );
}

#[test]
fn a_malformed_listen_flag_says_what_to_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(tlsgate_bin());
    cmd.current_dir(dir.path())
        .args(["check", "-c", "x.yaml", "--listen", "8443"]);
    let out = run_bounded(cmd, b"", Duration::from_secs(30));
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.contains("write PORT=ADDR:PORT"),
        "{}",
        out.stderr
    );
}

#[test]
fn shows_each_crl_with_its_issuer_revocations_and_next_update() {
    let dir = tempfile::tempdir().unwrap();
    seed_openssl_certs(dir.path()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/ca-crl.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script).arg(dir.path()).arg("client.crt");
    let made = run_bounded(cmd, b"", Duration::from_secs(30));
    assert_eq!(made.exit_code, 0, "{made:?}");
    let policy = PolicyBuilder::new()
        .endpoint(seed_endpoint(
            SEED_SERVER_NAME,
            seed_tls("server.key")
                .client_crl("ca.crl")
                .revocation_check("leaf"),
        ))
        .to_yaml();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
    let out = check(dir.path(), &["policy.yaml"]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("require-and-verify (1 CA, 1 CRL checked for the leaf)"),
        "{}",
        out.stdout
    );
    let line = out
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("CRL of CN=ExampleCA"))
        .unwrap_or_else(|| panic!("no CRL line:\n{}", out.stdout));
    assert!(line.contains("ca.crl): 1 revoked, issued "), "{line}");
    assert!(
        line.contains("(in 167h") || line.contains("(in 168h"),
        "{line}"
    );
}
