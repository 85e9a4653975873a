//! One vocabulary: the same policy and the same requests give the same Prometheus lines (name,
//! labels, count) in the native host's `/metrics` and in Envoy's `/stats/prometheus`, where the
//! filter's counters reach Prometheus through the generated bootstrap's stats tags.

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;
mod native_common;

use envoy_harness::{generate, ports, validate, Envoy};
use native_common::start_gate;
use tlsgate_e2e::{echo_upstream, free_port, prometheus_series, prometheus_value, Curl};
use tlsgate_test_support::{
    seed_openssl_certs, Action, Endpoint, PolicyBuilder, Rule, TerminateTls, Verification,
    SEED_SERVER_NAME,
};

fn policy(port: u16, upstream: &str) -> String {
    PolicyBuilder::new()
        .endpoint(
            Endpoint::https(SEED_SERVER_NAME)
                .on_loopback(port)
                .upstream(upstream)
                .terminate_tls(
                    TerminateTls::files("server.crt", "server.key")
                        .client_ca("ca.crt")
                        .verification(Verification::RequireAndVerify),
                )
                .on_http_requests([
                    Rule::new()
                        .when("req.path.startsWith('/admin')")
                        .then(Action::deny()),
                    Rule::new()
                        .when("req.path == '/teapot'")
                        .then(Action::custom_response(418, "short and stout")),
                ]),
        )
        .to_yaml()
}

/// Plays the same four connections against `port`: forwarded, denied, custom response,
/// forwarded.
fn play(dir: &std::path::Path, port: u16) {
    for (path, status) in [
        ("/hello", 200),
        ("/admin", 403),
        ("/teapot", 418),
        ("/", 200),
    ] {
        let res = Curl::https(SEED_SERVER_NAME, port, path)
            .ca(dir.join("ca.crt"))
            .client_cert(dir.join("client.crt"), dir.join("client.key"))
            .run();
        assert_eq!(res.status, Some(status), "{path}: {res:?}");
    }
}

#[test]
fn both_hosts_print_the_same_verdict_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    seed_openssl_certs(d).expect("the seed's openssl commands");
    let upstream = echo_upstream();

    let endpoint = format!("https://{SEED_SERVER_NAME}");
    let endpoint = ("endpoint", endpoint.as_str());
    let expected = [
        (
            prometheus_series(
                "tlsgate_connections_total",
                &[endpoint, ("verdict", "allow"), ("reason", "-")],
            ),
            4,
        ),
        (
            prometheus_series(
                "tlsgate_http_requests_total",
                &[endpoint, ("verdict", "forward"), ("reason", "-")],
            ),
            2,
        ),
        (
            prometheus_series(
                "tlsgate_http_requests_total",
                &[endpoint, ("verdict", "deny"), ("reason", "policy_deny")],
            ),
            1,
        ),
        (
            prometheus_series(
                "tlsgate_http_requests_total",
                &[
                    endpoint,
                    ("verdict", "respond"),
                    ("reason", "custom_response"),
                ],
            ),
            1,
        ),
    ];

    // Native.
    let port = free_port();
    let metrics_addr = format!("127.0.0.1:{}", free_port());
    let gate = start_gate(
        d,
        "native",
        &policy(port, &upstream.url()),
        &["--metrics", &metrics_addr],
    );
    play(d, port);
    let native = Curl::new(format!("http://{metrics_addr}/metrics")).run();
    assert_eq!(native.status, Some(200), "{native:?}");
    let native_log = gate.log();
    assert!(
        native_log.contains(&format!("endpoint=https://{SEED_SERVER_NAME} ")),
        "{native_log}"
    );
    drop(gate);

    // Envoy, the same policy on other ports.
    let (port, admin) = ports();
    let config = generate(d, &policy(port, &upstream.url()), admin);
    validate(&config);
    let envoy = Envoy::start(&config, admin, &[port]);
    play(d, port);
    let envoy_text = envoy.prometheus();

    for (series, count) in &expected {
        assert_eq!(
            prometheus_value(&native.body, series),
            Some(*count),
            "native /metrics lacks `{series} {count}`:\n{}",
            native.body
        );
        assert_eq!(
            prometheus_value(&envoy_text, series),
            Some(*count),
            "Envoy /stats/prometheus lacks `{series} {count}`:\n{envoy_text}"
        );
    }
    // Both hosts log the endpoint under the same label: Envoy's access line carries it.
    envoy
        .proc
        .wait_for_log(
            &format!("tlsgate endpoint=https://{SEED_SERVER_NAME} "),
            std::time::Duration::from_secs(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
}
