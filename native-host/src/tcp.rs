//! tls endpoints: after termination, the decrypted bytes go to the upstream (TCP, or TLS with
//! tlsgate's client certificate) and back, with half-close carried through in both directions.

use std::sync::Arc;
use std::time::Instant;

use tlsgate_core::Session;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::io::{Activity, Tracked};
use crate::limits::Limits;
use crate::metrics::Metrics;
use crate::runtime::EndpointRuntime;

/// Proxies one terminated connection until both sides are done or it idles out.
pub async fn proxy<IO>(
    client_io: IO,
    endpoint: Arc<EndpointRuntime>,
    session: Session,
    client: String,
    limits: Limits,
    metrics: Arc<Metrics>,
) where
    IO: AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let facts = session.facts();
    let access = |outcome: &str, reason: &str, to_upstream: u64, to_client: u64| {
        tracing::info!(
            target: "tlsgate::access",
            endpoint = %endpoint.label(),
            sni = facts.sni.as_deref().unwrap_or("-"),
            tls = facts.version.as_str(),
            client = %client,
            verdict = "forward",
            outcome,
            reason,
            upstream = %endpoint.dialer.addr(),
            bytes_to_upstream = to_upstream,
            bytes_to_client = to_client,
            duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            "tcp session"
        );
    };
    let dialer = match crate::proxy_protocol::upstream_header(&endpoint.endpoint.upstream, facts) {
        Some(header) => endpoint.dialer.with_proxy_header(header),
        None => endpoint.dialer.clone(),
    };
    let mut upstream = match dialer.connect().await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::warn!(endpoint = %endpoint.label(), reason = e.as_str(), "upstream error: {e}");
            metrics.upstream_error(endpoint.label(), e.as_str());
            access("upstream_error", e.as_str(), 0, 0);
            return;
        }
    };
    let activity = Activity::new();
    let mut client_io = Tracked::new(client_io, activity.clone());
    tokio::select! {
        result = tokio::io::copy_bidirectional(&mut client_io, &mut upstream) => match result {
            Ok((up, down)) => access("closed", "-", up, down),
            Err(e) => {
                tracing::debug!(endpoint = %endpoint.label(), "tcp session ended: {e}");
                access("error", "io_error", 0, 0);
            }
        },
        _ = activity.idle(limits.idle) => access("idle_timeout", "idle_timeout", 0, 0),
        // A reload changed this endpoint: bytes have no request boundary to stop at, so the
        // session gets the drain deadline to finish, then is cut.
        _ = async {
            endpoint.retired.cancelled().await;
            tokio::time::sleep(limits.drain).await;
        } => access("retired", "endpoint_changed", 0, 0),
    }
}
