//! The contract with Envoy: the names the generators write and the filter reads back, and the
//! variables Envoy cannot provide.

use crate::config::Endpoint;

use super::labels::Counter;

/// A `conn` variable Envoy gives the filter no attribute for.
#[derive(Debug, Clone, Copy)]
pub struct UnknownToEnvoy {
    pub variable: &'static str,
    /// Only the network filter lacks it (its HTTP filter has it): refused in `on_tcp_connect`
    /// rules only.
    pub network_filter_only: bool,
    pub why: &'static str,
}

/// The variables Envoy cannot provide, and why. The native host knows them; a policy that
/// reads one where Envoy lacks it is refused for Envoy (by `tlsgate envoy-config`, `tlsgate
/// istio` and the filter's own load) rather than evaluated as empty there.
pub const UNKNOWN_BEHIND_ENVOY: &[UnknownToEnvoy] = &[
    UnknownToEnvoy {
        variable: "conn.tls.cipher_suite",
        network_filter_only: false,
        why: "Envoy exposes no attribute for the negotiated cipher suite",
    },
    UnknownToEnvoy {
        variable: "conn.tls.session_resumed",
        network_filter_only: false,
        why: "Envoy exposes no attribute saying whether the TLS session was resumed",
    },
    UnknownToEnvoy {
        variable: "conn.tls.key_exchange_group",
        network_filter_only: false,
        why: "Envoy exposes no attribute for the negotiated key-exchange group",
    },
    UnknownToEnvoy {
        variable: crate::ja4::VARIABLE,
        network_filter_only: true,
        why: "Envoy's tls_inspector computes JA4 but gives network filters no attribute for it; \
              the generated configuration hands it to on_http_request rules",
    },
    UnknownToEnvoy {
        variable: "conn.tls.negotiated_alpn",
        network_filter_only: true,
        why: "Envoy gives network filters no ALPN attribute; on_http_request rules see it",
    },
];

/// Why Envoy cannot serve an endpoint as its policy says. Printed as
/// `endpoints[0] (https://a.test): upstream.proxy_protocol_tlvs: Envoy cannot …`; a generator
/// that names the endpoint itself uses [`Self::field`] and [`Self::reason`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsupportedBehindEnvoy {
    pub index: usize,
    pub url: String,
    /// The setting at fault; `None` for a rule (the endpoint's `traffic_policy`).
    pub field: Option<&'static str>,
    pub reason: String,
}

impl std::fmt::Display for UnsupportedBehindEnvoy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "endpoints[{}] ({}): ", self.index, self.url)?;
        if let Some(field) = self.field {
            write!(f, "{field}: ")?;
        }
        f.write_str(&self.reason)
    }
}

/// Why Envoy cannot serve `endpoint` as the policy says: a rule reads a variable Envoy cannot
/// provide there ([`UNKNOWN_BEHIND_ENVOY`]), or the upstream wants PROXY protocol TLVs.
pub fn unsupported_behind_envoy(endpoint: &Endpoint) -> Option<UnsupportedBehindEnvoy> {
    let refusal = |field, reason| UnsupportedBehindEnvoy {
        index: endpoint.index,
        url: endpoint.url.clone(),
        field,
        reason,
    };
    if endpoint.upstream.proxy_protocol_tlvs {
        return Some(refusal(
            Some("upstream.proxy_protocol_tlvs"),
            "Envoy cannot send them (its upstream PROXY protocol transport socket formats TLVs \
             from the upstream connection, not the client's, and none of its format strings \
             makes the binary SSL TLV); the native host (tlsgate run) sends them"
                .into(),
        ));
    }
    let unknown = UNKNOWN_BEHIND_ENVOY.iter().find(|u| {
        if u.network_filter_only {
            endpoint.reads_variable_on_tcp_connect(u.variable)
        } else {
            endpoint.reads_variable(u.variable)
        }
    })?;
    let rule = if unknown.network_filter_only {
        "an on_tcp_connect rule"
    } else {
        "a rule"
    };
    Some(refusal(
        None,
        format!(
            "{rule} reads {}, which Envoy cannot provide ({}); the native host (tlsgate run) \
             provides it",
            unknown.variable, unknown.why
        ),
    ))
}

/// The name an Envoy filter chain gets for endpoint `index`: the generator writes it, the filter
/// reads it back from `xds.filter_chain_name` to know which endpoint Envoy's SNI match chose.
pub fn filter_chain_name(index: usize) -> String {
    format!("tlsgate.endpoints[{index}]")
}

/// The Envoy cluster through which the filter asks endpoint `index`'s OCSP responder
/// (`mutual_tls_ocsp.responder`): the generator declares it, the filter dispatches to it.
pub fn ocsp_cluster_name(index: usize) -> String {
    format!("tlsgate_ocsp_{index}")
}

/// The Envoy cluster through which the filter asks the responder a client certificate names
/// itself (Authority Information Access), for endpoints whose `mutual_tls_ocsp` names none: a
/// dynamic forward proxy cluster, which resolves each responder's host as it is asked. Only a
/// certificate one of the endpoint's CAs signed gets that far, so the CA chooses the URL.
pub const OCSP_AIA_CLUSTER: &str = "tlsgate_ocsp_aia";

/// The endpoint index in a name written by [`filter_chain_name`]; `None` for any other name (a
/// chain Istio or a person named), so the filter routes by SNI instead.
pub fn endpoint_index(chain_name: &str) -> Option<usize> {
    chain_name
        .strip_prefix("tlsgate.endpoints[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The Envoy stat name under which the filter counts `counter` with label `values` (in the
/// order of [`Counter::labels`]): each label as `name=.=value;.;`, then the Prometheus name —
/// Istio's encoding for its own wasm stats. The bootstrap's [`envoy_stats_tags`] take the
/// labels out again, so Envoy's `/stats/prometheus` prints the native host's line, e.g.
/// `tlsgate_connections_total{endpoint="https://app.test",verdict="allow",reason="-"}`.
pub fn envoy_stat_name(counter: Counter, values: &[&str]) -> String {
    let mut name = String::new();
    for (label, value) in counter.labels().iter().zip(values) {
        name.push_str(label);
        name.push_str(TAG_SEPARATOR);
        // The encoding has no escape: a value holding the terminator would end early. (An
        // endpoint URL cannot hold `;`; reasons are identifiers.)
        name.push_str(&value.replace(TAG_TERMINATOR, "_._"));
        name.push_str(TAG_TERMINATOR);
    }
    name.push_str(&counter.prometheus_name());
    name
}

const TAG_SEPARATOR: &str = "=.=";
const TAG_TERMINATOR: &str = ";.;";

/// `stats_config.stats_tags` for the filter's stat names: for each label, the tag name and the
/// regex Envoy applies to every stat name (the first capture group is cut from the name, the
/// second is the label's value). The same regex Istio's bootstrap writes for a ProxyConfig
/// `extraStatTags` entry of that name.
pub fn envoy_stats_tags() -> Vec<(&'static str, String)> {
    let mut names: Vec<&'static str> = Vec::new();
    for counter in Counter::ALL {
        for label in counter.labels() {
            if !names.contains(label) {
                names.push(label);
            }
        }
    }
    names
        .into_iter()
        .map(|label| (label, format!(r"({label}=\.=(.*?);\.;)")))
        .collect()
}
