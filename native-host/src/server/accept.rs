//! Accepting: backpressure on the connection slots, each source address's share, and the PROXY
//! protocol header a trusted load balancer sends first.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, PoisonError};

use tlsgate_core::policy::NO_ENDPOINT;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::connection::connection;
use super::Shared;

pub(super) async fn accept_loop(
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
            shared.metrics.handshake(NO_ENDPOINT, "refused", reason);
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
        shared.metrics.handshake(NO_ENDPOINT, "refused", reason);
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
    shared.metrics.handshake(NO_ENDPOINT, "refused", reason);
    tracing::info!(%peer, reason, "closing: {message}");
    None
}

/// Open connections per source address, bounded by `max_connections_per_source`.
#[derive(Debug)]
pub(super) struct SourceLimiter {
    max: usize,
    open: std::sync::Mutex<HashMap<std::net::IpAddr, usize>>,
}

/// One counted connection; uncounts on drop.
#[derive(Debug)]
pub(super) struct SourceGuard {
    limiter: Arc<SourceLimiter>,
    ip: std::net::IpAddr,
}

impl SourceLimiter {
    pub(super) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: std::sync::Mutex::new(HashMap::new()),
        }
    }

    pub(super) fn acquire(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<SourceGuard> {
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
