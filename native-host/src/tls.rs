//! Terminating TLS: the rustls `ServerConfig` of each endpoint, the client-certificate verifiers
//! of the three strategies, and the [`TlsFacts`] a finished handshake yields.
//!
//! Everything here is built once per endpoint when a policy is loaded, never per connection.
//!
//! | strategy | rustls verifier | certificate accepted when |
//! | --- | --- | --- |
//! | `require-and-verify` | [`WebPkiClientVerifier`] over the endpoint's CAs (and CRLs) | it chains to a CA, is valid now, allows clientAuth and no CRL revokes it |
//! | `require-any` | [`AnyClientCert`] (mandatory) | any certificate, chain unchecked |
//! | `request` | [`AnyClientCert`] (optional) | none, or any certificate |
//!
//! In every case the client proves it holds the certificate's key: the handshake signature is
//! verified by [`verify_handshake_signature`], also for X.509 v1 certificates webpki cannot
//! parse. For `require-any` and `request` the presented chain is checked against the CAs after
//! the handshake, so a good certificate is [`ClientCert::Verified`] (and its identity forwarded)
//! while any other is [`ClientCert::Unverified`]; core's strategy check then decides.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ServerConnection, WebPkiClientVerifier};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme, SupportedProtocolVersion,
};
use tlsgate_core::config::{ClientAuth, Scheme, TerminateTls};
use tlsgate_core::facts::ChainCheck;
use tlsgate_core::pem::TrustAnchors;
use tlsgate_core::policy::endpoint_label;
use tlsgate_core::revocation::{Revocation, RevocationDepth};
use tlsgate_core::{ClientCert, ClientCertFacts, Endpoint, TlsFacts, TlsVersion};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::clock::unix_now;

/// Why an endpoint's TLS configuration could not be built. Core validated the policy, so these
/// are material rustls refuses (a key type it cannot sign with, a CA webpki cannot parse).
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("{endpoint}: terminate-tls has no server certificate and key")]
    MissingCertificate { endpoint: String },
    #[error("{endpoint}: {what}: {reason}")]
    Rejected {
        endpoint: String,
        what: &'static str,
        reason: String,
    },
}

/// The one crypto provider of the process: aws-lc-rs, with rustls' default (safe) suites and
/// groups, the suites in the server's order of preference ([`preference`]).
pub fn provider() -> Arc<CryptoProvider> {
    // aws-lc-rs: post-quantum key exchange offered first (X25519MLKEM768, then X25519, P-256,
    // P-384 for older clients, as the generated Envoy config lists them), and faster RSA than
    // ring.
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider
        .cipher_suites
        .sort_by_key(|suite| preference(suite.suite()));
    Arc::new(provider)
}

/// Where a suite stands in the server's choice (`ignore_client_order`): AES-128-GCM, then
/// AES-256-GCM, then ChaCha20-Poly1305, TLS 1.3 before TLS 1.2. rustls lists AES-256 first.
/// AES-128-GCM is what Mozilla's configurations list first, what Go's crypto/tls chooses on
/// AES hardware, and what browsers offer first (so what Envoy and nginx, which follow the
/// client's order, mostly end up with); and it is the cheaper handshake: its SHA-256 key
/// schedule and transcript hash cost less than SHA-384's, which was 13.5% of a full mTLS
/// handshake's instructions (docs/performance.md, goal 2).
fn preference(suite: rustls::CipherSuite) -> (u8, u8) {
    use rustls::CipherSuite as S;
    let tls12 = u8::from(!matches!(
        suite,
        S::TLS13_AES_128_GCM_SHA256
            | S::TLS13_AES_256_GCM_SHA384
            | S::TLS13_CHACHA20_POLY1305_SHA256
    ));
    let aead = match suite {
        S::TLS13_AES_128_GCM_SHA256
        | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
        | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384
        | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
        | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    };
    (tls12, aead)
}

/// A group's name as core spells it (`facts::KEY_EXCHANGE_GROUPS`); `None` for a group
/// tlsgate never offers.
fn group_name(group: rustls::NamedGroup) -> Option<&'static str> {
    let name = match group {
        rustls::NamedGroup::X25519MLKEM768 => "X25519MLKEM768",
        rustls::NamedGroup::X25519 => "X25519",
        rustls::NamedGroup::secp256r1 => "P-256",
        rustls::NamedGroup::secp384r1 => "P-384",
        _ => return None,
    };
    Some(name)
}

/// `provider` offering `groups` only, in that order (the provider's own when they are all of
/// its groups in its order, which is the default).
fn with_groups(provider: &Arc<CryptoProvider>, groups: &[&str]) -> Arc<CryptoProvider> {
    let offered: Vec<Option<&str>> = provider
        .kx_groups
        .iter()
        .map(|g| group_name(g.name()))
        .collect();
    if offered.iter().copied().eq(groups.iter().map(|g| Some(*g))) {
        return Arc::clone(provider);
    }
    let kx_groups = groups
        .iter()
        .filter_map(|name| {
            provider
                .kx_groups
                .iter()
                .find(|g| group_name(g.name()) == Some(*name))
                .copied()
        })
        .collect();
    Arc::new(CryptoProvider {
        kx_groups,
        ..(**provider).clone()
    })
}

/// The protocol versions between `min` and `max`, inclusive.
pub fn versions(min: TlsVersion, max: TlsVersion) -> Vec<&'static SupportedProtocolVersion> {
    let mut out = Vec::with_capacity(2);
    if min <= TlsVersion::Tls13 && TlsVersion::Tls13 <= max {
        out.push(&rustls::version::TLS13);
    }
    if min <= TlsVersion::Tls12 && TlsVersion::Tls12 <= max {
        out.push(&rustls::version::TLS12);
    }
    out
}

/// How a finished handshake's client certificate is classified.
#[derive(Debug, Clone)]
enum PostHandshake {
    /// No CAs configured: certificates are not asked for.
    Off,
    /// rustls already verified the chain (`require-and-verify`).
    VerifiedByHandshake,
    /// rustls checked possession only; the chain is checked here (`require-any`, `request`).
    CheckChain(Arc<dyn ClientCertVerifier>),
}

/// An endpoint's terminating side: its rustls config and how to read a client certificate.
#[derive(Debug, Clone)]
pub struct ServerTls {
    pub config: Arc<ServerConfig>,
    post: PostHandshake,
    /// The endpoint's CRLs, which core applies to every connection (resumed ones too).
    revocation: Option<Arc<Revocation>>,
    /// The certificate and where its OCSP staple comes from, when it names a responder: the
    /// host keeps it fresh ([`crate::stapling::keep_fresh`]) while this configuration serves.
    pub stapling: Option<(Arc<crate::stapling::Stapled>, crate::stapling::Stapling)>,
}

impl ServerTls {
    /// Builds the endpoint's `ServerConfig`: certificate chain and key, version bounds, client
    /// verifier per strategy, and ALPN `h2`/`http/1.1` for https endpoints.
    pub fn new(endpoint: &Endpoint, provider: &Arc<CryptoProvider>) -> Result<Self, TlsSetupError> {
        let TerminateTls {
            min_version,
            max_version,
            certificate,
            private_key,
            client_auth,
            rule: _,
            session_resumption,
            session_lifetime,
            session_ticket_keys,
            key_exchange_groups,
        } = &endpoint.tls;
        let rejected = |what: &'static str, reason: String| TlsSetupError::Rejected {
            endpoint: endpoint_label(endpoint).to_owned(),
            what,
            reason,
        };
        let (Some(chain), Some(key)) = (certificate, private_key) else {
            return Err(TlsSetupError::MissingCertificate {
                endpoint: endpoint_label(endpoint).to_owned(),
            });
        };
        let signing_key = provider
            .key_provider
            .load_private_key(key.der().clone_key())
            .map_err(|e| rejected("server_private_key", e.to_string()))?;
        // Core checked that the key matches the certificate (by SPKI, which works for X.509 v1
        // leaves too); `with_single_cert` would re-check with webpki and refuse a v1 leaf.
        let certified = CertifiedKey::new(chain.certs.clone(), signing_key);

        let (verifier, post) = match client_auth {
            ClientAuth::Off => (None, PostHandshake::Off),
            ClientAuth::On {
                authorities,
                strategy,
                revocation,
                // Asked after the handshake (server.rs), with the network in reach.
                ocsp: _,
            } => {
                let webpki = client_verifier(authorities, revocation.as_ref(), provider)
                    .map_err(|(what, reason)| rejected(what, reason))?;
                let handshake = strategy.handshake();
                if handshake.chain_enforced {
                    (Some(webpki), PostHandshake::VerifiedByHandshake)
                } else {
                    let any: Arc<dyn ClientCertVerifier> = Arc::new(AnyClientCert {
                        mandatory: handshake.certificate_required,
                        hints: webpki.root_hint_subjects().to_vec(),
                        algorithms: provider.signature_verification_algorithms,
                    });
                    (Some(any), PostHandshake::CheckChain(webpki))
                }
            }
        };

        let builder =
            ServerConfig::builder_with_provider(with_groups(provider, key_exchange_groups))
                .with_protocol_versions(&versions(*min_version, *max_version))
                .map_err(|e| rejected("min_version/max_version", e.to_string()))?;
        let builder = match verifier {
            Some(v) => builder.with_client_cert_verifier(v),
            None => builder.with_no_client_auth(),
        };
        // A certificate that names an OCSP responder gets a staple (when one arrives).
        let stapling = crate::stapling::Stapling::for_chain(&chain.certs).unwrap_or_else(|why| {
            tracing::warn!(endpoint = %endpoint_label(endpoint), "not stapling: {why}");
            None
        });
        let (mut config, stapled) = match stapling {
            Some(_) => {
                let stapled = Arc::new(crate::stapling::Stapled::new(certified));
                (builder.with_cert_resolver(stapled.clone()), Some(stapled))
            }
            None => (
                builder.with_cert_resolver(Arc::new(SingleCertAndKey::from(certified))),
                None,
            ),
        };
        // TLS 1.2 clients get the server's preference (AEADs with forward secrecy first, as
        // the provider lists them), not whatever order they offered.
        config.ignore_client_order = true;
        if *session_resumption {
            config.ticketer = crate::tickets::ticketer(session_ticket_keys, *session_lifetime)
                .map_err(|e| rejected("session_ticket_keys", e))?;
        } else {
            config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
            config.send_tls13_tickets = 0;
        }
        if endpoint.scheme == Scheme::Https {
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        Ok(Self {
            config: Arc::new(config),
            post,
            revocation: client_auth.revocation().cloned().map(Arc::new),
            stapling: stapled.zip(stapling),
        })
    }

    /// What the finished handshake tells the policy; `Err` when the client presented a
    /// certificate nothing can be read from (refused, as the filter does: a certificate whose
    /// fields cannot be checked proves nothing and must not pass as "no certificate").
    pub fn facts(
        &self,
        conn: &ServerConnection,
        (peer, local): (std::net::SocketAddr, std::net::SocketAddr),
        started: std::time::SystemTime,
    ) -> Result<TlsFacts, UnreadableCertificate> {
        let version = match conn.protocol_version() {
            Some(rustls::ProtocolVersion::TLSv1_2) => TlsVersion::Tls12,
            _ => TlsVersion::Tls13,
        };
        let cipher_suite = conn
            .negotiated_cipher_suite()
            .map(|s| iana_cipher_name(s.suite()))
            .unwrap_or_default();
        Ok(TlsFacts {
            version,
            cipher_suite,
            sni: conn.server_name().map(tlsgate_core::sni::normalize),
            alpn: conn
                .alpn_protocol()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            client_ip: peer.ip(),
            client_port: peer.port(),
            server: local,
            client_cert: self.client_cert(conn)?,
            started,
            resumed: conn.handshake_kind() == Some(rustls::HandshakeKind::Resumed),
            key_exchange_group: conn
                .negotiated_key_exchange_group()
                .and_then(|g| group_name(g.name()))
                .unwrap_or_default(),
            // From the ClientHello's bytes, which the caller has (server.rs).
            ja4: String::new(),
        })
    }

    fn client_cert(&self, conn: &ServerConnection) -> Result<ClientCert, UnreadableCertificate> {
        let Some((leaf, intermediates)) = conn.peer_certificates().and_then(|c| c.split_first())
        else {
            return Ok(ClientCert::Absent);
        };
        let facts =
            ClientCertFacts::from_der(leaf.as_ref()).map_err(|e| UnreadableCertificate(e.0))?;
        let facts = Box::new(facts);
        let chain = match &self.post {
            PostHandshake::Off => ChainCheck::NotChecked,
            PostHandshake::VerifiedByHandshake => ChainCheck::Trusted,
            PostHandshake::CheckChain(webpki) => {
                match webpki.verify_client_cert(leaf, intermediates, UnixTime::now()) {
                    Ok(_) => ChainCheck::Trusted,
                    Err(_) => ChainCheck::Untrusted,
                }
            }
        };
        let now = unix_now();
        Ok(ClientCert::presented(
            facts,
            chain,
            now,
            self.revocation.as_deref(),
        ))
    }
}

/// The webpki verifier of an endpoint's client certificates: its CAs as trust anchors, its
/// CRLs (a certificate whose issuer has no CRL is refused, webpki's default and BoringSSL's, as
/// is everything a CRL past its nextUpdate covers). `require-and-verify` runs it in the
/// handshake; `require-any` and `request` after it; `tlsgate eval` on the certificate given.
pub fn client_verifier(
    authorities: &TrustAnchors,
    revocation: Option<&Revocation>,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, (&'static str, String)> {
    let mut roots = RootCertStore::empty();
    for (i, ca) in authorities.certs.iter().enumerate() {
        roots.add(ca.clone()).map_err(|e| {
            (
                "mutual_tls_certificate_authorities",
                format!(
                    "CA {} ({}) is not usable as a trust anchor: {e}",
                    i,
                    authorities.subjects.get(i).map_or("?", String::as_str)
                ),
            )
        })?;
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if let Some(revocation) = revocation {
        builder = builder
            .with_crls(revocation.ders())
            .enforce_revocation_expiration();
        if revocation.depth == RevocationDepth::Leaf {
            builder = builder.only_check_end_entity_revocation();
        }
    }
    builder
        .build()
        .map_err(|e| ("mutual_tls_certificate_revocation_lists", e.to_string()))
}

/// The IANA name of a cipher suite (`TLS_AES_128_GCM_SHA256`); rustls spells TLS 1.3 suites
/// `TLS13_…`.
pub fn iana_cipher_name(suite: rustls::CipherSuite) -> String {
    match suite.as_str() {
        Some(name) => match name.strip_prefix("TLS13_") {
            Some(rest) => format!("TLS_{rest}"),
            None => name.to_owned(),
        },
        None => format!("0x{:04X}", u16::from(suite)),
    }
}

/// The client verifier of `require-any` and `request`: any certificate chain is admitted here,
/// but the handshake signature is verified as always, so the client must hold the key.
#[derive(Debug)]
pub struct AnyClientCert {
    mandatory: bool,
    hints: Vec<DistinguishedName>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        // The chain is not judged, but it must at least be a certificate.
        match X509Certificate::from_der(end_entity.as_ref()) {
            Ok(_) => Ok(ClientCertVerified::assertion()),
            Err(_) => Err(rustls::Error::InvalidCertificate(
                CertificateError::BadEncoding,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(false, message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_handshake_signature(true, message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Verifies a handshake signature (proof of possession of the certificate's key).
///
/// webpki's own functions parse the certificate first and refuse X.509 v1; for those, and only
/// those, the signature is checked against the certificate's SubjectPublicKeyInfo directly,
/// with the same algorithms.
pub(crate) fn verify_handshake_signature(
    tls13: bool,
    message: &[u8],
    cert: &CertificateDer<'_>,
    dss: &DigitallySignedStruct,
    algorithms: &WebPkiSupportedAlgorithms,
) -> Result<HandshakeSignatureValid, rustls::Error> {
    if webpki::EndEntityCert::try_from(cert).is_ok() {
        return if tls13 {
            rustls::crypto::verify_tls13_signature(message, cert, dss, algorithms)
        } else {
            rustls::crypto::verify_tls12_signature(message, cert, dss, algorithms)
        };
    }
    let (_, parsed) = X509Certificate::from_der(cert.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let spki = SubjectPublicKeyInfoDer::from(parsed.tbs_certificate.subject_pki.raw);
    if tls13 {
        return rustls::crypto::verify_tls13_signature_with_raw_key(
            message, &spki, dss, algorithms,
        );
    }
    let key = webpki::RawPublicKeyEntity::try_from(&spki)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let candidates = algorithms
        .mapping
        .iter()
        .find(|(scheme, _)| *scheme == dss.scheme)
        .map(|(_, algs)| *algs)
        .ok_or(rustls::Error::PeerMisbehaved(
            rustls::PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
        ))?;
    for alg in candidates {
        if key.verify_signature(*alg, message, dss.signature()).is_ok() {
            return Ok(HandshakeSignatureValid::assertion());
        }
    }
    Err(rustls::Error::InvalidCertificate(
        CertificateError::BadSignature,
    ))
}

/// A client certificate rustls accepted but x509-parser cannot read.
#[derive(Debug, Clone, thiserror::Error)]
#[error("the client certificate cannot be read: {0}")]
pub struct UnreadableCertificate(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_server_prefers_aes_128_gcm_then_aes_256_then_chacha20() {
        let order: Vec<String> = provider()
            .cipher_suites
            .iter()
            .map(|s| iana_cipher_name(s.suite()))
            .collect();
        assert_eq!(
            order,
            [
                "TLS_AES_128_GCM_SHA256",
                "TLS_AES_256_GCM_SHA384",
                "TLS_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
                "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
                "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
                "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
            ]
        );
    }

    #[test]
    fn names_cipher_suites_as_iana_does() {
        assert_eq!(
            iana_cipher_name(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256),
            "TLS_AES_128_GCM_SHA256"
        );
        assert_eq!(
            iana_cipher_name(rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
        );
    }

    #[test]
    fn offers_the_key_exchange_groups_core_names_in_its_order() {
        let names: Vec<Option<&str>> = provider()
            .kx_groups
            .iter()
            .map(|g| group_name(g.name()))
            .collect();
        let core: Vec<Option<&str>> = tlsgate_core::facts::KEY_EXCHANGE_GROUPS
            .iter()
            .map(|g| Some(*g))
            .collect();
        assert_eq!(names, core);
    }

    #[test]
    fn an_endpoint_offers_the_groups_it_pins_in_its_order() {
        let provider = provider();
        let all = with_groups(&provider, &tlsgate_core::facts::KEY_EXCHANGE_GROUPS);
        assert!(
            Arc::ptr_eq(&all, &provider),
            "the default shares the provider"
        );
        let pinned = with_groups(&provider, &["P-256", "X25519"]);
        let names: Vec<Option<&str>> = pinned
            .kx_groups
            .iter()
            .map(|g| group_name(g.name()))
            .collect();
        assert_eq!(names, [Some("P-256"), Some("X25519")]);
    }

    /// A real handshake in memory with a client that offers only the post-quantum group.
    #[test]
    fn a_post_quantum_only_client_completes_a_handshake() {
        use rustls::{ClientConfig, ClientConnection, ServerConnection};
        let ca = tlsgate_test_support::Authority::root("CA");
        let server = ca.server(&["pq.example.com"]);
        let provider = provider();
        let key = rustls::pki_types::PrivateKeyDer::try_from(server.key_der.clone()).unwrap();
        let server_config = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![server.cert_der.clone().into()], key)
            .unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(ca.cert_der().into()).unwrap();
        let mut pq_only = (*provider).clone();
        pq_only
            .kx_groups
            .retain(|g| format!("{:?}", g.name()) == "X25519MLKEM768");
        let client_config = ClientConfig::builder_with_provider(Arc::new(pq_only))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut client = ClientConnection::new(
            Arc::new(client_config),
            "pq.example.com".try_into().unwrap(),
        )
        .unwrap();
        let mut server = ServerConnection::new(Arc::new(server_config)).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            client.write_tls(&mut buf).unwrap();
            server.read_tls(&mut buf.as_slice()).unwrap();
            server.process_new_packets().unwrap();
            let mut buf = Vec::new();
            server.write_tls(&mut buf).unwrap();
            client.read_tls(&mut buf.as_slice()).unwrap();
            client.process_new_packets().unwrap();
            if !client.is_handshaking() && !server.is_handshaking() {
                break;
            }
        }
        assert!(!server.is_handshaking());
        let group = server
            .negotiated_key_exchange_group()
            .map(|g| format!("{:?}", g.name()));
        assert_eq!(group.as_deref(), Some("X25519MLKEM768"));
    }

    #[test]
    fn version_bounds_select_protocols() {
        assert_eq!(versions(TlsVersion::Tls13, TlsVersion::Tls13).len(), 1);
        assert_eq!(versions(TlsVersion::Tls12, TlsVersion::Tls13).len(), 2);
        assert_eq!(
            versions(TlsVersion::Tls12, TlsVersion::Tls12)[0].version,
            rustls::ProtocolVersion::TLSv1_2
        );
    }
}
