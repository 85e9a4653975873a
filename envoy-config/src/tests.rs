#![allow(clippy::expect_used, clippy::panic)]

use super::*;
use std::path::Path;
use tlsgate_core::{Deployment, KeyMode};
use tlsgate_test_support::Authority;
use yaml_rust2::YamlLoader;

/// Key/certificate agreement and CRL signatures are the native host's checks; the
/// generators' tests (here and in `istio`) only need loading.
pub(crate) struct AcceptAnyKey;
impl tlsgate_core::HostCrypto for AcceptAnyKey {
    fn check_crl_signature(&self, _: &[u8], _: &[u8]) -> Result<(), String> {
        Ok(())
    }
    fn check_key_pair(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &rustls_pki_types::PrivateKeyDer<'_>,
    ) -> Result<(), String> {
        Ok(())
    }
}

/// `a.example.com` on 127.0.0.1:8443, require-and-verify, to a plain HTTP upstream.
fn verified_endpoint() -> String {
    endpoint(
        "a.example.com",
        "127.0.0.1:8443",
        "require-and-verify",
        "      url: http://127.0.0.1:8080",
    )
}

fn endpoint(host: &str, bind: &str, strategy: &str, upstream: &str) -> String {
    format!(
        r#"  - url: https://{host}
    bind: {bind}
    upstream:
{upstream}
    traffic_policy:
      on_tcp_connect:
        - actions:
            - type: terminate-tls
              config:
                min_version: "1.3"
                server_certificate: server.crt
                server_private_key: server.key
                mutual_tls_certificate_authorities: [ca.crt]
                mutual_tls_verification_strategy: {strategy}
"#
    )
}

fn generate_from(dir: &Path, policy: &str) -> (Yaml, Bootstrap) {
    let ca = Authority::root("Example Root");
    ca.write(dir, "ca");
    ca.server(&["a.example.com", "b.example.com", "c.example.com"])
        .write(dir, "server");
    let bootstrap = generate(&load(dir, policy), &options(dir)).expect("generates");
    let doc = YamlLoader::load_from_str(&bootstrap.yaml)
        .expect("the output is YAML")
        .into_iter()
        .next()
        .expect("one document");
    (doc, bootstrap)
}

/// `policy` written to DIR/policy.yaml and loaded with its keys.
fn load(dir: &Path, policy: &str) -> Config {
    let path = dir.join("policy.yaml");
    std::fs::write(&path, policy).expect("policy");
    Config::load_files(&[path], KeyMode::Load(&AcceptAnyKey), Deployment::none()).expect("loads")
}

fn options(dir: &Path) -> Options {
    Options {
        wasm: PathBuf::from("/opt/tlsgate/tlsgate_filter.wasm"),
        out_dir: dir.to_path_buf(),
        admin: "127.0.0.1:9901".parse().expect("addr"),
        limits: Limits::DEFAULT,
        ocsp_staples: Vec::new(),
    }
}

fn tls_context(chain: &Yaml) -> &Yaml {
    &chain["transport_socket"]["typed_config"]
}

#[test]
fn maps_each_strategy_to_envoys_client_certificate_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let up = "      url: http://127.0.0.1:8080";
    let policy = format!(
        "endpoints:\n{}{}{}",
        endpoint("a.example.com", "127.0.0.1:8443", "require-and-verify", up),
        endpoint("b.example.com", "127.0.0.1:8443", "require-any", up),
        endpoint("c.example.com", "127.0.0.1:8443", "request", up),
    );
    let (doc, _) = generate_from(dir.path(), &policy);
    let listeners = doc["static_resources"]["listeners"]
        .as_vec()
        .expect("listeners");
    assert_eq!(listeners.len(), 1, "one listener per bind");
    let chains = listeners[0]["filter_chains"].as_vec().expect("chains");
    let expect = [
        ("a.example.com", true, None),
        ("b.example.com", true, Some("ACCEPT_UNTRUSTED")),
        ("c.example.com", false, Some("ACCEPT_UNTRUSTED")),
    ];
    for (i, (chain, (host, require, trust))) in chains.iter().zip(expect).enumerate() {
        assert_eq!(chain["name"].as_str(), Some(filter_chain_name(i).as_str()));
        assert_eq!(
            chain["filter_chain_match"]["server_names"][0].as_str(),
            Some(host)
        );
        let ctx = tls_context(chain);
        assert_eq!(
            ctx["require_client_certificate"].as_bool(),
            Some(require),
            "{host}"
        );
        // Resumption stays on only where a resumed session implies a verified chain.
        for key in [
            "disable_stateless_session_resumption",
            "disable_stateful_session_resumption",
        ] {
            assert_eq!(
                ctx[key].as_bool(),
                trust.is_some().then_some(true),
                "{host} {key}"
            );
        }
        let validation = &ctx["common_tls_context"]["validation_context"];
        assert_eq!(
            validation["trust_chain_verification"].as_str(),
            trust,
            "{host}"
        );
        assert_eq!(
            validation["trusted_ca"]["filename"].as_str(),
            Some(dir.path().join("ca.crt").display().to_string().as_str())
        );
        assert_eq!(
            ctx["common_tls_context"]["tls_params"]["tls_minimum_protocol_version"].as_str(),
            Some("TLSv1_3")
        );
        let filters = chain["filters"].as_vec().expect("filters");
        assert_eq!(
            filters[0]["name"].as_str(),
            Some("envoy.filters.network.wasm")
        );
        assert_eq!(
            filters[0]["typed_config"]["config"]["root_id"].as_str(),
            Some(NETWORK_ROOT_ID)
        );
        let hcm = &filters[1]["typed_config"];
        assert_eq!(
            hcm["forward_client_cert_details"].as_str(),
            Some("SANITIZE")
        );
        assert_eq!(
            hcm["http_filters"][0]["typed_config"]["config"]["root_id"].as_str(),
            Some(HTTP_ROOT_ID)
        );
    }
}

#[test]
fn embeds_the_filter_policy_without_private_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "endpoints:\n{}",
        endpoint(
            "a.example.com",
            "127.0.0.1:8443",
            "require-and-verify",
            "      url: http://127.0.0.1:8080"
        )
    );
    let (doc, bootstrap) = generate_from(dir.path(), &policy);
    let chain = &doc["static_resources"]["listeners"][0]["filter_chains"][0];
    let config = chain["filters"][0]["typed_config"]["config"]["configuration"]["value"]
        .as_str()
        .expect("plugin configuration");
    let policy: serde_json::Value = serde_json::from_str(config).expect("JSON");
    assert!(policy["endpoints"][0]["url"] == "https://a.example.com");
    assert!(!bootstrap.yaml.contains("PRIVATE KEY"));
    assert!(bootstrap.files.is_empty(), "file references need no copies");
}

#[test]
fn a_listener_gets_a_connection_line_only_where_on_tcp_connect_logs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = verified_endpoint();
    let (doc, _) = generate_from(dir.path(), &format!("endpoints:\n{base}"));
    assert!(doc["static_resources"]["listeners"][0]["access_log"].is_badvalue());
    let logging = format!(
            "endpoints:\n{base}        - actions: [{{type: log, config: {{metadata: {{event: x}}}}}}]\n"
        );
    let (doc, _) = generate_from(dir.path(), &logging);
    let line = doc["static_resources"]["listeners"][0]["access_log"][0]["typed_config"]
        ["log_format"]["text_format_source"]["inline_string"]
        .as_str()
        .expect("a connection line");
    assert!(
        line.contains("%FILTER_STATE(wasm.tlsgate.tcp_log:PLAIN)%"),
        "{line}"
    );
}

#[test]
fn a_rule_on_a_variable_envoy_cannot_provide_is_refused_not_evaluated_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = Authority::root("Example Root");
    ca.write(dir.path(), "ca");
    ca.server(&["a.example.com"]).write(dir.path(), "server");
    let everywhere = tlsgate_core::policy::UNKNOWN_BEHIND_ENVOY
        .iter()
        .filter(|u| !u.network_filter_only);
    let base = verified_endpoint();
    for variable in everywhere.map(|u| u.variable) {
        let policy = format!(
                "endpoints:\n{base}      on_http_request:\n        - actions:\n            - type: add-headers\n              config: {{headers: {{x-v: \"${{{variable}}}\"}}}}\n"
            );
        let e = generate(&load(dir.path(), &policy), &options(dir.path()))
            .expect_err("refused")
            .to_string();
        assert!(
            e.contains(&format!("reads {variable}, which Envoy cannot provide"))
                && e.contains("endpoints[0]"),
            "{e}"
        );
    }
    // ALPN: the HTTP filter has it, the network filter does not.
    let alpn = "conn.tls.negotiated_alpn == 'h2'";
    let http = format!(
            "endpoints:\n{base}      on_http_request:\n        - expressions: [\"{alpn}\"]\n          actions: [{{type: deny}}]\n"
        );
    generate(&load(dir.path(), &http), &options(dir.path())).expect("ALPN in requests");
    let tcp = format!(
            "endpoints:\n{base}        - expressions: [\"{alpn}\"]\n          actions: [{{type: deny}}]\n"
        );
    let e = generate(&load(dir.path(), &tcp), &options(dir.path()))
        .expect_err("ALPN in on_tcp_connect")
        .to_string();
    assert!(
        e.contains("an on_tcp_connect rule reads conn.tls.negotiated_alpn"),
        "{e}"
    );
}

#[test]
fn ja4_in_requests_turns_on_tls_inspector_fingerprints_and_hands_them_over_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let base = verified_endpoint();
    let rule = "conn.tls.ja4_fingerprint.startsWith('t12')";
    let policy = format!(
            "endpoints:\n{base}      on_http_request:\n        - expressions: [\"{rule}\"]\n          actions: [{{type: deny}}]\n"
        );
    let (doc, _) = generate_from(dir.path(), &policy);
    let listener = &doc["static_resources"]["listeners"][0];
    let inspector = listener["listener_filters"]
        .as_vec()
        .and_then(|f| {
            f.iter()
                .find(|f| f["name"].as_str() == Some("envoy.filters.listener.tls_inspector"))
        })
        .expect("tls_inspector");
    assert_eq!(
        inspector["typed_config"]["enable_ja4_fingerprinting"].as_bool(),
        Some(true)
    );
    let hcm = &listener["filter_chains"][0]["filters"][1]["typed_config"];
    let filters: Vec<&str> = hcm["http_filters"]
        .as_vec()
        .expect("http_filters")
        .iter()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.header_mutation",
            "envoy.filters.http.wasm",
            "envoy.filters.http.router"
        ]
    );
    let set =
        &hcm["http_filters"][0]["typed_config"]["mutations"]["request_mutations"][0]["append"];
    assert_eq!(set["header"]["key"].as_str(), Some("x-tlsgate-ja4"));
    assert_eq!(
        set["header"]["value"].as_str(),
        Some("ja4=%TLS_JA4_FINGERPRINT%")
    );
    assert_eq!(
        set["append_action"].as_str(),
        Some("OVERWRITE_IF_EXISTS_OR_ADD")
    );
    // Without a rule on it, neither is there.
    let (plain, _) = generate_from(dir.path(), &format!("endpoints:\n{base}"));
    let listener = &plain["static_resources"]["listeners"][0];
    // (Not any "ja4": the listener names files in a temporary directory, whose random
    // name can hold those three letters.)
    let yaml = crate::yaml::emit(listener).unwrap();
    assert!(
        !yaml.contains("enable_ja4_fingerprinting") && !yaml.contains("x-tlsgate-ja4"),
        "{yaml}"
    );
}

#[test]
fn ocsp_gets_a_cluster_for_its_responder_or_follows_the_certificates_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let with_ocsp = |strategy: &str, ocsp: &str| {
        format!(
            "endpoints:\n{}                mutual_tls_ocsp: {ocsp}\n",
            endpoint(
                "a.example.com",
                "127.0.0.1:8443",
                strategy,
                "      url: http://127.0.0.1:8080"
            )
        )
    };
    let (doc, _) = generate_from(
        dir.path(),
        &with_ocsp(
            "require-and-verify",
            "{mode: require, responder: 'http://127.0.0.1:8888/ocsp', timeout: 1s}",
        ),
    );
    let clusters = doc["static_resources"]["clusters"]
        .as_vec()
        .expect("clusters");
    let ocsp = clusters
        .iter()
        .find(|c| c["name"].as_str() == Some("tlsgate_ocsp_0"))
        .expect("a cluster for the responder");
    let address = &ocsp["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]
        ["address"]["socket_address"];
    assert_eq!(address["address"].as_str(), Some("127.0.0.1"));
    assert_eq!(address["port_value"].as_i64(), Some(8888));
    assert_eq!(ocsp["connect_timeout"].as_str(), Some("1s"));
    assert!(
        doc["static_resources"]["listeners"][0]["filter_chains"][0]["transport_socket"]
            ["typed_config"]["common_tls_context"]["tls_certificates"][0]["ocsp_staple"]
            .is_badvalue(),
        "no staple unless one was fetched"
    );

    // Every strategy; without `responder`, the one the certificate names, through one
    // dynamic forward proxy cluster waiting as long as the longest of its endpoints.
    for strategy in ["request", "require-any", "require-and-verify"] {
        let (doc, _) = generate_from(
            dir.path(),
            &with_ocsp(strategy, "{mode: prefer, timeout: 3s}"),
        );
        let clusters = doc["static_resources"]["clusters"]
            .as_vec()
            .expect("clusters");
        assert!(
            !clusters
                .iter()
                .any(|c| c["name"].as_str() == Some("tlsgate_ocsp_0")),
            "{strategy}: no fixed responder"
        );
        let aia = clusters
            .iter()
            .find(|c| c["name"].as_str() == Some(tlsgate_core::policy::OCSP_AIA_CLUSTER))
            .unwrap_or_else(|| panic!("{strategy}: the AIA cluster"));
        assert_eq!(
            aia["cluster_type"]["name"].as_str(),
            Some("envoy.clusters.dynamic_forward_proxy")
        );
        assert_eq!(aia["connect_timeout"].as_str(), Some("3s"));
    }
}

#[test]
fn a_fetched_ocsp_response_is_stapled_to_its_endpoints_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "endpoints:\n{}",
        endpoint(
            "a.example.com",
            "127.0.0.1:8443",
            "request",
            "      url: http://127.0.0.1:8080"
        )
    );
    let (_, bootstrap) = generate_from(dir.path(), &policy);
    assert!(
        !bootstrap.yaml.contains("ocsp_staple"),
        "none unless one was fetched"
    );
    let mut options = options(dir.path());
    options.ocsp_staples = vec![(0, vec![0x30, 0x03, 0x0a, 0x01, 0x00])];
    let bootstrap = generate(&load(dir.path(), &policy), &options).expect("generates");
    let doc = YamlLoader::load_from_str(&bootstrap.yaml).expect("YAML");
    let certificate = &tls_context(&doc[0]["static_resources"]["listeners"][0]["filter_chains"][0])
        ["common_tls_context"]["tls_certificates"][0];
    assert_eq!(
        certificate["ocsp_staple"]["inline_bytes"].as_str(),
        Some("MAMKAQA="),
        "the response's DER, base64 as protobuf bytes are written"
    );
}

#[test]
fn proxy_protocol_in_trusts_only_its_sources_and_out_wraps_the_upstream_socket() {
    let dir = tempfile::tempdir().expect("tempdir");
    let policy = format!(
        "endpoints:\n{}{}listeners:\n  - bind: 127.0.0.1:8443\n    \
             proxy_protocol: {{trusted_sources: [10.0.0.0/8, '::1']}}\n",
        endpoint(
            "a.example.com",
            "127.0.0.1:8443",
            "request",
            "      url: http://127.0.0.1:8080\n      proxy_protocol: 2"
        ),
        endpoint(
            "b.example.com",
            "127.0.0.1:9443",
            "request",
            "      url: http://127.0.0.1:8080"
        ),
    );
    let (doc, _) = generate_from(dir.path(), &policy);
    let listeners = &doc["static_resources"]["listeners"];
    let proxied = &listeners[0];
    assert_eq!(
        proxied["listener_filters"][0]["name"].as_str(),
        Some("envoy.filters.listener.proxy_protocol"),
        "the header is read before the ClientHello"
    );
    let ranges = &proxied["filter_chains"][0]["filter_chain_match"]["direct_source_prefix_ranges"];
    assert_eq!(ranges[0]["address_prefix"].as_str(), Some("10.0.0.0"));
    assert_eq!(ranges[0]["prefix_len"].as_i64(), Some(8));
    assert_eq!(ranges[1]["address_prefix"].as_str(), Some("::1"));
    assert_eq!(ranges[1]["prefix_len"].as_i64(), Some(128));
    let plain = &listeners[1];
    assert_eq!(
        plain["listener_filters"][0]["name"].as_str(),
        Some("envoy.filters.listener.tls_inspector")
    );
    assert!(
        plain["filter_chains"][0]["filter_chain_match"]["direct_source_prefix_ranges"]
            .is_badvalue()
    );

    let clusters = &doc["static_resources"]["clusters"];
    let socket = &clusters[0]["transport_socket"];
    assert_eq!(
        socket["name"].as_str(),
        Some("envoy.transport_sockets.upstream_proxy_protocol")
    );
    assert_eq!(
        socket["typed_config"]["config"]["version"].as_str(),
        Some("V2")
    );
    assert_eq!(
        socket["typed_config"]["transport_socket"]["name"].as_str(),
        Some("envoy.transport_sockets.raw_buffer")
    );
    assert!(clusters[1]["transport_socket"].is_badvalue());
}

#[test]
fn always_verifies_the_upstream_name_or_its_pinned_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = tlsgate_test_support::Authority::root("Upstream CA");
    ca.write(dir.path(), "upstream-ca");
    let pinned = ca.server(&["pinned.internal"]);
    pinned.write(dir.path(), "pinned");
    let private = "      url: https://upstream.internal:8443\n      protocol: http2\n      tls:\n        certificate_authorities: [ca.crt]";
    let public = "      url: https://api.example.org";
    let with_pin = "      url: https://10.0.0.7:8443\n      tls:\n        certificate_authorities: [upstream-ca.crt]\n        pinned_certificates: [pinned.crt]";
    let policy = format!(
        "endpoints:\n{}{}{}",
        endpoint("a.example.com", "127.0.0.1:8443", "request", private),
        endpoint("b.example.com", "127.0.0.1:9443", "request", public),
        endpoint("c.example.com", "127.0.0.1:9444", "request", with_pin),
    );
    assert!(
        SYSTEM_CA_BUNDLES.iter().any(|p| Path::new(p).is_file()),
        "no system CA bundle in {SYSTEM_CA_BUNDLES:?}: install Debian's ca-certificates \
             (scripts/setup.sh does)"
    );
    let (doc, _) = generate_from(dir.path(), &policy);
    let clusters = doc["static_resources"]["clusters"]
        .as_vec()
        .expect("clusters");
    let validation = |c: &Yaml| {
        c["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"].clone()
    };
    let san = |c: &Yaml| {
        let v = validation(c);
        (
            v["match_typed_subject_alt_names"][0]["san_type"]
                .as_str()
                .map(str::to_owned),
            v["match_typed_subject_alt_names"][0]["matcher"]["exact"]
                .as_str()
                .map(str::to_owned),
        )
    };
    assert_eq!(clusters[0]["type"].as_str(), Some("STRICT_DNS"));
    // A private CA is no reason to accept any certificate it issued: the name is matched.
    assert_eq!(
        san(&clusters[0]),
        (Some("DNS".into()), Some("upstream.internal".into()))
    );
    assert_eq!(
        clusters[0]["transport_socket"]["typed_config"]["sni"].as_str(),
        Some("upstream.internal")
    );
    assert!(!clusters[0]["typed_extension_protocol_options"].is_badvalue());
    assert_eq!(
        san(&clusters[1]),
        (Some("DNS".into()), Some("api.example.org".into()))
    );
    // A pinned key replaces the name check (a certificate without SANs has no name Envoy
    // can match), and the pin is the certificate's SPKI hash.
    let pins = validation(&clusters[2])["verify_certificate_spki"].clone();
    assert_eq!(
        pins[0].as_str().map(str::to_owned),
        tlsgate_core::pem::spki_sha256(&pinned.cert_der.clone().into())
    );
    assert!(validation(&clusters[2])["match_typed_subject_alt_names"].is_badvalue());
    assert_eq!(
        doc["static_resources"]["listeners"].as_vec().map(Vec::len),
        Some(3)
    );
}

#[test]
fn refuses_an_admin_address_off_loopback() {
    let config = Config {
        endpoints: Vec::new(),
        listeners: Vec::new(),
        warnings: Vec::new(),
        files: Vec::new(),
        notes: Vec::new(),
    };
    let options = Options {
        wasm: PathBuf::from("f.wasm"),
        out_dir: PathBuf::from("."),
        admin: "0.0.0.0:9901".parse().expect("addr"),
        limits: Limits::DEFAULT,
        ocsp_staples: Vec::new(),
    };
    assert!(matches!(
        generate(&config, &options),
        Err(Error::AdminNotLoopback(_))
    ));
}
