//! The Kubernetes families of [`ConfigErrorKind`](super::ConfigErrorKind): unsupported
//! features, missing fields, references that cannot be followed, Secret/ConfigMap data and
//! ngrok's forward-internal.

use crate::quoted::Quoted;

/// A feature or value of a Kubernetes resource kind that tlsgate does not implement. Refused,
/// not dropped: a manifest must not be served with less than it says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Unsupported {
    #[error(
        "per-port client certificate validation is not supported yet; put the validation on \
         the listener (tls.frontendValidation) or in spec.tls.frontend.default"
    )]
    PerPortValidation,
    #[error("mode {mode}: tlsgate terminates TLS (mode Terminate)")]
    TlsMode { mode: Quoted },
    #[error("tlsgate serves one certificate per listener; give each host its own listener")]
    CertificatePerListener,
    #[error("`{field}` cannot be set as a listener option: {instead}")]
    ListenerOption {
        field: Quoted,
        /// Where the setting comes from instead, or which options there are.
        instead: &'static str,
    },
    #[error("namespaces.from {from} is not supported; use Same or All")]
    NamespacesFrom { from: Quoted },
    #[error(
        "HTTPRoute filters are not supported yet; express header changes as add-headers / \
         remove-headers in a traffic policy"
    )]
    RouteFilters,
    #[error(
        "tlsgate sends each host to one upstream; splitting traffic by weight is not supported"
    )]
    WeightedBackends,
    #[error(
        "tlsgate routes by host and path; header, query and method matches are not supported \
         (a route must not serve more than it says)"
    )]
    RouteMatches,
    #[error("path type {found} is not supported; use PathPrefix or Exact")]
    PathType { found: Quoted },
    #[error(
        "is not supported yet: tlsgate checks the upstream's certificate against `hostname`; \
         remove subjectAltNames"
    )]
    SubjectAltNames,
    #[error(
        "tlsgate serves named hosts (the TLS server name picks the endpoint); give each host a \
         rule instead of a defaultBackend"
    )]
    DefaultBackend,
    #[error("tlsgate presents one client certificate to an upstream; remove `{name}`")]
    SecondClientCertificate { name: Quoted },
}

/// A field a Kubernetes resource needs to be served and does not have.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Missing {
    /// Printed at the field that needs it, e.g. `needs a port`.
    #[error("needs {0}")]
    Needs(&'static str),
    /// Printed at the field that does not have it, e.g. `has no http.paths`.
    #[error("has no {0}")]
    HasNo(&'static str),
    /// Printed at the missing field itself.
    #[error("is missing")]
    Field,
    #[error("this {kind} has no metadata.name; every resource needs one")]
    Name { kind: String },
    #[error("an HTTPS listener needs tls.certificateRefs")]
    ListenerTls,
    #[error(
        "neither this route nor listener {listener} of {gateway} names a host; tlsgate picks an \
         endpoint by TLS server name, so one of them must"
    )]
    RouteHost { listener: String, gateway: String },
    #[error("has no host; tlsgate picks an endpoint by TLS server name, so every rule names one")]
    RuleHost,
    #[error(
        "{host} has no certificate: name an NgrokTrafficPolicy with a terminate-tls action in \
         the annotation k8s.ngrok.com/traffic-policy, or list the host under spec.tls with a \
         kubernetes.io/tls Secret"
    )]
    Certificate { host: String },
    #[error(
        "give either caCertificateRefs or wellKnownCACertificates: System (one of them, as \
         Gateway API requires)"
    )]
    BackendAuthorities,
}

/// A reference from one resource to another that cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Reference {
    #[error(
        "refers to {kind} {namespace}/{name}, which is not in the files given ({}); add its \
         manifest{}",
        files.join(", "),
        match *kind {
            "Secret" => " (`kubectl create secret tls NAME --cert=… --key=… --dry-run=client \
                         -o yaml` writes one)",
            "ConfigMap" => " (`kubectl create configmap NAME --from-file=ca.crt \
                            --dry-run=client -o yaml` writes one)",
            _ => "",
        }
    )]
    NotFound {
        kind: &'static str,
        namespace: Quoted,
        name: Quoted,
        /// The files given, to look in.
        files: Vec<String>,
    },
    #[error(
        "refers to {kind} {namespace}/{name} in another namespace; that needs a ReferenceGrant \
         in namespace {namespace} allowing {from_kind} from namespace {from_namespace} (Gateway \
         API's rule for every cross-namespace reference)"
    )]
    NotGranted {
        kind: &'static str,
        namespace: Quoted,
        name: Quoted,
        from_kind: String,
        from_namespace: String,
    },
    #[error(
        "attaches to {gateway} from another namespace, but listener {listener} allows routes \
         from its own namespace only (allowedRoutes.namespaces.from: All would allow it)"
    )]
    RouteNamespace { gateway: String, listener: String },
    #[error("certificates come from a Secret, not {kind}")]
    CertificateKind { kind: Quoted },
    #[error("CA certificates come from a ConfigMap (key ca.crt), not a {kind}")]
    AuthorityKind { kind: Quoted },
    /// A backend that is not a Service (Gateway API's `kind`).
    #[error("tlsgate forwards to a Service")]
    BackendKind,
    /// An Ingress resource backend.
    #[error(
        "tlsgate forwards to a Service (backend.service); resource backends are not supported"
    )]
    ResourceBackend,
    #[error("Service {namespace}/{service} has no port named `{port}`")]
    NoSuchPort {
        namespace: String,
        service: Quoted,
        port: Quoted,
    },
}

/// A Secret's or ConfigMap's data that cannot be read as PEM text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ObjectData {
    #[error(
        "is of type {found}; a certificate and key come from a kubernetes.io/tls Secret \
         (`kubectl create secret tls`)"
    )]
    SecretType { found: Quoted },
    #[error("must be a string")]
    NotAString,
    #[error("is not base64 ({reason})")]
    NotBase64 { reason: String },
    #[error("does not decode to PEM text (tlsgate reads PEM, as kubectl writes it)")]
    NotText,
    #[error(
        "has no key `{key}` (it has: {})",
        if present.is_empty() { "none".to_owned() } else { present.join(", ") }
    )]
    NoKey {
        key: Quoted,
        /// The keys it has.
        present: Vec<String>,
    },
}

/// A CloudEndpoint's `forward-internal` to an internal AgentEndpoint that cannot be followed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardInternal {
    #[error(
        "a CloudEndpoint names no upstream: end its on_http_request with a rule whose action is \
         `forward-internal` to an internal AgentEndpoint (`config: {{url: https://NAME.internal}}`), \
         whose upstream tlsgate then uses"
    )]
    Absent,
    #[error(
        "on_http_request[{rule}]: tlsgate sends every request of an endpoint to one upstream, so \
         forward-internal must be the last action of the last rule, without expressions"
    )]
    NotLast { rule: usize },
    #[error("on_http_request[{rule}]: forward-internal needs config.url")]
    NoUrl { rule: usize },
    #[error(
        "forward-internal goes to `{url}`, but no AgentEndpoint in the files given has that \
         URL; add one with the upstream to reach"
    )]
    NoAgentEndpoint { url: Quoted },
}
