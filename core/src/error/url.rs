//! What is wrong with a URL: the `problem` of
//! [`ConfigErrorKind::BadUrl`](super::ConfigErrorKind::BadUrl).

use super::Quoted;

/// What is wrong with a URL; printed right after the quoted URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UrlProblem {
    #[error(" has no scheme; write it as scheme://host[:port]")]
    NoScheme,
    #[error(": credentials in URLs are not supported")]
    Credentials,
    #[error(": unclosed `[` in the host")]
    UnclosedBracket,
    #[error(": unexpected `{after}` after the host")]
    AfterHost { after: Quoted },
    #[error(" has no host")]
    NoHost,
    #[error(": `{port}` is not a port number (1-65535)")]
    BadPort { port: Quoted },
    #[error(" needs a port (tcp://host:port)")]
    NoPort,
    #[error(": an endpoint URL names a host, not a path (`{path}`)")]
    HasPath { path: Quoted },
    #[error(
        ": tlsgate terminates TLS, so an endpoint is https:// (HTTP) or tls:// (any TCP protocol)"
    )]
    PlainEndpoint,
    #[error(": OCSP responders are asked over http:// (the answers are signed)")]
    OcspNotHttp,
    /// An ngrok operator endpoint URL with http:// or tcp://.
    #[error(": tlsgate terminates TLS, so it serves https:// and tls:// endpoints")]
    OperatorPlainEndpoint,
    #[error(": unknown scheme `{scheme}`")]
    UnknownScheme { scheme: Quoted },
    /// An ngrok operator endpoint URL with a path.
    #[error(": an endpoint URL names a host, not a path")]
    OperatorPath,
    /// An ngrok operator endpoint URL's port.
    #[error(": `{port}` is not a port number")]
    OperatorPort { port: Quoted },
    /// An ngrok operator endpoint URL without a host (ngrok would assign one).
    #[error(
        " names no host; tlsgate serves the names you give it (ngrok's randomly assigned \
         addresses do not exist here)"
    )]
    AssignedHost,
}
