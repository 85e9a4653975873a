//! Counters through the proxy-wasm metrics API; Envoy shows them in `/stats` with the
//! `wasmcustom.` prefix, e.g. `wasmcustom.tlsgate.endpoint_0.tcp_connect.deny.policy_deny`.

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};

thread_local! {
    /// Metric ids by name. A VM is single-threaded; the map only saves a host call per event.
    static IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
}

/// Where in a connection's life a verdict was given.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Phase {
    TcpConnect,
    HttpRequest,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Self::TcpConnect => "tcp_connect",
            Self::HttpRequest => "http_request",
        }
    }
}

/// Counts one verdict: `tlsgate.endpoint_<i>.<phase>.<verdict>[.<reason>]`, or
/// `tlsgate.unmatched.<phase>.deny.<reason>` when no endpoint could be chosen.
pub(crate) fn verdict(endpoint: Option<usize>, phase: Phase, verdict: &str, reason: Option<&str>) {
    let endpoint = endpoint.map_or_else(|| "unmatched".to_owned(), |i| format!("endpoint_{i}"));
    let mut name = format!("tlsgate.{endpoint}.{}.{verdict}", phase.as_str());
    if let Some(reason) = reason {
        name.push('.');
        name.push_str(reason);
    }
    increment(&name);
}

/// Counts whether a request found its connection's session cached
/// (`tlsgate.http.session_cache.hit` / `.miss`).
pub(crate) fn session_cache(hit: bool) {
    increment(if hit {
        "tlsgate.http.session_cache.hit"
    } else {
        "tlsgate.http.session_cache.miss"
    });
}

fn increment(name: &str) {
    let id = IDS.with(|ids| {
        let mut ids = ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        ids.insert(name.to_owned(), id);
        Some(id)
    });
    match id {
        Some(id) => {
            if hostcalls::increment_metric(id, 1).is_err() {
                log(LogLevel::Debug, &format!("could not increment {name}"));
            }
        }
        None => log(LogLevel::Debug, &format!("could not define metric {name}")),
    }
}

/// Logs through the host; a failed log has nowhere to be reported.
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}
