//! Plays a scenario's client against a host and classifies what happened.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use tlsgate_e2e::{curl, run_bounded, tool};

use crate::hosts::{Host, HANDSHAKE_TIMEOUT_SECS};
use crate::table::{Client, Expect, ProxyHeader};

/// What a client saw. The strings are client output, read through `Debug` in failure reports.
#[derive(Debug, Clone)]
#[allow(dead_code)]
pub enum Observed {
    /// An HTTP response; `upstream` is the echo's account of the request when it got one.
    Status {
        code: u16,
        body: String,
        upstream: Option<Value>,
    },
    /// The TLS handshake failed (alert, or the server hung up during it).
    Refused(String),
    /// The handshake completed and the connection closed without a response.
    Closed(String),
    /// An openssl client completed the handshake.
    Handshake,
    /// An openssl client resumed the session of a previous connection (`resume: true`).
    Resumed,
    /// The handshake came with an OCSP staple saying `good` (`ocsp_status: true`).
    Stapled,
    /// The client refused the server's certificate (curl exit 60).
    ServerUntrusted,
    /// The server kept a connection open past the deadline it should enforce.
    Hung,
    /// The client could not run as intended (a harness problem, not a host outcome).
    Broken(String),
}

impl Observed {
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

impl fmt::Display for Observed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status { code, .. } => write!(f, "{code}"),
            Self::Refused(_) => f.write_str("refused"),
            Self::Closed(_) => f.write_str("closed"),
            Self::Handshake => f.write_str("handshake"),
            Self::Resumed => f.write_str("resumed"),
            Self::Stapled => f.write_str("stapled"),
            Self::ServerUntrusted => f.write_str("server-untrusted"),
            Self::Hung => f.write_str("hung"),
            Self::Broken(why) => write!(f, "broken ({why})"),
        }
    }
}

impl Expect {
    /// Whether `observed` is what this expects, and if not, why.
    pub fn check(&self, observed: &Observed) -> (bool, String) {
        let fail = |why: String| (false, why);
        match (self, observed) {
            (Expect::Class(c) | Expect::ClassLogged { outcome: c, .. }, o)
                if *c == o.to_string() =>
            {
                (true, String::new())
            }
            (Expect::Status(s), Observed::Status { code, .. }) if s == code => {
                (true, String::new())
            }
            (
                Expect::Detailed {
                    status,
                    upstream,
                    body,
                    path,
                    ..
                },
                Observed::Status {
                    code,
                    upstream: seen,
                    body: got,
                },
            ) => {
                if status != code {
                    return fail(format!("expected {status}, got {code}"));
                }
                if let Some(b) = body {
                    if !got.contains(b.as_str()) {
                        return fail(format!("body does not contain {b:?}: {got:?}"));
                    }
                }
                if let Some(want) = path {
                    let have = seen.as_ref().and_then(|v| v["path"].as_str());
                    if have != Some(want.as_str()) {
                        return fail(format!("upstream path: wanted {want:?}, saw {have:?}"));
                    }
                }
                for (name, want) in upstream {
                    let have = seen
                        .as_ref()
                        .and_then(|v| v["headers"].get(name.as_str()))
                        .and_then(Value::as_str);
                    let ok = match (want, have) {
                        (Value::Null, None) => true,
                        (Value::Null, Some(_)) => false,
                        (Value::String(w), Some(h)) if w == "*" => !h.is_empty(),
                        (Value::String(w), Some(h)) => match w.strip_prefix('~') {
                            Some(part) => h.contains(part),
                            None => h == w,
                        },
                        _ => false,
                    };
                    if !ok {
                        return fail(format!(
                            "upstream header {name}: wanted {want}, saw {have:?}"
                        ));
                    }
                }
                (true, String::new())
            }
            (e, o) => fail(format!("expected {}, got {o}", e.summary())),
        }
    }
}

pub fn play(client: &Client, host: &Host, dir: &Path) -> Observed {
    // Through a load balancer, the client talks to the balancer, which connects from `from`.
    let balancer = match &client.proxy {
        Some(header) => match Balancer::start(header, client.from.as_deref(), host.port) {
            Ok(b) => Some(b),
            Err(e) => return Observed::Broken(format!("starting the load balancer: {e}")),
        },
        None => None,
    };
    let port = balancer.as_ref().map_or(host.port, |b| b.port);
    let direct;
    let client = if balancer.is_some() {
        direct = Client {
            from: None,
            ..client.clone()
        };
        &direct
    } else {
        client
    };
    if let Some(send) = &client.send {
        return raw(send, port);
    }
    if client.resume {
        return resume(client, port, dir);
    }
    if client.websocket || client.websocket_h2 {
        return websocket(client, port, dir);
    }
    if client.ocsp_status {
        return staple(client, port, dir);
    }
    if client.h2_ping_flood {
        return h2_ping_flood(client, port, dir);
    }
    let openssl = matches!(client.tls.as_deref(), Some("1.0" | "1.1"))
        || client.sni.as_deref() == Some("none");
    if openssl {
        s_client(client, port, dir)
    } else {
        with_curl(client, port, dir)
    }
}

/// An L4 load balancer in front of the host, as HAProxy or an AWS NLB is: for each client
/// connection it connects to the host (from `from` when given), sends a PROXY protocol header
/// naming the scenario's source as the client — written here by hand, not by tlsgate's code —
/// and relays bytes both ways, half-closes included. It stops accepting when dropped.
struct Balancer {
    port: u16,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Balancer {
    fn start(header: &ProxyHeader, from: Option<&str>, host_port: u16) -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let port = listener.local_addr()?.port();
        let host: SocketAddr = ([127, 0, 0, 1], host_port).into();
        let bytes = header_bytes(header, host)?;
        let from: Option<std::net::Ipv4Addr> = match from {
            Some(f) => Some(
                f.parse()
                    .map_err(|_| invalid_input(format!("from `{f}`")))?,
            ),
            None => None,
        };
        let stopping = std::sync::Arc::new(AtomicBool::new(false));
        let stop = stopping.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = client else { continue };
                let bytes = bytes.clone();
                std::thread::spawn(move || {
                    let Ok(mut upstream) = connect_from(from, host) else {
                        return;
                    };
                    if upstream.write_all(&bytes).is_err() {
                        return;
                    }
                    relay(client, upstream);
                });
            }
        });
        Ok(Self { port, stopping })
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ =
            TcpStream::connect_timeout(&([127, 0, 0, 1], self.port).into(), Duration::from_secs(1));
    }
}

fn invalid_input(what: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, what)
}

/// The PROXY protocol header for a client at `header.source` reaching `host`.
fn header_bytes(header: &ProxyHeader, host: SocketAddr) -> std::io::Result<Vec<u8>> {
    let source: Option<SocketAddr> = match header.source.as_str() {
        "local" => None,
        s => Some(
            s.parse()
                .map_err(|_| invalid_input(format!("source `{s}`")))?,
        ),
    };
    match (header.version, source) {
        (1, None) => Ok(b"PROXY UNKNOWN\r\n".to_vec()),
        (1, Some(src)) => Ok(format!(
            "PROXY {} {} {} {} {}\r\n",
            if src.is_ipv4() { "TCP4" } else { "TCP6" },
            src.ip(),
            host.ip(),
            src.port(),
            host.port()
        )
        .into_bytes()),
        (2, source) => {
            let mut v = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
            match source {
                None => v.extend_from_slice(&[0x20, 0x00, 0, 0]),
                Some(SocketAddr::V4(src)) => {
                    v.extend_from_slice(&[0x21, 0x11, 0, 12]);
                    v.extend_from_slice(&src.ip().octets());
                    v.extend_from_slice(&[127, 0, 0, 1]);
                    v.extend_from_slice(&src.port().to_be_bytes());
                    v.extend_from_slice(&host.port().to_be_bytes());
                }
                Some(SocketAddr::V6(src)) => {
                    v.extend_from_slice(&[0x21, 0x21, 0, 36]);
                    v.extend_from_slice(&src.ip().octets());
                    v.extend_from_slice(&std::net::Ipv6Addr::LOCALHOST.octets());
                    v.extend_from_slice(&src.port().to_be_bytes());
                    v.extend_from_slice(&host.port().to_be_bytes());
                }
            }
            Ok(v)
        }
        (other, _) => Err(invalid_input(format!("PROXY protocol version {other}"))),
    }
}

/// A TCP connection to `to`, from the loopback address `from` when given.
fn connect_from(from: Option<std::net::Ipv4Addr>, to: SocketAddr) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType};
    let Some(from) = from else {
        return TcpStream::connect_timeout(&to, Duration::from_secs(5));
    };
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    rustix::net::bind(&fd, &SocketAddr::from((from, 0)))?;
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// Bytes both ways until both directions are done; each end's FIN is passed on.
fn relay(client: TcpStream, upstream: TcpStream) {
    let pipe = |mut from: TcpStream, mut to: TcpStream| {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut from, &mut to);
            let _ = to.shutdown(std::net::Shutdown::Write);
        })
    };
    let (Ok(c2), Ok(u2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let a = pipe(client, u2);
    let b = pipe(upstream, c2);
    let _ = a.join();
    let _ = b.join();
}

fn file(dir: &Path, name: &str, ext: &str) -> String {
    dir.join(format!("{name}.{ext}")).display().to_string()
}

fn with_curl(client: &Client, port: u16, dir: &Path) -> Observed {
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

fn is_alert(stderr: &str) -> bool {
    stderr.contains("alert") && !stderr.contains("close notify")
}

/// Whether the server answers this client's handshake with a fatal alert.
///
/// In TLS 1.3 the server judges a client certificate after the client has finished, and curl
/// is by then sending its request. A server that closes at once with that request unread makes
/// the kernel reset the connection, and the reset can destroy the alert before curl reads it
/// (Envoy does this; the native host drains first). To tell "refused" from "closed after the
/// handshake" regardless, replay the handshake with a client that sends nothing and only
/// reads: no unread data, no reset, and the alert — if there is one — arrives.
fn probe_sees_alert(client: &Client, port: u16, dir: &Path) -> bool {
    let mut cmd = s_client_command(client, port, dir);
    cmd.arg("-ign_eof");
    let run = run_bounded(cmd, b"", Duration::from_secs(2));
    is_alert(&run.stderr) || is_alert(&run.stdout)
}

fn s_client(client: &Client, port: u16, dir: &Path) -> Observed {
    let cmd = s_client_command(client, port, dir);
    let run = run_bounded(cmd, b"Q\n", Duration::from_secs(15));
    if run.stderr.contains("no protocols available") {
        return Observed::Broken("this openssl cannot offer the requested version".into());
    }
    if run.exit_code == 0
        && run.stdout.contains("Cipher is")
        && !run.stdout.contains("Cipher is (NONE)")
    {
        Observed::Handshake
    } else {
        Observed::Refused(run.stderr)
    }
}

/// An HTTP/2 client (rustls, ALPN h2) that sends the preface, then PING frames a thousand at a
/// time for up to 5 s and never reads the ACKs. A host that lets it go on spends a core on it
/// (the native host did for ~9 s, until TCP backpressure); Envoy and the native host now close
/// it past 1,000 control frames.
fn h2_ping_flood(client: &Client, port: u16, dir: &Path) -> Observed {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = file(dir, client.trust.as_deref().unwrap_or("ca"), "crt");
    for cert in CertificateDer::pem_file_iter(&ca)
        .into_iter()
        .flatten()
        .flatten()
    {
        let _ = roots.add(cert);
    }
    let builder = match rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
    {
        Ok(b) => b.with_root_certificates(roots),
        Err(e) => return Observed::Broken(e.to_string()),
    };
    let config = match &client.cert {
        Some(cert) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(file(dir, cert, "crt"))
                    .into_iter()
                    .flatten()
                    .flatten()
                    .collect();
            let key = match PrivateKeyDer::from_pem_file(file(dir, cert, "key")) {
                Ok(key) => key,
                Err(e) => return Observed::Broken(format!("{cert}.key: {e}")),
            };
            builder.with_client_auth_cert(chain, key)
        }
        None => Ok(builder.with_no_client_auth()),
    };
    let mut config = match config {
        Ok(config) => config,
        Err(e) => return Observed::Broken(e.to_string()),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let sni = client.sni.clone().unwrap_or_else(|| "app.test".into());
    let (Ok(name), Ok(tcp)) = (
        ServerName::try_from(sni),
        TcpStream::connect(("127.0.0.1", port)),
    ) else {
        return Observed::Broken("cannot connect".into());
    };
    let _ = tcp.set_write_timeout(Some(Duration::from_secs(1)));
    let Ok(conn) = rustls::ClientConnection::new(std::sync::Arc::new(config), name) else {
        return Observed::Broken("client connection".into());
    };
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    let frame = |kind: u8, payload: &[u8]| {
        let mut f = vec![0, 0, payload.len() as u8, kind, 0, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    };
    let mut opening = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    opening.extend(frame(0x4, &[]));
    if let Err(e) = stream.write_all(&opening) {
        return Observed::Refused(e.to_string());
    }
    let batch = frame(0x6, &[7; 8]).repeat(1000);
    let start = Instant::now();
    let mut sent = 0;
    while start.elapsed() < Duration::from_secs(5) {
        match stream.write_all(&batch).and_then(|()| stream.flush()) {
            Ok(()) => sent += 1000,
            // The host stopped reading: it may close soon, or hold on; keep at it.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Observed::Closed(format!("after {sent} PINGs: {e}")),
        }
    }
    Observed::Hung
}

/// An openssl handshake asking for the server's OCSP staple. Hosts fetch staples in the
/// background after they start, so a handshake without one is retried for a few seconds.
fn staple(client: &Client, port: u16, dir: &Path) -> Observed {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut cmd = s_client_command(client, port, dir);
        cmd.arg("-status");
        let run = run_bounded(cmd, b"Q\n", Duration::from_secs(15));
        if !run.stdout.contains("Cipher is") || run.stdout.contains("Cipher is (NONE)") {
            return Observed::Refused(run.stderr);
        }
        let stapled = run.stdout.contains("OCSP Response Status: successful")
            && run.stdout.contains("Cert Status: good");
        if stapled {
            return Observed::Stapled;
        }
        if Instant::now() >= deadline {
            return Observed::Handshake;
        }
        std::thread::sleep(Duration::from_millis(250));
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
fn websocket(client: &Client, port: u16, dir: &Path) -> Observed {
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

/// Two openssl clients: the first completes a request (so TLS 1.3 tickets arrive) and saves
/// its session, the second offers it and sends the same request. `resumed` if the server took
/// the session and answered the request 200, `handshake` if the second connection was a full
/// handshake answered 200 (no session was offered, or it was refused); anything else is what
/// the request on the second connection got: its status when the session resumed (a rule on
/// `conn.tls.session_resumed` answers the resumed connection only), else why it broke. A
/// session that resumes and then loses what the first handshake established (the client's
/// verified identity) shows here.
fn resume(client: &Client, port: u16, dir: &Path) -> Observed {
    let sni = client.sni.clone().unwrap_or_else(|| "app.test".into());
    let session = match tempfile::NamedTempFile::new() {
        Ok(f) => f.into_temp_path(),
        Err(e) => return Observed::Broken(e.to_string()),
    };
    let _ = std::fs::remove_file(&session);
    let mut first = s_client_command(client, port, dir);
    first.arg("-sess_out").arg(&session).arg("-ign_eof");
    let request = format!("GET / HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n");
    let run = run_bounded(first, request.as_bytes(), Duration::from_secs(10));
    if !run.stdout.contains("HTTP/1.1 ") {
        return Observed::Broken(format!(
            "the first connection got no response: {}",
            run.stderr
        ));
    }
    let mut second = s_client_command(client, port, dir);
    if session.exists() {
        second.arg("-sess_in").arg(&session);
    }
    second.arg("-ign_eof");
    let run = run_bounded(second, request.as_bytes(), Duration::from_secs(10));
    let answered = run.stdout.contains("HTTP/1.1 200 ");
    let status = run
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("HTTP/1.1 "))
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok());
    if run.stdout.contains("Reused, ") && answered {
        Observed::Resumed
    } else if let (true, Some(code)) = (run.stdout.contains("Reused, "), status) {
        Observed::Status {
            code,
            body: String::new(),
            upstream: None,
        }
    } else if run.stdout.contains("New, ") && answered {
        Observed::Handshake
    } else if let Some(line) = run.stdout.lines().find(|l| l.starts_with("HTTP/1.1 ")) {
        Observed::Broken(format!("the second connection's request got {line}"))
    } else {
        Observed::Broken(format!(
            "the second connection's request got no response: {}",
            run.stderr.trim()
        ))
    }
}

fn s_client_command(client: &Client, port: u16, dir: &Path) -> Command {
    let mut cmd = Command::new(tool("openssl"));
    cmd.arg("s_client")
        .arg("-connect")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(file(dir, client.trust.as_deref().unwrap_or("ca"), "crt"));
    match client.sni.as_deref() {
        Some("none") => {
            cmd.arg("-noservername");
        }
        sni => {
            cmd.arg("-servername").arg(sni.unwrap_or("app.test"));
        }
    }
    match client.tls.as_deref() {
        // OpenSSL 3 keeps TLS 1.0/1.1 behind security level 0; the point is to offer them.
        Some("1.0") => {
            cmd.args(["-tls1", "-cipher", "DEFAULT@SECLEVEL=0"]);
        }
        Some("1.1") => {
            cmd.args(["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"]);
        }
        Some("1.2") => {
            cmd.arg("-tls1_2");
        }
        Some("1.3") => {
            cmd.arg("-tls1_3");
        }
        _ => {}
    }
    if let Some(cert) = &client.cert {
        cmd.arg("-cert").arg(file(dir, cert, "crt"));
        if client.chain {
            cmd.arg("-cert_chain").arg(file(dir, cert, "chain.crt"));
        }
        cmd.arg("-key")
            .arg(file(dir, client.key.as_deref().unwrap_or(cert), "key"));
    }
    cmd
}

/// Raw bytes at the TLS port. The host must hang up (after an alert, or at its handshake
/// deadline) and keep serving everyone else.
fn raw(kind: &str, port: u16) -> Observed {
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let mut stream = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => return Observed::Broken(e.to_string()),
    };
    let payload: Vec<u8> = match kind {
        "plain-http" => b"GET / HTTP/1.1\r\nHost: app.test\r\n\r\n".to_vec(),
        "random" => {
            let mut x: u32 = 0x9e37_79b9;
            (0..1024)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    (x >> 8) as u8
                })
                .collect()
        }
        // A handshake record that announces 512 bytes and delivers the first 60 of a
        // ClientHello: the server must wait for the rest, then give up at its deadline.
        "half-hello" => {
            let mut v = vec![
                0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
            ];
            v.extend(std::iter::repeat_n(0x2a, 49));
            v
        }
        "idle" => Vec::new(),
        // The start of a PROXY protocol v1 header that never ends: a listener that takes them
        // must give up at its ClientHello deadline.
        "half-proxy" => b"PROXY TCP4 203.0.113.7 127.0.0.1 4711".to_vec(),
        other => return Observed::Broken(format!("unknown raw input `{other}`")),
    };
    if stream.write_all(&payload).is_err() {
        return Observed::Refused("reset while sending".into());
    }
    let deadline = Duration::from_secs(HANDSHAKE_TIMEOUT_SECS + 5);
    let _ = stream.set_read_timeout(Some(deadline));
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    let mut received = 0usize;
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Observed::Refused(format!("closed after {received} bytes")),
            Ok(n) => received += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Observed::Hung
            }
            Err(e) => return Observed::Refused(format!("{e} after {received} bytes")),
        }
        if start.elapsed() > deadline {
            return Observed::Hung;
        }
    }
}
