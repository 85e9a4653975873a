//! Helpers shared by the native-host end-to-end tests (`native_*.rs`): start the real `tlsgate`
//! binary on free loopback ports with a policy written for the test (policies come from
//! `tlsgate_test_support::PolicyBuilder`, requests from `tlsgate_e2e::Curl`).

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
