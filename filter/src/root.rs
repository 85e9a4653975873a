//! The root context: loads the policy from the plugin configuration once per plugin and hands
//! it to every connection or request context.

use std::cell::RefCell;
use std::rc::{Rc, Weak};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext, StreamContext};
use proxy_wasm::types::{BufferType, ContextType, LogLevel};
use tlsgate_core::config::LoadOptions;
use tlsgate_core::{Config, KeyMode, Policy};

use crate::http::HttpFilter;
use crate::metrics::log;
use crate::network::NetworkFilter;
use crate::sessions::SharedSessions;

/// The `root_id` that makes a plugin a network filter. Envoy tells a plugin neither whether it
/// was configured as a network or an HTTP filter, nor lets one context serve both, so the
/// generated configuration (or Istio's `WasmPlugin.pluginName`) says it with the root id.
pub const NETWORK_ROOT_ID: &str = "tlsgate.network";
/// The `root_id` that makes a plugin an HTTP filter.
pub const HTTP_ROOT_ID: &str = "tlsgate.http";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Network,
    Http,
}

#[derive(Default)]
pub(crate) struct Root {
    role: Option<Role>,
    policy: Option<Rc<Policy>>,
    sessions: SharedSessions,
    /// The network role's per-address cap, from the VM's environment (crate::sources).
    per_source: Option<usize>,
    /// Whether connections are noted for the HTTP role (crate::connections::needed_by).
    track_connections: bool,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool {
        match self.configure(plugin_configuration_size) {
            Ok((role, policy, endpoints, per_source)) => {
                log(
                    LogLevel::Info,
                    &format!(
                        "{} filter loaded the policy ({endpoints} endpoint{})",
                        match role {
                            Role::Network => "network",
                            Role::Http => "HTTP",
                        },
                        if endpoints == 1 { "" } else { "s" }
                    ),
                );
                self.role = Some(role);
                self.per_source = per_source;
                self.track_connections = crate::connections::needed_by(&policy);
                self.policy = Some(policy);
                self.sessions.borrow_mut().clear();
                crate::trust::forget();
                true
            }
            Err(message) => {
                // Error level so it shows at Envoy's default log levels: this is why Envoy
                // refuses to start (or to accept a new configuration).
                log(
                    LogLevel::Critical,
                    &format!("refusing the plugin configuration: {message}"),
                );
                false
            }
        }
    }

    fn get_type(&self) -> Option<ContextType> {
        // Contexts are only created for a plugin whose on_configure succeeded, so the role is
        // known; the HTTP type is a harmless answer for a plugin Envoy will not use.
        Some(match self.role {
            Some(Role::Network) => ContextType::StreamContext,
            Some(Role::Http) | None => ContextType::HttpContext,
        })
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(HttpFilter::new(
            self.policy.clone(),
            Rc::clone(&self.sessions),
        )))
    }

    fn create_stream_context(&self, _context_id: u32) -> Option<Box<dyn StreamContext>> {
        Some(Box::new(NetworkFilter::new(
            self.policy.clone(),
            self.per_source,
            self.track_connections,
        )))
    }
}

impl Root {
    fn configure(&self, size: usize) -> Result<(Role, Rc<Policy>, usize, Option<usize>), String> {
        let root_id = match hostcalls::get_property(vec!["plugin_root_id"]) {
            Ok(Some(bytes)) => String::from_utf8(bytes).unwrap_or_default(),
            Ok(None) => String::new(),
            Err(status) => return Err(format!("cannot read plugin_root_id ({status:?})")),
        };
        let role = match root_id.as_str() {
            NETWORK_ROOT_ID => Role::Network,
            HTTP_ROOT_ID => Role::Http,
            other => {
                return Err(format!(
                    "root_id `{other}` is neither `{NETWORK_ROOT_ID}` (network filter) nor \
                     `{HTTP_ROOT_ID}` (HTTP filter); set it in the wasm filter's config \
                     (Istio: WasmPlugin.spec.pluginName)"
                ))
            }
        };
        let bytes = match hostcalls::get_buffer(BufferType::PluginConfiguration, 0, size) {
            Ok(Some(bytes)) if !bytes.is_empty() => bytes,
            Ok(_) => {
                return Err(
                    "the plugin configuration is empty: it must be the policy JSON \
                            that `tlsgate envoy-config` embeds"
                        .into(),
                )
            }
            Err(status) => {
                return Err(format!("cannot read the plugin configuration ({status:?})"))
            }
        };
        let text = String::from_utf8(bytes)
            .map_err(|_| "the plugin configuration is not UTF-8 text".to_owned())?;
        let policy = compiled(text)?;
        let endpoints = policy.endpoints().len();
        let per_source = crate::sources::cap()?;
        Ok((role, policy, endpoints, per_source))
    }
}

thread_local! {
    /// The policies this VM compiled, by configuration text, while a root context holds them.
    static COMPILED: RefCell<Vec<(String, Weak<Policy>)>> = const { RefCell::new(Vec::new()) };
}

/// The policy for a plugin configuration: the one another root context of this VM compiled
/// from the same text (the network and HTTP roles of a generated configuration, and the
/// filter chains of several endpoints, all embed the one policy), else newly compiled. One
/// compiled policy per VM, not one per role and filter chain; and an endpoint the network
/// role admitted a connection to is, by identity, the HTTP role's own
/// (crate::connections::take_admitted).
fn compiled(text: String) -> Result<Rc<Policy>, String> {
    let known = COMPILED.with(|c| {
        let mut c = c.borrow_mut();
        c.retain(|(_, policy)| policy.strong_count() > 0);
        c.iter()
            .find(|(known, _)| *known == text)
            .and_then(|(_, policy)| policy.upgrade())
    });
    if let Some(policy) = known {
        return Ok(policy);
    }
    let policy = Rc::new(load(&text)?);
    COMPILED.with(|c| c.borrow_mut().push((text, Rc::downgrade(&policy))));
    Ok(policy)
}

/// Compiles a policy given inline. The error names the field path and line of the problem
/// (lines of the configuration string as Envoy passed it).
pub fn load(text: &str) -> Result<Policy, String> {
    let options = LoadOptions {
        reader: &tlsgate_core::pem::InlineOnly,
        keys: KeyMode::Skip,
        deployment: tlsgate_core::Deployment::none(),
    };
    let config = Config::load_str(text, None, &options, 0).map_err(|e| e.to_string())?;
    // A configuration written by hand gets what `tlsgate envoy-config` says: a rule on a
    // variable Envoy gives no attribute for would read an empty value here.
    if let Some(why) = config
        .endpoints
        .iter()
        .find_map(tlsgate_core::policy::unsupported_behind_envoy)
    {
        return Err(why.to_string());
    }
    Ok(Policy::new(config))
}
