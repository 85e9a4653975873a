//! `tlsgate eval` on this host: core's evaluation ([`tlsgate_core::eval`]) with the native
//! host's own chain check — the webpki verifier `tlsgate run` builds for each endpoint.

use std::sync::Arc;

use rustls::pki_types::{CertificateDer, UnixTime};
use tlsgate_core::eval::ChainVerifier;
use tlsgate_core::pem::TrustAnchors;
use tlsgate_core::revocation::Revocation;
use tlsgate_core::Policy;

use crate::server::tls_reason;

/// The endpoint's webpki client verifier (CAs and CRLs), as the handshake runs it.
#[derive(Debug)]
pub struct WebPki {
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl Default for WebPki {
    fn default() -> Self {
        Self {
            provider: crate::tls::provider(),
        }
    }
}

impl ChainVerifier for WebPki {
    fn verify(
        &self,
        authorities: &TrustAnchors,
        revocation: Option<&Revocation>,
        chain: &[CertificateDer<'static>],
        now: i64,
    ) -> Result<(), (&'static str, String)> {
        let verifier = crate::tls::client_verifier(authorities, revocation, &self.provider)
            .map_err(|(what, reason)| ("tls_error", format!("{what}: {reason}")))?;
        let Some((leaf, intermediates)) = chain.split_first() else {
            return Err(("client_certificate_required", "no certificate".into()));
        };
        let now = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            u64::try_from(now).unwrap_or(0),
        ));
        verifier
            .verify_client_cert(leaf, intermediates, now)
            .map(|_| ())
            .map_err(|e| (tls_reason(&e), e.to_string()))
    }
}

/// Loads a policy for evaluation. No keys: eval decides on certificates, it never signs.
pub fn load(
    files: &[std::path::PathBuf],
    deployment: &tlsgate_core::Deployment,
) -> Result<Policy, tlsgate_core::ConfigError> {
    let config = tlsgate_core::Config::load_files(files, tlsgate_core::KeyMode::Skip, deployment)?;
    Ok(Policy::new(config))
}
