//! The policy loader over any text, as a policy file or as Kubernetes manifests. What it
//! accepts must survive the round trip the filter depends on: the filter's copy of the policy
//! (`filter_policy`) loads again, with the same endpoints, rules and rule positions.
#![no_main]

use std::path::{Path, PathBuf};

use libfuzzer_sys::fuzz_target;
use tlsgate_core::pem::{InlineOnly, MaterialReader};
use tlsgate_core::{Config, Deployment, KeyMode, LoadOptions};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let reader = |_: &Path| -> Box<dyn MaterialReader> { Box::new(InlineOnly) };
    let sources = [(PathBuf::from("fuzz.yaml"), text.to_owned())];
    let Ok(config) = Config::load_sources(&sources, &reader, KeyMode::Skip, Deployment::none())
    else {
        return;
    };
    let copy = serde_json::to_string(&config.filter_policy()).expect("filter policy serializes");
    let options = LoadOptions {
        reader: &InlineOnly,
        keys: KeyMode::Skip,
        deployment: Deployment::none(),
    };
    let again = Config::load_str(&copy, None, &options, 0)
        .unwrap_or_else(|e| panic!("the filter's copy does not load: {e}\n{copy}"));
    assert_eq!(again.endpoints.len(), config.endpoints.len());
    for (a, b) in config.endpoints.iter().zip(&again.endpoints) {
        assert_eq!(a.url, b.url);
        assert_eq!(a.tls.rule, b.tls.rule);
        let rules = |e: &tlsgate_core::Endpoint| {
            (
                e.tcp_rules.iter().map(|r| r.index).collect::<Vec<_>>(),
                e.http_rules.iter().map(|r| r.index).collect::<Vec<_>>(),
            )
        };
        assert_eq!(rules(a), rules(b), "rule positions differ for {}", a.url);
    }
});
