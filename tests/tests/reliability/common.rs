//! What the reliability tests share: the run's scale, the PKI and test bed per host, TLS and HTTP
//! clients, and process figures (RSS, descriptors).

use super::*;

pub(crate) const HOST: &str = "soak.test";

/// The sizes of one run: short for `make test`, long for `make soak`.
pub(crate) struct Scale {
    pub(crate) connections: usize,
    pub(crate) reload_seconds: u32,
    pub(crate) soak: Duration,
}

pub(crate) fn scale() -> Scale {
    if std::env::var("TLSGATE_SOAK").is_ok_and(|v| v == "1") {
        Scale {
            connections: 10_000,
            reload_seconds: 60,
            soak: Duration::from_secs(180),
        }
    } else {
        Scale {
            connections: 1_000,
            reload_seconds: 5,
            soak: Duration::from_secs(12),
        }
    }
}

/// The tests of this file run one at a time: each measures one edge under load, and two at
/// once on a 2-core machine would measure each other.
pub(crate) fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An edge's log without its access lines (what explains a failure under load).
pub(crate) fn not_access_lines(log: &str) -> String {
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| !l.contains("tlsgate::access") && !l.contains(" via_upstream"))
        .collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// A figure for docs/reliability.md, printed so `make soak` output can be pasted.
pub(crate) fn report(row: &str) {
    println!("RELIABILITY | {row}");
}

/// Raises this process's descriptor limit to its hard limit (the held connections are ours
/// too); children inherit it. Fails, with what to do, when the hard limit is too low.
pub(crate) fn raise_fd_limit(need: u64) {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let hard = limit.maximum.unwrap_or(u64::MAX);
    assert!(
        hard >= need,
        "the hard descriptor limit is {hard}, this test needs {need}: raise it (ulimit -Hn {need}, \
         or LimitNOFILE= for a service)"
    );
    rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(hard),
            maximum: limit.maximum,
        },
    )
    .expect("raising the soft descriptor limit to the hard one");
}

/// Resident memory of a process, in KiB (`VmRSS`).
pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Open descriptors of a process.
pub(crate) fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .count()
}

/// How many of a process's sockets are accepted connections on `port` (client connections),
/// from /proc/PID/fd and /proc/net/tcp{,6}.
pub(crate) fn client_sockets(pid: u32, port: u16) -> usize {
    let inodes: std::collections::HashSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("/proc/PID/fd")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter_map(|l| {
            let l = l.to_string_lossy().into_owned();
            Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_owned())
        })
        .collect();
    let port_hex = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|t| std::fs::read_to_string(t).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            // local_address, state (0A = LISTEN), inode
            cols.len() > 9
                && cols[1].ends_with(&port_hex)
                && cols[3] != "0A"
                && inodes.contains(cols[9])
        })
        .count()
}

/// Certificates for one https endpoint with mTLS (require-and-verify) and a trusted client.
pub(crate) struct Pki {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) ca: PathBuf,
    pub(crate) crt: PathBuf,
    pub(crate) key: PathBuf,
    pub(crate) client_crt: PathBuf,
    pub(crate) client_key: PathBuf,
    pub(crate) authority: Authority,
}

pub(crate) fn pki() -> Pki {
    let dir = tempfile::tempdir().expect("temp dir");
    let authority = Authority::root("Soak CA");
    let (ca, _) = authority.write(dir.path(), "ca");
    let (crt, key) = authority.server(&[HOST]).write(dir.path(), "server");
    let (client_crt, client_key) = authority.client("alice").write(dir.path(), "client");
    Pki {
        dir,
        ca,
        crt,
        key,
        client_crt,
        client_key,
        authority,
    }
}

/// The policy: one endpoint on `port`, `strategy` for client certificates, to `upstream`.
pub(crate) fn policy(
    p: &Pki,
    port: u16,
    upstream: &EchoUpstream,
    strategy: Verification,
) -> String {
    PolicyBuilder::new()
        .endpoint(
            Endpoint::https(HOST)
                .on_loopback(port)
                .upstream(upstream.url())
                .terminate_tls(
                    TerminateTls::files(&p.crt, &p.key)
                        .client_ca(&p.ca)
                        .verification(strategy),
                ),
        )
        .to_yaml()
}

/// An edge of `kind` with one endpoint on `port` (`strategy` for client certificates, `limits`
/// as flags) in front of an echo upstream.
pub(crate) struct Bed {
    pub(crate) p: Pki,
    pub(crate) port: u16,
    pub(crate) edge: Edge,
    /// Bind it (`_upstream`, not `..`) when destructuring: it must outlive the test.
    pub(crate) _upstream: EchoUpstream,
}

pub(crate) fn bed(kind: &str, strategy: Verification, limits: &[&str]) -> Bed {
    let p = pki();
    let upstream = echo_upstream();
    let port = free_port();
    let edge = Edge::start(
        kind,
        &p,
        port,
        &policy(&p, port, &upstream, strategy),
        limits,
    );
    Bed {
        p,
        port,
        edge,
        _upstream: upstream,
    }
}

/// The edge under test: `tlsgate run`, or Envoy with the generated bootstrap and the filter.
pub(crate) enum Edge {
    Native(Proc),
    Envoy(envoy_harness::Envoy),
}

impl Edge {
    pub(crate) fn start(kind: &str, p: &Pki, port: u16, policy: &str, limits: &[&str]) -> Edge {
        match kind {
            "native" => Edge::Native(start_gate(p.dir.path(), "gate", policy, limits)),
            "envoy" => {
                let admin = free_port();
                let config = envoy_harness::generate_with(p.dir.path(), policy, admin, limits);
                Edge::Envoy(envoy_harness::Envoy::start(&config, admin, &[port]))
            }
            other => panic!("no edge {other}"),
        }
    }

    pub(crate) fn proc(&self) -> &Proc {
        match self {
            Edge::Native(p) => p,
            Edge::Envoy(e) => &e.proc,
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.proc().id()
    }

    pub(crate) fn log(&self) -> String {
        self.proc().log()
    }
}

/// A rustls client with `p`'s CA as its only root and alice's certificate. Resumption stays
/// on, as for any real client: most of the held connections resume.
pub(crate) fn client_config(p: &Pki) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(&p.ca).expect("ca.crt"))
        .expect("adding the CA");
    let chain = vec![CertificateDer::from_pem_file(&p.client_crt).expect("client.crt")];
    let key = PrivateKeyDer::from_pem_file(&p.client_key).expect("client.key");
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .expect("client identity")
}

pub(crate) fn connector(p: &Pki) -> TlsConnector {
    TlsConnector::from(Arc::new(client_config(p)))
}

pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

/// One GET on an open HTTP/1.1 connection; Ok(status) once the whole body is read.
pub(crate) async fn get(sender: &mut Sender) -> Result<u16, String> {
    let req = http::Request::get("/")
        .header(http::header::HOST, HOST)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let res = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = res.status().as_u16();
    res.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(status)
}

/// Connects, completes the mTLS handshake and one request; returns the open connection.
pub(crate) async fn open(addr: SocketAddr, tls: TlsConnector) -> Result<Sender, String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let stream = tls
        .connect(ServerName::try_from(HOST).expect("server name"), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| format!("http/1.1: {e}"))?;
    tokio::spawn(conn);
    match get(&mut sender).await? {
        200 => Ok(sender),
        s => Err(format!("first request answered {s}")),
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// `curl https://HOST:port/` on a new connection, trusting `p`'s CA, presenting `cert` and `key`.
pub(crate) fn curl_with(p: &Pki, port: u16, cert: &Path, key: &Path) -> Curl {
    Curl::https(HOST, port, "/")
        .ca(&p.ca)
        .client_cert(cert, key)
}

/// [`curl_with`] alice's certificate.
pub(crate) fn curl_alice(p: &Pki, port: u16) -> Curl {
    curl_with(p, port, &p.client_crt, &p.client_key)
}

/// h2load's summary: (succeeded, failed, errored, timeout, responses other than 2xx).
pub(crate) fn h2load_summary(out: &str) -> (u64, u64, u64, u64, u64) {
    let num = |line: &str, word: &str| -> u64 {
        line.split(',')
            .find_map(|part| {
                let part = part.trim();
                part.strip_suffix(word)
                    .and_then(|n| n.split_whitespace().last())
                    .and_then(|n| n.parse().ok())
            })
            .unwrap_or(u64::MAX)
    };
    let requests = out
        .lines()
        .find(|l| l.starts_with("requests:"))
        .unwrap_or_else(|| panic!("no 'requests:' line in h2load's output:\n{out}"));
    let codes = out
        .lines()
        .find(|l| l.starts_with("status codes:"))
        .unwrap_or_else(|| panic!("no 'status codes:' line in h2load's output:\n{out}"));
    (
        num(requests, "succeeded"),
        num(requests, "failed"),
        num(requests, "errored"),
        num(requests, "timeout"),
        // Responses other than 2xx. Not "2xx == succeeded": a timed run stops with requests
        // whose status arrived and whose body did not, which count as 2xx and not as done.
        ["3xx", "4xx", "5xx"]
            .iter()
            .fold(0u64, |n, c| n.saturating_add(num(codes, c))),
    )
}
