//! The `tlsgate` command and the native TLS edge: tokio + rustls + hyper around
//! `tlsgate-core`'s decisions.
//!
//! The host translates and enforces; core decides. A connection goes through
//! [`server`] (accept, ClientHello, SNI routing, handshake with the endpoint's prebuilt
//! [`tls::ServerTls`], `on_tcp_connect`), then [`http`] (https endpoints) or [`tcp`] (tls
//! endpoints), reaching the upstream through [`upstream`] with [`upstream_tls`]'s client config.
//! [`limits`] holds every deadline. [`runtime`] is one loaded policy with everything prebuilt;
//! a reload swaps it for new connections only.
//!
//! # Upstream certificates from the seed's openssl steps
//!
//! The seed's `server.crt` is X.509 v1 (no extensions, no subjectAltName), which webpki refuses.
//! tlsgate keeps webpki for every upstream certificate and accepts an X.509 v1 leaf only when
//! its key is pinned (`upstream.tls.pinned_certificates`), it is signed directly, with a strong signature, by a CA listed in the endpoint's
//! `upstream.tls.certificate_authorities`, is valid now, and its CN equals `server_name`
//! (case-insensitive); the handshake signature is always verified. See [`upstream_tls`].

pub mod certs;
pub mod clock;
pub mod eval;
pub mod files;
pub mod http;
pub mod io;
pub mod keys;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod ocsp;
pub mod playground;
pub mod proxy_protocol;
pub mod runtime;
pub mod server;
pub mod stapling;
pub mod tcp;
pub mod tickets;
pub mod tls;
pub mod upstream;
pub mod upstream_tls;
pub mod watched;
