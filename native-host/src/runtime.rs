//! A loaded policy, compiled for serving: core's [`Policy`] plus, per endpoint, everything the
//! data path needs prebuilt (rustls configs, the upstream dialer and pooled HTTP client).
//!
//! A `Runtime` is immutable. Reloading builds a new one and swaps it in; each connection reads
//! the current one once, when it is accepted, and keeps it to the end.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use rustls::crypto::CryptoProvider;
use tlsgate_core::config::{Scheme, UpstreamScheme};
use tlsgate_core::pem::Origin;
use tlsgate_core::{Config, ConfigError, Endpoint, EndpointPolicy, KeyMode, Policy};

use crate::keys::RustlsKeyCheck;
use crate::limits::Limits;
use crate::tls::{ServerTls, TlsSetupError};
use crate::upstream::{http_client, Dialer, HttpClient};
use crate::upstream_tls;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Tls(#[from] TlsSetupError),
}

/// One endpoint, ready to serve.
#[derive(Debug)]
pub struct EndpointRuntime {
    pub endpoint: Arc<EndpointPolicy>,
    pub server_tls: ServerTls,
    pub dialer: Dialer,
    /// For https endpoints.
    pub http: Option<HttpClient>,
    /// `http` or `https`, for the upstream request URI.
    pub upstream_scheme: &'static str,
    /// Requests in flight to the upstream (`max_upstream_requests`).
    pub upstream_slots: Arc<tokio::sync::Semaphore>,
}

impl EndpointRuntime {
    /// The label of this endpoint in logs and metrics.
    pub fn label(&self) -> &str {
        &self.endpoint.url
    }
}

/// The whole loaded configuration.
#[derive(Debug)]
pub struct Runtime {
    pub policy: Policy,
    /// In the order of `policy.endpoints()`.
    pub endpoints: Vec<Arc<EndpointRuntime>>,
    /// Policy files and every certificate, key and CA file they reference.
    pub watched: Vec<PathBuf>,
}

impl Runtime {
    /// Loads and compiles `files`. Blocking (reads files); call it off the async workers.
    pub fn load(
        files: &[PathBuf],
        limits: &Limits,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, LoadError> {
        let config = Config::load_files(files, KeyMode::Load(&RustlsKeyCheck))?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        let policy = Policy::new(config);
        let mut endpoints = Vec::with_capacity(policy.endpoints().len());
        let mut watched: Vec<PathBuf> = files.to_vec();
        for endpoint in policy.endpoints() {
            endpoints.push(Arc::new(prepare(endpoint, limits, provider)?));
            for path in referenced_files(endpoint) {
                if !watched.contains(&path) {
                    watched.push(path);
                }
            }
        }
        Ok(Self {
            policy,
            endpoints,
            watched,
        })
    }
}

fn prepare(
    endpoint: &Arc<EndpointPolicy>,
    limits: &Limits,
    provider: &Arc<CryptoProvider>,
) -> Result<EndpointRuntime, TlsSetupError> {
    let server_tls = ServerTls::new(endpoint, provider)?;
    let upstream = &endpoint.upstream;
    let client_tls = match &upstream.tls {
        Some(tls) => {
            let (config, name) =
                upstream_tls::client_config(&endpoint.url, tls, upstream.protocol, provider)?;
            let config = match endpoint.scheme {
                Scheme::Https => config,
                Scheme::Tls => upstream_tls::without_alpn(&config),
            };
            Some((config, name))
        }
        None => None,
    };
    let dialer = Dialer::new(upstream, client_tls, limits.upstream_connect);
    let http =
        (endpoint.scheme == Scheme::Https).then(|| http_client(dialer.clone(), upstream.protocol));
    let upstream_scheme = match upstream.scheme {
        UpstreamScheme::Https | UpstreamScheme::Tls => "https",
        UpstreamScheme::Http | UpstreamScheme::Tcp => "http",
    };
    Ok(EndpointRuntime {
        endpoint: endpoint.clone(),
        server_tls,
        dialer,
        http,
        upstream_scheme,
        upstream_slots: Arc::new(tokio::sync::Semaphore::new(
            limits.max_upstream_requests.max(1),
        )),
    })
}

/// Certificate, key and CA files of an endpoint, resolved against its policy file's directory
/// (core records them as written).
fn referenced_files(endpoint: &Endpoint) -> Vec<PathBuf> {
    let mut origins: Vec<&Origin> = Vec::new();
    let tls = &endpoint.tls;
    origins.extend(tls.certificate.as_ref().map(|c| &c.origin));
    origins.extend(tls.private_key.as_ref().map(|k| &k.origin));
    if let tlsgate_core::config::ClientAuth::On { authorities, .. } = &tls.client_auth {
        origins.extend(authorities.origins.iter());
    }
    if let Some(up) = &endpoint.upstream.tls {
        origins.extend(up.client_certificate.as_ref().map(|c| &c.origin));
        origins.extend(up.client_key.as_ref().map(|k| &k.origin));
        if let Some(a) = &up.authorities {
            origins.extend(a.origins.iter());
        }
    }
    origins
        .into_iter()
        .filter_map(|o| match o {
            // Core records files resolved against the policy's directory.
            Origin::File(path) => Some(path.clone()),
            Origin::Inline => None,
        })
        .collect()
}

/// What a watched file looked like: modification time and length (`None`: unreadable).
pub type Fingerprint = Vec<(PathBuf, Option<(SystemTime, u64)>)>;

pub fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p)
                .ok()
                .and_then(|m| Some((m.modified().ok()?, m.len())));
            (p.clone(), meta)
        })
        .collect()
}
