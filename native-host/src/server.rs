//! `tlsgate run`: listeners, the per-connection pipeline, reloads and graceful shutdown.
//!
//! ```text
//! accept (bounded by --max-connections) ─▶ ClientHello (LazyConfigAcceptor) ─▶ route by SNI
//!   ─▶ handshake with the endpoint's prebuilt ServerConfig ─▶ TlsFacts ─▶ on_tcp_connect
//!   ─▶ https: hyper (HTTP/1.1 + HTTP/2) ─▶ on_http_request ─▶ pooled upstream client
//!   ─▶ tls:   bytes both ways to the upstream
//! ```
//!
//! A short deadline covers the ClientHello, a longer one the whole handshake, and one source
//! address holds at most `max_connections_per_source` slots. The current [`Runtime`] is read
//! once per connection, so a reload changes what new connections get and nothing else.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, PoisonError, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::server::Acceptor;
use tlsgate_core::config::{ClientAuth, Scheme};
use tlsgate_core::facts::escape_control;
use tlsgate_core::facts::ClientCert;
use tlsgate_core::{Deployment, Session, Verdict};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::{LazyConfigAcceptor, StartHandshake};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::HttpConnection;
use crate::io::HelloTap;
use crate::limits::{Limits, WATCH_INTERVAL};
use crate::metrics::{self, Metrics, ReloadLabels, UpstreamErrorLabels, VerdictLabels};
use crate::runtime::{fingerprint, Runtime};
use crate::upstream::tls_error;
use crate::{tcp, tls};
use tlsgate_core::ocsp::Outcome;

/// What `tlsgate run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub files: Vec<PathBuf>,
    /// `--listen` / `--resolve`: manifest ports and Service names mapped to local addresses.
    pub deployment: Deployment,
    pub limits: Limits,
    pub metrics: Option<SocketAddr>,
}

/// State shared by every task of the process.
#[derive(Debug)]
struct Shared {
    state: RwLock<Arc<Runtime>>,
    files: Vec<PathBuf>,
    deployment: Deployment,
    limits: Limits,
    provider: Arc<CryptoProvider>,
    metrics: Arc<Metrics>,
    /// `mutual_tls_ocsp`'s client and answer cache.
    ocsp: crate::ocsp::Ocsp,
    permits: Arc<Semaphore>,
    sources: Arc<SourceLimiter>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Shared {
    fn current(&self) -> Arc<Runtime> {
        self.state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn replace(&self, runtime: Runtime) {
        *self.state.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(runtime);
    }
}

/// Runs until SIGTERM or SIGINT, then drains. An error means the first configuration could not
/// be loaded or an address could not be bound.
pub async fn run(options: RunOptions) -> anyhow::Result<()> {
    let provider = tls::provider();
    let runtime = load(
        &options.files,
        &options.deployment,
        options.limits,
        &provider,
    )
    .await?;
    let metrics = Arc::new(Metrics::default());
    metrics.revocation(&runtime);
    let shared = Arc::new(Shared {
        state: RwLock::new(Arc::new(runtime)),
        files: options.files.clone(),
        deployment: options.deployment.clone(),
        limits: options.limits,
        provider,
        metrics: metrics.clone(),
        ocsp: crate::ocsp::Ocsp::default(),
        permits: Arc::new(Semaphore::new(options.limits.max_connections.max(1))),
        sources: Arc::new(SourceLimiter::new(
            options.limits.max_connections_per_source,
        )),
        tracker: TaskTracker::new(),
        shutdown: CancellationToken::new(),
    });

    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;

    if let Some(addr) = options.metrics {
        let listener = metrics::bind(addr)
            .await
            .map_err(|e| anyhow::anyhow!("cannot serve metrics on {addr}: {e}"))?;
        let local = listener.local_addr()?;
        tracing::info!("metrics on http://{local}/metrics");
        // The staples' gauge reads the configuration served at each scrape (weakly: the
        // metrics server does not keep the host alive).
        let served = Arc::downgrade(&shared);
        let registry = metrics.registry(move || {
            served
                .upgrade()
                .map(|shared| shared.current().staples())
                .unwrap_or_default()
        });
        tokio::spawn(metrics::serve(
            listener,
            Arc::new(registry),
            shared.shutdown.clone(),
        ));
    }

    let mut listeners: HashMap<SocketAddr, CancellationToken> = HashMap::new();
    let binds: Vec<(SocketAddr, Scheme)> = shared
        .current()
        .policy
        .listeners()
        .iter()
        .map(|l| (l.bind, l.scheme))
        .collect();
    for (bind, _) in &binds {
        let listener = TcpListener::bind(bind)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {bind}: {e}"))?;
        listeners.insert(*bind, spawn_listener(&shared, *bind, listener)?);
    }
    tracing::info!(
        "serving {} endpoint(s) on {} listener(s)",
        shared.current().endpoints.len(),
        listeners.len()
    );

    let mut seen = fingerprint(&shared.current().watched);
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM: no longer accepting; draining"); break; }
            _ = int.recv() => { tracing::info!("SIGINT: no longer accepting; draining"); break; }
            // The fingerprint is taken before loading: a file that changes while it is read
            // differs at the next check and is loaded again (see `fingerprint`).
            _ = hup.recv() => {
                let before = fingerprint(&shared.current().watched);
                reload(&shared, &mut listeners, "SIGHUP").await;
                seen = before;
            }
            _ = tick.tick() => {
                let now = fingerprint(&shared.current().watched);
                if now != seen {
                    reload(&shared, &mut listeners, "a referenced file changed").await;
                    seen = now;
                }
            }
        }
    }

    shared.shutdown.cancel();
    shared.tracker.close();
    let open = shared.tracker.len();
    if tokio::time::timeout(shared.limits.drain, shared.tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connection(s) still open after {:?} of draining; closing them",
            shared.tracker.len(),
            shared.limits.drain
        );
    } else {
        tracing::info!("drained {open} connection(s); exiting");
    }
    Ok(())
}

fn signal(kind: tokio::signal::unix::SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind)
        .map_err(|e| anyhow::anyhow!("cannot install a signal handler: {e}"))
}

async fn load(
    files: &[PathBuf],
    deployment: &Deployment,
    limits: Limits,
    provider: &Arc<CryptoProvider>,
) -> anyhow::Result<Runtime> {
    let files = files.to_vec();
    let deployment = deployment.clone();
    let provider = provider.clone();
    let runtime =
        tokio::task::spawn_blocking(move || Runtime::load(&files, &deployment, &limits, &provider))
            .await
            .map_err(|e| anyhow::anyhow!("loading the configuration: {e}"))??;
    // Staples for certificates that name a responder; each task ends with its configuration.
    for endpoint in &runtime.endpoints {
        if let Some((stapled, stapling)) = &endpoint.server_tls.stapling {
            tokio::spawn(crate::stapling::keep_fresh(
                Arc::downgrade(stapled),
                stapling.clone(),
                endpoint.label().to_owned(),
            ));
        }
    }
    Ok(runtime)
}

/// Loads the files again. On success new connections get the new runtime (and listeners are
/// added or removed to match); on failure the error is logged and nothing changes.
async fn reload(
    shared: &Arc<Shared>,
    listeners: &mut HashMap<SocketAddr, CancellationToken>,
    trigger: &str,
) {
    let count = |outcome: &'static str| {
        shared
            .metrics
            .reloads
            .get_or_create(&ReloadLabels { outcome })
            .inc();
    };
    let runtime = match load(
        &shared.files,
        &shared.deployment,
        shared.limits,
        &shared.provider,
    )
    .await
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!(
                "reload ({trigger}) failed; still serving the previous configuration: {e}"
            );
            count("failed");
            return;
        }
    };
    let wanted: Vec<SocketAddr> = runtime.policy.listeners().iter().map(|l| l.bind).collect();
    let mut added = Vec::new();
    for bind in wanted.iter().filter(|b| !listeners.contains_key(b)) {
        match TcpListener::bind(bind).await {
            Ok(listener) => added.push((*bind, listener)),
            Err(e) => {
                tracing::error!(
                    "reload ({trigger}) failed: cannot listen on {bind}: {e}; still serving \
                     the previous configuration"
                );
                count("failed");
                return;
            }
        }
    }
    let endpoints = runtime.endpoints.len();
    let previous = shared.current();
    let mut retired = 0;
    for old in &previous.endpoints {
        let unchanged = runtime
            .endpoints
            .iter()
            .any(|new| new.key() == old.key() && new.digest == old.digest);
        if !unchanged {
            old.retired.cancel();
            retired += 1;
        }
    }
    shared.metrics.revocation(&runtime);
    shared.replace(runtime);
    if retired > 0 {
        tracing::info!(
            "reload ({trigger}): draining open connections of {retired} changed or removed endpoint(s)"
        );
    }
    for (bind, listener) in added {
        match spawn_listener(shared, bind, listener) {
            Ok(stop) => {
                listeners.insert(bind, stop);
            }
            Err(e) => tracing::error!("listening on {bind}: {e}"),
        }
    }
    listeners.retain(|bind, stop| {
        let keep = wanted.contains(bind);
        if !keep {
            stop.cancel();
            tracing::info!("stopped listening on {bind}");
        }
        keep
    });
    count("ok");
    tracing::info!("reloaded configuration ({trigger}): {endpoints} endpoint(s)");
}

fn spawn_listener(
    shared: &Arc<Shared>,
    bind: SocketAddr,
    listener: TcpListener,
) -> io::Result<CancellationToken> {
    let local = listener.local_addr()?;
    tracing::info!("listening on {local}");
    let stop = shared.shutdown.child_token();
    tokio::spawn(accept_loop(shared.clone(), bind, listener, stop.clone()));
    Ok(stop)
}

async fn accept_loop(
    shared: Arc<Shared>,
    bind: SocketAddr,
    listener: TcpListener,
    stop: CancellationToken,
) {
    loop {
        // Backpressure: while every permit is taken, connections wait in the accept queue.
        let permit = tokio::select! {
            _ = stop.cancelled() => return,
            permit = shared.permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors: wait rather than spin.
                    tracing::warn!("accept on {bind} failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let accepted = tokio::time::Instant::now();
        let runtime = shared.current();
        let proxy_protocol = runtime
            .policy
            .listeners()
            .iter()
            .find(|l| l.bind == bind)
            .and_then(|l| l.proxy_protocol.as_ref());
        // A PROXY protocol listener believes a header from its load balancers only: anyone
        // else is closed before a byte is read, so no client can claim another's address.
        if proxy_protocol.is_some_and(|pp| !pp.trusts(peer.ip())) {
            let reason = "proxy_protocol_untrusted_source";
            shared.metrics.handshake("-", "refused", reason);
            tracing::info!(%peer, reason, "closing: {bind} accepts connections (with a PROXY protocol header) from its trusted_sources only");
            continue;
        }
        let _ = stream.set_nodelay(true);
        let task_shared = shared.clone();
        if proxy_protocol.is_none() {
            // One address may not take every slot: past its share, close at once (the permit
            // goes back before the next accept).
            let Some(source) = over_source_limit(&shared, peer) else {
                continue;
            };
            shared.tracker.spawn(connection(
                task_shared,
                runtime,
                bind,
                stream,
                (peer, None),
                accepted,
                (permit, source),
            ));
            continue;
        }
        shared.tracker.spawn(async move {
            let mut stream = stream;
            let Some((peer, local)) = proxied(&task_shared, &mut stream, peer, accepted).await
            else {
                return;
            };
            // The share is the client's, not the load balancer's.
            let Some(source) = over_source_limit(&task_shared, peer) else {
                return;
            };
            connection(
                task_shared,
                runtime,
                bind,
                stream,
                (peer, local),
                accepted,
                (permit, source),
            )
            .await;
        });
    }
}

/// Counts a connection from `peer` against its address's share; `None` (logged and counted)
/// when the address already holds its share.
fn over_source_limit(shared: &Arc<Shared>, peer: SocketAddr) -> Option<SourceGuard> {
    let source = shared.sources.acquire(peer.ip());
    if source.is_none() {
        let reason = "source_connection_limit";
        shared.metrics.handshake("-", "refused", reason);
        tracing::info!(%peer, reason, "closing: too many connections from this address");
    }
    source
}

/// Reads the PROXY protocol header of a connection from a trusted load balancer, within the
/// ClientHello deadline: the client's address and the one it connected to, or the socket's
/// own for a header that names none (a balancer's health check). `None` (logged and counted):
/// no valid header in time; the connection is closed.
async fn proxied(
    shared: &Shared,
    stream: &mut TcpStream,
    peer: SocketAddr,
    accepted: tokio::time::Instant,
) -> Option<(SocketAddr, Option<SocketAddr>)> {
    let deadline = accepted + shared.limits.client_hello.min(shared.limits.handshake);
    let read = tokio::time::timeout_at(deadline, crate::proxy_protocol::read_header(stream)).await;
    let error = match read {
        Ok(Ok(header)) => {
            return Some(match header.addresses {
                Some(a) => (a.source, Some(a.destination)),
                None => (peer, None),
            })
        }
        Ok(Err(e)) => (e.as_str(), e.to_string()),
        Err(_) => (
            "proxy_protocol_timeout",
            format!(
                "no PROXY protocol header within {:?}",
                shared.limits.client_hello
            ),
        ),
    };
    let (reason, message) = error;
    shared.metrics.handshake("-", "refused", reason);
    tracing::info!(%peer, reason, "closing: {message}");
    None
}

/// Open connections per source address, bounded by `max_connections_per_source`.
#[derive(Debug)]
struct SourceLimiter {
    max: usize,
    open: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// One counted connection; uncounts on drop.
#[derive(Debug)]
struct SourceGuard {
    limiter: Arc<SourceLimiter>,
    ip: std::net::IpAddr,
}

impl SourceLimiter {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: std::sync::Mutex::new(HashMap::new()),
        }
    }

    fn acquire(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<SourceGuard> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(SourceGuard {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for SourceGuard {
    fn drop(&mut self) {
        let mut open = self
            .limiter
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// Counts an open connection in the gauge for as long as it lives.
struct ActiveGuard(Arc<Metrics>);

impl ActiveGuard {
    fn new(metrics: &Arc<Metrics>) -> Self {
        metrics.active_connections.inc();
        Self(metrics.clone())
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active_connections.dec();
    }
}

/// A fatal `unrecognized_name` alert as a TLS record: rustls has no API to refuse a ClientHello
/// once it has been read, and a clear alert beats a bare reset.
const UNRECOGNIZED_NAME_ALERT: [u8; 7] = [0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x70];

/// One connection from accept to close. `addresses` are the client's and, from a PROXY
/// protocol header, the address it connected to (else the socket's own).
async fn connection(
    shared: Arc<Shared>,
    runtime: Arc<Runtime>,
    bind: SocketAddr,
    stream: TcpStream,
    addresses: (SocketAddr, Option<SocketAddr>),
    accepted: tokio::time::Instant,
    (permit, source): (OwnedSemaphorePermit, SourceGuard),
) {
    let active = ActiveGuard::new(&shared.metrics);
    let limits = shared.limits;
    let metrics = &shared.metrics;
    let (peer, local) = addresses;
    let deadline = accepted + limits.handshake;
    // A socket that says nothing holds a slot for the (short) ClientHello deadline only.
    let hello_deadline = accepted + limits.client_hello.min(limits.handshake);

    let acceptor = LazyConfigAcceptor::new(
        Acceptor::default(),
        HelloTap::new(stream, runtime.reads_ja4),
    );
    let (mut start, hello) = match tokio::time::timeout_at(hello_deadline, acceptor).await {
        Ok(Ok(start)) => {
            let (io, hello) = start.io.into_parts();
            (StartHandshake::from_parts(start.accepted, io), hello)
        }
        Ok(Err(e)) => {
            let reason = handshake_reason(&e);
            tracing::info!(%peer, reason, "handshake failed before ClientHello: {e}");
            metrics.handshake("-", "failed", reason);
            return;
        }
        Err(_) => {
            tracing::info!(%peer, reason = "client_hello_timeout", "no ClientHello within {:?}; closing", limits.client_hello);
            metrics.handshake("-", "failed", "client_hello_timeout");
            return;
        }
    };
    let sni = start
        .client_hello()
        .server_name()
        .map(tlsgate_core::sni::normalize);
    let routed = runtime
        .policy
        .listeners()
        .iter()
        .find(|l| l.bind == bind)
        .and_then(|l| l.route(sni.as_deref()))
        .and_then(|i| runtime.endpoints.get(i));
    let Some(endpoint) = routed else {
        tracing::info!(
            %peer,
            sni = sni.as_deref().unwrap_or("-"),
            reason = "unknown_server_name",
            "handshake refused: no endpoint on {bind} serves this server name"
        );
        metrics.handshake("-", "refused", "unknown_server_name");
        let _ = tokio::time::timeout_at(deadline, async {
            let _ = start.io.write_all(&UNRECOGNIZED_NAME_ALERT).await;
            let _ = start.io.shutdown().await;
        })
        .await;
        return;
    };
    let endpoint = endpoint.clone();
    let handshake = start
        .into_stream(endpoint.server_tls.config.clone())
        .into_fallible();
    let tls = match tokio::time::timeout_at(deadline, handshake).await {
        Ok(Ok(tls)) => tls,
        Ok(Err((e, mut io))) => {
            let reason = handshake_reason(&e);
            tracing::info!(
                %peer,
                endpoint = %endpoint.label(),
                sni = sni.as_deref().unwrap_or("-"),
                reason,
                "handshake failed: {e}"
            );
            metrics.handshake(endpoint.label(), "failed", reason);
            // rustls has queued and written its alert; make sure the client can read it.
            linger(&mut io).await;
            return;
        }
        Err(_) => {
            tracing::info!(
                %peer,
                endpoint = %endpoint.label(),
                reason = "handshake_timeout",
                "handshake not finished within {:?}; closing",
                limits.handshake
            );
            metrics.handshake(endpoint.label(), "failed", "handshake_timeout");
            return;
        }
    };
    metrics.handshake(endpoint.label(), "ok", "-");

    let local = local.unwrap_or_else(|| tls.get_ref().0.local_addr().unwrap_or(bind));
    // conn.ts.start: the wall-clock moment of the accept (`accepted` is monotonic).
    let now = std::time::SystemTime::now();
    let started = now.checked_sub(accepted.elapsed()).unwrap_or(now);
    let facts = match endpoint
        .server_tls
        .facts(tls.get_ref().1, (peer, local), started)
    {
        Ok(facts) => facts,
        Err(e) => {
            tracing::info!(
                %peer,
                endpoint = %endpoint.label(),
                reason = "client_certificate_unreadable",
                "connection refused: {e}"
            );
            metrics
                .connections
                .get_or_create(&VerdictLabels {
                    endpoint: endpoint.label().to_owned(),
                    verdict: "deny",
                    reason: "client_certificate_unreadable",
                })
                .inc();
            let mut tls = tls;
            let _ = tokio::time::timeout(LINGER, tls.shutdown()).await;
            linger(tls.get_mut().0).await;
            return;
        }
    };
    let mut facts = facts;
    if endpoint.endpoint.reads_ja4() {
        facts.ja4 = tlsgate_core::ja4::from_records(&hello).unwrap_or_default();
    }
    drop(hello);
    if let ClientAuth::On {
        authorities,
        ocsp: Some(check),
        ..
    } = &endpoint.endpoint.tls.client_auth
    {
        let presented = std::mem::replace(&mut facts.client_cert, ClientCert::Absent);
        let chain = tls.get_ref().1.peer_certificates().unwrap_or_default();
        let (cert, outcome) = shared
            .ocsp
            .judge(check, presented, chain, &authorities.certs)
            .await;
        facts.client_cert = cert;
        if let Some(outcome) = outcome {
            let reason = outcome.reason();
            metrics
                .ocsp_checks
                .get_or_create(&UpstreamErrorLabels {
                    endpoint: endpoint.label().to_owned(),
                    reason,
                })
                .inc();
            if let Outcome::Unavailable { reason, detail } = &outcome {
                let mode = check.mode.as_str();
                tracing::warn!(%peer, endpoint = %endpoint.label(), reason, mode, "no valid OCSP answer for the client certificate: {detail}");
            }
        }
    }
    let client = facts.client_cert.log_label();
    let session = Session::new(endpoint.endpoint.clone(), facts);
    let count = |verdict: &'static str, reason: &'static str| {
        metrics
            .connections
            .get_or_create(&VerdictLabels {
                endpoint: endpoint.label().to_owned(),
                verdict,
                reason,
            })
            .inc();
    };
    let (verdict, detail, logged) = session.on_tcp_connect_logged();
    let label = verdict.label();
    let denied = match verdict {
        Verdict::Deny(reason) => Some(reason),
        Verdict::Continue => None,
    };
    // A refused connection always has its line; an admitted one when on_tcp_connect's `log`
    // actions ran (its requests have their own lines).
    if denied.is_some() || logged.is_some() {
        let facts = session.facts();
        tracing::info!(
            target: "tlsgate::access",
            endpoint = %endpoint.label(),
            %peer,
            sni = facts.sni.as_deref().unwrap_or("-"),
            tls = facts.version.as_str(),
            client = %client,
            // core's word for it, as the filter's metrics and logs use
            verdict = label,
            reason = %denied.as_ref().map_or_else(|| "-".to_owned(), ToString::to_string),
            detail = %detail.as_deref().map_or_else(|| "-".to_owned(), escape_control),
            log = %logged.as_deref().unwrap_or("-"),
            "{}",
            if denied.is_some() { "connection denied" } else { "connection" }
        );
    }
    if let Some(reason) = denied {
        count("deny", reason.as_str());
        let mut tls = tls;
        let _ = tokio::time::timeout(LINGER, tls.shutdown()).await;
        linger(tls.get_mut().0).await;
        return;
    }
    count(Verdict::Continue.label(), "-");

    // The connection goes on in a task of its own, which owns its slot, its share of the
    // address and its gauge: this one ends, and with it everything the handshake needed (the
    // acceptor, rustls' StartHandshake, the slots the compiler keeps for them), which would
    // otherwise stay reserved in an idle connection's state machine for its whole life
    // (docs/performance.md, "Where an idle connection's memory goes").
    let held = (permit, source, active);
    match endpoint.endpoint.scheme {
        Scheme::Https => {
            let conn = Arc::new(HttpConnection::new(
                endpoint,
                session,
                peer,
                limits,
                shared.metrics.clone(),
                client,
            ));
            let http2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            let shutdown = shared.shutdown.clone();
            shared.tracker.spawn(async move {
                let _held = held;
                conn.serve(tls, http2, shutdown).await;
            });
        }
        Scheme::Tls => {
            let metrics = shared.metrics.clone();
            shared.tracker.spawn(async move {
                let _held = held;
                tcp::proxy(tls, endpoint, session, client, limits, metrics).await;
            });
        }
    }
}

/// How long a refused connection is drained before it is dropped.
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Closes a refused connection so the client reads the alert (or close_notify) we sent.
///
/// In TLS 1.3 a client certificate is judged after the client has finished its handshake, so
/// the client is usually already sending its request. Dropping a socket with unread data makes
/// the kernel answer with a reset, and a reset can destroy the alert before the client reads
/// it: the client then sees "connection reset" instead of "certificate required". Sending FIN
/// and reading (and discarding) what the client still sends, for at most [`LINGER`] and 64 KiB,
/// lets the alert arrive intact. It costs a timer, not a thread.
async fn linger(io: &mut TcpStream) {
    use tokio::io::AsyncReadExt;
    let _ = io.shutdown().await;
    let _ = tokio::time::timeout(LINGER, async {
        let mut buf = [0u8; 4096];
        let mut drained = 0usize;
        while drained < 64 * 1024 {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    })
    .await;
}

/// A stable label for why a handshake failed.
fn handshake_reason(error: &io::Error) -> &'static str {
    match tls_error(error) {
        Some(e) => tls_reason(e),
        None if error.kind() == io::ErrorKind::UnexpectedEof => "eof",
        None => "io_error",
    }
}

/// A stable label for a TLS error (`client_certificate_revoked`), as logs, metrics and
/// `tlsgate eval` spell it.
pub fn tls_reason(error: &rustls::Error) -> &'static str {
    use rustls::CertificateError as C;
    match error {
        rustls::Error::PeerIncompatible(_) => "peer_incompatible",
        rustls::Error::NoCertificatesPresented => "client_certificate_required",
        rustls::Error::InvalidCertificate(c) => match c {
            C::Expired | C::ExpiredContext { .. } => "client_certificate_expired",
            C::NotValidYet | C::NotValidYetContext { .. } => "client_certificate_not_yet_valid",
            C::UnknownIssuer => "client_certificate_untrusted",
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => "client_certificate_wrong_usage",
            C::BadSignature => "client_certificate_bad_signature",
            C::Revoked => "client_certificate_revoked",
            C::UnknownRevocationStatus
            | C::ExpiredRevocationList
            | C::ExpiredRevocationListContext { .. } => "client_certificate_revocation_unknown",
            _ => "client_certificate_invalid",
        },
        rustls::Error::AlertReceived(_) => "alert_received",
        rustls::Error::InvalidMessage(_) => "invalid_message",
        _ => "tls_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_address_gets_its_share_and_gives_it_back() {
        let limiter = Arc::new(SourceLimiter::new(2));
        let a: std::net::IpAddr = [127, 0, 0, 2].into();
        let b: std::net::IpAddr = [127, 0, 0, 3].into();
        let first = limiter.acquire(a).expect("first");
        let _second = limiter.acquire(a).expect("second");
        assert!(
            limiter.acquire(a).is_none(),
            "a third from the same address"
        );
        assert!(
            limiter.acquire(b).is_some(),
            "another address is unaffected"
        );
        drop(first);
        assert!(limiter.acquire(a).is_some(), "a slot came back");
    }
}
