//! Counters through the proxy-wasm metrics API, named as the native host names its metrics
//! (core's `policy::Counter`). Envoy's `/stats` shows them with the `wasmcustom.` prefix and
//! the labels encoded in the name; `/stats/prometheus` as the native host's lines, e.g.
//! `tlsgate_connections_total{endpoint="https://app.test",verdict="deny",reason="policy_deny"}`,
//! when the bootstrap has core's `envoy_stats_tags` (`tlsgate envoy-config` writes them).

use std::cell::RefCell;
use std::collections::HashMap;

use proxy_wasm::hostcalls;
use proxy_wasm::types::{LogLevel, MetricType};
use tlsgate_core::config::Endpoint;
use tlsgate_core::policy::{endpoint_label, envoy_stat_name, Counter, NO_ENDPOINT};

thread_local! {
    /// Metric ids by name. A VM is single-threaded; the map only saves a host call per event.
    static IDS: RefCell<HashMap<String, u32>> = RefCell::new(HashMap::new());
    /// Verdict counters' ids by what names them, so a request formats no stat name: the
    /// endpoint by index, with its label kept to notice a reconfigured policy.
    static VERDICTS: RefCell<HashMap<VerdictKey, (String, u32)>> = RefCell::new(HashMap::new());
}

type VerdictKey = (Counter, Option<usize>, [&'static str; 2]);

/// Counts one verdict under core's vocabulary ([`Counter`]): Envoy's stat
/// `endpoint=.=<url>;.;verdict=.=<verdict>;.;reason=.=<reason>;.;tlsgate_connections_total`,
/// which the generated bootstrap's stats tags turn into the native host's Prometheus line.
/// `endpoint` is `None` when no endpoint could be chosen (label `-`). The name is formatted
/// and the metric defined once per VM; later events are a map lookup and the increment.
fn count(counter: Counter, endpoint: Option<&Endpoint>, values: [&'static str; 2]) {
    let label = endpoint.map_or(NO_ENDPOINT, endpoint_label);
    let key = (counter, endpoint.map(|e| e.index), values);
    let cached = VERDICTS.with(|ids| {
        let ids = ids.try_borrow().ok()?;
        ids.get(&key)
            .filter(|(known, _)| known == label)
            .map(|(_, id)| *id)
    });
    let id = cached.or_else(|| {
        // The endpoint, then as many values as the counter has further labels.
        let mut labels = vec![label];
        labels.extend(&values[..counter.labels().len() - 1]);
        let id = define(&envoy_stat_name(counter, &labels))?;
        VERDICTS.with(|ids| {
            if let Ok(mut ids) = ids.try_borrow_mut() {
                ids.insert(key, (label.to_owned(), id));
            }
        });
        Some(id)
    });
    increment_id(id, || format!("{counter:?} {label} {values:?}"));
}

/// Counts an `on_tcp_connect` verdict (`tlsgate_connections_total`).
pub(crate) fn connection(endpoint: Option<&Endpoint>, verdict: &'static str, reason: &'static str) {
    count(Counter::Connections, endpoint, [verdict, reason]);
}

/// Counts an `on_http_request` verdict (`tlsgate_http_requests_total`).
pub(crate) fn request(endpoint: Option<&Endpoint>, verdict: &'static str, reason: &'static str) {
    count(Counter::HttpRequests, endpoint, [verdict, reason]);
}

/// Counts an OCSP answer about a client certificate (`tlsgate_client_ocsp_checks_total`; the
/// second value is unused: this counter has one label besides the endpoint).
pub(crate) fn ocsp(endpoint: &Endpoint, reason: &'static str) {
    count(Counter::ClientOcspChecks, Some(endpoint), [reason, ""]);
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

fn increment(name: &'static str) {
    increment_id(define(name), || name.to_owned());
}

/// The id of the counter `name`, defined on first use.
fn define(name: &str) -> Option<u32> {
    IDS.with(|ids| {
        let mut ids = ids.try_borrow_mut().ok()?;
        if let Some(id) = ids.get(name) {
            return Some(*id);
        }
        let id = hostcalls::define_metric(MetricType::Counter, name).ok()?;
        ids.insert(name.to_owned(), id);
        Some(id)
    })
}

/// Increments `id`; `name` (formatted only if something fails) says which counter it was.
fn increment_id(id: Option<u32>, name: impl Fn() -> String) {
    match id {
        Some(id) => {
            if hostcalls::increment_metric(id, 1).is_err() {
                log(LogLevel::Debug, &format!("could not increment {}", name()));
            }
        }
        None => log(
            LogLevel::Debug,
            &format!("could not define metric {}", name()),
        ),
    }
}

/// Logs through the host; a failed log has nowhere to be reported.
pub(crate) fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}
