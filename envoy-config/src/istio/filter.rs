//! The filter in the gateway: `tlsgate_filter.wasm` loaded twice by `WasmPlugin`s, in its
//! network and HTTP roles, and the `EnvoyFilter` that adds the clusters its OCSP requests go
//! through.

use std::collections::BTreeMap;

use tlsgate_core::Config;
use yaml_rust2::Yaml;

use super::resources::*;
use super::Options;
use crate::{HTTP_ROOT_ID, NETWORK_ROOT_ID};

/// The two WasmPlugins, network then HTTP, with the filter policy as `pluginConfig`.
pub(super) fn wasm_plugins(
    config: &Config,
    options: &Options,
    sha256: &Option<String>,
    metadata: &impl Fn(String) -> Metadata,
) -> (Resource<WasmPluginSpec>, Resource<WasmPluginSpec>) {
    let plugin_config = config.filter_policy();
    let plugin = |suffix: &str, kind, root_id| Resource {
        api_version: "extensions.istio.io/v1alpha1",
        kind: "WasmPlugin",
        metadata: metadata(format!("tlsgate-{suffix}")),
        spec: WasmPluginSpec {
            selector: Selector {
                match_labels: options.selector.clone(),
            },
            url: options.wasm_url.clone(),
            sha256: sha256.clone(),
            image_pull_policy: PullPolicy::IfNotPresent,
            kind,
            // AUTHN, Istio's first phase: before RequestAuthentication, AuthorizationPolicy and
            // ext_authz (network and HTTP), so a connection or request the policy denies is
            // refused before anything else acts on it, and what runs later (and the upstream)
            // sees only the identity headers the filter set.
            phase: PluginPhase::Authn,
            plugin_name: root_id,
            // A module that cannot be fetched or fails to start denies everything (Istio puts
            // a deny-all RBAC filter in its place); never waves traffic through.
            fail_strategy: FailStrategy::FailClose,
            plugin_config: plugin_config.clone(),
        },
    };
    let network = plugin("network", PluginType::Network, NETWORK_ROOT_ID);
    let http = plugin("http", PluginType::Http, HTTP_ROOT_ID);
    (network, http)
}

/// `networking.istio.io/v1alpha3` `EnvoyFilter` adding `clusters` to the selected gateways:
/// Istio generates no cluster for anything but services, and the filter's OCSP requests need
/// theirs. The values are the clusters `tlsgate envoy-config` declares, so the filter finds
/// them by the same names.
pub(super) fn cluster_patches(
    metadata: Yaml,
    selector: &BTreeMap<String, String>,
    clusters: Vec<Yaml>,
) -> Yaml {
    use crate::yaml::{list, map, s};
    let labels = selector
        .iter()
        .map(|(k, v)| (s(k.as_str()), s(v.as_str())))
        .collect();
    let patches = clusters
        .into_iter()
        .map(|cluster| {
            map([
                ("applyTo", s("CLUSTER")),
                ("match", map([("context", s("GATEWAY"))])),
                ("patch", map([("operation", s("ADD")), ("value", cluster)])),
            ])
        })
        .collect();
    map([
        ("apiVersion", s("networking.istio.io/v1alpha3")),
        ("kind", s("EnvoyFilter")),
        ("metadata", metadata),
        (
            "spec",
            map([
                ("workloadSelector", map([("labels", Yaml::Hash(labels))])),
                ("configPatches", list(patches)),
            ]),
        ),
    ])
}
