//! The generated configuration itself: every shape of policy yields a bootstrap Envoy
//! accepts, and a broken plugin configuration makes Envoy refuse to start, saying why.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use std::process::Command;
use std::time::Duration;

use envoy_harness::{generate, ports, validate};
use tlsgate_e2e::{free_port, tool, Proc};
use tlsgate_test_support::{
    Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls, Upstream, UpstreamTls,
    Verification,
};

#[test]
fn envoy_accepts_every_shape_of_generated_configuration() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Authority::root("Example Root");
    ca.write(d, "ca");
    let wildcard = ca.server(&["*.apps.example.com"]);
    ca.server(&["tcp.example.com"]).write(d, "tcp");
    ca.client("edge").write(d, "edge");
    let (https, admin) = ports();
    let tls = free_port();
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("*.apps.example.com")
                .on_loopback(https)
                .upstream(Upstream::new("https://example.com").http2())
                .terminate_tls(
                    TerminateTls::new()
                        .min_version("1.2")
                        .inline_pem(&wildcard.cert_pem, &wildcard.key_pem)
                        .client_ca_pem(&ca.cert_pem())
                        .verification(Verification::Request),
                ),
        )
        .endpoint(
            Endpoint::tls("tcp.example.com")
                .on_loopback(tls)
                .upstream(
                    Upstream::new("tls://localhost:9443").tls(
                        UpstreamTls::new()
                            .client_certificate("edge.crt", "edge.key")
                            .certificate_authority("ca.crt"),
                    ),
                )
                .terminate_tls(
                    TerminateTls::files("tcp.crt", "tcp.key")
                        .client_ca("ca.crt")
                        .verification(Verification::RequireAny),
                )
                .on_tcp_connect(
                    Rule::new()
                        .when("conn.tls.client.subject.common_name == 'blocked'")
                        .then(Action::deny()),
                ),
        )
        .to_yaml();
    let config = generate(d, &policy, admin);
    validate(&config);
    let yaml = std::fs::read_to_string(&config).expect("envoy.yaml");
    // Inline PEM went to files beside the bootstrap, the key readable by its owner only.
    for name in [
        "tlsgate-endpoint0-server.crt",
        "tlsgate-endpoint0-server.key",
        "tlsgate-endpoint0-client-ca.crt",
    ] {
        let path = d.join(name);
        assert!(
            yaml.contains(&path.display().to_string()),
            "{name}:\n{yaml}"
        );
        assert!(path.is_file(), "{name} was not written");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(d.join("tlsgate-endpoint0-server.key"))
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the key file is readable by others: {mode:o}"
    );
    // Files named in the policy are referenced where they are.
    assert!(yaml.contains(&d.join("tcp.crt").display().to_string()));
    assert!(yaml.contains("*.apps.example.com"));
    assert!(yaml.contains("http2_protocol_options"));
    assert!(yaml.contains("envoy.filters.network.tcp_proxy"));
    assert!(
        !yaml.contains("PRIVATE KEY"),
        "a private key leaked into envoy.yaml"
    );
}

#[test]
fn envoy_refuses_a_malformed_plugin_configuration_and_says_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let ca = Authority::root("Example Root");
    ca.server(&["api.example.com"]).write(d, "server");
    let (port, admin) = ports();
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("api.example.com")
                .on_loopback(port)
                .upstream(format!("http://127.0.0.1:{}", free_port()))
                .terminate_tls(
                    TerminateTls::new()
                        .min_version("1.3")
                        .server_certificate("server.crt")
                        .server_private_key("server.key"),
                ),
        )
        .to_yaml();
    let config = generate(d, &policy, admin);
    // Someone edits the embedded policy by hand: TLS 1.1 is not allowed.
    let yaml = std::fs::read_to_string(&config).expect("envoy.yaml");
    let broken = yaml.replace(r#""min_version": "1.3""#, r#""min_version": "1.1""#);
    assert_ne!(
        broken, yaml,
        "the embedded policy was not found in:\n{yaml}"
    );
    std::fs::write(&config, broken).expect("writing the broken config");

    let mut cmd = Command::new(tool("envoy"));
    cmd.args([
        "--use-dynamic-base-id",
        "--concurrency",
        "1",
        "-l",
        "warning",
        "-c",
    ])
    .arg(&config);
    let mut envoy = Proc::spawn("envoy", cmd);
    let status = envoy
        .wait_exit(Duration::from_secs(60))
        .unwrap_or_else(|| panic!("envoy kept running:\n{}", envoy.log()));
    assert!(!status.success(), "envoy started:\n{}", envoy.log());
    let log = envoy.log();
    assert!(
        log.contains("refusing the plugin configuration")
            && log.contains("min_version")
            && log.contains("TLS 1.1 is not supported"),
        "{log}"
    );
}

/// The filter the tests (and `make wasm`) give Envoy exports only the callbacks it implements:
/// Envoy enters the VM for each exported callback on every request, chunk or connection, and
/// the SDK's default callbacks do nothing (docs/design-notes.md, "The filter exports only the
/// callbacks it implements"). A callback the filter starts implementing appears here.
#[test]
fn the_filter_exports_only_the_callbacks_it_implements() {
    let root = tlsgate_e2e::repo_root();
    let out = Command::new("python3")
        .arg(root.join("scripts/wasm-callbacks.py"))
        .arg(tlsgate_e2e::filter_wasm())
        .arg(root.join("filter/src"))
        .arg("--list")
        .output()
        .expect("python3 scripts/wasm-callbacks.py");
    assert!(out.status.success(), "{out:?}");
    let exported: Vec<&str> = std::str::from_utf8(&out.stdout)
        .expect("utf-8")
        .lines()
        .collect();
    assert_eq!(
        exported,
        [
            // The SDK's machinery.
            "proxy_on_configure",
            "proxy_on_context_create",
            "proxy_on_delete",
            // The network role: the decision, held until the first decrypted byte.
            "proxy_on_downstream_data",
            // The network role's OCSP query.
            "proxy_on_http_call_response",
            "proxy_on_memory_allocate",
            "proxy_on_new_connection",
            // The HTTP role: one decision per request, on its headers.
            "proxy_on_request_headers",
            "proxy_on_vm_start",
        ]
    );
}
