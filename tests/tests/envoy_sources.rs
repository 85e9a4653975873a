//! `--max-connections-per-source` behind Envoy: the filter's network role holds one address
//! to its share of a worker's connections, as the native host does (there at accept).

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;
mod native_common;

use std::process::Command;
use std::time::Duration;

use envoy_harness::{generate_with, ports, Envoy};
use native_common::{http_upstream, https_endpoint, tls_config};
use tlsgate_e2e::{curl, echo_upstream, tool, Proc};
use tlsgate_test_support::Authority;

/// Opens `n` TLS connections to the port, completes each handshake, says so, and holds them.
const HOLDER: &str = r#"
import socket, ssl, sys, time
port, ca, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.create_default_context(cafile=ca)
held = []
for _ in range(n):
    s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                        server_hostname="slots.test")
    held.append(s)
print("holding", len(held), flush=True)
time.sleep(60)
"#;

#[test]
fn one_address_cannot_hold_more_than_its_share_behind_envoy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::root("CA");
    ca.server(&["slots.test"]).write(dir.path(), "server");
    let (ca_crt, _) = ca.write(dir.path(), "ca");
    let upstream = echo_upstream();
    let (port, admin) = ports();
    let tls = tls_config(&[
        ("server_certificate", "server.crt"),
        ("server_private_key", "server.key"),
    ]);
    let endpoint = https_endpoint(
        "slots.test",
        port,
        &http_upstream(&upstream.url()),
        &tls,
        "",
    );
    let config = generate_with(
        dir.path(),
        &format!("endpoints:\n{endpoint}"),
        admin,
        &["--max-connections-per-source", "2"],
    );
    let envoy = Envoy::start(&config, admin, &[port]);

    // Two connections from 127.0.0.1 take that address's share.
    let mut holder = Command::new(tool("python3"));
    holder
        .arg("-c")
        .arg(HOLDER)
        .arg(port.to_string())
        .arg(&ca_crt)
        .arg("2");
    let holder = Proc::spawn("holder", holder);
    holder
        .wait_for_log("holding 2", Duration::from_secs(20))
        .unwrap_or_else(|e| panic!("{e}\n{}", envoy.proc.log()));
    let ask = |interface: &str| {
        curl(&[
            "--interface",
            interface,
            "--resolve",
            &format!("slots.test:{port}:127.0.0.1"),
            "--cacert",
            &ca_crt.display().to_string(),
            &format!("https://slots.test:{port}/"),
        ])
    };
    // A third from the same address is closed before its handshake completes...
    let third = ask("127.0.0.1");
    assert_eq!(third.status, None, "{third:?}\n{}", envoy.proc.log());
    // ...while another address is served.
    let other = ask("127.0.0.2");
    assert_eq!(other.status, Some(200), "{other:?}\n{}", envoy.proc.log());
    envoy
        .proc
        .wait_for_log("source_connection_limit", Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        envoy.metric(
            "tlsgate_connections_total",
            &[
                ("endpoint", "-"),
                ("verdict", "deny"),
                ("reason", "source_connection_limit")
            ]
        ),
        1,
        "{}",
        envoy.prometheus()
    );
    // Closed connections give their slots back.
    drop(holder);
    let again = ask("127.0.0.1");
    assert_eq!(again.status, Some(200), "{again:?}\n{}", envoy.proc.log());
}
