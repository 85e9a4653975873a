//! What `tlsgate istio` writes: the example, every mapping valid for Istio, OCSP responders as
//! gateway clusters.

use super::*;

#[test]
fn the_example_is_generated_from_its_policy_and_valid_for_istio() {
    let example = repo_root().join("examples").join("istio");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seed_openssl_certs(d).expect("the seed's openssl commands");
    std::fs::copy(example.join("policy.yaml"), d.join("policy.yaml")).unwrap();
    let out = istio(d, &["-c", "policy.yaml", "--wasm-url", WASM_URL]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    let schemas = Schemas::load();
    let docs = assert_valid(&schemas, &out.stdout);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Gateway",
            "VirtualService",
            "DestinationRule",
            "WasmPlugin",
            "WasmPlugin"
        ]
    );
    assert!(
        !out.stdout.contains("PRIVATE KEY"),
        "no key without --with-secrets"
    );

    let fresh = normalize(&out.stdout);
    let committed_path = example.join("istio.yaml");
    if std::env::var_os("TLSGATE_BLESS").is_some() {
        std::fs::write(&committed_path, &fresh).expect("writing examples/istio/istio.yaml");
    }
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    assert!(
        committed == fresh,
        "examples/istio/istio.yaml is stale; regenerate it with \
         `TLSGATE_BLESS=1 cargo test -p tlsgate-e2e --test istio`\n--- fresh ---\n{fresh}"
    );
}

/// Every mapping at once — both strategies Istio has, a tls:// endpoint, CRLs, upstream TLS
/// with and without a client certificate, the Secrets — and all of it valid for Istio.
#[test]
fn every_mapping_is_valid_for_istio_and_secrets_are_written_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Authority::root("Example Root");
    ca.write(d, "ca");
    ca.server(&["a.example.com", "*.example.org"])
        .write(d, "server");
    ca.client("gateway").write(d, "client");
    std::fs::write(d.join("ca.crl"), ca.crl(&[], -60, 86_400)).unwrap();
    let policy = PolicyBuilder::new()
        .endpoint(
            Endpoint::https("a.example.com")
                .bind("127.0.0.1:8443")
                .upstream(
                    Upstream::new("https://api.payments:8443").tls(
                        UpstreamTls::new()
                            .client_certificate("client.crt", "client.key")
                            .certificate_authority("ca.crt"),
                    ),
                )
                .terminate_tls(
                    TerminateTls::files("server.crt", "server.key")
                        .client_ca("ca.crt")
                        .client_crl("ca.crl"),
                ),
        )
        .endpoint(
            Endpoint::tls("*.example.org")
                .bind("127.0.0.1:9443")
                .upstream(
                    Upstream::new("tls://db.data:5432").tls(
                        UpstreamTls::new()
                            .certificate_authority("ca.crt")
                            .server_name("db.data"),
                    ),
                )
                .terminate_tls(
                    TerminateTls::new()
                        .min_version("1.2")
                        .server_certificate("server.crt")
                        .server_private_key("server.key")
                        .client_ca("ca.crt")
                        .verification(Verification::Request),
                ),
        )
        .to_yaml();
    std::fs::write(d.join("policy.yaml"), policy).unwrap();
    let schemas = Schemas::load();
    let sha = "a".repeat(64);
    let out = istio(
        d,
        &[
            "-c",
            "policy.yaml",
            "--wasm-url",
            "https://files.example.com/tlsgate_filter.wasm",
            "--sha256",
            &sha,
            "--namespace",
            "edge",
            "--selector",
            "app=edge-gateway",
            "--with-secrets",
            "-o",
            "istio.yaml",
        ],
    );
    assert_eq!(out.exit_code, 0, "{out:?}");
    assert!(
        out.stderr.contains("warning: ")
            && out
                .stderr
                .contains("mutual_tls_verification_strategy: request"),
        "{}",
        out.stderr
    );
    let path = d.join("istio.yaml");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o077,
            0,
            "a file with private keys is its owner's only"
        );
    }
    let yaml = std::fs::read_to_string(&path).unwrap();
    let docs = assert_valid(&schemas, &yaml);
    let secrets: Vec<&Value> = docs.iter().filter(|d| d["kind"] == "Secret").collect();
    assert_eq!(
        secrets.len(),
        4,
        "two gateway credentials, two upstream ones"
    );
    assert!(secrets.iter().all(|s| s["metadata"]["namespace"] == "edge"));
    let gateway_secret = &secrets[0]["stringData"];
    for key in ["tls.crt", "tls.key", "ca.crt", "ca.crl"] {
        assert!(gateway_secret[key].is_string(), "{key} in {gateway_secret}");
    }
    let upstream_ca_only = secrets
        .iter()
        .find(|s| s["type"] == "Opaque")
        .expect("the CA-only upstream credential");
    assert!(upstream_ca_only["stringData"]["tls.key"].is_null());

    // Without --with-secrets: no key anywhere, the same resources otherwise.
    let out = istio(
        d,
        &[
            "-c",
            "policy.yaml",
            "--wasm-url",
            WASM_URL,
            "--namespace",
            "edge",
        ],
    );
    assert_eq!(out.exit_code, 0, "{out:?}");
    let docs = assert_valid(&schemas, &out.stdout);
    assert!(docs.iter().all(|d| d["kind"] != "Secret"));
    assert!(!out.stdout.contains("PRIVATE KEY"));
    assert!(
        out.stdout.contains("--from-file=ca.crl=ca.crl"),
        "{}",
        out.stdout.lines().take(30).collect::<Vec<_>>().join("\n")
    );
}

/// OCSP for client certificates behind Istio: the filter asks responders through clusters
/// Istio does not generate, so an EnvoyFilter adds them to the gateway — one per configured
/// responder, one dynamic forward proxy for the responders certificates name — valid for
/// Istio's schema, each one a cluster the real Envoy accepts, under the names the filter asks.
#[test]
fn ocsp_responders_become_gateway_clusters_through_an_envoy_filter() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = Authority::root("Example Root");
    ca.write(d, "ca");
    ca.server(&["a.example.com", "b.example.com"])
        .write(d, "server");
    let endpoint = |host: &str, ocsp: Ocsp| {
        Endpoint::https(host)
            .bind("127.0.0.1:8443")
            .upstream("http://api.payments:8080")
            .terminate_tls(
                TerminateTls::files("server.crt", "server.key")
                    .client_ca("ca.crt")
                    .client_ocsp(ocsp),
            )
    };
    let policy = PolicyBuilder::new()
        .endpoint(endpoint(
            "a.example.com",
            Ocsp::new("require")
                .responder("http://ocsp.pki.example.com:8080/")
                .timeout("1s"),
        ))
        .endpoint(endpoint("b.example.com", Ocsp::new("prefer").timeout("3s")))
        .to_yaml();
    std::fs::write(d.join("policy.yaml"), policy).unwrap();
    let out = istio(d, &["-c", "policy.yaml", "--wasm-url", WASM_URL]);
    assert_eq!(out.exit_code, 0, "{out:?}");
    let docs = assert_valid(&Schemas::load(), &out.stdout);
    let kinds: Vec<&str> = docs.iter().filter_map(|d| d["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "Gateway",
            "VirtualService",
            "VirtualService",
            "EnvoyFilter",
            "WasmPlugin",
            "WasmPlugin"
        ]
    );
    let filter = &docs[3];
    assert_eq!(filter["metadata"]["name"], "tlsgate-ocsp");
    assert_eq!(
        filter["spec"]["workloadSelector"]["labels"],
        json!({"istio": "ingressgateway"})
    );
    let patches = filter["spec"]["configPatches"].as_array().unwrap();
    let clusters: Vec<&Value> = patches
        .iter()
        .map(|p| {
            assert_eq!(p["applyTo"], "CLUSTER");
            assert_eq!(p["match"]["context"], "GATEWAY");
            assert_eq!(p["patch"]["operation"], "ADD");
            &p["patch"]["value"]
        })
        .collect();
    let names: Vec<&str> = clusters.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            tlsgate_core::policy::ocsp_cluster_name(0).as_str(),
            tlsgate_core::policy::OCSP_AIA_CLUSTER
        ]
    );
    assert_eq!(clusters[0]["connect_timeout"], "1s");
    assert_eq!(
        clusters[1]["connect_timeout"], "3s",
        "the longest wait asks through it"
    );
    // The filter's configuration carries each endpoint's check (it holds the connection).
    let plugin = serde_json::to_string(&docs[4]["spec"]["pluginConfig"]).unwrap();
    assert!(plugin.contains("ocsp.pki.example.com"), "{plugin}");

    // The real Envoy takes each value as a cluster.
    let bootstrap = json!({"static_resources": {"clusters": clusters}});
    let path = d.join("clusters.yaml");
    std::fs::write(&path, serde_json::to_string_pretty(&bootstrap).unwrap()).unwrap();
    envoy_harness::validate(&path);
}
