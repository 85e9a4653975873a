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
use tlsgate_core::config::Scheme;
use tlsgate_core::Deployment;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::limits::{Limits, WATCH_INTERVAL};
use crate::metrics::{self, Metrics, ReloadLabels};
use crate::runtime::{fingerprint, Runtime};
use crate::tls;

mod accept;
mod connection;

use accept::{accept_loop, SourceLimiter};
pub use connection::tls_reason;

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
    metrics.revocation(&runtime.policy);
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
    shared.metrics.revocation(&runtime.policy);
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

#[cfg(test)]
mod tests;
