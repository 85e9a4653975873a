//! The seed document's TLS-termination walk-through on real Envoy with the tlsgate filter:
//! certificates made by the document's own openssl commands, the policy it describes
//! (TLS 1.3 only, mTLS require-and-verify against ca.crt), and its final curl call.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use envoy_harness::{echoed_header, generate, get, ports, validate, Client, Envoy};
use tlsgate_e2e::{echo_upstream, openssl_s_client};
use tlsgate_test_support::{seed_openssl_certs, Authority, SEED_SERVER_NAME};

fn seed_policy(port: u16, upstream: &str) -> String {
    format!(
        r#"endpoints:
  - url: https://{SEED_SERVER_NAME}
    bind: 127.0.0.1:{port}
    upstream:
      url: {upstream}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: "1.3"
                max_version: "1.3"
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
                mutual_tls_verification_strategy: require-and-verify
      on_http_request:
        - actions:
            - type: add-headers
              config:
                headers:
                  x-client-cn: "${{conn.tls.client.subject.common_name}}"
                  x-tls-version: "${{conn.tls.version}}"
"#
    )
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
    let ca = dir.path().join("ca.crt");
    let client = Client {
        cert: &dir.path().join("client.crt"),
        key: &dir.path().join("client.key"),
    };

    // The document's final step: curl --cert client.crt --key client.key --cacert ca.crt.
    let ok = get(SEED_SERVER_NAME, port, "/hello", &ca, Some(&client), &[]);
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
    let anonymous = get(SEED_SERVER_NAME, port, "/hello", &ca, None, &[]);
    assert_eq!(anonymous.status, None, "{anonymous:?}");

    // A certificate from another CA: refused.
    let stranger_ca = Authority::root("ExampleCA");
    let (cert, key) = stranger_ca
        .client("ExampleClient")
        .write(dir.path(), "stranger");
    let stranger = Client {
        cert: &cert,
        key: &key,
    };
    let refused = get(SEED_SERVER_NAME, port, "/hello", &ca, Some(&stranger), &[]);
    assert_eq!(refused.status, None, "{refused:?}");

    // TLS 1.2 against min_version "1.3": protocol_version alert.
    let old = get(
        SEED_SERVER_NAME,
        port,
        "/hello",
        &ca,
        Some(&client),
        &["--tls-max", "1.2"],
    );
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
            &client.cert.display().to_string(),
            "-key",
            &client.key.display().to_string(),
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
