//! OCSP stapling of tlsgate's own certificates: when an endpoint's certificate names an OCSP
//! responder (Authority Information Access) and its chain holds the issuer, a background task
//! fetches the certificate's status, checks it with core's [`tlsgate_core::ocsp::check`], and
//! staples it to every handshake until shortly before its `nextUpdate`.
//!
//! A handshake never waits: it gets whatever staple is current, or none. Only a checked `good`
//! answer is stapled; a staple past its `nextUpdate` is taken off even if no new one came.

use std::sync::{Arc, PoisonError, RwLock, Weak};
use std::time::Duration;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tlsgate_core::ocsp::{self, CertId, Status};

use crate::clock::unix_now;
use crate::keys::RustlsKeyCheck;

/// Retry after a failed fetch, and the shortest refresh interval.
const RETRY: Duration = Duration::from_secs(60);
/// The longest wait between refreshes.
const LONGEST: Duration = Duration::from_secs(12 * 3600);
/// How long a fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The certificate an endpoint serves, with the current staple (if any).
#[derive(Debug)]
pub struct Stapled {
    plain: Arc<CertifiedKey>,
    /// What handshakes get, and until when its staple may be served (seconds since the epoch).
    current: RwLock<(Arc<CertifiedKey>, Option<i64>)>,
}

impl Stapled {
    pub fn new(plain: CertifiedKey) -> Self {
        let plain = Arc::new(plain);
        Self {
            current: RwLock::new((plain.clone(), None)),
            plain,
        }
    }

    fn set(&self, staple: Option<(Vec<u8>, i64)>) {
        let current = match staple {
            Some((der, until)) => {
                let mut key = (*self.plain).clone();
                key.ocsp = Some(der);
                (Arc::new(key), Some(until))
            }
            None => (self.plain.clone(), None),
        };
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = current;
    }

    /// Until when the current staple may be served (seconds since the epoch), if there is one.
    pub fn valid_until(&self) -> Option<i64> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .1
    }
}

impl ResolvesServerCert for Stapled {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .0
                .clone(),
        )
    }
}

/// What the background task needs: where to ask, about which certificate.
#[derive(Debug, Clone)]
pub struct Stapling {
    pub url: String,
    pub id: CertId,
    pub issuer: Vec<u8>,
}

impl Stapling {
    /// Stapling for `chain` (leaf first) when the leaf names a responder: `Ok(None)` when it
    /// names none, `Err` when it names one but the chain lacks the issuer the request needs
    /// (worth a warning: the full-chain file would staple).
    pub fn for_chain(
        chain: &[rustls::pki_types::CertificateDer<'_>],
    ) -> Result<Option<Self>, MissingIssuer> {
        let Some((leaf, rest)) = chain.split_first() else {
            return Ok(None);
        };
        let Some(url) = ocsp::responder_of(leaf) else {
            return Ok(None);
        };
        let Some(issuer) = ocsp::issuer_of(leaf, rest.iter().map(AsRef::as_ref)) else {
            return Err(MissingIssuer { responder: url });
        };
        let issuer = issuer.to_vec();
        Ok(CertId::new(leaf, &issuer)
            .ok()
            .map(|id| Self { url, id, issuer }))
    }
}

/// A certificate that names an OCSP responder, in a file without its issuer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingIssuer {
    pub responder: String,
}

impl std::fmt::Display for MissingIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the certificate names the OCSP responder {} but server_certificate holds no \
             issuer (use the full-chain file)",
            self.responder
        )
    }
}

/// Keeps `stapled`'s staple fresh for as long as it is in use (the task ends once the
/// configuration that holds it is gone).
pub async fn keep_fresh(stapled: Weak<Stapled>, stapling: Stapling, endpoint: String) {
    loop {
        let wait = match crate::ocsp::fetch(
            &stapling.url,
            ocsp::request(&stapling.id),
            FETCH_TIMEOUT,
        )
        .await
        {
            Ok(body) => {
                let now = unix_now();
                match ocsp::check(&body, &stapling.id, &stapling.issuer, now, &RustlsKeyCheck) {
                    Ok(answer) if answer.status == Status::Good => {
                        let Some(target) = stapled.upgrade() else {
                            return;
                        };
                        target.set(Some((body.to_vec(), answer.valid_until)));
                        tracing::info!(endpoint = %endpoint, responder = %stapling.url, "stapling a fresh OCSP response (good until {})", tlsgate_core::encoding::rfc3339(answer.valid_until));
                        // Halfway to nextUpdate, so a failing responder leaves time to retry.
                        let half = (answer.this_update.max(now) + answer.valid_until) / 2 - now;
                        Duration::from_secs(u64::try_from(half).unwrap_or(0)).clamp(RETRY, LONGEST)
                    }
                    Ok(answer) => {
                        tracing::warn!(endpoint = %endpoint, responder = %stapling.url, "not stapling: the responder says the server certificate is {:?}", answer.status);
                        RETRY
                    }
                    Err(e) => {
                        tracing::warn!(endpoint = %endpoint, responder = %stapling.url, "not stapling an invalid OCSP response: {e}");
                        RETRY
                    }
                }
            }
            Err(e) => {
                tracing::warn!(endpoint = %endpoint, responder = %stapling.url, "fetching the server certificate's OCSP response: {e}");
                RETRY
            }
        };
        // Never serve a staple past its nextUpdate, whatever the responder does meanwhile.
        let Some(target) = stapled.upgrade() else {
            return;
        };
        if target
            .valid_until()
            .is_some_and(|until| until < unix_now() + 60)
        {
            tracing::warn!(endpoint = %endpoint, "the stapled OCSP response expires: no staple until a fresh one arrives");
            target.set(None);
        }
        drop(target);
        tokio::time::sleep(wait).await;
    }
}

/// For `tlsgate envoy-config`: a checked `good` response for every endpoint whose certificate
/// names a responder and whose chain holds the issuer, fetched now. Envoy's bootstrap is
/// static, so the staple is what this run got: it is served until its `nextUpdate` (Envoy's
/// default lenient stapling drops an expired one), and regenerating refreshes it. A responder
/// that fails is reported and the endpoint goes without a staple.
pub fn fetch_for_envoy(config: &tlsgate_core::Config) -> Vec<(usize, Vec<u8>)> {
    let wanted: Vec<(usize, String, Stapling)> = config
        .endpoints
        .iter()
        .filter_map(|e| {
            let chain = e.tls.certificate.as_ref()?;
            Some((
                e.index,
                tlsgate_core::policy::endpoint_label(e).to_owned(),
                Stapling::for_chain(&chain.certs).ok()??,
            ))
        })
        .collect();
    if wanted.is_empty() {
        return Vec::new();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("warning: no OCSP staples: cannot start a runtime to fetch them: {e}");
            return Vec::new();
        }
    };
    runtime.block_on(async {
        let mut staples = Vec::new();
        for (index, url, stapling) in wanted {
            let fetched =
                crate::ocsp::fetch(&stapling.url, ocsp::request(&stapling.id), FETCH_TIMEOUT).await;
            let checked = fetched.and_then(|body| {
                let answer =
                    ocsp::check(&body, &stapling.id, &stapling.issuer, unix_now(), &RustlsKeyCheck)?;
                match answer.status {
                    Status::Good => Ok((body, answer.valid_until)),
                    other => Err(format!("the responder says the certificate is {other:?}")),
                }
            });
            match checked {
                Ok((body, until)) => {
                    eprintln!(
                        "endpoints[{index}] ({url}): stapling the OCSP response of {} (good until {}; regenerate before then)",
                        stapling.url,
                        tlsgate_core::encoding::rfc3339(until)
                    );
                    staples.push((index, body.to_vec()));
                }
                Err(e) => eprintln!(
                    "warning: endpoints[{index}] ({url}): no OCSP staple from {}: {e}",
                    stapling.url
                ),
            }
        }
        staples
    })
}
