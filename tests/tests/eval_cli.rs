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
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// The same question for the playground's engine: the policy's text, every certificate and CRL
/// of the run by name (never a key), and the scenario's client.
fn question(s: &Scenario, table: &Table, dir: &Path, files: &Value) -> Value {
    let c = &s.client;
    let policy = &table.policies[&s.policy];
    let sni = c.sni.clone().unwrap_or_else(|| "app.test".into());
    let certificate = c.cert.as_ref().map(|cert| {
        let file = format!("{cert}.{}", if c.chain { "chain.crt" } else { "crt" });
        std::fs::read_to_string(dir.join(file)).unwrap()
    });
    let args: Vec<String> = policy
        .args
        .iter()
        .map(|a| render(a, PORT, &PORTS, dir).unwrap())
        .collect();
    let flag = |name: &str| -> Vec<String> {
        args.windows(2)
            .filter(|w| w[0] == name)
            .map(|w| w[1].clone())
            .collect()
    };
    let mut headers: Vec<(String, String)> = c
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    if let Some(host) = &c.host {
        headers.insert(0, ("Host".into(), host.clone()));
    }
    // The playground refuses pasted keys (it never needs one): what a user does with a
    // manifest that inlines one, the test does too, leaving the field empty.
    let mut text = policy.text.clone();
    for tag in ["{pem:", "{b64:"] {
        while let Some(start) = text.find(tag) {
            let Some(end) = text[start..].find('}').map(|e| start + e) else {
                break;
            };
            if !text[start..end].ends_with(".key") {
                // Not a key: mark it so the search moves on; render fills it in below.
                text.replace_range(start..start + 1, "\u{0}");
                continue;
            }
            text.replace_range(start..=end, "\"\"");
        }
    }
    let text = text.replace('\u{0}', "{");
    serde_json::json!({
        "policy": render(&text, PORT, &PORTS, dir).unwrap(),
        "policy_name": format!("eval-{}.yaml", s.policy),
        "files": files,
        "certificate": certificate,
        "sni": sni,
        "tls": c.tls,
        "client_ip": c.from,
        "request": format!(
            "{} https://{sni}:{PORT}{}",
            c.method.as_deref().unwrap_or("GET"),
            c.path.as_deref().unwrap_or("/")
        ),
        "headers": headers,
        "listen": flag("--listen"),
        "resolve": flag("--resolve"),
        "now": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
    })
}

/// Every certificate and CRL of the run, by its path under `dir` (`seed/ca.crt`).
fn material(dir: &Path) -> Value {
    let mut files = serde_json::Map::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "crt" || e == "crl") {
                let name = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                let bytes = std::fs::read(&path).unwrap();
                let value = match String::from_utf8(bytes) {
                    Ok(text) => Value::from(text),
                    // A binary file (a DER CRL), as the page sends it.
                    Err(e) => {
                        use base64::Engine as _;
                        let b64 = base64::engine::general_purpose::STANDARD.encode(e.into_bytes());
                        serde_json::json!({ "base64": b64 })
                    }
                };
                files.insert(name, value);
            }
        }
    }
    Value::Object(files)
}

/// Runs the playground's WebAssembly engine (node) on `questions`.
fn playground(questions: &[Value]) -> Vec<Value> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let engine = tlsgate_e2e::target_dir()
        .join("wasm32-unknown-unknown/release-wasm/tlsgate_playground.wasm");
    assert!(
        engine.exists(),
        "the playground engine is not built at {}: run `make playground`",
        engine.display()
    );
    let mut cmd = Command::new("node");
    cmd.arg(root.join("tests/playground/eval.mjs")).arg(&engine);
    let input = serde_json::to_vec(questions).unwrap();
    let run = run_bounded(cmd, &input, Duration::from_secs(120));
    assert_eq!(run.exit_code, 0, "node eval.mjs: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
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
    let files = material(work.path());
    let mut questions = Vec::new();
    let mut answers = Vec::new();
    for s in &table.scenarios {
        if not_for_eval(s, &table).is_some() {
            continue;
        }
        // Where the hosts differ (documented in the table), eval gives the native host's
        // answer: it runs the native host's certificate check.
        let got = eval(s, &table, work.path());
        questions.push(question(s, &table, work.path(), &files));
        answers.push((s, got.clone()));
        played += 1;
        if let Err(why) = agrees(&s.expect, &got) {
            failures.push(format!(
                "[{}] {why}\n{}",
                s.name,
                serde_json::to_string_pretty(&got).unwrap()
            ));
        }
    }
    // The playground's engine (core in WebAssembly, webpki with pure-Rust algorithms) gives the
    // same decisions, step by step, and the same upstream request.
    let mut compared = 0;
    for ((s, cli), browser) in answers.iter().zip(playground(&questions)) {
        compared += 1;
        let Some(browser) = browser.get("evaluation") else {
            failures.push(format!("[{}] playground: {browser}", s.name));
            continue;
        };
        for key in ["outcome", "endpoint", "steps", "upstream", "certificate"] {
            if cli[key] != browser[key] {
                failures.push(format!(
                    "[{}] playground and tlsgate eval differ in {key}:\n  eval: {}\n  playground: {}",
                    s.name, cli[key], browser[key]
                ));
            }
        }
    }
    assert_eq!(compared, played, "the playground answered every question");
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
