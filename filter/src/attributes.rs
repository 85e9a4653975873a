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

/// Reads one attribute. `Ok(None)` when Envoy does not have it for this stream.
fn get(attribute: &'static str) -> Result<Option<Vec<u8>>, Unavailable> {
    let path: Vec<&str> = attribute.split('.').collect();
    hostcalls::get_property(path).map_err(|status| Unavailable::Host { attribute, status })
}

fn required(attribute: &'static str) -> Result<Vec<u8>, Unavailable> {
    get(attribute)?.ok_or(Unavailable::Missing { attribute })
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
pub(crate) fn read_connection(policy: &Policy) -> Result<Connection, Unavailable> {
    const VERSION: &str = "connection.tls_version";
    let version_text = text(VERSION, required(VERSION)?)?;
    let version = TlsVersion::from_envoy(&version_text).ok_or_else(|| Unavailable::Invalid {
        attribute: VERSION,
        reason: format!("`{version_text}` is not TLS 1.2 or 1.3"),
    })?;

    const SNI: &str = "connection.requested_server_name";
    let sni = match get(SNI)? {
        Some(bytes) => Some(text(SNI, bytes)?)
            .filter(|s| !s.is_empty())
            .map(|s| tlsgate_core::sni::normalize(&s)),
        None => None,
    };

    const SOURCE: &str = "source.address";
    let client = decode::socket_addr(&required(SOURCE)?).ok_or(Unavailable::Invalid {
        attribute: SOURCE,
        reason: "not an IP address and port".into(),
    })?;
    const DESTINATION: &str = "destination.address";
    let server = decode::socket_addr(&required(DESTINATION)?).ok_or(Unavailable::Invalid {
        attribute: DESTINATION,
        reason: "not an IP address and port".into(),
    })?;

    let endpoint = select_endpoint(policy, sni.as_deref())?;
    let client_cert = client_cert(&endpoint)?;
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
        },
    })
}

/// The endpoint whose filter chain Envoy chose: from the chain's name when `tlsgate
/// envoy-config` named it, otherwise by routing the SNI as the native host does (Istio names
/// chains itself).
fn select_endpoint(policy: &Policy, sni: Option<&str>) -> Result<Arc<EndpointPolicy>, Unavailable> {
    const CHAIN: &str = "xds.filter_chain_name";
    if let Some(name) = get(CHAIN)? {
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
    let local = get("destination.address")?.and_then(|a| decode::socket_addr(&a));
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
fn client_cert(endpoint: &Endpoint) -> Result<ClientCert, Unavailable> {
    if !flag("connection.mtls")? {
        return Ok(ClientCert::Absent);
    }
    const PEER: &str = "connection.peer_certificate";
    let der =
        decode::peer_certificate_der(&required(PEER)?).map_err(|reason| Unavailable::Invalid {
            attribute: PEER,
            reason,
        })?;
    let facts = Box::new(
        ClientCertFacts::from_der(&der).map_err(|e| Unavailable::Invalid {
            attribute: PEER,
            reason: e.to_string(),
        })?,
    );
    let verified = flag("connection.peer_certificate_valid")?;
    // Envoy verifies the chain even under ACCEPT_UNTRUSTED, so `peer_certificate_valid` is
    // the chain check for every strategy.
    let chain = match (&endpoint.tls.client_auth, verified) {
        (ClientAuth::On { .. }, true) => ChainCheck::Trusted,
        (ClientAuth::On { .. }, false) => ChainCheck::Untrusted,
        (ClientAuth::Off, _) => ChainCheck::NotChecked,
    };
    // Envoy's clock; a resumed session keeps its first handshake's verdict, so core checks
    // the certificate's validity against now.
    let now = hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_secs()).ok())
        .ok_or(Unavailable::Invalid {
            attribute: "current time",
            reason: "the host gave no usable time".into(),
        })?;
    Ok(ClientCert::presented(facts, chain, now))
}

/// A boolean attribute; absent reads as false (Envoy omits TLS flags on plaintext streams).
fn flag(attribute: &'static str) -> Result<bool, Unavailable> {
    match get(attribute)? {
        Some(bytes) => decode::boolean(&bytes).ok_or(Unavailable::Invalid {
            attribute,
            reason: "not a boolean".into(),
        }),
        None => Ok(false),
    }
}
