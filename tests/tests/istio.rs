//! `tlsgate istio` as a user runs it, and what it writes checked against Istio's own CRD
//! schemas (tests/fixtures/istio/crds.yaml, from istio/api): every field name, type, enum value
//! and required field of every generated resource. `examples/istio/istio.yaml` is the example
//! policy's output, kept current here (certificate bodies elided); regenerate it with
//! `TLSGATE_BLESS=1 cargo test -p tlsgate-e2e --test istio`.

#![allow(clippy::panic, clippy::expect_used, clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use tlsgate_e2e::{repo_root, run_bounded, tlsgate_bin, RunResult};
use tlsgate_test_support::{
    seed_openssl_certs, Authority, Endpoint, Ocsp, PolicyBuilder, TerminateTls, Upstream,
    UpstreamTls, Verification,
};

mod envoy_harness;

const WASM_URL: &str = "oci://registry.example.com/tlsgate/filter:0.1.0";

/// A structural-schema validator for the OpenAPI v3 subset Kubernetes CRDs use: `type`,
/// `properties` (unknown fields rejected unless `additionalProperties` or
/// `x-kubernetes-preserve-unknown-fields` allow them), `required`, `enum`, `items`,
/// `additionalProperties`, `oneOf`/`anyOf`/`allOf`/`not`, `nullable`,
/// `x-kubernetes-int-or-string`, bounds and lengths, `format: int32`. `pattern` is checked for
/// the one pattern the generated fields meet (WasmPlugin's sha256) and reported as unchecked
/// for any other; the CEL rules (`x-kubernetes-validations`) are not evaluated.
mod schema {
    use serde_json::Value;

    const SHA256_PATTERN: &str = "(^$|^[a-f0-9]{64}$)";

    pub fn validate(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        if value.is_null() && schema["nullable"] == true {
            return;
        }
        if schema["x-kubernetes-int-or-string"] == true {
            if !(value.is_i64() || value.is_u64() || value.is_string()) {
                errors.push(format!("{path}: an integer or a string, not {value}"));
            }
            return;
        }
        if let Some(kind) = schema["type"].as_str() {
            let ok = match kind {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => false,
            };
            if !ok {
                errors.push(format!("{path}: expected {kind}, found {value}"));
                return;
            }
        }
        if let Some(allowed) = schema["enum"].as_array() {
            if !allowed.contains(value) {
                errors.push(format!("{path}: {value} is not one of {allowed:?}"));
            }
        }
        if schema["format"] == "int32"
            && value.as_i64().and_then(|n| i32::try_from(n).ok()).is_none()
        {
            errors.push(format!("{path}: {value} is not an int32"));
        }
        if let (Some(min), Some(n)) = (schema["minimum"].as_f64(), value.as_f64()) {
            if n < min {
                errors.push(format!("{path}: {n} is below {min}"));
            }
        }
        if let (Some(max), Some(n)) = (schema["maximum"].as_f64(), value.as_f64()) {
            if n > max {
                errors.push(format!("{path}: {n} is above {max}"));
            }
        }
        if let Some(s) = value.as_str() {
            let len = s.chars().count() as u64;
            if schema["minLength"].as_u64().is_some_and(|m| len < m) {
                errors.push(format!("{path}: shorter than {}", schema["minLength"]));
            }
            if schema["maxLength"].as_u64().is_some_and(|m| len > m) {
                errors.push(format!("{path}: longer than {}", schema["maxLength"]));
            }
            if let Some(pattern) = schema["pattern"].as_str() {
                let ok = match pattern {
                    SHA256_PATTERN => {
                        s.is_empty()
                            || (s.len() == 64
                                && s.bytes()
                                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)))
                    }
                    _ => {
                        errors.push(format!("{path}: pattern {pattern} is not checked here"));
                        true
                    }
                };
                if !ok {
                    errors.push(format!("{path}: {s:?} does not match {pattern}"));
                }
            }
        }
        if let Some(items) = value.as_array() {
            let len = items.len() as u64;
            if schema["minItems"].as_u64().is_some_and(|m| len < m) {
                errors.push(format!("{path}: fewer than {} items", schema["minItems"]));
            }
            if schema["maxItems"].as_u64().is_some_and(|m| len > m) {
                errors.push(format!("{path}: more than {} items", schema["maxItems"]));
            }
            if schema.get("items").is_some() {
                for (i, item) in items.iter().enumerate() {
                    validate(&schema["items"], item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        if let Some(object) = value.as_object() {
            if let Some(required) = schema["required"].as_array() {
                for key in required.iter().filter_map(Value::as_str) {
                    if !object.contains_key(key) {
                        errors.push(format!("{path}: required field {key} is missing"));
                    }
                }
            }
            if schema["maxProperties"]
                .as_u64()
                .is_some_and(|m| object.len() as u64 > m)
            {
                errors.push(format!("{path}: too many properties"));
            }
            let typed = schema.get("type").is_some();
            let preserve = schema["x-kubernetes-preserve-unknown-fields"] == true;
            for (key, child) in object {
                let at = format!("{path}.{key}");
                if let Some(property) = schema["properties"].get(key) {
                    validate(property, child, &at, errors);
                } else if schema["additionalProperties"].is_object() {
                    validate(&schema["additionalProperties"], child, &at, errors);
                } else if typed && !preserve && schema["additionalProperties"] != true {
                    errors.push(format!("{at}: unknown field"));
                }
            }
        }
        let passes = |sub: &Value| {
            let mut e = Vec::new();
            validate(sub, value, path, &mut e);
            e.is_empty()
        };
        if let Some(subs) = schema["oneOf"].as_array() {
            let n = subs.iter().filter(|s| passes(s)).count();
            if n != 1 {
                errors.push(format!("{path}: matches {n} of oneOf, not exactly one"));
            }
        }
        if let Some(subs) = schema["anyOf"].as_array() {
            if !subs.iter().any(passes) {
                errors.push(format!("{path}: matches none of anyOf"));
            }
        }
        if let Some(subs) = schema["allOf"].as_array() {
            for sub in subs {
                validate(sub, value, path, errors);
            }
        }
        if let Some(sub) = schema.get("not") {
            if passes(sub) {
                errors.push(format!("{path}: matches a schema under not"));
            }
        }
    }
}

/// The CRDs' schemas by (apiVersion, kind), and the two built-in shapes the output also uses:
/// ObjectMeta (the fields written) and core/v1 Secret.
struct Schemas(Vec<(String, String, Value)>);

impl Schemas {
    fn load() -> Self {
        let path = repo_root().join("tests/fixtures/istio/crds.yaml");
        let text = std::fs::read_to_string(&path).expect("the vendored CRDs");
        let mut out = Vec::new();
        for doc in tlsgate_core::source::parse_stream(&text).expect("CRDs parse") {
            let crd = doc.value;
            let group = crd["spec"]["group"].as_str().expect("group");
            let kind = crd["spec"]["names"]["kind"].as_str().expect("kind");
            for version in crd["spec"]["versions"].as_array().expect("versions") {
                let name = version["name"].as_str().expect("version");
                out.push((
                    format!("{group}/{name}"),
                    kind.to_owned(),
                    version["schema"]["openAPIV3Schema"].clone(),
                ));
            }
        }
        out.push((
            "v1".into(),
            "Secret".into(),
            json!({"type": "object", "properties": {
                "type": {"type": "string"},
                "data": {"type": "object", "additionalProperties": {"type": "string"}},
                "stringData": {"type": "object", "additionalProperties": {"type": "string"}},
                "immutable": {"type": "boolean"}}}),
        ));
        Self(out)
    }

    /// Every error in one resource, each with its path.
    fn check(&self, resource: &Value) -> Vec<String> {
        let api_version = resource["apiVersion"].as_str().unwrap_or_default();
        let kind = resource["kind"].as_str().unwrap_or_default();
        let Some((_, _, schema)) = self
            .0
            .iter()
            .find(|(v, k, _)| v == api_version && k == kind)
        else {
            return vec![format!("no schema for {api_version} {kind}")];
        };
        let metadata = json!({"type": "object", "required": ["name"], "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 253},
            "namespace": {"type": "string", "maxLength": 63},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 63}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}});
        let mut errors = Vec::new();
        schema::validate(&metadata, &resource["metadata"], "metadata", &mut errors);
        let mut body = resource.clone();
        if let Some(object) = body.as_object_mut() {
            for key in ["apiVersion", "kind", "metadata"] {
                object.remove(key);
            }
        }
        schema::validate(schema, &body, kind, &mut errors);
        errors
    }
}

fn istio(dir: &Path, args: &[&str]) -> RunResult {
    let mut cmd = Command::new(tlsgate_bin());
    cmd.current_dir(dir).arg("istio").args(args);
    run_bounded(cmd, b"", Duration::from_secs(60))
}

fn documents(yaml: &str) -> Vec<Value> {
    tlsgate_core::source::parse_stream(yaml)
        .expect("the output parses")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn assert_valid(schemas: &Schemas, yaml: &str) -> Vec<Value> {
    let docs = documents(yaml);
    assert!(!docs.is_empty());
    for doc in &docs {
        let errors = schemas.check(doc);
        assert!(errors.is_empty(), "{errors:#?}\nin\n{doc:#}");
    }
    docs
}

/// Certificate bodies differ per run; the rest is the contract.
fn normalize(yaml: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in yaml.lines() {
        let text = line.trim_start();
        if text.starts_with("-----BEGIN ") {
            inside = true;
            out.push_str(line);
            out.push('\n');
            out.push_str(&line.replace(text, "..."));
            out.push('\n');
        } else if text.starts_with("-----END ") {
            inside = false;
            out.push_str(line);
            out.push('\n');
        } else if !inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

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
