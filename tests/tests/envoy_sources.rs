//! `--max-connections-per-source` behind Envoy: the filter's network role holds one address
//! to its share of a worker's connections, as the native host does (there at accept).

#![allow(clippy::panic, clippy::expect_used)]

mod envoy_harness;

use std::process::Command;
use std::time::Duration;

use envoy_harness::{generate_with, ports, Envoy};
use tlsgate_e2e::{echo_upstream, tool, Curl, Proc};
use tlsgate_test_support::{Authority, Endpoint, PolicyBuilder, TerminateTls};

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
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("slots.test")
                .on_loopback(port)
                .upstream(upstream.url())
                .terminate_tls(TerminateTls::files("server.crt", "server.key")),
        )
        .to_yaml();
    let config = generate_with(
        dir.path(),
        &policy,
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
        Curl::https("slots.test", port, "/")
            .interface(interface)
            .ca(&ca_crt)
            .run()
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
