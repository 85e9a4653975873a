//! Policy → Envoy v3 bootstrap. (Being written; the signature below is the contract the
//! `tlsgate envoy-config` command calls.)

use std::net::SocketAddr;
use std::path::PathBuf;

use tlsgate_core::Config;

/// What the generator needs besides the policy.
#[derive(Debug, Clone)]
pub struct Options {
    /// Path of the built `tlsgate_filter.wasm`, as Envoy will read it.
    pub wasm: PathBuf,
    /// Directory the bootstrap is written to; inline PEM from the policy is written beside it.
    pub out_dir: PathBuf,
    /// Envoy's admin listener (loopback).
    pub admin: SocketAddr,
}

/// A generated bootstrap and the files it references.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    pub yaml: String,
    /// Files to write (path relative to `out_dir`, contents), e.g. inline certificates.
    pub files: Vec<(PathBuf, String)>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Unsupported(String),
}

/// Generates the bootstrap for `config`; `filter_policy` (from `tlsgate_core::filter_policy`)
/// becomes the wasm plugin configuration.
pub fn generate(
    config: &Config,
    filter_policy: &serde_json::Value,
    options: &Options,
) -> Result<Bootstrap, Error> {
    let _ = (config, filter_policy, options);
    Err(Error::Unsupported("the Envoy generator is not built yet".into()))
}
