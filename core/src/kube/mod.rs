//! Kubernetes manifests as policy: the resources ngrok's operator reads (`AgentEndpoint`,
//! `CloudEndpoint`, `NgrokTrafficPolicy` + `Ingress`, `Gateway` + `HTTPRoute`, with their
//! `Secret`s, `ConfigMap`s, `BackendTLSPolicy` and `ReferenceGrant`s), turned into the same
//! endpoints a tlsgate policy file describes.
//!
//! The translation writes each endpoint as a tlsgate policy endpoint (a [`crate::raw::RawEndpoint`]
//! value) and hands it to the one loader, so a manifest is validated, compiled and enforced by
//! exactly the code a policy file is. What it keeps besides is a map from every part of that
//! endpoint back to the resource and field it came from: an error anywhere (a bad CEL
//! expression inside an inline traffic policy, a key that does not match its certificate in a
//! Secret) names the manifest file, its line and the resource's own field path.

use std::path::PathBuf;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::config::Deployment;
use crate::error::{ConfigError, ConfigErrorKind, Missing, ObjectData, Reference, UrlProblem};
use crate::source::{Document, FieldPath, Segment};

mod gateway;
mod ingress;
mod ngrok;
mod refs;

const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";
const NGROK_GROUP: &str = "ngrok.k8s.ngrok.com";
/// Ingress and Gateway classes tlsgate serves; a resource of another class is someone else's.
const CLASSES: [&str; 2] = ["ngrok", "tlsgate"];

/// Whether a parsed document is a Kubernetes resource rather than a tlsgate policy.
pub(crate) fn is_manifest(value: &Value) -> bool {
    value.get("apiVersion").is_some_and(Value::is_string)
        && value.get("kind").is_some_and(Value::is_string)
}

/// One resource, where it was written, and what it says.
#[derive(Debug)]
pub(crate) struct Resource {
    pub file: PathBuf,
    pub doc: Arc<Document>,
    /// Where the object sits in its document (`items[2]` inside a `kind: List`).
    pub root: FieldPath,
    /// API group (`""` for the core group: Secret, ConfigMap, Service).
    pub group: String,
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub value: Value,
}

impl Resource {
    /// `AgentEndpoint default/example`, as kubectl names it.
    pub fn label(&self) -> String {
        format!("{} {}/{}", self.kind, self.namespace, self.name)
    }

    fn full_path(&self, path: &FieldPath) -> FieldPath {
        let mut full = self.root.clone();
        for segment in path.segments() {
            full.push(segment.clone());
        }
        full
    }

    /// An error at `path` inside this resource, with its file and line.
    pub fn error(&self, path: &FieldPath, kind: impl Into<ConfigErrorKind>) -> ConfigError {
        let full = self.full_path(path);
        ConfigError {
            file: Some(self.file.clone()),
            location: self.doc.locate(&full),
            path: full,
            kind: Box::new(ConfigErrorKind::InResource {
                resource: self.label(),
                inner: Box::new(kind.into()),
            }),
        }
    }

    /// `spec`, deserialized into the shape tlsgate reads (fields it does not read are
    /// ignored, as the API server would keep them).
    pub fn spec<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let spec = self.value.get("spec").cloned().unwrap_or(json!({}));
        crate::config::deserialize(&spec, FieldPath::root().key("spec"))
            .map_err(|e| self.error(&e.path, *e.kind))
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.value
            .pointer("/metadata/annotations")
            .and_then(|a| a.get(key))
            .and_then(Value::as_str)
    }

    fn is(&self, group: &str, kind: &str) -> bool {
        self.group == group && self.kind == kind
    }
}

/// Reads the resources of one document (a `kind: List` gives its items). Kinds tlsgate does
/// not read are noted and skipped.
pub(crate) fn collect(
    file: &std::path::Path,
    doc: Document,
    out: &mut Vec<Resource>,
) -> Result<(), ConfigError> {
    let doc = Arc::new(doc);
    let mut objects = vec![(FieldPath::root(), doc.value.clone())];
    if doc.value.get("kind").and_then(Value::as_str) == Some("List") {
        let items = doc.value.get("items").and_then(Value::as_array);
        objects = items
            .map(|items| {
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (FieldPath::root().key("items").index(i), v.clone()))
                    .collect()
            })
            .unwrap_or_default();
    }
    for (root, value) in objects {
        let at = |path: &FieldPath, kind: ConfigErrorKind| {
            let mut full = root.clone();
            for segment in path.segments() {
                full.push(segment.clone());
            }
            ConfigError {
                file: Some(file.to_path_buf()),
                location: doc.locate(&full),
                path: full,
                kind: Box::new(kind),
            }
        };
        if !is_manifest(&value) {
            return Err(at(&FieldPath::root(), ConfigErrorKind::NotAManifest));
        }
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let group = match api_version.rsplit_once('/') {
            Some((group, _)) => group.to_owned(),
            None => String::new(),
        };
        let kind = value["kind"].as_str().unwrap_or_default().to_owned();
        let name = value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                at(
                    &FieldPath::root().key("metadata"),
                    Missing::Name { kind: kind.clone() }.into(),
                )
            })?
            .to_owned();
        let namespace = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .unwrap_or("default")
            .to_owned();
        let resource = Resource {
            file: file.to_path_buf(),
            doc: Arc::clone(&doc),
            root,
            group,
            kind,
            namespace,
            name,
            value,
        };
        if let Some(other) = out.iter().find(|r| {
            r.group == resource.group
                && r.kind == resource.kind
                && r.namespace == resource.namespace
                && r.name == resource.name
        }) {
            let first = match other.doc.locate(&other.root) {
                Some(l) => format!("{}:{}", other.file.display(), l.line),
                None => other.file.display().to_string(),
            };
            return Err(resource.error(
                &FieldPath::root().key("metadata").key("name"),
                ConfigErrorKind::DefinedTwice { first },
            ));
        }
        out.push(resource);
    }
    Ok(())
}

/// One endpoint made from manifests: a tlsgate policy endpoint, and where each part of it was
/// written.
#[derive(Debug)]
pub(crate) struct Synth {
    pub value: Value,
    /// The resource the endpoint is named after (its file is the endpoint's file).
    pub primary: usize,
    /// (path inside `value`, resource, path inside the resource): longest prefix wins.
    map: Vec<(FieldPath, usize, FieldPath)>,
}

impl Synth {
    fn new(primary: usize) -> Self {
        Self {
            value: json!({}),
            primary,
            map: Vec::new(),
        }
    }

    /// Records that `at` (a path in the endpoint) came from `path` in `resource`.
    fn from(&mut self, at: FieldPath, resource: usize, path: FieldPath) {
        self.map.push((at, resource, path));
    }

    /// Every resource that went into the endpoint, by index: the primary one first.
    pub fn parts(&self) -> Vec<usize> {
        let mut parts = vec![self.primary];
        for (_, resource, _) in &self.map {
            if !parts.contains(resource) {
                parts.push(*resource);
            }
        }
        parts
    }

    /// Re-addresses an error found in the endpoint to the manifest that caused it.
    pub fn locate(&self, error: ConfigError, resources: &[Resource]) -> ConfigError {
        let segments = error.path.segments();
        let best = self
            .map
            .iter()
            .filter(|(at, _, _)| segments.starts_with(at.segments()))
            .max_by_key(|(at, _, _)| at.segments().len());
        let (resource, path) = match best {
            Some((at, resource, path)) => {
                let mut path = path.clone();
                for segment in &segments[at.segments().len()..] {
                    path.push(segment.clone());
                }
                (&resources[*resource], path)
            }
            None => (&resources[self.primary], FieldPath::root()),
        };
        resource.error(&path, *error.kind)
    }
}

/// The manifests given, indexed for lookups by kind, namespace and name.
pub(crate) struct Manifests<'a> {
    pub resources: &'a [Resource],
    pub deployment: &'a Deployment,
    pub notes: Vec<String>,
}

impl<'a> Manifests<'a> {
    pub fn new(resources: &'a [Resource], deployment: &'a Deployment) -> Self {
        Self {
            resources,
            deployment,
            notes: Vec::new(),
        }
    }

    /// Every endpoint the manifests describe, in the order their resources were given.
    pub fn endpoints(&mut self) -> Result<Vec<Synth>, ConfigError> {
        let mut out = Vec::new();
        let resources = self.resources;
        for (i, r) in resources.iter().enumerate() {
            match (r.group.as_str(), r.kind.as_str()) {
                (NGROK_GROUP, "AgentEndpoint") => {
                    if let Some(synth) = ngrok::agent_endpoint(self, i)? {
                        out.push(synth);
                    }
                }
                (NGROK_GROUP, "CloudEndpoint") => out.push(ngrok::cloud_endpoint(self, i)?),
                ("networking.k8s.io", "Ingress") => out.extend(ingress::endpoints(self, i)?),
                (GATEWAY_GROUP, "Gateway") => out.extend(gateway::endpoints(self, i)?),
                // Read when something refers to them.
                (NGROK_GROUP, "NgrokTrafficPolicy")
                | ("", "Secret" | "ConfigMap" | "Service")
                | (GATEWAY_GROUP, "HTTPRoute" | "ReferenceGrant" | "BackendTLSPolicy")
                | (GATEWAY_GROUP, "GatewayClass") => {}
                _ => self.notes.push(format!(
                    "skipped {} ({}): tlsgate reads AgentEndpoint, CloudEndpoint, Ingress, \
                     Gateway and what they refer to",
                    r.label(),
                    r.file.display()
                )),
            }
        }
        if let (true, Some(first)) = (out.is_empty(), resources.first()) {
            // The notes are not printed when loading fails, so the error carries them.
            return Err(ConfigError::in_file(
                &first.file,
                ConfigErrorKind::NoManifestEndpoints {
                    skipped: self.notes.clone(),
                },
            ));
        }
        Ok(out)
    }
}

/// A value read from a resource, and where in that resource it was written.
pub(crate) type Located = (String, FieldPath);

/// `{name, namespace?, kind?, group?}`, the shape of most references.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct ObjectRef {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub group: Option<String>,
}

/// Whether a traffic policy value holds a terminate-tls action.
pub(crate) fn has_terminate_tls(policy: &Value) -> bool {
    policy
        .get("on_tcp_connect")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|rule| rule.get("actions").and_then(Value::as_array))
        .flatten()
        .any(|a| a.get("type").and_then(Value::as_str) == Some("terminate-tls"))
}

/// One path a route serves: `Exact` or `Prefix` (Kubernetes' element-wise prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathMatch {
    Exact(String),
    Prefix(String),
}

impl PathMatch {
    /// Checks a path a manifest gives, so it can be written into a CEL string literal.
    pub fn new(exact: bool, path: &str) -> Result<Self, ConfigErrorKind> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || "/-._~%!$&()*+,;=:@".contains(c);
        if !path.starts_with('/') || !path.chars().all(allowed) {
            return Err(ConfigErrorKind::BadPath { path: path.into() });
        }
        Ok(if exact {
            Self::Exact(path.to_owned())
        } else {
            Self::Prefix(path.trim_end_matches('/').to_owned())
        })
    }

    fn cel(&self) -> String {
        match self {
            Self::Exact(p) => format!("req.path == '{p}'"),
            Self::Prefix(p) if p.is_empty() => "true".to_owned(),
            Self::Prefix(p) => format!("(req.path == '{p}' || req.path.startsWith('{p}/'))"),
        }
    }
}

/// Routing after the policy, as ngrok's operator does: a request for a path no route serves
/// gets 404. Nothing is added when a route serves every path.
pub(crate) fn unrouted_paths_rule(paths: &[PathMatch]) -> Option<Value> {
    if paths.iter().any(|p| *p == PathMatch::Prefix(String::new())) {
        return None;
    }
    let served: Vec<String> = paths.iter().map(PathMatch::cel).collect();
    Some(json!({
        "name": "no route serves this path",
        "expressions": [format!("!({})", served.join(" || "))],
        "actions": [{"type": "deny", "config": {"status_code": 404}}],
    }))
}

/// An endpoint URL as the operator reads it (`https://host[:port]`, `tls://host:port` or a
/// bare domain) → (scheme, host, port).
pub(crate) fn endpoint_url(url: &str) -> Result<(&'static str, String, u16), ConfigErrorKind> {
    let bad = |problem| ConfigErrorKind::BadUrl {
        url: url.into(),
        problem,
    };
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("https".to_owned(), url),
    };
    let scheme = match scheme.as_str() {
        "https" => "https",
        "tls" => "tls",
        "http" | "tcp" => return Err(bad(UrlProblem::OperatorPlainEndpoint)),
        other => {
            return Err(bad(UrlProblem::UnknownScheme {
                scheme: other.into(),
            }))
        }
    };
    let authority = rest.trim_end_matches('/');
    if authority.contains('/') {
        return Err(bad(UrlProblem::OperatorPath));
    }
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (
            host,
            port.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| bad(UrlProblem::OperatorPort { port: port.into() }))?,
        ),
        None => (authority, 443),
    };
    if host.is_empty() {
        return Err(bad(UrlProblem::AssignedHost));
    }
    Ok((scheme, host.to_ascii_lowercase(), port))
}

/// Joins path segments under a prefix.
pub(crate) fn path(segments: &[&str]) -> FieldPath {
    let mut p = FieldPath::root();
    for s in segments {
        p.push(match s.parse::<usize>() {
            Ok(i) => Segment::Index(i),
            Err(_) => Segment::Key((*s).to_owned()),
        });
    }
    p
}

/// The tlsgate policy endpoint as a value, with the fields every kind sets.
pub(crate) fn endpoint_value(
    deployment: &Deployment,
    scheme: &str,
    host: &str,
    port: u16,
    upstream: Value,
    traffic_policy: Value,
) -> Value {
    let mut endpoint = Map::new();
    endpoint.insert("url".into(), json!(format!("{scheme}://{host}")));
    endpoint.insert("bind".into(), json!(deployment.bind_for(port).to_string()));
    endpoint.insert("upstream".into(), upstream);
    endpoint.insert("traffic_policy".into(), traffic_policy);
    Value::Object(endpoint)
}
