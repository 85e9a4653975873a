//! Load-time errors: what was wrong, where (file, field path, line) and what would be right.

use std::fmt;
use std::path::PathBuf;

use crate::source::{FieldPath, Location};

/// A policy that cannot be loaded. Printed as
/// `policy.yaml:12:9: endpoints[0]...min_version: TLS 1.1 is not supported; use "1.2" or "1.3"`.
#[derive(Debug, Clone)]
pub struct ConfigError {
    /// The policy file, or `None` for a policy given inline (the proxy-wasm plugin config).
    pub file: Option<PathBuf>,
    pub path: FieldPath,
    pub location: Option<Location>,
    pub kind: Box<ConfigErrorKind>,
}

impl ConfigError {
    pub(crate) fn new(path: FieldPath, kind: ConfigErrorKind) -> Self {
        Self {
            file: None,
            path,
            location: None,
            kind: Box::new(kind),
        }
    }
}

impl ConfigError {
    /// An error about a whole file (no field, no line).
    pub(crate) fn in_file(file: &std::path::Path, kind: ConfigErrorKind) -> Self {
        Self {
            file: Some(file.to_path_buf()),
            path: FieldPath::root(),
            location: None,
            kind: Box::new(kind),
        }
    }

    /// A file or directory that cannot be read.
    pub(crate) fn unreadable(file: &std::path::Path, error: &std::io::Error) -> Self {
        Self::in_file(
            file,
            ConfigErrorKind::Unreadable {
                path: file.to_path_buf(),
                reason: error.to_string(),
            },
        )
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("<policy>")?,
        }
        if let Some(location) = self.location {
            write!(f, ":{location}")?;
        }
        if !self.path.is_root() {
            write!(f, ": {}", self.path)?;
        }
        write!(f, ": {}", self.kind)
    }
}

impl std::error::Error for ConfigError {}

/// Every way a policy can be wrong. Messages end with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigErrorKind {
    /// The text is not YAML or JSON.
    #[error("{0}")]
    Syntax(String),
    /// The document does not have the policy's shape (unknown field, wrong type, missing field).
    #[error("{0}")]
    Shape(String),
    #[error("cannot read {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("{0}")]
    InvalidValue(String),
    #[error(
        "TLS {0} is not supported: versions below 1.2 are insecure and no longer accepted \
         (ngrok dropped them in 2025); use \"1.2\" or \"1.3\""
    )]
    ObsoleteTlsVersion(String),
    #[error(
        "min_version {min} is above max_version {max}; lower min_version or raise max_version"
    )]
    VersionRange { min: String, max: String },
    #[error("{what} holds no PEM `{label}` block{hint}")]
    NoPem {
        what: &'static str,
        label: &'static str,
        hint: &'static str,
    },
    #[error("{what} is not valid PEM: {reason}")]
    BadPem { what: &'static str, reason: String },
    #[error("certificate #{index} in {what} cannot be parsed: {reason}")]
    BadCertificate {
        what: &'static str,
        /// Position in the PEM value or file, counting from 1.
        index: usize,
        reason: String,
    },
    #[error(
        "the private key does not match the certificate {subject}: \
         use the key that was generated with this certificate's request ({reason})"
    )]
    KeyMismatch { subject: String, reason: String },
    #[error(
        "{subject} is not a CA certificate (basicConstraints CA=true is missing): \
         list the certificate of the authority that issued your clients, not a client certificate"
    )]
    NotACa { subject: String },
    #[error("{reason}")]
    BadRevocationList { reason: String },
    #[error(
        "the CRL of {issuer} is not from any of this endpoint's CAs ({authorities}): list the \
         CRL each CA in mutual_tls_certificate_authorities publishes"
    )]
    RevocationListIssuer { issuer: String, authorities: String },
    #[error(
        "the CRL of {issuer} is not signed by that CA's key ({reason}): a forged or corrupted CRL"
    )]
    RevocationListSignature { issuer: String, reason: String },
    #[error(
        "the CRL of {issuer} expired at {next_update} (its nextUpdate): fetch a current one \
         from the CA; an expired CRL says nothing about certificates revoked since"
    )]
    RevocationListExpired { issuer: String, next_update: String },
    #[error(
        "the CA {authority} has no CRL in the list: every certificate it issued would be \
         refused as of unknown revocation status; add its CRL"
    )]
    MissingRevocationList { authority: String },
    #[error("{present} is set but {missing} is not: set both or neither")]
    Incomplete {
        present: &'static str,
        missing: &'static str,
    },
    #[error(
        "{host} on {bind} is already served by {other}: \
         give each endpoint its own host or bind address"
    )]
    DuplicateHost {
        host: String,
        bind: String,
        /// The endpoint that claimed it first, e.g. `endpoints[0]` or `endpoints[0] in a.yaml`.
        other: String,
    },
    #[error("unknown action type `{found}` in {phase}; {phase} accepts {allowed}")]
    UnknownAction {
        found: String,
        phase: &'static str,
        allowed: &'static str,
    },
    #[error("`{found}` is an ngrok action tlsgate does not implement; {phase} accepts {allowed}")]
    UnsupportedAction {
        found: String,
        phase: &'static str,
        allowed: &'static str,
    },
    #[error("expression `{expression}`: {reason}")]
    Expression { expression: String, reason: String },
    /// An error inside a Kubernetes resource, named as `kubectl` names it.
    #[error("{resource}: {inner}")]
    InResource {
        resource: String,
        inner: Box<ConfigErrorKind>,
    },
}

pub(crate) fn invalid(message: impl Into<String>) -> ConfigErrorKind {
    ConfigErrorKind::InvalidValue(redact_quoted(message.into()))
}

/// Messages quote the offending value in backticks. A value that is long, spans lines or holds
/// PEM is probably material pasted into the wrong field — a private key among them — so it is
/// replaced by its length: the error still says what was wrong and where, never what the key is.
fn redact_quoted(message: String) -> String {
    let parts: Vec<&str> = message.split('`').collect();
    if parts.len() < 3 {
        return message;
    }
    let mut out = String::with_capacity(message.len());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            out.push('`');
        }
        // Odd parts are inside backticks (a trailing unmatched one is left alone).
        let quoted = i % 2 == 1 && i + 1 < parts.len();
        if quoted && (part.len() > 200 || part.contains('\n') || part.contains("-----BEGIN")) {
            out.push_str(&format!("<{} bytes, not shown>", part.len()));
        } else {
            out.push_str(part);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pasted_material_is_not_echoed() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEsecret\n-----END PRIVATE KEY-----";
        let shown = invalid(format!("`{key}` is not an address to listen on")).to_string();
        assert!(!shown.contains("MIIEsecret"), "{shown}");
        assert!(shown.contains("bytes, not shown"), "{shown}");
        let plain = invalid("`127.0.0.1:x` is not an address").to_string();
        assert_eq!(plain, "`127.0.0.1:x` is not an address");
    }
}
