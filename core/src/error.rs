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
    Expression {
        expression: String,
        reason: crate::expr::CompileError,
    },
    /// A value of the wrong YAML/JSON type for the field.
    #[error("expected {expected}, found {found}")]
    WrongType {
        expected: &'static str,
        /// The value as JSON.
        found: String,
    },
    #[error(
        "write the version as a quoted string, \"{number}\" (unquoted YAML reads {number} as \
         a number)"
    )]
    UnquotedTlsVersion { number: String },
    /// A value outside a short closed set, named by what it should be.
    #[error("`{found}` is not {what}; {choices}")]
    NotOneOf {
        found: Quoted,
        /// e.g. `a TLS version`.
        what: &'static str,
        /// What to write instead, e.g. `use "1.2" or "1.3"`.
        choices: &'static str,
    },
    /// A keyword outside the set a field accepts.
    #[error("unknown {what} `{found}`; use {choices}")]
    UnknownChoice {
        /// e.g. `strategy`, `scheme`.
        what: &'static str,
        found: Quoted,
        choices: &'static str,
    },
    /// An action (or `restrict-ips`) without the configuration it cannot work without.
    #[error("{action} needs {needs}{hint}")]
    ActionNeeds {
        action: &'static str,
        needs: &'static str,
        hint: &'static str,
    },
    #[error("the list is empty; {hint}")]
    EmptyList {
        /// What leaving the field out does instead, or how to fill it.
        hint: &'static str,
    },
    /// A socket address, CIDR range or IP address that does not parse.
    #[error("`{value}` is not {expected}")]
    BadAddress {
        value: Quoted,
        expected: &'static str,
    },
    /// A duration that does not parse or is out of range.
    #[error("`{value}` is not {expected}")]
    BadDuration {
        value: Quoted,
        expected: &'static str,
    },
    /// A header or variable name with characters it cannot have.
    #[error("`{value}` is not {expected}")]
    BadName {
        value: Quoted,
        expected: &'static str,
    },
    #[error("`{found}` is not a key-exchange group tlsgate offers (one of {known})")]
    UnknownGroup { found: Quoted, known: String },
    #[error("no key-exchange group left: list at least one of {known}")]
    NoGroups { known: String },
    #[error("{item} is listed twice")]
    ListedTwice { item: String },
    #[error("a ticket key is a secret: give {how}, not the key itself")]
    InlineSecret { how: &'static str },
    #[error("{} holds {len} bytes; a ticket key is {how}", file.display())]
    TicketKeyLength {
        file: PathBuf,
        len: usize,
        how: &'static str,
    },
    #[error(
        "{subject} is revoked by its issuer's CRL ({issuer}); take it out of the list (a listed \
         CA is trusted as an anchor of its own, so its revocation would not be checked)"
    )]
    RevokedAuthority { subject: String, issuer: String },
    #[error("the value is neither PEM (`-----BEGIN …`) nor a file path")]
    NeitherPemNorPath,
    #[error("the certificate's public key cannot be read")]
    UnreadablePublicKey,
    /// A URL that does not parse or cannot be used where it is.
    #[error("`{url}`{problem}")]
    BadUrl { url: Quoted, problem: UrlProblem },
    #[error("{0}")]
    BadHost(crate::sni::HostError),
    #[error("{endpoint}: its upstream is {allowed}, not {found}://")]
    WrongUpstreamScheme {
        /// e.g. `an https endpoint proxies HTTP`.
        endpoint: &'static str,
        allowed: &'static str,
        found: Quoted,
    },
    /// Settings that contradict each other, or one that would do nothing where it is.
    #[error("{0}")]
    Conflict(Conflict),
    #[error(
        "the certificate ({subject}) names {} but the endpoint serves {host}: clients that \
         verify the name will refuse it",
        if names.is_empty() { "no host".to_owned() } else { names.join(", ") }
    )]
    CertificateName {
        subject: String,
        names: Vec<String>,
        host: String,
    },
    #[error(
        "no terminate-tls action: tlsgate needs the endpoint's certificate and key. Add \
         `- actions: [{{type: terminate-tls, config: {{server_certificate: …, \
         server_private_key: …}}}}]` to on_tcp_connect (`tlsgate certs` makes a set)"
    )]
    NoTerminateTls,
    #[error("a second terminate-tls action; the first is at {first}")]
    SecondTerminateTls { first: String },
    #[error("a rule needs at least one action")]
    NoActions,
    #[error(
        "a log key is letters, digits, `_`, `-` and `.` (it becomes `log.KEY=` in the access \
         line)"
    )]
    BadLogKey,
    #[error("a log value is a string (with ${{…}}), a number or a boolean")]
    BadLogValue,
    #[error("each entry is one variable, `- name: value` (a map with one key)")]
    BadVarEntry,
    #[error(
        "reads vars.{name}, which no earlier set-vars of {phase} sets (each phase has its own \
         variables, set in order)"
    )]
    UnsetVariable { name: String, phase: &'static str },
    #[error("{code} is not an HTTP status to answer with (200-599)")]
    BadStatus { code: u16 },
    #[error("`{name}` is managed by the proxy and cannot be set by a policy")]
    ProxyHeader { name: Quoted },
    #[error(
        "`{name}` is set by tlsgate itself (the verified client identity, the client's address \
         and the Host it asked for), so the upstream can trust it; pick another name for the \
         policy's header"
    )]
    EdgeHeader { name: Quoted },
    #[error("header values cannot contain CR, LF or NUL")]
    BadHeaderValue,
    #[error("the policy has no endpoints; add at least one under `endpoints:`")]
    NoEndpoints,
    #[error("the directory holds no *.yaml, *.yml or *.json file")]
    EmptyDirectory,
    #[error(
        "no endpoint of this file binds {bind}; a listeners: entry configures the bind address \
         of endpoints ({})",
        binds.join(", ")
    )]
    ListenerWithoutEndpoint { bind: String, binds: Vec<String> },
    #[error("{bind} has another listeners: entry above")]
    ListenerRepeated { bind: String },
    #[error(
        "{bind} is already configured in {}; a bind address has one listeners: entry",
        first.display()
    )]
    ListenerInTwoFiles { bind: String, first: PathBuf },
    #[error(
        "list the addresses (CIDRs) the load balancer connects from; a header from any other \
         source is refused"
    )]
    NoTrustedSources,
    #[error("{field} is empty")]
    Empty { field: &'static str },
    /// An error inside a Kubernetes resource, named as `kubectl` names it.
    #[error("{resource}: {inner}")]
    InResource {
        resource: String,
        inner: Box<ConfigErrorKind>,
    },
}

impl From<Conflict> for ConfigErrorKind {
    fn from(conflict: Conflict) -> Self {
        Self::Conflict(conflict)
    }
}

impl From<crate::sni::HostError> for ConfigErrorKind {
    fn from(error: crate::sni::HostError) -> Self {
        Self::BadHost(error)
    }
}

/// Settings that contradict each other, or a setting that would do nothing where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Conflict {
    #[error(
        "`{url}` is a tls:// endpoint: it proxies bytes, so there are no HTTP requests to apply \
         on_http_request to; use an https:// endpoint"
    )]
    HttpRulesOnTlsEndpoint { url: Quoted },
    #[error(
        "terminate-tls cannot depend on expressions: TLS is terminated before any connection \
         fact is known; move it to a rule without expressions"
    )]
    TerminateTlsBehindExpression,
    #[error(
        "a verification strategy without mutual_tls_certificate_authorities does nothing: list \
         the CAs that issue your client certificates"
    )]
    StrategyWithoutAuthorities,
    #[error(
        "{field} has no effect with session_resumption: false (no session resumes); remove one \
         of them"
    )]
    WithoutResumption { field: &'static str },
    #[error(
        "X25519MLKEM768 is a TLS 1.3 group, and this endpoint admits TLS 1.2 clients: list a \
         classical group too (X25519, P-256, P-384) or set min_version: \"1.3\""
    )]
    PostQuantumOnlyWithTls12,
    #[error("protocol applies to HTTP upstreams; a tls endpoint has none")]
    ProtocolOnTlsEndpoint,
    #[error(
        "`{url}` is not encrypted, so upstream tls settings would do nothing; use https:// (or \
         tls://) to connect with TLS"
    )]
    UpstreamTlsUnencrypted { url: Quoted },
    #[error("TLVs exist in PROXY protocol version 2 only; set proxy_protocol: 2 beside it")]
    TlvsWithoutVersion2,
    #[error(
        "{url} shares {bind} with {other}, which has another scheme; https and tls \
         endpoints need their own bind addresses"
    )]
    SchemesShareBind {
        url: String,
        bind: String,
        /// The endpoint with the other scheme, named as [`ConfigErrorKind::DuplicateHost`]
        /// names it: `endpoints[0]` in the same file, `https://a.test in b.yaml` in another.
        other: String,
    },
}

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
}

/// A value from the policy as an error quotes it. A value that is long, spans lines or holds
/// PEM is probably material pasted into the wrong field — a private key among them — so it is
/// replaced by its length when the error is made: the error (its `Debug` too) still says what
/// was wrong and where, never what the key is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted(String);

impl Quoted {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn new(value: &str) -> Self {
        if shown_as_length(value) {
            Self(format!("<{} bytes, not shown>", value.len()))
        } else {
            Self(value.to_owned())
        }
    }
}

impl From<&str> for Quoted {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

impl From<&String> for Quoted {
    fn from(value: &String) -> Self {
        Self::new(value)
    }
}

impl From<String> for Quoted {
    fn from(value: String) -> Self {
        Self::new(&value)
    }
}

impl fmt::Display for Quoted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for Quoted {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Quoted {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

fn shown_as_length(value: &str) -> bool {
    value.len() > 200 || value.contains('\n') || value.contains("-----BEGIN")
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
        if quoted && shown_as_length(part) {
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

    #[test]
    fn quoted_values_do_not_keep_pasted_material() {
        let key = "-----BEGIN PRIVATE KEY-----\nMIIEsecret\n-----END PRIVATE KEY-----";
        let kind = ConfigErrorKind::BadAddress {
            value: key.into(),
            expected: "an address",
        };
        for shown in [kind.to_string(), format!("{kind:?}")] {
            assert!(!shown.contains("MIIEsecret"), "{shown}");
            assert!(shown.contains("bytes, not shown"), "{shown}");
        }
        let plain = ConfigErrorKind::BadAddress {
            value: "127.0.0.1:x".into(),
            expected: "an address",
        };
        assert_eq!(plain.to_string(), "`127.0.0.1:x` is not an address");
    }
}
