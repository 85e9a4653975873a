//! Endpoints and their upstreams: [`Endpoint`], [`Upstream`], [`UpstreamTls`].

use super::*;

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

    pub(super) fn to_value(&self) -> Yaml {
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

    pub(super) fn to_value(&self) -> Yaml {
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

    pub(super) fn to_value(&self) -> Yaml {
        self.fields.clone().into()
    }
}
