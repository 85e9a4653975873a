//! [`PolicyBuilder`]: the policy documents tests hand to `tlsgate`, built from types instead of
//! pasted, indented YAML.

use std::path::Path;

use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

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

/// One entry of `endpoints:`.
///
/// Its terminate-tls step, if any, is written as the first rule of `on_tcp_connect`, before
/// the rules added with [`Endpoint::on_tcp_connect`], as every test policy has it.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    url: String,
    bind: Option<String>,
    upstream: Option<Upstream>,
    terminate_tls: Option<TerminateTls>,
    on_tcp_connect: Vec<Rule>,
    on_http_request: Vec<Rule>,
}

impl Endpoint {
    /// An endpoint with this `url` (`https://host`, `tls://host`, ...).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            bind: None,
            upstream: None,
            terminate_tls: None,
            on_tcp_connect: Vec::new(),
            on_http_request: Vec::new(),
        }
    }

    /// `url: https://<host>`.
    pub fn https(host: &str) -> Self {
        Self::new(format!("https://{host}"))
    }

    /// `url: tls://<host>`: TLS terminated, the bytes proxied as they are.
    pub fn tls(host: &str) -> Self {
        Self::new(format!("tls://{host}"))
    }

    /// `bind: <addr>`, e.g. `127.0.0.1:8443`.
    pub fn bind(mut self, addr: impl Into<String>) -> Self {
        self.bind = Some(addr.into());
        self
    }

    /// `bind: 127.0.0.1:<port>`.
    pub fn on_loopback(self, port: u16) -> Self {
        self.bind(format!("127.0.0.1:{port}"))
    }

    /// `upstream:`, from an [`Upstream`] or just its URL.
    pub fn upstream(mut self, upstream: impl Into<Upstream>) -> Self {
        self.upstream = Some(upstream.into());
        self
    }

    /// The terminate-tls step, the first rule of `on_tcp_connect`.
    pub fn terminate_tls(mut self, tls: TerminateTls) -> Self {
        self.terminate_tls = Some(tls);
        self
    }

    /// Adds a rule to `on_tcp_connect` (after the terminate-tls step).
    pub fn on_tcp_connect(mut self, rule: Rule) -> Self {
        self.on_tcp_connect.push(rule);
        self
    }

    /// Adds a rule to `on_http_request`.
    pub fn on_http_request(mut self, rule: Rule) -> Self {
        self.on_http_request.push(rule);
        self
    }

    /// Adds these rules to `on_http_request`.
    pub fn on_http_requests(mut self, rules: impl IntoIterator<Item = Rule>) -> Self {
        self.on_http_request.extend(rules);
        self
    }

    fn to_value(&self) -> Yaml {
        let mut endpoint = Map::new();
        endpoint.set("url", self.url.as_str());
        if let Some(bind) = &self.bind {
            endpoint.set("bind", bind.as_str());
        }
        if let Some(upstream) = &self.upstream {
            endpoint.set("upstream", upstream.to_value());
        }
        let mut on_tcp_connect: Vec<Yaml> = Vec::new();
        if let Some(tls) = &self.terminate_tls {
            on_tcp_connect.push(Rule::new().then_raw(tls.to_action()).to_value());
        }
        on_tcp_connect.extend(self.on_tcp_connect.iter().map(Rule::to_value));
        let mut traffic_policy = Map::new();
        if !on_tcp_connect.is_empty() {
            traffic_policy.set("on_tcp_connect", Yaml::Array(on_tcp_connect));
        }
        if !self.on_http_request.is_empty() {
            traffic_policy.set(
                "on_http_request",
                Yaml::Array(self.on_http_request.iter().map(Rule::to_value).collect()),
            );
        }
        if !traffic_policy.is_empty() {
            endpoint.set("traffic_policy", traffic_policy);
        }
        endpoint.into()
    }
}

/// An endpoint's `upstream:`.
#[derive(Debug, Clone, PartialEq)]
pub struct Upstream {
    url: String,
    protocol: Option<String>,
    proxy_protocol: Option<u8>,
    tls: Option<UpstreamTls>,
}

impl Upstream {
    /// `url: <url>` (`http://…`, `https://…`, `tcp://…`, `tls://…`).
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            protocol: None,
            proxy_protocol: None,
            tls: None,
        }
    }

    /// `protocol: http2`.
    pub fn http2(mut self) -> Self {
        self.protocol = Some("http2".to_owned());
        self
    }

    /// `proxy_protocol: <version>`: send a PROXY protocol header (1 or 2) first.
    pub fn proxy_protocol(mut self, version: u8) -> Self {
        self.proxy_protocol = Some(version);
        self
    }

    /// `tls:`, how to check the upstream's certificate and what to present to it.
    pub fn tls(mut self, tls: UpstreamTls) -> Self {
        self.tls = Some(tls);
        self
    }

    fn to_value(&self) -> Yaml {
        let mut upstream = Map::new();
        upstream.set("url", self.url.as_str());
        if let Some(protocol) = &self.protocol {
            upstream.set("protocol", protocol.as_str());
        }
        if let Some(version) = self.proxy_protocol {
            upstream.set("proxy_protocol", Yaml::Integer(version.into()));
        }
        if let Some(tls) = &self.tls {
            upstream.set("tls", tls.to_value());
        }
        upstream.into()
    }
}

impl From<&str> for Upstream {
    fn from(url: &str) -> Self {
        Self::new(url)
    }
}

impl From<String> for Upstream {
    fn from(url: String) -> Self {
        Self::new(url)
    }
}

impl From<&String> for Upstream {
    fn from(url: &String) -> Self {
        Self::new(url.as_str())
    }
}

/// An upstream's `tls:` block. Keys are written in the order they were set.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UpstreamTls {
    fields: Map,
}

impl UpstreamTls {
    /// An empty `tls:` block (the system's trust store, no client certificate).
    pub fn new() -> Self {
        Self::default()
    }

    /// `server_name:` the name to send as SNI and to verify.
    pub fn server_name(mut self, name: &str) -> Self {
        self.fields.set("server_name", name);
        self
    }

    /// Adds a file to `certificate_authorities`.
    pub fn certificate_authority(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .push_to("certificate_authorities", path_value(file.as_ref()));
        self
    }

    /// `client_certificate: { certificate, private_key }`, presented to the upstream.
    pub fn client_certificate(mut self, cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        let mut pair = Map::new();
        pair.set("certificate", path_value(cert.as_ref()));
        pair.set("private_key", path_value(key.as_ref()));
        self.fields.set("client_certificate", pair);
        self
    }

    /// Adds a file to `pinned_certificates`.
    pub fn pinned_certificate(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .push_to("pinned_certificates", path_value(file.as_ref()));
        self
    }

    fn to_value(&self) -> Yaml {
        self.fields.clone().into()
    }
}

/// A client-certificate verification strategy (`mutual_tls_verification_strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// `request`: ask for a certificate, admit without one or with one that does not verify.
    Request,
    /// `require-any`: require a certificate, verified or not.
    RequireAny,
    /// `verify-if-given`: admit without one, verify one that is given.
    VerifyIfGiven,
    /// `require-and-verify`: require a certificate the endpoint's CAs signed.
    RequireAndVerify,
}

impl Verification {
    /// The name the policy language uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Verification::Request => "request",
            Verification::RequireAny => "require-any",
            Verification::VerifyIfGiven => "verify-if-given",
            Verification::RequireAndVerify => "require-and-verify",
        }
    }
}

/// The `config:` of a terminate-tls action. Keys are written in the order they were set.
///
/// File fields take paths, relative (to the policy file) or absolute; [`TerminateTls::inline_pem`]
/// puts PEM text in their place.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TerminateTls {
    fields: Map,
}

impl TerminateTls {
    /// An empty config (tlsgate refuses one without a certificate and key: set them).
    pub fn new() -> Self {
        Self::default()
    }

    /// `server_certificate: <file>` then `server_private_key: <file>`, the usual pair.
    pub fn files(cert: impl AsRef<Path>, key: impl AsRef<Path>) -> Self {
        Self::new().server_certificate(cert).server_private_key(key)
    }

    /// `server_certificate: <file>`.
    pub fn server_certificate(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .set("server_certificate", path_value(file.as_ref()));
        self
    }

    /// `server_private_key: <file>`.
    pub fn server_private_key(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .set("server_private_key", path_value(file.as_ref()));
        self
    }

    /// `server_certificate` and `server_private_key` as PEM text instead of files.
    pub fn inline_pem(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.fields.set("server_certificate", cert_pem);
        self.fields.set("server_private_key", key_pem);
        self
    }

    /// `min_version:` `"1.2"` or `"1.3"` (always a quoted string, as the policy requires).
    pub fn min_version(mut self, version: &str) -> Self {
        self.fields.set("min_version", version);
        self
    }

    /// `max_version:` `"1.2"` or `"1.3"`.
    pub fn max_version(mut self, version: &str) -> Self {
        self.fields.set("max_version", version);
        self
    }

    /// Adds a file to `mutual_tls_certificate_authorities`: ask for client certificates.
    pub fn client_ca(mut self, file: impl AsRef<Path>) -> Self {
        self.fields.push_to(
            "mutual_tls_certificate_authorities",
            path_value(file.as_ref()),
        );
        self
    }

    /// Adds PEM text to `mutual_tls_certificate_authorities`.
    pub fn client_ca_pem(mut self, pem: &str) -> Self {
        self.fields
            .push_to("mutual_tls_certificate_authorities", pem.into_yaml());
        self
    }

    /// `mutual_tls_verification_strategy:`.
    pub fn verification(mut self, strategy: Verification) -> Self {
        self.fields
            .set("mutual_tls_verification_strategy", strategy.as_str());
        self
    }

    /// Adds a file to `mutual_tls_certificate_revocation_lists`.
    pub fn client_crl(mut self, file: impl AsRef<Path>) -> Self {
        self.fields.push_to(
            "mutual_tls_certificate_revocation_lists",
            path_value(file.as_ref()),
        );
        self
    }

    /// `mutual_tls_revocation_check:` (`leaf`, `chain`).
    pub fn revocation_check(mut self, scope: &str) -> Self {
        self.fields.set("mutual_tls_revocation_check", scope);
        self
    }

    /// `mutual_tls_ocsp:`, how to ask about client certificates' revocation.
    pub fn client_ocsp(mut self, ocsp: Ocsp) -> Self {
        self.fields.set("mutual_tls_ocsp", ocsp.fields);
        self
    }

    /// Adds a file to `session_ticket_keys`.
    pub fn session_ticket_key(mut self, file: impl AsRef<Path>) -> Self {
        self.fields
            .push_to("session_ticket_keys", path_value(file.as_ref()));
        self
    }

    /// `session_lifetime:` a duration such as `1h`.
    pub fn session_lifetime(mut self, lifetime: &str) -> Self {
        self.fields.set("session_lifetime", lifetime);
        self
    }

    fn to_action(&self) -> Yaml {
        let mut action = Map::new();
        action.set("type", "terminate-tls");
        action.set("config", self.fields.clone());
        action.into()
    }
}

/// A terminate-tls `mutual_tls_ocsp:` block. Keys are written in the order they were set.
#[derive(Debug, Clone, PartialEq)]
pub struct Ocsp {
    fields: Map,
}

impl Ocsp {
    /// `mode:` (`prefer`, `require`).
    pub fn new(mode: &str) -> Self {
        let mut fields = Map::new();
        fields.set("mode", mode);
        Self { fields }
    }

    /// `responder:` the URL to ask instead of the one certificates name.
    pub fn responder(mut self, url: &str) -> Self {
        self.fields.set("responder", url);
        self
    }

    /// `timeout:` a duration such as `2s`.
    pub fn timeout(mut self, timeout: &str) -> Self {
        self.fields.set("timeout", timeout);
        self
    }
}

/// One rule of a phase: an optional name, expressions that must all hold, and actions.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rule {
    name: Option<String>,
    expressions: Vec<String>,
    actions: Vec<Yaml>,
}

impl Rule {
    /// A rule with no expressions (it always applies) and no actions yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `name:`.
    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    /// Adds a CEL expression to `expressions`.
    pub fn when(mut self, expression: &str) -> Self {
        self.expressions.push(expression.to_owned());
        self
    }

    /// Adds an action.
    pub fn then(self, action: Action) -> Self {
        self.then_raw(action.to_value())
    }

    fn then_raw(mut self, action: Yaml) -> Self {
        self.actions.push(action);
        self
    }

    fn to_value(&self) -> Yaml {
        let mut rule = Map::new();
        if let Some(name) = &self.name {
            rule.set("name", name.as_str());
        }
        if !self.expressions.is_empty() {
            rule.set(
                "expressions",
                Yaml::Array(
                    self.expressions
                        .iter()
                        .map(|e| Yaml::String(e.clone()))
                        .collect(),
                ),
            );
        }
        rule.set("actions", Yaml::Array(self.actions.clone()));
        rule.into()
    }
}

/// An action of a rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// `type: deny`, with `config: { status_code }` when one is given.
    Deny {
        /// The HTTP status of the refusal (on_http_request only).
        status_code: Option<u16>,
    },
    /// `type: custom-response`: answer without the upstream.
    CustomResponse {
        /// `status_code`
        status_code: u16,
        /// `body`
        body: String,
        /// `headers`, in order.
        headers: Vec<(String, String)>,
    },
    /// `type: add-headers`: headers for the upstream (values may use `${…}`).
    AddHeaders(Vec<(String, String)>),
}

impl Action {
    /// `{ type: deny }`.
    pub fn deny() -> Self {
        Action::Deny { status_code: None }
    }

    /// `{ type: deny, config: { status_code } }`.
    pub fn deny_with(status_code: u16) -> Self {
        Action::Deny {
            status_code: Some(status_code),
        }
    }

    /// `{ type: custom-response, config: { status_code, body } }`; add headers with
    /// [`Action::header`].
    pub fn custom_response(status_code: u16, body: &str) -> Self {
        Action::CustomResponse {
            status_code,
            body: body.to_owned(),
            headers: Vec::new(),
        }
    }

    /// `{ type: add-headers, config: { headers } }`.
    pub fn add_headers(headers: &[(&str, &str)]) -> Self {
        Action::AddHeaders(
            headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        )
    }

    /// Adds a header to a custom response or to add-headers; a deny has none (panics).
    pub fn header(mut self, name: &str, value: &str) -> Self {
        match &mut self {
            Action::CustomResponse { headers, .. } | Action::AddHeaders(headers) => {
                headers.push((name.to_owned(), value.to_owned()));
            }
            Action::Deny { .. } => panic!("a deny action has no headers"),
        }
        self
    }

    fn to_value(&self) -> Yaml {
        let headers_value = |headers: &[(String, String)]| {
            let mut map = Map::new();
            for (name, value) in headers {
                map.set(name, value.as_str());
            }
            map
        };
        let mut action = Map::new();
        let mut config = Map::new();
        match self {
            Action::Deny { status_code } => {
                action.set("type", "deny");
                if let Some(code) = status_code {
                    config.set("status_code", Yaml::Integer((*code).into()));
                }
            }
            Action::CustomResponse {
                status_code,
                body,
                headers,
            } => {
                action.set("type", "custom-response");
                config.set("status_code", Yaml::Integer((*status_code).into()));
                config.set("body", body.as_str());
                if !headers.is_empty() {
                    config.set("headers", headers_value(headers));
                }
            }
            Action::AddHeaders(headers) => {
                action.set("type", "add-headers");
                config.set("headers", headers_value(headers));
            }
        }
        if !config.is_empty() {
            action.set("config", config);
        }
        action.into()
    }
}

/// A path as the string a policy holds.
fn path_value(path: &Path) -> Yaml {
    Yaml::String(path.display().to_string())
}

/// A YAML mapping that keeps its keys in the order they were first set.
#[derive(Debug, Clone, Default, PartialEq)]
struct Map(Hash);

impl Map {
    fn new() -> Self {
        Self::default()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `key`, keeping its place if it was set before.
    fn set(&mut self, key: &str, value: impl IntoYaml) {
        let key = Yaml::String(key.to_owned());
        let value = value.into_yaml();
        match self.0.get_mut(&key) {
            Some(slot) => *slot = value,
            None => {
                self.0.insert(key, value);
            }
        }
    }

    /// Appends `value` to the list under `key`, creating it.
    fn push_to(&mut self, key: &str, value: Yaml) {
        let key = Yaml::String(key.to_owned());
        match self.0.get_mut(&key) {
            Some(Yaml::Array(items)) => items.push(value),
            _ => {
                self.0.insert(key, Yaml::Array(vec![value]));
            }
        }
    }
}

impl From<Map> for Yaml {
    fn from(map: Map) -> Self {
        Yaml::Hash(map.0)
    }
}

/// What [`Map::set`] takes: a YAML value, a string or a nested map.
trait IntoYaml {
    fn into_yaml(self) -> Yaml;
}

impl IntoYaml for Yaml {
    fn into_yaml(self) -> Yaml {
        self
    }
}

impl IntoYaml for &str {
    fn into_yaml(self) -> Yaml {
        Yaml::String(self.to_owned())
    }
}

impl IntoYaml for Map {
    fn into_yaml(self) -> Yaml {
        self.into()
    }
}

fn strings(items: &[String]) -> Yaml {
    Yaml::Array(items.iter().map(|s| Yaml::String(s.clone())).collect())
}

#[cfg(test)]
mod tests {
    use yaml_rust2::YamlLoader;

    use super::*;

    fn parse(text: &str) -> Yaml {
        let mut docs = YamlLoader::load_from_str(text)
            .unwrap_or_else(|e| panic!("the emitted policy does not parse ({e}):\n{text}"));
        assert_eq!(docs.len(), 1, "{text}");
        docs.remove(0)
    }

    #[test]
    fn the_seed_policy_keeps_the_hand_written_layout() {
        let yaml = crate::seed_policy("127.0.0.1:8443", "http://127.0.0.1:8080");
        assert_eq!(
            yaml,
            r#"endpoints:
  - url: "https://terminate-tls-example.ngrok.app"
    bind: "127.0.0.1:8443"
    upstream:
      url: "http://127.0.0.1:8080"
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: "1.3"
                max_version: "1.3"
                server_private_key: server.key
                server_certificate: server.crt
                mutual_tls_certificate_authorities:
                  - ca.crt
        - expressions:
            - "conn.tls.client.subject.common_name != 'ExampleClient'"
          actions:
            - type: deny
"#
        );
    }

    #[test]
    fn values_that_plain_yaml_would_change_are_quoted_and_read_back_unchanged() {
        let awkward_dir = "/tmp/a dir: with #hash/and 'quotes\"";
        let cert = format!("{awkward_dir}/server.crt");
        let expression = "!('Engineering' in conn.tls.client.subject.organizational_unit)";
        let yaml = PolicyBuilder::new()
            .endpoint(
                Endpoint::https("*.apps.example.com")
                    .on_loopback(8443)
                    .upstream(Upstream::new("http://127.0.0.1:8080").http2())
                    .terminate_tls(
                        TerminateTls::files(&cert, "yes")
                            .min_version("1.3")
                            .session_lifetime("1h"),
                    )
                    .on_tcp_connect(
                        Rule::new()
                            .named("engineering only")
                            .when(expression)
                            .then(Action::deny()),
                    )
                    .on_http_request(Rule::new().then(Action::add_headers(&[
                        ("x-client-cn", "${conn.tls.client.subject.common_name}"),
                        ("x-null", "null"),
                        ("x-number", "018"),
                    ]))),
            )
            .to_yaml();
        let doc = parse(&yaml);
        let endpoint = &doc["endpoints"][0];
        assert_eq!(endpoint["url"].as_str(), Some("https://*.apps.example.com"));
        assert_eq!(endpoint["bind"].as_str(), Some("127.0.0.1:8443"));
        assert_eq!(endpoint["upstream"]["protocol"].as_str(), Some("http2"));
        let tcp = &endpoint["traffic_policy"]["on_tcp_connect"];
        let config = &tcp[0]["actions"][0]["config"];
        assert_eq!(config["server_certificate"].as_str(), Some(cert.as_str()));
        assert_eq!(config["server_private_key"].as_str(), Some("yes"));
        // A version is a string: unquoted, 1.3 would be a float and the policy refuses it.
        assert_eq!(config["min_version"].as_str(), Some("1.3"), "{yaml}");
        assert!(yaml.contains("min_version: \"1.3\"\n"), "{yaml}");
        assert_eq!(tcp[1]["name"].as_str(), Some("engineering only"));
        assert_eq!(tcp[1]["expressions"][0].as_str(), Some(expression));
        let headers =
            &endpoint["traffic_policy"]["on_http_request"][0]["actions"][0]["config"]["headers"];
        assert_eq!(
            headers["x-client-cn"].as_str(),
            Some("${conn.tls.client.subject.common_name}")
        );
        assert_eq!(headers["x-null"].as_str(), Some("null"), "{yaml}");
        assert_eq!(headers["x-number"].as_str(), Some("018"), "{yaml}");
    }

    #[test]
    fn inline_pem_round_trips_exactly() {
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n  indented\n-----END CERTIFICATE-----\n";
        let yaml = PolicyBuilder::new()
            .endpoint(
                Endpoint::tls("tcp.example.com")
                    .upstream("tcp://127.0.0.1:9000")
                    .terminate_tls(TerminateTls::new().inline_pem(pem, pem).client_ca_pem(pem)),
            )
            .to_yaml();
        let doc = parse(&yaml);
        let config =
            &doc["endpoints"][0]["traffic_policy"]["on_tcp_connect"][0]["actions"][0]["config"];
        assert_eq!(config["server_certificate"].as_str(), Some(pem));
        assert_eq!(config["server_private_key"].as_str(), Some(pem));
        assert_eq!(
            config["mutual_tls_certificate_authorities"][0].as_str(),
            Some(pem)
        );
    }

    #[test]
    fn keys_keep_the_order_they_were_first_set_in() {
        let tls = TerminateTls::new()
            .server_private_key("a.key")
            .server_certificate("a.crt")
            .client_ca("one.crt")
            .server_private_key("b.key")
            .client_ca("two.crt");
        let yaml = emit(&tls.to_action());
        assert_eq!(
            yaml,
            "type: terminate-tls\nconfig:\n  server_private_key: b.key\n  server_certificate: \
             a.crt\n  mutual_tls_certificate_authorities:\n    - one.crt\n    - two.crt\n"
        );
    }

    #[test]
    fn upstream_tls_listeners_and_every_action_are_written() {
        let yaml = PolicyBuilder::new()
            .endpoint(
                Endpoint::https("front.test")
                    .upstream(
                        Upstream::new("https://127.0.0.1:9443")
                            .proxy_protocol(2)
                            .tls(
                                UpstreamTls::new()
                                    .server_name("inner.test")
                                    .certificate_authority("ca.crt")
                                    .client_certificate("client.crt", "client.key")
                                    .pinned_certificate("server.crt"),
                            ),
                    )
                    .on_http_requests([
                        Rule::new()
                            .when("req.path == '/x'")
                            .then(Action::deny_with(403)),
                        Rule::new().then(
                            Action::custom_response(418, "short and stout")
                                .header("x-kind", "teapot"),
                        ),
                    ]),
            )
            .proxy_protocol_listener("127.0.0.1:8443", &["10.0.0.0/8"])
            .to_yaml();
        assert_eq!(
            yaml,
            r#"endpoints:
  - url: "https://front.test"
    upstream:
      url: "https://127.0.0.1:9443"
      proxy_protocol: 2
      tls:
        server_name: inner.test
        certificate_authorities:
          - ca.crt
        client_certificate:
          certificate: client.crt
          private_key: client.key
        pinned_certificates:
          - server.crt
    traffic_policy:
      on_http_request:
        - expressions:
            - "req.path == '/x'"
          actions:
            - type: deny
              config:
                status_code: 403
        - actions:
            - type: custom-response
              config:
                status_code: 418
                body: short and stout
                headers:
                  x-kind: teapot
listeners:
  - bind: "127.0.0.1:8443"
    proxy_protocol:
      trusted_sources:
        - 10.0.0.0/8
"#
        );
        parse(&yaml);
    }

    #[test]
    #[should_panic(expected = "a deny action has no headers")]
    fn a_deny_with_a_header_is_a_mistake_in_the_test() {
        let _ = Action::deny().header("x", "y");
    }
}
