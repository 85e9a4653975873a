//! A loaded policy, compiled for serving: core's [`Policy`] plus, per endpoint, everything the
//! data path needs prebuilt (rustls configs, the upstream dialer and pooled HTTP client).
//!
//! A `Runtime` is immutable. Reloading builds a new one and swaps it in; each connection reads
//! the current one once, when it is accepted, and keeps it to the end.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use tlsgate_core::config::{Scheme, UpstreamScheme};
use tlsgate_core::pem::Origin;
use tlsgate_core::{Config, ConfigError, Deployment, Endpoint, EndpointPolicy, KeyMode, Policy};

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
    /// What this endpoint enforces, as a digest: a reload that changes it (a CA, the strategy,
    /// a rule, the versions, the upstream) retires the endpoint's open connections. A rotated
    /// server certificate alone does not: it changes nothing a client was admitted under.
    pub digest: Vec<u8>,
    /// Cancelled when a reload replaced or removed this endpoint: its connections drain
    /// (HTTP/1 `Connection: close` after the in-flight request, HTTP/2 GOAWAY, tls:// sessions
    /// cut after the drain deadline), so nobody keeps what the new policy took away.
    pub retired: tokio_util::sync::CancellationToken,
}

impl EndpointRuntime {
    /// The endpoint as the listener knows it; a reload matches old and new by this.
    pub fn key(&self) -> (std::net::SocketAddr, String) {
        (self.endpoint.bind, self.endpoint.host.to_string())
    }
}

impl EndpointRuntime {
    /// The label of this endpoint in logs and metrics: core's, which the filter uses too.
    pub fn label(&self) -> &str {
        tlsgate_core::policy::endpoint_label(&self.endpoint)
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
    /// Whether a rule reads `conn.tls.ja4_fingerprint`: only then are ClientHellos kept.
    pub reads_ja4: bool,
}

impl Runtime {
    /// Each endpoint that staples OCSP responses, with until when its current staple may be
    /// served (0 while it has none).
    pub fn staples(&self) -> Vec<(String, i64)> {
        self.endpoints
            .iter()
            .filter_map(|e| {
                let (stapled, _) = e.server_tls.stapling.as_ref()?;
                Some((e.label().to_owned(), stapled.valid_until().unwrap_or(0)))
            })
            .collect()
    }

    /// Loads and compiles `files`. Blocking (reads files); call it off the async workers.
    pub fn load(
        files: &[PathBuf],
        deployment: &Deployment,
        limits: &Limits,
        provider: &Arc<CryptoProvider>,
    ) -> Result<Self, LoadError> {
        let config = Config::load_files(files, KeyMode::Load(&RustlsKeyCheck), deployment)?;
        for warning in &config.warnings {
            tracing::warn!("{warning}");
        }
        for note in &config.notes {
            tracing::info!("{note}");
        }
        // The directories given (a new manifest dropped in one is a change) and every file read.
        let mut watched: Vec<PathBuf> = files.iter().filter(|p| p.is_dir()).cloned().collect();
        watched.extend(config.files.iter().cloned());
        warn_of_stale_crls(&config);
        let policy = Policy::new(config);
        let mut endpoints = Vec::with_capacity(policy.endpoints().len());
        for endpoint in policy.endpoints() {
            endpoints.push(Arc::new(prepare(endpoint, limits, provider)?));
            for path in referenced_files(endpoint) {
                if !watched.contains(&path) {
                    watched.push(path);
                }
            }
        }
        let reads_ja4 = policy.endpoints().iter().any(|e| e.reads_ja4());
        Ok(Self {
            policy,
            endpoints,
            watched,
            reads_ja4,
        })
    }
}

/// A CRL that goes stale within a day is about to refuse every certificate it covers.
fn warn_of_stale_crls(config: &Config) {
    let now = crate::clock::unix_now();
    for endpoint in &config.endpoints {
        let Some(revocation) = endpoint.tls.client_auth.revocation() else {
            continue;
        };
        for list in &revocation.lists {
            let left = list.next_update - now;
            if left < 24 * 3600 {
                tracing::warn!(
                    endpoint = %tlsgate_core::policy::endpoint_label(endpoint),
                    "the CRL of {} goes stale in {}m (nextUpdate {}): after that every \
                     certificate it covers is refused until a newer CRL is in place",
                    list.issuer,
                    left / 60,
                    tlsgate_core::encoding::rfc3339(list.next_update)
                );
            }
        }
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
        digest: digest(endpoint),
        retired: tokio_util::sync::CancellationToken::new(),
    })
}

/// A digest of everything an endpoint enforces on its clients and upstream. The validated
/// configuration's `Debug` form names every field, every CA's bytes, every rule's source and
/// action, and never a private key's bytes (they are redacted). It is compared only within one
/// process, so its exact text is no contract. The endpoint's own certificate and key are left
/// out (see [`EndpointRuntime::digest`]).
fn digest(endpoint: &EndpointPolicy) -> Vec<u8> {
    let mut config: Endpoint = Endpoint::clone(endpoint);
    config.tls.certificate = None;
    config.tls.private_key = None;
    tlsgate_core::encoding::sha256(format!("{config:?}").as_bytes())
}

/// Certificate, key, CA and CRL files of an endpoint, resolved against its policy file's directory
/// (core records them as written).
fn referenced_files(endpoint: &Endpoint) -> Vec<PathBuf> {
    let mut origins: Vec<&Origin> = Vec::new();
    let tls = &endpoint.tls;
    origins.extend(tls.certificate.as_ref().map(|c| &c.origin));
    origins.extend(tls.private_key.as_ref().map(|k| &k.origin));
    if let tlsgate_core::config::ClientAuth::On {
        authorities,
        revocation,
        ..
    } = &tls.client_auth
    {
        origins.extend(authorities.origins.iter());
        if let Some(revocation) = revocation {
            origins.extend(revocation.lists.iter().map(|l| &l.origin));
        }
    }
    if let Some(up) = &endpoint.upstream.tls {
        origins.extend(up.client_certificate.as_ref().map(|c| &c.origin));
        origins.extend(up.client_key.as_ref().map(|k| &k.origin));
        if let Some(a) = &up.authorities {
            origins.extend(a.origins.iter());
        }
        origins.extend(up.pinned_certificates.iter().map(|c| &c.origin));
    }
    origins
        .into_iter()
        .filter_map(|o| match o {
            // Core records files resolved against the policy's directory.
            Origin::File(path) => Some(path.clone()),
            Origin::Inline => None,
        })
        // A rotated ticket key list takes effect without a SIGHUP, like a rotated certificate.
        .chain(tls.session_ticket_keys.iter().map(|k| k.path.clone()))
        .collect()
}

/// What a watched file held: the SHA-256 of its bytes (`None`: unreadable). Content, not
/// modification time: a rewrite within one timestamp tick, or one that keeps the size, is
/// still a change.
pub type Fingerprint = Vec<(PathBuf, Option<Vec<u8>>)>;

/// Fingerprints `paths` as they are now. Callers take it *before* loading, so a file written
/// while the load was reading it differs from the fingerprint at the next check and is loaded
/// again: what is served is never a half-written file mistaken for the finished one.
pub fn fingerprint(paths: &[PathBuf]) -> Fingerprint {
    paths
        .iter()
        .map(|p| {
            let digest = if p.is_dir() {
                // A directory's fingerprint is its list of names: files added or removed.
                std::fs::read_dir(p).ok().map(|entries| {
                    let mut names: Vec<String> = entries
                        .filter_map(Result::ok)
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    names.sort();
                    tlsgate_core::encoding::sha256(names.join("\n").as_bytes())
                })
            } else {
                std::fs::read(p)
                    .ok()
                    .map(|bytes| tlsgate_core::encoding::sha256(&bytes))
            };
            (p.clone(), digest)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use tlsgate_test_support::Authority;

    use super::*;

    /// A rotated pin or ticket key takes effect like a rotated certificate: every file the
    /// policy reads is watched.
    #[test]
    fn every_file_the_policy_reads_is_watched() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let ca = Authority::root("CA");
        ca.server(&["app.test"]).write(d, "server");
        ca.server(&["upstream.test"]).write(d, "upstream");
        ca.client("edge").write(d, "edge");
        std::fs::write(d.join("ca.crt"), ca.cert_pem()).unwrap();
        std::fs::write(d.join("ticket.key"), [1u8; 80]).unwrap();
        let policy = d.join("policy.yaml");
        std::fs::write(
            &policy,
            "endpoints:
  - url: https://app.test
    bind: 127.0.0.1:0
    upstream:
      url: https://upstream.test:9443
      tls:
        client_certificate: { certificate: edge.crt, private_key: edge.key }
        certificate_authorities: [ca.crt]
        pinned_certificates: [upstream.crt]
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
                session_ticket_keys: [ticket.key]
",
        )
        .unwrap();
        let runtime = Runtime::load(
            std::slice::from_ref(&policy),
            Deployment::none(),
            &Limits::DEFAULT,
            &crate::tls::provider(),
        )
        .unwrap();
        for file in [
            "policy.yaml",
            "server.crt",
            "server.key",
            "ca.crt",
            "ticket.key",
            "edge.crt",
            "edge.key",
            "upstream.crt",
        ] {
            let path = d.join(file);
            assert!(
                runtime.watched.iter().any(|w| w.ends_with(file)),
                "{} is not watched: {:?}",
                path.display(),
                runtime.watched
            );
        }
    }
}
