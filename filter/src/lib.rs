//! tlsgate's proxy-wasm filter: Envoy terminates TLS, this filter enforces the rest of the
//! policy with the same [`tlsgate_core::Policy`] the native host uses.
//!
//! One `.wasm` is loaded twice by the generated Envoy configuration:
//!
//! - as a **network filter** (`root_id: tlsgate.network`): at the first decrypted bytes of a
//!   connection it reads Envoy's `connection.*` attributes into [`tlsgate_core::TlsFacts`], runs
//!   `on_tcp_connect` and closes the connection on deny;
//! - as an **HTTP filter** (`root_id: tlsgate.http`): per request it runs `on_http_request`,
//!   answers deny / custom-response / 421 locally, strips identity headers a client sent and
//!   adds the ones the policy and the verified certificate call for.
//!
//! Both read the policy from their plugin configuration: the JSON `tlsgate envoy-config` embeds
//! (certificates inlined, private keys removed). The filter never panics on its own account:
//! every host call that can fail is matched, and anything unexpected denies.

mod attributes;
mod connections;
mod http;
mod metrics;
mod network;
mod root;
mod sessions;
mod sources;
mod trust;

pub mod decode;

pub use root::{load, HTTP_ROOT_ID, NETWORK_ROOT_ID};

// The SDK's entry point macro expands to `#[no_mangle]` exports (and an unsafe call to the
// wasi constructors); the workspace denies `unsafe_code`, so the allowance is scoped here.
#[allow(unsafe_code)]
mod entry {
    proxy_wasm::main! {{
        proxy_wasm::set_log_level(proxy_wasm::types::LogLevel::Info);
        proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
            Box::new(crate::root::Root::default())
        });
    }}
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::panic)]

    use yaml_rust2::{Yaml, YamlEmitter, YamlLoader};

    /// A one-endpoint policy as the filter receives it (certificate inline, no key).
    pub(crate) fn sample_policy() -> tlsgate_core::Policy {
        let ca = tlsgate_test_support::Authority::root("CA");
        let cert = ca.server(&["app.example.com"]).cert_pem;
        let policy = serde_json::json!({"endpoints": [{
            "url": "https://app.example.com",
            "bind": "127.0.0.1:8443",
            "upstream": {"url": "http://127.0.0.1:8080"},
            "traffic_policy": {"on_tcp_connect": [{"actions": [
                {"type": "terminate-tls", "config": {"server_certificate": cert}}
            ]}]}
        }]});
        crate::load(&policy.to_string()).unwrap_or_else(|e| panic!("{e}"))
    }

    /// A configuration written by hand gets the same refusal as `tlsgate envoy-config`.
    #[test]
    fn refuses_a_rule_on_a_variable_envoy_gives_no_attribute_for() {
        let ca = tlsgate_test_support::Authority::root("CA");
        let cert = ca.server(&["app.example.com"]).cert_pem;
        let policy = serde_json::json!({"endpoints": [{
            "url": "https://app.example.com",
            "bind": "127.0.0.1:8443",
            "upstream": {"url": "http://127.0.0.1:8080"},
            "traffic_policy": {
                "on_tcp_connect": [{"actions": [
                    {"type": "terminate-tls", "config": {"server_certificate": cert}}
                ]}],
                "on_http_request": [{"expressions": ["conn.tls.cipher_suite == ''"],
                    "actions": [{"type": "deny"}]}]
            }
        }]});
        let e = crate::load(&policy.to_string()).expect_err("refused");
        assert!(
            e.contains("reads conn.tls.cipher_suite, which Envoy cannot provide"),
            "{e}"
        );
    }

    pub(crate) fn sample_facts() -> tlsgate_core::TlsFacts {
        tlsgate_core::TlsFacts {
            version: tlsgate_core::TlsVersion::Tls13,
            cipher_suite: String::new(),
            sni: Some("app.example.com".into()),
            alpn: None,
            client_ip: std::net::IpAddr::from([127, 0, 0, 1]),
            client_port: 50_000,
            server: std::net::SocketAddr::from(([127, 0, 0, 1], 443)),
            started: std::time::UNIX_EPOCH,
            resumed: false,
            key_exchange_group: String::new(),
            client_cert: tlsgate_core::ClientCert::Absent,
        }
    }

    fn to_json(yaml: &Yaml) -> serde_json::Value {
        match yaml {
            Yaml::Hash(h) => serde_json::Value::Object(
                h.iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_owned(), to_json(v)))
                    .collect(),
            ),
            Yaml::Array(a) => serde_json::Value::Array(a.iter().map(to_json).collect()),
            Yaml::String(s) => serde_json::Value::String(s.clone()),
            Yaml::Integer(i) => serde_json::Value::from(*i),
            Yaml::Boolean(b) => serde_json::Value::Bool(*b),
            other => {
                let mut out = String::new();
                let _ = YamlEmitter::new(&mut out).dump(other);
                serde_json::Value::String(out)
            }
        }
    }

    /// The Istio example's pluginConfig (generated by `tlsgate istio`, certificate bodies
    /// elided), with a real certificate where the bodies were, is a policy the filter loads;
    /// its plugin names are the filter's root ids.
    #[test]
    fn the_istio_example_carries_a_policy_the_filter_loads() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/istio/istio.yaml");
        let text = std::fs::read_to_string(path).expect("examples/istio/istio.yaml");
        let ca = tlsgate_test_support::Authority::root("ExampleCA").cert_pem();
        let body: Vec<&str> = ca
            .lines()
            .filter(|l| !l.starts_with("-----") && !l.is_empty())
            .collect();
        let pasted: String = text
            .lines()
            .map(|line| match line.strip_suffix("...") {
                Some(indent) if indent.trim().is_empty() => body
                    .iter()
                    .map(|b| format!("{indent}{b}\n"))
                    .collect::<String>(),
                _ => format!("{line}\n"),
            })
            .collect();
        assert_ne!(pasted, text, "the elided certificate bodies moved");
        let docs: Vec<_> = YamlLoader::load_from_str(&pasted)
            .expect("YAML")
            .into_iter()
            .filter(|d| d["kind"].as_str() == Some("WasmPlugin"))
            .collect();
        let names: Vec<&str> = docs
            .iter()
            .filter_map(|d| d["spec"]["pluginName"].as_str())
            .collect();
        assert_eq!(names, [crate::NETWORK_ROOT_ID, crate::HTTP_ROOT_ID]);
        for doc in &docs {
            let policy = to_json(&doc["spec"]["pluginConfig"]).to_string();
            let loaded = crate::load(&policy).unwrap_or_else(|e| panic!("{e}\n{policy}"));
            assert_eq!(loaded.endpoints().len(), 1);
        }
    }
}
