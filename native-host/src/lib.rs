//! The `tlsgate` command and the native TLS edge: tokio + rustls + hyper around
//! `tlsgate-core`'s decisions.

pub mod keys;
