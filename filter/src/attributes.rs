//! Envoy's view of a connection, read through `get_property` into core's facts.
//!
//! Every read goes through [`proxy_wasm::hostcalls::get_property`], never the SDK's
//! `Context::get_property` (which unwraps a host error into a trap). An attribute that is
//! missing or malformed is an [`Unavailable`], and the caller denies.

use std::fmt;
use std::sync::Arc;

use proxy_wasm::hostcalls;
use proxy_wasm::types::Status;
use tlsgate_core::config::ClientAuth;
use tlsgate_core::facts::ChainCheck;
use tlsgate_core::pem::AnchorSignature;
use tlsgate_core::{
    ClientCert, ClientCertFacts, Endpoint, EndpointPolicy, Policy, TlsFacts, TlsVersion,
};

use crate::decode;

/// Why the filter could not establish the facts of a connection. Each one denies.
#[derive(Debug)]
pub(crate) enum Unavailable {
    /// The host refused a property read.
    Host {
        attribute: &'static str,
        status: Status,
    },
    /// A property the decision needs is absent.
    Missing { attribute: &'static str },
    /// A property has a value the filter cannot read.
    Invalid {
        attribute: &'static str,
        reason: String,
    },
    /// No endpoint of the policy serves this connection.
    NoEndpoint { detail: String },
}

impl Unavailable {
    /// The stable label used in metrics.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            Self::Host { .. } | Self::Missing { .. } | Self::Invalid { .. } => {
                "connection_facts_unavailable"
            }
            Self::NoEndpoint { .. } => "no_endpoint",
        }
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Host { attribute, status } => {
                write!(f, "reading {attribute} failed ({status:?})")
            }
            Self::Missing { attribute } => write!(
                f,
                "{attribute} is absent (is TLS terminated by this listener's filter chain, \
                 with tls_inspector on the listener?)"
            ),
            Self::Invalid { attribute, reason } => write!(f, "{attribute}: {reason}"),
            Self::NoEndpoint { detail } => f.write_str(detail),
        }
    }
}

/// What the filter asks its host. Envoy answers through proxy-wasm hostcalls ([`Envoy`]); unit
/// tests answer from a table, so endpoint selection, the certificate mapping and "a missing or
/// odd attribute denies" are tested without Envoy.
pub(crate) trait Host {
    /// One attribute by its path (`["connection", "mtls"]`); `Ok(None)` when the host does not
    /// have it for this stream.
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status>;
    /// The host's clock.
    fn now(&self) -> Result<std::time::SystemTime, Status>;
}

/// Envoy, through the proxy-wasm ABI.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Envoy;

impl Host for Envoy {
    fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
        hostcalls::get_property(path.to_vec())
    }

    fn now(&self) -> Result<std::time::SystemTime, Status> {
        hostcalls::get_current_time()
    }
}

/// Reads one attribute. `Ok(None)` when the host does not have it for this stream.
fn get(host: &dyn Host, attribute: &'static str) -> Result<Option<Vec<u8>>, Unavailable> {
    let path: Vec<&str> = attribute.split('.').collect();
    host.property(&path)
        .map_err(|status| Unavailable::Host { attribute, status })
}

fn required(host: &dyn Host, attribute: &'static str) -> Result<Vec<u8>, Unavailable> {
    get(host, attribute)?.ok_or(Unavailable::Missing { attribute })
}

fn text(attribute: &'static str, bytes: Vec<u8>) -> Result<String, Unavailable> {
    String::from_utf8(bytes).map_err(|_| Unavailable::Invalid {
        attribute,
        reason: "not UTF-8".into(),
    })
}

/// One connection as Envoy reports it: the endpoint its filter chain serves and the facts.
#[derive(Debug)]
pub(crate) struct Connection {
    pub endpoint: Arc<EndpointPolicy>,
    pub facts: TlsFacts,
}

/// Reads the connection's facts. Call it only once the handshake is over: in a network filter
/// at the first downstream data, in an HTTP filter at any point of a request.
pub(crate) fn read_connection(
    host: &dyn Host,
    policy: &Policy,
    started: std::time::SystemTime,
) -> Result<Connection, Unavailable> {
    const VERSION: &str = "connection.tls_version";
    let version_text = text(VERSION, required(host, VERSION)?)?;
    let version = TlsVersion::from_envoy(&version_text).ok_or_else(|| Unavailable::Invalid {
        attribute: VERSION,
        reason: format!("`{version_text}` is not TLS 1.2 or 1.3"),
    })?;

    const SNI: &str = "connection.requested_server_name";
    let sni = match get(host, SNI)? {
        Some(bytes) => Some(text(SNI, bytes)?)
            .filter(|s| !s.is_empty())
            .map(|s| tlsgate_core::sni::normalize(&s)),
        None => None,
    };

    const SOURCE: &str = "source.address";
    let client = decode::socket_addr(&required(host, SOURCE)?).ok_or(Unavailable::Invalid {
        attribute: SOURCE,
        reason: "not an IP address and port".into(),
    })?;
    const DESTINATION: &str = "destination.address";
    let server =
        decode::socket_addr(&required(host, DESTINATION)?).ok_or(Unavailable::Invalid {
            attribute: DESTINATION,
            reason: "not an IP address and port".into(),
        })?;

    let endpoint = select_endpoint(host, policy, sni.as_deref())?;
    let client_cert = client_cert(host, &endpoint)?;
    Ok(Connection {
        endpoint,
        facts: TlsFacts {
            version,
            // Envoy exposes no attribute for the negotiated cipher suite (see the README).
            cipher_suite: String::new(),
            sni,
            alpn: None,
            client_ip: client.ip(),
            client_port: client.port(),
            server,
            client_cert,
            started,
            // Envoy exposes neither; a policy that reads them is refused for Envoy at load
            // (policy::UNKNOWN_BEHIND_ENVOY).
            resumed: false,
            key_exchange_group: "",
            ja4: String::new(),
        },
    })
}

/// The endpoint whose filter chain Envoy chose: from the chain's name when `tlsgate
/// envoy-config` named it, otherwise by routing the SNI as the native host does (Istio names
/// chains itself).
fn select_endpoint(
    host: &dyn Host,
    policy: &Policy,
    sni: Option<&str>,
) -> Result<Arc<EndpointPolicy>, Unavailable> {
    const CHAIN: &str = "xds.filter_chain_name";
    if let Some(name) = get(host, CHAIN)? {
        let name = text(CHAIN, name)?;
        if let Some(index) = decode::endpoint_index(&name) {
            return policy
                .endpoint(index)
                .cloned()
                .ok_or_else(|| Unavailable::NoEndpoint {
                    detail: format!(
                        "filter chain {name} names an endpoint the policy does not have \
                         (was the Envoy configuration generated from another policy?)"
                    ),
                });
        }
    }
    let local = get(host, "destination.address")?.and_then(|a| decode::socket_addr(&a));
    let on = |matches_local: bool| {
        let mut found: Vec<usize> = policy
            .listeners()
            .iter()
            .filter(|l| {
                !matches_local
                    || local.is_some_and(|a| {
                        a.port() == l.bind.port()
                            && (l.bind.ip().is_unspecified() || l.bind.ip() == a.ip())
                    })
            })
            .filter_map(|l| l.route(sni))
            .collect();
        found.dedup();
        found
    };
    let mut found = on(true);
    if found.is_empty() {
        // Behind Istio the gateway's port is not the policy's bind; the SNI alone decides.
        found = on(false);
    }
    match found.as_slice() {
        [index] => policy
            .endpoint(*index)
            .cloned()
            .ok_or_else(|| Unavailable::NoEndpoint {
                detail: format!("endpoint {index} vanished"),
            }),
        [] => Err(Unavailable::NoEndpoint {
            detail: format!(
                "no endpoint serves server name {}",
                sni.unwrap_or("(none sent)")
            ),
        }),
        _ => Err(Unavailable::NoEndpoint {
            detail: format!(
                "server name {} matches endpoints on several binds; name the filter chains \
                 with `tlsgate envoy-config` so the filter knows which one Envoy chose",
                sni.unwrap_or("(none sent)")
            ),
        }),
    }
}

/// The client certificate as the handshake left it.
///
/// `connection.mtls` says a certificate was presented (and, TLS being TLS, that the client
/// proved it holds the key); `connection.peer_certificate_valid` says Envoy verified its chain
/// against the endpoint's CAs. Under `require-any` and `request` the TLS context runs with
/// `ACCEPT_UNTRUSTED`: a certificate that does not verify still completes the handshake and is
/// [`Unverified::NotChecked`] here; the policy decides what that is worth.
fn client_cert(host: &dyn Host, endpoint: &Endpoint) -> Result<ClientCert, Unavailable> {
    if !flag(host, "connection.mtls")? {
        return Ok(ClientCert::Absent);
    }
    const PEER: &str = "connection.peer_certificate";
    let der = decode::peer_certificate_der(&required(host, PEER)?).map_err(|reason| {
        Unavailable::Invalid {
            attribute: PEER,
            reason,
        }
    })?;
    let facts = Box::new(
        ClientCertFacts::from_der(&der).map_err(|e| Unavailable::Invalid {
            attribute: PEER,
            reason: e.to_string(),
        })?,
    );
    let verified = flag(host, "connection.peer_certificate_valid")?;
    // Envoy verifies the chain even under ACCEPT_UNTRUSTED, so `peer_certificate_valid` is
    // the chain check for every strategy — on a full handshake. Envoy does not keep that
    // verdict in the TLS session: on a resumed connection the flag is false. Under
    // require-and-verify that can only be a resumption, and BoringSSL resumes only sessions
    // that a handshake which verified the chain created, in a context with the same
    // validation settings (Envoy derives the session id context from them); so there the
    // certificate passed Envoy. The generator turns resumption off where the context accepts
    // untrusted certificates (require-any, request), so the flag is always fresh there.
    //
    // Envoy's verdict is against Envoy's trust store; the filter then checks, itself, that one
    // of this endpoint's CAs signed the leaf (crate::trust), so that behind a Gateway that
    // trusts more than the policy, "verified" still means "by the policy's CAs".
    let chain = match &endpoint.tls.client_auth {
        ClientAuth::Off => ChainCheck::NotChecked,
        ClientAuth::On {
            authorities,
            strategy,
            ..
        } if verified || strategy.handshake().chain_enforced => {
            match crate::trust::signed(endpoint.index, authorities, &der, &facts.fingerprint_sha256)
            {
                AnchorSignature::Signed => ChainCheck::Trusted,
                AnchorSignature::NoSuchIssuer | AnchorSignature::NotSigned(_) => {
                    ChainCheck::Untrusted
                }
            }
        }
        ClientAuth::On { .. } => ChainCheck::Untrusted,
    };
    // Envoy's clock; a resumed session keeps its first handshake's verdict, so core checks
    // the certificate's validity against now.
    let now = host
        .now()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or(Unavailable::Invalid {
            attribute: "current time",
            reason: "the host gave no usable time".into(),
        })?;
    Ok(ClientCert::presented(
        facts,
        chain,
        now,
        endpoint.tls.client_auth.revocation(),
    ))
}

/// A boolean attribute; absent reads as false (Envoy omits TLS flags on plaintext streams).
fn flag(host: &dyn Host, attribute: &'static str) -> Result<bool, Unavailable> {
    match get(host, attribute)? {
        Some(bytes) => decode::boolean(&bytes).ok_or(Unavailable::Invalid {
            attribute,
            reason: "not a boolean".into(),
        }),
        None => Ok(false),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::panic)]

    use std::collections::HashMap;
    use std::time::{Duration, SystemTime};

    use tlsgate_test_support::{Authority, KeyKind};

    use super::*;

    /// A host that answers from a table, as Envoy 1.40 encodes each attribute.
    #[derive(Clone)]
    struct Table {
        attributes: HashMap<&'static str, Vec<u8>>,
        now: SystemTime,
    }

    impl Host for Table {
        fn property(&self, path: &[&str]) -> Result<Option<Vec<u8>>, Status> {
            Ok(self.attributes.get(path.join(".").as_str()).cloned())
        }

        fn now(&self) -> Result<SystemTime, Status> {
            Ok(self.now)
        }
    }

    /// A policy with a require-any endpoint (so unverified certificates are admitted and the
    /// class is visible) trusting `ca`, and the attributes of a plain TLS 1.3 connection to it.
    fn setup(ca: &Authority) -> (Policy, Table) {
        setup_with(ca, "require-any")
    }

    fn setup_with(ca: &Authority, strategy: &str) -> (Policy, Table) {
        let server = ca.server(&["app.example.com"]).cert_pem;
        let policy = serde_json::json!({"endpoints": [{
            "url": "https://app.example.com",
            "bind": "127.0.0.1:8443",
            "upstream": {"url": "http://127.0.0.1:8080"},
            "traffic_policy": {"on_tcp_connect": [{"actions": [
                {"type": "terminate-tls", "config": {
                    "server_certificate": server,
                    "mutual_tls_certificate_authorities": [ca.cert_pem()],
                    "mutual_tls_verification_strategy": strategy
                }}
            ]}]}
        }]});
        let policy = crate::load(&policy.to_string()).unwrap_or_else(|e| panic!("{e}"));
        let attributes = HashMap::from([
            ("connection.tls_version", b"TLSv1.3".to_vec()),
            (
                "connection.requested_server_name",
                b"app.example.com".to_vec(),
            ),
            ("source.address", b"127.0.0.1:50000".to_vec()),
            ("destination.address", b"127.0.0.1:8443".to_vec()),
            ("xds.filter_chain_name", b"tlsgate.endpoints[0]".to_vec()),
            ("connection.mtls", vec![0]),
        ]);
        let table = Table {
            attributes,
            now: SystemTime::now(),
        };
        (policy, table)
    }

    fn present(table: &mut Table, pem: &str, valid: bool) {
        table.attributes.insert("connection.mtls", vec![1]);
        table
            .attributes
            .insert("connection.peer_certificate", pem.as_bytes().to_vec());
        table
            .attributes
            .insert("connection.peer_certificate_valid", vec![u8::from(valid)]);
    }

    #[test]
    fn reads_a_connection_into_facts() {
        let ca = Authority::root("CA");
        let (policy, table) = setup(&ca);
        let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
        assert_eq!(c.endpoint.index, 0);
        assert_eq!(c.facts.version, TlsVersion::Tls13);
        assert_eq!(c.facts.sni.as_deref(), Some("app.example.com"));
        assert_eq!(c.facts.client_port, 50000);
        assert_eq!(c.facts.server, ([127, 0, 0, 1], 8443).into());
        assert!(matches!(c.facts.client_cert, ClientCert::Absent));
    }

    #[test]
    fn maps_the_certificate_envoy_verified_or_not() {
        let ca = Authority::root("CA");
        let (policy, mut table) = setup(&ca);
        let client = ca.client("alice");
        present(&mut table, &client.cert_pem, true);
        let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
        assert_eq!(c.facts.client_cert.verification(), "verified");
        present(&mut table, &client.cert_pem, false);
        let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
        assert_eq!(c.facts.client_cert.verification(), "untrusted_issuer");
        // A resumed session keeps Envoy's first verdict; the clock says it has expired since.
        present(&mut table, &client.cert_pem, true);
        table.now += Duration::from_secs(60 * 60 * 24 * 365 * 30);
        let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
        assert_eq!(c.facts.client_cert.verification(), "outside_validity");
    }

    #[test]
    fn a_resumed_session_under_require_and_verify_keeps_its_verified_client() {
        // Envoy reports `peer_certificate_valid: false` on a resumed connection (found by the
        // reliability suite: a rustls client that resumes was closed as untrusted). Under
        // require-and-verify only a verified handshake can have created the session.
        let ca = Authority::root("CA");
        let (policy, mut table) = setup_with(&ca, "require-and-verify");
        let client = ca.client("alice");
        present(&mut table, &client.cert_pem, false);
        let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
        assert_eq!(c.facts.client_cert.verification(), "verified");
        // Its validity is still checked against now.
        table.now += Duration::from_secs(60 * 60 * 24 * 365 * 30);
        let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
        assert_eq!(c.facts.client_cert.verification(), "outside_validity");
        // Under request (resumption off in the generated context) the flag is the verdict.
        let (policy, mut table) = setup_with(&ca, "request");
        present(&mut table, &client.cert_pem, false);
        let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
        assert_eq!(c.facts.client_cert.verification(), "untrusted_issuer");
    }

    #[test]
    fn envoy_verified_is_not_enough_the_endpoint_ca_must_have_signed() {
        // Envoy's trust store may hold CAs the policy does not (an Istio Gateway's): a
        // certificate Envoy verified is an identity only if one of the endpoint's CAs signed it.
        let ca = Authority::root("CA");
        for strategy in ["require-any", "require-and-verify"] {
            let (policy, mut table) = setup_with(&ca, strategy);
            crate::trust::forget();
            // Another CA altogether.
            let stranger = Authority::root("Other CA").client("alice");
            present(&mut table, &stranger.cert_pem, true);
            let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
            assert_eq!(c.facts.client_cert.verification(), "untrusted_issuer");
            // The endpoint CA's name on another key: the name matches, the signature does not.
            let impostor = Authority::root("CA").client("alice");
            present(&mut table, &impostor.cert_pem, true);
            let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
            assert_eq!(c.facts.client_cert.verification(), "untrusted_issuer");
            // An intermediate the client sent (Envoy shows only the leaf): not checkable here.
            let intermediate = ca.intermediate("Issuing CA");
            present(&mut table, &intermediate.client("ian").cert_pem, true);
            let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
            assert_eq!(c.facts.client_cert.verification(), "untrusted_issuer");
            // The endpoint's CA: verified, and the verdict is cached for the next connection.
            present(&mut table, &ca.client("alice").cert_pem, true);
            for _ in 0..2 {
                let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
                assert_eq!(c.facts.client_cert.verification(), "verified");
            }
        }
        // Every key type a CA can have, checked with the VM's pure-Rust algorithms.
        for kind in [KeyKind::EcdsaP384, KeyKind::Rsa2048, KeyKind::Ed25519] {
            let ca = Authority::root_with("CA", kind);
            let (policy, mut table) = setup_with(&ca, "require-and-verify");
            present(&mut table, &ca.client("alice").cert_pem, true);
            let c = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect("reads");
            assert_eq!(c.facts.client_cert.verification(), "verified", "{kind:?}");
        }
    }

    #[test]
    fn a_missing_or_odd_attribute_denies() {
        let ca = Authority::root("CA");
        let (policy, table) = setup(&ca);
        let broken = |key: &'static str, value: Option<&[u8]>| {
            let mut t = table.clone();
            match value {
                Some(v) => t.attributes.insert(key, v.to_vec()),
                None => t.attributes.remove(key),
            };
            read_connection(&t, &policy, std::time::UNIX_EPOCH)
                .err()
                .unwrap_or_else(|| panic!("{key} {value:?} was accepted"))
                .label()
        };
        for (key, value) in [
            ("connection.tls_version", None),
            ("connection.tls_version", Some(&b"TLSv1.1"[..])),
            ("source.address", Some(&b"nonsense"[..])),
            ("destination.address", None),
            ("connection.mtls", Some(&b"yes"[..])),
        ] {
            assert_eq!(broken(key, value), "connection_facts_unavailable", "{key}");
        }
        assert_eq!(
            broken("xds.filter_chain_name", Some(b"tlsgate.endpoints[7]")),
            "no_endpoint"
        );
        let mut garbage = table.clone();
        present(
            &mut garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            true,
        );
        assert!(read_connection(&garbage, &policy, std::time::UNIX_EPOCH).is_err());
    }

    #[test]
    fn a_foreign_chain_name_routes_by_server_name() {
        let ca = Authority::root("CA");
        let (policy, mut table) = setup(&ca);
        table
            .attributes
            .insert("xds.filter_chain_name", b"istio-gateway-chain".to_vec());
        assert_eq!(
            read_connection(&table, &policy, std::time::UNIX_EPOCH)
                .expect("routes")
                .endpoint
                .index,
            0
        );
        table.attributes.insert(
            "connection.requested_server_name",
            b"other.example.com".to_vec(),
        );
        let e = read_connection(&table, &policy, std::time::UNIX_EPOCH).expect_err("no endpoint");
        assert_eq!(e.label(), "no_endpoint");
    }
}
