//! Load-time errors: what was wrong, where (file, field path, line) and what would be right.

use std::fmt;
use std::path::PathBuf;

use crate::pem::PemError;
use crate::source::{FieldPath, Location};

mod conflict;
mod kube;

pub use crate::quoted::Quoted;
pub use crate::url::UrlProblem;
pub use conflict::Conflict;
pub use kube::{ForwardInternal, Missing, ObjectData, Reference, Unsupported};

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
    #[error(
        "TLS {0} is not supported: versions below 1.2 are insecure and no longer accepted \
         (ngrok dropped them in 2025); use \"1.2\" or \"1.3\""
    )]
    ObsoleteTlsVersion(String),
    #[error(
        "min_version {min} is above max_version {max}; lower min_version or raise max_version"
    )]
    VersionRange { min: String, max: String },
    #[error(
        "the private key does not match the certificate {subject}: \
         use the key that was generated with this certificate's request ({reason})"
    )]
    KeyMismatch { subject: String, reason: String },
    /// Certificate or key material that cannot be read as what it should be.
    #[error("{0}")]
    Pem(PemError),
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
    /// A manifest file's document that is not a Kubernetes resource.
    #[error(
        "a Kubernetes resource needs `apiVersion` and `kind` (and a tlsgate policy file cannot \
         be mixed with manifests in one file)"
    )]
    NotAManifest,
    /// A resource (group, kind, namespace and name) given a second time.
    #[error("defined twice (first at {first}); keep one")]
    DefinedTwice {
        /// `file:line` of the first definition (or the file).
        first: String,
    },
    #[error(
        "the manifests describe no endpoint: tlsgate serves AgentEndpoint, CloudEndpoint, \
         Ingress (class ngrok or tlsgate) and Gateway HTTPS listeners with an HTTPRoute{}",
        if skipped.is_empty() { String::new() } else { format!("; {}", skipped.join("; ")) }
    )]
    NoManifestEndpoints {
        /// What was skipped and why (the notes, which are not printed when loading fails).
        skipped: Vec<String>,
    },
    /// A feature or value of a Kubernetes resource kind that tlsgate does not implement.
    #[error("{0}")]
    Unsupported(Unsupported),
    /// A field a Kubernetes resource needs to be served and does not have.
    #[error("{0}")]
    Missing(Missing),
    /// A reference from one resource to another that cannot be followed.
    #[error("{0}")]
    Reference(Reference),
    /// A Secret's or ConfigMap's data that cannot be read.
    #[error("{0}")]
    ObjectData(ObjectData),
    /// A CloudEndpoint's `forward-internal` to an internal AgentEndpoint that cannot be followed.
    #[error("{0}")]
    ForwardInternal(ForwardInternal),
    /// A route path with characters a match cannot hold.
    #[error(
        "`{path}` is not a path tlsgate can match: it starts with / and holds only letters, \
         digits and -._~%!$&()*+,;=:@"
    )]
    BadPath { path: Quoted },
    /// A host routed to two Services (tlsgate sends each host to one upstream).
    #[error(
        "{host} already goes to Service {service}:{port}; tlsgate sends each host to one \
         upstream, so give this backend its own {instead}"
    )]
    HostHasService {
        host: String,
        /// `name.namespace` (Gateway API) or `name` (Ingress).
        service: String,
        port: u16,
        /// `host name` or `host`.
        instead: &'static str,
    },
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

macro_rules! kind_from {
    ($($family:ident),*) => {$(
        impl From<$family> for ConfigErrorKind {
            fn from(error: $family) -> Self {
                Self::$family(error)
            }
        }
    )*};
}

kind_from!(Unsupported, Missing, Reference, ObjectData, ForwardInternal);

/// A file that cannot be read is [`ConfigErrorKind::Unreadable`], whoever read it; the rest of
/// the material's problems are [`ConfigErrorKind::Pem`].
impl From<PemError> for ConfigErrorKind {
    fn from(error: PemError) -> Self {
        match error {
            PemError::Unreadable { path, reason } => Self::Unreadable { path, reason },
            error => Self::Pem(error),
        }
    }
}

impl From<crate::sni::HostError> for ConfigErrorKind {
    fn from(error: crate::sni::HostError) -> Self {
        Self::BadHost(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
