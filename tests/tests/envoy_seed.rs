//! The seed document's TLS-termination walk-through on real Envoy with the tlsgate filter:
//! certificates made by the document's own openssl commands, the policy it describes
//! (TLS 1.3 only, mTLS require-and-verify against ca.crt), and its final curl call.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use envoy_harness::{echoed_header, generate, ports, validate, Envoy};
use tlsgate_e2e::{echo_upstream, openssl_s_client, Curl};
use tlsgate_test_support::{
    seed_openssl_certs, Action, Authority, Endpoint, PolicyBuilder, Rule, TerminateTls,
    Verification, SEED_SERVER_NAME,
};

/// The seed document's policy (TLS 1.3 only, mTLS require-and-verify against ca.crt) with
/// headers that show the upstream what the handshake established.
fn seed_policy(port: u16, upstream: &str) -> String {
    PolicyBuilder::new()
        .endpoint(
            Endpoint::https(SEED_SERVER_NAME)
                .on_loopback(port)
                .upstream(upstream)
                .terminate_tls(
                    TerminateTls::new()
                        .min_version("1.3")
                        .max_version("1.3")
                        .server_certificate("server.crt")
                        .server_private_key("server.key")
                        .client_ca("ca.crt")
                        .verification(Verification::RequireAndVerify),
                )
                .on_http_request(Rule::new().then(Action::add_headers(&[
                    ("x-client-cn", "${conn.tls.client.subject.common_name}"),
                    ("x-tls-version", "${conn.tls.version}"),
                ]))),
        )
        .to_yaml()
}

#[test]
fn envoy_runs_the_seed_walkthrough() {
    let dir = tempfile::tempdir().expect("tempdir");
    seed_openssl_certs(dir.path()).expect("the seed's openssl commands");
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let config = generate(dir.path(), &seed_policy(port, &upstream.url()), admin);
    validate(&config);
    let envoy = Envoy::start(&config, admin, &[port]);
    let (client_crt, client_key) = (dir.path().join("client.crt"), dir.path().join("client.key"));
    let hello = || Curl::https(SEED_SERVER_NAME, port, "/hello").ca(dir.path().join("ca.crt"));

    // The document's final step: curl --cert client.crt --key client.key --cacert ca.crt.
    let ok = hello().client_cert(&client_crt, &client_key).run();
    assert_eq!(ok.status, Some(200), "{ok:?}\n{}", envoy.proc.log());
    assert_eq!(
        echoed_header(&ok, "x-client-cn").as_deref(),
        Some("ExampleClient")
    );
    assert_eq!(echoed_header(&ok, "x-tls-version").as_deref(), Some("1.3"));
    let xfcc = echoed_header(&ok, "x-forwarded-client-cert").expect("xfcc reaches upstream");
    assert!(xfcc.contains("Subject=\"CN=ExampleClient\""), "{xfcc}");
    assert!(xfcc.starts_with("Hash="), "{xfcc}");
    // Per-domain metadata: which endpoint served it, to the upstream and the access log.
    assert_eq!(
        echoed_header(&ok, "x-tlsgate-endpoint").as_deref(),
        Some(SEED_SERVER_NAME)
    );
    envoy
        .proc
        .wait_for_log(
            &format!("tlsgate endpoint=https://{SEED_SERVER_NAME} server_cert=sha256:"),
            std::time::Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));

    // No client certificate: Envoy's TLS context refuses the handshake.
    let anonymous = hello().run();
    assert_eq!(anonymous.status, None, "{anonymous:?}");

    // A certificate from another CA: refused.
    let stranger_ca = Authority::root("ExampleCA");
    let (cert, key) = stranger_ca
        .client("ExampleClient")
        .write(dir.path(), "stranger");
    let refused = hello().client_cert(&cert, &key).run();
    assert_eq!(refused.status, None, "{refused:?}");

    // TLS 1.2 against min_version "1.3": protocol_version alert.
    let old = hello()
        .client_cert(&client_crt, &client_key)
        .tls_max("1.2")
        .run();
    assert_eq!(old.status, None, "{old:?}");
    assert!(old.stderr.contains("protocol version"), "{old:?}");
    let (_, _, stderr) = openssl_s_client(
        &[
            "-connect",
            &format!("127.0.0.1:{port}"),
            "-servername",
            SEED_SERVER_NAME,
            "-tls1_2",
            "-cert",
            &client_crt.display().to_string(),
            "-key",
            &client_key.display().to_string(),
        ],
        b"",
    );
    assert!(stderr.contains("protocol version"), "{stderr}");

    // Only the admitted request reached the upstream, and the filter counted it.
    assert_eq!(upstream.requests().len(), 1, "{:?}", upstream.requests());
    let endpoint = format!("https://{SEED_SERVER_NAME}");
    let endpoint = ("endpoint", endpoint.as_str());
    assert_eq!(
        envoy.metric(
            "tlsgate_http_requests_total",
            &[endpoint, ("verdict", "forward"), ("reason", "-")]
        ),
        1,
        "{}",
        envoy.prometheus()
    );
    assert_eq!(
        envoy.metric(
            "tlsgate_connections_total",
            &[endpoint, ("verdict", "allow"), ("reason", "-")]
        ),
        1,
        "{}",
        envoy.prometheus()
    );
}

/// `config` without the filter's network role: the shape of an HTTP-only deployment (an Istio
/// WasmPlugin of type HTTP alone). Cuts the `envoy.filters.network.wasm` item out of its filter
/// list: the YAML block from that item to the next item at the same indentation.
fn without_network_role(config: &std::path::Path) {
    let text = std::fs::read_to_string(config).expect("reading the bootstrap");
    let lines: Vec<&str> = text.lines().collect();
    let start = lines
        .iter()
        .position(|l| l.trim_start() == "- name: envoy.filters.network.wasm")
        .expect("the generated bootstrap has the network role");
    let indent = lines[start].len() - lines[start].trim_start().len();
    let end = (start + 1..lines.len())
        .find(|&i| {
            let l = lines[i];
            l.len() - l.trim_start().len() <= indent && !l.trim().is_empty()
        })
        .expect("another filter follows the network role");
    assert!(
        lines[end]
            .trim_start()
            .starts_with("- name: envoy.filters.network.http_connection_manager"),
        "{}",
        lines[end]
    );
    let kept: Vec<&str> = lines[..start]
        .iter()
        .chain(&lines[end..])
        .copied()
        .collect();
    std::fs::write(config, kept.join("\n") + "\n").expect("writing the bootstrap");
}

/// Every request's access line names the endpoint and its certificate (`wasm.tlsgate.*` filter
/// state), also the second request of a kept-alive connection: with the network role the
/// connection carries that state, published once, and the HTTP role publishes nothing per
/// request; with the HTTP role alone, each request publishes its own.
#[test]
fn every_request_logs_its_endpoint_with_and_without_the_network_role() {
    for network_role in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        seed_openssl_certs(dir.path()).expect("the seed's openssl commands");
        let upstream = echo_upstream();
        let (port, admin) = ports();
        let config = generate(dir.path(), &seed_policy(port, &upstream.url()), admin);
        if !network_role {
            without_network_role(&config);
        }
        validate(&config);
        let roles: &[&str] = if network_role {
            &["network", "HTTP"]
        } else {
            &["HTTP"]
        };
        let envoy = Envoy::start_roles(&config, admin, &[port], roles);
        let url = format!("https://{SEED_SERVER_NAME}:{port}/again");
        let twice = Curl::https(SEED_SERVER_NAME, port, "/hello")
            .ca(dir.path().join("ca.crt"))
            .client_cert(dir.path().join("client.crt"), dir.path().join("client.key"))
            .then_url(&url)
            .arg("-v")
            .run();
        assert_eq!(twice.status, Some(200), "{twice:?}\n{}", envoy.proc.log());
        assert_eq!(upstream.requests().len(), 2, "network role {network_role}");
        let line = format!("tlsgate endpoint=https://{SEED_SERVER_NAME} server_cert=sha256:");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while envoy.proc.log().matches(&line).count() < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = envoy.proc.log();
        assert_eq!(
            log.matches(&line).count(),
            2,
            "network role {network_role}: two access lines with the endpoint:\n{log}"
        );
        assert!(
            twice.stderr.contains("Re-using existing"),
            "network role {network_role}: curl must send both requests on one connection: {}",
            twice.stderr
        );
    }
}
