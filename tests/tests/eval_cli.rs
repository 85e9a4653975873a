//! `tlsgate eval` gives the conformance table's answers: every scenario whose outcome depends
//! only on the policy, the certificate, the server name and the request (not on an upstream's
//! behaviour, raw bytes or a resumed session) is played through the real `tlsgate eval`, and its
//! outcome and upstream headers must be what both hosts were observed to do.

// Helpers outside #[test] functions fail the test by panicking.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "conformance/certs.rs"]
mod certs;
#[allow(dead_code)]
#[path = "conformance/table.rs"]
mod table;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use table::{render, Expect, Ports, Scenario, Table};
use tlsgate_e2e::{run_bounded, tlsgate_bin};

const PORT: u16 = 18443;
const PORTS: Ports = Ports {
    echo: 18081,
    mtls: 18082,
    seed: 18083,
    dead: 18084,
    silent: 18085,
    stalling: 18086,
};

/// Why a scenario is not one eval can answer, or `None` when it is.
fn not_for_eval(s: &Scenario, table: &Table) -> Option<&'static str> {
    let c = &s.client;
    let policy = &table.policies[&s.policy].text;
    if c.send.is_some() || c.websocket || c.resume || c.target.is_some() {
        return Some("raw input, WebSocket, resumption or a raw request target");
    }
    if c.key.is_some() {
        return Some("a key that is not the certificate's (eval assumes possession)");
    }
    if matches!(c.tls.as_deref(), Some(v) if v != "1.2" && v != "1.3")
        || c.sni.as_deref() == Some("none")
    {
        return Some("an obsolete version or no SNI (openssl)");
    }
    if [
        "{mtls_upstream}",
        "{seed_upstream",
        "{dead}",
        "{silent}",
        "{stalling}",
        "{echo_tcp}",
        "tcp://",
        "tls://",
    ]
    .iter()
    .any(|p| policy.contains(p) || table.policies[&s.policy].args.iter().any(|a| a.contains(p)))
    {
        return Some("the outcome depends on the upstream");
    }
    match &s.expect {
        Expect::Class(c) if c == "refused" || c == "closed" => None,
        Expect::Class(_) | Expect::LoadError { .. } => Some("not a request outcome"),
        Expect::Status(code) | Expect::Detailed { status: code, .. } if *code >= 500 => {
            Some("an upstream failure")
        }
        _ => None,
    }
}

fn eval(s: &Scenario, table: &Table, dir: &Path) -> Value {
    let c = &s.client;
    let policy = &table.policies[&s.policy];
    let path = dir.join(format!("eval-{}.yaml", s.policy));
    std::fs::write(&path, render(&policy.text, PORT, &PORTS, dir).unwrap()).unwrap();
    let sni = c.sni.clone().unwrap_or_else(|| "app.test".into());
    let mut cmd = Command::new(tlsgate_bin());
    cmd.arg("eval")
        .arg("-c")
        .arg(&path)
        .args(["--format", "json"]);
    for arg in &policy.args {
        cmd.arg(render(arg, PORT, &PORTS, dir).unwrap());
    }
    cmd.args(["--sni", &sni]);
    if let Some(cert) = &c.cert {
        let file = format!("{cert}.{}", if c.chain { "chain.crt" } else { "crt" });
        cmd.arg("--cert").arg(dir.join(file));
    }
    if let Some(tls) = &c.tls {
        cmd.args(["--tls", tls]);
    }
    if let Some(from) = &c.from {
        cmd.args(["--client-ip", from]);
    }
    let method = c.method.clone().unwrap_or_else(|| "GET".into());
    let path_part = c.path.clone().unwrap_or_else(|| "/".into());
    cmd.args([
        "--request",
        &format!("{method} https://{sni}:{PORT}{path_part}"),
    ]);
    if let Some(host) = &c.host {
        cmd.args(["-H", &format!("Host: {host}")]);
    }
    for (k, v) in &c.headers {
        cmd.args(["-H", &format!("{k}: {v}")]);
    }
    let run = run_bounded(cmd, b"", Duration::from_secs(30));
    assert_eq!(run.exit_code, 0, "[{}] tlsgate eval: {run:?}", s.name);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("[{}] {e}: {}", s.name, run.stdout))
}

/// Whether eval's answer is the scenario's expected one; `Err` says how it differs.
fn agrees(expect: &Expect, got: &Value) -> Result<(), String> {
    let outcome = got["outcome"].as_str().unwrap_or_default();
    let (status, upstream, path) = match expect {
        Expect::Class(class) => {
            return if outcome == class {
                Ok(())
            } else {
                Err(format!("expected {class}, eval says {outcome}"))
            }
        }
        Expect::Status(code) => (*code, None, None),
        Expect::Detailed {
            status,
            upstream,
            path,
            ..
        } => (*status, Some(upstream), path.as_ref()),
        Expect::LoadError { .. } => return Err("not a request outcome".into()),
    };
    // The echo upstream answers 200: a forwarded request is a 200 at the client.
    let got_status = if outcome == "forward" { "200" } else { outcome };
    if got_status != status.to_string() {
        return Err(format!(
            "expected {status}, eval says {outcome} ({})",
            got["reason"]
        ));
    }
    let headers: Vec<(String, String)> = got["upstream"]["headers"]
        .as_array()
        .map(|hs| {
            hs.iter()
                .map(|h| {
                    (
                        h[0].as_str().unwrap_or_default().to_owned(),
                        h[1].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    for (name, want) in upstream.into_iter().flatten() {
        let have = headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str());
        let ok = match (want, have) {
            (Value::Null, None) => true,
            (Value::Null, Some(_)) => false,
            (Value::String(w), Some(_)) if w == "*" => true,
            (Value::String(w), Some(h)) => match w.strip_prefix('~') {
                Some(sub) => h.contains(sub),
                None => h == w,
            },
            _ => false,
        };
        if !ok {
            return Err(format!(
                "upstream {name}: expected {want}, eval gives {have:?}"
            ));
        }
    }
    if let Some(want) = path {
        let have = got["upstream"]["target"].as_str().unwrap_or_default();
        if have != want {
            return Err(format!("upstream path: expected {want}, eval gives {have}"));
        }
    }
    Ok(())
}

#[test]
fn eval_agrees_with_both_hosts_on_the_conformance_table() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let table = Table::load(&root.join("conformance/scenarios.yaml"));
    let work = tempfile::tempdir().unwrap();
    certs::make(&table, work.path());
    let mut played = 0;
    let mut failures = Vec::new();
    for s in &table.scenarios {
        if not_for_eval(s, &table).is_some() {
            continue;
        }
        // Where the hosts differ (documented in the table), eval gives the native host's
        // answer: it runs the native host's certificate check.
        let got = eval(s, &table, work.path());
        played += 1;
        if let Err(why) = agrees(&s.expect, &got) {
            failures.push(format!(
                "[{}] {why}\n{}",
                s.name,
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {played} disagree:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    // The sample must stay a sample of the table, not shrink to nothing by a filter change.
    assert!(
        played >= 60,
        "only {played} scenarios were played through eval"
    );
    println!("eval agrees with the table on {played} scenarios");
}

#[test]
fn eval_refuses_a_private_key_and_explains_the_seed_walk_through() {
    let dir = tempfile::tempdir().unwrap();
    tlsgate_test_support::seed_openssl_certs(dir.path()).unwrap();
    std::fs::write(
        dir.path().join("policy.yaml"),
        "endpoints:
  - url: https://terminate-tls-example.ngrok.app
    bind: 127.0.0.1:8443
    upstream: { url: 'http://127.0.0.1:8080' }
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
        - expressions: [\"conn.tls.client.subject.common_name != 'ExampleClient'\"]
          actions: [{ type: deny }]
      on_http_request:
        - actions:
            - type: add-headers
              config: { headers: { x-client-cn: '${conn.tls.client.subject.common_name}' } }
",
    )
    .unwrap();
    let eval = |args: &[&str]| {
        let mut cmd = Command::new(tlsgate_bin());
        cmd.current_dir(dir.path())
            .args([
                "eval",
                "-c",
                "policy.yaml",
                "--sni",
                "terminate-tls-example.ngrok.app",
            ])
            .args(args);
        run_bounded(cmd, b"", Duration::from_secs(30))
    };
    let out = eval(&[
        "--cert",
        "client.crt",
        "--request",
        "GET https://terminate-tls-example.ngrok.app/",
        "-H",
        "x-client-cn: admin",
    ]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    for line in [
        "client certificate: verified under require-and-verify -> admitted",
        "  conn.tls.client.subject.common_name != 'ExampleClient'  =>  false",
        "  add-headers: x-client-cn: ExampleClient",
        "verdict: FORWARDED",
        "  x-client-cn: ExampleClient",
    ] {
        assert!(
            out.stdout.lines().any(|l| l == line),
            "missing {line:?}:\n{}",
            out.stdout
        );
    }
    assert!(!out.stdout.contains("x-client-cn: admin"), "{}", out.stdout);

    let refused = eval(&["--cert", "server.crt"]);
    assert!(
        refused.stdout.contains("verdict: REFUSED at the handshake"),
        "{refused:?}"
    );

    let key = eval(&["--cert", "client.key"]);
    assert_eq!(key.exit_code, 2, "{key:?}");
    assert!(key.stderr.contains("eval never needs one"), "{key:?}");
    assert!(
        !key.stderr.contains("BEGIN"),
        "the key must not be echoed: {key:?}"
    );
}
