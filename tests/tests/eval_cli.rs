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
use tlsgate_test_support::{seed_endpoint, Action, PolicyBuilder, Rule};

const PORT: u16 = 18443;
const PORTS: Ports = Ports {
    echo: 18081,
    mtls: 18082,
    seed: 18083,
    dead: 18084,
    silent: 18085,
    stalling: 18086,
    resetting: 18087,
    echo_proxied: 18088,
    mtls_proxied: 18089,
    closing: 18090,
};

/// Why a scenario is not one eval can answer, or `None` when it is.
fn not_for_eval(s: &Scenario, table: &Table) -> Option<&'static str> {
    let c = &s.client;
    let policy = &table.policies[&s.policy].text;
    if c.send.is_some()
        || c.websocket
        || c.websocket_h2
        || c.resume
        || c.target.is_some()
        || c.proxy.is_some()
    {
        return Some(
            "raw input, WebSocket, resumption, a raw request target or a load balancer's header",
        );
    }
    if table.policies[&s.policy].text.contains("ja4_fingerprint") && ja4_of(s).is_none() {
        return Some("a JA4 fingerprint only a real ClientHello has (eval takes one as --ja4)");
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
        "{closing}",
        "{echo_tcp}",
        "tcp://",
        "tls://",
        // PROXY protocol, in (the listener's) or out (the upstream's `:proxy` report).
        "proxy_protocol",
        // An OCSP responder's answer (eval does not ask it).
        "mutual_tls_ocsp",
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

/// The client's JA4 fingerprint where the scenario says it (the header a rule set from it).
fn ja4_of(s: &Scenario) -> Option<String> {
    match &s.expect {
        Expect::Detailed { upstream, .. } => upstream
            .get("x-ja4")
            .and_then(Value::as_str)
            .map(str::to_owned),
        _ => None,
    }
}

/// One scenario's question, as both `tlsgate eval` and the playground's engine take it.
struct Ask {
    sni: String,
    /// The certificate file (with its chain when the scenario sends one).
    cert: Option<std::path::PathBuf>,
    tls: Option<String>,
    /// The key-exchange groups the client offers (curl's `--curves`, `:`-separated).
    groups: Option<Vec<String>>,
    ja4: Option<String>,
    client_ip: Option<String>,
    request: String,
    /// `Host` (when the scenario sets one) first, then the scenario's headers.
    headers: Vec<(String, String)>,
    /// The policy's own flags (`--listen`, `--resolve`), rendered.
    args: Vec<String>,
}

impl Ask {
    fn new(s: &Scenario, table: &Table, dir: &Path) -> Self {
        let c = &s.client;
        let sni = c.sni.clone().unwrap_or_else(|| "app.test".into());
        let mut headers: Vec<(String, String)> =
            c.host.iter().map(|h| ("Host".into(), h.clone())).collect();
        headers.extend(c.headers.iter().map(|(k, v)| (k.clone(), v.clone())));
        Ask {
            request: format!(
                "{} https://{sni}:{PORT}{}",
                c.method.as_deref().unwrap_or("GET"),
                c.path.as_deref().unwrap_or("/")
            ),
            sni,
            cert: c.cert.as_ref().map(|cert| {
                dir.join(format!(
                    "{cert}.{}",
                    if c.chain { "chain.crt" } else { "crt" }
                ))
            }),
            tls: c.tls.clone(),
            groups: c
                .curves
                .as_ref()
                .map(|c| c.split(':').map(str::to_owned).collect()),
            ja4: ja4_of(s),
            client_ip: c.from.clone(),
            headers,
            args: table.policies[&s.policy]
                .args
                .iter()
                .map(|a| render(a, PORT, &PORTS, dir).unwrap())
                .collect(),
        }
    }

    /// `tlsgate eval`'s arguments after `-c POLICY`.
    fn cli(&self) -> Vec<std::ffi::OsString> {
        let mut out: Vec<std::ffi::OsString> = self.args.iter().map(Into::into).collect();
        out.extend(["--sni".into(), self.sni.clone().into()]);
        if let Some(cert) = &self.cert {
            out.extend(["--cert".into(), cert.into()]);
        }
        if let Some(tls) = &self.tls {
            out.extend(["--tls".into(), tls.into()]);
        }
        if let Some(groups) = &self.groups {
            out.extend(["--groups".into(), groups.join(",").into()]);
        }
        if let Some(ja4) = &self.ja4 {
            out.extend(["--ja4".into(), ja4.into()]);
        }
        if let Some(ip) = &self.client_ip {
            out.extend(["--client-ip".into(), ip.into()]);
        }
        out.extend(["--request".into(), self.request.clone().into()]);
        for (name, value) in &self.headers {
            out.extend(["-H".into(), format!("{name}: {value}").into()]);
        }
        out
    }

    /// The playground's question: the policy's text, every certificate and CRL of the run by
    /// name (`files`, never a key), and the same client.
    fn json(&self, policy: String, policy_name: String, files: &Value) -> Value {
        let flag = |name: &str| -> Vec<String> {
            self.args
                .windows(2)
                .filter(|w| w[0] == name)
                .map(|w| w[1].clone())
                .collect()
        };
        serde_json::json!({
            "policy": policy,
            "policy_name": policy_name,
            "files": files,
            "certificate": self.cert.as_ref().map(|p| std::fs::read_to_string(p).unwrap()),
            "sni": self.sni,
            "tls": self.tls,
            "groups": self.groups,
            "ja4": self.ja4,
            "client_ip": self.client_ip,
            "request": self.request,
            "headers": self.headers,
            "listen": flag("--listen"),
            "resolve": flag("--resolve"),
            "now": SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs(),
        })
    }
}

/// A policy's text without the private keys its manifests inline (`{pem:….key}`,
/// `{b64:….key}` become `""`): the playground refuses pasted keys, so the test does what a user
/// does with such a manifest.
fn without_keys(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let next = |t: &str| {
        ["{pem:", "{b64:"]
            .iter()
            .filter_map(|tag| t.find(tag))
            .min()
    };
    while let Some(start) = next(rest) {
        let Some(end) = rest[start..].find('}').map(|e| start + e) else {
            break;
        };
        out.push_str(&rest[..start]);
        if rest[start..end].ends_with(".key") {
            out.push_str("\"\"");
        } else {
            out.push_str(&rest[start..=end]);
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
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

fn eval(s: &Scenario, ask: &Ask, table: &Table, dir: &Path) -> Value {
    let path = dir.join(format!("eval-{}.yaml", s.policy));
    std::fs::write(
        &path,
        render(&table.policies[&s.policy].text, PORT, &PORTS, dir).unwrap(),
    )
    .unwrap();
    let mut cmd = Command::new(tlsgate_bin());
    cmd.arg("eval")
        .arg("-c")
        .arg(&path)
        .args(["--format", "json"])
        .args(ask.cli());
    let run = run_bounded(cmd, b"", Duration::from_secs(30));
    assert_eq!(run.exit_code, 0, "[{}] tlsgate eval: {run:?}", s.name);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("[{}] {e}: {}", s.name, run.stdout))
}

/// Whether eval's answer is the scenario's expected one; `Err` says how it differs.
fn agrees(expect: &Expect, got: &Value) -> Result<(), String> {
    let outcome = got["outcome"].as_str().unwrap_or_default();
    let (status, upstream, path) = match expect {
        Expect::Class(class) | Expect::ClassLogged { outcome: class, .. } => {
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
        let ask = Ask::new(s, &table, work.path());
        let got = eval(s, &ask, &table, work.path());
        let text = without_keys(&table.policies[&s.policy].text);
        questions.push(ask.json(
            render(&text, PORT, &PORTS, work.path()).unwrap(),
            format!("eval-{}.yaml", s.policy),
            &files,
        ));
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
    let policy = PolicyBuilder::new()
        .endpoint(
            seed_endpoint("127.0.0.1:8443", "http://127.0.0.1:8080").on_http_request(
                Rule::new().then(Action::add_headers(&[(
                    "x-client-cn",
                    "${conn.tls.client.subject.common_name}",
                )])),
            ),
        )
        .to_yaml();
    std::fs::write(dir.path().join("policy.yaml"), policy).unwrap();
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
