//! The curl and WebSocket clients.

use super::openssl::{is_alert, probe_sees_alert};
use super::*;

pub(super) fn with_curl(client: &Client, port: u16, dir: &Path) -> Observed {
    let sni = client.sni.clone().unwrap_or_else(|| "app.test".into());
    let path = client.path.clone().unwrap_or_else(|| "/".into());
    let mut args: Vec<String> = vec![
        // The path exactly as the scenario writes it: curl would otherwise resolve `/./` and
        // `/../` itself, and a path-normalization scenario would test curl.
        "--path-as-is".into(),
        "--resolve".into(),
        format!("{sni}:{port}:127.0.0.1"),
        "--cacert".into(),
        file(dir, client.trust.as_deref().unwrap_or("ca"), "crt"),
    ];
    if let Some(cert) = &client.cert {
        args.push("--cert".into());
        args.push(file(
            dir,
            cert,
            if client.chain { "chain.crt" } else { "crt" },
        ));
        args.push("--key".into());
        args.push(file(dir, client.key.as_deref().unwrap_or(cert), "key"));
    }
    match client.tls.as_deref() {
        Some("1.2") => args.extend(["--tlsv1.2".into(), "--tls-max".into(), "1.2".into()]),
        Some("1.3") => args.push("--tlsv1.3".into()),
        None => {}
        Some(other) => return Observed::Broken(format!("tls {other}")),
    }
    if let Some(curves) = &client.curves {
        args.push("--curves".into());
        args.push(curves.clone());
    }
    if let Some(host) = &client.host {
        args.push("-H".into());
        args.push(format!("Host: {host}"));
    }
    for (k, v) in &client.headers {
        args.push("-H".into());
        args.push(format!("{k}: {}", v.replace("{unique}", &unique())));
    }
    if let Some(m) = &client.method {
        args.push("-X".into());
        args.push(m.clone());
    }
    if client.http1 {
        args.push("--http1.1".into());
    }
    if let Some(target) = &client.target {
        args.push("--request-target".into());
        args.push(target.clone());
    }
    if let Some(from) = &client.from {
        args.push("--interface".into());
        args.push(from.clone());
    }
    args.push(format!("https://{sni}:{port}{path}"));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let res = curl(&argv);
    match (res.exit_code, res.status) {
        (0, Some(code)) => Observed::Status {
            code,
            upstream: serde_json::from_str::<Value>(&res.body)
                .ok()
                .filter(|v| v.get("headers").is_some()),
            body: res.body,
        },
        (35, _) => Observed::Refused(res.stderr),
        (60, _) => Observed::ServerUntrusted,
        // 52 empty reply, 55/56 send/recv failure, 16/92 HTTP/2 framing, 18 HTTP/2 stream cut.
        (52 | 55 | 56 | 16 | 18 | 92, _) => {
            if is_alert(&res.stderr) || probe_sees_alert(client, port, dir) {
                Observed::Refused(res.stderr)
            } else {
                Observed::Closed(res.stderr)
            }
        }
        (code, _) => Observed::Broken(format!("curl exit {code}: {}", res.stderr.trim())),
    }
}

/// A value no other request of the run carries (`{unique}` in a scenario's header): the
/// same scenario played against both hosts must not look like one request twice.
fn unique() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    )
}

/// A real WebSocket client (Python's `websockets`, or over HTTP/2 the `h2` stack; `make setup`
/// installs both into `.tools/python`) opening `wss://SNI:PORT/PATH` and sending one message.
pub(super) fn websocket(client: &Client, port: u16, dir: &Path) -> Observed {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = root.join(if client.websocket_h2 {
        "tests/conformance/ws_h2_client.py"
    } else {
        "tests/conformance/ws_client.py"
    });
    let mut cmd = Command::new(tool("python3"));
    cmd.env("PYTHONPATH", root.join(".tools/python"))
        .arg(&script)
        .arg("--port")
        .arg(port.to_string())
        .arg("--sni")
        .arg(client.sni.as_deref().unwrap_or("app.test"))
        .arg("--ca")
        .arg(file(dir, client.trust.as_deref().unwrap_or("ca"), "crt"))
        .arg("--path")
        .arg(client.path.as_deref().unwrap_or("/"));
    if let Some(cert) = &client.cert {
        cmd.arg("--cert")
            .arg(file(dir, cert, "crt"))
            .arg("--key")
            .arg(file(dir, client.key.as_deref().unwrap_or(cert), "key"));
    }
    let run = run_bounded(cmd, b"", Duration::from_secs(45));
    if run.stderr.contains("No module named") {
        return Observed::Broken(format!(
            "the WebSocket clients need the websockets and h2 packages: run `make setup` ({})",
            run.stderr.trim()
        ));
    }
    let Ok(outcome) = serde_json::from_str::<Value>(run.stdout.trim()) else {
        return Observed::Broken(format!("ws_client.py: {}{}", run.stdout, run.stderr));
    };
    match (outcome["status"].as_u64(), outcome["echo"].as_str()) {
        (Some(code), echo) => Observed::Status {
            code: u16::try_from(code).unwrap_or(0),
            body: echo.unwrap_or_default().to_owned(),
            upstream: None,
        },
        (None, _) => Observed::Closed(outcome["error"].as_str().unwrap_or_default().to_owned()),
    }
}
