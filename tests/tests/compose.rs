//! `make compose-demo` runs for real: a Docker engine (installed and started if absent, stopped
//! again only if the demo started it), the base images built here, the tlsgate image, then the
//! seed walk-through in docker-compose twice — behind `tlsgate run` and behind Envoy with the
//! filter — with every call checked by the client container. No skip: without an engine this
//! test fails and says why.
//!
//! The image is built from the debug binary (`PROFILE=dev`): CI has already built it, and a
//! release build with LTO would cost it five minutes. Dockerfiles and compose files are the
//! ones a user runs.

#![allow(clippy::panic, clippy::expect_used)]

use std::process::Command;
use tlsgate_e2e::repo_root;

#[test]
fn compose_demo_runs_both_walkthroughs() {
    let out = Command::new("make")
        .args(["--no-print-directory", "compose-demo", "PROFILE=dev"])
        .current_dir(repo_root())
        .output()
        .expect("make is installed (apt-get install make)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let all = format!("{stdout}\n--- stderr ---\n{stderr}");
    assert!(
        out.status.success(),
        "make compose-demo failed ({}); if the Docker engine could not start, its reason is \
         above (docker-engine: …)\n{all}",
        out.status
    );
    // Each demo's client reached the upstream once and was refused four times, and said so.
    let passed = "walkthrough: all 5 calls got what the policy says";
    assert_eq!(stdout.matches(passed).count(), 2, "{all}");
    assert!(
        stdout.contains("compose demo: native envoy passed"),
        "{all}"
    );
    // The valid call's answer is the echo of what the upstream received: the identity the
    // upstream verified from tlsgate's (or Envoy's) client certificate, in both demos.
    assert_eq!(
        stdout
            .matches(r#""x-upstream-verified-client": "ExampleClient""#)
            .count(),
        2,
        "{all}"
    );
    // Both edges logged the request they forwarded.
    assert!(
        stdout.contains(r#"path="/hello" verdict="forward""#),
        "{all}"
    );
    assert!(
        stdout.contains(r#""GET /hello HTTP/2" 200 via_upstream"#),
        "{all}"
    );
    // Nothing was left running.
    let ps = Command::new("docker")
        .args([
            "ps",
            "-a",
            "--filter",
            "name=tlsgate-",
            "--format",
            "{{.Names}}",
        ])
        .output();
    if let Ok(ps) = ps {
        if ps.status.success() {
            let left = String::from_utf8_lossy(&ps.stdout);
            assert!(left.trim().is_empty(), "containers left behind: {left}");
        }
    }
}
