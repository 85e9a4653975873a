//! How a policy is loaded on this host, as opposed to what the policy says: the crypto checks
//! the host supplies ([`HostCrypto`], [`KeyMode`]), the material reader ([`LoadOptions`]) and
//! the command line's `--listen` / `--resolve` ([`Deployment`]).

use std::fmt;
use std::net::SocketAddr;

use crate::crypto::HostCrypto;
use crate::pem::MaterialReader;

/// What to do with private keys named in a policy.
#[derive(Clone, Copy)]
pub enum KeyMode<'a> {
    /// Load every key and check it against its certificate (native host, `tlsgate check`).
    Load(&'a dyn HostCrypto),
    /// Ignore keys: the host terminates TLS elsewhere (the proxy-wasm filter, where Envoy holds
    /// the keys). Certificates are still loaded for metadata and coverage checks.
    Skip,
}

impl fmt::Debug for KeyMode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Load(_) => "KeyMode::Load",
            Self::Skip => "KeyMode::Skip",
        })
    }
}

/// How a policy is loaded on this host.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions<'a> {
    pub reader: &'a dyn MaterialReader,
    pub keys: KeyMode<'a>,
    pub deployment: &'a Deployment,
}

/// What the command line says about the machine a policy runs on, as opposed to what the
/// policy says: Kubernetes manifests name ports and cluster Service names, which mean nothing
/// outside a cluster until they are mapped to local addresses. Both `tlsgate run` and
/// `tlsgate envoy-config` take the same flags, so both hosts listen and connect alike.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deployment {
    /// `--listen PORT=ADDR:PORT`: an endpoint a manifest puts on PORT listens on ADDR:PORT
    /// (default `0.0.0.0:PORT`). Policy files name their `bind` themselves.
    pub listen: Vec<Listen>,
    /// `--resolve NAME[.NAMESPACE]:PORT=ADDR:PORT` (curl's convention): an upstream named
    /// NAME:PORT is reached at ADDR:PORT; the name still goes in SNI and Host.
    pub resolve: Vec<Resolve>,
}

static NO_DEPLOYMENT: Deployment = Deployment {
    listen: Vec::new(),
    resolve: Vec::new(),
};

impl Deployment {
    /// No flags: manifests listen on `0.0.0.0:PORT`, upstream names are resolved by DNS.
    pub fn none() -> &'static Deployment {
        &NO_DEPLOYMENT
    }

    /// The `--resolve` entry for the upstream `host:port`.
    pub fn resolve_entry(&self, host: &str, port: u16) -> Option<&Resolve> {
        let host = cluster_name(host);
        self.resolve.iter().find(|r| {
            let name = cluster_name(&r.name);
            r.port == port
                && (name == host || (!name.contains('.') && host == format!("{name}.default")))
        })
    }

    /// Where an endpoint a manifest puts on `port` listens.
    pub fn bind_for(&self, port: u16) -> SocketAddr {
        self.listen
            .iter()
            .find(|l| l.port == port)
            .map(|l| l.address)
            .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], port)))
    }

    /// The address `--resolve` gives the upstream `host:port`. A name without a dot also
    /// matches the Service of that name in the `default` namespace (`example-service` and
    /// `example-service.default`), and the cluster suffix `.svc[.cluster.local]` is ignored.
    pub fn resolve_for(&self, host: &str, port: u16) -> Option<SocketAddr> {
        self.resolve_entry(host, port).map(|r| r.address)
    }
}

fn cluster_name(name: &str) -> String {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    for suffix in [".svc.cluster.local", ".svc"] {
        if let Some(short) = name.strip_suffix(suffix) {
            return short.to_owned();
        }
    }
    name
}

/// One `--listen PORT=ADDR:PORT`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen {
    pub port: u16,
    pub address: SocketAddr,
}

impl std::str::FromStr for Listen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{s}`: write PORT=ADDR:PORT, e.g. 443=127.0.0.1:8443 (the port the manifest \
                 names, then where to listen)"
            )
        };
        let (port, address) = s.split_once('=').ok_or_else(usage)?;
        Ok(Self {
            port: port.trim().parse().map_err(|_| usage())?,
            address: address.trim().parse().map_err(|_| usage())?,
        })
    }
}

/// One `--resolve NAME:PORT=ADDR:PORT`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolve {
    pub name: String,
    pub port: u16,
    pub address: SocketAddr,
}

impl std::str::FromStr for Resolve {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let usage = || {
            format!(
                "`{s}`: write NAME[.NAMESPACE]:PORT=ADDR:PORT, e.g. \
                 my-service.my-namespace:8080=127.0.0.1:9000"
            )
        };
        let (target, address) = s.split_once('=').ok_or_else(usage)?;
        let (name, port) = target.rsplit_once(':').ok_or_else(usage)?;
        if name.is_empty() {
            return Err(usage());
        }
        Ok(Self {
            name: name.to_owned(),
            port: port.parse().map_err(|_| usage())?,
            address: address.trim().parse().map_err(|_| usage())?,
        })
    }
}

impl fmt::Debug for dyn MaterialReader + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MaterialReader")
    }
}
