//! The host-independent heart of tlsgate.
//!
//! A policy file becomes a [`config::Config`] (parsed, validated, certificates loaded), then a
//! [`policy::Policy`] that both hosts — the native proxy and the proxy-wasm filter in Envoy —
//! consult with the same [`facts::TlsFacts`] and get the same [`policy::Verdict`].
//!
//! This crate knows nothing of tokio, rustls, hyper or proxy-wasm and builds for
//! `wasm32-wasip1`. It does not panic on any input: the lints deny `unwrap`, `expect` and
//! `panic`, and the decision functions are total.

pub mod config;
pub mod crypto;
mod der;
pub mod encoding;
pub mod error;
pub mod eval;
pub mod expr;
pub mod facts;
pub mod ja4;
mod kube;
pub mod limits;
mod load;
pub mod net;
pub mod ocsp;
pub mod pem;
pub mod policy;
pub mod proxy_protocol;
pub mod quoted;
pub mod raw;
pub mod request;
pub mod revocation;
pub mod sni;
pub mod source;
pub mod trace;
pub mod url;

pub use config::{Config, Deployment, Endpoint, HostCrypto, KeyMode, Listen, LoadOptions, Resolve};
pub use error::{ConfigError, ConfigErrorKind};
pub use facts::{ClientCert, ClientCertFacts, TlsFacts, TlsVersion};
pub use policy::{EndpointPolicy, Policy, RequestVerdict, Session, Verdict};
pub use request::{Forward, Request};
