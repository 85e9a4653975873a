//! The scenario table's shape. Read with tlsgate's own YAML loader, so a typo in the table is
//! an error with a line number, like in a policy.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub certificates: BTreeMap<String, CertSpec>,
    /// Certificate revocation lists, written as NAME.crl (PEM) and NAME.der.crl (DER).
    #[serde(default)]
    pub crls: BTreeMap<String, CrlSpec>,
    /// OCSP responders (`openssl ocsp`) the run starts; NAME.url holds each one's URL.
    #[serde(default)]
    pub ocsp_responders: BTreeMap<String, OcspSpec>,
    pub policies: BTreeMap<String, Policy>,
    pub scenarios: Vec<Scenario>,
}

impl Table {
    pub fn load(path: &Path) -> Table {
        let text =
            std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let doc = tlsgate_core::source::parse(&text)
            .unwrap_or_else(|e| panic!("{}: {:?}: {}", path.display(), e.location, e.message));
        let table: Table = serde_path_to_error::deserialize(&doc.value)
            .unwrap_or_else(|e| panic!("{}: {}: {}", path.display(), e.path(), e.inner()));
        for s in &table.scenarios {
            assert!(
                table.policies.contains_key(&s.policy),
                "scenario `{}` names unknown policy `{}`",
                s.name,
                s.policy
            );
        }
        let mut names = std::collections::HashSet::new();
        for s in &table.scenarios {
            assert!(
                names.insert(&s.name),
                "scenario name `{}` is used twice",
                s.name
            );
        }
        table
    }
}

/// A certificate to make. Exactly one of `authority`, `client`, `server`, `self_signed`, or
/// `seed` (the seed document's openssl-made set) says what it is.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct CertSpec {
    /// A CA with this common name; with `issuer`, an intermediate.
    pub authority: Option<String>,
    /// A leaf for TLS clients with this common name (EKU clientAuth unless `eku` says otherwise).
    pub client: Option<String>,
    /// A leaf for TLS servers with these DNS names.
    pub server: Option<Vec<String>>,
    /// A self-signed client certificate with this common name.
    pub self_signed: Option<String>,
    /// The CA (another entry) that signs this one.
    pub issuer: Option<String>,
    /// A CA that is not a CA (basicConstraints CA=false) but signs anyway.
    #[serde(default)]
    pub not_a_ca: bool,
    pub organization: Option<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    #[serde(default)]
    pub uri: Vec<String>,
    /// `current` (default), `expired`, `not-yet-valid`, or a fixed window.
    pub validity: Option<ValiditySpec>,
    /// `client-auth`, `server-auth`; `[]` = no EKU extension.
    pub eku: Option<Vec<String>>,
    pub serial: Option<u64>,
    /// An OCSP responder of the table (`ocsp_responders`) the certificate names in its
    /// Authority Information Access; with it, NAME.bundle.crt holds the certificate and its
    /// issuer (what a server needs to staple).
    pub ocsp: Option<String>,
}

/// A real OCSP responder for an authority's certificates: `good` and `revoked` certificates
/// are in its database, any other is unknown to it. `signer` (another authority) signs the
/// answers instead of the issuer: a forgery, as the issuer delegated nothing.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OcspSpec {
    pub issuer: String,
    #[serde(default)]
    pub good: Vec<String>,
    #[serde(default)]
    pub revoked: Vec<String>,
    pub signer: Option<String>,
}

/// A CRL signed by an authority of the table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrlSpec {
    /// The authority (an entry with `authority`) that issues it.
    pub issuer: String,
    /// Certificate entries it revokes.
    #[serde(default)]
    pub revoke: Vec<String>,
    /// Seconds from now (negative: the past); default -60.
    #[serde(default = "default_this_update")]
    pub this_update: i64,
    /// Seconds from now; default a week.
    #[serde(default = "default_next_update")]
    pub next_update: i64,
    /// Signed by another key under the issuer's name: a forged CRL.
    #[serde(default)]
    pub forged: bool,
}

fn default_this_update() -> i64 {
    -60
}

fn default_next_update() -> i64 {
    7 * 24 * 3600
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ValiditySpec {
    Named(String),
    /// Seconds since the Unix epoch; for rules that compare dates, which must not move with
    /// the day the suite runs.
    Window {
        not_before: u64,
        not_after: u64,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// The policy file, with `{port}`, `{echo}`, `{mtls_upstream}`, `{dead}`, `{silent}` and
    /// `{stalling}` placeholders (see the table's header).
    pub text: String,
    /// Command-line arguments both hosts get (`--listen`, `--resolve`), with the same
    /// placeholders.
    #[serde(default)]
    pub args: Vec<String>,
    /// A request that must succeed; played after every raw-input scenario.
    pub health: Option<Client>,
}

#[derive(Debug, Deserialize, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// Certificate entry to present (its `.crt` and `.key`).
    pub cert: Option<String>,
    /// Present the leaf with its intermediates (default: the leaf alone).
    #[serde(default)]
    pub chain: bool,
    /// Key file to use instead of the certificate's own.
    pub key: Option<String>,
    /// CA file the client trusts (default `ca`).
    pub trust: Option<String>,
    /// `"1.2"` or `"1.3"`: the only version the client offers. `"1.0"`/`"1.1"` use openssl.
    pub tls: Option<String>,
    /// The only key-exchange groups the client offers (curl `--curves`, OpenSSL names such as
    /// `X25519:P-256`).
    pub curves: Option<String>,
    /// Server name to send; `none` sends no SNI (openssl).
    pub sni: Option<String>,
    /// `Host` header, when it differs from the SNI.
    pub host: Option<String>,
    pub path: Option<String>,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Raw input instead of a TLS client: `plain-http`, `random`, `half-hello`, `idle`,
    /// `half-proxy`.
    pub send: Option<String>,
    /// Connect from this loopback address (restrict-ips).
    pub from: Option<String>,
    /// Connect twice with openssl, offering the first session on the second connection:
    /// `resumed` or `handshake` (a full one).
    #[serde(default)]
    pub resume: bool,
    /// Speak HTTP/1.1 only (curl `--http1.1`).
    #[serde(default)]
    pub http1: bool,
    /// The request target as sent (curl `--request-target`), e.g. authority-form for CONNECT.
    pub target: Option<String>,
    /// Open a WebSocket (tests/conformance/ws_client.py) and send one message: the outcome is
    /// 101 with the echoed message as the body, or the status the upgrade was answered with.
    #[serde(default)]
    pub websocket: bool,
    /// The same over HTTP/2 (RFC 8441 extended CONNECT, tests/conformance/ws_h2_client.py), as
    /// browsers do when the server offers it; an opened stream reports 101 as well.
    #[serde(default)]
    pub websocket_h2: bool,
    /// Speak HTTP/2 and flood PING frames without reading the answers (client.rs
    /// `h2_ping_flood`): `closed` when the host cuts the connection, `hung` while it keeps
    /// taking them.
    #[serde(default)]
    pub h2_ping_flood: bool,
    /// Ask for the server's OCSP staple (openssl `-status`): `stapled` when a successful
    /// response saying `good` comes with the handshake, else `handshake`.
    #[serde(default)]
    pub ocsp_status: bool,
    /// Connect through an L4 load balancer (client.rs `Balancer`) that sends this PROXY
    /// protocol header to the host; `from` is then the balancer's address.
    pub proxy: Option<ProxyHeader>,
}

/// The header a scenario's load balancer sends: `{version: 1|2, source: "IP:PORT"}`;
/// `source: local` sends v2 LOCAL (a health check) or v1 UNKNOWN.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ProxyHeader {
    pub version: u8,
    pub source: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    pub policy: String,
    pub client: Client,
    pub expect: Expect,
    /// A documented difference: what Envoy does instead, and why.
    pub envoy: Option<Difference>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Difference {
    pub expect: Expect,
    pub reason: String,
}

/// `refused`, `closed`, `handshake`, a status number, or
/// `{status, upstream: {header: matcher}, body, path}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Expect {
    Status(u16),
    Class(String),
    /// The policy does not load: the host refuses to start with an error containing this text
    /// (`tlsgate run` natively, `tlsgate envoy-config` for Envoy). The client is not played.
    LoadError {
        load_error: String,
    },
    Detailed {
        status: u16,
        #[serde(default)]
        upstream: BTreeMap<String, Value>,
        #[serde(default)]
        body: Option<String>,
        /// The request target the upstream received.
        #[serde(default)]
        path: Option<String>,
        /// Text the host's access line for this request holds (the `log` action's fields).
        #[serde(default)]
        access_log: Option<String>,
    },
    /// An outcome without a status (`closed`, `refused`) and text the host's log then holds
    /// (the connection line of on_tcp_connect's `log` action).
    ClassLogged {
        outcome: String,
        access_log: String,
    },
}

impl Expect {
    /// What the host's log must show after the client ran, if anything.
    pub fn access_log(&self) -> Option<&str> {
        match self {
            Self::Detailed { access_log, .. } => access_log.as_deref(),
            Self::ClassLogged { access_log, .. } => Some(access_log),
            _ => None,
        }
    }

    pub fn summary(&self) -> String {
        match self {
            Self::Status(s) => s.to_string(),
            Self::Class(c) => c.clone(),
            Self::ClassLogged { outcome, .. } => format!("{outcome}, log line"),
            Self::LoadError { load_error } => format!("load error \"{load_error}\""),
            Self::Detailed {
                status,
                access_log: Some(_),
                ..
            } => format!("{status}, access line"),
            Self::Detailed {
                status, upstream, ..
            } if upstream.is_empty() => status.to_string(),
            Self::Detailed {
                status, upstream, ..
            } => format!(
                "{status}, upstream: {}",
                upstream.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }
    }
}

/// The ports of the upstreams a run provides.
#[derive(Debug, Clone, Copy)]
pub struct Ports {
    pub echo: u16,
    pub echo_proxied: u16,
    pub mtls: u16,
    pub mtls_proxied: u16,
    pub seed: u16,
    pub dead: u16,
    pub silent: u16,
    pub stalling: u16,
    pub resetting: u16,
    pub closing: u16,
}

/// A policy's text (or an argument) with its placeholders filled in (see the table's header).
pub fn render(text: &str, port: u16, ports: &Ports, dir: &Path) -> Result<String, String> {
    use base64::Engine as _;
    let echo = ports.echo;
    let mut out = text
        .replace("{port}", &port.to_string())
        .replace("{echo}", &format!("http://127.0.0.1:{echo}"))
        .replace("{echo_addr}", &format!("127.0.0.1:{echo}"))
        .replace("{echo_tcp}", &format!("tcp://127.0.0.1:{echo}"))
        .replace(
            "{echo_proxied}",
            &format!("http://127.0.0.1:{}", ports.echo_proxied),
        )
        .replace(
            "{echo_proxied_tcp}",
            &format!("tcp://127.0.0.1:{}", ports.echo_proxied),
        )
        .replace(
            "{mtls_upstream_proxied}",
            &format!("https://127.0.0.1:{}", ports.mtls_proxied),
        )
        .replace(
            "{mtls_upstream}",
            &format!("https://127.0.0.1:{}", ports.mtls),
        )
        .replace(
            "{seed_upstream}",
            &format!("https://127.0.0.1:{}", ports.seed),
        )
        .replace("{seed_upstream_addr}", &format!("127.0.0.1:{}", ports.seed))
        .replace("{dead}", &format!("http://127.0.0.1:{}", ports.dead))
        .replace("{silent}", &format!("http://127.0.0.1:{}", ports.silent))
        .replace(
            "{silent_tls}",
            &format!("https://127.0.0.1:{}", ports.silent),
        )
        .replace(
            "{resetting}",
            &format!("http://127.0.0.1:{}", ports.resetting),
        )
        .replace(
            "{stalling}",
            &format!("http://127.0.0.1:{}", ports.stalling),
        )
        .replace("{closing}", &format!("http://127.0.0.1:{}", ports.closing));
    for (tag, encode) in [
        (
            "{pem:",
            (|t: &str| serde_json::to_string(t).unwrap_or_default()) as fn(&str) -> String,
        ),
        ("{text:", |t: &str| t.trim().to_owned()),
        ("{b64:", |t: &str| {
            base64::engine::general_purpose::STANDARD.encode(t)
        }),
    ] {
        while let Some(start) = out.find(tag) {
            let end = out[start..]
                .find('}')
                .map(|e| start + e)
                .ok_or_else(|| format!("unclosed {tag}…}} placeholder"))?;
            let file = &out[start + tag.len()..end];
            let content = std::fs::read_to_string(dir.join(file))
                .map_err(|e| format!("{tag}{file}}}: {e}"))?;
            out.replace_range(start..=end, &encode(&content));
        }
    }
    Ok(out)
}
