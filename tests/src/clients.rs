//! Real clients: curl ([`Curl`], [`curl`]) and `openssl s_client`, each run under a deadline.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::tool;

/// How long [`curl`] lets curl itself work (`--max-time`).
const CURL_MAX_TIME: Duration = Duration::from_secs(10);
/// How long [`openssl_s_client`] runs before it is killed.
const S_CLIENT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a command did within its deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunResult {
    /// The exit code; `-1` when the process was killed by a signal or timed out.
    pub exit_code: i32,
    /// Everything written to stdout, lossily decoded.
    pub stdout: String,
    /// Everything written to stderr, lossily decoded.
    pub stderr: String,
    /// Whether the deadline passed and the process was killed.
    pub timed_out: bool,
}

/// Runs `cmd` to completion, feeding it `stdin`, and kills it once `timeout` has passed.
///
/// stdin is closed after `stdin` is written, which is what makes `openssl s_client` hang up
/// after its exchange instead of waiting for a terminal.
///
/// The command runs in its own process group and the whole group is killed at the deadline, so
/// a shell wrapper's children cannot keep the output pipes (and this function) open.
pub fn run_bounded(mut cmd: Command, stdin: &[u8], timeout: Duration) -> RunResult {
    let program = format!("{:?}", cmd.get_program());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {program}: {e}"));

    // Each pipe gets its own thread so that a child blocked on a full pipe cannot deadlock us.
    let input = stdin.to_vec();
    let mut child_stdin = child.stdin.take();
    let writer = thread::spawn(move || {
        if let Some(pipe) = child_stdin.as_mut() {
            // The child may exit without reading its input; that is its business, not an error.
            let _ = pipe.write_all(&input);
        }
    });
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());

    let deadline = Instant::now() + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                timed_out = true;
                // The group id is the child's pid (process_group(0) above).
                let _ = Command::new("kill")
                    .args(["-s", "KILL", "--", &format!("-{}", child.id())])
                    .output();
                let _ = child.kill();
                break child
                    .wait()
                    .unwrap_or_else(|e| panic!("waiting for killed {program}: {e}"));
            }
            Err(e) => panic!("waiting for {program}: {e}"),
        }
    };
    let _ = writer.join();
    // Output is complete once the pipes close; a straggler that escaped the group kill must not
    // turn a bounded run into an unbounded one, so give up on the rest after a short grace.
    let grace = Instant::now() + Duration::from_secs(1);
    let collect = |pipe: mpsc::Receiver<Vec<u8>>| {
        let left = grace.saturating_duration_since(Instant::now());
        String::from_utf8_lossy(&pipe.recv_timeout(left).unwrap_or_default()).into_owned()
    };
    let stdout = collect(stdout);
    let mut stderr = collect(stderr);
    if timed_out {
        stderr.push_str(&format!(
            "\n[killed by the test harness after {timeout:?}]\n"
        ));
    }
    RunResult {
        exit_code: status.code().unwrap_or(-1),
        stdout,
        stderr,
        timed_out,
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        // The receiver is gone only if run_bounded stopped waiting; nothing to report then.
        let _ = tx.send(buf);
    });
    rx
}

/// What curl got back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlResult {
    /// The HTTP status of the last response; `None` when there was none (connection refused,
    /// handshake failure, timeout).
    pub status: Option<u16>,
    /// The HTTP version of the last response as curl names it (`1.1`, `2`); `None` when there
    /// was no response.
    pub http_version: Option<String>,
    /// Headers of the last response, names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The response body, lossily decoded.
    pub body: String,
    /// curl's error messages (`-sS` keeps them and nothing else).
    pub stderr: String,
    /// curl's exit code (e.g. 7 = could not connect, 35 = TLS handshake failed, 56 = receive
    /// failure, 28 = timeout); `-1` if it was killed.
    pub exit_code: i32,
}

impl CurlResult {
    /// The first value of response header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, e.g. what [`echo_upstream`](crate::echo_upstream) saw.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }
}

/// Runs the real curl with `args` appended to
/// `-q --noproxy * --max-time 10 -sS -o <tmp> -D <tmp> -w '%{http_code} %{http_version}\n'`.
///
/// `-q` ignores `~/.curlrc` and `--noproxy *` ignores `*_proxy` variables, so only the test
/// decides where a request goes. Point hostnames at 127.0.0.1 with
/// `--resolve name:port:127.0.0.1` rather than `-k`: tests never pass `--insecure` casually.
/// [`Curl`] builds the usual arguments; this takes any.
pub fn curl(args: &[&str]) -> CurlResult {
    run_curl(args, CURL_MAX_TIME)
}

/// One curl request, built from what the tests set: the URL (with `--resolve` to loopback),
/// the CA to trust, a client certificate, headers, the HTTP version, a deadline.
///
/// It is the one way the end-to-end tests call curl (with [`curl`] for argument lists built
/// elsewhere, such as a conformance scenario's). [`Curl::run`] returns status, headers and
/// body; curl's `--max-time` bounds it (10 s unless [`Curl::max_time`] says otherwise), and
/// a curl that is missing fails the test naming `make setup` (see [`tool`]).
///
/// ```no_run
/// use tlsgate_e2e::Curl;
///
/// let res = Curl::https("app.example.com", 8443, "/hello")
///     .ca("ca.crt")
///     .client_cert("client.crt", "client.key")
///     .header("x-trace: 1")
///     .http2()
///     .run();
/// assert_eq!(res.status, Some(200), "{res:?}");
/// ```
#[derive(Debug, Clone)]
pub struct Curl {
    urls: Vec<String>,
    args: Vec<String>,
    max_time: Duration,
}

impl Curl {
    /// A request to `url`, e.g. `http://127.0.0.1:9901/metrics`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            args: Vec::new(),
            max_time: CURL_MAX_TIME,
        }
    }

    /// `https://host:port<path>`, with `host:port` resolved to 127.0.0.1.
    pub fn https(host: &str, port: u16, path: &str) -> Self {
        Self::new(format!("https://{host}:{port}{path}")).resolve(host, port)
    }

    /// `--resolve host:port:127.0.0.1`.
    pub fn resolve(self, host: &str, port: u16) -> Self {
        self.arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
    }

    /// Another URL, fetched after the others on the same connection where curl can reuse it.
    /// The result's status and headers are the last response's; the body is the first's (the
    /// others are discarded).
    pub fn then_url(mut self, url: impl Into<String>) -> Self {
        self.urls.push(url.into());
        self.arg("-o").arg("/dev/null")
    }

    /// `--cacert <file>`: the only CA trusted for the server's certificate.
    pub fn ca(self, file: impl AsRef<Path>) -> Self {
        self.arg("--cacert")
            .arg(file.as_ref().display().to_string())
    }

    /// `--cert <cert> --key <key>`: the client certificate.
    pub fn client_cert(self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        self.arg("--cert")
            .arg(cert.as_ref().display().to_string())
            .arg("--key")
            .arg(key.as_ref().display().to_string())
    }

    /// [`Curl::client_cert`] when `pair` is given.
    pub fn client_cert_if<C: AsRef<Path>, K: AsRef<Path>>(self, pair: Option<(C, K)>) -> Self {
        match pair {
            Some((cert, key)) => self.client_cert(cert, key),
            None => self,
        }
    }

    /// `-H "<name>: <value>"` (or `"Name:"` to remove one curl would send).
    pub fn header(self, line: &str) -> Self {
        self.arg("-H").arg(line)
    }

    /// `--http1.1`.
    pub fn http1_1(self) -> Self {
        self.arg("--http1.1")
    }

    /// `--http2`.
    pub fn http2(self) -> Self {
        self.arg("--http2")
    }

    /// `--tls-max <version>`, e.g. `1.2`.
    pub fn tls_max(self, version: &str) -> Self {
        self.arg("--tls-max").arg(version)
    }

    /// `--interface <addr>`: the source address, e.g. `127.0.0.2`.
    pub fn interface(self, addr: &str) -> Self {
        self.arg("--interface").arg(addr)
    }

    /// `--max-time`: how long curl may take (10 s by default).
    pub fn max_time(mut self, max_time: Duration) -> Self {
        self.max_time = max_time;
        self
    }

    /// Any other curl argument, e.g. `--data-binary`.
    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Runs curl.
    pub fn run(&self) -> CurlResult {
        let args: Vec<&str> = self
            .args
            .iter()
            .chain(&self.urls)
            .map(String::as_str)
            .collect();
        run_curl(&args, self.max_time)
    }
}

fn run_curl(args: &[&str], max_time: Duration) -> CurlResult {
    let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("temp dir for curl output: {e}"));
    let body_path = dir.path().join("body");
    let headers_path = dir.path().join("headers");
    let mut cmd = Command::new(tool("curl"));
    cmd.args(["-q", "--noproxy", "*", "--max-time"])
        .arg(max_time.as_secs_f64().to_string())
        .arg("-sS")
        .arg("-o")
        .arg(&body_path)
        .arg("-D")
        .arg(&headers_path)
        .args(["-w", "%{http_code} %{http_version}\\n"])
        .args(args);
    // curl enforces --max-time itself; the outer bound only catches a curl that is stuck.
    let run = run_bounded(cmd, &[], max_time + Duration::from_secs(5));
    // One line per URL: the last one is the last response's.
    let last = run.stdout.lines().last().unwrap_or_default();
    let (code, version) = last.split_once(' ').unwrap_or((last, ""));
    let status = code.trim().parse::<u16>().ok().filter(|&s| s != 0);
    let http_version = Some(version.trim().to_owned()).filter(|v| !v.is_empty() && v != "0");
    let body = std::fs::read(&body_path).unwrap_or_default();
    let headers = std::fs::read(&headers_path).unwrap_or_default();
    CurlResult {
        status,
        http_version,
        headers: last_header_block(&String::from_utf8_lossy(&headers)),
        body: String::from_utf8_lossy(&body).into_owned(),
        stderr: run.stderr,
        exit_code: run.exit_code,
    }
}

/// The header fields of the final response in a `-D` dump, which also holds interim
/// (`100 Continue`) and redirected responses.
fn last_header_block(dump: &str) -> Vec<(String, String)> {
    let mut headers = Vec::new();
    for line in dump.lines() {
        let line = line.trim_end_matches('\r');
        if line.starts_with("HTTP/") {
            headers.clear();
        } else if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    headers
}

/// Runs `openssl s_client <args>` with `stdin` as its input, killed after 10 s.
///
/// Returns (exit code, stdout, stderr); the exit code is `-1` if it had to be killed. Pass
/// `-connect 127.0.0.1:<port>` and, to send SNI, `-servername <name>`.
pub fn openssl_s_client(args: &[&str], stdin: &[u8]) -> (i32, String, String) {
    let mut cmd = Command::new(tool("openssl"));
    cmd.arg("s_client").args(args);
    let run = run_bounded(cmd, stdin, S_CLIENT_TIMEOUT);
    (run.exit_code, run.stdout, run.stderr)
}
