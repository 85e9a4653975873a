//! Helpers shared by the native-host end-to-end tests (`native_*.rs`): start the real `tlsgate`
//! binary on free loopback ports with a policy written for the test.

#![allow(dead_code, clippy::panic, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tlsgate_e2e::{tlsgate_bin, Proc};

/// How long a tlsgate process may take to start listening (includes nothing slow: the binary
/// is built before the first test starts it).
pub const START: Duration = Duration::from_secs(20);

/// Writes `policy` to `dir/<name>.yaml`, starts `tlsgate run` on it with `extra` arguments, and
/// waits until it logs that every listener is up.
pub fn start_gate(dir: &Path, name: &str, policy: &str, extra: &[&str]) -> Proc {
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(&config, policy).expect("writing the policy");
    let mut cmd = Command::new(tlsgate_bin());
    cmd.arg("run").arg("-c").arg(&config).args(extra);
    let gate = Proc::spawn(name, cmd);
    gate.wait_for_log("serving ", START)
        .unwrap_or_else(|e| panic!("{e}"));
    gate
}

/// `--resolve host:port:127.0.0.1`, the curl way of reaching a name on loopback.
pub fn resolve(host: &str, port: u16) -> String {
    format!("{host}:{port}:127.0.0.1")
}

/// One https endpoint of a policy: `tls` is the terminate-tls config block (YAML, indented for
/// the `config:` key), `http_rules` the on_http_request list (or empty).
pub fn https_endpoint(
    host: &str,
    port: u16,
    upstream: &str,
    tls: &str,
    http_rules: &str,
) -> String {
    let mut out = format!(
        "  - url: https://{host}\n    bind: 127.0.0.1:{port}\n    upstream:\n{upstream}    traffic_policy:\n      on_tcp_connect:\n        - actions:\n            - type: terminate-tls\n              config:\n{tls}"
    );
    if !http_rules.is_empty() {
        out.push_str("      on_http_request:\n");
        out.push_str(http_rules);
    }
    out
}

/// `upstream:` body for a plain HTTP upstream.
pub fn http_upstream(url: &str) -> String {
    format!("      url: {url}\n")
}

/// terminate-tls config lines (12 spaces of indentation).
pub fn tls_config(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("                {k}: {v}\n"))
        .collect()
}

/// A PEM file path as a YAML string.
pub fn path(p: &Path) -> String {
    format!("\"{}\"", p.display())
}
