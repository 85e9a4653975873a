//! [`PolicyBuilder`]: the policy documents tests hand to `tlsgate`, built from types instead of
//! pasted, indented YAML.

use std::path::Path;

use yaml_rust2::{Yaml, YamlEmitter};

mod endpoint;
mod rules;
#[cfg(test)]
mod tests;
mod tls;
mod yaml;

pub use endpoint::{Endpoint, Upstream, UpstreamTls};
pub use rules::{Action, Rule};
pub use tls::{Ocsp, TerminateTls, Verification};
use yaml::{path_value, strings, IntoYaml, Map};

/// A tlsgate policy document for a test, written out with [`PolicyBuilder::to_yaml`].
///
/// What it is for: the end-to-end tests start `tlsgate run`, `tlsgate envoy-config`,
/// `tlsgate check` and friends on policies that differ in a few fields (a port, a CA, a
/// strategy, a rule). Writing each one as indented YAML in a `format!` string made every test
/// own a copy of the layout, with values pasted in unquoted (a path with a `:` or a `#`, or
/// `"1.3"` losing its quotes, quietly changes the document). Here each field is a method and
/// every value is quoted by a YAML emitter when it needs to be, so a test says only what it
/// sets. It covers what the tests use (endpoints with terminate-tls, client CAs and
/// strategies, versions, tickets, CRLs, OCSP, rules with deny / custom-response / add-headers,
/// upstreams with TLS, PROXY protocol listeners), not the whole policy language: a test that
/// needs something else adds a method here, or writes that one document by hand (a document
/// that must be broken, for instance).
///
/// The layout is the one the tests used to write by hand (two spaces, `- ` for list items, keys
/// in the order they were set), so line and column numbers in `tlsgate check`'s messages are
/// predictable.
///
/// ```
/// use tlsgate_test_support::{Action, Endpoint, PolicyBuilder, Rule, TerminateTls, Verification};
///
/// let yaml = PolicyBuilder::new()
///     .endpoint(
///         Endpoint::https("app.example.com")
///             .bind("127.0.0.1:8443")
///             .upstream("http://127.0.0.1:8080")
///             .terminate_tls(
///                 TerminateTls::new()
///                     .server_certificate("server.crt")
///                     .server_private_key("server.key")
///                     .client_ca("ca.crt")
///                     .verification(Verification::RequireAndVerify),
///             )
///             .on_http_request(Rule::new().when("req.path.startsWith('/admin')").then(Action::deny())),
///     )
///     .to_yaml();
/// assert!(yaml.starts_with("endpoints:\n  - url: \"https://app.example.com\"\n"));
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyBuilder {
    endpoints: Vec<Endpoint>,
    listeners: Vec<Listener>,
}

impl PolicyBuilder {
    /// A document with no endpoints yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an endpoint (after those already added).
    pub fn endpoint(mut self, endpoint: Endpoint) -> Self {
        self.endpoints.push(endpoint);
        self
    }

    /// Adds a `listeners:` entry for `bind` that accepts a PROXY protocol header from
    /// `trusted_sources` (CIDRs).
    pub fn proxy_protocol_listener(mut self, bind: &str, trusted_sources: &[&str]) -> Self {
        self.listeners.push(Listener {
            bind: bind.to_owned(),
            trusted_sources: trusted_sources.iter().map(|s| (*s).to_owned()).collect(),
        });
        self
    }

    /// The document as a YAML value.
    pub fn to_value(&self) -> Yaml {
        let mut doc = Map::new();
        doc.set(
            "endpoints",
            Yaml::Array(self.endpoints.iter().map(Endpoint::to_value).collect()),
        );
        if !self.listeners.is_empty() {
            doc.set(
                "listeners",
                Yaml::Array(self.listeners.iter().map(Listener::to_value).collect()),
            );
        }
        doc.into()
    }

    /// The document as YAML text, every string quoted where YAML needs it, ending in a newline.
    pub fn to_yaml(&self) -> String {
        emit(&self.to_value())
    }
}

/// YAML text for `value`, without the `---` document marker, ending in a newline.
///
/// Strings that a plain scalar would change (numbers such as `"1.3"`, `true`, `null`, anything
/// with `: `, `#`, `{`, quotes, a leading `!` or `*`, line breaks) are written double-quoted
/// with escapes; multi-line strings too, so they round-trip exactly.
pub fn emit(value: &Yaml) -> String {
    let mut out = String::new();
    YamlEmitter::new(&mut out)
        .dump(value)
        .unwrap_or_else(|e| panic!("emitting a test policy: {e}"));
    let mut text = out.strip_prefix("---\n").map(str::to_owned).unwrap_or(out);
    text.push('\n');
    text
}

#[derive(Debug, Clone, PartialEq)]
struct Listener {
    bind: String,
    trusted_sources: Vec<String>,
}

impl Listener {
    fn to_value(&self) -> Yaml {
        let mut proxy = Map::new();
        proxy.set("trusted_sources", strings(&self.trusted_sources));
        let mut listener = Map::new();
        listener.set("bind", self.bind.as_str());
        listener.set("proxy_protocol", proxy);
        listener.into()
    }
}
