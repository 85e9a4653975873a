//! Prometheus metrics (`--metrics ADDR`, text format at `/metrics`).
//!
//! Label values are bounded: endpoints come from the policy, outcomes and reasons are the
//! stable `as_str` labels of core and of this host, never client-supplied text. The verdict
//! counters (`policy::Counter`) and every endpoint label are core's: the filter counts under
//! the same names, and Envoy's `/stats/prometheus` prints the same lines.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::TypedMetric;
use prometheus_client::registry::Registry;
use tlsgate_core::policy::{endpoint_label, Counter as Verdicts};
use tlsgate_core::Policy;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HandshakeLabels {
    pub endpoint: String,
    pub outcome: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerdictLabels {
    pub endpoint: String,
    pub verdict: &'static str,
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub endpoint: String,
    pub reason: &'static str,
}

/// Every metric the native host exports.
#[derive(Debug, Default)]
pub struct Metrics {
    pub handshakes: Family<HandshakeLabels, Counter>,
    pub connections: Family<VerdictLabels, Counter>,
    pub requests: Family<VerdictLabels, Counter>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub active_connections: Gauge,
    pub reloads: Family<ReloadLabels, Counter>,
    /// Each client-certificate CRL's nextUpdate, so an alert can fire before one goes stale
    /// (past it, every certificate the CRL covers is refused).
    pub crl_next_update: Family<CrlLabels, Gauge>,
    /// `mutual_tls_ocsp` answers by endpoint and outcome (`good`, `revoked`, or why there was
    /// no valid answer: `ocsp_unavailable`, `ocsp_timeout`, `ocsp_invalid_response`,
    /// `ocsp_unknown_certificate`).
    pub ocsp_checks: Family<UpstreamErrorLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CrlLabels {
    pub endpoint: String,
    pub issuer: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    pub outcome: &'static str,
}

impl Metrics {
    /// Every metric, for `/metrics`. `staples` is read at each scrape from the configuration
    /// served at that moment: each endpoint that staples (its label, and until when its current
    /// staple may be served, 0 while it has none).
    pub fn registry(
        self: &Arc<Self>,
        staples: impl Fn() -> Vec<(String, i64)> + Send + Sync + 'static,
    ) -> Registry {
        let mut registry = Registry::with_prefix("tlsgate");
        registry.register_collector(Box::new(Staples(Box::new(staples))));
        registry.register(
            "tls_handshakes",
            "TLS handshakes by endpoint, outcome and reason",
            self.handshakes.clone(),
        );
        registry.register(
            Verdicts::Connections.name(),
            Verdicts::Connections.help(),
            self.connections.clone(),
        );
        registry.register(
            Verdicts::HttpRequests.name(),
            Verdicts::HttpRequests.help(),
            self.requests.clone(),
        );
        registry.register(
            "upstream_errors",
            "Failures reaching or talking to the upstream",
            self.upstream_errors.clone(),
        );
        registry.register(
            "active_connections",
            "Client connections open now",
            self.active_connections.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by outcome",
            self.reloads.clone(),
        );
        registry.register(
            Verdicts::ClientOcspChecks.name(),
            Verdicts::ClientOcspChecks.help(),
            self.ocsp_checks.clone(),
        );
        registry.register(
            "client_crl_next_update_timestamp_seconds",
            "nextUpdate of each client-certificate CRL in use, seconds since the epoch",
            self.crl_next_update.clone(),
        );
        registry
    }

    /// The CRLs of the policy now served (the caller passes the runtime's policy).
    pub fn revocation(&self, policy: &Policy) {
        self.crl_next_update.clear();
        for endpoint in policy.endpoints() {
            let Some(revocation) = endpoint.tls.client_auth.revocation() else {
                continue;
            };
            for list in &revocation.lists {
                self.crl_next_update
                    .get_or_create(&CrlLabels {
                        endpoint: endpoint_label(endpoint).to_owned(),
                        issuer: list.issuer.clone(),
                    })
                    .set(list.next_update);
            }
        }
    }

    pub fn handshake(&self, endpoint: &str, outcome: &'static str, reason: &'static str) {
        self.handshakes
            .get_or_create(&HandshakeLabels {
                endpoint: endpoint.to_owned(),
                outcome,
                reason,
            })
            .inc();
    }

    pub fn upstream_error(&self, endpoint: &str, reason: &'static str) {
        self.upstream_errors
            .get_or_create(&UpstreamErrorLabels {
                endpoint: endpoint.to_owned(),
                reason,
            })
            .inc();
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndpointLabels {
    endpoint: String,
}

/// `tlsgate_ocsp_staple_next_update_timestamp_seconds{endpoint}`, read at each scrape: the
/// background task that keeps a staple fresh changes it at its own pace, and a reload changes
/// which endpoints staple at all, so the value comes from the state a handshake would see.
struct Staples(Box<dyn Fn() -> Vec<(String, i64)> + Send + Sync>);

impl std::fmt::Debug for Staples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Staples")
    }
}

impl Collector for Staples {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let staples = (self.0)();
        if staples.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "ocsp_staple_next_update_timestamp_seconds",
            "Until when each endpoint's stapled OCSP response may be served (its nextUpdate), \
             seconds since the epoch; 0 while the endpoint has no staple",
            None,
            ConstGauge::<i64>::TYPE,
        )?;
        for (endpoint, until) in staples {
            ConstGauge::new(until).encode(family.encode_family(&EndpointLabels { endpoint })?)?;
        }
        Ok(())
    }
}

/// Serves `/metrics` on `listener` until `stop` is cancelled.
pub async fn serve(listener: TcpListener, registry: Arc<Registry>, stop: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Usually out of file descriptors: wait rather than spin (as the edge's
                    // own listeners do).
                    tracing::warn!("metrics listener: accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let registry = registry.clone();
                async move { Ok::<_, Infallible>(answer(&req, &registry)) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            // A scraper that hangs up early is not worth a log line.
            let _ = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                builder.serve_connection(TokioIo::new(stream), service),
            )
            .await;
        });
    }
}

fn answer(req: &Request<Incoming>, registry: &Registry) -> Response<Full<Bytes>> {
    let mut builder = Response::builder();
    if req.uri().path() != "/metrics" {
        builder = builder.status(StatusCode::NOT_FOUND);
        return builder
            .body(Full::new(Bytes::from_static(b"see /metrics\n")))
            .unwrap_or_default();
    }
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, registry) {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Full::new(Bytes::from(format!("encoding metrics: {e}\n"))))
            .unwrap_or_default();
    }
    builder
        .header(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )
        .body(Full::new(Bytes::from(text)))
        .unwrap_or_default()
}

/// Binds the metrics address.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
