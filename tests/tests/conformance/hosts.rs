//! The two hosts under test and the upstreams behind them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use tlsgate_e2e::{
    echo_upstream, echo_upstream_expecting_proxy_protocol, filter_wasm, free_port, run_bounded,
    tlsgate_bin, tool, wait_port, EchoUpstream, Proc,
};

use crate::table::{render, OcspSpec, Policy, Ports, Table};

/// Handshake deadline both hosts are given, so `idle` and `half-hello` end in seconds.
pub const HANDSHAKE_TIMEOUT_SECS: u64 = 3;
/// Upstream-response and stream-idle deadlines both hosts are given (the same flags, so the
/// same values: the scenarios show both hosts cut a stalled upstream at the same point).
pub const UPSTREAM_TIMEOUT_SECS: u64 = 3;

/// The deadline flags every host under test gets, `tlsgate run` and `tlsgate envoy-config`
/// alike.
fn limit_args() -> Vec<String> {
    vec![
        "--handshake-timeout".into(),
        format!("{HANDSHAKE_TIMEOUT_SECS}s"),
        "--upstream-timeout".into(),
        format!("{UPSTREAM_TIMEOUT_SECS}s"),
        "--stream-idle-timeout".into(),
        format!("{UPSTREAM_TIMEOUT_SECS}s"),
    ]
}
const START_TIMEOUT: Duration = Duration::from_secs(90);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    Native,
    Envoy,
}

impl HostKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Native => "native",
            Self::Envoy => "envoy",
        }
    }
}

/// Shared by both hosts: a plain echo upstream, an upstream that requires a client certificate
/// (a native tlsgate terminating TLS with `upstream-server` and verifying clients against `ca`,
/// in front of the echo), and a port nothing listens on.
pub struct Upstreams {
    pub echo: EchoUpstream,
    /// The echo behind a PROXY protocol header it requires (its `:proxy` report).
    pub echo_proxied: EchoUpstream,
    pub mtls_port: u16,
    /// `mtls_port`'s twin that takes a PROXY protocol header from 127.0.0.0/8 first.
    pub mtls_proxied_port: u16,
    pub seed_port: u16,
    pub dead_port: u16,
    /// Accepts, reads the request, never answers.
    pub silent_port: u16,
    /// Answers with a response head and part of a body, then stalls.
    pub stalling_port: u16,
    /// Answers with a response head and part of a body, then resets the connection.
    pub resetting_port: u16,
    /// Closes the connection of a request it has not seen before without answering.
    pub closing_port: u16,
    _mtls: Proc,
    _mtls_proxied: Proc,
    _seed: Proc,
    _ocsp: Vec<Proc>,
}

impl Upstreams {
    pub fn start(table: &Table, dir: &Path) -> Upstreams {
        // Responders first: their ports were chosen when the certificates were made.
        let ocsp = table
            .ocsp_responders
            .iter()
            .map(|(name, spec)| ocsp_responder(dir, name, spec))
            .collect();
        let echo = echo_upstream();
        let (mtls_port, mtls) = mtls_upstream(
            dir,
            "mtls-upstream",
            "upstream.test",
            ("upstream-server.crt", "upstream-server.key", "ca.crt"),
            &echo,
            false,
        );
        let (mtls_proxied_port, mtls_proxied) = mtls_upstream(
            dir,
            "mtls-upstream-proxied",
            "upstream.test",
            ("upstream-server.crt", "upstream-server.key", "ca.crt"),
            &echo,
            true,
        );
        // Seed 000: the upstream terminates TLS with the seed's server.crt/server.key and checks
        // client certificates against the seed's ca.crt.
        let (seed_port, seed) = mtls_upstream(
            dir,
            "seed-upstream",
            "terminate-tls-example.ngrok.app",
            ("seed/server.crt", "seed/server.key", "seed/ca.crt"),
            &echo,
            false,
        );
        // Bound before the dead port is picked, so the kernel cannot hand that port out again.
        let silent_port = scripted_upstream(b"", Then::Hold);
        let stalling_port = scripted_upstream(PARTIAL_ANSWER, Then::Hold);
        let resetting_port = scripted_upstream(PARTIAL_ANSWER, Then::Reset);
        let closing_port = closing_upstream();
        Upstreams {
            echo,
            echo_proxied: echo_upstream_expecting_proxy_protocol(),
            mtls_port,
            mtls_proxied_port,
            seed_port,
            dead_port: free_port(),
            silent_port,
            stalling_port,
            resetting_port,
            closing_port,
            _mtls: mtls,
            _mtls_proxied: mtls_proxied,
            _seed: seed,
            _ocsp: ocsp,
        }
    }
}

/// A response head and the first bytes of a body it never completes.
const PARTIAL_ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\ncontent-type: text/plain\r\n\r\nfirst bytes";

/// What a [`scripted_upstream`] does after its answer.
#[derive(Clone, Copy)]
enum Then {
    /// Keep the connection open without another byte.
    Hold,
    /// Reset it (RST, not FIN: `SO_LINGER` 0), as a crashing server or a middlebox does.
    Reset,
}

/// An upstream that reads each request, writes `answer` (maybe nothing), then holds or resets
/// the connection, for as long as the test process lives.
fn scripted_upstream(answer: &'static [u8], then: Then) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(answer);
                let _ = stream.flush();
                match then {
                    // Until the peer gives up (bounded: the hosts' deadlines are seconds, and
                    // the test process ends anyway).
                    Then::Hold => {
                        let _ = stream.set_read_timeout(Some(Duration::from_secs(60)));
                        while matches!(stream.read(&mut buf), Ok(n) if n > 0) {}
                    }
                    // Let the partial answer leave before the reset overtakes it.
                    Then::Reset => {
                        std::thread::sleep(Duration::from_millis(200));
                        let _ =
                            rustix::net::sockopt::set_socket_linger(&stream, Some(Duration::ZERO));
                    }
                }
            });
        }
    });
    port
}

/// An upstream that closes a kept-alive connection under a request, as one that reloads or
/// times out idle connections does: the first request carrying a given `x-attempt` value has
/// its connection closed without an answer; the same value again is answered
/// `200 second attempt` (and the connection closed, so no attempt rides a pooled one).
fn closing_upstream() -> u16 {
    use std::collections::HashSet;
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex, PoisonError};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen: Arc<Mutex<HashSet<String>>> = Arc::default();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut head = Vec::new();
                let mut buf = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                    match stream.read(&mut buf) {
                        Ok(n) if n > 0 => head.extend_from_slice(&buf[..n]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let attempt = head
                    .lines()
                    .find_map(|l| l.strip_prefix("x-attempt:"))
                    .map(|v| v.trim().to_owned())
                    .unwrap_or_default();
                let first = seen
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(attempt);
                if !first {
                    let _ = stream.write_all(
                        b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\nconnection: close\r\n\r\nsecond attempt",
                    );
                }
                // First time: dropped unanswered.
            });
        }
    });
    port
}

/// `openssl ocsp` answering for `spec.issuer`'s certificates from an index it is given (the
/// database `openssl ca` keeps), signing with the issuer's key or `spec.signer`'s, on the URL
/// certs.rs wrote to NAME.url (the `{text:NAME.url}` placeholder).
fn ocsp_responder(dir: &Path, name: &str, spec: &OcspSpec) -> Proc {
    let serial = |cert: &str| -> String {
        let mut cmd = Command::new(tool("openssl"));
        cmd.args(["x509", "-noout", "-serial", "-in"])
            .arg(dir.join(format!("{cert}.crt")));
        let run = run_bounded(cmd, b"", Duration::from_secs(10));
        run.stdout
            .trim()
            .strip_prefix("serial=")
            .unwrap_or_else(|| panic!("serial of {cert}: {}{}", run.stdout, run.stderr))
            .to_owned()
    };
    // status, expiry, revocation time, serial, file, subject (tab-separated).
    let mut index = String::new();
    for cert in &spec.good {
        index.push_str(&format!(
            "V\t351231000000Z\t\t{}\tunknown\t/CN={cert}\n",
            serial(cert)
        ));
    }
    for cert in &spec.revoked {
        index.push_str(&format!(
            "R\t351231000000Z\t240101000000Z\t{}\tunknown\t/CN={cert}\n",
            serial(cert)
        ));
    }
    let index_path = dir.join(format!("{name}.index"));
    std::fs::write(&index_path, index).unwrap();
    let signer = spec.signer.as_deref().unwrap_or(&spec.issuer);
    // certs.rs chose the port (certificates name the responder's URL).
    let url_file = dir.join(format!("{name}.url"));
    let url = std::fs::read_to_string(&url_file).unwrap_or_else(|e| panic!("{url_file:?}: {e}"));
    let port: u16 = url
        .trim()
        .trim_start_matches("http://127.0.0.1:")
        .trim_end_matches('/')
        .parse()
        .unwrap_or_else(|_| panic!("{url_file:?}: {url}"));
    let mut cmd = Command::new(tool("openssl"));
    cmd.arg("ocsp")
        .arg("-index")
        .arg(&index_path)
        // OpenSSL 3.0 takes a port only (it listens on every address; clients use loopback).
        .arg("-port")
        .arg(port.to_string())
        .arg("-CA")
        .arg(dir.join(format!("{}.crt", spec.issuer)))
        .arg("-rsigner")
        .arg(dir.join(format!("{signer}.crt")))
        .arg("-rkey")
        .arg(dir.join(format!("{signer}.key")))
        // nextUpdate a day ahead: answers are cached (one request per certificate and host).
        .args(["-ndays", "1"])
        // Workers, as a real responder has: a single OpenSSL 3.0 responder serves one client
        // at a time and stops answering for good after a connection that closes without a
        // request (a client whose deadline ran out mid-connect, say); with -multi the worker
        // exits and the parent starts another.
        .args(["-multi", "4"]);
    // Under -multi OpenSSL logs to syslog, a port it cannot bind included: say it here.
    if let Err(e) = std::net::TcpListener::bind(("0.0.0.0", port)) {
        panic!("ocsp-{name}: port {port}, chosen when the certificates were made, is taken: {e}");
    }
    let proc = Proc::spawn_group(&format!("ocsp-{name}"), cmd);
    // Printed once the socket listens (the workers then log to syslog, not here).
    proc.wait_for_log("ACCEPT ", START_TIMEOUT)
        .unwrap_or_else(|e| panic!("ocsp-{name}: {e}"));
    proc
}

/// A native tlsgate that requires a client certificate and tells the echo behind it, in
/// `x-forwarded-client-cert`, which one it got; with `proxy_protocol`, it takes a PROXY
/// protocol header from 127.0.0.0/8 first (and the echo sees that client in `x-forwarded-for`).
fn mtls_upstream(
    dir: &Path,
    name: &str,
    host: &str,
    (cert, key, ca): (&str, &str, &str),
    echo: &EchoUpstream,
    proxy_protocol: bool,
) -> (u16, Proc) {
    let port = free_port();
    let policy = format!(
        "endpoints:
  - url: https://{host}
    bind: 127.0.0.1:{port}
    upstream: {{url: '{}'}}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: {cert}
                server_private_key: {key}
                mutual_tls_certificate_authorities: [{ca}]
",
        echo.url()
    );
    let policy = if proxy_protocol {
        format!(
            "{policy}listeners:\n  - bind: 127.0.0.1:{port}\n    \
             proxy_protocol: {{trusted_sources: [127.0.0.0/8]}}\n"
        )
    } else {
        policy
    };
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, policy).unwrap();
    let mut cmd = Command::new(tlsgate_bin());
    cmd.arg("run").arg("-c").arg(&path);
    let proc = Proc::spawn(name, cmd);
    proc.wait_for_log("listening on", START_TIMEOUT)
        .unwrap_or_else(|e| panic!("{name} did not start: {e}"));
    (port, proc)
}

/// Fills a policy's placeholders (see the table's header): upstream URLs and addresses, the
/// host's port, and certificate material from the run's directory as a JSON string
/// (`{pem:NAME}`, which YAML reads as a double-quoted scalar) or as base64 (`{b64:NAME}`, as
/// a Secret's `data` holds it).
impl Upstreams {
    /// The ports a policy's placeholders stand for.
    fn ports(&self) -> Ports {
        Ports {
            echo: self.echo.port(),
            echo_proxied: self.echo_proxied.port(),
            mtls: self.mtls_port,
            mtls_proxied: self.mtls_proxied_port,
            seed: self.seed_port,
            dead: self.dead_port,
            silent: self.silent_port,
            stalling: self.stalling_port,
            resetting: self.resetting_port,
            closing: self.closing_port,
        }
    }
}

/// A running host with one policy.
pub struct Host {
    pub port: u16,
    proc: Proc,
}

impl Host {
    pub fn start(
        kind: HostKind,
        name: &str,
        policy: &Policy,
        upstreams: &Upstreams,
        dir: &Path,
    ) -> Result<Host, String> {
        let port = free_port();
        let text = render(&policy.text, port, &upstreams.ports(), dir)?;
        let args = policy
            .args
            .iter()
            .map(|a| render(a, port, &upstreams.ports(), dir))
            .collect::<Result<Vec<_>, _>>()?;
        let path = dir.join(format!("{}-{name}.yaml", kind.name()));
        std::fs::write(&path, text).map_err(|e| e.to_string())?;
        let proc = match kind {
            HostKind::Native => {
                let mut cmd = Command::new(tlsgate_bin());
                cmd.arg("run")
                    .arg("-c")
                    .arg(&path)
                    .args(limit_args())
                    .args(&args);
                let proc = Proc::spawn(&format!("native-{name}"), cmd);
                proc.wait_for_log("listening on", START_TIMEOUT)?;
                proc
            }
            HostKind::Envoy => {
                let admin = free_port();
                let out = dir.join(format!("envoy-{name}.out.yaml"));
                let mut cmd = Command::new(tlsgate_bin());
                cmd.arg("envoy-config")
                    .arg("-c")
                    .arg(&path)
                    .arg("--wasm")
                    .arg(filter_wasm())
                    .arg("-o")
                    .arg(&out)
                    .arg("--admin")
                    .arg(format!("127.0.0.1:{admin}"))
                    .args(limit_args())
                    .args(&args);
                let run = run_bounded(cmd, b"", Duration::from_secs(60));
                if run.exit_code != 0 {
                    return Err(format!(
                        "tlsgate envoy-config failed: {}{}",
                        run.stdout, run.stderr
                    ));
                }
                let mut cmd = Command::new(tool("envoy"));
                cmd.args([
                    "--use-dynamic-base-id",
                    "--concurrency",
                    "1",
                    "-l",
                    "warning",
                    // Access lines reach the log within 0.2 s instead of Envoy's 10 s (the
                    // `log` action's scenarios read them).
                    "--file-flush-interval-msec",
                    "200",
                    "-c",
                ])
                .arg(&out);
                let proc = Proc::spawn(&format!("envoy-{name}"), cmd);
                wait_port(([127, 0, 0, 1], admin).into(), START_TIMEOUT)
                    .map_err(|e| format!("{e}\n{}", proc.log()))?;
                proc
            }
        };
        wait_port(([127, 0, 0, 1], port).into(), START_TIMEOUT)
            .map_err(|e| format!("{e}\n{}", proc.log()))?;
        Ok(Host { port, proc })
    }

    /// Waits (briefly: access lines are written as requests end) for `needle` in the log.
    pub fn wait_for_log(&self, needle: &str) -> Result<(), String> {
        self.proc
            .wait_for_log(needle, std::time::Duration::from_secs(5))
    }

    pub fn log_tail(&self) -> String {
        let log = self.proc.log();
        let start = log.len().saturating_sub(3000);
        let start = (start..log.len())
            .find(|i| log.is_char_boundary(*i))
            .unwrap_or(log.len());
        log[start..].to_owned()
    }
}
