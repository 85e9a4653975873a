//! The conformance suite: one scenario table (`tests/conformance/scenarios.yaml`) played against
//! both hosts — the native `tlsgate run` and Envoy with the proxy-wasm filter and the generated
//! bootstrap — with real clients. A scenario passes when each host gives the expected outcome;
//! the suite fails on any unexpected outcome or any disagreement the table does not document.
//!
//! It prints the matrix (scenario × host) and writes it as Markdown to
//! `target/conformance.md`; `make conformance` copies that to `docs/conformance.md`.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod certs;
mod client;
mod hosts;
mod table;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::thread;

use hosts::{HostKind, Upstreams};
use table::{Expect, Scenario, Table};

/// What one scenario did on one host.
#[derive(Debug, Clone)]
struct Result {
    host: HostKind,
    scenario: String,
    observed: String,
    passed: bool,
    /// Why it failed, with enough context to debug it.
    detail: String,
}

#[test]
fn both_hosts_agree_on_every_scenario() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = Table::load(&root.join("conformance/scenarios.yaml"));
    let work = tempfile::tempdir().unwrap();
    certs::make(&table, work.path());
    let upstreams = Upstreams::start(&table, work.path());

    let results: Vec<Result> = thread::scope(|s| {
        // `TLSGATE_CONFORMANCE_HOSTS=native` (or `envoy`) narrows a run while debugging one host;
        // the matrix then shows the other host as not run, and the suite still fails.
        let only = std::env::var("TLSGATE_CONFORMANCE_HOSTS").ok();
        let runs: Vec<_> = [HostKind::Native, HostKind::Envoy]
            .into_iter()
            .filter(|k| {
                only.as_deref()
                    .is_none_or(|o| o.split(',').any(|h| h == k.name()))
            })
            .map(|kind| {
                let (table, upstreams, dir) = (&table, &upstreams, work.path());
                s.spawn(move || run_host(kind, table, upstreams, dir))
            })
            .collect();
        runs.into_iter()
            .flat_map(|r| {
                r.join()
                    .unwrap_or_else(|_| panic!("a host runner panicked"))
            })
            .collect()
    });

    let failures: Vec<&Result> = results.iter().filter(|r| !r.passed).collect();
    // Failures first: CI keeps only the head of a long output, and the matrix is long.
    if !failures.is_empty() {
        println!("\n{} of {} runs failed:", failures.len(), results.len());
        for f in &failures {
            let why = f.detail.lines().next().unwrap_or("");
            println!(
                "  ✗ [{}] {}: observed {}; {why}",
                f.host.name(),
                f.scenario,
                f.observed
            );
        }
    }
    let report = matrix(&table, &results);
    println!("\n{report}");
    let target = tlsgate_e2e::target_dir();
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("conformance.md"), &report).unwrap();

    assert!(
        failures.is_empty(),
        "{} of {} runs failed:\n\n{}",
        failures.len(),
        results.len(),
        failures
            .iter()
            .map(|f| format!("[{}] {}: {}", f.host.name(), f.scenario, f.detail))
            .collect::<Vec<_>>()
            .join("\n\n")
    );
    let expected_runs = 2 * table.scenarios.len();
    assert_eq!(
        results.len(),
        expected_runs,
        "only {} of {expected_runs} scenario runs happened (TLSGATE_CONFORMANCE_HOSTS or _POLICIES narrows the run)",
        results.len()
    );
}

/// Plays every scenario against one host, starting it once per policy.
fn run_host(kind: HostKind, table: &Table, upstreams: &Upstreams, dir: &Path) -> Vec<Result> {
    // `TLSGATE_CONFORMANCE_POLICIES=proxy-in,proxy-out` narrows a run to those policies'
    // scenarios while debugging; the suite then fails on the count, as with the hosts.
    let only = std::env::var("TLSGATE_CONFORMANCE_POLICIES").ok();
    let mut by_policy: BTreeMap<&str, Vec<&Scenario>> = BTreeMap::new();
    for s in &table.scenarios {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|p| p == s.policy))
        {
            continue;
        }
        by_policy.entry(s.policy.as_str()).or_default().push(s);
    }
    let mut results = Vec::new();
    for (policy_name, scenarios) in by_policy {
        let policy = &table.policies[policy_name];
        let host = hosts::Host::start(kind, policy_name, policy, upstreams, dir);
        let host = match host {
            Ok(host) => host,
            Err(e) => {
                for s in scenarios {
                    let passed = match s.expect_for(kind) {
                        Expect::LoadError { load_error } => e.contains(load_error.as_str()),
                        _ => false,
                    };
                    results.push(Result {
                        host: kind,
                        scenario: s.name.clone(),
                        observed: if passed {
                            "load error".into()
                        } else {
                            "host did not start".into()
                        },
                        passed,
                        detail: e.clone(),
                    });
                }
                continue;
            }
        };
        for s in scenarios {
            let expect = s.expect_for(kind);
            if let Expect::LoadError { load_error } = expect {
                results.push(Result {
                    host: kind,
                    scenario: s.name.clone(),
                    observed: "started".into(),
                    passed: false,
                    detail: format!("expected the policy to fail to load with {load_error:?}"),
                });
                continue;
            }
            let observed = client::play(&s.client, &host, dir);
            let (passed, why) = expect.check(&observed);
            let (passed, why) = match (passed, expect.access_log()) {
                (true, Some(want)) => match host.wait_for_log(want) {
                    Ok(()) => (true, why),
                    Err(_) => (false, format!("no access line holds {want:?}")),
                },
                (passed, _) => (passed, why),
            };
            // Bad input must not disturb the service: after any raw or refused case, a good
            // client still gets through.
            let (passed, why) = match (&s.client.send, passed) {
                (Some(_), true) => match &policy.health {
                    Some(health) => {
                        let after = client::play(health, &host, dir);
                        match after.status() {
                            Some(200) => (true, String::new()),
                            _ => (false, format!("after this input a good client got {after}")),
                        }
                    }
                    None => (true, String::new()),
                },
                other => (other.1, why),
            };
            results.push(Result {
                host: kind,
                scenario: s.name.clone(),
                observed: observed.to_string(),
                passed,
                detail: format!(
                    "{why}\nobserved: {observed:?}\n--- {} log (tail) ---\n{}",
                    kind.name(),
                    host.log_tail()
                ),
            });
        }
    }
    results
}

fn matrix(table: &Table, results: &[Result]) -> String {
    let mut out = String::new();
    out.push_str("# Conformance matrix\n\n");
    out.push_str(
        "Generated by `make conformance` from `tests/conformance/scenarios.yaml`: every scenario \
         played against the native host (`tlsgate run`) and against Envoy 1.40 with the \
         tlsgate filter and the generated bootstrap, with real curl / openssl clients. \
         ✓ = the expected outcome; ✗ = anything else. Outcomes: `refused` (the TLS handshake \
         failed), `closed` (the connection was closed after the handshake without a response), \
         or the HTTP status.\n\n",
    );
    out.push_str("| scenario | expected | native | envoy |\n| --- | --- | --- | --- |\n");
    for s in &table.scenarios {
        let cell = |kind: HostKind| {
            results
                .iter()
                .find(|r| r.host == kind && r.scenario == s.name)
                .map(|r| format!("{} {}", if r.passed { "✓" } else { "✗" }, r.observed))
                .unwrap_or_else(|| "—".into())
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            s.name,
            s.expect.summary(),
            cell(HostKind::Native),
            cell(HostKind::Envoy)
        );
    }
    let differences: Vec<&Scenario> = table
        .scenarios
        .iter()
        .filter(|s| s.envoy.is_some())
        .collect();
    if !differences.is_empty() {
        out.push_str("\n## Documented differences\n\n");
        for s in differences {
            if let Some(d) = &s.envoy {
                let _ = writeln!(
                    out,
                    "- **{}** — Envoy: {}. {}",
                    s.name,
                    d.expect.summary(),
                    d.reason
                );
            }
        }
    }
    let passed = results.iter().filter(|r| r.passed).count();
    let _ = writeln!(
        out,
        "\n{} passed, {} failed",
        passed,
        results.len() - passed
    );
    out
}

impl Scenario {
    fn expect_for(&self, kind: HostKind) -> &Expect {
        match (kind, &self.envoy) {
            (HostKind::Envoy, Some(d)) => &d.expect,
            _ => &self.expect,
        }
    }
}
