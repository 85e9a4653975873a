//! `examples/kubernetes/` stays true: rendered with the seed's openssl commands, every scenario
//! loads with the flags its README gives, and says where it listens and what it reaches.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tlsgate_e2e::{run_bounded, tlsgate_bin};

#[test]
fn every_rendered_example_loads_with_the_flags_its_readme_gives() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = tempfile::tempdir().unwrap();
    let mut render = Command::new("bash");
    render
        .arg(root.join("examples/kubernetes/render.sh"))
        .arg(out.path());
    let rendered = run_bounded(render, b"", Duration::from_secs(120));
    assert_eq!(rendered.exit_code, 0, "render.sh: {rendered:?}");

    let upstream = "127.0.0.1:9080";
    for (scenario, resolve, expected) in [
        (
            "agent-endpoint",
            "my-service.my-namespace:8080",
            "TLS 1.3, client certificates require-and-verify (1 CA), 0 rules -> \
             http://my-service.my-namespace:8080 (at 127.0.0.1:9080)",
        ),
        (
            "cloud-endpoint",
            "my-service.my-namespace:8080",
            "-> http://my-service.my-namespace:8080 (at 127.0.0.1:9080)",
        ),
        (
            "ingress",
            "example-service:80",
            "-> http://example-service.default:80 (at 127.0.0.1:9080)",
        ),
        (
            "gateway",
            "example-service:80",
            "TLS 1.2-1.3, client certificates require-and-verify (1 CA), 0 rules -> \
             http://example-service.default:80 (at 127.0.0.1:9080)",
        ),
        (
            "upstream-mtls",
            "my-service.my-namespace:8443",
            "(at 127.0.0.1:9080) with client certificate",
        ),
    ] {
        let mut check = Command::new(tlsgate_bin());
        check.current_dir(out.path()).args([
            "check",
            "-c",
            scenario,
            "--listen",
            "443=127.0.0.1:8443",
            "--resolve",
            &format!("{resolve}={upstream}"),
        ]);
        let result = run_bounded(check, b"", Duration::from_secs(30));
        assert_eq!(result.exit_code, 0, "{scenario}: {result:?}");
        let first = result.stdout.lines().next().unwrap_or_default();
        assert!(
            first.starts_with("terminate-tls-example.ngrok.app on 127.0.0.1:8443: "),
            "{scenario}: {first}"
        );
        assert!(first.contains(expected), "{scenario}: {first}");
        assert!(
            !result.stderr.contains("no upstream has that name"),
            "{scenario}: the README's --resolve matches: {}",
            result.stderr
        );
    }
}
