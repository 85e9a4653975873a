//! What is refused: the schema check refuses what Istio would, and tlsgate istio names the file,
//! endpoint and field.

use super::*;

/// The validator can fail: a misspelled field, a wrong enum value, a wrong type and a missing
/// required field in an otherwise valid Gateway are each refused, at their path.
#[test]
fn the_schema_check_refuses_what_istio_would() {
    let schemas = Schemas::load();
    let gateway = json!({
        "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
        "metadata": {"name": "tlsgate", "namespace": "istio-ingress"},
        "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{
            "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
            "hosts": ["./a.example.com"],
            "tls": {"mode": "MUTUAL", "credentialName": "a", "minProtocolVersion": "TLSV1_3"}}]}
    });
    assert_eq!(schemas.check(&gateway), Vec::<String>::new());
    let broken = |edit: &dyn Fn(&mut Value)| {
        let mut g = gateway.clone();
        edit(&mut g);
        schemas.check(&g)
    };
    let tls = |g: &mut Value| g["spec"]["servers"][0]["tls"].take();

    let misspelled = broken(&|g| {
        let mut t = tls(g);
        t["credentialname"] = t["credentialName"].take();
        t.as_object_mut().unwrap().remove("credentialName");
        g["spec"]["servers"][0]["tls"] = t;
    });
    assert_eq!(
        misspelled,
        ["Gateway.spec.servers[0].tls.credentialname: unknown field"]
    );
    let bad_enum = broken(&|g| g["spec"]["servers"][0]["tls"]["mode"] = json!("MUTAL"));
    assert!(bad_enum[0].starts_with("Gateway.spec.servers[0].tls.mode: \"MUTAL\" is not one of"));
    let bad_version =
        broken(&|g| g["spec"]["servers"][0]["tls"]["minProtocolVersion"] = json!("1.3"));
    assert_eq!(bad_version.len(), 1, "{bad_version:?}");
    let bad_type = broken(&|g| g["spec"]["servers"][0]["port"]["number"] = json!("443"));
    assert_eq!(
        bad_type,
        ["Gateway.spec.servers[0].port.number: expected integer, found \"443\""]
    );
    let missing = broken(&|g| {
        g["spec"]["servers"][0]
            .as_object_mut()
            .unwrap()
            .remove("hosts");
    });
    assert_eq!(
        missing,
        ["Gateway.spec.servers[0]: required field hosts is missing"]
    );
    let bad_metadata = broken(&|g| g["metadata"]["lables"] = json!({}));
    assert_eq!(bad_metadata, ["metadata.lables: unknown field"]);

    let plugin = json!({
        "apiVersion": "extensions.istio.io/v1alpha1", "kind": "WasmPlugin",
        "metadata": {"name": "p"},
        "spec": {"url": "oci://r/f:1", "sha256": "ABC", "failStrategy": "FAIL_CLOSED",
                 "pluginConfig": {"anything": [1, "goes"]}}
    });
    let errors = schemas.check(&plugin);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(errors.iter().any(|e| e.contains("sha256")), "{errors:?}");
    assert!(
        errors.iter().any(|e| e.contains("FAIL_CLOSED")),
        "{errors:?}"
    );
    let unknown_kind = json!({"apiVersion": "networking.istio.io/v1", "kind": "Gatway"});
    assert_eq!(
        schemas.check(&unknown_kind),
        ["no schema for networking.istio.io/v1 Gatway"]
    );
}

#[test]
fn refusals_name_the_file_endpoint_and_field_and_exit_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    seed_openssl_certs(d).unwrap();
    let example = std::fs::read_to_string(repo_root().join("examples/istio/policy.yaml")).unwrap();

    let require_any = example.replace("require-and-verify", "require-any");
    std::fs::write(d.join("any.yaml"), require_any).unwrap();
    let out = istio(d, &["-c", "any.yaml", "--wasm-url", WASM_URL]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.contains(
            "error: any.yaml: endpoints[0] (https://terminate-tls-example.ngrok.app): \
             traffic_policy.on_tcp_connect[0] terminate-tls.mutual_tls_verification_strategy: \
             require-any accepts"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(out.stdout, "", "nothing half-written");

    // The seed's own upstream (an address, and a pinned X.509 v1 certificate): refused.
    let seed = repo_root().join("examples/native/seed-mtls.yaml");
    std::fs::copy(seed, d.join("seed.yaml")).unwrap();
    let out = istio(d, &["-c", "seed.yaml", "--wasm-url", WASM_URL]);
    assert_eq!(out.exit_code, 2, "{out:?}");
    assert!(
        out.stderr.contains("upstream.url: https://127.0.0.1:9443"),
        "{}",
        out.stderr
    );

    let https = istio(
        d,
        &[
            "-c",
            "any.yaml",
            "--wasm-url",
            "https://files.example.com/f.wasm",
        ],
    );
    assert_eq!(https.exit_code, 2);
    assert!(https.stderr.contains("--sha256"), "{}", https.stderr);

    // A bad policy: the loader's message, with the file, line and field, as `tlsgate check`.
    let old = example.replace("min_version: \"1.3\"", "min_version: \"1.1\"");
    std::fs::write(d.join("old.yaml"), old).unwrap();
    let out = istio(d, &["-c", "old.yaml", "--wasm-url", WASM_URL]);
    assert_eq!(out.exit_code, 2);
    assert!(
        out.stderr.contains(
            "old.yaml:20:30: endpoints[0].traffic_policy.on_tcp_connect[0].actions[0].config.min_version: TLS 1.1 is not supported"
        ),
        "{}",
        out.stderr
    );
}
