//! URLs as a policy writes them (`scheme://host[:port][/…]`): `parse_url`, and what is
//! wrong with one ([`UrlProblem`], the `problem` of
//! [`ConfigErrorKind::BadUrl`](crate::error::ConfigErrorKind::BadUrl)).

use crate::quoted::Quoted;

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

/// `scheme://host[:port][/…]`, with `[v6]` hosts.
pub(crate) struct ParsedUrl {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) path: String,
}

pub(crate) fn parse_url(url: &str) -> Result<ParsedUrl, UrlProblem> {
    let (scheme, rest) = url.split_once("://").ok_or(UrlProblem::NoScheme)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.contains('@') {
        return Err(UrlProblem::Credentials);
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or(UrlProblem::UnclosedBracket)?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => {
                return Err(UrlProblem::AfterHost {
                    after: after.into(),
                })
            }
        };
        (h.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(UrlProblem::NoHost);
    }
    let port = port
        .map(|p| {
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| UrlProblem::BadPort { port: p.into() })
        })
        .transpose()?;
    Ok(ParsedUrl {
        scheme: scheme.to_ascii_lowercase(),
        host,
        port,
        path: path.to_owned(),
    })
}

impl ParsedUrl {
    pub(crate) fn scheme(&self) -> &str {
        &self.scheme
    }

    pub(crate) fn host(&self) -> &str {
        &self.host
    }

    pub(crate) fn port(&self) -> Option<u16> {
        self.port
    }

    pub(crate) fn path(&self) -> &str {
        &self.path
    }
}
