//! Shared by the `envoy_*` end-to-end tests: generate a bootstrap with the real
//! `tlsgate envoy-config`, check it with `envoy --mode validate`, run Envoy with the built
//! filter, and read what the echo upstream saw (requests go through `tlsgate_e2e::Curl`).

#![allow(clippy::panic, clippy::expect_used, dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tlsgate_e2e::{
    filter_wasm, free_port, prometheus_series, prometheus_value, run_bounded, tlsgate_bin, tool,
    wait_port, Curl, CurlResult, Proc,
};

/// Envoy compiles the filter with V8 on start; on a loaded 2-core machine that takes seconds.
const START_TIMEOUT: Duration = Duration::from_secs(60);
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Writes `policy` as `<dir>/policy.yaml` and generates `<dir>/envoy.yaml` from it.
pub fn generate(dir: &Path, policy: &str, admin: u16) -> PathBuf {
    generate_with(dir, policy, admin, &[])
}

/// `generate` with more `tlsgate envoy-config` arguments (deadlines and caps, as for `run`).
pub fn generate_with(dir: &Path, policy: &str, admin: u16, extra: &[&str]) -> PathBuf {
    let policy_path = dir.join("policy.yaml");
    std::fs::write(&policy_path, policy).expect("writing policy.yaml");
    let out = dir.join("envoy.yaml");
    let mut cmd = Command::new(tlsgate_bin());
    cmd.arg("envoy-config")
        .arg("-c")
        .arg(&policy_path)
        .arg("--wasm")
        .arg(filter_wasm())
        .arg("-o")
        .arg(&out)
        .arg("--admin")
        .arg(format!("127.0.0.1:{admin}"))
        .args(extra);
    let run = run_bounded(cmd, &[], COMMAND_TIMEOUT);
    assert_eq!(
        run.exit_code, 0,
        "tlsgate envoy-config failed:\n{}{}",
        run.stdout, run.stderr
    );
    out
}

/// `envoy --mode validate -c config`, which must succeed.
pub fn validate(config: &Path) {
    let mut cmd = Command::new(tool("envoy"));
    cmd.args([
        "--mode",
        "validate",
        "--use-dynamic-base-id",
        "-l",
        "warning",
        "-c",
    ])
    .arg(config);
    let run = run_bounded(cmd, &[], COMMAND_TIMEOUT);
    assert!(
        run.exit_code == 0 && run.stdout.contains("OK"),
        "envoy --mode validate refused {}:\n{}{}\n--- config ---\n{}",
        config.display(),
        run.stdout,
        run.stderr,
        std::fs::read_to_string(config).unwrap_or_default()
    );
}

/// A running Envoy.
pub struct Envoy {
    pub proc: Proc,
    pub admin: u16,
}

impl Envoy {
    /// Starts Envoy on `config` and waits until every port in `listeners` accepts connections
    /// and both filter roles have loaded the policy.
    pub fn start(config: &Path, admin: u16, listeners: &[u16]) -> Envoy {
        Self::start_roles(config, admin, listeners, &["network", "HTTP"])
    }

    /// [`Envoy::start`] for a configuration with only some of the filter's roles (`network`,
    /// `HTTP`): waits until each of those has loaded the policy.
    pub fn start_roles(config: &Path, admin: u16, listeners: &[u16], roles: &[&str]) -> Envoy {
        let mut cmd = Command::new(tool("envoy"));
        cmd.args([
            "--use-dynamic-base-id",
            "--concurrency",
            "1",
            "-l",
            "warning",
            "--component-log-level",
            "wasm:info",
            "-c",
        ])
        .arg(config);
        let proc = Proc::spawn("envoy", cmd);
        for role in roles {
            proc.wait_for_log(&format!("{role} filter loaded the policy"), START_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        for port in listeners.iter().chain([&admin]) {
            wait_port(([127, 0, 0, 1], *port).into(), START_TIMEOUT)
                .unwrap_or_else(|e| panic!("{e}\n{}", proc.log()));
        }
        Envoy { proc, admin }
    }

    /// Envoy's `/stats` (text), e.g. to find the filter's `wasmcustom.tlsgate.*` counters.
    pub fn stats(&self) -> String {
        let res = Curl::new(format!("http://127.0.0.1:{}/stats", self.admin)).run();
        assert_eq!(res.status, Some(200), "{res:?}");
        res.body
    }

    /// Envoy's `/stats/prometheus`: the filter's counters as the native host's `/metrics` prints
    /// them (the generated bootstrap's stats tags turn the labels in their names into labels).
    pub fn prometheus(&self) -> String {
        let res = Curl::new(format!("http://127.0.0.1:{}/stats/prometheus", self.admin)).run();
        assert_eq!(res.status, Some(200), "{res:?}");
        res.body
    }

    /// The value of one series in [`Envoy::prometheus`], e.g.
    /// `tlsgate_connections_total{endpoint="https://a.test",verdict="allow",reason="-"}`; 0 when
    /// absent.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        prometheus_value(&self.prometheus(), &prometheus_series(name, labels)).unwrap_or(0)
    }

    /// The value of one counter, 0 when absent.
    pub fn counter(&self, name: &str) -> u64 {
        let stats = self.stats();
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// One epoch of a hot-restartable Envoy (the reload procedure docs/security.md gives): epoch 0
/// with `--use-dynamic-base-id --base-id-path FILE`, later epochs with `--base-id` read from
/// it; the old process drains at once (`--drain-strategy immediate`) and leaves after
/// `parent_shutdown_s`. Returns once the filter has loaded and the admin port answers.
pub fn hot_epoch(
    config: &Path,
    admin: u16,
    epoch: u32,
    base_id: &Path,
    parent_shutdown_s: u32,
) -> Proc {
    let mut cmd = Command::new(tool("envoy"));
    if epoch == 0 {
        cmd.arg("--use-dynamic-base-id")
            .arg("--base-id-path")
            .arg(base_id);
    } else {
        let id = std::fs::read_to_string(base_id).expect("Envoy wrote its base id");
        cmd.args(["--base-id", id.trim()]);
    }
    let drain = parent_shutdown_s.saturating_sub(2).max(1).to_string();
    cmd.args(["--restart-epoch", &epoch.to_string()])
        .args(["--drain-strategy", "immediate", "--drain-time-s", &drain])
        .args(["--parent-shutdown-time-s", &parent_shutdown_s.to_string()])
        .args(["--concurrency", "1", "-l", "warning"])
        .args(["--component-log-level", "wasm:info", "-c"])
        .arg(config);
    let proc = Proc::spawn(&format!("envoy-epoch{epoch}"), cmd);
    proc.wait_for_log("network filter loaded the policy", START_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}"));
    wait_port(([127, 0, 0, 1], admin).into(), START_TIMEOUT)
        .unwrap_or_else(|e| panic!("{e}\n{}", proc.log()));
    proc
}

/// Waits until the Envoy behind `admin` says it is ready (a hot-restarted epoch is LIVE once
/// initialized: listening, and its parent told to drain).
pub fn wait_ready(admin: u16, proc: &Proc) {
    let ready = std::time::Instant::now() + START_TIMEOUT;
    while Curl::new(format!("http://127.0.0.1:{admin}/ready"))
        .run()
        .status
        != Some(200)
    {
        assert!(
            std::time::Instant::now() < ready,
            "Envoy never became ready: {}",
            proc.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Two free ports: (listener, admin).
pub fn ports() -> (u16, u16) {
    (free_port(), free_port())
}

/// The JSON the echo upstream answered with: what it received.
pub fn echoed_header(res: &CurlResult, name: &str) -> Option<String> {
    res.json()["headers"][name].as_str().map(str::to_owned)
}
