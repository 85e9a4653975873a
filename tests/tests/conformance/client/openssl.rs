//! The openssl clients (old TLS versions, no SNI, OCSP stapling, resumption, an HTTP/2 PING flood)
//! and raw bytes over TCP.

use super::*;

pub(super) fn is_alert(stderr: &str) -> bool {
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
pub(super) fn probe_sees_alert(client: &Client, port: u16, dir: &Path) -> bool {
    let mut cmd = s_client_command(client, port, dir);
    cmd.arg("-ign_eof");
    let run = run_bounded(cmd, b"", Duration::from_secs(2));
    is_alert(&run.stderr) || is_alert(&run.stdout)
}

pub(super) fn s_client(client: &Client, port: u16, dir: &Path) -> Observed {
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
pub(super) fn h2_ping_flood(client: &Client, port: u16, dir: &Path) -> Observed {
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
pub(super) fn staple(client: &Client, port: u16, dir: &Path) -> Observed {
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

/// Two openssl clients: the first completes a request (so TLS 1.3 tickets arrive) and saves
/// its session, the second offers it and sends the same request. `resumed` if the server took
/// the session and answered the request 200, `handshake` if the second connection was a full
/// handshake answered 200 (no session was offered, or it was refused); anything else is what
/// the request on the second connection got: its status when the session resumed (a rule on
/// `conn.tls.session_resumed` answers the resumed connection only), else why it broke. A
/// session that resumes and then loses what the first handshake established (the client's
/// verified identity) shows here.
pub(super) fn resume(client: &Client, port: u16, dir: &Path) -> Observed {
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
pub(super) fn raw(kind: &str, port: u16) -> Observed {
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
