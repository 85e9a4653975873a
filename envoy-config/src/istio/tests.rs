#![allow(clippy::expect_used, clippy::panic)]

use super::routing::service_host;
use super::*;
use crate::{HTTP_ROOT_ID, NETWORK_ROOT_ID};
use std::path::Path;
use tlsgate_core::{Deployment, KeyMode};
use tlsgate_test_support::Authority;
use yaml_rust2::{Yaml, YamlLoader};

fn endpoint(url: &str, tls_extra: &str, upstream: &str) -> String {
    format!(
        "  - url: {url}
    bind: 127.0.0.1:8443
    upstream:
{upstream}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: \"1.2\"
                server_certificate: server.crt
                server_private_key: server.key
{tls_extra}"
    )
}

const MTLS: &str = "                mutual_tls_certificate_authorities: [ca.crt]\n";
const PLAIN_UP: &str = "      url: http://web.apps:8080";

fn load(dir: &Path, endpoints: &[String]) -> Config {
    let ca = Authority::root("Example Root");
    ca.write(dir, "ca");
    ca.server(&["a.example.com", "b.example.com", "*.example.org"])
        .write(dir, "server");
    ca.client("gateway").write(dir, "client");
    std::fs::write(dir.join("ca.crl"), ca.crl(&[], -60, 86_400)).expect("crl");
    let path = dir.join("policy.yaml");
    std::fs::write(&path, format!("endpoints:\n{}", endpoints.concat())).expect("policy");
    Config::load_files(
        &[path],
        KeyMode::Load(&crate::tests::AcceptAnyKey),
        Deployment::none(),
    )
    .expect("loads")
}

fn generate_docs(config: &Config, options: &Options) -> (Vec<Yaml>, Resources) {
    let resources = generate(config, options).expect("generates");
    let docs = YamlLoader::load_from_str(&resources.yaml).expect("the output is YAML");
    (docs, resources)
}

fn kind<'a>(docs: &'a [Yaml], kind: &str) -> Vec<&'a Yaml> {
    docs.iter()
        .filter(|d| d["kind"].as_str() == Some(kind))
        .collect()
}

fn options() -> Options {
    Options::new("oci://registry.example.com/tlsgate/filter@sha256:0123")
}

#[test]
fn maps_each_strategy_to_a_gateway_tls_mode_and_the_versions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load(
        dir.path(),
        &[
            endpoint("https://a.example.com", "", PLAIN_UP),
            endpoint(
                "https://b.example.com",
                &format!("{MTLS}                max_version: \"1.2\"\n"),
                PLAIN_UP,
            ),
            endpoint(
                "tls://*.example.org",
                &format!("{MTLS}                mutual_tls_verification_strategy: request\n"),
                "      url: tcp://db.data:5432",
            )
            .replace("127.0.0.1:8443", "127.0.0.1:9443"),
        ],
    );
    let (docs, resources) = generate_docs(&config, &options());
    let gateway = kind(&docs, "Gateway")[0];
    let servers = gateway["spec"]["servers"].as_vec().expect("servers");
    let expect = [
        ("./a.example.com", "HTTPS", "SIMPLE", "TLSV1_3"),
        ("./b.example.com", "HTTPS", "MUTUAL", "TLSV1_2"),
        ("./*.example.org", "TLS", "OPTIONAL_MUTUAL", "TLSV1_3"),
    ];
    for (server, (host, protocol, mode, max)) in servers.iter().zip(expect) {
        assert_eq!(server["hosts"][0].as_str(), Some(host));
        assert_eq!(server["port"]["number"].as_i64(), Some(443));
        assert_eq!(server["port"]["protocol"].as_str(), Some(protocol));
        assert_eq!(server["tls"]["mode"].as_str(), Some(mode), "{host}");
        assert_eq!(
            server["tls"]["minProtocolVersion"].as_str(),
            Some("TLSV1_2")
        );
        assert_eq!(server["tls"]["maxProtocolVersion"].as_str(), Some(max));
    }
    assert_eq!(
        servers[2]["tls"]["credentialName"].as_str(),
        Some("tlsgate-wildcard.example.org")
    );
    // request is narrower under Istio: said, not hidden.
    assert!(resources
        .warnings
        .iter()
        .any(|w| w.contains("mutual_tls_verification_strategy: request")));
    // tls:// becomes a tcp route; https:// an http route with the upstream's Host.
    let services = kind(&docs, "VirtualService");
    assert_eq!(
        services[0]["spec"]["http"][0]["rewrite"]["authority"].as_str(),
        Some("web.apps:8080")
    );
    assert_eq!(
        services[0]["spec"]["http"][0]["route"][0]["destination"]["host"].as_str(),
        Some("web.apps.svc.cluster.local")
    );
    assert_eq!(
        services[2]["spec"]["tcp"][0]["route"][0]["destination"]["port"]["number"].as_i64(),
        Some(5432)
    );
    assert!(kind(&docs, "DestinationRule").is_empty(), "no upstream TLS");
}

#[test]
fn wasm_plugins_carry_the_filter_policy_fail_closed_in_authn() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load(
        dir.path(),
        &[endpoint("https://a.example.com", MTLS, PLAIN_UP)],
    );
    let mut options = Options::new("https://files.example.com/tlsgate_filter.wasm");
    options.sha256 = Some("AB".repeat(32));
    let (docs, resources) = generate_docs(&config, &options);
    let plugins = kind(&docs, "WasmPlugin");
    assert_eq!(plugins.len(), 2);
    for (plugin, (kind_, root)) in plugins
        .iter()
        .zip([("NETWORK", NETWORK_ROOT_ID), ("HTTP", HTTP_ROOT_ID)])
    {
        let spec = &plugin["spec"];
        assert_eq!(spec["type"].as_str(), Some(kind_));
        assert_eq!(spec["pluginName"].as_str(), Some(root));
        assert_eq!(spec["phase"].as_str(), Some("AUTHN"));
        assert_eq!(spec["failStrategy"].as_str(), Some("FAIL_CLOSE"));
        assert_eq!(spec["sha256"].as_str(), Some("ab".repeat(32).as_str()));
        assert_eq!(
            spec["selector"]["matchLabels"]["istio"].as_str(),
            Some("ingressgateway")
        );
        assert_eq!(
            spec["pluginConfig"]["endpoints"][0]["url"].as_str(),
            Some("https://a.example.com")
        );
    }
    assert!(
        !resources.yaml.contains("PRIVATE KEY"),
        "no key without --with-secrets"
    );
    assert!(resources.yaml.contains("--from-file=tls.key=server.key"));
    assert!(resources.warnings.is_empty(), "{:?}", resources.warnings);
}

#[test]
fn upstream_tls_becomes_a_destination_rule_with_sni_and_subject_alt_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mutual = "      url: https://api.payments:8443
      tls:
        client_certificate: { certificate: client.crt, private_key: client.key }
        certificate_authorities: [ca.crt]
        server_name: api.payments.internal";
    let simple = "      url: https://ledger.payments.svc:443";
    let config = load(
        dir.path(),
        &[
            endpoint("https://a.example.com", "", mutual),
            endpoint("https://b.example.com", "", simple),
        ],
    );
    let mut options = options();
    options.with_secrets = true;
    let (docs, _) = generate_docs(&config, &options);
    let rules = kind(&docs, "DestinationRule");
    assert_eq!(rules.len(), 2, "https:// is TLS even without settings");
    let spec = &rules[0]["spec"];
    assert_eq!(
        spec["host"].as_str(),
        Some("api.payments.svc.cluster.local")
    );
    let tls = &spec["trafficPolicy"]["tls"];
    assert_eq!(tls["mode"].as_str(), Some("MUTUAL"));
    assert_eq!(tls["sni"].as_str(), Some("api.payments.internal"));
    assert_eq!(
        tls["subjectAltNames"][0].as_str(),
        Some("api.payments.internal")
    );
    let credential = tls["credentialName"].as_str().expect("credentialName");
    let secrets = kind(&docs, "Secret");
    let secret = secrets
        .iter()
        .find(|s| s["metadata"]["name"].as_str() == Some(credential))
        .expect("the upstream's Secret");
    assert_eq!(secret["type"].as_str(), Some("kubernetes.io/tls"));
    for key in ["tls.crt", "tls.key", "ca.crt"] {
        assert!(secret["stringData"][key].as_str().is_some(), "{key}");
    }
    // No CAs: the proxy's OS trust store, still checking the name.
    let tls = &rules[1]["spec"]["trafficPolicy"]["tls"];
    assert_eq!(tls["mode"].as_str(), Some("SIMPLE"));
    assert!(tls["credentialName"].is_badvalue());
    assert_eq!(
        tls["subjectAltNames"][0].as_str(),
        Some("ledger.payments.svc")
    );
    // The gateway's Secret holds the endpoint's key, and only with --with-secrets.
    assert!(secrets.iter().any(|s| s["stringData"]["tls.key"]
        .as_str()
        .is_some_and(|k| k.contains("PRIVATE KEY"))));
}

#[test]
fn crls_go_into_the_gateway_credential() {
    let dir = tempfile::tempdir().expect("tempdir");
    let crl = format!(
            "{MTLS}                mutual_tls_certificate_revocation_lists: [ca.crl]\n                mutual_tls_revocation_check: leaf\n"
        );
    let config = load(
        dir.path(),
        &[endpoint("https://a.example.com", &crl, PLAIN_UP)],
    );
    let (_, resources) = generate_docs(&config, &options());
    assert!(resources.yaml.contains("--from-file=ca.crl=ca.crl"));
    assert!(resources
        .warnings
        .iter()
        .any(|w| w.contains("mutual_tls_revocation_check: leaf")));
}

fn refusal(endpoints: &[String], options: &Options) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load(dir.path(), endpoints);
    match generate(&config, options) {
        Ok(r) => panic!("generated:\n{}", r.yaml),
        Err(e) => e.to_string(),
    }
}

#[test]
fn refuses_require_any() {
    let strategy = format!("{MTLS}                mutual_tls_verification_strategy: require-any\n");
    let error = refusal(
        &[endpoint("https://a.example.com", &strategy, PLAIN_UP)],
        &options(),
    );
    assert!(
        error.contains("policy.yaml: endpoints[0] (https://a.example.com)"),
        "{error}"
    );
    assert!(error.contains(
            "traffic_policy.on_tcp_connect[0] terminate-tls.mutual_tls_verification_strategy: require-any"
        ), "{error}");
}

#[test]
fn refuses_a_variable_envoy_lacks_naming_the_endpoint_once() {
    let rule = "      on_http_request:\n        - expressions: [\"conn.tls.cipher_suite == ''\"]\n          actions: [{type: deny}]\n";
    let error = refusal(
        &[endpoint("https://a.example.com", rule, PLAIN_UP)],
        &options(),
    );
    assert!(
        error.contains("endpoints[0] (https://a.example.com): traffic_policy: a rule reads conn.tls.cipher_suite"),
        "{error}"
    );
    assert_eq!(error.matches("endpoints[0]").count(), 1, "{error}");
}

#[test]
fn refuses_a_rule_on_ja4() {
    let rule = "      on_http_request:\n        - expressions: [\"conn.tls.ja4_fingerprint == ''\"]\n          actions: [{type: deny}]\n";
    let error = refusal(
        &[endpoint("https://a.example.com", rule, PLAIN_UP)],
        &options(),
    );
    assert!(
        error.contains("a rule reads conn.tls.ja4_fingerprint: behind Istio"),
        "{error}"
    );
}

#[test]
fn refuses_a_pinned_upstream_key() {
    let pinned = "      url: https://api.payments:8443
      tls:
        certificate_authorities: [ca.crt]
        pinned_certificates: [server.crt]";
    let error = refusal(&[endpoint("https://a.example.com", "", pinned)], &options());
    assert!(
        error.contains("upstream.tls.pinned_certificates"),
        "{error}"
    );
}

#[test]
fn refuses_an_upstream_address() {
    let error = refusal(
        &[endpoint(
            "https://a.example.com",
            "",
            "      url: http://10.0.0.7:8080",
        )],
        &options(),
    );
    assert!(
        error.contains("upstream.url: http://10.0.0.7:8080"),
        "{error}"
    );
}

#[test]
fn refuses_one_host_on_two_endpoints() {
    let mut second = endpoint("https://a.example.com", "", PLAIN_UP);
    second = second.replace("127.0.0.1:8443", "127.0.0.1:9443");
    let error = refusal(
        &[endpoint("https://a.example.com", "", PLAIN_UP), second],
        &options(),
    );
    assert!(
        error.contains("endpoints[1]") && error.contains("also served by"),
        "{error}"
    );
}

#[test]
fn two_endpoints_with_the_same_upstream_tls_share_its_destination_rule() {
    // The Secret is named after the endpoint that made the rule; the second endpoint's would
    // hold the same PEM, so it shares the first (it used to be refused for the name alone).
    let mutual = "      url: https://api.payments:8443
      tls:
        client_certificate: { certificate: client.crt, private_key: client.key }
        certificate_authorities: [ca.crt]";
    let dir = tempfile::tempdir().expect("tempdir");
    let config = load(
        dir.path(),
        &[
            endpoint("https://a.example.com", "", mutual),
            endpoint("https://b.example.com", "", mutual),
        ],
    );
    let mut options = options();
    options.with_secrets = true;
    let (docs, _) = generate_docs(&config, &options);
    let rules = kind(&docs, "DestinationRule");
    assert_eq!(rules.len(), 1, "one rule per upstream host");
    let credential = rules[0]["spec"]["trafficPolicy"]["tls"]["credentialName"]
        .as_str()
        .expect("the rule names its Secret");
    let secrets: Vec<&str> = kind(&docs, "Secret")
        .iter()
        .filter_map(|d| d["metadata"]["name"].as_str())
        .filter(|n| n.ends_with("-upstream"))
        .collect();
    assert_eq!(
        secrets,
        [credential],
        "one upstream Secret, the one the rule names"
    );
}

#[test]
fn refuses_two_tls_settings_for_one_upstream_host() {
    let a = "      url: https://api.payments:8443\n      tls:\n        certificate_authorities: [ca.crt]";
    let b = "      url: https://api.payments:8443\n      tls:\n        client_certificate: { certificate: client.crt, private_key: client.key }";
    let error = refusal(
        &[
            endpoint("https://a.example.com", "", a),
            endpoint("https://b.example.com", "", b),
        ],
        &options(),
    );
    assert!(error.contains("one DestinationRule per host"), "{error}");
}

#[test]
fn refuses_an_unpinned_download_and_bad_options() {
    let endpoints = [endpoint("https://a.example.com", "", PLAIN_UP)];
    let https = Options::new("https://files.example.com/tlsgate_filter.wasm");
    assert!(refusal(&endpoints, &https).contains("--sha256"));
    let mut short = options();
    short.sha256 = Some("abc".into());
    assert!(refusal(&endpoints, &short).contains("64 hex digits"));
    assert!(refusal(&endpoints, &Options::new("ftp://x/f.wasm")).contains("oci://"));
    let mut namespace = options();
    namespace.namespace = "Istio_Ingress".into();
    assert!(refusal(&endpoints, &namespace).contains("--namespace"));
    let mut selector = options();
    selector.selector.clear();
    assert!(refusal(&endpoints, &selector).contains("--selector"));
}

#[test]
fn service_hosts_follow_the_manifest_reading() {
    assert_eq!(service_host("web").0, "web.default.svc.cluster.local");
    assert_eq!(service_host("web.apps").0, "web.apps.svc.cluster.local");
    assert_eq!(service_host("web.apps.svc").0, "web.apps.svc.cluster.local");
    assert_eq!(
        service_host("web.apps.svc.cluster.local"),
        ("web.apps.svc.cluster.local".into(), true)
    );
    assert_eq!(
        service_host("api.example.com"),
        ("api.example.com".into(), false)
    );
}
